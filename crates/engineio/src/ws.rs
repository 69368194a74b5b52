//! The WebSocket transport: direct sessions and upgrades from polling.
//!
//! The frames are Switchyard's own ([`switchyard_engineio_proto::websocket`], sans-IO): a
//! connection reads on readiness into a buffer borrowed for the read and keeps no buffer while
//! it is idle, and writes each batch from a buffer that lives as long as the batch.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use switchyard_engineio_proto::websocket::{
    close_reason, encode_close, encode_frame, FrameDecoder, FrameError, Incoming, OpCode,
};
use switchyard_engineio_proto::{
    CloseReason, Frame, Message, Packet, TransportKind, WebSocketRole,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::coop;
use tokio::time::timeout;
use tracing::debug;

use crate::engine::{EndGuard, EngineHandler, EngineInner, Entry};
use crate::io::StallGuard;
use crate::limits::Slot;
use crate::log::peer_fault;
use crate::socket::RequestInfo;

/// The peer's stream, with a deadline on every write.
type Io = StallGuard<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes of frames gathered into one write.
const WRITE_BATCH_BYTES: usize = 8 * 1024;

/// Most bytes one read may take, whatever [`EngineConfig::websocket_read_buffer`] says: the
/// read's buffer is on the stack of the poll that reads, under the application's handlers.
///
/// [`EngineConfig::websocket_read_buffer`]: crate::EngineConfig::websocket_read_buffer
pub(crate) const MAX_READ_CHUNK: usize = 16 * 1024;

/// Bytes read and discarded at most, after the close frame, while waiting for the peer to end
/// the connection: closing a socket with unread bytes resets it, which can lose the close
/// frame before the peer reads it.
const LINGER_BYTES: usize = 64 * 1024;

/// The close code of a peer that sends more control frames than allowed (RFC 6455, 7.4.1).
const POLICY_VIOLATION: u16 = 1008;

/// The GUID RFC 6455 appends to the client's key to make the accept value.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (RFC 6455, 4.2.2).
fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
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
    let accept = HeaderValue::from_str(&accept_key(key.as_bytes())).ok()?;
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
    tokio::spawn(run(inner, entry, on_upgrade, Some(Box::new(open))));
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
            let mut connection = Connection::new(&inner, upgraded);
            let _ = timeout(limit, connection.close()).await;
        }
    });
    response
}

/// One WebSocket: the peer's stream, the decoder of its frames, and what the server owes it.
///
/// It lives in the connection's task for the connection's life: every field is paid by every
/// idle connection.
struct Connection {
    io: Io,
    decoder: FrameDecoder,
    /// The payload of the last ping not answered yet: only the latest needs its pong.
    pong: Option<Bytes>,
    /// Control frames the peer sent since the session's timer last fired (about one ping
    /// interval): a peer may not make the server read control frames without end.
    control_frames: u32,
    /// How the connection ends.
    closing: Closing,
}

/// The close frame that ends a connection.
#[derive(Debug, Clone, Copy)]
enum Closing {
    /// A close frame with no code.
    Plain,
    /// The answer to the client's close frame: its code back, with no reason.
    Echo(u16),
    /// The server refuses the client's frames: the code, and the reason [`close_reason`] gives.
    Refuse(u16),
    /// No close frame: a write broke off in the middle of a frame, so whatever followed would
    /// be read as the rest of it.
    Abort,
}

impl Connection {
    fn new<H: EngineHandler>(
        inner: &EngineInner<H>,
        upgraded: hyper::upgrade::Upgraded,
    ) -> Connection {
        Connection {
            // Every write to the peer, pongs and close frames included, fails once it has
            // made no progress for the write timeout.
            io: StallGuard::new(TokioIo::new(upgraded), inner.config.write_timeout),
            decoder: FrameDecoder::new(inner.config.session.max_payload),
            pong: None,
            control_frames: 0,
            closing: Closing::Plain,
        }
    }

    /// Writes the close frame, ends the stream, and reads what the peer still sends until it
    /// ends its side too (at most [`LINGER_BYTES`]); the caller bounds the whole in time.
    async fn close(&mut self) {
        let (code, reason) = match self.closing {
            Closing::Plain => (None, ""),
            Closing::Echo(code) => (Some(code), ""),
            Closing::Refuse(code) => (Some(code), close_reason(code)),
            Closing::Abort => return,
        };
        let mut frame = Vec::new();
        encode_close(code, reason, &mut frame);
        if self.io.write_all(&frame).await.is_err() || self.io.shutdown().await.is_err() {
            return;
        }
        let mut discarded = 0;
        let mut chunk = [0u8; 1024];
        while discarded < LINGER_BYTES {
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(count) => discarded += count,
            }
        }
    }
}

