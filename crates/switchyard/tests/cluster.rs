//! The adapter seam, proved with a second implementation: three `SocketIo` instances in one
//! process, linked by an in-memory bus adapter, with real clients (the Rust client over TCP)
//! connected to each. Every namespace-wide operation is started on one instance and checked on
//! the clients of the others.

#[path = "support/bus.rs"]
mod bus;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Args, Binary, RecoveryConfig, Socket, SocketIo, SocketIoConfig};
use switchyard_client::{Manager, ManagerConfig, Transports};
use switchyard_testkit::{wait_until, Proxy, Route, DEADLINE};
use tokio::sync::mpsc;

use bus::Bus;

struct Node {
    io: SocketIo,
    port: u16,
    server_events: Arc<AtomicUsize>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// `count` instances on one bus, each serving on its own loopback port.
async fn cluster(count: usize, recovery: bool) -> Vec<Node> {
    let bus = Bus::new();
    let mut nodes = Vec::new();
    for server in 0..count {
        let config = SocketIoConfig {
            connection_state_recovery: recovery.then(RecoveryConfig::default),
            ..SocketIoConfig::default()
        };
        let io = SocketIo::with_adapter(config, bus.factory(server));
        let server_events = Arc::new(AtomicUsize::new(0));
        setup(&io, server, server_events.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let serving = tokio::spawn(io.clone().serve(listener));
        nodes.push(Node {
            io,
            port,
            server_events,
            serving,
        });
    }
    nodes
}

fn setup(io: &SocketIo, server: usize, server_events: Arc<AtomicUsize>) {
    let main = io.of("/");
    main.on_connection(|socket: Socket| async move {
        socket.on("join", |socket: Socket, room: String| async move {
            socket.join(room.as_str());
            Ok::<_, String>(true)
        });
        socket.on("set-data", |socket: Socket, data: Value| async move {
            socket.set_session_data(&data).map_err(|e| e.to_string())?;
            Ok::<_, String>(true)
        });
        socket.on("whoami", |socket: Socket, _: Args| async move {
            let rooms: BTreeSet<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
            Ok::<_, String>(json!({
                "id": &**socket.id(),
                "rooms": rooms,
                "data": socket.session_data_value(),
                "recovered": socket.recovered(),
            }))
        });
    });
    // A server-side event: the answer names the server and gives back what it got, binary
    // attachments included.
    main.on_server_event("ping-servers", move |args: Args| {
        let server_events = server_events.clone();
        async move {
            server_events.fetch_add(1, Ordering::SeqCst);
            let mut values = vec![json!(server)];
            values.extend(args.values);
            Args {
                values,
                attachments: args.attachments,
            }
        }
    });
}

/// A client socket on `/` and every event it receives.
struct Client {
    _manager: Manager,
    socket: switchyard_client::Socket,
    events: mpsc::UnboundedReceiver<(String, Args)>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        Client::connect_with(port, ManagerConfig::default()).await
    }

    async fn connect_with(port: u16, config: ManagerConfig) -> Client {
        let manager = Manager::new(&format!("http://127.0.0.1:{port}"), config).expect("manager");
        let socket = manager.socket("/");
        let (sender, events) = mpsc::unbounded_channel();
        socket.on_any(move |event| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((event.name().to_owned(), event.args().clone()));
            }
        });
        // Answer the server's "ask" with the question plus one.
        socket.on("ask", |event| async move {
            let n: i64 = event.arg(0).unwrap_or(0);
            let _ = event.ack(n + 1);
        });
        tokio::time::timeout(DEADLINE, socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        Client {
            _manager: manager,
            socket,
            events,
        }
    }

    fn id(&self) -> String {
        self.socket.id().expect("connected socket has an id")
    }

    async fn call(&self, event: &str, data: impl switchyard::IntoArgs) -> Value {
        let answer = self
            .socket
            .emit_with_ack(event, data, DEADLINE)
            .await
            .expect("answered");
        answer.values.first().cloned().unwrap_or(Value::Null)
    }

    /// The next event, other than connection bookkeeping.
    async fn next(&mut self) -> (String, Args) {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("an event in time")
            .expect("events channel open")
    }

