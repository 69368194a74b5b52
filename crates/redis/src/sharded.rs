//! The sharded pub/sub adapter: the wire protocol of Node's `createShardedAdapter` of
//! `@socket.io/redis-adapter` 8.3, for Redis Cluster (Redis 7 `SSUBSCRIBE` / `SPUBLISH`).
//!
//! Every message is one of `socket.io-adapter`'s cluster messages (`{type, data, uid, nsp}`,
//! JSON text, or msgpack when it carries binary) on a sharded channel: `P#N#` for everything,
//! `P#N#uid#` for the answers to server `uid`, and, in the dynamic subscription modes,
//! `P#N#R#` for a broadcast to the one room `R`. A channel lives on the node that owns its
//! slot, so the cluster's traffic spreads over its nodes instead of reaching all of them, as
//! classic pub/sub does.
//!
//! A server subscribes to a room's channel when the room gains its first local socket and
//! unsubscribes when it loses its last; a broadcast to the room published before the
//! subscription is confirmed does not reach that server (as with Node's adapter). Pub/sub
//! keeps nothing for a server that is away: connection state recovery stays on the server a
//! client dropped from, and what is published while Redis is unreachable is dropped (counted,
//! logged once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard::adapter::{
    AckReply, Adapter, AdapterContext, AdapterError, AdapterFactory, AttachSession, BoxFuture,
    BroadcastOptions, EncodedPacket, InMemoryAdapter, LocalNamespace, Room, RoomIndex,
    SessionState, Sid, SocketInfo,
};
use switchyard::proto::Packet;
use switchyard::Args;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::cluster_peer::{self as peer, options_of, ClusterPeer};
use crate::cluster_wire::{self as cw, ctype, ClusterMessage};
use crate::driver::{numsub, Driver, LinkOptions, Subscriber, Subscription};
use crate::error::{backend, RedisAdapterError};
use crate::requests::Requests;
use crate::wire;

/// Which rooms get a channel of their own (Node's `subscriptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Everything on the namespace's channel: each server subscribes to two channels per
    /// namespace, and receives every broadcast.
    Static,
    /// Public rooms (not a socket's own room) get a channel each: a server receives only the
    /// broadcasts to rooms it has sockets in. Node's default.
    #[default]
    Dynamic,
    /// Every room, sockets' own rooms included, gets a channel.
    DynamicPrivate,
}

/// Options of the sharded adapter; the defaults are those of the Node adapter.
#[derive(Debug, Clone)]
pub struct RedisShardedConfig {
    /// The prefix of every channel (`channelPrefix`, `socket.io`).
    pub channel_prefix: String,
    /// Which rooms get a channel of their own (`subscriptionMode`, dynamic).
    pub subscription_mode: SubscriptionMode,
    /// How long a request (fetch sockets, server-side emit with acks, server count) waits
    /// for the other servers (5 s).
    pub requests_timeout: Duration,
    /// Messages waiting to be published while Redis is slow or away; beyond, dropped and
    /// counted (4096).
    pub publish_buffer: usize,
    /// Messages received and not yet handled; beyond, dropped and counted (4096).
    pub receive_buffer: usize,
}

impl Default for RedisShardedConfig {
    fn default() -> RedisShardedConfig {
        RedisShardedConfig {
            channel_prefix: "socket.io".to_owned(),
            subscription_mode: SubscriptionMode::Dynamic,
            requests_timeout: Duration::from_secs(5),
            publish_buffer: 4096,
            receive_buffer: 4096,
        }
    }
}

/// A server's connection to a Redis Cluster with sharded pub/sub: gives each namespace a
/// [`RedisShardedAdapter`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use switchyard::{SocketIo, SocketIoConfig};
/// use switchyard_redis::{RedisShardedCluster, RedisShardedConfig};
///
/// // One node is enough: the client discovers the others.
/// let seeds = ["redis://127.0.0.1:7000".to_owned()];
/// let cluster = RedisShardedCluster::connect(&seeds, RedisShardedConfig::default()).await?;
/// let io = SocketIo::with_adapter(SocketIoConfig::default(), cluster.factory());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisShardedCluster {
    driver: Arc<Driver>,
    config: Arc<RedisShardedConfig>,
}

