//! The classic Redis adapter: the wire protocol of `@socket.io/redis-adapter` 8.3's
//! `createAdapter`, so Switchyard and Node servers on one Redis form one cluster.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard::adapter::{
    AckReply, Adapter, AdapterContext, AdapterError, AdapterFactory, AttachSession, BoxFuture,
    BroadcastOptions, EncodedPacket, InMemoryAdapter, LocalNamespace, Room, SessionState, Sid,
    SocketInfo,
};
use switchyard::proto::Packet;
use switchyard::Args;
use tokio::time::timeout_at;
use tracing::warn;

use crate::driver::{numsub, Driver, LinkOptions, Subscriber, Subscription};
use crate::error::{backend, RedisAdapterError};
use crate::requests::{
    collect_broadcast_acks, deadline_after, other_servers, sockets_of, AckKinds, Answer, Pending,
    Requests, MAX_REMOTE_ACK_TIMEOUT,
};
use crate::wire::{self, kind, Channels, Message};

/// Options of the Redis adapters; the defaults are those of the Node adapter.
#[derive(Debug, Clone)]
pub struct RedisAdapterConfig {
    /// The prefix of every channel (Node's `key`): `socket.io`.
    pub prefix: String,
    /// How long Redis may take to count the servers, how long this server's server-side
    /// handlers may take to answer another server, and how long another server's broadcast
    /// with acks waits for this server's clients when it names no timeout: 5 s. Fetches and
    /// server-side emits wait as long as their caller says.
    pub requests_timeout: Duration,
    /// Answer requests on the requester's own response channel rather than the shared one
    /// (Node's `publishOnSpecificResponseChannel`): off.
    pub publish_on_specific_response_channel: bool,
    /// The most messages waiting to be published: 4096. While Redis is away they wait here;
    /// once it is full, further messages are dropped (counted and logged once). Local
    /// delivery never waits for it.
    pub publish_buffer: usize,
    /// The most received messages waiting to be dispatched: 4096; beyond, dropped and
    /// counted.
    pub receive_buffer: usize,
}

impl Default for RedisAdapterConfig {
    fn default() -> RedisAdapterConfig {
        RedisAdapterConfig {
            prefix: "socket.io".to_owned(),
            requests_timeout: Duration::from_secs(5),
            publish_on_specific_response_channel: false,
            publish_buffer: 4096,
            receive_buffer: 4096,
        }
    }
}

/// A server's connection to a Redis-backed cluster: gives each namespace a [`RedisAdapter`].
///
/// One per server: Redis counts servers by their subscriber connections, so two servers
/// sharing one would count as one.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use switchyard::{SocketIo, SocketIoConfig};
/// use switchyard_redis::{RedisAdapterConfig, RedisCluster};
///
/// let cluster = RedisCluster::connect("redis://127.0.0.1:6379", RedisAdapterConfig::default()).await?;
/// let io = SocketIo::with_adapter(SocketIoConfig::default(), cluster.factory());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCluster {
    driver: Arc<Driver>,
    config: Arc<RedisAdapterConfig>,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("config", &self.config)
            .finish()
    }
}

impl RedisCluster {
    /// Connects to the Redis server at `url` (`redis://host:port/db`); fails when it cannot be
    /// reached now. Later outages are ridden out: the link reconnects and subscribes again by
    /// itself.
    pub async fn connect(
        url: &str,
        config: RedisAdapterConfig,
    ) -> Result<RedisCluster, RedisAdapterError> {
        let driver = Driver::connect(
            url,
            LinkOptions {
                publish_buffer: config.publish_buffer,
                receive_buffer: config.receive_buffer,
            },
        )
        .await?;
        Ok(RedisCluster {
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
            Arc::new(RedisAdapter::new(&cluster, context)) as Arc<dyn Adapter>
        })
    }
}

