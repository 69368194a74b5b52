//! Threads with large stacks for the `yrs` work that recurses as deep as a document's shared
//! types nest.
//!
//! `yrs` deletes (and garbage-collects) a nested type's children recursively: deleting the
//! outer map of a chain of maps nested N deep takes N stack frames (about 1 KiB each in a
//! debug build, less in release). A document can nest about one level per 7 bytes, so a few
//! kilobytes of updates, well within the limits, overflow an async worker's 2 MiB stack, which
//! aborts the process. Updates are applied here instead, on threads whose stack is
//! [`STACK_BYTES`] (reserved, not used, until a deep document needs it).

use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

/// The stack of each thread. A nesting level takes at least 7 bytes of a document and about
/// 0.2 to 0.4 KiB of stack in release (1.1 KiB in debug): 256 MiB covers the deepest nesting
/// of a document of 4 MiB or more, well past [`DocLimits::max_document_bytes`]'s default.
///
/// [`DocLimits::max_document_bytes`]: crate::DocLimits::max_document_bytes
pub(crate) const STACK_BYTES: usize = 256 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the threads; they end when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Deep {
    jobs: mpsc::Sender<Job>,
}

impl Deep {
    /// Starts `threads` threads (at least 1).
    pub(crate) fn start(threads: usize) -> std::io::Result<Deep> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("switchyard-docs-yrs-{index}"))
                .stack_size(STACK_BYTES)
                .spawn(move || loop {
                    // The lock is held only while waiting for a job, not while running it.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Deep { jobs })
    }

    /// Runs `work` on one of the threads; `None` if they have stopped (or `work` panicked).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            if let Ok(result) = result {
                let _ = reply.send(result);
            }
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }
}
