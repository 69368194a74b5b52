//! The Engine.IO v4 client: handshake, long-polling, WebSocket, upgrade and heartbeat.
//!
//! One task per connection owns the session: it reads what the transport delivers, answers
//! pings, writes what the manager sends, watches the ping deadline and runs the upgrade from
//! polling to WebSocket. Each transport runs in tasks of its own (the polling GET loop, the
//! polling POST writer, or one WebSocket task) and reports into one channel.

pub(crate) mod endpoint;
mod http;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use switchyard_engineio_proto::{
    decode_payload, encode_payload, Frame, Message, Packet, TransportKind,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::{self, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, trace};

pub(crate) use endpoint::Endpoint;
use http::HttpConn;

use crate::config::Transports;
use crate::error::EngineError;

type WsStream = WebSocketStream<TcpStream>;
type WsMessage = tungstenite::Message;

/// How long a forced close may take to get the close packet out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the engine needs to know, shared by every connection of one manager.
#[derive(Debug)]
pub(crate) struct EngineSettings {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) transports: Transports,
    pub(crate) timeout: Duration,
    pub(crate) upgrade_timeout: Duration,
    pub(crate) max_response_bytes: usize,
}

/// Why an Engine.IO connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The server closed it, or the transport ended.
    TransportClose,
    /// A request or the WebSocket failed.
    TransportError,
    /// No ping within pingInterval + pingTimeout.
    PingTimeout,
    /// The client closed it.
    ForcedClose,
}

/// What an engine reports to its manager.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    /// An application message.
    Message(Message),
    /// The connection moved to another transport.
    Upgraded(TransportKind),
    /// The connection is gone.
    Closed(CloseReason),
}

enum EngineCommand {
    Send(Vec<Frame>),
    Close,
}

/// A handle on an open Engine.IO connection.
pub(crate) struct Engine {
    /// The Engine.IO session id.
    pub(crate) sid: String,
    /// The transport it opened with.
    pub(crate) transport: TransportKind,
    /// Its reports; `Closed` comes last.
    pub(crate) events: mpsc::UnboundedReceiver<EngineEvent>,
    commands: mpsc::UnboundedSender<EngineCommand>,
    task: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens a connection: the handshake on the first transport, within `settings.timeout`.
    pub(crate) async fn open(settings: Arc<EngineSettings>) -> Result<Engine, EngineError> {
        timeout(settings.timeout, open(settings.clone()))
            .await
            .map_err(|_| EngineError::Timeout)?
    }

    /// Queues frames for the server, in order.
    pub(crate) fn send(&self, frames: Vec<Frame>) {
        let _ = self.commands.send(EngineCommand::Send(frames));
    }

