//! Broadcasts: one packet to many sockets, encoded once.

use std::time::Duration;

use serde_json::Value;
use switchyard_core::{event_packet, IntoArgs};
use tracing::warn;

use crate::adapter::AckReply;
use crate::error::{AdapterError, EmitError};
use crate::handler::poll_once;
use crate::metrics::AdapterRequest;
use crate::namespace::Namespace;
use crate::socket::Socket;
use crate::types::{BroadcastOptions, HandshakeInfo, Room, Sid, SocketInfo};

/// Conversion into a list of rooms: a room name, or a collection of them.
pub trait IntoRooms {
    /// The rooms.
    fn into_rooms(self) -> Vec<Room>;
}

impl IntoRooms for &str {
    fn into_rooms(self) -> Vec<Room> {
        vec![Room::from(self)]
    }
}

impl IntoRooms for String {
    fn into_rooms(self) -> Vec<Room> {
        vec![Room::from(self)]
    }
}

impl IntoRooms for Room {
    fn into_rooms(self) -> Vec<Room> {
        vec![self]
    }
}

impl IntoRooms for &Room {
    fn into_rooms(self) -> Vec<Room> {
        vec![self.clone()]
    }
}

impl<T: IntoRooms> IntoRooms for Vec<T> {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().flat_map(IntoRooms::into_rooms).collect()
    }
}

impl<T: IntoRooms + Clone, const N: usize> IntoRooms for [T; N] {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().flat_map(IntoRooms::into_rooms).collect()
    }
}

/// A socket as seen by a namespace-wide query: on this server or, with a cluster adapter, on
/// another one. Operations on it go through the adapter, so they work either way.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    info: SocketInfo,
    namespace: Namespace,
    local: Option<Socket>,
}

impl RemoteSocket {
    /// The socket id.
    pub fn id(&self) -> &Sid {
        &self.info.id
    }

    /// The rooms it was in when fetched, its own id room included.
    pub fn rooms(&self) -> &[Room] {
        &self.info.rooms
    }

    /// Its handshake.
    pub fn handshake(&self) -> &HandshakeInfo {
        &self.info.handshake
    }

    /// Its session data when fetched (`null` when none was set).
    pub fn data(&self) -> &Value {
        &self.info.data
    }

    /// Everything its server told about it.
    pub fn info(&self) -> &SocketInfo {
        &self.info
    }

    /// The connection it is on, when its server tells (Switchyard servers do, Node servers
    /// do not).
    pub fn connection(&self) -> Option<&crate::types::ConnectionInfo> {
        self.info.connection.as_ref()
    }

    /// The socket itself, when it is connected to this server.
    pub fn as_local(&self) -> Option<&Socket> {
        self.local.as_ref()
    }

    /// Emits `event` to this socket.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        self.namespace.to(self.info.id.clone()).emit(event, data)
    }

    /// Makes the socket join `rooms`.
    pub async fn join(&self, rooms: impl IntoRooms) -> Result<(), AdapterError> {
        self.namespace
            .to(self.info.id.clone())
            .sockets_join(rooms)
            .await
    }

    /// Makes the socket leave `rooms`.
    pub async fn leave(&self, rooms: impl IntoRooms) -> Result<(), AdapterError> {
        self.namespace
            .to(self.info.id.clone())
            .sockets_leave(rooms)
            .await
    }

    /// Disconnects the socket (and closes its connection if `close`).
    pub async fn disconnect(&self, close: bool) -> Result<(), AdapterError> {
        self.namespace
            .to(self.info.id.clone())
            .disconnect_sockets(close)
            .await
    }
}

