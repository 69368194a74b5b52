//! What the integration tests share: an in-process Switchyard server ([`testbed`]), Node's
//! reference server ([`node`]), a TCP proxy that can cut connections ([`proxy`]), and ways to
//! wait for what callbacks see.
//!
//! Every server listens on 127.0.0.1 port 0 and is reached through the port it actually got.
// Each test binary uses part of these helpers.
#![allow(dead_code)]

pub(crate) mod node;
pub(crate) mod testbed;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::sync::mpsc;

/// A loopback port that refuses connections for as long as the returned socket lives: the
/// socket holds the port (bound, never listening), so no other process can take it.
pub(crate) fn refusing_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().expect("create a TCP socket");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("bind an ephemeral port");
    let port = socket.local_addr().expect("local address").port();
    (socket, port)
}

/// A channel to collect what callbacks see, with a bounded wait.
pub(crate) struct Inbox<T> {
    tx: mpsc::UnboundedSender<T>,
    rx: mpsc::UnboundedReceiver<T>,
}

impl<T: Send + 'static> Inbox<T> {
    pub(crate) fn new() -> Inbox<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox { tx, rx }
    }

    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<T> {
        self.tx.clone()
    }

    /// The next item, waiting at most `limit`.
    pub(crate) async fn next(&mut self, limit: Duration) -> T {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("inbox closed")
    }

    /// Whatever arrives within `window`.
    pub(crate) async fn drain_for(&mut self, window: Duration) -> Vec<T> {
        let mut items = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            items.push(item);
        }
        items
    }

    /// What has arrived so far, without waiting.
    pub(crate) fn take_ready(&mut self) -> Vec<T> {
        let mut items = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            items.push(item);
        }
        items
    }
}

/// Timestamps of named moments, shared with callbacks.
#[derive(Clone, Default)]
pub(crate) struct Timeline(Arc<Mutex<Vec<(String, Instant)>>>);

impl Timeline {
    pub(crate) fn mark(&self, what: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((what.into(), Instant::now()));
    }

    pub(crate) fn entries(&self) -> Vec<(String, Instant)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Polls `condition` every 10 ms for at most `limit`.
pub(crate) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
