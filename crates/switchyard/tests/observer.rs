//! The observer: what a server reports as connections, sockets and rooms change and as events
//! pass, each fact once, in the order it happened.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use common::{connect, start_default, wait_until, within, WAIT};
use serde_json::{json, Value};
use switchyard::adapter::EncodedPacket;
use switchyard::engineio::{CloseReason, Frame, Socket as EngineSocket};
use switchyard::{
    Args, DisconnectReason, Observer, ObserverAlreadySet, Room, Socket, SocketIo, SocketIoConfig,
};

/// Writes down every hook call as a line.
#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|seen| seen == line)
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|seen| *seen == line).count()
    }

    /// Waits until `line` was written.
    async fn saw(&self, line: &str) {
        wait_until(&format!("{line:?} in {:?}", self.lines()), || {
            self.has(line)
        })
        .await;
    }
}

impl Observer for Recorder {
    fn connection_opened(&self, _: &EngineSocket) {
        self.push("opened".into());
    }

    fn connection_closed(&self, _: &EngineSocket, reason: CloseReason) {
        self.push(format!("closed {reason}"));
    }

    fn socket_connected(&self, socket: &Socket) {
        let rooms: Vec<String> = socket.rooms().iter().map(|room| room.to_string()).collect();
        self.push(format!("connected {} {rooms:?}", socket.id()));
    }

    fn socket_disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        self.push(format!("disconnected {} {reason}", socket.id()));
    }

    fn room_joined(&self, socket: &Socket, room: &Room) {
        self.push(format!("joined {} {room}", socket.id()));
    }

    fn room_left(&self, socket: &Socket, room: &Room) {
        self.push(format!("left {} {room}", socket.id()));
    }

    fn event_received(&self, socket: &Socket, event: &str, args: &Args) {
        self.push(format!(
            "received {} {event} {}",
            socket.id(),
            Value::Array(args.values.clone())
        ));
    }

    fn packet_sent(&self, socket: &Socket, packet: &EncodedPacket) {
        let text = match packet.head() {
            Frame::Text(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            Frame::Binary(_) => "binary".into(),
        };
        self.push(format!("sent {} {text}", socket.id()));
    }
}

fn handlers(io: &SocketIo) {
    io.of("/").on_connection(|socket: Socket| async move {
        socket.join("lobby");
        socket.on("join", |socket: Socket, rooms: Vec<String>| async move {
            socket.try_join(rooms).map(|()| true)
        });
        socket.on("leave", |socket: Socket, room: String| async move {
            socket.leave(room.as_str());
            Ok::<_, Infallible>(true)
        });
    });
}

#[tokio::test]
async fn sockets_rooms_and_events_are_reported_once_each() {
    let server = start_default(handlers).await;
    let recorder = Arc::new(Recorder::default());
    server.io.set_observer(recorder.clone()).unwrap();
    assert_eq!(
        server.io.set_observer(Arc::new(Recorder::default())),
        Err(ObserverAlreadySet),
        "one observer per server"
    );

    let alice = connect(&server.url(), "/").await;
    let id = alice.id();
    // Rooms joined by the connection handler come first, then the socket with them.
    recorder
        .saw(&format!("connected {id} [\"{id}\", \"lobby\"]"))
        .await;
    let lines = recorder.lines();
    let joined = lines
        .iter()
        .position(|l| *l == format!("joined {id} lobby"));
    let connected = lines.iter().position(|l| l.starts_with("connected"));
    assert_eq!(lines.first().map(String::as_str), Some("opened"));
    assert!(joined < connected, "{lines:?}");

    // A room the socket is in already is not joined again.
    let answer = within(
        alice
            .socket
            .emit_with_ack("join", json!(["lobby", "x"]), WAIT),
    )
    .await
    .unwrap();
    assert_eq!(answer.values, vec![json!(true)]);
    recorder.saw(&format!("joined {id} x")).await;
    assert_eq!(recorder.count(&format!("joined {id} lobby")), 1);
    // The event as received (its ack id is not an argument), and the ack as sent.
    recorder
        .saw(&format!("received {id} join [[\"lobby\",\"x\"]]"))
        .await;
    recorder.saw(&format!("sent {id} 430[true]")).await;

    // Leaving a room one is not in reports nothing.
    within(alice.socket.emit_with_ack("leave", json!("nowhere"), WAIT))
        .await
        .unwrap();
    within(alice.socket.emit_with_ack("leave", json!("x"), WAIT))
        .await
        .unwrap();
    recorder.saw(&format!("left {id} x")).await;
    assert!(!recorder.has(&format!("left {id} nowhere")));

    // A broadcast: one packet, reported for each recipient.
    let bob = connect(&server.url(), "/").await;
    let bob_id = bob.id();
    server.ns("/").emit("news", json!({"n": 1})).unwrap();
    for sid in [&id, &bob_id] {
        recorder
            .saw(&format!("sent {sid} 42[\"news\",{{\"n\":1}}]"))
            .await;
    }

    // Leaving: the socket, then its rooms; then its connection.
    alice.socket.disconnect();
    recorder
        .saw(&format!("disconnected {id} client namespace disconnect"))
        .await;
    recorder.saw(&format!("left {id} lobby")).await;
    let lines = recorder.lines();
    let gone = lines
        .iter()
        .position(|l| l.starts_with(&format!("disconnected {id}")));
    let left = lines.iter().position(|l| *l == format!("left {id} lobby"));
    assert!(gone < left, "{lines:?}");
    drop(bob);
    drop(alice);
    recorder.saw("closed transport close").await;
}

#[tokio::test]
async fn a_socket_refused_by_a_middleware_is_never_reported_connected() {
    let server = start_default(|io| {
        io.of("/guarded")
            .use_middleware(|socket: Socket| async move {
                socket.join("waiting");
                Err(switchyard::ConnectError::new("no"))
            });
    })
    .await;
    let recorder = Arc::new(Recorder::default());
    server.io.set_observer(recorder.clone()).unwrap();
    let refused = common::socket_with(
        &server.url(),
        "/guarded",
        common::client_config(
            switchyard_client::Transports::WebSocket,
            switchyard_client::Parser::Json,
        ),
        Default::default(),
    );
    assert!(within(refused.connect()).await.is_err());
    // What it joined in the middleware is given back, and no connect or disconnect is told.
    wait_until("the room joined then left", || {
        let lines = recorder.lines();
        lines
            .iter()
            .any(|l| l.ends_with(" waiting") && l.starts_with("joined"))
            && lines
                .iter()
                .any(|l| l.ends_with(" waiting") && l.starts_with("left"))
    })
    .await;
    let lines = recorder.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("connected") || l.starts_with("disconnected")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_server_without_observer_works_as_before() {
    let server = common::start(SocketIoConfig::default(), handlers).await;
    let alice = connect(&server.url(), "/").await;
    let answer = within(alice.socket.emit_with_ack("join", json!(["x"]), WAIT))
        .await
        .unwrap();
    assert_eq!(answer.values, vec![json!(true)]);
    assert!(server.socket_of(&alice.socket).in_room("x"));
}
