//! Shared [Yjs](https://yjs.dev) documents on a Switchyard namespace: clients sync with the
//! server's copy of a document (the y-protocols sync steps, over Socket.IO events with binary
//! arguments), their updates are applied there, stored in SQLite and relayed to the other
//! clients of the document, and awareness (cursors, names) is relayed without being stored.
//!
//! ```no_run
//! use switchyard::{SocketIo, SocketIoConfig};
//! use switchyard_docs::{DocService, DocsConfig, Storage};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let io = SocketIo::new(SocketIoConfig::default());
//! let config = DocsConfig {
//!     storage: Storage::Directory("./switchyard-data".into()),
//!     ..DocsConfig::default()
//! };
//! let _docs = DocService::attach(&io.of("/docs"), config).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Events
//!
//! A document is named by its id: 1 to 64 characters of `A-Z a-z 0-9 _ -`. Binary arguments
//! are Socket.IO binary attachments (`Uint8Array`/`ArrayBuffer` in JavaScript); updates and
//! state vectors are Yjs's v1 encoding (`Y.encodeStateVector`, `Y.encodeStateAsUpdate`, the
//! `update` event of a `Y.Doc`), awareness updates y-protocols' (`encodeAwarenessUpdate`).
//!
//! | event (client → server) | arguments | ack on success |
//! | --- | --- | --- |
//! | `doc:join` | `docId`, `stateVector` (binary; missing or `null`: empty) | `{ update, stateVector }`: `update` (binary) is what the server has that the state vector lacks (sync step 2: apply it), `stateVector` (binary) the server's (answer with `Y.encodeStateAsUpdate(doc, stateVector)` as a `doc:update` if it is not empty, so the server gets what it lacks: sync step 2 the other way) |
//! | `doc:update` | `docId`, `update` (binary) | `{ ok: true }`, once the update is applied and what it changed stored (at once if it changed nothing) |
//! | `doc:awareness` | `docId`, awareness update (binary) | `{ ok: true }` |
//! | `doc:leave` | `docId` | `{ ok: true }` (also when the socket had not joined it) |
//!
//! | event (server → client) | arguments | when |
//! | --- | --- | --- |
//! | `doc:update` | `docId`, `update` (binary) | what another client's update changed in a document the socket joined (apply it); an update that changes nothing (sent twice, or already there) is not relayed |
//! | `doc:awareness` | `docId`, awareness update (binary) | another client's awareness update (volatile: dropped rather than queued for a slow client), or the removal of the awareness clients of a socket that left or disconnected |
//!
//! `doc:join` puts the socket in the room `doc:<docId>`; a socket joining a document it has
//! joined already just gets the sync again. Only a socket that joined a document may send its
//! updates and awareness updates. A refused event is answered with the ack `{ error }` (the
//! text of a [`Refusal`]), logged (the client's faults at debug, the server's capacity, a
//! full server or queue, at info, the server's failures and timeouts at warn), changes
//! nothing and reaches no one else:
//!
//! - a bad document id;
//! - an update larger than [`DocLimits::max_update_bytes`], or that does not decode, or that
//!   the document refuses; before `yrs` sees them, updates, state vectors and awareness
//!   updates are checked by a bounded scanner: arrays and maps (and embedded JSON) nested
//!   deeper than 32 levels, counts or lengths larger than the bytes that follow, and clocks
//!   (or a block's or deleted range's end) past `i32::MAX` are refused as malformed;
//! - an update that depends on changes the server does not have (insertions next to, or
//!   deletions of, blocks it lacks): `yrs` would keep it pending, unseen and uncounted; the
//!   server keeps nothing of it and the client should sync (`doc:join` again sends what the
//!   server lacks);
//! - an update that would make the document's encoded state larger than
//!   [`DocLimits::max_document_bytes`];
//! - a `doc:join` past [`DocLimits::max_documents_per_socket`] open documents, or that would
//!   load a document past [`DocLimits::max_open_documents`] on the server;
//! - an awareness update larger than [`DocLimits::max_awareness_bytes`] or that does not
//!   decode;
//! - an update or awareness update for a document the socket has not joined;
//! - an awareness update naming an awareness client id that another socket announced first in
//!   the document (it owns the id until it removes it, leaves or disconnects);
//! - a store failure, a full queue of the store or of the threads that apply updates
//!   ([`DocLimits::max_store_queue`]), or no answer from the document, the store or those
//!   threads within [`DocsConfig::timeout`] (nothing applied: the client may send the
//!   update again);
//! - one exception to "a refused event changes nothing": when the store has started writing
//!   the update but does not answer within [`DocsConfig::timeout`], the outcome is unknown
//!   ([`Refusal::OutcomeUnknown`]): the update may have been stored (it is then in the
//!   document, but was not relayed). The client should join the document again to sync;
//! - more than [`DocLimits::max_in_flight_per_socket`] `doc:join` and `doc:update` events of
//!   one socket waiting for their acks.
//!
//! Awareness is relayed, never stored: a client announces its state after its join ack, and
//! the others' states reach it when they renew them (y-protocols renews every 15 s; a client
//! may also answer an awareness client id it did not know with its own state, for presence at
//! once). The server remembers only which awareness client ids (and clocks) each socket
//! announced in each document (16 at most): when the socket leaves the document or
//! disconnects, the others get a `doc:awareness` removing them (y-protocols'
//! `removeAwarenessStates`: state `null`, clock + 1), so a departed client's cursor goes away at
//! once rather than after y-protocols' 30 s timeout.
//!
//! # Memory and storage
//!
//! The server holds a document (a `yrs::Doc`) while at least one socket has it open, and
//! unloads it when the last one leaves or disconnects, after writing its merged state. The
//! store ([`Storage`]) is one SQLite database, on a thread of its own: no SQLite call runs on
//! an async worker. **An acknowledged update is durable**: it is appended to the store (a
//! committed SQLite transaction, `synchronous = FULL`) before it is relayed and acked; every
//! 256 updates, and when the document is unloaded, the updates are folded into the document's
//! merged state (`encode_state_as_update_v1`). A crash loses only updates not yet acked
//! (their senders get no ack, and Yjs clients resend their whole state on their next join).
//! Each update costs one SQLite commit, made while the document's other updates wait.
//!
//! Updates are applied, documents loaded, and whole documents encoded (a join's sync, the
//! size check near the limit, the merged state), on two threads with 256 MiB stacks rather than
//! on async workers: `yrs` deletes nested types recursively (one stack frame per level), and a
//! document of a few kilobytes can nest deep enough to overflow a worker's stack. The stacks
//! cover documents of [`MAX_DOCUMENT_BYTES`] (4 MiB), the most
//! [`DocLimits::max_document_bytes`] may be. Their queue holds
//! [`DocLimits::max_store_queue`] jobs, and each wait (for a document another event holds,
//! for these threads, for the store) lasts [`DocsConfig::timeout`] at most.
//!
//! A panic in `yrs` while it applies an update never aborts the server, and never leaves a
//! half-applied copy in use: the update's transaction is not committed while unwinding (it is
//! leaked, with the copy it locks), the update is refused ([`Refusal::Internal`]: nothing
//! stored or relayed), and the copy is given up: the next event on the document loads it
//! again from the store. The crate does not build with `panic = "abort"`.
//!
//! With [`Storage::Directory`] the database file is locked while the store is open: a second
//! store on the same directory (another server) fails to open with [`StoreError::InUse`].
//!
//! # Clusters
//!
//! With a cluster adapter (Redis), the servers of a cluster keep a document converging with
//! the namespace's server-side events (which reach the other servers, never clients):
//!
//! - once a client's update is applied and stored, what it changed is relayed to this
//!   server's sockets of the document and sent to the other servers
//!   ([`events::PEER_UPDATE`]). A server that has the document loaded applies it with the
//!   same checks as a client's (the size limit, the bounded scanner, the refusal of missing
//!   dependencies: a peer is not trusted more than a client), stores it, and relays it to its
//!   own sockets; it never sends a peer's update on. A server that does not have the
//!   document loaded ignores it: it syncs when it loads it;
//! - a server loading a document (its first join there, or after its copy was given up)
//!   asks the other servers ([`events::PEER_SYNC`], waiting [`DocsConfig::peer_timeout`] at
//!   most) for what they have beyond its state vector, and applies (and stores) their answers
//!   before answering the join. A server answers from its store (every acknowledged update
//!   is there), whether or not it has the document loaded. A missing or slow server: the
//!   document is served with what this server has (logged at warn);
//! - a peer's update that depends on changes this server lacks is refused as a client's is,
//!   and the server then syncs the document from the other servers the same way.
//!
//! Each server keeps its own store: **a document's durability is per server**, plus this
//! sync at load. A peer's update lost on the way (Redis pub/sub does not queue for a server
//! that is disconnected from it, and a server whose document was busy past
//! [`DocsConfig::timeout`] drops it, logged) leaves that server's copy behind until it loads
//! the document again or gets a later update depending on it. Awareness stays per server.
//!
//! Not here yet: there is no access control per document (any socket admitted to the
//! namespace may open any document: put an auth middleware on the namespace).

