//! The emitter: publishes to a classic Redis cluster like `@socket.io/redis-emitter` 5.1, so a
//! service with no socket server can reach the cluster's clients.

use redis::aio::ConnectionManager;
use serde_json::json;
use switchyard::adapter::{BroadcastOptions, Room};
use switchyard::proto::RESERVED_EVENTS;
use switchyard::{IntoArgs, IntoRooms};
use switchyard_core::event_packet;

use crate::error::RedisAdapterError;
use crate::wire::{self, kind, Channels, EMITTER_UID};

/// Publishes events, room changes and server-side events to the servers of a classic Redis
/// cluster (Switchyard's [`RedisAdapter`](crate::RedisAdapter) or Node's `createAdapter`).
///
/// Like the Node emitter it is a builder: [`Emitter::of`], [`Emitter::to`] and the other
/// targeting methods return a new emitter, and nothing is read back from the cluster (no
/// acknowledgements, no fetching sockets).
///
/// ```no_run
/// # async fn run() -> Result<(), switchyard_redis::RedisAdapterError> {
/// use switchyard_redis::Emitter;
///
/// let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
/// emitter.to("room:42").emit("news", "hello").await?;
/// emitter.of("/admin").except("banned").emit("alert", (1, "two")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Emitter {
    connection: ConnectionManager,
    prefix: String,
    nsp: String,
    options: BroadcastOptions,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("prefix", &self.prefix)
            .field("nsp", &self.nsp)
            .field("options", &self.options)
            .finish()
    }
}

impl Emitter {
    /// An emitter for namespace `/` on the Redis server at `url`, with the default prefix
    /// `socket.io`.
    pub async fn connect(url: &str) -> Result<Emitter, RedisAdapterError> {
        let client = redis::Client::open(url)?;
        Ok(Emitter::new(
            ConnectionManager::new(client).await?,
            "socket.io",
        ))
    }

    /// An emitter for namespace `/` publishing on `connection` under channel prefix `prefix`
    /// (Node's `key`).
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Emitter {
        Emitter {
            connection,
            prefix: prefix.into(),
            nsp: "/".to_owned(),
            options: BroadcastOptions::default(),
        }
    }

    /// The same emitter for namespace `nsp` (a leading `/` is added when missing), with no
    /// rooms or flags.
    pub fn of(&self, nsp: &str) -> Emitter {
        Emitter {
            nsp: if nsp.starts_with('/') {
                nsp.to_owned()
            } else {
                format!("/{nsp}")
            },
            options: BroadcastOptions::default(),
            ..self.clone()
        }
    }

    /// Targets the sockets in `rooms` too.
    pub fn to(&self, rooms: impl IntoRooms) -> Emitter {
        let mut next = self.clone();
        next.options.rooms.extend(rooms.into_rooms());
        next
    }

    /// Excludes the sockets in `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> Emitter {
        let mut next = self.clone();
        next.options.except.extend(rooms.into_rooms());
        next
    }

    /// The event may be dropped for clients that are not ready for it.
    pub fn volatile(&self) -> Emitter {
        let mut next = self.clone();
        next.options.volatile = true;
        next
    }

    fn channels(&self) -> Channels {
        Channels::new(&self.prefix, &self.nsp)
    }

    async fn publish(
        &self,
        channel: String,
        payload: bytes::Bytes,
    ) -> Result<(), RedisAdapterError> {
        let mut connection = self.connection.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload.as_ref())
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Emits `event` with `data` to the targeted clients of every server.
    pub async fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), RedisAdapterError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(RedisAdapterError::ReservedEvent(event.to_owned()));
        }
        let packet = event_packet(&self.nsp, event, data.into_args()?, None);
        let payload = wire::encode_broadcast(EMITTER_UID, &packet, &self.options);
        self.publish(self.channels().broadcast_channel(&self.options), payload)
            .await
    }

    /// Makes the targeted sockets join `rooms`.
    pub async fn sockets_join(&self, rooms: impl IntoRooms) -> Result<(), RedisAdapterError> {
        let rooms: Vec<Room> = rooms.into_rooms();
        self.request(json!({
            "type": kind::REMOTE_JOIN,
            "opts": wire::room_options_to_wire(&self.options),
            "rooms": rooms,
        }))
        .await
    }

    /// Makes the targeted sockets leave `rooms`.
    pub async fn sockets_leave(&self, rooms: impl IntoRooms) -> Result<(), RedisAdapterError> {
        let rooms: Vec<Room> = rooms.into_rooms();
        self.request(json!({
            "type": kind::REMOTE_LEAVE,
            "opts": wire::room_options_to_wire(&self.options),
            "rooms": rooms,
        }))
        .await
    }

    /// Disconnects the targeted sockets; with `close`, their whole connections.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), RedisAdapterError> {
        self.request(json!({
            "type": kind::REMOTE_DISCONNECT,
            "opts": wire::room_options_to_wire(&self.options),
            "close": close,
        }))
        .await
    }

    /// Sends `event` to the server-side handlers of every server of the namespace (no answers).
    pub async fn server_side_emit<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
    ) -> Result<(), RedisAdapterError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(RedisAdapterError::ReservedEvent(event.to_owned()));
        }
        let data = wire::event_to_json(event, &data.into_args()?);
        self.request(json!({"uid": EMITTER_UID, "type": kind::SERVER_SIDE_EMIT, "data": data}))
            .await
    }

    async fn request(&self, message: serde_json::Value) -> Result<(), RedisAdapterError> {
        self.publish(self.channels().request, wire::encode_json(&message))
            .await
    }
}
