//! RFC 6455 framing of the WebSocket transport, checked over a raw TCP socket with frames
//! written and parsed by hand (no WebSocket library on the client side).
//!
//! The suite pins what the server does with client frames, whatever codec reads them: the
//! opening handshake (`101`, `Sec-WebSocket-Accept`), masked client frames, unmasked server
//! frames with minimal lengths, 7/16/64-bit payload lengths, fragmentation (with control frames
//! between fragments), frames cut across TCP writes anywhere or packed several to a write,
//! ping/pong, the closing handshake, and the failure of the connection on each protocol
//! violation: a close frame, then the end of the TCP connection, the session closed as a
//! transport error and the server still serving fresh sessions.
//!
//! Each failure says why in its close frame, as RFC 6455 (7.4.1) asks: 1002 for a protocol
//! violation, 1007 for text that is not UTF-8, 1009 for a message over the limit; and the
//! server answers a client's close frame with its own before it ends the connection. (On
//! tungstenite, before the server had its own frame codec, the first two were a close frame
//! with no code, and a client's close frame got no answer.)
//!
//! Every wait is bounded by [`WAIT`]; no test measures time.

mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use switchyard_engineio::{CloseReason, EngineConfig, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound of every single wait: generous, so that a loaded machine never fails a test.
const WAIT: Duration = Duration::from_secs(10);

/// The FIN bit of a frame's first byte.
const FIN: u8 = 0x80;
/// Opcodes.
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The close code when a client breaks the framing rules (RFC 6455, 7.4.1).
const PROTOCOL_ERROR: &[Option<u16>] = &[Some(1002)];

/// The close code for a text message (or close reason) that is not UTF-8.
const INVALID_UTF8: &[Option<u16>] = &[Some(1007)];

/// "Message too big": what the server sends for a message over maxPayload.
const TOO_BIG: &[Option<u16>] = &[Some(1009)];

// ----- Bounded waits, randomness, the accept key ----------------------------------------------

/// Awaits `future`, panicking if it takes longer than [`WAIT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A pseudo-random number (splitmix64 over a counter seeded from the clock): random enough
/// for mask keys and handshake keys, with no dependency.
fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x1234_5678, |elapsed| elapsed.as_nanos() as u64)
    });
    let step = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh mask key with no zero byte: a zero key byte leaves its payload bytes as they are,
/// which would hide a server that forgets to unmask.
fn mask_key() -> [u8; 4] {
    (random_u64() as u32)
        .to_le_bytes()
        .map(|byte| if byte == 0 { 0xA5 } else { byte })
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for sextet in 0..4 {
            if sextet <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * sextet)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 of `data`, for the handshake's accept key only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = state;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let next = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = next;
        }
        for (value, add) in state.iter_mut().zip([a, b, c, d, e]) {
            *value = value.wrapping_add(add);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, value) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&value.to_be_bytes());
    }
    out
}

/// The `Sec-WebSocket-Accept` a server owes for `key` (RFC 6455, 4.2.2).
fn accept_key(key: &str) -> String {
    base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ))
}

// ----- Frames -----------------------------------------------------------------------------------

/// A frame as written on the wire: `first` is its first byte (FIN, RSV bits, opcode), the
/// length takes the minimal form (7, 16 or 64 bits), and the payload is masked with `mask` when
/// given.
fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(
                payload
                    .iter()
                    .enumerate()
                    .map(|(at, byte)| byte ^ key[at % 4]),
            );
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame, masked with a fresh key as clients must.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, Some(mask_key()))
}

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// Frames written back to back.
fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
struct ServerFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl ServerFrame {
    /// The payload of a whole text frame.
    fn text(&self) -> &str {
        assert!(
            self.fin && self.opcode == TEXT,
            "expected a whole text frame, got {self:?}"
        );
        std::str::from_utf8(&self.payload).expect("a server text frame is UTF-8")
    }

    /// The payload of a whole binary frame.
    fn binary(&self) -> &[u8] {
        assert!(
            self.fin && self.opcode == BINARY,
            "expected a whole binary frame, got {self:?}"
        );
        &self.payload
    }

