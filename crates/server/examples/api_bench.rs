//! Throughput and latency of the backend API's publish call, over HTTP and over gRPC, against
//! the `switchyard` binary on loopback.
//!
//! ```sh
//! cargo build --release -p switchyard-server --bins --examples
//! target/release/examples/api_bench [--binary target/release/switchyard] [--seconds 10] \
//!     [--http-connections 32] [--grpc-streams 64]
//! ```
//!
//! It starts the binary itself (`PORT=0`, `GRPC_PORT=0`, an API key), connects one Socket.IO
//! client as user `alice` on `/notifications` and one as `bob` on `/chat` (in room `general`,
//! with 50 messages of history), then runs each call in a closed loop: over HTTP, publish to
//! alice, sockets of alice, presence and history of `general`, info, on
//! `--http-connections` keep-alive connections, each one call at a time; over gRPC, publish on
//! `--grpc-streams` calls at once on one HTTP/2 connection. It prints calls per second, the
//! latency percentiles, and how many events alice got. It stops by itself and kills the server
//! it started.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use switchyard_client::{Auth, Manager, ManagerConfig, SocketOptions};

const KEY: &str = "bench-api-key-0123456789";

struct Options {
    binary: String,
    seconds: u64,
    http_connections: usize,
    grpc_streams: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        binary: "target/release/switchyard".to_owned(),
        seconds: 10,
        http_connections: 32,
        grpc_streams: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--binary" => options.binary = value,
            "--seconds" => options.seconds = value.parse()?,
            "--http-connections" => options.http_connections = value.parse()?,
            "--grpc-streams" => options.grpc_streams = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if !(1..=120).contains(&options.seconds) {
        bail!("--seconds: 1 to 120");
    }
    Ok(options)
}

/// The server this bench started, killed when dropped.
struct Server {
    child: Child,
    http: String,
    grpc: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str) -> anyhow::Result<Server> {
    let mut child = Command::new(binary)
        .env_clear()
        .env("PORT", "0")
        .env("GRPC_PORT", "0")
        .env("API_KEYS", KEY)
        // The bench's client is one user; its events are not rate-limited here.
        .env("EVENT_RATE", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut server = Server {
        child,
        http: String::new(),
        grpc: String::new(),
    };
    for _ in 0..2 {
        let line = lines.next().context("the server ended")??;
        if let Some(url) = line.strip_prefix("Switchyard listening on ") {
            server.http = url.to_owned();
        } else if let Some(address) = line.strip_prefix("Switchyard gRPC API listening on ") {
            server.grpc = address.to_owned();
        }
    }
    if server.http.is_empty() || server.grpc.is_empty() {
        bail!("unexpected startup lines");
    }
    Ok(server)
}

/// Latencies of one run, in microseconds, and how long it ran.
struct Run {
    latencies: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Run {
    fn report(mut self, what: &str, delivered: u64) {
        self.latencies.sort_unstable();
        let at = |quantile: f64| {
            let index = ((self.latencies.len() as f64 - 1.0) * quantile).round() as usize;
            self.latencies.get(index).copied().unwrap_or(0) as f64 / 1000.0
        };
        let calls = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{what}: {calls:.0} calls/s, latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; {} calls, {} errors, {delivered} events delivered",
            at(0.50),
            at(0.99),
            at(0.999),
            at(1.0),
            self.latencies.len(),
            self.errors
        );
    }
}

fn publish_body() -> String {
    json!({
        "namespace": "/notifications",
        "users": ["alice"],
        "event": "notification",
        "data": { "text": "bench" },
    })
    .to_string()
}

/// The HTTP calls measured: name, method, path and body.
fn http_calls() -> Vec<(&'static str, http::Method, &'static str, String)> {
    let room = json!({ "namespace": "/chat", "room": "chat:general" }).to_string();
    vec![
        (
            "publish",
            http::Method::POST,
            "/api/v1/publish",
            publish_body(),
        ),
        (
            "sockets",
            http::Method::POST,
            "/api/v1/sockets",
            json!({ "namespace": "/notifications", "users": ["alice"] }).to_string(),
        ),
        (
            "presence",
            http::Method::POST,
            "/api/v1/presence",
            room.clone(),
        ),
        ("history", http::Method::POST, "/api/v1/history", room),
        ("info", http::Method::GET, "/api/v1/info", String::new()),
    ]
}

async fn http_run(
    url: &str,
    (method, path, body): (http::Method, &str, String),
    connections: usize,
    duration: Duration,
) -> Run {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http();
    let uri: http::Uri = match format!("{url}{path}").parse() {
        Ok(uri) => uri,
        Err(_) => return empty_run(),
    };
    let body = Bytes::from(body);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, uri, body, errors) =
            (client.clone(), uri.clone(), body.clone(), errors.clone());
        let method = method.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let request = http::Request::builder()
                    .method(method.clone())
                    .uri(uri.clone())
                    .header("authorization", format!("Bearer {KEY}"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()));
                let Ok(request) = request else { break };
                let sent = Instant::now();
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.into_body().collect().await;
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    collect(tasks, errors, started).await
}

