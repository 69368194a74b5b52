//! The server's configuration: environment variables, overridden by command-line flags.
//!
//! | flag | variable | default | meaning |
//! | --- | --- | --- | --- |
//! | `--host` | `HOST` | `127.0.0.1` | address to listen on (`0.0.0.0` for every interface) |
//! | `--port` | `PORT` | `3000` | TCP port (`0` picks a free one) |
//! | `--ping-interval-ms` | `PING_INTERVAL_MS` | `25000` | time between two server pings |
//! | `--ping-timeout-ms` | `PING_TIMEOUT_MS` | `20000` | time a client has to answer a ping |
//! | `--max-payload` | `MAX_PAYLOAD` | `1000000` | largest message a client may send, in bytes |
//! | `--cors-origins` | `CORS_ORIGINS` | none | origins allowed cross-origin: `*`, or a comma-separated list |
//!
//! The log filter is `RUST_LOG` (default `info`). Flags take `--flag value` or `--flag=value`.

use std::fmt;
use std::time::Duration;

use switchyard::engineio::CorsConfig;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
Switchyard: a Socket.IO server with a chat and a notifications demo.

Usage: switchyard [OPTIONS]

Options (each also read from the environment variable in brackets; flags win):
  --host <ADDR>              address to listen on [HOST] (default 127.0.0.1)
  --port <PORT>              TCP port, 0 for any free one [PORT] (default 3000)
  --ping-interval-ms <MS>    time between server pings [PING_INTERVAL_MS] (default 25000)
  --ping-timeout-ms <MS>     time a client has to answer a ping [PING_TIMEOUT_MS] (default 20000)
  --max-payload <BYTES>      largest message a client may send [MAX_PAYLOAD] (default 1000000)
  --cors-origins <LIST>      cross-origin access: `*` or comma-separated origins such as
                             https://app.example.com [CORS_ORIGINS] (default: same origin only)
  -h, --help                 print this help

Logging: RUST_LOG (default `info`), e.g. RUST_LOG=switchyard=debug.
";

/// Which origins may use the server from another origin (browsers' CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Only pages served by Switchyard itself (no CORS headers).
    SameOrigin,
    /// Any origin.
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    Origins(Vec<String>),
}

impl Cors {
    /// The engine's policy for this setting, `None` for same-origin only.
    pub fn to_engine(&self) -> Option<CorsConfig> {
        match self {
            Cors::SameOrigin => None,
            Cors::Any => Some(CorsConfig::any()),
            Cors::Origins(origins) => Some(CorsConfig::origins(origins.iter().cloned())),
        }
    }
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Host name or address to listen on.
    pub host: String,
    /// TCP port to listen on; 0 picks a free one.
    pub port: u16,
    /// Time between two server pings.
    pub ping_interval: Duration,
    /// Time a client has to answer a ping.
    pub ping_timeout: Duration,
    /// Largest message a client may send, in bytes.
    pub max_payload: usize,
    /// Cross-origin policy.
    pub cors: Cors,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_owned(),
            port: 3000,
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            cors: Cors::SameOrigin,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server with this configuration.
    Run(Config),
    /// Print the usage text and exit.
    Help,
}

/// A setting that could not be read; the message names the flag or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its flag, its environment variable, and how to apply a value.
struct Setting {
    flag: &'static str,
    env: &'static str,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--host",
        env: "HOST",
        apply: |config, value| {
            config.host = parse_host(value)?;
            Ok(())
        },
    },
    Setting {
        flag: "--port",
        env: "PORT",
        apply: |config, value| {
            config.port = value
                .trim()
                .parse()
                .map_err(|_| format!("expected a port number 0-65535, got {value:?}"))?;
            Ok(())
        },
    },
    Setting {
        flag: "--ping-interval-ms",
        env: "PING_INTERVAL_MS",
        apply: |config, value| {
            config.ping_interval = parse_millis(value)?;
            Ok(())
        },
    },
    Setting {
        flag: "--ping-timeout-ms",
        env: "PING_TIMEOUT_MS",
        apply: |config, value| {
            config.ping_timeout = parse_millis(value)?;
            Ok(())
        },
    },
    Setting {
        flag: "--max-payload",
        env: "MAX_PAYLOAD",
        apply: |config, value| {
            config.max_payload = parse_positive(value, "a size in bytes")?
                .try_into()
                .map_err(|_| format!("{value:?} is too large"))?;
            Ok(())
        },
    },
    Setting {
        flag: "--cors-origins",
        env: "CORS_ORIGINS",
        apply: |config, value| {
            config.cors = parse_cors(value)?;
            Ok(())
        },
    },
];

impl Config {
    /// Reads the configuration from the process environment and command line.
    pub fn load() -> Result<Command, ConfigError> {
        Config::from_sources(|name| std::env::var(name).ok(), std::env::args().skip(1))
    }

    /// Reads the configuration from `env` (a variable lookup) and `args` (the command line
    /// without the program name). Empty variables count as unset; flags override variables.
    pub fn from_sources(
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Command, ConfigError> {
        let mut config = Config::default();
        for setting in SETTINGS {
            if let Some(value) = env(setting.env).filter(|value| !value.trim().is_empty()) {
                (setting.apply)(&mut config, &value)
                    .map_err(|message| ConfigError(format!("{}: {message}", setting.env)))?;
            }
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Command::Help);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let Some(setting) = SETTINGS.iter().find(|setting| setting.flag == flag) else {
                return Err(ConfigError(format!(
                    "unknown argument {arg:?} (see --help)"
                )));
            };
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| ConfigError(format!("{flag}: a value is required")))?,
            };
            (setting.apply)(&mut config, &value)
                .map_err(|message| ConfigError(format!("{flag}: {message}")))?;
        }
        Ok(Command::Run(config))
    }
}

