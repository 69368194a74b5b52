//! Connect middlewares (refusal with message and data, handshake auth and query, order),
//! dynamic namespaces, and unknown namespaces.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client_config, connect, connect_with, socket_with, start_default, within, WAIT};
use serde_json::json;
use switchyard::{ConnectError, Socket};
use switchyard_client::{ManagerConfig, Parser, SocketOptions, Transports};

fn config() -> ManagerConfig {
    client_config(Transports::WebSocket, Parser::Json)
}

#[tokio::test]
async fn a_refusal_reaches_the_client_with_message_and_data() {
    let server = start_default(|io| {
        io.of("/private")
            .use_middleware(|socket: Socket| async move {
                // Joined before the refusal: must not stay in the room.
                socket.join("early");
                Err(ConnectError::new("not authorized").with_data(json!({"code": 401})))
            })
            .on_connection(|_socket: Socket| async move {
                panic!("a refused socket never connects");
            });
    })
    .await;
    let main = connect(&server.url(), "/").await;
    let private = main.socket.manager().socket("/private");
    let errors = Arc::new(Mutex::new(Vec::new()));
    {
        let errors = errors.clone();
        private.on_connect_error(move |_, error| errors.lock().unwrap().push(error.message()));
    }
    let error = within(private.connect()).await.unwrap_err();
    assert_eq!(error.message(), "not authorized");
    assert_eq!(error.data(), Some(&json!({"code": 401})));
    assert!(!private.connected());
    assert!(!private.active(), "a refused socket does not retry");
    common::wait_until("connect_error was dispatched", || {
        errors.lock().unwrap().as_slice() == ["not authorized"]
    })
    .await;

    let ns = server.ns("/private");
    assert_eq!(ns.socket_count(), 0);
    assert_eq!(ns.room_size("early"), 0);
    assert!(ns.adapter().rooms().is_empty());
    // The connection and its other namespace are unaffected.
    assert!(main.socket.connected());
    assert_eq!(server.io.engine().session_count(), 1);
}

#[tokio::test]
async fn middlewares_see_the_handshake_and_run_in_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let server = start_default({
        let order = order.clone();
        move |io| {
            let ns = io.of("/");
            for step in 1..=3 {
                let order = order.clone();
                ns.use_middleware(move |socket: Socket| {
                    let order = order.clone();
                    async move {
                        // Async middlewares: each one waits a little.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        order.lock().unwrap().push(step);
                        let token = socket.handshake().auth["token"].as_str().map(str::to_owned);
                        if step == 2 && token.as_deref() != Some("secret") {
                            return Err(ConnectError::new("bad token")
                                .with_data(json!({ "got": socket.handshake().auth })));
                        }
                        if step == 3 {
                            let room = socket.handshake().query("room").unwrap_or_default();
                            socket.join(room);
                        }
                        Ok(())
                    }
                });
            }
            ns.on_connection(|socket: Socket| async move {
                socket.on("whoami", |socket: Socket, _: ()| async move {
                    let handshake = socket.handshake();
                    Ok::<_, Infallible>(json!({
                        "auth": handshake.auth,
                        "room": handshake.query("room"),
                        "rooms": socket.rooms().len(),
                        "local": handshake.address().is_some_and(|a| a.ip().is_loopback()),
                    }))
                });
            });
        }
    })
    .await;

    // Wrong token: the second middleware refuses, the third never runs.
    let socket = socket_with(
        &server.url(),
        "/",
        config(),
        SocketOptions::default().auth(json!({"token": "guess"})),
    );
    let error = within(socket.connect()).await.unwrap_err();
    assert_eq!(error.message(), "bad token");
    assert_eq!(error.data(), Some(&json!({"got": {"token": "guess"}})));
    assert_eq!(*order.lock().unwrap(), vec![1, 2]);

    // Right token, and a query parameter.
    order.lock().unwrap().clear();
    let config = ManagerConfig {
        query: vec![("room".into(), "lobby".into())],
        ..config()
    };
    let client = connect_with(
        &server.url(),
        "/",
        config,
        SocketOptions::default().auth(json!({"token": "secret"})),
    )
    .await;
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
    let answer = within(client.socket.emit_with_ack("whoami", (), WAIT))
        .await
        .unwrap();
    assert_eq!(
        answer.values,
        vec![json!({"auth": {"token": "secret"}, "room": "lobby", "rooms": 2, "local": true})]
    );
    assert!(server.socket_of(&client.socket).in_room("lobby"));
}

