//! Misuse and abandonment: after each, no session is left behind and the handler saw exactly
//! one close, with the expected reason.

mod common;

use std::time::Instant;

use common::*;
use switchyard_engineio::{CloseReason, EngineConfig, TransportKind};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_aborted_by_the_client_is_a_transport_error() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = send_request(server.addr, "GET", &poll_path(&sid), &[], b"").await;
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.poll_waiting()).await);
    drop(waiting);
    server
        .assert_all_closed(&[CloseReason::TransportError])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_concurrent_get_is_refused_and_the_first_gets_close() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let first = spawn_get(server.addr, &sid);
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.poll_waiting()).await);
    let second = get(server.addr, &sid).await;
    assert_error(&second, 400, 3, "Bad request");
    let first = within("first get", first).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "1");
    server
        .assert_all_closed(&[CloseReason::TransportError])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_concurrent_post_is_refused_and_closes_the_session() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    // The first POST sends its head and half its body, then stalls.
    let mut first = within("connect", tokio::net::TcpStream::connect(server.addr))
        .await
        .unwrap();
    first
        .write_all(&request_head("POST", &poll_path(&sid), &[], Some(7)))
        .await
        .unwrap();
    first.write_all(b"4hel").await.unwrap();
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.post_in_progress()).await);
    let second = post(server.addr, &sid, b"4x").await;
    assert_error(&second, 400, 3, "Bad request");
    // The session is gone, so the first POST ends at once rather than wait for the rest of a
    // body that would go nowhere.
    assert_error(&read_response(first).await, 400, 1, "Session ID unknown");
    server
        .assert_all_closed(&[CloseReason::TransportError])
        .await;
    assert_eq!(server.recorder.messages(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_that_does_not_parse_is_a_parse_error() {
    let server = Server::start().await;
    let bodies: [&[u8]; 4] = [
        b"9oops",     // unknown packet type
        b"4ok\x1e",   // empty packet after the separator
        b"b%%%",      // invalid base64
        b"4\xff\xfe", // not UTF-8
    ];
    for body in bodies {
        let sid = handshake(server.addr).await;
        let response = post(server.addr, &sid, body).await;
        assert_error(&response, 400, 3, "Bad request");
    }
    server
        .assert_all_closed(&[CloseReason::ParseError; 4])
        .await;
    assert_eq!(server.recorder.messages(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_client_that_never_answers_pings_times_out() {
    let server = Server::start().await;
    // Taken before the sessions open, so no heartbeat deadline comes before it.
    let start = Instant::now();
    let polled = handshake(server.addr).await;
    let idle = handshake(server.addr).await;
    // One client collects the ping and does not answer; the other never polls at all.
    let ping = get(server.addr, &polled).await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.text(), "2");
    // Both sessions end by the heartbeat: never before pingInterval + pingTimeout, and soon
    // after (the wait is bounded generously, so a loaded machine does not fail the test).
    server
        .assert_all_closed(&[CloseReason::PingTimeout, CloseReason::PingTimeout])
        .await;
    assert!(start.elapsed() >= ms(PING_INTERVAL_MS + PING_TIMEOUT_MS));
    for sid in [&polled, &idle] {
        assert_error(&get(server.addr, sid).await, 400, 1, "Session ID unknown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_client_that_never_answers_pings_times_out() {
    let server = Server::start().await;
    let start = Instant::now();
    let (mut ws, _) = ws_handshake(server.addr).await;
    assert_eq!(ws_recv_text(&mut ws).await, "2");
    // Closed by the heartbeat (`ws_expect_close` bounds the wait), not before it is due.
    assert_eq!(ws_expect_close(&mut ws).await, None);
    assert!(start.elapsed() >= ms(PING_INTERVAL_MS + PING_TIMEOUT_MS));
    server.assert_all_closed(&[CloseReason::PingTimeout]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_dropped_without_close_frame_closes_the_session() {
    let server = Server::start().await;
    let (ws, _) = ws_handshake(server.addr).await;
    drop(ws);
    // The reference server reports the end of a WebSocket, clean or not, as "transport close".
    server
        .assert_all_closed(&[CloseReason::TransportClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_probe_is_dropped_and_the_heartbeat_reclaims_the_session() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let first_get = spawn_get(server.addr, &sid);
    // Taken before the upgrade starts, so its timer cannot be due before it.
    let opened = Instant::now();
    let mut ws = ws_connect(server.addr, &format!("&sid={sid}")).await;
    // The session stays on polling and answers its heartbeat there.
    let ping = within("first get", first_get).await.unwrap();
    assert_eq!(ping.text(), "2");
    assert_ok(&post(server.addr, &sid, b"3").await);
    // No probe within upgradeTimeout: the server closes the WebSocket, not before.
    assert_eq!(ws_expect_close(&mut ws).await, None);
    let elapsed = opened.elapsed();
    assert!(elapsed >= ms(UPGRADE_TIMEOUT_MS), "{elapsed:?}");
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.only_socket().transport(), TransportKind::Polling);
    assert_eq!(server.recorder.closes(), vec![]);
    // Polling still works; once the client stops answering, the heartbeat ends the session.
    let ping = get(server.addr, &sid).await;
    assert_eq!(ping.text(), "2");
    server.assert_all_closed(&[CloseReason::PingTimeout]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_probed_but_never_completed_is_dropped() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.poll_waiting()).await);
    let opened = Instant::now();
    let mut ws = ws_probe(server.addr, &sid).await;
    let noop = within("waiting get", waiting).await.unwrap();
    assert_eq!(noop.text(), "6");
    // The client never sends `5`, but answers the ping that polling still carries.
    let ping = get_skipping_noops(server.addr, &sid).await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.text(), "2");
    assert_ok(&post(server.addr, &sid, b"3").await);
    assert_eq!(ws_expect_close(&mut ws).await, None);
    let elapsed = opened.elapsed();
    assert!(elapsed >= ms(UPGRADE_TIMEOUT_MS), "{elapsed:?}");
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.only_socket().transport(), TransportKind::Polling);
    assert_eq!(server.recorder.closes(), vec![]);
    // Back to plain polling: a GET waits for the next ping, which nobody answers.
    let ping = get(server.addr, &sid).await;
    assert_eq!(ping.text(), "2");
    server.assert_all_closed(&[CloseReason::PingTimeout]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_closed_during_an_upgrade_closes_the_probing_websocket() {
    // An upgrade timer far longer than any wait here: only the session's close can end the
    // WebSocket in time.
    let server = Server::with_config(long_upgrade_timeout()).await;
    for probe in [false, true] {
        let sid = handshake_any_timings(server.addr).await;
        let mut ws = if probe {
            ws_probe(server.addr, &sid).await
        } else {
            ws_connect(server.addr, &format!("&sid={sid}")).await
        };
        assert_ok(&post(server.addr, &sid, b"1").await);
        // Closed at once, not left to the client or the upgrade timer.
        assert_eq!(ws_expect_close(&mut ws).await, None, "probe {probe}");
    }
    server
        .assert_all_closed(&[CloseReason::TransportClose, CloseReason::TransportClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_over_polling_answers_the_waiting_get_with_noop() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.poll_waiting()).await);
    assert_ok(&post(server.addr, &sid, b"1").await);
    let noop = within("waiting get", waiting).await.unwrap();
    assert_eq!(noop.status, 200);
    assert_eq!(noop.text(), "6");
    server
        .assert_all_closed(&[CloseReason::TransportClose])
        .await;
    assert_error(&get(server.addr, &sid).await, 400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_over_websocket() {
    let server = Server::start().await;
    let (mut ws, _) = ws_handshake(server.addr).await;
    ws_send_text(&mut ws, "1").await;
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server
        .assert_all_closed(&[CloseReason::TransportClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_over_an_upgraded_websocket() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    let mut ws = ws_probe(server.addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    ws_send_text(&mut ws, "5").await;
    ws_send_text(&mut ws, "1").await;
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server
        .assert_all_closed(&[CloseReason::TransportClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_aborted_by_the_client_is_a_transport_error() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let mut stream = within("connect", tokio::net::TcpStream::connect(server.addr))
        .await
        .unwrap();
    stream
        .write_all(&request_head("POST", &poll_path(&sid), &[], Some(10)))
        .await
        .unwrap();
    stream.write_all(b"4abc").await.unwrap();
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.post_in_progress()).await);
    drop(stream);
    server
        .assert_all_closed(&[CloseReason::TransportError])
        .await;
    assert_eq!(server.recorder.messages(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_from_a_v4_client_is_a_transport_error() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    assert_ok(&post(server.addr, &sid, b"2").await);
    let (mut ws, _) = ws_handshake(server.addr).await;
    ws_send_text(&mut ws, "2").await;
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server
        .assert_all_closed(&[CloseReason::TransportError, CloseReason::TransportError])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_packet_on_a_websocket_is_a_parse_error() {
    let server = Server::start().await;
    for packet in ["9", ""] {
        let (mut ws, _) = ws_handshake(server.addr).await;
        ws_send_text(&mut ws, packet).await;
        assert_eq!(ws_expect_close(&mut ws).await, None, "packet {packet:?}");
    }
    server
        .assert_all_closed(&[CloseReason::ParseError, CloseReason::ParseError])
        .await;
}

/// Upgrades a fresh polling session to a WebSocket; returns the sid and the WebSocket.
async fn upgraded(server: &Server) -> (String, Ws) {
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    let mut ws = ws_probe(server.addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    ws_send_text(&mut ws, "5").await;
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || socket.transport() == TransportKind::WebSocket).await);
    (sid, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_client_that_never_answers_pings_times_out() {
    let server = Server::start().await;
    let (_, mut ws) = upgraded(&server).await;
    // `ws_expect_close` reads the pings without answering them.
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server.assert_all_closed(&[CloseReason::PingTimeout]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_websocket_dropped_without_close_frame_closes_the_session() {
    let server = Server::start().await;
    let (_, ws) = upgraded(&server).await;
    drop(ws);
    server
        .assert_all_closed(&[CloseReason::TransportClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_websocket_dropped_by_the_client_leaves_the_session_on_polling() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let ws = ws_probe(server.addr, &sid).await;
    drop(ws);
    let socket = server.only_socket();
    assert!(wait_until(LIMIT, || !socket.is_upgrading()).await);
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(socket.transport(), TransportKind::Polling);
    assert_eq!(server.recorder.closes(), vec![]);
    // A new upgrade may start, and complete.
    let waiting = spawn_get(server.addr, &sid);
    assert!(wait_until(LIMIT, || socket.poll_waiting()).await);
    let mut ws = ws_probe(server.addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    ws_send_text(&mut ws, "5").await;
    ws_send_text(&mut ws, "4again").await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::text("4again")
    );
    assert_eq!(server.only_socket().transport(), TransportKind::WebSocket);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_packet_on_a_probing_websocket_closes_only_that_websocket() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    // Before the probe, and after it instead of `5`.
    let mut ws = ws_connect(server.addr, &format!("&sid={sid}")).await;
    ws_send_text(&mut ws, "4sneaky").await;
    assert_eq!(ws_expect_close(&mut ws).await, None);
    let mut ws = ws_probe(server.addr, &sid).await;
    ws_send_text(&mut ws, "4sneaky").await;
    assert_eq!(ws_expect_close(&mut ws).await, None);
    // The session is still there, on polling, and got none of it.
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.only_socket().transport(), TransportKind::Polling);
    assert_ok(&post(server.addr, &sid, b"4polled").await);
    assert_eq!(get(server.addr, &sid).await.text(), "4polled");
    assert_eq!(
        server.recorder.messages(),
        vec![switchyard_engineio::Message::Text("polled".into())]
    );
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_during_an_upgrade_closes_the_probing_websocket() {
    // An upgrade timer far longer than any wait here: only the session's close can end the
    // WebSocket in time.
    let server = Server::with_config(long_upgrade_timeout()).await;
    let sid = handshake_any_timings(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    let mut ws = ws_probe(server.addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    server.only_socket().close();
    // Nobody polls for the close packet: the session ends after pingTimeout, and the
    // WebSocket with it at the latest.
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server.assert_all_closed(&[CloseReason::ForcedClose]).await;
}

/// The test configuration with an upgrade timeout longer than any wait of a test.
fn long_upgrade_timeout() -> EngineConfig {
    config().upgrade_timeout(ms(60_000))
}

/// A polling handshake that does not check the open packet's timings; returns the sid.
async fn handshake_any_timings(addr: std::net::SocketAddr) -> String {
    let response = request(addr, "GET", &path("EIO=4&transport=polling"), &[], b"").await;
    assert_eq!(response.status, 200);
    sid_of(response.text())
}
