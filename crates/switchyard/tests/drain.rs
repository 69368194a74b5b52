//! A graceful drain spreads its closes over a window: clients see their transport close (and
//! would reconnect elsewhere) over the window, not all at once; new clients are refused from
//! the start; the drain ends when every connection has.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::{Socket, SocketIo, SocketIoConfig};
use switchyard_client::{DisconnectReason, Manager, ManagerConfig, Transports};
use switchyard_testkit::{wait_until, DEADLINE};

const CLIENTS: usize = 24;
const WINDOW: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_spreads_its_closes_over_the_window() {
    let io = SocketIo::new(SocketIoConfig::default());
    io.of("/").on_connection(|_: Socket| async {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let serving = tokio::spawn(io.clone().serve(listener));

    let closed_at: Arc<Mutex<Vec<(Instant, DisconnectReason)>>> = Arc::default();
    let url = format!("http://127.0.0.1:{port}");
    let config = ManagerConfig {
        reconnection: false,
        transports: Transports::WebSocket,
        ..ManagerConfig::default()
    };
    let mut managers = Vec::new();
    for _ in 0..CLIENTS {
        let manager = Manager::new(&url, config.clone()).expect("manager");
        let socket = manager.socket("/");
        let closed_at = closed_at.clone();
        socket.on_disconnect(move |_, reason| {
            if let Ok(mut closed_at) = closed_at.lock() {
                closed_at.push((Instant::now(), reason));
            }
        });
        tokio::time::timeout(DEADLINE, socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        managers.push(manager);
    }
    wait_until("every session is open", || {
        io.engine().session_count() == CLIENTS
    })
    .await;

    let drain = {
        let io = io.clone();
        tokio::spawn(async move { io.drain(WINDOW, DEADLINE).await })
    };
    // New clients are refused from the start of the drain.
    wait_until("the drain has started", || {
        !closed_at.lock().map(|c| c.is_empty()).unwrap_or(true)
            || io.engine().session_count() < CLIENTS
    })
    .await;
    let late = Manager::new(&url, config.clone()).expect("manager");
    let refused = tokio::time::timeout(DEADLINE, late.socket("/").connect())
        .await
        .expect("answered in time");
    assert!(refused.is_err(), "a new client joined a draining server");

    let left = tokio::time::timeout(WINDOW + DEADLINE * 2, drain)
        .await
        .expect("the drain ends")
        .expect("drain task");
    assert_eq!(left, 0);
    wait_until("every client saw its close", || {
        closed_at.lock().map(|c| c.len()).unwrap_or(0) == CLIENTS
    })
    .await;
    let closed_at = closed_at.lock().expect("closes").clone();
    // The transport closed under each client (it would reconnect), not a server disconnect.
    assert!(
        closed_at
            .iter()
            .all(|(_, reason)| *reason == DisconnectReason::TransportClose),
        "{closed_at:?}"
    );
    // Spread: 24 instants drawn over 2 s span less than 0.5 s with a probability below
    // 1e-12; a slow machine delays closes but does not bunch them closer.
    let first = closed_at.iter().map(|(at, _)| *at).min().expect("a close");
    let last = closed_at.iter().map(|(at, _)| *at).max().expect("a close");
    assert!(
        last - first >= WINDOW / 4,
        "the closes came within {:?}",
        last - first
    );
    serving.abort();
}
