//! HTTPS and WSS: the same service behind rustls (through tokio-rustls, on aws-lc-rs, the
//! crypto backend the JWT checks use too).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard::engineio::RemoteAddr;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::TlsFiles;

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (as the plain server).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS acceptor for the certificate chain and key in `files` (PEM), speaking HTTP/1.1.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a TLS private key from {}", files.key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `service` over TLS on `listener` until `shutdown` completes: each connection on its
/// own task, with the peer address as a [`RemoteAddr`] request extension and WebSocket
/// upgrades enabled, as `switchyard::engineio::serve_service` does over plain TCP.
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
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
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        debug!(%error, %addr, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%addr, "TLS handshake timed out");
                        return;
                    }
                };
            let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(RemoteAddr(addr));
                let mut service = service.clone();
                service.call(request)
            });
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