// A panic in `yrs` while applying a client's update must be caught (the document's copy is
// given up and reloaded from the store: see `service::apply_with`), never abort the server:
// that needs unwinding.
#[cfg(panic = "abort")]
compile_error!(
    "switchyard-docs needs panic = \"unwind\": a panic in yrs must not abort the server"
);

mod deep;
mod error;
mod scan;
mod service;
mod store;

pub use deep::ApplyPause;
pub use error::{Refusal, StoreError};
pub use service::DocService;
pub use store::{Storage, StorePause};

/// The most [`DocLimits::max_document_bytes`] may be: 4 MiB. Updates are applied on threads
/// with 256 MiB stacks (`yrs` deletes nested types recursively, one stack frame per level),
/// which cover the deepest nesting of a document this large; [`DocService::attach`] refuses
/// a larger limit ([`StoreError::InvalidLimits`]).
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// The limits of the document service, each refused with an error ack past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocLimits {
    /// The largest update (`doc:update`), in bytes. Default 256 KiB.
    pub max_update_bytes: usize,
    /// The largest a document's encoded state (`encode_state_as_update_v1`) may become, in
    /// bytes; an update that would take it past this is refused. The join ack carries up to
    /// this much, so keep it under the server's outgoing buffer per connection. At most
    /// [`MAX_DOCUMENT_BYTES`] (4 MiB: what the apply threads' stacks cover). Default 512 KiB.
    pub max_document_bytes: usize,
    /// How many documents one socket may have open at once. Default 8.
    pub max_documents_per_socket: usize,
    /// The largest awareness update (`doc:awareness`), in bytes. Default 8 KiB.
    pub max_awareness_bytes: usize,
    /// How many documents the server holds in memory at once, all sockets together: a
    /// `doc:join` that would load one more is refused. Default 1,000.
    pub max_open_documents: usize,
    /// How many `doc:join` and `doc:update` events one socket may have waiting for their acks
    /// at once; past it they are refused. Default 4.
    pub max_in_flight_per_socket: usize,
    /// How many jobs (loads, updates, compactions) may wait for the store's thread, and how
    /// many (updates and loads to apply) for the threads that apply updates; past it the event
    /// is refused as busy. Default 256.
    pub max_store_queue: usize,
}

