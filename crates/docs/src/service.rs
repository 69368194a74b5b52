//! The service: the open documents, the event handlers, loading and unloading.

use std::collections::HashMap;
use std::convert::Infallible;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use switchyard::{Args, Binary, DisconnectReason, Namespace, Socket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn, Level};
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, TransactionMut, Update, WriteTxn};

use crate::deep::{ApplyPause, Deep, DeepError};
use crate::error::{Refusal, StoreError};
use crate::events;
use crate::scan::{self, ScanError};
use crate::store::{Store, StorePause};
use crate::{is_valid_doc_id, room_of, DocLimits, DocsConfig};

/// The threads that apply updates (with large stacks: see [`crate::deep`]).
const APPLY_THREADS: usize = 2;

/// How many times unloading a document waits for its lock (each time for the timeout) before
/// giving up (it is unloaded when next closed).
const UNLOAD_ATTEMPTS: usize = 3;

/// Updates appended to the store before they are folded into the document's merged state.
const COMPACT_EVERY: usize = 256;

/// The document service on one namespace. Cloning it shares the service; the documents stay
/// served as long as the namespace is (the handlers hold the service).
#[derive(Clone)]
pub struct DocService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DocService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocService")
            .field("limits", &self.inner.limits)
            .field("open_documents", &self.open_documents())
            .finish()
    }
}

struct Inner {
    limits: DocLimits,
    /// The threads that apply updates.
    deep: Deep,
    /// How long an event waits for a document's lock (the store's answers have their own).
    timeout: Duration,
    /// How long a load waits for the other servers' answers ([`DocsConfig::peer_timeout`]).
    peer_timeout: Duration,
    store: Store,
    /// The documents open on this server, with how many sockets have each open.
    docs: Mutex<HashMap<Arc<str>, Slot>>,
    /// Set by [`DocService::panic_in_next_apply`] (tests): the next update's job panics
    /// inside its transaction.
    panic_next_apply: AtomicBool,
}

struct Slot {
    entry: Arc<Entry>,
    members: usize,
}

/// One open document.
struct Entry {
    id: Arc<str>,
    /// The owner (socket id) of each awareness client id announced here: the first socket to
    /// announce an id owns it until it removes it, leaves or disconnects; another socket's
    /// awareness update naming it is refused.
    owners: Mutex<HashMap<u64, Arc<str>>>,
    state: tokio::sync::Mutex<EntryState>,
}

#[derive(Default)]
struct EntryState {
    /// The document, once loaded (and until unloaded).
    doc: Option<Doc>,
    /// An upper bound of the encoded state's size (exact after a load or a compaction).
    size: usize,
    /// The sequence number of the last update in the store.
    last_seq: i64,
    /// Updates in the store not folded into the merged state yet.
    unfolded: usize,
    /// The namespace (its server-side events reach the other servers of a cluster), while
    /// the document is loaded: taken from the socket whose event loaded it, dropped when the
    /// document is unloaded. The service holds none of its own: the namespace holds the
    /// service (its handlers), so that would keep both, and the store, alive for good.
    namespace: Option<Namespace>,
}

/// A `doc:join` whose checks passed: the document, the client's state vector, and the entry
/// if this join counted the socket in (not when it had the document open already).
type Started = (Arc<str>, StateVector, Option<Arc<Entry>>);

/// The documents a socket has open (its socket data), each with the awareness clients the
/// socket announced there (client id → clock), so that their states can be removed for the
/// others when it leaves.
#[derive(Clone, Default)]
struct Joined(Arc<Mutex<Membership>>);

/// What [`Joined`] guards.
#[derive(Default)]
struct Membership {
    /// The documents the socket has open, with the awareness clients it announced there.
    docs: HashMap<Arc<str>, Announced>,
    /// Set by the disconnect handler: a `doc:join` handled after it is refused, so that no
    /// membership outlives the socket.
    closed: bool,
}

/// The permits of a socket's `doc:join` and `doc:update` events waiting for their acks (its
/// socket data).
#[derive(Clone)]
struct InFlight(Arc<Semaphore>);

/// Awareness clients a socket announced in a document: client id → last clock.
type Announced = HashMap<u64, u32>;

/// Awareness clients tracked per socket and document at most (a client normally announces one:
/// its own); those past it are relayed but not removed for the others when the socket leaves.
const MAX_ANNOUNCED: usize = 16;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The join ack.
#[derive(Serialize)]
struct JoinAck {
    update: Binary,
    #[serde(rename = "stateVector")]
    state_vector: Binary,
}

impl DocService {
    /// Opens the store and serves documents on `namespace`: registers its connection handler
    /// (add any auth middleware to the namespace too, before clients connect).
    /// Refused ([`StoreError::InvalidLimits`]) if a limit is out of range (see
    /// [`DocLimits::check`]).
    pub async fn attach(namespace: &Namespace, config: DocsConfig) -> Result<Self, StoreError> {
        config.limits.check()?;
        let store = Store::open(
            config.storage.clone(),
            config.limits.max_store_queue,
            config.timeout,
        )
        .await?;
        let deep = Deep::start(APPLY_THREADS, config.limits.max_store_queue, config.timeout)
            .map_err(StoreError::Thread)?;
        let service = DocService {
            inner: Arc::new(Inner {
                limits: config.limits,
                deep,
                timeout: config.timeout,
                peer_timeout: config.peer_timeout,
                store,
                docs: Mutex::new(HashMap::new()),
                panic_next_apply: AtomicBool::new(false),
            }),
        };
        let inner = service.inner.clone();
        namespace.on_connection(move |socket: Socket| {
            let inner = inner.clone();
            async move { inner.register(&socket) }
        });
        let inner = service.inner.clone();
        namespace.on_server_event(events::PEER_UPDATE, move |args: Args| {
            let inner = inner.clone();
            async move {
                // On a task of its own: the adapter stops waiting for a handler after its
                // requests' timeout, and this one must not be cut short half way.
                tokio::spawn(async move { inner.peer_update(args).await });
                Value::Null
            }
        });
        let inner = service.inner.clone();
        namespace.on_server_event(events::PEER_SYNC, move |args: Args| {
            let inner = inner.clone();
            async move { inner.answer_sync(args).await }
        });
        Ok(service)
    }

    /// How many documents are held in memory (open by at least one socket, or being unloaded).
    pub fn open_documents(&self) -> usize {
        lock(&self.inner.docs).len()
    }

    /// The limits in force.
    pub fn limits(&self) -> DocLimits {
        self.inner.limits
    }

    /// Holds the store's thread until the returned guard is dropped, as a stuck disk would:
    /// for tests of the store's queue and deadlines, not for production use.
    #[doc(hidden)]
    pub async fn pause_store(&self) -> Result<StorePause, StoreError> {
        self.inner.store.pause().await
    }

    /// Makes the store's next append wait, once committed, until the returned guard is
    /// dropped, as a disk stuck after a write would: for tests of an unknown outcome, not for
    /// production use.
    #[doc(hidden)]
    pub fn hold_store_after_append(&self) -> StorePause {
        self.inner.store.hold_after_append()
    }

    /// Holds the threads that apply updates until the returned guard is dropped, as a stuck
    /// update would: for tests of their queue and deadlines, not for production use. `None`
    /// if their queue is full.
    #[doc(hidden)]
    pub async fn pause_apply(&self) -> Option<ApplyPause> {
        self.inner.deep.pause().await.ok()
    }

    /// Makes the next `doc:update` that reaches the apply threads panic inside its `yrs`
    /// transaction, after integrating the update, as a bug in `yrs` would: for tests of a
    /// poisoned document copy (refused, given up, reloaded from the store), not for
    /// production use.
    #[doc(hidden)]
    pub fn panic_in_next_apply(&self) {
        self.inner.panic_next_apply.store(true, Ordering::Relaxed);
    }
}

/// A handler's answer: the ack's arguments.
type Reply = Result<Args, Infallible>;

/// The ack `{ ok: true }`.
fn ok_args() -> Args {
    Args::one(&json!({ "ok": true })).unwrap_or_default()
}

fn ok_reply() -> Reply {
    Ok(ok_args())
}

