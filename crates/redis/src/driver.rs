//! One server's link to Redis, shared by the adapters of all its namespaces: a connection for
//! commands and publishes, a RESP3 connection for subscriptions, one task that publishes in
//! order, one that dispatches what arrives, one that watches the link.
//!
//! On a Redis Cluster ([`Driver::connect_cluster`]) the link is one cluster connection that
//! follows the slots, and carries sharded pub/sub: `SPUBLISH` and `SSUBSCRIBE`, each channel
//! served by the node that owns its slot.
//!
//! Nothing here waits on Redis on behalf of a caller that must not wait: publishes go through
//! a bounded queue (full: the message is dropped and counted), incoming messages through
//! another (the same), and each state change of the link is logged once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture as RedisBoxFuture};
use redis::aio::{
    AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig, SendError,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::RedisAdapterError;

/// How long a connection attempt to Redis may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the link is checked (and, while Redis is away, a reconnection tried).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The most publishes sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 64;

/// A message to publish.
pub(crate) struct Outgoing {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
}

/// What receives the messages of a subscription.
pub(crate) trait Subscriber: Send + Sync + 'static {
    /// A message on a channel subscribed with [`Subscription::channels`].
    fn on_message(self: Arc<Self>, channel: &str, payload: Bytes);
    /// A message matching a pattern subscribed with [`Subscription::pattern`].
    fn on_pattern_message(self: Arc<Self>, channel: &str, payload: Bytes);
}

/// The channels and pattern one namespace's adapter listens to.
///
/// Whether Redis holds it is kept as two generations rather than one flag: Redis can drop a
/// subscription (a node unsubscribes a shard channel whose slot moved away, the link fails)
/// while a subscribe of ours is on its way, and that subscribe then reaches the node that is
/// losing the slot. With a flag, the subscribe's late "done" would overwrite the "dropped"
/// that came in meanwhile, and nothing would subscribe again. A subscribe confirms only the
/// generation it started in ([`Subscription::attempt`], [`Subscription::confirm`]); a drop
/// ([`Subscription::unconfirm`]) starts a new one, which only a subscribe sent after it
/// confirms.
pub(crate) struct Subscription {
    pub(crate) pattern: Option<String>,
    pub(crate) channels: Vec<String>,
    pub(crate) subscriber: Weak<dyn Subscriber>,
    /// Bumped each time Redis may have dropped the subscription (starts at 1).
    generation: AtomicU64,
    /// The newest generation a subscribe that succeeded started in (0: none yet). The
    /// subscription is confirmed while this is the current generation; else the watcher
    /// subscribes again.
    confirmed: AtomicU64,
}

impl Subscription {
    pub(crate) fn new(
        pattern: Option<String>,
        channels: Vec<String>,
        subscriber: Weak<dyn Subscriber>,
    ) -> Arc<Subscription> {
        Arc::new(Subscription {
            pattern,
            channels,
            subscriber,
            generation: AtomicU64::new(1),
            confirmed: AtomicU64::new(0),
        })
    }

    /// A subscribe is about to be sent: the generation it confirms if it succeeds. Taken before
    /// the commands go out, so that a drop Redis reports while they are on their way is newer.
    fn attempt(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The subscribe that started in `generation` succeeded: confirmed, unless Redis dropped
    /// the subscription since it started.
    fn confirm(&self, generation: u64) {
        self.confirmed.fetch_max(generation, Ordering::AcqRel);
    }

    /// Redis may no longer hold the subscription: the watcher sends it again, and no subscribe
    /// already on its way can confirm it.
    fn unconfirm(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a subscribe sent after the last drop succeeded.
    fn is_confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
    }
}

/// A link state that logs its changes, not every failure.
pub(crate) struct LinkState {
    what: &'static str,
    up: AtomicBool,
    /// Messages dropped since the link went down (or the queue filled).
    dropped: AtomicU64,
}

impl LinkState {
    pub(crate) fn new(what: &'static str) -> LinkState {
        LinkState {
            what,
            up: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(link = self.what, %error, "Redis link down; cross-server messages are dropped until it is back, local delivery goes on");
        }
    }

