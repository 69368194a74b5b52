//! Server options, with the reference server's defaults.

use std::time::Duration;

use switchyard_engineio::EngineConfig;

use crate::recovery::RecoveryConfig;
use switchyard_core::Parser;
use switchyard_engineio::Rate;

/// Per-socket limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketLimits {
    /// Events (and CONNECTs) a client may send per connection, whatever namespaces it joins
    /// and leaves (default: no limit; the server binary sets one). Past it, events are dropped
    /// (an ack asked for gets `{"error":"rate limited"}`, a CONNECT gets CONNECT_ERROR
    /// `rate limited`), the client is warned once with a `rate-limit` event, and a client that
    /// keeps flooding for a full burst more is disconnected from every namespace (and its
    /// connection closed if it floods CONNECTs).
    pub event_rate: Option<Rate>,
    /// Rooms one socket may be in (default: no limit; the server binary sets one).
    pub max_rooms_per_socket: Option<usize>,
    /// Acknowledgements the server may wait for from one socket at once (default 1,000).
    pub max_pending_acks: usize,
    /// Namespaces one connection may join or be joining at once (default 32); past it, a
    /// CONNECT is answered with CONNECT_ERROR `too many namespaces`.
    pub max_namespaces_per_connection: usize,
    /// Largest CONNECT payload (the client's `auth`), in bytes as received (default 16 KiB);
    /// a bigger one is answered with CONNECT_ERROR `auth payload too large` without being
    /// parsed, so a client cannot make the server hold more than this per socket.
    pub max_auth_bytes: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            event_rate: None,
            max_rooms_per_socket: None,
            max_pending_acks: 1_000,
            max_namespaces_per_connection: 32,
            max_auth_bytes: 16 * 1024,
        }
    }
}

/// Options of a Socket.IO server.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub engine: EngineConfig,
    /// Time a new connection has to join a namespace before it is closed (default 45 s).
    pub connect_timeout: Duration,
    /// The packet parser (default JSON).
    pub parser: Parser,
    /// Time `emit_with_ack` waits for the client's answer unless told otherwise (default 5 s).
    pub ack_timeout: Duration,
    /// Most binary attachments one packet may carry (default 10).
    pub max_attachments: usize,
    /// Connection state recovery (default off, as on the reference server).
    pub connection_state_recovery: Option<RecoveryConfig>,
    /// Per-socket limits.
    pub limits: SocketLimits,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            engine: EngineConfig::default().path("/socket.io/"),
            connect_timeout: Duration::from_secs(45),
            parser: Parser::Json,
            ack_timeout: Duration::from_secs(5),
            max_attachments: 10,
            connection_state_recovery: None,
            limits: SocketLimits::default(),
        }
    }
}
