//! Shared helpers of the integration tests: a recording echo handler, an engine served on
//! 127.0.0.1:0 with tight timings, a minimal raw HTTP/1.1 client and a WebSocket client.
//!
//! Every wait is bounded: helpers panic after [`LIMIT`] rather than hang.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use switchyard_engineio::{
    serve, CloseReason, Engine, EngineConfig, EngineHandler, Frame, Message, Socket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::WebSocketStream;

pub(crate) use tungstenite::Message as WsMessage;

/// Server ping interval in these tests.
pub(crate) const PING_INTERVAL_MS: u64 = 300;
/// Server pong allowance in these tests.
pub(crate) const PING_TIMEOUT_MS: u64 = 200;
/// Upgrade allowance in these tests.
pub(crate) const UPGRADE_TIMEOUT_MS: u64 = 500;
/// The largest payload the test engines accept.
pub(crate) const MAX_PAYLOAD: usize = 1000;
/// Upper bound of any single wait in a test.
pub(crate) const LIMIT: Duration = Duration::from_secs(3);

/// A duration of `millis` milliseconds.
pub(crate) fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What the handler has seen.
#[derive(Default)]
pub(crate) struct Recorder {
    /// Sessions opened.
    pub opens: AtomicUsize,
    /// Close reasons, in order.
    pub closes: Mutex<Vec<CloseReason>>,
    /// Messages received, in order, from every session.
    pub messages: Mutex<Vec<Message>>,
}

impl Recorder {
    pub(crate) fn closes(&self) -> Vec<CloseReason> {
        self.closes.lock().unwrap().clone()
    }

    pub(crate) fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    pub(crate) fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

/// Echoes every message back and records opens, messages and closes.
pub(crate) struct TestHandler {
    pub recorder: Arc<Recorder>,
}

impl EngineHandler for TestHandler {
    type Connection = Arc<Socket>;

    fn on_open(&self, socket: Arc<Socket>) -> Arc<Socket> {
        self.recorder.opens.fetch_add(1, Ordering::SeqCst);
        socket
    }

    fn on_message(&self, socket: &Arc<Socket>, message: Message) {
        self.recorder.messages.lock().unwrap().push(message.clone());
        let frame = match message {
            Message::Text(text) => Frame::text_message(&text),
            Message::Binary(data) => Frame::binary_message(data),
        };
        let _ = socket.send(frame);
    }

    fn on_close(&self, _: &Arc<Socket>, reason: CloseReason) {
        self.recorder.closes.lock().unwrap().push(reason);
    }
}

/// The tight test configuration; handshakes carrying `deny=1` are refused.
pub(crate) fn config() -> EngineConfig {
    EngineConfig::default()
        .ping_interval(ms(PING_INTERVAL_MS))
        .ping_timeout(ms(PING_TIMEOUT_MS))
        .upgrade_timeout(ms(UPGRADE_TIMEOUT_MS))
        .max_payload(MAX_PAYLOAD)
        .allow_request(|info| info.query_param("deny").is_none())
}

/// A test engine and its recorder, built but not served.
pub(crate) fn engine(config: EngineConfig) -> (Engine<TestHandler>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::new(
        config,
        TestHandler {
            recorder: recorder.clone(),
        },
    );
    (engine, recorder)
}

/// An engine served with [`serve`] on a loopback port; the server task ends with the test.
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub engine: Engine<TestHandler>,
    pub recorder: Arc<Recorder>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        Server::with_config(config()).await
    }

    pub(crate) async fn with_config(config: EngineConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (engine, recorder) = engine(config);
        let task = tokio::spawn(serve(listener, engine.clone()));
        Server {
            addr,
            engine,
            recorder,
            task,
        }
    }

    /// The one open session's socket.
    pub(crate) fn only_socket(&self) -> Arc<Socket> {
        let sockets = self.engine.sockets();
        assert_eq!(sockets.len(), 1, "expected exactly one session");
        sockets[0].clone()
    }

    /// Waits until no session is left and the handler saw exactly `expected` closes, then
    /// checks that no further close comes shortly after.
    pub(crate) async fn assert_all_closed(&self, expected: &[CloseReason]) {
        let engine = self.engine.clone();
        let recorder = self.recorder.clone();
        let count = expected.len();
        let done = wait_until(LIMIT, || {
            engine.session_count() == 0 && recorder.closes().len() >= count
        })
        .await;
        assert!(
            done,
            "sessions still open: {}, closes seen: {:?}",
            self.engine.session_count(),
            self.recorder.closes()
        );
        tokio::time::sleep(ms(50)).await;
        assert_eq!(self.engine.session_count(), 0);
        assert_eq!(self.recorder.closes(), expected);
    }
}