/// The level a refusal is logged at: the server's failures at warn, its capacity limits
/// (a full server or store queue) at info, the client's faults at debug (as the rest of the
/// server logs them: a client cannot fill the logs).
fn refusal_level(refusal: &Refusal) -> Level {
    match refusal {
        Refusal::Store | Refusal::Timeout | Refusal::OutcomeUnknown | Refusal::Internal => {
            Level::WARN
        }
        Refusal::ServerFull { .. } | Refusal::Busy => Level::INFO,
        _ => Level::DEBUG,
    }
}

fn refusal_reply(socket: &Socket, event: &str, doc: Option<&str>, refusal: &Refusal) -> Reply {
    let sid = &**socket.id();
    match refusal_level(refusal) {
        Level::WARN => warn!(sid, event, doc, error = %refusal, "document event refused"),
        Level::INFO => info!(sid, event, doc, error = %refusal, "document event refused"),
        _ => debug!(sid, event, doc, error = %refusal, "document event refused"),
    }
    Ok(Args::one(&json!({ "error": refusal.to_string() })).unwrap_or_default())
}

fn answer(socket: &Socket, event: &str, doc: Option<&str>, result: Result<Args, Refusal>) -> Reply {
    match result {
        Ok(args) => Ok(args),
        Err(refusal) => refusal_reply(socket, event, doc, &refusal),
    }
}

/// The document id in argument 0.
fn doc_id(args: &Args) -> Result<Arc<str>, Refusal> {
    match args.values.first() {
        Some(Value::String(id)) if is_valid_doc_id(id) => Ok(Arc::from(id.as_str())),
        _ => Err(Refusal::BadDocId),
    }
}

/// The binary argument 1; `None` when it is missing or null.
fn binary_arg(args: &Args, what: &'static str) -> Result<Option<Bytes>, Refusal> {
    match args.values.get(1) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => args
            .binary(value)
            .cloned()
            .map(Some)
            .ok_or(Refusal::NotBinary(what)),
    }
}

/// Decodes a client's v1 encoding: scanned first (bounded nesting, counts that fit the bytes:
/// see [`crate::scan`]), then decoded by `yrs` under `catch_unwind`; `refusal` for anything
/// either refuses.
fn decode_checked<T>(
    bytes: &[u8],
    scan: fn(&[u8]) -> Result<(), ScanError>,
    decode: fn(&[u8]) -> Result<T, yrs::encoding::read::Error>,
    refusal: Refusal,
) -> Result<T, Refusal> {
    scan(bytes).map_err(|_| refusal.clone())?;
    match catch_unwind(|| decode(bytes)) {
        Ok(Ok(value)) => Ok(value),
        _ => Err(refusal),
    }
}

/// Decodes a v1 update, refusing what does not decode (or makes the decoder panic).
fn decode_update(bytes: &[u8]) -> Result<Update, Refusal> {
    decode_checked(
        bytes,
        scan::update_v1,
        Update::decode_v1,
        Refusal::MalformedUpdate,
    )
}

fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, Refusal> {
    decode_checked(
        bytes,
        scan::state_vector_v1,
        StateVector::decode_v1,
        Refusal::MalformedStateVector,
    )
}

fn decode_awareness(bytes: &[u8]) -> Result<AwarenessUpdate, Refusal> {
    decode_checked(
        bytes,
        scan::awareness_v1,
        AwarenessUpdate::decode_v1,
        Refusal::MalformedAwareness,
    )
}

/// Tells the other sockets of document `id` that the awareness clients `socket` announced
/// there are gone (as y-protocols' `removeAwarenessStates`: state `null`, clock + 1), so that
/// a departed client's cursor goes away at once rather than after 30 s.
fn remove_awareness(socket: &Socket, id: &str, announced: &Announced) {
    if announced.is_empty() {
        return;
    }
    let clients = announced
        .iter()
        .map(|(&client, &clock)| {
            (
                ClientID::new(client),
                AwarenessUpdateEntry {
                    clock: clock.wrapping_add(1),
                    json: Arc::from("null"),
                },
            )
        })
        .collect();
    let removal = AwarenessUpdate { clients }.encode_v1();
    relay(socket, id, events::AWARENESS, removal, Delivery::Reliable);
}

/// How a relay is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Queued for each socket (updates, awareness removals).
    Reliable,
    /// Dropped for a socket with bytes waiting (awareness states, renewed anyway).
    Volatile,
}

/// Sends `event` (`docId`, `bytes`) to the other sockets of document `id` on this server
/// (never through the cluster adapter: the other servers get updates as server-side events,
/// and relay them to their own sockets). A failure is logged.
fn relay(socket: &Socket, id: &str, event: &'static str, bytes: Vec<u8>, delivery: Delivery) {
    let sent = Args::one(id)
        .and_then(|args| args.push(&Binary::from(bytes)))
        .map_err(|error| error.to_string())
        .and_then(|args| {
            let operator = socket.to(room_of(id)).local();
            let operator = match delivery {
                Delivery::Reliable => operator,
                Delivery::Volatile => operator.volatile(),
            };
            operator
                .emit(event, args)
                .map_err(|error| error.to_string())
        });
    if let Err(error) = sent {
        match delivery {
            Delivery::Reliable => warn!(doc = id, event, %error, "not relayed"),
            Delivery::Volatile => debug!(doc = id, event, %error, "not relayed"),
        }
    }
}

/// Sends `event` (`docId`, `bytes`) to every socket of document `id` on this server (a peer's
/// update, or what the sync with peers brought). A failure is logged.
fn relay_all(namespace: &Namespace, id: &str, bytes: Vec<u8>) {
    let sent = Args::one(id)
        .and_then(|args| args.push(&Binary::from(bytes)))
        .map_err(|error| error.to_string())
        .and_then(|args| {
            namespace
                .to(room_of(id))
                .local()
                .emit(events::UPDATE, args)
                .map_err(|error| error.to_string())
        });
    if let Err(error) = sent {
        warn!(doc = id, %error, "a peer's update not relayed");
    }
}

/// The bytes of argument `index` of a server-side event: a binary attachment, or (as the
/// adapters that carry events as JSON turn them) Node's `{ type: "Buffer", data: [...] }`.
/// `None` if it is neither, or longer than `limit`.
fn peer_bytes(args: &Args, index: usize, limit: usize) -> Option<Bytes> {
    let value = args.values.get(index)?;
    if let Some(bytes) = args.binary(value) {
        return (bytes.len() <= limit).then(|| bytes.clone());
    }
    let Value::Object(map) = value else {
        return None;
    };
    if map.get("type").and_then(Value::as_str) != Some("Buffer") {
        return None;
    }
    let Some(Value::Array(items)) = map.get("data") else {
        return None;
    };
    if items.len() > limit {
        return None;
    }
    items
        .iter()
        .map(|item| item.as_u64().and_then(|byte| u8::try_from(byte).ok()))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

/// The encoded state of `doc` (everything it has).
fn encode_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// What applying an update did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// It changed the document: what it changed, as a v1 update (the transaction's own
    /// encoding once committed, as `yrs`'s update observers get it: the blocks it integrated,
    /// what it deleted, and the formatting the commit's cleanup deleted).
    Changed(Vec<u8>),
    /// The document had all of it already.
    Unchanged,
    /// Some of it depends on blocks the document lacks (`yrs` would keep that part pending,
    /// waiting for them): the pending part was dropped. `partial` if the rest changed the
    /// document (then it is not what the store has). Also (never `partial`: nothing was
    /// applied) an update whose first block for some client starts past the document's clock
    /// for that client.
    Incomplete { partial: bool },
    /// The document refused it; it may have applied in part (its pending part was dropped).
    Refused,
    /// `yrs` panicked while the update's transaction was open: the document may be half
    /// integrated, and its transaction was leaked rather than committed, so the document stays
    /// locked for good. The caller must drop this copy and never use it again (not even to
    /// read it: that would block forever).
    Poisoned,
}

/// Applies `update` to `doc` (see [`apply_with`]).
fn apply(doc: &Doc, update: Update) -> Applied {
    apply_with(doc, update, false)
}

