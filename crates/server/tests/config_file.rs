//! The binary with a configuration file: `check-config` on the committed example, on its own
//! output, on bad files; and the server started from a file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::BINARY;

/// The example file at the workspace root.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../switchyard.example.toml")
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        // Names are unique within this test binary; the process id keeps runs apart.
        let path = std::env::temp_dir().join(format!("switchyard-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write a temporary file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the binary with `args` and no settings from this process's environment.
fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_the_example_and_its_own_output() {
    let example = example();
    let output = run(&["--config", example.to_str().expect("path"), "check-config"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("recovery-ms = 120000  # file, `recovery-ms`"),
        "{stdout}"
    );
    assert!(stdout.contains("port = 3000  # file, `port`"), "{stdout}");

    // The output is a configuration file giving the same settings.
    let again = TempFile::new("effective.toml", &stdout);
    let output = run(&["--config", again.0.to_str().expect("path"), "check-config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split("  #").next().unwrap_or(line).to_owned())
            .collect()
    };
    assert_eq!(settings(&text(&output.stdout)), settings(&stdout));
}

#[test]
fn check_config_refuses_bad_files() {
    // A value the parser refuses: a usage error, exit 2.
    let bad = TempFile::new("bad.toml", "max-connections = 0\n");
    let output = run(&["--config", bad.0.to_str().expect("path"), "check-config"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`max-connections` in"), "{stderr}");

    // Files the settings name that cannot be loaded: exit 1, with the reason.
    let tls = TempFile::new(
        "tls.toml",
        "tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n",
    );
    let output = run(&["--config", tls.0.to_str().expect("path"), "check-config"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot read TLS certificate /nonexistent/cert.pem"),
        "{stderr}"
    );

    // No file there.
    let output = run(&["--config", "/nonexistent/switchyard.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read the configuration file"));
}

#[test]
fn the_server_runs_on_the_files_settings() {
    let file = TempFile::new("run.toml", "port = 0\nhost = \"127.0.0.1\"\n");
    let server = common::start(&["--config", file.0.to_str().expect("path")], &[]);
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    // Port 0 from the file: a port was picked.
    assert!(!server.url.ends_with(":0"), "{}", server.url);
}
