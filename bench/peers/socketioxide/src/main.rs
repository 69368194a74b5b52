//! socketioxide peer of the Switchyard benchmarks (`bench/run`).
//!
//! Listens on 127.0.0.1, port `$PORT` (default 3000), path `/socket.io/`, with socketioxide's
//! default options, served by axum as socketioxide's documentation shows, on a current_thread
//! tokio runtime like `bench_server` (`WORKERS=n` for a multi-thread runtime). The main
//! namespace has exactly the events of `crates/server/examples/bench_server.rs`:
//! - `echo` data → acks with the same data;
//! - `broadcast` data → emits `tick` with the same data to every other socket of the
//!   namespace, then acks with no arguments;
//! - `join` room → joins the room named by its argument, then acks with no arguments.

use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

/// An ack with no arguments (`43<id>[]`, as Node's `ack()`).
const NO_ARGS: [(); 0] = [];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let runtime = match std::env::var("WORKERS").ok().filter(|n| !n.is_empty()) {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.parse()?)
            .enable_all()
            .build()?,
    };
    runtime.block_on(serve(port))
}

async fn serve(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.on("echo", async |Data(data): Data<Value>, ack: AckSender| {
            let _ = ack.send(&data);
        });
        socket.on(
            "broadcast",
            async |socket: SocketRef, Data(data): Data<Value>, ack: AckSender| {
                let _ = socket.broadcast().emit("tick", &data).await;
                let _ = ack.send(&NO_ARGS);
            },
        );
        socket.on(
            "join",
            async |socket: SocketRef, Data(room): Data<String>, ack: AckSender| {
                socket.join(room);
                let _ = ack.send(&NO_ARGS);
            },
        );
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("socketioxide peer listening on http://127.0.0.1:{port}/socket.io/");
    axum::serve(listener, app).await?;
    Ok(())
}
