//! Conformance fixture for the official protocol test suites.
//!
//! `cargo run --release --example conformance -- engineio` serves a bare Engine.IO server at
//! `/engine.io/` that echoes every message (text as text, binary as binary), on 127.0.0.1 and
//! port `$PORT` (default 3000), with pingInterval 300 ms, pingTimeout 200 ms, maxPayload
//! 1,000,000 and CORS open to any origin.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use switchyard_engineio::{
    serve, CloseReason, CorsConfig, Engine, EngineConfig, EngineHandler, Frame, Message, Socket,
};

/// Echoes every message back on the session it came from.
struct Echo;

impl EngineHandler for Echo {
    type Connection = Arc<Socket>;

    fn on_open(&self, socket: Arc<Socket>) -> Arc<Socket> {
        socket
    }

    fn on_message(&self, socket: &Arc<Socket>, message: Message) {
        let frame = match message {
            Message::Text(text) => Frame::text_message(&text),
            Message::Binary(data) => Frame::binary_message(data),
        };
        if let Err(error) = socket.send(frame) {
            tracing::warn!(sid = socket.sid(), %error, "echo dropped");
        }
    }

    fn on_close(&self, _: &Arc<Socket>, _: CloseReason) {}
}

fn engine_config() -> EngineConfig {
    EngineConfig::default()
        .path("/engine.io/")
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
        .cors(CorsConfig::any())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 3000,
    };
    let mode = std::env::args().nth(1).unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    match mode.as_str() {
        "engineio" => {
            eprintln!("conformance engineio listening on http://127.0.0.1:{port}/engine.io/");
            serve(listener, Engine::new(engine_config(), Echo)).await?;
        }
        other => bail!("unknown mode {other:?}: expected `engineio` or `socketio`"),
    }
    Ok(())
}