    /// The link works: logs its return, or the messages a full buffer dropped meanwhile, and
    /// starts a new count.
    pub(crate) fn recovered(&self) {
        let was_up = self.up.swap(true, Ordering::AcqRel);
        let dropped = self.dropped.swap(0, Ordering::AcqRel);
        if !was_up {
            info!(link = self.what, dropped, "Redis link back");
        } else if dropped > 0 {
            warn!(
                link = self.what,
                dropped, "messages dropped while the buffer was full"
            );
        }
    }

    /// Whether the link worked last time it was tried.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn drop_one(&self, reason: &str) {
        let before = self.dropped.fetch_add(1, Ordering::AcqRel);
        if before == 0 {
            warn!(
                link = self.what,
                reason, "message dropped (counted until the link is healthy again)"
            );
        }
    }
}

/// Options of the link.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    pub(crate) publish_buffer: usize,
    pub(crate) receive_buffer: usize,
}

/// A pattern or channel to unsubscribe from once Redis answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Stale {
    Pattern(String),
    Channel(String),
}

/// The link to Redis of one server.
pub(crate) struct Driver {
    commands: Link,
    subscriber: Link,
    outbox: mpsc::Sender<Outgoing>,
    /// Pattern or channel to the subscriptions that want it (several when servers share the
    /// link).
    routes: Mutex<HashMap<String, Vec<Arc<Subscription>>>>,
    /// Subscribing and unsubscribing one at a time.
    turns: tokio::sync::Mutex<()>,
    /// Patterns and channels no longer routed whose unsubscribe failed (Redis away): the client
    /// would subscribe to them again after a reconnection, so the watcher unsubscribes them.
    stale: Mutex<HashSet<Stale>>,
    publish_state: LinkState,
    receive_state: Arc<LinkState>,
    /// Raised when a push that says Redis dropped subscriptions could not be queued (see
    /// [`PushQueue`]): the watcher then sends every subscription again.
    drops_lost: Arc<AtomicBool>,
}

/// What the connections hand their push messages to: a bounded queue, read by the dispatch
/// task. It never blocks the connection: a full queue drops the message and counts it. A
/// dropped push that says Redis dropped subscriptions of ours (a node unsubscribed a shard
/// channel, a connection closed) raises a flag instead of being lost with the rest: the
/// watcher then sends every subscription again, since it cannot know which ones went.
struct PushQueue {
    sender: mpsc::Sender<PushInfo>,
    state: Arc<LinkState>,
    drops_lost: Arc<AtomicBool>,
}

/// The reading end of a [`PushQueue`], for [`Driver::start`].
struct Pushes {
    queue: mpsc::Receiver<PushInfo>,
    state: Arc<LinkState>,
    drops_lost: Arc<AtomicBool>,
}

impl PushQueue {
    /// A queue of `capacity` pushes (at least one).
    fn new(capacity: usize) -> (PushQueue, Pushes) {
        let (sender, queue) = mpsc::channel(capacity.max(1));
        let state = Arc::new(LinkState::new("subscriber"));
        let drops_lost = Arc::new(AtomicBool::new(false));
        let pushes = Pushes {
            queue,
            state: state.clone(),
            drops_lost: drops_lost.clone(),
        };
        let queue = PushQueue {
            sender,
            state,
            drops_lost,
        };
        (queue, pushes)
    }
}

