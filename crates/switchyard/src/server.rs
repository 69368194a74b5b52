//! The Socket.IO server: namespaces over one Engine.IO engine.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};

use switchyard_engineio::{
    serve_service, CloseReason, Engine, EngineHandler, EngineLayer, EngineService, HttpService,
    Message, ResponseBody, Socket as EngineSocket,
};
use tokio::net::TcpListener;

use crate::adapter::{AdapterFactory, InMemoryAdapter};
use crate::client::Client;
use crate::config::SocketIoConfig;
use crate::handler::ConnectError;
use crate::metrics::{Counters, Metrics};
use crate::namespace::{
    add_middleware, set_connection, set_recovered_room_filter, Namespace, NamespaceHandlers,
    NamespaceInner,
};
use crate::observer::{Observer, ObserverAlreadySet};
use crate::socket::Socket;

type Matcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct DynamicEntry {
    matcher: Matcher,
    handlers: Arc<NamespaceHandlers>,
}

pub(crate) struct ServerInner {
    pub(crate) config: Arc<SocketIoConfig>,
    /// What the server counts, shared with its namespaces.
    pub(crate) counters: Arc<Counters>,
    namespaces: RwLock<HashMap<Arc<str>, Namespace>>,
    dynamic: RwLock<Vec<DynamicEntry>>,
    adapter_factory: AdapterFactory,
    /// Told what happens to connections, sockets and rooms ([`SocketIo::set_observer`]).
    observer: OnceLock<Arc<dyn Observer>>,
}

impl ServerInner {
    /// The server's observer, if one is installed.
    pub(crate) fn observer(&self) -> Option<&dyn Observer> {
        self.observer.get().map(|observer| &**observer)
    }

    /// Builds namespace `name` (its adapter built, not started) and puts it in `namespaces`.
    fn insert(
        &self,
        namespaces: &mut HashMap<Arc<str>, Namespace>,
        name: &str,
        handlers: Arc<NamespaceHandlers>,
        dynamic: bool,
    ) -> Namespace {
        let name: Arc<str> = Arc::from(name);
        let namespace = Namespace(NamespaceInner::create(
            name.clone(),
            self.config.clone(),
            self.counters.clone(),
            handlers,
            &self.adapter_factory,
            dynamic,
        ));
        namespaces.insert(name, namespace.clone());
        namespace
    }

    /// The namespace `name`, created (and its adapter started) if needed.
    fn create(&self, name: &str, handlers: Arc<NamespaceHandlers>) -> Namespace {
        let mut namespaces = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        let namespace = match namespaces.get(name) {
            Some(existing) => existing.clone(),
            None => self.insert(&mut namespaces, name, handlers, false),
        };
        drop(namespaces);
        start_adapter(&namespace);
        namespace
    }

    /// The namespace a client asks to join: a known one, or a new child of a matching dynamic
    /// one. The caller holds a [`Joining`] until the client is admitted or refused; a dynamic
    /// child's adapter starts only when a client is admitted, and the child is removed again
    /// if nobody joins it.
    pub(crate) fn resolve(self: &Arc<Self>, name: &str) -> Option<Joining> {
        let mut namespaces = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        let namespace = match namespaces.get(name) {
            Some(namespace) => namespace.clone(),
            None => {
                let handlers = self
                    .dynamic
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|entry| (entry.matcher)(name))
                    .map(|entry| entry.handlers.clone())?;
                self.insert(&mut namespaces, name, handlers, true)
            }
        };
        // Counted under the map's lock, so a namespace is never removed while a client is
        // on its way in.
        namespace.0.joining.fetch_add(1, Ordering::AcqRel);
        Some(Joining {
            server: self.clone(),
            namespace,
        })
    }

    /// Removes dynamic child `namespace` if no socket is in it or joining it.
    pub(crate) fn forget_if_unused(&self, namespace: &Arc<NamespaceInner>) {
        if !namespace.removable.load(Ordering::Acquire) {
            return;
        }
        let mut namespaces = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        let unused = namespace.joining.load(Ordering::Acquire) == 0 && namespace.is_empty();
        let same = namespaces
            .get(&namespace.name)
            .is_some_and(|live| Arc::ptr_eq(&live.0, namespace));
        if !(unused && same) {
            return;
        }
        namespaces.remove(&namespace.name);
        drop(namespaces);
        tracing::debug!(nsp = &*namespace.name, "unused dynamic namespace removed");
        if namespace.started.load(Ordering::Acquire) {
            let closing = namespace.adapter().close();
            if let Err(pending) = crate::handler::poll_once(closing) {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(pending);
                }
            }
        }
    }
}

/// A client on its way into a namespace: keeps a new dynamic child alive while the client's
/// middlewares run.
pub(crate) struct Joining {
    server: Arc<ServerInner>,
    /// The namespace.
    pub(crate) namespace: Namespace,
}

