//! Test helpers shared by Switchyard's test suites (a dev-dependency only).
//!
//! - [`Proxy`]: a loopback TCP proxy in front of a server, so a test can cut the connections
//!   (an unclean transport end, as when a network drops), refuse new ones (a server that is
//!   down), hold them (a client in between servers), or send them to another server, while the
//!   client keeps one address.
//! - [`wait_until`]: waits for a condition with a generous deadline, instead of a fixed sleep.
//! - [`RedisServer`]: Debian's `redis-server` on a Unix socket of its own, for the suites that
//!   need a real Redis (behind their `redis-server-tests` features; `scripts/test` installs it).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod redis_server;

pub use redis_server::RedisServer;

/// Long enough for anything that should happen, on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `condition` holds, checking every 10 ms; panics after [`DEADLINE`] with `what`.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the proxy sends a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this server.
    To(SocketAddr),
    /// Nowhere: the connection is closed as soon as it is accepted.
    Refuse,
    /// Nowhere yet: the connection waits (up to [`DEADLINE`] × 2) for a route.
    Hold,
}

/// The proxy; it stops accepting when dropped, and cuts what it carries.
pub struct Proxy {
    port: u16,
    route: watch::Sender<Route>,
    cuts: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 port 0 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let route = watch::Sender::new(Route::To(upstream));
        let cuts = watch::Sender::new(0);
        let accept = tokio::spawn(accept_loop(listener, route.subscribe(), cuts.clone()));
        Proxy {
            port,
            route,
            cuts,
            accept,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every open connection (both ways), without any goodbye at the protocol level.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Where new connections (and held ones) go from now on.
    pub fn route(&self, route: Route) {
        self.route.send_replace(route);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(
    listener: TcpListener,
    route: watch::Receiver<Route>,
    cuts: watch::Sender<u64>,
) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(error) => {
                eprintln!("[proxy] accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Subscribed before the task starts, so a cut made from now on reaches it.
        tokio::spawn(pipe(inbound, route.clone(), cuts.subscribe()));
    }
}

/// Finds the connection's route, then copies both ways until either side ends or the
/// connections are cut, and closes both.
async fn pipe(
    inbound: TcpStream,
    mut route: watch::Receiver<Route>,
    mut cuts: watch::Receiver<u64>,
) {
    let routed = route.wait_for(|route| *route != Route::Hold);
    let upstream = match tokio::time::timeout(DEADLINE * 2, routed).await {
        Ok(Ok(route)) => *route,
        _ => return,
    };
    let Route::To(upstream) = upstream else {
        return;
    };
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
