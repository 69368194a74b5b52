//! Node's reference server, `tests/node/server.mjs` (socket.io 4.8.1, pinned by its
//! package-lock.json). Its `node_modules` must be installed beforehand: `scripts/test` runs
//! `npm ci` there before `cargo test --features node-interop --test node`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `server.mjs`, killed (by its PID, through its `Child`) when dropped.
pub(crate) struct NodeServer {
    port: u16,
    child: Child,
}

impl NodeServer {
    /// Starts the server on port 0 and waits (at most 20 s) for its `listening <port>` line.
    pub(crate) async fn start() -> NodeServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("node");
        let script = dir.join("server.mjs");
        assert!(script.is_file(), "no {}", script.display());
        assert!(
            dir.join("node_modules").join("socket.io").is_dir(),
            "{} has no node_modules: run scripts/test (or `npm ci` in that folder) before \
             `cargo test -p switchyard-client --features node-interop --test node`",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(&dir)
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node (is Node.js >= 20 installed?)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = line.strip_prefix("listening ") {
                    return port.trim().parse::<u16>().ok();
                }
                eprintln!("[node] {line}");
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("node server.mjs did not print `listening <port>`");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[node] {line}");
            }
        });
        NodeServer { port, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Kills the process and waits for it to exit.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
