//! The backend API of the binary, over real HTTP, with real clients connected: every example
//! of the OpenAPI document is a call the server takes, publishes reach users, and bad calls
//! get a status with a JSON error.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_client::Manager;
use switchyard_testkit::DEADLINE;
use tokio::sync::mpsc;

const KEY: &str = "backend-key-0123456789";

fn server() -> common::Server {
    common::start(&["--port", "0"], &[("API_KEYS", KEY)])
}

/// Runs the blocking HTTP call on a thread, so the clients' runtime keeps going.
async fn call(
    url: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (url, method, path, key) = (
        url.to_owned(),
        method.to_owned(),
        path.to_owned(),
        key.map(str::to_owned),
    );
    let body = body.map(|body| body.to_string());
    tokio::task::spawn_blocking(move || {
        common::call(&url, &method, &path, key.as_deref(), body.as_deref())
    })
    .await
    .expect("call")
}

/// A client of `/notifications` as `user` (dev mode), with the events it gets.
async fn user(url: &str, user: &str) -> (Manager, mpsc::UnboundedReceiver<(String, Value)>) {
    let (manager, _socket, events) =
        common::client(url, "/notifications", json!({ "user": user })).await;
    (manager, events)
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<(String, Value)>, name: &str) -> Value {
    loop {
        let (event, value) = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("an event in time")
            .expect("the client is open");
        if event == name {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_openapi_example_is_taken() {
    let server = server();
    let (status, document) = call(&server.url, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    let mut examples = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            let example = operation
                .pointer("/requestBody/content/application~1json/example")
                .cloned();
            let (status, body) = call(
                &server.url,
                &method.to_uppercase(),
                path,
                Some(KEY),
                example.clone(),
            )
            .await;
            assert_eq!(status, 200, "{method} {path} with {example:?}: {body}");
            examples += usize::from(example.is_some());
        }
    }
    assert_eq!(examples, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_users_and_rooms_and_the_api_moves_sockets() {
    let server = server();
    let (_alice, mut alice) = user(&server.url, "alice").await;
    let (_bob, mut bob) = user(&server.url, "bob").await;

    // To one user, with a binary argument after the data.
    let publish = json!({
        "namespace": "/notifications",
        "users": ["alice"],
        "event": "notification",
        "data": { "text": "shipped" },
        "binary": "AQID",
    });
    assert_eq!(
        call(
            &server.url,
            "POST",
            "/api/v1/publish",
            Some(KEY),
            Some(publish)
        )
        .await,
        (200, json!({ "ok": true }))
    );
    let got = next_event(&mut alice, "notification").await;
    assert_eq!(got["text"], "shipped");

    // Who is there, and a room made by the API.
    let (status, listed) = call(
        &server.url,
        "POST",
        "/api/v1/sockets",
        Some(KEY),
        Some(json!({ "namespace": "/notifications" })),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let mut users: Vec<&str> = listed["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .filter_map(|socket| socket["user"].as_str())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["alice", "bob"]);
    let join = json!({ "namespace": "/notifications", "users": ["bob"], "to": ["vip"] });
    assert_eq!(
        call(&server.url, "POST", "/api/v1/join", Some(KEY), Some(join))
            .await
            .0,
        200
    );
    let to_room = json!({
        "namespace": "/notifications", "rooms": ["vip"], "event": "offer", "data": 1,
    });
    assert_eq!(
        call(
            &server.url,
            "POST",
            "/api/v1/publish",
            Some(KEY),
            Some(to_room)
        )
        .await
        .0,
        200
    );
    assert_eq!(next_event(&mut bob, "offer").await, json!(1));

    // Everyone but a room, spread arguments.
    let to_all = json!({
        "namespace": "/notifications", "except": ["vip"], "event": "news", "data": [1, 2],
        "spread": true,
    });
    assert_eq!(
        call(
            &server.url,
            "POST",
            "/api/v1/publish",
            Some(KEY),
            Some(to_all)
        )
        .await
        .0,
        200
    );
    assert_eq!(next_event(&mut alice, "news").await, json!(1));

    // Disconnect a user.
    let disconnect = json!({ "namespace": "/notifications", "users": ["bob"] });
    assert_eq!(
        call(
            &server.url,
            "POST",
            "/api/v1/disconnect",
            Some(KEY),
            Some(disconnect)
        )
        .await
        .0,
        200
    );
    let url = server.url.clone();
    let only_alice = move || {
        let (_, listed) = common::call(
            &url,
            "POST",
            "/api/v1/sockets",
            Some(KEY),
            Some(r#"{"namespace":"/notifications"}"#),
        );
        listed["sockets"].as_array().map(Vec::len) == Some(1)
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !tokio::task::spawn_blocking(only_alice.clone())
        .await
        .expect("check")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob was not disconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_get_a_status_and_a_json_error() {
    let server = server();
    let url = &server.url;
    let body = || Some(json!({ "namespace": "/chat", "event": "x" }));
    let cases: Vec<(u16, (u16, Value))> = vec![
        (
            401,
            call(url, "POST", "/api/v1/publish", None, body()).await,
        ),
        (
            401,
            call(
                url,
                "POST",
                "/api/v1/publish",
                Some("not-the-key-0123456789"),
                body(),
            )
            .await,
        ),
        (
            404,
            call(url, "POST", "/api/v1/nowhere", Some(KEY), body()).await,
        ),
        (
            405,
            call(url, "GET", "/api/v1/publish", Some(KEY), None).await,
        ),
        (
            404,
            call(
                url,
                "POST",
                "/api/v1/publish",
                Some(KEY),
                Some(json!({ "namespace": "/nope", "event": "x" })),
            )
            .await,
        ),
        (
            422,
            call(
                url,
                "POST",
                "/api/v1/publish",
                Some(KEY),
                Some(json!({ "namespace": "/chat", "event": "x", "colour": 1 })),
            )
            .await,
        ),
        (
            422,
            call(
                url,
                "POST",
                "/api/v1/publish",
                Some(KEY),
                Some(json!({ "namespace": "/chat", "event": "x", "binary": "%%" })),
            )
            .await,
        ),
        (
            422,
            call(
                url,
                "POST",
                "/api/v1/publish",
                Some(KEY),
                Some(json!({ "namespace": "/chat", "event": "disconnect" })),
            )
            .await,
        ),
        (
            422,
            call(
                url,
                "POST",
                "/api/v1/disconnect",
                Some(KEY),
                Some(json!({ "namespace": "/chat" })),
            )
            .await,
        ),
    ];
    for (expected, (status, body)) in cases {
        assert_eq!(status, expected, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    // Not JSON, and over the size bound.
    let (status, body) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || common::call(&url, "POST", "/api/v1/publish", Some(KEY), Some("{nope"))
    })
    .await
    .expect("call");
    assert_eq!(status, 400, "{body}");
    let big = format!(
        r#"{{"namespace":"/chat","event":"x","data":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let (status, body) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || common::call(&url, "POST", "/api/v1/publish", Some(KEY), Some(&big))
    })
    .await
    .expect("call");
    assert_eq!(status, 413, "{body}");
}

#[test]
fn the_api_is_off_without_keys() {
    let server = common::start(&["--port", "0"], &[]);
    let (status, body) = common::call(&server.url, "POST", "/api/v1/publish", None, Some("{}"));
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("api-keys")),
        "{body}"
    );
}
