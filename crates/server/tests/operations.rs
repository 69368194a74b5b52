//! The binary's operations endpoints and its drain on SIGTERM.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

/// `GET path` on the server at `url`: the status code and the body, as text.
fn get(url: &str, path: &str) -> (u16, String) {
    let (status, body) = common::call(url, "GET", path, None, None);
    (status, body.to_string())
}

#[test]
fn health_and_readiness_answer_json() {
    let server = common::start(&["--port", "0"], &[]);
    assert_eq!(
        get(&server.url, "/healthz"),
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        get(&server.url, "/readyz"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );
}

#[test]
fn sigterm_drains_and_exits() {
    let mut server = common::start(
        &["--port", "0"],
        &[("DRAIN_WINDOW_MS", "500"), ("DRAIN_TIMEOUT_MS", "5000")],
    );
    // An open connection (a polling handshake) for the drain to close.
    let (status, _) = get(&server.url, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200);
    let terminated = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    // The listener stays open through the drain: probes see it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = common::call(&server.url, "GET", "/readyz", None, None);
        if status == 503 {
            assert_eq!(body["reasons"], serde_json::json!(["draining"]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never saw the drain: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = Command::new(common::BINARY)
        .args(["--port", "0", "--log-format", "json"])
        .env_clear()
        .env("DOCS_IN_MEMORY", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the server");
    // Wait for the startup line, then stop the server: its logs end with it.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    let _ = stdout.read(&mut first);
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let output = child.wait_with_output().expect("the server exits");
    let logs = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"started"), "{logs}");
    assert!(messages.contains(&"stopped"), "{logs}");
    assert!(lines.iter().all(|line| line["level"].is_string()), "{logs}");
}
