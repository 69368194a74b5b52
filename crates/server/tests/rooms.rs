//! Presence and history of the binary's rooms on one server (history in memory), with real
//! clients: a user with several tabs counts once, arrivals and departures are announced, a
//! joiner gets the room's last messages, and the API reads both.

mod common;

use common::{ack, chat, next};
use serde_json::{json, Value};

const KEY: &str = "backend-key-0123456789";

async fn api(url: &str, path: &str, body: Value) -> (u16, Value) {
    let (url, path) = (url.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        common::call(&url, "POST", &path, Some(KEY), Some(&body.to_string()))
    })
    .await
    .expect("call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_count_once_and_arrivals_and_departures_are_announced() {
    let server = common::start(&["--port", "0"], &[("API_KEYS", KEY)]);
    let (_a1, alice_tab1, mut alice1) = chat(&server.url, "alice").await;
    let (_a2, alice_tab2, _alice2) = chat(&server.url, "alice").await;
    let (_b, bob, mut bob_events) = chat(&server.url, "bob").await;

    let joined = ack(&alice_tab1, "join", json!("general")).await;
    assert_eq!(joined["users"], json!(["alice"]));
    assert_eq!(joined["history"], json!([]));
    // Her own arrival is announced to the room, her first tab included.
    assert_eq!(
        next(&mut alice1).await,
        (
            "presence".to_owned(),
            json!({ "room": "general", "user": "alice", "online": true })
        )
    );

    let joined = ack(&bob, "join", json!("general")).await;
    assert_eq!(joined["users"], json!(["alice", "bob"]));
    assert_eq!(
        next(&mut alice1).await,
        (
            "presence".to_owned(),
            json!({ "room": "general", "user": "bob", "online": true })
        )
    );
    assert_eq!(next(&mut bob_events).await.0, "presence");

    // Her second tab is the same user: no announcement. Bob's message comes next.
    let joined = ack(&alice_tab2, "join", json!("general")).await;
    assert_eq!(joined["users"], json!(["alice", "bob"]));
    ack(
        &bob,
        "message",
        json!({ "room": "general", "text": "marker" }),
    )
    .await;
    let (event, data) = next(&mut bob_events).await;
    assert_eq!(
        (event.as_str(), &data["text"]),
        ("message", &json!("marker"))
    );
    let (event, _) = next(&mut alice1).await;
    assert_eq!(event, "message");

    assert_eq!(
        ack(&bob, "presence", json!("general")).await,
        json!({ "room": "general", "users": ["alice", "bob"], "userCount": 2 })
    );
    assert_eq!(
        ack(&bob, "presence", json!("elsewhere")).await,
        json!({ "error": "not in room elsewhere" })
    );
    let (status, body) = api(
        &server.url,
        "/api/v1/presence",
        json!({ "namespace": "/chat", "room": "chat:general" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "users": [{ "user": "alice", "sockets": 2 }, { "user": "bob", "sockets": 1 }] })
    );

    // One tab leaving keeps her present; the last one going (a disconnection) does not.
    ack(&alice_tab1, "leave", json!("general")).await;
    alice_tab2.disconnect();
    let (event, data) = next(&mut bob_events).await;
    assert_eq!(
        (event.as_str(), data),
        (
            "presence",
            json!({ "room": "general", "user": "alice", "online": false })
        )
    );
    assert_eq!(
        ack(&bob, "presence", json!("general")).await,
        json!({ "room": "general", "users": ["bob"], "userCount": 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_the_last_messages_of_the_room() {
    let server = common::start(
        &["--port", "0", "--history", "/chat=3"],
        &[("API_KEYS", KEY)],
    );
    let (_a, alice, _alice_events) = chat(&server.url, "alice").await;
    ack(&alice, "join", json!("general")).await;
    for n in 1..=5 {
        let text = format!("message {n}");
        assert_eq!(
            ack(
                &alice,
                "message",
                json!({ "room": "general", "text": text })
            )
            .await,
            json!({ "ok": true })
        );
    }
    let texts = |messages: &Value| -> Vec<String> {
        messages
            .as_array()
            .expect("messages")
            .iter()
            .map(|message| message["text"].as_str().expect("text").to_owned())
            .collect()
    };

    let (_c, carol, _carol_events) = chat(&server.url, "carol").await;
    let joined = ack(&carol, "join", json!("general")).await;
    assert_eq!(
        texts(&joined["history"]),
        ["message 3", "message 4", "message 5"]
    );
    assert_eq!(joined["history"][0]["sender"], "alice");
    assert_eq!(joined["history"][0]["room"], "general");

    let read = ack(&carol, "history", json!("general")).await;
    assert_eq!(
        texts(&read["messages"]),
        ["message 3", "message 4", "message 5"]
    );
    assert_eq!(
        ack(&carol, "history", json!("other")).await,
        json!({ "error": "not in room other" })
    );

    let (status, body) = api(
        &server.url,
        "/api/v1/history",
        json!({ "namespace": "/chat", "room": "chat:general", "limit": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(&body["messages"]), ["message 4", "message 5"]);
    let (status, body) = api(
        &server.url,
        "/api/v1/history",
        json!({ "namespace": "/chat", "room": "chat:general", "limit": 5000 }),
    )
    .await;
    assert_eq!(
        (status, body),
        (422, json!({ "error": "`limit` is at most 1000" }))
    );
    let (status, _) = api(
        &server.url,
        "/api/v1/history",
        json!({ "namespace": "/lobby", "room": "x" }),
    )
    .await;
    assert_eq!(status, 404);

    // Another room's history is its own.
    let joined = ack(&carol, "join", json!("quiet")).await;
    assert_eq!(joined["history"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_history_can_be_turned_off() {
    let server = common::start(
        &["--port", "0", "--presence", "none", "--history", "/chat=0"],
        &[],
    );
    let (_a, alice, _events) = chat(&server.url, "alice").await;
    let joined = ack(&alice, "join", json!("general")).await;
    assert_eq!(joined, json!({ "room": "general", "members": 1 }));
    // Without the feature the event is not handled: the ack never comes.
    assert!(alice
        .emit_with_ack(
            "history",
            json!("general"),
            std::time::Duration::from_millis(300)
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recovery_a_broken_connection_is_not_announced_as_a_departure() {
    let server = common::start(&["--port", "0", "--recovery-ms", "30000"], &[]);
    let upstream: std::net::SocketAddr = server
        .url
        .strip_prefix("http://")
        .and_then(|address| address.parse().ok())
        .expect("the server's address");
    let proxy = switchyard_testkit::Proxy::start(upstream).await;
    let (_a, alice, _alice_events) = chat(&proxy.url(), "alice").await;
    let (_b, bob, mut bob_events) = chat(&server.url, "bob").await;
    ack(&alice, "join", json!("general")).await;
    ack(&bob, "join", json!("general")).await;
    assert_eq!(next(&mut bob_events).await.0, "presence"); // bob's own arrival

    // Alice's connection breaks (no goodbye): her session is kept for her to come back.
    proxy.cut();
    let deadline = tokio::time::Instant::now() + switchyard_testkit::DEADLINE;
    loop {
        let users = ack(&bob, "presence", json!("general")).await;
        if users["users"] == json!(["bob"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice still listed: {users}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ack(
        &bob,
        "message",
        json!({ "room": "general", "text": "marker" }),
    )
    .await;
    let (event, data) = next(&mut bob_events).await;
    assert_eq!(
        (event.as_str(), &data["text"]),
        ("message", &json!("marker")),
        "{data}"
    );
}
