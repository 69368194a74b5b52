//! Redis adapters for Switchyard: several servers, Switchyard and Node ones alike, form one
//! cluster on a Redis server, and any service can emit to the cluster's clients.
//!
//! * [`RedisCluster`] connects a server to Redis and gives each of its namespaces a
//!   [`RedisAdapter`] that speaks the wire protocol of Node's `@socket.io/redis-adapter` 8.3
//!   (`createAdapter`): broadcasts on `socket.io#<nsp>#` and `socket.io#<nsp>#<room>#`,
//!   requests and responses on `socket.io-request#<nsp>#` and `socket.io-response#<nsp>#`.
//! * [`RedisShardedCluster`] does the same on a Redis Cluster with sharded pub/sub, speaking
//!   the protocol of Node's `createShardedAdapter` (`SSUBSCRIBE`/`SPUBLISH`).
//! * [`RedisStreamsCluster`] speaks the protocol of `@socket.io/redis-streams-adapter` 0.3,
//!   with connection state recovery across servers.
//! * [`Emitter`] publishes like `@socket.io/redis-emitter` 5.1: emits, room changes and
//!   server-side events, without a socket server.
//!
//! The protocol itself is in the private `wire` module, sans-IO and tested byte for byte;
//! `docs/design/redis-wire.md` in the repository describes it.
//!
//! While Redis is away, local delivery goes on; messages for the other servers queue in a
//! bounded buffer ([`RedisAdapterConfig::publish_buffer`]) while a publish waits for a
//! reconnection, and what cannot be published is dropped and counted. The link reconnects and
//! subscribes again by itself, and logs each change of state once.

/// The room methods of [`switchyard::adapter::Adapter`], answered by the in-memory adapter
/// at `self.<path>`: an adapter's own sockets' rooms live there.
macro_rules! room_index_methods {
    ($($path:ident).+) => {
        fn add_all(&self, sid: &Sid, rooms: &[Room]) {
            self.$($path).+.add_all(sid, rooms);
        }

        fn del(&self, sid: &Sid, room: &Room) {
            self.$($path).+.del(sid, room);
        }

        fn del_all(&self, sid: &Sid) {
            self.$($path).+.del_all(sid);
        }

        fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
            self.$($path).+.socket_rooms(sid)
        }

        fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
            self.$($path).+.for_each_in_room(room, visit);
        }

        fn rooms(&self) -> Vec<Room> {
            self.$($path).+.rooms()
        }
    };
}
pub(crate) use room_index_methods;

mod classic;
mod cluster_peer;
mod cluster_wire;
mod driver;
mod emitter;
mod error;
mod requests;
mod sharded;
mod streams;
mod wire;

pub use classic::{RedisAdapter, RedisAdapterConfig, RedisCluster};
pub use driver::Link as RedisConnection;
pub use emitter::Emitter;
pub use error::RedisAdapterError;
/// The Redis client the adapters use, for commands on [`RedisConnection`].
pub use redis;
pub use sharded::{RedisShardedAdapter, RedisShardedCluster, RedisShardedConfig, SubscriptionMode};
pub use streams::{RedisStreamsAdapter, RedisStreamsCluster, RedisStreamsConfig};
