//! The WebSocket transport: direct sessions and upgrades from polling.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use switchyard_engineio_proto::{
    CloseReason, Frame, Message, Packet, TransportKind, WebSocketRole,
};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::engine::{EndGuard, EngineHandler, EngineInner, Entry};
use crate::io::StallGuard;
use crate::limits::Slot;
use crate::log::peer_fault;
use crate::socket::RequestInfo;

type Stream = WebSocketStream<StallGuard<TokioIo<hyper::upgrade::Upgraded>>>;

/// Bytes of frames gathered before tungstenite writes them without waiting for the flush.
const WRITE_BATCH_BYTES: usize = 8 * 1024;

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Checks the WebSocket handshake headers and builds the 101 answer.
fn switching_protocols(headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        return None;
    }
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Some(response)
}

/// Checks a WebSocket handshake whole: its headers, and that the server can hand the
/// connection over. Returns the 101 answer and the upgrade to await once it is sent; `None`
/// for a handshake to refuse, before anything is counted or opened for it.
pub(crate) fn accept<B>(request: &mut Request<B>) -> Option<(Response<Full<Bytes>>, OnUpgrade)> {
    let response = switching_protocols(request.headers())?;
    // hyper adds the upgrade only to requests that ask for one (`Connection: Upgrade`) on a
    // connection served with upgrades.
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>()?;
    Some((response, on_upgrade))
}

/// A WebSocket handshake without a sid, already accepted and admitted: opens its session,
/// which holds `slot` until it closes.
pub(crate) fn handshake<H: EngineHandler>(
    inner: Arc<EngineInner<H>>,
    info: RequestInfo,
    slot: Slot,
    on_upgrade: OnUpgrade,
) {
    let (entry, open) = inner.open_session(TransportKind::WebSocket, info, slot);
    let open = Frame::Text(
        switchyard_engineio_proto::Text::from_utf8(open).unwrap_or_else(|_| "0".into()),
    );
    // The connection's future is the task itself: no block around it to hold a second copy of
    // its arguments for the connection's life.
    tokio::spawn(run(inner, entry, on_upgrade, Some(open)));
}

/// A WebSocket with the sid of a polling session: probes an upgrade.
pub(crate) fn upgrade_session<H: EngineHandler, B>(
    inner: Arc<EngineInner<H>>,
    entry: Arc<Entry<H::Connection>>,
    request: &mut Request<B>,
) -> Response<Full<Bytes>> {
    let Some((response, on_upgrade)) = accept(request) else {
        return inner.refuse_upgrade();
    };
    let (started, events) = entry.socket.update(|core, now| core.upgrade_start(now));
    inner.dispatch(&entry, events);
    if started.is_ok() {
        tokio::spawn(run(inner, entry, on_upgrade, None));
        return response;
    }
    tokio::spawn(async move {
        // The reference server completes the handshake, then closes a WebSocket that tries to
        // upgrade a session already upgraded or upgrading.
        debug!(
            sid = entry.socket.sid(),
            "refusing second websocket for session"
        );
        let limit = inner.config.peer_write_limit();
        if let Ok(Ok(upgraded)) = timeout(limit, on_upgrade).await {
            let mut stream = stream(&inner, upgraded).await;
            let _ = timeout(limit, stream.close(None)).await;
        }
    });
    response
}