/// The adapter of one namespace on a classic Redis cluster.
///
/// Its local part is an [`InMemoryAdapter`]: rooms, and with connection state recovery on,
/// packets and sessions kept on this server. As with Node's adapter, recovery does not cross
/// servers: a client recovers its session (with every packet it missed, from any server) only
/// on the server it dropped from.
pub struct RedisAdapter {
    shared: Arc<Shared>,
    subscription: Arc<Subscription>,
}

struct Shared {
    driver: Arc<Driver>,
    config: Arc<RedisAdapterConfig>,
    /// This adapter's uid (per namespace per server, as on Node).
    uid: String,
    channels: Channels,
    /// Rooms, local delivery and recovery.
    memory: InMemoryAdapter,
    local: LocalNamespace,
    /// Our requests waiting for answers.
    requests: Arc<Requests>,
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

impl RedisAdapter {
    fn new(cluster: &RedisCluster, context: AdapterContext<'_>) -> RedisAdapter {
        let local = context.local.clone();
        let memory = InMemoryAdapter::new(context);
        let uid = wire::new_id();
        let channels = Channels::new(&cluster.config.prefix, local.name());
        let shared = Arc::new(Shared {
            driver: cluster.driver.clone(),
            config: cluster.config.clone(),
            channels: channels.clone(),
            memory,
            local,
            requests: Arc::default(),
            uid: uid.clone(),
        });
        let subscriber: Weak<dyn Subscriber> = Arc::downgrade(&shared) as Weak<dyn Subscriber>;
        let subscription = Subscription::new(
            Some(channels.pattern.clone()),
            vec![
                channels.request.clone(),
                channels.response.clone(),
                channels.own_response(&uid),
            ],
            subscriber,
        );
        RedisAdapter {
            shared,
            subscription,
        }
    }
}

impl Shared {
    fn publish_json(&self, channel: String, value: &Value) {
        self.driver.publish(channel, wire::encode_json(value));
    }

