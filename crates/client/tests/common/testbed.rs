//! An in-process Switchyard server with the handlers of the `testbed` example
//! (`crates/server/examples/testbed.rs`) that the client tests use, on 127.0.0.1 port 0.
//!
//! Main namespace `/` (each event acked unless said otherwise):
//! - `join` room → the socket's rooms afterwards, sorted (a refused join answers
//!   `{"error": reason}`); `rooms` → the socket's rooms, sorted;
//! - `to-room` [room, ...data] → `room-msg` data to the room, sender left out (binary kept);
//! - `server-ask` data → asks this socket `ask` data; acks its answer or `{"error": ...}`;
//! - `disconnect-me` → the server disconnects this socket (namespace only), no ack;
//! - `disconnects` → the reasons of every disconnect of `/` the server saw so far, in order.
//!
//! `/private` needs `auth.token == "secret"`, otherwise CONNECT_ERROR `unauthorized` with data
//! `{"code":401,"reason":"bad token"}`; on connection it emits `welcome` "private".
//! Namespaces matching `/dyn-*` are created on demand and emit `hello` with their name.
//!
//! Unlike the example's 300/200 ms, pings are every 200 ms with 600 ms to answer, and the
//! server waits 5 s for a client's ack: a loaded test machine must not fail a heartbeat.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::{
    Args, ConnectError, DisconnectReason, Parser, RecoveryConfig, Socket, SocketIo, SocketIoConfig,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How often the server pings.
pub(crate) const PING_INTERVAL: Duration = Duration::from_millis(200);
/// How long the server waits for a pong (the client waits interval + timeout for a ping).
pub(crate) const PING_TIMEOUT: Duration = Duration::from_millis(600);
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server is set up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub(crate) parser: Parser,
    /// Connection state recovery on (sessions kept 30 s).
    pub(crate) recovery: bool,
}

/// The running server; it stops accepting when dropped (open connections end with the test's
/// runtime).
pub(crate) struct Testbed {
    addr: SocketAddr,
    io: SocketIo,
    task: JoinHandle<()>,
}

impl Testbed {
    /// Starts the server with the JSON parser and no recovery.
    pub(crate) async fn start() -> Testbed {
        Testbed::with(Options::default()).await
    }

    /// Starts the server with `options`.
    pub(crate) async fn with(options: Options) -> Testbed {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test server");
        let addr = listener.local_addr().expect("test server address");
        let io = server(options);
        let serving = io.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = serving.serve(listener).await {
                eprintln!("[testbed] serve failed: {error}");
            }
        });
        Testbed { addr, io, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server itself, to look at or act on from the test.
    pub(crate) fn io(&self) -> &SocketIo {
        &self.io
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server(options: Options) -> SocketIo {
    let mut config = SocketIoConfig {
        parser: options.parser,
        connection_state_recovery: options.recovery.then(|| RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(30),
            ..RecoveryConfig::default()
        }),
        ..SocketIoConfig::default()
    };
    config.engine = config
        .engine
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT);
    let io = SocketIo::new(config);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    io.of("/").on_connection(move |socket: Socket| {
        register(&socket, log.clone());
        async {}
    });
    io.of("/private")
        .use_middleware(|socket: Socket| async move {
            if socket.handshake().auth.get("token") == Some(&json!("secret")) {
                Ok(())
            } else {
                Err(ConnectError::new("unauthorized")
                    .with_data(json!({ "code": 401, "reason": "bad token" })))
            }
        })
        .on_connection(|socket: Socket| async move {
            let _ = socket.emit("welcome", "private");
        });
    io.of_dynamic(|name| name.starts_with("/dyn-"))
        .on_connection(|socket: Socket| async move {
            let name = socket.namespace().name().to_owned();
            let _ = socket.emit("hello", name);
        });
    io
}

fn register(socket: &Socket, log: Arc<Mutex<Vec<String>>>) {
    socket.on("join", |socket: Socket, room: String| async move {
        socket.try_join(room.as_str()).map_err(|e| e.to_string())?;
        Ok::<_, String>(sorted_rooms(&socket))
    });
    socket.on("rooms", |socket: Socket, _: Args| async move {
        Ok::<_, Infallible>(sorted_rooms(&socket))
    });
    socket.on("to-room", |socket: Socket, args: Args| async move {
        let room: String = args.get(0).map_err(|e| e.to_string())?;
        socket
            .to(room)
            .emit("room-msg", args.skip(1))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on("server-ask", |socket: Socket, data: Args| async move {
        // The client's answer is passed on whole, binary attachments included.
        let answer = match socket.emit_with_ack_timeout("ask", data, ASK_TIMEOUT).await {
            Ok(args) => args,
            Err(error) => {
                Args::one(&json!({ "error": error.to_string() })).map_err(|e| e.to_string())?
            }
        };
        Ok::<_, String>(answer)
    });
    socket.on("disconnect-me", |socket: Socket, _: Args| async move {
        socket.disconnect();
    });
    let reasons = log.clone();
    socket.on("disconnects", move |_: Socket, _: Args| {
        let reasons = reasons.clone();
        async move {
            let list = reasons.lock().map(|list| list.clone()).unwrap_or_default();
            Ok::<_, Infallible>(list)
        }
    });
    socket.on_disconnect(move |_: Socket, reason: DisconnectReason| {
        let log = log.clone();
        async move {
            if let Ok(mut list) = log.lock() {
                list.push(reason.to_string());
            }
        }
    });
}

fn sorted_rooms(socket: &Socket) -> Vec<String> {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms
}
