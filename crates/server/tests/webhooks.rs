//! The webhooks of the binary, against a small real HTTP backend started by each test: the
//! backend decides connections and answers forwarded events, hears of disconnections, and
//! every call is signed; a backend that is down, slow or busy gives the client a clear error,
//! never a hang.

mod common;

use common::ack;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use switchyard_client::Manager;
use switchyard_testkit::DEADLINE;
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret-for-tests";

/// A call the backend received: its headers of interest and its JSON body.
#[derive(Debug, Clone)]
struct Call {
    event: String,
    delivery: String,
    signature: String,
    raw: Bytes,
    body: Value,
}

/// What the backend answers: a status, a body, after a pause.
struct Answer {
    status: StatusCode,
    body: String,
    pause: Duration,
}

impl Answer {
    fn json(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: body.to_string(),
            pause: Duration::ZERO,
        }
    }
}

type Decide = Arc<dyn Fn(&Value, usize) -> Answer + Send + Sync>;

/// A backend on 127.0.0.1: the URL of its endpoint and the calls it received. `decide` gets
/// each call's body and how many calls came before it.
async fn backend(decide: Decide) -> (String, mpsc::UnboundedReceiver<Call>) {
    backend_with(decide, None).await
}

/// [`backend`], over TLS with `acceptor` when given (an https:// endpoint).
async fn backend_with(
    decide: Decide,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> (String, mpsc::UnboundedReceiver<Call>) {
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, decide, count) = (tx.clone(), decide.clone(), count.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (tx, decide, count) = (tx.clone(), decide.clone(), count.clone());
                        async move {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|value| value.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (event, delivery, signature) = (
                                header("x-switchyard-event"),
                                header("x-switchyard-delivery"),
                                header("x-switchyard-signature"),
                            );
                            let raw = request
                                .into_body()
                                .collect()
                                .await
                                .map(|body| body.to_bytes())
                                .unwrap_or_default();
                            let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                            let seen = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let answer = decide(&body, seen);
                            let _ = tx.send(Call {
                                event,
                                delivery,
                                signature,
                                raw,
                                body,
                            });
                            tokio::time::sleep(answer.pause).await;
                            let mut response = Response::new(Full::new(Bytes::from(answer.body)));
                            *response.status_mut() = answer.status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => {
                        // A client that refuses the certificate ends the handshake: no call.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            });
        }
    });
    (format!("{scheme}://{address}/hooks"), rx)
}

/// A self-signed certificate for 127.0.0.1 (made by `openssl`, as the web tests' is): the
/// directory holding `cert.pem` and `key.pem`, and a TLS acceptor serving it.
fn self_signed() -> (tempfile::TempDir, tokio_rustls::TlsAcceptor) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            // A leaf, not a CA: rustls refuses a CA certificate as the server's own.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian's openssl package)");
    assert!(status.success(), "openssl made the certificate");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.path().join("cert.pem"))
            .expect("cert.pem")
            .collect::<Result<_, _>>()
            .expect("PEM");
    let key = PrivateKeyDer::from_pem_file(dir.path().join("key.pem")).expect("key.pem");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a certificate and its key");
    (dir, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The next call of type `kind`, skipping others.
async fn next_call(calls: &mut mpsc::UnboundedReceiver<Call>, kind: &str) -> Call {
    loop {
        let call = tokio::time::timeout(DEADLINE, calls.recv())
            .await
            .expect("a webhook call in time")
            .expect("the backend runs");
        if call.event == kind {
            return call;
        }
    }
}

/// Checks the call's signature as a backend would: HMAC-SHA256 of `<t>.<body>`.
fn assert_signed(call: &Call) {
    let (timestamp, tag) = call
        .signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header {:?}", call.signature));
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&call.raw);
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let expected: String = hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(tag, expected, "the signature verifies");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let timestamp: u64 = timestamp.parse().expect("a unix timestamp");
    assert!(timestamp.abs_diff(now) < 300, "a fresh timestamp");
    assert_eq!(call.delivery.len(), 32, "a delivery id");
}

