//! Engine options, with the reference server's defaults.

use std::sync::Arc;
use std::time::Duration;

use switchyard_engineio_proto::{SessionConfig, TransportKind};

use crate::cors::CorsConfig;
use crate::limits::Limits;
use crate::socket::RequestInfo;

/// Decides whether a handshake may open a session; a refusal is answered 403 (code 4).
pub type AllowRequest = Arc<dyn Fn(&RequestInfo) -> bool + Send + Sync>;

/// Options of an Engine.IO server.
#[derive(Clone)]
pub struct EngineConfig {
    /// Path prefix the engine answers under, with a trailing slash (default `/engine.io/`).
    pub path: String,
    /// Timing and size limits of every session.
    pub session: SessionConfig,
    /// Transports clients may use (default: polling and WebSocket).
    pub transports: Vec<TransportKind>,
    /// Cross-origin policy for polling requests (default: none, so browsers refuse
    /// cross-origin polling).
    pub cors: Option<CorsConfig>,
    /// Hook that can refuse a handshake.
    pub allow_request: Option<AllowRequest>,
    /// Size of the WebSocket read buffer kept per connection, and of each read (default 512
    /// bytes: an idle connection keeps little). It grows to hold a bigger message; tungstenite
    /// keeps the grown capacity for the connection's life.
    pub websocket_read_buffer: usize,
    /// Admission limits checked at each handshake.
    pub limits: Limits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/engine.io/".to_owned(),
            session: SessionConfig::default(),
            transports: vec![TransportKind::Polling, TransportKind::WebSocket],
            cors: None,
            allow_request: None,
            websocket_read_buffer: 512,
            limits: Limits::default(),
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("path", &self.path)
            .field("session", &self.session)
            .field("transports", &self.transports)
            .field("cors", &self.cors)
            .field("allow_request", &self.allow_request.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl EngineConfig {
    /// Sets the path prefix; a trailing slash is added when missing.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.ends_with('/') {
            path.push('/');
        }
        self.path = path;
        self
    }

    /// Sets the time between two server pings.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.session.ping_interval = interval;
        self
    }

    /// Sets how long the server waits for a pong.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.session.ping_timeout = timeout;
        self
    }

    /// Sets how long an upgrade may take.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.session.upgrade_timeout = timeout;
        self
    }

    /// Sets the largest payload a client may send at once, in bytes.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.session.max_payload = bytes;
        self
    }

    /// Sets how many bytes may wait to be sent to one client.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.session.max_buffered_bytes = bytes;
        self
    }

    /// Sets the allowed transports.
    pub fn transports(mut self, transports: impl IntoIterator<Item = TransportKind>) -> Self {
        self.transports = transports.into_iter().collect();
        self
    }

    /// Sets the cross-origin policy.
    pub fn cors(mut self, cors: CorsConfig) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Sets the hook that may refuse handshakes.
    pub fn allow_request(
        mut self,
        hook: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.allow_request = Some(Arc::new(hook));
        self
    }

    /// Sets the admission limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn allows(&self, transport: TransportKind) -> bool {
        self.transports.contains(&transport)
    }
}