#[tokio::test]
async fn auth_from_a_function_is_sent_on_every_connection() {
    let server = start_default(|io| {
        io.of("/guarded")
            .use_middleware(|socket: Socket| async move {
                match socket.handshake().auth["n"].as_u64() {
                    Some(n) if n >= 2 => Ok(()),
                    _ => Err(ConnectError::new("too early")),
                }
            });
    })
    .await;
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // `/` keeps the connection open across the refusal (see
    // `connect_right_after_a_server_disconnect_succeeds`).
    let main = connect(&server.url(), "/").await;
    let socket = main.socket.manager().socket_with(
        "/guarded",
        SocketOptions::default().auth_fn({
            let calls = calls.clone();
            move || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                async move { json!({ "n": n }) }
            }
        }),
    );
    let error = within(socket.connect()).await.unwrap_err();
    assert_eq!(error.message(), "too early");
    within(socket.connect()).await.unwrap();
    assert_eq!(server.socket_of(&socket).handshake().auth, json!({"n": 2}));
}

#[tokio::test]
async fn dynamic_namespaces_are_created_on_demand() {
    let server = start_default(|io| {
        io.of_dynamic(|name| {
            name.strip_prefix("/team-")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .use_middleware(|socket: Socket| async move {
            if socket.namespace().name() == "/team-13" {
                Err(ConnectError::new("unlucky"))
            } else {
                Ok(())
            }
        })
        .on_connection(|socket: Socket| async move {
            socket.on("where", |socket: Socket, _: ()| async move {
                Ok::<_, Infallible>(socket.namespace().name().to_owned())
            });
        });
    })
    .await;
    let url = server.url();

    let team = connect(&url, "/team-42").await;
    let answer = within(team.socket.emit_with_ack("where", (), WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("/team-42")]);
    let other = connect(&url, "/team-7").await;
    let answer = within(other.socket.emit_with_ack("where", (), WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("/team-7")]);
    // Each name is a namespace of its own.
    assert_eq!(server.ns("/team-42").socket_count(), 1);
    assert_eq!(server.ns("/team-7").socket_count(), 1);
    let names: Vec<String> = server
        .io
        .namespaces()
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect();
    assert!(names.contains(&"/team-42".to_owned()), "{names:?}");

    // The dynamic namespace's middleware applies to every child.
    let refused = socket_with(&url, "/team-13", config(), SocketOptions::default());
    assert_eq!(
        within(refused.connect()).await.unwrap_err().message(),
        "unlucky"
    );
    // A name the matcher refuses is unknown.
    let unknown = socket_with(&url, "/team-x", config(), SocketOptions::default());
    assert_eq!(
        within(unknown.connect()).await.unwrap_err().message(),
        "Invalid namespace"
    );
}

#[tokio::test]
async fn an_unknown_namespace_is_refused_and_the_connection_stays() {
    let server = start_default(|io| {
        io.of("/").on_connection(|socket: Socket| async move {
            socket.on("ping", |_: Socket, _: ()| async move {
                Ok::<_, Infallible>("pong")
            });
        });
    })
    .await;
    let main = connect(&server.url(), "/").await;
    let unknown = main.socket.manager().socket("/nowhere");
    let error = within(unknown.connect()).await.unwrap_err();
    assert_eq!(error.message(), "Invalid namespace");
    assert_eq!(error.data(), None);
    assert!(!unknown.active());
    // The same connection still serves the main namespace.
    let answer = within(main.socket.emit_with_ack("ping", (), WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("pong")]);
    assert_eq!(server.io.engine().session_count(), 1);
    assert!(
        !server
            .io
            .namespaces()
            .iter()
            .any(|ns| ns.name() == "/nowhere"),
        "an unknown namespace is not created"
    );

    // Alone on its connection, it is refused the same way.
    let alone = socket_with(
        &server.url(),
        "/nowhere",
        config(),
        SocketOptions::default(),
    );
    assert_eq!(
        within(alone.connect()).await.unwrap_err().message(),
        "Invalid namespace"
    );
}

/// After the server disconnects the last socket of a connection, the client closes that
/// connection; a `connect` called meanwhile must connect, not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_right_after_a_server_disconnect_succeeds() {
    let server = start_default(|io| {
        io.of("/").on_connection(|_socket: Socket| async move {});
    })
    .await;
    let client = connect(&server.url(), "/").await;
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel();
    client.socket.on_disconnect(move |_, reason| {
        let _ = gone_tx.send(reason);
    });
    for round in 0..20 {
        let sid = client.id();
        server.ns("/").get_socket(&sid).unwrap().disconnect();
        // Told at once, while the manager is still closing the connection.
        within(gone_rx.recv()).await;
        let result = within(client.socket.connect()).await;
        assert!(result.is_ok(), "round {round}: {result:?}");
    }
}