async fn stream<H: EngineHandler>(
    inner: &EngineInner<H>,
    upgraded: hyper::upgrade::Upgraded,
) -> Stream {
    let max = inner.config.session.max_payload;
    let config = WebSocketConfig::default()
        .read_buffer_size(inner.config.websocket_read_buffer)
        // Frames gather until the flush that ends each batch: one write per batch, and the
        // buffer only grows as large as the largest batch (at most this plus one frame).
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // Every write to the peer, tungstenite's own (pongs, close frames) included, fails once it
    // has made no progress for the write timeout.
    let io = StallGuard::new(TokioIo::new(upgraded), inner.config.write_timeout);
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

fn to_ws_message(frame: Frame) -> tungstenite::Message {
    match frame {
        // SAFETY: `Text` is only ever built from `&str`, `String` or bytes validated as UTF-8,
        // so its bytes are valid UTF-8; skipping the check avoids validating a broadcast's
        // shared bytes once per recipient.
        Frame::Text(text) => tungstenite::Message::Text(unsafe {
            Utf8Bytes::from_bytes_unchecked(text.into_bytes())
        }),
        Frame::Binary(data) => tungstenite::Message::Binary(data),
    }
}

/// Runs one WebSocket: reads frames into the session, writes what it queues, drives its timers.
///
/// This future lives as long as the connection, so its size is part of every idle
/// connection's memory: what is awaited once (the upgrade, the stream's setup, the close) or
/// rarely (a pong, a refused message) is boxed, so that only the loop's own state stays.
async fn run<H: EngineHandler>(
    inner: Arc<EngineInner<H>>,
    entry: Arc<Entry<H::Connection>>,
    on_upgrade: OnUpgrade,
    open: Option<Frame>,
) {
    // If this task stops early, its WebSocket is gone: the session (or its upgrade) ends.
    let mut guard = EndGuard::new(&inner, &entry, |core| {
        core.websocket_closed(CloseReason::TransportError)
    });
    let Some(mut ws) = Box::pin(open_stream(&inner, &entry, on_upgrade)).await else {
        guard.disarm();
        let ((), events) = entry
            .socket
            .update(|core, _| core.websocket_closed(CloseReason::TransportError));
        inner.dispatch(&entry, events);
        return;
    };
    let mut outgoing: Vec<Frame> = open.into_iter().collect();
    // One timer for the connection's life, moved only when the session's deadline changes:
    // registering a fresh sleep for every message would cost more than the message.
    let timer = tokio::time::sleep_until(far_future());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let end = loop {
        let ((role, deadline), events) = entry.socket.update(|core, _| {
            core.drain_websocket_frames(&mut outgoing);
            (core.websocket_role(), core.poll_timeout())
        });
        inner.dispatch(&entry, events);
        if !outgoing.is_empty() {
            let bytes = outgoing.iter().map(Frame::len).sum();
            inner.counters.sent(outgoing.len() as u64, bytes);
            // A batch may take the heartbeat budget in all, while it progresses; the stream's
            // own guard cuts a write that stalls for the write timeout.
            let limit = inner.config.heartbeat_budget();
            if let Err(reason) = write_all(&entry, &mut ws, &mut outgoing, limit).await {
                break Some(reason);
            }
            // The batch's memory goes with it: an idle connection keeps no queue.
            outgoing = Vec::new();
        }
        if role == WebSocketRole::Detached {
            break None;
        }
        if deadline != armed {
            armed = deadline;
            timer
                .as_mut()
                .reset(deadline.map_or_else(far_future, Into::into));
        }
        let woken = entry.socket.wake_websocket.notified();
        tokio::select! {
            received = ws.next() => {
                // Take every message that is already here before writing the answers, so a
                // burst is answered with one write and one flush.
                let mut after = receive(&inner, &entry, received);
                while let AfterRead::Continue = after {
                    match ws.next().now_or_never() {
                        Some(received) => after = receive(&inner, &entry, received),
                        None => break,
                    }
                }
                let reason = match after {
                    AfterRead::Continue => None,
                    AfterRead::End(reason) => Some(reason),
                    AfterRead::SendPong => Box::pin(send_pong(&inner, &entry, &mut ws)).await,
                    AfterRead::TooBig => Box::pin(refuse_too_big(&inner, &mut ws)).await,
                };
                if reason.is_some() {
                    break reason;
                }
            }
            _ = woken => {}
            _ = &mut timer => {
                armed = None;
                let ((), events) = entry.socket.update(|core, now| core.handle_timeout(now));
                inner.dispatch(&entry, events);
            }
        }
    };
    guard.disarm();
    if let Some(reason) = end {
        let ((), events) = entry.socket.update(|core, _| core.websocket_closed(reason));
        inner.dispatch(&entry, events);
    }
    let limit = inner.config.peer_write_limit().min(Duration::from_secs(1));
    let _ = Box::pin(timeout(limit, ws.close(None))).await;
}

/// Waits for hyper to hand the connection over (once the 101 is written; bounded like any
/// write) and wraps it in the WebSocket codec; `None` if the upgrade failed or timed out.
async fn open_stream<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    on_upgrade: OnUpgrade,
) -> Option<Stream> {
    match timeout(inner.config.peer_write_limit(), on_upgrade).await {
        Ok(Ok(upgraded)) => Some(stream(inner, upgraded).await),
        Ok(Err(error)) => {
            debug!(sid = entry.socket.sid(), %error, "websocket upgrade failed");
            None
        }
        Err(_) => {
            debug!(sid = entry.socket.sid(), "websocket upgrade timed out");
            None
        }
    }
}