    /// Whether this is an Engine.IO ping (`2`).
    fn is_engine_ping(&self) -> bool {
        self.fin && self.opcode == TEXT && self.payload == b"2"
    }
}

/// Parses the server frame at the start of `buf`, if it is all there; returns it and its
/// length. Checks what RFC 6455 asks of a server's frames: unmasked, no RSV bit (no extension
/// is negotiated), minimal length encoding, control frames whole and at most 125 bytes.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (first, second) = (buf[0], buf[1]);
    assert_eq!(
        second & 0x80,
        0,
        "server frames must not be masked: {buf:?}"
    );
    assert_eq!(
        first & 0x70,
        0,
        "no extension is negotiated: RSV bits must be 0"
    );
    let (len, header) = match second & 0x7F {
        126 => {
            let bytes = buf.get(2..4)?;
            let len = u64::from(u16::from_be_bytes(bytes.try_into().unwrap()));
            assert!(len >= 126, "16-bit length {len} not minimal");
            (len, 4)
        }
        127 => {
            let bytes = buf.get(2..10)?;
            let len = u64::from_be_bytes(bytes.try_into().unwrap());
            assert!(len > 0xFFFF, "64-bit length {len} not minimal");
            assert!(len >> 63 == 0, "64-bit length with its top bit set");
            (len, 10)
        }
        len => (u64::from(len), 2),
    };
    let len = usize::try_from(len).unwrap();
    let payload = buf.get(header..header + len)?;
    let frame = ServerFrame {
        fin: first & FIN != 0,
        opcode: first & 0x0F,
        payload: payload.to_vec(),
    };
    assert!(
        matches!(
            frame.opcode,
            CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG
        ),
        "server sent opcode {:#x}",
        frame.opcode
    );
    if frame.opcode >= CLOSE {
        assert!(frame.fin, "server fragmented a control frame");
        assert!(len <= 125, "server control frame of {len} bytes");
    }
    Some((frame, header + len))
}

/// How the server's side of a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// A clean end of stream.
    Eof,
    /// A reset: the server closed with bytes of ours unread, which the kernel answers so.
    Reset,
}

/// How the server ended a connection.
#[derive(Debug)]
struct Closed {
    /// Its close frame, if it sent one: the code (`None` for an empty payload) and the reason.
    frame: Option<(Option<u16>, String)>,
    /// How the TCP connection ended (a clean end when no close frame came).
    ending: Ending,
}

// ----- A raw WebSocket client -----------------------------------------------------------------

