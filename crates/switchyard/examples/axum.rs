//! A Socket.IO chat mounted beside ordinary routes in an axum 0.8 `Router`, with graceful
//! shutdown on Ctrl-C.
//!
//! ```text
//! cargo run -p switchyard --example axum
//! curl http://127.0.0.1:3000/health                                    # ok
//! curl 'http://127.0.0.1:3000/socket.io/?EIO=4&transport=polling'      # 0{"sid":...}
//! ```
//!
//! ```js
//! const socket = io("http://127.0.0.1:3000");
//! await socket.emitWithAck("join", "lobby");
//! socket.emit("message", { room: "lobby", text: "hello" });
//! ```
//!
//! Requests under `/socket.io/` (polling and WebSocket) go to the Socket.IO server, every
//! other request to the router. On Ctrl-C the server stops accepting, tells every client it is
//! shutting down, and waits up to five seconds for the connections to end.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use switchyard::{Socket, SocketIo, SocketIoConfig};

#[derive(Deserialize)]
struct Message {
    room: String,
    text: String,
}

fn chat(io: &SocketIo) {
    io.of("/").on_connection(|socket: Socket| async move {
        socket.on("join", |socket: Socket, room: String| async move {
            socket.join(room.as_str());
            Ok::<_, std::convert::Infallible>(true)
        });
        socket.on("message", |socket: Socket, message: Message| async move {
            if !socket.in_room(&message.room) {
                return Err(format!("not in room {}", message.room));
            }
            socket
                .to(message.room.as_str())
                .emit("message", &message.text)
                .map_err(|error| error.to_string())?;
            Ok(true)
        });
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let io = SocketIo::new(SocketIoConfig::default());
    chat(&io);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/sockets", {
            let io = io.clone();
            get(move || async move { io.of("/").socket_count().to_string() })
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    io.serve_with(listener, app, shutdown, Duration::from_secs(5))
        .await
}
