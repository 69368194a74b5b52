//! Admission limits against a real engine: each limit is reached and answered with its status
//! and JSON body, while a well-behaved client keeps working.

mod common;

use common::*;
use switchyard_engineio::{Limits, Rate};

fn limited(limits: Limits) -> switchyard_engineio::EngineConfig {
    config().limits(limits)
}

async fn polling_handshake(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> HttpResponse {
    request(addr, "GET", &path("EIO=4&transport=polling"), headers, b"").await
}

/// A session keeps echoing: the well-behaved client beside each limit.
async fn assert_echo_works(addr: std::net::SocketAddr, sid: &str) {
    assert_ok(&post(addr, sid, b"4still here").await);
    let response = get_skipping_noops(addr, sid).await;
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("4still here"),
        "{}",
        response.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_sessions_are_capped_with_503() {
    let server = Server::with_config(limited(Limits {
        max_sessions: Some(2),
        ..Limits::default()
    }))
    .await;
    let first = handshake(server.addr).await;
    let _second = handshake(server.addr).await;
    let refused = polling_handshake(server.addr, &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.text(),
        r#"{"code":4,"message":"Too many connections"}"#
    );
    assert_eq!(server.engine.session_count(), 2);
    assert_echo_works(server.addr, &first).await;
    // A WebSocket handshake over the limit gets a plain refusal.
    assert!(ws_try_connect(server.addr, "EIO=4&transport=websocket")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_address_are_capped_with_429_and_freed_on_close() {
    let server = Server::with_config(limited(Limits {
        max_sessions_per_ip: Some(2),
        ..Limits::default()
    }))
    .await;
    let first = handshake(server.addr).await;
    let second = handshake(server.addr).await;
    let refused = polling_handshake(server.addr, &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.text(),
        r#"{"code":4,"message":"Too many connections from this address"}"#
    );
    assert_echo_works(server.addr, &first).await;
    // Closing a session frees its place.
    assert_ok(&post(server.addr, &second, b"1").await);
    assert!(wait_until(LIMIT, || server.engine.session_count() == 1).await);
    let _third = handshake(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rate_per_address_answers_429_with_retry_after() {
    let server = Server::with_config(limited(Limits {
        // Slow enough that no token comes back while the test runs, however loaded the machine.
        handshake_rate_per_ip: Some(Rate::new(0.01, 3)),
        ..Limits::default()
    }))
    .await;
    let first = handshake(server.addr).await;
    handshake(server.addr).await;
    handshake(server.addr).await;
    let refused = polling_handshake(server.addr, &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.text(),
        r#"{"code":4,"message":"Too many handshakes from this address"}"#
    );
    assert_eq!(server.engine.session_count(), 3);
    // Requests of live sessions are not handshakes: they go on.
    assert_echo_works(server.addr, &first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allow_list_are_refused_with_403() {
    let server = Server::with_config(limited(Limits {
        allowed_origins: Some(vec!["https://app.test".into()]),
        ..Limits::default()
    }))
    .await;
    let refused = polling_handshake(server.addr, &[("Origin", "https://evil.test")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.text(),
        r#"{"code":4,"message":"Origin not allowed"}"#
    );
    let allowed = polling_handshake(server.addr, &[("Origin", "https://app.test")]).await;
    assert_eq!(allowed.status, 200);
    // A non-browser client sends no Origin and is not a cross-site request.
    let sid = handshake(server.addr).await;
    assert_echo_works(server.addr, &sid).await;
    assert_eq!(server.engine.session_count(), 2);
}
