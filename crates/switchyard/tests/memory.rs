//! What one hostile connection can make the server hold, with the server binary's default
//! limits: every per-connection bound pushed to its end at once, the heap growth measured with
//! a counting allocator, and all of it given back when the connection ends.
//!
//! The bound the test asserts is the sum of the limits ([`bound`]); the README's limits table
//! quotes it and the figure measured here (`cargo test -p switchyard --test memory --
//! --nocapture` prints it).
//!
//! The server runs on a runtime of its own whose threads are the only ones counted, so the
//! attacking client (in this process too) is not charged to the server. One test in this
//! binary: the counter is process-wide.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::{start, wait_until, within};
use futures_util::{SinkExt, StreamExt};
use switchyard::{Rate, Socket, SocketIoConfig, SocketLimits};
use switchyard_engineio::EngineConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

struct Counting;

/// Bytes allocated and not yet freed by the server's threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The highest `LIVE` since it was last reset.
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(size: isize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

thread_local! {
    /// Whether this thread is one of the server's.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    // `try_with`: the allocator may run while the thread's locals are being torn down.
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() && counted() {
            grew(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() && counted() {
            grew(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The binary's defaults (`crates/server/src/config.rs`): the limits a deployment starts with.
/// The write timeout is longer than the binary's 10 s only so that a slow machine measures the
/// connection before the server cuts it off for not reading.
fn binary_defaults() -> SocketIoConfig {
    SocketIoConfig {
        engine: EngineConfig::default()
            .path("/socket.io/")
            .max_buffered_bytes(1_048_576)
            .write_timeout(Duration::from_secs(60)),
        limits: SocketLimits {
            event_rate: Some(Rate::new(100.0, 200)),
            max_rooms_per_socket: Some(32),
            max_pending_acks: 100,
            ..SocketLimits::default()
        },
        ..SocketIoConfig::default()
    }
}

/// The most one connection may make the server hold under `config`: its handshake headers
/// (kept with their map), a socket per namespace with its parsed `auth` (at most 4 × the auth
/// bound, see `retained_bytes`), rooms and bookkeeping, one binary packet's attachments in
/// waiting, the outgoing buffer, and one message being read and one being written.
fn bound(config: &SocketIoConfig) -> usize {
    let limits = &config.limits;
    let engine = &config.engine;
    let headers = 2 * engine.max_header_bytes;
    let per_socket =
        4 * limits.max_auth_bytes + 8 * 1024 + limits.max_rooms_per_socket.unwrap_or(0) * 512;
    let sockets = limits.max_namespaces_per_connection * per_socket;
    let max_payload = engine.session.max_payload;
    let attachments = max_payload;
    let buffers = engine.session.max_buffered_bytes + 2 * max_payload;
    headers + sockets + attachments + buffers
}

const MIB: f64 = 1024.0 * 1024.0;

type Ws = WebSocketStream<TcpStream>;

async fn send(ws: &mut Ws, text: String) {
    within(ws.send(Message::text(text))).await.expect("send");
}

/// The next text message other than a ping (answered).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => send(ws, "3".to_owned()).await,
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// The `auth` a hostile client sends: just within both auth bounds (bytes as received, memory
/// once parsed), mixing what costs most once parsed: tiny objects, nested one-item arrays
/// (each grown to four slots), and a long string.
fn hostile_auth() -> String {
    let objects = vec![r#"{"":0}"#; 30].join(",");
    let arrays = vec!["[[[[0]]]]"; 30].join(",");
    let pad = "a".repeat(13_000);
    format!(r#"{{"objects":[{objects}],"arrays":[{arrays}],"pad":"{pad}"}}"#)
}

/// A long room name.
fn room_name(r: usize) -> String {
    format!("{r}-{}", "r".repeat(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hostile_connection_holds_a_bounded_amount_of_memory() {
    let config = binary_defaults();
    let bound = bound(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| COUNTED.with(|counted| counted.set(true)))
        .enable_all()
        .build()
        .expect("server runtime");
    let on_server = runtime.handle().clone();
    let server = on_server.spawn(start(config.clone(), |io| {
        let join = |socket: Socket| async move {
            socket.on("join", |socket: Socket, room: String| async move {
                socket.join(room);
                Ok::<_, Infallible>(())
            });
        };
        io.of("/").on_connection(join);
        io.of_dynamic(|name| name.starts_with("/n-"))
            .on_connection(join);
    }));
    let server = within(server).await.expect("server started");
    let namespaces = config.limits.max_namespaces_per_connection;
    let rooms_each = 5;

    let attack = |warm_up: bool| {
        let addr = server.addr;
        let io = server.io.clone();
        let on_server = on_server.clone();
        async move {
            let mut request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
                .into_client_request()
                .expect("request");
            // Headers just under the bound.
            let pad = "h".repeat(config.engine.max_header_bytes - 512);
            request
                .headers_mut()
                .insert("x-pad", HeaderValue::from_str(&pad).expect("header"));
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut ws, _) = within(tokio_tungstenite::client_async(request, stream))
                .await
                .expect("websocket handshake");
            assert!(next_text(&mut ws).await.starts_with("0{"), "open packet");
            let t0 = live();
            // A socket in every namespace the connection may join, each with the largest auth
            // and several long-named rooms.
            let auth = hostile_auth();
            let mut root_sid = String::new();
            for n in 0..namespaces {
                let nsp = if n == 0 {
                    "/".to_owned()
                } else {
                    format!("/n-{n}")
                };
                let prefix = if n == 0 {
                    String::new()
                } else {
                    format!("{nsp},")
                };
                send(&mut ws, format!("40{prefix}{auth}")).await;
                let reply = next_text(&mut ws).await;
                let body = reply
                    .strip_prefix(&format!("40{prefix}"))
                    .unwrap_or_else(|| panic!("CONNECT to {nsp} refused: {reply}"));
                if n == 0 {
                    let reply: serde_json::Value = serde_json::from_str(body).expect("json");
                    root_sid = reply["sid"].as_str().expect("sid").to_owned();
                }
                for r in 0..rooms_each {
                    let room = room_name(r);
                    send(&mut ws, format!(r#"42{prefix}["join","{room}"]"#)).await;
                }
            }
            let t1 = live();
            wait_until("every socket joined its rooms", || {
                (1..namespaces).all(|n| {
                    let ns = io.of(&format!("/n-{n}"));
                    (0..rooms_each).all(|r| ns.room_size(&room_name(r)) == 1)
                })
            })
            .await;
            // A binary event announcing two attachments, with only the first, as large as a
            // message may be: the decoder holds it for the second.
            let announced =
                r#"452-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
            send(&mut ws, announced.to_owned()).await;
            let attachment = vec![7u8; config.engine.session.max_payload - 1024];
            within(ws.send(Message::binary(attachment)))
                .await
                .expect("send attachment");
            // A WebSocket ping is answered after every message before it was read.
            within(ws.send(Message::Ping(Vec::new().into())))
                .await
                .expect("ping");
            loop {
                match within(ws.next()).await {
                    Some(Ok(Message::Pong(_))) => break,
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
            let t2 = live();
            // Then it reads nothing more while the server writes to it, until its outgoing
            // buffer is full.
            let socket = io.of("/").get_socket(&root_sid).expect("root socket");
            let flood = on_server.spawn(async move {
                let chunk = "f".repeat(64 * 1024);
                for _ in 0..1_000 {
                    if socket.emit("flood", &chunk).is_err() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                false
            });
            let refused = within(flood).await.expect("flood task");
            assert!(refused, "the outgoing buffer never filled");
            let t3 = live();
            if !warm_up {
                println!(
                    "by step, KiB: {} sockets with their auth and rooms {}, a waiting attachment {}, \
                     the full outgoing buffer {}",
                    namespaces,
                    (t1 - t0) / 1024,
                    (t2 - t1) / 1024,
                    (t3 - t2) / 1024
                );
            }
            if warm_up {
                drop(ws);
                wait_until("the warm-up connection is gone", || {
                    io.engine().session_count() == 0
                })
                .await;
                None
            } else {
                Some(ws)
            }
        }
    };

    // Once first, so that what the server allocates once (namespaces, maps grown to size,
    // runtime structures) is not charged to the connection measured.
    attack(true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = live();
    PEAK.store(before, Ordering::Relaxed);
    let ws = attack(false).await;
    // The high-water mark: the server closes the connection once its outgoing buffer is
    // full, so what it holds is read at its peak, not after.
    let held = PEAK.load(Ordering::Relaxed) - before;
    println!(
        "one hostile connection holds {:.2} MiB (bound {:.2} MiB)",
        held as f64 / MIB,
        bound as f64 / MIB
    );
    assert!(
        held <= bound as isize,
        "one connection holds {held} bytes, over the bound of {bound}"
    );
    // All of it is given back when the connection ends.
    drop(ws);
    let io = server.io.clone();
    wait_until("the connection is gone", || {
        io.engine().session_count() == 0
    })
    .await;
    common::wait_until_async("the memory is given back", || {
        let io = io.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            io.of("/").socket_count() == 0 && live() - before < 256 * 1024
        }
    })
    .await;
    println!("left after close: {} KiB", (live() - before) / 1024);
    drop(server);
    runtime.shutdown_background();
}
