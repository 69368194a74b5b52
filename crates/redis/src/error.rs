//! Errors of the Redis adapters and emitter.

use switchyard::AdapterError;
use switchyard_socketio_proto::ParseError;

/// Why connecting to Redis, or publishing with the emitter, failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisAdapterError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The arguments could not be serialized.
    #[error(transparent)]
    Args(#[from] switchyard::ArgsError),
    /// The event name is reserved by the protocol (`connect`, `disconnect`, …).
    #[error("\"{0}\" is a reserved event name")]
    ReservedEvent(String),
}

/// Why a message from another server could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// A JSON payload that is not JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A msgpack payload that is not msgpack (or breaks a limit).
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] ParseError),
    /// Valid, but not a message of the protocol.
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

impl From<WireError> for AdapterError {
    fn from(error: WireError) -> AdapterError {
        AdapterError::Decode(error.to_string())
    }
}

pub(crate) fn backend(error: redis::RedisError) -> AdapterError {
    AdapterError::Backend(error.to_string())
}