async fn grpc_run(address: &str, streams: usize, duration: Duration) -> Run {
    let Ok(tcp) = tokio::net::TcpStream::connect(address).await else {
        return empty_run();
    };
    let _ = tcp.set_nodelay(true);
    let Ok((send, connection)) = h2::client::handshake(tcp).await else {
        return empty_run();
    };
    tokio::spawn(connection);
    // A PublishRequest, protobuf-encoded by hand: target (1) { namespace (1), users (3) },
    // event (2), data_json (3); then the gRPC frame: uncompressed, 4-byte length.
    let mut target = BytesMut::new();
    field(&mut target, 1, b"/notifications");
    field(&mut target, 3, b"alice");
    let mut message = BytesMut::new();
    field(&mut message, 1, &target);
    field(&mut message, 2, b"notification");
    field(&mut message, 3, br#"{"text":"bench"}"#);
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    let frame = frame.freeze();
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (send, frame, errors) = (send.clone(), frame.clone(), errors.clone());
        let address = address.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                if grpc_call(send.clone(), &address, frame.clone()).await {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    collect(tasks, errors, started).await
}

/// One unary call; whether it ended with `grpc-status: 0`.
async fn grpc_call(send: h2::client::SendRequest<Bytes>, address: &str, frame: Bytes) -> bool {
    let Ok(mut send) = send.ready().await else {
        return false;
    };
    let request = http::Request::post(format!(
        "http://{address}/switchyard.api.v1.SwitchyardApi/Publish"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {KEY}"))
    .body(());
    let Ok(request) = request else { return false };
    let Ok((response, mut stream)) = send.send_request(request, false) else {
        return false;
    };
    if stream.send_data(frame, true).is_err() {
        return false;
    }
    let Ok(response) = response.await else {
        return false;
    };
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return false };
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    match body.trailers().await {
        Ok(Some(trailers)) => trailers
            .get("grpc-status")
            .is_some_and(|status| status == "0"),
        _ => false,
    }
}

/// A length-delimited protobuf field.
fn field(out: &mut BytesMut, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

fn varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn empty_run() -> Run {
    Run {
        latencies: Vec::new(),
        errors: 1,
        elapsed: Duration::from_secs(1),
    }
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    errors: Arc<AtomicU64>,
    started: Instant,
) -> Run {
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(mut part) = task.await {
            latencies.append(&mut part);
        }
    }
    Run {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let server = start(&options.binary)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let delivered = Arc::new(AtomicU64::new(0));
        let manager = Manager::new(&server.http, ManagerConfig::default())?;
        let socket = manager.socket_with(
            "/notifications",
            SocketOptions {
                auth: Auth::Value(json!({ "user": "alice" })),
                ..SocketOptions::default()
            },
        );
        let counter = delivered.clone();
        socket.on("notification", move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(())
        });
        tokio::time::timeout(Duration::from_secs(10), socket.connect())
            .await
            .context("connect in time")??;
        let duration = Duration::from_secs(options.seconds);
        println!(
            "publish to one user, {} s per transport, server {}",
            options.seconds, options.binary
        );
        // A room with a member and some history, for presence and history.
        let chat = manager.socket_with(
            "/chat",
            SocketOptions {
                auth: Auth::Value(json!({ "name": "bob" })),
                ..SocketOptions::default()
            },
        );
        tokio::time::timeout(Duration::from_secs(10), chat.connect())
            .await
            .context("connect in time")??;
        chat.emit_with_ack("join", "general", Duration::from_secs(10))
            .await?;
        for n in 0..50 {
            let message = json!({ "room": "general", "text": format!("message {n}") });
            chat.emit_with_ack("message", message, Duration::from_secs(10))
                .await?;
        }
        for (name, method, path, body) in http_calls() {
            let run = http_run(
                &server.http,
                (method, path, body),
                options.http_connections,
                duration,
            )
            .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let delivered = delivered.swap(0, Ordering::Relaxed);
            run.report(
                &format!("HTTP {name}, {} connections", options.http_connections),
                delivered,
            );
        }
        let run = grpc_run(&server.grpc, options.grpc_streams, duration).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        run.report(
            &format!(
                "gRPC publish, {} streams on 1 connection",
                options.grpc_streams
            ),
            delivered.load(Ordering::Relaxed),
        );
        manager.close();
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