impl std::fmt::Debug for RedisShardedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShardedCluster")
            .field("config", &self.config)
            .finish()
    }
}

impl RedisShardedCluster {
    /// Connects to the Redis Cluster that `seeds` (`redis://host:port` of one or more of its
    /// nodes) belong to; fails when it cannot be reached now, or is not a cluster. Later
    /// outages are ridden out: the connection follows the cluster's slots, reconnects and
    /// subscribes again by itself.
    pub async fn connect(
        seeds: &[String],
        config: RedisShardedConfig,
    ) -> Result<RedisShardedCluster, RedisAdapterError> {
        let driver = Driver::connect_cluster(
            seeds,
            LinkOptions {
                publish_buffer: config.publish_buffer,
                receive_buffer: config.receive_buffer,
            },
        )
        .await?;
        Ok(RedisShardedCluster {
            driver,
            config: Arc::new(config),
        })
    }

    /// The connection the adapters send their commands on, for the application's own data
    /// in the same Redis.
    pub fn connection(&self) -> crate::RedisConnection {
        self.driver.commands()
    }

    /// Whether Redis answered this server's links when last tried (each is checked every
    /// second): what a readiness probe asks. Local delivery goes on either way.
    pub fn is_reachable(&self) -> bool {
        self.driver.is_reachable()
    }

    /// The adapter factory to build the server with ([`switchyard::SocketIo::with_adapter`]).
    pub fn factory(&self) -> AdapterFactory {
        let cluster = self.clone();
        Arc::new(move |context: AdapterContext<'_>| {
            Arc::new(RedisShardedAdapter::new(&cluster, context)) as Arc<dyn Adapter>
        })
    }
}

/// The adapter of one namespace on a Redis Cluster with sharded pub/sub.
///
/// Its local part is an [`InMemoryAdapter`]: local delivery and, with connection state
/// recovery on, packets and sessions kept on this server (recovery does not cross servers,
/// as with Node's sharded adapter; the streams adapter does that).
pub struct RedisShardedAdapter {
    shared: Arc<Shared>,
    subscription: Arc<Subscription>,
}

struct Shared {
    driver: Arc<Driver>,
    config: Arc<RedisShardedConfig>,
    /// This adapter's uid (per namespace per server, as on Node).
    uid: String,
    /// `P#N#`: everything that has no room channel.
    main: String,
    /// `P#N#uid#`: answers to our requests.
    private: String,
    /// The local sockets' rooms.
    index: RoomIndex,
    /// Local delivery and recovery.
    memory: InMemoryAdapter,
    local: LocalNamespace,
    requests: Arc<Requests>,
    /// The rooms whose channel the room task is to subscribe to or leave (dynamic modes
    /// only).
    rooms: Option<Arc<RoomChannels>>,
}

/// What the task that follows room channels is to do: the last word on each room since it
/// last looked (so the work waiting is bounded by the rooms, however fast they come and go),
/// and whether the namespace closes.
#[derive(Default)]
struct RoomChannels {
    wanted: Mutex<HashMap<Room, bool>>,
    closing: AtomicBool,
    wake: Notify,
    /// Told once the task has left every room channel.
    closed: Notify,
}

