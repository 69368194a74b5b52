//! WebSocket echo server behind hyper 1, for comparing WebSocket libraries.
//!
//! Usage: `server <tungstenite|tungstenite-tuned|fastwebsockets|floor> <port>`
//! (`floor` is a no-library reference, see `echo_floor`.)
//!
//! * hyper 1 `http1` connection with `.with_upgrades()`, hyper-util `TokioIo`.
//! * Every request is upgraded to a WebSocket; every text/binary message is echoed back.
//! * current_thread runtime (the benchmark pins the process to one core), and exactly one
//!   tokio task per connection: the task first drives the HTTP/1 connection until the
//!   upgrade completes, then runs the WebSocket echo loop itself (no second task).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Tungstenite,
    TungsteniteTuned,
    Fastwebsockets,
    /// Not a library: a minimal hand-rolled frame echo (unfragmented frames of <= 125
    /// bytes only, 256-byte inline buffer) on the same hyper upgrade path. It measures the
    /// per-connection floor of hyper + tokio + the kernel-facing plumbing.
    Floor,
}

/// What the HTTP phase hands to the WebSocket phase of the same task.
enum Pending {
    Tungstenite(OnUpgrade),
    Fast(fastwebsockets::upgrade::UpgradeFut),
}

type Slot = Arc<Mutex<Option<Pending>>>;

/// Read buffer of `tungstenite-tuned`: 4 KiB, overridable with WSLIB_READ_BUF (bytes) for
/// exploring the curve.
fn tuned_read_buffer() -> usize {
    std::env::var("WSLIB_READ_BUF").ok().and_then(|v| v.parse().ok()).unwrap_or(4 * 1024)
}

fn tungstenite_config(mode: Mode) -> Option<WebSocketConfig> {
    match mode {
        // Library defaults: 128 KiB read buffer, 128 KiB write-buffer target.
        Mode::Tungstenite => None,
        // Small eagerly-allocated read buffer; no write buffering (each frame is written
        // through immediately), bounded write buffer for backpressure.
        Mode::TungsteniteTuned => Some(
            WebSocketConfig::default()
                .read_buffer_size(tuned_read_buffer())
                .write_buffer_size(0)
                .max_write_buffer_size(65 << 20),
        ),
        Mode::Fastwebsockets | Mode::Floor => unreachable!(),
    }
}

fn bad_request() -> Response<Empty<Bytes>> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

fn handle(mode: Mode, slot: &Slot, mut req: Request<Incoming>) -> Response<Empty<Bytes>> {
    match mode {
        Mode::Fastwebsockets => match fastwebsockets::upgrade::upgrade(&mut req) {
            Ok((resp, fut)) => {
                *slot.lock().unwrap() = Some(Pending::Fast(fut));
                resp
            }
            Err(_) => bad_request(),
        },
        Mode::Tungstenite | Mode::TungsteniteTuned | Mode::Floor => {
            let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
                return bad_request();
            };
            let accept = derive_accept_key(key.as_bytes());
            *slot.lock().unwrap() = Some(Pending::Tungstenite(hyper::upgrade::on(&mut req)));
            let mut resp = Response::new(Empty::new());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).unwrap());
            resp
        }
    }
}

async fn echo_tungstenite(up: OnUpgrade, mode: Mode) {
    let Ok(upgraded) = up.await else { return };
    let mut ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        tungstenite_config(mode),
    )
    .await;
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            // `send` = feed + flush: one write per echoed message, like fastwebsockets.
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
            // Pings are answered (queued) by tungstenite itself; Close is replied to
            // automatically and the stream then ends.
            _ => {}
        }
    }
}

async fn echo_fast(fut: fastwebsockets::upgrade::UpgradeFut) {
    use fastwebsockets::{FragmentCollector, OpCode};
    let Ok(ws) = fut.await else { return };
    // FragmentCollector: reassembles fragmented messages (so we echo messages, like
    // tungstenite does), auto-pong and auto-close are on by default.
    let mut ws = FragmentCollector::new(ws);
    loop {
        let Ok(frame) = ws.read_frame().await else { break };
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                if ws.write_frame(frame).await.is_err() {
                    break;
                }
            }
            _ => {}
        }
    }
}

/// Reference floor: tiny inline buffer, no library. Handles only unfragmented, masked
/// client frames with payload <= 125 bytes (enough for the idle test's small messages and
/// the 32-byte echo test); anything else closes the connection.
async fn echo_floor(up: OnUpgrade) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(upgraded) = up.await else { return };
    let mut io = TokioIo::new(upgraded);
    let mut buf = [0u8; 256];
    let mut have = 0usize;
    let mut out = [0u8; 2 + 125];
    loop {
        // Parse as many complete frames as are buffered.
        loop {
            if have < 2 {
                break;
            }
            let (b0, b1) = (buf[0], buf[1]);
            let len = (b1 & 0x7f) as usize;
            if b0 & 0x80 == 0 || b1 & 0x80 == 0 || len > 125 {
                return; // fragmented, unmasked or too big: out of scope
            }
            let total = 2 + 4 + len;
            if have < total {
                break;
            }
            let mask = [buf[2], buf[3], buf[4], buf[5]];
            out[0] = b0;
            out[1] = len as u8;
            for i in 0..len {
                out[2 + i] = buf[6 + i] ^ mask[i & 3];
            }
            let op = b0 & 0x0f;
            if op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 {
                if op == 0x9 {
                    out[0] = 0x80 | 0xA; // pong
                }
                if io.write_all(&out[..2 + len]).await.is_err() {
                    return;
                }
            }
            if op == 0x8 {
                return;
            }
            buf.copy_within(total..have, 0);
            have -= total;
        }
        match io.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, mode: Mode) {
    let _ = stream.set_nodelay(true);
    let slot: Slot = Arc::new(Mutex::new(None));
    {
        let s = slot.clone();
        let svc = service_fn(move |req| {
            let resp = handle(mode, &s, req);
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        // Boxed so that the HTTP/1 state (hyper's buffers, dispatcher) is freed when the
        // upgrade completes instead of living on in this task's future.
        let conn = Box::pin(
            http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades(),
        );
        if conn.await.is_err() {
            return;
        }
    }
    let pending = slot.lock().unwrap().take();
    drop(slot);
    match pending {
        Some(Pending::Tungstenite(up)) if mode == Mode::Floor => echo_floor(up).await,
        Some(Pending::Tungstenite(up)) => echo_tungstenite(up, mode).await,
        Some(Pending::Fast(fut)) => echo_fast(fut).await,
        None => {}
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: server <tungstenite|tungstenite-tuned|fastwebsockets|floor> <port>");
        std::process::exit(2);
    }
    let mode = match args[1].as_str() {
        "tungstenite" => Mode::Tungstenite,
        "tungstenite-tuned" => Mode::TungsteniteTuned,
        "fastwebsockets" => Mode::Fastwebsockets,
        "floor" => Mode::Floor,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let port: u16 = args[2].parse().expect("port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("server mode={mode:?} listening on {addr} pid={}", std::process::id());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, mode));
                }
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    eprintln!("accept error: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}
