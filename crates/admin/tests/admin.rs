//! The admin namespace driven by the Rust client, on an in-process server: login and session
//! ids, production mode, actions that must not create namespaces or emit reserved events, and
//! the bounded queue of live events. The official UI is tested in Chromium (tests/admin-ui).

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Socket, SocketIo, SocketIoConfig};
use switchyard_admin::{AdminAuth, AdminMode, AdminUi, AdminUiConfig};
use switchyard_client::{
    Args, Auth, Manager, ManagerConfig, Parser, Socket as ClientSocket, SocketOptions, Transports,
};
use switchyard_testkit::{wait_until, DEADLINE};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A bcrypt hash of "secret" at the lowest cost, to keep the tests quick.
fn hash() -> String {
    bcrypt::hash("secret", 4).unwrap()
}

struct Server {
    io: SocketIo,
    url: String,
    admin: AdminUi,
}

async fn start(config: AdminUiConfig) -> Server {
    let io = SocketIo::new(SocketIoConfig::default());
    io.of("/").on_connection(|socket: Socket| async move {
        socket.join("lobby");
    });
    let admin = AdminUi::install(&io, config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(io.clone().serve(listener));
    Server { io, url, admin }
}

fn quick(auth: AdminAuth) -> AdminUiConfig {
    AdminUiConfig {
        stats_interval: Duration::from_millis(200),
        ..AdminUiConfig::new(auth)
    }
}

/// A client socket and the events it gets.
struct Client {
    socket: ClientSocket,
    events: mpsc::UnboundedReceiver<(String, Args)>,
}

impl Client {
    fn new(url: &str, nsp: &str, auth: Value) -> Client {
        let config = ManagerConfig {
            transports: Transports::WebSocket,
            parser: Parser::Json,
            reconnection: false,
            timeout: DEADLINE,
            ..ManagerConfig::default()
        };
        let manager = Manager::new(url, config).unwrap();
        let options = SocketOptions {
            auth: Auth::Value(auth),
            ..SocketOptions::default()
        };
        let socket = manager.socket_with(nsp, options);
        let (sender, events) = mpsc::unbounded_channel();
        socket.on_any(move |event| {
            let _ = sender.send((event.name().to_owned(), event.args().clone()));
            async {}
        });
        Client { socket, events }
    }

    async fn connected(url: &str, nsp: &str, auth: Value) -> Client {
        let client = Client::new(url, nsp, auth);
        tokio::time::timeout(DEADLINE, client.socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        client
    }

    /// The first argument of the next `name` event (others skipped).
    async fn next(&mut self, name: &str) -> Value {
        let wait = async {
            loop {
                let (event, args) = self.events.recv().await.expect("client alive");
                if event == name {
                    return args.values.into_iter().next().unwrap_or(Value::Null);
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {name} event"))
    }

    /// The names of the events received so far.
    fn drain(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok((name, _)) = self.events.try_recv() {
            names.push(name);
        }
        names
    }
}

/// Sends the UI's action `event` with `values` (no ack: the reference answers none).
fn act(admin: &Client, event: &str, values: Vec<Value>) {
    let args = Args {
        values,
        attachments: Vec::new(),
    };
    admin.socket.emit(event, args).expect("sent");
}

async fn refusal(url: &str, auth: Value) -> String {
    let client = Client::new(url, "/admin", auth);
    match tokio::time::timeout(DEADLINE, client.socket.connect()).await {
        Ok(Err(error)) => error.to_string(),
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_password_login_gives_a_session_that_logs_in_again() {
    let server = start(quick(AdminAuth::basic("admin", hash()).unwrap())).await;
    for auth in [
        json!({"username": "admin", "password": "wrong"}),
        json!({"username": "root", "password": "secret"}),
        json!({"username": "admin", "password": 12}),
        json!({"sessionId": "0123456789abcdef"}),
        json!({}),
    ] {
        let error = refusal(&server.url, auth.clone()).await;
        assert!(error.contains("invalid credentials"), "{auth}: {error}");
    }
    let mut admin = Client::connected(
        &server.url,
        "/admin",
        json!({"username": "admin", "password": "secret"}),
    )
    .await;
    let session = admin.next("session").await;
    let session = session.as_str().expect("a session id").to_owned();
    assert_eq!(session.len(), 16);
    let config = admin.next("config").await;
    assert!(config["supportedFeatures"]
        .as_array()
        .unwrap()
        .contains(&json!("MDISCONNECT")));
    let mut again = Client::connected(&server.url, "/admin", json!({"sessionId": session})).await;
    again.next("config").await;
    assert_eq!(again.drain().iter().filter(|e| *e == "session").count(), 0);
}

#[tokio::test]
async fn production_mode_sends_only_the_figures() {
    let config = AdminUiConfig {
        mode: AdminMode::Production,
        ..quick(AdminAuth::Disabled)
    };
    let server = start(config).await;
    let mut admin = Client::connected(&server.url, "/admin", json!({})).await;
    let config = admin.next("config").await;
    assert_eq!(
        config["supportedFeatures"],
        json!([
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
            "AGGREGATED_EVENTS"
        ])
    );
    let _user = Client::connected(&server.url, "/", json!({})).await;
    // Two reports later, the user's socket is counted but was never described.
    let mut counted = false;
    for _ in 0..50 {
        let stats = admin.next("server_stats").await;
        let slash = stats["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "/")
            .cloned();
        if slash.is_some_and(|n| n["socketsCount"] == 1) {
            counted = true;
            break;
        }
    }
    assert!(counted, "the user's socket is counted");
    let seen = admin.drain();
    for described in [
        "all_sockets",
        "socket_connected",
        "room_joined",
        "event_sent",
    ] {
        assert!(
            !seen.iter().any(|e| e == described),
            "{described} in {seen:?}"
        );
    }
}

#[tokio::test]
async fn actions_name_only_existing_namespaces_and_never_reserved_events() {
    let server = start(quick(AdminAuth::Disabled)).await;
    let mut user = Client::connected(&server.url, "/", json!({})).await;
    let admin = Client::connected(&server.url, "/admin", json!({})).await;
    act(&admin, "join", vec![json!("/ghost"), json!("room")]);
    act(
        &admin,
        "emit",
        vec![json!("/"), Value::Null, json!("disconnect")],
    );
    act(
        &admin,
        "emit",
        vec![json!("/"), Value::Null, json!("notice"), json!({"n": 1})],
    );
    assert_eq!(user.next("notice").await, json!({"n": 1}));
    assert!(
        server.io.namespace("/ghost").is_none(),
        "no namespace created"
    );
    assert!(user.socket.connected(), "a reserved event name is refused");

    // A socket id is a room: the admin moves and disconnects one socket.
    let id = user.socket.id().unwrap();
    act(&admin, "join", vec![json!("/"), json!("hall"), json!(id)]);
    wait_until("the user in hall", || {
        server.io.of("/").room_size("hall") == 1
    })
    .await;
    act(
        &admin,
        "_disconnect",
        vec![json!("/"), json!(false), json!(id)],
    );
    wait_until("the user disconnected", || !user.socket.connected()).await;
}

#[tokio::test]
async fn live_events_past_the_queue_are_dropped_and_counted() {
    let config = AdminUiConfig {
        queue_capacity: 4,
        ..quick(AdminAuth::Disabled)
    };
    let server = start(config).await;
    let mut admin = Client::connected(&server.url, "/admin", json!({})).await;
    admin.next("config").await;
    let users = users(&server.url, 4).await;
    // A burst far past the queue: each broadcast is one event_sent per user.
    let ns = server.io.of("/");
    for n in 0..500 {
        ns.emit("tick", n).unwrap();
    }
    wait_until("events dropped", || server.admin.dropped_events() > 0).await;
    // The admin is still served: the next figures come.
    admin.next("server_stats").await;
    assert!(admin.socket.connected());
    drop(users);
}

async fn users(url: &str, count: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(Client::connected(url, "/", json!({})).await);
    }
    clients
}

#[test]
fn a_bad_hash_or_namespace_is_refused_at_install() {
    assert!(AdminAuth::basic("admin", "plain-password").is_err());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let io = SocketIo::new(SocketIoConfig::default());
        let config = AdminUiConfig {
            namespace: "admin".into(),
            ..AdminUiConfig::new(AdminAuth::Disabled)
        };
        assert!(AdminUi::install(&io, config).is_err());
        let _first = AdminUi::install(&io, AdminUiConfig::new(AdminAuth::Disabled)).unwrap();
        let second = AdminUi::install(&io, AdminUiConfig::new(AdminAuth::Disabled));
        assert!(second.is_err(), "one observer per server");
    });
}

#[tokio::test]
async fn a_dropped_admin_namespace_refuses_everyone() {
    let server = start(quick(AdminAuth::Disabled)).await;
    let mut admin = Client::connected(&server.url, "/admin", json!({})).await;
    admin.next("config").await;
    let Server {
        io,
        url,
        admin: handle,
    } = server;
    drop(handle);
    let error = refusal(&url, json!({})).await;
    assert!(error.contains("stopped"), "{error}");
    // The admin still connected can no longer act.
    let user = Client::connected(&url, "/", json!({})).await;
    act(&admin, "join", vec![json!("/"), json!("hall")]);
    act(
        &admin,
        "join",
        vec![json!("/"), json!("probe"), json!(user.socket.id().unwrap())],
    );
    // The admin's packets are handled in order: once its leaving is seen, the actions were.
    admin.socket.disconnect();
    let admins = io.of("/admin");
    wait_until("the admin gone", || admins.socket_count() == 0).await;
    assert_eq!(io.of("/").room_size("hall"), 0);
    assert_eq!(io.of("/").room_size("probe"), 0);
}
