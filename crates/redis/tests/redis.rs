//! The Redis adapters (classic, streams and sharded) and the emitter against a real
//! `redis-server` (Debian's, which `scripts/test` installs), started by each test on a Unix
//! socket of its own (a Redis Cluster of three masters on loopback ports for the sharded
//! adapter): several `SocketIo` instances in this process, each with its own link to Redis,
//! and Rust clients on each. The tests of cluster-wide operations run once per adapter.
//!
//! Behind the `redis-server-tests` feature, since plain `cargo test` installs nothing.
#![cfg(feature = "redis-server-tests")]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Args, Binary, RecoveryConfig, Socket, SocketIo, SocketIoConfig};
use switchyard_client::{Manager, ManagerConfig};
use switchyard_redis::{
    Emitter, RedisAdapterConfig, RedisCluster, RedisShardedCluster, RedisShardedConfig,
    RedisStreamsCluster, RedisStreamsConfig,
};
use switchyard_testkit::{wait_until, RedisServer, DEADLINE};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How many connections subscribe to `channel`, asked on a connection of our own.
async fn subscribers(redis: &RedisServer, channel: &str) -> i64 {
    let Ok(client) = redis::Client::open(redis.url()) else {
        return 0;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let reply: Result<(String, i64), _> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut connection)
        .await;
    reply.map(|(_, count)| count).unwrap_or(0)
}

/// A Redis Cluster of three masters on loopback ports (each node's cluster bus on a port of
/// its own), killed when dropped.
struct RedisClusterOfThree {
    dir: std::path::PathBuf,
    children: Vec<Child>,
    ports: Vec<u16>,
    /// Each node's cluster bus port.
    buses: Vec<u16>,
}

