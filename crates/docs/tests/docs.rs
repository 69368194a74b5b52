//! The document service in a real server (in process, on a TCP port), with real Socket.IO
//! clients (`switchyard-client`) holding `yrs` documents: sync, convergence, relays, limits
//! and refusals.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::{SocketIo, SocketIoConfig};
use switchyard_client::{Args, Binary, Manager, ManagerConfig, Socket, Transports};
use switchyard_docs::{DocLimits, DocService, DocsConfig, Storage, StoreError, MAX_DOCUMENT_BYTES};
use switchyard_testkit::{wait_until, DEADLINE};
use tokio::sync::mpsc;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Map, MapPrelim, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// A server with the document service on `/docs`.
struct Server {
    url: String,
    docs: DocService,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(config: DocsConfig) -> Server {
    let io = SocketIo::new(SocketIoConfig::default());
    let docs = DocService::attach(&io.of("/docs"), config)
        .await
        .expect("the service starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(io.serve(listener));
    Server { url, docs, task }
}

fn limits(change: impl FnOnce(&mut DocLimits)) -> DocsConfig {
    let mut config = DocsConfig::default();
    change(&mut config.limits);
    config
}

/// A client: its socket on `/docs`, its copy of one document, and every event it got.
struct Peer {
    _manager: Manager,
    socket: Socket,
    doc: Doc,
    text: TextRef,
    events: mpsc::UnboundedReceiver<(String, Args)>,
}

async fn peer(url: &str) -> Peer {
    let config = ManagerConfig {
        reconnection: false,
        // Volatile relays (awareness) skip a client with bytes waiting: WebSocket from the
        // start keeps a polling gap from dropping them.
        transports: Transports::WebSocket,
        ..ManagerConfig::default()
    };
    let manager = Manager::new(url, config).expect("manager");
    let socket = manager.socket("/docs");
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let (tx, events) = mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let copy = doc.clone();
    socket.on_any(move |event| {
        let tx = tx.clone();
        let doc = copy.clone();
        async move {
            let args = event.args().clone();
            if event.name() == "doc:update" {
                let bytes = args.values.get(1).and_then(|value| args.binary(value));
                let update = Update::decode_v1(bytes.expect("binary update")).expect("decodes");
                doc.transact_mut().apply_update(update).expect("applies");
            }
            let _ = tx.send((event.name().to_owned(), args));
        }
    });
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("connect in time")
        .expect("connected");
    Peer {
        _manager: manager,
        socket,
        doc,
        text,
        events,
    }
}

fn args(id: &str, bytes: Option<Vec<u8>>) -> Args {
    let args = Args::one(&id).expect("args");
    match bytes {
        Some(bytes) => args.push(&Binary::from(bytes)).expect("args"),
        None => args,
    }
}

async fn ack(socket: &Socket, event: &str, data: Args) -> Args {
    socket
        .emit_with_ack(event, data, DEADLINE)
        .await
        .expect("an ack in time")
}

fn error_of(ack: &Args) -> Option<String> {
    ack.get::<Value>(0)
        .ok()
        .and_then(|value| value["error"].as_str().map(str::to_owned))
}

impl Peer {
    fn string(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// `doc:join` with this copy's state vector: applies the server's answer and sends back
    /// what the server lacks.
    async fn join(&self, id: &str) {
        let vector = self.doc.transact().state_vector().encode_v1();
        let answer = ack(&self.socket, "doc:join", args(id, Some(vector))).await;
        assert_eq!(error_of(&answer), None, "join {id}: {answer:?}");
        let value: Value = answer.get(0).expect("an object");
        let update = answer.binary(&value["update"]).expect("a binary update");
        let server_vector = answer
            .binary(&value["stateVector"])
            .expect("a binary state vector");
        let update = Update::decode_v1(update).expect("decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("applies");
        let server_vector = StateVector::decode_v1(server_vector).expect("decodes");
        let missing = self
            .doc
            .transact()
            .encode_state_as_update_v1(&server_vector);
        if missing.len() > 2 {
            let answer = ack(&self.socket, "doc:update", args(id, Some(missing))).await;
            assert_eq!(error_of(&answer), None);
        }
    }

    /// Inserts `text` at `index` locally: the update to send.
    fn insert(&self, index: u32, text: &str) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        self.text.insert(&mut txn, index, text);
        txn.encode_update_v1()
    }

    /// Inserts and sends; the ack.
    async fn edit(&self, id: &str, index: u32, text: &str) -> Args {
        let update = self.insert(index, text);
        ack(&self.socket, "doc:update", args(id, Some(update))).await
    }

    async fn next(&mut self) -> (String, Args) {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the client is open")
    }
}

fn ok(answer: &Args) {
    assert_eq!(
        answer.get::<Value>(0).expect("json"),
        json!({ "ok": true }),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_converge_and_a_late_joiner_gets_the_text() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let bob = peer(&server.url).await;
    alice.join("notes").await;
    bob.join("notes").await;

    // Both edit at once, each many times, without waiting for the other.
    let alice_edits = async {
        for i in 0..20 {
            ok(&alice.edit("notes", 0, &format!("a{i};")).await);
        }
    };
    let bob_edits = async {
        for i in 0..20 {
            let end = bob.text.len(&bob.doc.transact());
            ok(&bob.edit("notes", end, &format!("b{i};")).await);
        }
    };
    tokio::join!(alice_edits, bob_edits);
    // Forty relays to deliver on a machine that may be very busy (CI runs this beside a busy
    // core and the other tests of the file): a generous deadline, and both copies shown if
    // they still differ (this timed out once in a loaded CI run with the 10 s default).
    let converged = |a: &str, b: &str| {
        a == b && (0..20).all(|i| a.contains(&format!("a{i};")) && a.contains(&format!("b{i};")))
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (a, b) = (alice.string(), bob.string());
        if converged(&a, &b) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copies did not converge:\n alice {a:?}\n bob   {b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let carol = peer(&server.url).await;
    carol.join("notes").await;
    assert_eq!(carol.string(), alice.string());
    assert_eq!(carol.string().len(), alice.string().len());
    assert!(!carol.string().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_with_offline_edits_sends_them_and_documents_unload_when_closed() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    alice.join("d1").await;
    ok(&alice.edit("d1", 0, "server side ").await);
    // Bob edited offline: the join syncs both ways.
    let mut bob = peer(&server.url).await;
    bob.insert(0, "offline ");
    bob.join("d1").await;
    wait_until("alice gets bob's offline edit", || {
        alice.string().contains("offline")
    })
    .await;
    assert!(bob.string().contains("server side"));
    assert_eq!(server.docs.open_documents(), 1);

    // Both close it: it is unloaded, and comes back from the store.
    ok(&ack(&alice.socket, "doc:leave", args("d1", None)).await);
    ok(&ack(&bob.socket, "doc:leave", args("d1", None)).await);
    wait_until("the document is unloaded", || {
        server.docs.open_documents() == 0
    })
    .await;
    let carol = peer(&server.url).await;
    carol.join("d1").await;
    assert_eq!(carol.string(), alice.string());
    // Bob left: he no longer gets its updates, nor may he send any.
    ok(&carol.edit("d1", 0, "x").await);
    let refused = bob.edit("d1", 0, "y").await;
    assert_eq!(
        error_of(&refused).as_deref(),
        Some("not joined to document d1")
    );
    assert!(
        bob.events.try_recv().is_err(),
        "bob got an event after leaving"
    );

    // A disconnect closes it too.
    carol.socket.disconnect();
    wait_until("unloaded after the disconnect", || {
        server.docs.open_documents() == 0
    })
    .await;
}

/// An insertion of `text` into a document of its own.
fn foreign_update(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let shared = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    shared.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

/// Sends a refused event from `alice`, then a marker update: `bob` must get the marker as his
/// next event (the refused one reached no one) and his text must not change.
async fn refused_then_marker(alice: &Peer, bob: &mut Peer, event: &str, data: Args) -> String {
    let before = bob.string();
    let answer = ack(&alice.socket, event, data).await;
    let error = error_of(&answer).unwrap_or_else(|| panic!("an error ack: {answer:?}"));
    let marker = alice.insert(0, "#");
    ok(&ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(marker.clone())),
    )
    .await);
    let (name, got) = bob.next().await;
    assert_eq!(name, "doc:update");
    let bytes = got.binary(&got.values[1]).expect("binary");
    assert_eq!(
        bytes.as_ref(),
        marker.as_slice(),
        "bob got something else first"
    );
    assert_eq!(bob.string(), format!("#{before}"));
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_ack_and_reaches_no_one() {
    let server = server(limits(|limits| {
        limits.max_update_bytes = 1000;
        limits.max_document_bytes = 3000;
    }))
    .await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    ok(&alice.edit("doc", 0, "start").await);
    assert_eq!(bob.next().await.0, "doc:update");

    // Oversized: refused before it is looked at. (Made on a copy of its own, so that
    // alice's markers do not depend on it.)
    let big = foreign_update(&"x".repeat(1200));
    let error = refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(big))).await;
    assert!(
        error.starts_with("update too large: ") && error.ends_with(" bytes (at most 1000)"),
        "{error}"
    );

    // A state vector over the size limit says so (it is not malformed).
    let answer = ack(&alice.socket, "doc:join", args("doc", Some(vec![0; 1200]))).await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("state vector too large: 1200 bytes (at most 1000)")
    );

    // Random bytes that do not decode.
    let mut seed = 1u64;
    let garbage = loop {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        if Update::decode_v1(&bytes).is_err() {
            break bytes;
        }
    };
    let error =
        refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(garbage))).await;
    assert_eq!(error, "malformed update");

    // Not binary.
    let data = Args::one(&"doc")
        .expect("args")
        .push(&"text")
        .expect("args");
    let error = refused_then_marker(&alice, &mut bob, "doc:update", data).await;
    assert_eq!(error, "the update must be binary");

    // A document the sender has not joined (bob is in `other`, alice is not).
    bob.join("other").await;
    let update = foreign_update("intruder");
    let error =
        refused_then_marker(&alice, &mut bob, "doc:update", args("other", Some(update))).await;
    assert_eq!(error, "not joined to document other");

    // Bad ids.
    for id in [json!(""), json!("a/b"), json!("x".repeat(65)), json!(5)] {
        let data = Args::one(&id)
            .expect("args")
            .push(&Binary::from(vec![0u8, 0]))
            .expect("args");
        let error = refused_then_marker(&alice, &mut bob, "doc:update", data.clone()).await;
        assert!(error.starts_with("invalid document id"), "{error}");
        let answer = ack(&alice.socket, "doc:join", data).await;
        assert!(error_of(&answer).is_some_and(|e| e.starts_with("invalid document id")));
    }

    // Too large a document: 1,000-byte updates fit, the document does not.
    let mut refused = None;
    for _ in 0..6 {
        let update = alice.insert(0, &"y".repeat(700));
        let answer = ack(&alice.socket, "doc:update", args("doc", Some(update))).await;
        if let Some(error) = error_of(&answer) {
            refused = Some(error);
            break;
        }
        assert_eq!(bob.next().await.0, "doc:update");
    }
    let refused = refused.expect("the document limit is reached");
    assert!(refused.starts_with("document too large"), "{refused}");
    // The refused update was not applied: a late joiner has bob's text (alice's copy has the
    // refused insertion locally, bob's does not).
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), bob.string());
    assert!(carol.string().len() < alice.string().len());
}