/// Runs one WebSocket: reads frames into the session, writes what it queues, drives its timers.
///
/// This future lives as long as the connection, so its size is part of every idle
/// connection's memory: what is awaited once (the upgrade, the close) is boxed, so that only
/// the loop's own state stays. It is an `async move` block rather than an `async fn`, whose
/// arguments would be kept twice (as arguments and as the body's locals), and the open
/// packet comes boxed: both would be held for the connection's whole life.
#[allow(clippy::manual_async_fn)] // on purpose: see above.
fn run<H: EngineHandler>(
    inner: Arc<EngineInner<H>>,
    entry: Arc<Entry<H::Connection>>,
    on_upgrade: OnUpgrade,
    open: Option<Box<Frame>>,
) -> impl Future<Output = ()> + Send {
    async move {
        // If this task stops early, its WebSocket is gone: the session (or its upgrade) ends.
        let mut guard = EndGuard::new(&inner, &entry, |core| {
            core.websocket_closed(CloseReason::TransportError)
        });
        let Some(mut connection) = Box::pin(open_connection(&inner, &entry, on_upgrade)).await
        else {
            guard.disarm();
            let ((), events) = entry
                .socket
                .update(|core, _| core.websocket_closed(CloseReason::TransportError));
            inner.dispatch(&entry, events);
            return;
        };
        let mut outgoing: Vec<Frame> = open.map(|open| *open).into_iter().collect();
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
            if !outgoing.is_empty() || connection.pong.is_some() {
                let bytes = outgoing.iter().map(Frame::len).sum();
                inner.counters.sent(outgoing.len() as u64, bytes);
                // A batch may take the heartbeat budget in all, while it progresses; the stream's
                // own guard cuts a write that stalls for the write timeout.
                let limit = inner.config.heartbeat_budget();
                if let Err(reason) = write_all(&entry, &mut connection, &mut outgoing, limit).await
                {
                    // The write may have stopped inside a frame: no close frame can follow.
                    connection.closing = Closing::Abort;
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
                read = std::future::poll_fn(|cx| read_ready(cx, &inner, &entry, &mut connection)) => {
                    if let AfterRead::End(reason) = read {
                        break Some(reason);
                    }
                }
                _ = woken => {}
                _ = &mut timer => {
                    armed = None;
                    connection.control_frames = 0;
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
        let _ = Box::pin(timeout(limit, connection.close())).await;
    }
}

/// Waits for hyper to hand the connection over (once the 101 is written; bounded like any
/// write); `None` if the upgrade failed or timed out.
async fn open_connection<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    on_upgrade: OnUpgrade,
) -> Option<Connection> {
    match timeout(inner.config.peer_write_limit(), on_upgrade).await {
        Ok(Ok(upgraded)) => Some(Connection::new(inner, upgraded)),
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

/// Why a batch could not be written.
enum WriteEnd {
    Failed(std::io::Error),
    /// The batch took the whole limit, progressing or not.
    TookTooLong,
}

/// Writes the pong owed, then `outgoing`, as frames gathered into writes of about
/// [`WRITE_BATCH_BYTES`], then flushes; within `limit` once it has to wait.
///
/// Polled by hand rather than built from write and timeout futures: those would sit in the
/// connection's task, sized for the largest of them, for the connection's whole life. The
/// timer is only made (boxed) when a write has to wait, which an idle or healthy connection
/// never does, and the batch's buffer lives as long as the batch.
async fn write_all<C>(
    entry: &Entry<C>,
    connection: &mut Connection,
    outgoing: &mut Vec<Frame>,
    limit: Duration,
) -> Result<(), CloseReason> {
    // Frames are taken from the back, each as the buffer has room for it.
    outgoing.reverse();
    let mut buffer: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let result = std::future::poll_fn(|cx| {
        let progress = loop {
            if written == buffer.len() {
                buffer.clear();
                written = 0;
                if let Some(payload) = connection.pong.take() {
                    encode_frame(OpCode::Pong, &payload, &mut buffer);
                }
                while buffer.len() < WRITE_BATCH_BYTES {
                    let Some(frame) = outgoing.pop() else {
                        break;
                    };
                    let opcode = match frame {
                        Frame::Text(_) => OpCode::Text,
                        Frame::Binary(_) => OpCode::Binary,
                    };
                    encode_frame(opcode, frame.as_bytes(), &mut buffer);
                }
                if buffer.is_empty() {
                    break Pin::new(&mut connection.io).poll_flush(cx);
                }
            }
            match Pin::new(&mut connection.io).poll_write(cx, &buffer[written..]) {
                Poll::Ready(Ok(0)) => {
                    break Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(count)) => written += count,
                Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
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
fn write_failed<C>(entry: &Entry<C>, error: &std::io::Error) -> CloseReason {
    if error.kind() == std::io::ErrorKind::TimedOut {
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

/// An instant far enough to mean "never" for a timer.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// What the connection does after reading.
enum AfterRead {
    /// Write what is owed, then wait again.
    Continue,
    /// The WebSocket ends.
    End(CloseReason),
}

/// Reads what the peer sent until nothing more is there, and hands each message to the
/// session; pending only if nothing at all was there.
///
/// Each read goes into a buffer on this poll's stack, decoded at once: nothing is kept between
/// reads but what the decoder needs for a frame in progress. Taking every message already here
/// before writing the answers answers a burst with one write. Each message spends a unit of
/// the runtime's cooperative budget, as each read does: once it is spent, the rest of the read
/// is handed over and no more is read, so the task yields to the others on its worker after
/// about as many messages as the budget holds, however fast the peer sends.
fn read_ready<H: EngineHandler>(
    cx: &mut Context<'_>,
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    connection: &mut Connection,
) -> Poll<AfterRead> {
    let read_chunk = inner.config.websocket_read_buffer.clamp(1, MAX_READ_CHUNK);
    let mut read_any = false;
    let mut budget_spent = false;
    loop {
        if budget_spent {
            // The budget's waker is registered: the task runs again once it has yielded.
            return Poll::Ready(AfterRead::Continue);
        }
        let mut chunk = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
        let mut buffer = ReadBuf::uninit(&mut chunk[..read_chunk]);
        match Pin::new(&mut connection.io).poll_read(cx, &mut buffer) {
            Poll::Pending if read_any => return Poll::Ready(AfterRead::Continue),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => {
                // The connection broke: the reference server reports every end of its
                // WebSocket as "transport close"; only a protocol violation is a "transport
                // error".
                debug!(sid = entry.socket.sid(), %error, "websocket read failed");
                return Poll::Ready(AfterRead::End(CloseReason::TransportClose));
            }
            Poll::Ready(Ok(())) => {}
        }
        let mut data = buffer.filled();
        if data.is_empty() {
            debug!(
                sid = entry.socket.sid(),
                "websocket ended without a close frame"
            );
            return Poll::Ready(AfterRead::End(CloseReason::TransportClose));
        }
        read_any = true;
        while !data.is_empty() {
            let (taken, decoded) = connection.decoder.decode(data);
            data = &data[taken..];
            match decoded {
                Ok(None) => {}
                Ok(Some(incoming)) => {
                    if let Some(reason) = receive(inner, entry, connection, incoming) {
                        return Poll::Ready(AfterRead::End(reason));
                    }
                    match coop::poll_proceed(cx) {
                        Poll::Ready(progress) => progress.made_progress(),
                        Poll::Pending => budget_spent = true,
                    }
                }
                Err(error) => {
                    refuse(entry, connection, &error);
                    return Poll::Ready(AfterRead::End(CloseReason::TransportError));
                }
            }
        }
    }
}

/// Ends a connection whose frames broke the protocol or the payload limit: the close frame
/// says why.
fn refuse<C>(entry: &Entry<C>, connection: &mut Connection, error: &FrameError) {
    peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %error, "websocket frames refused");
    connection.closing = Closing::Refuse(error.close_code());
}

/// Handles one message or control frame; returns why the WebSocket ends if it does.
fn receive<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    connection: &mut Connection,
    incoming: Incoming,
) -> Option<CloseReason> {
    let packet = match incoming {
        Incoming::Text(text) => {
            inner.counters.received(1, text.as_bytes().len());
            match Packet::decode_text(text.as_str()) {
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
            }
        }
        // The message is its own allocation, sized to it: keeping it pins nothing else.
        Incoming::Binary(data) => {
            inner.counters.received(1, data.len());
            Packet::Message(Message::Binary(data))
        }
        Incoming::Ping(_) | Incoming::Pong
            if connection.control_frames >= inner.config.websocket_max_control_frames =>
        {
            peer_fault!(
                entry.socket.faults,
                sid = entry.socket.sid(),
                "websocket control frames over the limit"
            );
            connection.closing = Closing::Refuse(POLICY_VIOLATION);
            return Some(CloseReason::TransportError);
        }
        Incoming::Ping(payload) => {
            connection.control_frames += 1;
            connection.pong = Some(payload);
            return None;
        }
        Incoming::Pong => {
            connection.control_frames += 1;
            return None;
        }
        Incoming::Close(code) => {
            // The closing handshake: the answer echoes the client's code.
            connection.closing = code.map_or(Closing::Plain, Closing::Echo);
            return Some(CloseReason::TransportClose);
        }
    };
    let ((), events) = entry
        .socket
        .update(|core, now| core.handle_packet(now, TransportKind::WebSocket, packet));
    inner.dispatch(entry, events);
    None
}
