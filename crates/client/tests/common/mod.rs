//! Test servers: the Switchyard `testbed` fixture and Node's reference server.
//!
//! **testbed**: `TESTBED_BIN` when set; otherwise `examples/testbed` in the profile folder of
//! the running test binary (`<target>/<profile>/deps/<test>` → `<target>/<profile>`), then
//! in the other profile (`release`/`debug`) of the same target folder. When none exists it is
//! built once with `cargo build --release --example testbed -p switchyard-server` into that
//! target folder. `scripts/test` builds the examples before the tests, so CI finds it.
//!
//! **Node**: `tests/node/server.mjs` (socket.io 4.8.1, pinned by its package-lock.json); its
//! `node_modules` is installed with `npm ci` on first use.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A server process, killed (by its PID, through its `Child`) when dropped.
pub(crate) struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process and waits for it to exit.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of the testbed binary (see the module docs).
pub(crate) fn testbed_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_or_build_testbed).clone()
}

fn find_or_build_testbed() -> PathBuf {
    if let Some(bin) = std::env::var_os("TESTBED_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary inside <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("profile folder inside the target folder")
        .to_path_buf();
    let name = format!("testbed{}", std::env::consts::EXE_SUFFIX);
    let candidates = [
        profile_dir.join("examples").join(&name),
        target_dir.join("release").join("examples").join(&name),
        target_dir.join("debug").join("examples").join(&name),
    ];
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return found.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = manifest_dir().join("../..");
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--example",
            "testbed",
            "-p",
            "switchyard-server",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&workspace)
        .status()
        .expect("run cargo to build the testbed");
    assert!(status.success(), "building the testbed failed");
    let built = target_dir.join("release").join("examples").join(&name);
    assert!(built.is_file(), "no testbed at {}", built.display());
    built
}

/// Waits (at most 20 s) for a line starting with `marker` on `output`, then keeps draining it
/// in the background (into the test's stderr) so the process never blocks on a full pipe.
async fn wait_for_line<R>(output: R, marker: &str, what: &str)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut lines = BufReader::new(output).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with(marker) {
                return true;
            }
            eprintln!("[{what}] {line}");
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{what} did not start");
    let what = what.to_owned();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{what}] {line}");
        }
    });
}

/// Starts the testbed on a free port; `msgpack` selects its msgpack parser.
pub(crate) async fn testbed(msgpack: bool) -> Server {
    let port = free_port();
    let mut command = Command::new(testbed_bin());
    if msgpack {
        command.args(["--parser", "msgpack"]);
    }
    let mut child = command
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the testbed");
    let stderr = child.stderr.take().expect("piped stderr");
    wait_for_line(stderr, "testbed listening", "testbed").await;
    Server { port, child }
}

fn node_dir() -> PathBuf {
    manifest_dir().join("tests").join("node")
}

/// Installs the Node fixture's dependencies once per test binary.
fn npm_ci() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *done || node_dir().join("node_modules").join("socket.io").is_dir() {
        *done = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(node_dir())
        .status()
        .expect("run npm ci in tests/node (is Node.js installed?)");
    assert!(status.success(), "npm ci failed in tests/node");
    *done = true;
}

/// Starts Node's reference server on `port`.
pub(crate) async fn node_server(port: u16) -> Server {
    tokio::task::block_in_place(npm_ci);
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(node_dir())
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node server.mjs");
    let stdout = child.stdout.take().expect("piped stdout");
    wait_for_line(stdout, "listening", "node").await;
    Server { port, child }
}

/// A channel to collect what callbacks see, with a bounded wait.
pub(crate) struct Inbox<T> {
    tx: mpsc::UnboundedSender<T>,
    rx: mpsc::UnboundedReceiver<T>,
}

impl<T: Send + 'static> Inbox<T> {
    pub(crate) fn new() -> Inbox<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox { tx, rx }
    }

    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<T> {
        self.tx.clone()
    }

    /// The next item, waiting at most `limit`.
    pub(crate) async fn next(&mut self, limit: Duration) -> T {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("inbox closed")
    }

    /// Whatever arrives within `window`.
    pub(crate) async fn drain_for(&mut self, window: Duration) -> Vec<T> {
        let mut items = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            items.push(item);
        }
        items
    }
}

/// Timestamps of named moments, shared with callbacks.
#[derive(Clone, Default)]
pub(crate) struct Timeline(Arc<Mutex<Vec<(String, Instant)>>>);

impl Timeline {
    pub(crate) fn mark(&self, what: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((what.into(), Instant::now()));
    }

    pub(crate) fn entries(&self) -> Vec<(String, Instant)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Polls `condition` every 10 ms for at most `limit`.
pub(crate) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