impl Joining {
    /// The client was admitted: the namespace goes live.
    pub(crate) fn admitted(&self) {
        start_adapter(&self.namespace);
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        self.namespace.0.joining.fetch_sub(1, Ordering::AcqRel);
        self.server.forget_if_unused(&self.namespace.0);
    }
}

/// Runs the adapter's `init`: inline when it needs no waiting (the in-memory adapter), in a
/// task otherwise.
fn start_adapter(namespace: &Namespace) {
    if namespace.0.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let init = namespace.adapter().init();
    let nsp = namespace.0.name.clone();
    let report = move |result: Result<(), crate::AdapterError>| {
        if let Err(error) = result {
            tracing::error!(%error, nsp = &*nsp, "adapter failed to start");
        }
    };
    match crate::handler::poll_once(init) {
        Ok(result) => report(result),
        Err(pending) => match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { report(pending.await) });
            }
            Err(_) => tracing::error!(
                nsp = &*namespace.0.name,
                "adapter must start inside a tokio runtime; create the server inside one"
            ),
        },
    }
}

/// The Engine.IO handler of a Socket.IO server; obtained from [`SocketIo::engine`].
pub struct SocketIoHandler(Arc<ServerInner>);

/// The Socket.IO state of one Engine.IO connection (opaque).
pub struct SocketIoConnection(Arc<Client>);

impl EngineHandler for SocketIoHandler {
    type Connection = SocketIoConnection;

    fn on_open(&self, socket: Arc<EngineSocket>) -> SocketIoConnection {
        if let Some(observer) = self.0.observer() {
            observer.connection_opened(&socket);
        }
        SocketIoConnection(Client::new(self.0.clone(), socket))
    }

    fn on_message(&self, connection: &SocketIoConnection, message: Message) {
        connection.0.on_message(message);
    }

    fn on_close(&self, connection: &SocketIoConnection, reason: CloseReason) {
        connection.0.on_close(reason);
        if let Some(observer) = self.0.observer() {
            observer.connection_closed(&connection.0.engine, reason);
        }
    }
}

/// A Socket.IO v5 server. Cheap to clone.
///
/// ```no_run
/// use switchyard::{SocketIo, SocketIoConfig, Socket};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = SocketIo::new(SocketIoConfig::default());
/// io.of("/chat").on_connection(|socket: Socket| async move {
///     socket.on("message", |socket: Socket, text: String| async move {
///         let room = socket.rooms().into_iter().last();
///         if let Some(room) = room {
///             let _ = socket.to(room).emit("message", &text);
///         }
///     });
/// });
/// io.serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?).await
/// # }
/// ```
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<ServerInner>,
    engine: Engine<SocketIoHandler>,
}

impl SocketIo {
    /// A server with `config` and the in-memory adapter.
    pub fn new(config: SocketIoConfig) -> SocketIo {
        SocketIo::with_adapter(config, InMemoryAdapter::factory())
    }

    /// A server whose namespaces get their adapters from `factory`.
    pub fn with_adapter(config: SocketIoConfig, factory: AdapterFactory) -> SocketIo {
        let engine_config = config.engine.clone();
        let inner = Arc::new(ServerInner {
            config: Arc::new(config),
            counters: Arc::default(),
            namespaces: RwLock::default(),
            dynamic: RwLock::default(),
            adapter_factory: factory,
            observer: OnceLock::new(),
        });
        // The main namespace always exists, as on the reference server.
        inner.create("/", Arc::default());
        let engine = Engine::new(engine_config, SocketIoHandler(inner.clone()));
        SocketIo { inner, engine }
    }

    /// The server's options.
    pub fn config(&self) -> &SocketIoConfig {
        &self.inner.config
    }

    /// The namespace `name`, created if needed (`/` is the main namespace).
    pub fn of(&self, name: &str) -> Namespace {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        if let Some(joining) = self.inner.resolve(&name) {
            // Asked for by the application: live from now on, whether it is a dynamic child
            // or not.
            joining
                .namespace
                .0
                .removable
                .store(false, Ordering::Release);
            joining.admitted();
            return joining.namespace.clone();
        }
        self.inner.create(&name, Arc::default())
    }

