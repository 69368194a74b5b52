//! The server side of the [Socket.IO Admin UI](https://github.com/socketio/socket.io-admin-ui)
//! (`@socket.io/admin-ui` 0.5) for a Switchyard server: the official UI, hosted anywhere,
//! connects to an admin namespace of the server and shows its sockets, rooms, clients, events
//! and traffic, and can make sockets join, leave or disconnect.
//!
//! ```no_run
//! use switchyard::{SocketIo, SocketIoConfig};
//! use switchyard_admin::{AdminAuth, AdminUi, AdminUiConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let io = SocketIo::new(SocketIoConfig::default());
//! // The bcrypt hash of the password, as `htpasswd -nbB` or bcryptjs make it.
//! let config = AdminUiConfig::new(AdminAuth::basic(
//!     "admin",
//!     "$2b$10$WZ3SYtVdfXRzEctwlxNyJuPgl.4wKCj/S74N/AgifcHdwte2bk.vW",
//! )?);
//! let _admin = AdminUi::install(&io, config)?;
//! # Ok(())
//! # }
//! ```
//!
//! What it does, as the reference (`instrument()` of the npm package) does:
//! - the namespace (default `/admin`) refuses a CONNECT without the right username and
//!   password (bcrypt hash) or a session id it gave out, with `"invalid credentials"`; a
//!   password login gets a `session` event with a new session id;
//! - an admin socket gets `config` (the features it may use) and, in development mode,
//!   `all_sockets` (every socket of every namespace, cluster-wide through the adapter);
//!   every admin socket gets `server_stats` every 2 s;
//! - in development mode, `socket_connected`, `socket_updated` (the transport upgraded),
//!   `socket_disconnected`, `room_joined`, `room_left`, `event_received` and `event_sent` as
//!   they happen (events of the admin namespace itself excepted);
//! - unless read-only, the UI's `join`, `leave`, `_disconnect` and `emit` act on the sockets
//!   of a namespace, or of one room of it (a socket id is a room), on every server.
//!
//! Where it differs: actions name only namespaces that exist (the reference creates the one it
//! is told); `session` comes after the CONNECT reply, so the UI can keep it; a socket's data
//! is shown as it was when the socket connected (changes are not pushed); credentials in
//! handshakes (`Authorization`, `Cookie`, `token` parameters) are hidden, and the admins' own
//! sockets are never fetched from other servers (their handshakes hold the password); and what
//! the reporting costs is bounded: the live events go through a queue bounded in count and
//! bytes and out at a bounded rate (the excess is dropped, counted and logged), password
//! checks run on at most two blocking threads with a bounded wait, and session ids are kept
//! up to a count and an age. While no admin is connected to any server of the cluster
//! (counted every stats interval with a server-side event), the live events cost one atomic
//! load each. `uptime` in `server_stats` counts from the install, at startup.

mod actions;
mod auth;
mod forward;
mod observer;
mod serialize;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use switchyard::{ObserverAlreadySet, SocketIo};

pub use auth::AdminAuth;

/// How much the admin namespace reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminMode {
    /// Everything: the socket list and the live events (the Sockets, Rooms, Clients and
    /// Events pages of the UI); the reference's default.
    #[default]
    Development,
    /// Only `server_stats` (the Dashboard and Servers pages): no socket, room or event is
    /// described, and the live events cost nothing.
    Production,
}