/// Polls `condition` every 5 ms until it holds (true) or `limit` passes (false).
pub(crate) async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(ms(5)).await;
    }
}

/// Waits until a long-polling GET waits on session `sid` of `engine`.
pub(crate) async fn until_poll_waiting<H: EngineHandler>(engine: &Engine<H>, sid: &str) {
    let waiting = wait_until(LIMIT, || {
        engine
            .sockets()
            .iter()
            .any(|socket| socket.sid() == sid && socket.poll_waiting())
    })
    .await;
    assert!(waiting, "no GET waiting on session {sid}");
}

/// Awaits `future`, panicking if it takes longer than [`LIMIT`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

// ----- HTTP -------------------------------------------------------------------------------

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of header `name`.
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The body as UTF-8.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// The engine path with `query`.
pub(crate) fn path(query: &str) -> String {
    format!("/engine.io/?{query}")
}

/// The polling path of session `sid`.
pub(crate) fn poll_path(sid: &str) -> String {
    path(&format!("EIO=4&transport=polling&sid={sid}"))
}

/// Writes one request (with `Connection: close`) on a new connection and returns the
/// connection without reading.
pub(crate) async fn send_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    stream
        .write_all(&request_head(method, target, headers, Some(body.len())))
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The head of a request; `content_length` adds the header when given.
pub(crate) fn request_head(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
) -> Vec<u8> {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = content_length {
        if len > 0 || method == "POST" {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Reads a whole response: the server closes the connection after it.
pub(crate) async fn read_response(mut stream: TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    within("response", stream.read_to_end(&mut raw))
        .await
        .unwrap();
    parse_response(&raw)
}

/// Parses a response read to the end of the connection.
pub(crate) fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let rest = &raw[split + 4..];
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        response.body = decode_chunked(rest);
    } else {
        response.body = rest.to_vec();
        if let Some(len) = response.header("content-length") {
            assert_eq!(len.parse::<usize>().unwrap(), response.body.len());
        }
    }
    response
}

fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
        rest = &rest[end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// One request on its own connection, and its response.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    read_response(send_request(addr, method, target, headers, body).await).await
}

/// A polling GET for `sid`.
pub(crate) async fn get(addr: SocketAddr, sid: &str) -> HttpResponse {
    request(addr, "GET", &poll_path(sid), &[], b"").await
}

/// A polling POST for `sid`.
pub(crate) async fn post(addr: SocketAddr, sid: &str, body: &[u8]) -> HttpResponse {
    request(addr, "POST", &poll_path(sid), &[], body).await
}

/// A polling GET started on its own task.
pub(crate) fn spawn_get(addr: SocketAddr, sid: &str) -> JoinHandle<HttpResponse> {
    let sid = sid.to_owned();
    tokio::spawn(async move { get(addr, &sid).await })
}

/// Asserts a `200 ok` answer to a POST.
pub(crate) fn assert_ok(response: &HttpResponse) {
    assert_eq!(response.status, 200, "body: {:?}", response.text());
    assert_eq!(response.header("content-type"), Some("text/html"));
    assert_eq!(response.text(), "ok");
}

/// Asserts an Engine.IO JSON error answer.
pub(crate) fn assert_error(response: &HttpResponse, status: u16, code: u8, message: &str) {
    assert_eq!(response.status, status);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.text(),
        format!(r#"{{"code":{code},"message":"{message}"}}"#)
    );
}

/// The open packet a test engine sends for `sid`.
pub(crate) fn open_packet(sid: &str, upgrades: &str) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":[{upgrades}],"pingInterval":{PING_INTERVAL_MS},"pingTimeout":{PING_TIMEOUT_MS},"maxPayload":{MAX_PAYLOAD}}}"#
    )
}