/// An update whose one item, an `Any` in the root array `t`, nests `depth` arrays (`117, 1`)
/// or maps (`118, 1, "k"`), ending in a null.
fn nested_update(depth: usize, map: bool) -> Vec<u8> {
    let mut bytes = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
    for _ in 0..depth {
        if map {
            bytes.extend_from_slice(&[118, 1, 1, b'k']);
        } else {
            bytes.extend_from_slice(&[117, 1]);
        }
    }
    bytes.extend_from_slice(&[126, 0]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_or_overclaiming_updates_are_refused_and_the_server_lives() {
    let server = server(limits(|limits| limits.max_update_bytes = 512 * 1024)).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    ok(&alice.edit("doc", 0, "start").await);
    assert_eq!(bob.next().await.0, "doc:update");

    // 100,000 levels: yrs's recursive decoder would overflow the stack (and abort).
    for map in [false, true] {
        let update = nested_update(100_000, map);
        let error =
            refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(update))).await;
        assert_eq!(error, "malformed update", "map: {map}");
    }
    // A map claiming 2^27 entries in a few bytes.
    let mut huge = vec![1, 1, 1, 0, 8, 1, 1, b't', 1, 118, 0x80, 0x80, 0x80, 0x40];
    huge.extend_from_slice(&[1, b'k', 126, 0]);
    let error = refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(huge))).await;
    assert_eq!(error, "malformed update");
    // A state vector claiming 2^28 clients.
    let answer = ack(
        &alice.socket,
        "doc:join",
        args("doc", Some(vec![0x80, 0x80, 0x80, 0x80, 0x01])),
    )
    .await;
    assert_eq!(error_of(&answer).as_deref(), Some("malformed state vector"));

    // Shallow nesting is fine, and the server still serves everyone.
    ok(&ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(nested_update(8, true))),
    )
    .await);
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), bob.string());
}

