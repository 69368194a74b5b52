//! Namespaces: separate communication channels over one connection, each with its own
//! connection handler, middlewares, sockets and rooms.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::adapter::{Adapter, BroadcastOptions};
use crate::broadcast::BroadcastOperator;
use crate::config::SocketIoConfig;
use crate::handler::{ConnectError, ErasedConnectHandler, ErasedMiddleware};
use crate::socket::{EmitError, Sid, Socket};
use crate::Room;
use switchyard_core::IntoArgs;
use switchyard_core::Parser;

/// Handlers shared by a namespace and, for a dynamic namespace, by every child it spawns.
#[derive(Default)]
pub(crate) struct NamespaceHandlers {
    pub(crate) connection: RwLock<Option<ErasedConnectHandler>>,
    pub(crate) middlewares: RwLock<Vec<ErasedMiddleware>>,
}

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
}

pub(crate) struct NamespaceInner {
    pub(crate) name: Arc<str>,
    pub(crate) parser: Parser,
    pub(crate) config: Arc<SocketIoConfig>,
    pub(crate) handlers: Arc<NamespaceHandlers>,
    /// Whether connection state recovery is on: events get offsets and sessions are kept.
    pub(crate) recovery: bool,
    sockets: RwLock<HashMap<Sid, Socket>>,
    adapter: Arc<dyn Adapter>,
    ack_ids: AtomicU64,
}

impl NamespaceInner {
    pub(crate) fn new(
        name: Arc<str>,
        config: Arc<SocketIoConfig>,
        handlers: Arc<NamespaceHandlers>,
        adapter: Arc<dyn Adapter>,
    ) -> NamespaceInner {
        NamespaceInner {
            name,
            parser: config.parser,
            recovery: config.connection_state_recovery.is_some(),
            config,
            handlers,
            sockets: RwLock::default(),
            adapter,
            ack_ids: AtomicU64::new(0),
        }
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

    pub(crate) fn remove_socket(&self, sid: &Sid) {
        self.sockets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }

    /// Calls `visit` with every local socket `options` targets.
    pub(crate) fn for_each_target(
        &self,
        options: &BroadcastOptions,
        mut visit: impl FnMut(&Socket),
    ) {
        let sockets = self.sockets();
        let mut excluded: HashSet<Sid> = HashSet::new();
        for room in &options.except {
            self.room_members(&sockets, room, &mut |sid| {
                excluded.insert(sid.clone());
            });
        }
        if options.rooms.is_empty() {
            for (sid, socket) in sockets.iter() {
                if !excluded.contains(sid) {
                    visit(socket);
                }
            }
            return;
        }
        // A socket in several target rooms still gets the packet once.
        let mut seen: HashSet<Sid> = HashSet::new();
        for room in &options.rooms {
            self.room_members(&sockets, room, &mut |sid| {
                if !excluded.contains(sid) && seen.insert(sid.clone()) {
                    if let Some(socket) = sockets.get(sid) {
                        visit(socket);
                    }
                }
            });
        }
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

    /// The namespace's adapter.
    pub fn adapter(&self) -> &dyn Adapter {
        self.0.adapter()
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

    /// Emits `event` to every socket of the namespace.
    pub fn emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        self.broadcast().emit(event, data)
    }

    /// Sends `event` to this namespace on the other servers of the cluster (not to clients,
    /// and not to this server), like the reference `serverSideEmit`. With the in-memory
    /// adapter there are no other servers and this does nothing.
    pub fn server_side_emit<T: IntoArgs>(&self, event: &str, data: T) -> Result<(), EmitError> {
        let args = data.into_args()?;
        let args = serde_json::Value::Array(args.values);
        if let Err(error) = self.0.adapter().remote_server_side_emit(event, &args) {
            tracing::warn!(%error, nsp = &*self.0.name, "server-side emit failed");
        }
        Ok(())
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
