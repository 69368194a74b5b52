//! A Socket.IO server exercising the whole server API, for the interoperability tests.
//!
//! `cargo run --release --example testbed [-- --parser msgpack]` listens on 127.0.0.1, port
//! `$PORT` (default 3000), path `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms (quick, for
//! the tests; `--ping-interval-ms N` and `--ping-timeout-ms N` set others). Events of
//! the main namespace (each acked unless said otherwise):
//! - `join` room / `leave` room → the socket's rooms afterwards (a refused join answers
//!   `{"error": reason}`);
//! - `rooms` → the socket's rooms;
//! - `to-room` [room, ...data] → `room-msg` data to the room, sender left out (binary kept);
//! - `ns-to-room` [room, data] → `room-msg` data to the whole room;
//! - `except-room` [room, data] → `except-msg` data to every socket not in the room;
//! - `broadcast` data → `broadcast` data to every other socket;
//! - `volatile` n → `volatile-msg` n to every socket, marked volatile;
//! - `broadcast-with-ack` data → asks every socket `ask` data; acks the list of answers
//!   (`{"error":"timeout"}` for a socket that did not answer within 500 ms);
//! - `server-ask` data → asks this socket `ask` data; acks its answer or `{"error":"timeout"}`;
//! - `fetch` room → ids of the sockets in the room;
//! - `sockets-join` [room, target] → every socket in `room` joins `target`;
//! - `disconnect-room` room → every socket in the room is disconnected from the namespace;
//! - `disconnect-me` → the server disconnects this socket (namespace only), no ack;
//! - `close-me` → the server disconnects this socket and closes its connection, no ack;
//! - `disconnects` → the reasons of every disconnect the server saw so far, in order;
//! - `recovered` → whether this socket recovered an earlier session;
//! - `ticker` [room, count, interval_ms] → emits `tick` 0..count to the room, one every
//!   interval (acked at once).
//!
//! - `flood-to` [sid, count, size] → emits `flood` with a string of `size` bytes `count` times to
//!   socket `sid`; acks how many were queued before one was refused;
//! - `ask-many` n → asks this socket `ask` n times at once (the client need not answer); acks
//!   `{"refused": k}`, the number refused as too many pending acks;
//! - `rss` → the server's resident memory in KiB.
//!
//! `--recovery-ms N` turns connection state recovery on with a maximum disconnection duration of
//! N ms, skipping the middlewares of a recovered socket as the reference server does by default
//! (the interop suite checks that behaviour); `--recovery-max-packets N` bounds the packets kept
//! for replay. Limits:
//! `--event-rate PER_SECOND:BURST`, `--max-rooms N`, `--max-pending-acks N`,
//! `--max-buffer BYTES` (outgoing buffer per connection).
//!
//! Runtime: one thread (tokio's current-thread runtime) unless `--worker-threads N` asks for
//! the multi-thread runtime with N workers, as the `switchyard` binary runs. The benchmark of
//! delivery under drops uses that, so that a reconnecting client's CONNECT is not queued
//! behind a broadcast's fan-out to a thousand sockets.
//!
//! `/private` needs `auth.token == "secret"`; otherwise CONNECT_ERROR `unauthorized` with data
//! `{"code":401,"reason":"bad token"}`. Namespaces matching `/dyn-*` are created on demand and
//! emit `hello` with their name on connection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

mod support;
use serde_json::{json, Value};
use switchyard::{
    Args, ConnectError, CorsConfig, DisconnectReason, Parser, Rate, RecoveryConfig, Socket,
    SocketIo, SocketIoConfig, SocketLimits,
};

type Log = Arc<Mutex<Vec<String>>>;

const ASK_TIMEOUT: Duration = Duration::from_millis(500);