    /// Sends the close packet after what is queued and waits (briefly) for it to leave.
    pub(crate) async fn close(mut self) {
        let _ = self.commands.send(EngineCommand::Close);
        if let Some(mut task) = self.task.take() {
            if timeout(CLOSE_GRACE * 2, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn open(settings: Arc<EngineSettings>) -> Result<Engine, EngineError> {
    let endpoint = settings.endpoint.clone();
    let (tin_tx, tin_rx) = mpsc::unbounded_channel();
    let (open, transport) = match settings.transports {
        Transports::WebSocket => {
            let mut ws = connect_websocket(&endpoint, None).await?;
            let open = loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Text(text))) => match Packet::decode_text(text.as_str()) {
                        Ok(Packet::Open(open)) => break open,
                        _ => return Err(EngineError::Handshake(truncate(text.as_str()))),
                    },
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                    Some(Ok(_)) => {
                        return Err(EngineError::Handshake("expected an open packet".into()))
                    }
                    Some(Err(error)) => return Err(error.into()),
                    None => return Err(EngineError::Closed),
                }
            };
            (open, Transport::WebSocket(WebSocket::start(ws, tin_tx)))
        }
        Transports::Polling | Transports::PollingThenWebSocket => {
            let mut get = HttpConn::new(endpoint.clone(), settings.max_response_bytes);
            let query = endpoint.path_and_query(TransportKind::Polling, None);
            let body = get.request(Method::GET, &query, Bytes::new()).await?;
            let mut packets = decode_payload(&body, usize::MAX)
                .map_err(|error| EngineError::Handshake(error.to_string()))?
                .into_iter();
            let open = match packets.next() {
                Some(Packet::Open(open)) => open,
                _ => {
                    return Err(EngineError::Handshake(truncate(&String::from_utf8_lossy(
                        &body,
                    ))))
                }
            };
            let rest: Vec<Packet> = packets.collect();
            if !rest.is_empty() {
                let _ = tin_tx.send(TransportIn::Packets(rest));
            }
            let post = HttpConn::new(endpoint.clone(), settings.max_response_bytes);
            let polling = Polling::start(
                &endpoint,
                &open.sid,
                get,
                post,
                tin_tx,
                usize::try_from(open.max_payload).unwrap_or(usize::MAX),
            );
            (open, Transport::Polling(polling))
        }
    };
    debug!(sid = %open.sid, transport = ?transport.kind(), "engine.io connection open");
    let ping_window = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
    let probe = (settings.transports == Transports::PollingThenWebSocket
        && open.upgrades.iter().any(|name| name == "websocket"))
    .then(|| {
        let endpoint = endpoint.clone();
        let sid = open.sid.clone();
        let limit = settings.upgrade_timeout;
        tokio::spawn(async move {
            timeout(limit, probe(&endpoint, &sid))
                .await
                .map_err(|_| EngineError::Timeout)?
        })
    });
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let kind = transport.kind();
    let task = EngineTask {
        ping_window,
        ping_deadline: Instant::now() + ping_window,
        transport,
        tin: tin_rx,
        commands: commands_rx,
        events: events_tx,
        probe,
        upgrade: None,
    };
    Ok(Engine {
        sid: open.sid,
        transport: kind,
        events: events_rx,
        commands: commands_tx,
        task: Some(tokio::spawn(task.run())),
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

/// What a transport reports to its engine task.
enum TransportIn {
    Packets(Vec<Packet>),
    /// The polling GET loop stopped because the transport was paused for an upgrade.
    PollStopped,
    Error(EngineError),
    Closed,
}

enum Transport {
    Polling(Polling),
    WebSocket(WebSocket),
}

impl Transport {
    fn kind(&self) -> TransportKind {
        match self {
            Transport::Polling(_) => TransportKind::Polling,
            Transport::WebSocket(_) => TransportKind::WebSocket,
        }
    }

    fn send(&self, frames: Vec<Frame>) {
        match self {
            Transport::Polling(polling) => {
                let _ = polling.writer.send(WriterMsg::Frames(frames));
            }
            Transport::WebSocket(ws) => {
                if let Some(writer) = &ws.writer {
                    let _ = writer.send(frames);
                }
            }
        }
    }
}

/// An upgrade in progress: the WebSocket answered the probe; polling is being paused.
struct Upgrade {
    ws: WsStream,
    poll_stopped: bool,
    flush: Option<oneshot::Receiver<()>>,
    /// Frames written while the polling transport is paused, for the WebSocket.
    pending: Vec<Frame>,
}

struct EngineTask {
    ping_window: Duration,
    ping_deadline: Instant,
    transport: Transport,
    tin: mpsc::UnboundedReceiver<TransportIn>,
    commands: mpsc::UnboundedReceiver<EngineCommand>,
    events: mpsc::UnboundedSender<EngineEvent>,
    probe: Option<JoinHandle<Result<WsStream, EngineError>>>,
    upgrade: Option<Upgrade>,
}

impl EngineTask {
    async fn run(mut self) {
        let reason = loop {
            let deadline = self.ping_deadline;
            let flush = self
                .upgrade
                .as_mut()
                .and_then(|upgrade| upgrade.flush.as_mut());
            tokio::select! {
                incoming = self.tin.recv() => match incoming {
                    Some(TransportIn::Packets(packets)) => {
                        if let Some(reason) = self.on_packets(packets) {
                            break reason;
                        }
                    }
                    Some(TransportIn::PollStopped) => {
                        if let Some(upgrade) = self.upgrade.as_mut() {
                            upgrade.poll_stopped = true;
                        }
                    }
                    Some(TransportIn::Error(error)) => {
                        debug!(%error, "engine.io transport error");
                        break CloseReason::TransportError;
                    }
                    Some(TransportIn::Closed) | None => break CloseReason::TransportClose,
                },
                command = self.commands.recv() => match command {
                    Some(EngineCommand::Send(frames)) => self.write(frames),
                    Some(EngineCommand::Close) | None => {
                        self.close_gracefully().await;
                        break CloseReason::ForcedClose;
                    }
                },
                () = sleep_until(deadline) => break CloseReason::PingTimeout,
                probed = join_option(&mut self.probe) => {
                    self.probe = None;
                    match probed {
                        Ok(Ok(ws)) => self.start_upgrade(ws),
                        Ok(Err(error)) => debug!(%error, "websocket probe failed, staying on polling"),
                        Err(error) => debug!(%error, "websocket probe task failed"),
                    }
                }
                flushed = recv_option(flush) => {
                    if let Some(upgrade) = self.upgrade.as_mut() {
                        upgrade.flush = None;
                        if flushed.is_err() {
                            debug!("polling writer gone during upgrade");
                        }
                    }
                }
            }
            self.finish_upgrade_when_ready();
        };
        debug!(?reason, "engine.io connection closed");
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        let _ = self.events.send(EngineEvent::Closed(reason));
    }

    fn on_packets(&mut self, packets: Vec<Packet>) -> Option<CloseReason> {
        for packet in packets {
            match packet {
                Packet::Ping(data) => {
                    trace!("ping");
                    self.ping_deadline = Instant::now() + self.ping_window;
                    self.write(vec![Packet::Pong(data).encode()]);
                }
                Packet::Message(message) => {
                    let _ = self.events.send(EngineEvent::Message(message));
                }
                Packet::Close => return Some(CloseReason::TransportClose),
                Packet::Noop | Packet::Pong(_) | Packet::Open(_) | Packet::Upgrade => {}
            }
        }
        None
    }

    fn write(&mut self, frames: Vec<Frame>) {
        match self.upgrade.as_mut() {
            Some(upgrade) => upgrade.pending.extend(frames),
            None => self.transport.send(frames),
        }
    }

    /// The probe succeeded: pause polling (stop the GET loop after its current request and
    /// let the writer drain) before switching.
    fn start_upgrade(&mut self, ws: WsStream) {
        let Transport::Polling(polling) = &self.transport else {
            return;
        };
        debug!("websocket probe answered, pausing polling");
        polling.pause.store(true, Ordering::Release);
        let (done_tx, done_rx) = oneshot::channel();
        let _ = polling.writer.send(WriterMsg::Flush(done_tx));
        self.upgrade = Some(Upgrade {
            ws,
            poll_stopped: false,
            flush: Some(done_rx),
            pending: Vec::new(),
        });
    }

    /// Polling is paused and drained: send `5` on the WebSocket and move over to it.
    fn finish_upgrade_when_ready(&mut self) {
        let ready = self
            .upgrade
            .as_ref()
            .is_some_and(|upgrade| upgrade.poll_stopped && upgrade.flush.is_none());
        if !ready {
            return;
        }
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        let (tin_tx, tin_rx) = mpsc::unbounded_channel();
        let ws = WebSocket::start(upgrade.ws, tin_tx);
        let mut frames = vec![Packet::Upgrade.encode()];
        frames.extend(upgrade.pending);
        if let Some(writer) = &ws.writer {
            let _ = writer.send(frames);
        }
        // Dropping the polling transport stops its tasks; nothing is in flight any more.
        self.transport = Transport::WebSocket(ws);
        self.tin = tin_rx;
        debug!("upgraded to websocket");
        let _ = self
            .events
            .send(EngineEvent::Upgraded(TransportKind::WebSocket));
    }

    async fn close_gracefully(&mut self) {
        let close = vec![Packet::Close.encode()];
        match &mut self.transport {
            Transport::Polling(polling) => {
                // No new GET after the one in flight: the server forgets the session on the
                // close packet and would refuse it (`Session ID unknown`).
                polling.pause.store(true, Ordering::Release);
                let (done_tx, done_rx) = oneshot::channel();
                let _ = polling.writer.send(WriterMsg::Frames(close));
                let _ = polling.writer.send(WriterMsg::Flush(done_tx));
                let _ = timeout(CLOSE_GRACE, done_rx).await;
            }
            Transport::WebSocket(ws) => {
                if let Some(writer) = ws.writer.take() {
                    let _ = writer.send(close);
                }
                if let Some(task) = ws.task.as_mut() {
                    let _ = timeout(CLOSE_GRACE, task).await;
                }
            }
        }
    }
}

/// Awaits an optional task; pending forever when there is none.
async fn join_option<T>(handle: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Awaits an optional oneshot; pending forever when there is none.
async fn recv_option(
    receiver: Option<&mut oneshot::Receiver<()>>,
) -> Result<(), oneshot::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Long-polling

enum WriterMsg {
    Frames(Vec<Frame>),
    /// Answered once everything queued before it has been POSTed.
    Flush(oneshot::Sender<()>),
}

struct Polling {
    writer: mpsc::UnboundedSender<WriterMsg>,
    pause: Arc<AtomicBool>,
    get_task: JoinHandle<()>,
    post_task: JoinHandle<()>,
}

impl Polling {
    fn start(
        endpoint: &Endpoint,
        sid: &str,
        get: HttpConn,
        post: HttpConn,
        tin: mpsc::UnboundedSender<TransportIn>,
        max_payload: usize,
    ) -> Polling {
        let query = endpoint.path_and_query(TransportKind::Polling, Some(sid));
        let pause = Arc::new(AtomicBool::new(false));
        let (writer, writer_rx) = mpsc::unbounded_channel();
        let get_task = tokio::spawn(poll_loop(get, query.clone(), pause.clone(), tin.clone()));
        let post_task = tokio::spawn(post_loop(post, query, writer_rx, tin, max_payload));
        Polling {
            writer,
            pause,
            get_task,
            post_task,
        }
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.get_task.abort();
        self.post_task.abort();
    }
}

/// Long-polls with GET until paused or failed.
async fn poll_loop(
    mut conn: HttpConn,
    query: String,
    pause: Arc<AtomicBool>,
    tin: mpsc::UnboundedSender<TransportIn>,
) {
    loop {
        if pause.load(Ordering::Acquire) {
            let _ = tin.send(TransportIn::PollStopped);
            return;
        }
        let body = match conn.request(Method::GET, &query, Bytes::new()).await {
            Ok(body) => body,
            Err(error) => {
                let _ = tin.send(TransportIn::Error(error));
                return;
            }
        };
        if body.is_empty() {
            // Servers always answer with at least one packet; looping on empty answers
            // would spin.
            let _ = tin.send(TransportIn::Error(EngineError::Decode(
                "empty polling response".to_owned(),
            )));
            return;
        }
        match decode_payload(&body, usize::MAX) {
            Ok(packets) => {
                if tin.send(TransportIn::Packets(packets)).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = tin.send(TransportIn::Error(EngineError::Decode(error.to_string())));
                return;
            }
        }
    }
}

/// POSTs queued frames, as many per request as `max_payload` allows.
async fn post_loop(
    mut conn: HttpConn,
    query: String,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    tin: mpsc::UnboundedSender<TransportIn>,
    max_payload: usize,
) {
    let mut queue: VecDeque<Frame> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let absorb = |message: WriterMsg,
                  queue: &mut VecDeque<Frame>,
                  flushes: &mut Vec<oneshot::Sender<()>>| match message {
        WriterMsg::Frames(frames) => queue.extend(frames),
        WriterMsg::Flush(done) => flushes.push(done),
    };
    loop {
        while let Ok(message) = rx.try_recv() {
            absorb(message, &mut queue, &mut flushes);
        }
        if queue.is_empty() {
            for done in std::mem::take(&mut flushes) {
                let _ = done.send(());
            }
            match rx.recv().await {
                Some(message) => {
                    absorb(message, &mut queue, &mut flushes);
                    continue;
                }
                None => return,
            }
        }
        let batch = take_batch(&mut queue, max_payload);
        let body = encode_payload(batch.iter());
        if let Err(error) = conn.request(Method::POST, &query, body).await {
            let _ = tin.send(TransportIn::Error(error));
            return;
        }
    }
}

/// The frames of the next POST: at least one, then more while the payload fits.
fn take_batch(queue: &mut VecDeque<Frame>, max_payload: usize) -> Vec<Frame> {
    let mut batch = Vec::new();
    let mut size = 0usize;
    while let Some(frame) = queue.front() {
        let len = match frame {
            Frame::Text(text) => text.as_bytes().len(),
            // `b` plus base64.
            Frame::Binary(data) => 1 + data.len().div_ceil(3) * 4,
        } + usize::from(!batch.is_empty());
        if !batch.is_empty() && size + len > max_payload {
            break;
        }
        size += len;
        if let Some(frame) = queue.pop_front() {
            batch.push(frame);
        }
    }
    batch
}

// ---------------------------------------------------------------------------------------------
// WebSocket

struct WebSocket {
    writer: Option<mpsc::UnboundedSender<Vec<Frame>>>,
    task: Option<JoinHandle<()>>,
}

impl WebSocket {
    fn start(ws: WsStream, tin: mpsc::UnboundedSender<TransportIn>) -> WebSocket {
        let (writer, rx) = mpsc::unbounded_channel();
        WebSocket {
            writer: Some(writer),
            task: Some(tokio::spawn(websocket_loop(ws, rx, tin))),
        }
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn connect_websocket(
    endpoint: &Endpoint,
    sid: Option<&str>,
) -> Result<WsStream, EngineError> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(EngineError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (ws, _response) =
        tokio_tungstenite::client_async(endpoint.websocket_url(sid), stream).await?;
    Ok(ws)
}

/// Opens a WebSocket for session `sid` and checks that it answers `2probe` with `3probe`.
async fn probe(endpoint: &Endpoint, sid: &str) -> Result<WsStream, EngineError> {
    let mut ws = connect_websocket(endpoint, Some(sid)).await?;
    ws.send(WsMessage::text("2probe")).await?;
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) if text.as_str() == "3probe" => return Ok(ws),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
            Some(Ok(other)) => {
                return Err(EngineError::Handshake(format!(
                    "unexpected probe answer {:?}",
                    other.to_text().map(truncate).unwrap_or_default()
                )))
            }
            Some(Err(error)) => return Err(error.into()),
            None => return Err(EngineError::Closed),
        }
    }
}

fn to_ws_message(frame: Frame) -> Option<WsMessage> {
    match frame {
        Frame::Text(text) => Utf8Bytes::try_from(text.into_bytes())
            .ok()
            .map(WsMessage::Text),
        Frame::Binary(data) => Some(WsMessage::Binary(data)),
    }
}

/// Reads packets and writes frames on one WebSocket until either side ends it.
async fn websocket_loop(
    mut ws: WsStream,
    mut rx: mpsc::UnboundedReceiver<Vec<Frame>>,
    tin: mpsc::UnboundedSender<TransportIn>,
) {
    loop {
        tokio::select! {
            received = ws.next() => {
                let packet = match received {
                    Some(Ok(WsMessage::Text(text))) => match Packet::decode_text(text.as_str()) {
                        Ok(packet) => packet,
                        Err(error) => {
                            let _ = tin.send(TransportIn::Error(EngineError::Decode(error.to_string())));
                            return;
                        }
                    },
                    // Copied so that one kept payload does not pin the whole read buffer.
                    Some(Ok(WsMessage::Binary(data))) => Packet::decode_binary(Bytes::copy_from_slice(&data)),
                    Some(Ok(WsMessage::Close(_))) | None => {
                        let _ = tin.send(TransportIn::Closed);
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        let _ = tin.send(TransportIn::Error(error.into()));
                        return;
                    }
                };
                if tin.send(TransportIn::Packets(vec![packet])).is_err() {
                    return;
                }
            }
            frames = rx.recv() => {
                let Some(frames) = frames else {
                    let _ = ws.close(None).await;
                    return;
                };
                if let Err(error) = write_frames(&mut ws, frames, &mut rx).await {
                    let _ = tin.send(TransportIn::Error(error.into()));
                    return;
                }
            }
        }
    }
}

/// Writes `frames` and whatever else is queued, then flushes once.
async fn write_frames(
    ws: &mut WsStream,
    frames: Vec<Frame>,
    rx: &mut mpsc::UnboundedReceiver<Vec<Frame>>,
) -> Result<(), tungstenite::Error> {
    let mut batch = frames;
    loop {
        for frame in batch {
            if let Some(message) = to_ws_message(frame) {
                ws.feed(message).await?;
            }
        }
        match rx.try_recv() {
            Ok(more) => batch = more,
            Err(_) => break,
        }
    }
    ws.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_max_payload_but_always_take_one() {
        let mut queue: VecDeque<Frame> = VecDeque::from(vec![
            Frame::text_message("aaaa"),                     // 5 bytes
            Frame::text_message("bbbb"),                     // 5 + 1 separator
            Frame::binary_message(Bytes::from_static(b"x")), // 1 + 4 + 1
            Frame::text_message(&"c".repeat(50)),
        ]);
        let first = take_batch(&mut queue, 12);
        assert_eq!(first.len(), 2);
        let second = take_batch(&mut queue, 12);
        assert_eq!(
            second,
            vec![Frame::binary_message(Bytes::from_static(b"x"))]
        );
        let third = take_batch(&mut queue, 12);
        assert_eq!(third.len(), 1);
        assert!(queue.is_empty());
        assert!(take_batch(&mut queue, 12).is_empty());
    }
}
