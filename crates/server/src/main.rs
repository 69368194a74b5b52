//! The Switchyard server: a Socket.IO v5 server with two demo namespaces (`/chat` and
//! `/notifications`) and a page at `/` that uses them.
//!
//! `cargo run --release` from the workspace root listens on 127.0.0.1:3000; see `--help` (or
//! [`config`]) for the settings, all of which can also come from environment variables.
//! Ctrl-C or SIGTERM closes every connection gracefully, then exits.

mod chat;
mod config;
mod identity;
mod input;
mod notifications;
mod web;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::engineio::{serve_service, EngineConfig};
use switchyard::{SocketIo, SocketIoConfig};
use tower_layer::Layer;
use tracing::{info, warn};

use crate::config::{Command, Config};

/// Longest time the shutdown waits for clients to receive their close packets.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("switchyard: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Socket.IO server for `config`, with both namespaces registered.
fn socket_io(config: &Config) -> SocketIo {
    let mut engine = EngineConfig::default()
        .path("/socket.io/")
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(config.max_payload);
    engine.cors = config.cors.to_engine();
    let io = SocketIo::new(SocketIoConfig {
        engine,
        ..SocketIoConfig::default()
    });
    chat::register(&io);
    notifications::register(&io);
    io
}

async fn run(config: Config) -> anyhow::Result<()> {
    let io = socket_io(&config);
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // stdout, so scripts can read the URL (with PORT=0, the port picked).
    println!("Switchyard listening on http://{address}");
    info!(
        %address,
        ping_interval_ms = config.ping_interval.as_millis() as u64,
        ping_timeout_ms = config.ping_timeout.as_millis() as u64,
        max_payload = config.max_payload,
        cors = ?config.cors,
        "started"
    );
    let service = io.layer().layer(web::StaticFiles);
    serve_service(listener, service, shutdown_signal()).await;

    info!(
        sessions = io.engine().session_count(),
        "shutting down: closing every connection"
    );
    io.close();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while io.engine().session_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = io.engine().session_count();
    if left > 0 {
        warn!(left, "sessions still open after the drain timeout");
    }
    info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("Ctrl-C received"),
        () = terminate => info!("SIGTERM received"),
    }
}
