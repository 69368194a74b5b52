//! Broadcasts: one packet to many sockets, encoded once.

use std::time::Duration;

use futures_util::future::join_all;
use tracing::{debug, warn};

use crate::adapter::BroadcastOptions;
use crate::socket::{AckError, EmitError, Sid, Socket};
use crate::{Namespace, Room};
use switchyard_core::{event_packet, Args, EncodedPacket, IntoArgs};

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

/// A socket as seen by a namespace-wide query: on this server or, with a distributed adapter,
/// on another one. Operations on it go through the namespace, so they work either way.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    id: Sid,
    rooms: Vec<Room>,
    namespace: Namespace,
    local: Option<Socket>,
}

impl RemoteSocket {
    /// The socket id.
    pub fn id(&self) -> &Sid {
        &self.id
    }

    /// The rooms it was in when fetched.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// The socket itself, when it is connected to this server.
    pub fn as_local(&self) -> Option<&Socket> {
        self.local.as_ref()
    }

    /// Emits `event` to this socket.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        self.namespace.to(self.id.clone()).emit(event, data)
    }

    /// Makes the socket join `rooms`.
    pub fn join(&self, rooms: impl IntoRooms) {
        self.namespace.to(self.id.clone()).sockets_join(rooms);
    }

    /// Makes the socket leave `rooms`.
    pub fn leave(&self, rooms: impl IntoRooms) {
        self.namespace.to(self.id.clone()).sockets_leave(rooms);
    }

    /// Disconnects the socket (and closes its connection if `close`).
    pub fn disconnect(&self, close: bool) {
        self.namespace.to(self.id.clone()).disconnect_sockets(close);
    }
}

/// Selects sockets of a namespace (rooms, exceptions, flags) and acts on all of them.
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

    /// Sets how long [`BroadcastOperator::emit_with_ack`] waits for answers.
    pub fn timeout(mut self, timeout: Duration) -> BroadcastOperator {
        self.timeout = Some(timeout);
        self
    }

    /// The options built so far.
    pub fn options(&self) -> &BroadcastOptions {
        &self.options
    }

    /// Emits `event` to every targeted socket. The packet is encoded once; every recipient
    /// gets the same bytes.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        let ns = &self.namespace.0;
        let mut args = data.into_args()?;
        // With recovery on, a packet that could be replayed carries its offset as last argument.
        let offset = match ns.recovery && !self.options.volatile {
            true => ns.adapter().next_offset(),
            false => None,
        };
        if let Some(offset) = &offset {
            args.values.push(serde_json::Value::String(offset.clone()));
        }
        let packet = event_packet(&ns.name, event, args, None);
        let encoded = EncodedPacket::new(ns.parser, &packet);
        if let Some(offset) = &offset {
            ns.adapter().store_packet(offset, &encoded, &self.options);
        }
        ns.for_each_target(&self.options, |socket| self.deliver(socket, &encoded));
        if !self.options.local {
            if let Err(error) = ns.adapter().remote_broadcast(&packet, &self.options) {
                warn!(%error, nsp = &*ns.name, "remote broadcast failed");
            }
        }
        Ok(())
    }

    fn deliver(&self, socket: &Socket, encoded: &EncodedPacket) {
        if self.options.volatile && socket.buffered_bytes() > 0 {
            debug!(
                sid = &**socket.id(),
                "volatile packet dropped for a busy client"
            );
            return;
        }
        if let Err(error) = socket.send_encoded(encoded.clone()) {
            warn!(sid = &**socket.id(), %error, "broadcast not delivered");
        }
    }

    /// Emits `event` to every targeted local socket and collects each one's acknowledgement,
    /// waiting up to the timeout (the server's ack timeout unless set).
    pub async fn emit_with_ack<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
    ) -> Result<Vec<(Sid, Result<Args, AckError>)>, EmitError> {
        let ns = &self.namespace.0;
        let timeout = self.timeout.unwrap_or(ns.config.ack_timeout);
        let id = ns.next_ack_id();
        let packet = event_packet(&ns.name, event, data.into_args()?, Some(id));
        let encoded = EncodedPacket::new(ns.parser, &packet);
        let mut waits = Vec::new();
        ns.for_each_target(&self.options, |socket| {
            let sent = socket.register_ack(id).and_then(|receiver| {
                Ok(socket.send_encoded(encoded.clone()).map(|()| receiver)?)
            });
            match sent {
                Ok(receiver) => waits.push((socket.clone(), Ok(receiver))),
                Err(error) => {
                    warn!(sid = &**socket.id(), %error, "broadcast with ack not delivered");
                    waits.push((socket.clone(), Err(error)));
                }
            }
        });
        let answers = join_all(waits.into_iter().map(|(socket, receiver)| async move {
            let result = match receiver {
                Ok(receiver) => socket.wait_ack(id, receiver, timeout).await,
                Err(error) => Err(error),
            };
            (socket.id().clone(), result)
        }))
        .await;
        Ok(answers)
    }

    /// The targeted sockets, on this server and (with a distributed adapter) the others.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        let ns = &self.namespace.0;
        let mut found = Vec::new();
        ns.for_each_target(&self.options, |socket| {
            found.push(RemoteSocket {
                id: socket.id().clone(),
                rooms: socket.rooms(),
                namespace: self.namespace.clone(),
                local: Some(socket.clone()),
            });
        });
        if !self.options.local {
            match ns.adapter().remote_fetch_sockets(&self.options).await {
                Ok(remote) => found.extend(remote.into_iter().map(|data| RemoteSocket {
                    id: data.id,
                    rooms: data.rooms,
                    namespace: self.namespace.clone(),
                    local: None,
                })),
                Err(error) => warn!(%error, "fetching remote sockets failed"),
            }
        }
        found
    }

    /// Makes the targeted sockets join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoRooms) {
        self.rooms_change(rooms.into_rooms(), true);
    }

    /// Makes the targeted sockets leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoRooms) {
        self.rooms_change(rooms.into_rooms(), false);
    }

    fn rooms_change(&self, rooms: Vec<Room>, join: bool) {
        let ns = &self.namespace.0;
        let mut targets = Vec::new();
        ns.for_each_target(&self.options, |socket| targets.push(socket.clone()));
        for socket in targets {
            if join {
                socket.join(rooms.clone());
            } else {
                for room in &rooms {
                    socket.leave(room.clone());
                }
            }
        }
        if !self.options.local {
            if let Err(error) = ns.adapter().remote_rooms(&self.options, &rooms, join) {
                warn!(%error, "remote room change failed");
            }
        }
    }

    /// Disconnects the targeted sockets; with `close`, their whole connections too.
    pub fn disconnect_sockets(&self, close: bool) {
        let ns = &self.namespace.0;
        let mut targets = Vec::new();
        ns.for_each_target(&self.options, |socket| targets.push(socket.clone()));
        for socket in targets {
            if close {
                socket.disconnect_and_close();
            } else {
                socket.disconnect();
            }
        }
        if !self.options.local {
            if let Err(error) = ns.adapter().remote_disconnect(&self.options, close) {
                warn!(%error, "remote disconnect failed");
            }
        }
    }
}
