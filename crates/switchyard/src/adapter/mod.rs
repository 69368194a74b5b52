//! Adapters: where a namespace's rooms live and how its broadcasts and namespace-wide
//! operations reach the other servers of a cluster.
//!
//! Every room change, broadcast and namespace-wide operation of a namespace goes through its
//! [`Adapter`]. The adapter keeps the index of this server's rooms (synchronous: it is on the
//! hot path) and carries out each operation on this server, through the [`LocalNamespace`]
//! handle it is given at construction, and, for a cluster adapter (Redis), on the other
//! servers. Operations that may reach other servers are asynchronous and report failures,
//! timeouts included, to the caller.
//!
//! [`InMemoryAdapter`] is the single-server default. A cluster adapter embeds a [`RoomIndex`]
//! for the local rooms, answers the other servers' requests with the [`LocalNamespace`]
//! methods, and sends its own requests to them:
//!
//! | operation | on this server | on the others |
//! |---|---|---|
//! | [`Adapter::broadcast`] | [`LocalNamespace::broadcast`] | publish the packet and options |
//! | [`Adapter::broadcast_with_ack`] | [`LocalNamespace::broadcast_with_ack`] | each server answers with its client count, then each ack |
//! | [`Adapter::add_sockets`], [`Adapter::del_sockets`], [`Adapter::disconnect_sockets`] | [`LocalNamespace::add_sockets`], … | publish, no answer |
//! | [`Adapter::fetch_sockets`] | [`LocalNamespace::fetch_sockets`] | each server answers with its [`SocketInfo`]s |
//! | [`Adapter::server_side_emit`] | — | [`LocalNamespace::server_side_emit`] on each server, whose answers are the acks |
//!
//! With connection state recovery on, the adapter also assigns offsets to recoverable
//! packets, keeps them, and keeps the sessions of sockets that dropped
//! ([`Adapter::persist_session`], [`Adapter::restore_session`]); [`RecoveryStore`] is the
//! in-memory store, and [`SessionState`] is serializable so that another server can restore a
//! session.

mod local;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Args;
use switchyard_socketio_proto::Packet;

pub use crate::error::AdapterError;
pub use crate::recovery::{RecoveryConfig, RecoveryStore, SessionState};
pub use crate::types::{
    BoxFuture, BroadcastOptions, ConnectionInfo, HandshakeInfo, Room, Sid, SocketInfo,
};
pub use local::{AckReply, LocalAcks, LocalNamespace};
pub use memory::{InMemoryAdapter, RoomIndex};
pub use switchyard_core::EncodedPacket;