/// Applies `update` to `doc`. Nothing is ever left pending in `doc`: what `yrs` would keep
/// waiting for missing blocks (structs or deletions) is dropped and the update reported
/// [`Applied::Incomplete`], so that the document stays what was stored and counted, and no
/// later update can complete a chain nobody saw.
///
/// An update whose first block for a client starts past the document's clock for that client
/// is not applied at all ([`Applied::Incomplete`], not `partial`): if that block depends on
/// nothing the document lacks, `yrs` 0.28.1 integrates it at once behind a Skip block filling
/// the hole (`Update::integrate`), reports nothing missing, and follows a dangling pointer
/// (a segfault) once a later update covers the hole. With the scan's refusal of Skip blocks
/// and of clients listed twice (`scan::update_v1`: `update` comes from [`decode_update`]),
/// each client's blocks are contiguous, so checking the first is enough: no hole is made.
///
/// A panic in `yrs` (`panic_inside`: one injected after integrating, for tests) makes the
/// document [`Applied::Poisoned`]. `TransactionMut`'s `Drop` commits (runs the observers, the
/// formatting cleanup, the garbage collector and block squashing) over whatever the store
/// holds: dropped while unwinding from a panic half way through integrating, it would walk a
/// half-linked store, and a second panic there (a panic while panicking) aborts the process.
/// So the transaction is held in a [`ManuallyDrop`]: committed explicitly (inside
/// `catch_unwind`, so a panic in the commit is caught like any other), and after a panic
/// leaked, never dropped. Leaking it keeps the document's lock and memory for good: the copy
/// is given up (the caller reloads the document from the store), a small price for a panic
/// that should never happen.
fn apply_with(doc: &Doc, update: Update, panic_inside: bool) -> Applied {
    let mut txn = ManuallyDrop::new(doc.transact_mut());
    let applied = catch_unwind(AssertUnwindSafe(|| {
        integrate(&mut txn, update, panic_inside)
    }));
    match applied {
        Ok(applied) => {
            // Committed already: dropping it only releases the document's lock.
            drop(ManuallyDrop::into_inner(txn));
            applied
        }
        Err(_) => {
            // `txn` is leaked (see above): its `Drop` never runs.
            error!("yrs panicked while applying an update: the document's copy is given up");
            Applied::Poisoned
        }
    }
}

/// [`apply_with`]'s work in the open transaction `txn`, committed before what changed is
/// encoded.
fn integrate(txn: &mut TransactionMut<'_>, update: Update, panic_inside: bool) -> Applied {
    let current = txn.state_vector();
    // The first (non-Skip) block's clock, per client.
    let first = update.state_vector_lower();
    if first
        .iter()
        .any(|(client, &clock)| clock > current.get(client))
    {
        return Applied::Incomplete { partial: false };
    }
    let result = txn.apply_update(update);
    if panic_inside {
        panic!("a panic injected after integrating an update (test)");
    }
    // Nothing is kept pending, whatever the outcome (a refused update may have left some).
    let missing = txn.has_missing_updates();
    if result.is_err() || missing {
        drop(txn.prune_pending());
    }
    // The commit cleans up formatting (deleting format blocks a remote change made
    // redundant), collects garbage and squashes blocks: what changed is encoded after it,
    // so that the store and the other clients get the cleanup's deletions too.
    txn.commit();
    if result.is_err() {
        return Applied::Refused;
    }
    // What yrs's update observers are given, on the same condition.
    let changed = !txn.delete_set().is_empty() || txn.after_state() != txn.before_state();
    if missing {
        return Applied::Incomplete { partial: changed };
    }
    if changed {
        Applied::Changed(txn.encode_update_v1())
    } else {
        Applied::Unchanged
    }
}

/// A `doc:update`'s work on the apply threads: the size check, then the update applied.
struct UpdateJob {
    /// The update, as sent.
    bytes: Bytes,
    /// The document's size bound ([`EntryState::size`]).
    size: usize,
    /// [`DocLimits::max_document_bytes`].
    limit: usize,
    /// Panic inside the transaction (tests: [`DocService::panic_in_next_apply`]).
    panic_inside: bool,
}

impl UpdateJob {
    /// Checks the size the document would reach, then applies the update to `doc`: what it
    /// did, and the document's exact encoded size after it when that was computed (near the
    /// limit, where the bound is not enough). The whole-document encodes and merges run here,
    /// on an apply thread, never on an async worker.
    fn run(self, doc: &Doc) -> Result<(Applied, Option<usize>), Refusal> {
        let update = decode_update(&self.bytes)?;
        let near_limit = self.size.saturating_add(self.bytes.len()) > self.limit;
        if near_limit {
            let current = encode_state(doc);
            let merged = catch_unwind(|| yrs::merge_updates_v1([current.as_slice(), &self.bytes]));
            let size = match merged {
                Ok(Ok(merged)) => merged.len(),
                _ => return Err(Refusal::MalformedUpdate),
            };
            if size > self.limit {
                return Err(Refusal::DocumentTooLarge {
                    size,
                    limit: self.limit,
                });
            }
        }
        let applied = apply_with(doc, update, self.panic_inside);
        // Never read a poisoned copy (it stays locked): only a changed one is measured.
        let exact = match &applied {
            Applied::Changed(_) if near_limit => Some(encode_state(doc).len()),
            _ => None,
        };
        Ok((applied, exact))
    }
}

impl Inner {
    /// The handlers of a new socket.
    fn register(self: &Arc<Self>, socket: &Socket) {
        socket.insert_data(Joined::default());
        socket.insert_data(InFlight(Arc::new(Semaphore::new(
            self.limits.max_in_flight_per_socket,
        ))));
        let inner = self.clone();
        socket.on(events::JOIN, move |socket: Socket, args: Args| {
            let inner = inner.clone();
            // The membership is decided here, in the order the events came; only the loading
            // and the sync wait.
            let started = inner
                .in_flight(&socket)
                .and_then(|permit| Ok((permit, inner.start_join(&socket, &args)?)));
            async move {
                match started {
                    Ok((_permit, (id, state_vector, entry))) => {
                        let result = inner.finish_join(&socket, &id, &state_vector, entry).await;
                        answer(&socket, events::JOIN, Some(&id), result)
                    }
                    Err(refusal) => {
                        let id = doc_id(&args).ok();
                        refusal_reply(&socket, events::JOIN, id.as_deref(), &refusal)
                    }
                }
            }
        });
        let inner = self.clone();
        socket.on(events::UPDATE, move |socket: Socket, args: Args| {
            let inner = inner.clone();
            let permit = inner.in_flight(&socket);
            async move {
                let id = doc_id(&args).ok();
                let result = match permit {
                    Ok(_permit) => inner.update(&socket, &args).await,
                    Err(refusal) => Err(refusal),
                };
                answer(&socket, events::UPDATE, id.as_deref(), result)
            }
        });
        let inner = self.clone();
        socket.on(events::AWARENESS, move |socket: Socket, args: Args| {
            let result = inner.awareness(&socket, &args);
            async move {
                let id = doc_id(&args).ok();
                answer(&socket, events::AWARENESS, id.as_deref(), result)
            }
        });
        let inner = self.clone();
        socket.on(events::LEAVE, move |socket: Socket, args: Args| {
            let inner = inner.clone();
            let left = doc_id(&args).map(|id| (inner.leave(&socket, &id), id));
            async move {
                match left {
                    Ok((entry, _)) => {
                        if let Some(entry) = entry {
                            inner.unload(entry).await;
                        }
                        ok_reply()
                    }
                    Err(refusal) => refusal_reply(&socket, events::LEAVE, None, &refusal),
                }
            }
        });
        let inner = self.clone();
        socket.on_disconnect(move |socket: Socket, _: DisconnectReason| {
            let inner = inner.clone();
            // Closed first: a join handled after this is refused.
            let ids: Vec<Arc<str>> = socket
                .data::<Joined>()
                .map(|Joined(joined)| {
                    let mut joined = lock(&joined);
                    joined.closed = true;
                    joined.docs.keys().cloned().collect()
                })
                .unwrap_or_default();
            let entries: Vec<Arc<Entry>> = ids
                .iter()
                .filter_map(|id| inner.leave(&socket, id))
                .collect();
            async move {
                for entry in entries {
                    inner.unload(entry).await;
                }
            }
        });
    }

    /// A permit for one more `doc:join` or `doc:update` of `socket` waiting for its ack.
    fn in_flight(&self, socket: &Socket) -> Result<OwnedSemaphorePermit, Refusal> {
        let limit = self.limits.max_in_flight_per_socket;
        socket
            .data::<InFlight>()
            .and_then(|InFlight(permits)| permits.try_acquire_owned().ok())
            .ok_or(Refusal::TooManyInFlight { limit })
    }

