//! Requests to the other servers of a cluster and the collecting of their answers, shared by
//! the adapters of every protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use switchyard::adapter::{AckReply, LocalAcks};
use switchyard::AckError;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use crate::wire::Message;

/// The longest another server may have our clients' acks waited for.
pub(crate) const MAX_REMOTE_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The most acks a broadcast waits for from the other servers: whoever can publish on Redis
/// could claim any count.
pub(crate) const MAX_REMOTE_CLIENTS: usize = 1 << 20;

/// `timeout` from now; far away (not a panic) for a huge one.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// An answer to one of our requests: its type, and the message that carries its fields.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) kind: Option<u64>,
    pub(crate) message: Message,
}

/// Our requests waiting for answers, by request id.
#[derive(Default)]
pub(crate) struct Requests {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Answer>>>,
}

impl Requests {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Answer>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether request `id` is one of ours still waiting.
    pub(crate) fn is_ours(&self, id: Option<&str>) -> bool {
        id.is_some_and(|id| self.lock().contains_key(id))
    }

    /// Hands `answer` to request `id`, if it still waits.
    pub(crate) fn answer(&self, id: &str, answer: Answer) {
        match self.lock().get(id) {
            Some(waiting) => {
                let _ = waiting.send(answer);
            }
            None => debug!(
                request_id = id,
                "answer to a request that is not ours (or is over)"
            ),
        }
    }
}

/// A request of ours waiting for answers; forgotten when dropped, on every path.
pub(crate) struct Pending {
    requests: Arc<Requests>,
    pub(crate) id: String,
    answers: mpsc::UnboundedReceiver<Answer>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.requests.lock().remove(&self.id);
    }
}

impl Pending {
    /// Registers a request under the fresh id `id`.
    pub(crate) fn new(requests: &Arc<Requests>, id: String) -> Pending {
        let (sender, answers) = mpsc::unbounded_channel();
        requests.lock().insert(id.clone(), sender);
        Pending {
            requests: requests.clone(),
            id,
            answers,
        }
    }

    /// The next answer before `deadline`.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Option<Answer> {
        timeout_at(deadline, self.answers.recv())
            .await
            .ok()
            .flatten()
    }
}

/// The answer types of a broadcast with acks in one protocol.
pub(crate) struct AckKinds {
    /// A server's count of the clients it sent the packet to (`clientCount`).
    pub(crate) client_count: u64,
    /// One client's acknowledgement (its first argument in `packet`).
    pub(crate) ack: u64,
}

/// Collects the answers to a broadcast with acks until `deadline`: the local clients' and,
/// from `servers - 1` other servers, a client count each and then as many acks. A remote
/// client that did not answer in time gets a timed-out entry.
pub(crate) async fn collect_broadcast_acks(
    mut local: LocalAcks,
    mut pending: Pending,
    servers: usize,
    deadline: Instant,
    kinds: AckKinds,
) -> Vec<AckReply> {
    let mut replies = Vec::with_capacity(local.count);
    let (mut local_done, mut reports, mut expected_acks, mut remote_acks) =
        (local.count == 0, 0usize, 0usize, 0usize);
    let remote_done = |reports: usize, expected: usize, received: usize| {
        reports + 1 >= servers && received >= expected
    };
    while !(local_done && remote_done(reports, expected_acks, remote_acks)) {
        tokio::select! {
            reply = local.replies.recv(), if !local_done => match reply {
                Some(reply) => replies.push(reply),
                None => local_done = true,
            },
            answer = pending.next(deadline) => match answer {
                Some(Answer { kind: Some(kind), message }) if kind == kinds.client_count => {
                    reports += 1;
                    let count = message
                        .field("clientCount")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    expected_acks = expected_acks
                        .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
                        .min(MAX_REMOTE_CLIENTS);
                }
                Some(Answer { kind: Some(kind), message }) if kind == kinds.ack => {
                    remote_acks += 1;
                    let args = message.argument("packet");
                    replies.push(AckReply { sid: None, result: Ok(args) });
                }
                Some(_) => {}
                // Past the deadline: what has not answered has timed out.
                None => break,
            },
        }
    }
    // Local clients time out by themselves; count the remote ones that did not answer.
    if !local_done {
        while let Some(reply) = local.replies.recv().await {
            replies.push(reply);
        }
    }
    for _ in remote_acks..expected_acks {
        replies.push(AckReply {
            sid: None,
            result: Err(AckError::Timeout),
        });
    }
    replies
}
