//! The Admin UI's namespace across two servers on one real Redis (`redis-server`, started by
//! the test): an admin connected to one server lists the other's sockets with their
//! connection, gets both servers' figures and the other's live events, and its actions reach
//! the other's sockets.
//!
//! Behind the `redis-server-tests` feature, since plain `cargo test` installs nothing.
#![cfg(feature = "redis-server-tests")]

mod common;

use std::sync::Arc;

use common::{ack, chat};
use serde_json::{json, Value};
use switchyard_client::Args;
use switchyard_testkit::{wait_until, RedisServer, DEADLINE};
use tokio::sync::mpsc;

/// Every event an admin socket gets: its name and all its arguments.
type Events = mpsc::UnboundedReceiver<(String, Vec<Value>)>;

/// The arguments of the first `name` event that `accept` takes (others skipped).
async fn until(events: &mut Events, name: &str, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let wait = async {
        loop {
            let (event, args) = events.recv().await.expect("the admin is connected");
            if event == name && accept(&args) {
                return args;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("no {name} event in time"))
}

async fn an_admin_on_one_server_sees_and_acts_on_the_other(adapter: &str) {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str())];
    let args = |id: &'static str| {
        [
            "--port",
            "0",
            "--adapter",
            adapter,
            "--admin-ui-auth",
            "off",
            "--admin-ui-server-id",
            id,
        ]
    };
    let (first, second) = (
        common::start(&args("one"), &env),
        common::start(&args("two"), &env),
    );
    let (_b, bob, _bob_events) = chat(&second.url, "bob").await;
    let bob_id = bob.id().expect("connected");

    // A server learns of the others a little after it starts (the streams adapter by their
    // heartbeats): an admin that connects before may not see bob yet, so it connects again.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (_manager, admin, mut events, listed) = loop {
        let (manager, admin) = common::socket(&first.url, "/admin", json!({}));
        let (sender, mut events) = mpsc::unbounded_channel();
        let sender = Arc::new(sender);
        admin.on_any(move |event| {
            let sender = sender.clone();
            let args: Args = event.args().clone();
            async move {
                let _ = sender.send((event.name().to_owned(), args.values));
            }
        });
        tokio::time::timeout(DEADLINE, admin.connect())
            .await
            .expect("admin connects in time")
            .expect("admin connected");
        // Bob, on the other server, is listed with his connection.
        let all = until(&mut events, "all_sockets", |_| true).await;
        let bob_listed = all[0]
            .as_array()
            .expect("a list")
            .iter()
            .find(|socket| socket["id"] == json!(bob_id))
            .cloned();
        match bob_listed {
            Some(listed) => break (manager, admin, events, listed),
            None if tokio::time::Instant::now() < deadline => {
                admin.disconnect();
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            None => panic!("{adapter}: bob not in {all:?}"),
        }
    };
    assert_eq!(listed["nsp"], "/chat", "{adapter}");
    // Where the client is in its upgrade (polling first) when the list is made is not fixed:
    // either transport is a true answer, and a transport is always told.
    assert!(
        listed["transport"] == "websocket" || listed["transport"] == "polling",
        "{adapter}: {listed}"
    );
    assert_eq!(
        listed["clientId"].as_str().map(str::len),
        Some(12),
        "{adapter}"
    );
    assert!(listed
        .get("handshake")
        .is_some_and(|h| h.get("auth").is_none()));

    // Both servers report their figures here.
    for id in ["one", "two"] {
        until(&mut events, "server_stats", |args| {
            args[0]["serverId"] == id
        })
        .await;
    }
    // Once the other server has counted this admin (it counts after each report), its live
    // events come here too: bob joins rooms until one of his joins is told here.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut attempt = 0;
    let joined = loop {
        attempt += 1;
        let room = format!("lobby{attempt}");
        assert_eq!(ack(&bob, "join", json!(room)).await["room"], json!(room));
        let key = json!(format!("chat:{room}"));
        let told = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            until(&mut events, "room_joined", |args| args.get(1) == Some(&key)),
        )
        .await;
        match told {
            Ok(joined) => break joined,
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => panic!("{adapter}: no room_joined from the other server"),
        }
    };
    assert_eq!(joined[0], "/chat", "{adapter}");
    assert_eq!(joined[2], json!(bob_id), "{adapter}");

    // An action from this server reaches bob on the other.
    admin
        .emit(
            "_disconnect",
            Args {
                values: vec![json!("/chat"), json!(false), json!(bob_id)],
                attachments: Vec::new(),
            },
        )
        .expect("sent");
    wait_until("bob disconnected by the admin", || !bob.connected()).await;
    let gone = until(&mut events, "socket_disconnected", |args| {
        args.get(1) == Some(&json!(bob_id))
    })
    .await;
    assert_eq!(gone[2], "server namespace disconnect", "{adapter}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_adapter() {
    an_admin_on_one_server_sees_and_acts_on_the_other("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_adapter() {
    an_admin_on_one_server_sees_and_acts_on_the_other("redis-streams").await;
}
