//! Connection state recovery: a client whose transport breaks comes back with the same socket
//! id, rooms and session data, and gets the packets it missed, in order, exactly once.
//!
//! Transports are broken with a TCP proxy between client and server ([`common::Proxy`]):
//! cutting both sides (the server notices at once), or only the client side (a half-open
//! connection the server has not noticed when the client comes back).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use common::{
    client_config, connect_with, socket_with, start, wait_until, within, Client, Proxy, TestServer,
    WAIT,
};
use serde_json::{json, Value};
use switchyard::{RecoveryConfig, Socket, SocketIo, SocketIoConfig};
use switchyard_client::{Parser, SocketOptions, Transports};
use tokio::sync::{mpsc, Notify};

/// What the connection handler saw of a socket.
#[derive(Debug)]
struct Connected {
    sid: String,
    recovered: bool,
    rooms: Vec<String>,
    data: Value,
}

fn recovery_config(recovery: RecoveryConfig) -> SocketIoConfig {
    SocketIoConfig {
        connection_state_recovery: Some(recovery),
        ..SocketIoConfig::default()
    }
}

/// Handlers: `join` and `remember` (session data); every connection is reported on
/// `connected` and greeted with `welcome`.
fn handlers(io: &SocketIo, connected: mpsc::UnboundedSender<Connected>) {
    io.of("/").on_connection(move |socket: Socket| {
        let connected = connected.clone();
        async move {
            let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
            rooms.sort();
            let _ = connected.send(Connected {
                sid: socket.id().to_string(),
                recovered: socket.recovered(),
                rooms,
                data: socket.session_data_value(),
            });
            socket.on("join", |socket: Socket, room: String| async move {
                socket.join(room);
                Ok::<_, Infallible>(())
            });
            socket.on("remember", |socket: Socket, data: Value| async move {
                socket.set_session_data(&data)
            });
            let _ = socket.emit("welcome", socket.recovered());
        }
    });
}

struct Setup {
    server: TestServer,
    proxy: Proxy,
    connected: mpsc::UnboundedReceiver<Connected>,
}

