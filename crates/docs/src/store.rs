//! The document store: one SQLite database, driven by a thread of its own so that no SQLite
//! call ever runs on (or blocks) an async worker.
//!
//! Two tables: `documents` holds each document's merged state
//! (`encode_state_as_update_v1`), and `updates` the updates acknowledged since that state was
//! written, in order. An acknowledged update is in `updates` before its ack is sent (each
//! write is its own transaction, `synchronous = FULL` in WAL mode: durable once `append`
//! returns, power loss included); a compaction folds them into the merged state in one
//! transaction. Loading a document reads its state, then its updates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::error::StoreError;

/// Where documents are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In the SQLite file `docs.sqlite3` under this directory (created if missing): documents
    /// survive a restart.
    Directory(PathBuf),
    /// In an in-memory SQLite database: documents survive being closed and reopened, but not
    /// the process.
    Memory,
}

impl Storage {
    /// The database file's name under [`Storage::Directory`].
    pub const FILE_NAME: &'static str = "docs.sqlite3";
}

/// What the store holds for one document.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The merged state, if one was written.
    pub state: Option<Vec<u8>>,
    /// The updates acknowledged since, in order.
    pub updates: Vec<Vec<u8>>,
    /// The sequence number of the last of `updates` (or 0).
    pub last_seq: i64,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle on the store's thread; cloning it shares the thread, which ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    /// The queue of the store's thread, bounded: a job past it is refused ([`StoreError::Busy`]).
    jobs: mpsc::SyncSender<Job>,
    /// How long a caller waits for the store's answer ([`StoreError::Timeout`] or
    /// [`StoreError::Unanswered`] past it).
    timeout: Duration,
    /// Set by [`Store::hold_after_append`]: the next append waits on it once committed.
    hold: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

/// A job's progress, decided once between the store's thread and its caller: the thread
/// starts it only if the caller has not given up, the caller gives up only if it has not
/// started (else its outcome is unknown).
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

/// The store's thread held by [`DocService::pause_store`](crate::DocService::pause_store)
/// until this is dropped (tests).
#[derive(Debug)]
pub struct StorePause {
    _resume: mpsc::Sender<()>,
}

