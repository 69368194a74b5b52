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
//!
//! # Hostile peers
//! Every wait on a peer has a deadline: a write that makes no progress for
//! [`EngineConfig::write_timeout`] fails (and a WebSocket batch may not take longer than the
//! heartbeat budget), a POST body must arrive within [`EngineConfig::body_timeout`] and ends
//! with its session, and [`serve`] bounds request heads, the accept step and response writes
//! ([`ServeConfig`]). Each admitted session holds one place in the admission counts, given back
//! on every path by which it ends (refused or aborted handshakes take none); see
//! [`Engine::admission_stats`]. A peer's faults are logged once at WARN per session, then
//! counted and summed up when the session closes.

mod config;
mod cors;
mod engine;
mod headers;
mod io;
mod limits;
mod log;
mod metrics;
mod polling;
mod query;
mod server;
mod service;
mod socket;
mod ws;

pub use config::{AllowRequest, EngineConfig};
pub use cors::{AllowedOrigins, CorsConfig};
pub use engine::{BoxError, Engine, EngineHandler, RemoteAddr};
pub use headers::RequestHeaders;
pub use limits::{address_key, AdmissionStats, Limits, Rate, Refusal, TokenBucket};
pub use log::LogBudget;
pub use metrics::EngineMetrics;
pub use server::{
    serve, serve_service, serve_service_with, serve_service_with_config, serve_with_shutdown,
    HttpService, ResponseBody, ServeConfig,
};
pub use service::{EngineLayer, EngineService, NotFound};
pub use socket::{RequestInfo, Socket};
pub use switchyard_engineio_proto::{
    CloseReason, ErrorCode, Frame, Message, SendError, SessionConfig, Text, TransportKind,
};