    /// The state of document `entry`, once no other event holds it: refused after the
    /// timeout.
    async fn lock_state<'a>(
        &self,
        entry: &'a Entry,
    ) -> Result<tokio::sync::MutexGuard<'a, EntryState>, Refusal> {
        tokio::time::timeout(self.timeout, entry.state.lock())
            .await
            .map_err(|_| Refusal::Timeout)
    }

    /// The synchronous start of `doc:join`: checks, and counts the socket in.
    fn start_join(&self, socket: &Socket, args: &Args) -> Result<Started, Refusal> {
        let id = doc_id(args)?;
        let state_vector = match binary_arg(args, "the state vector")? {
            None => StateVector::default(),
            Some(bytes) if bytes.len() > self.limits.max_update_bytes => {
                return Err(Refusal::StateVectorTooLarge {
                    size: bytes.len(),
                    limit: self.limits.max_update_bytes,
                })
            }
            Some(bytes) => decode_state_vector(&bytes)?,
        };
        let Some(Joined(joined)) = socket.data::<Joined>() else {
            // The socket is closing.
            return Err(Refusal::NotJoined(id.to_string()));
        };
        let mut joined = lock(&joined);
        if joined.closed {
            return Err(Refusal::NotJoined(id.to_string()));
        }
        if joined.docs.contains_key(&id) {
            return Ok((id, state_vector, None));
        }
        if joined.docs.len() >= self.limits.max_documents_per_socket {
            return Err(Refusal::TooManyDocuments {
                limit: self.limits.max_documents_per_socket,
            });
        }
        let entry = self.acquire(&id)?;
        joined.docs.insert(id.clone(), Announced::new());
        Ok((id, state_vector, Some(entry)))
    }

    /// The rest of `doc:join`: loads the document if needed, joins the room, syncs. If it
    /// fails, the membership this join counted (`acquired`) is undone.
    async fn finish_join(
        self: &Arc<Self>,
        socket: &Socket,
        id: &Arc<str>,
        state_vector: &StateVector,
        acquired: Option<Arc<Entry>>,
    ) -> Result<Args, Refusal> {
        let counted = acquired.is_some();
        let result = self.sync(socket, id, state_vector, acquired).await;
        if result.is_err() && counted {
            // Unless a leave or the disconnect undid it already.
            if let Some(entry) = self.leave(socket, id) {
                self.unload(entry).await;
            }
        }
        result
    }

    /// The sync of `doc:join`, under the document's lock: loads it if needed, puts the socket
    /// in its room, and answers with what the client lacks and the server's state vector.
    async fn sync(
        &self,
        socket: &Socket,
        id: &Arc<str>,
        state_vector: &StateVector,
        acquired: Option<Arc<Entry>>,
    ) -> Result<Args, Refusal> {
        let entry = acquired
            .or_else(|| self.entry(id))
            .ok_or_else(|| Refusal::NotJoined(id.to_string()))?;
        let mut state = self.lock_state(&entry).await?;
        self.ensure_loaded(&entry.id, &mut state, socket).await?;
        let doc = state.doc.clone().ok_or(Refusal::Internal)?;
        // Joined the room under the document's lock: every later update is relayed to the
        // socket, every earlier one is in the sync below. Not if it left meanwhile.
        if is_member(socket, id) {
            socket
                .try_join(room_of(id))
                .map_err(|error| Refusal::Room(error.to_string()))?;
        }
        // Encoded on an apply thread: for a new client, this is the whole document (up to
        // `MAX_DOCUMENT_BYTES`), which must not stall an async worker. Still under the
        // document's lock, so that no update is missed or sent twice.
        let state_vector = state_vector.clone();
        let (update, server_vector) = self
            .deep
            .run(move || {
                let txn = doc.transact();
                (
                    txn.encode_state_as_update_v1(&state_vector),
                    txn.state_vector().encode_v1(),
                )
            })
            .await
            .map_err(|error| match error {
                DeepError::Busy => Refusal::Busy,
                DeepError::Timeout => Refusal::Timeout,
                DeepError::Stopped => Refusal::Internal,
            })?;
        debug!(sid = &**socket.id(), doc = &**id, "document joined");
        Args::one(&JoinAck {
            update: Binary::from(update),
            state_vector: Binary::from(server_vector),
        })
        .map_err(|_| Refusal::Internal)
    }

    /// Loads document `id` from the store into `state` if it is not in memory (a new entry,
    /// or a copy dropped after a store failure), then syncs it with the other servers of the
    /// cluster (`socket`'s namespace's).
    async fn ensure_loaded(
        &self,
        id: &str,
        state: &mut EntryState,
        socket: &Socket,
    ) -> Result<(), Refusal> {
        if state.doc.is_none() {
            if let Err(error) = self.load(id, state).await {
                warn!(doc = id, %error, "cannot load the document");
                return Err(Refusal::from(&error));
            }
            state.namespace = Some(socket.namespace());
            self.sync_from_peers(id, state).await;
        }
        Ok(())
    }

    /// `doc:update`: checks, applies, stores, relays.
    async fn update(&self, socket: &Socket, args: &Args) -> Result<Args, Refusal> {
        let id = doc_id(args)?;
        let bytes = binary_arg(args, "the update")?.ok_or(Refusal::NotBinary("the update"))?;
        let limits = &self.limits;
        if bytes.len() > limits.max_update_bytes {
            return Err(Refusal::UpdateTooLarge {
                size: bytes.len(),
                limit: limits.max_update_bytes,
            });
        }
        if !is_member(socket, &id) {
            return Err(Refusal::NotJoined(id.to_string()));
        }
        // Decoded once here (the update itself is not `Send`, so it cannot wait for the lock).
        drop(decode_update(&bytes)?);
        let entry = self
            .entry(&id)
            .ok_or_else(|| Refusal::NotJoined(id.to_string()))?;
        let mut state = self.lock_state(&entry).await?;
        self.ensure_loaded(&entry.id, &mut state, socket).await?;
        let panic_inside = self.panic_next_apply.swap(false, Ordering::Relaxed);
        let Some(diff) = self
            .apply_and_store(&entry.id, &mut state, bytes, panic_inside)
            .await?
        else {
            // Nothing new: nothing to store or relay.
            return Ok(ok_args());
        };
        // What changed is relayed (not what was sent), under the document's lock, so that a
        // joiner gets each change either in its sync or relayed; and sent to the other
        // servers, under the lock too, in the order the changes were made.
        relay(
            socket,
            &id,
            events::UPDATE,
            diff.clone(),
            Delivery::Reliable,
        );
        self.to_peers(&socket.namespace(), &id, diff).await;
        if state.unfolded >= COMPACT_EVERY {
            self.compact(&entry.id, &mut state).await;
        }
        drop(state);
        Ok(ok_args())
    }

    /// Sends what an update changed in document `id` to the other servers of the cluster
    /// (nothing without a cluster adapter). A failure is logged: those servers' copies stay
    /// behind until they load the document again.
    async fn to_peers(&self, namespace: &Namespace, id: &str, diff: Vec<u8>) {
        let args = match Args::one(id).and_then(|args| args.push(&Binary::from(diff))) {
            Ok(args) => args,
            Err(error) => {
                warn!(doc = id, %error, "an update not sent to the other servers");
                return;
            }
        };
        if let Err(error) = namespace.server_side_emit(events::PEER_UPDATE, args).await {
            warn!(doc = id, %error, "an update not sent to the other servers");
        }
    }

    /// Applies `bytes` (an update: a client's, a peer's, or a peer's answer to a sync) to the
    /// document loaded in `state`, with every check (the size limit, the scanner, missing
    /// dependencies), and stores what it changed: that (`None` if it changed nothing). On a
    /// refusal, the copy goes back to what the store has (or is given up).
    async fn apply_and_store(
        &self,
        id: &Arc<str>,
        state: &mut EntryState,
        bytes: Bytes,
        panic_inside: bool,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let limits = &self.limits;
        let doc = state.doc.clone().ok_or(Refusal::Internal)?;
        // Checked against the size limit and applied on a thread with a large stack (see
        // `crate::deep`): near the limit, the check encodes the whole document, which must not
        // stall an async worker.
        let job = UpdateJob {
            bytes,
            size: state.size,
            limit: limits.max_document_bytes,
            panic_inside,
        };
        let applied = self.deep.run(move || job.run(&doc)).await;
        let (diff, exact) = match applied {
            Ok(Ok((Applied::Changed(diff), exact))) => (diff, exact),
            Ok(Ok((Applied::Unchanged, _))) => return Ok(None),
            Ok(Ok((Applied::Incomplete { partial }, _))) => {
                // Its pending part was dropped; what it did apply is undone.
                if partial {
                    self.reload(id, state).await;
                }
                return Err(Refusal::MissingDependencies);
            }
            Ok(Ok((Applied::Refused, _))) => {
                // It may have been applied in part: back to what the store has.
                self.reload(id, state).await;
                return Err(Refusal::MalformedUpdate);
            }
            Ok(Ok((Applied::Poisoned, _))) => {
                // The copy may be half integrated (and stays locked): given up, never read
                // again. The next event (a join to sync) loads the document from the store.
                state.doc = None;
                return Err(Refusal::Internal);
            }
            Ok(Err(refusal)) => return Err(refusal),
            Err(DeepError::Busy) => return Err(Refusal::Busy),
            Err(error) => {
                // It may still be applied (or have panicked half way): the copy is dropped,
                // the next event loads the document again.
                warn!(
                    doc = &**id,
                    ?error,
                    "an update was not applied in time; the document is reloaded on the next event"
                );
                state.doc = None;
                return Err(match error {
                    DeepError::Timeout => Refusal::Timeout,
                    _ => Refusal::Internal,
                });
            }
        };
        let diff_len = diff.len();
        match self.store.append(id, diff.clone()).await {
            Ok(seq) => state.last_seq = seq,
            Err(error) => {
                warn!(doc = &**id, %error, "cannot store an update; the document goes back to what the store has");
                // After an unknown outcome, the store's answer to the reload comes after the
                // write's: the copy has the update if it was stored.
                self.reload(id, state).await;
                return Err(match error {
                    StoreError::Unanswered(_) => Refusal::OutcomeUnknown,
                    _ => Refusal::from(&error),
                });
            }
        }
        state.unfolded += 1;
        state.size = exact.unwrap_or_else(|| state.size.saturating_add(diff_len));
        Ok(Some(diff))
    }

    /// A peer's [`events::PEER_UPDATE`]: applied (with every check), stored and relayed to
    /// this server's sockets if the document is loaded here, never sent on; ignored if not
    /// (the load syncs from peers). One that depends on changes this server lacks makes it
    /// sync the document from the peers.
    async fn peer_update(self: Arc<Self>, args: Args) {
        let Ok(id) = doc_id(&args) else {
            debug!("a peer's update with a bad document id ignored");
            return;
        };
        let Some(bytes) = peer_bytes(&args, 1, self.limits.max_update_bytes) else {
            warn!(
                doc = &*id,
                "a peer's update is not binary or too large; ignored"
            );
            return;
        };
        if decode_update(&bytes).is_err() {
            warn!(doc = &*id, "a peer's update is malformed; ignored");
            return;
        }
        let Some(entry) = self.entry(&id) else {
            return;
        };
        let Ok(mut state) = self.lock_state(&entry).await else {
            warn!(
                doc = &*id,
                "a peer's update dropped: the document stayed busy; this copy is behind until it syncs"
            );
            return;
        };
        let (true, Some(namespace)) = (state.doc.is_some(), state.namespace.clone()) else {
            // Not loaded (or given up): the next load syncs from the peers.
            return;
        };
        match self
            .apply_and_store(&entry.id, &mut state, bytes, false)
            .await
        {
            Ok(Some(diff)) => {
                relay_all(&namespace, &id, diff);
                if state.unfolded >= COMPACT_EVERY {
                    self.compact(&entry.id, &mut state).await;
                }
            }
            Ok(None) => {}
            Err(Refusal::MissingDependencies) => {
                info!(
                    doc = &*id,
                    "a peer's update depends on changes this server lacks: syncing from the peers"
                );
                if state.doc.is_some() {
                    self.sync_from_peers(&entry.id, &mut state).await;
                }
            }
            Err(refusal) => {
                warn!(doc = &*id, error = %refusal, "a peer's update refused");
            }
        }
    }

    /// Asks the other servers for what they have of document `id` beyond the copy loaded in
    /// `state`, applies (with every check) and stores their answers, and relays what they
    /// changed to this server's sockets of the document. Waits [`Inner::peer_timeout`] at
    /// most; a failure is logged, and the copy stays what this server has.
    async fn sync_from_peers(&self, id: &str, state: &mut EntryState) {
        let (Some(doc), Some(namespace)) = (state.doc.clone(), state.namespace.clone()) else {
            return;
        };
        let Ok(vector) = doc.try_transact().map(|txn| txn.state_vector().encode_v1()) else {
            return;
        };
        let args = match Args::one(id).and_then(|args| args.push(&Binary::from(vector))) {
            Ok(args) => args,
            Err(error) => {
                warn!(doc = id, %error, "cannot ask the other servers for the document");
                return;
            }
        };
        let asked = namespace.server_side_emit_with_ack(events::PEER_SYNC, args, self.peer_timeout);
        // The adapter's own deadline, and one here too (a little later), whatever it does.
        let answers = match tokio::time::timeout(
            self.peer_timeout + Duration::from_millis(500),
            asked,
        )
        .await
        {
            Ok(Ok(answers)) => answers,
            Ok(Err(error)) => {
                warn!(doc = id, %error, "the other servers did not all answer; the document is served with what this server has");
                return;
            }
            Err(_) => {
                warn!(
                    doc = id,
                    "the other servers did not answer in time; the document is served with what this server has"
                );
                return;
            }
        };
        let id: Arc<str> = Arc::from(id);
        let mut brought = 0usize;
        for answer in answers {
            let Some(bytes) = peer_bytes(&answer, 0, self.limits.max_document_bytes) else {
                warn!(
                    doc = &*id,
                    "a peer's answer is not binary or too large; ignored"
                );
                continue;
            };
            match self.apply_and_store(&id, state, bytes, false).await {
                Ok(Some(diff)) => {
                    brought += 1;
                    relay_all(&namespace, &id, diff);
                }
                Ok(None) => {}
                Err(refusal) => {
                    warn!(doc = &*id, error = %refusal, "a peer's answer refused");
                }
            }
            if state.doc.is_none() {
                return;
            }
        }
        if state.unfolded >= COMPACT_EVERY {
            self.compact(&id, state).await;
        }
        debug!(
            doc = &*id,
            brought, "document synced with the other servers"
        );
    }

    /// A peer's [`events::PEER_SYNC`]: what this server's store has of the document beyond
    /// the peer's state vector (every acknowledged update is stored before it is relayed), as
    /// one binary update; `null` if the request is malformed or the store cannot answer.
    async fn answer_sync(self: Arc<Self>, args: Args) -> Args {
        let null = || Args::one(&Value::Null).unwrap_or_default();
        let Ok(id) = doc_id(&args) else {
            debug!("a peer's sync request with a bad document id ignored");
            return null();
        };
        let vector = match peer_bytes(&args, 1, self.limits.max_update_bytes)
            .map(|bytes| decode_state_vector(&bytes))
        {
            Some(Ok(vector)) => vector,
            _ => {
                warn!(
                    doc = &*id,
                    "a peer's sync request has a malformed state vector"
                );
                return null();
            }
        };
        let stored = match self.store.load(&id).await {
            Ok(stored) => stored,
            Err(error) => {
                warn!(doc = &*id, %error, "cannot answer a peer's sync request");
                return null();
            }
        };
        let name = id.to_string();
        let update = self
            .deep
            .run(move || {
                let stored: Vec<&[u8]> = stored
                    .state
                    .iter()
                    .chain(&stored.updates)
                    .map(Vec::as_slice)
                    .collect();
                rebuild(&name, &stored)
                    .map(|(doc, _)| doc.transact().encode_state_as_update_v1(&vector))
            })
            .await;
        match update {
            Ok(Ok(update)) => Args::one(&Binary::from(update)).unwrap_or_else(|_| null()),
            Ok(Err(error)) => {
                warn!(doc = &*id, %error, "cannot answer a peer's sync request");
                null()
            }
            Err(error) => {
                warn!(doc = &*id, ?error, "cannot answer a peer's sync request");
                null()
            }
        }
    }

    /// `doc:awareness`: checks and relays (volatile).
    fn awareness(&self, socket: &Socket, args: &Args) -> Result<Args, Refusal> {
        let id = doc_id(args)?;
        let bytes = binary_arg(args, "the awareness update")?
            .ok_or(Refusal::NotBinary("the awareness update"))?;
        if bytes.len() > self.limits.max_awareness_bytes {
            return Err(Refusal::AwarenessTooLarge {
                size: bytes.len(),
                limit: self.limits.max_awareness_bytes,
            });
        }
        let update = decode_awareness(&bytes)?;
        let not_joined = || Refusal::NotJoined(id.to_string());
        let Joined(joined) = socket.data::<Joined>().ok_or_else(not_joined)?;
        let doc = self.entry(&id).ok_or_else(not_joined)?;
        {
            // Locked in this order (the socket's, then the document's owners) everywhere.
            let mut joined = lock(&joined);
            let announced = joined.docs.get_mut(&id).ok_or_else(not_joined)?;
            let mut owners = lock(&doc.owners);
            let sid: &str = socket.id();
            for client in update.clients.keys() {
                let client = client.get();
                if owners.get(&client).is_some_and(|owner| &**owner != sid) {
                    return Err(Refusal::AwarenessNotOwned { client });
                }
            }
            for (client, entry) in &update.clients {
                let client = client.get();
                if &*entry.json == "null" {
                    announced.remove(&client);
                    owners.remove(&client);
                } else if announced.len() < MAX_ANNOUNCED || announced.contains_key(&client) {
                    let clock = announced.entry(client).or_insert(entry.clock);
                    *clock = (*clock).max(entry.clock);
                    owners.insert(client, Arc::from(sid));
                }
            }
        }
        relay(
            socket,
            &id,
            events::AWARENESS,
            bytes.to_vec(),
            Delivery::Volatile,
        );
        Ok(ok_args())
    }

    /// `doc:leave`: the socket closes document `id`; the entry to unload if it was the last.
    fn leave(&self, socket: &Socket, id: &Arc<str>) -> Option<Arc<Entry>> {
        let announced = socket
            .data::<Joined>()
            .and_then(|Joined(joined)| lock(&joined).docs.remove(id))?;
        if let Some(entry) = self.entry(id) {
            let mut owners = lock(&entry.owners);
            for client in announced.keys() {
                owners.remove(client);
            }
        }
        remove_awareness(socket, id, &announced);
        socket.leave(room_of(id));
        self.release(id)
    }

    /// Counts one more socket in document `id`, opening its entry if needed (refused past
    /// [`DocLimits::max_open_documents`]).
    fn acquire(&self, id: &Arc<str>) -> Result<Arc<Entry>, Refusal> {
        let mut docs = lock(&self.docs);
        let limit = self.limits.max_open_documents;
        if docs.len() >= limit && !docs.contains_key(id) {
            return Err(Refusal::ServerFull { limit });
        }
        let slot = docs.entry(id.clone()).or_insert_with(|| Slot {
            entry: Arc::new(Entry {
                id: id.clone(),
                owners: Mutex::new(HashMap::new()),
                state: tokio::sync::Mutex::new(EntryState::default()),
            }),
            members: 0,
        });
        slot.members += 1;
        Ok(slot.entry.clone())
    }

    /// Counts one socket out of document `id`: its entry, if that was the last socket.
    fn release(&self, id: &str) -> Option<Arc<Entry>> {
        let mut docs = lock(&self.docs);
        let slot = docs.get_mut(id)?;
        slot.members = slot.members.saturating_sub(1);
        (slot.members == 0).then(|| slot.entry.clone())
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        lock(&self.docs).get(id).map(|slot| slot.entry.clone())
    }

    /// Writes the merged state of a document no socket has open and forgets it, unless a
    /// socket opened it meanwhile.
    async fn unload(self: &Arc<Self>, entry: Arc<Entry>) {
        if self.try_unload(&entry).await {
            return;
        }
        // Busy past the timeout: tried again from a task of its own.
        info!(doc = &*entry.id, "document busy: unloading it later");
        let inner = self.clone();
        tokio::spawn(async move {
            for _ in 1..UNLOAD_ATTEMPTS {
                if inner.try_unload(&entry).await {
                    return;
                }
            }
            warn!(
                doc = &*entry.id,
                "document not unloaded: it stayed busy; it is unloaded when next closed"
            );
        });
    }

    /// [`Inner::unload`] once, waiting for the document's lock for the timeout at most: false
    /// if it did not get it.
    async fn try_unload(&self, entry: &Arc<Entry>) -> bool {
        let Ok(mut state) = tokio::time::timeout(self.timeout, entry.state.lock()).await else {
            return false;
        };
        if !unused(&lock(&self.docs), entry) {
            return true;
        }
        if state.doc.is_some() && state.unfolded > 0 {
            self.compact(&entry.id, &mut state).await;
        }
        // Checked again: a socket may have opened it while it was being written.
        let mut docs = lock(&self.docs);
        if unused(&docs, entry) {
            docs.remove(&entry.id);
            state.doc = None;
            state.namespace = None;
            debug!(doc = &*entry.id, "document unloaded");
        }
        true
    }

    /// Folds the stored updates into the merged state. A failure is logged: the updates stay
    /// in the store, nothing is lost.
    async fn compact(&self, id: &str, state: &mut EntryState) {
        let Some(doc) = state.doc.clone() else {
            return;
        };
        // Encoded on an apply thread (the whole document: see `sync`).
        let merged = match self.deep.run(move || encode_state(&doc)).await {
            Ok(merged) => merged,
            Err(error) => {
                warn!(
                    doc = id,
                    ?error,
                    "cannot encode the document's merged state"
                );
                return;
            }
        };
        let size = merged.len();
        match self.store.compact(id, merged, state.last_seq).await {
            Ok(()) => {
                state.unfolded = 0;
                state.size = size;
            }
            Err(error) => warn!(doc = id, %error, "cannot write the document's merged state"),
        }
    }

    /// Loads document `id` from the store into `state`.
    async fn load(&self, id: &str, state: &mut EntryState) -> Result<(), StoreError> {
        let stored = self.store.load(id).await?;
        let (last_seq, unfolded) = (stored.last_seq, stored.updates.len());
        let name = id.to_owned();
        // Applied on a thread with a large stack (see `crate::deep`).
        let (doc, size) = self
            .deep
            .run(move || {
                let stored: Vec<&[u8]> = stored
                    .state
                    .iter()
                    .chain(&stored.updates)
                    .map(Vec::as_slice)
                    .collect();
                rebuild(&name, &stored)
            })
            .await
            .map_err(|error| match error {
                DeepError::Busy => StoreError::Busy,
                DeepError::Timeout => StoreError::Timeout(self.timeout),
                DeepError::Stopped => StoreError::Stopped,
            })??;
        state.size = size;
        state.last_seq = last_seq;
        state.unfolded = unfolded;
        state.doc = Some(doc);
        Ok(())
    }

    /// Replaces the document in memory by what the store has (after an update failed half
    /// way, or could not be stored). If the store cannot answer, the copy in memory (which
    /// may hold what the store lacks) is dropped: the next event loads the document again.
    async fn reload(&self, id: &str, state: &mut EntryState) {
        if let Err(error) = self.load(id, state).await {
            warn!(doc = id, %error, "cannot reload the document; dropped until the next event loads it");
            state.doc = None;
        }
    }
}

