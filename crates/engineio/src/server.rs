//! A ready HTTP/1.1 server loop for an engine.

use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::engine::{Engine, EngineHandler, RemoteAddr};
use crate::service::EngineService;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `engine` on `listener` until the task is dropped; other paths get 404.
pub async fn serve<H: EngineHandler>(listener: TcpListener, engine: Engine<H>) -> io::Result<()> {
    serve_with_shutdown(listener, engine, std::future::pending()).await
}

/// Serves `engine` on `listener` until `shutdown` completes, then closes every session with
/// the server-shutdown reason.
pub async fn serve_with_shutdown<H: EngineHandler>(
    listener: TcpListener,
    engine: Engine<H>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let service = EngineService::new(engine.clone());
    serve_service(listener, service, shutdown).await;
    engine.close_all();
    Ok(())
}

/// Serves any hyper-compatible `service` on `listener`, each connection on its own task, with
/// the peer address as a [`RemoteAddr`] request extension and WebSocket upgrades enabled.
pub async fn serve_service<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let plain = |stream: TcpStream, _: SocketAddr| std::future::ready(Some(stream));
    serve_service_with(listener, plain, service, shutdown).await;
}

/// Like [`serve_service`], with each accepted TCP stream first handed to `accept` (a TLS
/// handshake, say) on the connection's own task; a `None` drops the connection.
pub async fn serve_service_with<S, B, A, F, Io>(
    listener: TcpListener,
    accept: A,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    A: Fn(TcpStream, SocketAddr) -> F + Clone + Send + 'static,
    F: Future<Output = Option<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let accept = accept.clone();
        tokio::spawn(async move {
            let Some(stream) = accept(stream, addr).await else {
                return;
            };
            let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(RemoteAddr(addr));
                let mut service = service.clone();
                service.call(request)
            });
            // The timer makes hyper drop a connection that sends no complete request head
            // within its header read timeout, so silent connections cannot pile up.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                debug!(%error, %addr, "connection ended with an error");
            }
        });
    }
}
