//! Acknowledgements both ways: handler results answering the client, the server waiting for
//! a client's answer (or timing out), broadcasts collecting every client's answer, and the
//! bound on pending acknowledgements.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client_config, connect, connect_with, start, start_default, within, WAIT};
use serde_json::{json, Value};
use switchyard::{AckError, Args, Socket, SocketIo, SocketIoConfig, SocketLimits};
use switchyard_client::{AckSender, Parser, SocketOptions, Transports};

fn handlers(io: &SocketIo) {
    for nsp in ["/", "/admin"] {
        io.of(nsp).on_connection(|socket: Socket| async move {
            socket.on("double", |_: Socket, n: i64| async move {
                Ok::<_, Infallible>(n * 2)
            });
            socket.on("fail", |_: Socket, why: String| async move {
                Err::<(), _>(format!("cannot: {why}"))
            });
            socket.on("slow", |_: Socket, n: i64| async move {
                // Waits before answering: the answer comes from a task.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(n + 1)
            });
            socket.on("many", |_: Socket, args: Args| async move {
                // Answers with every argument, reversed.
                let mut values = args.values;
                values.reverse();
                Ok::<_, Infallible>(Args {
                    values,
                    attachments: args.attachments,
                })
            });
            socket.on("nsp", |socket: Socket, _: Value| async move {
                Ok::<_, Infallible>(socket.namespace().name().to_owned())
            });
            socket.on("no-answer", |_: Socket, _: Value| async move {});
        });
    }
}

#[tokio::test]
async fn handler_results_answer_the_client() {
    let server = start_default(handlers).await;
    for transports in [Transports::WebSocket, Transports::Polling] {
        let client = connect_with(
            &server.url(),
            "/",
            client_config(transports, Parser::Json),
            SocketOptions::default(),
        )
        .await;
        let socket = &client.socket;

        let answer = within(socket.emit_with_ack("double", 21, WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!(42)]);

        let answer = within(socket.emit_with_ack("fail", "no reason", WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!({"error": "cannot: no reason"})]);

        let answer = within(socket.emit_with_ack("slow", 1, WAIT)).await.unwrap();
        assert_eq!(answer.values, vec![json!(2)]);

        let args = Args::one("a")
            .unwrap()
            .push(&1)
            .unwrap()
            .push(&true)
            .unwrap();
        let answer = within(socket.emit_with_ack("many", args, WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!(true), json!(1), json!("a")]);

        // Arguments the handler's type refuses: the ack says why.
        let answer = within(socket.emit_with_ack("double", "not a number", WAIT))
            .await
            .unwrap();
        let error = answer.values[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("invalid event arguments"), "{answer:?}");

        // No handler, or a handler returning `()`: no answer.
        let unanswered = socket
            .emit_with_ack("unknown", 1, Duration::from_millis(200))
            .await;
        assert!(matches!(
            unanswered,
            Err(switchyard_client::AckError::Timeout)
        ));
        let unanswered = socket
            .emit_with_ack("no-answer", 1, Duration::from_millis(200))
            .await;
        assert!(matches!(
            unanswered,
            Err(switchyard_client::AckError::Timeout)
        ));
        // The socket is still fine.
        let answer = within(socket.emit_with_ack("double", 2, WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!(4)]);
    }
}

#[tokio::test]
async fn ack_ids_are_per_namespace_over_one_connection() {
    let server = start_default(handlers).await;
    let main = connect(&server.url(), "/").await;
    let admin = main.socket.manager().socket("/admin");
    within(admin.connect()).await.unwrap();
    // Both sockets start their ack ids at 0 and share the connection.
    let (a, b) = tokio::join!(
        main.socket.emit_with_ack("nsp", (), WAIT),
        admin.emit_with_ack("nsp", (), WAIT)
    );
    assert_eq!(a.unwrap().values, vec![json!("/")]);
    assert_eq!(b.unwrap().values, vec![json!("/admin")]);
}

