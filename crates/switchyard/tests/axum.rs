//! The server mounted in an axum `Router` beside other routes: both answer on one port, and
//! `serve_with` drains the clients on shutdown.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use switchyard::{Socket, SocketIo, SocketIoConfig};
use switchyard_client::{Manager, ManagerConfig};
use switchyard_testkit::{wait_until, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_and_axum_routes_share_a_port_and_shutdown_drains_clients() {
    let io = SocketIo::new(SocketIoConfig::default());
    io.of("/").on_connection(|socket: Socket| async move {
        socket.on("echo", |_: Socket, text: String| async move {
            Ok::<_, String>(text)
        });
    });
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(io.clone().serve_with(
        listener,
        app,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    let health = http_get(port, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
    let missing = http_get(port, "/nowhere").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    let manager = Manager::new(
        &format!("http://127.0.0.1:{port}"),
        ManagerConfig::default(),
    )
    .expect("manager");
    let socket = manager.socket("/");
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("connect in time")
        .expect("connected");
    let answer = socket
        .emit_with_ack("echo", "hi", DEADLINE)
        .await
        .expect("echoed");
    assert_eq!(answer.get::<String>(0).expect("text"), "hi");

    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("server stops within the drain time")
        .expect("server task")
        .expect("served");
    wait_until("the client sees the shutdown", || !socket.connected()).await;
    assert_eq!(io.engine().session_count(), 0);
    manager.close();
}