impl Store {
    /// Starts the store's thread and opens the database there. At most `queue` jobs wait for
    /// the thread (at least 1); callers wait `timeout` at most for an answer.
    pub(crate) async fn open(
        storage: Storage,
        queue: usize,
        timeout: Duration,
    ) -> Result<Store, StoreError> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue.max(1));
        let (opened_tx, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("switchyard-docs-store".to_owned())
            .spawn(move || {
                let mut connection = match open_connection(&storage) {
                    Ok(connection) => {
                        let _ = opened_tx.send(Ok(()));
                        connection
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut connection);
                }
            })
            .map_err(StoreError::Thread)?;
        opened.await.map_err(|_| StoreError::Stopped)??;
        Ok(Store {
            jobs,
            timeout,
            hold: Arc::default(),
        })
    }

    /// Runs `work` on the store's thread: refused at once when the queue is full, given up
    /// after the timeout. A job whose caller gave up before it started is skipped (then the
    /// caller gets [`StoreError::Timeout`]: nothing was done); one that started and did not
    /// answer in time may have been done ([`StoreError::Unanswered`]).
    async fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let progress = Arc::new(AtomicU8::new(WAITING));
        let started = progress.clone();
        let job: Job = Box::new(move |connection| {
            let start =
                started.compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire);
            if start.is_err() {
                return;
            }
            let _ = reply.send(work(connection).map_err(StoreError::from));
        });
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Stopped,
        })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| StoreError::Stopped)?,
            Err(_) => {
                let abandon = progress.compare_exchange(
                    WAITING,
                    ABANDONED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                Err(match abandon {
                    Ok(_) => StoreError::Timeout(self.timeout),
                    Err(_) => StoreError::Unanswered(self.timeout),
                })
            }
        }
    }

    /// Makes the next append wait, once committed, until the returned guard is dropped, as a
    /// disk stuck after a write would (tests of an unknown outcome).
    pub(crate) fn hold_after_append(&self) -> StorePause {
        let (resume, held) = mpsc::channel::<()>();
        *self
            .hold
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(held);
        StorePause { _resume: resume }
    }

    /// Holds the store's thread until the returned guard is dropped: every job waits behind
    /// it (tests of a stuck store).
    pub(crate) async fn pause(&self) -> Result<StorePause, StoreError> {
        let (resume, paused) = mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let job: Job = Box::new(move |_| {
            let _ = started_tx.send(());
            // Until the guard is dropped (the sender disconnects).
            let _ = paused.recv();
        });
        self.jobs.try_send(job).map_err(|_| StoreError::Busy)?;
        started.await.map_err(|_| StoreError::Stopped)?;
        Ok(StorePause { _resume: resume })
    }

    /// What the store holds for document `id` (nothing for a new document).
    pub(crate) async fn load(&self, id: &str) -> Result<Stored, StoreError> {
        let id = id.to_owned();
        self.call(move |connection| {
            let transaction = connection.transaction()?;
            let state: Option<Vec<u8>> = transaction
                .query_row(
                    "SELECT state FROM documents WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?;
            let mut stored = Stored {
                state,
                ..Stored::default()
            };
            {
                let mut statement = transaction
                    .prepare("SELECT seq, data FROM updates WHERE doc = ?1 ORDER BY seq")?;
                let mut rows = statement.query(params![id])?;
                while let Some(row) = rows.next()? {
                    stored.last_seq = row.get(0)?;
                    stored.updates.push(row.get(1)?);
                }
            }
            transaction.commit()?;
            Ok(stored)
        })
        .await
    }

    /// Appends an update of document `id`; durable when this returns. Its sequence number.
    pub(crate) async fn append(&self, id: &str, update: Vec<u8>) -> Result<i64, StoreError> {
        let id = id.to_owned();
        let hold = self.hold.clone();
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO updates (doc, data) VALUES (?1, ?2)",
                params![id, update],
            )?;
            let held = hold
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            if let Some(held) = held {
                let _ = held.recv();
            }
            Ok(connection.last_insert_rowid())
        })
        .await
    }

    /// Replaces document `id`'s merged state by `state`, which includes its updates up to
    /// `up_to` (a sequence number), and forgets those updates, in one transaction.
    pub(crate) async fn compact(
        &self,
        id: &str,
        state: Vec<u8>,
        up_to: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "INSERT INTO documents (id, state) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                params![id, state],
            )?;
            transaction.execute(
                "DELETE FROM updates WHERE doc = ?1 AND seq <= ?2",
                params![id, up_to],
            )?;
            transaction.commit()
        })
        .await
    }
}

fn open_connection(storage: &Storage) -> Result<Connection, StoreError> {
    let connection = match storage {
        Storage::Memory => Connection::open_in_memory()?,
        Storage::Directory(directory) => {
            std::fs::create_dir_all(directory).map_err(|source| StoreError::DataDir {
                path: directory.clone(),
                source,
            })?;
            let path = database_path(directory);
            let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    StoreError::InUse { path: path.clone() }
                }
                _ => StoreError::Sqlite(error),
            };
            let connection = Connection::open(&path)?;
            // A lock held by another connection may be on its way out (a server restarting in
            // the same process): waited for a while.
            connection.busy_timeout(LOCK_WAIT)?;
            // EXCLUSIVE: the file is locked from the first transaction below until the store
            // closes, so that two servers never share a data directory. WAL: the log is kept
            // without shared memory (exclusive mode); FULL: a committed write survives a power
            // loss, not only a crash of the process.
            connection
                .pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(in_use)?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(in_use)?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection
                .execute_batch("BEGIN EXCLUSIVE; COMMIT;")
                .map_err(in_use)?;
            connection
        }
    };
    connection.busy_timeout(LOCK_WAIT)?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS documents (
             id TEXT PRIMARY KEY NOT NULL,
             state BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS updates (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             doc TEXT NOT NULL,
             data BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS updates_by_doc ON updates (doc, seq);",
    )?;
    Ok(connection)
}