/// How many stored updates that make `yrs` panic a load skips before giving up on the
/// document ([`StoreError::Poisoned`]): each one costs a rebuild from the start.
const MAX_POISONED_ON_LOAD: usize = 4;

/// A document built from its stored updates (the merged state first), and its encoded size;
/// on an apply thread. A stored update that does not apply is skipped (logged). One that
/// makes `yrs` panic poisons the document being built (see [`apply_with`]): the build starts
/// again from an empty document without it, [`MAX_POISONED_ON_LOAD`] times at most.
fn rebuild(name: &str, stored: &[&[u8]]) -> Result<(Doc, usize), StoreError> {
    let mut skipped: Vec<usize> = Vec::new();
    'build: loop {
        let doc = Doc::new();
        for (index, bytes) in stored.iter().enumerate() {
            if skipped.contains(&index) {
                continue;
            }
            match decode_update(bytes).map(|update| apply(&doc, update)) {
                Ok(Applied::Changed(_) | Applied::Unchanged) => {}
                Ok(Applied::Incomplete { .. }) => warn!(
                    doc = name,
                    "a stored update depends on blocks the store lacks; that part skipped"
                ),
                Ok(Applied::Refused) | Err(_) => {
                    warn!(doc = name, "a stored update does not apply; skipped")
                }
                Ok(Applied::Poisoned) => {
                    // `doc` stays locked: left alone (leaked with its transaction).
                    skipped.push(index);
                    if skipped.len() > MAX_POISONED_ON_LOAD {
                        return Err(StoreError::Poisoned);
                    }
                    warn!(
                        doc = name,
                        index, "a stored update made yrs panic; the document is rebuilt without it"
                    );
                    continue 'build;
                }
            }
        }
        let size = encode_state(&doc).len();
        return Ok((doc, size));
    }
}

