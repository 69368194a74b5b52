//! Engine.IO v4 server transports on tokio and hyper 1: HTTP long-polling, WebSocket, and the
//! upgrade between them, with the server-driven heartbeat.
//!
//! The protocol logic lives in the sans-IO `switchyard-engineio-proto` crate; this crate
//! drives it. An application implements [`EngineHandler`] and mounts an [`Engine`] through
//! [`serve`], the tower [`EngineService`]/[`EngineLayer`] (hyper, axum), or
//! [`Engine::handle`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchyard_engineio::{serve, CloseReason, Engine, EngineConfig, EngineHandler, Frame, Message, Socket};
//!
//! struct Echo;
//!
//! impl EngineHandler for Echo {
//!     type Connection = Arc<Socket>;
//!     fn on_open(&self, socket: Arc<Socket>) -> Arc<Socket> {
//!         socket
//!     }
//!     fn on_message(&self, socket: &Arc<Socket>, message: Message) {
//!         let frame = match message {
//!             Message::Text(text) => Frame::text_message(&text),
//!             Message::Binary(data) => Frame::binary_message(data),
//!         };
//!         let _ = socket.send(frame);
//!     }
//!     fn on_close(&self, _: &Arc<Socket>, _: CloseReason) {}
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! serve(listener, Engine::new(EngineConfig::default(), Echo)).await
//! # }
//! ```
//!
//! # Cancellation and memory
//! A polling GET whose client goes away closes its session, as the reference server does.
//! Each session has one task: a timer task while it polls, or its WebSocket's task. The
//! WebSocket read buffer starts small and the outbox is bounded in bytes.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod config;
mod cors;
mod engine;
mod limits;
mod polling;
mod query;
mod server;
mod service;
mod socket;
mod ws;

pub use config::{AllowRequest, EngineConfig};
pub use cors::{AllowedOrigins, CorsConfig};
pub use engine::{BoxError, Engine, EngineHandler, RemoteAddr};
pub use limits::{Limits, Rate, Refusal};
pub use server::{serve, serve_service, serve_service_with, serve_with_shutdown};
pub use service::{EngineLayer, EngineService, NotFound};
pub use socket::{RequestInfo, Socket};
pub use switchyard_engineio_proto::{
    CloseReason, ErrorCode, Frame, Message, SendError, SessionConfig, Text, TransportKind,
};
