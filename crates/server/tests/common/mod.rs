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
/// startup line.
pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BINARY)
        .args(args)
        .env_clear()
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
