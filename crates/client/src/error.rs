//! Error types.

use std::sync::Arc;

use serde_json::Value;
use switchyard_core::ArgsError;

/// Why an Engine.IO connection could not be opened or went down.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The URL is not usable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TCP connection failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// An HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The HTTP request could not be built.
    #[error("HTTP request: {0}")]
    Request(#[from] http::Error),
    /// The server answered with an error status.
    #[error("HTTP status {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body (the Engine.IO error JSON, usually).
        body: String,
    },
    /// A response body was larger than the client accepts.
    #[error("response body over the limit")]
    BodyTooLarge,
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server's first packet was not a valid open packet.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// The server sent something that does not decode.
    #[error("undecodable packet: {0}")]
    Decode(String),
    /// The connection did not open in time (`ManagerConfig::timeout`).
    #[error("timeout")]
    Timeout,
    /// The transport closed.
    #[error("transport closed")]
    Closed,
}

/// Why a namespace connection failed (the `connect_error` event).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the connection (CONNECT_ERROR), e.g. from a middleware.
    #[error("connection refused: {message}")]
    Refused {
        /// The error message (`err.message` in JavaScript).
        message: String,
        /// The error data (`err.data`), when the server gave some.
        data: Option<Value>,
    },
    /// The Engine.IO connection could not be opened; reconnection goes on if enabled.
    #[error("transport: {0}")]
    Transport(Arc<EngineError>),
    /// The socket was disconnected (by the application or the server) before it connected,
    /// or the manager was closed.
    #[error("disconnected before connecting")]
    Disconnected,
}

impl ConnectError {
    /// The message, as socket.io-client's `err.message` would read.
    pub fn message(&self) -> String {
        match self {
            ConnectError::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The data of a refusal (`err.data`).
    pub fn data(&self) -> Option<&Value> {
        match self {
            ConnectError::Refused { data, .. } => data.as_ref(),
            _ => None,
        }
    }
}

/// Why an event could not be emitted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event name is reserved (`connect`, `connect_error`, `disconnect`, ...).
    #[error("{0:?} is a reserved event name")]
    Reserved(String),
    /// The data could not be serialized.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// The socket is not connected and buffering is off
    /// (`SocketOptions::buffer_while_disconnected`).
    #[error("the socket is not connected")]
    NotConnected,
    /// The manager is gone.
    #[error("the manager is closed")]
    Closed,
}

/// Why an acknowledgement did not come.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// No answer within the timeout.
    #[error("operation has timed out")]
    Timeout,
    /// The socket was disconnected while the event was sent and unanswered.
    #[error("socket has been disconnected")]
    Disconnected,
    /// The event could not be emitted.
    #[error(transparent)]
    Emit(#[from] EmitError),
}
