//! Switchyard: a Socket.IO v5 server for tokio and hyper.
//!
//! Namespaces, rooms, broadcasts (encoded once for every recipient), acknowledgements both
//! ways, binary attachments, connect middlewares and an [`Adapter`] trait for running several
//! servers together. It speaks the wire protocol of Node's socket.io 4, so the official
//! `socket.io-client` works against it unchanged.
//!
//! ```no_run
//! use switchyard::{Args, Socket, SocketIo, SocketIoConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::new(SocketIoConfig::default());
//! io.of("/").on_connection(|socket: Socket| async move {
//!     // Typed data: any serde type, read from the first argument.
//!     socket.on("join", |socket: Socket, room: String| async move {
//!         socket.join(room.as_str());
//!         Ok::<_, std::convert::Infallible>(format!("joined {room}"))  // the client's ack
//!     });
//!     // Raw arguments, binary included, echoed back.
//!     socket.on("echo", |socket: Socket, args: Args| async move {
//!         let _ = socket.emit("echo", args);
//!     });
//! });
//! io.serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?).await
//! # }
//! ```

pub mod adapter;
mod broadcast;
mod client;
mod config;
mod encode;
mod error;
mod extensions;
mod handler;
mod namespace;
mod recovery;
mod server;
mod socket;
mod types;

pub use broadcast::{BroadcastOperator, IntoRooms, RemoteSocket};
pub use config::{SocketIoConfig, SocketLimits};
pub use error::{AckError, AdapterError, EmitError, JoinError};
pub use handler::{ConnectError, EventHandler, HandlerOutput};
pub use namespace::Namespace;
pub use recovery::RecoveryConfig;
pub use server::{DynamicNamespace, SocketIo, SocketIoConnection, SocketIoHandler};
pub use socket::{DisconnectReason, Handshake, Socket};
pub use switchyard_core::{Args, ArgsError, Binary, FromArgs, IntoArgs, Parser};
pub use switchyard_engineio as engineio;
pub use switchyard_engineio::{CorsConfig, EngineConfig, Limits, Rate, TransportKind};
pub use switchyard_socketio_proto as proto;
pub use types::{BoxFuture, Room, Sid};
