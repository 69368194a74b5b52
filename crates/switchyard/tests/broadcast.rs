//! Broadcasts: namespace-wide, to rooms, with exceptions, from a socket (sender left out),
//! volatile and local; and the namespace-wide operations `fetch_sockets`, `sockets_join`,
//! `sockets_leave` and `disconnect_sockets`.
//!
//! A broadcast that must not reach a client is checked with a marker: every client is sent
//! `marker` after it, and a client's packets arrive in the order they were queued, so a
//! client whose next event is `marker` was not sent the broadcast.

mod common;

use std::collections::BTreeSet;

use common::{client_config, connect, connect_with, start_default, wait_until, within, Client};
use serde_json::json;
use switchyard::{Args, Namespace, Socket, SocketIo};
use switchyard_client::{DisconnectReason, ManagerConfig, Parser, SocketOptions, Transports};

fn handlers(io: &SocketIo) {
    io.of("/").on_connection(|socket: Socket| async move {
        socket.on("shout", |socket: Socket, text: String| async move {
            socket.broadcast().emit("shout", &text)?;
            Ok::<_, switchyard::EmitError>(())
        });
        socket.on(
            "to-room",
            |socket: Socket, (room, text): (String, String)| async move {
                socket.to(room).emit("to-room", &text)?;
                Ok::<_, switchyard::EmitError>(())
            },
        );
    });
    io.of("/other")
        .on_connection(|_socket: Socket| async move {});
}

/// Every client gets `marker`; each must see exactly `expected` before it.
async fn expect_before_marker(ns: &Namespace, clients: &mut [(&mut Client, &[&str])]) {
    ns.emit("marker", ()).unwrap();
    for (client, expected) in clients.iter_mut() {
        for name in expected.iter() {
            client.events.expect(name).await;
        }
        client.events.expect("marker").await;
    }
}

fn join(server: &common::TestServer, client: &Client, rooms: &[&str]) {
    let rooms: Vec<String> = rooms.iter().map(|room| room.to_string()).collect();
    server.socket_of(&client.socket).try_join(rooms).unwrap();
}

#[tokio::test]
async fn namespace_wide_reaches_every_socket_of_that_namespace_only() {
    let server = start_default(handlers).await;
    let ns = server.ns("/");
    let mut a = connect(&server.url(), "/").await;
    let mut b = connect(&server.url(), "/").await;
    let mut other = connect(&server.url(), "/other").await;

    ns.emit("news", json!({"n": 1})).unwrap();
    assert_eq!(a.events.expect_value("news").await, json!({"n": 1}));
    assert_eq!(b.events.expect_value("news").await, json!({"n": 1}));
    server.ns("/other").emit("marker", ()).unwrap();
    other.events.expect("marker").await;

    // Several arguments.
    let args = Args::one("x").unwrap().push(&2).unwrap();
    ns.broadcast().emit("many", args).unwrap();
    assert_eq!(
        a.events.expect("many").await.values,
        vec![json!("x"), json!(2)]
    );
    assert_eq!(
        b.events.expect("many").await.values,
        vec![json!("x"), json!(2)]
    );
}

