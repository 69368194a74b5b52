//! The errors of sockets, broadcasts and adapters.

use switchyard_core::ArgsError;
use switchyard_engineio::SendError;

/// Why an adapter operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdapterError {
    /// The backend (a Redis server, say) failed.
    #[error("adapter backend error: {0}")]
    Backend(String),
    /// The other servers did not all answer in time.
    #[error("adapter request timed out")]
    Timeout,
    /// A message from another server could not be understood.
    #[error("adapter message could not be decoded: {0}")]
    Decode(String),
}

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The data could not be serialized.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// The socket is disconnected.
    #[error("socket disconnected")]
    Disconnected,
    /// The client's outgoing buffer is full: it reads too slowly.
    #[error("client buffer full")]
    BufferFull,
    /// The adapter could not reach the other servers.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

impl From<SendError> for EmitError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Closed => EmitError::Disconnected,
            SendError::BufferFull => EmitError::BufferFull,
        }
    }
}

/// Why an acknowledgement did not come.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The packet could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// No answer within the timeout.
    #[error("ack timed out")]
    Timeout,
    /// The socket already has the most pending acknowledgements allowed.
    #[error("too many pending acks")]
    TooManyPending,
    /// The socket disconnected before answering.
    #[error("socket disconnected before the ack")]
    Disconnected,
}

/// Why a socket could not join rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The socket is in `max_rooms_per_socket` rooms already.
    #[error("too many rooms (at most {max})")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
    /// The socket has disconnected.
    #[error("socket disconnected")]
    Disconnected,
}
