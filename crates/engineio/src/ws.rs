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
    tokio::spawn(async move {
        let open = Frame::Text(
            switchyard_engineio_proto::Text::from_utf8(open).unwrap_or_else(|_| "0".into()),
        );
        run(inner, entry, on_upgrade, Some(open)).await;
    });
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
    let refused = started.is_err();
    tokio::spawn(async move {
        if refused {
            // The reference server completes the handshake, then closes a WebSocket that
            // tries to upgrade a session already upgraded or upgrading.
            debug!(
                sid = entry.socket.sid(),
                "refusing second websocket for session"
            );
            let limit = inner.config.peer_write_limit();
            if let Ok(Ok(upgraded)) = timeout(limit, on_upgrade).await {
                let mut stream = stream(&inner, upgraded).await;
                let _ = timeout(limit, stream.close(None)).await;
            }
            return;
        }
        run(inner, entry, on_upgrade, None).await;
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
    // hyper hands the connection over once the 101 is written; bounded like any write.
    let limit = inner.config.peer_write_limit();
    let upgraded = match timeout(limit, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        failed => {
            match failed {
                Ok(Err(error)) => {
                    debug!(sid = entry.socket.sid(), %error, "websocket upgrade failed")
                }
                _ => debug!(sid = entry.socket.sid(), "websocket upgrade timed out"),
            }
            guard.disarm();
            let ((), events) = entry
                .socket
                .update(|core, _| core.websocket_closed(CloseReason::TransportError));
            inner.dispatch(&entry, events);
            return;
        }
    };
    let mut ws = stream(&inner, upgraded).await;
    // A batch may take the heartbeat budget in all, while it progresses; the stream's own
    // guard cuts a write that stalls for the write timeout.
    let write_limit = inner.config.heartbeat_budget();
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
            if let Err(reason) = write_all(&entry, &mut ws, &mut outgoing, write_limit).await {
                break Some(reason);
            }
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
                if let Some(reason) = receive(&inner, &entry, &mut ws, received).await {
                    break Some(reason);
                }
                // Take every message that is already here before writing the answers, so a
                // burst is answered with one write and one flush.
                let mut ended = None;
                while let Some(received) = ws.next().now_or_never() {
                    if let Some(reason) = receive(&inner, &entry, &mut ws, received).await {
                        ended = Some(reason);
                        break;
                    }
                }
                if ended.is_some() {
                    break ended;
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
    let _ = timeout(limit.min(Duration::from_secs(1)), ws.close(None)).await;
}

async fn write_all<C>(
    entry: &Entry<C>,
    ws: &mut Stream,
    outgoing: &mut Vec<Frame>,
    limit: Duration,
) -> Result<(), CloseReason> {
    let write = async {
        for frame in outgoing.drain(..) {
            ws.feed(to_ws_message(frame)).await?;
        }
        ws.flush().await
    };
    tokio::pin!(write);
    // Most writes complete at once; only a write that has to wait gets a timer, so a stalled
    // reader cannot hold the connection's task forever.
    let result = match poll_once(write.as_mut()).await {
        Some(result) => result,
        None => match timeout(limit, write).await {
            Ok(result) => result,
            Err(_) => {
                peer_fault!(
                    entry.socket.faults,
                    sid = entry.socket.sid(),
                    "websocket write took the heartbeat budget: slow reader"
                );
                return Err(CloseReason::TransportError);
            }
        },
    };
    result.map_err(|error| write_failed(entry, &error))
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

/// Polls `future` once: its output if it is ready, `None` if it has to wait.
async fn poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// An instant far enough to mean "never" for a timer.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Handles one read result; returns why the WebSocket ends, if it does.
async fn receive<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    ws: &mut Stream,
    received: Option<Result<tungstenite::Message, tungstenite::Error>>,
) -> Option<CloseReason> {
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
                return None;
            }
        },
        // Copy the payload out, so a kept message never pins the connection's read buffer.
        Some(Ok(tungstenite::Message::Binary(data))) => {
            Packet::Message(Message::Binary(Bytes::copy_from_slice(&data)))
        }
        Some(Ok(tungstenite::Message::Ping(_))) => {
            // tungstenite queued the pong; send it now, within the write deadline.
            return match timeout(inner.config.peer_write_limit(), ws.flush()).await {
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
            };
        }
        Some(Ok(tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_))) => return None,
        Some(Ok(tungstenite::Message::Close(_))) | None => {
            return Some(CloseReason::TransportClose)
        }
        Some(Err(tungstenite::Error::Capacity(error))) => {
            peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %error, "websocket message over max payload");
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: "message too big".into(),
            };
            let _ = timeout(inner.config.peer_write_limit(), ws.close(Some(frame))).await;
            return Some(CloseReason::TransportError);
        }
        // A read also writes what tungstenite owes the peer (a pong); the guard cut it.
        Some(Err(error)) if stalled(&error) => return Some(write_failed(entry, &error)),
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
            return Some(CloseReason::TransportClose);
        }
        Some(Err(error)) => {
            debug!(sid = entry.socket.sid(), %error, "websocket read failed");
            return Some(CloseReason::TransportError);
        }
    };
    let ((), events) = entry
        .socket
        .update(|core, now| core.handle_packet(now, TransportKind::WebSocket, packet));
    inner.dispatch(entry, events);
    None
}
