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

use crate::engine::{BoxError, Engine, EngineHandler, RemoteAddr};
use crate::io::StallGuard;
use crate::service::EngineService;

/// A tower service the `serve*` functions can run on hyper connections: any
/// `Service<Request<Incoming>, Response = Response<B>>` that is `Clone + Send + 'static`, with a
/// sendable future and a boxable error. Implemented for every such type; it names the bounds
/// once.
pub trait HttpService<B>:
    tower_service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
}

/// A response body hyper can send from any task: implemented for every such body type.
pub trait ResponseBody:
    http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}

/// Deadlines of the connections [`serve_service_with_config`] serves: every wait on a peer
/// has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// How long a client may take to send a request head, the first or the next one on a
    /// kept-alive connection (default 30 s).
    pub header_read_timeout: Duration,
    /// How long the per-connection `accept` step (a TLS handshake, say) may take (default
    /// 10 s); a connection not accepted by then is dropped.
    pub accept_timeout: Duration,
    /// How long a write to the peer (a response, or an upgraded connection's frames) may make
    /// no progress before the connection is dropped (default 10 s).
    pub write_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(30),
            accept_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

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
    let config = ServeConfig {
        write_timeout: engine.config().write_timeout,
        ..ServeConfig::default()
    };
    let plain = |stream: TcpStream, _: SocketAddr| std::future::ready(Some(stream));
    serve_service_with_config(listener, plain, service, shutdown, config).await;
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
    S: HttpService<B>,
    B: ResponseBody,
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
    S: HttpService<B>,
    B: ResponseBody,
    A: Fn(TcpStream, SocketAddr) -> F + Clone + Send + 'static,
    F: Future<Output = Option<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_service_with_config(listener, accept, service, shutdown, ServeConfig::default()).await;
}

/// Like [`serve_service_with`], with the connections' deadlines from `config`.
pub async fn serve_service_with_config<S, B, A, F, Io>(
    listener: TcpListener,
    accept: A,
    service: S,
    shutdown: impl Future<Output = ()>,
    config: ServeConfig,
) where
    S: HttpService<B>,
    B: ResponseBody,
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
            let stream =
                match tokio::time::timeout(config.accept_timeout, accept(stream, addr)).await {
                    Ok(Some(stream)) => stream,
                    Ok(None) => return,
                    Err(_) => {
                        debug!(%addr, "connection not accepted in time");
                        return;
                    }
                };
            // Responses (and upgraded connections) to a peer that stops reading fail instead
            // of holding this task; reads are bounded by hyper's header timeout and by the
            // engine.
            let stream = StallGuard::new(stream, config.write_timeout);
            let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(RemoteAddr(addr));
                let mut service = service.clone();
                service.call(request)
            });
            // The timer makes hyper drop a connection that sends no complete request head
            // within its header read timeout, so silent connections cannot pile up.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                debug!(%error, %addr, "connection ended with an error");
            }
        });
    }
}
