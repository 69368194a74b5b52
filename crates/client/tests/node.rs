//! The client against Node's reference server (socket.io 4.8.1, connection state recovery
//! on), started from `tests/node/server.mjs`.
//!
//! Built only with the `node-interop` feature: it needs Node.js and `npm ci` in `tests/node`
//! first, which `scripts/test` does before
//! `cargo test -p switchyard-client --features node-interop --test node`.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::node::NodeServer;
use common::{Inbox, Timeline};
use serde_json::{json, Value};
use switchyard_client::{
    Args, Backoff, Binary, DisconnectReason, Manager, ManagerConfig, ManagerEvent, Socket,
    SocketOptions, Transports,
};
use switchyard_testkit::{Proxy, Route};

const WAIT: Duration = Duration::from_secs(5);

/// Records `hello` (whose offset the client must strip) into an inbox.
fn on_hello(socket: &Socket) -> Inbox<Vec<Value>> {
    let inbox = Inbox::new();
    let tx = inbox.sender();
    socket.on("hello", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.args().values.clone());
        }
    });
    inbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_and_ack_both_ways_with_binary() {
    let server = NodeServer::start().await;
    let manager = Manager::new(&server.url(), ManagerConfig::default()).unwrap();
    let socket = manager.socket("/");
    let mut hello = on_hello(&socket);
    socket.on("ask", |event| async move {
        let question = event.value();
        let _ = event.ack(json!({"echo": question, "from": "rust"}));
    });
    socket.connect().await.unwrap();
    let id = socket.id().unwrap();
    // The server's direct emit carries an offset with recovery on; the handler sees only
    // the real arguments.
    assert_eq!(hello.next(WAIT).await, vec![json!(id), json!(false)]);

    // `json!` would serialize the `Binary` on its own, as a byte array: a struct keeps it
    // binary inside the payload.
    #[derive(serde::Serialize)]
    struct Blob {
        blob: Binary,
    }
    let args = Args::one("text")
        .unwrap()
        .push(&7)
        .unwrap()
        .push(&Blob {
            blob: Binary::from(vec![9u8, 8, 7]),
        })
        .unwrap();
    let echoed = socket.emit_with_ack("echo", args, WAIT).await.unwrap();
    assert_eq!(
        echoed.values,
        vec![
            json!("text"),
            json!(7),
            json!({"blob": {"_placeholder": true, "num": 0}})
        ]
    );
    assert_eq!(echoed.attachments, vec![Bytes::from_static(&[9, 8, 7])]);

    let answer = socket
        .emit_with_ack("server-ask", json!({"n": 1}), WAIT)
        .await
        .unwrap();
    assert_eq!(
        answer.values,
        vec![json!({"echo": {"n": 1}, "from": "rust"})]
    );
    let who = socket.emit_with_ack("whoami", (), WAIT).await.unwrap();
    assert_eq!(
        who.values,
        vec![json!({"id": id, "recovered": false, "auth": {}})]
    );
}

