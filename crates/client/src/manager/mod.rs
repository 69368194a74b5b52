//! The manager: one Engine.IO connection, its sockets, and reconnection.
//!
//! `handle` is what the application holds ([`Manager`]); `driver` is the task that owns the
//! connection and runs the state machine. They share `Shared` and talk through `Command`s,
//! so no lock is held across the network.

mod driver;
mod handle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use switchyard_engineio_proto::TransportKind;
use switchyard_socketio_proto::Packet;
use tokio::sync::mpsc;

use crate::config::ManagerConfig;
use crate::error::EngineError;
use crate::socket::{DisconnectReason, SocketInner};

pub use handle::Manager;

/// What happens to a manager's connection (socket.io-client's Manager events).
#[derive(Debug, Clone)]
pub enum ManagerEvent {
    /// The Engine.IO connection opened (`open`).
    Open,
    /// The Engine.IO connection closed (`close`).
    Close(DisconnectReason),
    /// The Engine.IO connection could not be opened (`error`).
    Error(Arc<EngineError>),
    /// The connection moved to WebSocket.
    Upgrade(TransportKind),
    /// Reconnection attempt `n` starts (`reconnect_attempt`, 1-based).
    ReconnectAttempt(u32),
    /// Attempt `n` reconnected (`reconnect`).
    Reconnect(u32),
    /// A reconnection attempt failed (`reconnect_error`).
    ReconnectError(Arc<EngineError>),
    /// The allowed attempts are used up (`reconnect_failed`).
    ReconnectFailed,
}

type Listener = Arc<dyn Fn(&ManagerEvent) + Send + Sync>;

/// What sockets ask of the driver.
pub(crate) enum Command {
    /// Send a packet of socket `nsp`; `seq` is its emit order when it may be buffered again.
    Packet {
        nsp: String,
        seq: Option<u64>,
        packet: Packet,
    },
    /// Socket `nsp` became active: open the connection or send its CONNECT. `request` is the
    /// socket's `connect_requested` count when it was sent.
    Connect { nsp: String, request: u64 },
    /// Socket `nsp` was disconnected by the application.
    Disconnect { nsp: String, was_connected: bool },
    /// Close the connection and stop reconnecting.
    Close,
}

/// State shared by the handles and the driver.
pub(crate) struct Shared {
    config: ManagerConfig,
    sockets: Mutex<HashMap<String, Arc<SocketInner>>>,
    engine: Mutex<(Option<String>, Option<TransportKind>)>,
    listeners: RwLock<Vec<Listener>>,
}

impl Shared {
    fn sockets(&self) -> MutexGuard<'_, HashMap<String, Arc<SocketInner>>> {
        self.sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn socket(&self, nsp: &str) -> Option<Arc<SocketInner>> {
        self.sockets().get(nsp).cloned()
    }

    fn all_sockets(&self) -> Vec<Arc<SocketInner>> {
        self.sockets().values().cloned().collect()
    }

    fn any_active(&self) -> bool {
        self.sockets().values().any(|socket| socket.lock().active)
    }

    fn set_engine(&self, sid: Option<String>, transport: Option<TransportKind>) {
        *self
            .engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (sid, transport);
    }
}

/// The part of a manager that lives as long as a handle does; dropping the last one ends
/// the driver.
pub(crate) struct ManagerInner {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}