fn register(socket: &Socket, log: Log) {
    socket.on("join", |socket: Socket, room: String| async move {
        socket.try_join(room.as_str()).map_err(|e| e.to_string())?;
        Ok::<_, String>(sorted_rooms(&socket))
    });
    socket.on("leave", |socket: Socket, room: String| async move {
        socket.leave(room.as_str());
        Ok::<_, Infallible>(sorted_rooms(&socket))
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
    socket.on("ns-to-room", |socket: Socket, args: Args| async move {
        let room: String = args.get(0).map_err(|e| e.to_string())?;
        socket
            .namespace()
            .to(room)
            .emit("room-msg", args.skip(1))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on("except-room", |socket: Socket, args: Args| async move {
        let room: String = args.get(0).map_err(|e| e.to_string())?;
        socket
            .namespace()
            .except(room)
            .emit("except-msg", args.skip(1))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on("broadcast", |socket: Socket, args: Args| async move {
        socket
            .broadcast()
            .emit("broadcast", args)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on("volatile", |socket: Socket, n: u64| async move {
        socket
            .namespace()
            .broadcast()
            .volatile()
            .emit("volatile-msg", n)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on(
        "broadcast-with-ack",
        |socket: Socket, data: Value| async move {
            let answers = socket
                .namespace()
                .broadcast()
                .timeout(ASK_TIMEOUT)
                .emit_with_ack("ask", data)
                .await
                .map_err(|e| e.to_string())?;
            let mut answers: Vec<Value> = answers
                .into_iter()
                .map(|reply| match reply.result {
                    Ok(args) => args.values.into_iter().next().unwrap_or(Value::Null),
                    Err(error) => json!({ "error": error_name(&error) }),
                })
                .collect();
            answers.sort_by_key(|value| value.to_string());
            Ok::<_, String>(answers)
        },
    );
    socket.on("server-ask", |socket: Socket, data: Args| async move {
        // The client's answer is passed on whole, binary attachments included.
        let answer = match socket.emit_with_ack_timeout("ask", data, ASK_TIMEOUT).await {
            Ok(args) => args,
            Err(error) => {
                Args::one(&json!({ "error": error_name(&error) })).map_err(|e| e.to_string())?
            }
        };
        Ok::<_, String>(answer)
    });
    socket.on("fetch", |socket: Socket, room: String| async move {
        let mut ids: Vec<String> = socket
            .namespace()
            .to(room)
            .fetch_sockets()
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|remote| remote.id().to_string())
            .collect();
        ids.sort();
        Ok::<_, String>(ids)
    });
    socket.on("sockets-join", |socket: Socket, args: Args| async move {
        let (room, target): (String, String) = args.all().map_err(|e| e.to_string())?;
        socket
            .namespace()
            .to(room)
            .sockets_join(target)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(true)
    });
    socket.on(
        "disconnect-room",
        |socket: Socket, room: String| async move {
            socket
                .namespace()
                .to(room)
                .disconnect_sockets(false)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(true)
        },
    );
    socket.on("disconnect-me", |socket: Socket, _: Args| async move {
        socket.disconnect();
    });
    socket.on("close-me", |socket: Socket, _: Args| async move {
        socket.disconnect_and_close();
    });
    socket.on("recovered", |socket: Socket, _: Args| async move {
        Ok::<_, Infallible>(socket.recovered())
    });
    socket.on("ticker", |socket: Socket, args: Args| async move {
        let (room, count, interval): (String, u64, u64) = args.all().map_err(|e| e.to_string())?;
        let namespace = socket.namespace();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(Duration::from_millis(interval.max(1)));
            for n in 0..count {
                timer.tick().await;
                if let Err(error) = namespace.to(room.as_str()).emit("tick", n) {
                    tracing::warn!(%error, "tick not sent");
                }
            }
        });
        Ok::<_, String>(true)
    });
    socket.on("flood-to", |socket: Socket, args: Args| async move {
        let (sid, count, size): (String, usize, usize) = args.all().map_err(|e| e.to_string())?;
        let payload = "x".repeat(size);
        let target = socket
            .namespace()
            .get_socket(&sid)
            .ok_or("no such socket")?;
        let mut queued = 0;
        for _ in 0..count {
            if target.emit("flood", payload.as_str()).is_err() {
                break;
            }
            queued += 1;
        }
        Ok::<_, String>(queued)
    });
    socket.on("ask-many", |socket: Socket, n: usize| async move {
        let asks = (0..n).map(|i| socket.emit_with_ack_timeout("ask", i, ASK_TIMEOUT));
        let refused = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter(|result| matches!(result, Err(switchyard::AckError::TooManyPending)))
            .count();
        Ok::<_, Infallible>(json!({ "refused": refused }))
    });
    socket.on("rss", |_: Socket, _: Args| async move {
        Ok::<_, Infallible>(resident_kib())
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

/// The process's resident memory, in KiB (0 where /proc is missing).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn error_name(error: &switchyard::AckError) -> &'static str {
    match error {
        switchyard::AckError::Timeout => "timeout",
        switchyard::AckError::Disconnected => "disconnected",
        switchyard::AckError::Emit(_) => "emit",
        switchyard::AckError::TooManyPending => "too many pending",
    }
}

fn sorted_rooms(socket: &Socket) -> Vec<String> {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms
}

/// Command-line options.
struct Options {
    parser: Parser,
    recovery: Option<RecoveryConfig>,
    limits: SocketLimits,
    max_buffer: Option<usize>,
    ping_interval: Duration,
    ping_timeout: Duration,
    /// Workers of a multi-thread runtime; 0 for the current-thread runtime.
    worker_threads: usize,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        parser: Parser::Json,
        recovery: None,
        limits: SocketLimits::default(),
        max_buffer: None,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        worker_threads: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--parser" => {
                options.parser = match value.as_str() {
                    "json" => Parser::Json,
                    "msgpack" => Parser::MsgPack,
                    other => bail!("unknown parser {other:?}"),
                }
            }
            "--recovery-ms" => {
                let recovery = options.recovery.get_or_insert_with(reference_recovery);
                recovery.max_disconnection_duration = Duration::from_millis(value.parse()?);
            }
            "--recovery-max-packets" => {
                let recovery = options.recovery.get_or_insert_with(reference_recovery);
                recovery.max_packets = value.parse()?;
            }
            "--event-rate" => {
                let (per_second, burst) = value
                    .split_once(':')
                    .context("--event-rate takes PER_SECOND:BURST")?;
                options.limits.event_rate = Some(Rate::new(per_second.parse()?, burst.parse()?));
            }
            "--max-rooms" => options.limits.max_rooms_per_socket = Some(value.parse()?),
            "--max-pending-acks" => options.limits.max_pending_acks = value.parse()?,
            "--max-buffer" => options.max_buffer = Some(value.parse()?),
            "--ping-interval-ms" => options.ping_interval = Duration::from_millis(value.parse()?),
            "--ping-timeout-ms" => options.ping_timeout = Duration::from_millis(value.parse()?),
            "--worker-threads" => options.worker_threads = value.parse()?,
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(options)
}

fn server(options: Options) -> SocketIo {
    let mut config = SocketIoConfig {
        parser: options.parser,
        connection_state_recovery: options.recovery,
        limits: options.limits,
        ..SocketIoConfig::default()
    };
    if let Some(bytes) = options.max_buffer {
        config.engine = config.engine.max_buffered_bytes(bytes);
    }
    config.engine = config
        .engine
        .ping_interval(options.ping_interval)
        .ping_timeout(options.ping_timeout)
        .cors(CorsConfig::any());
    let io = SocketIo::new(config);
    let log: Log = Arc::default();
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

fn main() -> anyhow::Result<()> {
    support::init_logging();
    let options = parse_options()?;
    let runtime = match options.worker_threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        workers => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?,
    };
    runtime.block_on(async {
        let (listener, port) = support::listen().await?;
        eprintln!("testbed listening on http://127.0.0.1:{port}/socket.io/");
        server(options).serve(listener).await?;
        Ok(())
    })
}

/// Recovery as the reference server does it by default: the private id alone re-admits a
/// client, without its middlewares.
fn reference_recovery() -> RecoveryConfig {
    RecoveryConfig {
        skip_middlewares: true,
        ..RecoveryConfig::default()
    }
}
