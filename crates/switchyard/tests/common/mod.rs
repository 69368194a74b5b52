//! Test harness: an in-process server on an ephemeral port, clients from `switchyard-client`,
//! an inbox of the events a client receives, condition polling, and a TCP proxy that can cut
//! a client's transport.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::{Namespace, SocketIo, SocketIoConfig};
use switchyard_client::{
    Args, Manager, ManagerConfig, Parser, Socket as ClientSocket, SocketOptions, Transports,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The deadline of every wait: generous, so a loaded machine never fails a test.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A server serving on 127.0.0.1 with an OS-chosen port; shut down when dropped.
pub(crate) struct TestServer {
    pub(crate) io: SocketIo,
    pub(crate) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// The URL clients connect to.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Namespace `name` of the server.
    pub(crate) fn ns(&self, name: &str) -> Namespace {
        self.io.of(name)
    }

    /// The server side of the client socket `client` (connected to `/` or another namespace).
    pub(crate) fn socket_of(&self, client: &ClientSocket) -> switchyard::Socket {
        let sid = client.id().expect("client socket connected");
        self.ns(client.namespace())
            .get_socket(&sid)
            .expect("server knows the client socket")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Starts a server with `config`; `setup` registers its namespaces and handlers first.
pub(crate) async fn start(config: SocketIoConfig, setup: impl FnOnce(&SocketIo)) -> TestServer {
    let io = SocketIo::new(config);
    setup(&io);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("listener address");
    let (shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(io.clone().serve_with_shutdown(listener, async move {
        let _ = stop.await;
    }));
    TestServer {
        io,
        addr,
        shutdown: Some(shutdown),
    }
}

/// A server with the default options.
pub(crate) async fn start_default(setup: impl FnOnce(&SocketIo)) -> TestServer {
    start(SocketIoConfig::default(), setup).await
}

/// Client options with quick reconnection and the deadline of the tests.
pub(crate) fn client_config(transports: Transports, parser: Parser) -> ManagerConfig {
    ManagerConfig {
        transports,
        parser,
        reconnection_delay: Duration::from_millis(50),
        reconnection_delay_max: Duration::from_millis(200),
        timeout: WAIT,
        ..ManagerConfig::default()
    }
}

/// A connected client socket and every event it received, in order.
pub(crate) struct Client {
    pub(crate) socket: ClientSocket,
    pub(crate) events: Inbox,
}

impl Client {
    /// The socket id the server gave.
    pub(crate) fn id(&self) -> String {
        self.socket.id().expect("client socket connected")
    }
}

/// Connects to namespace `nsp` over WebSocket with the JSON parser.
pub(crate) async fn connect(url: &str, nsp: &str) -> Client {
    connect_with(
        url,
        nsp,
        client_config(Transports::WebSocket, Parser::Json),
        SocketOptions::default(),
    )
    .await
}

/// Connects to namespace `nsp` with `config` and `options`; the inbox is in place before the
/// CONNECT goes out, so it sees what the server emits on connection.
pub(crate) async fn connect_with(
    url: &str,
    nsp: &str,
    config: ManagerConfig,
    options: SocketOptions,
) -> Client {
    let socket = socket_with(url, nsp, config, options);
    let events = Inbox::attach(&socket);
    within(socket.connect())
        .await
        .unwrap_or_else(|error| panic!("connecting to {nsp} failed: {error}"));
    Client { socket, events }
}

/// A client socket not connected yet.
pub(crate) fn socket_with(
    url: &str,
    nsp: &str,
    config: ManagerConfig,
    options: SocketOptions,
) -> ClientSocket {
    let manager = Manager::new(url, config).expect("valid URL");
    manager.socket_with(nsp, options)
}

/// Every event a client socket receives (name and arguments, recovery offsets stripped), in
/// arrival order.
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<(String, Args)>,
}

impl Inbox {
    /// Collects the events of `socket` from now on.
    pub(crate) fn attach(socket: &ClientSocket) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        socket.on_any(move |event| {
            // Sent before the handler's first await, so in arrival order.
            let _ = tx.send((event.name().to_owned(), event.args().clone()));
            async {}
        });
        Inbox { rx }
    }

    /// The next event; panics if none comes within [`WAIT`].
    pub(crate) async fn next(&mut self) -> (String, Args) {
        within(self.rx.recv())
            .await
            .expect("the client socket was dropped")
    }

    /// The next event, which must be `name`; returns its arguments.
    pub(crate) async fn expect(&mut self, name: &str) -> Args {
        let (got, args) = self.next().await;
        if got != name {
            let mut shown = format!("{args:?}");
            shown.truncate(300);
            panic!("expected event {name:?}, got {got:?} {shown}");
        }
        args
    }

    /// The next event, which must be `name`; returns its first argument as JSON.
    pub(crate) async fn expect_value(&mut self, name: &str) -> serde_json::Value {
        let args = self.expect(name).await;
        args.values
            .first()
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Skips events until `name` arrives; returns its arguments and the events skipped.
    pub(crate) async fn until(&mut self, name: &str) -> (Args, Vec<(String, Args)>) {
        let mut skipped = Vec::new();
        loop {
            let (got, args) = self.next().await;
            if got == name {
                return (args, skipped);
            }
            skipped.push((got, args));
        }
    }

    /// An event already received, if any.
    pub(crate) fn try_next(&mut self) -> Option<(String, Args)> {
        self.rx.try_recv().ok()
    }
}

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("no outcome within the test deadline")
}

/// Polls `condition` every 10 ms until it holds; fails the test after [`WAIT`].
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if condition() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`], with an async condition.
pub(crate) async fn wait_until_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A GET over a raw TCP connection (`Connection: close`); returns the status code and body.
pub(crate) async fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = within(TcpStream::connect(addr)).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    within(stream.read_to_end(&mut response))
        .await
        .expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "a chunked body is not expected here: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// A polling handshake over a raw TCP connection: opens an Engine.IO session that joins no
/// namespace. Returns its session id.
pub(crate) async fn raw_handshake(addr: SocketAddr) -> String {
    let (status, body) = raw_get(addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 200, "handshake refused: {body}");
    let open: serde_json::Value = body
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("not an open packet: {body:?}"));
    open["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid in {body:?}"))
        .to_owned()
}

/// How the proxy breaks its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Both sides see the connection close.
    Both,
    /// The client side closes; the server side stays open and silent (a half-open
    /// connection the server has not noticed yet).
    ClientOnly,
}

#[derive(Default)]
struct ProxyState {
    accepting: AtomicBool,
    connections: Mutex<Vec<oneshot::Sender<Cut>>>,
    /// Server-side streams kept open after a client-only cut.
    zombies: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy in front of a server, to break a client's transport the way a network does.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on an ephemeral port forwarding to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        state.accepting.store(true, Ordering::SeqCst);
        let accept = tokio::spawn(accept_loop(listener, target, state.clone()));
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// The URL clients connect to.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection on both sides and refuses new ones until [`Proxy::resume`].
    pub(crate) fn cut(&self) {
        self.cut_with(Cut::Both);
    }

    /// Closes every connection on the client side only, keeping the server side open and
    /// silent; refuses new connections until [`Proxy::resume`].
    pub(crate) fn cut_client_side(&self) {
        self.cut_with(Cut::ClientOnly);
    }

    fn cut_with(&self, how: Cut) {
        self.state.accepting.store(false, Ordering::SeqCst);
        let connections = std::mem::take(&mut *self.state.connections.lock().expect("lock"));
        for connection in connections {
            let _ = connection.send(how);
        }
    }

    /// Accepts connections again.
    pub(crate) fn resume(&self) {
        self.state.accepting.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
        self.state.zombies.lock().expect("lock").clear();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<ProxyState>) {
    while let Ok((client, _)) = listener.accept().await {
        if !state.accepting.load(Ordering::SeqCst) {
            // Refused: the client sees its connection close at once.
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(target).await else {
            continue;
        };
        let (cut_tx, cut_rx) = oneshot::channel();
        {
            let mut connections = state.connections.lock().expect("lock");
            connections.retain(|sender| !sender.is_closed());
            connections.push(cut_tx);
        }
        let state = state.clone();
        tokio::spawn(async move {
            let (mut client, mut server) = (client, server);
            let cut = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
                cut = cut_rx => cut.ok(),
            };
            if cut == Some(Cut::ClientOnly) {
                drop(client);
                state.zombies.lock().expect("lock").push(server);
            }
        });
    }
}