/// A namespace's room index and its link to the other servers of a cluster.
///
/// The room methods are synchronous and concern this server's sockets only. The
/// namespace-wide methods act on this server's sockets and, for a cluster adapter, on the
/// other servers'; unless [`BroadcastOptions::local`] is set.
pub trait Adapter: Send + Sync + 'static {
    /// Socket `sid` joins `rooms`.
    fn add_all(&self, sid: &Sid, rooms: &[Room]);

    /// Socket `sid` leaves `room`.
    fn del(&self, sid: &Sid, room: &Room);

    /// Socket `sid` leaves every room.
    fn del_all(&self, sid: &Sid);

    /// The rooms socket `sid` is in (its own id room is not listed).
    fn socket_rooms(&self, sid: &Sid) -> Vec<Room>;

    /// Calls `visit` with every local socket in `room`, each once. `visit` must not call back
    /// into the adapter: it may run under the adapter's lock.
    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid));

    /// Every room that has at least one local socket.
    fn rooms(&self) -> Vec<Room>;

    /// Starts the adapter (subscribes to the other servers, say); called once when its
    /// namespace is created.
    fn init(&self) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Stops the adapter; called when the server closes.
    fn close(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }

    /// How many servers serve this namespace, this one included.
    fn server_count(&self) -> BoxFuture<Result<usize, AdapterError>> {
        Box::pin(std::future::ready(Ok(1)))
    }

    /// Delivers `packet` (an EVENT without ack id) to every targeted socket. With recovery on
    /// and a recoverable packet (not volatile), the adapter appends the packet's offset as its
    /// last argument and keeps it for replay, in offset order.
    fn broadcast(
        &self,
        packet: Packet,
        options: BroadcastOptions,
    ) -> BoxFuture<Result<(), AdapterError>>;

    /// Delivers `packet` (an EVENT; each server gives it its own ack id) to every targeted
    /// socket and collects their acknowledgements for up to `timeout`. The answer has one
    /// entry per targeted client, a failed one for each that did not answer in time.
    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>>;

    /// Makes the targeted sockets join `rooms`.
    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>>;

    /// Makes the targeted sockets leave `rooms`.
    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>>;

    /// Disconnects the targeted sockets; with `close`, their whole connections.
    fn disconnect_sockets(
        &self,
        options: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<Result<(), AdapterError>>;

    /// Describes the targeted sockets, waiting up to `timeout` for the other servers.
    fn fetch_sockets(
        &self,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>>;

    /// Sends `event` with `args` to this namespace's server-side handlers on every other
    /// server ([`crate::Namespace::on_server_event`]). With `ack`, waits up to that long for
    /// every other server's answer and returns them; without, returns at once with none.
    fn server_side_emit(
        &self,
        event: String,
        args: Args,
        ack: Option<Duration>,
    ) -> BoxFuture<Result<Vec<Args>, AdapterError>>;

    /// Puts a new socket in its namespace (`attach` does it) in step with the broadcasts, and
    /// answers the offset of the last recoverable packet handed out before it (the empty
    /// string if none was yet; `None`: not tracked, or recovery off). That is where the
    /// socket's session resumes if its client drops before it saw any packet and so reconnects
    /// with no offset ([`SessionState::start_offset`]).
    fn attach_socket(&self, attach: &mut dyn FnMut()) -> Option<String> {
        attach();
        None
    }

    /// Keeps the session of a socket that ended uncleanly, for connection state recovery.
    fn persist_session(&self, _session: SessionState) {}

    /// Gives back session `pid` with the packets it missed after `offset` (`None`: from the
    /// session's start); `Ok(None)` if it cannot be recovered whole.
    ///
    /// The adapter hands the session to `attach` at the instant it cuts the list of missed
    /// packets, in step with its broadcasts (under the lock that orders them, say): `attach`
    /// puts the socket back in its namespace, so every packet broadcast after the cut reaches
    /// it live and every packet before is in the list. Nothing is lost or doubled in between.
    /// `attach` answers the rooms the socket is back in, which may be fewer than it kept (it
    /// lost the right to some): only packets meant for those rooms or for the socket itself
    /// are in the list. `attach` is called exactly when the answer is `Ok(Some(missed))`
    /// ([`RecoveryStore::restore`] does all of this for a store held in memory).
    fn restore_session(
        &self,
        _pid: String,
        _offset: Option<String>,
        _attach: AttachSession,
    ) -> BoxFuture<Result<Option<Vec<EncodedPacket>>, AdapterError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Puts a restored session's socket back in its namespace and answers the rooms it is back in;
/// see [`Adapter::restore_session`].
pub type AttachSession = Box<dyn FnOnce(SessionState) -> Vec<Room> + Send>;

/// What an adapter factory knows of the namespace it builds an adapter for.
#[derive(Debug, Clone)]
pub struct AdapterContext<'a> {
    /// The namespace's name.
    pub namespace: &'a str,
    /// Connection state recovery options, when recovery is on.
    pub recovery: Option<&'a RecoveryConfig>,
    /// This server's side of the namespace: how the adapter reaches the local sockets.
    pub local: LocalNamespace,
}

/// Builds the adapter of each namespace.
pub type AdapterFactory = Arc<dyn Fn(AdapterContext<'_>) -> Arc<dyn Adapter> + Send + Sync>;