#[tokio::test]
async fn to_rooms_except_and_a_member_of_several_rooms_gets_it_once() {
    let server = start_default(handlers).await;
    let ns = server.ns("/");
    let mut a = connect(&server.url(), "/").await;
    let mut b = connect(&server.url(), "/").await;
    let mut c = connect(&server.url(), "/").await;
    join(&server, &a, &["red"]);
    join(&server, &b, &["red", "blue"]);
    join(&server, &c, &["green"]);

    ns.to("red").emit("e", ()).unwrap();
    expect_before_marker(
        &ns,
        &mut [(&mut a, &["e"]), (&mut b, &["e"]), (&mut c, &[])],
    )
    .await;

    ns.to(["red", "blue"]).emit("e", ()).unwrap();
    expect_before_marker(
        &ns,
        &mut [(&mut a, &["e"]), (&mut b, &["e"]), (&mut c, &[])],
    )
    .await;

    ns.to("blue").to("green").emit("e", ()).unwrap();
    expect_before_marker(
        &ns,
        &mut [(&mut a, &[]), (&mut b, &["e"]), (&mut c, &["e"])],
    )
    .await;

    ns.except("blue").emit("e", ()).unwrap();
    expect_before_marker(
        &ns,
        &mut [(&mut a, &["e"]), (&mut b, &[]), (&mut c, &["e"])],
    )
    .await;

    ns.to("red").except("blue").emit("e", ()).unwrap();
    expect_before_marker(&ns, &mut [(&mut a, &["e"]), (&mut b, &[]), (&mut c, &[])]).await;

    // A socket id is a room for `except` too.
    ns.except(a.id()).emit("e", ()).unwrap();
    expect_before_marker(
        &ns,
        &mut [(&mut a, &[]), (&mut b, &["e"]), (&mut c, &["e"])],
    )
    .await;

    // A room nobody is in.
    ns.to("empty").emit("e", ()).unwrap();
    expect_before_marker(&ns, &mut [(&mut a, &[]), (&mut b, &[]), (&mut c, &[])]).await;
}

#[tokio::test]
async fn socket_broadcast_and_socket_to_leave_the_sender_out() {
    let server = start_default(handlers).await;
    let ns = server.ns("/");
    let mut a = connect(&server.url(), "/").await;
    let mut b = connect(&server.url(), "/").await;
    let mut c = connect(&server.url(), "/").await;
    join(&server, &a, &["room"]);
    join(&server, &b, &["room"]);

    // The ack comes after the handler queued its broadcast.
    within(a.socket.emit_with_ack("shout", "hi", common::WAIT))
        .await
        .unwrap();
    ns.emit("marker", ()).unwrap();
    a.events.expect("marker").await;
    assert_eq!(b.events.expect_value("shout").await, json!("hi"));
    b.events.expect("marker").await;
    assert_eq!(c.events.expect_value("shout").await, json!("hi"));
    c.events.expect("marker").await;

    // The sender is in the room, and still left out.
    // A tuple argument is one JSON array.
    within(
        a.socket
            .emit_with_ack("to-room", json!(["room", "psst"]), common::WAIT),
    )
    .await
    .unwrap();
    ns.emit("marker", ()).unwrap();
    a.events.expect("marker").await;
    assert_eq!(b.events.expect_value("to-room").await, json!("psst"));
    b.events.expect("marker").await;
    c.events.expect("marker").await;

    // Server-side, with an extra exception.
    let sa = server.socket_of(&a.socket);
    sa.broadcast().except("room").emit("e", ()).unwrap();
    expect_before_marker(&ns, &mut [(&mut a, &[]), (&mut b, &[]), (&mut c, &["e"])]).await;
}

#[tokio::test]
async fn volatile_and_local_broadcasts_reach_ready_clients() {
    let server = start_default(handlers).await;
    let ns = server.ns("/");
    let mut a = connect(&server.url(), "/").await;
    let mut b = connect(&server.url(), "/").await;
    join(&server, &a, &["room"]);

    // Idle clients have nothing buffered: a volatile packet is not dropped.
    wait_until("nothing is buffered for the clients", || {
        ns.sockets()
            .iter()
            .all(|socket| socket.buffered_bytes() == 0)
    })
    .await;
    ns.broadcast().volatile().emit("v", 1).unwrap();
    ns.broadcast().local().emit("l", 2).unwrap();
    ns.to("room").local().compress(false).emit("lr", 3).unwrap();
    assert_eq!(a.events.expect_value("v").await, json!(1));
    assert_eq!(a.events.expect_value("l").await, json!(2));
    assert_eq!(a.events.expect_value("lr").await, json!(3));
    assert_eq!(b.events.expect_value("v").await, json!(1));
    assert_eq!(b.events.expect_value("l").await, json!(2));
    expect_before_marker(&ns, &mut [(&mut a, &[]), (&mut b, &[])]).await;
}

