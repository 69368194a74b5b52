//! This server's side of a namespace, as an adapter sees it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use switchyard_core::{Args, EncodedPacket, Parser};
use switchyard_socketio_proto::Packet;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::AckError;
use crate::namespace::NamespaceInner;
use crate::socket::Socket;
use crate::types::{BoxFuture, BroadcastOptions, Room, Sid, SocketInfo};

/// One client's answer to a broadcast with acks.
#[derive(Debug)]
pub struct AckReply {
    /// The socket that answered, when it is on this server (the reference cluster protocol
    /// does not name remote ones).
    pub sid: Option<Sid>,
    /// Its acknowledgement's arguments, or why none came.
    pub result: Result<Args, AckError>,
}

/// The local part of a broadcast with acks: how many clients were sent the packet, and their
/// answers as they come (one per client, a failed one for each that times out).
#[derive(Debug)]
pub struct LocalAcks {
    /// How many local clients were sent the packet.
    pub count: usize,
    /// Their answers; the channel ends after the last one.
    pub replies: mpsc::UnboundedReceiver<AckReply>,
}

impl LocalAcks {
    /// Waits for every answer.
    pub async fn collect(mut self) -> Vec<AckReply> {
        let mut replies = Vec::with_capacity(self.count);
        while let Some(reply) = self.replies.recv().await {
            replies.push(reply);
        }
        replies
    }
}

/// A handle on this server's side of a namespace: its local sockets, as an adapter reaches
/// them to carry out an operation here (its own, or one another server asked for).
///
/// It does not keep the namespace alive; once the namespace is gone, every method does
/// nothing.
#[derive(Clone)]
pub struct LocalNamespace {
    name: Arc<str>,
    inner: Weak<NamespaceInner>,
}

impl std::fmt::Debug for LocalNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl LocalNamespace {
    pub(crate) fn new(name: Arc<str>, inner: Weak<NamespaceInner>) -> LocalNamespace {
        LocalNamespace { name, inner }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parser this server encodes packets with.
    pub fn parser(&self) -> Parser {
        self.inner.upgrade().map(|ns| ns.parser).unwrap_or_default()
    }

    /// The local sockets `options` targets.
    pub fn sockets(&self, options: &BroadcastOptions) -> Vec<Socket> {
        self.inner
            .upgrade()
            .map(|ns| ns.targets(options))
            .unwrap_or_default()
    }

    /// Encodes `packet` once and queues it for every targeted local socket; returns how many
    /// were sent it.
    pub fn broadcast(&self, packet: &Packet, options: &BroadcastOptions) -> usize {
        let Some(ns) = self.inner.upgrade() else {
            return 0;
        };
        let encoded = EncodedPacket::new(ns.parser, packet);
        let sent = deliver(&ns.targets(options), &encoded, options);
        ns.counters.broadcast(sent);
        sent
    }

    /// Queues an already encoded packet for every targeted local socket; returns how many
    /// were sent it.
    pub fn deliver(&self, encoded: &EncodedPacket, options: &BroadcastOptions) -> usize {
        let Some(ns) = self.inner.upgrade() else {
            return 0;
        };
        let sent = deliver(&ns.targets(options), encoded, options);
        ns.counters.broadcast(sent);
        sent
    }

    /// Sends `packet` (an EVENT) to every targeted local socket, under an ack id of this
    /// server's, and gathers their answers for up to `timeout`.
    pub fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: &BroadcastOptions,
        timeout: Duration,
    ) -> LocalAcks {
        let (sender, replies) = mpsc::unbounded_channel();
        let Some(ns) = self.inner.upgrade() else {
            return LocalAcks { count: 0, replies };
        };
        let id = ns.next_ack_id();
        let packet = match packet {
            Packet::Event {
                nsp,
                data,
                attachments,
                ..
            } => Packet::Event {
                nsp,
                id: Some(id),
                data,
                attachments,
            },
            other => other,
        };
        let encoded = EncodedPacket::new(ns.parser, &packet);
        let targets = ns.targets(options);
        let count = targets.len();
        ns.counters.broadcast(count);
        let mut waits = FuturesUnordered::new();
        for socket in targets {
            let sent = socket.register_ack(id).and_then(|receiver| {
                Ok(socket.send_encoded(encoded.clone()).map(|()| receiver)?)
            });
            waits.push(async move {
                let result = match sent {
                    Ok(receiver) => socket.wait_ack(id, receiver, timeout).await,
                    Err(error) => {
                        warn!(sid = &**socket.id(), %error, "broadcast with ack not delivered");
                        Err(error)
                    }
                };
                AckReply {
                    sid: Some(socket.id().clone()),
                    result,
                }
            });
        }
        if count > 0 {
            tokio::spawn(async move {
                while let Some(reply) = waits.next().await {
                    let _ = sender.send(reply);
                }
            });
        }
        LocalAcks { count, replies }
    }

    /// Makes the targeted local sockets join `rooms`.
    pub fn add_sockets(&self, options: &BroadcastOptions, rooms: &[Room]) {
        for socket in self.sockets(options) {
            socket.join(rooms.to_vec());
        }
    }

    /// Makes the targeted local sockets leave `rooms`.
    pub fn del_sockets(&self, options: &BroadcastOptions, rooms: &[Room]) {
        for socket in self.sockets(options) {
            for room in rooms {
                socket.leave(room.clone());
            }
        }
    }

    /// Disconnects the targeted local sockets; with `close`, their whole connections.
    pub fn disconnect_sockets(&self, options: &BroadcastOptions, close: bool) {
        for socket in self.sockets(options) {
            if close {
                socket.disconnect_and_close();
            } else {
                socket.disconnect();
            }
        }
    }

    /// Describes the targeted local sockets.
    pub fn fetch_sockets(&self, options: &BroadcastOptions) -> Vec<SocketInfo> {
        self.sockets(options).iter().map(Socket::info).collect()
    }

    /// Runs this server's handler of server-side event `event`
    /// ([`crate::Namespace::on_server_event`]) and returns its answer; `None` when there is no
    /// handler.
    pub fn server_side_emit(&self, event: &str, args: Args) -> BoxFuture<Option<Args>> {
        let handler = self
            .inner
            .upgrade()
            .and_then(|ns| ns.handlers.server_event(event));
        match handler {
            Some(handler) => {
                let answer = handler(args);
                Box::pin(async move { Some(answer.await) })
            }
            None => {
                debug!(nsp = &*self.name, event, "no handler for server-side event");
                Box::pin(std::future::ready(None))
            }
        }
    }
}

fn deliver(targets: &[Socket], encoded: &EncodedPacket, options: &BroadcastOptions) -> usize {
    let mut sent = 0;
    for socket in targets {
        if options.volatile && socket.buffered_bytes() > 0 {
            debug!(
                sid = &**socket.id(),
                "volatile packet dropped for a busy client"
            );
            continue;
        }
        match socket.send_encoded(encoded.clone()) {
            Ok(()) => sent += 1,
            Err(error) => warn!(sid = &**socket.id(), %error, "broadcast not delivered"),
        }
    }
    sent
}
