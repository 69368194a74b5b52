//! Threads with large stacks for the `yrs` work that recurses as deep as a document's shared
//! types nest.
//!
//! `yrs` deletes (and garbage-collects) a nested type's children recursively: deleting the
//! outer map of a chain of maps nested N deep takes N stack frames (about 1 KiB each in a
//! debug build, less in release). A document can nest about one level per 7 bytes, so a few
//! kilobytes of updates, well within the limits, overflow an async worker's 2 MiB stack, which
//! aborts the process. Updates are applied here instead, on threads whose stack is
//! [`STACK_BYTES`] (reserved, not used, until a deep document needs it).
//!
//! The threads' queue is bounded (a job past it is refused: [`DeepError::Busy`]), and a caller
//! waits for its job's answer for a deadline at most ([`DeepError::Timeout`]); a job whose
//! caller gave up before it started is skipped.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// The stack of each thread. A nesting level takes at least 7 bytes of a document and about
/// 0.2 to 0.4 KiB of stack in release (1.1 KiB in debug): 256 MiB covers the deepest nesting
/// of a document of [`MAX_DOCUMENT_BYTES`] (4 MiB), the most
/// [`DocLimits::max_document_bytes`] may be.
///
/// [`MAX_DOCUMENT_BYTES`]: crate::MAX_DOCUMENT_BYTES
/// [`DocLimits::max_document_bytes`]: crate::DocLimits::max_document_bytes
pub(crate) const STACK_BYTES: usize = 256 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeepError {
    /// The queue is full.
    Busy,
    /// No answer within the deadline (the job may still run, unless it had not started).
    Timeout,
    /// The threads have stopped, or the job panicked.
    Stopped,
}

/// A handle on the threads; they end when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Deep {
    jobs: mpsc::SyncSender<Job>,
    threads: usize,
    timeout: Duration,
}

/// The apply threads held by [`DocService::pause_apply`](crate::DocService::pause_apply)
/// until this is dropped (tests).
#[derive(Debug)]
pub struct ApplyPause {
    _resume: Vec<mpsc::Sender<()>>,
}

impl Deep {
    /// Starts `threads` threads (at least 1); at most `queue` jobs wait for them (at least
    /// 1); callers wait `timeout` at most for an answer.
    pub(crate) fn start(threads: usize, queue: usize, timeout: Duration) -> std::io::Result<Deep> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = threads.max(1);
        for index in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("switchyard-docs-yrs-{index}"))
                .stack_size(STACK_BYTES)
                .spawn(move || loop {
                    // The lock is held only while waiting for a job, not while running it.
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Deep {
            jobs,
            threads,
            timeout,
        })
    }

    /// Runs `work` on one of the threads: refused at once when the queue is full, given up
    /// after the timeout (`work` is skipped if it had not started by then).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, DeepError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            if let Ok(result) = result {
                let _ = reply.send(result);
            }
        });
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::TrySendError::Full(_) => DeepError::Busy,
            mpsc::TrySendError::Disconnected(_) => DeepError::Stopped,
        })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| DeepError::Stopped),
            Err(_) => Err(DeepError::Timeout),
        }
    }

    /// Holds every thread until the returned guard is dropped: every job waits behind it
    /// (tests of stuck apply threads).
    pub(crate) async fn pause(&self) -> Result<ApplyPause, DeepError> {
        let mut resume = Vec::new();
        // One thread at a time, each taken before the next job is queued.
        for _ in 0..self.threads {
            let (resume_tx, paused) = mpsc::channel::<()>();
            let (started_tx, started) = oneshot::channel();
            let job: Job = Box::new(move || {
                let _ = started_tx.send(());
                // Until the guard is dropped (the sender disconnects).
                let _ = paused.recv();
            });
            self.jobs.try_send(job).map_err(|_| DeepError::Busy)?;
            resume.push(resume_tx);
            started.await.map_err(|_| DeepError::Stopped)?;
        }
        Ok(ApplyPause { _resume: resume })
    }
}
