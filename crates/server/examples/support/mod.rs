//! What the example fixtures share: logging to stderr and the loopback listener on `$PORT`.

use anyhow::Context;
use tokio::net::TcpListener;

/// Logs to stderr, at `warn` unless `RUST_LOG` says otherwise; colours only on a terminal.
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Listens on 127.0.0.1 at port `$PORT` (default 3000); returns the listener and the port.
pub(crate) async fn listen() -> anyhow::Result<(TcpListener, u16)> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 3000,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    Ok((listener, port))
}
