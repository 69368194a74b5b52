//! The engine inside an axum 0.8 `Router`, as in `examples/axum.rs`: ordinary routes and
//! Engine.IO (polling and WebSocket) share one server.

mod common;

use axum::routing::get as get_route;
use axum::Router;
use common::*;
use switchyard_engineio::{CloseReason, EngineLayer, TransportKind};

/// Serves `router` with `axum::serve` on a loopback port.
async fn serve_router(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn engine_layer_in_an_axum_router() {
    let (engine, recorder) = engine(config());
    let router = Router::new()
        .route("/health", get_route(|| async { "ok" }))
        .layer(EngineLayer::new(engine.clone()));
    let addr = serve_router(router).await;

    // The router's own route.
    let health = request(addr, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok");
    // Paths nobody serves: the router's 404.
    let missing = request(addr, "GET", "/nowhere", &[], b"").await;
    assert_eq!(missing.status, 404);

    // Engine.IO through the router: handshake, echo, error answers.
    let sid = handshake(addr).await;
    assert_ok(&post(addr, &sid, b"4through axum").await);
    assert_eq!(get(addr, &sid).await.text(), "4through axum");
    assert_error(
        &request(addr, "GET", &path("EIO=3&transport=polling"), &[], b"").await,
        400,
        5,
        "Unsupported protocol version",
    );

    // WebSocket upgrades pass through axum::serve too.
    let waiting = spawn_get(addr, &sid);
    let mut ws = ws_probe(addr, &sid).await;
    assert_eq!(within("waiting get", waiting).await.unwrap().text(), "6");
    ws_send_text(&mut ws, "5").await;
    ws_send_text(&mut ws, "4upgraded").await;
    assert_eq!(
        ws_recv_answering_pings(&mut ws).await,
        WsMessage::text("4upgraded")
    );
    assert_eq!(engine.sockets()[0].transport(), TransportKind::WebSocket);

    let (mut direct, _) = ws_handshake(addr).await;
    ws_send_text(&mut direct, "1").await;
    assert_eq!(ws_expect_close(&mut direct).await, None);
    assert!(wait_until(LIMIT, || engine.session_count() == 1).await);
    assert_eq!(recorder.closes(), vec![CloseReason::TransportClose]);
}

#[tokio::test]
async fn engine_service_as_an_axum_route_service() {
    let (engine, _recorder) = engine(config());
    let router = Router::new()
        .route("/health", get_route(|| async { "ok" }))
        .route_service(
            "/engine.io/",
            switchyard_engineio::EngineService::new(engine.clone()),
        );
    let addr = serve_router(router).await;
    assert_eq!(request(addr, "GET", "/health", &[], b"").await.text(), "ok");
    let sid = handshake(addr).await;
    assert_ok(&post(addr, &sid, b"4routed").await);
    assert_eq!(get(addr, &sid).await.text(), "4routed");
    assert_eq!(engine.session_count(), 1);
}
