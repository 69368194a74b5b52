//! One server's link to Redis, shared by the adapters of all its namespaces: a connection for
//! commands and publishes, a RESP3 connection for subscriptions, one task that publishes in
//! order, one that dispatches what arrives, one that watches the link.
//!
//! Nothing here waits on Redis on behalf of a caller that must not wait: publishes go through
//! a bounded queue (full: the message is dropped and counted), incoming messages through
//! another (the same), and each state change of the link is logged once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::RedisAdapterError;

/// How long a connection attempt to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
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
pub(crate) struct Subscription {
    pub(crate) pattern: String,
    pub(crate) channels: Vec<String>,
    pub(crate) subscriber: Weak<dyn Subscriber>,
    /// Redis confirmed it (else the watcher subscribes again).
    confirmed: AtomicBool,
}

impl Subscription {
    pub(crate) fn new(
        pattern: String,
        channels: Vec<String>,
        subscriber: Weak<dyn Subscriber>,
    ) -> Arc<Subscription> {
        Arc::new(Subscription {
            pattern,
            channels,
            subscriber,
            confirmed: AtomicBool::new(false),
        })
    }
}

/// A link state that logs its changes, not every failure.
struct LinkState {
    what: &'static str,
    up: AtomicBool,
    /// Messages dropped since the link went down (or the queue filled).
    dropped: AtomicU64,
}