impl AsyncPushSender for PushQueue {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        let drops = matches!(push.kind, PushKind::SUnsubscribe | PushKind::Disconnection);
        if self.sender.try_send(push).is_err() {
            if drops {
                self.drops_lost.store(true, Ordering::Release);
            }
            self.state.drop_one("receive buffer full");
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// A connection to Redis that reconnects by itself: to one server, or to a Redis Cluster.
///
/// The clusters hand out their command connection ([`crate::RedisCluster::connection`] and
/// the others'), so that an application can keep its own data beside the adapter's on the
/// same link: it is a [`redis::aio::ConnectionLike`], cheap to clone.
#[derive(Clone)]
pub enum Link {
    /// One Redis server: classic pub/sub.
    Server(ConnectionManager),
    /// A Redis Cluster: sharded pub/sub, commands routed by slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Server(_) => "Link::Server",
            Link::Cluster(_) => "Link::Cluster",
        })
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a Cmd,
    ) -> RedisBoxFuture<'a, redis::RedisResult<Value>> {
        match self {
            Link::Server(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisBoxFuture<'a, redis::RedisResult<Vec<Value>>> {
        match self {
            Link::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Server(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Link {
    /// Subscribes to `pattern` and `channels`: classic pub/sub on one server; sharded on a
    /// cluster, one channel at a time (each may live on another node), without patterns.
    async fn subscribe(
        &mut self,
        pattern: Option<&str>,
        channels: &[String],
    ) -> Result<(), redis::RedisError> {
        match self {
            Link::Server(connection) => {
                if let Some(pattern) = pattern {
                    connection.psubscribe(pattern).await?;
                }
                if !channels.is_empty() {
                    connection.subscribe(channels).await?;
                }
            }
            Link::Cluster(connection) => {
                if pattern.is_some() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "sharded pub/sub has no patterns",
                    )));
                }
                for channel in channels {
                    connection.ssubscribe(channel).await?;
                }
            }
        }
        Ok(())
    }

    /// Undoes [`Link::subscribe`].
    async fn unsubscribe(
        &mut self,
        pattern: Option<&str>,
        channels: &[String],
    ) -> Result<(), redis::RedisError> {
        match self {
            Link::Server(connection) => {
                if let Some(pattern) = pattern {
                    connection.punsubscribe(pattern).await?;
                }
                if !channels.is_empty() {
                    connection.unsubscribe(channels).await?;
                }
            }
            Link::Cluster(connection) => {
                for channel in channels {
                    connection.sunsubscribe(channel).await?;
                }
            }
        }
        Ok(())
    }

    /// Publishes `batch` in order: one pipeline of `PUBLISH` on a server; on a cluster, one
    /// pipeline of `SPUBLISH` per channel (a pipeline may not cross slots), all sent at once:
    /// each channel's messages stay in order even when the client retries a pipeline.
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), redis::RedisError> {
        match self {
            Link::Server(connection) => {
                let mut pipe = redis::pipe();
                for message in batch {
                    pipe.cmd("PUBLISH")
                        .arg(&message.channel)
                        .arg(message.payload.as_ref())
                        .ignore();
                }
                pipe.query_async(connection).await
            }
            Link::Cluster(connection) => {
                let mut pipes: Vec<(&str, Pipeline)> = Vec::new();
                for message in batch {
                    let index = match pipes.iter().position(|(c, _)| *c == message.channel) {
                        Some(index) => index,
                        None => {
                            pipes.push((&message.channel, redis::pipe()));
                            pipes.len() - 1
                        }
                    };
                    pipes[index]
                        .1
                        .cmd("SPUBLISH")
                        .arg(&message.channel)
                        .arg(message.payload.as_ref())
                        .ignore();
                }
                let sends = pipes.into_iter().map(|(_, pipe)| {
                    let mut connection = connection.clone();
                    async move { pipe.query_async::<()>(&mut connection).await }
                });
                join_all(sends).await.into_iter().collect()
            }
        }
    }
}

