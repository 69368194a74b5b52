//! Rooms: join and leave, membership queries, the socket's own id room, rooms left on
//! disconnect, and the per-socket room limit.

mod common;

use std::convert::Infallible;

use common::{connect, connect_with, start, start_default, wait_until, within, TestServer, WAIT};
use serde_json::{json, Value};
use switchyard::{DisconnectReason, Socket, SocketIo, SocketIoConfig, SocketLimits};
use switchyard_client::{Parser, SocketOptions, Transports};
use tokio::sync::mpsc;

/// The socket's rooms as the client sees them in an ack: its own id first, then the others
/// sorted.
fn room_names(socket: &Socket) -> Vec<String> {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|room| room.to_string()).collect();
    rooms[1..].sort();
    rooms
}

fn room_handlers(io: &SocketIo) {
    io.of("/").on_connection(|socket: Socket| async move {
        socket.on("join", |socket: Socket, rooms: Vec<String>| async move {
            socket.try_join(rooms).map(|()| room_names(&socket))
        });
        socket.on(
            "join-lenient",
            |socket: Socket, rooms: Vec<String>| async move {
                socket.join(rooms);
                Ok::<_, Infallible>(room_names(&socket))
            },
        );
        socket.on("leave", |socket: Socket, room: String| async move {
            socket.leave(room.as_str());
            Ok::<_, Infallible>(room_names(&socket))
        });
    });
}

async fn ask(client: &common::Client, event: &str, data: Value) -> Value {
    let answer = within(client.socket.emit_with_ack(event, data, WAIT))
        .await
        .unwrap_or_else(|error| panic!("{event} not acknowledged: {error}"));
    answer.values.first().cloned().unwrap_or(Value::Null)
}

async fn server() -> TestServer {
    start_default(room_handlers).await
}

#[tokio::test]
async fn join_leave_and_membership_queries() {
    let server = server().await;
    let ns = server.ns("/");
    let alice = connect(&server.url(), "/").await;
    let bob = connect(&server.url(), "/").await;
    let (a, b) = (alice.id(), bob.id());

    let rooms = ask(&alice, "join", json!(["lobby", "x"])).await;
    assert_eq!(rooms, json!([a, "lobby", "x"]));
    let sa = server.socket_of(&alice.socket);
    assert!(sa.in_room("lobby"));
    assert!(sa.in_room("x"));
    assert!(sa.in_room(&a), "a socket is in its own id room");
    assert!(!sa.in_room("y"));
    assert!(!sa.in_room(&b));
    assert_eq!(ns.room_size("lobby"), 1);
    assert_eq!(ns.room_size(&a), 1);
    assert_eq!(ns.room_size("nothing"), 0);

    ask(&bob, "join", json!(["lobby"])).await;
    assert_eq!(ns.room_size("lobby"), 2);
    // Joining twice changes nothing.
    assert_eq!(
        ask(&bob, "join", json!(["lobby"])).await,
        json!([b, "lobby"])
    );
    assert_eq!(ns.room_size("lobby"), 2);
    let mut all = ns.adapter().rooms();
    all.sort();
    assert_eq!(
        all.iter().map(|room| &**room).collect::<Vec<_>>(),
        vec!["lobby", "x"]
    );

    assert_eq!(ask(&alice, "leave", json!("lobby")).await, json!([a, "x"]));
    assert!(!sa.in_room("lobby"));
    assert_eq!(ns.room_size("lobby"), 1);
    // Leaving a room one is not in is harmless.
    assert_eq!(ask(&alice, "leave", json!("never")).await, json!([a, "x"]));
    assert_eq!(ask(&alice, "leave", json!("x")).await, json!([a]));
    assert_eq!(ns.room_size("x"), 0);
    assert!(!ns.adapter().rooms().iter().any(|room| &**room == "x"));
}

#[tokio::test]
async fn the_own_id_room_reaches_that_socket_only() {
    let server = server().await;
    let ns = server.ns("/");
    let mut alice = connect(&server.url(), "/").await;
    let mut bob = connect(&server.url(), "/").await;

    ns.to(alice.id()).emit("direct", "for alice").unwrap();
    ns.emit("marker", ()).unwrap();
    assert_eq!(
        alice.events.expect_value("direct").await,
        json!("for alice")
    );
    alice.events.expect("marker").await;
    bob.events.expect("marker").await;

    // The server-side socket can target another by id too.
    let sa = server.socket_of(&alice.socket);
    sa.to(bob.id()).emit("direct", "from alice").unwrap();
    ns.emit("marker", ()).unwrap();
    assert_eq!(bob.events.expect_value("direct").await, json!("from alice"));
    bob.events.expect("marker").await;
    alice.events.expect("marker").await;
}

