//! Presence and history across two servers on one real Redis (`redis-server`, started by the
//! test): a joiner on one server gets the messages said on the other, users are counted over
//! both, and arrivals and departures cross over. Each adapter flavour of a single Redis.
//!
//! Behind the `redis-server-tests` feature, since plain `cargo test` installs nothing.
#![cfg(feature = "redis-server-tests")]

mod common;

use common::{ack, chat, next};
use serde_json::{json, Value};
use switchyard_testkit::RedisServer;

const KEY: &str = "backend-key-0123456789";

async fn two_servers_share_presence_and_history(adapter: &str) {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("API_KEYS", KEY)];
    let args = ["--port", "0", "--adapter", adapter, "--history", "/chat=10"];
    let (first, second) = (common::start(&args, &env), common::start(&args, &env));

    let (_a, alice, mut alice_events) = chat(&first.url, "alice").await;
    let joined = ack(&alice, "join", json!("general")).await;
    assert_eq!(joined["users"], json!(["alice"]), "{adapter}");
    assert_eq!(next(&mut alice_events).await.0, "presence");
    for text in ["one", "two"] {
        ack(
            &alice,
            "message",
            json!({ "room": "general", "text": text }),
        )
        .await;
        assert_eq!(next(&mut alice_events).await.0, "message");
    }

    // In Redis: one list per room, bounded, expiring.
    let redis_cli = |command: &[&str]| -> i64 {
        let output = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(redis.socket())
            .args(command)
            .output()
            .expect("redis-cli (redis-tools, with redis-server)");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("an integer reply")
    };
    let key = "socket.io#history#/chat#chat:general";
    assert_eq!(redis_cli(&["LLEN", key]), 2, "{adapter}");
    let ttl = redis_cli(&["TTL", key]);
    assert!((1..=604_800).contains(&ttl), "{adapter}: TTL {ttl}");

    // Bob, on the other server, gets what was said and sees alice.
    let (_b, bob, mut bob_events) = chat(&second.url, "bob").await;
    let joined = ack(&bob, "join", json!("general")).await;
    assert_eq!(joined["users"], json!(["alice", "bob"]), "{adapter}");
    let texts: Vec<&Value> = joined["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|message| &message["text"])
        .collect();
    assert_eq!(texts, [&json!("one"), &json!("two")], "{adapter}");
    assert_eq!(
        next(&mut alice_events).await,
        (
            "presence".to_owned(),
            json!({ "room": "general", "user": "bob", "online": true })
        ),
        "{adapter}"
    );
    assert_eq!(next(&mut bob_events).await.0, "presence");

    // The API of either server answers for both.
    let (status, body) = tokio::task::spawn_blocking({
        let url = first.url.clone();
        move || {
            common::call(
                &url,
                "POST",
                "/api/v1/presence",
                Some(KEY),
                Some(r#"{"namespace":"/chat","room":"chat:general"}"#),
            )
        }
    })
    .await
    .expect("call");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "users": [{ "user": "alice", "sockets": 1 }, { "user": "bob", "sockets": 1 }] }),
        "{adapter}"
    );

    bob.disconnect();
    assert_eq!(
        next(&mut alice_events).await,
        (
            "presence".to_owned(),
            json!({ "room": "general", "user": "bob", "online": false })
        ),
        "{adapter}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_adapter() {
    two_servers_share_presence_and_history("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_adapter() {
    two_servers_share_presence_and_history("redis-streams").await;
}
