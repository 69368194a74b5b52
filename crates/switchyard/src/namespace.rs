//! Namespaces: separate communication channels over one connection, each with its own
//! connection handler, middlewares, sockets and rooms.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use switchyard_core::{Args, IntoArgs, Parser};

use crate::adapter::{Adapter, AdapterContext, AdapterFactory, LocalNamespace};
use crate::broadcast::BroadcastOperator;
use crate::config::SocketIoConfig;
use crate::error::EmitError;
use crate::handler::{
    ConnectError, ErasedConnectHandler, ErasedMiddleware, ErasedServerEventHandler,
};
use crate::metrics::{AdapterRequest, Counters};
use crate::socket::Socket;
use crate::types::{BoxFuture, BroadcastOptions, Room, Sid};

/// Handlers shared by a namespace and, for a dynamic namespace, by every child it spawns.
#[derive(Default)]
pub(crate) struct NamespaceHandlers {
    pub(crate) connection: RwLock<Option<ErasedConnectHandler>>,
    pub(crate) middlewares: RwLock<Vec<ErasedMiddleware>>,
    server_events: RwLock<HashMap<String, ErasedServerEventHandler>>,
    recovered_rooms: RwLock<Option<RecoveredRoomFilter>>,
}

/// Decides which of its kept rooms a recovered socket gets back.
pub(crate) type RecoveredRoomFilter = Arc<dyn Fn(&Socket, &Room) -> bool + Send + Sync>;

impl NamespaceHandlers {
    pub(crate) fn connection(&self) -> Option<ErasedConnectHandler> {
        self.connection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn middlewares(&self) -> Vec<ErasedMiddleware> {
        self.middlewares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn recovered_rooms(&self) -> Option<RecoveredRoomFilter> {
        self.recovered_rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn server_event(&self, event: &str) -> Option<ErasedServerEventHandler> {
        self.server_events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event)
            .cloned()
    }
}

pub(crate) struct NamespaceInner {
    pub(crate) name: Arc<str>,
    pub(crate) parser: Parser,
    pub(crate) config: Arc<SocketIoConfig>,
    /// The server's counters.
    pub(crate) counters: Arc<Counters>,
    pub(crate) handlers: Arc<NamespaceHandlers>,
    /// Whether connection state recovery is on: events get offsets and sessions are kept.
    pub(crate) recovery: bool,
    sockets: RwLock<HashMap<Sid, Socket>>,
    adapter: Arc<dyn Adapter>,
    ack_ids: AtomicU64,
    /// A child of a dynamic namespace that the application did not ask for itself: removed
    /// once no socket is in it or joining it.
    pub(crate) removable: AtomicBool,
    /// Whether the adapter was started: a dynamic child starts with its first admitted client.
    pub(crate) started: AtomicBool,
    /// CONNECTs to this namespace still in their middlewares.
    pub(crate) joining: AtomicUsize,
}

impl NamespaceInner {
    /// A namespace whose adapter `factory` builds, handed this namespace's local side.
    pub(crate) fn create(
        name: Arc<str>,
        config: Arc<SocketIoConfig>,
        counters: Arc<Counters>,
        handlers: Arc<NamespaceHandlers>,
        factory: &AdapterFactory,
        dynamic: bool,
    ) -> Arc<NamespaceInner> {
        Arc::new_cyclic(|weak| {
            let recovery = config
                .connection_state_recovery
                .as_ref()
                .filter(|recovery| recovery.covers(&name));
            let adapter = factory(AdapterContext {
                namespace: &name,
                recovery,
                local: LocalNamespace::new(name.clone(), weak.clone()),
            });
            NamespaceInner {
                parser: config.parser,
                recovery: recovery.is_some(),
                name,
                config,
                counters,
                handlers,
                sockets: RwLock::default(),
                adapter,
                ack_ids: AtomicU64::new(0),
                removable: AtomicBool::new(dynamic),
                started: AtomicBool::new(false),
                joining: AtomicUsize::new(0),
            }
        })
    }

    pub(crate) fn adapter(&self) -> &dyn Adapter {
        &*self.adapter
    }

    /// The next ack id: one counter per namespace, so a broadcast with acks uses one id for
    /// every recipient, as the reference server does.
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn sockets(&self) -> RwLockReadGuard<'_, HashMap<Sid, Socket>> {
        self.sockets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no socket is connected to this namespace on this server.
    pub(crate) fn is_empty(&self) -> bool {
        self.sockets().is_empty()
    }

    /// The connected socket whose private session id is `pid`.
    pub(crate) fn socket_by_pid(&self, pid: &str) -> Option<Socket> {
        self.sockets()
            .values()
            .find(|socket| &*socket.0.pid == pid)
            .cloned()
    }

    pub(crate) fn add_socket(&self, socket: Socket) {
        self.sockets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(socket.id().clone(), socket);
    }

    /// Removes `socket`, if it is the one registered under its id (a recovered socket that
    /// took its id over is left alone).
    pub(crate) fn remove_socket(&self, socket: &Socket) {
        let mut sockets = self.sockets.write().unwrap_or_else(|p| p.into_inner());
        if sockets
            .get(socket.id())
            .is_some_and(|registered| Arc::ptr_eq(&registered.0, &socket.0))
        {
            sockets.remove(socket.id());
        }
    }

    /// The local sockets `options` targets. The locks are released before it returns, so
    /// callers may act on the sockets (send, join, disconnect) freely.
    pub(crate) fn targets(&self, options: &BroadcastOptions) -> Vec<Socket> {
        let sockets = self.sockets();
        let mut excluded: HashSet<Sid> = HashSet::new();
        for room in &options.except {
            self.room_members(&sockets, room, &mut |sid| {
                excluded.insert(sid.clone());
            });
        }
        if options.rooms.is_empty() {
            return sockets
                .iter()
                .filter(|(sid, _)| !excluded.contains(*sid))
                .map(|(_, socket)| socket.clone())
                .collect();
        }
        let mut targets = Vec::new();
        if let [room] = options.rooms.as_slice() {
            if !sockets.contains_key(room) {
                // One room that is no socket's id: the adapter lists each member once (the
                // common case, kept free of a set of the sockets seen).
                self.adapter.for_each_in_room(room, &mut |sid| {
                    if !excluded.contains(sid) {
                        if let Some(socket) = sockets.get(sid) {
                            targets.push(socket.clone());
                        }
                    }
                });
                return targets;
            }
        }
        // A socket in several target rooms still gets the packet once.
        let mut seen: HashSet<Sid> = HashSet::new();
        for room in &options.rooms {
            self.room_members(&sockets, room, &mut |sid| {
                if !excluded.contains(sid) && seen.insert(sid.clone()) {
                    if let Some(socket) = sockets.get(sid) {
                        targets.push(socket.clone());
                    }
                }
            });
        }
        targets
    }

    /// Members of `room`: the adapter's, plus the socket whose id the room is (every socket
    /// is in the room named by its id, without the adapter storing it).
    fn room_members(
        &self,
        sockets: &HashMap<Sid, Socket>,
        room: &Room,
        visit: &mut dyn FnMut(&Sid),
    ) {
        if let Some((sid, _)) = sockets.get_key_value(room) {
            visit(sid);
        }
        self.adapter.for_each_in_room(room, visit);
    }
}

/// A namespace handle: register handlers, broadcast, manage its sockets. Cheap to clone.
#[derive(Clone)]
pub struct Namespace(pub(crate) Arc<NamespaceInner>);

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.0.name)
            .finish()
    }
}

