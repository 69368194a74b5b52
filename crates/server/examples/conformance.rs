//! Conformance fixture for the official protocol test suites.
//!
//! `cargo run --release --example conformance -- engineio` serves a bare Engine.IO server at
//! `/engine.io/` that echoes every message (text as text, binary as binary), on 127.0.0.1 and
//! port `$PORT` (default 3000), with pingInterval 300 ms, pingTimeout 200 ms, maxPayload
//! 1,000,000 and CORS open to any origin.
//!
//! `cargo run --release --example conformance -- socketio [--parser msgpack]` serves a
//! Socket.IO v5 server at `/socket.io/` with the same timings, connectTimeout 1000 ms and no
//! state recovery. On `/` it emits `auth` with the handshake's auth object, answers `message`
//! with `message-back` (same arguments) and acks `message-with-ack` with its arguments;
//! `/custom` emits `auth` on connection; other namespaces are refused as invalid.

use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use anyhow::bail;

mod support;
use switchyard::{Args, Parser, Socket as SioSocket, SocketIo, SocketIoConfig};
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

fn socketio_server(parser: Parser) -> SocketIo {
    let config = SocketIoConfig {
        engine: engine_config().path("/socket.io/"),
        connect_timeout: Duration::from_millis(1000),
        parser,
        ..SocketIoConfig::default()
    };
    let io = SocketIo::new(config);
    io.of("/").on_connection(|socket: SioSocket| async move {
        emit_auth(&socket);
        socket.on("message", |socket: SioSocket, args: Args| async move {
            if let Err(error) = socket.emit("message-back", args) {
                tracing::warn!(%error, "message-back dropped");
            }
        });
        socket.on("message-with-ack", |_: SioSocket, args: Args| async move {
            Ok::<_, Infallible>(args)
        });
    });
    io.of("/custom")
        .on_connection(|socket: SioSocket| async move {
            emit_auth(&socket);
        });
    io
}

fn emit_auth(socket: &SioSocket) {
    let auth = socket.handshake().auth.clone();
    if let Err(error) = socket.emit("auth", auth) {
        tracing::warn!(%error, "auth emit dropped");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    support::init_logging();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let (listener, port) = support::listen().await?;
    match mode.as_str() {
        "engineio" => {
            eprintln!("conformance engineio listening on http://127.0.0.1:{port}/engine.io/");
            serve(listener, Engine::new(engine_config(), Echo)).await?;
        }
        "socketio" => {
            let parser = match std::env::args().skip(2).collect::<Vec<_>>().as_slice() {
                [] => Parser::Json,
                [flag, value] if flag == "--parser" && value == "msgpack" => Parser::MsgPack,
                [flag, value] if flag == "--parser" && value == "json" => Parser::Json,
                other => bail!("unexpected arguments {other:?}: expected `--parser msgpack|json`"),
            };
            eprintln!("conformance socketio listening on http://127.0.0.1:{port}/socket.io/");
            socketio_server(parser).serve(listener).await?;
        }
        other => bail!("unknown mode {other:?}: expected `engineio` or `socketio`"),
    }
    Ok(())
}
