//! One Engine.IO connection and the namespaces it joined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use switchyard_engineio::{CloseReason, Message, Socket as EngineSocket};
use switchyard_socketio_proto::Packet;
use tracing::{debug, warn};

use crate::encode::{Decoder, Encoded};
use crate::handler::run_inline;
use crate::payload::Args;
use crate::server::ServerInner;
use crate::socket::{DisconnectReason, Socket};

pub(crate) struct Client {
    pub(crate) engine: Arc<EngineSocket>,
    server: Arc<ServerInner>,
    decoder: Mutex<Decoder>,
    /// The namespaces this connection joined; a handful at most, so a vector.
    sockets: Mutex<Vec<(Arc<str>, Socket)>>,
    connected_once: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    pub(crate) fn new(server: Arc<ServerInner>, engine: Arc<EngineSocket>) -> Arc<Client> {
        let decoder = Decoder::new(server.config.parser, server.config.max_attachments);
        let client = Arc::new(Client {
            engine,
            server,
            decoder: Mutex::new(decoder),
            sockets: Mutex::new(Vec::new()),
            connected_once: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&client);
        let timeout = client.server.config.connect_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                if !client.connected_once.load(Ordering::Acquire)
                    && lock(&client.sockets).is_empty()
                {
                    warn!(
                        sid = client.engine.sid(),
                        "no namespace joined within connect timeout; closing"
                    );
                    client.engine.close();
                }
            }
        });
        client
    }

    fn socket(&self, nsp: &str) -> Option<Socket> {
        lock(&self.sockets)
            .iter()
            .find(|(name, _)| &**name == nsp)
            .map(|(_, socket)| socket.clone())
    }

    pub(crate) fn remove_socket(&self, nsp: &str, sid: &str) {
        lock(&self.sockets).retain(|(name, socket)| !(&**name == nsp && &**socket.id() == sid));
    }

    pub(crate) fn mark_connected(&self) {
        self.connected_once.store(true, Ordering::Release);
    }

    pub(crate) fn on_message(self: &Arc<Self>, message: Message) {
        let decoded = lock(&self.decoder).decode(message);
        match decoded {
            Ok(Some(packet)) => self.on_packet(packet),
            Ok(None) => {}
            Err(error) => {
                // The reference server closes the whole connection on a packet it cannot parse.
                warn!(sid = self.engine.sid(), %error, "invalid socket.io packet; closing connection");
                self.engine.close();
            }
        }
    }

    fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet {
            Packet::Connect { nsp, data } => self.connect(nsp, data),
            Packet::Disconnect { nsp } => match self.socket(&nsp) {
                Some(socket) => socket.close(DisconnectReason::ClientNamespaceDisconnect),
                None => debug!(nsp, "disconnect for a namespace not joined"),
            },
            Packet::Event {
                nsp,
                id,
                data,
                attachments,
            } => {
                let Some(socket) = self.socket(&nsp) else {
                    debug!(nsp, "event for a namespace not joined");
                    return;
                };
                let Value::Array(mut values) = data else {
                    return;
                };
                // The decoder checked the first item is a string or a number.
                let event = match values.first() {
                    Some(Value::String(name)) => name.clone(),
                    Some(other) => other.to_string(),
                    None => return,
                };
                values.remove(0);
                socket.dispatch_event(
                    event,
                    id,
                    Args {
                        values,
                        attachments,
                    },
                );
            }
            Packet::Ack {
                nsp,
                id,
                data,
                attachments,
            } => {
                let Some(socket) = self.socket(&nsp) else {
                    return;
                };
                let values = match data {
                    Value::Array(values) => values,
                    other => vec![other],
                };
                socket.handle_ack(
                    id,
                    Args {
                        values,
                        attachments,
                    },
                );
            }
            Packet::ConnectError { nsp, .. } => debug!(nsp, "ignoring CONNECT_ERROR from a client"),
        }
    }

    fn send_packet(&self, packet: &Packet) {
        if let Err(error) = Encoded::new(self.server.config.parser, packet).send_to(&self.engine) {
            debug!(sid = self.engine.sid(), %error, "packet not sent");
        }
    }

    fn connect(self: &Arc<Self>, nsp: String, auth: Option<Value>) {
        let Some(namespace) = self.server.resolve(&nsp) else {
            debug!(nsp, "connect to an unknown namespace");
            self.send_packet(&Packet::connect_error(
                nsp,
                serde_json::json!({ "message": "Invalid namespace" }),
            ));
            return;
        };
        if self.socket(&nsp).is_some() {
            debug!(nsp, "second connect to a namespace already joined; ignored");
            return;
        }
        let client = self.clone();
        run_inline(async move {
            let socket = Socket::new(
                namespace.0.clone(),
                client.clone(),
                auth.unwrap_or_else(|| Value::Object(Default::default())),
            );
            for middleware in namespace.0.handlers.middlewares() {
                if let Err(error) = middleware(socket.clone()).await {
                    debug!(nsp, %error, "middleware refused connection");
                    client.send_packet(&Packet::connect_error(nsp, error.to_json()));
                    return;
                }
            }
            namespace.0.add_socket(socket.clone());
            lock(&client.sockets).push((namespace.0.name.clone(), socket.clone()));
            if client.engine.is_closed() {
                socket.close(DisconnectReason::TransportClose);
                return;
            }
            client.mark_connected();
            if let Some(handler) = namespace.0.handlers.connection() {
                run_inline(handler(socket.clone()));
            }
            socket.send_connect();
        });
    }

    pub(crate) fn on_close(&self, reason: CloseReason) {
        let reason = match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            CloseReason::ServerShutdown => DisconnectReason::ServerShuttingDown,
        };
        let sockets = std::mem::take(&mut *lock(&self.sockets));
        for (_, socket) in sockets {
            socket.close(reason);
        }
    }
}
