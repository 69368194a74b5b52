//! Bare WebSocket echo and fan-out server: the limit line of the Switchyard benchmarks.
//!
//! No Engine.IO or Socket.IO: tokio-tungstenite over TCP, one task per connection, on a
//! current_thread tokio runtime (single-threaded only). Listens on 127.0.0.1,
//! port `$PORT` (default 3000), and accepts a WebSocket on any path. The framing, spoken by
//! `loadgen --bare`, is text frames only:
//! - `E<anything>` is echoed back verbatim (the load generator writes `E<slot>,<payload>`);
//! - `B<id>,<payload>` sends `T<payload>` to every other connection, then `A<id>` to the sender;
//! - anything else is ignored. There is no handshake after the upgrade and no heartbeat.
//!
//! The fan-out frame is built once and shared by reference count; each connection's writes
//! are flushed when it has nothing more to read or send at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Every open connection's outbox, by connection id.
type Registry = Rc<RefCell<Vec<(u64, UnboundedSender<Message>)>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Connections share the registry through Rc: they all run on this thread's LocalSet.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(port))
}

async fn serve(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bare peer listening on ws://127.0.0.1:{port}/");
    let registry: Registry = Rc::default();
    let next_id = Cell::new(0u64);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: keep serving the others.
                eprintln!("accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = next_id.get();
        next_id.set(id + 1);
        tokio::task::spawn_local(connection(stream, id, registry.clone()));
    }
}

async fn connection(stream: TcpStream, id: u64, registry: Registry) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (tx, mut rx) = unbounded_channel();
    registry.borrow_mut().push((id, tx));
    'serve: loop {
        // Queue everything that is ready, then flush once before waiting.
        while let Ok(message) = rx.try_recv() {
            if ws.feed(message).await.is_err() {
                break 'serve;
            }
        }
        let incoming = match ws.next().now_or_never() {
            Some(incoming) => incoming,
            None => {
                if ws.flush().await.is_err() {
                    break;
                }
                tokio::select! {
                    incoming = ws.next() => incoming,
                    outgoing = rx.recv() => {
                        let Some(message) = outgoing else { break };
                        if ws.feed(message).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let text = match incoming {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let reply = match text.as_bytes().first() {
            Some(b'E') => Some(Message::Text(text)),
            Some(b'B') => {
                let (ack_id, payload) = text[1..].split_once(',').unwrap_or((&text[1..], ""));
                let tick = Message::Text(Utf8Bytes::from(format!("T{payload}")));
                for (other, outbox) in registry.borrow().iter() {
                    if *other != id {
                        let _ = outbox.send(tick.clone());
                    }
                }
                Some(Message::Text(Utf8Bytes::from(format!("A{ack_id}"))))
            }
            _ => None,
        };
        if let Some(reply) = reply {
            if ws.feed(reply).await.is_err() {
                break;
            }
        }
    }
    registry.borrow_mut().retain(|(other, _)| *other != id);
}
