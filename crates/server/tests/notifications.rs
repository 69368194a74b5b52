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
