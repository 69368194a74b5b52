//! A TCP proxy on 127.0.0.1 that a test can point at one server or another, hold new
//! connections at, and cut: how a client is moved from one instance to another.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The proxy; it stops when dropped.
pub(crate) struct Proxy {
    /// The port clients connect to.
    pub(crate) port: u16,
    target: watch::Sender<Option<u16>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy forwarding to `127.0.0.1:target`.
    pub(crate) async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (sender, receiver) = watch::channel(Some(target));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut receiver = receiver.clone();
                let task = tokio::spawn(async move {
                    // Held connections wait (boundedly) until the proxy has a target again.
                    let wait = receiver.wait_for(Option::is_some);
                    let target = match tokio::time::timeout(Duration::from_secs(20), wait).await {
                        Ok(Ok(target)) => *target,
                        _ => None,
                    };
                    let Some(port) = target else { return };
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                tracked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task.abort_handle());
            }
        });
        Proxy {
            port,
            target: sender,
            connections,
            accept: accept.abort_handle(),
        }
    }

    /// New connections wait until [`Proxy::route_to`].
    pub(crate) fn hold(&self) {
        self.target.send_replace(None);
    }

    /// New connections (and held ones) go to `127.0.0.1:port`.
    pub(crate) fn route_to(&self, port: u16) {
        self.target.send_replace(Some(port));
    }

    /// Cuts every connection made so far, both ways.
    pub(crate) fn cut(&self) {
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