/// The server with webhooks on `/chat` at `url`, plus `args`.
fn server(url: &str, args: &[&str]) -> common::Server {
    let hook = format!("/chat={url}");
    let mut all = vec!["--port", "0", "--webhook-url", hook.as_str()];
    all.extend_from_slice(args);
    common::start(&all, &[("WEBHOOK_SECRET", SECRET)])
}

/// A `/chat` client named `name` (dev mode), not connected yet, that does not reconnect.
fn chat_client(url: &str, name: &str) -> (Manager, switchyard_client::Socket) {
    common::socket(url, "/chat", json!({ "name": name }))
}

async fn connect(
    socket: &switchyard_client::Socket,
) -> Result<(), switchyard_client::ConnectError> {
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("the connection settles in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_decides_connections_and_gives_data_and_rooms() {
    let (url, mut calls) = backend(Arc::new(|body: &Value, _| {
        if body["auth"]["name"] == "eve" {
            return Answer {
                status: StatusCode::FORBIDDEN,
                body: json!({ "error": "suspended" }).to_string(),
                pause: Duration::ZERO,
            };
        }
        if body["auth"]["name"] == "mallory" {
            return Answer::json(json!({
                "allow": false, "message": "banned", "data": { "until": "tomorrow" }
            }));
        }
        match body["type"].as_str() {
            Some("connect") => Answer::json(json!({
                "allow": true, "data": { "plan": "pro" }, "rooms": ["vip"]
            })),
            _ => Answer::json(json!({ "seen": body["data"] })),
        }
    }))
    .await;
    let server = server(
        &url,
        &[
            "--webhook-connect",
            "/chat",
            "--webhook-events",
            "/chat=order",
        ],
    );

    let (_alice_manager, alice) = chat_client(&server.url, "alice");
    let (tx, mut messages) = mpsc::unbounded_channel();
    alice.on("message", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.value());
        }
    });
    connect(&alice).await.expect("alice is allowed");
    let call = next_call(&mut calls, "connect").await;
    assert_signed(&call);
    assert_eq!(call.body["type"], "connect");
    assert_eq!(call.body["namespace"], "/chat");
    assert_eq!(call.body["user"], "alice");
    assert_eq!(call.body["auth"], json!({ "name": "alice" }));
    assert_eq!(call.body["socket"].as_str(), alice.id().as_deref());
    assert_eq!(call.body["address"], "127.0.0.1");

    // The backend put her in `vip`: she may speak there without joining.
    let sent = ack(&alice, "message", json!({ "room": "vip", "text": "hi" })).await;
    assert_eq!(sent, json!({ "ok": true }));
    let message = tokio::time::timeout(DEADLINE, messages.recv())
        .await
        .expect("her message in time")
        .expect("a message");
    assert_eq!(message["sender"], "alice");

    // The data the backend attached comes back with each later call.
    let answer = ack(&alice, "order", json!({ "item": 1 })).await;
    assert_eq!(answer, json!({ "seen": { "plan": "pro" } }));

    let (_mallory_manager, mallory) = chat_client(&server.url, "mallory");
    let refused = connect(&mallory).await.expect_err("mallory is refused");
    assert_eq!(refused.message(), "banned");
    assert_eq!(refused.data(), Some(&json!({ "until": "tomorrow" })));

    // A 4xx answer refuses too, with the backend's message.
    let (_eve_manager, eve) = chat_client(&server.url, "eve");
    let refused = connect(&eve).await.expect_err("eve is refused");
    assert_eq!(refused.message(), "suspended");

    let (status, text) = metrics(&server.url).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("switchyard_webhook_calls_total{kind=\"connect\",outcome=\"ok\"} 2")
            && text
                .contains("switchyard_webhook_calls_total{kind=\"connect\",outcome=\"refused\"} 1"),
        "{text}"
    );
    assert!(text.contains("switchyard_webhook_duration_seconds_count{kind=\"event\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_events_are_answered_by_the_backend() {
    let (url, mut calls) = backend(Arc::new(|body: &Value, _| {
        match body["args"][0]["item"].as_str() {
            Some("sold-out") => Answer {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({ "error": "sold out" }).to_string(),
                pause: Duration::ZERO,
            },
            Some("crash") => Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: "oops".to_owned(),
                pause: Duration::ZERO,
            },
            Some("huge") => Answer::json(json!({ "blob": "x".repeat(4096) })),
            _ => Answer::json(json!({ "accepted": true, "args": body["args"] })),
        }
    }))
    .await;
    let server = server(
        &url,
        &[
            "--webhook-events",
            "/chat=order",
            "--webhook-max-response-bytes",
            "1024",
        ],
    );
    let (_manager, socket) = chat_client(&server.url, "bob");
    connect(&socket).await.expect("connected");

    let args = switchyard_client::Args::one(&json!({ "item": "book" }))
        .and_then(|args| args.push(&switchyard_client::Binary::from(vec![1u8, 2, 3])))
        .expect("args");
    let answer = socket
        .emit_with_ack("order", args, DEADLINE)
        .await
        .expect("an ack");
    assert_eq!(
        answer.get::<Value>(0).expect("json"),
        json!({ "accepted": true, "args": [{ "item": "book" }, { "$binary": "AQID" }] })
    );
    let call = next_call(&mut calls, "event").await;
    assert_signed(&call);
    assert_eq!(call.body["event"], "order");
    assert_eq!(call.body["user"], "bob");

    assert_eq!(
        ack(&socket, "order", json!({ "item": "sold-out" })).await,
        json!({ "error": "sold out" })
    );
    assert_eq!(
        ack(&socket, "order", json!({ "item": "crash" })).await,
        json!({ "error": "backend unavailable" })
    );
    assert_eq!(
        ack(&socket, "order", json!({ "item": "huge" })).await,
        json!({ "error": "backend unavailable" })
    );
    // A failed event call is not retried: one call each.
    for _ in 0..3 {
        next_call(&mut calls, "event").await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), calls.recv())
            .await
            .is_err(),
        "no retry of an event call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnections_are_reported_and_retried_with_one_delivery_id() {
    // The first disconnect call fails: the retry carries the same delivery id.
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = failures.clone();
    let (url, mut calls) = backend(Arc::new(move |body: &Value, _| {
        if body["type"] == "disconnect"
            && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            return Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: String::new(),
                pause: Duration::ZERO,
            };
        }
        Answer::json(json!({ "allow": true, "data": { "session": 7 } }))
    }))
    .await;
    let server = server(
        &url,
        &[
            "--webhook-connect",
            "/chat",
            "--webhook-disconnect",
            "/chat",
        ],
    );
    let (_manager, socket) = chat_client(&server.url, "carol");
    connect(&socket).await.expect("connected");
    let id = socket.id().expect("an id");
    socket.disconnect();

    let first = next_call(&mut calls, "disconnect").await;
    let retry = next_call(&mut calls, "disconnect").await;
    assert_signed(&retry);
    assert_eq!(first.delivery, retry.delivery);
    assert_eq!(retry.body["socket"], id);
    assert_eq!(retry.body["user"], "carol");
    assert_eq!(retry.body["reason"], "client namespace disconnect");
    assert_eq!(retry.body["data"], json!({ "session": 7 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_slow_or_busy_gets_clear_errors_never_a_hang() {
    // Down: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("http://{}/hooks", closed.local_addr().expect("address"));
    drop(closed);
    let server_down = server(&down, &["--webhook-connect", "/chat"]);
    let (_manager, socket) = chat_client(&server_down.url, "dave");
    let refused = connect(&socket).await.expect_err("refused");
    assert_eq!(refused.message(), "backend unavailable");
    assert_eq!(refused.data(), Some(&json!({ "reason": "unreachable" })));

    // Slow: event calls, and the connect calls of user `slow`, are never answered in time.
    let (url, mut calls) = backend(Arc::new(|body: &Value, _| {
        let pause = Answer {
            status: StatusCode::OK,
            body: json!({ "allow": true }).to_string(),
            pause: Duration::from_secs(60),
        };
        match body["type"].as_str() {
            Some("connect") if body["user"] != "slow" => Answer::json(json!({ "allow": true })),
            _ => pause,
        }
    }))
    .await;
    let server = server(
        &url,
        &[
            "--webhook-connect",
            "/chat",
            "--webhook-events",
            "/chat=order",
            "--webhook-timeout-ms",
            "2000",
            "--webhook-max-pending",
            "1",
            "--webhook-concurrency",
            "1",
        ],
    );
    let (_manager, erin) = chat_client(&server.url, "erin");
    connect(&erin).await.expect("connected");
    let first = {
        let erin = erin.clone();
        tokio::spawn(async move { ack(&erin, "order", json!({ "n": 1 })).await })
    };
    // Once the backend holds the first event (and the only call slot), a second event of the
    // same socket is over its pending limit.
    next_call(&mut calls, "event").await;
    assert_eq!(
        ack(&erin, "order", json!({ "n": 2 })).await,
        json!({ "error": "too many pending webhook calls" })
    );
    // Another client's connect waits for the slot, then for the backend: refused in time.
    let (_slow_manager, slow) = chat_client(&server.url, "slow");
    let refused = connect(&slow).await.expect_err("refused");
    assert_eq!(refused.message(), "backend unavailable");
    let reason = refused.data().map(|data| data["reason"].clone());
    assert!(
        reason == Some(json!("busy")) || reason == Some(json!("timeout")),
        "{refused:?}"
    );
    let first = tokio::time::timeout(DEADLINE, first)
        .await
        .expect("the first event is answered in time")
        .expect("task");
    assert_eq!(first, json!({ "error": "backend unavailable" }));
    // The pending count was given back: the next event goes to the backend again.
    assert_eq!(
        ack(&erin, "order", json!({ "n": 3 })).await,
        json!({ "error": "backend unavailable" })
    );
    assert_eq!(
        next_call(&mut calls, "event").await.body["args"],
        json!([{ "n": 3 }])
    );
}

async fn metrics(url: &str) -> (u16, String) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || common::call_text(&url, "GET", "/metrics", None, None))
        .await
        .expect("scrape")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_called_when_its_certificate_is_trusted() {
    let (dir, acceptor) = self_signed();
    let allow: Decide = Arc::new(|_: &Value, _| Answer::json(json!({ "allow": true })));
    let (url, mut calls) = backend_with(allow, Some(acceptor)).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = dir.path().join("cert.pem");
    let ca = ca.to_str().expect("a UTF-8 path");

    // Trusted through --webhook-ca-file: the call goes out, signed, and is answered.
    let trusting = server(
        &url,
        &["--webhook-connect", "/chat", "--webhook-ca-file", ca],
    );
    let (_m, alice) = chat_client(&trusting.url, "alice");
    connect(&alice).await.expect("the backend allowed alice");
    let call = next_call(&mut calls, "connect").await;
    assert_signed(&call);
    assert_eq!(call.body["auth"]["name"], "alice");

    // Without it, the certificate is refused: the client gets the clear error, not a hang.
    let wary = server(&url, &["--webhook-connect", "/chat"]);
    let (_m, bob) = chat_client(&wary.url, "bob");
    let refused = connect(&bob).await.expect_err("no trusted backend");
    let text = refused.to_string();
    assert!(text.contains("backend unavailable"), "{text}");
}