impl RoomChannels {
    fn want(&self, room: &Room, subscribed: bool) {
        lock(&self.wanted).insert(room.clone(), subscribed);
        self.wake.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a closing namespace waits for its room channels to be left.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

/// Whether `room` looks like a socket id to Node's publishers: 20 UTF-16 code units.
fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

impl RedisShardedAdapter {
    fn new(cluster: &RedisShardedCluster, context: AdapterContext<'_>) -> RedisShardedAdapter {
        let local = context.local.clone();
        let memory = InMemoryAdapter::new(context);
        let uid = cw::new_uid();
        let prefix = &cluster.config.channel_prefix;
        let main = cw::public_channel(prefix, local.name());
        let private = cw::private_channel(prefix, local.name(), &uid);
        let dynamic = cluster.config.subscription_mode != SubscriptionMode::Static;
        let rooms = dynamic.then(|| Arc::new(RoomChannels::default()));
        let shared = Arc::new(Shared {
            driver: cluster.driver.clone(),
            config: cluster.config.clone(),
            uid,
            main: main.clone(),
            private: private.clone(),
            index: RoomIndex::new(),
            memory,
            local,
            requests: Arc::default(),
            rooms: rooms.clone(),
        });
        let subscriber: Weak<dyn Subscriber> = Arc::downgrade(&shared) as Weak<dyn Subscriber>;
        if let Some(rooms) = rooms {
            tokio::spawn(follow_rooms(
                cluster.driver.clone(),
                main.clone(),
                subscriber.clone(),
                rooms,
            ));
        }
        let subscription = Subscription::new(None, vec![main, private], subscriber);
        RedisShardedAdapter {
            shared,
            subscription,
        }
    }

    /// A join, leave or disconnect: published to every server, then done here.
    fn room_operation(
        &self,
        kind: u64,
        options: BroadcastOptions,
        fields: Value,
        operation: impl FnOnce(&LocalNamespace, &BroadcastOptions),
    ) -> BoxFuture<Result<(), AdapterError>> {
        if !options.local {
            let mut data = json!({ "opts": wire::room_options_to_wire(&options) });
            if let (Value::Object(data), Value::Object(fields)) = (&mut data, fields) {
                data.extend(fields);
            }
            self.shared.publish(kind, &data, &[]);
        }
        operation(&self.shared.local, &options);
        ready(Ok(()))
    }
}

/// Subscribes to each room's channel while the room has local sockets; what changed since
/// the last round is done in the next. Ends when the namespace closes or is dropped, having
/// left every room channel.
async fn follow_rooms(
    driver: Arc<Driver>,
    main: String,
    subscriber: Weak<dyn Subscriber>,
    rooms: Arc<RoomChannels>,
) {
    let mut subscribed: HashMap<Room, Arc<Subscription>> = HashMap::new();
    loop {
        rooms.wake.notified().await;
        if rooms.closing.load(Ordering::Acquire) {
            break;
        }
        let wanted = std::mem::take(&mut *lock(&rooms.wanted));
        for (room, keep) in wanted {
            if rooms.closing.load(Ordering::Acquire) {
                break;
            }
            match (keep, subscribed.contains_key(&room)) {
                (true, false) => {
                    let channel = format!("{main}{room}#");
                    let subscription = Subscription::new(None, vec![channel], subscriber.clone());
                    subscribed.insert(room.clone(), subscription.clone());
                    // A failed subscription is retried by the link's watcher.
                    if let Err(error) = driver.subscribe(subscription).await {
                        debug!(%room, %error, "room subscription failed; retrying in the background");
                    }
                }
                (false, true) => {
                    if let Some(subscription) = subscribed.remove(&room) {
                        driver.unsubscribe(&subscription).await;
                    }
                }
                _ => {}
            }
        }
    }
    // Unsubscribes that fail (Redis away) are left to the link's watcher.
    for (_, subscription) in subscribed {
        driver.unsubscribe(&subscription).await;
    }
    rooms.closed.notify_one();
}

impl Drop for Shared {
    /// A namespace dropped without closing leaves its room channels all the same.
    fn drop(&mut self) {
        if let Some(rooms) = &self.rooms {
            rooms.closing.store(true, Ordering::Release);
            rooms.wake.notify_one();
        }
    }
}

impl Shared {
    fn nsp(&self) -> &str {
        self.local.name()
    }

    /// Whether room `room`, created or deleted by socket `sid`, has a channel of its own. A
    /// socket's own room is created and deleted by that socket (Node asks whether the room
    /// is a local socket's id; a room named after another socket exists as long as it does).
    fn has_own_channel(&self, sid: &Sid, room: &Room) -> bool {
        match self.config.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => **room != **sid,
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// Room `room` of socket `sid` gained its first local socket (`true`) or lost its last.
    fn room_changed(&self, sid: &Sid, room: &Room, exists: bool) {
        if let Some(rooms) = &self.rooms {
            if self.has_own_channel(sid, room) {
                rooms.want(room, exists);
            }
        }
    }

    /// The channel a broadcast without acks goes to (Node's `computeChannel`).
    fn broadcast_channel(&self, options: &BroadcastOptions) -> String {
        let [room] = options.rooms.as_slice() else {
            return self.main.clone();
        };
        let own = match self.config.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
            SubscriptionMode::DynamicPrivate => true,
        };
        if own {
            format!("{}{room}#", self.main)
        } else {
            self.main.clone()
        }
    }

    fn send(&self, channel: String, kind: u64, data: &Value, attachments: &[Bytes]) {
        let payload = cw::encode_sharded(&self.uid, self.nsp(), kind, Some(data), attachments);
        self.driver.publish(channel, payload);
    }

    /// A message from another server on the namespace's channel or a room's.
    fn on_cluster_message(self: &Arc<Self>, message: ClusterMessage) {
        let Some(data) = message.data.as_ref() else {
            // Heartbeats and ADAPTER_CLOSE: this protocol counts servers by subscription.
            return;
        };
        match message.kind {
            ctype::BROADCAST if data.request_id().is_none() => {
                let (Some(packet), Some(opts)) = (data.field("packet"), data.field("opts")) else {
                    return;
                };
                if let Some(delivery) = data.delivery(packet, opts, self.nsp()) {
                    // Local delivery (and, with recovery on, keeping the packet): ready at once.
                    drop(self.memory.broadcast(delivery.packet, delivery.options));
                }
            }
            ctype::SOCKETS_JOIN => {
                self.local
                    .add_sockets(&options_of(data), &data.rooms_field("rooms"));
            }
            ctype::SOCKETS_LEAVE => {
                self.local
                    .del_sockets(&options_of(data), &data.rooms_field("rooms"));
            }
            ctype::DISCONNECT_SOCKETS => {
                let close = data.field("close").and_then(Value::as_bool) == Some(true);
                self.local.disconnect_sockets(&options_of(data), close);
            }
            _ => peer::on_request(self, message),
        }
    }
}

impl ClusterPeer for Shared {
    fn uid(&self) -> &str {
        &self.uid
    }

    fn local(&self) -> &LocalNamespace {
        &self.local
    }

    fn requests(&self) -> &Arc<Requests> {
        &self.requests
    }

    fn requests_timeout(&self) -> Duration {
        self.config.requests_timeout
    }

    fn publish(&self, kind: u64, data: &Value, attachments: &[Bytes]) {
        self.send(self.main.clone(), kind, data, attachments);
    }

    fn respond(&self, uid: &str, kind: u64, data: &Value, attachments: &[Bytes]) {
        let channel = cw::private_channel(&self.config.channel_prefix, self.nsp(), uid);
        self.send(channel, kind, data, attachments);
    }

    /// `PUBSUB SHARDNUMSUB P#N#`, summed over the cluster's nodes.
    async fn server_count(&self) -> Result<usize, AdapterError> {
        let counting = numsub(self.driver.commands(), &self.main);
        match tokio::time::timeout(self.config.requests_timeout, counting).await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(error)) => Err(backend(error)),
            Err(_) => Err(AdapterError::Timeout),
        }
    }
}

