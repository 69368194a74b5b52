//! Requests to the other servers of a cluster and the collecting of their answers, shared by
//! the adapters of every protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use switchyard::adapter::{AckReply, AdapterError, LocalAcks};
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

/// How many servers other than this one serve the namespace, counted by `count` before
/// `deadline`.
pub(crate) async fn other_servers(
    count: impl std::future::Future<Output = Result<usize, AdapterError>>,
    deadline: Instant,
) -> Result<usize, AdapterError> {
    let servers = timeout_at(deadline, count)
        .await
        .map_err(|_| AdapterError::Timeout)??;
    Ok(servers.saturating_sub(1))
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

    /// `expected` answers (of type `kind` when given; others are skipped) before `deadline`,
    /// each read by `read`; a timeout when they do not all come.
    pub(crate) async fn collect<T>(
        &mut self,
        expected: usize,
        kind: Option<u64>,
        deadline: Instant,
        mut read: impl FnMut(Message) -> T,
    ) -> Result<Vec<T>, AdapterError> {
        let mut answers = Vec::with_capacity(expected.min(1024));
        while answers.len() < expected {
            let answer = self.next(deadline).await.ok_or(AdapterError::Timeout)?;
            if kind.is_none() || answer.kind == kind {
                answers.push(read(answer.message));
            }
        }
        Ok(answers)
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
                // Whoever can publish on Redis could send acks without end.
                Some(Answer { kind: Some(kind), .. })
                    if kind == kinds.ack && remote_acks >= MAX_REMOTE_CLIENTS => {}
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

/// The socket descriptions of a fetch's answer (`sockets`), Node's or ours.
pub(crate) fn sockets_of(answer: &Message) -> Vec<switchyard::adapter::SocketInfo> {
    answer
        .field("sockets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(crate::wire::socket_from_wire)
        .collect()
}