impl LinkState {
    fn new(what: &'static str) -> LinkState {
        LinkState {
            what,
            up: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(link = self.what, %error, "Redis link down; cross-server messages are dropped until it is back, local delivery goes on");
        }
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            let dropped = self.dropped.swap(0, Ordering::AcqRel);
            info!(link = self.what, dropped, "Redis link back");
        }
    }

    fn drop_one(&self, reason: &str) {
        let before = self.dropped.fetch_add(1, Ordering::AcqRel);
        if before == 0 {
            warn!(
                link = self.what,
                reason, "message dropped (counted until the link is healthy again)"
            );
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// Options of the link.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    pub(crate) publish_buffer: usize,
    pub(crate) receive_buffer: usize,
}

/// The link to Redis of one server.
pub(crate) struct Driver {
    commands: ConnectionManager,
    subscriber: ConnectionManager,
    outbox: mpsc::Sender<Outgoing>,
    /// Pattern or channel to the subscription that wants it.
    routes: Mutex<HashMap<String, Arc<Subscription>>>,
    publish_state: LinkState,
    receive_state: Arc<LinkState>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl Driver {
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

        let (push_sender, pushes) = mpsc::channel::<PushInfo>(options.receive_buffer.max(1));
        let receive_state = Arc::new(LinkState::new("subscriber"));
        let state = receive_state.clone();
        let sender = move |push: PushInfo| -> Result<(), redis::aio::SendError> {
            // Never blocks the connection: a full queue drops the message and counts it.
            if push_sender.try_send(push).is_err() {
                state.drop_one("receive buffer full");
            }
            Ok(())
        };
        let subscriber = ConnectionManager::new_with_config(
            subscriber_client,
            manager_config()
                .set_push_sender(sender)
                .set_automatic_resubscription(),
        )
        .await?;
        let commands =
            ConnectionManager::new_with_config(commands_client, manager_config()).await?;

        let (outbox, queue) = mpsc::channel(options.publish_buffer.max(1));
        let driver = Arc::new(Driver {
            commands,
            subscriber,
            outbox,
            routes: Mutex::new(HashMap::new()),
            publish_state: LinkState::new("publisher"),
            receive_state,
        });
        tokio::spawn(publish(
            Arc::downgrade(&driver),
            driver.commands.clone(),
            queue,
        ));
        tokio::spawn(dispatch(Arc::downgrade(&driver), pushes));
        tokio::spawn(watch(Arc::downgrade(&driver)));
        Ok(driver)
    }

    /// The connection for commands (NUMSUB, say).
    pub(crate) fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Queues `payload` for `channel`, behind every message queued before; dropped and
    /// counted when the queue is full.
    pub(crate) fn publish(&self, channel: String, payload: Bytes) {
        if self.outbox.try_send(Outgoing { channel, payload }).is_err() {
            self.publish_state.drop_one("publish buffer full");
        }
    }

    /// Routes `subscription`'s pattern and channels to it and subscribes to them.
    pub(crate) async fn subscribe(
        &self,
        subscription: Arc<Subscription>,
    ) -> Result<(), redis::RedisError> {
        {
            let mut routes = lock(&self.routes);
            routes.insert(subscription.pattern.clone(), subscription.clone());
            for channel in &subscription.channels {
                routes.insert(channel.clone(), subscription.clone());
            }
        }
        self.send_subscribe(&subscription).await
    }

    async fn send_subscribe(&self, subscription: &Subscription) -> Result<(), redis::RedisError> {
        let mut connection = self.subscriber.clone();
        connection.psubscribe(&subscription.pattern).await?;
        connection.subscribe(&subscription.channels).await?;
        subscription.confirmed.store(true, Ordering::Release);
        Ok(())
    }

    /// Unsubscribes and forgets `subscription`.
    pub(crate) async fn unsubscribe(&self, subscription: &Subscription) {
        {
            let mut routes = lock(&self.routes);
            routes.remove(&subscription.pattern);
            for channel in &subscription.channels {
                routes.remove(channel);
            }
        }
        let mut connection = self.subscriber.clone();
        let done = async {
            connection.punsubscribe(&subscription.pattern).await?;
            connection.unsubscribe(&subscription.channels).await
        };
        if let Err(error) = done.await {
            debug!(%error, "unsubscribe failed");
        }
    }

    fn route(&self, key: &[u8]) -> Option<Arc<dyn Subscriber>> {
        let key = std::str::from_utf8(key).ok()?;
        lock(&self.routes).get(key)?.subscriber.upgrade()
    }
}

/// `PUBSUB NUMSUB channel`: how many connections subscribe to `channel` (RESP2 answers a
/// list, RESP3 may answer a map).
pub(crate) async fn numsub(
    mut connection: ConnectionManager,
    channel: &str,
) -> Result<usize, redis::RedisError> {
    let reply: Value = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut connection)
        .await?;
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
async fn publish(
    driver: Weak<Driver>,
    mut connection: ConnectionManager,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for message in &batch {
            pipe.cmd("PUBLISH")
                .arg(&message.channel)
                .arg(message.payload.as_ref())
                .ignore();
        }
        let sent: Result<(), _> = pipe.query_async(&mut connection).await;
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
                if let Some(subscriber) = driver.route(&pattern) {
                    let channel = String::from_utf8_lossy(&channel);
                    subscriber.on_pattern_message(&channel, Bytes::from(payload));
                }
            }
            PushKind::Message => {
                let [channel, payload] = push.data.as_slice() else {
                    continue;
                };
                let (Some(channel), Some(payload)) = (bulk(channel), bulk(payload)) else {
                    continue;
                };
                if let Some(subscriber) = driver.route(&channel) {
                    let channel = String::from_utf8_lossy(&channel);
                    subscriber.on_message(&channel, Bytes::from(payload));
                }
            }
            PushKind::Disconnection => {
                driver.receive_state.failed(&"subscriber connection closed");
            }
            _ => {}
        }
    }
}

/// Checks the subscriber link every [`WATCH_INTERVAL`]: a PING keeps reconnection going while
/// Redis is away (the connection manager reconnects on a failed command), and subscriptions
/// Redis never confirmed are sent again.
async fn watch(driver: Weak<Driver>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(driver) = driver.upgrade() else {
            return;
        };
        let mut connection = driver.subscriber.clone();
        let ping = tokio::time::timeout(
            RESPONSE_TIMEOUT,
            redis::cmd("PING").query_async::<Value>(&mut connection),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {
                driver.receive_state.recovered();
                let unconfirmed: Vec<_> = lock(&driver.routes)
                    .values()
                    .filter(|s| !s.confirmed.load(Ordering::Acquire))
                    .cloned()
                    .collect();
                for subscription in unconfirmed {
                    if let Err(error) = driver.send_subscribe(&subscription).await {
                        debug!(%error, "subscribe retry failed");
                    }
                }
            }
            Ok(Err(error)) => driver.receive_state.failed(&error),
            Err(_) => driver.receive_state.failed(&"PING timed out"),
        }
        if !driver.receive_state.is_up() {
            debug!("Redis subscriber link still down");
        }
    }
}
