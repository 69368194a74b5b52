//! A loopback TCP proxy in front of a server, so a test can cut the connections (an unclean
//! transport end, as when a network drops) or refuse new ones (a server that is down) while
//! the client keeps one address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Shared {
    /// Where connections go; `None` closes each new connection at once.
    upstream: Mutex<Option<SocketAddr>>,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
}

/// The proxy; it stops accepting when dropped (open connections end with the test's runtime).
pub(crate) struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 port 0 and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(Some(upstream)),
            cuts: watch::Sender::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            port,
            shared,
            accept,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every open connection (both ways), without any goodbye at the protocol level.
    pub(crate) fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Sends new connections to `upstream`; `None` closes them as soon as they are accepted.
    pub(crate) fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = upstream;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(error) => {
                eprintln!("[proxy] accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let upstream = *shared.upstream.lock().unwrap_or_else(|p| p.into_inner());
        let Some(upstream) = upstream else {
            drop(inbound);
            continue;
        };
        // Subscribed before the task starts, so a cut made from now on reaches it.
        let cuts = shared.cuts.subscribe();
        tokio::spawn(pipe(inbound, upstream, cuts));
    }
}

/// Copies both ways until either side ends or the connections are cut, then closes both.
async fn pipe(inbound: TcpStream, upstream: SocketAddr, mut cuts: watch::Receiver<u64>) {
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    tokio::select! {
        _ = tokio::io::copy(&mut in_read, &mut out_write) => {}
        _ = tokio::io::copy(&mut out_read, &mut in_write) => {}
        _ = cuts.changed() => {}
    }
}
