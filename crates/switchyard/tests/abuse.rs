//! What a hostile client can make the Socket.IO layer hold or do, with raw packets over a
//! WebSocket: each attack gets a clear answer (a CONNECT_ERROR, or a closed connection) and
//! leaves nothing behind.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use switchyard::{Args, ConnectError, Rate, Socket, SocketIoConfig, SocketLimits};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use common::{start, wait_until, within, TestServer};

/// A client that speaks the wire protocol itself.
struct Raw {
    ws: WebSocketStream<TcpStream>,
}

impl Raw {
    async fn open(server: &TestServer) -> Raw {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        let (ws, _) = within(tokio_tungstenite::client_async(url, stream))
            .await
            .expect("websocket handshake");
        let mut raw = Raw { ws };
        let open = raw.next().await.expect("open packet");
        assert!(open.starts_with("0{"), "{open}");
        raw
    }

    async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// The next message that is not an event (events are skipped).
    async fn next_reply(&mut self) -> Option<String> {
        loop {
            let message = self.next().await?;
            if !message.starts_with("42") {
                return Some(message);
            }
        }
    }

    /// The next text message other than a ping (answered); `None` once the server closed.
    async fn next(&mut self) -> Option<String> {
        loop {
            match within(self.ws.next()).await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => self.send("3").await,
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }
}

fn limits(limits: SocketLimits) -> SocketIoConfig {
    SocketIoConfig {
        limits,
        ..SocketIoConfig::default()
    }
}

#[tokio::test]
async fn an_oversized_auth_payload_is_refused_unparsed_and_the_connection_stays_usable() {
    let server = start(SocketIoConfig::default(), |_| {}).await;
    let mut raw = Raw::open(&server).await;
    let pad = "x".repeat(SocketLimits::default().max_auth_bytes);
    raw.send(&format!(r#"40{{"pad":"{pad}"}}"#)).await;
    let reply = raw.next().await.expect("connect error");
    let error: serde_json::Value =
        serde_json::from_str(reply.strip_prefix("44").expect("CONNECT_ERROR")).expect("json");
    assert_eq!(
        error,
        serde_json::json!({ "message": "auth payload too large", "data": { "limit": 16384 } })
    );
    assert_eq!(server.ns("/").socket_count(), 0);
    raw.send(r#"40{"small":true}"#).await;
    let reply = raw.next().await.expect("connect reply");
    assert!(reply.starts_with(r#"40{"sid":"#), "{reply}");
}

/// Under the byte bound but made of tiny objects (each `{"":0}`, six bytes of text, is a map of
/// hundreds of bytes once parsed): refused too, since the socket would keep it for its life.
#[tokio::test]
async fn an_auth_payload_that_parses_into_too_much_memory_is_refused() {
    let server = start(SocketIoConfig::default(), |_| {}).await;
    let mut raw = Raw::open(&server).await;
    let objects = vec![r#"{"":0}"#; 2000].join(",");
    let payload = format!(r#"40{{"pad":[{objects}]}}"#);
    assert!(payload.len() < SocketLimits::default().max_auth_bytes);
    raw.send(&payload).await;
    let reply = raw.next().await.expect("connect error");
    let error: serde_json::Value =
        serde_json::from_str(reply.strip_prefix("44").expect("CONNECT_ERROR")).expect("json");
    assert_eq!(error["message"], "auth payload too large", "{reply}");
    assert_eq!(server.ns("/").socket_count(), 0);
    // A realistic auth of the same size is fine.
    let token = "x".repeat(12_000);
    raw.send(&format!(r#"40{{"token":"{token}","device":{{"id":1}}}}"#))
        .await;
    let reply = raw.next().await.expect("connect reply");
    assert!(reply.starts_with(r#"40{"sid":"#), "{reply}");
}

#[tokio::test]
async fn leaving_and_rejoining_does_not_refill_the_event_budget() {
    let counted = Arc::new(AtomicUsize::new(0));
    let config = limits(SocketLimits {
        // Five at once, then one every hundred seconds: the test never earns a token back.
        event_rate: Some(Rate::new(0.01, 5)),
        ..SocketLimits::default()
    });
    let server = start(config, {
        let counted = counted.clone();
        move |io| {
            io.of("/chat").on_connection(move |socket: Socket| {
                let counted = counted.clone();
                async move {
                    socket.on("count", move |_: Socket, _: Args| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {}
                    });
                }
            });
        }
    })
    .await;
    let mut raw = Raw::open(&server).await;
    let mut refused = 0;
    let mut closed = false;
    for _ in 0..20 {
        raw.send("40/chat,").await;
        // The `rate-limit` warning may come in between: only the answer counts here.
        let Some(reply) = raw.next_reply().await else {
            // Flooding CONNECTs past the budget for a burst more ends the connection.
            closed = true;
            break;
        };
        if reply.starts_with("44/chat,") {
            assert_eq!(reply, r#"44/chat,{"message":"rate limited"}"#);
            refused += 1;
            continue;
        }
        assert!(reply.starts_with("40/chat,"), "{reply}");
        raw.send(r#"42/chat,["count"]"#).await;
        raw.send("41/chat,").await;
    }
    assert!(refused > 0, "CONNECTs spend the connection's budget");
    assert!(
        closed,
        "a client that keeps sending CONNECTs past its budget is cut off"
    );
    // Whatever was accepted came out of one budget of five, CONNECTs included.
    wait_until("the server is idle", || {
        server.ns("/chat").socket_count() == 0
    })
    .await;
    assert!(counted.load(Ordering::SeqCst) <= 2, "{counted:?}");
}

#[tokio::test]
async fn namespaces_per_connection_are_bounded() {
    let config = limits(SocketLimits {
        max_namespaces_per_connection: 3,
        ..SocketLimits::default()
    });
    let server = start(config, |io| {
        io.of_dynamic(|name| name.starts_with("/n-"));
    })
    .await;
    let mut raw = Raw::open(&server).await;
    for n in 1..=3 {
        raw.send(&format!("40/n-{n},")).await;
        let reply = raw.next().await.expect("connect reply");
        assert!(reply.starts_with(&format!("40/n-{n},")), "{reply}");
    }
    raw.send("40/n-4,").await;
    assert_eq!(
        raw.next().await.as_deref(),
        Some(r#"44/n-4,{"message":"too many namespaces"}"#)
    );
    // Leaving one makes room again.
    raw.send("41/n-1,").await;
    raw.send("40/n-4,").await;
    let reply = raw.next().await.expect("connect reply");
    assert!(reply.starts_with("40/n-4,"), "{reply}");
}

#[tokio::test]
async fn a_second_connect_while_the_first_is_pending_closes_the_connection() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let server = start(SocketIoConfig::default(), {
        let (entered, release) = (entered.clone(), release.clone());
        move |io| {
            io.of("/slow").use_middleware(move |_socket: Socket| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    entered.notify_one();
                    release.notified().await;
                    Ok(())
                }
            });
        }
    })
    .await;
    let mut raw = Raw::open(&server).await;
    raw.send("40/slow,").await;
    within(entered.notified()).await;
    raw.send("40/slow,").await;
    assert_eq!(raw.next().await, None, "the connection is closed");
    release.notify_waiters();
    wait_until("nothing is left behind", || {
        server.io.engine().session_count() == 0 && server.ns("/slow").socket_count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_dynamic_namespace_lives_only_while_admitted_clients_use_it() {
    let server = start(SocketIoConfig::default(), |io| {
        io.of_dynamic(|name| name.starts_with("/room-"))
            .use_middleware(|socket: Socket| async move {
                match socket
                    .handshake()
                    .auth
                    .get("token")
                    .and_then(|t| t.as_str())
                {
                    Some("ok") => Ok(()),
                    _ => Err(ConnectError::new("unauthorized")),
                }
            });
    })
    .await;
    let names = || -> Vec<String> {
        server
            .io
            .namespaces()
            .iter()
            .map(|ns| ns.name().to_owned())
            .filter(|name| name.starts_with("/room-"))
            .collect()
    };
    let mut raw = Raw::open(&server).await;
    // Refused clients create nothing, however many names they try.
    for n in 0..20 {
        raw.send(&format!(r#"40/room-{n},{{"token":"no"}}"#)).await;
        let reply = raw.next().await.expect("refusal");
        assert!(reply.starts_with(&format!("44/room-{n},")), "{reply}");
    }
    assert_eq!(names(), Vec::<String>::new());
    raw.send(r#"40/room-a,{"token":"ok"}"#).await;
    let reply = raw.next().await.expect("connect reply");
    assert!(reply.starts_with("40/room-a,"), "{reply}");
    assert_eq!(names(), vec!["/room-a".to_owned()]);
    raw.send("41/room-a,").await;
    wait_until("the unused namespace is removed", || names().is_empty()).await;
}
