#![doc = include_str!("docs/guide.md")]

pub mod adapter;
mod broadcast;
mod client;
mod config;
mod encode;
mod error;
mod extensions;
mod handler;
mod limits;
mod metrics;
mod namespace;
mod observer;
mod recovery;
mod server;
mod socket;
mod types;

pub use broadcast::{BroadcastOperator, IntoRooms, RemoteSocket};
pub use config::{SocketIoConfig, SocketLimits};
pub use error::{AckError, AdapterError, EmitError, JoinError};
pub use handler::{ConnectError, EventHandler, HandlerOutput};
pub use metrics::{AdapterRequest, LimitRefusal, Metrics, RequestLatency, LATENCY_BUCKETS_MICROS};
pub use namespace::Namespace;
pub use observer::{Observer, ObserverAlreadySet};
pub use recovery::RecoveryConfig;
pub use server::{DynamicNamespace, SocketIo, SocketIoConnection, SocketIoHandler};
pub use socket::{DisconnectReason, Handshake, Socket};
pub use switchyard_core::{Args, ArgsError, Binary, FromArgs, IntoArgs, Parser};
pub use switchyard_engineio as engineio;
pub use switchyard_engineio::{CorsConfig, EngineConfig, Limits, Rate, TransportKind};
pub use switchyard_socketio_proto as proto;
pub use types::{BoxFuture, ConnectionInfo, Room, Sid};

/// The README's library example, compiled as a doctest so it stays a working program.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
