//! The Redis streams adapter: the wire protocol of Node's `@socket.io/redis-streams-adapter`
//! 0.3, with connection state recovery across servers.
//!
//! Broadcasts and room operations are appended to a Redis stream, which every server reads in
//! order; requests (fetch sockets, server-side emits, broadcasts with acks) and their answers
//! travel on pub/sub. A broadcast's stream entry id is its offset: a client that drops from
//! one server and reconnects to another presents it, and that server reads what the client
//! missed from the stream and its session from a Redis key.
//!
//! # Nothing lost or doubled on recovery
//!
//! A client holds one offset, the last it saw, so every server must deliver a stream's entries
//! in stream order. Each server's reader delivers them all, its own server's included (Node
//! delivers its own broadcasts when the append is answered and the others' when they are
//! read, so a client can see offsets out of order and get a packet twice on recovery). A
//! restored socket is put back under the lock deliveries take, and the packets it missed are
//! the entries after its offset up to the last one delivered at that instant; those after it
//! reach it live. Node's adapter reads the stream and re-attaches the socket at different
//! times, and may lose or repeat the entries appended in between.
//!
//! While Redis is away, this server's own broadcasts and room operations take effect here at
//! once, without an offset, and are not replayed; other servers' cannot reach it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Client, IntoConnectionInfo, Value as RedisValue};
use serde_json::{json, Value};
use switchyard::adapter::{
    AckReply, Adapter, AdapterContext, AdapterError, AdapterFactory, AttachSession, BoxFuture,
    BroadcastOptions, EncodedPacket, InMemoryAdapter, LocalNamespace, RecoveryConfig, Room,
    SessionState, Sid, SocketInfo,
};
use switchyard::proto::Packet;
use switchyard::Args;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout_at;
use tracing::{debug, warn};

use crate::cluster_peer::{self as peer, options_of, ClusterPeer};
use crate::cluster_wire::{self as cw, ctype, ClusterMessage, StreamId};
use crate::driver::{
    manager_config, numsub, Driver, LinkOptions, LinkState, Subscriber, Subscription,
    RESPONSE_TIMEOUT,
};
use crate::error::{backend, RedisAdapterError};
use crate::requests::{deadline_after, Requests};
use crate::wire;

/// Options of the streams adapter; the defaults are those of the Node adapter.
#[derive(Debug, Clone)]
pub struct RedisStreamsConfig {
    /// The stream's name (Node's `streamName`): `socket.io`.
    pub stream_name: String,
    /// How many streams the namespaces are spread over (`streamCount`): 1.
    pub stream_count: u32,
    /// The prefix of the pub/sub channels (`channelPrefix`): `socket.io`.
    pub channel_prefix: String,
    /// The stream's approximate maximum length (`maxLen`): 10,000 entries. A client can
    /// recover only while the entry of its offset is still in the stream.
    pub max_len: usize,
    /// Most entries read at once (`readCount`): 100.
    pub read_count: usize,
    /// How long one read waits for new entries (`blockTimeInMs`): 5 s.
    pub block_time: Duration,
    /// The prefix of the keys sessions are kept under (`sessionKeyPrefix`): `sio:session:`.
    pub session_key_prefix: String,
    /// How long Redis may take to count the servers, and how long this server's server-side
    /// handlers may take to answer another server: 5 s.
    pub requests_timeout: Duration,
    /// The most messages waiting to be published or appended: 4096 each. While Redis is away
    /// the stream is not written: broadcasts reach this server's sockets at once (without an
    /// offset), and requests to other servers are dropped and counted.
    pub publish_buffer: usize,
    /// The most received pub/sub messages waiting to be dispatched: 4096.
    pub receive_buffer: usize,
}

impl Default for RedisStreamsConfig {
    fn default() -> RedisStreamsConfig {
        RedisStreamsConfig {
            stream_name: "socket.io".to_owned(),
            stream_count: 1,
            channel_prefix: "socket.io".to_owned(),
            max_len: 10_000,
            read_count: 100,
            block_time: Duration::from_secs(5),
            session_key_prefix: "sio:session:".to_owned(),
            requests_timeout: Duration::from_secs(5),
            publish_buffer: 4096,
            receive_buffer: 4096,
        }
    }
}

/// How long an append may take before this server delivers without it.
const APPEND_TIMEOUT: Duration = Duration::from_secs(1);
/// The most appends sent to Redis in one pipeline.
const APPEND_BATCH: usize = 64;
/// How long the reader waits before reading again after a failure.
const READ_RETRY: Duration = Duration::from_millis(500);
/// Entries read per XRANGE page while collecting a session's missed packets.
const RANGE_PAGE: usize = 1000;
/// How many times a restore reads the stream's newest entries again to catch up with the
/// entries delivered meanwhile, before it gives up (and the client connects afresh).
const CATCH_UP_ROUNDS: usize = 20;

/// A stream entry: its id and its fields.
type Entry = (StreamId, Vec<(String, Vec<u8>)>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

/// A server's connection to a cluster on Redis streams: gives each namespace a
/// [`RedisStreamsAdapter`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use switchyard::{RecoveryConfig, SocketIo, SocketIoConfig};
/// use switchyard_redis::{RedisStreamsCluster, RedisStreamsConfig};
///
/// let cluster = RedisStreamsCluster::connect("redis://127.0.0.1:6379", RedisStreamsConfig::default()).await?;
/// let config = SocketIoConfig {
///     connection_state_recovery: Some(RecoveryConfig::default()),
///     ..SocketIoConfig::default()
/// };
/// let io = SocketIo::with_adapter(config, cluster.factory());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStreamsCluster {
    inner: Arc<ClusterInner>,
}

impl std::fmt::Debug for RedisStreamsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsCluster")
            .field("uid", &self.inner.uid)
            .field("config", &self.inner.config)
            .finish()
    }
}

