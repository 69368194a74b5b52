//! An async Socket.IO v5 / Engine.IO v4 client for Tokio, for Switchyard and any Socket.IO
//! v4 server (Node's reference server included).
//!
//! As in socket.io-client, a [`Manager`] owns one Engine.IO connection (long-polling,
//! WebSocket, or polling upgraded to WebSocket; heartbeat answered, ping timeout detected)
//! and multiplexes the [`Socket`]s of several namespaces over it. It reconnects with the same
//! exponential backoff ([`Backoff`]), buffers what is emitted while disconnected, and
//! recovers the session when the server has connection state recovery on
//! ([`Socket::recovered`]).
//!
//! Event arguments are the same [`Args`] as the server's (from `switchyard-core`): any `Serialize` value is one argument, and
//! [`Binary`] values anywhere inside travel as binary attachments.
//!
//! ```no_run
//! use std::time::Duration;
//! use serde_json::json;
//! use switchyard_client::{Manager, ManagerConfig, SocketOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = Manager::new("http://127.0.0.1:3000", ManagerConfig::default())?;
//! let socket = manager.socket("/");
//! socket.on("ask", |event| async move {
//!     // Answer the server's acknowledgement request with the question's first argument.
//!     let _ = event.ack(event.value());
//! });
//! socket.connect().await?;
//! let rooms = socket
//!     .emit_with_ack("join", "lobby", Duration::from_secs(5))
//!     .await?;
//! println!("rooms: {:?}", rooms.values);
//!
//! // A second namespace over the same connection, with auth refreshed on every connect.
//! let private = manager.socket_with(
//!     "/private",
//!     SocketOptions::default().auth_fn(|| async { json!({ "token": "secret" }) }),
//! );
//! private.connect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules of note: [`backoff`] and [`reconnect`] are the sans-IO reconnection policy,
//! [`recovery`] the connection-state-recovery rules, [`incoming`] how a server's packets are
//! read; all are pure, unit-tested, and [`incoming`] is fuzzed.

pub mod backoff;
mod codec;
mod config;
mod dispatch;
mod engine;
mod error;
pub mod incoming;
mod manager;
pub mod reconnect;
pub mod recovery;
mod socket;

/// The example of the crate's README, compiled (not run) with the doctests so it keeps
/// building as the API changes.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use backoff::Backoff;
pub use config::{Auth, AuthFn, AuthFuture, ManagerConfig, SocketOptions, Transports};
pub use error::{AckError, ConnectError, EmitError, EngineError};
pub use manager::{Manager, ManagerEvent};
pub use socket::{AckSender, DisconnectReason, Event, Socket};
pub use switchyard_core::{Args, ArgsError, Binary, FromArgs, IntoArgs, Parser};
pub use switchyard_engineio_proto::TransportKind;
