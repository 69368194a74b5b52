//! A client's connection to one namespace.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde_json::Value;
use switchyard_engineio::{SendError, Socket as EngineSocket, TransportKind};
use switchyard_socketio_proto::Packet;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use serde::de::DeserializeOwned;
use serde::Serialize;
use switchyard_core::{event_packet, Args, ArgsError, EncodedPacket, IntoArgs};

use crate::broadcast::BroadcastOperator;
use crate::client::Client;
use crate::encode::send_to;
use crate::error::{AckError, EmitError, JoinError};
use crate::extensions::Extensions;
use crate::handler::{
    poll_once, run_inline, ErasedDisconnectHandler, ErasedEventHandler, EventHandler,
};
use crate::limits::RateVerdict;
use crate::metrics::LimitRefusal;
use crate::namespace::{Namespace, NamespaceInner};
use crate::observer::Observer;
use crate::recovery::SessionState;
use crate::types::{BoxFuture, ConnectionInfo, HandshakeInfo, Room, Sid, SocketInfo};

/// Why a socket disconnected, with the reference server's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client's transport closed.
    TransportClose,
    /// The client's transport failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent a packet that does not parse.
    ParseError,
    /// The Engine.IO session was closed by the server.
    ForcedClose,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The server disconnected the socket and closed the whole connection.
    ForcedServerClose,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server disconnected the socket from the namespace.
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// The reason as the reference server spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }
}

impl DisconnectReason {
    /// Whether a socket that ended this way keeps its session for connection state recovery:
    /// the connection broke, rather than either side leaving on purpose.
    pub const fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportError
                | DisconnectReason::TransportClose
                | DisconnectReason::ForcedClose
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::ForcedServerClose
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client sent when it connected, and the request that opened its connection.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The CONNECT packet's payload (`auth` on socket.io-client); `{}` when none was sent.
    pub auth: Value,
    /// When the socket connected.
    pub time: SystemTime,
    engine: Arc<EngineSocket>,
}

impl Handshake {
    /// The HTTP headers of the request that opened the connection.
    ///
    /// The connection keeps its headers compact; the first call builds this map and keeps it
    /// for the connection's life. [`header`](Self::header) reads one header without it.
    pub fn headers(&self) -> &HeaderMap {
        self.engine.request().headers.map()
    }

    /// The first value of header `name` (any case) of the request that opened the connection.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.engine.request().headers.get(name)
    }

    /// The query parameter `name` of that request, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.engine.request().query_param(name)
    }

    /// The request URL (path and query).
    pub fn url(&self) -> String {
        self.engine.request().uri.to_string()
    }

    /// The client's address, when known.
    pub fn address(&self) -> Option<SocketAddr> {
        self.engine.request().remote_addr
    }

    /// The handshake in the reference server's shape, to describe the socket to other
    /// servers.
    pub fn info(&self) -> HandshakeInfo {
        let request = self.engine.request();
        let mut headers = std::collections::BTreeMap::new();
        for (name, value) in request.headers.iter() {
            let value = String::from_utf8_lossy(value).into_owned();
            headers
                .entry(name.to_owned())
                .and_modify(|joined: &mut String| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert(value);
        }
        let query = request
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let key = pair.split_once('=').map_or(pair, |(key, _)| key);
                request
                    .query_param(key)
                    .map(|value| (key.to_owned(), value))
            })
            .collect();
        let issued = self
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        HandshakeInfo {
            xdomain: request.headers.get("origin").is_some(),
            headers,
            time: httpdate(self.time),
            address: request
                .remote_addr
                .map(|addr| addr.ip().to_string())
                .unwrap_or_default(),
            secure: request.uri.scheme_str() == Some("https"),
            issued,
            url: request.uri.to_string(),
            query,
            auth: self.auth.clone(),
        }
    }
}

/// A date as the reference server's `handshake.time` shows it (`Date#toString` is
/// locale-bound; an RFC 7231 date is the portable equivalent).
fn httpdate(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = secs / 86_400;
    let (hour, minute, second) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
    )
}

