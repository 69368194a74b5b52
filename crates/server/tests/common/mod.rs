//! Starting the binary for a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary under test.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// A server process, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// What its startup line says it listens on: `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` and only the variables `env`, and waits (up to 30 s) for its
/// startup line. Unless the test says where documents go (`--data-dir`, `--docs-in-memory`,
/// `--docs`, or their variables), they stay in memory: no test writes a data directory beside
/// the sources.
pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let chosen = args.iter().any(|arg| {
        ["--data-dir", "--docs-in-memory", "--docs"]
            .iter()
            .any(|flag| arg == flag || arg.starts_with(&format!("{flag}=")))
    }) || env
        .iter()
        .any(|(name, _)| matches!(*name, "SWITCHYARD_DATA_DIR" | "DOCS_IN_MEMORY" | "DOCS"));
    let in_memory: &[(&str, &str)] = if chosen {
        &[]
    } else {
        &[("DOCS_IN_MEMORY", "true")]
    };
    let mut child = Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(in_memory.iter().copied())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("stdout");
    // Read on a thread, so that a silent server cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let mut server = Server {
        child,
        url: String::new(),
    };
    let line = line.expect("the server starts within 30 s");
    server.url = line
        .trim_end()
        .strip_prefix("Switchyard listening on ")
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .to_owned();
    server
}

// Not every test binary that includes this module calls it.
#[allow(dead_code)]
/// `method path` on the server at `url` with `key` as the API key (if any) and `body` (if
/// any): the status and the JSON body (`Null` when the body is not JSON).
pub(crate) fn call(
    url: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, body) = call_text(url, method, path, key, body);
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, value)
}

// Not every test binary that includes this module calls it.
#[allow(dead_code)]
/// [`call`], with the body as text.
pub(crate) fn call_text(
    url: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};

    let address = url.strip_prefix("http://").expect("an http URL");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

// Not every test binary that includes these calls them.
#[allow(dead_code)]
mod clients {
    use std::sync::Arc;

    use serde_json::{json, Value};
    use switchyard_client::{Auth, Manager, ManagerConfig, Socket, SocketOptions};
    use switchyard_testkit::DEADLINE;
    use tokio::sync::mpsc;

    /// A socket of `namespace` with `auth` on its own manager, not connected yet, that does
    /// not reconnect.
    pub(crate) fn socket(url: &str, namespace: &str, auth: Value) -> (Manager, Socket) {
        let config = ManagerConfig {
            reconnection: false,
            ..ManagerConfig::default()
        };
        let manager = Manager::new(url, config).expect("manager");
        let socket = manager.socket_with(
            namespace,
            SocketOptions {
                auth: Auth::Value(auth),
                ..SocketOptions::default()
            },
        );
        (manager, socket)
    }

    /// A connected socket of `namespace` with `auth`, and the events it gets.
    pub(crate) async fn client(
        url: &str,
        namespace: &str,
        auth: Value,
    ) -> (Manager, Socket, mpsc::UnboundedReceiver<(String, Value)>) {
        let (manager, socket) = self::socket(url, namespace, auth);
        let (tx, rx) = mpsc::unbounded_channel();
        let tx = Arc::new(tx);
        socket.on_any(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((event.name().to_owned(), event.value()));
            }
        });
        tokio::time::timeout(DEADLINE, socket.connect())
            .await
            .expect("connect in time")
            .expect("connected");
        (manager, socket, rx)
    }

    /// A connected `/chat` client named `name` (dev mode), and the events it gets.
    pub(crate) async fn chat(
        url: &str,
        name: &str,
    ) -> (Manager, Socket, mpsc::UnboundedReceiver<(String, Value)>) {
        client(url, "/chat", json!({ "name": name })).await
    }

    pub(crate) async fn ack(socket: &Socket, event: &str, data: Value) -> Value {
        socket
            .emit_with_ack(event, data, DEADLINE)
            .await
            .expect("an ack in time")
            .get::<Value>(0)
            .expect("a JSON ack")
    }

    /// The next event a client got.
    pub(crate) async fn next(
        events: &mut mpsc::UnboundedReceiver<(String, Value)>,
    ) -> (String, Value) {
        tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("an event in time")
            .expect("the client is open")
    }
}

#[allow(unused_imports)]
pub(crate) use clients::{ack, chat, client, next, socket};
