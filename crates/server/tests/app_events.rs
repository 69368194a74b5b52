//! What the React app relies on in `/chat` and `/notifications`, with real clients: message
//! ids (live and in history), the `online` list of the join ack, mentions notified, every
//! notification kept in its user's inbox, and the backend's `POST /api/v1/notify`.

mod common;

use common::{ack, chat, next};
use serde_json::{json, Value};
use switchyard_client::{Manager, Socket};
use tokio::sync::mpsc;

const KEY: &str = "backend-key-0123456789";

type Events = mpsc::UnboundedReceiver<(String, Value)>;

/// A `/notifications` client as `user` (dev mode), and the events it gets.
async fn user(url: &str, user: &str) -> (Manager, Socket, Events) {
    common::client(url, "/notifications", json!({ "user": user })).await
}

async fn api(url: &str, path: &str, body: Value) -> (u16, Value) {
    let (url, path) = (url.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        common::call(&url, "POST", &path, Some(KEY), Some(&body.to_string()))
    })
    .await
    .expect("call")
}

/// The next event, which must be `name`: its data.
async fn expect(events: &mut Events, name: &str) -> Value {
    let (event, data) = next(events).await;
    assert_eq!(event, name, "{data}");
    data
}

async fn inbox(socket: &Socket) -> Vec<Value> {
    let answer = ack(socket, "inbox", Value::Null).await;
    answer["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("notifications: {answer}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_unique_ids_live_and_in_history_and_joins_list_who_is_online() {
    let server = common::start(&["--port", "0"], &[]);
    let (_a1, alice1, mut alice_events) = chat(&server.url, "alice").await;
    let (_a2, alice2, _alice2_events) = chat(&server.url, "alice").await;
    let (_b, bob, _bob_events) = chat(&server.url, "bob").await;
    assert_eq!(
        ack(&alice1, "join", json!("general")).await["online"],
        json!(["alice"])
    );
    expect(&mut alice_events, "presence").await;
    ack(&alice2, "join", json!("general")).await;
    // A user with two tabs is online once.
    let joined = ack(&bob, "join", json!("general")).await;
    assert_eq!(joined["online"], json!(["alice", "bob"]));
    expect(&mut alice_events, "presence").await;

    let mut live = Vec::new();
    for text in ["one", "two"] {
        ack(&bob, "message", json!({ "room": "general", "text": text })).await;
        let message = expect(&mut alice_events, "message").await;
        assert_eq!(message["text"], text);
        live.push(message["id"].as_str().expect("an id").to_owned());
    }
    assert_ne!(live[0], live[1]);
    let history = ack(&bob, "history", json!("general")).await;
    let kept: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["id"].as_str())
        .collect();
    assert_eq!(kept, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_notify_the_named_users_once_but_not_the_sender() {
    let server = common::start(&["--port", "0"], &[]);
    let (_a, alice, _alice_events) = chat(&server.url, "alice").await;
    let (_bn, bob_notes, mut bob_notes_events) = user(&server.url, "bob").await;
    let (_an, alice_notes, _alice_notes_events) = user(&server.url, "alice").await;
    ack(&alice, "join", json!("general")).await;
    let text = "hi @bob, @bob and @carol; mail me@example.com, @alice";
    assert_eq!(
        ack(
            &alice,
            "message",
            json!({ "room": "general", "text": text })
        )
        .await,
        json!({ "ok": true })
    );
    let notification = expect(&mut bob_notes_events, "notification").await;
    assert_eq!(notification["kind"], "mention");
    assert_eq!(notification["room"], "general");
    assert_eq!(notification["from"], "alice");
    assert_eq!(notification["text"], text);
    assert!(notification["id"].is_string() && notification["time"].is_u64());
    // Carol was not connected: it waits in her inbox. Alice named herself: nothing.
    let (_cn, carol_notes, _carol_notes_events) = user(&server.url, "carol").await;
    let carol = inbox(&carol_notes).await;
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(carol[0]["kind"], "mention");
    assert_eq!(inbox(&alice_notes).await, Vec::<Value>::new());
    assert_eq!(inbox(&bob_notes).await, vec![notification]);

    // At most five distinct users per message.
    let many = "@u1 @u2 @u3 @u4 @u5 @u6";
    ack(
        &alice,
        "message",
        json!({ "room": "general", "text": many }),
    )
    .await;
    let (_u5, u5, _u5_events) = user(&server.url, "u5").await;
    let (_u6, u6, _u6_events) = user(&server.url, "u6").await;
    assert_eq!(inbox(&u5).await.len(), 1);
    assert_eq!(inbox(&u6).await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wait_in_the_inbox_for_a_reconnection() {
    let server = common::start(&["--port", "0"], &[]);
    let (_b, bob, _bob_events) = user(&server.url, "bob").await;
    let (alice_manager, alice, mut alice_events) = user(&server.url, "alice").await;

    let sent = ack(&bob, "notify", json!({ "to": "alice", "text": "first" })).await;
    assert_eq!(sent["delivered"], 1, "{sent}");
    let live = expect(&mut alice_events, "notification").await;
    assert_eq!(live["id"], sent["id"]);
    assert_eq!(live["kind"], "direct");
    assert_eq!(live["from"], "bob");
    assert_eq!(live["text"], "first");

    // Alice goes away; what is sent meanwhile is kept.
    alice.disconnect();
    drop(alice_manager);
    let sent = ack(&bob, "notify", json!({ "to": "alice", "text": "second" })).await;
    let (_a, alice, _alice_events) = user(&server.url, "alice").await;
    let kept = inbox(&alice).await;
    let texts: Vec<&Value> = kept.iter().map(|n| &n["text"]).collect();
    assert_eq!(texts, [&json!("first"), &json!("second")]);
    assert_eq!(kept[0], live);
    assert_eq!(kept[1]["id"], sent["id"]);

    // The last 50 only (from three sockets: each may send 30 at once).
    let mut senders = Vec::new();
    for _ in 0..3 {
        senders.push(user(&server.url, "dave").await);
    }
    for n in 0..55 {
        let sent = ack(
            &senders[n / 25].1,
            "notify",
            json!({ "to": "carol", "text": format!("n{n}") }),
        )
        .await;
        assert!(sent["id"].is_string(), "{sent}");
    }
    let (_c, carol, _carol_events) = user(&server.url, "carol").await;
    let kept = inbox(&carol).await;
    assert_eq!(kept.len(), 50);
    assert_eq!(kept[0]["text"], "n5");
    assert_eq!(kept[49]["text"], "n54");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_notifies_a_user_who_finds_it_in_the_inbox_too() {
    let server = common::start(&["--port", "0"], &[("API_KEYS", KEY)]);
    let (_a, alice, mut alice_events) = user(&server.url, "alice").await;
    let (status, body) = api(
        &server.url,
        "/api/v1/notify",
        json!({ "to": "alice", "text": "Your invoice is ready", "from": "billing" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 1, "{body}");
    let notification = expect(&mut alice_events, "notification").await;
    assert_eq!(notification["id"], body["id"]);
    assert_eq!(notification["kind"], "backend");
    assert_eq!(notification["from"], "billing");
    assert_eq!(notification["text"], "Your invoice is ready");
    assert_eq!(inbox(&alice).await, vec![notification]);

    let (status, body) = api(
        &server.url,
        "/api/v1/notify",
        json!({ "to": "nobody-here", "text": "later" }),
    )
    .await;
    assert_eq!((status, &body["delivered"]), (200, &json!(0)), "{body}");
    let (_n, nobody, _events) = user(&server.url, "nobody-here").await;
    assert_eq!(inbox(&nobody).await[0]["from"], "backend");

    for bad in [
        json!({ "to": "alice" }),
        json!({ "to": "", "text": "t" }),
        json!({ "to": "alice", "text": " " }),
        json!({ "to": "alice", "text": "t", "extra": 1 }),
    ] {
        let (status, body) = api(&server.url, "/api/v1/notify", bad.clone()).await;
        assert_eq!(status, 422, "{bad} -> {body}");
        assert!(body["error"].is_string(), "{body}");
    }
}
