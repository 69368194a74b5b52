//! The errors: why a client's request was refused ([`Refusal`], sent back as the error ack),
//! and why the store failed ([`StoreError`]).

/// Why a `doc:*` event was refused. Its text is the `error` of the ack `{ error }` the client
/// gets; a refused event changes nothing and reaches no other client, except
/// [`Refusal::OutcomeUnknown`] (the update may have been stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The document id is missing, not a string, or not 1 to 64 of `A-Z a-z 0-9 _ -`.
    #[error("invalid document id: expected 1 to 64 characters of A-Z, a-z, 0-9, _ and -")]
    BadDocId,
    /// A binary argument (state vector, update, awareness update) is missing or not binary.
    #[error("{0} must be binary")]
    NotBinary(&'static str),
    /// The state vector of a `doc:join` does not decode.
    #[error("malformed state vector")]
    MalformedStateVector,
    /// The update does not decode, or the document refused it.
    #[error("malformed update")]
    MalformedUpdate,
    /// The update depends on blocks (insertions, or the targets of its deletions) the
    /// server's copy lacks, or its blocks of some client start past the server's clock for
    /// that client (the blocks between are missing): nothing of it was kept. The client should sync (`doc:join` again:
    /// it sends what the server lacks) rather than resend the update alone.
    #[error("the update depends on changes the server does not have; join the document again to sync, then resend")]
    MissingDependencies,
    /// The awareness update does not decode.
    #[error("malformed awareness update")]
    MalformedAwareness,
    /// The update is bigger than the limit.
    #[error("update too large: {size} bytes (at most {limit})")]
    UpdateTooLarge {
        /// The update's size in bytes.
        size: usize,
        /// The limit, [`DocLimits::max_update_bytes`](crate::DocLimits::max_update_bytes).
        limit: usize,
    },
    /// The state vector of a `doc:join` is bigger than the limit of updates.
    #[error("state vector too large: {size} bytes (at most {limit})")]
    StateVectorTooLarge {
        /// The state vector's size in bytes.
        size: usize,
        /// The limit, [`DocLimits::max_update_bytes`](crate::DocLimits::max_update_bytes).
        limit: usize,
    },
    /// The awareness update is bigger than the limit.
    #[error("awareness update too large: {size} bytes (at most {limit})")]
    AwarenessTooLarge {
        /// The awareness update's size in bytes.
        size: usize,
        /// The limit, [`DocLimits::max_awareness_bytes`](crate::DocLimits::max_awareness_bytes).
        limit: usize,
    },
    /// Applying the update would make the document's encoded state bigger than the limit.
    #[error("document too large: the update would make it {size} bytes (at most {limit})")]
    DocumentTooLarge {
        /// The encoded state's size the update would lead to.
        size: usize,
        /// The limit, [`DocLimits::max_document_bytes`](crate::DocLimits::max_document_bytes).
        limit: usize,
    },
    /// The socket has as many documents open as it may.
    #[error("too many open documents (at most {limit})")]
    TooManyDocuments {
        /// The limit, [`DocLimits::max_documents_per_socket`](crate::DocLimits::max_documents_per_socket).
        limit: usize,
    },
    /// The server holds as many documents as it may: opening one more is refused until some
    /// are closed.
    #[error("the server has too many documents open (at most {limit}); try again later")]
    ServerFull {
        /// The limit, [`DocLimits::max_open_documents`](crate::DocLimits::max_open_documents).
        limit: usize,
    },
    /// The awareness update names an awareness client id another socket announced first in
    /// this document (and has not removed).
    #[error("awareness client {client} belongs to another socket")]
    AwarenessNotOwned {
        /// The awareness client id.
        client: u64,
    },
    /// The socket sent an update or an awareness update for a document it has not joined.
    #[error("not joined to document {0}")]
    NotJoined(String),
    /// The socket could not join the document's room (the server's room limit per socket).
    #[error("cannot join the document's room: {0}")]
    Room(String),
    /// The store failed: nothing was applied.
    #[error("the document store failed; try again")]
    Store,
    /// Something failed on the server that is neither the client's fault nor the store's
    /// (the answer could not be encoded, a document copy is missing): nothing was applied.
    #[error("internal error; try again")]
    Internal,
    /// The store's queue is full: nothing was applied.
    #[error("the document store is busy; try again later")]
    Busy,
    /// Within [`DocsConfig::timeout`](crate::DocsConfig::timeout), the document was not free
    /// (another event held it), the threads that apply updates did not answer, or the store
    /// had not started the job: nothing was applied (stored). The client may send the
    /// update again.
    #[error("timed out waiting for the document store; try again")]
    Timeout,
    /// The store started writing the update but did not answer within
    /// [`DocsConfig::timeout`](crate::DocsConfig::timeout): the update may have been stored
    /// (and will then be in the document once the store answers again), or not. It was not
    /// relayed to the document's other sockets. The client should sync (join the document
    /// again) rather than assume either.
    #[error("timed out waiting for the document store: the update may or may not have been stored; join the document again to sync")]
    OutcomeUnknown,
    /// The socket has as many `doc:join` and `doc:update` events waiting for their acks as it
    /// may: wait for them.
    #[error("too many document events in flight (at most {limit}); wait for their acks")]
    TooManyInFlight {
        /// The limit, [`DocLimits::max_in_flight_per_socket`](crate::DocLimits::max_in_flight_per_socket).
        limit: usize,
    },
}

impl From<&StoreError> for Refusal {
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::Busy => Refusal::Busy,
            // A load or compaction's outcome does not matter to the client; an append's does
            // (see `Refusal::OutcomeUnknown`, chosen where the update is stored).
            StoreError::Timeout(_) | StoreError::Unanswered(_) => Refusal::Timeout,
            StoreError::Poisoned => Refusal::Internal,
            _ => Refusal::Store,
        }
    }
}

/// Why the document store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another store (another server, or another service in this one) has the database
    /// open: one server per data directory.
    #[error(
        "the document store {path} is in use by another server (one server per data directory)"
    )]
    InUse {
        /// The database file.
        path: std::path::PathBuf,
    },
    /// A thread of the service (the store's, or one that applies updates) could not be
    /// started.
    #[error("cannot start a thread of the document service: {0}")]
    Thread(std::io::Error),
    /// The store's thread has stopped (it panicked, or the service was dropped).
    #[error("the store's thread has stopped")]
    Stopped,
    /// The store's queue is full.
    #[error("the store's queue is full")]
    Busy,
    /// A limit is out of range ([`DocLimits::check`](crate::DocLimits::check)): the
    /// service does not start.
    #[error("invalid document limits: {0}")]
    InvalidLimits(String),
    /// The store did not answer in time, and had not started the job: it was not done.
    #[error("the store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// Applying the document's stored updates made `yrs` panic, more often than a load skips
    /// such updates: the document is not loaded.
    #[error("the document's stored updates make yrs panic; it cannot be loaded")]
    Poisoned,
    /// The store started the job but did not answer in time: it may have been done (a write
    /// committed) or not.
    #[error("the store started but did not answer within {0:?}: the outcome is unknown")]
    Unanswered(std::time::Duration),
}