/// The admin namespace's options.
#[derive(Debug, Clone)]
pub struct AdminUiConfig {
    /// Who may connect.
    pub auth: AdminAuth,
    /// The namespace the UI connects to (its "Admin namespace" field); `/admin` by default.
    pub namespace: String,
    /// No action on sockets: the UI shows no action button and the actions are ignored.
    pub read_only: bool,
    /// How much is reported.
    pub mode: AdminMode,
    /// This server's name in the UI's Servers page; the host name by default.
    pub server_id: String,
    /// How often `server_stats` goes out; 2 s, as the reference.
    pub stats_interval: Duration,
    /// Live events waiting to go out to the admins; past it they are dropped (and counted).
    pub queue_capacity: usize,
    /// The most bytes the waiting live events may hold (event arguments, packets); past it
    /// they are dropped (and counted).
    pub queue_max_bytes: usize,
    /// Live events this server sends the admins per second at most; the rest are dropped (and
    /// counted). In a cluster each is a publish on the connection the application's
    /// broadcasts use.
    pub max_events_per_second: u32,
    /// Session ids kept (a password login makes one); the oldest goes first past it.
    pub max_sessions: usize,
    /// How long a session id logs in without the password (the reference's Redis store: 24 h).
    pub session_ttl: Duration,
    /// The deadline of an action (join, leave, disconnect) across the cluster.
    pub action_timeout: Duration,
}

impl AdminUiConfig {
    /// The defaults, with `auth`.
    pub fn new(auth: AdminAuth) -> AdminUiConfig {
        AdminUiConfig {
            auth,
            namespace: "/admin".to_owned(),
            read_only: false,
            mode: AdminMode::Development,
            server_id: hostname(),
            stats_interval: Duration::from_secs(2),
            queue_capacity: 4096,
            queue_max_bytes: 16 * 1024 * 1024,
            max_events_per_second: 2000,
            max_sessions: 1000,
            session_ttl: Duration::from_secs(24 * 3600),
            action_timeout: Duration::from_secs(10),
        }
    }
}

/// This machine's host name (the reference's default server id).
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Why the admin namespace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminUiError {
    /// The server reports to another observer already.
    #[error(transparent)]
    Observer(#[from] ObserverAlreadySet),
    /// The namespace name does not start with `/`.
    #[error("the admin namespace must start with '/': {0:?}")]
    Namespace(String),
    /// An option is out of range.
    #[error("{0}")]
    Option(&'static str),
}

/// The admin namespace of a server, installed by [`AdminUi::install`]; its work stops when
/// this is dropped: the namespace then refuses every connection and ignores the actions of
/// the admins still connected.
#[derive(Debug)]
pub struct AdminUi {
    forwarder: tokio::task::AbortHandle,
    shared: Arc<forward::Shared>,
}

impl AdminUi {
    /// Sets up the admin namespace on `io` and starts reporting to it. Must run inside a
    /// tokio runtime (a task sends the reports).
    pub fn install(io: &SocketIo, config: AdminUiConfig) -> Result<AdminUi, AdminUiError> {
        if !config.namespace.starts_with('/') {
            return Err(AdminUiError::Namespace(config.namespace));
        }
        if config.stats_interval.is_zero() {
            return Err(AdminUiError::Option(
                "the stats interval must be above zero",
            ));
        }
        if config.queue_capacity == 0
            || config.queue_max_bytes == 0
            || config.max_sessions == 0
            || config.max_events_per_second == 0
        {
            return Err(AdminUiError::Option(
                "the queue's bounds, the session count and the event rate must be above zero",
            ));
        }
        let (observer, notes) = observer::AdminObserver::new(&config);
        let observer = Arc::new(observer);
        io.set_observer(observer.clone())?;
        let shared = Arc::new(forward::Shared::new(config, observer));
        let namespace = io.of(&shared.config.namespace);
        auth::guard(&namespace, shared.clone());
        let counted = shared.observer.clone();
        namespace.on_server_event(forward::ADMIN_COUNT_EVENT, move |_| {
            let admins = counted.local_admins();
            async move { admins }
        });
        let handlers = shared.clone();
        let server = io.clone();
        namespace.on_connection(move |socket| {
            let shared = handlers.clone();
            let server = server.clone();
            async move { forward::on_admin_connected(&server, &shared, socket) }
        });
        let forwarder = tokio::spawn(forward::run(io.clone(), shared.clone(), notes));
        Ok(AdminUi {
            forwarder: forwarder.abort_handle(),
            shared,
        })
    }

    /// Live events dropped so far because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.shared.observer.dropped()
    }
}

impl Drop for AdminUi {
    fn drop(&mut self) {
        self.forwarder.abort();
        self.shared.observer.stop();
    }
}