#[tokio::test]
async fn fetch_sockets_and_remote_operations() {
    let server = start_default(|io| {
        io.of("/").on_connection(|socket: Socket| async move {
            socket.on("name", |socket: Socket, name: String| async move {
                socket.set_session_data(&json!({ "name": name }))?;
                Ok::<_, switchyard::ArgsError>(())
            });
        });
    })
    .await;
    let ns = server.ns("/");
    let config = ManagerConfig {
        reconnection: false,
        ..client_config(Transports::WebSocket, Parser::Json)
    };
    let mut a = connect_with(&server.url(), "/", config.clone(), SocketOptions::default()).await;
    let mut b = connect_with(
        &server.url(),
        "/",
        config.clone(),
        SocketOptions::default().auth(json!({"who": "b"})),
    )
    .await;
    let c = connect_with(&server.url(), "/", config, SocketOptions::default()).await;
    let (ia, ib, ic) = (a.id(), b.id(), c.id());
    within(a.socket.emit_with_ack("name", "alice", common::WAIT))
        .await
        .unwrap();
    join(&server, &a, &["r"]);
    join(&server, &b, &["r"]);

    let found = ns.to("r").fetch_sockets().await.unwrap();
    let ids: BTreeSet<String> = found.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, BTreeSet::from([ia.clone(), ib.clone()]));
    for socket in &found {
        assert!(
            socket.as_local().is_some(),
            "the sockets are on this server"
        );
        let rooms: BTreeSet<&str> = socket.rooms().iter().map(|r| &**r).collect();
        assert_eq!(rooms, BTreeSet::from([&**socket.id(), "r"]));
        if **socket.id() == *ia {
            assert_eq!(socket.data(), &json!({"name": "alice"}));
        } else {
            // As the reference server's `socket.data` starts.
            assert_eq!(socket.data(), &json!({}));
            assert_eq!(socket.handshake().auth, json!({"who": "b"}));
        }
        assert!(socket.handshake().url.starts_with("/socket.io/"));
    }
    assert_eq!(ns.broadcast().fetch_sockets().await.unwrap().len(), 3);
    let outside = ns.except("r").fetch_sockets().await.unwrap();
    assert_eq!(outside.len(), 1);
    assert_eq!(**outside[0].id(), *ic);

    // Join and leave through the operator.
    ns.to("r").sockets_join(["s", "t"]).await.unwrap();
    assert_eq!((ns.room_size("s"), ns.room_size("t")), (2, 2));
    ns.to("s").sockets_leave("r").await.unwrap();
    assert_eq!(ns.room_size("r"), 0);
    ns.broadcast().sockets_leave("t").await.unwrap();
    assert_eq!(ns.room_size("t"), 0);

    // And through a fetched socket.
    let remote = found.iter().find(|s| **s.id() == *ia).unwrap();
    remote.join("u").await.unwrap();
    assert!(server.socket_of(&a.socket).in_room("u"));
    remote.leave("u").await.unwrap();
    assert!(!server.socket_of(&a.socket).in_room("u"));
    remote.emit("hello", "alice").unwrap();
    assert_eq!(a.events.expect_value("hello").await, json!("alice"));

    // Disconnect without closing: the client sees a server disconnect and stays away.
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel();
    c.socket.on_disconnect(move |_, reason| {
        let _ = gone_tx.send(reason);
    });
    ns.to(ic.clone()).disconnect_sockets(false).await.unwrap();
    assert_eq!(
        within(gone_rx.recv()).await,
        Some(DisconnectReason::IoServerDisconnect)
    );
    wait_until("c is gone", || ns.get_socket(&ic).is_none()).await;
    assert!(!c.socket.active());

    // Disconnect and close: the whole connections end.
    ns.to("s").disconnect_sockets(true).await.unwrap();
    wait_until("every connection closed", || {
        ns.socket_count() == 0 && server.io.engine().session_count() == 0
    })
    .await;
    wait_until("the clients saw it", || {
        !a.socket.connected() && !b.socket.connected()
    })
    .await;
    assert!(a.events.try_next().is_none());
    assert!(b.events.try_next().is_none());
}