/// A WebSocket client over a plain `TcpStream`: frames are written and read by hand.
struct RawWs {
    stream: TcpStream,
    /// Bytes read and not parsed yet.
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects and completes the opening handshake by hand: checks the `101`, its `Upgrade`
    /// and `Connection` headers and the `Sec-WebSocket-Accept` for a fresh key.
    async fn connect(addr: SocketAddr) -> RawWs {
        let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
        // Each write goes out as its own segment: the split-write tests rely on it.
        stream.set_nodelay(true).unwrap();
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let mut key = random_u64().to_le_bytes().to_vec();
        key.extend_from_slice(&random_u64().to_le_bytes());
        let key = base64(&key);
        let request = format!(
            "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
             Host: 127.0.0.1\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.write(request.as_bytes()).await;
        let head_end = loop {
            if let Some(at) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let read = ws.fill().await.unwrap();
            assert!(
                read > 0,
                "connection ended during the handshake: {:?}",
                String::from_utf8_lossy(&ws.buf)
            );
        };
        let head = String::from_utf8(ws.buf[..head_end].to_vec()).unwrap();
        // What follows the head is the first frame (or part of it).
        ws.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols: {head}"
        );
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert!(
            header("upgrade").is_some_and(|value| value.eq_ignore_ascii_case("websocket")),
            "{head}"
        );
        assert!(
            header("connection").is_some_and(|value| value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))),
            "{head}"
        );
        assert_eq!(
            header("sec-websocket-accept"),
            Some(accept_key(&key).as_str()),
            "{head}"
        );
        assert_eq!(header("sec-websocket-extensions"), None, "{head}");
        ws
    }

    /// Connects and reads the Engine.IO open packet, which must come as a whole, unmasked
    /// text frame.
    async fn open(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::connect(addr).await;
        let open = ws.read_frame().await;
        let text = open.text();
        let sid = sid_of(text);
        assert!(!sid.is_empty(), "{text}");
        assert!(text.contains(r#""upgrades":[]"#), "{text}");
        assert!(text.contains(r#""maxPayload":"#), "{text}");
        ws
    }

    /// Reads what the server sent into the buffer; the number of bytes (0 at its end).
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let read = bounded("a read from the server", self.stream.read(&mut chunk)).await?;
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(read)
    }

    /// Writes `bytes` at once.
    async fn write(&mut self, bytes: &[u8]) {
        bounded("a write to the server", self.stream.write_all(bytes))
            .await
            .unwrap();
    }

    /// Writes `bytes` in pieces of the given sizes (cycled), each its own TCP segment, with a
    /// short pause between them so the server sees them one by one.
    async fn write_in_pieces(&mut self, bytes: &[u8], sizes: &[usize]) {
        let mut rest = bytes;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            self.write(piece).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            rest = after;
        }
    }

    /// Writes one masked frame.
    async fn send(&mut self, first: u8, payload: &[u8]) {
        self.write(&masked(first, payload)).await;
    }

    /// Writes one masked, whole text frame.
    async fn send_text(&mut self, text: &str) {
        self.send(FIN | TEXT, text.as_bytes()).await;
    }

    /// The next frame; `Ok(None)` at a clean end of the connection between frames.
    async fn try_read_frame(&mut self) -> io::Result<Option<ServerFrame>> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                assert!(
                    self.buf.is_empty(),
                    "connection ended inside a frame: {:?}",
                    self.buf
                );
                return Ok(None);
            }
        }
    }

    /// The next frame, which must come.
    async fn read_frame(&mut self) -> ServerFrame {
        match self.try_read_frame().await {
            Ok(Some(frame)) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame that is not an Engine.IO ping; pings are answered with `3`.
    async fn recv(&mut self) -> ServerFrame {
        loop {
            let frame = self.read_frame().await;
            if !frame.is_engine_ping() {
                return frame;
            }
            self.send_text("3").await;
        }
    }

    /// Reads to the end of the connection (skipping Engine.IO pings and pongs): at most a close frame,
    /// then the end, nothing else. Returns the close frame if one came, and how it ended.
    async fn expect_end(&mut self) -> Closed {
        let frame = loop {
            match self.try_read_frame().await {
                // Pongs the server owed before it ended are not what is checked here.
                Ok(Some(frame)) if frame.is_engine_ping() || frame.opcode == PONG => {}
                Ok(Some(frame)) if frame.opcode == CLOSE => break Some(frame),
                Ok(None) => break None,
                Err(error) if is_reset(&error) => break None,
                other => panic!("expected a close frame or the end, got {other:?}"),
            }
        };
        let Some(frame) = frame else {
            return Closed {
                frame: None,
                ending: Ending::Eof,
            };
        };
        let close = match frame.payload.len() {
            0 => (None, String::new()),
            1 => panic!("close frame with a 1-byte payload"),
            _ => {
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                let reason = String::from_utf8(frame.payload[2..].to_vec())
                    .expect("a close reason is UTF-8");
                (Some(code), reason)
            }
        };
        let ending = match self.try_read_frame().await {
            Ok(None) => Ending::Eof,
            Err(error) if is_reset(&error) => Ending::Reset,
            other => {
                panic!("expected the end of the connection after the close frame, got {other:?}")
            }
        };
        Closed {
            frame: Some(close),
            ending,
        }
    }
}

/// Whether `error` is the connection reset (or aborted) by the server.
fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

// ----- Servers and checks -----------------------------------------------------------------------

/// The test configuration (maxPayload [`MAX_PAYLOAD`]) with a heartbeat too slow to ever
/// interleave with a test: no Engine.IO ping comes in the middle of a fragmented message.
fn quiet_config() -> EngineConfig {
    config()
        .ping_interval(Duration::from_secs(60))
        .ping_timeout(Duration::from_secs(60))
}

/// A server with [`quiet_config`].
async fn quiet_server() -> Server {
    Server::with_config(quiet_config()).await
}

/// Waits until the handler saw `count` closes; returns them all.
async fn closes(server: &Server, count: usize) -> Vec<CloseReason> {
    let recorder = server.recorder.clone();
    let seen = wait_until(WAIT, || recorder.closes().len() >= count).await;
    assert!(
        seen,
        "expected {count} closes, saw {:?}",
        server.recorder.closes()
    );
    server.recorder.closes()
}

/// Opens a fresh session and checks a message goes round: the server still serves.
async fn assert_fresh_session_works(server: &Server) {
    let mut ws = RawWs::open(server.addr).await;
    ws.send_text("4still serving").await;
    assert_eq!(ws.recv().await.text(), "4still serving");
}

/// On a server of its own: opens a session, writes `bytes` at once, and checks the server fails
/// the connection: a close frame with a code in `allowed`, then the end of the connection; the
/// session closes as a transport error, and a fresh session works after it. Returns what the
/// server did.
async fn assert_connection_failed(what: &str, bytes: &[u8], allowed: &[Option<u16>]) -> Closed {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    ws.write(bytes).await;
    let closed = ws.expect_end().await;
    let Some((code, _)) = &closed.frame else {
        panic!("{what}: the connection ended without a close frame");
    };
    assert!(
        allowed.contains(code),
        "{what}: close code {code:?}, expected one of {allowed:?}"
    );
    // The server reads what the client still sent before it closes, so its close frame is not
    // lost to a reset.
    assert_eq!(closed.ending, Ending::Eof, "{what}: {closed:?}");
    assert_eq!(
        closes(&server, 1).await,
        vec![CloseReason::TransportError],
        "{what}"
    );
    assert!(wait_until(WAIT, || server.engine.session_count() == 0).await);
    assert_fresh_session_works(&server).await;
    closed
}

/// Checks the server's side of a closing handshake the client started: RFC 6455 (5.5.1) asks
/// for a close frame in answer (here with a code in `codes`), then the end of the TCP
/// connection, clean since the server read everything.
async fn assert_closing_handshake(ws: &mut RawWs, codes: &[Option<u16>]) -> Closed {
    let closed = ws.expect_end().await;
    let Some((code, _)) = &closed.frame else {
        panic!("the client's close frame got no close frame in answer");
    };
    assert!(
        codes.contains(code),
        "close code {code:?}, expected one of {codes:?}"
    );
    assert_eq!(closed.ending, Ending::Eof, "{closed:?}");
    closed
}

// ----- Tests --------------------------------------------------------------------------------------

#[test]
fn accept_key_matches_the_rfc_example() {
    // RFC 6455, 1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_packet_is_an_unmasked_text_frame_and_masked_messages_are_echoed() {
    // The test heartbeat (a ping every 300 ms), with a pong allowance no loaded machine misses.
    let server = Server::with_config(config().ping_timeout(Duration::from_secs(5))).await;
    // `open` checks the handshake and that the open packet is a whole, unmasked text frame.
    let mut ws = RawWs::open(server.addr).await;
    ws.send_text("4hello").await;
    assert_eq!(ws.recv().await.text(), "4hello");
    assert_eq!(
        server.recorder.messages(),
        vec![Message::Text("hello".into())]
    );
    // The heartbeat runs on these frames: a ping comes, our masked `3` is taken as its pong,
    // so the next ping comes too and the session lives on.
    for _ in 0..2 {
        let frame = ws.read_frame().await;
        assert!(frame.is_engine_ping(), "expected a ping, got {frame:?}");
        ws.send_text("3").await;
    }
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_text_message_is_assembled() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    // The `é` (two bytes) is cut between two fragments; one fragment is empty.
    let message = "4fragmenté!".as_bytes();
    let cut = message.len() - 2;
    ws.send(TEXT, &message[..4]).await;
    ws.send(CONTINUATION, &message[4..cut]).await;
    ws.send(CONTINUATION, b"").await;
    ws.send(FIN | CONTINUATION, &message[cut..]).await;
    assert_eq!(ws.recv().await.text(), "4fragmenté!");
    assert_eq!(
        server.recorder.messages(),
        vec![Message::Text("fragmenté!".into())]
    );
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_between_fragments_is_answered_at_once_and_the_message_still_assembles() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    ws.send(TEXT, b"4inter").await;
    ws.send(FIN | PING, b"mid-message").await;
    // The pong comes while the message is still incomplete.
    let pong = ws.recv().await;
    assert_eq!(
        pong,
        ServerFrame {
            fin: true,
            opcode: PONG,
            payload: b"mid-message".to_vec()
        }
    );
    ws.send(CONTINUATION, b"lea").await;
    // An unsolicited pong between fragments is allowed too, and ignored.
    ws.send(FIN | PONG, b"unsolicited").await;
    ws.send(FIN | CONTINUATION, b"ved").await;
    assert_eq!(ws.recv().await.text(), "4interleaved");

    // The same, all in one write: the pong and the whole message both come, in some order.
    let bytes = concat(&[
        masked(TEXT, b"4one "),
        masked(FIN | PING, b"p"),
        masked(FIN | CONTINUATION, b"write"),
    ]);
    ws.write(&bytes).await;
    let mut frames = [ws.recv().await, ws.recv().await];
    frames.sort_by_key(|frame| frame.opcode);
    assert_eq!(frames[0].text(), "4one write");
    assert_eq!(frames[1].opcode, PONG);
    assert_eq!(frames[1].payload, b"p");
    assert_eq!(
        server.recorder.messages(),
        vec![
            Message::Text("interleaved".into()),
            Message::Text("one write".into())
        ]
    );
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cut_at_awkward_points_are_read() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    // A 16-bit length frame: header byte by byte (the length and the mask key cut in the
    // middle), then the payload in three pieces.
    let long = format!("4{}", "s".repeat(299));
    let frame = masked(FIN | TEXT, long.as_bytes());
    assert_eq!(frame.len(), 8 + 300);
    ws.write_in_pieces(&frame[..8], &[1]).await;
    ws.write_in_pieces(&frame[8..], &[1, 150, 149]).await;
    assert_eq!(ws.recv().await.text(), long);

    // A short frame cut as: first byte | length byte and half the mask key | the other half
    // and part of the payload | the rest.
    let frame = masked(FIN | TEXT, b"4short one");
    ws.write_in_pieces(&frame, &[1, 3, 5, 100]).await;
    assert_eq!(ws.recv().await.text(), "4short one");

    // Several frames back to back, cut at every size from 1 to 7 bytes, so that frame
    // boundaries fall everywhere in a write.
    let bytes = concat(&[
        masked(FIN | TEXT, b"4first"),
        masked(FIN | BINARY, &[0, 1, 2, 3, 255]),
        masked(TEXT, b"4sec"),
        masked(FIN | CONTINUATION, b"ond"),
        masked(FIN | TEXT, format!("4{}", "t".repeat(200)).as_bytes()),
        masked(FIN | TEXT, b"4last"),
    ]);
    ws.write_in_pieces(&bytes, &[1, 2, 3, 4, 5, 6, 7]).await;
    assert_eq!(ws.recv().await.text(), "4first");
    assert_eq!(ws.recv().await.binary(), [0, 1, 2, 3, 255]);
    assert_eq!(ws.recv().await.text(), "4second");
    assert_eq!(ws.recv().await.text(), format!("4{}", "t".repeat(200)));
    assert_eq!(ws.recv().await.text(), "4last");
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_frames_in_one_write_are_all_read() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    let bytes = concat(&[
        masked(FIN | TEXT, b"4one"),
        masked(FIN | PING, b"ping in a burst"),
        masked(TEXT, b"4tw"),
        masked(FIN | CONTINUATION, b"o"),
        masked(FIN | BINARY, &[9, 8, 7]),
        masked(FIN | TEXT, b"4three"),
    ]);
    ws.write(&bytes).await;
    // The messages come back in order; the pong may come anywhere among them.
    let mut data = Vec::new();
    let mut pongs = Vec::new();
    while data.len() < 4 {
        let frame = ws.recv().await;
        if frame.opcode == PONG {
            pongs.push(frame.payload);
        } else {
            data.push(frame);
        }
    }
    assert_eq!(data[0].text(), "4one");
    assert_eq!(data[1].text(), "4two");
    assert_eq!(data[2].binary(), [9, 8, 7]);
    assert_eq!(data[3].text(), "4three");
    if pongs.is_empty() {
        pongs.push(ws.recv().await.payload);
    }
    assert_eq!(pongs, vec![b"ping in a burst".to_vec()]);
    assert_eq!(server.recorder.messages().len(), 4);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_16_and_64_bit_lengths_are_accepted() {
    // A maxPayload above 64 KiB, so that a 64-bit length is the minimal encoding.
    let server = Server::with_config(quiet_config().max_payload(100_000)).await;
    let mut ws = RawWs::open(server.addr).await;
    // The smallest and largest 16-bit lengths, the smallest 64-bit one, and one past it. The
    // echoes come back with the same lengths (and the reader checks they are minimal).
    for len in [126, 0xFFFF, 0x1_0000, 70_000] {
        let text = format!("4{}", "x".repeat(len - 1));
        ws.send_text(&text).await;
        let echo = ws.recv().await;
        assert_eq!(echo.payload.len(), len);
        assert_eq!(echo.text(), text);
    }
    let data: Vec<u8> = (0..70_000u32).map(|at| at as u8).collect();
    ws.send(FIN | BINARY, &data).await;
    assert_eq!(ws.recv().await.binary(), data);
    // At the test's maxPayload, 1000 bytes take a 16-bit length.
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    let text = format!("4{}", "y".repeat(MAX_PAYLOAD - 1));
    ws.send_text(&text).await;
    assert_eq!(ws.recv().await.text(), text);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_a_pong_of_the_same_payload() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    let largest: Vec<u8> = (0..125u8).map(|byte| byte.wrapping_mul(7)).collect();
    for payload in [&b""[..], b"hello ping", &[0, 255, 1, 254], &largest] {
        ws.send(FIN | PING, payload).await;
        assert_eq!(
            ws.recv().await,
            ServerFrame {
                fin: true,
                opcode: PONG,
                payload: payload.to_vec()
            }
        );
    }
    // An unsolicited pong is ignored: nothing answers it, the session goes on.
    ws.send(FIN | PONG, b"heartbeat").await;
    ws.send_text("4after the pong").await;
    assert_eq!(ws.recv().await.text(), "4after the pong");
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pings_is_answered_by_pongs_for_the_latest() {
    // RFC 6455 (5.5.3) lets the server answer only the most recent of the pings it read: a
    // flood of pings makes it write little. However the reads split the burst, the pongs come
    // in the pings' order, at most one per ping, and the last one, before the message that
    // follows the pings, answers the last ping.
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    let pings = 200u32;
    let mut burst = Vec::new();
    for index in 0..pings {
        burst.extend(masked(FIN | PING, &index.to_be_bytes()));
    }
    burst.extend(masked(FIN | TEXT, b"4after the pings"));
    ws.write(&burst).await;
    let mut answered = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame.opcode == PONG {
            let index: [u8; 4] = frame
                .payload
                .as_slice()
                .try_into()
                .expect("a pong of 4 bytes");
            answered.push(u32::from_be_bytes(index));
            continue;
        }
        assert_eq!(frame.text(), "4after the pings");
        break;
    }
    assert!(answered.len() <= pings as usize, "{answered:?}");
    assert!(
        answered.windows(2).all(|pair| pair[0] < pair[1]),
        "{answered:?}"
    );
    assert_eq!(answered.last(), Some(&(pings - 1)), "{answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_control_frames_fails_the_connection_with_1008() {
    // Past the limit of control frames per ping interval, the server stops reading them.
    let server = Server::with_config(quiet_config().websocket_max_control_frames(50)).await;
    let mut ws = RawWs::open(server.addr).await;
    let mut flood = Vec::new();
    for index in 0..60u32 {
        let opcode = if index % 2 == 0 { PING } else { PONG };
        flood.extend(masked(FIN | opcode, &index.to_be_bytes()));
    }
    ws.write(&flood).await;
    let closed = ws.expect_end().await;
    assert_eq!(closed.frame.map(|(code, _)| code), Some(Some(1008)));
    assert_eq!(closes(&server, 1).await, vec![CloseReason::TransportError]);
    assert!(wait_until(WAIT, || server.engine.session_count() == 0).await);
    assert_fresh_session_works(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frames_within_the_limit_leave_the_connection_open() {
    let server = Server::with_config(quiet_config().websocket_max_control_frames(50)).await;
    let mut ws = RawWs::open(server.addr).await;
    for index in 0..50u32 {
        ws.send(FIN | PONG, &index.to_be_bytes()).await;
    }
    ws.send_text("4still open").await;
    assert_eq!(ws.recv().await.text(), "4still open");
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_1000_ends_the_connection() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    ws.send(FIN | CLOSE, &close_payload(1000, b"bye")).await;
    let closed = assert_closing_handshake(&mut ws, &[Some(1000)]).await;
    // The answer carries the client's code back, and no reason of the server's.
    assert_eq!(closed.frame, Some((Some(1000), String::new())));
    assert_eq!(closes(&server, 1).await, vec![CloseReason::TransportClose]);
    assert!(wait_until(WAIT, || server.engine.session_count() == 0).await);
    assert_fresh_session_works(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_without_a_code_ends_the_connection() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    ws.send(FIN | CLOSE, b"").await;
    // Nothing to echo: a close frame without a code.
    assert_closing_handshake(&mut ws, &[None]).await;
    assert_eq!(closes(&server, 1).await, vec![CloseReason::TransportClose]);
    assert!(wait_until(WAIT, || server.engine.session_count() == 0).await);
    assert_fresh_session_works(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_with_a_code_never_sent_on_the_wire_ends_the_connection() {
    // 999 is below the range; 1005 and 1006 are only for reports, never sent (RFC 6455,
    // 7.4.1); 1016 to 2999 are unassigned protocol codes. The close frame in answer says
    // 1002.
    for code in [999, 1005, 1006, 1016] {
        let server = quiet_server().await;
        let mut ws = RawWs::open(server.addr).await;
        ws.send(FIN | CLOSE, &close_payload(code, b"")).await;
        assert_closing_handshake(&mut ws, &[Some(1002)]).await;
        assert!(wait_until(WAIT, || server.engine.session_count() == 0).await);
        assert_fresh_session_works(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_client_frame_fails_the_connection() {
    let bytes = encode(FIN | TEXT, b"4not masked", None);
    assert_connection_failed("unmasked text frame", &bytes, PROTOCOL_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_bits_fail_the_connection() {
    for rsv in [0x40, 0x20, 0x10] {
        let bytes = masked(FIN | rsv | TEXT, b"4reserved");
        let what = format!("RSV bit {rsv:#x}");
        assert_connection_failed(&what, &bytes, PROTOCOL_ERROR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_opcodes_fail_the_connection() {
    // A reserved data opcode and a reserved control opcode.
    for opcode in [0x3, 0xB] {
        let bytes = masked(FIN | opcode, b"4?");
        let what = format!("opcode {opcode:#x}");
        assert_connection_failed(&what, &bytes, PROTOCOL_ERROR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frame_over_125_bytes_fails_the_connection() {
    let bytes = masked(FIN | PING, &[b'p'; 126]);
    assert_connection_failed("126-byte ping", &bytes, PROTOCOL_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_control_frame_fails_the_connection() {
    let bytes = masked(PING, b"no fin");
    assert_connection_failed("ping without FIN", &bytes, PROTOCOL_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_without_a_started_message_fails_the_connection() {
    for first in [FIN | CONTINUATION, CONTINUATION] {
        let bytes = masked(first, b"4orphan");
        let what = format!("continuation {first:#x} first");
        assert_connection_failed(&what, &bytes, PROTOCOL_ERROR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_data_frame_inside_a_fragmented_message_fails_the_connection() {
    for second in [FIN | TEXT, TEXT, FIN | BINARY] {
        let bytes = concat(&[masked(TEXT, b"4start"), masked(second, b"4again")]);
        let what = format!("frame {second:#x} inside a message");
        assert_connection_failed(&what, &bytes, PROTOCOL_ERROR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_frame_with_a_one_byte_payload_fails_the_connection() {
    let bytes = masked(FIN | CLOSE, &[3]);
    assert_connection_failed("1-byte close payload", &bytes, PROTOCOL_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_fails_the_connection() {
    let cases = [
        // A whole frame.
        ("invalid text frame", masked(FIN | TEXT, b"4\xC3\x28")),
        // An invalid byte in the first fragment, before the message is complete.
        (
            "invalid first fragment",
            concat(&[masked(TEXT, b"4\xFFab"), masked(FIN | CONTINUATION, b"cd")]),
        ),
        // A message that ends in the middle of a character.
        (
            "truncated character at the end",
            concat(&[
                masked(TEXT, b"4ab\xE2\x82"),
                masked(FIN | CONTINUATION, b""),
            ]),
        ),
        // A close reason that is not UTF-8.
        (
            "invalid close reason",
            masked(FIN | CLOSE, &close_payload(1000, b"\xFF\xFE")),
        ),
    ];
    for (what, bytes) in cases {
        assert_connection_failed(what, &bytes, INVALID_UTF8).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_max_payload_fails_the_connection_with_1009() {
    let over = format!("4{}", "x".repeat(MAX_PAYLOAD));
    let cases = [
        ("one frame over", masked(FIN | TEXT, over.as_bytes())),
        // Each fragment fits; together they do not.
        (
            "fragments over",
            concat(&[
                masked(TEXT, &over.as_bytes()[..600]),
                masked(FIN | CONTINUATION, &over.as_bytes()[600..]),
            ]),
        ),
        (
            "binary fragments over",
            concat(&[
                masked(BINARY, &[1; 400]),
                masked(CONTINUATION, &[2; 400]),
                masked(FIN | CONTINUATION, &[3; 201]),
            ]),
        ),
    ];
    for (what, bytes) in cases {
        assert_connection_failed(what, &bytes, TOO_BIG).await;
    }
    // A header announcing 10 MB is refused from the header alone: no payload is sent, and
    // none is waited for.
    let mut header = vec![FIN | TEXT, 0x80 | 127];
    header.extend_from_slice(&10_000_000u64.to_be_bytes());
    header.extend_from_slice(&mask_key());
    assert_connection_failed("10 MB announced", &header, TOO_BIG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_summing_to_exactly_max_payload_are_accepted() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    let exact = format!("4{}", "z".repeat(MAX_PAYLOAD - 1));
    let half = MAX_PAYLOAD / 2;
    ws.send(TEXT, &exact.as_bytes()[..half]).await;
    ws.send(FIN | CONTINUATION, &exact.as_bytes()[half..]).await;
    assert_eq!(ws.recv().await.text(), exact);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_are_engine_io_binary_messages() {
    let server = quiet_server().await;
    let mut ws = RawWs::open(server.addr).await;
    // The payload is the message as it is: no packet type prefix, any bytes.
    ws.send(FIN | BINARY, &[0x34, 0, 1, 255]).await;
    assert_eq!(ws.recv().await.binary(), [0x34, 0, 1, 255]);
    // Fragmented binary.
    ws.send(BINARY, &[1, 2]).await;
    ws.send(FIN | CONTINUATION, &[3]).await;
    assert_eq!(ws.recv().await.binary(), [1, 2, 3]);
    assert_eq!(
        server.recorder.messages(),
        vec![
            Message::Binary(Bytes::from_static(&[0x34, 0, 1, 255])),
            Message::Binary(Bytes::from_static(&[1, 2, 3])),
        ]
    );
    assert_eq!(server.recorder.closes(), vec![]);
}