#[derive(Default)]
struct ConnectState {
    connected: bool,
    disconnected: bool,
    /// Packets emitted before the CONNECT reply went out; sent right after it.
    early: Vec<EncodedPacket>,
}

/// An event handler with the name of its event.
type NamedHandler = (Cow<'static, str>, ErasedEventHandler);

type AnyHandler = Arc<dyn Fn(Socket, String, Args) -> BoxFuture<()> + Send + Sync>;

pub(crate) struct SocketInner {
    pub(crate) id: Sid,
    /// The private session id a client presents to recover this socket.
    pub(crate) pid: Sid,
    recovered: bool,
    pub(crate) ns: Arc<NamespaceInner>,
    pub(crate) client: Arc<Client>,
    handshake: Handshake,
    /// By event name, in one allocation sized to them (a socket has a few, each registered
    /// once); a name given as a `&'static str` costs no allocation of its own.
    handlers: RwLock<Box<[NamedHandler]>>,
    any_handler: RwLock<Option<AnyHandler>>,
    disconnect_handlers: Mutex<Vec<ErasedDisconnectHandler>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<Args>>>,
    /// Fast path for emits once connected; `state` is the truth.
    connected: AtomicBool,
    state: Mutex<ConnectState>,
    extensions: Mutex<Extensions>,
    /// Session data: serializable, kept in recovered sessions and shown to other servers.
    session_data: Mutex<Value>,
    /// Where a replay of this socket's session starts if its client saw no packet
    /// ([`SessionState::start_offset`]).
    start_offset: Mutex<Option<String>>,
    /// Run with the socket that joins the namespace ([`Socket::when_connected`]); `None`
    /// once they ran.
    connected_hooks: Mutex<Option<Vec<ConnectedHook>>>,
    /// Set once [`Socket::close`] has finished; see `closed`.
    close_done: AtomicBool,
    closed: tokio::sync::Notify,
}

/// A callback [`Socket::when_connected`] keeps until the socket joins its namespace.
type ConnectedHook = Box<dyn FnOnce(Socket) + Send>;

/// A client's connection to a namespace: receive events, emit, join rooms, acknowledge.
///
/// Cheap to clone; all clones are the same socket.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketInner>);

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.0.id)
            .field("nsp", &self.0.ns.name)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Socket {
    pub(crate) fn new(ns: Arc<NamespaceInner>, client: Arc<Client>, auth: Value) -> Socket {
        let ids = (
            crate::namespace::generate_id(),
            crate::namespace::generate_id(),
        );
        Socket::build(ns, client, auth, ids, None)
    }

    /// A socket that takes over a recovered session: same id, rooms and data.
    pub(crate) fn restore(
        ns: Arc<NamespaceInner>,
        client: Arc<Client>,
        auth: Value,
        state: SessionState,
    ) -> Socket {
        let SessionState {
            sid,
            pid,
            rooms,
            data,
            start_offset,
            extensions,
        } = state;
        let socket = Socket::build(
            ns,
            client,
            auth,
            (sid, pid),
            Some(extensions.unwrap_or_default()),
        );
        *lock(&socket.0.session_data) = data;
        *lock(&socket.0.start_offset) = start_offset;
        socket.join(rooms);
        socket
    }

    /// Takes over what the connect middlewares gave `admitted`, the fresh socket they ran on
    /// before this socket's session was restored: its typed data (claims, identity) over the
    /// kept one, its session data if it set any, and its [`Socket::when_connected`] callbacks.
    pub(crate) fn absorb_data(&self, admitted: &Socket) {
        let fresh = std::mem::take(&mut *lock(&admitted.0.extensions));
        lock(&self.0.extensions).extend(fresh);
        let hooks = lock(&admitted.0.connected_hooks).take().unwrap_or_default();
        if let Some(mine) = lock(&self.0.connected_hooks).as_mut() {
            mine.extend(hooks);
        }
        let data = std::mem::take(&mut *lock(&admitted.0.session_data));
        if !data.is_null() {
            *lock(&self.0.session_data) = data;
        }
    }

    /// Moves the rooms the middlewares made `admitted` join over to this socket; `admitted`
    /// leaves them and is done with.
    pub(crate) fn absorb_rooms(&self, admitted: &Socket) {
        let adapter = self.0.ns.adapter();
        let rooms = adapter.socket_rooms(&admitted.0.id);
        lock(&admitted.0.state).disconnected = true;
        adapter.del_all(&admitted.0.id);
        admitted.report_left(&rooms);
        let own = &admitted.0.id;
        let rooms: Vec<Room> = rooms.into_iter().filter(|room| room != own).collect();
        if !rooms.is_empty() {
            self.join(rooms);
        }
    }

    /// Runs `hook` with this socket once it has joined its namespace, before the connection
    /// handler (at once if it already has).
    ///
    /// For middlewares that need the socket as it will live: with connection state recovery, a
    /// reconnecting client is authenticated on a fresh socket before its session is restored,
    /// so the socket a middleware sees is not the one that connects (its id differs); what the
    /// middleware stores with [`Socket::insert_data`] moves over, and so do these hooks, which
    /// then get the recovered socket. Timers keyed on the socket id (a token's expiry, say)
    /// belong here.
    pub fn when_connected(&self, hook: impl FnOnce(Socket) + Send + 'static) {
        let mut hooks = lock(&self.0.connected_hooks);
        match hooks.as_mut() {
            Some(waiting) => waiting.push(Box::new(hook)),
            None => {
                drop(hooks);
                hook(self.clone());
            }
        }
    }

    /// Runs the [`Socket::when_connected`] hooks; the socket is in its namespace.
    pub(crate) fn run_connected_hooks(&self) {
        let hooks = lock(&self.0.connected_hooks).take().unwrap_or_default();
        for hook in hooks {
            hook(self.clone());
        }
    }

    /// Waits until [`Socket::close`] has finished, whichever task ran it.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.0.closed.notified();
            if self.0.close_done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Notes where this socket's session resumes if its client drops before any packet.
    pub(crate) fn set_start_offset(&self, offset: Option<String>) {
        *lock(&self.0.start_offset) = offset;
    }

    fn build(
        ns: Arc<NamespaceInner>,
        client: Arc<Client>,
        auth: Value,
        (id, pid): (Sid, Sid),
        restored: Option<Extensions>,
    ) -> Socket {
        let handshake = Handshake {
            auth,
            time: SystemTime::now(),
            engine: client.engine.clone(),
        };
        Socket(Arc::new(SocketInner {
            id,
            pid,
            recovered: restored.is_some(),
            ns,
            client,
            handshake,
            handlers: RwLock::default(),
            any_handler: RwLock::default(),
            disconnect_handlers: Mutex::default(),
            acks: Mutex::default(),
            connected: AtomicBool::new(false),
            state: Mutex::default(),
            extensions: Mutex::new(restored.unwrap_or_default()),
            session_data: Mutex::new(Value::Null),
            start_offset: Mutex::default(),
            connected_hooks: Mutex::new(Some(Vec::new())),
            close_done: AtomicBool::new(false),
            closed: tokio::sync::Notify::new(),
        }))
    }

    /// The socket id.
    pub fn id(&self) -> &Sid {
        &self.0.id
    }

    /// The namespace this socket belongs to.
    pub fn namespace(&self) -> Namespace {
        Namespace(self.0.ns.clone())
    }

    /// The handshake: auth payload, headers, query, address, time.
    pub fn handshake(&self) -> &Handshake {
        &self.0.handshake
    }

    /// The Engine.IO transport in use.
    pub fn transport(&self) -> TransportKind {
        self.0.client.engine.transport()
    }

    /// Whether this socket took over a session recovered from an earlier connection (same id,
    /// rooms and data; the packets it missed were replayed).
    pub fn recovered(&self) -> bool {
        self.0.recovered
    }

    /// Whether the socket is connected.
    pub fn connected(&self) -> bool {
        let state = lock(&self.0.state);
        state.connected && !state.disconnected
    }

    /// Registers the handler of event `event`, replacing any previous one.
    ///
    /// The handler is an async function of the socket and the data (any `DeserializeOwned`
    /// type read from the first argument, or [`Args`] for all of them). If it returns a
    /// `Result`, that answers the client's acknowledgement.
    ///
    /// The name is kept for the socket's life: a `&'static str` is kept as it is, a `String`
    /// as given.
    pub fn on<T>(&self, event: impl Into<Cow<'static, str>>, handler: impl EventHandler<T>) {
        let event = match event.into() {
            Cow::Owned(name) => Cow::Owned(name.into_boxed_str().into_string()),
            name => name,
        };
        let handler = handler.erase();
        let mut handlers = self.0.handlers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = handlers.iter_mut().find(|(name, _)| *name == event) {
            slot.1 = handler;
            return;
        }
        let mut list = std::mem::take(&mut *handlers).into_vec();
        list.reserve_exact(1);
        list.push((event, handler));
        *handlers = list.into_boxed_slice();
    }

    /// Registers a handler called for every event, before the event's own handler.
    pub fn on_any<F, Fut>(&self, handler: F)
    where
        F: Fn(Socket, String, Args) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let handler: AnyHandler = Arc::new(move |s, e, a| Box::pin(handler(s, e, a)));
        *self
            .0
            .any_handler
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Registers a handler called once when the socket disconnects.
    pub fn on_disconnect<F, Fut>(&self, handler: F)
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let handler: ErasedDisconnectHandler = Arc::new(move |s, r| Box::pin(handler(s, r)));
        lock(&self.0.disconnect_handlers).push(handler);
    }

    /// Sends event `event` with `data` (one argument, or several as [`Args`]).
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        if self.0.ns.recovery {
            // Through the namespace, so the packet gets an offset and is kept for replay.
            return self.namespace().to(self.0.id.clone()).emit(event, data);
        }
        let packet = event_packet(&self.0.ns.name, event, data.into_args()?, None);
        self.send_encoded(EncodedPacket::new(self.0.ns.parser, &packet))?;
        self.0.ns.counters.events_out(1);
        Ok(())
    }

    /// Sends event `event` and waits for the client's acknowledgement, up to the server's
    /// default ack timeout.
    pub async fn emit_with_ack<T: IntoArgs>(&self, event: &str, data: T) -> Result<Args, AckError> {
        let timeout = self.0.ns.config.ack_timeout;
        self.emit_with_ack_timeout(event, data, timeout).await
    }

    /// Sends event `event` and waits up to `timeout` for the client's acknowledgement.
    pub async fn emit_with_ack_timeout<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        let args = data.into_args().map_err(EmitError::from)?;
        let id = self.0.ns.next_ack_id();
        let receiver = self.register_ack(id)?;
        let packet = event_packet(&self.0.ns.name, event, args, Some(id));
        if let Err(error) = self.send_encoded(EncodedPacket::new(self.0.ns.parser, &packet)) {
            lock(&self.0.acks).remove(&id);
            return Err(error.into());
        }
        self.0.ns.counters.events_out(1);
        self.wait_ack(id, receiver, timeout).await
    }

    /// How many acknowledgements from the client this socket waits for.
    pub(crate) fn pending_acks(&self) -> usize {
        lock(&self.0.acks).len()
    }

    pub(crate) fn register_ack(&self, id: u64) -> Result<oneshot::Receiver<Args>, AckError> {
        let mut acks = lock(&self.0.acks);
        if acks.len() >= self.0.ns.config.limits.max_pending_acks {
            self.0.ns.counters.refused(LimitRefusal::PendingAcks);
            return Err(AckError::TooManyPending);
        }
        let (sender, receiver) = oneshot::channel();
        acks.insert(id, sender);
        Ok(receiver)
    }

    pub(crate) async fn wait_ack(
        &self,
        id: u64,
        receiver: oneshot::Receiver<Args>,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                lock(&self.0.acks).remove(&id);
                self.0.ns.counters.ack_timed_out();
                Err(AckError::Timeout)
            }
        }
    }

    /// Joins `rooms`.
    ///
    /// Past the configured `max_rooms_per_socket`, the join is refused and logged; use
    /// [`Socket::try_join`] to answer the client.
    pub fn join(&self, rooms: impl crate::IntoRooms) {
        if let Err(error) = self.try_join(rooms) {
            warn!(sid = &*self.0.id, %error, "join refused");
        }
    }

    /// Joins `rooms`, or none of them if that would put the socket in more rooms than allowed.
    pub fn try_join(&self, rooms: impl crate::IntoRooms) -> Result<(), JoinError> {
        let rooms = rooms.into_rooms();
        let adapter = self.0.ns.adapter();
        let observer = self.observer().filter(|observer| observer.active());
        // Held while joining: a socket that closes at the same time either sees these rooms
        // when it leaves all of its rooms, or is seen closed here; it never stays in a room.
        let state = lock(&self.0.state);
        if state.disconnected {
            return Err(JoinError::Disconnected);
        }
        let max = self.0.ns.config.limits.max_rooms_per_socket;
        // The socket's rooms are read only when something needs them.
        let current = if max.is_some() || observer.is_some() {
            adapter.socket_rooms(&self.0.id)
        } else {
            Vec::new()
        };
        if let Some(max) = max {
            let new = rooms.iter().filter(|room| !current.contains(room)).count();
            if current.len() + new > max {
                self.0.ns.counters.refused(LimitRefusal::RoomsPerSocket);
                return Err(JoinError::TooManyRooms { max });
            }
        }
        adapter.add_all(&self.0.id, &rooms);
        drop(state);
        if let Some(observer) = observer {
            let mut reported: Vec<&Room> = Vec::new();
            for room in &rooms {
                if !current.contains(room) && !reported.contains(&room) {
                    reported.push(room);
                    observer.room_joined(self, room);
                }
            }
        }
        Ok(())
    }

    /// Leaves `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        let room = room.into();
        let adapter = self.0.ns.adapter();
        match self.observer().filter(|observer| observer.active()) {
            Some(observer) => {
                // Under the socket's lock, as joins are: of two leaves at once, one reports.
                let state = lock(&self.0.state);
                let was_in = adapter.socket_rooms(&self.0.id).contains(&room);
                adapter.del(&self.0.id, &room);
                drop(state);
                if was_in {
                    observer.room_left(self, &room);
                }
            }
            None => adapter.del(&self.0.id, &room),
        }
    }

    /// Whether the socket is in `room` (its own id room included).
    pub fn in_room(&self, room: &str) -> bool {
        if *self.0.id == *room {
            return true;
        }
        let mut found = false;
        self.0
            .ns
            .adapter()
            .for_each_in_room(&Room::from(room), &mut |sid| {
                found |= *sid == self.0.id;
            });
        found
    }

    /// The rooms the socket is in, its own id room first.
    pub fn rooms(&self) -> Vec<Room> {
        let mut rooms = vec![self.0.id.clone()];
        rooms.extend(self.0.ns.adapter().socket_rooms(&self.0.id));
        rooms
    }

    /// A broadcast to `rooms`, from this socket: the sender itself is left out.
    pub fn to(&self, rooms: impl crate::IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// A broadcast to every other socket of the namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.namespace()).except_socket(self.0.id.clone())
    }

    /// Disconnects the socket from its namespace; the client's connection stays open for its
    /// other namespaces. The client sees `io server disconnect`.
    pub fn disconnect(&self) {
        let packet = Packet::disconnect(self.0.ns.name.to_string());
        // Only a client that was told it is connected is told it is not.
        let told = self.connected();
        self.0.client.left_by_server(&self.0.ns.name);
        // Closed before the DISCONNECT goes out: the client's answer (often closing its
        // transport) must not overtake the close and make it a `transport close`.
        self.close(DisconnectReason::ServerNamespaceDisconnect);
        if told {
            let _ = send_to(
                &EncodedPacket::new(self.0.ns.parser, &packet),
                &self.0.client.engine,
            );
        }
    }

    /// Disconnects the socket and closes the client's whole connection.
    pub fn disconnect_and_close(&self) {
        self.0.client.engine.close();
        self.close(DisconnectReason::ForcedServerClose);
    }

    /// Sets this socket's session data (the reference server's `socket.data`): a serializable
    /// value that survives connection state recovery, on this server or another one, and that
    /// other servers see in [`crate::BroadcastOperator::fetch_sockets`].
    pub fn set_session_data<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), ArgsError> {
        let value = serde_json::to_value(value).map_err(ArgsError::from)?;
        *lock(&self.0.session_data) = value;
        Ok(())
    }

    /// This socket's session data read as `T`; `None` if none was set or it is not a `T`.
    pub fn session_data<T: DeserializeOwned>(&self) -> Option<T> {
        let value = lock(&self.0.session_data).clone();
        if value.is_null() {
            return None;
        }
        serde_json::from_value(value).ok()
    }

    /// This socket's session data as JSON (`null` when none was set).
    pub fn session_data_value(&self) -> Value {
        lock(&self.0.session_data).clone()
    }

    /// This socket as other servers see it: id, handshake, rooms and session data (`{}` when
    /// none was set, as the reference server's `socket.data` starts).
    pub fn info(&self) -> SocketInfo {
        let data = match self.session_data_value() {
            Value::Null => Value::Object(serde_json::Map::new()),
            data => data,
        };
        SocketInfo {
            id: self.0.id.clone(),
            handshake: self.0.handshake.info(),
            rooms: self.rooms(),
            data,
            connection: Some(self.connection_info()),
        }
    }

    /// The connection this socket is on: a short id its client's other sockets share, and
    /// the transport in use now.
    pub fn connection_info(&self) -> ConnectionInfo {
        // A keyed hash of the Engine.IO session id, which is a credential on long-polling:
        // the id tells connections apart and says nothing of the session id.
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        use std::hash::BuildHasher;
        let hash = KEY
            .get_or_init(Default::default)
            .hash_one(self.0.client.engine.sid());
        ConnectionInfo {
            id: format!("{:012x}", hash & 0xffff_ffff_ffff),
            transport: self.transport().as_str().to_owned(),
        }
    }

    /// Stores `value` as this socket's typed extension of type `T`, replacing the previous
    /// one. Extensions hold anything (guards, handles); unlike session data, they stay on this
    /// server: a session recovered by another server does not have them.
    pub fn insert_data<T: Send + Sync + 'static>(&self, value: T) {
        lock(&self.0.extensions).insert(TypeId::of::<T>(), Box::new(value));
    }

    /// A copy of this socket's data of type `T`.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.0.extensions)
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    }

    /// Removes and returns this socket's data of type `T`.
    pub fn remove_data<T: Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.0.extensions)
            .remove(&TypeId::of::<T>())
            .and_then(|value| value.downcast::<T>().ok())
            .map(|value| *value)
    }

    /// Bytes waiting to be written to this client.
    pub fn buffered_bytes(&self) -> usize {
        self.0.client.engine.buffered_bytes()
    }

    // ----- internals used by the client and the namespace ---------------------------------

    /// The server's observer, if one is installed.
    pub(crate) fn observer(&self) -> Option<&dyn Observer> {
        self.0.client.server.observer()
    }

    /// Tells the observer this socket is out of `rooms`.
    fn report_left(&self, rooms: &[Room]) {
        if let Some(observer) = self.observer().filter(|observer| observer.active()) {
            for room in rooms {
                observer.room_left(self, room);
            }
        }
    }

    pub(crate) fn send_encoded(&self, encoded: EncodedPacket) -> Result<(), EmitError> {
        if !self.0.connected.load(Ordering::Acquire) {
            let mut state = lock(&self.0.state);
            if state.disconnected {
                return Err(EmitError::Disconnected);
            }
            if !state.connected {
                // Reported once the lock is released: an observer must not run under it.
                let observed = self.observer().map(|observer| (observer, encoded.clone()));
                state.early.push(encoded);
                drop(state);
                if let Some((observer, encoded)) = observed {
                    observer.packet_sent(self, &encoded);
                }
                return Ok(());
            }
        }
        let sent = send_to(&encoded, &self.0.client.engine);
        if let (Ok(()), Some(observer)) = (&sent, self.observer()) {
            observer.packet_sent(self, &encoded);
        }
        if let Err(SendError::BufferFull) = sent {
            // Slow consumer: its buffer is at the bound and this packet may not be dropped.
            // Closing the connection frees the buffer; the client reconnects (and, with
            // recovery on, gets what it missed).
            warn!(
                sid = &*self.0.id,
                buffered = self.0.client.engine.buffered_bytes(),
                "slow consumer: outgoing buffer full; closing its connection"
            );
            self.0.client.engine.close();
        }
        sent.map_err(EmitError::from)
    }

    /// Sends the CONNECT reply, then what was emitted before it.
    pub(crate) fn send_connect(&self) {
        let mut state = lock(&self.0.state);
        if state.disconnected || state.connected {
            return;
        }
        let payload = if self.0.ns.recovery {
            serde_json::json!({ "sid": &*self.0.id, "pid": &*self.0.pid })
        } else {
            serde_json::json!({ "sid": &*self.0.id })
        };
        let reply = Packet::connect(self.0.ns.name.to_string(), Some(payload));
        let engine = &self.0.client.engine;
        let _ = send_to(&EncodedPacket::new(self.0.ns.parser, &reply), engine);
        for encoded in state.early.drain(..) {
            if let Err(error) = send_to(&encoded, engine) {
                warn!(sid = &*self.0.id, %error, "early emit dropped");
            }
        }
        state.connected = true;
        self.0.connected.store(true, Ordering::Release);
    }

    /// Hands a received event to its handlers.
    pub(crate) fn dispatch_event(&self, event: String, ack: Option<u64>, args: Args) {
        if !self.admit_event() {
            if let Some(id) = ack {
                self.send_ack(id, Err("rate limited".into()));
            }
            return;
        }
        if let Some(observer) = self.observer() {
            observer.event_received(self, &event, &args);
        }
        let any = self
            .0
            .any_handler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(any) = any {
            run_inline(any(self.clone(), event.clone(), args.clone()));
        }
        let handler = self
            .0
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(name, _)| name == event.as_str())
            .map(|(_, handler)| handler.clone());
        let Some(handler) = handler else {
            debug!(sid = &*self.0.id, event, "no handler for event");
            return;
        };
        match handler(self.clone(), args) {
            // The handler's future is boxed already: poll it here, and only wrap it in a task
            // if it has to wait.
            Ok(future) => match poll_once(future) {
                Ok(reply) => {
                    if let (Some(id), Some(reply)) = (ack, reply) {
                        self.send_ack(id, reply);
                    }
                }
                Err(future) => {
                    let socket = self.clone();
                    tokio::spawn(async move {
                        let reply = future.await;
                        if let (Some(id), Some(reply)) = (ack, reply) {
                            socket.send_ack(id, reply);
                        }
                    });
                }
            },
            Err(error) => {
                debug!(sid = &*self.0.id, event, %error, "event arguments refused");
                if let Some(id) = ack {
                    self.send_ack(id, Err(error.to_string()));
                }
            }
        }
    }

    /// Whether an incoming event is within its connection's event rate. Past it, warns the
    /// client once, and closes the connection if it keeps flooding for a full burst more.
    fn admit_event(&self) -> bool {
        let Some(rate) = self.0.ns.config.limits.event_rate else {
            return true;
        };
        match self.0.client.take_budget(rate) {
            RateVerdict::Allowed => true,
            RateVerdict::FirstDrop => {
                self.0.ns.counters.refused(LimitRefusal::EventRate);
                warn!(sid = &*self.0.id, "event rate exceeded; dropping events");
                let warning = serde_json::json!({
                    "message": "event rate exceeded",
                    "limit": rate.per_second,
                });
                let _ = self.emit("rate-limit", warning);
                false
            }
            RateVerdict::Dropped => {
                self.0.ns.counters.refused(LimitRefusal::EventRate);
                false
            }
            RateVerdict::Disconnect => {
                self.0.ns.counters.refused(LimitRefusal::EventRate);
                warn!(
                    sid = &*self.0.id,
                    "client kept flooding past the event rate; disconnecting it from every namespace"
                );
                // The budget belongs to the connection: leaving the namespace alone would not
                // stop the flood.
                self.0.client.disconnect_all();
                false
            }
        }
    }

    fn send_ack(&self, id: u64, reply: Result<Args, String>) {
        let args = match reply {
            Ok(args) => args,
            Err(message) => {
                warn!(
                    sid = &*self.0.id,
                    id, message, "handler failed; answering with an error"
                );
                Args {
                    values: vec![serde_json::json!({ "error": message })],
                    attachments: Vec::new(),
                }
            }
        };
        let packet = Packet::Ack {
            nsp: self.0.ns.name.to_string(),
            id,
            data: Value::Array(args.values),
            attachments: args.attachments,
        };
        if let Err(error) = self.send_encoded(EncodedPacket::new(self.0.ns.parser, &packet)) {
            debug!(sid = &*self.0.id, %error, "ack not sent");
        }
    }

    /// The client answered the ack `id`.
    pub(crate) fn handle_ack(&self, id: u64, args: Args) {
        match lock(&self.0.acks).remove(&id) {
            Some(sender) => {
                let _ = sender.send(args);
            }
            None => debug!(sid = &*self.0.id, id, "ack for an unknown id"),
        }
    }

    /// A middleware refused the socket before it joined its namespace: its rooms are left and,
    /// for a recovered session, the session is kept again for a later, admitted, attempt.
    pub(crate) fn refused(&self) {
        lock(&self.0.state).disconnected = true;
        let adapter = self.0.ns.adapter();
        if self.0.recovered {
            self.keep_session();
        }
        let rooms = match self.observer().filter(|observer| observer.active()) {
            Some(_) => adapter.socket_rooms(&self.0.id),
            None => Vec::new(),
        };
        adapter.del_all(&self.0.id);
        self.report_left(&rooms);
    }

    /// The socket's session (id, `rooms`, data, extensions), as kept for a reconnection. No
    /// lock of the socket is held once it returns: the adapter keeps it under its own.
    fn session(&self, rooms: Vec<Room>) -> SessionState {
        let data = std::mem::take(&mut *lock(&self.0.session_data));
        let start_offset = lock(&self.0.start_offset).clone();
        let extensions = std::mem::take(&mut *lock(&self.0.extensions));
        SessionState {
            sid: self.0.id.clone(),
            pid: self.0.pid.clone(),
            rooms,
            data,
            start_offset,
            extensions: Some(extensions),
        }
    }

    /// Hands the socket's session to the adapter to keep for a reconnection.
    fn keep_session(&self) {
        let adapter = self.0.ns.adapter();
        let session = self.session(adapter.socket_rooms(&self.0.id));
        adapter.persist_session(session);
    }

    /// Ends the socket: leaves its rooms and namespace, fails pending acks, runs the
    /// disconnect handlers. Runs once.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let was_connected = {
            let mut state = lock(&self.0.state);
            if state.disconnected {
                return;
            }
            state.disconnected = true;
            state.early.clear();
            state.connected
        };
        self.0.connected.store(false, Ordering::Release);
        self.0.client.remove_socket(&self.0.ns.name, &self.0.id);
        let handlers = std::mem::take(&mut *lock(&self.0.disconnect_handlers));
        for handler in handlers {
            run_inline(handler(self.clone(), reason));
        }
        let adapter = self.0.ns.adapter();
        // Out of the rooms and the namespace before the session is kept: a client that takes
        // the session over at once finds it whole, and nothing of this socket is left to undo
        // what its recovered self does under the same id.
        let rooms = adapter.socket_rooms(&self.0.id);
        adapter.del_all(&self.0.id);
        self.0.ns.remove_socket(self);
        if let Some(observer) = self.observer() {
            if was_connected {
                observer.socket_disconnected(self, reason);
            }
            self.report_left(&rooms);
        }
        // Only a socket that was connected, or recovered, has a session its client knows of.
        if self.0.ns.recovery && reason.is_recoverable() && (was_connected || self.0.recovered) {
            let session = self.session(rooms);
            adapter.persist_session(session);
        }
        self.0.client.server.forget_if_unused(&self.0.ns);
        lock(&self.0.acks).clear();
        lock(&self.0.extensions).clear();
        self.0.close_done.store(true, Ordering::Release);
        self.0.closed.notify_waiters();
        debug!(sid = &*self.0.id, nsp = &*self.0.ns.name, %reason, "socket disconnected");
    }
}
