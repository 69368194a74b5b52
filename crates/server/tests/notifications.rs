//! `/notifications` on the binary with real clients: with JWT on and `/notifications` public,
//! nobody reads an inbox there and a token-protected `/chat` sends it no mentions.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{ack, client, next};
use serde_json::{json, Value};
use switchyard_auth::jsonwebtoken::{encode, EncodingKey, Header};

const SECRET: &str = "a-real-secret-0123456789abcdef";

/// A token for `sub`, valid for an hour.
fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    encode(
        &Header::default(),
        &json!({ "sub": sub, "exp": now + 3600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_notifications_namespace_reads_no_inbox_and_gets_no_mentions_from_a_protected_chat(
) {
    let server = common::start(
        &["--port", "0", "--public-namespaces", "/notifications"],
        &[("JWT_SECRET", SECRET), ("ROOM_POLICY", "/chat=open")],
    );
    let url = &server.url;
    // Anyone may say they are bob on the public namespace.
    let (_b, bob, mut bob_events) = client(url, "/notifications", json!({ "user": "bob" })).await;
    assert_eq!(
        ack(&bob, "inbox", Value::Null).await,
        json!({ "error": "the inbox needs a signed-in user" })
    );
    // Alice, signed in on /chat, mentions bob: the message goes out, the mention does not.
    let (_a, alice, mut alice_events) =
        client(url, "/chat", json!({ "token": token("alice") })).await;
    assert!(ack(&alice, "join", json!("general")).await["room"] == "general");
    assert_eq!(
        ack(
            &alice,
            "message",
            json!({ "room": "general", "text": "@bob the secret is 42" })
        )
        .await,
        json!({ "ok": true })
    );
    loop {
        let (event, data) = next(&mut alice_events).await;
        if event == "message" {
            assert_eq!(data["text"], "@bob the secret is 42");
            break;
        }
    }
    // What bob gets next is carol's direct notification, not the mention.
    let (_c, carol, _carol_events) =
        client(url, "/notifications", json!({ "user": "carol" })).await;
    let sent = ack(&carol, "notify", json!({ "to": "bob", "text": "ping" })).await;
    assert!(sent["id"].is_string(), "{sent}");
    let (event, data) = next(&mut bob_events).await;
    assert_eq!(event, "notification", "{data}");
    assert_eq!(data["kind"], "direct", "{data}");
    assert_eq!(data["text"], "ping");
    // Nor was anything kept for whoever claims to be bob.
    assert_eq!(
        ack(&bob, "inbox", Value::Null).await,
        json!({ "error": "the inbox needs a signed-in user" })
    );
}

/// The events of `events` until `want` of them are `notification`s: those.
async fn notifications(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    want: usize,
) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < want {
        let (event, data) = next(events).await;
        if event == "notification" {
            got.push(data);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_of_made_up_names_never_evict_room_history() {
    // Room history small enough that 30 inboxes would evict it, were they kept with it.
    let server = common::start(&["--port", "0", "--history-max-bytes", "4096"], &[]);
    let url = &server.url;
    let (_a, alice, _alice_events) = common::chat(url, "alice").await;
    assert_eq!(
        ack(&alice, "join", json!("general")).await["room"],
        "general"
    );
    assert_eq!(
        ack(
            &alice,
            "message",
            json!({ "room": "general", "text": "keep me" })
        )
        .await,
        json!({ "ok": true })
    );
    // The flood comes from another room: `general` is the room written to least recently.
    assert_eq!(ack(&alice, "join", json!("flood")).await["room"], "flood");
    let (_w, watcher, mut watcher_events) =
        client(url, "/notifications", json!({ "user": "made-up-29" })).await;
    // 30 made-up names, 5 a message: the whole budget of alice's socket.
    for message in 0..6 {
        let text: Vec<String> = (0..5)
            .map(|n| format!("@made-up-{}", message * 5 + n))
            .collect();
        assert_eq!(
            ack(
                &alice,
                "message",
                json!({ "room": "flood", "text": text.join(" ") })
            )
            .await,
            json!({ "ok": true })
        );
    }
    // The last message's mentions are out (each kept before it is sent).
    notifications(&mut watcher_events, 1).await;
    let inbox = ack(&watcher, "inbox", Value::Null).await;
    assert_eq!(inbox["notifications"][0]["kind"], "mention", "{inbox}");
    let (_b, bob, _bob_events) = common::chat(url, "bob").await;
    let joined = ack(&bob, "join", json!("general")).await;
    assert_eq!(
        joined["history"][0]["text"], "keep me",
        "the room's history is still there: {joined}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_causes_30_notifications_then_waits() {
    let server = common::start(&["--port", "0"], &[]);
    let url = &server.url;
    let (_b, _bob, mut bob_events) = client(url, "/notifications", json!({ "user": "bob" })).await;
    let (_c, carol, _carol_events) =
        client(url, "/notifications", json!({ "user": "carol" })).await;
    for n in 0..30 {
        let sent = ack(
            &carol,
            "notify",
            json!({ "to": "bob", "text": format!("n{n}") }),
        )
        .await;
        assert!(sent["id"].is_string(), "{n}: {sent}");
    }
    assert_eq!(
        ack(&carol, "notify", json!({ "to": "bob", "text": "one more" })).await,
        json!({ "error": "too many notifications; try again later" })
    );
    assert_eq!(notifications(&mut bob_events, 30).await.len(), 30);

    // Mentions spend the chat socket's budget: past it they are skipped, the message is not.
    let (_a, alice, mut alice_events) = common::chat(url, "alice").await;
    assert_eq!(
        ack(&alice, "join", json!("general")).await["room"],
        "general"
    );
    for n in 0..30 {
        assert_eq!(
            ack(
                &alice,
                "message",
                json!({ "room": "general", "text": format!("@bob m{n}") })
            )
            .await,
            json!({ "ok": true })
        );
    }
    assert_eq!(notifications(&mut bob_events, 30).await.len(), 30);
    assert_eq!(
        ack(
            &alice,
            "message",
            json!({ "room": "general", "text": "@bob skipped" })
        )
        .await,
        json!({ "ok": true })
    );
    // Delivered to the room all the same.
    loop {
        let (event, data) = next(&mut alice_events).await;
        if event == "message" && data["text"] == "@bob skipped" {
            break;
        }
    }
    // What bob gets next is dave's mention, not alice's skipped one.
    let (_d, dave, _dave_events) = common::chat(url, "dave").await;
    assert_eq!(
        ack(&dave, "join", json!("general")).await["room"],
        "general"
    );
    assert_eq!(
        ack(
            &dave,
            "message",
            json!({ "room": "general", "text": "@bob from dave" })
        )
        .await,
        json!({ "ok": true })
    );
    let next_one = notifications(&mut bob_events, 1).await;
    assert_eq!(next_one[0]["text"], "@bob from dave", "{next_one:?}");
}
