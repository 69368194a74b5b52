//! The application's handle on a manager.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use switchyard_engineio_proto::TransportKind;
use tokio::sync::mpsc;

use super::{driver, Command, ManagerEvent, ManagerInner, Shared};
use crate::config::{ManagerConfig, SocketOptions};
use crate::dispatch;
use crate::engine::Endpoint;
use crate::error::{EmitError, EngineError};
use crate::socket::{Socket, SocketInner};

/// A Socket.IO manager: one Engine.IO connection to a server, shared by the sockets of
/// every namespace created with [`socket`](Manager::socket), with automatic reconnection.
///
/// Cheap to clone. Must be created inside a Tokio runtime. The connection opens when a
/// socket first [connects](Socket::connect); it closes when the last active socket
/// disconnects, on [`close`](Manager::close), or when every handle is dropped.
#[derive(Clone)]
pub struct Manager {
    pub(crate) inner: Arc<ManagerInner>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("engine_id", &self.engine_id())
            .field("transport", &self.transport())
            .finish()
    }
}

impl Manager {
    /// A manager for the server at `url` (`http://host:port`; the path is
    /// `config.path`). Panics outside a Tokio runtime, like `tokio::spawn`.
    pub fn new(url: &str, config: ManagerConfig) -> Result<Manager, EngineError> {
        let endpoint = Endpoint::parse(url, &config.path, &config.query)?;
        let shared = Arc::new(Shared {
            config,
            sockets: Mutex::new(HashMap::new()),
            engine: Mutex::new((None, None)),
            listeners: RwLock::new(Vec::new()),
        });
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(ManagerInner {
            shared: shared.clone(),
            commands: commands_tx,
        });
        tokio::spawn(dispatch::run(dispatch_rx, Arc::downgrade(&inner)));
        driver::spawn(shared, endpoint, commands_rx, dispatch_tx);
        Ok(Manager { inner })
    }

    /// The socket of namespace `nsp` (created with default options if new). Register its
    /// handlers, then [`connect`](Socket::connect) it.
    pub fn socket(&self, nsp: &str) -> Socket {
        self.socket_with(nsp, SocketOptions::default())
    }

    /// The socket of namespace `nsp`, created with `options` if new (an existing socket
    /// keeps its options).
    pub fn socket_with(&self, nsp: &str, options: SocketOptions) -> Socket {
        let nsp = if nsp.starts_with('/') {
            nsp.to_owned()
        } else {
            format!("/{nsp}")
        };
        let inner = self
            .inner
            .shared
            .sockets()
            .entry(nsp.clone())
            .or_insert_with(|| Arc::new(SocketInner::new(nsp, options)))
            .clone();
        self.wrap(inner)
    }

    /// The options the manager was created with.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.shared.config
    }

    /// The Engine.IO session id while connected.
    pub fn engine_id(&self) -> Option<String> {
        self.engine_state().0
    }

    /// The transport in use while connected.
    pub fn transport(&self) -> Option<TransportKind> {
        self.engine_state().1
    }

    /// Calls `listener` on every [`ManagerEvent`].
    pub fn on_event(&self, listener: impl Fn(&ManagerEvent) + Send + Sync + 'static) -> &Manager {
        self.inner
            .shared
            .listeners
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::new(listener));
        self
    }

    /// Calls `listener(n)` when reconnection attempt `n` starts.
    pub fn on_reconnect_attempt(&self, listener: impl Fn(u32) + Send + Sync + 'static) -> &Manager {
        self.on_event(move |event| {
            if let ManagerEvent::ReconnectAttempt(n) = event {
                listener(*n);
            }
        })
    }

    /// Calls `listener(n)` when attempt `n` reconnected.
    pub fn on_reconnect(&self, listener: impl Fn(u32) + Send + Sync + 'static) -> &Manager {
        self.on_event(move |event| {
            if let ManagerEvent::Reconnect(n) = event {
                listener(*n);
            }
        })
    }

    /// Calls `listener` when a reconnection attempt failed.
    pub fn on_reconnect_error(
        &self,
        listener: impl Fn(&EngineError) + Send + Sync + 'static,
    ) -> &Manager {
        self.on_event(move |event| {
            if let ManagerEvent::ReconnectError(error) = event {
                listener(error);
            }
        })
    }

    /// Calls `listener` when the reconnection attempts are used up.
    pub fn on_reconnect_failed(&self, listener: impl Fn() + Send + Sync + 'static) -> &Manager {
        self.on_event(move |event| {
            if matches!(event, ManagerEvent::ReconnectFailed) {
                listener();
            }
        })
    }

    /// Closes the connection and stops reconnecting; connected sockets are disconnected
    /// with [`DisconnectReason::ForcedClose`](crate::DisconnectReason::ForcedClose). A later [`Socket::connect`] opens it again.
    pub fn close(&self) {
        let _ = self.command(Command::Close);
    }

    /// Hands `command` to the driver; fails only when the driver is gone.
    pub(crate) fn command(&self, command: Command) -> Result<(), EmitError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| EmitError::Closed)
    }

    pub(crate) fn wrap(&self, inner: Arc<SocketInner>) -> Socket {
        Socket {
            inner,
            manager: self.clone(),
        }
    }

    pub(crate) fn notify(&self, event: &ManagerEvent) {
        let listeners = self
            .inner
            .shared
            .listeners
            .read()
            .map(|listeners| listeners.clone())
            .unwrap_or_default();
        for listener in listeners {
            listener(event);
        }
    }

    fn engine_state(&self) -> (Option<String>, Option<TransportKind>) {
        self.inner
            .shared
            .engine
            .lock()
            .map(|state| state.clone())
            .unwrap_or_default()
    }
}
