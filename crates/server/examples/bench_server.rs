//! The Switchyard side of the benchmarks (`bench/run`, `switchyard-loadgen`).
//!
//! `cargo run --release --example bench_server` listens on 127.0.0.1, port `$PORT` (default
//! 3000), path `/socket.io/`, with the default options (pingInterval 25 s, pingTimeout 20 s,
//! polling and WebSocket, no compression, no state recovery). The main namespace `/` has
//! exactly three events, each answering the client's ack when it asks for one:
//! - `echo` …args → acks with the same arguments;
//! - `broadcast` …args → emits `tick` with the same arguments to every other socket of the
//!   namespace, then acks with no arguments;
//! - `join` room → joins the room named by its (string) argument, then acks with no arguments.
//!
//! The peers in `bench/peers/` (Node socket.io, socketioxide) implement the same three events,
//! so one load generator drives them all.
//!
//! `REDIS_URL` (unset by default) makes it a node of a Redis cluster with the classic adapter,
//! for the cluster benchmark (`bench/cluster`); with `REDIS_ADAPTER=streams`, the streams adapter
//! instead, and with `REDIS_ADAPTER=sharded` the sharded one (`REDIS_URL`: a Redis Cluster node).
//!
//! Runtime: a current_thread tokio runtime by default, since the benchmark pins the server to
//! one core (`taskset -c 0`). `WORKERS=n` (n ≥ 1) selects a multi-thread runtime with `n`
//! worker threads instead. `RUST_LOG` sets the log filter (default `warn`).
//!
//! Built with `--features dhat-heap`, it runs under the dhat heap profiler and writes
//! `dhat-heap.json` (in its working directory) `DHAT_AFTER_SECS` seconds after it starts
//! (default 60), while the connections are still open: the blocks live at that instant are what
//! the connections hold. `bench/idle-profile` runs it and breaks the heap down by owner.

use std::convert::Infallible;

use anyhow::Context;
use switchyard::{Args, Socket, SocketIo, SocketIoConfig};
use switchyard_redis::{
    RedisAdapterConfig, RedisCluster, RedisShardedCluster, RedisShardedConfig, RedisStreamsCluster,
    RedisStreamsConfig,
};

/// Registers the three benchmark events on a freshly connected socket.
fn register(socket: &Socket) {
    socket.on("echo", |_: Socket, args: Args| async move {
        Ok::<_, Infallible>(args)
    });
    socket.on("broadcast", |socket: Socket, args: Args| async move {
        if let Err(error) = socket.broadcast().emit("tick", args) {
            tracing::warn!(%error, "tick not broadcast");
        }
        Ok::<_, Infallible>(())
    });
    socket.on("join", |socket: Socket, room: String| async move {
        socket.join(room.as_str());
        Ok::<_, Infallible>(())
    });
}

/// Binds the listener and serves until the process is stopped.
async fn serve(port: u16) -> anyhow::Result<()> {
    let io = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let unreachable = || format!("cannot connect to Redis at {url}");
            let factory = match std::env::var("REDIS_ADAPTER").as_deref() {
                Ok("streams") => RedisStreamsCluster::connect(&url, RedisStreamsConfig::default())
                    .await
                    .with_context(unreachable)?
                    .factory(),
                Ok("sharded") => RedisShardedCluster::connect(
                    std::slice::from_ref(&url),
                    RedisShardedConfig::default(),
                )
                .await
                .with_context(unreachable)?
                .factory(),
                Ok("classic") | Ok("") | Err(_) => {
                    RedisCluster::connect(&url, RedisAdapterConfig::default())
                        .await
                        .with_context(unreachable)?
                        .factory()
                }
                Ok(other) => {
                    anyhow::bail!(
                        "REDIS_ADAPTER must be classic, streams or sharded, not {other:?}"
                    )
                }
            };
            SocketIo::with_adapter(SocketIoConfig::default(), factory)
        }
        _ => SocketIo::new(SocketIoConfig::default()),
    };
    io.of("/").on_connection(|socket: Socket| {
        register(&socket);
        async {}
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    eprintln!("bench_server listening on http://127.0.0.1:{port}/socket.io/");
    io.serve(listener).await?;
    Ok(())
}

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Starts the heap profiler and a thread that writes its profile after `DHAT_AFTER_SECS`.
#[cfg(feature = "dhat-heap")]
fn start_heap_profile() -> anyhow::Result<()> {
    let after: u64 = match std::env::var("DHAT_AFTER_SECS") {
        Ok(secs) => secs
            .parse()
            .context("DHAT_AFTER_SECS must be a number of seconds")?,
        Err(_) => 60,
    };
    let profiler = dhat::Profiler::new_heap();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(after));
        // Dropping the profiler writes the profile: "at t-end" is the heap at this instant.
        drop(profiler);
        eprintln!("bench_server: heap profile written");
    });
    Ok(())
}

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "dhat-heap")]
    start_heap_profile()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 3000,
    };
    let workers: Option<usize> = match std::env::var("WORKERS") {
        Ok(n) if !n.is_empty() => {
            let n: usize = n.parse().context("WORKERS must be a number of threads")?;
            anyhow::ensure!(n >= 1, "WORKERS must be at least 1");
            Some(n)
        }
        _ => None,
    };
    let runtime = match workers {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(serve(port))
}