/// Whether `entry` is the entry of its document in `docs` and no socket has it open.
fn unused(docs: &HashMap<Arc<str>, Slot>, entry: &Arc<Entry>) -> bool {
    docs.get(&entry.id)
        .is_some_and(|slot| slot.members == 0 && Arc::ptr_eq(&slot.entry, entry))
}

fn is_member(socket: &Socket, id: &str) -> bool {
    socket
        .data::<Joined>()
        .is_some_and(|Joined(joined)| lock(&joined).docs.contains_key(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use yrs::{
        Any, Array, ArrayPrelim, GetString, Map, MapPrelim, Text, XmlFragment, XmlTextPrelim, ID,
    };

    #[test]
    fn client_faults_are_logged_at_debug_server_failures_at_warn() {
        for refusal in [
            Refusal::BadDocId,
            Refusal::NotBinary("the update"),
            Refusal::MalformedUpdate,
            Refusal::MalformedStateVector,
            Refusal::MalformedAwareness,
            Refusal::UpdateTooLarge { size: 2, limit: 1 },
            Refusal::StateVectorTooLarge { size: 2, limit: 1 },
            Refusal::AwarenessTooLarge { size: 2, limit: 1 },
            Refusal::DocumentTooLarge { size: 2, limit: 1 },
            Refusal::TooManyDocuments { limit: 1 },
            Refusal::TooManyInFlight { limit: 1 },
            Refusal::NotJoined("a".to_owned()),
            Refusal::Room("full".to_owned()),
            Refusal::AwarenessNotOwned { client: 1 },
            Refusal::MissingDependencies,
        ] {
            assert_eq!(refusal_level(&refusal), Level::DEBUG, "{refusal}");
        }
        for refusal in [Refusal::ServerFull { limit: 1 }, Refusal::Busy] {
            assert_eq!(refusal_level(&refusal), Level::INFO, "{refusal}");
        }
        for refusal in [
            Refusal::Store,
            Refusal::Timeout,
            Refusal::OutcomeUnknown,
            Refusal::Internal,
        ] {
            assert_eq!(refusal_level(&refusal), Level::WARN, "{refusal}");
        }
    }

    /// A peer's binary argument arrives as an attachment, or as Node's Buffer JSON from the
    /// adapters that carry events as JSON; anything else, or past the limit, is refused.
    #[test]
    fn peer_bytes_are_attachments_or_buffer_json_within_the_limit() {
        let attached = Args::one(&Binary::from(vec![1u8, 2, 3])).expect("args");
        assert_eq!(
            peer_bytes(&attached, 0, 3).as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(peer_bytes(&attached, 0, 2), None, "past the limit");
        assert_eq!(peer_bytes(&attached, 1, 3), None, "missing");
        let buffer =
            |data: Value| Args::one(&json!({ "type": "Buffer", "data": data })).expect("args");
        assert_eq!(
            peer_bytes(&buffer(json!([4, 5])), 0, 2).as_deref(),
            Some(&[4u8, 5][..])
        );
        assert_eq!(peer_bytes(&buffer(json!([4, 5, 6])), 0, 2), None);
        for data in [json!([256]), json!([-1]), json!(["a"]), json!("ab")] {
            assert_eq!(peer_bytes(&buffer(data.clone()), 0, 8), None, "{data}");
        }
        let other = Args::one(&json!({ "type": "Other", "data": [1] })).expect("args");
        assert_eq!(peer_bytes(&other, 0, 8), None);
    }

    #[test]
    fn random_bytes_never_panic_and_never_change_a_document() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "kept");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..5000 {
            let len = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = decode_state_vector(&bytes);
            let _ = decode_awareness(&bytes);
            if let Ok(update) = decode_update(&bytes) {
                // Decodable garbage may apply (as pending structs); the text stays.
                let _ = apply(&doc, update);
            }
            assert_eq!(
                text.get_string(&doc.transact()),
                "kept",
                "round {round}: {bytes:?}"
            );
        }
    }

    /// Updates of clients 1, 2 and 3 (5 each, in this order): a text insert, a format and a
    /// deletion, maps, arrays and XML, a map removal and overwrite, then the client's whole
    /// state. All but the first and the last start past clock 0 (each after the previous).
    fn client_updates() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for client in 1..4u64 {
            let doc = Doc::with_client_id(client);
            {
                let mut txn = doc.transact_mut();
                let text = txn.get_or_insert_text("text");
                text.insert(&mut txn, 0, "hello world");
                out.push(txn.encode_update_v1());
            }
            {
                let mut txn = doc.transact_mut();
                let text = txn.get_or_insert_text("text");
                let bold = HashMap::from([("bold".into(), Any::Bool(true))]);
                text.format(&mut txn, 1, 4, bold);
                text.remove_range(&mut txn, 2, 3);
                out.push(txn.encode_update_v1());
            }
            {
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
                out.push(txn.encode_update_v1());
            }
            {
                let mut txn = doc.transact_mut();
                let map = txn.get_or_insert_map("map");
                map.remove(&mut txn, "sub");
                map.insert(&mut txn, "a", 2);
                out.push(txn.encode_update_v1());
            }
            out.push(encode_state(&doc));
        }
        out
    }

    /// Scans, decodes and applies `bytes` (as the service does).
    fn scan_and_apply(doc: &Doc, bytes: &[u8]) -> Result<Applied, Refusal> {
        decode_update(bytes).map(|update| apply(doc, update))
    }

    /// An insertion of "abc" by client 1, bolded: the update (the state of client 1).
    fn bold_text() -> Vec<u8> {
        let doc = Doc::with_client_id(1);
        let text = doc.get_or_insert_text("text");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "abc");
        let bold = HashMap::from([("bold".into(), Any::Bool(true))]);
        text.format(&mut txn, 0, 3, bold);
        drop(txn);
        encode_state(&doc)
    }

    /// REVIEW.md finding 2: a panic inside the update's transaction never commits it while
    /// unwinding (the commit runs observers, formatting cleanup and garbage collection over a
    /// half-integrated store; a second panic there would abort the process: this test, whose
    /// observer panics in every commit, aborted before the fix). The copy is reported poisoned
    /// and stays locked (the caller gives it up); a panic inside the commit itself is caught
    /// the same way.
    #[test]
    fn a_panic_inside_the_transaction_poisons_the_copy_and_never_aborts() {
        for panic_inside in [true, false] {
            let doc = Doc::new();
            doc.observe_update_v1("test", |_, _| panic!("an observer panicking in the commit"))
                .expect("observed");
            let update = decode_update(&bold_text()).expect("decodes");
            assert_eq!(
                apply_with(&doc, update, panic_inside),
                Applied::Poisoned,
                "panic inside: {panic_inside}"
            );
            assert!(
                doc.try_transact().is_err(),
                "the poisoned copy stays locked: never read again"
            );
        }
        // Without a panic, the same update applies.
        let doc = Doc::new();
        assert!(matches!(
            scan_and_apply(&doc, &bold_text()),
            Ok(Applied::Changed(_))
        ));
    }

    /// REVIEW.md finding 4: what an update changed is encoded after the commit, so the
    /// deletions of the commit's formatting cleanup are in it: on a document that cleans up
    /// formatting, a remote deletion of bolded text makes it delete the bold marker left
    /// dangling, and the diff (what is stored and relayed) says so; before the fix, the marker
    /// stayed alive in the stored updates until compaction. (The service's documents are
    /// `Doc::new()`, which in yrs 0.28 does not clean up formatting; `apply` must be right
    /// either way.)
    #[test]
    fn the_diff_holds_the_formatting_cleanups_deletions() {
        let base = bold_text();
        let server = Doc::with_options(yrs::Options {
            cleanup_formatting: true,
            ..yrs::Options::default()
        });
        assert!(matches!(
            scan_and_apply(&server, &base),
            Ok(Applied::Changed(_))
        ));
        // Client 2 deletes the text (not the markers: its own commit, local, cleans nothing).
        let client = Doc::with_client_id(2);
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&base).expect("decodes"))
            .expect("applies");
        let deletion = {
            let text = client.get_or_insert_text("text");
            let mut txn = client.transact_mut();
            text.remove_range(&mut txn, 0, 3);
            txn.encode_update_v1()
        };
        let deleted = |bytes: &[u8]| {
            let update = Update::decode_v1(bytes).expect("decodes");
            // Client 1's clocks 3 and 4: the bold markers around "abc" (the first is left
            // dangling by the deletion).
            (0..6)
                .filter(|&clock| {
                    update
                        .delete_set()
                        .contains(&ID::new(ClientID::new(1), clock))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            deleted(&deletion),
            vec![0, 1, 2],
            "the client deletes the text only"
        );
        let Ok(Applied::Changed(diff)) = scan_and_apply(&server, &deletion) else {
            panic!("the deletion changes the document");
        };
        assert_eq!(
            deleted(&diff),
            vec![0, 1, 2, 3],
            "the cleanup's deletion of the dangling marker is in the diff"
        );
    }

    /// The review's reproducer: a valid client-3 update starting at clock 13, and the mutated
    /// client-3 update from clock 0 of `tests/data/segfault-skip-hole.txt`.
    fn reproducer() -> (Vec<u8>, Vec<u8>) {
        let gap = vec![
            1, 8, 3, 13, 40, 1, 3, 109, 97, 112, 1, 97, 1, 125, 1, 39, 1, 3, 109, 97, 112, 3, 115,
            117, 98, 1, 40, 0, 3, 14, 1, 120, 1, 119, 1, 121, 8, 1, 5, 97, 114, 114, 97, 121, 1,
            119, 1, 113, 135, 3, 16, 0, 8, 0, 3, 17, 1, 125, 5, 7, 1, 3, 120, 109, 108, 6, 4, 0, 3,
            19, 1, 120, 0,
        ];
        let data = include_str!("../tests/data/segfault-skip-hole.txt");
        let (_, bytes) = data.trim().split_once(';').expect("seed;bytes");
        let covering = bytes
            .split(',')
            .map(|byte| byte.trim().parse().expect("a byte"))
            .collect();
        (gap, covering)
    }

    /// The review's reproducer (`tests/data/segfault-skip-hole.txt`): on a document with
    /// client 1's state and client 2's text insert and format, a valid client-3 update starting
    /// at clock 13 depends on nothing the document lacks, so yrs would integrate it at once
    /// behind a Skip block; a later client-3 update from clock 0 covering the hole then made yrs
    /// follow a dangling pointer (SIGSEGV). The first is now refused as incomplete (missing
    /// dependencies); what follows applies or is refused, and the process lives.
    #[test]
    fn an_update_past_the_clock_of_its_client_is_refused_so_no_skip_hole_is_made() {
        let updates = client_updates();
        let doc = Doc::new();
        for index in [4, 5, 6] {
            assert!(matches!(
                scan_and_apply(&doc, &updates[index]),
                Ok(Applied::Changed(_))
            ));
        }
        let (gap, covering) = reproducer();
        let before = encode_state(&doc);
        assert_eq!(
            scan_and_apply(&doc, &gap),
            Ok(Applied::Incomplete { partial: false })
        );
        assert_eq!(encode_state(&doc), before, "nothing of it was kept");
        let _ = scan_and_apply(&doc, &covering);
        let _ = scan_and_apply(&doc, &gap);
        let _ = encode_state(&doc);
        drop(doc);
    }

    /// Skip blocks (yrs's marker of a hole in a client's clocks) and a client listed twice (the
    /// second list may start anywhere, past a hole) are refused by the scan.
    #[test]
    fn skip_blocks_and_clients_listed_twice_are_refused() {
        // Client 1: a Skip of 2, then "a" at clock 2.
        let skip = [
            1, 2, 1, 0, 10, 2, 4, 1, 4, b't', b'e', b'x', b't', 1, b'a', 0,
        ];
        assert_eq!(decode_update(&skip).err(), Some(Refusal::MalformedUpdate));
        // Client 1 at clock 0 ("a"), then client 1 again at clock 5 ("b").
        let twice = [
            2, 1, 1, 0, 4, 1, 4, b't', b'e', b'x', b't', 1, b'a', 1, 1, 5, 4, 1, 4, b't', b'e',
            b'x', b't', 1, b'b', 0,
        ];
        assert_eq!(decode_update(&twice).err(), Some(Refusal::MalformedUpdate));
        // Each half alone is fine (the second then depends on the first's clocks).
        let once = [1, 1, 1, 0, 4, 1, 4, b't', b'e', b'x', b't', 1, b'a', 0];
        assert!(decode_update(&once).is_ok());
    }

    /// Sequences of valid and mutated updates of several clients, each scanned and applied to
    /// one document as the service does (a refused or partly applied update reloads the
    /// document from what was "stored": the changes accepted so far). A skip hole, a dangling
    /// pointer or a panic in yrs's integrate code would crash or fail this.
    #[test]
    fn sequences_of_valid_and_mutated_updates_never_crash() {
        // The clients' updates, and the review's reproducer (its update past client 3's clock
        // and its mutated update covering the hole).
        let mut updates = client_updates();
        let (gap, covering) = reproducer();
        updates.extend([gap, covering]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(12406);
        let mut outcomes = [0usize; 5];
        let mut steps = 0;
        while steps < 6000 {
            // A document with a random subset of the clients' updates (those that apply).
            let mut stored: Vec<Vec<u8>> = Vec::new();
            let load = |stored: &[Vec<u8>]| {
                let doc = Doc::new();
                for bytes in stored {
                    let _ = scan_and_apply(&doc, bytes);
                }
                doc
            };
            let mut doc = Doc::new();
            for bytes in &updates {
                if rng.gen_bool(0.4) {
                    if let Ok(Applied::Changed(diff)) = scan_and_apply(&doc, bytes) {
                        stored.push(diff);
                    }
                }
            }
            for _ in 0..rng.gen_range(1..12) {
                steps += 1;
                let mut bytes = updates[rng.gen_range(0..updates.len())].clone();
                let mutations = match rng.gen_range(0..10) {
                    // Valid, in any order: out of order, an update starts past its client's
                    // clock.
                    0..=2 => 0,
                    // Two merged (with a Skip block over a hole between them).
                    3 | 4 => {
                        let other = &updates[rng.gen_range(0..updates.len())];
                        bytes = yrs::merge_updates_v1([bytes.as_slice(), other]).expect("merges");
                        rng.gen_range(0..2)
                    }
                    _ => rng.gen_range(1..6),
                };
                for _ in 0..mutations {
                    if bytes.is_empty() {
                        break;
                    }
                    let at = rng.gen_range(0..bytes.len());
                    match rng.gen_range(0..5) {
                        0 => bytes[at] = rng.gen(),
                        1 => bytes.truncate(at),
                        2 => bytes.insert(at, rng.gen()),
                        3 => bytes[at] = bytes[at].wrapping_add(if rng.gen() { 1 } else { 255 }),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                }
                match scan_and_apply(&doc, &bytes) {
                    Err(_) => outcomes[0] += 1,
                    Ok(Applied::Changed(diff)) => {
                        outcomes[1] += 1;
                        stored.push(diff);
                    }
                    Ok(Applied::Unchanged) => outcomes[2] += 1,
                    Ok(Applied::Incomplete { partial }) => {
                        outcomes[3] += 1;
                        if partial {
                            doc = load(&stored);
                        }
                    }
                    Ok(Applied::Poisoned) => panic!("yrs panicked on {bytes:?}"),
                    Ok(Applied::Refused) => {
                        outcomes[4] += 1;
                        doc = load(&stored);
                    }
                }
                let _ = encode_state(&doc);
                let mut vector = StateVector::default();
                vector.set_max(ClientID::new(rng.gen_range(1..4)), rng.gen_range(0..20));
                let _ = doc.transact().encode_state_as_update_v1(&vector);
            }
            // What was stored loads into the same document.
            assert_eq!(encode_state(&load(&stored)).len(), encode_state(&doc).len());
        }
        // The sequences reach past the scan into yrs: updates are refused by the scan, applied,
        // found already there, and found incomplete (or starting past a client's clock).
        assert!(outcomes[..4].iter().all(|&count| count > 0), "{outcomes:?}");
    }
}