impl Subscriber for Shared {
    fn on_message(self: Arc<Self>, channel: &str, payload: Bytes) {
        let message = match cw::read_envelope(&payload) {
            Ok(message) => message,
            Err(error) => {
                warn!(channel, %error, "undecodable message from another server");
                return;
            }
        };
        if message.uid == self.uid {
            return;
        }
        if message.nsp != self.nsp() {
            debug!(channel, nsp = message.nsp, "message for another namespace");
            return;
        }
        if channel != self.private {
            self.on_cluster_message(message);
            return;
        }
        // Our private channel: answers.
        let Some(data) = message.data else {
            return;
        };
        if let Some(request_id) = data.request_id().map(str::to_owned) {
            peer::on_answer(&*self, message.kind, data, &request_id);
        }
    }

    fn on_pattern_message(self: Arc<Self>, _channel: &str, _payload: Bytes) {}
}

impl Adapter for RedisShardedAdapter {
    fn add_all(&self, sid: &Sid, rooms: &[Room]) {
        let shared = &self.shared;
        shared
            .index
            .add_all_reporting(sid, rooms, &mut |room| shared.room_changed(sid, room, true));
    }

    fn del(&self, sid: &Sid, room: &Room) {
        let shared = &self.shared;
        shared
            .index
            .del_reporting(sid, room, &mut |room| shared.room_changed(sid, room, false));
    }

