//! The binary's shared documents (`/docs`): acknowledged edits survive a crash of the server
//! (SIGKILL) on the same data directory, the limits come from the flags, the namespace is on
//! by default for identified clients (`auth.name` in dev mode) and off with `--docs=false`. Real clients (`switchyard-client`) with `yrs` documents of their own.

mod common;

use serde_json::{json, Value};
use switchyard_client::{Args, Binary, Manager, ManagerConfig, Socket, SocketOptions, Transports};
use switchyard_testkit::DEADLINE;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// A client of `/docs`, named (dev mode: `auth.name`, as on `/chat`).
async fn connect(url: &str) -> (Manager, Socket) {
    let config = ManagerConfig {
        reconnection: false,
        transports: Transports::WebSocket,
        ..ManagerConfig::default()
    };
    let manager = Manager::new(url, config).expect("manager");
    let socket = manager.socket_with(
        "/docs",
        SocketOptions::default().auth(json!({ "name": "alice" })),
    );
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("connect in time")
        .expect("connected");
    (manager, socket)
}

fn args(id: &str, bytes: Vec<u8>) -> Args {
    Args::one(&id)
        .and_then(|args| args.push(&Binary::from(bytes)))
        .expect("args")
}

/// The ack's `error`, if any.
async fn emit(socket: &Socket, event: &str, data: Args) -> (Args, Option<String>) {
    let answer = socket
        .emit_with_ack(event, data, DEADLINE)
        .await
        .expect("an ack in time");
    let error = answer
        .get::<Value>(0)
        .ok()
        .and_then(|value| value["error"].as_str().map(str::to_owned));
    (answer, error)
}

/// Joins `id` with `doc`'s state vector and applies the server's answer.
async fn join(socket: &Socket, doc: &Doc, id: &str) -> Option<String> {
    let vector = yrs::updates::encoder::Encode::encode_v1(&doc.transact().state_vector());
    let (answer, error) = emit(socket, "doc:join", args(id, vector)).await;
    if error.is_some() {
        return error;
    }
    let value: Value = answer.get(0).expect("an object");
    let update = answer.binary(&value["update"]).expect("binary");
    let update = Update::decode_v1(update).expect("decodes");
    doc.transact_mut().apply_update(update).expect("applies");
    let server = answer.binary(&value["stateVector"]).expect("binary");
    StateVector::decode_v1(server).expect("decodes");
    None
}