/// A varint (lib0's `writeVarUint`).
fn var(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// An update with one string block (`text`, in the root text `text`) of client `client` at
/// `clock`, depending on nothing.
fn block_at(client: u64, clock: u64, text: &str) -> Vec<u8> {
    let mut bytes = vec![1, 1];
    var(&mut bytes, client);
    var(&mut bytes, clock);
    bytes.extend_from_slice(&[4, 1, 4]);
    bytes.extend_from_slice(b"text");
    var(&mut bytes, text.len() as u64);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_past_i32_max_are_refused_and_the_server_lives() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    ok(&alice.edit("doc", 0, "start").await);
    assert_eq!(bob.next().await.0, "doc:update");
    let max = i32::MAX as u64;
    // yrs computes `local_clock as i32 - clock as i32`: past i32::MAX a block is linked
    // where it does not belong and yrs panics half way.
    for (client, clock, text) in [
        (77, max + 5, "a"),
        (78, 1 << 31, "a"),
        (79, u64::from(u32::MAX), "a"),
        (80, max - 1, "ab"),
    ] {
        let update = block_at(client, clock, text);
        let error =
            refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(update))).await;
        assert_eq!(error, "malformed update", "clock {clock}, {text}");
    }
    // A deleted range past it.
    let mut deletion = vec![0, 1, 1, 1];
    var(&mut deletion, 1 << 31);
    var(&mut deletion, 1);
    let error =
        refused_then_marker(&alice, &mut bob, "doc:update", args("doc", Some(deletion))).await;
    assert_eq!(error, "malformed update");
    // A state vector's clock past it.
    let mut vector = vec![1, 1];
    var(&mut vector, max + 1);
    let answer = ack(&alice.socket, "doc:join", args("doc", Some(vector))).await;
    assert_eq!(error_of(&answer).as_deref(), Some("malformed state vector"));
    // Up to i32::MAX passes the scan (a block out of order that depends on nothing: refused
    // as it starts past its client's clock, see `an_update_past_its_clients_clock_...`), and
    // the server still serves everyone.
    let answer = ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(block_at(81, max - 1, "z"))),
    )
    .await;
    assert_eq!(error_of(&answer).as_deref(), Some(MISSING));
    ok(&ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(block_at(81, 0, "z"))),
    )
    .await);
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert!(carol.string().contains('z') && carol.string().contains("start"));
    let dave = peer(&server.url).await;
    dave.join("other").await;
    ok(&dave.edit("other", 0, "alive").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_nothing_is_acked_but_not_relayed_again() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    let update = alice.insert(0, "once");
    for _ in 0..3 {
        ok(&ack(
            &alice.socket,
            "doc:update",
            args("doc", Some(update.clone())),
        )
        .await);
    }
    // Bob's own state as an update changes nothing on the server either.
    let own = bob
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let marker = alice.insert(0, "#");
    for data in [own, marker.clone()] {
        ok(&ack(&alice.socket, "doc:update", args("doc", Some(data))).await);
    }
    let (name, first) = bob.next().await;
    assert_eq!(name, "doc:update");
    assert_eq!(
        first.binary(&first.values[1]).expect("binary").as_ref(),
        update.as_slice()
    );
    // The next relay is the marker: the repeats were not relayed.
    let (name, second) = bob.next().await;
    assert_eq!(name, "doc:update");
    assert_eq!(
        second.binary(&second.values[1]).expect("binary").as_ref(),
        marker.as_slice()
    );
    assert_eq!(bob.string(), "#once");
    assert!(bob.events.try_recv().is_err());
}

/// The error of an update refused as it depends on what the server lacks.
const MISSING: &str = "the update depends on changes the server does not have; join the document again to sync, then resend";

