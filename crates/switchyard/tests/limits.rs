//! Per-socket and per-connection limits: the event rate (drop, warn, disconnect), the most
//! binary attachments per packet, and the connect timeout.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    client_config, connect, connect_with, raw_get, raw_handshake, start, wait_until, within, WAIT,
};
use serde_json::json;
use switchyard::{
    Args, Binary, DisconnectReason, EngineConfig, Parser, Rate, Socket, SocketIoConfig,
    SocketLimits,
};
use switchyard_client::{ManagerConfig, SocketOptions, Transports};
use tokio::sync::mpsc;

fn rate_limited(rate: Rate) -> SocketIoConfig {
    SocketIoConfig {
        limits: SocketLimits {
            event_rate: Some(rate),
            ..SocketLimits::default()
        },
        ..SocketIoConfig::default()
    }
}

/// A server counting `count` events; reports each socket's disconnect reason.
async fn counting_server(
    config: SocketIoConfig,
) -> (
    common::TestServer,
    Arc<AtomicU64>,
    mpsc::UnboundedReceiver<DisconnectReason>,
) {
    let counted = Arc::new(AtomicU64::new(0));
    let (gone_tx, gone_rx) = mpsc::unbounded_channel();
    let server = start(config, {
        let counted = counted.clone();
        move |io| {
            io.of("/").on_connection(move |socket: Socket| {
                let counted = counted.clone();
                let gone_tx = gone_tx.clone();
                async move {
                    socket.on("count", move |_: Socket, _: Args| {
                        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        async move { Ok::<_, std::convert::Infallible>(n) }
                    });
                    socket.on("attachments", |_: Socket, args: Args| async move {
                        Ok::<_, std::convert::Infallible>(args.attachments.len())
                    });
                    socket.on_disconnect(move |_, reason| {
                        let _ = gone_tx.send(reason);
                        async {}
                    });
                }
            });
        }
    })
    .await;
    (server, counted, gone_rx)
}

#[tokio::test]
async fn past_the_event_rate_events_are_dropped_and_the_client_warned_once() {
    // Five at once, then one every ten seconds: the test never earns a new token. The budget
    // is the connection's, and the CONNECT spent one of the five.
    let (server, counted, _gone) = counting_server(rate_limited(Rate::new(0.1, 5))).await;
    let mut client = connect(&server.url(), "/").await;

    for n in 1..=4u64 {
        let answer = within(client.socket.emit_with_ack("count", (), WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!(n)]);
    }
    for _ in 0..3 {
        let answer = within(client.socket.emit_with_ack("count", (), WAIT))
            .await
            .unwrap();
        assert_eq!(answer.values, vec![json!({"error": "rate limited"})]);
    }
    assert_eq!(
        client.events.expect_value("rate-limit").await,
        json!({"message": "event rate exceeded", "limit": 0.1})
    );
    // Warned once: the next event is one sent now.
    server.ns("/").emit("marker", ()).unwrap();
    client.events.expect("marker").await;
    assert_eq!(counted.load(Ordering::SeqCst), 4);
    assert!(client.socket.connected());
}

#[tokio::test]
async fn flooding_a_full_burst_past_the_rate_disconnects() {
    let (server, counted, mut gone) = counting_server(rate_limited(Rate::new(0.1, 3))).await;
    let config = ManagerConfig {
        reconnection: false,
        ..client_config(Transports::WebSocket, switchyard_client::Parser::Json)
    };
    let mut client = connect_with(&server.url(), "/", config, SocketOptions::default()).await;
    let (reason_tx, mut reason_rx) = mpsc::unbounded_channel();
    client.socket.on_disconnect(move |_, reason| {
        let _ = reason_tx.send(reason);
    });

    // The CONNECT spent one token: 2 allowed, then the warning, then 3 more dropped: the next
    // one ends it.
    for _ in 0..7 {
        client.socket.emit("count", ()).unwrap();
    }
    assert_eq!(
        within(gone.recv()).await,
        Some(DisconnectReason::ServerNamespaceDisconnect)
    );
    assert_eq!(
        within(reason_rx.recv()).await,
        Some(switchyard_client::DisconnectReason::IoServerDisconnect)
    );
    client.events.expect("rate-limit").await;
    assert_eq!(counted.load(Ordering::SeqCst), 2);
    assert!(!client.socket.active());
    wait_until("the socket is gone", || server.ns("/").socket_count() == 0).await;
}

async fn attachments_are_bounded(parser: Parser) {
    let config = SocketIoConfig {
        max_attachments: 2,
        parser,
        ..SocketIoConfig::default()
    };
    let (server, _, mut gone) = counting_server(config).await;
    let config = ManagerConfig {
        reconnection: false,
        ..client_config(Transports::WebSocket, parser)
    };
    let client = connect_with(&server.url(), "/", config, SocketOptions::default()).await;
    let binaries = |n: u8| -> Vec<Binary> { (0..n).map(|i| Binary::from(vec![i; 3])).collect() };

    let answer = within(
        client
            .socket
            .emit_with_ack("attachments", binaries(2), WAIT),
    )
    .await
    .unwrap();
    assert_eq!(answer.values, vec![json!(2)], "{parser:?}");

    // One more than allowed: the packet is refused and the connection closed.
    client.socket.emit("attachments", binaries(3)).unwrap();
    let reason = within(gone.recv()).await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::ForcedClose | DisconnectReason::TransportClose
        ),
        "{parser:?}: {reason:?}"
    );
    wait_until("the connection is closed", || {
        server.io.engine().session_count() == 0
    })
    .await;
    wait_until("the client saw it", || !client.socket.connected()).await;
}

#[tokio::test]
async fn max_attachments_with_the_json_parser() {
    attachments_are_bounded(Parser::Json).await;
}

#[tokio::test]
async fn max_attachments_with_the_msgpack_parser() {
    attachments_are_bounded(Parser::MsgPack).await;
}

#[tokio::test]
async fn a_connection_that_joins_no_namespace_is_closed_after_the_connect_timeout() {
    let config = SocketIoConfig {
        connect_timeout: Duration::from_millis(300),
        // A polling session that is closed waits for its client to fetch the close packet,
        // at most a ping timeout.
        engine: EngineConfig::default()
            .path("/socket.io/")
            .ping_timeout(Duration::from_millis(300)),
        ..SocketIoConfig::default()
    };
    let server = start(config, |_| {}).await;
    let engine = server.io.engine();

    // One session polls, and is told to close; the other never asks.
    let polling = raw_handshake(server.addr).await;
    raw_handshake(server.addr).await;
    assert_eq!(engine.session_count(), 2);
    let (status, body) = raw_get(
        server.addr,
        &format!("/socket.io/?EIO=4&transport=polling&sid={polling}"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "1"), "a close packet");
    wait_until("both idle connections are closed", || {
        engine.session_count() == 0
    })
    .await;

    // A connection that joined stays, well past the timeout.
    let client = connect(&server.url(), "/").await;
    assert_eq!(engine.session_count(), 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(client.socket.connected());
    assert_eq!(engine.session_count(), 1);
    assert_eq!(server.ns("/").socket_count(), 1);
}