    fn del_all(&self, sid: &Sid) {
        let shared = &self.shared;
        shared
            .index
            .del_all_reporting(sid, &mut |room| shared.room_changed(sid, room, false));
    }

    fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
        self.shared.index.socket_rooms(sid)
    }

    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
        self.shared.index.for_each_in_room(room, visit);
    }

    fn rooms(&self) -> Vec<Room> {
        self.shared.index.rooms()
    }

    fn init(&self) -> BoxFuture<Result<(), AdapterError>> {
        let shared = self.shared.clone();
        let subscription = self.subscription.clone();
        Box::pin(async move {
            // A failed subscription is retried by the link's watcher; the namespace serves its
            // local clients meanwhile.
            if let Err(error) = shared.driver.subscribe(subscription).await {
                warn!(nsp = shared.nsp(), %error, "subscribing to the cluster failed; retrying in the background");
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<()> {
        let shared = self.shared.clone();
        let subscription = self.subscription.clone();
        Box::pin(async move {
            if let Some(rooms) = &shared.rooms {
                let closed = rooms.closed.notified();
                rooms.closing.store(true, Ordering::Release);
                rooms.wake.notify_one();
                // Leaving the room channels waits on Redis: a bounded while (what is left
                // is for the link's watcher).
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed).await;
            }
            shared.driver.unsubscribe(&subscription).await;
        })
    }

    fn server_count(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let shared = self.shared.clone();
        Box::pin(async move { ClusterPeer::server_count(&*shared).await })
    }

    fn broadcast(
        &self,
        packet: Packet,
        options: BroadcastOptions,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let shared = &self.shared;
        if !options.local {
            let (wire_packet, attachments) = wire::packet_to_wire(&packet);
            let data =
                json!({"packet": wire_packet, "opts": wire::options_to_wire(&options, None)});
            let channel = shared.broadcast_channel(&options);
            shared.send(channel, ctype::BROADCAST, &data, attachments);
        }
        shared.memory.broadcast(packet, options)
    }

    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
        // Always on the namespace's channel: every server must answer with a count.
        peer::broadcast_with_ack(self.shared.clone(), packet, options, timeout)
    }

    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = json!({ "rooms": rooms });
        self.room_operation(ctype::SOCKETS_JOIN, options, fields, |local, options| {
            local.add_sockets(options, &rooms)
        })
    }

    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = json!({ "rooms": rooms });
        self.room_operation(ctype::SOCKETS_LEAVE, options, fields, |local, options| {
            local.del_sockets(options, &rooms)
        })
    }

    fn disconnect_sockets(
        &self,
        options: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = json!({ "close": close });
        self.room_operation(
            ctype::DISCONNECT_SOCKETS,
            options,
            fields,
            |local, options| local.disconnect_sockets(options, close),
        )
    }

    fn fetch_sockets(
        &self,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>> {
        peer::fetch_sockets(self.shared.clone(), options, timeout)
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Args,
        ack: Option<Duration>,
    ) -> BoxFuture<Result<Vec<Args>, AdapterError>> {
        peer::server_side_emit(self.shared.clone(), event, args, ack)
    }

    fn attach_socket(&self, attach: &mut dyn FnMut()) -> Option<String> {
        self.shared.memory.attach_socket(attach)
    }

    fn persist_session(&self, session: SessionState) {
        self.shared.memory.persist_session(session);
    }

    fn restore_session(
        &self,
        pid: String,
        offset: Option<String>,
        attach: AttachSession,
    ) -> BoxFuture<Result<Option<Vec<EncodedPacket>>, AdapterError>> {
        self.shared.memory.restore_session(pid, offset, attach)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_twenty_utf16_units_as_node_counts_them() {
        assert!(looks_like_a_socket_id("AAAAAAAAAAAAAAAAAAAA"));
        assert!(!looks_like_a_socket_id("AAAAAAAAAAAAAAAAAAA"));
        // 20 characters but 21 UTF-16 units (an astral character counts two).
        assert!(!looks_like_a_socket_id("🚀AAAAAAAAAAAAAAAAAAA"));
        assert!(looks_like_a_socket_id("🚀AAAAAAAAAAAAAAAAAA"));
    }
}