/// Client `client`'s updates, in order: "hello world" in the root text `text`; a format and a
/// deletion there; maps, arrays and XML; then its whole state (from clock 0).
fn client_updates(client: u64) -> [Vec<u8>; 4] {
    let doc = Doc::with_client_id(client);
    let text = doc.get_or_insert_text("text");
    let insert = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello world");
        txn.encode_update_v1()
    };
    let format = {
        let mut txn = doc.transact_mut();
        let bold = HashMap::from([("bold".into(), yrs::Any::Bool(true))]);
        text.format(&mut txn, 1, 4, bold);
        text.remove_range(&mut txn, 2, 3);
        txn.encode_update_v1()
    };
    let structure = {
        use yrs::{Array, ArrayPrelim, WriteTxn, XmlFragment, XmlTextPrelim};
        let mut txn = doc.transact_mut();
        let map = txn.get_or_insert_map("map");
        map.insert(&mut txn, "a", 1);
        let inner = map.insert(&mut txn, "sub", MapPrelim::default());
        inner.insert(&mut txn, "x", "y");
        let array = txn.get_or_insert_array("array");
        array.insert(&mut txn, 0, "q");
        let nested = array.insert(&mut txn, 1, ArrayPrelim::default());
        nested.insert(&mut txn, 0, 5);
        let xml = txn.get_or_insert_xml_fragment("xml");
        xml.push_back(&mut txn, XmlTextPrelim::new("x"));
        txn.encode_update_v1()
    };
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    [insert, format, structure, state]
}

/// The review's segfault (`tests/data/segfault-skip-hole.txt`): yrs 0.28.1 integrates an
/// update whose first block for a client starts past the server's clock for it (and depends
/// on nothing else) at once, behind a Skip block over the hole, and a later update of that
/// client covering the hole made it follow a dangling pointer. The update past the clock is
/// refused (missing dependencies), as are Skip blocks; what follows applies or is refused,
/// and the server lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_past_its_clients_clock_is_refused_and_no_skip_hole_crashes_the_server() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    // Client 1's whole state, client 2's insert and format.
    let [_, _, _, one] = client_updates(1);
    let [insert, format, _, _] = client_updates(2);
    for update in [one, insert, format] {
        let decoded = Update::decode_v1(&update).expect("decodes");
        alice
            .doc
            .transact_mut()
            .apply_update(decoded)
            .expect("applies");
        ok(&ack(&alice.socket, "doc:update", args("doc", Some(update))).await);
        assert_eq!(bob.next().await.0, "doc:update");
    }
    // Client 3's map update, starting at its clock 13 (the server has none of client 3).
    let gap = vec![
        1, 8, 3, 13, 40, 1, 3, 109, 97, 112, 1, 97, 1, 125, 1, 39, 1, 3, 109, 97, 112, 3, 115, 117,
        98, 1, 40, 0, 3, 14, 1, 120, 1, 119, 1, 121, 8, 1, 5, 97, 114, 114, 97, 121, 1, 119, 1,
        113, 135, 3, 16, 0, 8, 0, 3, 17, 1, 125, 5, 7, 1, 3, 120, 109, 108, 6, 4, 0, 3, 19, 1, 120,
        0,
    ];
    let error = refused_then_marker(
        &alice,
        &mut bob,
        "doc:update",
        args("doc", Some(gap.clone())),
    )
    .await;
    assert_eq!(error, MISSING);
    // The reproducer's update of client 3 from clock 0 over the hole: it may apply or be
    // refused; the server lives.
    let data = include_str!("data/segfault-skip-hole.txt");
    let (_, bytes) = data.trim().split_once(';').expect("seed;bytes");
    let covering: Vec<u8> = bytes
        .split(',')
        .map(|byte| byte.trim().parse().expect("a byte"))
        .collect();
    let _ = ack(&alice.socket, "doc:update", args("doc", Some(covering))).await;
    let _ = ack(&alice.socket, "doc:update", args("doc", Some(gap))).await;
    // Client 4's updates out of order, then merged over the hole (a Skip block): refused;
    // in order, accepted.
    let [insert, format, structure, _] = client_updates(4);
    for update in [format.clone(), structure.clone()] {
        let answer = ack(&alice.socket, "doc:update", args("doc", Some(update))).await;
        assert_eq!(error_of(&answer).as_deref(), Some(MISSING));
    }
    let skipping = yrs::merge_updates_v1([insert.as_slice(), &structure]).expect("merges");
    let answer = ack(&alice.socket, "doc:update", args("doc", Some(skipping))).await;
    assert_eq!(error_of(&answer).as_deref(), Some("malformed update"));
    for update in [insert, format, structure] {
        ok(&ack(&alice.socket, "doc:update", args("doc", Some(update))).await);
    }
    // The server serves everyone, and the document loads from the store as it is in memory.
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert!(carol.string().contains('#'), "{}", carol.string());
    ok(&carol.edit("doc", 0, "alive").await);
    let dave = peer(&server.url).await;
    dave.join("other").await;
    ok(&dave.edit("other", 0, "alive").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_with_missing_dependencies_is_refused_and_nothing_of_it_is_kept() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    const REFUSED: &str = MISSING;
    // Two edits made offline; the second (after the first) is sent alone: yrs could only
    // keep it pending, waiting for the first.
    let first = alice.insert(0, "first ");
    let second = alice.insert(6, "second");
    let answer = ack(&alice.socket, "doc:update", args("doc", Some(second))).await;
    assert_eq!(error_of(&answer).as_deref(), Some(REFUSED));
    // A deletion of text the server lacks: a pending delete set.
    let deletion = {
        let mut txn = alice.doc.transact_mut();
        alice.text.remove_range(&mut txn, 0, 2);
        txn.encode_update_v1()
    };
    let answer = ack(&alice.socket, "doc:update", args("doc", Some(deletion))).await;
    assert_eq!(error_of(&answer).as_deref(), Some(REFUSED));
    // The same, sent with blocks the server can integrate: refused whole, nothing applied.
    let mixed = yrs::merge_updates_v1([
        foreign_update("integrable").as_slice(),
        &alice.insert(0, "x"),
    ])
    .expect("merges");
    let answer = ack(&alice.socket, "doc:update", args("doc", Some(mixed))).await;
    assert_eq!(error_of(&answer).as_deref(), Some(REFUSED));
    // The first edit is accepted: it completes nothing, what was refused was not kept.
    ok(&ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(first.clone())),
    )
    .await);
    let (name, got) = bob.next().await;
    assert_eq!(name, "doc:update");
    assert_eq!(got.binary(&got.values[1]).expect("binary").as_ref(), first);
    assert_eq!(bob.string(), "first ");
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), "first ");
    assert!(bob.events.try_recv().is_err());
    // A join syncs what the server lacks: then alice's copy is the server's.
    alice.join("doc").await;
    wait_until("bob gets alice's text", || bob.string() == alice.string()).await;
    let dave = peer(&server.url).await;
    dave.join("doc").await;
    assert_eq!(dave.string(), alice.string());
}