impl Driver {
    /// Connects to the Redis Cluster whose seed nodes are `urls` (one is enough: the others
    /// are discovered), with sharded pub/sub, and starts the tasks.
    pub(crate) async fn connect_cluster(
        urls: &[String],
        options: LinkOptions,
    ) -> Result<Arc<Driver>, RedisAdapterError> {
        let (sender, pushes) = PushQueue::new(options.receive_buffer);
        let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2)
            .max_retry_wait(500)
            .push_sender(sender)
            .build()?;
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT.saturating_mul(2),
            client.get_async_connection(),
        )
        .await
        .map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "connecting to the cluster timed out"))
        })??;
        let link = Link::Cluster(connection);
        Ok(Driver::start(link.clone(), link, options, pushes))
    }

    /// Connects both connections to `url` and starts the tasks.
    pub(crate) async fn connect(
        url: &str,
        options: LinkOptions,
    ) -> Result<Arc<Driver>, RedisAdapterError> {
        let info = url.into_connection_info()?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let subscriber_client = Client::open(info.clone().set_redis_settings(resp3))?;
        let commands_client = Client::open(info)?;

        let (sender, pushes) = PushQueue::new(options.receive_buffer);
        let subscriber = ConnectionManager::new_with_config(
            subscriber_client,
            manager_config()
                .set_push_sender(sender)
                .set_automatic_resubscription(),
        )
        .await?;
        let commands =
            ConnectionManager::new_with_config(commands_client, manager_config()).await?;
        Ok(Driver::start(
            Link::Server(commands),
            Link::Server(subscriber),
            options,
            pushes,
        ))
    }

    fn start(
        commands: Link,
        subscriber: Link,
        options: LinkOptions,
        pushes: Pushes,
    ) -> Arc<Driver> {
        let (outbox, queue) = mpsc::channel(options.publish_buffer.max(1));
        let driver = Arc::new(Driver {
            commands,
            subscriber,
            outbox,
            routes: Mutex::new(HashMap::new()),
            turns: tokio::sync::Mutex::new(()),
            stale: Mutex::new(HashSet::new()),
            publish_state: LinkState::new("publisher"),
            receive_state: pushes.state,
            drops_lost: pushes.drops_lost,
        });
        tokio::spawn(publish(
            Arc::downgrade(&driver),
            driver.commands.clone(),
            queue,
        ));
        tokio::spawn(dispatch(Arc::downgrade(&driver), pushes.queue));
        tokio::spawn(watch(Arc::downgrade(&driver)));
        driver
    }

    /// Whether Redis answered on both links when last tried: the watcher tries each every
    /// second, so an outage shows within about a second (up to the PING's timeout when Redis
    /// stops answering without closing the connections).
    pub(crate) fn is_reachable(&self) -> bool {
        self.publish_state.is_up() && self.receive_state.is_up()
    }

    /// The connection for commands (NUMSUB, say).
    pub(crate) fn commands(&self) -> Link {
        self.commands.clone()
    }

    /// Queues `payload` for `channel`, behind every message queued before; dropped and
    /// counted when the queue is full.
    pub(crate) fn publish(&self, channel: String, payload: Bytes) {
        if self.outbox.try_send(Outgoing { channel, payload }).is_err() {
            self.publish_state.drop_one("publish buffer full");
        }
    }

    /// Routes `subscription`'s pattern and channels to it and subscribes to those no other
    /// subscription holds yet. Subscribing and unsubscribing take turns (one at a time), so a
    /// namespace closed while it still subscribes, or made again while the old one
    /// unsubscribes, leaves Redis subscribed to exactly what is routed.
    pub(crate) async fn subscribe(
        &self,
        subscription: Arc<Subscription>,
    ) -> Result<(), redis::RedisError> {
        let _turn = self.turns.lock().await;
        let (pattern, channels) = {
            let mut routes = lock(&self.routes);
            let mut first = |key: &String| {
                let holders = routes.entry(key.clone()).or_default();
                holders.push(subscription.clone());
                holders.len() == 1
            };
            let pattern = subscription
                .pattern
                .as_ref()
                .filter(|pattern| first(pattern));
            let channels: Vec<String> = subscription
                .channels
                .iter()
                .filter(|channel| first(channel))
                .cloned()
                .collect();
            (pattern, channels)
        };
        let pattern = pattern.map(String::as_str);
        let generation = subscription.attempt();
        self.send_subscribe(pattern, &channels).await?;
        subscription.confirm(generation);
        Ok(())
    }

    /// Subscribes to `pattern` and `channels`, within [`RESPONSE_TIMEOUT`]: the caller holds
    /// the turn, which must not wait on Redis for longer.
    async fn send_subscribe(
        &self,
        pattern: Option<&str>,
        channels: &[String],
    ) -> Result<(), redis::RedisError> {
        let mut connection = self.subscriber.clone();
        let sending = connection.subscribe(pattern, channels);
        tokio::time::timeout(RESPONSE_TIMEOUT, sending)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "subscribe timed out",
                )))
            })
    }

    /// Subscribes again to what `subscription` wants, if it is still routed and no subscribe
    /// sent since Redis last dropped it succeeded meanwhile (Redis ignores a subscription it
    /// already has).
    async fn resubscribe(&self, subscription: &Arc<Subscription>) -> Result<(), redis::RedisError> {
        let _turn = self.turns.lock().await;
        // Every key of a subscription is routed to it while it is routed at all.
        let key = subscription
            .pattern
            .as_ref()
            .or(subscription.channels.first());
        let routed = key.is_some_and(|key| {
            lock(&self.routes)
                .get(key)
                .is_some_and(|holders| holders.iter().any(|h| Arc::ptr_eq(h, subscription)))
        });
        if !routed || subscription.is_confirmed() {
            return Ok(());
        }
        let generation = subscription.attempt();
        self.send_subscribe(subscription.pattern.as_deref(), &subscription.channels)
            .await?;
        subscription.confirm(generation);
        Ok(())
    }

    /// Forgets `subscription`, and unsubscribes from what no other subscription holds.
    pub(crate) async fn unsubscribe(&self, subscription: &Arc<Subscription>) {
        let _turn = self.turns.lock().await;
        let (pattern, channels) = {
            let mut routes = lock(&self.routes);
            let mut last = |key: &String| {
                let Some(holders) = routes.get_mut(key) else {
                    return false;
                };
                holders.retain(|h| !Arc::ptr_eq(h, subscription));
                let empty = holders.is_empty();
                if empty {
                    routes.remove(key);
                }
                empty
            };
            let pattern = subscription
                .pattern
                .as_ref()
                .filter(|pattern| last(pattern));
            let channels: Vec<String> = subscription
                .channels
                .iter()
                .filter(|channel| last(channel))
                .cloned()
                .collect();
            (pattern, channels)
        };
        if let Err(error) = self
            .send_unsubscribe(pattern.map(String::as_str), &channels)
            .await
        {
            debug!(%error, "unsubscribe failed; the watcher tries again");
            let mut stale = lock(&self.stale);
            stale.extend(pattern.cloned().map(Stale::Pattern));
            stale.extend(channels.into_iter().map(Stale::Channel));
        }
    }

    /// Unsubscribes from `pattern` and `channels`, within [`RESPONSE_TIMEOUT`].
    async fn send_unsubscribe(
        &self,
        pattern: Option<&str>,
        channels: &[String],
    ) -> Result<(), redis::RedisError> {
        let mut connection = self.subscriber.clone();
        let done = connection.unsubscribe(pattern, channels);
        tokio::time::timeout(RESPONSE_TIMEOUT, done)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "unsubscribe timed out",
                )))
            })
    }

    /// Unsubscribes from what a failed unsubscribe left behind, unless it is routed again.
    async fn unsubscribe_stale(&self) {
        let _turn = self.turns.lock().await;
        let stale: Vec<Stale> = {
            let routes = lock(&self.routes);
            lock(&self.stale)
                .drain()
                .filter(|key| match key {
                    Stale::Pattern(key) | Stale::Channel(key) => !routes.contains_key(key),
                })
                .collect()
        };
        for key in stale {
            let sent = match &key {
                Stale::Pattern(pattern) => self.send_unsubscribe(Some(pattern), &[]).await,
                Stale::Channel(channel) => {
                    self.send_unsubscribe(None, std::slice::from_ref(channel))
                        .await
                }
            };
            if sent.is_err() {
                lock(&self.stale).insert(key);
            }
        }
    }

    /// Marks every subscription as not confirmed, so the watcher sends them all again once
    /// Redis answers. The client resubscribes by itself after a reconnection, but a cluster
    /// whose nodes all restart can come back without them (a node that answers before the
    /// cluster is ok refuses the subscription): sending them again costs Redis nothing.
    fn unconfirm_all(&self) {
        for holder in lock(&self.routes).values().flatten() {
            holder.unconfirm();
        }
    }

    /// The live subscribers `key` (a pattern or a channel) is routed to.
    fn route(&self, key: &[u8]) -> Vec<Arc<dyn Subscriber>> {
        let Ok(key) = std::str::from_utf8(key) else {
            return Vec::new();
        };
        lock(&self.routes)
            .get(key)
            .map(|holders| {
                holders
                    .iter()
                    .filter_map(|h| h.subscriber.upgrade())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `PUBSUB NUMSUB channel` (`SHARDNUMSUB` on a cluster, summed over its nodes by the
/// client): how many connections subscribe to `channel` (RESP2 answers a list, RESP3 may
/// answer a map).
pub(crate) async fn numsub(
    mut connection: Link,
    channel: &str,
) -> Result<usize, redis::RedisError> {
    let reply: Value = match &mut connection {
        Link::Server(connection) => {
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(connection)
                .await?
        }
        // The masters only (as Node counts): a replica that is down must not fail the count.
        Link::Cluster(connection) => {
            let mut command = redis::cmd("PUBSUB");
            command.arg("SHARDNUMSUB").arg(channel);
            let masters = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::CombineMaps),
            ));
            connection.route_command(command, masters).await?
        }
    };
    let count = match reply {
        Value::Array(items) => items.get(1).cloned(),
        Value::Map(pairs) => pairs.into_iter().next().map(|(_, count)| count),
        _ => None,
    };
    Ok(match count {
        Some(Value::Int(n)) => usize::try_from(n).unwrap_or(0),
        _ => 0,
    })
}

/// Publishes the queue in order, a pipeline of up to [`PUBLISH_BATCH`] at a time.
async fn publish(driver: Weak<Driver>, mut connection: Link, mut queue: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let sent = connection.publish(&batch).await;
        let Some(driver) = driver.upgrade() else {
            return;
        };
        match sent {
            Ok(()) => driver.publish_state.recovered(),
            Err(error) => {
                driver.publish_state.failed(&error);
                for _ in 0..batch.len() {
                    driver.publish_state.drop_one("Redis unreachable");
                }
            }
        }
        batch.clear();
    }
}