/// The sid in an open packet.
pub(crate) fn sid_of(open: &str) -> String {
    let rest = open
        .strip_prefix(r#"0{"sid":""#)
        .unwrap_or_else(|| panic!("not an open packet: {open:?}"));
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A polling handshake; checks the open packet exactly and returns the sid.
pub(crate) async fn handshake(addr: SocketAddr) -> String {
    let response = request(addr, "GET", &path("EIO=4&transport=polling"), &[], b"").await;
    assert_eq!(response.status, 200);
    let sid = sid_of(response.text());
    assert_eq!(response.text(), open_packet(&sid, r#""websocket""#));
    sid
}

/// Runs `poll` until it answers something else than a noop; returns that.
pub(crate) async fn get_skipping_noops(addr: SocketAddr, sid: &str) -> HttpResponse {
    let deadline = Instant::now() + LIMIT;
    loop {
        let response = get(addr, sid).await;
        if response.status != 200 || response.text() != "6" {
            return response;
        }
        assert!(Instant::now() < deadline, "only noops");
        tokio::time::sleep(ms(20)).await;
    }
}

// ----- WebSocket --------------------------------------------------------------------------

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to the engine with `query` (`EIO=4&transport=websocket` added).
pub(crate) async fn ws_connect(addr: SocketAddr, query: &str) -> Ws {
    match ws_try_connect(addr, query).await {
        Ok(ws) => ws,
        Err(error) => panic!("websocket handshake failed: {error}"),
    }
}

/// Opens a WebSocket, returning the handshake error if the server refuses.
pub(crate) async fn ws_try_connect(
    addr: SocketAddr,
    query: &str,
) -> Result<Ws, tungstenite::Error> {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let url = format!("ws://{addr}/engine.io/?EIO=4&transport=websocket{query}");
    within(
        "websocket handshake",
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .map(|(ws, _)| ws)
}

/// Opens a WebSocket session of its own; checks the open packet and returns the sid.
pub(crate) async fn ws_handshake(addr: SocketAddr) -> (Ws, String) {
    let mut ws = ws_connect(addr, "").await;
    let open = ws_recv_text(&mut ws).await;
    let sid = sid_of(&open);
    assert_eq!(open, open_packet(&sid, ""));
    (ws, sid)
}

/// The next message, whatever it is; `None` once the stream ended.
pub(crate) async fn ws_next(ws: &mut Ws) -> Option<Result<WsMessage, tungstenite::Error>> {
    within("websocket message", ws.next()).await
}

/// The next message, which must be text.
pub(crate) async fn ws_recv_text(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Some(Ok(WsMessage::Text(text))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message that is not a ping; pings (`2`) are answered with `3`.
pub(crate) async fn ws_recv_answering_pings(ws: &mut Ws) -> WsMessage {
    loop {
        match ws_next(ws).await {
            Some(Ok(WsMessage::Text(text))) if text.as_str() == "2" => {
                ws_send_text(ws, "3").await;
            }
            Some(Ok(message)) => return message,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Sends a text frame.
pub(crate) async fn ws_send_text(ws: &mut Ws, text: &str) {
    within("websocket send", ws.send(WsMessage::text(text)))
        .await
        .unwrap();
}

/// Sends a binary frame.
pub(crate) async fn ws_send_binary(ws: &mut Ws, data: &[u8]) {
    within("websocket send", ws.send(WsMessage::binary(data.to_vec())))
        .await
        .unwrap();
}

/// Reads until the server's close frame and returns it, reading pings (`2`) without answering
/// them; then checks the stream ends.
pub(crate) async fn ws_expect_close(ws: &mut Ws) -> Option<tungstenite::protocol::CloseFrame> {
    let frame = loop {
        match ws_next(ws).await {
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(WsMessage::Text(text))) if text.as_str() == "2" => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    match ws_next(ws).await {
        None | Some(Err(tungstenite::Error::ConnectionClosed)) => frame,
        other => panic!("expected the end of the stream, got {other:?}"),
    }
}

/// An Engine.IO upgrade: opens a WebSocket for `sid` and completes the probe.
pub(crate) async fn ws_probe(addr: SocketAddr, sid: &str) -> Ws {
    let mut ws = ws_connect(addr, &format!("&sid={sid}")).await;
    ws_send_text(&mut ws, "2probe").await;
    assert_eq!(ws_recv_text(&mut ws).await, "3probe");
    ws
}
