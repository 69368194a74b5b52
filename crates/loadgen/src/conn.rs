//! Opening connections: TCP (optionally from a chosen loopback source address), the WebSocket
//! upgrade, the Engine.IO open packet and the Socket.IO CONNECT to `/`; or, with `--upgrade`,
//! a polling handshake first.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::opts::Opts;
use crate::wire::Proto;

/// An open client connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    addr: SocketAddr,
    path: String,
    proto: Proto,
    source_ips: Vec<IpAddr>,
    timeout: Duration,
}

/// WebSocket settings: small read buffers, since the generator may hold 10,000+ connections.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

impl Target {
    /// The target the options describe.
    pub(crate) fn new(opts: &Opts) -> Target {
        Target {
            addr: opts.addr,
            path: opts.path.clone(),
            proto: opts.proto,
            source_ips: opts.source_ips.clone(),
            timeout: opts.connect_timeout,
        }
    }

    /// The same target at another address (another node of a cluster).
    pub(crate) fn at(&self, addr: SocketAddr) -> Target {
        Target {
            addr,
            ..self.clone()
        }
    }

    /// The framing spoken.
    pub(crate) fn proto(&self) -> Proto {
        self.proto
    }

    /// A TCP connection; connection `index` uses source address `index` modulo the list.
    async fn tcp(&self, index: usize) -> anyhow::Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.source_ips.is_empty() {
            let ip = self.source_ips[index % self.source_ips.len()];
            // Let connect() pick the port per destination, so one source address is not
            // limited to one connection per ephemeral port.
            set_bind_address_no_port(&socket);
            socket.set_reuseaddr(true)?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("cannot bind {ip}"))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens connection `index` (WebSocket from the start), bounded by the handshake timeout.
    pub(crate) async fn connect(&self, index: usize) -> anyhow::Result<Ws> {
        tokio::time::timeout(self.timeout, self.connect_inner(index))
            .await
            .map_err(|_| anyhow!("handshake timed out"))?
    }

    /// Opens connection `index` through a polling handshake and an upgrade, bounded by the
    /// handshake timeout.
    pub(crate) async fn connect_upgrade(&self, index: usize) -> anyhow::Result<Ws> {
        tokio::time::timeout(self.timeout, self.upgrade_inner(index))
            .await
            .map_err(|_| anyhow!("handshake timed out"))?
    }

    async fn connect_inner(&self, index: usize) -> anyhow::Result<Ws> {
        let stream = self.tcp(index).await.context("TCP connect")?;
        let url = match self.proto {
            Proto::SocketIo => format!("ws://{}{}?EIO=4&transport=websocket", self.addr, self.path),
            Proto::Bare => format!("ws://{}/", self.addr),
        };
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .context("WebSocket upgrade")?;
        if self.proto == Proto::SocketIo {
            let open = next_text(&mut ws).await?;
            ensure!(
                open.starts_with('0'),
                "expected an open packet, got {open:?}"
            );
            sio_connect(&mut ws).await?;
        }
        Ok(ws)
    }

    async fn upgrade_inner(&self, index: usize) -> anyhow::Result<Ws> {
        ensure!(
            self.proto == Proto::SocketIo,
            "no polling on the bare server"
        );
        let mut polling = self.tcp(index).await.context("TCP connect (polling)")?;
        let body = http_get(
            &mut polling,
            &self.addr.to_string(),
            &format!("{}?EIO=4&transport=polling", self.path),
        )
        .await
        .context("polling handshake")?;
        let open = body
            .strip_prefix('0')
            .ok_or_else(|| anyhow!("expected an open packet, got {body:?}"))?;
        let open: serde_json::Value = serde_json::from_str(open).context("open packet")?;
        let sid = open
            .get("sid")
            .and_then(|sid| sid.as_str())
            .ok_or_else(|| anyhow!("open packet without sid"))?;
        let stream = self.tcp(index).await.context("TCP connect (websocket)")?;
        let url = format!(
            "ws://{}{}?EIO=4&transport=websocket&sid={sid}",
            self.addr, self.path
        );
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .context("WebSocket upgrade")?;
        ws.send(text("2probe")).await?;
        loop {
            let reply = next_text(&mut ws).await?;
            if reply == "3probe" {
                break;
            }
            ensure!(reply == "6", "expected 3probe, got {reply:?}");
        }
        ws.send(text("5")).await?;
        drop(polling);
        sio_connect(&mut ws).await?;
        Ok(ws)
    }
}

