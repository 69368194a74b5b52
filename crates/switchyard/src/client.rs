//! One Engine.IO connection and the namespaces it joined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{json, Value};
use switchyard_engineio::{CloseReason, Message, Rate, Socket as EngineSocket};
use switchyard_socketio_proto::Packet;
use tracing::{debug, warn};

use crate::adapter::AttachSession;
use crate::encode::send_to;
use crate::handler::run_inline;
use crate::limits::{EventBucket, RateVerdict};
use crate::metrics::LimitRefusal;
use crate::server::{Joining, ServerInner};
use crate::socket::{DisconnectReason, Socket};
use crate::Namespace;
use switchyard_core::Args;
use switchyard_core::{split_event, EncodedPacket, PacketDecoder, Parser};

pub(crate) struct Client {
    pub(crate) engine: Arc<EngineSocket>,
    pub(crate) server: Arc<ServerInner>,
    decoder: Mutex<PacketDecoder>,
    /// The namespaces this connection joined; a handful at most, so a vector.
    sockets: Mutex<Vec<(Arc<str>, Socket)>>,
    connected_once: AtomicBool,
    /// The connect-timeout task, aborted once a namespace is joined so it frees its memory.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
    /// Namespaces the server disconnected this client from: packets the client sent before it
    /// learned it are ignored rather than treated as a broken client.
    left_by_server: Mutex<Vec<Arc<str>>>,
    /// Namespaces whose CONNECT is still in its middlewares.
    connecting: Mutex<Vec<Arc<str>>>,
    /// The budget of events and CONNECTs, for the whole connection.
    rate: Mutex<EventBucket>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    pub(crate) fn new(server: Arc<ServerInner>, engine: Arc<EngineSocket>) -> Arc<Client> {
        // One packet's attachments together weigh no more than one message may.
        let decoder = PacketDecoder::new(server.config.parser, server.config.max_attachments)
            .with_max_attachment_bytes(server.config.engine.session.max_payload);
        let client = Arc::new(Client {
            engine,
            server,
            decoder: Mutex::new(decoder),
            sockets: Mutex::new(Vec::new()),
            connected_once: AtomicBool::new(false),
            connect_timer: Mutex::new(None),
            left_by_server: Mutex::new(Vec::new()),
            connecting: Mutex::new(Vec::new()),
            rate: Mutex::default(),
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
        let size = message.len();
        let max_auth = self.server.config.limits.max_auth_bytes;
        if let Message::Text(text) = &message {
            // A CONNECT whose payload is over the bound is refused before it is parsed: a
            // parsed JSON value can take many times its text's size.
            if let Some(nsp) = oversized_connect(text, max_auth) {
                self.refuse_auth_size(nsp.to_owned(), size, max_auth);
                return;
            }
        }
        let decoded = lock(&self.decoder).decode(message);
        if let Ok(Some(Packet::Connect {
            nsp,
            data: Some(auth),
        })) = &decoded
        {
            // msgpack: the message is the packet; its size bounds the payload's.
            if size > max_auth && self.server.config.parser == Parser::MsgPack {
                self.refuse_auth_size(nsp.clone(), size, max_auth);
                return;
            }
            // The socket keeps its parsed `auth` for its life; parsed, small objects cost many
            // times their text (`{"":0}`, 6 bytes, is a map of several hundred).
            if retained_bytes(auth) > AUTH_PARSED_FACTOR * max_auth {
                self.refuse_auth_size(nsp.clone(), size, max_auth);
                return;
            }
        }
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

    fn refuse_auth_size(&self, nsp: String, size: usize, max: usize) {
        self.server.counters.refused(LimitRefusal::AuthBytes);
        warn!(
            sid = self.engine.sid(),
            nsp, size, max, "CONNECT payload over the auth limit; refused"
        );
        self.refuse(
            nsp,
            json!({ "message": "auth payload too large", "data": { "limit": max } }),
        );
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
                self.server.counters.event_in();
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
                let what = format!("{} packet", packet.packet_type());
                self.misbehaved(packet.nsp(), &what);
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
        let limits = &self.server.config.limits;
        if lock(&self.connecting)
            .iter()
            .any(|joining| **joining == *nsp)
        {
            // A second CONNECT while the first is in its middlewares: the reference server
            // would create a duplicate socket; a client never needs it.
            self.misbehaved(&nsp, "second CONNECT while the first is pending");
            return;
        }
        if lock(&self.sockets).len() + lock(&self.connecting).len()
            >= limits.max_namespaces_per_connection
        {
            self.server
                .counters
                .refused(LimitRefusal::NamespacesPerConnection);
            warn!(
                sid = self.engine.sid(),
                nsp,
                max = limits.max_namespaces_per_connection,
                "too many namespaces on one connection; CONNECT refused"
            );
            self.refuse(nsp, json!({ "message": "too many namespaces" }));
            return;
        }
        if let Some(rate) = limits.event_rate {
            match self.take_budget(rate) {
                RateVerdict::Allowed => {}
                RateVerdict::Disconnect => {
                    warn!(
                        sid = self.engine.sid(),
                        "client kept flooding CONNECTs; closing"
                    );
                    self.engine.close();
                    return;
                }
                RateVerdict::FirstDrop | RateVerdict::Dropped => {
                    self.server.counters.refused(LimitRefusal::EventRate);
                    debug!(
                        sid = self.engine.sid(),
                        nsp, "CONNECT past the rate; refused"
                    );
                    self.refuse(nsp, json!({ "message": "rate limited" }));
                    return;
                }
            }
        }
        let Some(joining) = self.server.resolve(&nsp) else {
            debug!(nsp, "connect to an unknown namespace");
            self.refuse(nsp, json!({ "message": "Invalid namespace" }));
            return;
        };
        let name = joining.namespace.0.name.clone();
        lock(&self.connecting).push(name.clone());
        let client = self.clone();
        run_inline(async move {
            client.join(joining, nsp, auth).await;
            let mut connecting = lock(&client.connecting);
            connecting.retain(|pending| *pending != name);
            // Nothing pending: give the list's memory back (most connections never connect
            // again, and stay open for hours).
            if connecting.is_empty() {
                *connecting = Vec::new();
            }
        });
    }

    /// Runs the middlewares of the namespace `joining` leads to and, if they admit the client,
    /// connects its socket there, recovering its session if it presents one.
    ///
    /// The middlewares run before a presented session is touched (unless recovery is set to
    /// skip them): a client must be admitted before its private id closes a stale connection
    /// or takes over a kept session.
    async fn join(self: &Arc<Self>, joining: Joining, nsp: String, auth: Option<Value>) {
        let namespace = joining.namespace.clone();
        let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
        let recovery = self
            .server
            .config
            .connection_state_recovery
            .as_ref()
            .filter(|_| namespace.0.recovery);
        let recovering = recovery.is_some() && pid_of(&auth).is_some();
        let skip_middlewares = recovering && recovery.is_some_and(|config| config.skip_middlewares);
        let admitted = Socket::new(namespace.0.clone(), self.clone(), auth.clone());
        if !skip_middlewares && !self.admits(&namespace, &admitted, &nsp).await {
            return;
        }
        let recovered = if recovering {
            let recovered = self.try_recover(&namespace, &auth, &admitted).await;
            self.server
                .counters
                .recovery(matches!(recovered, Recovery::Recovered(..)));
            recovered
        } else {
            Recovery::None
        };
        let (socket, missed) = match recovered {
            Recovery::Recovered(socket, missed) => (socket, Some(missed)),
            Recovery::Broken => {
                self.refuse(nsp, json!({ "message": "session could not be restored" }));
                return;
            }
            Recovery::None if skip_middlewares => {
                // Nothing to recover: a new socket, which the middlewares must admit.
                if !self.admits(&namespace, &admitted, &nsp).await {
                    return;
                }
                (admitted, None)
            }
            Recovery::None => (admitted, None),
        };
        joining.admitted();
        if missed.is_none() {
            let adapter = namespace.0.adapter();
            let start = adapter.attach_socket(&mut || namespace.0.add_socket(socket.clone()));
            socket.set_start_offset(start);
        }
        // Room for this one only: most connections join one namespace, for their whole life.
        let mut sockets = lock(&self.sockets);
        sockets.reserve_exact(1);
        sockets.push((namespace.0.name.clone(), socket.clone()));
        drop(sockets);
        drop(joining);
        if self.engine.is_closed() {
            socket.close(DisconnectReason::TransportClose);
            return;
        }
        self.mark_connected();
        // Missed packets go before the CONNECT reply, as on the reference server; the
        // client holds them until it sees the reply.
        if let Some(missed) = &missed {
            for packet in missed {
                if let Err(error) = send_to(packet, &self.engine) {
                    warn!(sid = self.engine.sid(), %error, "replay of a missed packet failed");
                }
            }
            debug!(
                sid = &**socket.id(),
                missed = missed.len(),
                "session recovered"
            );
        }
        socket.run_connected_hooks();
        if let Some(handler) = namespace.0.handlers.connection() {
            run_inline(handler(socket.clone()));
        }
        socket.send_connect();
        if let Some(observer) = self.server.observer() {
            if socket.connected() {
                observer.socket_connected(&socket);
            }
        }
    }

    /// Runs the namespace's middlewares on `socket`; the first refusal answers the CONNECT
    /// with CONNECT_ERROR and leaves nothing of the socket behind.
    async fn admits(&self, namespace: &Namespace, socket: &Socket, nsp: &str) -> bool {
        for middleware in namespace.0.handlers.middlewares() {
            if let Err(error) = middleware(socket.clone()).await {
                debug!(nsp, %error, "middleware refused connection");
                socket.refused();
                self.refuse(nsp.to_owned(), error.to_json());
                return false;
            }
        }
        true
    }

    /// Answers a CONNECT to `nsp` with CONNECT_ERROR `data`; the connection stays open.
    fn refuse(&self, nsp: String, data: Value) {
        self.send_packet(&Packet::connect_error(nsp, data));
    }

    /// A client broke the protocol: the reference server closes the whole connection.
    fn misbehaved(&self, nsp: &str, what: &str) {
        warn!(
            sid = self.engine.sid(),
            nsp, what, "packet out of place; closing connection"
        );
        self.engine.close();
    }

    /// Disconnects every socket of this connection from its namespace: the client sees
    /// `io server disconnect` and does not reconnect on its own (socket.io-client then closes
    /// the connection itself). A client that comes back with CONNECTs spends the same budget,
    /// and one that floods those has its connection closed.
    pub(crate) fn disconnect_all(&self) {
        let sockets: Vec<Socket> = lock(&self.sockets)
            .iter()
            .map(|(_, socket)| socket.clone())
            .collect();
        for socket in sockets {
            socket.disconnect();
        }
    }

    /// Takes one event (or CONNECT) from this connection's budget.
    pub(crate) fn take_budget(&self, rate: Rate) -> RateVerdict {
        lock(&self.rate).take(Instant::now(), rate)
    }

    /// The session a reconnecting client asks for with `pid` and `offset` in its auth, put
    /// back in `namespace` with what `admitted` (the socket the middlewares admitted) was
    /// given, and the packets it missed.
    async fn try_recover(
        self: &Arc<Self>,
        namespace: &Namespace,
        auth: &Value,
        admitted: &Socket,
    ) -> Recovery {
        let Some(pid) = pid_of(auth) else {
            return Recovery::None;
        };
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
            // The stale connection's own task may be closing it too: its session is kept once
            // that close has finished, whoever runs it.
            if tokio::time::timeout(STALE_CLOSE_WAIT, stale.closed())
                .await
                .is_err()
            {
                warn!(pid, "stale socket still closing; connecting afresh");
                return Recovery::None;
            }
        }
        // A restored socket is put back in the namespace by the adapter, at the instant its
        // missed packets are cut off (see `Adapter::restore_session`).
        let attached: Arc<Mutex<Option<Socket>>> = Arc::default();
        let attach: AttachSession = {
            let (ns, client, auth, admitted, attached) = (
                namespace.0.clone(),
                self.clone(),
                auth.clone(),
                admitted.clone(),
                attached.clone(),
            );
            Box::new(move |mut state| {
                let kept = std::mem::take(&mut state.rooms);
                let socket = Socket::restore(ns.clone(), client, auth, state);
                // The admitted socket's claims first: the filter judges the new credentials.
                socket.absorb_data(&admitted);
                let kept: Vec<crate::Room> = match ns.handlers.recovered_rooms() {
                    Some(filter) => {
                        let (given, refused): (Vec<_>, Vec<_>) =
                            kept.into_iter().partition(|room| filter(&socket, room));
                        if !refused.is_empty() {
                            debug!(sid = &**socket.id(), ?refused, "kept rooms not given back");
                        }
                        given
                    }
                    None => kept,
                };
                socket.join(kept.clone());
                // Then the rooms the middlewares joined: live from now on, nothing replayed.
                socket.absorb_rooms(&admitted);
                ns.add_socket(socket.clone());
                *lock(&attached) = Some(socket);
                kept
            })
        };
        let restored = namespace
            .0
            .adapter()
            .restore_session(pid.to_owned(), offset, attach)
            .await;
        let missed = restored.unwrap_or_else(|error| {
            warn!(%error, pid, "session could not be restored; connecting afresh");
            None
        });
        let socket = lock(&attached).take();
        match (socket, missed) {
            (Some(socket), Some(missed)) => Recovery::Recovered(socket, missed),
            (Some(socket), None) => {
                // An adapter that attached a session it did not return (against the
                // contract): undo, and keep the session for another try. The admitted socket
                // gave its state away, so the CONNECT is refused.
                warn!(pid, "adapter attached a session it did not return");
                namespace.0.remove_socket(&socket);
                socket.refused();
                Recovery::Broken
            }
            (None, _) => Recovery::None,
        }
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

/// The namespace of a JSON CONNECT (`0` or `0/nsp,` then the payload) whose payload is longer
/// than `max` bytes; `None` for any other message.
fn oversized_connect(text: &str, max: usize) -> Option<&str> {
    let rest = text.strip_prefix('0')?;
    let (nsp, payload) = match rest.strip_prefix('/') {
        Some(_) => match rest.split_once(',') {
            Some((nsp, payload)) => (nsp, payload),
            None => (rest, ""),
        },
        None => ("/", rest),
    };
    (payload.len() > max).then_some(nsp)
}

/// How long a reconnecting client waits for the stale socket holding its session to close.
const STALE_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What came of a reconnecting client's request for its session.
enum Recovery {
    /// The session is back, with the packets it missed.
    Recovered(Socket, Vec<EncodedPacket>),
    /// No session to give back (none asked for, unknown, expired, or not whole).
    None,
    /// The adapter failed half-way; the session is kept for another try.
    Broken,
}

/// How many times `max_auth_bytes` a parsed `auth` may take in memory, by [`retained_bytes`].
const AUTH_PARSED_FACTOR: usize = 4;

/// An estimate, from above, of the memory a parsed JSON value holds: every value its 32-byte
/// slot; strings and arrays what they allocated (their capacity, which growth may have made
/// up to twice their length); objects a B-tree node (up to 11 entries, about 640 bytes) per 11
/// entries and their keys.
pub(crate) fn retained_bytes(value: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    const MAP_NODE: usize = 640;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => SLOT,
        Value::String(text) => SLOT + text.capacity(),
        Value::Array(values) => {
            let spare = values.capacity() - values.len();
            SLOT + spare * SLOT + values.iter().map(retained_bytes).sum::<usize>()
        }
        Value::Object(map) => {
            let nodes = map.len().div_ceil(11).max(1);
            let entries: usize = map
                .iter()
                .map(|(key, value)| {
                    std::mem::size_of::<String>() + key.capacity() + retained_bytes(value)
                })
                .sum();
            SLOT + nodes * MAP_NODE + entries
        }
    }
}

/// The private session id a reconnecting client presents in its `auth`.
fn pid_of(auth: &Value) -> Option<&str> {
    auth.get("pid")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::{oversized_connect, retained_bytes};
    use serde_json::json;

    #[test]
    fn oversized_connects_are_found_before_parsing() {
        assert_eq!(oversized_connect("0", 4), None);
        assert_eq!(oversized_connect(r#"0{"a":1}"#, 100), None);
        assert_eq!(oversized_connect(r#"0{"token":"xxxxxx"}"#, 4), Some("/"));
        assert_eq!(
            oversized_connect(r#"0/chat,{"token":"xxxxxx"}"#, 4),
            Some("/chat")
        );
        assert_eq!(oversized_connect(r#"0/chat,{}"#, 4), None);
        assert_eq!(oversized_connect(r#"2["event","xxxxxxxxxx"]"#, 4), None);
    }

    #[test]
    fn retained_bytes_charges_small_objects_their_real_cost() {
        let token = json!({ "token": "x".repeat(800) });
        assert!(
            retained_bytes(&token) < 2 * 1024,
            "{}",
            retained_bytes(&token)
        );
        // 16 KiB of text, over a megabyte once parsed: refused under the default factor.
        let pad = json!({ "pad": vec![json!({ "": 0 }); 2300] });
        assert!(serde_json::to_string(&pad).unwrap().len() < 16 * 1024);
        assert!(retained_bytes(&pad) > 1_000_000);
    }
}
