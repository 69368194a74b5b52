//! Hostile peers: refused handshakes, peers that never read, bodies trickled forever, floods of
//! bad packets. After each, every count the engine took is given back and no task is stuck.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use switchyard_engineio::{
    serve, AdmissionStats, CloseReason, Engine, EngineConfig, EngineHandler, Limits, Message,
    Socket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Reads one response head and its `Content-Length` body, without waiting for the connection
/// to end (a refused upgrade may leave it open).
async fn read_one_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse::<usize>().unwrap());
            if raw.len() >= split + 4 + length {
                raw.truncate(split + 4 + length);
                return parse_response(&raw);
            }
        }
        let read = within("response", stream.read(&mut chunk)).await.unwrap();
        assert!(read > 0, "connection ended mid-response: {raw:?}");
        raw.extend_from_slice(&chunk[..read]);
    }
}

/// A polling handshake whatever the engine's timings; returns the sid.
async fn open_polling(addr: std::net::SocketAddr) -> String {
    let response = request(addr, "GET", &path("EIO=4&transport=polling"), &[], b"").await;
    assert_eq!(response.status, 200);
    sid_of(response.text())
}

/// A raw WebSocket handshake request with `headers` (no `Connection: close` added).
fn ws_request(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        path("EIO=4&transport=websocket")
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

const KEY: (&str, &str) = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
const VERSION: (&str, &str) = ("Sec-WebSocket-Version", "13");
const UPGRADE: (&str, &str) = ("Upgrade", "websocket");
const CONNECTION: (&str, &str) = ("Connection", "Upgrade");

/// Waits until the engine holds no session and its admission counts are back to zero.
async fn assert_counts_return_to_zero<H: EngineHandler>(engine: &Engine<H>) {
    let settled = wait_until(LIMIT, || {
        engine.session_count() == 0 && engine.admission_stats() == AdmissionStats::default()
    })
    .await;
    assert!(
        settled,
        "sessions: {}, admission: {:?}",
        engine.session_count(),
        engine.admission_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_aborted_websocket_handshakes_give_their_slot_back() {
    let server = Server::with_config(config().limits(Limits {
        max_sessions_per_ip: Some(2),
        ..Limits::default()
    }))
    .await;
    let refused: [&[(&str, &str)]; 4] = [
        &[UPGRADE, CONNECTION, VERSION], // no key
        &[UPGRADE, CONNECTION, KEY, ("Sec-WebSocket-Version", "12")],
        &[UPGRADE, CONNECTION, KEY], // no version
        &[UPGRADE, ("Connection", "keep-alive"), KEY, VERSION], // no `Connection: Upgrade`
    ];
    // Many more refusals than the address may hold sessions.
    for round in 0..5 {
        for headers in refused {
            let mut stream = within("connect", TcpStream::connect(server.addr))
                .await
                .unwrap();
            stream.write_all(&ws_request(headers)).await.unwrap();
            let response = read_one_response(&mut stream).await;
            assert_eq!(response.status, 400, "round {round}: {headers:?}");
        }
    }
    // Handshakes aborted by the client: the request goes out, the client ends its side at once.
    // Each is waited for until the server has closed the connection too: from then on it can
    // start nothing more for the request (the server may read it late, on a loaded machine,
    // and would then take a slot after the counts were checked).
    for _ in 0..5 {
        let mut stream = within("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        stream
            .write_all(&ws_request(&[UPGRADE, CONNECTION, KEY, VERSION]))
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // A reset ends it as well as a clean end.
        let _ = within(
            "the server ends the connection",
            stream.read_to_end(&mut rest),
        )
        .await;
    }
    assert_counts_return_to_zero(&server.engine).await;
    // The address may still open its sessions, on both transports.
    let sid = handshake(server.addr).await;
    let (mut ws, _) = ws_handshake(server.addr).await;
    assert_eq!(
        server.engine.admission_stats(),
        AdmissionStats {
            sessions: 2,
            addresses: 1,
        }
    );
    ws_send_text(&mut ws, "1").await;
    assert_ok(&post(server.addr, &sid, b"1").await);
    assert_counts_return_to_zero(&server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_second_websocket_and_refused_polling_requests_take_no_slot() {
    let server = Server::with_config(config().limits(Limits {
        max_sessions_per_ip: Some(1),
        ..Limits::default()
    }))
    .await;
    let sid = handshake(server.addr).await;
    // Over the limit: refused, and counted nowhere.
    for _ in 0..3 {
        let refused = request(
            server.addr,
            "GET",
            &path("EIO=4&transport=polling"),
            &[],
            b"",
        )
        .await;
        assert_eq!(refused.status, 429);
    }
    assert_eq!(
        server.engine.admission_stats(),
        AdmissionStats {
            sessions: 1,
            addresses: 1,
        }
    );
    // Bad requests on the live session.
    assert_error(
        &request(server.addr, "PUT", &poll_path(&sid), &[], b"").await,
        400,
        3,
        "Bad request",
    );
    assert_ok(&post(server.addr, &sid, b"1").await);
    assert_counts_return_to_zero(&server.engine).await;
    handshake(server.addr).await;
}

/// One masked client text frame of 125 bytes holding the message `ppp…`, which the test
/// handler echoes. (Pings would not do: the server owes a pong only for the latest ping it
/// read, as RFC 6455 allows, so a ping flood makes it write little.)
fn message_frame() -> Vec<u8> {
    let mut frame = vec![0x81, 0x80 | 125, 0, 0, 0, 0];
    frame.push(b'4');
    frame.extend_from_slice(&[b'p'; 124]);
    frame
}

/// A client that completes the WebSocket handshake, then sends messages (each echoed) and
/// never reads, with a small receive buffer so the server's writes soon stall.
async fn flood_without_reading(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = within("connect", socket.connect(addr)).await.unwrap();
    stream
        .write_all(&ws_request(&[UPGRADE, CONNECTION, KEY, VERSION]))
        .await
        .unwrap();
    // Read the 101 head only; the open packet and everything after are never read.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within("101", stream.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let batch: Vec<u8> = std::iter::repeat_n(message_frame(), 512)
        .flatten()
        .collect();
    // Bounded: at most 400 batches (~26 MB); stop once the server no longer takes them.
    for _ in 0..400 {
        match tokio::time::timeout(ms(500), stream.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_peer_that_never_reads_is_cut_off_by_the_write_timeout() {
    // A heartbeat far longer than the wait: only the write deadline can end this session.
    let server = Server::with_config(
        config()
            .ping_interval(Duration::from_secs(20))
            .ping_timeout(Duration::from_secs(20))
            .write_timeout(Duration::from_secs(1)),
    )
    .await;
    let _stream = flood_without_reading(server.addr).await;
    let engine = server.engine.clone();
    assert!(
        wait_until(Duration::from_secs(10), || engine.session_count() == 0).await,
        "the session of a peer that never reads is still open"
    );
    assert_eq!(server.recorder.closes(), vec![CloseReason::TransportError]);
    assert_counts_return_to_zero(&server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_peer_that_never_reads_is_cut_off_within_the_heartbeat_budget() {
    // The default write timeout (10 s) is longer than the heartbeat budget here (2 s).
    let server = Server::with_config(
        config()
            .ping_interval(Duration::from_secs(1))
            .ping_timeout(Duration::from_secs(1)),
    )
    .await;
    let _stream = flood_without_reading(server.addr).await;
    let engine = server.engine.clone();
    assert!(
        wait_until(Duration::from_secs(8), || engine.session_count() == 0).await,
        "the session of a peer that never reads is still open"
    );
    assert_eq!(server.recorder.closes().len(), 1);
    assert_counts_return_to_zero(&server.engine).await;
}

/// Reads whatever the server answers a trickled POST: its response, or `None` if it only
/// closed the connection. Panics after `limit`.
async fn answer_to_trickle(
    mut read: tokio::net::tcp::OwnedReadHalf,
    limit: Duration,
) -> Option<HttpResponse> {
    let mut raw = Vec::new();
    let result = tokio::time::timeout(limit, read.read_to_end(&mut raw)).await;
    match result {
        Err(_) => panic!("the trickled POST was not ended within {limit:?}"),
        Ok(_) if raw.is_empty() => None,
        Ok(_) => Some(parse_response(&raw)),
    }
}

/// Starts a trickled POST for `sid`: returns the read half; the write half trickles on its own
/// task, one byte per 500 ms, at most 40 bytes of the 100 declared.
async fn start_trickle(addr: std::net::SocketAddr, sid: &str) -> tokio::net::tcp::OwnedReadHalf {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(&request_head("POST", &poll_path(sid), &[], Some(100)))
        .await
        .unwrap();
    tokio::spawn(async move {
        for _ in 0..40 {
            if write.write_all(b"4").await.is_err() {
                return;
            }
            tokio::time::sleep(ms(500)).await;
        }
    });
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_post_body_is_ended_by_the_body_timeout() {
    let server = Server::with_config(
        config()
            .ping_interval(Duration::from_secs(20))
            .ping_timeout(Duration::from_secs(20))
            .body_timeout(Duration::from_secs(2)),
    )
    .await;
    let sid = open_polling(server.addr).await;
    let read = start_trickle(server.addr, &sid).await;
    let answer = answer_to_trickle(read, Duration::from_secs(10)).await;
    if let Some(response) = answer {
        assert_eq!(response.status, 408, "{:?}", response.text());
    }
    // A POST that never completes is an aborted one: the session ends, its slot is free.
    server
        .assert_all_closed(&[CloseReason::TransportError])
        .await;
    assert_eq!(server.recorder.messages(), vec![]);
    assert_counts_return_to_zero(&server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_post_body_is_ended_when_the_session_closes() {
    // The default body timeout (10 s) is far longer than the heartbeat (500 ms).
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let read = start_trickle(server.addr, &sid).await;
    let answer = answer_to_trickle(read, Duration::from_secs(6)).await;
    if let Some(response) = answer {
        assert_error(&response, 400, 1, "Session ID unknown");
    }
    server.assert_all_closed(&[CloseReason::PingTimeout]).await;
    assert_counts_return_to_zero(&server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_session_refuses_posts() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    server.only_socket().close();
    assert_error(
        &post(server.addr, &sid, b"4late").await,
        400,
        3,
        "Bad request",
    );
    // Its GET still collects the close packet.
    assert_eq!(get(server.addr, &sid).await.text(), "1");
    server.assert_all_closed(&[CloseReason::ForcedClose]).await;
    assert_eq!(server.recorder.messages(), vec![]);
}

/// Closes the session at the first message, as a Socket.IO layer does on a bad packet (and
/// logs it), and counts what it is handed.
struct CloseOnMessage {
    messages: Arc<AtomicUsize>,
}

impl EngineHandler for CloseOnMessage {
    type Connection = Arc<Socket>;

    fn on_open(&self, socket: Arc<Socket>) -> Arc<Socket> {
        socket
    }

    fn on_message(&self, socket: &Arc<Socket>, _: Message) {
        self.messages.fetch_add(1, Ordering::SeqCst);
        socket.close();
    }

    fn on_close(&self, _: &Arc<Socket>, _: CloseReason) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_full_of_bad_packets_reaches_the_handler_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages = Arc::new(AtomicUsize::new(0));
    let engine = Engine::new(
        EngineConfig::default().max_payload(100_000),
        CloseOnMessage {
            messages: messages.clone(),
        },
    );
    let task = tokio::spawn(serve(listener, engine.clone()));
    let sid = open_polling(addr).await;
    let body = vec!["4bad"; 10_000].join("\x1e");
    assert_ok(&post(addr, &sid, body.as_bytes()).await);
    assert_eq!(messages.load(Ordering::SeqCst), 1);
    // The session is closing: it takes no more POSTs.
    assert_error(&post(addr, &sid, b"4bad").await, 400, 3, "Bad request");
    assert_eq!(messages.load(Ordering::SeqCst), 1);
    task.abort();
}

/// Panics on the message `boom`, as a buggy application might on a peer's input.
struct PanicsOnBoom {
    closes: Arc<AtomicUsize>,
}

impl EngineHandler for PanicsOnBoom {
    type Connection = ();

    fn on_open(&self, _: Arc<Socket>) {}

    fn on_message(&self, _: &(), message: Message) {
        if message == Message::Text("boom".into()) {
            panic!("the application failed on a peer's message (expected by this test)");
        }
    }

    fn on_close(&self, _: &(), _: CloseReason) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_task_panics_still_gives_its_counts_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closes = Arc::new(AtomicUsize::new(0));
    let engine = Engine::new(
        config().limits(Limits {
            max_sessions_per_ip: Some(2),
            ..Limits::default()
        }),
        PanicsOnBoom {
            closes: closes.clone(),
        },
    );
    let task = tokio::spawn(serve(listener, engine.clone()));
    // On a WebSocket the handler runs on the session's task; over polling, on the POST's.
    let (mut ws, _) = ws_handshake(addr).await;
    ws_send_text(&mut ws, "4boom").await;
    let sid = open_polling(addr).await;
    let _ = send_request(addr, "POST", &poll_path(&sid), &[], b"4boom").await;
    assert_counts_return_to_zero(&engine).await;
    assert_eq!(closes.load(Ordering::SeqCst), 2);
    // The address may open sessions again.
    open_polling(addr).await;
    open_polling(addr).await;
    task.abort();
}

/// A session keeps its handshake's headers for its life: headers past `max_header_bytes` are
/// refused (431 with a JSON body on polling, plain text on an upgrade), nothing is counted for
/// them, and a handshake just under the bound still opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_handshake_headers_are_refused_and_cost_nothing() {
    const MAX: usize = 4096;
    let server = Server::with_config(config().max_header_bytes(MAX)).await;
    let big = "x".repeat(MAX);
    let refused = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[("X-Pad", big.as_str())],
        b"",
    )
    .await;
    assert_error(&refused, 431, 3, "Request headers too large");
    // Many small headers count as much as one big one.
    let pad = "y".repeat(100);
    let many: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("X-Pad-{i}"), pad.as_str()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let refused = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &many,
        b"",
    )
    .await;
    assert_eq!(refused.status, 431);
    // The URI is kept too: a long query counts.
    let query = format!("EIO=4&transport=polling&pad={big}");
    let refused = request(server.addr, "GET", &path(&query), &[], b"").await;
    assert_eq!(refused.status, 431);
    let mut stream = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    stream
        .write_all(&ws_request(&[
            UPGRADE,
            CONNECTION,
            KEY,
            VERSION,
            ("X-Pad", big.as_str()),
        ]))
        .await
        .unwrap();
    assert_eq!(read_one_response(&mut stream).await.status, 431);
    assert_counts_return_to_zero(&server.engine).await;
    // Under the bound: admitted.
    let fits = "z".repeat(MAX / 2);
    let admitted = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[("X-Pad", fits.as_str())],
        b"",
    )
    .await;
    assert_eq!(admitted.status, 200);
}
