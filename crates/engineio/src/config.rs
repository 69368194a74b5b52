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
    /// Most bytes one WebSocket read takes from the socket (default 8 KiB, at most 16 KiB).
    /// Each read goes into a buffer borrowed for that read and is decoded at once, so no
    /// connection keeps a read buffer: this sets how much work one read does, not memory.
    pub websocket_read_buffer: usize,
    /// Most WebSocket control frames (pings and pongs) a client may send between two firings
    /// of its session's timer, about one ping interval (default 256). Browsers send none;
    /// past the limit the connection is closed with 1008, as a peer that makes the server
    /// read without end.
    pub websocket_max_control_frames: u32,
    /// Admission limits checked at each handshake.
    pub limits: Limits,
    /// How long a write to a peer may make no progress before the connection is cut (default
    /// 10 s). A WebSocket write is also cut once it has taken the heartbeat budget
    /// (`ping_interval + ping_timeout`), whichever comes first: a peer that stops reading
    /// cannot hold its connection's task, its session or its address's slot.
    pub write_timeout: Duration,
    /// How long one long-polling POST body may take to arrive, from when its request is
    /// handled (default 10 s). A body not complete by then is answered 408 and ends the
    /// session, as an aborted POST does. A POST also ends when its session does.
    pub body_timeout: Duration,
    /// How many leading bits of an IPv6 address the per-address limits group peers by
    /// (default 64, at most 128): one host usually holds a whole /64. IPv4 addresses, and
    /// IPv4-mapped IPv6 ones, count one by one.
    pub ipv6_prefix_len: u8,
    /// Most bytes of request headers a handshake may carry (names and values, and the request
    /// URI with its query; default 16 KiB, as Node's HTTP server). The session keeps its
    /// handshake's headers and URI for its whole life, so a bigger handshake is answered 431
    /// with a JSON body instead.
    pub max_header_bytes: usize,
}

/// Default of [`EngineConfig::write_timeout`].
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`EngineConfig::body_timeout`].
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`EngineConfig::ipv6_prefix_len`].
const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;
/// Default of [`EngineConfig::max_header_bytes`].
const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/engine.io/".to_owned(),
            session: SessionConfig::default(),
            transports: vec![TransportKind::Polling, TransportKind::WebSocket],
            cors: None,
            allow_request: None,
            websocket_read_buffer: 8 * 1024,
            websocket_max_control_frames: 256,
            limits: Limits::default(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
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
            .field("websocket_read_buffer", &self.websocket_read_buffer)
            .field(
                "websocket_max_control_frames",
                &self.websocket_max_control_frames,
            )
            .field("limits", &self.limits)
            .field("write_timeout", &self.write_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("ipv6_prefix_len", &self.ipv6_prefix_len)
            .field("max_header_bytes", &self.max_header_bytes)
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

    /// Sets how long a write to a peer may make no progress.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets the most WebSocket control frames a client may send per ping interval.
    pub fn websocket_max_control_frames(mut self, frames: u32) -> Self {
        self.websocket_max_control_frames = frames;
        self
    }

    /// Sets the most bytes of request headers a handshake may carry.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets how long a polling POST body may take to arrive.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets how many leading bits of an IPv6 address the per-address limits group by (values
    /// over 128 count as 128).
    pub fn ipv6_prefix_len(mut self, bits: u8) -> Self {
        self.ipv6_prefix_len = bits.min(128);
        self
    }

    /// The longest a write to a peer may take in all: the write timeout, or the heartbeat
    /// budget if that is shorter (a peer silent that long is dead anyway).
    pub(crate) fn peer_write_limit(&self) -> Duration {
        self.write_timeout.min(self.heartbeat_budget())
    }

    /// How long a peer may be silent before the heartbeat ends its session.
    pub(crate) fn heartbeat_budget(&self) -> Duration {
        self.session.ping_interval + self.session.ping_timeout
    }

    pub(crate) fn allows(&self, transport: TransportKind) -> bool {
        self.transports.contains(&transport)
    }
}
