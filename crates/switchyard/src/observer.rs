//! Watching a server from the side: what a dashboard, an audit log or the Socket.IO Admin UI
//! needs to know as it happens, without wrapping every handler.

use switchyard_core::{Args, EncodedPacket};
use switchyard_engineio::{CloseReason, Socket as EngineSocket};

use crate::socket::{DisconnectReason, Socket};
use crate::types::Room;

/// Hooks a server calls as its connections, sockets and rooms change and as events pass.
///
/// Install one with [`crate::SocketIo::set_observer`]. Every method runs inline, on the path
/// it reports (a connection's task, or the task that made a socket join a room), and must
/// return at once: copy what is needed into a bounded queue and do the work elsewhere. Some
/// run while the server holds a lock of the namespace (a session being restored, a broadcast
/// with recovery on): a hook must never call back into the server (emit, join, fetch), or it
/// may deadlock.
///
/// A server without an observer pays one atomic load per hook; with one, the room hooks also
/// cost a look at the socket's rooms, unless [`Observer::active`] says no one listens.
///
/// Each method has an empty default, so an observer implements only what it watches.
pub trait Observer: Send + Sync + 'static {
    /// Whether the room hooks are wanted now (default: always). While it says `false`, the
    /// server skips the work of finding what changed, and reports no room joined or left.
    fn active(&self) -> bool {
        true
    }

    /// An Engine.IO connection opened (before any namespace is joined).
    fn connection_opened(&self, connection: &EngineSocket) {
        let _ = connection;
    }

    /// An Engine.IO connection closed, for `reason`; its sockets are reported disconnected
    /// just before.
    fn connection_closed(&self, connection: &EngineSocket, reason: CloseReason) {
        let _ = (connection, reason);
    }

    /// A socket joined its namespace: its CONNECT reply is queued and its connection handler
    /// has run, so the rooms it joined there are in [`Socket::rooms`]. Not reported if the
    /// socket closed in the meantime.
    ///
    /// When the socket closes at that same moment on another task, its
    /// [`Observer::socket_disconnected`] may come first: an observer that keeps a list of
    /// sockets checks [`Socket::connected`] before adding one.
    fn socket_connected(&self, socket: &Socket) {
        let _ = socket;
    }

    /// A socket whose CONNECT reply went out left its namespace, for `reason`. The rooms it
    /// was in are reported left right after.
    fn socket_disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = (socket, reason);
    }

    /// A socket joined `room` it was not in (whoever asked: its handler, the adapter on
    /// behalf of another server, a restored session).
    fn room_joined(&self, socket: &Socket, room: &Room) {
        let _ = (socket, room);
    }

    /// A socket left `room` it was in, or was in it when it disconnected.
    fn room_left(&self, socket: &Socket, room: &Room) {
        let _ = (socket, room);
    }

    /// A socket received event `event` with `args` (the ack id is not part of them), once
    /// the event passed the connection's rate limit.
    fn event_received(&self, socket: &Socket, event: &str, args: &Args) {
        let _ = (socket, event, args);
    }

    /// A packet was queued for a socket: an event, an ack or a DISCONNECT, as encoded for the
    /// wire. A broadcast is encoded once, so every recipient is reported with the same frames
    /// (cloning them is a reference count); decode them only if needed.
    fn packet_sent(&self, socket: &Socket, packet: &EncodedPacket) {
        let _ = (socket, packet);
    }
}

/// [`crate::SocketIo::set_observer`] was called on a server that has an observer already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this server has an observer already (combine several in one Observer)")]
pub struct ObserverAlreadySet;