/// A free loopback port for a cluster node, never handed out twice in this process and below
/// the ephemeral range (32768 and up): a stopped cluster's ports stay its own for its restart,
/// and no outgoing connection takes them meanwhile.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 30,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::AcqRel);
        assert!(port < 32_768, "no free port left below the ephemeral range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn connection_to(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

impl RedisClusterOfThree {
    /// Starts three cluster-enabled servers, gives each a third of the slots, introduces
    /// them and waits until every one says the cluster is ok. A port taken between its
    /// choice and the start (another process) makes it start over, three times at most.
    async fn start() -> RedisClusterOfThree {
        for _attempt in 0..3 {
            if let Some(cluster) = RedisClusterOfThree::try_start().await {
                return cluster;
            }
        }
        panic!("the Redis Cluster did not form");
    }

    async fn try_start() -> Option<RedisClusterOfThree> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sy-rcluster-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut cluster = RedisClusterOfThree {
            dir,
            children: Vec::new(),
            ports: Vec::new(),
            buses: Vec::new(),
        };
        for _ in 0..3 {
            cluster.ports.push(free_port());
            cluster.buses.push(free_port());
        }
        let mut connections = cluster.spawn_and_connect().await?;
        let thirds = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (connection, (first, last)) in connections.iter_mut().zip(thirds) {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query_async(connection)
                .await
                .expect("ADDSLOTSRANGE");
        }
        for (port, bus) in cluster.ports[1..].iter().zip(&cluster.buses[1..]) {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(port)
                .arg(bus)
                .query_async(&mut connections[0])
                .await
                .expect("CLUSTER MEET");
        }
        cluster.wait_ok(&mut connections).await?;
        Some(cluster)
    }

    /// Starts the three servers (again: a restart finds its slots and peers in its config
    /// file) and connects to each.
    async fn spawn_and_connect(&mut self) -> Option<Vec<redis::aio::MultiplexedConnection>> {
        self.children.clear();
        for (port, bus) in self.ports.iter().zip(&self.buses) {
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(&self.dir)
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server is installed (scripts/test installs it)");
            self.children.push(child);
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut connections = Vec::new();
        for url in self.urls() {
            loop {
                if let Some(mut connection) = connection_to(&url).await {
                    let pong: Result<String, _> =
                        redis::cmd("PING").query_async(&mut connection).await;
                    if pong.is_ok() {
                        connections.push(connection);
                        break;
                    }
                }
                if tokio::time::Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Some(connections)
    }

    /// Waits until every node says the cluster is ok.
    async fn wait_ok(&self, connections: &mut [redis::aio::MultiplexedConnection]) -> Option<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        for connection in connections {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(connection)
                    .await
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Some(())
    }

    async fn stop(&mut self) {
        for child in &mut self.children {
            child.kill().await.expect("kill redis-server");
        }
        self.children.clear();
    }

    async fn restart(&mut self) {
        let mut connections = self
            .spawn_and_connect()
            .await
            .expect("the cluster restarts");
        self.wait_ok(&mut connections)
            .await
            .expect("the cluster is ok again");
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// How many connections subscribe to sharded channel `channel`, over all nodes.
    async fn shard_subscribers(&self, channel: &str) -> i64 {
        let mut total = 0;
        for url in self.urls() {
            let Some(mut connection) = connection_to(&url).await else {
                continue;
            };
            let reply: Result<(String, i64), _> = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(channel)
                .query_async(&mut connection)
                .await;
            total += reply.map(|(_, count)| count).unwrap_or(0);
        }
        total
    }
}

impl RedisClusterOfThree {
    /// The node id and port of each master, and the slot ranges it serves (`CLUSTER NODES`).
    async fn masters(&self) -> Vec<(String, u16, Vec<(u16, u16)>)> {
        let mut connection = connection_to(&self.urls()[0]).await.expect("a node");
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await
            .expect("CLUSTER NODES");
        nodes
            .lines()
            .filter(|line| line.contains("master"))
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                let ranges = fields[8..]
                    .iter()
                    .filter_map(|range| {
                        let (first, last) = range.split_once('-').unwrap_or((range, range));
                        Some((first.parse().ok()?, last.parse().ok()?))
                    })
                    .collect();
                (fields[0].to_owned(), port, ranges)
            })
            .collect()
    }

    /// Moves the slot of `channel` to another master, as a resharding does (the slot holds no
    /// keys, so nothing is migrated): its old owner unsubscribes the channel's subscribers.
    async fn move_slot_of(&self, channel: &str) -> (u16, u16) {
        let mut any = connection_to(&self.urls()[0]).await.expect("a node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(channel)
            .query_async(&mut any)
            .await
            .expect("KEYSLOT");
        let masters = self.masters().await;
        let source = masters
            .iter()
            .find(|(_, _, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .expect("the slot's owner")
            .clone();
        let target = masters
            .iter()
            .find(|(id, _, _)| *id != source.0)
            .expect("another master")
            .clone();
        let url = |port: u16| format!("redis://127.0.0.1:{port}");
        let mut on_source = connection_to(&url(source.1)).await.expect("source");
        let mut on_target = connection_to(&url(target.1)).await.expect("target");
        let setslot = |state: &str, id: &str| {
            let mut command = redis::cmd("CLUSTER");
            command.arg("SETSLOT").arg(slot).arg(state).arg(id);
            command
        };
        let _: () = setslot("IMPORTING", &source.0)
            .query_async(&mut on_target)
            .await
            .expect("IMPORTING");
        let _: () = setslot("MIGRATING", &target.0)
            .query_async(&mut on_source)
            .await
            .expect("MIGRATING");
        let _: () = setslot("NODE", &target.0)
            .query_async(&mut on_target)
            .await
            .expect("NODE on the target");
        let _: () = setslot("NODE", &target.0)
            .query_async(&mut on_source)
            .await
            .expect("NODE on the source");
        (source.1, target.1)
    }
}

impl Drop for RedisClusterOfThree {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a test's nodes run on: one Redis server, or a Redis Cluster for the sharded adapter.
enum Backend {
    Server(RedisServer),
    Cluster(RedisClusterOfThree),
}

impl Backend {
    async fn start(flavour: Flavour) -> Backend {
        match flavour {
            Flavour::Sharded => Backend::Cluster(RedisClusterOfThree::start().await),
            _ => Backend::Server(RedisServer::start().await),
        }
    }

    /// The URL nodes connect to (a seed node of a cluster).
    fn url(&self) -> String {
        match self {
            Backend::Server(server) => server.url(),
            Backend::Cluster(cluster) => cluster.urls().swap_remove(0),
        }
    }

    async fn stop(&mut self) {
        match self {
            Backend::Server(server) => server.stop().await,
            Backend::Cluster(cluster) => cluster.stop().await,
        }
    }

    async fn restart(&mut self) {
        match self {
            Backend::Server(server) => server.restart().await,
            Backend::Cluster(cluster) => cluster.restart().await,
        }
    }

    /// How many connections subscribe to `channel` (sharded on a cluster), asked from outside.
    async fn subscribers(&self, channel: &str) -> i64 {
        match self {
            Backend::Server(server) => subscribers(server, channel).await,
            Backend::Cluster(cluster) => cluster.shard_subscribers(channel).await,
        }
    }

    /// Waits until `nodes` servers subscribe to `room`'s channel (sharded adapter: a server
    /// subscribes after a room of its gains its first socket; a broadcast published before
    /// would miss it). Other adapters listen to every room already.
    async fn room_followed(&self, room: &str, nodes: i64) {
        let Backend::Cluster(cluster) = self else {
            return;
        };
        let channel = format!("socket.io#/#{room}#");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while cluster.shard_subscribers(&channel).await != nodes {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{nodes} servers did not subscribe to {channel}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Node {
    io: SocketIo,
    port: u16,
    /// The cluster handle's readiness answer.
    reachable: Box<dyn Fn() -> bool + Send + Sync>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// Which adapter the nodes of a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// `createAdapter` of `@socket.io/redis-adapter`.
    Classic,
    /// `@socket.io/redis-streams-adapter`, with connection state recovery on.
    Streams,
    /// `createShardedAdapter` of `@socket.io/redis-adapter`, on a Redis Cluster.
    Sharded,
}

impl Flavour {
    /// The channel every node of a cluster subscribes to (for `/`).
    fn counted_channel(self) -> &'static str {
        match self {
            Flavour::Classic => "socket.io-request#/#",
            Flavour::Streams | Flavour::Sharded => "socket.io#/#",
        }
    }
}

/// The servers' logs, for a failing test's output (`RUST_LOG`, default warnings).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

async fn node(url: &str, name: &'static str, flavour: Flavour) -> Node {
    logs();
    let requests_timeout = Duration::from_secs(3);
    let (factory, recovery, reachable): (_, _, Box<dyn Fn() -> bool + Send + Sync>) = match flavour
    {
        Flavour::Classic => {
            let config = RedisAdapterConfig {
                requests_timeout,
                ..Default::default()
            };
            let cluster = RedisCluster::connect(url, config)
                .await
                .expect("connect to redis");
            let factory = cluster.factory();
            (factory, None, Box::new(move || cluster.is_reachable()))
        }
        Flavour::Streams => {
            let config = RedisStreamsConfig {
                requests_timeout,
                ..Default::default()
            };
            let cluster = RedisStreamsCluster::connect(url, config)
                .await
                .expect("connect to redis");
            let recovery = RecoveryConfig {
                max_disconnection_duration: Duration::from_secs(60),
                skip_middlewares: true,
                ..RecoveryConfig::default()
            };
            let factory = cluster.factory();
            (
                factory,
                Some(recovery),
                Box::new(move || cluster.is_reachable()),
            )
        }
        Flavour::Sharded => {
            let config = RedisShardedConfig {
                requests_timeout,
                ..Default::default()
            };
            let cluster = RedisShardedCluster::connect(&[url.to_owned()], config)
                .await
                .expect("connect to the redis cluster");
            let factory = cluster.factory();
            (factory, None, Box::new(move || cluster.is_reachable()))
        }
    };
    let config = SocketIoConfig {
        connection_state_recovery: recovery,
        ..SocketIoConfig::default()
    };
    let io = SocketIo::with_adapter(config, factory);
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
        // A handler that broadcasts while the adapter disconnects sockets.
        socket.on_disconnect(|socket: Socket, _| async move {
            // An object: with recovery on, a trailing string could pass for an offset.
            let _ = socket
                .namespace()
                .emit("left", json!({ "id": socket.id().to_string() }));
        });
    });
    main.on_server_event("who", move |args: Args| async move {
        json!({ "name": name, "got": args.values })
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let serving = tokio::spawn(io.clone().serve(listener));
    Node {
        io,
        port,
        reachable,
        serving,
    }
}

/// Nodes `names` on one Redis, each once it sees all the others subscribed.
async fn cluster(url: &str, names: &[&'static str], flavour: Flavour) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(node(url, name, flavour).await);
    }
    for node in &nodes {
        let main = node.io.of("/");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while main.server_count().await.unwrap_or(0) < names.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes did not subscribe"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    nodes
}

struct Client {
    _manager: Manager,
    socket: switchyard_client::Socket,
    events: mpsc::UnboundedReceiver<(String, Args)>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let manager = Manager::new(
            &format!("http://127.0.0.1:{port}"),
            ManagerConfig::default(),
        )
        .expect("manager");
        let socket = manager.socket("/");
        let (sender, events) = mpsc::unbounded_channel();
        socket.on_any(move |event| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((event.name().to_owned(), event.args().clone()));
            }
        });
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

    /// The next event, other than the "ask"s this client answers by itself.
    async fn next(&mut self) -> (String, Args) {
        loop {
            let event = tokio::time::timeout(DEADLINE, self.events.recv())
                .await
                .expect("an event in time")
                .expect("events channel open");
            if event.0 != "ask" {
                return event;
            }
        }
    }

    async fn next_value(&mut self) -> (String, Value) {
        let (name, args) = self.next().await;
        (name, args.values.first().cloned().unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_broadcasts_cross_nodes_with_rooms_except_and_binary() {
    broadcasts_cross_nodes_with_rooms_except_and_binary(Flavour::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_broadcasts_cross_nodes_with_rooms_except_and_binary() {
    broadcasts_cross_nodes_with_rooms_except_and_binary(Flavour::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_broadcasts_cross_nodes_with_rooms_except_and_binary() {
    broadcasts_cross_nodes_with_rooms_except_and_binary(Flavour::Sharded).await;
}

async fn broadcasts_cross_nodes_with_rooms_except_and_binary(flavour: Flavour) {
    let redis = Backend::start(flavour).await;
    let nodes = cluster(&redis.url(), &["a", "b", "c"], flavour).await;
    let mut c0 = Client::connect(nodes[0].port).await;
    let mut c1 = Client::connect(nodes[1].port).await;
    let mut c2 = Client::connect(nodes[2].port).await;
    c1.call("join", "r").await;
    c2.call("join", "r").await;
    c2.call("join", "x").await;
    redis.room_followed("r", 2).await;
    redis.room_followed("x", 1).await;

    let main = nodes[0].io.of("/");
    main.to("r").except("x").emit("to-r", 1).expect("emit");
    // A marker to everyone after it: a client that was left out sees the marker first.
    main.emit("marker", 2).expect("emit");
    assert_eq!(c1.next_value().await, ("to-r".into(), json!(1)));
    assert_eq!(c1.next_value().await, ("marker".into(), json!(2)));
    assert_eq!(c2.next_value().await, ("marker".into(), json!(2)));
    assert_eq!(c0.next_value().await, ("marker".into(), json!(2)));

    // Binary crosses inline, nested JSON intact; to one socket by its id room.
    let args = Args::one(&json!({"deep": [1, {"k": "v"}]}))
        .and_then(|a| a.push(&Binary::from(vec![0xde, 0xad])))
        .expect("args");
    nodes[1]
        .io
        .of("/")
        .to(c2.id())
        .emit("bin", args)
        .expect("emit");
    let (name, got) = c2.next().await;
    assert_eq!(name, "bin");
    assert_eq!(got.values[0], json!({"deep": [1, {"k": "v"}]}));
    assert_eq!(
        got.get::<Binary>(1).expect("binary"),
        Binary::from(vec![0xde, 0xad])
    );

    // Local only: no other node's client sees it.
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_requests_fetch_join_disconnect_server_side_emit_and_acks() {
    requests_fetch_join_disconnect_server_side_emit_and_acks(Flavour::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_requests_fetch_join_disconnect_server_side_emit_and_acks() {
    requests_fetch_join_disconnect_server_side_emit_and_acks(Flavour::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_requests_fetch_join_disconnect_server_side_emit_and_acks() {
    requests_fetch_join_disconnect_server_side_emit_and_acks(Flavour::Sharded).await;
}

async fn requests_fetch_join_disconnect_server_side_emit_and_acks(flavour: Flavour) {
    let redis = Backend::start(flavour).await;
    let nodes = cluster(&redis.url(), &["a", "b", "c"], flavour).await;
    let c0 = Client::connect(nodes[0].port).await;
    let c1 = Client::connect(nodes[1].port).await;
    let mut c2 = Client::connect(nodes[2].port).await;
    c1.call("join", "r").await;
    c2.call("join", "r").await;
    c2.call("set-data", json!({ "user": "ann" })).await;
    let main = nodes[0].io.of("/");

    let all = main.fetch_sockets().await.expect("fetch");
    let ids: BTreeSet<String> = all.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, BTreeSet::from([c0.id(), c1.id(), c2.id()]));
    let in_r = main.to("r").fetch_sockets().await.expect("fetch");
    let remote = in_r.iter().find(|s| **s.id() == *c2.id()).expect("c2 in r");
    assert_eq!(remote.data(), &json!({ "user": "ann" }));
    assert!(remote.rooms().iter().any(|r| &**r == "r"));
    assert!(
        remote.rooms().iter().any(|r| **r == *c2.id()),
        "own id room included"
    );

    // Broadcast with acks: every client of every node answers.
    let replies = main
        .broadcast()
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", 41)
        .await
        .expect("acks");
    assert_eq!(replies.len(), 3);
    for reply in &replies {
        assert_eq!(
            reply
                .result
                .as_ref()
                .expect("answered")
                .get::<i64>(0)
                .expect("n"),
            42
        );
    }

    // Server-side emit: every other node answers.
    let answers = main
        .server_side_emit_with_ack("who", "hi", DEADLINE)
        .await
        .expect("answers");
    let mut names: Vec<String> = answers
        .iter()
        .map(|a| a.values[0]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["b", "c"]);
    assert_eq!(answers[0].values[0]["got"], json!(["hi"]));

    // Room changes on other nodes.
    main.to("r").sockets_join("team").await.expect("join");
    let (n1, n2) = (nodes[1].io.of("/"), nodes[2].io.of("/"));
    wait_until("r members joined team", || {
        n1.room_size("team") == 1 && n2.room_size("team") == 1
    })
    .await;
    redis.room_followed("team", 2).await;
    main.to("team").emit("team", 1).expect("emit");
    assert_eq!(c2.next_value().await, ("team".into(), json!(1)));
    main.to(c2.id()).sockets_leave("team").await.expect("leave");
    wait_until("c2 left team", || n2.room_size("team") == 0).await;
    // A room that empties is unsubscribed from (sharded adapter).
    redis.room_followed("team", 1).await;

    main.to("r")
        .disconnect_sockets(false)
        .await
        .expect("disconnect");
    wait_until("r members disconnected", || {
        !c1.socket.connected() && !c2.socket.connected()
    })
    .await;
    assert!(c0.socket.connected());
    redis.room_followed("r", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emitter_reaches_every_node() {
    let redis = RedisServer::start().await;
    let nodes = cluster(&redis.url(), &["a", "b"], Flavour::Classic).await;
    let mut c0 = Client::connect(nodes[0].port).await;
    let mut c1 = Client::connect(nodes[1].port).await;
    c1.call("join", "r").await;
    let emitter = Emitter::connect(&redis.url()).await.expect("emitter");

    emitter.emit("all", 1).await.expect("emit");
    assert_eq!(c0.next_value().await, ("all".into(), json!(1)));
    assert_eq!(c1.next_value().await, ("all".into(), json!(1)));
    emitter.to("r").emit("room", 2).await.expect("emit");
    emitter.except("r").emit("except", 3).await.expect("emit");
    assert_eq!(c1.next_value().await, ("room".into(), json!(2)));
    assert_eq!(c0.next_value().await, ("except".into(), json!(3)));
    assert!(
        emitter.emit("connect", 1).await.is_err(),
        "reserved names are refused"
    );

    emitter.sockets_join("joined").await.expect("join");
    let (n0, n1) = (nodes[0].io.of("/"), nodes[1].io.of("/"));
    wait_until("every socket joined", || {
        n0.room_size("joined") == 1 && n1.room_size("joined") == 1
    })
    .await;
    emitter
        .to("r")
        .disconnect_sockets(false)
        .await
        .expect("disconnect");
    wait_until("c1 disconnected", || !c1.socket.connected()).await;
    assert!(c0.socket.connected());
}

/// A resharding moves the slot of the namespace's channel to another node: the old owner
/// unsubscribes its subscribers, which subscribe again on the new owner, and the cluster goes
/// on (Node's client does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscriptions_follow_a_slot_to_its_new_node() {
    let redis = RedisClusterOfThree::start().await;
    let url = redis.urls().swap_remove(0);
    let nodes = cluster(&url, &["a", "b"], Flavour::Sharded).await;
    let mut c1 = Client::connect(nodes[1].port).await;
    let channel = Flavour::Sharded.counted_channel();
    let (from, to) = redis.move_slot_of(channel).await;
    eprintln!("slot of {channel} moved from :{from} to :{to}");
    // Both servers subscribe again, on the new owner.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut connection = connection_to(&format!("redis://127.0.0.1:{to}"))
            .await
            .expect("new owner");
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .expect("SHARDNUMSUB");
        if count == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the servers did not subscribe on the new owner ({count})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Broadcasts cross again (the main channel carries a broadcast to all).
    let main = nodes[0].io.of("/");
    main.emit("after-move", 1).expect("emit");
    assert_eq!(c1.next_value().await, ("after-move".into(), json!(1)));
    assert_eq!(main.server_count().await.expect("count"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_redis_outage_keeps_local_delivery_and_heals_by_itself() {
    a_redis_outage_keeps_local_delivery_and_heals_by_itself(Flavour::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_redis_outage_keeps_local_delivery_and_heals_by_itself() {
    a_redis_outage_keeps_local_delivery_and_heals_by_itself(Flavour::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_redis_outage_keeps_local_delivery_and_heals_by_itself() {
    a_redis_outage_keeps_local_delivery_and_heals_by_itself(Flavour::Sharded).await;
}

async fn a_redis_outage_keeps_local_delivery_and_heals_by_itself(flavour: Flavour) {
    let mut redis = Backend::start(flavour).await;
    let nodes = cluster(&redis.url(), &["a", "b"], flavour).await;
    let mut c0 = Client::connect(nodes[0].port).await;
    let mut c1 = Client::connect(nodes[1].port).await;
    assert!(nodes.iter().all(|node| (node.reachable)()));

    redis.stop().await;
    // Readiness probes see the outage.
    wait_until("the nodes see Redis unreachable", || {
        nodes.iter().all(|node| !(node.reachable)())
    })
    .await;
    // Local clients keep being served while Redis is away.
    for n in 0..20 {
        nodes[0].io.of("/").emit("during", n).expect("emit");
        assert_eq!(c0.next_value().await, ("during".into(), json!(n)));
    }
    // Requests to the other nodes fail within their timeout rather than hang.
    let fetch = tokio::time::timeout(DEADLINE, nodes[0].io.of("/").fetch_sockets()).await;
    assert!(matches!(fetch, Ok(Err(_))), "{fetch:?}");
    // Disconnecting sockets runs their handlers, which broadcast in turn, here at once.
    let mut gone = Client::connect(nodes[0].port).await;
    let gone_id = gone.id();
    let main = nodes[0].io.of("/");
    let operator = main.to(gone_id.clone());
    tokio::time::timeout(DEADLINE, operator.disconnect_sockets(false))
        .await
        .expect("disconnected in time")
        .expect("disconnected");
    assert_eq!(
        c0.next_value().await,
        ("left".into(), json!({ "id": gone_id }))
    );
    wait_until("the socket is gone", || !gone.socket.connected()).await;
    let _ = gone.events.try_recv();

    redis.restart().await;
    // Cross-node delivery resumes by itself: re-send until it does.
    let healed = tokio::time::Instant::now();
    let deadline = healed + Duration::from_secs(30);
    let mut n = 0;
    loop {
        nodes[0].io.of("/").emit("after", n).expect("emit");
        n += 1;
        if let Ok(Some((name, _))) =
            tokio::time::timeout(Duration::from_millis(500), c1.events.recv()).await
        {
            if name == "after" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cross-node delivery did not resume ({} servers subscribed)",
            redis.subscribers(flavour.counted_channel()).await
        );
    }
    eprintln!(
        "cross-node delivery resumed {:?} after Redis came back",
        healed.elapsed()
    );
    wait_until("the nodes see Redis reachable again", || {
        nodes.iter().all(|node| (node.reachable)())
    })
    .await;
    assert!(c0.socket.connected() && c1.socket.connected());

    // An idle restart: once both servers are subscribed again, the very first broadcast
    // crosses (no stale connection eats it).
    redis.stop().await;
    redis.restart().await;
    let main = nodes[0].io.of("/");
    // Counted from outside: the servers' own command connections stay untouched.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while redis.subscribers(flavour.counted_channel()).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "servers did not subscribe again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Leave the link a moment of idleness, as between real messages.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    main.emit("first", 1).expect("emit");
    loop {
        let (name, value) = c1.next_value().await;
        if name == "first" {
            assert_eq!(value, json!(1));
            break;
        }
    }
}

/// A TCP forwarder standing for a load balancer: every connection goes to the node it points
/// at when the connection opens; `point_at` turns it to another node and cuts the open ones.
struct Balancer {
    port: u16,
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(target: u16) -> Balancer {
        use std::sync::atomic::{AtomicU16, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let target = std::sync::Arc::new(AtomicU16::new(target));
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            std::sync::Arc::default();
        let (to, held) = (target.clone(), connections.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::Acquire);
                let forwarding = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().expect("connections").push(forwarding);
            }
        });
        Balancer {
            port,
            target,
            connections,
            accepting,
        }
    }

    /// New connections go to `port`; the open ones are cut.
    fn point_at(&self, port: u16) {
        self.target
            .store(port, std::sync::atomic::Ordering::Release);
        for connection in self.connections.lock().expect("connections").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accepting.abort();
        self.point_at(0);
    }
}

/// Connection state recovery across servers: a client that drops from node a and comes back
/// through the balancer to node b gets its session (id, rooms, data) and every packet it
/// missed, while both nodes broadcast to its room all along; each exactly once, each node's
/// in order, then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_recovery_crosses_nodes_exactly_once_under_broadcasts() {
    let redis = RedisServer::start().await;
    let nodes = cluster(&redis.url(), &["a", "b"], Flavour::Streams).await;
    let balancer = Balancer::start(nodes[0].port).await;
    let manager = Manager::new(
        &format!("http://127.0.0.1:{}", balancer.port),
        ManagerConfig {
            reconnection_delay: Duration::from_millis(100),
            reconnection_delay_max: Duration::from_millis(200),
            ..ManagerConfig::default()
        },
    )
    .expect("manager");
    let socket = manager.socket("/");
    let (sender, mut events) = mpsc::unbounded_channel::<(String, i64)>();
    socket.on_any(move |event| {
        let sender = sender.clone();
        async move {
            let n = event.arg::<i64>(0).unwrap_or(-1);
            let _ = sender.send((event.name().to_owned(), n));
        }
    });
    tokio::time::timeout(DEADLINE, socket.connect())
        .await
        .expect("connect in time")
        .expect("connected");
    let id = socket.id().expect("id");
    socket
        .emit_with_ack("join", "r", DEADLINE)
        .await
        .expect("joined");
    socket
        .emit_with_ack("set-data", json!({ "user": "ann" }), DEADLINE)
        .await
        .expect("data set");
    assert!(nodes[0].io.of("/").room_size("r") == 1);

    // Both nodes broadcast to the room, 2 ms apart, while the client moves.
    const COUNT: i64 = 300;
    let publishers: Vec<_> = [("from-a", 0usize), ("from-b", 1)]
        .into_iter()
        .map(|(event, index)| {
            let io = nodes[index].io.clone();
            tokio::spawn(async move {
                for n in 0..COUNT {
                    io.of("/").to("r").emit(event, n).expect("emit");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let mut seen: std::collections::HashMap<String, Vec<i64>> = Default::default();
    let mut moved = false;
    while seen.values().map(Vec::len).sum::<usize>() < 2 * COUNT as usize {
        let (name, n) = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("every broadcast in time")
            .expect("events open");
        // Its own departure from node a ("left", from a disconnect handler) comes too.
        if name.starts_with("from-") {
            seen.entry(name).or_default().push(n);
        }
        if !moved && seen.values().map(Vec::len).sum::<usize>() >= 40 {
            moved = true;
            balancer.point_at(nodes[1].port);
        }
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    for event in ["from-a", "from-b"] {
        assert_eq!(
            seen[event],
            (0..COUNT).collect::<Vec<_>>(),
            "{event}: once each, in order"
        );
    }
    assert!(socket.recovered(), "the session was recovered");
    assert_eq!(socket.id().as_deref(), Some(id.as_str()), "same socket id");
    // It is on node b now, with its rooms and data.
    wait_until("on node b", || nodes[1].io.of("/").room_size("r") == 1).await;
    assert_eq!(nodes[0].io.of("/").room_size("r"), 0);
    let found = nodes[0]
        .io
        .of("/")
        .to("r")
        .fetch_sockets()
        .await
        .expect("fetch");
    assert_eq!(found.len(), 1);
    assert_eq!(&**found[0].id(), id.as_str());
    assert_eq!(found[0].data(), &json!({ "user": "ann" }));
    // And live.
    nodes[0].io.of("/").to("r").emit("live", 1).expect("emit");
    let (name, n) = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("live in time")
        .expect("open");
    assert_eq!((name.as_str(), n), ("live", 1));
}