/// Selects sockets of a namespace (rooms, exceptions, flags) and acts on all of them, on this
/// server and, through the adapter, on the other servers of a cluster.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    namespace: Namespace,
    options: BroadcastOptions,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(namespace: Namespace) -> BroadcastOperator {
        BroadcastOperator {
            namespace,
            options: BroadcastOptions::default(),
            timeout: None,
        }
    }

    pub(crate) fn except_socket(mut self, sid: Sid) -> BroadcastOperator {
        self.options.except.push(sid);
        self
    }

    /// Targets the sockets in `rooms` (added to rooms already targeted).
    pub fn to(mut self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.options.rooms.extend(rooms.into_rooms());
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn within(self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.to(rooms)
    }

    /// Leaves out the sockets in `rooms`.
    pub fn except(mut self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.options.except.extend(rooms.into_rooms());
        self
    }

    /// Only this server's sockets.
    pub fn local(mut self) -> BroadcastOperator {
        self.options.local = true;
        self
    }

    /// The packet may be dropped for clients that are not ready for it (a backlog is queued
    /// for them); use it for data that is stale soon anyway, like a typing indicator.
    pub fn volatile(mut self) -> BroadcastOperator {
        self.options.volatile = true;
        self
    }

    /// Asks for compression. Accepted for compatibility with the reference API; Switchyard
    /// does not negotiate WebSocket compression, so frames are sent as they are.
    pub fn compress(mut self, compress: bool) -> BroadcastOperator {
        self.options.compress = compress;
        self
    }

    /// Sets how long [`BroadcastOperator::emit_with_ack`] and
    /// [`BroadcastOperator::fetch_sockets`] wait for answers (default: the server's ack
    /// timeout).
    pub fn timeout(mut self, timeout: Duration) -> BroadcastOperator {
        self.timeout = Some(timeout);
        self
    }

    /// The options built so far.
    pub fn options(&self) -> &BroadcastOptions {
        &self.options
    }

    fn wait(&self) -> Duration {
        self.timeout.unwrap_or(self.namespace.0.config.ack_timeout)
    }

    /// Emits `event` to every targeted socket. The packet is encoded once; every local
    /// recipient gets the same bytes.
    ///
    /// Local delivery is done when this returns. A cluster adapter that must wait for its
    /// backend finishes in a task of its own; its failures are then logged by the adapter
    /// rather than returned.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        let ns = &self.namespace.0;
        let packet = event_packet(&ns.name, event, data.into_args()?, None);
        let sending = ns.adapter().broadcast(packet, self.options.clone());
        match poll_once(sending) {
            Ok(result) => Ok(result?),
            Err(pending) => {
                let nsp = ns.name.clone();
                tokio::spawn(async move {
                    if let Err(error) = pending.await {
                        warn!(%error, nsp = &*nsp, "broadcast to other servers failed");
                    }
                });
                Ok(())
            }
        }
    }

    /// Emits `event` to every targeted socket and collects each one's acknowledgement,
    /// waiting up to the timeout (the server's ack timeout unless set). With a cluster
    /// adapter, clients on every server answer: the answer has one entry per targeted client,
    /// a failed one for each that did not answer in time.
    pub async fn emit_with_ack<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
    ) -> Result<Vec<AckReply>, EmitError> {
        let ns = &self.namespace.0;
        let packet = event_packet(&ns.name, event, data.into_args()?, None);
        let request = ns
            .adapter()
            .broadcast_with_ack(packet, self.options.clone(), self.wait());
        Ok(ns
            .counters
            .timed(AdapterRequest::BroadcastWithAck, request)
            .await?)
    }

    /// The targeted sockets, on this server and (with a cluster adapter) the others.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, AdapterError> {
        let ns = &self.namespace.0;
        let request = ns
            .adapter()
            .fetch_sockets(self.options.clone(), self.wait());
        let found = ns
            .counters
            .timed(AdapterRequest::FetchSockets, request)
            .await?;
        let sockets = ns.sockets();
        Ok(found
            .into_iter()
            .map(|info| RemoteSocket {
                local: sockets.get(&info.id).cloned(),
                info,
                namespace: self.namespace.clone(),
            })
            .collect())
    }

    /// Makes the targeted sockets join `rooms`.
    pub async fn sockets_join(&self, rooms: impl IntoRooms) -> Result<(), AdapterError> {
        let ns = &self.namespace.0;
        let request = ns
            .adapter()
            .add_sockets(self.options.clone(), rooms.into_rooms());
        ns.counters.timed(AdapterRequest::Join, request).await
    }

    /// Makes the targeted sockets leave `rooms`.
    pub async fn sockets_leave(&self, rooms: impl IntoRooms) -> Result<(), AdapterError> {
        let ns = &self.namespace.0;
        let request = ns
            .adapter()
            .del_sockets(self.options.clone(), rooms.into_rooms());
        ns.counters.timed(AdapterRequest::Leave, request).await
    }

    /// Disconnects the targeted sockets; with `close`, their whole connections too.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), AdapterError> {
        let ns = &self.namespace.0;
        let request = ns.adapter().disconnect_sockets(self.options.clone(), close);
        ns.counters.timed(AdapterRequest::Disconnect, request).await
    }
}