/// How long opening the store waits for a lock another connection holds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The database file under `directory`.
pub(crate) fn database_path(directory: &Path) -> PathBuf {
    directory.join(Storage::FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appended_updates_survive_a_reopen_and_compaction_folds_them() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let storage = Storage::Directory(directory.path().join("nested"));
        let store = Store::open(storage.clone(), 8, Duration::from_secs(10))
            .await
            .expect("open");
        assert!(store.load("a").await.expect("load").state.is_none());
        let first = store.append("a", vec![1]).await.expect("append");
        let second = store.append("a", vec![2]).await.expect("append");
        store.append("b", vec![9]).await.expect("append");
        assert!(second > first);
        drop(store);

        let store = Store::open(storage.clone(), 8, Duration::from_secs(10))
            .await
            .expect("reopen");
        let stored = store.load("a").await.expect("load");
        assert_eq!(stored.updates, vec![vec![1], vec![2]]);
        assert_eq!(stored.last_seq, second);
        store
            .compact("a", vec![7, 7], first)
            .await
            .expect("compact");
        let stored = store.load("a").await.expect("load");
        assert_eq!(stored.state, Some(vec![7, 7]));
        assert_eq!(stored.updates, vec![vec![2]]);
        assert_eq!(store.load("b").await.expect("load").updates, vec![vec![9]]);
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_and_a_stuck_store_times_out() {
        let store = Store::open(Storage::Memory, 1, Duration::from_millis(200))
            .await
            .expect("open");
        let pause = store.pause().await.expect("paused");
        // The queue holds one job: the second is refused at once.
        let waiting = store.append("a", vec![1]);
        let refused = store.append("a", vec![2]);
        let (waiting, refused) = tokio::join!(waiting, refused);
        assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
        assert!(
            matches!(waiting, Err(StoreError::Timeout(_))),
            "{waiting:?}"
        );
        drop(pause);
        // The job given up was skipped: nothing was stored. (Busy until the thread has
        // dropped the skipped job from its queue.)
        let stored = loop {
            match store.load("a").await {
                Err(StoreError::Busy) => tokio::time::sleep(Duration::from_millis(10)).await,
                stored => break stored.expect("load"),
            }
        };
        assert!(stored.updates.is_empty());
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_directory_is_refused() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let storage = Storage::Directory(directory.path().to_owned());
        let first = Store::open(storage.clone(), 8, Duration::from_secs(10))
            .await
            .expect("open");
        first.append("a", vec![1]).await.expect("append");
        let error = Store::open(storage.clone(), 8, Duration::from_secs(10))
            .await
            .expect_err("the directory is in use");
        assert!(matches!(error, StoreError::InUse { .. }), "{error}");
        assert!(
            error.to_string().contains("in use by another server"),
            "{error}"
        );
        // Once the first is closed, the directory may be opened again.
        drop(first);
        let second = Store::open(storage, 8, Duration::from_secs(10))
            .await
            .expect("reopen");
        assert_eq!(second.load("a").await.expect("load").updates, vec![vec![1]]);
    }

    #[tokio::test]
    async fn an_unusable_directory_is_an_error() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let file = directory.path().join("file");
        std::fs::write(&file, b"not a directory").expect("write");
        let error = Store::open(
            Storage::Directory(file.join("sub")),
            8,
            Duration::from_secs(10),
        )
        .await
        .expect_err("a directory under a file");
        assert!(matches!(error, StoreError::DataDir { .. }), "{error}");
    }
}