#[tokio::test]
async fn rooms_are_left_on_disconnect_of_either_side() {
    let (left_tx, mut left_rx) = mpsc::unbounded_channel();
    let server = start_default(move |io| {
        let left_tx = left_tx.clone();
        io.of("/").on_connection(move |socket: Socket| {
            let left_tx = left_tx.clone();
            async move {
                socket.on("join", |socket: Socket, rooms: Vec<String>| async move {
                    socket.try_join(rooms).map(|()| room_names(&socket))
                });
                socket.on_disconnect(move |socket: Socket, reason| {
                    // The rooms are still visible to the disconnect handler.
                    let _ = left_tx.send((socket.id().to_string(), reason, room_names(&socket)));
                    async {}
                });
            }
        });
    })
    .await;
    let ns = server.ns("/");
    let alice = connect(&server.url(), "/").await;
    let bob = connect(&server.url(), "/").await;
    let carol = connect(&server.url(), "/").await;
    let (a, b, c) = (alice.id(), bob.id(), carol.id());
    ask(&alice, "join", json!(["r1", "r2"])).await;
    ask(&bob, "join", json!(["r1"])).await;
    ask(&carol, "join", json!(["r1", "r3"])).await;
    assert_eq!(ns.room_size("r1"), 3);

    // The client leaves the namespace.
    alice.socket.disconnect();
    let (sid, reason, rooms) = within(left_rx.recv()).await.unwrap();
    assert_eq!(sid, a);
    assert_eq!(reason, DisconnectReason::ClientNamespaceDisconnect);
    assert_eq!(rooms, vec![a.clone(), "r1".into(), "r2".into()]);
    wait_until("alice left her rooms", || {
        ns.room_size("r1") == 2 && ns.room_size("r2") == 0 && ns.socket_count() == 2
    })
    .await;
    assert!(!ns.adapter().rooms().iter().any(|room| &**room == "r2"));

    // The client closes its connection.
    bob.socket.manager().close();
    let (sid, reason, _) = within(left_rx.recv()).await.unwrap();
    assert_eq!(sid, b);
    assert_eq!(reason, DisconnectReason::TransportClose);
    wait_until("bob left r1", || ns.room_size("r1") == 1).await;

    // The server disconnects the socket.
    server.socket_of(&carol.socket).disconnect();
    let (sid, reason, _) = within(left_rx.recv()).await.unwrap();
    assert_eq!(sid, c);
    assert_eq!(reason, DisconnectReason::ServerNamespaceDisconnect);
    wait_until("every room is empty", || {
        ns.room_size("r1") == 0 && ns.room_size("r3") == 0 && ns.adapter().rooms().is_empty()
    })
    .await;
    wait_until("carol's client saw it", || !carol.socket.connected()).await;
    assert!(
        !carol.socket.active(),
        "a server disconnect is not reconnected"
    );
}

#[tokio::test]
async fn max_rooms_per_socket_refuses_joins_past_the_limit() {
    let config = SocketIoConfig {
        limits: SocketLimits {
            max_rooms_per_socket: Some(2),
            ..SocketLimits::default()
        },
        ..SocketIoConfig::default()
    };
    let server = start(config, room_handlers).await;
    let ns = server.ns("/");
    let client = connect_with(
        &server.url(),
        "/",
        common::client_config(Transports::Polling, Parser::Json),
        SocketOptions::default(),
    )
    .await;
    let id = client.id();
    let refused = json!([{ "error": "too many rooms (at most 2)" }]);

    // The own id room does not count.
    assert_eq!(
        ask(&client, "join", json!(["a", "b"])).await,
        json!([id, "a", "b"])
    );
    // Rooms already joined do not count again.
    assert_eq!(
        ask(&client, "join", json!(["a"])).await,
        json!([id, "a", "b"])
    );
    let answer = within(client.socket.emit_with_ack("join", json!(["c"]), WAIT))
        .await
        .unwrap();
    assert_eq!(json!(answer.values), refused);
    let answer = within(client.socket.emit_with_ack("join", json!(["b", "c"]), WAIT))
        .await
        .unwrap();
    assert_eq!(json!(answer.values), refused);
    assert_eq!(ns.room_size("c"), 0);

    // All or nothing: with one room free, two new ones are refused together.
    ask(&client, "leave", json!("a")).await;
    let answer = within(client.socket.emit_with_ack("join", json!(["c", "d"]), WAIT))
        .await
        .unwrap();
    assert_eq!(json!(answer.values), refused);
    assert_eq!(ns.room_size("c") + ns.room_size("d"), 0);
    assert_eq!(
        ask(&client, "join", json!(["c"])).await,
        json!([id, "b", "c"])
    );

    // `join` refuses quietly; so does a server-side `sockets_join`.
    assert_eq!(
        ask(&client, "join-lenient", json!(["e"])).await,
        json!([id, "b", "c"])
    );
    ns.to(id.clone()).sockets_join("f").await.unwrap();
    assert_eq!(ns.room_size("f"), 0);
    let socket = server.socket_of(&client.socket);
    assert_eq!(room_names(&socket), vec![id, "b".into(), "c".into()]);
    assert!(matches!(
        socket.try_join("g"),
        Err(switchyard::JoinError::TooManyRooms { max: 2 })
    ));
}

/// A handle kept past the socket's end (in a task that awaited, say) must not put the gone
/// socket back into rooms.
#[tokio::test]
async fn a_disconnected_socket_joins_no_room() {
    let server = server().await;
    let ns = server.ns("/");
    let client = connect(&server.url(), "/").await;
    let socket = server.socket_of(&client.socket);
    client.socket.disconnect();
    wait_until("the server saw it leave", || ns.socket_count() == 0).await;
    assert!(!socket.connected());

    socket.join("late");
    let _ = socket.try_join("later");
    assert_eq!(ns.room_size("late"), 0);
    assert_eq!(ns.room_size("later"), 0);
    assert!(
        ns.adapter().rooms().is_empty(),
        "{:?}",
        ns.adapter().rooms()
    );
}