async fn setup(recovery: RecoveryConfig, extra: impl FnOnce(&SocketIo)) -> Setup {
    let (tx, connected) = mpsc::unbounded_channel();
    let server = start(recovery_config(recovery), |io| {
        handlers(io, tx);
        extra(io);
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    Setup {
        server,
        proxy,
        connected,
    }
}

/// A client through the proxy that joined room `a`, stored session data, and received one
/// event with an offset after that.
async fn prepared_client(setup: &mut Setup, transports: Transports) -> Client {
    let mut client = connect_with(
        &setup.proxy.url(),
        "/",
        client_config(transports, Parser::Json),
        SocketOptions::default(),
    )
    .await;
    let first = within(setup.connected.recv()).await.unwrap();
    assert!(!first.recovered);
    assert_eq!(client.events.expect_value("welcome").await, json!(false));
    within(client.socket.emit_with_ack("join", "a", WAIT))
        .await
        .unwrap();
    within(
        client
            .socket
            .emit_with_ack("remember", json!({"name": "alice", "score": 3}), WAIT),
    )
    .await
    .unwrap();
    setup.server.ns("/").to("a").emit("n", 0).unwrap();
    assert_eq!(client.events.expect_value("n").await, json!(0));
    client
}

/// While the client is away: packets it must get (n 1..=5 to its room, one to its id, one to
/// everyone) and packets it must not (another room, volatile, excluded).
fn emit_while_away(server: &TestServer, sid: &str) {
    let ns = server.ns("/");
    for n in 1..=2 {
        ns.to("a").emit("n", n).unwrap();
    }
    ns.to("b").emit("other-room", ()).unwrap();
    ns.to(sid.to_owned()).emit("direct", "for you").unwrap();
    ns.to("a").volatile().emit("volatile", ()).unwrap();
    ns.except("a").emit("excluded", ()).unwrap();
    for n in 3..=5 {
        ns.to("a").emit("n", n).unwrap();
    }
    ns.emit("all", ()).unwrap();
}

/// The client got exactly what it missed, in order, then the greeting of its new connection.
async fn expect_replay(client: &mut Client, server: &TestServer) {
    for n in 1..=2 {
        assert_eq!(client.events.expect_value("n").await, json!(n));
    }
    assert_eq!(client.events.expect_value("direct").await, json!("for you"));
    for n in 3..=5 {
        assert_eq!(client.events.expect_value("n").await, json!(n));
    }
    client.events.expect("all").await;
    assert_eq!(client.events.expect_value("welcome").await, json!(true));
    // Nothing more, nothing twice: the next event is one sent now.
    server.ns("/").emit("end", ()).unwrap();
    client.events.expect("end").await;
}

async fn expect_recovered(setup: &mut Setup, client: &Client, sid: &str) {
    let again = within(setup.connected.recv()).await.unwrap();
    assert_eq!(again.sid, sid, "same socket id");
    assert!(again.recovered, "{again:?}");
    let mut rooms = vec!["a".to_owned(), sid.to_owned()];
    rooms.sort();
    assert_eq!(again.rooms, rooms);
    assert_eq!(again.data, json!({"name": "alice", "score": 3}));
    wait_until("the client is connected again", || {
        client.socket.connected()
    })
    .await;
    assert!(client.socket.recovered());
    assert_eq!(client.id(), sid);
    let socket = setup
        .server
        .ns("/")
        .get_socket(sid)
        .expect("recovered socket");
    assert!(socket.recovered());
    assert!(socket.in_room("a"));
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Data {
        name: String,
        score: u32,
    }
    assert_eq!(
        socket.session_data::<Data>(),
        Some(Data {
            name: "alice".into(),
            score: 3
        })
    );
}

async fn recovers_after_a_cut(transports: Transports) {
    let mut setup = setup(RecoveryConfig::default(), |_| {}).await;
    let mut client = prepared_client(&mut setup, transports).await;
    let sid = client.id();
    let ns = setup.server.ns("/");

    setup.proxy.cut();
    // The client notices at once if a request was in flight, else with its next one.
    wait_until("the client saw its transport go", || {
        !client.socket.connected()
    })
    .await;
    // The server sees the transport close (a WebSocket at once; a polling session when its
    // pending request fails, or at the latest when the client comes back).
    if transports == Transports::WebSocket {
        wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
        assert_eq!(ns.room_size("a"), 0);
    }
    emit_while_away(&setup.server, &sid);
    setup.proxy.resume();

    expect_recovered(&mut setup, &client, &sid).await;
    expect_replay(&mut client, &setup.server).await;
    assert_eq!(ns.socket_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_websocket_recovers_id_rooms_data_and_missed_packets() {
    recovers_after_a_cut(Transports::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_polling_connection_recovers_id_rooms_data_and_missed_packets() {
    recovers_after_a_cut(Transports::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_taken_over_and_recovered() {
    let mut setup = setup(RecoveryConfig::default(), |_| {}).await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");

    setup.proxy.cut_client_side();
    wait_until("the client saw its transport go", || {
        !client.socket.connected()
    })
    .await;
    // The server still holds the socket: what it emits now goes into the dead connection.
    assert!(ns.get_socket(&sid).is_some());
    emit_while_away(&setup.server, &sid);
    setup.proxy.resume();

    expect_recovered(&mut setup, &client, &sid).await;
    expect_replay(&mut client, &setup.server).await;
    // The stale connection was closed as replaced.
    wait_until("one connection is left", || {
        setup.server.io.engine().session_count() == 1
    })
    .await;
    assert_eq!(ns.socket_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_and_close_keeps_the_session() {
    let mut setup = setup(RecoveryConfig::default(), |_| {}).await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");

    // "forced server close" is among the recoverable reasons, as on the reference server.
    ns.get_socket(&sid).unwrap().disconnect_and_close();
    expect_recovered(&mut setup, &client, &sid).await;
    assert_eq!(client.events.expect_value("welcome").await, json!(true));
    ns.emit("end", ()).unwrap();
    client.events.expect("end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_on_purpose_is_not_recovered() {
    let mut setup = setup(RecoveryConfig::default(), |io| {
        io.of("/keep");
    })
    .await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");
    // A second namespace keeps the connection open while `/` leaves and comes back (the
    // client closes a connection left without sockets, and a `connect` racing that close
    // fails: see `connect_right_after_a_server_disconnect_succeeds` in middleware.rs).
    let keep = client.socket.manager().socket("/keep");
    within(keep.connect()).await.unwrap();

    // The client leaves and comes back.
    client.socket.disconnect();
    wait_until("the server saw it leave", || ns.socket_count() == 0).await;
    ns.to("a").emit("n", 1).unwrap();
    within(client.socket.connect()).await.unwrap();
    let again = within(setup.connected.recv()).await.unwrap();
    assert!(!again.recovered);
    assert_ne!(again.sid, sid);
    assert_eq!(again.data, Value::Null);
    assert_eq!(again.rooms, vec![again.sid.clone()]);
    assert!(!client.socket.recovered());
    assert_eq!(client.events.expect_value("welcome").await, json!(false));

    // The server disconnects it from the namespace, and it connects again.
    let sid = client.id();
    ns.get_socket(&sid).unwrap().disconnect();
    wait_until("the client saw it", || !client.socket.connected()).await;
    within(client.socket.connect()).await.unwrap();
    let again = within(setup.connected.recv()).await.unwrap();
    assert!(!again.recovered);
    assert_ne!(again.sid, sid);
    assert_eq!(client.events.expect_value("welcome").await, json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_not_recovered() {
    let recovery = RecoveryConfig {
        max_disconnection_duration: Duration::from_millis(200),
        ..RecoveryConfig::default()
    };
    let mut setup = setup(recovery, |_| {}).await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");

    setup.proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    // Well past the session's lifetime (not a synchronisation: any longer wait is as good).
    tokio::time::sleep(Duration::from_millis(600)).await;
    ns.to("a").emit("n", 1).unwrap();
    setup.proxy.resume();

    let again = within(setup.connected.recv()).await.unwrap();
    assert!(!again.recovered);
    assert_ne!(again.sid, sid);
    assert_eq!(again.data, Value::Null);
    wait_until("the client is connected again", || {
        client.socket.connected()
    })
    .await;
    assert!(!client.socket.recovered());
    // Nothing replayed: the new connection's greeting comes first.
    assert_eq!(client.events.expect_value("welcome").await, json!(false));
    assert_eq!(ns.room_size("a"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middlewares_run_again_unless_skipped() {
    for skip_middlewares in [true, false] {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let recovery = RecoveryConfig {
            skip_middlewares,
            ..RecoveryConfig::default()
        };
        let mut setup = setup(recovery, |io| {
            let runs = runs.clone();
            io.of("/").use_middleware(move |_socket: Socket| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok(()) }
            });
        })
        .await;
        let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
        let sid = client.id();
        setup.proxy.cut();
        wait_until("the server saw the socket go", || {
            setup.server.ns("/").socket_count() == 0
        })
        .await;
        setup.proxy.resume();
        expect_recovered(&mut setup, &client, &sid).await;
        assert_eq!(client.events.expect_value("welcome").await, json!(true));
        let expected = if skip_middlewares { 1 } else { 2 };
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            expected,
            "skip_middlewares: {skip_middlewares}"
        );
    }
}

/// A recovering client's middlewares run before its session is restored: a broadcast while
/// they run is among the packets it missed, and one after reaches it live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_during_a_recovering_middleware_is_not_lost() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let recovery = RecoveryConfig {
        skip_middlewares: false,
        ..RecoveryConfig::default()
    };
    let mut setup = setup(recovery, {
        let (entered, release) = (entered.clone(), release.clone());
        move |io| {
            io.of("/").use_middleware(move |socket: Socket| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    if socket.handshake().auth.get("pid").is_some() {
                        // Not restored yet: the middlewares admit the client first.
                        assert!(!socket.recovered());
                        entered.notify_one();
                        release.notified().await;
                    }
                    Ok(())
                }
            });
        }
    })
    .await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");
    setup.proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    ns.to("a").emit("n", 1).unwrap();
    setup.proxy.resume();

    within(entered.notified()).await;
    ns.to("a").emit("n", 2).unwrap();
    release.notify_one();

    expect_recovered(&mut setup, &client, &sid).await;
    assert_eq!(client.events.expect_value("n").await, json!(1));
    assert_eq!(client.events.expect_value("n").await, json!(2));
    ns.to("a").emit("n", 3).unwrap();
    let (name, args) = client.events.next().await;
    assert_eq!(
        (name.as_str(), args.values.first()),
        ("welcome", Some(&json!(true))),
    );
    assert_eq!(client.events.expect_value("n").await, json!(3));
}

/// socket.io-client reconnects with its `pid` and no `offset` when its transport broke before
/// it saw a recoverable packet; the reference server then starts afresh. Here the session is
/// recovered from where the socket joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_saw_no_packet_resumes_from_its_start() {
    let (tx, mut connected) = mpsc::unbounded_channel();
    let server = start(recovery_config(RecoveryConfig::default()), move |io| {
        io.of("/").on_connection(move |socket: Socket| {
            let tx = tx.clone();
            async move {
                // No greeting: the client has no offset when it drops.
                socket.join("a");
                let _ = tx.send((socket.id().to_string(), socket.recovered()));
            }
        });
    })
    .await;
    // A packet before the socket joined: not its to replay.
    server.ns("/").to("a").emit("n", 0).unwrap();
    let proxy = Proxy::start(server.addr).await;
    let mut client = connect_with(
        &proxy.url(),
        "/",
        client_config(Transports::WebSocket, Parser::Json),
        SocketOptions::default(),
    )
    .await;
    let (sid, recovered) = within(connected.recv()).await.unwrap();
    assert!(!recovered);
    let ns = server.ns("/");
    proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    ns.to("a").emit("n", 1).unwrap();
    ns.to("b").emit("n", 2).unwrap();
    proxy.resume();
    let (again, recovered) = within(connected.recv()).await.unwrap();
    assert_eq!((again.as_str(), recovered), (sid.as_str(), true));
    wait_until("the client is connected again", || {
        client.socket.connected()
    })
    .await;
    assert!(client.socket.recovered());
    assert_eq!(client.events.expect_value("n").await, json!(1));
    ns.emit("end", ()).unwrap();
    client.events.expect("end").await;
}

/// Rooms a recovering client may no longer be in (its new credentials lost them) are not
/// given back, and what was sent to them while it was away is not replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_the_new_credentials_lost_are_not_given_back() {
    let mut setup = setup(RecoveryConfig::default(), |io| {
        io.of("/")
            .use_middleware(|socket: Socket| {
                let allowed = socket.handshake().auth.get("pid").is_none();
                socket.insert_data(MaySeeSecrets(allowed));
                async { Ok(()) }
            })
            .filter_recovered_rooms(|socket: &Socket, room: &switchyard::Room| {
                &**room != "secret" || socket.data::<MaySeeSecrets>().is_some_and(|m| m.0)
            });
    })
    .await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    within(client.socket.emit_with_ack("join", "secret", WAIT))
        .await
        .unwrap();
    let sid = client.id();
    let ns = setup.server.ns("/");
    setup.proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    ns.to("secret").emit("secret", 1).unwrap();
    ns.to("a").emit("n", 1).unwrap();
    setup.proxy.resume();
    expect_recovered(&mut setup, &client, &sid).await;
    assert!(!ns.get_socket(&sid).unwrap().in_room("secret"));
    let (name, _) = client.events.next().await;
    assert_eq!(name, "n", "the packet to the lost room was not replayed");
    assert_eq!(client.events.expect_value("welcome").await, json!(true));
    ns.to("secret").emit("secret", 2).unwrap();
    ns.emit("end", ()).unwrap();
    client.events.expect("end").await;
}

/// Rooms the middlewares join for a resuming client are live from then on; what was sent to
/// them while the client was away (it was not in them) is not replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_joined_by_middlewares_on_recovery_replay_nothing() {
    let mut setup = setup(RecoveryConfig::default(), |io| {
        io.of("/").use_middleware(|socket: Socket| {
            if socket.handshake().auth.get("pid").is_some() {
                socket.join("late");
            }
            async { Ok(()) }
        });
    })
    .await;
    let mut client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let ns = setup.server.ns("/");
    setup.proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    ns.to("late").emit("late", 1).unwrap();
    ns.to("a").emit("n", 1).unwrap();
    setup.proxy.resume();
    let again = within(setup.connected.recv()).await.unwrap();
    assert_eq!((again.sid.as_str(), again.recovered), (sid.as_str(), true));
    assert!(again.rooms.contains(&"late".to_owned()), "{again:?}");
    let (name, _) = client.events.next().await;
    assert_eq!(
        name, "n",
        "nothing sent to `late` before the client was in it"
    );
    assert_eq!(client.events.expect_value("welcome").await, json!(true));
    ns.to("late").emit("late", 2).unwrap();
    assert_eq!(client.events.expect_value("late").await, json!(2));
}

/// A hook a middleware registers with `when_connected` gets the socket that connects: on
/// recovery, the recovered one (same id as before), not the fresh one the middleware saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_connected_hooks_get_the_recovered_socket() {
    let (hooked, mut seen) = mpsc::unbounded_channel::<(String, bool)>();
    let mut setup = setup(RecoveryConfig::default(), move |io| {
        io.of("/").use_middleware(move |socket: Socket| {
            let hooked = hooked.clone();
            socket.when_connected(move |socket| {
                let _ = hooked.send((socket.id().to_string(), socket.recovered()));
            });
            async { Ok(()) }
        });
    })
    .await;
    let client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    assert_eq!(within(seen.recv()).await.unwrap(), (sid.clone(), false));
    let ns = setup.server.ns("/");
    setup.proxy.cut();
    wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
    setup.proxy.resume();
    assert_eq!(within(seen.recv()).await.unwrap(), (sid, true));
}

#[derive(Clone, Copy)]
struct MaySeeSecrets(bool);

type RawWebSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket to the server without a Socket.IO client: what the server sends, as sent.
async fn raw_websocket(addr: std::net::SocketAddr) -> RawWebSocket {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    within(tokio_tungstenite::client_async(url, stream))
        .await
        .unwrap()
        .0
}

/// The next text message other than a heartbeat ping.
async fn raw_text(ws: &mut RawWebSocket) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(text))) if text.as_str() != "2" => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("WebSocket ended: {other:?}"),
        }
    }
}

