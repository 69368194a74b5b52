//! One Engine.IO connection and the namespaces it joined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use switchyard_engineio::{CloseReason, Message, Socket as EngineSocket};
use switchyard_socketio_proto::Packet;
use tracing::{debug, warn};

use crate::encode::send_to;
use crate::handler::run_inline;
use crate::recovery::RestoredSession;
use crate::server::ServerInner;
use crate::socket::{DisconnectReason, Socket};
use crate::Namespace;
use switchyard_core::Args;
use switchyard_core::{split_event, EncodedPacket, PacketDecoder};

pub(crate) struct Client {
    pub(crate) engine: Arc<EngineSocket>,
    server: Arc<ServerInner>,
    decoder: Mutex<PacketDecoder>,
    /// The namespaces this connection joined; a handful at most, so a vector.
    sockets: Mutex<Vec<(Arc<str>, Socket)>>,
    connected_once: AtomicBool,
    /// The connect-timeout task, aborted once a namespace is joined so it frees its memory.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
    /// Namespaces the server disconnected this client from: packets the client sent before it
    /// learned it are ignored rather than treated as a broken client.
    left_by_server: Mutex<Vec<Arc<str>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    pub(crate) fn new(server: Arc<ServerInner>, engine: Arc<EngineSocket>) -> Arc<Client> {
        let decoder = PacketDecoder::new(server.config.parser, server.config.max_attachments);
        let client = Arc::new(Client {
            engine,
            server,
            decoder: Mutex::new(decoder),
            sockets: Mutex::new(Vec::new()),
            connected_once: AtomicBool::new(false),
            connect_timer: Mutex::new(None),
            left_by_server: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&client);
        let timeout = client.server.config.connect_timeout;
        let timer = tokio::spawn(async move {
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
        *lock(&client.connect_timer) = Some(timer.abort_handle());
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

    /// The server disconnected the socket of namespace `nsp`.
    pub(crate) fn left_by_server(&self, nsp: &Arc<str>) {
        let mut left = lock(&self.left_by_server);
        if !left.contains(nsp) {
            left.push(nsp.clone());
        }
    }

    pub(crate) fn mark_connected(&self) {
        self.connected_once.store(true, Ordering::Release);
        if let Some(timer) = lock(&self.connect_timer).take() {
            timer.abort();
        }
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
        let socket = self.socket(packet.nsp());
        match (packet, socket) {
            (Packet::Connect { nsp, data }, None) => {
                lock(&self.left_by_server).retain(|left| **left != *nsp);
                self.connect(nsp, data)
            }
            (packet, None)
                if lock(&self.left_by_server)
                    .iter()
                    .any(|left| **left == *packet.nsp()) =>
            {
                debug!(
                    nsp = packet.nsp(),
                    "packet sent before the client saw its disconnect; ignored"
                );
            }
            (Packet::Disconnect { .. }, Some(socket)) => {
                socket.close(DisconnectReason::ClientNamespaceDisconnect)
            }
            (
                Packet::Event {
                    data,
                    id,
                    attachments,
                    ..
                },
                Some(socket),
            ) => {
                // The decoder checked the first item is a string or a number.
                let Some((event, args)) = split_event(data, attachments) else {
                    return;
                };
                socket.dispatch_event(event, id, args);
            }
            (
                Packet::Ack {
                    id,
                    data,
                    attachments,
                    ..
                },
                Some(socket),
            ) => {
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
            // A packet for a namespace not joined, a second CONNECT, or a CONNECT_ERROR from a
            // client: the reference server treats each as a broken client and closes.
            (packet, _) => {
                warn!(
                    sid = self.engine.sid(),
                    nsp = packet.nsp(),
                    packet_type = %packet.packet_type(),
                    "packet out of place; closing connection"
                );
                self.engine.close();
            }
        }
    }

    fn send_packet(&self, packet: &Packet) {
        if let Err(error) = send_to(
            &EncodedPacket::new(self.server.config.parser, packet),
            &self.engine,
        ) {
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
        let client = self.clone();
        run_inline(async move {
            let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
            let restored = client.try_recover(&namespace, &auth).await;
            let recovered = restored.is_some();
            let (socket, missed) = match restored {
                Some(restored) => (
                    Socket::restore(namespace.0.clone(), client.clone(), auth, restored.state),
                    restored.missed,
                ),
                None => (
                    Socket::new(namespace.0.clone(), client.clone(), auth),
                    Vec::new(),
                ),
            };
            let skip_middlewares = recovered
                && client
                    .server
                    .config
                    .connection_state_recovery
                    .as_ref()
                    .is_some_and(|config| config.skip_middlewares);
            if !skip_middlewares {
                for middleware in namespace.0.handlers.middlewares() {
                    if let Err(error) = middleware(socket.clone()).await {
                        debug!(nsp, %error, "middleware refused connection");
                        socket.0.ns.adapter().del_all(socket.id());
                        client.send_packet(&Packet::connect_error(nsp, error.to_json()));
                        return;
                    }
                }
            }
            namespace.0.add_socket(socket.clone());
            lock(&client.sockets).push((namespace.0.name.clone(), socket.clone()));
            if client.engine.is_closed() {
                socket.close(DisconnectReason::TransportClose);
                return;
            }
            client.mark_connected();
            // Missed packets go before the CONNECT reply, as on the reference server; the
            // client holds them until it sees the reply.
            for packet in &missed {
                if let Err(error) = send_to(packet, &client.engine) {
                    warn!(sid = client.engine.sid(), %error, "replay of a missed packet failed");
                }
            }
            if recovered {
                debug!(
                    sid = &**socket.id(),
                    missed = missed.len(),
                    "session recovered"
                );
            }
            if let Some(handler) = namespace.0.handlers.connection() {
                run_inline(handler(socket.clone()));
            }
            socket.send_connect();
        });
    }

    /// The session a reconnecting client asks for with `pid` and `offset` in its auth, if
    /// recovery is on and the session can be given back whole.
    async fn try_recover(&self, namespace: &Namespace, auth: &Value) -> Option<RestoredSession> {
        self.server.config.connection_state_recovery.as_ref()?;
        let pid = auth.get("pid")?.as_str()?;
        let offset = auth
            .get("offset")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // A client whose network died may come back before the server noticed: the stale
        // socket still holds the session. Close it, which keeps its session, and take over.
        if let Some(stale) = namespace.0.socket_by_pid(pid) {
            debug!(
                sid = &**stale.id(),
                "session taken over by a reconnecting client"
            );
            stale.0.client.engine.close();
            stale.close(DisconnectReason::TransportClose);
        }
        let restored = namespace
            .0
            .adapter()
            .restore_session(pid.to_owned(), offset)
            .await;
        restored.unwrap_or_else(|error| {
            warn!(%error, pid, "session could not be restored; connecting afresh");
            None
        })
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
        if let Some(timer) = lock(&self.connect_timer).take() {
            timer.abort();
        }
        let sockets = std::mem::take(&mut *lock(&self.sockets));
        for (_, socket) in sockets {
            socket.close(reason);
        }
    }
}