/// A chain of `depth` maps nested in the root map `m` (one update), then the deletion of
/// the outer one (a second update): yrs deletes nested types recursively. Made on a thread
/// with a large stack, as the deletion recurses here too.
fn nested_types(depth: usize) -> (Vec<u8>, Vec<u8>) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let doc = Doc::new();
            let root = doc.get_or_insert_map("m");
            {
                let mut txn = doc.transact_mut();
                let mut inner = root.insert(&mut txn, "k", MapPrelim::default());
                for _ in 0..depth {
                    inner = inner.insert(&mut txn, "k", MapPrelim::default());
                }
            }
            let chain = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            let mut txn = doc.transact_mut();
            root.remove(&mut txn, "k");
            (chain, txn.encode_update_v1())
        })
        .expect("a thread")
        .join()
        .expect("the updates")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_deeply_nested_types_does_not_overflow_the_stack() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    alice.join("deep").await;
    // 10,000 levels (about 150 KB): deleting them takes far more than an async worker's 2 MiB
    // of stack.
    let (chain, delete) = nested_types(10_000);
    ok(&ack(&alice.socket, "doc:update", args("deep", Some(chain))).await);
    ok(&ack(&alice.socket, "doc:update", args("deep", Some(delete))).await);
    // The server lives on.
    let bob = peer(&server.url).await;
    bob.join("other").await;
    ok(&bob.edit("other", 0, "alive").await);
    assert_eq!(server.docs.open_documents(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_documents_per_socket_are_limited() {
    let server = server(limits(|limits| limits.max_documents_per_socket = 2)).await;
    let alice = peer(&server.url).await;
    alice.join("a").await;
    alice.join("b").await;
    // Joining one already open is no new document.
    alice.join("a").await;
    let answer = ack(&alice.socket, "doc:join", args("c", None)).await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("too many open documents (at most 2)")
    );
    ok(&ack(&alice.socket, "doc:leave", args("a", None)).await);
    alice.join("c").await;
    assert_eq!(server.docs.open_documents(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_documents_on_the_server_are_limited() {
    let server = server(limits(|limits| limits.max_open_documents = 2)).await;
    let alice = peer(&server.url).await;
    let bob = peer(&server.url).await;
    alice.join("a").await;
    bob.join("b").await;
    // A third document is refused to anyone; an open one is still shared.
    for socket in [&alice.socket, &bob.socket] {
        let answer = ack(socket, "doc:join", args("c", None)).await;
        assert_eq!(
            error_of(&answer).as_deref(),
            Some("the server has too many documents open (at most 2); try again later")
        );
    }
    bob.join("a").await;
    assert_eq!(server.docs.open_documents(), 2);
    // Once one is closed (and unloaded), another may open.
    ok(&ack(&bob.socket, "doc:leave", args("b", None)).await);
    wait_until("b is unloaded", || server.docs.open_documents() == 1).await;
    alice.join("c").await;
    assert_eq!(server.docs.open_documents(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_store_refuses_with_busy_and_in_flight_errors_then_recovers() {
    let mut config = limits(|limits| {
        limits.max_store_queue = 2;
        limits.max_in_flight_per_socket = 1;
    });
    // Longer than the test waits: the queued updates wait for the store, not a deadline.
    config.timeout = std::time::Duration::from_secs(600);
    let server = server(config).await;
    let mut peers = Vec::new();
    for id in ["a", "b", "c", "d"] {
        let peer = peer(&server.url).await;
        peer.join(id).await;
        peers.push((id, peer));
    }
    let pause = server.docs.pause_store().await.expect("paused");
    // Four updates of four documents: two wait in the store's queue, two are refused.
    let sent: Vec<_> = peers
        .iter()
        .map(|(id, peer)| {
            let socket = peer.socket.clone();
            let data = args(id, Some(peer.insert(0, "x")));
            tokio::spawn(async move { ack(&socket, "doc:update", data).await })
        })
        .collect();
    wait_until("two updates are refused", || {
        sent.iter().filter(|task| task.is_finished()).count() == 2
    })
    .await;
    let mut waiting = Vec::new();
    for ((id, peer), task) in peers.iter().zip(sent) {
        if task.is_finished() {
            let answer = task.await.expect("the task");
            assert_eq!(
                error_of(&answer).as_deref(),
                Some("the document store is busy; try again later")
            );
        } else {
            // Its first update waits: a second one is refused at once.
            let answer = ack(
                &peer.socket,
                "doc:update",
                args(id, Some(peer.insert(0, "y"))),
            )
            .await;
            assert_eq!(
                error_of(&answer).as_deref(),
                Some("too many document events in flight (at most 1); wait for their acks")
            );
            waiting.push(task);
        }
    }
    assert_eq!(waiting.len(), 2);
    drop(pause);
    for task in waiting {
        ok(&task.await.expect("the task"));
    }
    // Every document works again, the refused ones included: a client whose updates were
    // refused syncs first (its next edits depend on them), then its edits apply.
    for (id, peer) in &peers {
        peer.join(id).await;
        ok(&peer.edit(id, 0, "z").await);
        let check = self::peer(&server.url).await;
        check.join(id).await;
        assert_eq!(check.string(), peer.string(), "document {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_stuck_store_end_in_a_timeout_error() {
    let server = server(DocsConfig {
        timeout: std::time::Duration::from_millis(300),
        ..DocsConfig::default()
    })
    .await;
    let alice = peer(&server.url).await;
    let bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    let pause = server.docs.pause_store().await.expect("paused");
    // Alice waits for the store, Bob for the document Alice holds: both give up.
    let (first, second) = tokio::join!(alice.edit("doc", 0, "a"), bob.edit("doc", 0, "b"));
    for answer in [first, second] {
        assert_eq!(
            error_of(&answer).as_deref(),
            Some("timed out waiting for the document store; try again")
        );
    }
    let answer = ack(&alice.socket, "doc:join", args("other", None)).await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("timed out waiting for the document store; try again")
    );
    drop(pause);
    // The refused join counted nothing: only `doc` is open.
    wait_until("the refused join is undone", || {
        server.docs.open_documents() == 1
    })
    .await;
    // The document is back from the store: the refused edits are not in it, new ones are.
    ok(&ack(
        &alice.socket,
        "doc:update",
        args("doc", Some(foreign_update("c"))),
    )
    .await);
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_apply_threads_end_in_timeout_and_busy_errors_then_recover() {
    let mut config = limits(|limits| limits.max_store_queue = 1);
    config.timeout = std::time::Duration::from_millis(300);
    let server = server(config).await;
    let alice = peer(&server.url).await;
    let bob = peer(&server.url).await;
    alice.join("a").await;
    bob.join("b").await;
    let pause = server.docs.pause_apply().await.expect("paused");
    // Alice's update waits for the apply threads (holding her document): she gets a timeout,
    // and her job keeps the one place in their queue.
    let answer = alice.edit("a", 0, "lost").await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("timed out waiting for the document store; try again")
    );
    // Bob's finds the queue full.
    let answer = bob.edit("b", 0, "refused").await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("the document store is busy; try again later")
    );
    drop(pause);
    // Both documents work again; the refused edits were not applied (the timed out job was
    // skipped). Each syncs first (its refused edit is in its copy), then edits.
    let carol = peer(&server.url).await;
    carol.join("a").await;
    carol.join("b").await;
    assert_eq!(carol.string(), "");
    for (id, peer) in [("a", &alice), ("b", &bob)] {
        peer.join(id).await;
        ok(&peer.edit(id, 0, "ok ").await);
        let check = self::peer(&server.url).await;
        check.join(id).await;
        assert_eq!(check.string(), peer.string(), "document {id}");
    }
    assert_eq!(alice.string(), "ok lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_unanswered_in_time_is_reported_as_unknown_not_as_refused() {
    // Long enough for the store's thread to start the write on a loaded machine (each wait
    // below lasts this long).
    let server = server(DocsConfig {
        timeout: std::time::Duration::from_secs(2),
        ..DocsConfig::default()
    })
    .await;
    let alice = peer(&server.url).await;
    alice.join("doc").await;
    // The store commits alice's update, then does not answer in time.
    let hold = server.docs.hold_store_after_append();
    let answer = alice.edit("doc", 0, "committed").await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("timed out waiting for the document store: the update may or may not have been stored; join the document again to sync")
    );
    drop(hold);
    // It was stored: a joiner gets it.
    let bob = peer(&server.url).await;
    bob.join("doc").await;
    assert_eq!(bob.string(), "committed");
    // A job the store had not started when its caller gave up was not done: that one is
    // "try again".
    let pause = server.docs.pause_store().await.expect("paused");
    let answer = alice.edit("doc", 0, "lost ").await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("timed out waiting for the document store; try again")
    );
    drop(pause);
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), "committed");
}

fn awareness(client: u64, state: &str) -> Vec<u8> {
    awareness_at(client, 1, state)
}

fn awareness_at(client: u64, clock: u32, state: &str) -> Vec<u8> {
    let mut clients = HashMap::new();
    clients.insert(
        yrs::ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: Arc::from(state),
        },
    );
    AwarenessUpdate { clients }.encode_v1()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_reaches_the_other_members_only_and_is_bounded() {
    let server = server(limits(|limits| limits.max_awareness_bytes = 200)).await;
    let mut alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    let mut carol = peer(&server.url).await;
    alice.join("x").await;
    alice.join("y").await;
    bob.join("x").await;
    carol.join("y").await;

    let state = awareness(42, r#"{"user":{"name":"alice"},"cursor":3}"#);
    ok(&ack(
        &alice.socket,
        "doc:awareness",
        args("x", Some(state.clone())),
    )
    .await);
    let (name, got) = bob.next().await;
    assert_eq!(name, "doc:awareness");
    assert_eq!(got.get::<String>(0).expect("id"), "x");
    assert_eq!(got.binary(&got.values[1]).expect("binary").as_ref(), state);

    // Carol (in y only) gets alice's next update to y first: no awareness of x.
    ok(&alice.edit("y", 0, "for carol").await);
    let (name, got) = carol.next().await;
    assert_eq!(
        (name.as_str(), got.get::<String>(0).expect("id").as_str()),
        ("doc:update", "y")
    );
    // Alice gets bob's update, not her own awareness back.
    ok(&bob.edit("x", 0, "from bob").await);
    let (name, _) = alice.next().await;
    assert_eq!(name, "doc:update");

    // Too large, malformed, not joined: error acks, relayed to no one.
    let big = awareness(42, &format!("{{\"pad\":\"{}\"}}", "p".repeat(300)));
    let answer = ack(&alice.socket, "doc:awareness", args("x", Some(big))).await;
    assert!(error_of(&answer).is_some_and(|e| e.starts_with("awareness update too large")));
    let answer = ack(&alice.socket, "doc:awareness", args("x", Some(vec![5, 1]))).await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("malformed awareness update")
    );
    let answer = ack(
        &carol.socket,
        "doc:awareness",
        args("x", Some(state.clone())),
    )
    .await;
    assert_eq!(
        error_of(&answer).as_deref(),
        Some("not joined to document x")
    );
    // (A marker of its own: alice's copy mixes x and y, an edit of it could depend on y.)
    let marker = foreign_update("marker");
    ok(&ack(&alice.socket, "doc:update", args("x", Some(marker))).await);
    let (name, _) = bob.next().await;
    assert_eq!(name, "doc:update", "bob got a refused awareness update");

    // Alice leaves x: bob hears that her awareness client is gone (y-protocols' removal:
    // state null, clock + 1), not 30 s later.
    ok(&ack(&alice.socket, "doc:leave", args("x", None)).await);
    let (name, got) = bob.next().await;
    assert_eq!(name, "doc:awareness");
    assert_eq!(removed(&got), vec![(42, 2)]);
    // Her disconnect does the same in y.
    let state = awareness_at(7, 5, r#"{"user":{"name":"alice"}}"#);
    ok(&ack(&alice.socket, "doc:awareness", args("y", Some(state))).await);
    assert_eq!(carol.next().await.0, "doc:awareness");
    alice.socket.disconnect();
    let (name, got) = carol.next().await;
    assert_eq!(name, "doc:awareness");
    assert_eq!(removed(&got), vec![(7, 6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awareness_client_id_belongs_to_the_first_socket_that_announced_it() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    let mut carol = peer(&server.url).await;
    for peer in [&alice, &bob, &carol] {
        peer.join("x").await;
    }
    let state = awareness(42, r#"{"user":{"name":"alice"}}"#);
    ok(&ack(&alice.socket, "doc:awareness", args("x", Some(state))).await);
    assert_eq!(bob.next().await.0, "doc:awareness");
    assert_eq!(carol.next().await.0, "doc:awareness");
    // Bob may neither take over alice's client id nor remove it.
    for spoof in [
        awareness_at(42, 9, r#"{"user":{"name":"mallory"}}"#),
        awareness_at(42, 9, "null"),
    ] {
        let answer = ack(&bob.socket, "doc:awareness", args("x", Some(spoof))).await;
        assert_eq!(
            error_of(&answer).as_deref(),
            Some("awareness client 42 belongs to another socket")
        );
    }
    // Nothing reached carol: her next event is bob's own announcement.
    let own = awareness(43, r#"{"user":{"name":"bob"}}"#);
    ok(&ack(&bob.socket, "doc:awareness", args("x", Some(own.clone()))).await);
    let (name, got) = carol.next().await;
    assert_eq!(name, "doc:awareness");
    assert_eq!(got.binary(&got.values[1]).expect("binary").as_ref(), own);
    // Once alice leaves, the id is free.
    ok(&ack(&alice.socket, "doc:leave", args("x", None)).await);
    assert_eq!(removed(&carol.next().await.1), vec![(42, 2)]);
    let taken = awareness_at(42, 3, r#"{"user":{"name":"bob"}}"#);
    ok(&ack(&bob.socket, "doc:awareness", args("x", Some(taken))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_a_disconnect_leave_no_document_open() {
    let server = server(DocsConfig::default()).await;
    for round in 0..20 {
        let peer = peer(&server.url).await;
        // Joins sent, then the socket closed without waiting for their acks.
        for id in ["r1", "r2", "r3"] {
            let socket = peer.socket.clone();
            let id = format!("{id}-{round}");
            tokio::spawn(async move {
                let _ = socket
                    .emit_with_ack("doc:join", args(&id, None), DEADLINE)
                    .await;
            });
        }
        tokio::task::yield_now().await;
        peer.socket.disconnect();
    }
    wait_until("every document is unloaded", || {
        server.docs.open_documents() == 0
    })
    .await;
}

/// The clients (id, clock) an awareness update removes.
fn removed(args: &Args) -> Vec<(u64, u32)> {
    let bytes = args.binary(&args.values[1]).expect("binary");
    let update = AwarenessUpdate::decode_v1(bytes).expect("decodes");
    update
        .clients
        .iter()
        .map(|(client, entry)| {
            assert_eq!(&*entry.json, "null");
            (client.get(), entry.clock)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_survives_a_restart_on_the_same_data_dir() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let storage = Storage::Directory(directory.path().to_owned());
    let config = DocsConfig {
        storage: storage.clone(),
        ..DocsConfig::default()
    };
    let text = {
        let server = server(config.clone()).await;
        let alice = peer(&server.url).await;
        alice.join("kept").await;
        // More than one compaction's worth (every 256 updates): the merged state, then the
        // updates acked since.
        for i in 0..300 {
            ok(&alice.edit("kept", 0, &format!("line {i}\n")).await);
        }
        alice.string()
    };
    // The store is locked until the first server has closed it (the document then unloaded
    // and compacted): the database opens once it has. (That acked updates alone survive a
    // crash is the binary's SIGKILL test.)
    let file = directory.path().join(Storage::FILE_NAME);
    let database = rusqlite::Connection::open(&file).expect("the database");
    let count = |sql: &str| -> i64 {
        database
            .query_row(sql, [], |row| row.get(0))
            .expect("a count")
    };
    assert_eq!(count("SELECT count(*) FROM documents WHERE id = 'kept'"), 1);
    let logged = count("SELECT count(*) FROM updates WHERE doc = 'kept'");
    assert!((0..300).contains(&logged), "{logged} updates logged");
    drop(database);
    let server = server(config).await;
    let bob = peer(&server.url).await;
    bob.join("kept").await;
    assert_eq!(bob.string(), text);
    assert!(text.contains("line 299\n") && text.contains("line 0\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_limit_past_what_the_stacks_cover_is_refused_at_startup() {
    assert_eq!(MAX_DOCUMENT_BYTES, 4 << 20);
    let io = SocketIo::new(SocketIoConfig::default());
    let refused = DocService::attach(
        &io.of("/docs"),
        limits(|limits| limits.max_document_bytes = MAX_DOCUMENT_BYTES + 1),
    )
    .await
    .expect_err("refused");
    assert!(matches!(refused, StoreError::InvalidLimits(_)), "{refused}");
    assert_eq!(
        refused.to_string(),
        "invalid document limits: max_document_bytes is 4194305, at most 4194304 (4 MiB: what \
         the stacks of the threads that apply updates cover)"
    );
    let server = server(limits(|limits| {
        limits.max_document_bytes = MAX_DOCUMENT_BYTES
    }))
    .await;
    assert_eq!(server.docs.limits().max_document_bytes, MAX_DOCUMENT_BYTES);
}

/// REVIEW.md finding 2: a panic inside `yrs`'s transaction (injected, as a bug in `yrs`
/// would) refuses the update with an error ack, relays nothing, and gives the copy up: the
/// document comes back from the store (without the update) on the next event, and the
/// server lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_yrs_refuses_the_update_and_the_document_comes_back_from_the_store() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    let mut bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    ok(&alice.edit("doc", 0, "kept").await);
    let (name, _) = bob.next().await;
    assert_eq!(name, "doc:update");
    server.docs.panic_in_next_apply();
    // The update (independent of alice's copy, so that her marker applies after it) is
    // refused; bob's next event is the marker, applied to the copy reloaded from the store.
    let error = refused_then_marker(
        &alice,
        &mut bob,
        "doc:update",
        args("doc", Some(foreign_update("lost"))),
    )
    .await;
    assert_eq!(error, "internal error; try again");
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), "#kept");
    assert_eq!(bob.string(), "#kept");
    assert_eq!(server.docs.open_documents(), 1);
}

/// REVIEW.md finding 3: a join's sync (for a new client, the whole document) is encoded on the
/// apply threads, not on an async worker: with those threads held, the join of a document in
/// memory waits for them, and is answered once they are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joins_sync_is_encoded_on_the_apply_threads() {
    let server = server(DocsConfig::default()).await;
    let alice = peer(&server.url).await;
    alice.join("doc").await;
    ok(&alice.edit("doc", 0, "text").await);
    let pause = server.docs.pause_apply().await.expect("paused");
    let bob = peer(&server.url).await;
    let socket = bob.socket.clone();
    let join = tokio::spawn(async move {
        socket
            .emit_with_ack("doc:join", args("doc", None), DEADLINE)
            .await
    });
    // No exact instant: only that it is still waiting while the threads are held (it
    // cannot be answered before they are free).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !join.is_finished(),
        "the join was answered with the apply threads held"
    );
    drop(pause);
    let answer = join
        .await
        .expect("the join's task")
        .expect("an ack in time");
    assert_eq!(error_of(&answer), None, "{answer:?}");
    let value: Value = answer.get(0).expect("an object");
    let update = answer.binary(&value["update"]).expect("a binary update");
    bob.doc
        .transact_mut()
        .apply_update(Update::decode_v1(update).expect("decodes"))
        .expect("applies");
    assert_eq!(bob.string(), "text");
}

/// A document stays in memory while a socket has it open, and is unloaded once the last one
/// leaves, even when it is busy then: unloading waits for it for the deadline
/// (`DocsConfig::timeout`), then tries again later, and a merged state that cannot be
/// written (the apply threads held) leaves the updates in the store. Waits are for
/// conditions, with generous deadlines, never for exact instants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_unloaded_after_its_last_member_leaves_even_when_busy() {
    let server = server(DocsConfig {
        timeout: std::time::Duration::from_millis(300),
        ..DocsConfig::default()
    })
    .await;
    let alice = peer(&server.url).await;
    let bob = peer(&server.url).await;
    alice.join("doc").await;
    bob.join("doc").await;
    ok(&alice.edit("doc", 0, "saved").await);
    // One member left: still open.
    ok(&ack(&bob.socket, "doc:leave", args("doc", None)).await);
    assert_eq!(server.docs.open_documents(), 1);
    // The apply threads held: alice's next update holds the document while it waits for
    // them (then times out), and her leave's unload waits for the document, then for the
    // threads to encode the merged state (which times out: the updates stay in the store).
    let pause = server.docs.pause_apply().await.expect("paused");
    let socket = alice.socket.clone();
    let update = alice.insert(0, "lost ");
    let edit = tokio::spawn(async move {
        socket
            .emit_with_ack("doc:update", args("doc", Some(update)), DEADLINE)
            .await
    });
    ok(&ack(&alice.socket, "doc:leave", args("doc", None)).await);
    wait_until("the busy document is unloaded", || {
        server.docs.open_documents() == 0
    })
    .await;
    let answer = edit
        .await
        .expect("the edit's task")
        .expect("an ack in time");
    assert!(error_of(&answer).is_some(), "{answer:?}");
    drop(pause);
    // Back from the store: what was acked, nothing else.
    let carol = peer(&server.url).await;
    carol.join("doc").await;
    assert_eq!(carol.string(), "saved");
    assert_eq!(server.docs.open_documents(), 1);
    carol.socket.disconnect();
    wait_until("unloaded after the last member's disconnect", || {
        server.docs.open_documents() == 0
    })
    .await;
}
