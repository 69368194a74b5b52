//! Shared documents (`/docs`) across two servers on one real Redis (`redis-server`, started by
//! the test), each server with its own data directory: a document loaded on the second server
//! after edits on the first syncs at load, concurrent edits on both converge, and late joiners
//! on either server get the whole document, also after the first server unloaded it and loads
//! it again. Each adapter flavour of a single Redis.
//!
//! Behind the `redis-server-tests` feature, since plain `cargo test` installs nothing.
#![cfg(feature = "redis-server-tests")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_client::{Args, Binary, Manager, ManagerConfig, Socket, SocketOptions, Transports};
use switchyard_testkit::{RedisServer, DEADLINE};
use tokio::sync::mpsc;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// How long a condition across the cluster may take to hold: generous, the machine may be busy.
const CONVERGE: Duration = Duration::from_secs(30);

/// A client of `/docs` with a `yrs` document of its own, fed by the updates relayed to it.
struct Client {
    _manager: Manager,
    socket: Socket,
    doc: Doc,
    relayed: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Client {
    async fn connect(url: &str, name: &str) -> Client {
        let config = ManagerConfig {
            reconnection: false,
            transports: Transports::WebSocket,
            ..ManagerConfig::default()
        };
        let manager = Manager::new(url, config).expect("manager");
        let socket = manager.socket_with(
            "/docs",
            SocketOptions::default().auth(json!({ "name": name })),
        );
        let (tx, relayed) = mpsc::unbounded_channel();
        let tx = Arc::new(tx);
        socket.on("doc:update", move |event| {
            let tx = tx.clone();
            async move {
                let args = event.args();
                if let Some(bytes) = args.values.get(1).and_then(|value| args.binary(value)) {
                    let _ = tx.send(bytes.to_vec());
                }
            }
        });
        tokio::time::timeout(DEADLINE, socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        Client {
            _manager: manager,
            socket,
            doc: Doc::new(),
            relayed,
        }
    }

    /// The ack of `event`, failing the test on an `{ error }`.
    async fn emit(&self, event: &str, data: Args) -> Args {
        let answer = self
            .socket
            .emit_with_ack(event, data, DEADLINE)
            .await
            .expect("an ack in time");
        let value: Value = answer.get(0).expect("a JSON ack");
        assert!(value.get("error").is_none(), "{event} refused: {value}");
        answer
    }

    /// Joins `id` with the document's state vector and applies the server's answer.
    async fn join(&self, id: &str) {
        let vector = self.doc.transact().state_vector().encode_v1();
        let answer = self.emit("doc:join", args(id, vector)).await;
        let value: Value = answer.get(0).expect("an object");
        let update = answer.binary(&value["update"]).expect("binary");
        self.apply(update);
    }

    async fn leave(&self, id: &str) {
        self.emit("doc:leave", Args::one(&id).expect("args")).await;
    }

    /// Inserts `text` at the start of the document's text and sends the update.
    async fn insert(&self, id: &str, text: &str) {
        let update = {
            let shared = self.doc.get_or_insert_text("text");
            let mut txn = self.doc.transact_mut();
            shared.insert(&mut txn, 0, text);
            txn.encode_update_v1()
        };
        self.emit("doc:update", args(id, update)).await;
    }

    fn apply(&self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("applies");
    }

    fn text(&self) -> String {
        self.doc
            .get_or_insert_text("text")
            .get_string(&self.doc.transact())
    }

    /// Applies the updates relayed to the client until `done` holds of its text; fails the
    /// test past [`CONVERGE`].
    async fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            while let Ok(update) = self.relayed.try_recv() {
                self.apply(&update);
            }
            let text = self.text();
            if done(&text) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the text is {text:?} after {CONVERGE:?}"
            );
            if let Ok(Some(update)) =
                tokio::time::timeout(Duration::from_millis(200), self.relayed.recv()).await
            {
                self.apply(&update);
            }
        }
    }
}

fn args(id: &str, bytes: Vec<u8>) -> Args {
    Args::one(&id)
        .and_then(|args| args.push(&Binary::from(bytes)))
        .expect("args")
}

async fn documents_converge_across_two_servers(adapter: &str) {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let dir_a = directory.path().join("a");
    let dir_b = directory.path().join("b");
    let env = [("REDIS_URL", url.as_str())];
    let server = |dir: &std::path::Path| {
        let dir = dir.to_str().expect("a path");
        common::start(
            &[
                "--port",
                "0",
                "--adapter",
                adapter,
                "--docs",
                "true",
                "--data-dir",
                dir,
            ],
            &env,
        )
    };
    let (first, second) = (server(&dir_a), server(&dir_b));

    // Edits on the first server, before the second ever loaded the document.
    let mut alice = Client::connect(&first.url, "alice").await;
    alice.join("notes").await;
    alice.insert("notes", "one ").await;
    alice.insert("notes", "two ").await;

    // The second server loads it at bob's join, syncing from the first.
    let mut bob = Client::connect(&second.url, "bob").await;
    bob.join("notes").await;
    assert_eq!(bob.text(), "two one ", "{adapter}: synced at load");

    // Concurrent edits on both servers converge.
    alice.insert("notes", "[alice] ").await;
    bob.insert("notes", "[bob] ").await;
    let both = |text: &str| text.contains("[alice] ") && text.contains("[bob] ");
    alice.until("alice gets bob's edit", both).await;
    bob.until("bob gets alice's edit", both).await;
    assert_eq!(alice.text(), bob.text(), "{adapter}");
    assert!(alice.text().ends_with("two one "), "{adapter}");

    // Late joiners on either server get the whole document.
    let carol = Client::connect(&second.url, "carol").await;
    carol.join("notes").await;
    assert_eq!(carol.text(), alice.text(), "{adapter}: a late joiner on B");
    let dave = Client::connect(&first.url, "dave").await;
    dave.join("notes").await;
    assert_eq!(dave.text(), alice.text(), "{adapter}: a late joiner on A");

    // Every socket of the first server leaves: it unloads the document. Edits made on the
    // second meanwhile reach the first when it loads the document again.
    alice.leave("notes").await;
    dave.leave("notes").await;
    bob.insert("notes", "[while A had it closed] ").await;
    let expected = {
        let mut carol = carol;
        carol
            .until("carol gets bob's edit", |text| {
                text.starts_with("[while A had it closed] ")
            })
            .await;
        carol.text()
    };
    let erin = Client::connect(&first.url, "erin").await;
    erin.join("notes").await;
    assert_eq!(erin.text(), expected, "{adapter}: reloaded on A, synced");

    // An edit on the reloaded first server reaches bob.
    erin.insert("notes", "[erin] ").await;
    bob.until("bob gets erin's edit", |text| text.starts_with("[erin] "))
        .await;

    // Each server stored the document in its own directory.
    for dir in [&dir_a, &dir_b] {
        assert!(dir.join("docs.sqlite3").exists(), "{}", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_adapter() {
    documents_converge_across_two_servers("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_adapter() {
    documents_converge_across_two_servers("redis-streams").await;
}
