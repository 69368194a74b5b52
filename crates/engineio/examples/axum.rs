//! An Engine.IO echo server mounted beside ordinary routes in an axum 0.8 `Router`.
//!
//! ```text
//! cargo run -p switchyard-engineio --example axum
//! curl http://127.0.0.1:3000/health                                  # ok
//! curl 'http://127.0.0.1:3000/engine.io/?EIO=4&transport=polling'    # 0{"sid":...}
//! ```
//!
//! [`EngineLayer`] wraps the router: requests under the engine's path (`/engine.io/`, polling
//! and WebSocket alike) go to the engine, every other request to the router's routes.
//! `axum::serve` enables HTTP upgrades, so WebSocket connections work.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use switchyard_engineio::{
    CloseReason, Engine, EngineConfig, EngineHandler, EngineLayer, Frame, Message, Socket,
};

/// Sends every message back to its sender.
struct Echo;

impl EngineHandler for Echo {
    type Connection = Arc<Socket>;

    fn on_open(&self, socket: Arc<Socket>) -> Arc<Socket> {
        println!("open {}", socket.sid());
        socket
    }

    fn on_message(&self, socket: &Arc<Socket>, message: Message) {
        let frame = match message {
            Message::Text(text) => Frame::text_message(&text),
            Message::Binary(data) => Frame::binary_message(data),
        };
        // A full outbox or a closing session just drops the echo.
        let _ = socket.send(frame);
    }

    fn on_close(&self, socket: &Arc<Socket>, reason: CloseReason) {
        println!("close {}: {reason}", socket.sid());
    }
}

/// The application: `/health` plus the engine in front of it.
fn app(engine: Engine<Echo>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .layer(EngineLayer::new(engine))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let engine = Engine::new(EngineConfig::default(), Echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(engine)).await
}