    /// The server count, within the requests timeout.
    async fn server_count(&self) -> Result<usize, AdapterError> {
        let counting = numsub(self.driver.commands(), &self.channels.request);
        match tokio::time::timeout(self.config.requests_timeout, counting).await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(error)) => Err(backend(error)),
            Err(_) => Err(AdapterError::Timeout),
        }
    }

    /// Where to answer a request from server `uid`.
    fn response_channel(&self, uid: Option<&str>) -> String {
        match uid {
            Some(uid) if self.config.publish_on_specific_response_channel => {
                self.channels.own_response(uid)
            }
            _ => self.channels.response.clone(),
        }
    }

    fn is_ours(&self, request_id: Option<&str>) -> bool {
        self.requests.is_ours(request_id)
    }

    fn pending(&self) -> Pending {
        Pending::new(&self.requests, wire::new_id())
    }

    fn on_request(self: &Arc<Self>, message: Message) {
        let uid = message.uid().map(str::to_owned);
        let request_id = message.request_id().map(str::to_owned);
        let answer_to = self.response_channel(uid.as_deref());
        match message.kind() {
            Some(kind::SOCKETS) if !self.is_ours(request_id.as_deref()) => {
                let options = BroadcastOptions {
                    rooms: message.rooms_field("rooms"),
                    ..Default::default()
                };
                let sockets: Vec<String> = self
                    .local
                    .sockets(&options)
                    .iter()
                    .map(|s| s.id().to_string())
                    .collect();
                self.publish_json(
                    answer_to,
                    &json!({"requestId": request_id, "sockets": sockets}),
                );
            }
            Some(kind::ALL_ROOMS) if !self.is_ours(request_id.as_deref()) => {
                let mut rooms: Vec<Room> = self.memory.rooms();
                rooms.extend(
                    self.local
                        .sockets(&BroadcastOptions::default())
                        .iter()
                        .map(|s| s.id().clone()),
                );
                self.publish_json(answer_to, &json!({"requestId": request_id, "rooms": rooms}));
            }
            Some(kind @ (kind::REMOTE_JOIN | kind::REMOTE_LEAVE | kind::REMOTE_DISCONNECT)) => {
                // Our own requests were carried out here before they were published.
                if uid.as_deref() == Some(self.uid.as_str()) {
                    return;
                }
                // Node takes the modern form only for a truthy `opts`.
                if message.field("opts").is_some_and(|opts| opts.is_object()) {
                    let options = message.options();
                    match kind {
                        kind::REMOTE_JOIN => self
                            .local
                            .add_sockets(&options, &message.rooms_field("rooms")),
                        kind::REMOTE_LEAVE => self
                            .local
                            .del_sockets(&options, &message.rooms_field("rooms")),
                        _ => self
                            .local
                            .disconnect_sockets(&options, close_flag(&message)),
                    }
                    return;
                }
                // The legacy form: one socket, by id; its server answers.
                let Some(sid) = message.str_field("sid") else {
                    return;
                };
                let options = BroadcastOptions {
                    rooms: vec![Sid::from(sid)],
                    ..Default::default()
                };
                if self.local.sockets(&options).is_empty() {
                    return;
                }
                let room: Vec<Room> = message
                    .str_field("room")
                    .map(|room| vec![Room::from(room)])
                    .unwrap_or_default();
                match kind {
                    kind::REMOTE_JOIN => self.local.add_sockets(&options, &room),
                    kind::REMOTE_LEAVE => self.local.del_sockets(&options, &room),
                    _ => self
                        .local
                        .disconnect_sockets(&options, close_flag(&message)),
                }
                self.publish_json(answer_to, &json!({"requestId": request_id}));
            }
            Some(kind::REMOTE_FETCH) if !self.is_ours(request_id.as_deref()) => {
                let sockets = self.local.fetch_sockets(&message.options());
                self.publish_json(
                    answer_to,
                    &json!({"requestId": request_id, "sockets": sockets}),
                );
            }
            Some(kind::SERVER_SIDE_EMIT) if uid.as_deref() != Some(self.uid.as_str()) => {
                self.on_server_side_emit(message, request_id);
            }
            Some(kind::BROADCAST) if !self.is_ours(request_id.as_deref()) => {
                self.on_broadcast_request(message, request_id, answer_to);
            }
            _ => {}
        }
    }

    fn on_server_side_emit(self: &Arc<Self>, message: Message, request_id: Option<String>) {
        let Some(Value::Array(data)) = message.field("data").cloned() else {
            return;
        };
        let mut parts = data.into_iter();
        let Some(Value::String(event)) = parts.next() else {
            return;
        };
        let args = message.args_of(Value::Array(parts.collect()));
        let answering = self.local.server_side_emit(&event, args);
        let shared = self.clone();
        let limit = self.config.requests_timeout;
        tokio::spawn(async move {
            // The requester stops waiting after its own timeout: no use holding a task longer.
            let answer = tokio::time::timeout(limit, answering).await.ok().flatten();
            // Node answers server-side emits on the shared channel whatever its option.
            if let (Some(request_id), Some(answer)) = (request_id, answer) {
                let first = wire::first_as_json(&answer);
                shared.publish_json(
                    shared.channels.response.clone(),
                    &json!({"type": kind::SERVER_SIDE_EMIT, "requestId": request_id, "data": first}),
                );
            }
        });
    }

    fn on_broadcast_request(
        self: &Arc<Self>,
        message: Message,
        request_id: Option<String>,
        answer_to: String,
    ) {
        let (Some(request_id), Some(packet), Some(opts)) =
            (request_id, message.field("packet"), message.field("opts"))
        else {
            return;
        };
        let Some(delivery) = message.delivery(packet, opts, self.local.name()) else {
            // Counted as a server by the requester, which waits for our count: none here.
            self.publish_json(
                answer_to,
                &json!({"type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": 0}),
            );
            return;
        };
        // Another server's timeout holds our clients' ack slots: bounded here.
        let timeout = delivery
            .timeout
            .unwrap_or(self.config.requests_timeout)
            .min(MAX_REMOTE_ACK_TIMEOUT);
        let mut acks = self
            .local
            .broadcast_with_ack(delivery.packet, &delivery.options, timeout);
        // The count goes first, on the same queue as the acks that follow it.
        self.publish_json(
            answer_to.clone(),
            &json!({"type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": acks.count}),
        );
        if acks.count == 0 {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            while let Some(reply) = acks.replies.recv().await {
                if let Ok(args) = reply.result {
                    shared.driver.publish(
                        answer_to.clone(),
                        wire::encode_broadcast_ack(&request_id, &args),
                    );
                }
            }
        });
    }

    fn on_response(&self, message: Message) {
        let Some(request_id) = message.request_id().map(str::to_owned) else {
            return;
        };
        let kind = message.kind();
        self.requests.answer(&request_id, Answer { kind, message });
    }
}

