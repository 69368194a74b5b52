//! Wire behaviour of the served engine: handshakes, HTTP errors, CORS, payload limits, echo on
//! both transports, the upgrade, server-side close and shutdown.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use switchyard_engineio::{
    serve_with_shutdown, CloseReason, CorsConfig, Frame, Message, SendError, TransportKind,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_open_packets_are_exact() {
    let server = Server::start().await;
    let response = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling&t=N8hyd6w"),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let sid = sid_of(response.text());
    assert_eq!(sid.len(), 20);
    assert!(sid
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_eq!(
        response.text(),
        format!(
            r#"0{{"sid":"{sid}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}}"#
        )
    );
    // A WebSocket without a sid does its own handshake and may not upgrade further.
    let mut ws = ws_connect(server.addr, "").await;
    let open = ws_recv_text(&mut ws).await;
    let ws_sid = sid_of(&open);
    assert_ne!(ws_sid, sid);
    assert_eq!(
        open,
        format!(
            r#"0{{"sid":"{ws_sid}","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}}"#
        )
    );
    assert_eq!(server.engine.session_count(), 2);
    assert_eq!(server.recorder.opens(), 2);
    let ws_socket = server
        .engine
        .sockets()
        .into_iter()
        .find(|socket| socket.sid() == ws_sid)
        .unwrap();
    assert_eq!(ws_socket.transport(), TransportKind::WebSocket);
    assert_eq!(
        ws_socket.request().query_param("transport").as_deref(),
        Some("websocket")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_requests_on_a_session_opened_on_a_websocket_are_bad_requests() {
    let server = Server::start().await;
    let (mut ws, sid) = ws_handshake(server.addr).await;
    assert_error(&get(server.addr, &sid).await, 400, 3, "Bad request");
    assert_error(
        &post(server.addr, &sid, b"4hello").await,
        400,
        3,
        "Bad request",
    );
    // The session goes on over its WebSocket.
    ws_send_text(&mut ws, "4still here").await;
    assert_eq!(ws_recv_text(&mut ws).await, "4still here");
    assert_eq!(server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_error_code_has_its_status_and_body() {
    let server = Server::start().await;
    let cases: [(&str, &str, u16, u8, &str); 9] = [
        (
            "GET",
            "EIO=4&transport=carrier-pigeon",
            400,
            0,
            "Transport unknown",
        ),
        ("GET", "EIO=4", 400, 0, "Transport unknown"),
        (
            "GET",
            "EIO=4&transport=polling&sid=nope",
            400,
            1,
            "Session ID unknown",
        ),
        (
            "POST",
            "EIO=4&transport=polling",
            400,
            2,
            "Bad handshake method",
        ),
        (
            "PUT",
            "EIO=4&transport=polling",
            400,
            2,
            "Bad handshake method",
        ),
        ("GET", "EIO=4&transport=websocket", 400, 3, "Bad request"),
        ("GET", "EIO=4&transport=polling&deny=1", 403, 4, "Forbidden"),
        (
            "GET",
            "EIO=3&transport=polling",
            400,
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "transport=polling",
            400,
            5,
            "Unsupported protocol version",
        ),
    ];
    for (method, query, status, code, message) in cases {
        let response = request(server.addr, method, &path(query), &[], b"").await;
        assert_eq!(response.status, status, "{method} {query}");
        assert_error(&response, status, code, message);
    }
    // Code 3 on a live session: a PUT is neither a poll nor a post.
    let sid = handshake(server.addr).await;
    let response = request(server.addr, "PUT", &poll_path(&sid), &[], b"").await;
    assert_error(&response, 400, 3, "Bad request");
    // A refused WebSocket upgrade gets a plain-text 400.
    match ws_try_connect(server.addr, "&sid=nope").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            assert_eq!(response.body().as_deref(), Some(&b"Session ID unknown"[..]));
        }
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
    match ws_try_connect(server.addr, "&deny=1").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            assert_eq!(response.body().as_deref(), Some(&b"Forbidden"[..]));
        }
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
    // Only the one valid handshake opened a session, and none closed.
    assert_eq!(server.recorder.opens(), 1);
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_headers() {
    let origin = "http://allowed.test";
    let server =
        Server::with_config(config().cors(CorsConfig::origins([origin]).with_credentials())).await;
    let preflight = request(
        server.addr,
        "OPTIONS",
        &path("EIO=4&transport=polling"),
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.body, b"");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(
        preflight.header_all("vary"),
        vec!["Origin", "Access-Control-Request-Headers"]
    );

    // The handshake, a post and an error answer all carry the exact origin.
    let handshake = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[("Origin", origin)],
        b"",
    )
    .await;
    assert_eq!(handshake.status, 200);
    assert_eq!(
        handshake.header("access-control-allow-origin"),
        Some(origin)
    );
    assert_eq!(
        handshake.header("access-control-allow-credentials"),
        Some("true")
    );
    let sid = sid_of(handshake.text());
    let posted = request(
        server.addr,
        "POST",
        &poll_path(&sid),
        &[("Origin", origin)],
        b"4x",
    )
    .await;
    assert_ok(&posted);
    assert_eq!(posted.header("access-control-allow-origin"), Some(origin));
    let refused = request(
        server.addr,
        "GET",
        &poll_path("nope"),
        &[("Origin", origin)],
        b"",
    )
    .await;
    assert_error(&refused, 400, 1, "Session ID unknown");
    assert_eq!(refused.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        refused.header("access-control-allow-credentials"),
        Some("true")
    );

    // Another origin gets no grant.
    let foreign = request(
        server.addr,
        "OPTIONS",
        &path("EIO=4&transport=polling"),
        &[("Origin", "http://evil.test")],
        b"",
    )
    .await;
    assert_eq!(foreign.status, 204);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(foreign.header("access-control-allow-credentials"), None);

    // Without a CORS policy there is no preflight answer: OPTIONS is a bad handshake method.
    let plain = Server::start().await;
    let response = request(
        plain.addr,
        "OPTIONS",
        &path("EIO=4&transport=polling"),
        &[("Origin", origin)],
        b"",
    )
    .await;
    assert_error(&response, 400, 2, "Bad handshake method");
    assert_eq!(response.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_over_max_payload_is_413_and_the_session_lives_on() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let too_large = r#"{"code":3,"message":"Payload too large"}"#;

    // Declared length over the limit.
    let big = vec![b'4'; MAX_PAYLOAD + 1];
    let response = post(server.addr, &sid, &big).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.text(), too_large);

    // Chunked body over the limit: found while reading.
    let mut stream = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    stream
        .write_all(&request_head(
            "POST",
            &poll_path(&sid),
            &[("Transfer-Encoding", "chunked")],
            None,
        ))
        .await
        .unwrap();
    let mut chunked = format!("{:x}\r\n", MAX_PAYLOAD + 1).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&chunked).await.unwrap();
    let response = read_response(stream).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.text(), too_large);

    // Exactly the limit is fine, and the session still works.
    assert_eq!(server.engine.session_count(), 1);
    let exact = format!("4{}", "y".repeat(MAX_PAYLOAD - 1));
    assert_ok(&post(server.addr, &sid, exact.as_bytes()).await);
    let echoed = get(server.addr, &sid).await;
    assert_eq!(echoed.text(), exact);
    assert_eq!(server.recorder.closes(), vec![]);
    assert_eq!(
        server.recorder.messages(),
        vec![Message::Text("y".repeat(MAX_PAYLOAD - 1))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_echo_over_polling() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    assert_ok(&post(server.addr, &sid, "4héllo\x1ebAQID\x1e4".as_bytes()).await);
    let response = get(server.addr, &sid).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(response.text(), "4héllo\x1ebAQID\x1e4");
    assert_eq!(
        server.recorder.messages(),
        vec![
            Message::Text("héllo".into()),
            Message::Binary(Bytes::from_static(&[1, 2, 3])),
            Message::Text(String::new()),
        ]
    );
    // A GET with nothing queued waits until something is.
    let waiting = spawn_get(server.addr, &sid);
    until_poll_waiting(&server.engine, &sid).await;
    assert!(!waiting.is_finished());
    server
        .only_socket()
        .send(Frame::binary_message(Bytes::from_static(&[0xff, 0])))
        .unwrap();
    assert_eq!(
        within("waiting get", waiting).await.unwrap().text(),
        "b/wA="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_echo_over_websocket() {
    let server = Server::start().await;
    let (mut ws, _) = ws_handshake(server.addr).await;
    ws_send_text(&mut ws, "4héllo").await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::text("4héllo")
    );
    ws_send_binary(&mut ws, &[1, 2, 3]).await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::binary(vec![1, 2, 3])
    );
    assert_eq!(
        server.recorder.messages(),
        vec![
            Message::Text("héllo".into()),
            Message::Binary(Bytes::from_static(&[1, 2, 3])),
        ]
    );
    // The heartbeat runs on the WebSocket: a ping comes and the answered session lives on.
    let start = Instant::now();
    assert_eq!(ws_recv_text(&mut ws).await, "2");
    ws_send_text(&mut ws, "3").await;
    assert_eq!(ws_recv_text(&mut ws).await, "2");
    ws_send_text(&mut ws, "3").await;
    assert!(start.elapsed() >= ms(PING_INTERVAL_MS - 20));
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_polling_to_websocket() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    until_poll_waiting(&server.engine, &sid).await;
    let mut ws = ws_probe(server.addr, &sid).await;
    // The waiting GET is released with a noop so the client can pause polling.
    let noop = within("waiting get", waiting).await.unwrap();
    assert_eq!(noop.status, 200);
    assert_eq!(noop.text(), "6");
    assert_eq!(server.only_socket().transport(), TransportKind::Polling);
    ws_send_text(&mut ws, "5").await;
    ws_send_text(&mut ws, "4over websocket").await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::text("4over websocket")
    );
    ws_send_binary(&mut ws, &[9, 8]).await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::binary(vec![9, 8])
    );
    assert_eq!(server.only_socket().transport(), TransportKind::WebSocket);
    // Polling is refused from now on, without closing the session.
    assert_error(&get(server.addr, &sid).await, 400, 3, "Bad request");
    assert_error(&post(server.addr, &sid, b"4x").await, 400, 3, "Bad request");
    // A second WebSocket with the same sid completes its handshake and is closed.
    let mut second = ws_connect(server.addr, &format!("&sid={sid}")).await;
    assert_eq!(ws_expect_close(&mut second).await, None);
    // The session is untouched.
    assert_eq!(server.engine.session_count(), 1);
    assert_eq!(server.recorder.closes(), vec![]);
    ws_send_text(&mut ws, "4still here").await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::text("4still here")
    );
    assert_eq!(
        server.recorder.messages(),
        vec![
            Message::Text("over websocket".into()),
            Message::Binary(Bytes::from_static(&[9, 8])),
            Message::Text("still here".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_order_is_kept_across_the_upgrade() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let socket = server.only_socket();
    let send = |socket: &switchyard_engineio::Socket, range: std::ops::Range<usize>| {
        for i in range {
            socket.send(Frame::text_message(&format!("m{i}"))).unwrap();
        }
    };
    // Before the upgrade: one GET carries the whole burst.
    send(&socket, 0..10);
    let expected: Vec<String> = (0..10).map(|i| format!("4m{i}")).collect();
    assert_eq!(get(server.addr, &sid).await.text(), expected.join("\x1e"));

    let waiting = spawn_get(server.addr, &sid);
    until_poll_waiting(&server.engine, &sid).await;
    let mut ws = ws_probe(server.addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    // During the probe, with polling paused: the burst waits for the switch.
    send(&socket, 10..60);
    // And a sender keeps going while the client completes the upgrade.
    let sender = {
        let socket = socket.clone();
        tokio::spawn(async move {
            for i in 60..110 {
                socket.send(Frame::text_message(&format!("m{i}"))).unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    ws_send_text(&mut ws, "5").await;
    within("sender", sender).await.unwrap();
    for i in 10..110 {
        assert_eq!(
            ws_recv_answering_pings(&mut ws).await,
            WsMessage::text(format!("4m{i}")),
            "message {i}"
        );
    }
    assert_eq!(socket.transport(), TransportKind::WebSocket);
    assert_eq!(server.recorder.closes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_over_polling_flushes_then_sends_close() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let socket = server.only_socket();
    socket.send(Frame::text_message("bye")).unwrap();
    socket.close();
    assert_eq!(
        socket.send(Frame::text_message("late")),
        Err(SendError::Closed)
    );
    let response = get(server.addr, &sid).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "4bye\x1e1");
    server.assert_all_closed(&[CloseReason::ForcedClose]).await;
    assert!(socket.is_closed());
    assert_error(&get(server.addr, &sid).await, 400, 1, "Session ID unknown");

    // With a GET already waiting, the close packet answers it.
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    until_poll_waiting(&server.engine, &sid).await;
    server.only_socket().close();
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "1");
    server
        .assert_all_closed(&[CloseReason::ForcedClose, CloseReason::ForcedClose])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_over_websocket_flushes_then_closes_the_websocket() {
    let server = Server::start().await;
    let (mut ws, _) = ws_handshake(server.addr).await;
    let socket = server.only_socket();
    socket.send(Frame::text_message("bye")).unwrap();
    socket.close();
    assert_eq!(ws_recv_text(&mut ws).await, "4bye");
    // As on the reference server, no close packet: the WebSocket close says it.
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server.assert_all_closed(&[CloseReason::ForcedClose]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_during_a_probed_upgrade_reaches_the_client_on_the_websocket() {
    let server = Server::start().await;
    let sid = handshake(server.addr).await;
    let waiting = spawn_get(server.addr, &sid);
    until_poll_waiting(&server.engine, &sid).await;
    let mut ws = ws_probe(server.addr, &sid).await;
    // The client has paused polling: it will not send another GET.
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    let socket = server.only_socket();
    socket.send(Frame::text_message("bye")).unwrap();
    socket.close();
    // Completing the upgrade, it gets what was queued and the WebSocket close, as on the
    // reference server; the session does not wait for a GET that will never come.
    ws_send_text(&mut ws, "5").await;
    assert_eq!(ws_recv_text(&mut ws).await, "4bye");
    assert_eq!(ws_expect_close(&mut ws).await, None);
    server.assert_all_closed(&[CloseReason::ForcedClose]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_shutdown_closes_every_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (engine, recorder) = engine(config());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(listener, engine.clone(), async move {
        let _ = stopped.await;
    }));
    let waiting_sid = handshake(addr).await;
    let waiting = spawn_get(addr, &waiting_sid);
    let _idle_sid = handshake(addr).await;
    let (mut ws, _) = ws_handshake(addr).await;
    until_poll_waiting(&engine, &waiting_sid).await;
    assert_eq!(engine.session_count(), 3);

    stop.send(()).unwrap();
    within("serve_with_shutdown", task).await.unwrap().unwrap();
    // The waiting GET gets the close packet; the WebSocket is closed.
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "1");
    assert_eq!(ws_expect_close(&mut ws).await, None);
    // The idle session is closed once its close packet has waited pingTimeout.
    assert!(wait_until(LIMIT, || engine.session_count() == 0).await);
    assert!(wait_until(LIMIT, || recorder.closes().len() == 3).await);
    // No further close comes.
    tokio::time::sleep(ms(50)).await;
    assert_eq!(recorder.closes(), vec![CloseReason::ServerShutdown; 3]);
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_message_over_max_payload_closes_only_that_connection() {
    let server = Server::start().await;
    let (mut big, _) = ws_handshake(server.addr).await;
    let (mut other, _) = ws_handshake(server.addr).await;
    let polling = handshake(server.addr).await;

    // Exactly maxPayload bytes is fine.
    let exact = format!("4{}", "x".repeat(MAX_PAYLOAD - 1));
    ws_send_text(&mut big, &exact).await;
    assert_eq!(
        ws_recv_answering_pings(&mut big).await,
        WsMessage::text(exact)
    );
    // One byte more closes the connection with 1009.
    ws_send_text(&mut big, &format!("4{}", "x".repeat(MAX_PAYLOAD))).await;
    // The close frame comes first; the rest of the refused message is never read, so the
    // connection may then end with a reset rather than a clean end of stream.
    let frame = loop {
        match ws_next(&mut big).await {
            Some(Ok(WsMessage::Close(frame))) => break frame.expect("a close frame with a code"),
            Some(Ok(WsMessage::Text(text))) if text.as_str() == "2" => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.code, CloseCode::Size);
    assert_eq!(u16::from(frame.code), 1009);
    assert_eq!(frame.reason.as_str(), "message too big");
    assert!(wait_until(LIMIT, || server.engine.session_count() == 2).await);
    assert_eq!(server.recorder.closes(), vec![CloseReason::TransportError]);

    // The other sessions are unaffected.
    ws_send_text(&mut other, "4fine").await;
    assert_eq!(
        ws_recv_answering_pings(&mut other).await,
        WsMessage::text("4fine")
    );
    assert_ok(&post(server.addr, &polling, b"4fine too").await);
    assert_eq!(get(server.addr, &polling).await.text(), "4fine too");
    assert_eq!(server.engine.session_count(), 2);
    assert_eq!(server.recorder.closes(), vec![CloseReason::TransportError]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_transports_and_path_are_honoured() {
    // Polling only: no upgrade offered, WebSocket refused with code 0.
    let server = Server::with_config(config().transports([TransportKind::Polling])).await;
    let response = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[],
        b"",
    )
    .await;
    let sid = sid_of(response.text());
    assert_eq!(response.text(), open_packet(&sid, ""));
    match ws_try_connect(server.addr, "").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            assert_eq!(response.body().as_deref(), Some(&b"Transport unknown"[..]));
        }
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
    // WebSocket only: polling refused with code 0.
    let server = Server::with_config(config().transports([TransportKind::WebSocket])).await;
    let response = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[],
        b"",
    )
    .await;
    assert_error(&response, 400, 0, "Transport unknown");
    let (_ws, _) = ws_handshake(server.addr).await;
    assert_eq!(server.engine.session_count(), 1);

    // A custom path: the engine answers there only; `serve` answers 404 elsewhere.
    let server = Server::with_config(config().path("/custom")).await;
    let response = request(
        server.addr,
        "GET",
        "/custom/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(response.text().starts_with(r#"0{"sid":""#));
    let response = request(
        server.addr,
        "GET",
        &path("EIO=4&transport=polling"),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "Not Found");
    assert_eq!(server.engine.session_count(), 1);
}