/// Hands each message to the subscription it is routed to.
async fn dispatch(driver: Weak<Driver>, mut pushes: mpsc::Receiver<PushInfo>) {
    while let Some(push) = pushes.recv().await {
        let Some(driver) = driver.upgrade() else {
            return;
        };
        let bulk = |value: &Value| match value {
            Value::BulkString(bytes) => Some(bytes.clone()),
            _ => None,
        };
        match push.kind {
            PushKind::PMessage => {
                let [pattern, channel, payload] = push.data.as_slice() else {
                    continue;
                };
                let (Some(pattern), Some(channel), Some(payload)) =
                    (bulk(pattern), bulk(channel), bulk(payload))
                else {
                    continue;
                };
                let (channel, payload) = (String::from_utf8_lossy(&channel), Bytes::from(payload));
                for subscriber in driver.route(&pattern) {
                    subscriber.on_pattern_message(&channel, payload.clone());
                }
            }
            PushKind::Message | PushKind::SMessage => {
                let [channel, payload] = push.data.as_slice() else {
                    continue;
                };
                let (Some(channel), Some(payload)) = (bulk(channel), bulk(payload)) else {
                    continue;
                };
                let (channel, payload) = (String::from_utf8_lossy(&channel), Bytes::from(payload));
                for subscriber in driver.route(channel.as_bytes()) {
                    subscriber.on_message(&channel, payload.clone());
                }
            }
            PushKind::Disconnection => {
                driver.receive_state.failed(&"subscriber connection closed");
                driver.unconfirm_all();
            }
            // A node unsubscribes us by itself when the slot of a shard channel moves away
            // (resharding, failover), and the client forgets the channel: the subscriptions
            // that still route it are sent again (to the slot's new owner) by the watcher. The
            // confirmations of our own SUNSUBSCRIBEs find no route: the route goes first.
            PushKind::SUnsubscribe => {
                let Some(channel) = push.data.first().and_then(bulk) else {
                    continue;
                };
                let Ok(channel) = std::str::from_utf8(&channel) else {
                    continue;
                };
                if let Some(holders) = lock(&driver.routes).get(channel) {
                    info!(
                        channel,
                        "Redis unsubscribed a shard channel (its slot moved); subscribing again"
                    );
                    for holder in holders {
                        holder.unconfirm();
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks both links every [`WATCH_INTERVAL`]: a PING on each keeps reconnection going while
/// Redis is away and finds a dead connection before a publish or a request does (the
/// connection manager reconnects after a failed command), and subscriptions Redis never
/// confirmed are sent again.
async fn watch(driver: Weak<Driver>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(driver) = driver.upgrade() else {
            return;
        };
        match ping(driver.commands.clone()).await {
            // A publish marks the link's return too; without one, this does.
            Ok(()) if !driver.publish_state.is_up() => driver.publish_state.recovered(),
            Ok(()) => {}
            Err(error) => driver.publish_state.failed(&error),
        }
        match ping(driver.subscriber.clone()).await {
            Ok(()) => {
                driver.receive_state.recovered();
                if driver.drops_lost.swap(false, Ordering::AcqRel) {
                    debug!("a dropped push may have told of lost subscriptions; sending them all again");
                    driver.unconfirm_all();
                }
                // Each once, though it is routed once per channel.
                let unconfirmed: Vec<_> = {
                    let mut seen = HashSet::new();
                    lock(&driver.routes)
                        .values()
                        .flatten()
                        .filter(|s| !s.is_confirmed() && seen.insert(Arc::as_ptr(s)))
                        .cloned()
                        .collect()
                };
                for subscription in unconfirmed {
                    if let Err(error) = driver.resubscribe(&subscription).await {
                        debug!(%error, "subscribe retry failed");
                    }
                }
                if !lock(&driver.stale).is_empty() {
                    driver.unsubscribe_stale().await;
                }
            }
            Err(error) => {
                driver.receive_state.failed(&error);
                driver.unconfirm_all();
            }
        }
    }
}

async fn ping(mut connection: Link) -> Result<(), String> {
    let command = redis::cmd("PING");
    let ping = command.query_async::<Value>(&mut connection);
    match tokio::time::timeout(RESPONSE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("PING timed out".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;

    impl Subscriber for Nobody {
        fn on_message(self: Arc<Self>, _channel: &str, _payload: Bytes) {}
        fn on_pattern_message(self: Arc<Self>, _channel: &str, _payload: Bytes) {}
    }

    fn subscription() -> Arc<Subscription> {
        let nobody: Weak<dyn Subscriber> = Weak::<Nobody>::new();
        Subscription::new(None, vec!["socket.io#/#".to_owned()], nobody)
    }

    /// A node unsubscribes the channel (its slot moved) while a subscribe that reached it is
    /// still on its way back: that subscribe must not count as the new subscription.
    #[test]
    fn a_drop_while_a_subscribe_is_on_its_way_is_not_overwritten() {
        let subscription = subscription();
        assert!(!subscription.is_confirmed(), "new: not confirmed");
        let first = subscription.attempt();
        subscription.confirm(first);
        assert!(subscription.is_confirmed());

        // The watcher resubscribes; the slot moves before its answer comes back.
        let on_its_way = subscription.attempt();
        subscription.unconfirm();
        subscription.confirm(on_its_way);
        assert!(
            !subscription.is_confirmed(),
            "the drop outlives the late answer"
        );

        // Only a subscribe sent after the drop confirms it, whatever order the answers take.
        let after = subscription.attempt();
        subscription.confirm(after);
        subscription.confirm(on_its_way);
        assert!(subscription.is_confirmed());
    }

    fn push(kind: PushKind) -> PushInfo {
        PushInfo {
            kind,
            data: vec![Value::BulkString(b"socket.io#/#".to_vec())],
        }
    }

    /// A full receive queue drops messages (counted), but never the news that Redis dropped
    /// subscriptions: the watcher is told to send them all again.
    #[test]
    fn a_dropped_unsubscribe_push_is_not_lost() {
        let (queue, pushes) = PushQueue::new(1);
        assert!(AsyncPushSender::send(&queue, push(PushKind::SMessage)).is_ok());
        assert!(AsyncPushSender::send(&queue, push(PushKind::SMessage)).is_ok());
        assert!(
            !pushes.drops_lost.load(Ordering::Acquire),
            "a dropped message is only counted"
        );
        assert!(AsyncPushSender::send(&queue, push(PushKind::SUnsubscribe)).is_ok());
        assert!(pushes.drops_lost.load(Ordering::Acquire));
    }
}
