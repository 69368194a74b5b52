//! Sign-in and the web app on the binary, over real HTTP and with real Socket.IO clients:
//! `GET /auth/config` in each mode, `POST /auth/dev-token` (on in dev mode only, its bodies
//! bounded and checked), development tokens on `/chat` and `/notifications` in dev mode (the
//! token's `sub` is the sender; bad tokens refused like JWT's; expiry enforced), and the static
//! routes with their headers.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ack, client, next};
use serde_json::{json, Value};
use switchyard_auth::jsonwebtoken::{encode, EncodingKey, Header};
use switchyard_client::ConnectError;
use switchyard_testkit::DEADLINE;

/// The documented development secret.
const DEV_SECRET: &str = "switchyard-development-secret-do-not-use-in-production";
/// A real key.
const REAL_SECRET: &str = "a-real-secret-0123456789abcdef";

/// `method path` with `body` on a blocking thread: the status and the JSON body.
async fn http(url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (url, method, path, body) = (
        url.to_owned(),
        method.to_owned(),
        path.to_owned(),
        body.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || common::call(&url, &method, &path, None, body.as_deref()))
        .await
        .expect("call")
}

/// A development token for `name` from the server.
async fn dev_token(url: &str, name: &str) -> Value {
    let (status, answer) = http(
        url,
        "POST",
        "/auth/dev-token",
        Some(&json!({ "name": name }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// A token with `claims` signed with `secret`.
fn sign(secret: &str, claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Connects `namespace` with `auth`: the refusal, if any.
async fn refusal(url: &str, namespace: &str, auth: Value) -> Option<(String, Option<Value>)> {
    let (_manager, socket) = common::socket(url, namespace, auth);
    let result = tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("the connection settles in time");
    match result {
        Ok(()) => None,
        Err(ConnectError::Refused { message, data }) => Some((message, data)),
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

fn unauthorized(reason: &str, code: u16) -> Option<(String, Option<Value>)> {
    Some((
        "unauthorized".to_owned(),
        Some(json!({ "code": code, "reason": reason })),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_tells_each_mode_and_the_endpoint_follows_it() {
    let name = Some(r#"{"name":"alice"}"#);
    // Dev mode: no key.
    let dev = common::start(&["--port", "0"], &[]);
    assert_eq!(
        http(&dev.url, "GET", "/auth/config", None).await,
        (
            200,
            json!({ "devTokens": true, "jwt": false, "tokenTtlS": 300 })
        )
    );
    assert_eq!(http(&dev.url, "POST", "/auth/dev-token", name).await.0, 200);

    // A real key: tokens required, no development tokens.
    let real = common::start(&["--port", "0"], &[("JWT_SECRET", REAL_SECRET)]);
    assert_eq!(
        http(&real.url, "GET", "/auth/config", None).await,
        (
            200,
            json!({ "devTokens": false, "jwt": true, "tokenTtlS": 300 })
        )
    );
    let (status, answer) = http(&real.url, "POST", "/auth/dev-token", name).await;
    assert_eq!(status, 404);
    assert!(answer["error"].is_string(), "{answer}");
    // Not even when asked for.
    let asked = common::start(
        &["--port", "0", "--dev-tokens", "true"],
        &[("JWT_SECRET", REAL_SECRET)],
    );
    assert_eq!(
        http(&asked.url, "POST", "/auth/dev-token", name).await.0,
        404
    );

    // A real key and the development secret: both secrets are accepted, but a server with a
    // real key never hands tokens out over HTTP.
    let both = common::start(
        &["--port", "0", "--jwt-dev-secret"],
        &[("JWT_SECRET", REAL_SECRET)],
    );
    assert_eq!(
        http(&both.url, "GET", "/auth/config", None).await.1,
        json!({ "devTokens": false, "jwt": true, "tokenTtlS": 300 })
    );
    assert_eq!(
        http(&both.url, "POST", "/auth/dev-token", name).await.0,
        404
    );

    // The development secret alone: tokens required, development tokens on.
    let dev_secret = common::start(&["--port", "0", "--jwt-dev-secret"], &[]);
    assert_eq!(
        http(&dev_secret.url, "GET", "/auth/config", None).await.1,
        json!({ "devTokens": true, "jwt": true, "tokenTtlS": 300 })
    );
    let token = dev_token(&dev_secret.url, "carol").await;
    let (_m, _carol, _events) =
        client(&dev_secret.url, "/chat", json!({ "token": token["token"] })).await;

    // Turned off, with another lifetime.
    let off = common::start(
        &[
            "--port",
            "0",
            "--dev-tokens=false",
            "--dev-token-ttl-s",
            "60",
        ],
        &[],
    );
    assert_eq!(
        http(&off.url, "GET", "/auth/config", None).await.1,
        json!({ "devTokens": false, "jwt": false, "tokenTtlS": 60 })
    );
    assert_eq!(http(&off.url, "POST", "/auth/dev-token", name).await.0, 404);
    let env_off = common::start(&["--port", "0"], &[("DEV_TOKENS", "false")]);
    assert_eq!(
        http(&env_off.url, "POST", "/auth/dev-token", name).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_token_signs_in_with_its_sub_on_every_namespace() {
    let server = common::start(
        &[
            "--port",
            "0",
            "--jwt-issuer",
            "https://dev.test",
            "--jwt-audience",
            "switchyard",
        ],
        &[],
    );
    let before = now();
    let minted = dev_token(&server.url, " alice ").await;
    assert_eq!(minted["sub"], "alice");
    let expires = minted["expiresAt"].as_u64().expect("expiresAt");
    assert!((before + 300..=now() + 300).contains(&expires), "{minted}");
    let token = minted["token"].as_str().expect("token").to_owned();

    // The token wins over a name given beside it.
    let (_m, alice, mut events) = client(
        &server.url,
        "/chat",
        json!({ "token": token, "name": "mallory" }),
    )
    .await;
    let joined = ack(&alice, "join", json!("any-room")).await;
    assert_eq!(joined["users"], json!(["alice"]), "{joined}");
    assert_eq!(
        ack(
            &alice,
            "message",
            json!({ "room": "any-room", "text": "hi" })
        )
        .await,
        json!({ "ok": true })
    );
    loop {
        let (event, data) = next(&mut events).await;
        if event == "message" {
            assert_eq!(data["sender"], "alice", "{data}");
            assert_eq!(data["text"], "hi");
            break;
        }
    }
    // The notifications namespace takes the same token (no auth.user needed).
    let (_n, _notified, _events) =
        client(&server.url, "/notifications", json!({ "token": token })).await;

    // Names alone still work in dev mode.
    let (_b, bob, _bob_events) = client(&server.url, "/chat", json!({ "name": "bob" })).await;
    let joined = ack(&bob, "join", json!("any-room")).await;
    assert_eq!(joined["users"], json!(["alice", "bob"]), "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_in_dev_mode() {
    let server = common::start(&["--port", "0", "--jwt-issuer", "https://dev.test"], &[]);
    let claims = |exp: u64| json!({ "sub": "eve", "exp": exp, "iss": "https://dev.test" });
    let cases = [
        (
            sign(DEV_SECRET, &claims(now().saturating_sub(600))),
            "expired",
            4003,
        ),
        (
            sign("another-secret-0123456789abcdef", &claims(now() + 600)),
            "invalid_signature",
            4005,
        ),
        (
            sign(DEV_SECRET, &json!({ "sub": "eve", "exp": now() + 600 })),
            "wrong_issuer",
            4006,
        ),
        ("not-a-jwt".to_owned(), "malformed", 4002),
    ];
    for (token, reason, code) in cases {
        for (namespace, auth) in [
            ("/chat", json!({ "token": token, "name": "eve" })),
            ("/notifications", json!({ "token": token, "user": "eve" })),
        ] {
            assert_eq!(
                refusal(&server.url, namespace, auth).await,
                unauthorized(reason, code),
                "{namespace} {reason}"
            );
        }
    }
    assert_eq!(
        refusal(&server.url, "/chat", json!({ "token": 5, "name": "eve" })).await,
        unauthorized("malformed", 4002)
    );
    // A token signed with the development secret is worth nothing once a real key is set.
    let real = common::start(&["--port", "0"], &[("JWT_SECRET", REAL_SECRET)]);
    let token = sign(DEV_SECRET, &json!({ "sub": "eve", "exp": now() + 600 }));
    assert_eq!(
        refusal(&real.url, "/chat", json!({ "token": token })).await,
        unauthorized("invalid_signature", 4005)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_token_that_expires_disconnects_its_socket() {
    let server = common::start(&["--port", "0", "--jwt-leeway-s", "0"], &[]);
    let token = sign(DEV_SECRET, &json!({ "sub": "alice", "exp": now() + 4 }));
    let (_m, socket, mut events) = client(&server.url, "/chat", json!({ "token": token })).await;
    let (disconnected_tx, mut disconnected) = tokio::sync::mpsc::unbounded_channel();
    socket.on_disconnect(move |_, reason| {
        let _ = disconnected_tx.send(reason.as_str());
    });
    let (event, data) = loop {
        let (event, data) = next(&mut events).await;
        if event == "auth_expired" {
            break (event, data);
        }
    };
    assert_eq!(
        (event.as_str(), data),
        ("auth_expired", json!({ "reason": "expired" }))
    );
    let reason = tokio::time::timeout(DEADLINE + Duration::from_secs(5), disconnected.recv())
        .await
        .expect("disconnected in time");
    assert_eq!(reason, Some("io server disconnect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_with_json() {
    let server = common::start(&["--port", "0"], &[]);
    let long = json!({ "name": "a".repeat(2000) }).to_string();
    let overlong = json!({ "name": "a".repeat(65) }).to_string();
    for (body, status) in [
        ("{", 400),
        ("", 400),
        ("{}", 400),
        (r#"{"name":""}"#, 400),
        (r#"{"name":["alice"]}"#, 400),
        (overlong.as_str(), 400),
        (long.as_str(), 413),
    ] {
        let (got, answer) = http(&server.url, "POST", "/auth/dev-token", Some(body)).await;
        assert_eq!(got, status, "{body:.40}: {answer}");
        assert!(answer["error"].is_string(), "{body:.40}: {answer}");
    }
    let (status, answer) = http(&server.url, "GET", "/auth/dev-token", None).await;
    assert_eq!((status, answer["error"].is_string()), (405, true));
    let (status, answer) = http(&server.url, "GET", "/auth/nothing", None).await;
    assert_eq!((status, answer["error"].is_string()), (404, true));
}

/// `GET path`: the status, the head (lower-cased) and the body.
async fn get_raw(url: &str, method: &str, path: &str) -> (u16, String, String) {
    let (url, method, path) = (url.to_owned(), method.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let address = url.strip_prefix("http://").expect("an http URL").to_owned();
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        (status, head.to_ascii_lowercase(), body.to_owned())
    })
    .await
    .expect("call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_and_its_routes_are_served_with_a_strict_policy() {
    let server = common::start(&["--port", "0"], &[]);
    let (status, _, page) = get_raw(&server.url, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(page.to_ascii_lowercase().starts_with("<!doctype html>"));
    for route in [
        "/index.html",
        "/chat",
        "/chat/general",
        "/notifications",
        "/docs",
        "/docs/d1",
        "/call",
    ] {
        let (status, head, body) = get_raw(&server.url, "GET", route).await;
        assert_eq!(status, 200, "{route}");
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{route}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
            "{route}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{route}");
        assert!(head.contains("cache-control: no-cache"), "{route}");
        assert_eq!(body, page, "{route}");
    }
    let (status, head, _) = get_raw(&server.url, "GET", "/assets/app.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript; charset=utf-8"));
    let (status, head, body) = get_raw(&server.url, "GET", "/vendor/socket.io.min.js").await;
    assert_eq!(status, 404);
    assert!(head.contains("content-type: application/json"));
    assert_eq!(body, r#"{"error":"not found"}"#);
    let (status, head, _) = get_raw(&server.url, "DELETE", "/chat").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
    // The probes and the engine keep their paths.
    assert_eq!(get_raw(&server.url, "GET", "/healthz").await.0, 200);
}