impl DocLimits {
    /// Checks the limits [`DocService::attach`] would refuse: `max_document_bytes` past
    /// [`MAX_DOCUMENT_BYTES`].
    pub fn check(&self) -> Result<(), StoreError> {
        if self.max_document_bytes > MAX_DOCUMENT_BYTES {
            return Err(StoreError::InvalidLimits(format!(
                "max_document_bytes is {}, at most {MAX_DOCUMENT_BYTES} (4 MiB: what the \
                 stacks of the threads that apply updates cover)",
                self.max_document_bytes
            )));
        }
        Ok(())
    }
}

impl Default for DocLimits {
    fn default() -> Self {
        DocLimits {
            max_update_bytes: 256 * 1024,
            max_document_bytes: 512 * 1024,
            max_documents_per_socket: 8,
            max_awareness_bytes: 8 * 1024,
            max_open_documents: 1000,
            max_in_flight_per_socket: 4,
            max_store_queue: 256,
        }
    }
}

/// The document service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsConfig {
    /// Where documents are kept. Default: [`Storage::Memory`].
    pub storage: Storage,
    /// The limits.
    pub limits: DocLimits,
    /// How long an event waits, at each step, before it is refused (`timed out …`): for a
    /// document (another event holding it), for the store's answer, and for the threads that
    /// apply updates; unloading a closed document waits as long for it (then tries again
    /// later). Default 10 s.
    pub timeout: std::time::Duration,
    /// How long a server loading a document waits for the other servers of the cluster to
    /// answer what they have of it (see [the crate's docs](crate#clusters)); past it, the
    /// document is served with what this server has (logged). Keep it under
    /// [`DocsConfig::timeout`]: a join waits for it under the document's lock. Default 5 s.
    pub peer_timeout: std::time::Duration,
}

impl Default for DocsConfig {
    fn default() -> Self {
        DocsConfig {
            storage: Storage::Memory,
            limits: DocLimits::default(),
            timeout: std::time::Duration::from_secs(10),
            peer_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// The events of the service, as constants for clients and tests.
pub mod events {
    /// Client → server: open a document and sync with the server's copy.
    pub const JOIN: &str = "doc:join";
    /// Both ways: an update of a document.
    pub const UPDATE: &str = "doc:update";
    /// Both ways: an awareness update (relayed, never stored).
    pub const AWARENESS: &str = "doc:awareness";
    /// Client → server: close a document.
    pub const LEAVE: &str = "doc:leave";
    /// Server → the other servers (server-side event): what a client's update changed in a
    /// document (`docId`, `update`).
    pub const PEER_UPDATE: &str = "docs:update";
    /// Server → the other servers (server-side event with an ack): what they have of a
    /// document beyond a state vector (`docId`, `stateVector`; answered with an update).
    pub const PEER_SYNC: &str = "docs:sync";
}

/// Whether `id` is a valid document id: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn is_valid_doc_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// The room of document `id`'s sockets: `doc:<id>`.
pub fn room_of(id: &str) -> String {
    format!("doc:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_are_short_plain_names() {
        for id in ["a", "notes-1", "A_b-9", &"x".repeat(64)] {
            assert!(is_valid_doc_id(id), "{id}");
        }
        for id in ["", "a b", "a/b", "é", "doc:1", &"x".repeat(65), "a\0"] {
            assert!(!is_valid_doc_id(id), "{id:?}");
        }
    }
}