fn text(s: &'static str) -> Message {
    Message::Text(Utf8Bytes::from_static(s))
}

/// Sends the Socket.IO CONNECT to `/` and waits for its answer, answering pings meanwhile.
async fn sio_connect(ws: &mut Ws) -> anyhow::Result<()> {
    ws.send(text("40")).await?;
    loop {
        let reply = next_text(ws).await?;
        if reply.starts_with("40") {
            return Ok(());
        }
        if reply == "2" {
            ws.send(text("3")).await?;
            continue;
        }
        ensure!(
            !reply.starts_with("44") && !reply.starts_with('1'),
            "connection refused: {reply:?}"
        );
    }
}

/// The next text frame.
async fn next_text(ws: &mut Ws) -> anyhow::Result<Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(_))) | None => bail!("closed by the server"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
        }
    }
}

/// A minimal HTTP/1.1 GET: the body of a 200 answer carrying a Content-Length.
async fn http_get(stream: &mut TcpStream, host: &str, target: &str) -> anyhow::Result<String> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        ensure!(buf.len() < 64 * 1024, "response head too long");
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    ensure!(
        status == "200",
        "status {status}: {}",
        head.lines().next().unwrap_or("")
    );
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| anyhow!("no Content-Length in the polling response"))?;
    ensure!(length < 1 << 20, "polling response too long");
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "connection closed in the response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(
        buf[head_end..head_end + length].to_vec(),
    )?)
}

/// Sets IP_BIND_ADDRESS_NO_PORT, so that binding a source address defers picking the port to
/// connect(); best effort (an older kernel simply limits the number of connections).
fn set_bind_address_no_port(socket: &TcpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open (owned by `socket`), and the option value is a c_int
    // whose size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "IP_BIND_ADDRESS_NO_PORT");
    }
}

/// The outcome of opening many connections.
pub(crate) struct Opened {
    /// The connections that opened, each with the time its handshake took, in index order.
    pub conns: Vec<(Ws, Duration)>,
    /// How many failed.
    pub failures: usize,
    /// A few distinct failure messages.
    pub errors: Vec<String>,
    /// From the first attempt to the last completion.
    pub elapsed: Duration,
}

/// Opens `n` connections (indices `first..first + n`), at most `concurrency` at a time.
pub(crate) async fn open_many(
    target: &Target,
    first: usize,
    n: usize,
    concurrency: usize,
    upgrade: bool,
) -> Opened {
    let gate = Rc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    let start = Instant::now();
    for index in first..first + n {
        let gate = gate.clone();
        let target = target.clone();
        set.spawn_local(async move {
            let _permit = gate.acquire().await;
            let began = Instant::now();
            let result = if upgrade {
                target.connect_upgrade(index).await
            } else {
                target.connect(index).await
            };
            (index, result.map(|ws| (ws, began.elapsed())))
        });
    }
    let mut slots: Vec<Option<(Ws, Duration)>> = (0..n).map(|_| None).collect();
    let mut failures = 0;
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((index, Ok(conn))) => slots[index - first] = Some(conn),
            Ok((_, Err(error))) => {
                failures += 1;
                note_error(&mut errors, format!("{error:#}"));
            }
            Err(error) => {
                failures += 1;
                note_error(&mut errors, error.to_string());
            }
        }
    }
    Opened {
        conns: slots.into_iter().flatten().collect(),
        failures,
        errors,
        elapsed: start.elapsed(),
    }
}

/// Keeps up to three distinct error messages.
pub(crate) fn note_error(errors: &mut Vec<String>, error: String) {
    if errors.len() < 3 && !errors.contains(&error) {
        tracing::warn!(%error, "connection failed");
        errors.push(error);
    }
}
