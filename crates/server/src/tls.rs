//! HTTPS and WSS: the same service behind rustls (through tokio-rustls, on aws-lc-rs, the
//! crypto backend the JWT checks use too).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use anyhow::Context;
use switchyard::engineio::{serve_service_with_config, HttpService, ResponseBody, ServeConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::config::TlsFiles;

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor for the certificate chain and key in `files` (PEM), speaking HTTP/1.1.
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
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

/// Serves `service` over TLS on `listener` until `shutdown` completes, through
/// `switchyard::engineio::serve_service_with_config`: each connection's TLS handshake runs on its own
/// task, bounded in time, before HTTP.
pub(crate) async fn serve_tls<S, B>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: S,
    shutdown: impl Future<Output = ()>,
    config: ServeConfig,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let handshake = move |stream: TcpStream, addr: SocketAddr| {
        let acceptor = acceptor.clone();
        async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(error)) => {
                    debug!(%error, %addr, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    debug!(%addr, "TLS handshake timed out");
                    None
                }
            }
        }
    };
    serve_service_with_config(listener, handshake, service, shutdown, config).await;
}
