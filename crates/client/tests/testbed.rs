//! The client against an in-process Switchyard server with the `testbed` fixture's handlers
//! (`tests/common/testbed.rs`), plus a fake Engine.IO server for the heartbeat.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::testbed::{Options, Testbed, PING_INTERVAL, PING_TIMEOUT};
use common::{eventually, Inbox};
use serde_json::{json, Value};
use switchyard_client::{
    Args, Binary, ConnectError, DisconnectReason, Manager, ManagerConfig, Parser, SocketOptions,
    TransportKind, Transports,
};
use switchyard_testkit::{Proxy, Route};

const WAIT: Duration = Duration::from_secs(5);

fn config(transports: Transports) -> ManagerConfig {
    ManagerConfig {
        transports,
        reconnection_delay: Duration::from_millis(100),
        reconnection_delay_max: Duration::from_millis(400),
        ..ManagerConfig::default()
    }
}

fn sorted(mut items: Vec<String>) -> Value {
    items.sort();
    json!(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transport_mode_connects_acks_and_survives_heartbeats() {
    let server = Testbed::start().await;
    for (transports, expected) in [
        (Transports::Polling, TransportKind::Polling),
        (Transports::WebSocket, TransportKind::WebSocket),
        (Transports::PollingThenWebSocket, TransportKind::WebSocket),
    ] {
        let manager = Manager::new(&server.url(), config(transports)).unwrap();
        let socket = manager.socket("/");
        socket.connect().await.unwrap();
        let id = socket.id().unwrap();
        assert!(socket.connected());
        assert!(!socket.recovered());
        assert_ne!(
            Some(id.clone()),
            manager.engine_id(),
            "socket id is not the engine id"
        );

        let rooms = socket.emit_with_ack("join", "r1", WAIT).await.unwrap();
        assert_eq!(rooms.values, vec![sorted(vec!["r1".into(), id.clone()])]);
        assert!(
            eventually(WAIT, || manager.transport() == Some(expected)).await,
            "{transports:?} should end on {expected:?}, is on {:?}",
            manager.transport()
        );

        // The server closes a session whose pong is more than pingTimeout late: staying up
        // longer than pingInterval + pingTimeout means the pings were answered, on whichever
        // transport.
        let engine_id = manager.engine_id();
        tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT + Duration::from_millis(400)).await;
        assert!(socket.connected(), "{transports:?}");
        assert_eq!(manager.engine_id(), engine_id);
        let rooms = socket.emit_with_ack("rooms", (), WAIT).await.unwrap();
        assert_eq!(rooms.values, vec![sorted(vec!["r1".into(), id.clone()])]);
        socket.disconnect();
        assert!(eventually(WAIT, || manager.engine_id().is_none()).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_and_binary_both_ways() {
    let server = Testbed::start().await;
    let alice = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let bob = Manager::new(&server.url(), config(Transports::WebSocket)).unwrap();
    let alice = alice.socket("/");
    let bob = bob.socket("/");
    let mut inbox = Inbox::new();
    let tx = inbox.sender();
    alice.on("room-msg", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.into_args());
        }
    });
    alice.connect().await.unwrap();
    bob.connect().await.unwrap();
    alice.emit_with_ack("join", "lobby", WAIT).await.unwrap();

    #[derive(serde::Serialize, serde::Deserialize)]
    struct File {
        file: Binary,
    }
    let data = Args::one("lobby")
        .unwrap()
        .push("hi")
        .unwrap()
        .push(&File {
            file: Binary::from(vec![0u8, 1, 2, 255]),
        })
        .unwrap();
    let sent = bob.emit_with_ack("to-room", data, WAIT).await.unwrap();
    assert_eq!(sent.values, vec![json!(true)]);
    let got = inbox.next(WAIT).await;
    assert_eq!(
        got.values,
        vec![
            json!("hi"),
            json!({"file": {"_placeholder": true, "num": 0}})
        ]
    );
    assert_eq!(got.attachments, vec![Bytes::from_static(&[0, 1, 2, 255])]);
    let file: File = got.get(1).unwrap();
    assert_eq!(file.file, Binary::from(vec![0u8, 1, 2, 255]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ask_is_answered_by_a_handler_with_binary() {
    for parser in [Parser::Json, Parser::MsgPack] {
        let server = Testbed::with(Options {
            parser,
            ..Options::default()
        })
        .await;
        let manager = Manager::new(
            &server.url(),
            ManagerConfig {
                parser,
                ..config(Transports::default())
            },
        )
        .unwrap();
        let socket = manager.socket("/");
        let mut asked = Inbox::new();
        let tx = asked.sender();
        socket.on("ask", move |event| {
            let tx = tx.clone();
            async move {
                let question: Value = event.arg(0).unwrap();
                let bytes: Binary = event.arg(1).unwrap();
                let mut reversed = bytes.0.to_vec();
                reversed.reverse();
                let answer = Args::one(&json!({"answer": question["q"]}))
                    .unwrap()
                    .push(&Binary::from(reversed))
                    .unwrap();
                assert!(matches!(event.ack(answer), Ok(true)));
                assert!(matches!(event.ack("twice"), Ok(false)));
                let _ = tx.send(event.into_args());
            }
        });
        socket.connect().await.unwrap();
        let question = Args::one(&json!({"q": 42}))
            .unwrap()
            .push(&Binary::from(vec![1u8, 2, 3]))
            .unwrap();
        let answer = socket
            .emit_with_ack("server-ask", question, WAIT)
            .await
            .unwrap();
        let seen = asked.next(WAIT).await;
        assert_eq!(
            seen.values,
            vec![json!({"q": 42}), json!({"_placeholder": true, "num": 0})],
            "{parser:?}"
        );
        assert_eq!(seen.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
        assert_eq!(
            answer.values,
            vec![
                json!({"answer": 42}),
                json!({"_placeholder": true, "num": 0})
            ],
            "{parser:?}"
        );
        assert_eq!(answer.attachments, vec![Bytes::from_static(&[3, 2, 1])]);
        socket.disconnect();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_share_one_connection() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let main = manager.socket("/");
    let private = manager.socket_with(
        "/private",
        SocketOptions::default().auth_fn(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                json!({"token": "secret"})
            }
        }),
    );
    let mut welcome = Inbox::new();
    let tx = welcome.sender();
    private.on("welcome", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.args().values.clone());
        }
    });
    main.connect().await.unwrap();
    let engine_id = manager.engine_id();
    private.connect().await.unwrap();
    assert_eq!(welcome.next(WAIT).await, vec![json!("private")]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(manager.engine_id(), engine_id, "one Engine.IO connection");
    assert!(main.connected() && private.connected());
    assert_ne!(main.id(), private.id());

    // Leaving one namespace keeps the connection and the other namespace.
    private.disconnect();
    assert!(!private.connected());
    let rooms = main.emit_with_ack("rooms", (), WAIT).await.unwrap();
    assert_eq!(rooms.values, vec![json!([main.id().unwrap()])]);
    assert_eq!(manager.engine_id(), engine_id);
    // And joining it again sends a fresh CONNECT, calling the auth function again.
    private.connect().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(manager.engine_id(), engine_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_namespace_surfaces_message_and_data() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::WebSocket)).unwrap();
    let main = manager.socket("/");
    main.connect().await.unwrap();
    let private = manager.socket_with(
        "/private",
        SocketOptions::default().auth(json!({"token": "nope"})),
    );
    let mut errors = Inbox::new();
    let tx = errors.sender();
    private.on_connect_error(move |_, error| {
        let _ = tx.send(error.clone());
    });
    let error = private.connect().await.unwrap_err();
    let ConnectError::Refused { message, data } = &error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert_eq!(message, "unauthorized");
    assert_eq!(data, &Some(json!({"code": 401, "reason": "bad token"})));
    assert_eq!(error.message(), "unauthorized");
    let seen = errors.next(WAIT).await;
    assert_eq!(
        seen.data(),
        Some(&json!({"code": 401, "reason": "bad token"}))
    );
    assert!(!private.active());
    // The refusal leaves the connection and the main namespace alone.
    assert!(main.connected());
    let rooms = main.emit_with_ack("rooms", (), WAIT).await.unwrap();
    assert_eq!(rooms.values, vec![json!([main.id().unwrap()])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disconnect_is_final_and_client_disconnect_closes_the_connection() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::Polling)).unwrap();
    let socket = manager.socket("/");
    let mut reasons = Inbox::new();
    let tx = reasons.sender();
    socket.on_disconnect(move |_, reason| {
        let _ = tx.send(reason);
    });
    socket.connect().await.unwrap();
    socket.emit("disconnect-me", ()).unwrap();
    assert_eq!(
        reasons.next(WAIT).await,
        DisconnectReason::IoServerDisconnect
    );
    assert!(!socket.active());
    // No reconnection follows, and the connection closed with the last active socket.
    assert!(eventually(WAIT, || manager.engine_id().is_none()).await);
    assert!(reasons
        .drain_for(Duration::from_millis(400))
        .await
        .is_empty());
    assert!(!socket.connected());

    // Connecting again works, and the server saw the reasons we expect.
    socket.connect().await.unwrap();
    let seen = socket.emit_with_ack("disconnects", (), WAIT).await.unwrap();
    assert_eq!(seen.values, vec![json!(["server namespace disconnect"])]);
    socket.disconnect();
    assert_eq!(
        reasons.next(WAIT).await,
        DisconnectReason::IoClientDisconnect
    );
    assert!(eventually(WAIT, || manager.engine_id().is_none()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_before_connecting_are_buffered_and_reserved_names_refused() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let socket = manager.socket("/");
    socket.emit("join", "early").unwrap();
    assert!(matches!(
        socket.emit("connect", ()),
        Err(switchyard_client::EmitError::Reserved(name)) if name == "connect"
    ));
    let unbuffered = manager.socket_with(
        "/dyn-x",
        SocketOptions::default().buffer_while_disconnected(false),
    );
    assert!(matches!(
        unbuffered.emit("x", 1),
        Err(switchyard_client::EmitError::NotConnected)
    ));
    socket.connect().await.unwrap();
    let rooms = socket.emit_with_ack("rooms", (), WAIT).await.unwrap();
    assert_eq!(
        rooms.values,
        vec![sorted(vec!["early".into(), socket.id().unwrap()])]
    );
    // An ack that never comes times out.
    let started = Instant::now();
    let late = socket
        .emit_with_ack("nobody-listens", (), Duration::from_millis(200))
        .await;
    assert!(matches!(late, Err(switchyard_client::AckError::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // One whose socket is disconnected first fails at once with `Disconnected`.
    let started = Instant::now();
    let gone = socket.emit_with_ack("disconnect-me", (), WAIT).await;
    assert!(matches!(
        gone,
        Err(switchyard_client::AckError::Disconnected)
    ));
    assert!(started.elapsed() < WAIT);
}

/// A fake Engine.IO server over WebSocket: it pings once (the client must pong), then
/// never again, so the client must give up after pingInterval + pingTimeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pings_close_the_connection_with_ping_timeout() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        ws.send(Message::text(
            r#"0{"sid":"fake","upgrades":[],"pingInterval":200,"pingTimeout":150,"maxPayload":100000}"#,
        ))
        .await
        .unwrap();
        let mut pinged = false;
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            match text.as_str() {
                "40" => {
                    ws.send(Message::text(r#"40{"sid":"s1"}"#)).await.unwrap();
                    if !pinged {
                        pinged = true;
                        ws.send(Message::text("2")).await.unwrap();
                    }
                }
                other => {
                    let _ = pong_tx.send(other.to_owned());
                }
            }
        }
    });

    let manager = Manager::new(
        &format!("http://127.0.0.1:{port}"),
        ManagerConfig {
            transports: Transports::WebSocket,
            reconnection: false,
            ..ManagerConfig::default()
        },
    )
    .unwrap();
    let socket = manager.socket("/");
    let mut reasons = Inbox::new();
    let tx = reasons.sender();
    socket.on_disconnect(move |_, reason| {
        let _ = tx.send((reason, Instant::now()));
    });
    // Before connecting: every deadline the client sets starts after this.
    let started = Instant::now();
    socket.connect().await.unwrap();
    assert_eq!(socket.id().as_deref(), Some("s1"));
    assert_eq!(
        tokio::time::timeout(WAIT, pong_rx.recv()).await.unwrap(),
        Some("3".to_owned())
    );
    let (reason, at) = reasons.next(WAIT).await;
    assert_eq!(reason, DisconnectReason::PingTimeout);
    // The ping came at once and reset the deadline to 350 ms after it: not sooner, and
    // well before the generous bound.
    let waited = at - started;
    assert!(
        waited >= Duration::from_millis(350) && waited < WAIT,
        "{waited:?}"
    );
    assert!(!socket.connected());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_connect_then_gives_up_after_the_attempts() {
    // A port that refuses connections (held, never listening).
    let (_held, port) = common::refusing_port();
    let manager = Manager::new(
        &format!("http://127.0.0.1:{port}"),
        ManagerConfig {
            reconnection_attempts: Some(2),
            reconnection_delay: Duration::from_millis(50),
            reconnection_delay_max: Duration::from_millis(100),
            ..ManagerConfig::default()
        },
    )
    .unwrap();
    let mut events = Inbox::new();
    let tx = events.sender();
    manager.on_event(move |event| {
        let name = match event {
            switchyard_client::ManagerEvent::Error(_) => "error".to_owned(),
            switchyard_client::ManagerEvent::ReconnectAttempt(n) => format!("attempt {n}"),
            switchyard_client::ManagerEvent::ReconnectError(_) => "reconnect_error".to_owned(),
            switchyard_client::ManagerEvent::ReconnectFailed => "reconnect_failed".to_owned(),
            other => format!("{other:?}"),
        };
        let _ = tx.send(name);
    });
    let socket = manager.socket("/");
    let error = socket.connect().await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Transport(_)),
        "expected a transport error, got {error:?}"
    );
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("reconnect_failed") {
        seen.push(events.next(WAIT).await);
    }
    assert_eq!(
        seen,
        vec![
            "error",
            "attempt 1",
            "error",
            "reconnect_error",
            "attempt 2",
            "error",
            "reconnect_error",
            "reconnect_failed"
        ]
    );
    assert!(events
        .drain_for(Duration::from_millis(300))
        .await
        .is_empty());
    assert!(!socket.connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_close_disconnects_without_reconnecting_and_any_handler_sees_all() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let socket = manager.socket("/dyn-room");
    let mut names = Inbox::new();
    let tx = names.sender();
    socket.on_any(move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((event.name().to_owned(), event.value()));
        }
    });
    let mut reasons = Inbox::new();
    let tx = reasons.sender();
    socket.on_disconnect(move |_, reason| {
        let _ = tx.send(reason);
    });
    socket.connect().await.unwrap();
    assert_eq!(
        names.next(WAIT).await,
        ("hello".to_owned(), json!("/dyn-room"))
    );
    manager.close();
    assert_eq!(reasons.next(WAIT).await, DisconnectReason::ForcedClose);
    assert!(eventually(WAIT, || manager.engine_id().is_none()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(manager.engine_id().is_none(), "no reconnection after close");
    assert!(
        socket.active(),
        "the socket still wants to connect when asked"
    );
    socket.connect().await.unwrap();
    assert_eq!(
        names.next(WAIT).await,
        ("hello".to_owned(), json!("/dyn-room"))
    );

    // A connect right after close (before the driver has closed, or after) connects again.
    for round in 0..20 {
        manager.close();
        socket
            .connect()
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        assert_eq!(reasons.next(WAIT).await, DisconnectReason::ForcedClose);
        assert!(
            eventually(WAIT, || socket.connected()).await,
            "round {round}"
        );
    }
}

/// The connections are cut under the client (no goodbye, as when a network drops) while the
/// server keeps sessions for recovery: the client reconnects, recovers its id and rooms, gets
/// what was sent to its room meanwhile, and flushes what it emitted while down.
async fn cut_and_recover(transports: Transports) {
    let server = Testbed::with(Options {
        recovery: true,
        ..Options::default()
    })
    .await;
    let proxy = Proxy::start(server.addr()).await;
    let manager = Manager::new(&proxy.url(), config(transports)).unwrap();
    let timeline = common::Timeline::default();
    let log = timeline.clone();
    manager.on_event(move |event| match event {
        switchyard_client::ManagerEvent::ReconnectAttempt(n) => log.mark(format!("attempt {n}")),
        switchyard_client::ManagerEvent::Reconnect(n) => log.mark(format!("reconnect {n}")),
        _ => {}
    });
    let socket = manager.socket("/");
    let mut messages = Inbox::new();
    let tx = messages.sender();
    socket.on("room-msg", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.args().values.clone());
        }
    });
    let mut disconnects = Inbox::new();
    let tx = disconnects.sender();
    socket.on_disconnect(move |socket, reason| {
        // Emitted while disconnected: buffered, sent after the reconnection.
        socket.emit("join", "while-down").unwrap();
        let _ = tx.send(reason);
    });
    let mut connects = Inbox::new();
    let tx = connects.sender();
    socket.on_connect(move |socket| {
        let _ = tx.send((socket.id(), socket.recovered()));
    });
    socket.connect().await.unwrap();
    let (first_id, recovered) = connects.next(WAIT).await;
    assert!(!recovered);
    let first_id = first_id.unwrap();
    socket.emit_with_ack("join", "news", WAIT).await.unwrap();
    if transports == Transports::PollingThenWebSocket {
        assert!(
            eventually(WAIT, || manager.transport()
                == Some(TransportKind::WebSocket))
            .await
        );
    }
    let other = Manager::new(&server.url(), config(Transports::WebSocket)).unwrap();
    let other = other.socket("/");
    other.connect().await.unwrap();
    let to_news = |n: u32| Args::one("news").unwrap().push(&n).unwrap();
    // A first message brings an offset: the server recovers a session from the last one seen.
    let sent = other
        .emit_with_ack("to-room", to_news(0), WAIT)
        .await
        .unwrap();
    assert_eq!(sent.values, vec![json!(true)]);
    assert_eq!(messages.next(WAIT).await, vec![json!(0)]);

    // Down: connections cut, new ones refused until the server has let go of the session.
    proxy.route(Route::Refuse);
    proxy.cut();
    let reason = disconnects.next(WAIT).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::TransportClose | DisconnectReason::TransportError
        ),
        "{reason}"
    );
    let main = server.io().of("/");
    assert!(
        eventually(WAIT, || main.get_socket(&first_id).is_none()).await,
        "the server should notice the lost connection"
    );
    for n in 1..=3 {
        let sent = other
            .emit_with_ack("to-room", to_news(n), WAIT)
            .await
            .unwrap();
        assert_eq!(sent.values, vec![json!(true)]);
    }
    proxy.route(Route::To(server.addr()));

    let (second_id, recovered) = connects.next(WAIT).await;
    assert!(recovered, "the session should be recovered");
    assert_eq!(second_id.as_deref(), Some(first_id.as_str()));
    let replayed = vec![
        messages.next(WAIT).await,
        messages.next(WAIT).await,
        messages.next(WAIT).await,
    ];
    assert_eq!(
        replayed,
        vec![vec![json!(1)], vec![json!(2)], vec![json!(3)]]
    );
    let rooms = socket.emit_with_ack("rooms", (), WAIT).await.unwrap();
    assert_eq!(
        rooms.values,
        vec![sorted(vec![
            "news".into(),
            "while-down".into(),
            first_id.clone()
        ])]
    );
    // Attempts 1..=n, the last one reconnecting.
    let names: Vec<String> = timeline
        .entries()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let attempts = names.len() - 1;
    let mut expected: Vec<String> = (1..=attempts).map(|n| format!("attempt {n}")).collect();
    expected.push(format!("reconnect {attempts}"));
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_reconnects_and_recovers_after_upgrade() {
    cut_and_recover(Transports::PollingThenWebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_reconnects_and_recovers_over_polling() {
    cut_and_recover(Transports::Polling).await;
}

/// An auth function handing out a bad token until `good` is set.
fn switchable_auth(good: &Arc<std::sync::atomic::AtomicBool>) -> SocketOptions {
    let good = good.clone();
    SocketOptions::default().auth_fn(move || {
        let token = if good.load(Ordering::SeqCst) {
            "secret"
        } else {
            "wrong"
        };
        async move { json!({ "token": token }) }
    })
}

async fn expect_unauthorized(socket: &switchyard_client::Socket, round: usize) {
    match socket.connect().await {
        Err(ConnectError::Refused { message, .. }) => assert_eq!(message, "unauthorized"),
        other => panic!("round {round}: expected a refusal, got {other:?}"),
    }
}

/// Issue "Hardening" 13: a refused CONNECT that leaves no socket active closes the connection;
/// a `connect()` right after it must still succeed (it used to fail now and then with
/// `disconnected before connecting`), and so must another namespace connecting at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_right_after_a_refusal_succeeds() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let good = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let private = manager.socket_with("/private", switchable_auth(&good));
    let other = manager.socket("/dyn-other");
    for round in 0..50 {
        good.store(false, Ordering::SeqCst);
        expect_unauthorized(&private, round).await;
        good.store(true, Ordering::SeqCst);
        if round % 2 == 0 {
            private
                .connect()
                .await
                .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        } else {
            let (a, b) = tokio::join!(private.connect(), other.connect());
            a.unwrap_or_else(|error| panic!("round {round}, /private: {error:?}"));
            b.unwrap_or_else(|error| panic!("round {round}, /dyn-other: {error:?}"));
            assert!(other.connected());
            other.disconnect();
        }
        assert!(private.connected(), "round {round}");
        assert!(private.id().is_some(), "round {round}");
        // Leaving the only active namespace closes the connection; the next round's connect
        // comes right after, racing that close too.
        private.disconnect();
    }
    private.connect().await.unwrap();
    assert!(private.connected());
}

/// Issue "Hardening" 13, with a second namespace connected throughout: refusals and
/// reconnections of one namespace never touch the other, nor the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_the_managers_other_sockets_connected() {
    let server = Testbed::start().await;
    let manager = Manager::new(&server.url(), config(Transports::default())).unwrap();
    let main = manager.socket("/");
    let mut main_disconnects = Inbox::new();
    let tx = main_disconnects.sender();
    main.on_disconnect(move |_, reason| {
        let _ = tx.send(reason);
    });
    main.connect().await.unwrap();
    let main_id = main.id().unwrap();
    let engine_id = manager.engine_id();
    let good = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let private = manager.socket_with("/private", switchable_auth(&good));
    for round in 0..50 {
        good.store(false, Ordering::SeqCst);
        expect_unauthorized(&private, round).await;
        assert!(main.connected(), "round {round}");
        good.store(true, Ordering::SeqCst);
        private
            .connect()
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        assert!(private.connected(), "round {round}");
        private.disconnect();
    }
    assert!(main_disconnects.take_ready().is_empty());
    assert_eq!(main.id().as_deref(), Some(main_id.as_str()));
    assert_eq!(manager.engine_id(), engine_id, "one Engine.IO connection");
    let rooms = main.emit_with_ack("rooms", (), WAIT).await.unwrap();
    assert_eq!(rooms.values, vec![json!([main_id])]);
}