    async fn next_value(&mut self) -> (String, Value) {
        let (name, args) = self.next().await;
        (name, args.values.first().cloned().unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_every_instance_honouring_rooms_except_and_local() {
    let nodes = cluster(3, false).await;
    let mut c0 = Client::connect(nodes[0].port).await;
    let mut c1 = Client::connect(nodes[1].port).await;
    let mut c2 = Client::connect(nodes[2].port).await;
    assert_eq!(c1.call("join", "r").await, json!(true));
    assert_eq!(c2.call("join", "r").await, json!(true));
    assert_eq!(c2.call("join", "x").await, json!(true));

    let main = nodes[0].io.of("/");
    main.to("r").except("x").emit("to-r", 1).expect("emit");
    // A marker to everyone after it: a client that was left out sees the marker first.
    main.emit("marker", 2).expect("emit");
    assert_eq!(c1.next_value().await, ("to-r".into(), json!(1)));
    assert_eq!(c1.next_value().await, ("marker".into(), json!(2)));
    assert_eq!(c2.next_value().await, ("marker".into(), json!(2)));
    assert_eq!(c0.next_value().await, ("marker".into(), json!(2)));

    // Only the instance's own clients.
    nodes[1]
        .io
        .of("/")
        .broadcast()
        .local()
        .emit("local", 3)
        .expect("emit");
    main.emit("marker", 4).expect("emit");
    assert_eq!(c1.next_value().await, ("local".into(), json!(3)));
    for client in [&mut c0, &mut c1, &mut c2] {
        assert_eq!(client.next_value().await, ("marker".into(), json!(4)));
    }

    // To one socket of another instance, by its id room.
    main.to(c2.id()).emit("direct", 5).expect("emit");
    assert_eq!(c2.next_value().await, ("direct".into(), json!(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_describes_every_instance_and_remote_sockets_can_be_acted_on() {
    let nodes = cluster(3, false).await;
    let c0 = Client::connect(nodes[0].port).await;
    let c1 = Client::connect(nodes[1].port).await;
    let mut c2 = Client::connect(nodes[2].port).await;
    c1.call("join", "r").await;
    c2.call("join", "r").await;
    c2.call("set-data", json!({ "user": "ann" })).await;

    let all = nodes[0].io.of("/").fetch_sockets().await.expect("fetch");
    let ids: BTreeSet<String> = all.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, BTreeSet::from([c0.id(), c1.id(), c2.id()]));
    let in_r = nodes[0]
        .io
        .of("/")
        .to("r")
        .fetch_sockets()
        .await
        .expect("fetch");
    assert_eq!(in_r.len(), 2);
    let remote = in_r
        .iter()
        .find(|s| **s.id() == *c2.id())
        .expect("c2 is in r");
    assert!(remote.as_local().is_none(), "c2 lives on another instance");
    assert!(remote.rooms().iter().any(|r| &**r == "r"));
    assert_eq!(remote.data(), &json!({ "user": "ann" }));
    assert!(remote.handshake().issued > 0);

    // Join, emit and leave through the fetched handle of a socket on another instance.
    remote.join("vip").await.expect("join");
    let node2 = nodes[2].io.of("/");
    wait_until("c2 joined vip", || node2.room_size("vip") == 1).await;
    nodes[0].io.of("/").to("vip").emit("vip", 1).expect("emit");
    assert_eq!(c2.next_value().await, ("vip".into(), json!(1)));
    remote.emit("direct", 2).expect("emit");
    assert_eq!(c2.next_value().await, ("direct".into(), json!(2)));
    nodes[0]
        .io
        .of("/")
        .to(c2.id())
        .sockets_leave("vip")
        .await
        .expect("leave");
    wait_until("c2 left vip", || node2.room_size("vip") == 0).await;
    nodes[1]
        .io
        .of("/")
        .to("r")
        .sockets_join("team")
        .await
        .expect("join");
    wait_until("r members joined team on their instances", || {
        nodes[1].io.of("/").room_size("team") == 1 && node2.room_size("team") == 1
    })
    .await;

    // Disconnect room r everywhere: c1 and c2 go, c0 stays.
    nodes[0]
        .io
        .of("/")
        .to("r")
        .disconnect_sockets(false)
        .await
        .expect("disconnect");
    wait_until("r members disconnected", || {
        !c1.socket.connected() && !c2.socket.connected()
    })
    .await;
    assert!(c0.socket.connected());
    assert_eq!(
        nodes[2]
            .io
            .of("/")
            .fetch_sockets()
            .await
            .expect("fetch")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_emit_carries_binary_and_collects_every_other_instance_s_answer() {
    let nodes = cluster(3, false).await;
    let main = nodes[0].io.of("/");
    assert_eq!(main.server_count().await.expect("count"), 3);

    let args = Args::one(&"hello")
        .and_then(|args| args.push(&Binary::from(vec![1, 2, 3])))
        .expect("args");
    let answers = main
        .server_side_emit_with_ack("ping-servers", args, DEADLINE)
        .await
        .expect("answers");
    let mut servers: Vec<u64> = answers
        .iter()
        .map(|answer| answer.get::<u64>(0).expect("server number"))
        .collect();
    servers.sort();
    assert_eq!(
        servers,
        vec![1, 2],
        "every other instance answers, not this one"
    );
    for answer in &answers {
        assert_eq!(answer.get::<String>(1).expect("text"), "hello");
        assert_eq!(
            answer.get::<Binary>(2).expect("binary"),
            Binary::from(vec![1, 2, 3])
        );
    }
    assert_eq!(nodes[0].server_events.load(Ordering::SeqCst), 0);

    // Without ack: it still reaches every other instance's handler.
    main.server_side_emit("ping-servers", 1)
        .await
        .expect("emit");
    wait_until("both other instances handled it", || {
        nodes[1].server_events.load(Ordering::SeqCst) == 2
            && nodes[2].server_events.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_ack_counts_and_collects_clients_on_every_instance() {
    let nodes = cluster(3, false).await;
    let clients = [
        Client::connect(nodes[0].port).await,
        Client::connect(nodes[1].port).await,
        Client::connect(nodes[2].port).await,
    ];
    let replies = nodes[1]
        .io
        .of("/")
        .broadcast()
        .timeout(DEADLINE)
        .emit_with_ack("ask", 41)
        .await
        .expect("acks");
    assert_eq!(replies.len(), 3);
    for reply in &replies {
        let args = reply.result.as_ref().expect("every client answered");
        assert_eq!(args.get::<i64>(0).expect("answer"), 42);
    }
    assert_eq!(
        replies.iter().filter(|reply| reply.sid.is_some()).count(),
        1,
        "only the local client is named"
    );

    // A client that never answers is counted too: its entry is a timeout.
    clients[2].socket.off("ask");
    let replies = nodes[0]
        .io
        .of("/")
        .broadcast()
        .timeout(Duration::from_millis(500))
        .emit_with_ack("ask", 1)
        .await
        .expect("acks");
    assert_eq!(replies.len(), 3);
    assert_eq!(replies.iter().filter(|r| r.result.is_ok()).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_recovers_on_another_instance_with_everything_it_missed() {
    let nodes = cluster(2, true).await;
    let proxy = Proxy::start(nodes[0].addr()).await;
    let config = ManagerConfig {
        transports: Transports::WebSocket,
        reconnection_delay: Duration::from_millis(50),
        reconnection_delay_max: Duration::from_millis(200),
        ..ManagerConfig::default()
    };
    let mut client = Client::connect_with(proxy.port(), config).await;
    let id = client.id();
    client.call("join", "room").await;
    client.call("set-data", json!({ "user": "ann" })).await;
    nodes[1].io.of("/").to("room").emit("m", 0).expect("emit");
    assert_eq!(client.next_value().await, ("m".into(), json!(0)));

    // Move the client: hold new connections, cut the current one, route to instance 1.
    proxy.route(Route::Hold);
    proxy.cut();
    let node0 = nodes[0].io.of("/");
    wait_until("instance 0 saw the drop", || node0.socket_count() == 0).await;
    for n in 1..=3 {
        nodes[1].io.of("/").to("room").emit("m", n).expect("emit");
    }
    proxy.route(Route::To(nodes[1].addr()));

    for n in 1..=3 {
        assert_eq!(client.next_value().await, ("m".into(), json!(n)));
    }
    wait_until("reconnected", || client.socket.connected()).await;
    assert!(client.socket.recovered());
    assert_eq!(client.id(), id);
    let me = client.call("whoami", ()).await;
    assert_eq!(me["id"], json!(id));
    assert_eq!(me["recovered"], json!(true));
    assert_eq!(me["data"], json!({ "user": "ann" }));
    assert_eq!(
        me["rooms"],
        json!([id.clone(), "room".to_owned()]
            .iter()
            .collect::<BTreeSet<_>>())
    );
    assert_eq!(nodes[1].io.of("/").socket_count(), 1);

    // Nothing more: the next event is a fresh one, not a replay.
    nodes[0].io.of("/").to("room").emit("m", 4).expect("emit");
    assert_eq!(client.next_value().await, ("m".into(), json!(4)));
}
