//! `SocketIo::metrics`: what the server counts, driven by real clients.

use std::sync::Arc;
use std::time::Duration;

use switchyard::engineio::Refusal;
use switchyard::{
    AckError, JoinError, LimitRefusal, Metrics, Socket, SocketIo, SocketIoConfig, SocketLimits,
};
use switchyard_client::{Manager, ManagerConfig, Transports};
use switchyard_testkit::{wait_until, DEADLINE};

fn refusals(metrics: &Metrics, kind: LimitRefusal) -> u64 {
    metrics
        .refusals
        .iter()
        .find(|(refusal, _)| *refusal == kind)
        .map_or(0, |(_, count)| *count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_events_broadcasts_acks_and_refusals() {
    let config = SocketIoConfig {
        limits: SocketLimits {
            max_rooms_per_socket: Some(1),
            ..SocketLimits::default()
        },
        ..SocketIoConfig::default()
    };
    let io = SocketIo::new(config);
    io.of("/").on_connection(|socket: Socket| async move {
        socket.on("join", |socket: Socket, room: String| async move {
            socket
                .try_join(room.as_str())
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(true)
        });
        socket.on("shout", |socket: Socket, text: String| async move {
            socket
                .namespace()
                .to("room")
                .emit("shouted", text)
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(true)
        });
        socket.on("ask-me", |socket: Socket, ()| async move {
            // The client answers `question` when the test lets it.
            let answer = socket.emit_with_ack_timeout("question", (), DEADLINE).await;
            Ok::<_, String>(answer.is_ok())
        });
        socket.on("ask-briefly", |socket: Socket, ()| async move {
            // Nobody answers `unanswered`: the ack times out.
            let answer = socket
                .emit_with_ack_timeout("unanswered", (), Duration::from_millis(100))
                .await;
            Ok::<_, String>(matches!(answer, Err(AckError::Timeout)))
        });
        socket.on("too-many-rooms", |socket: Socket, ()| async move {
            Ok::<_, String>(matches!(
                socket.try_join(["a", "b"]),
                Err(JoinError::TooManyRooms { .. })
            ))
        });
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let serving = tokio::spawn(io.clone().serve(listener));
    let url = format!("http://127.0.0.1:{port}");

    let before = io.metrics();
    assert_eq!(before.engine.handshakes, 0);
    assert!(before.refusals.iter().all(|(_, count)| *count == 0));
    assert_eq!(before.refusals.len(), LimitRefusal::ALL.len());

    let websocket = Manager::new(
        &url,
        ManagerConfig {
            transports: Transports::WebSocket,
            ..ManagerConfig::default()
        },
    )
    .expect("manager");
    let polling = Manager::new(
        &url,
        ManagerConfig {
            transports: Transports::Polling,
            ..ManagerConfig::default()
        },
    )
    .expect("manager");
    let mut sockets = Vec::new();
    for manager in [&websocket, &polling] {
        let socket = manager.socket("/");
        tokio::time::timeout(DEADLINE, socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        let joined = socket
            .emit_with_ack("join", "room", DEADLINE)
            .await
            .expect("joined");
        assert!(joined.get::<bool>(0).expect("bool"));
        sockets.push(socket);
    }
    let metrics = io.metrics();
    assert_eq!(metrics.engine.sessions_websocket, 1);
    assert_eq!(metrics.engine.sessions_polling, 1);
    assert_eq!(metrics.engine.handshakes, 2);
    assert_eq!(metrics.sockets, vec![("/".to_owned(), 2)]);
    assert_eq!(metrics.events_in, 2);

    // A broadcast to the room: one broadcast, two events out.
    let shouted = sockets[0]
        .emit_with_ack("shout", "hi", DEADLINE)
        .await
        .expect("shouted");
    assert!(shouted.get::<bool>(0).expect("bool"));
    let metrics = io.metrics();
    assert_eq!(metrics.events_in, 3);
    assert_eq!(metrics.broadcasts, 1);
    assert_eq!(metrics.events_out, 2);

    // An emit with ack: pending until the client answers, which it does when let.
    let answer_now = Arc::new(tokio::sync::Notify::new());
    {
        let answer_now = answer_now.clone();
        sockets[1].on("question", move |event| {
            let answer_now = answer_now.clone();
            async move {
                answer_now.notified().await;
                let _ = event.ack(());
            }
        });
    }
    let asking = {
        let socket = sockets[1].clone();
        tokio::spawn(async move { socket.emit_with_ack("ask-me", (), DEADLINE).await })
    };
    wait_until("the ack is pending", || io.metrics().acks_pending == 1).await;
    answer_now.notify_one();
    let answered = asking.await.expect("task").expect("answered");
    assert!(answered.get::<bool>(0).expect("bool"));
    assert_eq!(io.metrics().acks_pending, 0);
    // An emit with ack nobody answers: timed out.
    let timed_out = sockets[1]
        .emit_with_ack("ask-briefly", (), DEADLINE)
        .await
        .expect("answered");
    assert!(timed_out.get::<bool>(0).expect("bool"));
    let metrics = io.metrics();
    assert_eq!(metrics.acks_pending, 0);
    assert_eq!(metrics.acks_timed_out, 1);
    assert_eq!(metrics.events_out, 4);

    // A join past max_rooms_per_socket.
    let refused = sockets[0]
        .emit_with_ack("too-many-rooms", (), DEADLINE)
        .await
        .expect("answered");
    assert!(refused.get::<bool>(0).expect("bool"));
    let metrics = io.metrics();
    assert_eq!(refusals(&metrics, LimitRefusal::RoomsPerSocket), 1);
    assert_eq!(refusals(&metrics, LimitRefusal::EventRate), 0);
    // Both directions carried bytes.
    assert!(metrics.engine.messages_in >= metrics.events_in);
    assert!(metrics.engine.bytes_in > 0 && metrics.engine.bytes_out > 0);

    // A refused handshake is counted by kind.
    io.close();
    let late = Manager::new(
        &url,
        ManagerConfig {
            reconnection: false,
            ..ManagerConfig::default()
        },
    )
    .expect("manager");
    let refused = tokio::time::timeout(DEADLINE, late.socket("/").connect())
        .await
        .expect("answered in time");
    assert!(refused.is_err());
    let metrics = io.metrics();
    let shutting_down = metrics
        .engine
        .refusals
        .iter()
        .find(|(kind, _)| *kind == Refusal::ShuttingDown)
        .map(|(_, count)| *count);
    assert_eq!(shutting_down, Some(1));
    serving.abort();
}