/// Inserts `text` at the start of `doc`'s text: the update.
fn insert(doc: &Doc, text: &str) -> Vec<u8> {
    let shared = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    shared.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

fn text(doc: &Doc) -> String {
    doc.get_or_insert_text("text").get_string(&doc.transact())
}

/// Runs the binary with `args` (and no variables) until it exits, its stderr written to
/// `stderr_file`: its status and stderr. Killed, and the test failed, if it has not exited
/// within 60 s.
async fn run_to_exit(
    args: &[&str],
    stderr_file: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let stderr = std::fs::File::create(stderr_file).expect("a file for stderr");
    let mut child = std::process::Command::new(common::BINARY)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the binary");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the binary's status") {
            break status;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
            panic!("the binary did not exit within 60 s (killed); stderr: {stderr}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(stderr_file).expect("its stderr");
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_a_crash_on_the_same_data_dir() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let data_dir = directory.path().join("data");
    let data_dir = data_dir.to_str().expect("a path");
    let args_of = ["--port", "0", "--docs", "true", "--data-dir", data_dir];
    let written = {
        let server = common::start(&args_of, &[]);
        let (_manager, socket) = connect(&server.url).await;
        let doc = Doc::new();
        assert_eq!(join(&socket, &doc, "notes").await, None);
        for line in ["one\n", "two\n", "three\n"] {
            let (_, error) = emit(&socket, "doc:update", args("notes", insert(&doc, line))).await;
            assert_eq!(error, None);
        }
        text(&doc)
        // The server is killed here (SIGKILL), the document still open.
    };
    assert!(std::path::Path::new(data_dir).join("docs.sqlite3").exists());
    let server = common::start(&args_of, &[]);
    let (_manager, socket) = connect(&server.url).await;
    let doc = Doc::new();
    assert_eq!(join(&socket, &doc, "notes").await, None);
    assert_eq!(text(&doc), written);
    assert_eq!(written, "three\ntwo\none\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let data_dir = directory.path().to_str().expect("a path");
    let args_of = ["--port", "0", "--docs", "true", "--data-dir", data_dir];
    let first = common::start(&args_of, &[]);
    let (_manager, socket) = connect(&first.url).await;
    assert_eq!(join(&socket, &Doc::new(), "notes").await, None);
    let (status, stderr) = run_to_exit(&args_of, &directory.path().join("second.stderr")).await;
    assert!(!status.success(), "the second server started");
    assert!(
        stderr.contains("is in use by another server (one server per data directory)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_come_from_the_flags() {
    let server = common::start(
        &[
            "--port",
            "0",
            "--docs",
            "true",
            "--docs-in-memory",
            "--docs-max-update-bytes",
            "300",
            "--docs-max-document-bytes",
            "700",
            "--docs-max-per-socket",
            "1",
            "--docs-max-awareness-bytes",
            "60",
            "--docs-max-open",
            "1",
        ],
        &[],
    );
    let (_manager, socket) = connect(&server.url).await;
    let doc = Doc::new();
    assert_eq!(join(&socket, &doc, "a").await, None);
    assert_eq!(
        join(&socket, &doc, "b").await.as_deref(),
        Some("too many open documents (at most 1)")
    );
    let (_other_manager, other) = connect(&server.url).await;
    assert_eq!(
        join(&other, &Doc::new(), "c").await.as_deref(),
        Some("the server has too many documents open (at most 1); try again later")
    );
    let (_, error) = emit(
        &socket,
        "doc:update",
        args("a", insert(&Doc::new(), &"x".repeat(400))),
    )
    .await;
    let error = error.expect("refused");
    assert!(
        error.starts_with("update too large") && error.ends_with("(at most 300)"),
        "{error}"
    );
    let (_, error) = emit(&socket, "doc:awareness", args("a", vec![1; 100])).await;
    assert_eq!(
        error.as_deref(),
        Some("awareness update too large: 100 bytes (at most 60)")
    );
    let mut refused = None;
    for _ in 0..5 {
        let (_, error) = emit(
            &socket,
            "doc:update",
            args("a", insert(&doc, &"y".repeat(250))),
        )
        .await;
        if error.is_some() {
            refused = error;
            break;
        }
    }
    let refused = refused.expect("the document limit is reached");
    assert!(
        refused.starts_with("document too large") && refused.ends_with("(at most 700)"),
        "{refused}"
    );
}

/// Connects to `/docs` with `auth`: whether the server admits the client.
async fn admitted(url: &str, auth: Option<Value>) -> bool {
    let config = ManagerConfig {
        reconnection: false,
        ..ManagerConfig::default()
    };
    let manager = Manager::new(url, config).expect("manager");
    let options = match auth {
        Some(auth) => SocketOptions::default().auth(auth),
        None => SocketOptions::default(),
    };
    let socket = manager.socket_with("/docs", options);
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("an answer in time")
        .is_ok()
}

/// On by default (the demo's `cargo run --release`), for identified clients only (the same
/// middleware as `/chat`: `auth.name` in dev mode); off with `--docs=false` or `--docs false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_on_by_default_for_named_clients_and_off_with_docs_false() {
    let server = common::start(&["--port", "0"], &[]);
    assert!(admitted(&server.url, Some(json!({ "name": "alice" }))).await);
    assert!(
        !admitted(&server.url, None).await,
        "an anonymous client is refused"
    );
    assert!(!admitted(&server.url, Some(json!({ "name": "  " }))).await);
    let (_manager, socket) = connect(&server.url).await;
    let doc = Doc::new();
    assert_eq!(join(&socket, &doc, "notes").await, None);
    drop(server);
    for args in [
        &["--port", "0", "--docs=false"][..],
        &["--port", "0", "--docs", "false"],
    ] {
        let server = common::start(args, &[]);
        assert!(
            !admitted(&server.url, Some(json!({ "name": "alice" }))).await,
            "/docs is served with {args:?}"
        );
    }
}