fn close_flag(message: &Message) -> bool {
    message
        .field("close")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl Subscriber for Shared {
    fn on_message(self: Arc<Self>, channel: &str, payload: Bytes) {
        let message = match Message::decode(&payload) {
            Ok(message) => message,
            Err(error) => {
                warn!(channel, %error, "undecodable message from another server");
                return;
            }
        };
        if channel == self.channels.request {
            self.on_request(message);
        } else {
            self.on_response(message);
        }
    }

    fn on_pattern_message(self: Arc<Self>, channel: &str, payload: Bytes) {
        let Some(room) = self.channels.room_of(channel) else {
            return;
        };
        // A room broadcast for a room we have no socket in is skipped undecoded.
        if !room.is_empty() {
            let room = Room::from(room);
            let mut any = false;
            self.memory.for_each_in_room(&room, &mut |_| any = true);
            // A socket's own id room is not in the index.
            let is_local_socket = || {
                let options = BroadcastOptions {
                    rooms: vec![room.clone()],
                    ..Default::default()
                };
                !self.local.sockets(&options).is_empty()
            };
            if !any && !is_local_socket() {
                return;
            }
        }
        let broadcast = Message::decode(&payload).and_then(|m| m.broadcast(self.local.name()));
        match broadcast {
            Ok((uid, _)) if uid == self.uid => {}
            Ok((_, Some(delivery))) => {
                // Ready at once: local delivery (and, with recovery, keeping the packet).
                drop(self.memory.broadcast(delivery.packet, delivery.options));
            }
            Ok((_, None)) => {}
            Err(error) => warn!(channel, %error, "undecodable broadcast from another server"),
        }
    }
}

impl Adapter for RedisAdapter {
    crate::room_index_methods!(shared.memory);

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

    fn init(&self) -> BoxFuture<Result<(), AdapterError>> {
        let driver = self.shared.driver.clone();
        let subscription = self.subscription.clone();
        let nsp = self.shared.local.name().to_owned();
        Box::pin(async move {
            // A failed subscription is retried by the link's watcher; the namespace serves its
            // local clients meanwhile.
            if let Err(error) = driver.subscribe(subscription).await {
                warn!(nsp, %error, "subscribing to the cluster failed; retrying in the background");
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<()> {
        let driver = self.shared.driver.clone();
        let subscription = self.subscription.clone();
        Box::pin(async move { driver.unsubscribe(&subscription).await })
    }

    fn server_count(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.server_count().await })
    }

    fn broadcast(
        &self,
        packet: Packet,
        options: BroadcastOptions,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let shared = &self.shared;
        if !options.local {
            let payload = wire::encode_broadcast(&shared.uid, &packet, &options);
            shared
                .driver
                .publish(shared.channels.broadcast_channel(&options), payload);
        }
        shared.memory.broadcast(packet, options)
    }

    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
        let shared = self.shared.clone();
        let pending = shared.pending();
        if !options.local {
            let request = wire::encode_broadcast_request(
                &shared.uid,
                &pending.id,
                &packet,
                &options,
                timeout,
            );
            shared
                .driver
                .publish(shared.channels.request.clone(), request);
        }
        let local = shared.local.broadcast_with_ack(packet, &options, timeout);
        Box::pin(async move {
            let deadline = deadline_after(timeout);
            let servers = if options.local {
                1
            } else {
                // Without a count, every answer that comes in time is still taken.
                match timeout_at(deadline, shared.server_count()).await {
                    Ok(Ok(count)) => count,
                    _ => usize::MAX,
                }
            };
            let kinds = AckKinds {
                client_count: kind::BROADCAST_CLIENT_COUNT,
                ack: kind::BROADCAST_ACK,
            };
            let replies = collect_broadcast_acks(local, pending, servers, deadline, kinds).await;
            Ok(replies)
        })
    }

    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.room_request(
            kind::REMOTE_JOIN,
            options,
            json!({ "rooms": rooms }),
            |local, options| local.add_sockets(options, &rooms),
        )
    }

    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.room_request(
            kind::REMOTE_LEAVE,
            options,
            json!({ "rooms": rooms }),
            |local, options| local.del_sockets(options, &rooms),
        )
    }

    fn disconnect_sockets(
        &self,
        options: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.room_request(
            kind::REMOTE_DISCONNECT,
            options,
            json!({ "close": close }),
            |local, options| local.disconnect_sockets(options, close),
        )
    }

    fn fetch_sockets(
        &self,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>> {
        let shared = self.shared.clone();
        let mut found = shared.local.fetch_sockets(&options);
        if options.local {
            return ready(Ok(found));
        }
        Box::pin(async move {
            let deadline = deadline_after(timeout);
            let others = other_servers(shared.server_count(), deadline).await?;
            if others == 0 {
                return Ok(found);
            }
            let mut pending = shared.pending();
            shared.publish_json(
                shared.channels.request.clone(),
                &json!({
                    "uid": shared.uid,
                    "requestId": pending.id,
                    "type": kind::REMOTE_FETCH,
                    "opts": wire::room_options_to_wire(&options),
                }),
            );
            // Answers to fetches carry no type.
            let answers = pending
                .collect(others, None, deadline, |answer| sockets_of(&answer))
                .await?;
            found.extend(answers.into_iter().flatten());
            Ok(found)
        })
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Args,
        ack: Option<Duration>,
    ) -> BoxFuture<Result<Vec<Args>, AdapterError>> {
        let shared = self.shared.clone();
        let data = wire::event_to_json(&event, &args);
        let Some(timeout) = ack else {
            shared.publish_json(
                shared.channels.request.clone(),
                &json!({"uid": shared.uid, "type": kind::SERVER_SIDE_EMIT, "data": data}),
            );
            return ready(Ok(Vec::new()));
        };
        Box::pin(async move {
            let deadline = deadline_after(timeout);
            let others = other_servers(shared.server_count(), deadline).await?;
            if others == 0 {
                return Ok(Vec::new());
            }
            let mut pending = shared.pending();
            shared.publish_json(
                shared.channels.request.clone(),
                &json!({
                    "uid": shared.uid,
                    "requestId": pending.id,
                    "type": kind::SERVER_SIDE_EMIT,
                    "data": data,
                }),
            );
            let kind = Some(kind::SERVER_SIDE_EMIT);
            pending
                .collect(others, kind, deadline, |answer| answer.argument("data"))
                .await
        })
    }
}

impl RedisAdapter {
    /// Carries out a join, leave or disconnect here, then asks the other servers to.
    fn room_request(
        &self,
        request: u64,
        options: BroadcastOptions,
        fields: Value,
        here: impl FnOnce(&LocalNamespace, &BroadcastOptions),
    ) -> BoxFuture<Result<(), AdapterError>> {
        let shared = &self.shared;
        here(&shared.local, &options);
        if !options.local {
            let mut message = json!({
                "uid": shared.uid,
                "type": request,
                "opts": wire::room_options_to_wire(&options),
            });
            if let (Value::Object(message), Value::Object(fields)) = (&mut message, fields) {
                message.extend(fields);
            }
            shared.publish_json(shared.channels.request.clone(), &message);
        }
        ready(Ok(()))
    }
}