fn parse_host(value: &str) -> Result<String, String> {
    let host = value.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("expected a host name or address, got {value:?}"));
    }
    // `[::1]` is how addresses appear in URLs; the socket API wants `::1`.
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    Ok(host.to_owned())
}

fn parse_positive(value: &str, what: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(format!("expected {what} greater than 0, got 0")),
        Ok(number) => Ok(number),
        Err(_) => Err(format!("expected {what}, got {value:?}")),
    }
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    parse_positive(value, "a number of milliseconds").map(Duration::from_millis)
}

fn parse_cors(value: &str) -> Result<Cors, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(Cors::Any);
    }
    let mut origins = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains('/') => {
                origins.push(origin.to_owned());
            }
            _ => {
                return Err(format!(
                    "expected `*` or origins like https://app.example.com \
                     (scheme and host, no path or trailing slash), got {origin:?}"
                ))
            }
        }
    }
    if origins.is_empty() {
        return Err("expected `*` or at least one origin".to_owned());
    }
    Ok(Cors::Origins(origins))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(env: &[(&str, &str)], args: &[&str]) -> Result<Command, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(
            |name| env.get(name).cloned(),
            args.iter().map(|arg| arg.to_string()),
        )
    }

    fn config(env: &[(&str, &str)], args: &[&str]) -> Config {
        match load(env, args) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    fn error(env: &[(&str, &str)], args: &[&str]) -> String {
        match load(env, args) {
            Err(error) => error.to_string(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let config = config(&[], &[]);
        assert_eq!(config, Config::default());
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 3000);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
        assert_eq!(config.ping_timeout, Duration::from_secs(20));
        assert_eq!(config.max_payload, 1_000_000);
        assert_eq!(config.cors, Cors::SameOrigin);
        assert_eq!(config.cors.to_engine(), None);
    }

    #[test]
    fn environment_variables_set_everything() {
        let config = config(
            &[
                ("HOST", "0.0.0.0"),
                ("PORT", "8080"),
                ("PING_INTERVAL_MS", "1500"),
                ("PING_TIMEOUT_MS", "700"),
                ("MAX_PAYLOAD", "4096"),
                ("CORS_ORIGINS", "https://a.example, http://localhost:5173"),
            ],
            &[],
        );
        assert_eq!(
            config,
            Config {
                host: "0.0.0.0".to_owned(),
                port: 8080,
                ping_interval: Duration::from_millis(1500),
                ping_timeout: Duration::from_millis(700),
                max_payload: 4096,
                cors: Cors::Origins(vec![
                    "https://a.example".to_owned(),
                    "http://localhost:5173".to_owned()
                ]),
            }
        );
        assert_eq!(
            config.cors.to_engine(),
            Some(CorsConfig::origins([
                "https://a.example",
                "http://localhost:5173"
            ]))
        );
    }

    #[test]
    fn flags_override_the_environment_in_both_spellings() {
        let config = config(
            &[("PORT", "8080"), ("HOST", "0.0.0.0")],
            &["--port", "9000", "--host=[::1]", "--cors-origins=*"],
        );
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "::1");
        assert_eq!(config.cors, Cors::Any);
        assert_eq!(config.cors.to_engine(), Some(CorsConfig::any()));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        assert_eq!(
            config(&[("PORT", ""), ("HOST", "  ")], &[]),
            Config::default()
        );
    }

    #[test]
    fn port_zero_is_allowed_for_a_free_port() {
        assert_eq!(config(&[("PORT", "0")], &[]).port, 0);
    }

    #[test]
    fn help_wins_over_everything_after_it() {
        assert_eq!(load(&[], &["--help", "--bogus"]), Ok(Command::Help));
        assert_eq!(load(&[], &["-h"]), Ok(Command::Help));
    }

    #[test]
    fn bad_values_name_their_source() {
        assert_eq!(
            error(&[("PORT", "70000")], &[]),
            "PORT: expected a port number 0-65535, got \"70000\""
        );
        assert_eq!(
            error(&[], &["--port", "http"]),
            "--port: expected a port number 0-65535, got \"http\""
        );
        assert_eq!(
            error(&[("PING_INTERVAL_MS", "0")], &[]),
            "PING_INTERVAL_MS: expected a number of milliseconds greater than 0, got 0"
        );
        assert_eq!(
            error(&[], &["--ping-timeout-ms=1s"]),
            "--ping-timeout-ms: expected a number of milliseconds, got \"1s\""
        );
        assert_eq!(
            error(&[("MAX_PAYLOAD", "-5")], &[]),
            "MAX_PAYLOAD: expected a size in bytes, got \"-5\""
        );
        assert_eq!(
            error(&[], &["--host", "a b"]),
            "--host: expected a host name or address, got \"a b\""
        );
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        assert_eq!(
            error(&[("CORS_ORIGINS", "https://a.example/")], &[]),
            "CORS_ORIGINS: expected `*` or origins like https://app.example.com \
             (scheme and host, no path or trailing slash), got \"https://a.example/\""
        );
        assert_eq!(
            error(&[], &["--cors-origins", "a.example"]),
            "--cors-origins: expected `*` or origins like https://app.example.com \
             (scheme and host, no path or trailing slash), got \"a.example\""
        );
        assert_eq!(
            error(&[], &["--cors-origins", " , "]),
            "--cors-origins: expected `*` or at least one origin"
        );
    }

    #[test]
    fn unknown_and_incomplete_arguments_are_refused() {
        assert_eq!(
            error(&[], &["--prot", "1"]),
            "unknown argument \"--prot\" (see --help)"
        );
        assert_eq!(error(&[], &["--port"]), "--port: a value is required");
    }
}