struct ClusterInner {
    /// Pub/sub, and the connection for commands.
    driver: Arc<Driver>,
    /// Where the readers connect (each its own connection: a blocking read holds it).
    client: Client,
    config: Arc<RedisStreamsConfig>,
    /// This server's uid, in every message it writes.
    uid: String,
    /// The streams in use, by name; each started on first use.
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

impl RedisStreamsCluster {
    /// Connects to the Redis server at `url` (`redis://host:port/db`); fails when it cannot be
    /// reached now. Later outages are ridden out: the links reconnect by themselves.
    pub async fn connect(
        url: &str,
        config: RedisStreamsConfig,
    ) -> Result<RedisStreamsCluster, RedisAdapterError> {
        let driver = Driver::connect(
            url,
            LinkOptions {
                publish_buffer: config.publish_buffer,
                receive_buffer: config.receive_buffer,
            },
        )
        .await?;
        let client = Client::open(url.into_connection_info()?)?;
        Ok(RedisStreamsCluster {
            inner: Arc::new(ClusterInner {
                driver,
                client,
                config: Arc::new(config),
                uid: cw::new_uid(),
                streams: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The connection the adapters send their commands on, for the application's own data
    /// in the same Redis.
    pub fn connection(&self) -> crate::RedisConnection {
        self.inner.driver.commands()
    }

    /// Whether Redis answered this server's links when last tried (each is checked every
    /// second): what a readiness probe asks. Local delivery goes on either way.
    pub fn is_reachable(&self) -> bool {
        // The readers read all the time, so their state is current; an appender's is only
        // refreshed by an append, which an idle server may not make for long.
        self.inner.driver.is_reachable()
            && lock(&self.inner.streams)
                .values()
                .all(|stream| stream.read_state.is_up())
    }

    /// The adapter factory to build the server with ([`switchyard::SocketIo::with_adapter`]).
    pub fn factory(&self) -> AdapterFactory {
        let cluster = self.clone();
        Arc::new(move |context: AdapterContext<'_>| {
            Arc::new(RedisStreamsAdapter::new(&cluster, context)) as Arc<dyn Adapter>
        })
    }
}

impl ClusterInner {
    /// Stream `name`, its appender and reader started on first use.
    fn stream(self: &Arc<Self>, name: String) -> Arc<Stream> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.get(&name) {
            return stream.clone();
        }
        let (appends, queue) = mpsc::channel(self.config.publish_buffer.max(1));
        let stream = Arc::new(Stream {
            name: name.clone(),
            order: Mutex::new(Order::default()),
            appends,
            namespaces: Mutex::new(HashMap::new()),
            append_state: LinkState::new("stream appender"),
            read_state: LinkState::new("stream reader"),
            reading: tokio::sync::watch::Sender::new(false),
        });
        streams.insert(name, stream.clone());
        tokio::spawn(append(
            Arc::downgrade(&stream),
            self.driver.commands(),
            self.config.max_len,
            queue,
        ));
        tokio::spawn(read(
            Arc::downgrade(&stream),
            self.client.clone(),
            self.config.clone(),
            self.uid.clone(),
        ));
        stream
    }
}

/// One stream: its readers and writers on this server, and the order of delivery.
struct Stream {
    name: String,
    /// Held while anything from the stream is delivered here, and while a restored socket is
    /// put back.
    order: Mutex<Order>,
    appends: mpsc::Sender<Append>,
    /// The namespaces carried on this stream, by name.
    namespaces: Mutex<HashMap<String, Weak<Shared>>>,
    append_state: LinkState,
    read_state: LinkState,
    /// Whether the reader knows where it starts: entries appended from then on reach this
    /// server.
    reading: tokio::sync::watch::Sender<bool>,
}

/// How far the delivery of a stream's entries has come on this server.
#[derive(Debug, Default)]
struct Order {
    /// Every entry up to this one has been read and delivered here.
    read_upto: Option<StreamId>,
    /// Our appends Redis answered, waiting for the reader to deliver them: their id, and who
    /// waits for that.
    appended: std::collections::BTreeMap<StreamId, oneshot::Sender<()>>,
    /// The fingerprints of our entries that were applied here without the stream (the append
    /// failed or timed out, or the reader was not reading), and when: if Redis kept one after
    /// all, the reader skips it, and a restore counts it as delivered.
    applied_without: std::collections::VecDeque<(u64, std::time::Instant)>,
}

impl Order {
    /// Whether entry `id` was delivered here already.
    fn delivered(&self, id: StreamId) -> bool {
        self.read_upto.is_some_and(|upto| id <= upto)
    }

    /// Remembers that an entry of ours with fingerprint `print` took effect here without the
    /// stream; fingerprints expire after [`APPLIED_WITHOUT_TTL`] (an identical later entry
    /// must not be skipped for ever) and at most [`APPLIED_WITHOUT_MAX`] are kept.
    fn applied_without(&mut self, print: u64) {
        let now = std::time::Instant::now();
        while self.applied_without.len() >= APPLIED_WITHOUT_MAX
            || self
                .applied_without
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > APPLIED_WITHOUT_TTL)
        {
            self.applied_without.pop_front();
        }
        self.applied_without.push_back((print, now));
    }

    /// Whether an entry of ours with fingerprint `print` took effect here without the stream.
    fn was_applied_without(&self, print: u64) -> bool {
        self.applied_without.iter().any(|(p, _)| *p == print)
    }

    /// Forgets one such fingerprint; whether it was there.
    fn take_applied_without(&mut self, print: u64) -> bool {
        let held = self.applied_without.iter().position(|(p, _)| *p == print);
        held.and_then(|at| self.applied_without.remove(at))
            .is_some()
    }
}

/// How long an entry applied here without the stream is recognised if it shows up in it.
const APPLIED_WITHOUT_TTL: Duration = Duration::from_secs(30);

/// The most appends of ours waiting for the reader that are tracked.
const APPENDED_MAX: usize = 4096;

/// The most fingerprints of entries applied without the stream that are remembered.
const APPLIED_WITHOUT_MAX: usize = 4096;

/// What runs here when an entry of ours could not be appended: the local part of the
/// operation, without an offset.
type Fallback = Box<dyn FnOnce() + Send>;

/// An entry to append, and what to do here if it cannot be.
struct Append {
    fields: Vec<(&'static str, Vec<u8>)>,
    /// `None` once it took effect here already (its fingerprint is kept): only the other
    /// servers wait for it.
    fallback: Option<Fallback>,
    /// Told once the entry was delivered here (or applied without the stream).
    done: Option<oneshot::Sender<()>>,
}

impl Append {
    /// Applies it here without the stream, unless it was already.
    fn apply_here(self) {
        if let Some(fallback) = self.fallback {
            fallback();
        }
        if let Some(done) = self.done {
            let _ = done.send(());
        }
    }
}

/// A fingerprint of an entry's fields, to recognise an entry of ours that was applied
/// without the stream.
fn fingerprint(fields: &[(impl AsRef<str>, Vec<u8>)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (key, value) in fields {
        key.as_ref().hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

impl Stream {
    /// Appends an entry of ours; the reader delivers it here, in stream order with everyone
    /// else's, so that a client's last offset tells exactly what it has seen. Without a
    /// reader that reads (Redis away, or not positioned yet), or with the queue full, the
    /// fallback applies it here at once, without an offset.
    fn append(&self, fields: Vec<(&'static str, Vec<u8>)>, fallback: Fallback) -> BoxFuture<()> {
        let (done, finished) = oneshot::channel();
        let mut append = Append {
            fields,
            fallback: Some(fallback),
            done: Some(done),
        };
        // Without a reader that reads (Redis away, or not positioned yet), this server would
        // not see its own entry: it takes effect here at once, and still goes to Redis for
        // the others (the reader skips it if it reads it).
        let reading = self.read_state.is_up() && *self.reading.borrow();
        if !reading {
            lock(&self.order).applied_without(fingerprint(&append.fields));
            Append {
                fields: Vec::new(),
                fallback: append.fallback.take(),
                done: append.done.take(),
            }
            .apply_here();
        }
        let refused = match self.appends.try_send(append) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(append)) => {
                self.append_state.drop_one("append buffer full");
                Some(append)
            }
            Err(mpsc::error::TrySendError::Closed(append)) => Some(append),
        };
        if let Some(append) = refused {
            // Not under the delivery lock: it has no offset, so recovery does not order it,
            // and what it runs (a disconnection's handlers, say) may append in turn.
            append.apply_here();
        }
        Box::pin(async move {
            let _ = finished.await;
        })
    }

    fn namespace(&self, nsp: &str) -> Option<Arc<Shared>> {
        lock(&self.namespaces).get(nsp).and_then(Weak::upgrade)
    }
}

/// Appends the queue in order, a pipeline of up to [`APPEND_BATCH`] at a time, and runs what
/// follows each append under the delivery lock.
async fn append(
    stream: Weak<Stream>,
    mut connection: crate::driver::Link,
    max_len: usize,
    mut queue: mpsc::Receiver<Append>,
) {
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    while queue.recv_many(&mut batch, APPEND_BATCH).await > 0 {
        let Some(name) = stream.upgrade().map(|s| s.name.clone()) else {
            return;
        };
        let mut pipe = redis::pipe();
        for entry in &batch {
            let command = pipe
                .cmd("XADD")
                .arg(&name)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*");
            for (field, value) in &entry.fields {
                command.arg(*field).arg(value.as_slice());
            }
        }
        let appended = tokio::time::timeout(
            APPEND_TIMEOUT,
            pipe.query_async::<Vec<String>>(&mut connection),
        )
        .await;
        let Some(stream) = stream.upgrade() else {
            return;
        };
        match appended {
            Ok(Ok(ids)) if ids.len() == batch.len() => {
                stream.append_state.recovered();
                let mut order = lock(&stream.order);
                for (entry, id) in batch.drain(..).zip(ids) {
                    // Applied here already: nobody waits for the reader.
                    let Some(done) = entry.done else {
                        continue;
                    };
                    match StreamId::parse(&id) {
                        // Read already (the reader may be quicker than this answer).
                        Some(id) if order.delivered(id) => {
                            let _ = done.send(());
                        }
                        Some(id) => {
                            order.appended.insert(id, done);
                            // A reader that lags far behind (or stopped) does not make this
                            // grow without bound: the oldest waiter is released.
                            if order.appended.len() > APPENDED_MAX {
                                if let Some((_, oldest)) = order.appended.pop_first() {
                                    let _ = oldest.send(());
                                }
                            }
                        }
                        None => {
                            warn!(id, "XADD answered an id that is not one");
                            let _ = done.send(());
                        }
                    }
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    Ok(Ok(_)) => "unexpected XADD answer".to_owned(),
                    Err(_) => "XADD timed out".to_owned(),
                };
                stream.append_state.failed(&error);
                // Whether Redis kept them is unknown: applied here now, and skipped by the
                // reader if they turn up in the stream.
                {
                    let mut order = lock(&stream.order);
                    // Those applied here already have their fingerprint kept.
                    for entry in batch.iter().filter(|entry| entry.fallback.is_some()) {
                        order.applied_without(fingerprint(&entry.fields));
                    }
                }
                for entry in batch.drain(..) {
                    entry.apply_here();
                }
            }
        }
    }
}

/// Reads the stream from its end at start-up on, and delivers every entry to the namespaces
/// here, in order.
async fn read(stream: Weak<Stream>, client: Client, config: Arc<RedisStreamsConfig>, uid: String) {
    // A blocking read holds its connection: this one is the reader's alone.
    let response_timeout = config.block_time + RESPONSE_TIMEOUT;
    let config_for = || manager_config().set_response_timeout(Some(response_timeout));
    let mut connection = loop {
        match ConnectionManager::new_with_config(client.clone(), config_for()).await {
            Ok(connection) => break connection,
            Err(error) => {
                let Some(stream) = stream.upgrade() else {
                    return;
                };
                stream.read_state.failed(&error);
            }
        }
        tokio::time::sleep(READ_RETRY).await;
    };
    let block_ms = u64::try_from(config.block_time.as_millis()).unwrap_or(u64::MAX);
    // Where reading starts: after the newest entry now, found once (Node reads from `$` on
    // every read until it gets an entry, and so misses what is appended between two reads).
    let mut last: Option<StreamId> = None;
    let mut failing = false;
    loop {
        let Some(name) = stream.upgrade().map(|s| s.name.clone()) else {
            return;
        };
        let read = match last {
            None => newest_entry(&mut connection, &name).await.map(|newest| {
                let start = newest.unwrap_or_default();
                last = Some(start);
                if let Some(stream) = stream.upgrade() {
                    let mut order = lock(&stream.order);
                    order.read_upto = order.read_upto.max(Some(start));
                    stream.reading.send_replace(true);
                }
                Vec::new()
            }),
            Some(after) => {
                let mut command = redis::cmd("XREAD");
                command.arg("COUNT").arg(config.read_count.max(1));
                // After a failure, a read that does not wait: its answer tells at once that
                // Redis is back, which lets appends through again.
                if !failing {
                    command.arg("BLOCK").arg(block_ms);
                }
                let reading = command
                    .arg("STREAMS")
                    .arg(&name)
                    .arg(after.to_string())
                    .query_async::<RedisValue>(&mut connection)
                    .await;
                reading.map(|reply| xread_entries(&reply))
            }
        };
        let Some(stream) = stream.upgrade() else {
            return;
        };
        match read {
            Ok(entries) => {
                failing = false;
                stream.read_state.recovered();
                for (id, fields) in entries {
                    last = last.max(Some(id));
                    deliver_entry(&stream, &uid, id, &fields);
                }
            }
            Err(error) => {
                failing = true;
                stream.read_state.failed(&error);
                drop(stream);
                tokio::time::sleep(READ_RETRY).await;
            }
        }
    }
}

/// Delivers one entry read from the stream, under the delivery lock: every entry, ours
/// included, so that this server delivers in stream order.
fn deliver_entry(stream: &Stream, uid: &str, id: StreamId, fields: &[(String, Vec<u8>)]) {
    let message = match cw::read_stream_entry(fields) {
        Ok(message) => message,
        Err(error) => {
            warn!(stream = stream.name, %id, %error, "undecodable stream entry");
            None
        }
    };
    let mut order = lock(&stream.order);
    let ours = message.as_ref().is_some_and(|message| message.uid == uid);
    let applied = ours && order.take_applied_without(fingerprint(fields));
    let target = message
        .filter(|_| !applied)
        .and_then(|message| Some((stream.namespace(&message.nsp)?, message)));
    // A disconnection or a server-side event runs handlers, which may broadcast (and so
    // append, and without Redis take effect here at once): it runs after the lock, before the
    // next entry.
    let (now, after) = match target {
        Some((shared, message))
            if matches!(
                message.kind,
                ctype::DISCONNECT_SOCKETS | ctype::SERVER_SIDE_EMIT
            ) =>
        {
            (None, Some((shared, message)))
        }
        other => (other, None),
    };
    if let Some((shared, message)) = now {
        shared.on_stream_message(id, message);
    }
    order.read_upto = order.read_upto.max(Some(id));
    // Ours up to here are delivered (or were trimmed before the reader came to them).
    while let Some(entry) = order.appended.first_entry() {
        if *entry.key() > id {
            break;
        }
        let _ = entry.remove().send(());
    }
    drop(order);
    if let Some((shared, message)) = after {
        shared.on_stream_message(id, message);
    }
}

/// The id of the newest entry of `stream`, `None` when it is empty.
async fn newest_entry(
    connection: &mut ConnectionManager,
    stream: &str,
) -> Result<Option<StreamId>, redis::RedisError> {
    let reply: RedisValue = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await?;
    Ok(range_entries(&reply).into_iter().next().map(|(id, _)| id))
}

/// Entries `[id, [field, value, …]]` of an XRANGE answer.
fn range_entries(reply: &RedisValue) -> Vec<Entry> {
    let RedisValue::Array(entries) = reply else {
        return Vec::new();
    };
    entries.iter().filter_map(entry).collect()
}

/// Entries of an XREAD answer for one stream: `[[name, [entry, …]]]` (or a map in RESP3).
fn xread_entries(reply: &RedisValue) -> Vec<Entry> {
    match reply {
        RedisValue::Array(streams) => streams
            .iter()
            .filter_map(|stream| match stream {
                RedisValue::Array(parts) => parts.get(1),
                _ => None,
            })
            .flat_map(range_entries)
            .collect(),
        RedisValue::Map(streams) => streams
            .iter()
            .flat_map(|(_, entries)| range_entries(entries))
            .collect(),
        _ => Vec::new(),
    }
}

fn text_of(value: &RedisValue) -> Option<Vec<u8>> {
    match value {
        RedisValue::BulkString(bytes) => Some(bytes.clone()),
        RedisValue::SimpleString(text) => Some(text.clone().into_bytes()),
        _ => None,
    }
}

fn entry(value: &RedisValue) -> Option<Entry> {
    let RedisValue::Array(parts) = value else {
        return None;
    };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let id = StreamId::parse(std::str::from_utf8(&text_of(id)?).ok()?)?;
    let RedisValue::Array(fields) = fields else {
        return None;
    };
    let fields = fields
        .chunks_exact(2)
        .filter_map(|pair| {
            let key = String::from_utf8(text_of(&pair[0])?).ok()?;
            Some((key, text_of(&pair[1])?))
        })
        .collect();
    Some((id, fields))
}

/// The adapter of one namespace on a Redis streams cluster.
///
/// Its local part is an [`InMemoryAdapter`] without recovery: rooms and local delivery. With
/// connection state recovery on, offsets are stream entry ids and sessions are kept in Redis,
/// so a client recovers on any server of the cluster, Node ones included.
pub struct RedisStreamsAdapter {
    shared: Arc<Shared>,
    subscription: Arc<Subscription>,
}

struct Shared {
    cluster: Arc<ClusterInner>,
    stream: Arc<Stream>,
    /// Rooms and local delivery.
    memory: InMemoryAdapter,
    local: LocalNamespace,
    recovery: Option<RecoveryConfig>,
    /// `P#N#`: requests to every server.
    public: String,
    requests: Arc<Requests>,
    /// Sessions whose SET is still on its way to Redis, by pid: a client that reconnects
    /// at once (taking over its stale socket) finds its session here.
    persisting: Arc<Mutex<HashMap<String, SessionState>>>,
}

impl RedisStreamsAdapter {
    /// A join, leave or disconnect: through the stream (the reader carries it out here too, in
    /// order with the broadcasts), or here only for a local one.
    fn room_operation(
        &self,
        kind: u64,
        options: BroadcastOptions,
        fields: Value,
        operation: impl FnOnce(&LocalNamespace, &BroadcastOptions) + Send + 'static,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let local = self.shared.local.clone();
        if options.local {
            operation(&local, &options);
            return ready(Ok(()));
        }
        let mut data = json!({ "opts": wire::room_options_to_wire(&options) });
        if let (Value::Object(data), Value::Object(fields)) = (&mut data, fields) {
            data.extend(fields);
        }
        self.shared
            .append(kind, &data, &[], move || operation(&local, &options))
    }

    fn new(cluster: &RedisStreamsCluster, context: AdapterContext<'_>) -> RedisStreamsAdapter {
        let inner = &cluster.inner;
        let local = context.local.clone();
        let recovery = context.recovery.cloned();
        let memory = InMemoryAdapter::new(AdapterContext {
            recovery: None,
            ..context
        });
        let nsp = local.name().to_owned();
        let config = &inner.config;
        let stream = inner.stream(cw::stream_name(
            &config.stream_name,
            config.stream_count,
            &nsp,
        ));
        let public = cw::public_channel(&config.channel_prefix, &nsp);
        let private = cw::private_channel(&config.channel_prefix, &nsp, &inner.uid);
        let shared = Arc::new(Shared {
            cluster: inner.clone(),
            stream,
            memory,
            local,
            recovery,
            public: public.clone(),
            requests: Arc::default(),
            persisting: Arc::default(),
        });
        let subscriber: Weak<dyn Subscriber> = Arc::downgrade(&shared) as Weak<dyn Subscriber>;
        let subscription = Subscription::new(None, vec![public, private], subscriber);
        RedisStreamsAdapter {
            shared,
            subscription,
        }
    }
}

/// `packet` with `offset` appended to its arguments, when recovery is on and it is
/// recoverable (an event without ack id, not volatile).
fn with_offset(
    packet: Packet,
    options: &BroadcastOptions,
    recovery: bool,
    offset: Option<StreamId>,
) -> Packet {
    match (packet, offset) {
        (
            Packet::Event {
                nsp,
                id: None,
                data: Value::Array(mut values),
                attachments,
            },
            Some(offset),
        ) if recovery && !options.volatile => {
            values.push(Value::String(offset.to_string()));
            Packet::Event {
                nsp,
                id: None,
                data: Value::Array(values),
                attachments,
            }
        }
        (packet, _) => packet,
    }
}

impl Shared {
    fn nsp(&self) -> &str {
        self.local.name()
    }

    /// Appends a message of ours to the stream, from which this server's reader delivers it
    /// here too; `fallback` applies it here if it cannot be appended. The future ends once it
    /// took effect here; dropping it changes nothing.
    fn append(
        &self,
        kind: u64,
        data: &Value,
        attachments: &[Bytes],
        fallback: impl FnOnce() + Send + 'static,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = cw::stream_fields(self.uid(), self.nsp(), kind, Some((data, attachments)));
        let applied = self.stream.append(fields, Box::new(fallback));
        Box::pin(async move {
            applied.await;
            Ok(())
        })
    }

    /// An entry read from the stream (ours or another server's), under the delivery lock.
    fn on_stream_message(self: &Arc<Self>, id: StreamId, message: ClusterMessage) {
        let Some(data) = message.data else {
            return;
        };
        match message.kind {
            // Node's streams emitter writes server-side events to the stream.
            ctype::SERVER_SIDE_EMIT if message.uid != self.uid() => {
                let request_id = data.request_id().map(str::to_owned);
                peer::on_server_side_emit(self, &message.uid, data, request_id);
            }
            ctype::BROADCAST => {
                let (Some(packet), Some(opts)) = (data.field("packet"), data.field("opts")) else {
                    return;
                };
                if let Some(delivery) = data.delivery(packet, opts, self.nsp()) {
                    let packet = with_offset(
                        delivery.packet,
                        &delivery.options,
                        self.recovery.is_some(),
                        Some(id),
                    );
                    self.local.broadcast(&packet, &delivery.options);
                }
            }
            ctype::SOCKETS_JOIN => {
                let options = options_of(&data);
                self.local.add_sockets(&options, &data.rooms_field("rooms"));
            }
            ctype::SOCKETS_LEAVE => {
                let options = options_of(&data);
                self.local.del_sockets(&options, &data.rooms_field("rooms"));
            }
            ctype::DISCONNECT_SOCKETS => {
                let options = options_of(&data);
                let close = data.field("close").and_then(Value::as_bool) == Some(true);
                self.local.disconnect_sockets(&options, close);
            }
            other => debug!(kind = other, "stream entry of a type not kept in streams"),
        }
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}{pid}", self.cluster.config.session_key_prefix)
    }

    /// Persists `session` in Redis for the recovery window.
    fn persist(&self, session: SessionState) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let pid = session.pid.to_string();
        let key = self.session_key(&pid);
        let value = cw::encode_session(&session);
        let lifetime = u64::try_from(recovery.max_disconnection_duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        lock(&self.persisting).insert(pid.clone(), session);
        let persisting = self.persisting.clone();
        let mut connection = self.cluster.driver.commands();
        tokio::spawn(async move {
            let mut command = redis::cmd("SET");
            command.arg(&key).arg(value).arg("PX").arg(lifetime);
            let storing = command.query_async::<()>(&mut connection);
            match tokio::time::timeout(RESPONSE_TIMEOUT, storing).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "session not kept: Redis refused it"),
                Err(_) => warn!("session not kept: Redis did not answer"),
            }
            // Taken meanwhile (from here): what was just stored must not be taken again.
            if lock(&persisting).remove(&pid).is_none() {
                let mut command = redis::cmd("DEL");
                command.arg(&key);
                let deleting = command.query_async::<()>(&mut connection);
                let _ = tokio::time::timeout(RESPONSE_TIMEOUT, deleting).await;
            }
        });
    }

    /// Takes session `pid`: from the sessions still on their way to Redis, else out of Redis
    /// (GET and DEL in one transaction, as Node does).
    async fn take_session(&self, pid: &str) -> Result<Option<SessionState>, AdapterError> {
        if let Some(session) = lock(&self.persisting).remove(pid) {
            return Ok(Some(session));
        }
        let key = self.session_key(pid);
        let mut connection = self.cluster.driver.commands();
        let (stored,): (Option<Vec<u8>>,) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        match cw::decode_session(&stored) {
            Ok(session) => Ok(Some(session)),
            Err(error) => {
                warn!(pid, %error, "stored session unreadable; connecting afresh");
                Ok(None)
            }
        }
    }

    /// Entries of the stream after `after`, up to `cap` of them; `None` past the cap.
    async fn entries_after(
        &self,
        after: StreamId,
        cap: usize,
    ) -> Result<Option<Vec<Entry>>, AdapterError> {
        let mut connection = self.cluster.driver.commands();
        let mut entries = Vec::new();
        let mut from = after;
        loop {
            let reply: RedisValue = redis::cmd("XRANGE")
                .arg(&self.stream.name)
                .arg(from.exclusive_start())
                .arg("+")
                .arg("COUNT")
                .arg(RANGE_PAGE)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            let page = range_entries(&reply);
            let full = page.len() >= RANGE_PAGE;
            if let Some((last, _)) = page.last() {
                from = *last;
            }
            entries.extend(page);
            if entries.len() > cap {
                return Ok(None);
            }
            if !full {
                return Ok(Some(entries));
            }
        }
    }

    /// Whether entry `id` is still in the stream (a trimmed one means packets were lost).
    async fn still_held(&self, id: StreamId) -> Result<bool, AdapterError> {
        let mut connection = self.cluster.driver.commands();
        let reply: RedisValue = redis::cmd("XRANGE")
            .arg(&self.stream.name)
            .arg(id.to_string())
            .arg(id.to_string())
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        Ok(!range_entries(&reply).is_empty())
    }

    async fn restore(
        &self,
        pid: String,
        offset: Option<String>,
        attach: AttachSession,
    ) -> Result<Option<Vec<EncodedPacket>>, AdapterError> {
        if self.recovery.is_none() {
            return Ok(None);
        }
        let from_client = match offset.as_deref() {
            Some(offset) => match StreamId::parse(offset) {
                Some(id) => Some(id),
                None => return Ok(None),
            },
            None => None,
        };
        // Until the reader is positioned, this server cannot tell what it delivered.
        let mut reading = self.stream.reading.subscribe();
        let positioned = reading.wait_for(|reading| *reading);
        if tokio::time::timeout(RESPONSE_TIMEOUT, positioned)
            .await
            .is_err()
        {
            debug!(pid, "the stream reader has not started; connecting afresh");
            return Ok(None);
        }
        let Some(session) = self.take_session(&pid).await? else {
            return Ok(None);
        };
        let from_start = session.start_offset.as_deref().and_then(StreamId::parse);
        // A client never gets packets from before its session began.
        let Some(after) = from_client.max(from_start) else {
            return Ok(None);
        };
        if after != StreamId::default() && !self.still_held(after).await? {
            debug!(pid, %after, "offset trimmed from the stream; connecting afresh");
            return Ok(None);
        }
        let cap = self
            .cluster
            .config
            .max_len
            .saturating_mul(2)
            .max(RANGE_PAGE);
        let Some(entries) = self.entries_after(after, cap).await? else {
            return Ok(None);
        };
        // Decoded here, not under the delivery lock.
        let mut candidates = self.candidates(&entries);
        let mut fetched_upto = entries.last().map(|(id, _)| *id).unwrap_or(after);
        let mut fetched = entries.len();
        let mut attach = Some(attach);
        let mut session = Some(session);
        for _ in 0..CATCH_UP_ROUNDS {
            {
                let order = lock(&self.stream.order);
                // Everything delivered here so far was read by our range: cut now.
                if order.read_upto.is_none_or(|newest| newest <= fetched_upto) {
                    let (Some(attach), Some(session)) = (attach.take(), session.take()) else {
                        return Ok(None);
                    };
                    let sid = session.sid.clone();
                    let mut member_of = attach(session);
                    member_of.push(sid);
                    candidates.retain(|candidate| {
                        let delivered = order.delivered(candidate.id)
                            || (candidate.ours && order.was_applied_without(candidate.print));
                        delivered && candidate.options.targets(&member_of)
                    });
                    drop(order);
                    let parser = self.local.parser();
                    return Ok(Some(
                        candidates
                            .into_iter()
                            .map(|candidate| EncodedPacket::new(parser, &candidate.packet))
                            .collect(),
                    ));
                }
            }
            let Some(more) = self.entries_after(fetched_upto, cap).await? else {
                return Ok(None);
            };
            fetched += more.len();
            if fetched > cap {
                return Ok(None);
            }
            if let Some((last, _)) = more.last() {
                fetched_upto = *last;
            }
            candidates.extend(self.candidates(&more));
        }
        if let Some(session) = session {
            // Not caught up: the session stays for another try.
            self.persist(session);
        }
        Ok(None)
    }

    /// The entries that may be replayed to a socket of this namespace: its broadcasts (not
    /// volatile: Node replays those, though live they carry no offset), with their offsets.
    fn candidates(&self, entries: &[Entry]) -> Vec<Candidate> {
        entries
            .iter()
            .filter_map(|(id, fields)| {
                let message = cw::read_stream_entry(fields).ok()??;
                if message.nsp != self.nsp() || message.kind != ctype::BROADCAST {
                    return None;
                }
                let ours = message.uid == self.uid();
                let data = message.data?;
                if data.request_id().is_some() {
                    return None;
                }
                let delivery =
                    data.delivery(data.field("packet")?, data.field("opts")?, self.nsp())?;
                if delivery.options.volatile {
                    return None;
                }
                let packet = with_offset(delivery.packet, &delivery.options, true, Some(*id));
                Some(Candidate {
                    id: *id,
                    ours,
                    print: fingerprint(fields),
                    options: delivery.options,
                    packet,
                })
            })
            .collect()
    }
}

/// A broadcast of the stream that a restored socket may have missed.
struct Candidate {
    id: StreamId,
    /// Appended by this server.
    ours: bool,
    print: u64,
    options: BroadcastOptions,
    /// With its offset.
    packet: Packet,
}

/// The `opts` of a cluster message's data; absent options target every socket.
impl ClusterPeer for Shared {
    fn uid(&self) -> &str {
        &self.cluster.uid
    }

    fn local(&self) -> &LocalNamespace {
        &self.local
    }

    fn requests(&self) -> &Arc<Requests> {
        &self.requests
    }

    fn requests_timeout(&self) -> Duration {
        self.cluster.config.requests_timeout
    }

    /// Requests travel on pub/sub, always as msgpack (the stream carries the rest).
    fn publish(&self, kind: u64, data: &Value, attachments: &[Bytes]) {
        let payload = cw::encode_envelope(self.uid(), self.nsp(), kind, data, attachments);
        self.cluster.driver.publish(self.public.clone(), payload);
    }

    fn respond(&self, uid: &str, kind: u64, data: &Value, attachments: &[Bytes]) {
        let channel = cw::private_channel(&self.cluster.config.channel_prefix, self.nsp(), uid);
        let payload = cw::encode_envelope(self.uid(), self.nsp(), kind, data, attachments);
        self.cluster.driver.publish(channel, payload);
    }

    async fn server_count(&self) -> Result<usize, AdapterError> {
        let counting = numsub(self.cluster.driver.commands(), &self.public);
        match tokio::time::timeout(self.cluster.config.requests_timeout, counting).await {
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
        if message.uid == self.uid() {
            return;
        }
        if channel == self.public {
            peer::on_request(&self, message);
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

impl Adapter for RedisStreamsAdapter {
    crate::room_index_methods!(shared.memory);

    fn init(&self) -> BoxFuture<Result<(), AdapterError>> {
        let shared = self.shared.clone();
        lock(&shared.stream.namespaces).insert(shared.nsp().to_owned(), Arc::downgrade(&shared));
        let subscription = self.subscription.clone();
        let mut reading = shared.stream.reading.subscribe();
        Box::pin(async move {
            // Counted as a server (subscribed) only once the stream reaches it, so that a
            // server that sees the others can count on them receiving its broadcasts.
            let positioned = reading.wait_for(|reading| *reading);
            if tokio::time::timeout(RESPONSE_TIMEOUT, positioned)
                .await
                .is_err()
            {
                warn!(
                    nsp = shared.nsp(),
                    "the stream reader has not started; subscribing anyway"
                );
            }
            // A failed subscription is retried by the link's watcher; the namespace serves its
            // local clients meanwhile.
            if let Err(error) = shared.cluster.driver.subscribe(subscription).await {
                warn!(nsp = shared.nsp(), %error, "subscribing to the cluster failed; retrying in the background");
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<()> {
        let shared = self.shared.clone();
        {
            let mut namespaces = lock(&shared.stream.namespaces);
            let ours = namespaces
                .get(shared.nsp())
                .is_some_and(|held| std::ptr::eq(held.as_ptr(), Arc::as_ptr(&shared)));
            if ours {
                namespaces.remove(shared.nsp());
            }
        }
        let subscription = self.subscription.clone();
        Box::pin(async move { shared.cluster.driver.unsubscribe(&subscription).await })
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
        let shared = self.shared.clone();
        if options.local {
            shared.local.broadcast(&packet, &options);
            return ready(Ok(()));
        }
        let (wire_packet, attachments) = wire::packet_to_wire(&packet);
        let data = json!({"packet": wire_packet, "opts": wire::options_to_wire(&options, None)});
        let attachments = attachments.to_vec();
        let local = shared.local.clone();
        shared.append(ctype::BROADCAST, &data, &attachments, move || {
            local.broadcast(&packet, &options);
        })
    }

    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
        peer::broadcast_with_ack(self.shared.clone(), packet, options, timeout)
    }

    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = json!({ "rooms": rooms });
        self.room_operation(
            ctype::SOCKETS_JOIN,
            options,
            fields,
            move |local, options| local.add_sockets(options, &rooms),
        )
    }

    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let fields = json!({ "rooms": rooms });
        self.room_operation(
            ctype::SOCKETS_LEAVE,
            options,
            fields,
            move |local, options| local.del_sockets(options, &rooms),
        )
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
            move |local, options| local.disconnect_sockets(options, close),
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
        // Under the delivery lock: every entry read after the answered one reaches the socket
        // live.
        let order = lock(&self.shared.stream.order);
        attach();
        self.shared.recovery.as_ref()?;
        order.read_upto.map(|id| id.to_string())
    }

    fn persist_session(&self, session: SessionState) {
        self.shared.persist(session);
    }

    fn restore_session(
        &self,
        pid: String,
        offset: Option<String>,
        attach: AttachSession,
    ) -> BoxFuture<Result<Option<Vec<EncodedPacket>>, AdapterError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let deadline = deadline_after(shared.cluster.config.requests_timeout);
            timeout_at(deadline, shared.restore(pid, offset, attach))
                .await
                .map_err(|_| AdapterError::Timeout)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> RedisValue {
        RedisValue::BulkString(text.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[(&str, &str)]) -> RedisValue {
        let fields = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        RedisValue::Array(vec![bulk(id), RedisValue::Array(fields)])
    }

    #[test]
    fn stream_answers_are_read_in_both_protocol_shapes() {
        let entries = RedisValue::Array(vec![
            raw_entry("1-0", &[("uid", "u"), ("nsp", "/"), ("type", "3")]),
            raw_entry("not-an-id", &[("uid", "u")]),
            raw_entry("1-1", &[("uid", "v"), ("odd", "fields"), ("dangling", "x")]),
        ]);
        let read = range_entries(&entries);
        assert_eq!(read.len(), 2, "the entry with a bad id is skipped");
        assert_eq!(read[0].0, StreamId { ms: 1, seq: 0 });
        assert_eq!(read[0].1[1], ("nsp".to_owned(), b"/".to_vec()));
        let resp2 = RedisValue::Array(vec![RedisValue::Array(vec![
            bulk("socket.io"),
            entries.clone(),
        ])]);
        assert_eq!(xread_entries(&resp2).len(), 2);
        let resp3 = RedisValue::Map(vec![(bulk("socket.io"), entries)]);
        assert_eq!(xread_entries(&resp3).len(), 2);
        assert!(
            xread_entries(&RedisValue::Nil).is_empty(),
            "a read that timed out"
        );
    }

    #[test]
    fn offsets_go_on_recoverable_events_only() {
        let id = Some(StreamId { ms: 7, seq: 1 });
        let event = Packet::event("/", "e", vec![json!(1)]);
        let plain = BroadcastOptions::default();
        let with = with_offset(event.clone(), &plain, true, id);
        assert_eq!(with.data(), Some(&json!(["e", 1, "7-1"])));
        assert_eq!(
            with_offset(event.clone(), &plain, false, id),
            event,
            "recovery off"
        );
        assert_eq!(
            with_offset(event.clone(), &plain, true, None),
            event,
            "no offset"
        );
        let volatile = BroadcastOptions {
            volatile: true,
            ..Default::default()
        };
        assert_eq!(
            with_offset(event.clone(), &volatile, true, id),
            event,
            "volatile"
        );
    }

    #[test]
    fn fingerprints_match_what_was_written_and_what_is_read() {
        let written = cw::stream_fields("u", "/", ctype::BROADCAST, Some((&json!({"a": 1}), &[])));
        let read: Vec<(String, Vec<u8>)> = written
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(fingerprint(&written), fingerprint(&read));
        let other = cw::stream_fields("u", "/", ctype::BROADCAST, Some((&json!({"a": 2}), &[])));
        assert_ne!(fingerprint(&written), fingerprint(&other));
    }

    #[test]
    fn entries_applied_without_the_stream_are_remembered_a_while_and_at_most_so_many() {
        let mut order = Order::default();
        order.applied_without(7);
        assert!(order.was_applied_without(7));
        assert!(order.take_applied_without(7));
        assert!(!order.take_applied_without(7), "taken once");
        for print in 0..(APPLIED_WITHOUT_MAX as u64 + 10) {
            order.applied_without(print);
        }
        assert_eq!(order.applied_without.len(), APPLIED_WITHOUT_MAX);
        assert!(!order.was_applied_without(0), "the oldest go first");
        // Expired ones go when the next comes.
        let old = std::time::Instant::now() - APPLIED_WITHOUT_TTL - Duration::from_secs(1);
        order
            .applied_without
            .iter_mut()
            .for_each(|(_, at)| *at = old);
        order.applied_without(1);
        assert_eq!(order.applied_without.len(), 1);
    }

    #[test]
    fn delivered_means_read_up_to() {
        let mut order = Order::default();
        assert!(!order.delivered(StreamId::default()));
        order.read_upto = Some(StreamId { ms: 5, seq: 2 });
        assert!(order.delivered(StreamId { ms: 5, seq: 2 }));
        assert!(order.delivered(StreamId { ms: 4, seq: 9 }));
        assert!(!order.delivered(StreamId { ms: 5, seq: 3 }));
    }
}
