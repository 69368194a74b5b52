//! Options of a manager (the Engine.IO connection) and of its sockets (namespaces).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_core::Parser;

/// Which transports the manager uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transports {
    /// Start with HTTP long-polling and upgrade to WebSocket when the server offers it (the
    /// socket.io-client default).
    #[default]
    PollingThenWebSocket,
    /// HTTP long-polling only.
    Polling,
    /// WebSocket only, from the handshake on.
    WebSocket,
}

/// Options of a [`Manager`](crate::Manager), named as in socket.io-client.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The server's Engine.IO path (`/socket.io/`).
    pub path: String,
    /// The transports to use.
    pub transports: Transports,
    /// Whether to reconnect automatically (`reconnection`, default true).
    pub reconnection: bool,
    /// Attempts before giving up (`reconnectionAttempts`); `None` (the default) never gives up.
    pub reconnection_attempts: Option<u32>,
    /// The first reconnection delay (`reconnectionDelay`, 1000 ms).
    pub reconnection_delay: Duration,
    /// The largest reconnection delay (`reconnectionDelayMax`, 5000 ms).
    pub reconnection_delay_max: Duration,
    /// The jitter of the delays (`randomizationFactor`, 0.5); outside `(0, 1]` means none.
    pub randomization_factor: f64,
    /// How long opening the Engine.IO connection may take (`timeout`, 20 s).
    pub timeout: Duration,
    /// How long a WebSocket upgrade probe may take before the client stays on polling.
    pub upgrade_timeout: Duration,
    /// Extra query parameters sent with every Engine.IO request.
    pub query: Vec<(String, String)>,
    /// The packet encoding.
    pub parser: Parser,
    /// The largest HTTP response body (one long-polling payload) the client accepts.
    pub max_response_bytes: usize,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            path: "/socket.io/".to_owned(),
            transports: Transports::default(),
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            timeout: Duration::from_secs(20),
            upgrade_timeout: Duration::from_secs(10),
            query: Vec::new(),
            parser: Parser::default(),
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The future an [`Auth::Fn`] returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = Value> + Send>>;

/// The function behind [`Auth::Fn`].
pub type AuthFn = Arc<dyn Fn() -> AuthFuture + Send + Sync>;

/// The data sent in CONNECT (`auth` in socket.io-client).
#[derive(Clone, Default)]
pub enum Auth {
    /// No auth data.
    #[default]
    None,
    /// The same object on every connection.
    Value(Value),
    /// A function called before every connection and reconnection, e.g. to refresh a token.
    Fn(AuthFn),
}

impl Auth {
    /// Auth computed by an async function on every (re)connection.
    pub fn from_fn<F, Fut>(f: F) -> Auth
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Value> + Send + 'static,
    {
        Auth::Fn(Arc::new(move || Box::pin(f()) as AuthFuture))
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Value(value) => f.debug_tuple("Value").field(value).finish(),
            Auth::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// Options of one [`Socket`](crate::Socket).
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// The auth data sent in CONNECT.
    pub auth: Auth,
    /// Whether events emitted while disconnected are kept and sent, in order, once connected
    /// (socket.io-client's `sendBuffer`; default true). When off, such an emit fails with
    /// [`EmitError::NotConnected`](crate::EmitError::NotConnected).
    pub buffer_while_disconnected: bool,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            auth: Auth::None,
            buffer_while_disconnected: true,
        }
    }
}

impl SocketOptions {
    /// Sends `auth` (an object) in every CONNECT.
    #[must_use]
    pub fn auth(mut self, auth: Value) -> SocketOptions {
        self.auth = Auth::Value(auth);
        self
    }

    /// Calls `f` before every connection and sends the object it returns.
    #[must_use]
    pub fn auth_fn<F, Fut>(mut self, f: F) -> SocketOptions
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Value> + Send + 'static,
    {
        self.auth = Auth::from_fn(f);
        self
    }

    /// Sets [`buffer_while_disconnected`](Self::buffer_while_disconnected).
    #[must_use]
    pub fn buffer_while_disconnected(mut self, on: bool) -> SocketOptions {
        self.buffer_while_disconnected = on;
        self
    }
}