/// Sends the pong tungstenite queued for a client's ping, within the write deadline; returns
/// why the WebSocket ends if it could not.
async fn send_pong<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    ws: &mut Stream,
) -> Option<CloseReason> {
    match timeout(inner.config.peer_write_limit(), ws.flush()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(write_failed(entry, &error)),
        Err(_) => {
            peer_fault!(
                entry.socket.faults,
                sid = entry.socket.sid(),
                "websocket pong not taken in time: the peer stopped reading"
            );
            Some(CloseReason::TransportError)
        }
    }
}

/// Closes a WebSocket whose message was over the payload limit with the "message too big"
/// close code; the WebSocket ends.
async fn refuse_too_big<H: EngineHandler>(
    inner: &EngineInner<H>,
    ws: &mut Stream,
) -> Option<CloseReason> {
    let frame = CloseFrame {
        code: CloseCode::Size,
        reason: "message too big".into(),
    };
    let _ = timeout(inner.config.peer_write_limit(), ws.close(Some(frame))).await;
    Some(CloseReason::TransportError)
}

/// Why a batch could not be written.
enum WriteEnd {
    Failed(tungstenite::Error),
    /// The batch took the whole limit, progressing or not.
    TookTooLong,
}

/// Writes `outgoing` as one batch (one flush), within `limit` once it has to wait.
///
/// Polled by hand rather than built from `feed`, `flush` and `timeout` futures: those would
/// sit in the connection's task, sized for the largest of them, for the connection's whole
/// life. The timer is only made (boxed) when a write has to wait, which an idle or healthy
/// connection never does.
async fn write_all<C>(
    entry: &Entry<C>,
    ws: &mut Stream,
    outgoing: &mut Vec<Frame>,
    limit: Duration,
) -> Result<(), CloseReason> {
    // Frames are taken from the back, each once the stream is ready for it: nothing is held
    // aside while the write waits.
    outgoing.reverse();
    let mut deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let result = std::future::poll_fn(|cx| {
        let progress = loop {
            if outgoing.is_empty() {
                break ws.poll_flush_unpin(cx);
            }
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let Some(frame) = outgoing.pop() else {
                        continue;
                    };
                    if let Err(error) = ws.start_send_unpin(to_ws_message(frame)) {
                        return Poll::Ready(Err(WriteEnd::Failed(error)));
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(WriteEnd::Failed(error))),
                Poll::Pending => break Poll::Pending,
            }
        };
        match progress {
            Poll::Ready(result) => Poll::Ready(result.map_err(WriteEnd::Failed)),
            Poll::Pending => {
                let timer = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(WriteEnd::TookTooLong)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    })
    .await;
    // A failed batch is dropped whole, as the connection ends.
    outgoing.clear();
    match result {
        Ok(()) => Ok(()),
        Err(WriteEnd::Failed(error)) => Err(write_failed(entry, &error)),
        Err(WriteEnd::TookTooLong) => {
            peer_fault!(
                entry.socket.faults,
                sid = entry.socket.sid(),
                "websocket write took the heartbeat budget: slow reader"
            );
            Err(CloseReason::TransportError)
        }
    }
}

/// Why a failed write ends the WebSocket; a stalled peer is its fault, and logged as such.
fn write_failed<C>(entry: &Entry<C>, error: &tungstenite::Error) -> CloseReason {
    if stalled(error) {
        peer_fault!(
            entry.socket.faults,
            sid = entry.socket.sid(),
            "websocket write stalled: the peer stopped reading"
        );
    } else {
        debug!(sid = entry.socket.sid(), %error, "websocket write failed");
    }
    CloseReason::TransportError
}

/// Whether `error` is the stall guard cutting a write.
fn stalled(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// An instant far enough to mean "never" for a timer.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// What the connection does after a read.
enum AfterRead {
    /// Read on, or wait.
    Continue,
    /// The WebSocket ends.
    End(CloseReason),
    /// The client pinged: tungstenite queued the pong, which must go out now.
    SendPong,
    /// A message was over the payload limit: close with "message too big".
    TooBig,
}

/// Handles one read result: a packet goes to the session; says what the connection does next.
fn receive<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    received: Option<Result<tungstenite::Message, tungstenite::Error>>,
) -> AfterRead {
    if let Some(Ok(tungstenite::Message::Text(text))) = &received {
        inner.counters.received(1, text.len());
    } else if let Some(Ok(tungstenite::Message::Binary(data))) = &received {
        inner.counters.received(1, data.len());
    }
    let packet = match received {
        Some(Ok(tungstenite::Message::Text(text))) => match Packet::decode_text(text.as_str()) {
            Ok(packet) => packet,
            Err(error) => {
                peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %error, "invalid websocket packet");
                let ((), events) = entry.socket.update(|core, _| match core.websocket_role() {
                    WebSocketRole::Active => core.close(CloseReason::ParseError),
                    _ => core.websocket_closed(CloseReason::TransportError),
                });
                inner.dispatch(entry, events);
                return AfterRead::Continue;
            }
        },
        // Copy the payload out, so a kept message never pins the connection's read buffer.
        Some(Ok(tungstenite::Message::Binary(data))) => {
            Packet::Message(Message::Binary(Bytes::copy_from_slice(&data)))
        }
        Some(Ok(tungstenite::Message::Ping(_))) => return AfterRead::SendPong,
        Some(Ok(tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_))) => {
            return AfterRead::Continue
        }
        Some(Ok(tungstenite::Message::Close(_))) | None => {
            return AfterRead::End(CloseReason::TransportClose)
        }
        Some(Err(tungstenite::Error::Capacity(error))) => {
            peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %error, "websocket message over max payload");
            return AfterRead::TooBig;
        }
        // A read also writes what tungstenite owes the peer (a pong); the guard cut it.
        Some(Err(error)) if stalled(&error) => return AfterRead::End(write_failed(entry, &error)),
        // The peer went away without a closing handshake, or the connection broke: the
        // reference server reports every end of its WebSocket as "transport close"; only a
        // protocol violation is a "transport error".
        Some(Err(
            error @ (tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Io(_)
            | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)),
        )) => {
            debug!(sid = entry.socket.sid(), %error, "websocket ended without a close frame");
            return AfterRead::End(CloseReason::TransportClose);
        }
        Some(Err(error)) => {
            debug!(sid = entry.socket.sid(), %error, "websocket read failed");
            return AfterRead::End(CloseReason::TransportError);
        }
    };
    let ((), events) = entry
        .socket
        .update(|core, now| core.handle_packet(now, TransportKind::WebSocket, packet));
    inner.dispatch(entry, events);
    AfterRead::Continue
}