    /// Namespaces created on demand: every name `matcher` accepts becomes a namespace with
    /// the handlers registered on the returned [`DynamicNamespace`] (like `io.of(/regex/)`).
    pub fn of_dynamic(
        &self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> DynamicNamespace {
        let handlers: Arc<NamespaceHandlers> = Arc::default();
        self.inner
            .dynamic
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(DynamicEntry {
                matcher: Arc::new(matcher),
                handlers: handlers.clone(),
            });
        DynamicNamespace { handlers }
    }

    /// What the server has counted (events, broadcasts, acks, recovery, refusals), its
    /// sockets per namespace and its engine's sessions and traffic: for monitoring. Cheap
    /// enough to call on every scrape; the gauges walk the sockets.
    pub fn metrics(&self) -> Metrics {
        let namespaces = self.namespaces();
        let mut acks_pending = 0;
        let sockets = namespaces
            .iter()
            .map(|namespace| {
                let sockets = namespace.0.sockets();
                acks_pending += sockets.values().map(Socket::pending_acks).sum::<usize>();
                (namespace.name().to_owned(), sockets.len())
            })
            .collect();
        self.inner
            .counters
            .snapshot(self.engine.metrics(), sockets, acks_pending)
    }

    /// Installs `observer`, told from now on what happens to this server's connections,
    /// sockets and rooms (see [`Observer`]). A server has at most one; it stays for the
    /// server's life.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) -> Result<(), ObserverAlreadySet> {
        self.inner
            .observer
            .set(observer)
            .map_err(|_| ObserverAlreadySet)
    }

    /// The namespace `name` if it exists (unlike [`SocketIo::of`], which creates it).
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.namespaces()
            .into_iter()
            .find(|namespace| namespace.name() == name)
    }

    /// The namespaces that exist now (dynamic children once a client was admitted).
    pub fn namespaces(&self) -> Vec<Namespace> {
        self.inner
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|namespace| namespace.0.started.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    /// The underlying Engine.IO engine.
    pub fn engine(&self) -> &Engine<SocketIoHandler> {
        &self.engine
    }

    /// A tower service answering under the server's path, 404 elsewhere.
    pub fn service(&self) -> EngineService<SocketIoHandler> {
        EngineService::new(self.engine.clone())
    }

    /// A tower layer putting the server in front of another service (an axum `Router`, say).
    pub fn layer(&self) -> EngineLayer<SocketIoHandler> {
        EngineLayer::new(self.engine.clone())
    }

    /// Serves on `listener` forever.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `shutdown` completes, then closes gracefully.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        serve_service(listener, self.service(), shutdown).await;
        self.close();
        Ok(())
    }

    /// Disconnects every socket with the reason `server shutting down`, closes every
    /// connection (queued packets go out first), and refuses new connections from then on.
    pub fn close(&self) {
        self.engine.close_all();
    }

    /// Closes like [`SocketIo::close`], then waits until every connection has ended or `drain`
    /// has passed, and stops the namespaces' adapters; returns how many connections were still
    /// open.
    pub async fn shutdown(&self, drain: std::time::Duration) -> usize {
        self.drain(std::time::Duration::ZERO, drain).await
    }

    /// Closes like [`SocketIo::close`], spread over `window` (see
    /// [`Engine::close_all_spread`](switchyard_engineio::Engine::close_all_spread)): clients
    /// see their transport close and reconnect, to other servers with a load balancer in
    /// front, over the window rather than at once; with connection state recovery on, their
    /// sessions stay recoverable (on another server with an adapter that shares them). Then
    /// waits until every connection has ended or `drain` more has passed, stops the
    /// namespaces' adapters, and returns how many connections were still open.
    pub async fn drain(&self, window: std::time::Duration, drain: std::time::Duration) -> usize {
        self.engine.close_all_spread(window).await;
        let deadline = tokio::time::Instant::now() + drain;
        while self.engine.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let left = self.engine.session_count();
        for namespace in self.namespaces() {
            namespace.adapter().close().await;
        }
        left
    }

    /// Serves `service` on `listener` with this server in front of it (Socket.IO requests under
    /// the server's path, everything else to `service`), until `shutdown` completes; then
    /// closes and waits up to `drain` for connections to end.
    pub async fn serve_with<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()>,
        drain: std::time::Duration,
    ) -> io::Result<()>
    where
        S: HttpService<B>,
        B: http_body::Body<Data = bytes::Bytes> + ResponseBody,
    {
        let layered = tower_layer::Layer::layer(&self.layer(), service);
        serve_service(listener, layered, shutdown).await;
        self.shutdown(drain).await;
        Ok(())
    }
}

/// Handlers of a dynamic namespace, shared by every namespace it creates.
#[derive(Clone)]
pub struct DynamicNamespace {
    handlers: Arc<NamespaceHandlers>,
}

impl DynamicNamespace {
    /// Sets the connection handler of every matching namespace.
    pub fn on_connection<F, Fut>(&self, handler: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        set_connection(&self.handlers, handler);
        self
    }

    /// Adds a connect middleware to every matching namespace.
    pub fn use_middleware<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        add_middleware(&self.handlers, middleware);
        self
    }

    /// Sets which of its kept rooms a recovered socket of a matching namespace gets back; see
    /// [`Namespace::filter_recovered_rooms`].
    pub fn filter_recovered_rooms<F>(&self, filter: F) -> &Self
    where
        F: Fn(&Socket, &crate::Room) -> bool + Send + Sync + 'static,
    {
        set_recovered_room_filter(&self.handlers, filter);
        self
    }
}