/// The server closes the transport (an unclean end): the client reconnects, recovers the
/// session, gets the events broadcast meanwhile, and flushes what it emitted while down.
async fn recovery_over(transports: Transports) {
    let server = NodeServer::start().await;
    let manager = Manager::new(
        &server.url(),
        ManagerConfig {
            transports,
            reconnection_delay: Duration::from_millis(150),
            reconnection_delay_max: Duration::from_millis(600),
            ..ManagerConfig::default()
        },
    )
    .unwrap();
    let events = Timeline::default();
    let log = events.clone();
    manager.on_event(move |event| match event {
        ManagerEvent::ReconnectAttempt(n) => log.mark(format!("attempt {n}")),
        ManagerEvent::Reconnect(n) => log.mark(format!("reconnect {n}")),
        _ => {}
    });
    let socket = manager.socket_with("/", SocketOptions::default().auth(json!({"user": "ada"})));
    let mut hello = on_hello(&socket);
    let mut missed = Inbox::new();
    let tx = missed.sender();
    socket.on("missed", move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.args().values.clone());
        }
    });
    let mut disconnects = Inbox::new();
    let tx = disconnects.sender();
    socket.on_disconnect(move |socket, reason| {
        // Emitted while disconnected: buffered, sent in order after the reconnection.
        for item in ["a", "b", "c"] {
            socket.emit("record", item).unwrap();
        }
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
    // `hello` brought the first offset.
    assert_eq!(hello.next(WAIT).await, vec![json!(first_id), json!(false)]);
    if transports == Transports::PollingThenWebSocket {
        assert!(
            common::eventually(WAIT, || manager.transport()
                == Some(switchyard_client::TransportKind::WebSocket))
            .await
        );
    }

    socket.emit("kill-and-broadcast", 3).unwrap();
    let reason = disconnects.next(WAIT).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::TransportClose | DisconnectReason::TransportError
        ),
        "{reason}"
    );
    let (second_id, recovered) = connects.next(WAIT).await;
    assert!(recovered, "the session should be recovered");
    assert!(socket.recovered());
    assert_eq!(second_id.as_deref(), Some(first_id.as_str()));
    // The missed broadcasts were replayed, in order, each without its offset.
    let replayed = vec![
        missed.next(WAIT).await,
        missed.next(WAIT).await,
        missed.next(WAIT).await,
    ];
    assert_eq!(
        replayed,
        vec![vec![json!(1)], vec![json!(2)], vec![json!(3)]]
    );
    // The recovered connection still greets (the server's `connection` handler runs again).
    assert_eq!(hello.next(WAIT).await, vec![json!(first_id), json!(true)]);
    let records = socket.emit_with_ack("records", (), WAIT).await.unwrap();
    assert_eq!(records.values, vec![json!(["a", "b", "c"])]);
    let who = socket.emit_with_ack("whoami", (), WAIT).await.unwrap();
    assert_eq!(who.values[0]["id"], json!(first_id));
    assert_eq!(who.values[0]["recovered"], json!(true));
    // The CONNECT carried the private session id and the last offset beside the auth.
    let auth = who.values[0]["auth"].as_object().unwrap();
    let mut keys: Vec<&str> = auth.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["offset", "pid", "user"]);
    assert_eq!(auth["user"], json!("ada"));
    assert!(auth["pid"].is_string() && auth["offset"].is_string());
    let names: Vec<String> = events.entries().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        vec!["attempt 1".to_owned(), "reconnect 1".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_kill_reconnects_and_recovers_after_upgrade() {
    recovery_over(Transports::PollingThenWebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_kill_reconnects_and_recovers_over_polling() {
    recovery_over(Transports::Polling).await;
}

/// The server process dies and another comes back at the same address (a proxy in front
/// keeps it while each process gets its own port): the client retries with the configured
/// backoff, calls its auth function again, and gets a new (unrecovered) session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects_with_backoff_within_bounds() {
    let server = NodeServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let delay = Duration::from_millis(200);
    let delay_max = Duration::from_millis(1000);
    let manager = Manager::new(
        &proxy.url(),
        ManagerConfig {
            transports: Transports::WebSocket,
            reconnection_delay: delay,
            reconnection_delay_max: delay_max,
            randomization_factor: 0.5,
            ..ManagerConfig::default()
        },
    )
    .unwrap();
    let timeline = Timeline::default();
    let log = timeline.clone();
    manager.on_event(move |event| match event {
        ManagerEvent::ReconnectAttempt(n) => log.mark(format!("attempt {n}")),
        ManagerEvent::ReconnectError(_) => log.mark("error"),
        ManagerEvent::Reconnect(n) => log.mark(format!("reconnect {n}")),
        _ => {}
    });
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let socket = manager.socket_with(
        "/",
        SocketOptions::default().auth_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { json!({"token": format!("t{n}")}) }
        }),
    );
    let log = timeline.clone();
    socket.on_disconnect(move |_, reason| log.mark(format!("disconnect {reason}")));
    let mut connects = Inbox::new();
    let tx = connects.sender();
    socket.on_connect(move |socket| {
        let _ = tx.send((socket.id(), socket.recovered()));
    });
    socket.connect().await.unwrap();
    let (first_id, _) = connects.next(WAIT).await;
    let who = socket.emit_with_ack("whoami", (), WAIT).await.unwrap();
    assert_eq!(who.values[0]["auth"], json!({"token": "t1"}));

    // Down: nothing answers at the address until the new process is up.
    proxy.route(Route::Refuse);
    server.kill().await;
    // Down long enough for at least three failed attempts (about 0.2 + 0.4 + 0.8 s).
    assert!(
        common::eventually(Duration::from_secs(10), || {
            timeline
                .entries()
                .iter()
                .filter(|(name, _)| name == "error")
                .count()
                >= 3
        })
        .await,
        "three failed attempts while the server is down"
    );
    let restarted = NodeServer::start().await;
    proxy.route(Route::To(restarted.addr()));
    let (second_id, recovered) = connects.next(Duration::from_secs(10)).await;
    assert!(!recovered, "a new server process has no session to recover");
    assert_ne!(second_id, first_id);
    let who = socket.emit_with_ack("whoami", (), WAIT).await.unwrap();
    let calls = calls.load(Ordering::SeqCst);
    assert_eq!(
        calls, 2,
        "the auth function runs once per successful engine open"
    );
    // The refreshed token, beside the stale pid and offset that the new server ignored.
    assert_eq!(who.values[0]["auth"]["token"], json!("t2"));
    assert!(who.values[0]["auth"]["pid"].is_string());

    // Check the timeline: disconnect, then attempt n / error pairs, then reconnect n.
    let entries = timeline.entries();
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names[0].starts_with("disconnect transport"), "{names:?}");
    let attempts = names
        .iter()
        .filter(|name| name.starts_with("attempt"))
        .count();
    assert!(attempts >= 3, "{names:?}");
    let mut expected = vec![names[0].to_owned()];
    for n in 1..=attempts {
        expected.push(format!("attempt {n}"));
        if n < attempts {
            expected.push("error".to_owned());
        }
    }
    expected.push(format!("reconnect {attempts}"));
    assert_eq!(names, expected);

    // Each attempt started its backoff delay after the previous failure (or the disconnect).
    // The marks are taken when the events are handled, a little after they happen, so the
    // bounds get some slack: a little below (a late mark of the failure shortens the wait
    // seen) and a lot above (a busy machine only makes waits longer).
    let backoff = Backoff::new(delay, delay_max, 0.5);
    let mut previous = entries[0].1;
    let mut attempt = 0u32;
    for (name, at) in &entries[1..] {
        if name.starts_with("attempt") {
            let (low, high) = backoff.bounds(attempt);
            let waited = at.duration_since(previous);
            assert!(
                waited + Duration::from_millis(50) >= low
                    && waited <= high + Duration::from_secs(1),
                "attempt {}: waited {waited:?}, expected {low:?}..={high:?}",
                attempt + 1
            );
            attempt += 1;
        } else if name == "error" {
            previous = *at;
        }
    }
}