impl Namespace {
    /// The namespace's name, `/` for the main one.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Sets the connection handler, run for every socket that connects, after the
    /// middlewares. Event handlers it registers before its first `.await` are in place before
    /// the client learns it is connected.
    pub fn on_connection<F, Fut>(&self, handler: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        set_connection(&self.0.handlers, handler);
        self
    }

    /// Adds a connect middleware; middlewares run in order, and the first refusal answers the
    /// client with CONNECT_ERROR.
    pub fn use_middleware<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        add_middleware(&self.0.handlers, middleware);
        self
    }

    /// Sets which of its kept rooms a recovered socket gets back (default: all of them).
    ///
    /// With connection state recovery, a client that reconnects gets its session back, rooms
    /// included; but its new credentials may no longer allow some of them (a token whose
    /// `rooms` claim shrank, a user removed from a channel). `filter` sees the recovered
    /// socket, with what the middlewares of this connection stored on it (claims, identity),
    /// and each kept room; the rooms it refuses are not rejoined, and what was sent to them
    /// while the client was away is not replayed.
    ///
    /// It runs while the adapter holds the namespace's broadcasts back (the restore window),
    /// so it must be quick and must not call into the namespace or its adapter: no emit, no
    /// join (with recovery on, an emit waits for that same lock). Reading the socket's data is
    /// what it is for.
    pub fn filter_recovered_rooms<F>(&self, filter: F) -> &Self
    where
        F: Fn(&Socket, &Room) -> bool + Send + Sync + 'static,
    {
        set_recovered_room_filter(&self.0.handlers, filter);
        self
    }

    /// Whether connection state recovery is on here: a socket whose connection broke may come
    /// back with its id, rooms and missed events.
    pub fn recovery(&self) -> bool {
        self.0.recovery
    }

    /// The namespace's adapter.
    pub fn adapter(&self) -> &dyn Adapter {
        self.0.adapter()
    }

    /// This namespace's local side, as its adapter sees it.
    pub fn local(&self) -> LocalNamespace {
        LocalNamespace::new(self.0.name.clone(), Arc::downgrade(&self.0))
    }

    /// The sockets connected to this namespace on this server.
    pub fn sockets(&self) -> Vec<Socket> {
        self.0.sockets().values().cloned().collect()
    }

    /// How many sockets are connected to this namespace on this server.
    pub fn socket_count(&self) -> usize {
        self.0.sockets().len()
    }

    /// The local socket with id `sid`.
    pub fn get_socket(&self, sid: &str) -> Option<Socket> {
        self.0.sockets().get(sid).cloned()
    }

    /// How many of this server's sockets are in `room`.
    pub fn room_size(&self, room: &str) -> usize {
        let room = Room::from(room);
        let mut count = 0;
        self.0
            .adapter()
            .for_each_in_room(&room, &mut |_| count += 1);
        if self.0.sockets().contains_key(&room) {
            count += 1;
        }
        count
    }

    /// A broadcast to every socket of the namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }

    /// A broadcast to the sockets in `rooms`.
    pub fn to(&self, rooms: impl crate::IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// A broadcast to every socket except those in `rooms`.
    pub fn except(&self, rooms: impl crate::IntoRooms) -> BroadcastOperator {
        self.broadcast().except(rooms)
    }

    /// Every socket of the namespace, on this server and (with a cluster adapter) the others.
    pub async fn fetch_sockets(&self) -> Result<Vec<crate::RemoteSocket>, crate::AdapterError> {
        self.broadcast().fetch_sockets().await
    }

    /// Makes every socket of the namespace join `rooms`, on every server.
    pub async fn sockets_join(
        &self,
        rooms: impl crate::IntoRooms,
    ) -> Result<(), crate::AdapterError> {
        self.broadcast().sockets_join(rooms).await
    }

    /// Makes every socket of the namespace leave `rooms`, on every server.
    pub async fn sockets_leave(
        &self,
        rooms: impl crate::IntoRooms,
    ) -> Result<(), crate::AdapterError> {
        self.broadcast().sockets_leave(rooms).await
    }

    /// Disconnects every socket of the namespace, on every server; with `close`, their whole
    /// connections.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), crate::AdapterError> {
        self.broadcast().disconnect_sockets(close).await
    }

    /// Emits `event` to every socket of the namespace.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        self.broadcast().emit(event, data)
    }

    /// Registers the handler of server-side event `event`: what another server of the cluster
    /// sends with [`Namespace::server_side_emit`] (the reference server's
    /// `io.on(event, (...args, callback))`). Its return value answers the sender's ack.
    pub fn on_server_event<F, Fut, R>(&self, event: impl Into<String>, handler: F) -> &Self
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoArgs + 'static,
    {
        let handler: ErasedServerEventHandler = Arc::new(move |args| {
            let answer = handler(args);
            Box::pin(async move { answer.await.into_args().unwrap_or_default() })
        });
        self.0
            .handlers
            .server_events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event.into(), handler);
        self
    }

    /// Sends `event` with `data` (binary included) to this namespace's server-side handlers
    /// on the other servers of the cluster (not to clients, and not to this server), like the
    /// reference `serverSideEmit`. With the in-memory adapter there are no other servers.
    pub async fn server_side_emit<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
    ) -> Result<(), EmitError> {
        let args = data.into_args()?;
        let request = self
            .0
            .adapter()
            .server_side_emit(event.to_owned(), args, None);
        self.0
            .counters
            .timed(AdapterRequest::ServerSideEmit, request)
            .await?;
        Ok(())
    }

    /// Like [`Namespace::server_side_emit`], and waits up to `timeout` for every other
    /// server's answer; fails with a timeout if one of them does not answer in time.
    pub async fn server_side_emit_with_ack<T: IntoArgs>(
        &self,
        event: &str,
        data: T,
        timeout: Duration,
    ) -> Result<Vec<Args>, EmitError> {
        let args = data.into_args()?;
        let request = self
            .0
            .adapter()
            .server_side_emit(event.to_owned(), args, Some(timeout));
        Ok(self
            .0
            .counters
            .timed(AdapterRequest::ServerSideEmit, request)
            .await?)
    }

    /// How many servers serve this namespace, this one included.
    pub fn server_count(&self) -> BoxFuture<Result<usize, crate::AdapterError>> {
        let request = self.0.adapter().server_count();
        let counters = self.0.counters.clone();
        Box::pin(async move { counters.timed(AdapterRequest::ServerCount, request).await })
    }
}

pub(crate) fn set_connection<F, Fut>(handlers: &NamespaceHandlers, handler: F)
where
    F: Fn(Socket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler: ErasedConnectHandler = Arc::new(move |socket| Box::pin(handler(socket)));
    *handlers
        .connection
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Some(handler);
}

pub(crate) fn set_recovered_room_filter<F>(handlers: &NamespaceHandlers, filter: F)
where
    F: Fn(&Socket, &Room) -> bool + Send + Sync + 'static,
{
    *handlers
        .recovered_rooms
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(filter));
}

pub(crate) fn add_middleware<F, Fut>(handlers: &NamespaceHandlers, middleware: F)
where
    F: Fn(Socket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
{
    let middleware: ErasedMiddleware = Arc::new(move |socket| Box::pin(middleware(socket)));
    handlers
        .middlewares
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(middleware);
}

/// A socket id: 15 random bytes, base64url (20 characters), like the reference server's.
pub(crate) fn generate_id() -> Sid {
    let bytes: [u8; 15] = rand::random();
    Arc::from(URL_SAFE_NO_PAD.encode(bytes))
}