#[tokio::test]
async fn server_waits_for_the_clients_answer_or_times_out() {
    let server = start_default(handlers).await;
    let client = connect(&server.url(), "/").await;
    client.socket.on("ask", |event| async move {
        let question: i64 = event.arg(0).unwrap_or_default();
        let _ = event.ack(json!({ "answer": question + 1 }));
    });
    client.socket.on("ask-many", |event| async move {
        let args = Args::one("x").unwrap().push(&event.value()).unwrap();
        let _ = event.ack(args);
    });
    let socket = server.socket_of(&client.socket);

    let answer = within(socket.emit_with_ack("ask", 41)).await.unwrap();
    assert_eq!(answer.values, vec![json!({"answer": 42})]);
    let answer = within(socket.emit_with_ack_timeout("ask-many", 7, WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("x"), json!(7)]);

    // Nobody answers "ignored".
    let result = socket
        .emit_with_ack_timeout("ignored", (), Duration::from_millis(200))
        .await;
    assert!(matches!(result, Err(AckError::Timeout)), "{result:?}");

    // The client goes away while the server waits.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    client.socket.on("unanswered", move |_| {
        let _ = seen_tx.send(());
        async {}
    });
    let pending = {
        let socket = socket.clone();
        tokio::spawn(async move { socket.emit_with_ack_timeout("unanswered", (), WAIT).await })
    };
    within(seen_rx.recv()).await.unwrap();
    client.socket.disconnect();
    let result = within(pending).await.unwrap();
    assert!(matches!(result, Err(AckError::Disconnected)), "{result:?}");
    let result = socket.emit_with_ack("ask", 1).await;
    assert!(
        matches!(
            result,
            Err(AckError::Emit(switchyard::EmitError::Disconnected))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn broadcast_with_ack_collects_every_answer() {
    let server = start_default(handlers).await;
    let ns = server.ns("/");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = connect(&server.url(), "/").await;
        client.socket.on("roll-call", |event| async move {
            let id = event.socket().id();
            let _ = event.ack(json!({ "id": id, "got": event.value() }));
        });
        server.socket_of(&client.socket).join("answering");
        clients.push(client);
    }
    let silent = connect(&server.url(), "/").await;

    let replies = within(ns.to("answering").emit_with_ack("roll-call", 5))
        .await
        .unwrap();
    assert_eq!(replies.len(), 3);
    let mut by_sid = BTreeMap::new();
    for reply in replies {
        let sid = reply.sid.expect("local sockets are named").to_string();
        let args = reply.result.expect("every client answered");
        by_sid.insert(sid, args.values);
    }
    let expected: BTreeMap<String, Vec<Value>> = clients
        .iter()
        .map(|client| {
            let id = client.id();
            (id.clone(), vec![json!({"id": id, "got": 5})])
        })
        .collect();
    assert_eq!(by_sid, expected);

    // With a client that does not answer: its entry fails once the timeout passes.
    let replies = within(
        ns.broadcast()
            .timeout(Duration::from_millis(300))
            .emit_with_ack("roll-call", 6),
    )
    .await
    .unwrap();
    assert_eq!(replies.len(), 4);
    let silent_id = silent.id();
    for reply in replies {
        let sid = reply.sid.unwrap().to_string();
        if sid == silent_id {
            assert!(matches!(reply.result, Err(AckError::Timeout)));
        } else {
            assert_eq!(
                reply.result.unwrap().values,
                vec![json!({"id": sid, "got": 6})]
            );
        }
    }

    // Nobody targeted: an empty answer at once.
    let replies = within(ns.to("nobody").emit_with_ack("roll-call", 7))
        .await
        .unwrap();
    assert!(replies.is_empty());

    // From a socket: the others answer, not the sender.
    let sender = server.socket_of(&clients[0].socket);
    let replies = within(
        sender
            .broadcast()
            .to("answering")
            .emit_with_ack("roll-call", 8),
    )
    .await
    .unwrap();
    assert_eq!(replies.len(), 2);
    assert!(replies
        .iter()
        .all(|reply| reply.sid.as_deref() != Some(sender.id().as_ref())));
}

#[tokio::test]
async fn pending_acks_per_socket_are_bounded() {
    let config = SocketIoConfig {
        limits: SocketLimits {
            max_pending_acks: 2,
            ..SocketLimits::default()
        },
        ..SocketIoConfig::default()
    };
    let server = start(config, handlers).await;
    let client = connect(&server.url(), "/").await;
    // The client holds its answers until told to give them.
    let held: Arc<Mutex<Vec<(AckSender, Value)>>> = Arc::default();
    {
        let held = held.clone();
        client.socket.on("hold", move |event| {
            if let Some(ack) = event.ack_sender() {
                held.lock().unwrap().push((ack.clone(), event.value()));
            }
            async {}
        });
    }
    let socket = server.socket_of(&client.socket);
    let waiting: Vec<_> = (0..2)
        .map(|n| {
            let socket = socket.clone();
            tokio::spawn(async move { socket.emit_with_ack_timeout("hold", n, WAIT).await })
        })
        .collect();
    common::wait_until("the client holds both questions", || {
        held.lock().unwrap().len() == 2
    })
    .await;

    // A third is refused at once.
    let third = socket.emit_with_ack("hold", 2).await;
    assert!(matches!(third, Err(AckError::TooManyPending)), "{third:?}");
    // So is a broadcast's entry for this socket.
    let replies = within(emit_with_ack_all(&server.ns("/"), "hold", 3)).await;
    assert_eq!(replies.len(), 1);
    assert!(matches!(replies[0].result, Err(AckError::TooManyPending)));

    // Answering frees the slots.
    for (ack, value) in held.lock().unwrap().drain(..) {
        ack.send(json!({ "held": value })).unwrap();
    }
    for (n, task) in waiting.into_iter().enumerate() {
        let answer = within(task).await.unwrap().unwrap();
        assert_eq!(answer.values, vec![json!({ "held": n })]);
    }
    let fourth = tokio::spawn({
        let socket = socket.clone();
        async move { socket.emit_with_ack_timeout("hold", 4, WAIT).await }
    });
    common::wait_until("the client holds the fourth", || {
        held.lock().unwrap().len() == 1
    })
    .await;
    for (ack, value) in held.lock().unwrap().drain(..) {
        ack.send(value).unwrap();
    }
    assert_eq!(
        within(fourth).await.unwrap().unwrap().values,
        vec![json!(4)]
    );
}

/// A broadcast with acks to the whole namespace, failing the test on an adapter error.
async fn emit_with_ack_all(
    ns: &switchyard::Namespace,
    event: &str,
    data: i64,
) -> Vec<switchyard::adapter::AckReply> {
    ns.broadcast()
        .timeout(Duration::from_millis(300))
        .emit_with_ack(event, data)
        .await
        .expect("broadcast with acks")
}

#[tokio::test]
async fn a_handler_registered_again_replaces_the_first_and_owned_names_work() {
    let server = start_default(|io: &SocketIo| {
        io.of("/").on_connection(|socket: Socket| async move {
            socket.on("answer", |_: Socket, _: Value| async move {
                Ok::<_, Infallible>("first")
            });
            // The same name again, given as a `String`: it replaces the first handler.
            socket.on(String::from("answer"), |_: Socket, _: Value| async move {
                Ok::<_, Infallible>("second")
            });
            let owned = format!("{}-{}", "built", 7);
            socket.on(owned, |_: Socket, _: Value| async move {
                Ok::<_, Infallible>("owned")
            });
        });
    })
    .await;
    let client = connect(&server.url(), "/").await;
    let answer = within(client.socket.emit_with_ack("answer", 0, WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("second")]);
    let answer = within(client.socket.emit_with_ack("built-7", 0, WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!("owned")]);
}