/// Someone who learnt a client's private id but cannot authenticate gets a CONNECT_ERROR, and
/// neither the client's live connection nor its session is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_pid_without_credentials_takes_nothing_over() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = start(recovery_config(RecoveryConfig::default()), |io| {
        io.of("/").use_middleware(|socket: Socket| {
            let good = socket.handshake().auth.get("token") == Some(&json!("good"));
            async move {
                if good {
                    Ok(())
                } else {
                    Err(switchyard::ConnectError::new("unauthorized"))
                }
            }
        });
    })
    .await;
    let ns = server.ns("/");
    let mut victim = raw_websocket(server.addr).await;
    assert!(raw_text(&mut victim).await.starts_with('0'), "open packet");
    victim
        .send(Message::text(r#"40{"token":"good"}"#))
        .await
        .unwrap();
    let reply: Value =
        serde_json::from_str(raw_text(&mut victim).await.strip_prefix("40").unwrap()).unwrap();
    let (sid, pid) = (
        reply["sid"].as_str().unwrap(),
        reply["pid"].as_str().unwrap(),
    );

    let attacker = socket_with(
        &server.url(),
        "/",
        client_config(Transports::WebSocket, Parser::Json),
        SocketOptions::default().auth(json!({ "pid": pid, "token": "stolen" })),
    );
    let error = within(attacker.connect()).await.unwrap_err();
    assert!(error.to_string().contains("unauthorized"), "{error}");

    // The victim is still connected, as itself, and still served.
    assert_eq!(ns.socket_count(), 1);
    let socket = ns.get_socket(sid).expect("the victim's socket");
    assert!(!socket.recovered());
    socket.emit("still", "here").unwrap();
    let event = raw_text(&mut victim).await;
    assert!(event.starts_with(r#"42["still","here""#), "{event}");
}

/// A client keeps the offset of the last event it saw; a replay starts after it. So each
/// client must see offsets in increasing order, or a recovery replays packets it already
/// had. Read with a raw WebSocket, since the Rust client strips offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_reach_each_client_in_increasing_order() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    const TASKS: u64 = 4;
    const PER_TASK: u64 = 500;
    let server = start(recovery_config(RecoveryConfig::default()), |_| {}).await;
    let ns = server.ns("/");
    let mut ws = raw_websocket(server.addr).await;
    assert!(raw_text(&mut ws).await.starts_with('0'), "open packet");
    ws.send(Message::text("40")).await.unwrap();
    let connected = raw_text(&mut ws).await;
    let reply: Value = serde_json::from_str(connected.strip_prefix("40").unwrap()).unwrap();
    let sid = reply["sid"].as_str().unwrap().to_owned();
    assert!(reply["pid"].is_string(), "{connected}");
    ns.get_socket(&sid).unwrap().join("room");

    let mut broadcasters = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let ns = ns.clone();
        broadcasters.spawn(async move {
            for seq in 0..PER_TASK {
                ns.to("room").emit("b", json!([task, seq])).unwrap();
            }
        });
    }
    let mut last: Option<u64> = None;
    let mut inversions = Vec::new();
    for _ in 0..TASKS * PER_TASK {
        let packet = raw_text(&mut ws).await;
        let Some(event) = packet.strip_prefix("42") else {
            continue;
        };
        let args: Vec<Value> = serde_json::from_str(event).unwrap();
        let offset: u64 = args
            .last()
            .and_then(Value::as_str)
            .unwrap()
            .parse()
            .unwrap();
        if let Some(previous) = last {
            if offset < previous {
                inversions.push((previous, offset));
            }
        }
        last = Some(offset);
    }
    while let Some(done) = broadcasters.join_next().await {
        done.unwrap();
    }
    assert!(
        inversions.is_empty(),
        "offsets out of order (previous, then): {inversions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_is_on_only_in_the_namespaces_it_names() {
    let recovery = RecoveryConfig {
        namespaces: Some(vec!["/".to_owned()]),
        ..RecoveryConfig::default()
    };
    let mut setup = setup(recovery, |io| {
        io.of("/plain").on_connection(|_: Socket| async {});
    })
    .await;
    assert!(setup.server.ns("/").recovery());
    assert!(!setup.server.ns("/plain").recovery());
    let client = prepared_client(&mut setup, Transports::WebSocket).await;
    let sid = client.id();
    let plain = connect_with(
        &setup.proxy.url(),
        "/plain",
        client_config(Transports::WebSocket, Parser::Json),
        SocketOptions::default(),
    )
    .await;
    let plain_sid = plain.id();

    setup.proxy.cut();
    wait_until("both clients saw their transport go", || {
        !client.socket.connected() && !plain.socket.connected()
    })
    .await;
    setup.proxy.resume();

    expect_recovered(&mut setup, &client, &sid).await;
    wait_until("the /plain client back", || plain.socket.connected()).await;
    assert!(!plain.socket.recovered(), "no session kept in /plain");
    assert_ne!(plain.id(), plain_sid, "a new socket in /plain");
}
