//! The server's configuration: environment variables, overridden by command-line flags.
//!
//! [`USAGE`] (what `--help` prints) lists every setting with its variable and default; the
//! README has the same tables. Flags take `--flag value` or `--flag=value`; empty variables
//! count as unset. `switchyard mint-token …` mints a development token with the same settings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use switchyard::engineio::CorsConfig;
use switchyard_auth::TokenSource;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
Switchyard: a Socket.IO server with a chat and a notifications demo.

Usage: switchyard [OPTIONS]
       switchyard mint-token [--sub ID] [--rooms PATTERNS] [--ttl SECONDS] [--dev] [OPTIONS]

Options (each also read from the environment variable in brackets; flags win):
  --host <ADDR>              address to listen on [HOST] (default 127.0.0.1)
  --port <PORT>              TCP port, 0 for any free one [PORT] (default 3000)
  --ping-interval-ms <MS>    time between server pings [PING_INTERVAL_MS] (default 25000)
  --ping-timeout-ms <MS>     time a client has to answer a ping [PING_TIMEOUT_MS] (default 20000)
  --cors-origins <LIST>      cross-origin access: `*` or comma-separated origins such as
                             https://app.example.com [CORS_ORIGINS] (default: same origin only)
  -h, --help                 print this help

TLS (both or neither; without them the server speaks plain HTTP/WS):
  --tls-cert <FILE>          certificate chain, PEM [TLS_CERT]
  --tls-key <FILE>           private key, PEM (PKCS#8, PKCS#1 or SEC1) [TLS_KEY]

Limits (`off` disables those marked *):
  --max-payload <BYTES>      largest message a client may send: a polling body, a WebSocket
                             frame or message [MAX_PAYLOAD] (default 1000000)
  --max-connections <N>      connections in total [MAX_CONNECTIONS] (default 10000)
  --max-connections-per-ip <N>  * connections from one IP address [MAX_CONNECTIONS_PER_IP]
                             (default 256)
  --handshake-rate <N>       * new connections per second per IP [HANDSHAKE_RATE] (default 20)
  --handshake-burst <N>      handshakes an IP may make at once [HANDSHAKE_BURST] (default 50)
  --event-rate <N>           * events per second per socket [EVENT_RATE] (default 100); past it
                             events are dropped (acks get {error: \"rate limited\"}), the client
                             gets a `rate-limit` event, and one that keeps flooding for a
                             burst more is disconnected
  --event-burst <N>          events a socket may send at once [EVENT_BURST] (default 200)
  --max-rooms-per-socket <N> * rooms one socket may be in [MAX_ROOMS_PER_SOCKET] (default 32)
  --max-pending-acks <N>     acks the server may await from one socket [MAX_PENDING_ACKS]
                             (default 100)
  --max-buffered-bytes <N>   outgoing bytes buffered per connection [MAX_BUFFERED_BYTES]
                             (default 1048576); past it volatile packets are dropped, then
                             the connection is closed
  --allowed-origins <LIST>   * origins allowed to connect (`Origin` header), comma-separated;
                             clients sending no Origin are not concerned [ALLOWED_ORIGINS]
                             (default off: any)

JWT authentication (on when a key is given; off: dev mode, identity from auth.name/auth.user):
  --jwt-secret <SECRET>      HMAC secret: HS256/384/512 tokens [JWT_SECRET]
  --jwt-dev-secret           use the documented development secret (never in production)
                             [JWT_DEV_SECRET=true]
  --jwt-public-key <FILES>   public keys, PEM, comma-separated: RSA (RS*/PS*), EC P-256/P-384
                             (ES256/ES384), Ed25519 (EdDSA) [JWT_PUBLIC_KEY]
  --jwt-jwks <FILE>          JSON Web Key Set; keys chosen by `kid`; re-read when the file
                             changes (checked at most once a second) [JWT_JWKS]
  --jwt-issuer <ISS>         required `iss` [JWT_ISSUER] (default: not checked)
  --jwt-audience <AUD>       required `aud` [JWT_AUDIENCE] (default: not checked)
  --jwt-leeway-s <S>         clock skew allowed on exp/nbf [JWT_LEEWAY_S] (default 30)
  --jwt-token-sources <LIST> where the token is looked for, in order: auth (auth.token),
                             header (Authorization: Bearer), query (?token=)
                             [JWT_TOKEN_SOURCES] (default auth)
  --jwt-disconnect-on-expiry <BOOL>  send `auth_expired` and disconnect a socket when its token
                             expires [JWT_DISCONNECT_ON_EXPIRY] (default true)
  --public-namespaces <LIST> namespaces open without a token: /chat, /notifications or none
                             [PUBLIC_NAMESPACES] (default none: a token is required on both)
  --room-policy <MAP>        rooms a user may join: `claim` (the token's `rooms` claim, `*`
                             wildcards) or `open`, per namespace, e.g. /chat=open;/notifications=claim
                             [ROOM_POLICY] (default claim on both; public namespaces are open)
  --relay-events <MAP>       client events relayed to a room ({room, ...} → the room, with
                             sender and time), per namespace, e.g. /chat=message,typing,reaction
                             [RELAY_EVENTS] (default /chat=message,typing;/notifications=)

mint-token (signs an HS256 token with JWT_SECRET, or the development secret with --dev;
JWT_ISSUER and JWT_AUDIENCE go in when set):
  --sub <ID>                 the user id (default `dev`)
  --rooms <PATTERNS>         comma-separated room patterns for the `rooms` claim (default none)
  --ttl <SECONDS>            lifetime (default 3600)
  --dev                      sign with the development secret

Logging: RUST_LOG (default `info`), e.g. RUST_LOG=switchyard=debug.
";

/// The development secret of `--jwt-dev-secret` and `mint-token --dev`: public, so only for a
/// local try-out.
pub const DEV_SECRET: &str = "switchyard-development-secret-do-not-use-in-production";

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

/// The abuse limits. `None` is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Connections in total.
    pub max_connections: usize,
    /// Connections from one IP address.
    pub max_connections_per_ip: Option<usize>,
    /// Handshakes per second per IP address.
    pub handshake_rate: Option<u32>,
    /// Handshakes an address may make at once.
    pub handshake_burst: u32,
    /// Events per second per socket.
    pub event_rate: Option<u32>,
    /// Events a socket may send at once.
    pub event_burst: u32,
    /// Rooms one socket may be in.
    pub max_rooms_per_socket: Option<usize>,
    /// Acks the server may await from one socket.
    pub max_pending_acks: usize,
    /// Outgoing bytes buffered per connection.
    pub max_buffered_bytes: usize,
    /// Origins allowed to connect.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_connections: 10_000,
            max_connections_per_ip: Some(256),
            handshake_rate: Some(20),
            handshake_burst: 50,
            event_rate: Some(100),
            event_burst: 200,
            max_rooms_per_socket: Some(32),
            max_pending_acks: 100,
            max_buffered_bytes: 1024 * 1024,
            allowed_origins: None,
        }
    }
}

/// The JWT settings; authentication is on when any key is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// HMAC secret.
    pub secret: Option<String>,
    /// Whether the development secret is accepted.
    pub dev_secret: bool,
    /// Public key files (PEM).
    pub public_keys: Vec<PathBuf>,
    /// A JWKS file.
    pub jwks: Option<PathBuf>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
    /// Clock skew allowed on exp and nbf.
    pub leeway: Duration,
    /// Where the token is looked for, in order.
    pub sources: Vec<TokenSource>,
    /// Whether a socket is disconnected when its token expires.
    pub disconnect_on_expiry: bool,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            secret: None,
            dev_secret: false,
            public_keys: Vec::new(),
            jwks: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            sources: vec![TokenSource::auth_token()],
            disconnect_on_expiry: true,
        }
    }
}

impl JwtSettings {
    /// Whether any key is configured, i.e. tokens are checked.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
            || self.dev_secret
            || !self.public_keys.is_empty()
            || self.jwks.is_some()
    }

    /// The HMAC secret: the configured one, else the development one if allowed.
    pub fn hmac_secret(&self) -> Option<&str> {
        self.secret
            .as_deref()
            .or(self.dev_secret.then_some(DEV_SECRET))
    }
}

/// Which rooms a user may join in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomPolicy {
    /// The rooms the token's `rooms` claim allows.
    Claim,
    /// Any room.
    Open,
}

/// The settings of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSettings {
    /// Whether clients connect without a token (with JWT on).
    pub public: bool,
    /// Which rooms a user may join (with JWT on, on a namespace that is not public).
    pub rooms: RoomPolicy,
    /// Client events relayed to rooms.
    pub relay: Vec<String>,
}

/// Settings of `/chat` and `/notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// `/chat`.
    pub chat: NamespaceSettings,
    /// `/notifications`.
    pub notifications: NamespaceSettings,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            chat: NamespaceSettings {
                public: false,
                rooms: RoomPolicy::Claim,
                relay: vec!["message".to_owned(), "typing".to_owned()],
            },
            notifications: NamespaceSettings {
                public: false,
                rooms: RoomPolicy::Claim,
                relay: Vec::new(),
            },
        }
    }
}

impl Namespaces {
    fn get_mut(&mut self, name: &str) -> Option<&mut NamespaceSettings> {
        match name {
            "/chat" => Some(&mut self.chat),
            "/notifications" => Some(&mut self.notifications),
            _ => None,
        }
    }
}

/// TLS certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
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
    /// Abuse limits.
    pub limits: LimitSettings,
    /// JWT authentication.
    pub jwt: JwtSettings,
    /// Per-namespace settings.
    pub namespaces: Namespaces,
    /// TLS, when both files are given.
    pub tls: Option<TlsFiles>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
            limits: LimitSettings::default(),
            jwt: JwtSettings::default(),
            namespaces: Namespaces::default(),
            tls: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// What `mint-token` signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintOptions {
    /// The `sub` claim.
    pub sub: String,
    /// The `rooms` claim, if any.
    pub rooms: Option<Vec<String>>,
    /// Lifetime.
    pub ttl: Duration,
    /// Whether to sign with [`DEV_SECRET`].
    pub dev: bool,
}

impl Default for MintOptions {
    fn default() -> Self {
        MintOptions {
            sub: "dev".to_owned(),
            rooms: None,
            ttl: Duration::from_secs(3600),
            dev: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server with this configuration.
    Run(Config),
    /// Print a token signed with the configuration's secret.
    MintToken(Config, MintOptions),
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
    /// A flag that may stand alone, meaning `true`.
    switch: bool,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

const fn setting(
    flag: &'static str,
    env: &'static str,
    apply: fn(&mut Config, &str) -> Result<(), String>,
) -> Setting {
    Setting {
        flag,
        env,
        switch: false,
        apply,
    }
}

const SETTINGS: &[Setting] = &[
    setting("--host", "HOST", |config, value| {
        config.host = parse_host(value)?;
        Ok(())
    }),
    setting("--port", "PORT", |config, value| {
        config.port = value
            .trim()
            .parse()
            .map_err(|_| format!("expected a port number 0-65535, got {value:?}"))?;
        Ok(())
    }),
    setting("--ping-interval-ms", "PING_INTERVAL_MS", |config, value| {
        config.ping_interval = parse_millis(value)?;
        Ok(())
    }),
    setting("--ping-timeout-ms", "PING_TIMEOUT_MS", |config, value| {
        config.ping_timeout = parse_millis(value)?;
        Ok(())
    }),
    setting("--max-payload", "MAX_PAYLOAD", |config, value| {
        config.max_payload = parse_bytes(value)?;
        Ok(())
    }),
    setting("--cors-origins", "CORS_ORIGINS", |config, value| {
        config.cors = parse_cors(value)?;
        Ok(())
    }),
    setting("--tls-cert", "TLS_CERT", |config, value| {
        config.tls_cert = Some(parse_path(value)?);
        Ok(())
    }),
    setting("--tls-key", "TLS_KEY", |config, value| {
        config.tls_key = Some(parse_path(value)?);
        Ok(())
    }),
    setting("--max-connections", "MAX_CONNECTIONS", |config, value| {
        config.limits.max_connections = parse_size(value)?;
        Ok(())
    }),
    setting(
        "--max-connections-per-ip",
        "MAX_CONNECTIONS_PER_IP",
        |config, value| {
            config.limits.max_connections_per_ip = parse_or_off(value, parse_size)?;
            Ok(())
        },
    ),
    setting("--handshake-rate", "HANDSHAKE_RATE", |config, value| {
        config.limits.handshake_rate = parse_or_off(value, parse_count)?;
        Ok(())
    }),
    setting("--handshake-burst", "HANDSHAKE_BURST", |config, value| {
        config.limits.handshake_burst = parse_count(value)?;
        Ok(())
    }),
    setting("--event-rate", "EVENT_RATE", |config, value| {
        config.limits.event_rate = parse_or_off(value, parse_count)?;
        Ok(())
    }),
    setting("--event-burst", "EVENT_BURST", |config, value| {
        config.limits.event_burst = parse_count(value)?;
        Ok(())
    }),
    setting(
        "--max-rooms-per-socket",
        "MAX_ROOMS_PER_SOCKET",
        |config, value| {
            config.limits.max_rooms_per_socket = parse_or_off(value, parse_size)?;
            Ok(())
        },
    ),
    setting("--max-pending-acks", "MAX_PENDING_ACKS", |config, value| {
        config.limits.max_pending_acks = parse_size(value)?;
        Ok(())
    }),
    setting(
        "--max-buffered-bytes",
        "MAX_BUFFERED_BYTES",
        |config, value| {
            config.limits.max_buffered_bytes = parse_bytes(value)?;
            Ok(())
        },
    ),
    setting("--allowed-origins", "ALLOWED_ORIGINS", |config, value| {
        config.limits.allowed_origins = if matches!(value.trim(), "off" | "*") {
            None
        } else {
            Some(parse_origins(value)?)
        };
        Ok(())
    }),
    setting("--jwt-secret", "JWT_SECRET", |config, value| {
        if value.len() < 16 {
            return Err("expected a secret of at least 16 bytes".to_owned());
        }
        config.jwt.secret = Some(value.to_owned());
        Ok(())
    }),
    Setting {
        flag: "--jwt-dev-secret",
        env: "JWT_DEV_SECRET",
        switch: true,
        apply: |config, value| {
            config.jwt.dev_secret = parse_bool(value)?;
            Ok(())
        },
    },
    setting("--jwt-public-key", "JWT_PUBLIC_KEY", |config, value| {
        config.jwt.public_keys = value
            .split(',')
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .map(parse_path)
            .collect::<Result<_, _>>()?;
        Ok(())
    }),
    setting("--jwt-jwks", "JWT_JWKS", |config, value| {
        config.jwt.jwks = Some(parse_path(value)?);
        Ok(())
    }),
    setting("--jwt-issuer", "JWT_ISSUER", |config, value| {
        config.jwt.issuer = Some(value.trim().to_owned());
        Ok(())
    }),
    setting("--jwt-audience", "JWT_AUDIENCE", |config, value| {
        config.jwt.audience = Some(value.trim().to_owned());
        Ok(())
    }),
    setting("--jwt-leeway-s", "JWT_LEEWAY_S", |config, value| {
        config.jwt.leeway = Duration::from_secs(
            value
                .trim()
                .parse()
                .map_err(|_| format!("expected a number of seconds, got {value:?}"))?,
        );
        Ok(())
    }),
    setting(
        "--jwt-token-sources",
        "JWT_TOKEN_SOURCES",
        |config, value| {
            config.jwt.sources = parse_sources(value)?;
            Ok(())
        },
    ),
    setting(
        "--jwt-disconnect-on-expiry",
        "JWT_DISCONNECT_ON_EXPIRY",
        |config, value| {
            config.jwt.disconnect_on_expiry = parse_bool(value)?;
            Ok(())
        },
    ),
    setting(
        "--public-namespaces",
        "PUBLIC_NAMESPACES",
        |config, value| {
            config.namespaces.chat.public = false;
            config.namespaces.notifications.public = false;
            if value.trim() == "none" {
                return Ok(());
            }
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                namespace(&mut config.namespaces, name)?.public = true;
            }
            Ok(())
        },
    ),
    setting("--room-policy", "ROOM_POLICY", |config, value| {
        for (name, policy) in parse_map(value)? {
            namespace(&mut config.namespaces, name)?.rooms = match policy.trim() {
                "claim" => RoomPolicy::Claim,
                "open" => RoomPolicy::Open,
                other => return Err(format!("{name}: expected claim or open, got {other:?}")),
            };
        }
        Ok(())
    }),
    setting("--relay-events", "RELAY_EVENTS", |config, value| {
        for (name, events) in parse_map(value)? {
            let events = events
                .split(',')
                .map(str::trim)
                .filter(|event| !event.is_empty())
                .map(|event| parse_event(name, event))
                .collect::<Result<Vec<_>, _>>()?;
            namespace(&mut config.namespaces, name)?.relay = events;
        }
        Ok(())
    }),
];

/// Events the binary handles itself, and those Socket.IO reserves.
const RESERVED_EVENTS: &[&str] = &[
    "join",
    "leave",
    "notify",
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
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
        let mut args = args.into_iter().peekable();
        let mut mint: Option<MintOptions> = None;
        if args.peek().is_some_and(|arg| arg == "mint-token") {
            args.next();
            mint = Some(MintOptions::default());
        }
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Command::Help);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if let Some(options) = mint.as_mut() {
                if flag == "--dev" {
                    options.dev = match inline {
                        Some(value) => {
                            parse_bool(&value).map_err(|m| ConfigError(format!("--dev: {m}")))?
                        }
                        None => true,
                    };
                    continue;
                }
                if matches!(flag.as_str(), "--sub" | "--rooms" | "--ttl") {
                    let value = match inline {
                        Some(value) => value,
                        None => args
                            .next()
                            .ok_or_else(|| ConfigError(format!("{flag}: a value is required")))?,
                    };
                    apply_mint(options, &flag, &value)
                        .map_err(|message| ConfigError(format!("{flag}: {message}")))?;
                    continue;
                }
            }
            let Some(setting) = SETTINGS.iter().find(|setting| setting.flag == flag) else {
                return Err(ConfigError(format!(
                    "unknown argument {arg:?} (see --help)"
                )));
            };
            let value = match inline {
                Some(value) => value,
                None if setting.switch => "true".to_owned(),
                None => args
                    .next()
                    .ok_or_else(|| ConfigError(format!("{flag}: a value is required")))?,
            };
            (setting.apply)(&mut config, &value)
                .map_err(|message| ConfigError(format!("{flag}: {message}")))?;
        }
        config.tls = match (config.tls_cert.take(), config.tls_key.take()) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "TLS_CERT and TLS_KEY (--tls-cert, --tls-key) go together".to_owned(),
                ))
            }
        };
        Ok(match mint {
            Some(options) => Command::MintToken(config, options),
            None => Command::Run(config),
        })
    }
}

fn apply_mint(options: &mut MintOptions, flag: &str, value: &str) -> Result<(), String> {
    match flag {
        "--sub" => {
            let sub = value.trim();
            if sub.is_empty() {
                return Err("expected a user id".to_owned());
            }
            options.sub = sub.to_owned();
        }
        "--rooms" => {
            let rooms: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|room| !room.is_empty())
                .map(str::to_owned)
                .collect();
            options.rooms = Some(rooms);
        }
        _ => {
            options.ttl = Duration::from_secs(parse_positive(value, "a number of seconds")?);
        }
    }
    Ok(())
}

fn namespace<'a>(
    namespaces: &'a mut Namespaces,
    name: &str,
) -> Result<&'a mut NamespaceSettings, String> {
    namespaces
        .get_mut(name)
        .ok_or_else(|| format!("unknown namespace {name:?} (expected /chat or /notifications)"))
}

/// `ns=value;ns=value` pairs.
fn parse_map(value: &str) -> Result<Vec<(&str, &str)>, String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, value)| (name.trim(), value))
                .ok_or_else(|| {
                    format!("expected /namespace=value pairs separated by `;`, got {pair:?}")
                })
        })
        .collect()
}

fn parse_event(namespace: &str, event: &str) -> Result<String, String> {
    if event.chars().count() > 64 || event.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{namespace}: invalid event name {event:?}"));
    }
    if RESERVED_EVENTS.contains(&event) {
        return Err(format!(
            "{namespace}: {event:?} cannot be relayed (reserved)"
        ));
    }
    Ok(event.to_owned())
}

fn parse_sources(value: &str) -> Result<Vec<TokenSource>, String> {
    let mut sources = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let source = match name {
            "auth" => TokenSource::auth_token(),
            "header" => TokenSource::BearerHeader,
            "query" => TokenSource::Query("token".to_owned()),
            other => {
                return Err(format!(
                    "expected auth, header or query (comma-separated), got {other:?}"
                ))
            }
        };
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        return Err("expected at least one of auth, header, query".to_owned());
    }
    Ok(sources)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn parse_path(value: &str) -> Result<PathBuf, String> {
    let path = value.trim();
    if path.is_empty() {
        return Err("expected a file path".to_owned());
    }
    Ok(PathBuf::from(path))
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

fn parse_bytes(value: &str) -> Result<usize, String> {
    parse_positive(value, "a size in bytes")?
        .try_into()
        .map_err(|_| format!("{value:?} is too large"))
}

fn parse_size(value: &str) -> Result<usize, String> {
    parse_positive(value, "a positive number")?
        .try_into()
        .map_err(|_| format!("{value:?} is too large"))
}

fn parse_count(value: &str) -> Result<u32, String> {
    parse_positive(value, "a positive number")?
        .try_into()
        .map_err(|_| format!("{value:?} is too large"))
}

fn parse_or_off<T>(value: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if value.trim() == "off" {
        Ok(None)
    } else {
        parse(value)
            .map(Some)
            .map_err(|message| format!("{message} (or off)"))
    }
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    parse_positive(value, "a number of milliseconds").map(Duration::from_millis)
}

/// Comma-separated bare origins (`scheme://host[:port]`).
fn parse_origins(value: &str) -> Result<Vec<String>, String> {
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
    Ok(origins)
}

fn parse_cors(value: &str) -> Result<Cors, String> {
    if value.trim() == "*" {
        return Ok(Cors::Any);
    }
    parse_origins(value).map(Cors::Origins)
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
        assert_eq!(config.tls, None);
        assert!(!config.jwt.enabled());
    }

    #[test]
    fn the_limits_have_opinionated_defaults() {
        assert_eq!(
            Config::default().limits,
            LimitSettings {
                max_connections: 10_000,
                max_connections_per_ip: Some(256),
                handshake_rate: Some(20),
                handshake_burst: 50,
                event_rate: Some(100),
                event_burst: 200,
                max_rooms_per_socket: Some(32),
                max_pending_acks: 100,
                max_buffered_bytes: 1_048_576,
                allowed_origins: None,
            }
        );
    }

    #[test]
    fn the_jwt_and_namespace_defaults() {
        let config = Config::default();
        assert_eq!(config.jwt.leeway, Duration::from_secs(30));
        assert_eq!(config.jwt.sources, vec![TokenSource::auth_token()]);
        assert!(config.jwt.disconnect_on_expiry);
        assert_eq!(
            config.namespaces,
            Namespaces {
                chat: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Claim,
                    relay: vec!["message".into(), "typing".into()],
                },
                notifications: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Claim,
                    relay: vec![],
                },
            }
        );
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
                ("TLS_CERT", "/tmp/cert.pem"),
                ("TLS_KEY", "/tmp/key.pem"),
                ("MAX_CONNECTIONS", "50"),
                ("MAX_CONNECTIONS_PER_IP", "5"),
                ("HANDSHAKE_RATE", "2"),
                ("HANDSHAKE_BURST", "4"),
                ("EVENT_RATE", "off"),
                ("EVENT_BURST", "9"),
                ("MAX_ROOMS_PER_SOCKET", "3"),
                ("MAX_PENDING_ACKS", "7"),
                ("MAX_BUFFERED_BYTES", "65536"),
                ("ALLOWED_ORIGINS", "https://a.example"),
                ("JWT_SECRET", "0123456789abcdef0123"),
                ("JWT_PUBLIC_KEY", "/k/rsa.pem, /k/ec.pem"),
                ("JWT_JWKS", "/k/jwks.json"),
                ("JWT_ISSUER", "https://issuer.test"),
                ("JWT_AUDIENCE", "switchyard"),
                ("JWT_LEEWAY_S", "0"),
                ("JWT_TOKEN_SOURCES", "header, query,auth"),
                ("JWT_DISCONNECT_ON_EXPIRY", "false"),
                ("PUBLIC_NAMESPACES", "/notifications"),
                ("ROOM_POLICY", "/chat=open"),
                (
                    "RELAY_EVENTS",
                    "/chat=message,reaction;/notifications=alert",
                ),
            ],
            &[],
        );
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 8080);
        assert_eq!(config.ping_interval, Duration::from_millis(1500));
        assert_eq!(config.ping_timeout, Duration::from_millis(700));
        assert_eq!(config.max_payload, 4096);
        assert_eq!(
            config.cors,
            Cors::Origins(vec![
                "https://a.example".to_owned(),
                "http://localhost:5173".to_owned()
            ])
        );
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "/tmp/cert.pem".into(),
                key: "/tmp/key.pem".into()
            })
        );
        assert_eq!(
            config.limits,
            LimitSettings {
                max_connections: 50,
                max_connections_per_ip: Some(5),
                handshake_rate: Some(2),
                handshake_burst: 4,
                event_rate: None,
                event_burst: 9,
                max_rooms_per_socket: Some(3),
                max_pending_acks: 7,
                max_buffered_bytes: 65536,
                allowed_origins: Some(vec!["https://a.example".to_owned()]),
            }
        );
        assert_eq!(
            config.jwt,
            JwtSettings {
                secret: Some("0123456789abcdef0123".into()),
                dev_secret: false,
                public_keys: vec!["/k/rsa.pem".into(), "/k/ec.pem".into()],
                jwks: Some("/k/jwks.json".into()),
                issuer: Some("https://issuer.test".into()),
                audience: Some("switchyard".into()),
                leeway: Duration::ZERO,
                sources: vec![
                    TokenSource::BearerHeader,
                    TokenSource::Query("token".into()),
                    TokenSource::auth_token()
                ],
                disconnect_on_expiry: false,
            }
        );
        assert!(config.jwt.enabled());
        assert_eq!(
            config.namespaces,
            Namespaces {
                chat: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Open,
                    relay: vec!["message".into(), "reaction".into()],
                },
                notifications: NamespaceSettings {
                    public: true,
                    rooms: RoomPolicy::Claim,
                    relay: vec!["alert".into()],
                },
            }
        );
    }

    #[test]
    fn flags_override_the_environment_in_both_spellings() {
        let config = config(
            &[("PORT", "8080"), ("HOST", "0.0.0.0"), ("EVENT_RATE", "5")],
            &[
                "--port",
                "9000",
                "--host=[::1]",
                "--cors-origins=*",
                "--event-rate",
                "7",
                "--jwt-dev-secret",
            ],
        );
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "::1");
        assert_eq!(config.cors, Cors::Any);
        assert_eq!(config.cors.to_engine(), Some(CorsConfig::any()));
        assert_eq!(config.limits.event_rate, Some(7));
        assert!(config.jwt.dev_secret);
        assert_eq!(config.jwt.hmac_secret(), Some(DEV_SECRET));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        assert_eq!(
            config(&[("PORT", ""), ("HOST", "  "), ("JWT_SECRET", "")], &[]),
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
        assert_eq!(load(&[], &["mint-token", "-h"]), Ok(Command::Help));
    }

    #[test]
    fn mint_token_takes_its_options_and_the_settings() {
        match load(
            &[("JWT_ISSUER", "iss")],
            &[
                "mint-token",
                "--sub",
                "alice",
                "--rooms=team-*, general",
                "--ttl",
                "60",
                "--dev",
            ],
        ) {
            Ok(Command::MintToken(config, options)) => {
                assert_eq!(config.jwt.issuer.as_deref(), Some("iss"));
                assert_eq!(
                    options,
                    MintOptions {
                        sub: "alice".into(),
                        rooms: Some(vec!["team-*".into(), "general".into()]),
                        ttl: Duration::from_secs(60),
                        dev: true,
                    }
                );
            }
            other => panic!("expected mint-token, got {other:?}"),
        }
        assert_eq!(
            load(&[], &["mint-token"]),
            Ok(Command::MintToken(
                Config::default(),
                MintOptions::default()
            ))
        );
        assert_eq!(
            error(&[], &["mint-token", "--ttl", "0"]),
            "--ttl: expected a number of seconds greater than 0, got 0"
        );
        // The mint options are not server flags.
        assert_eq!(
            error(&[], &["--sub", "x"]),
            "unknown argument \"--sub\" (see --help)"
        );
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
        assert_eq!(
            error(&[("MAX_CONNECTIONS_PER_IP", "0")], &[]),
            "MAX_CONNECTIONS_PER_IP: expected a positive number greater than 0, got 0 (or off)"
        );
        assert_eq!(
            error(&[("MAX_CONNECTIONS", "off")], &[]),
            "MAX_CONNECTIONS: expected a positive number, got \"off\""
        );
        assert_eq!(
            error(&[("JWT_SECRET", "short")], &[]),
            "JWT_SECRET: expected a secret of at least 16 bytes"
        );
        assert_eq!(
            error(&[("JWT_TOKEN_SOURCES", "auth,cookie")], &[]),
            "JWT_TOKEN_SOURCES: expected auth, header or query (comma-separated), got \"cookie\""
        );
        assert_eq!(
            error(&[("JWT_DISCONNECT_ON_EXPIRY", "maybe")], &[]),
            "JWT_DISCONNECT_ON_EXPIRY: expected true or false, got \"maybe\""
        );
        assert_eq!(
            error(&[("PUBLIC_NAMESPACES", "/admin")], &[]),
            "PUBLIC_NAMESPACES: unknown namespace \"/admin\" (expected /chat or /notifications)"
        );
        assert_eq!(
            error(&[("ROOM_POLICY", "/chat=closed")], &[]),
            "ROOM_POLICY: /chat: expected claim or open, got \"closed\""
        );
        assert_eq!(
            error(&[("ROOM_POLICY", "open")], &[]),
            "ROOM_POLICY: expected /namespace=value pairs separated by `;`, got \"open\""
        );
        assert_eq!(
            error(&[("RELAY_EVENTS", "/chat=message,join")], &[]),
            "RELAY_EVENTS: /chat: \"join\" cannot be relayed (reserved)"
        );
        assert_eq!(
            error(&[("TLS_CERT", "/tmp/cert.pem")], &[]),
            "TLS_CERT and TLS_KEY (--tls-cert, --tls-key) go together"
        );
    }

    #[test]
    fn public_namespaces_can_be_reset() {
        let config = config(
            &[("PUBLIC_NAMESPACES", "/chat,/notifications")],
            &["--public-namespaces", "none"],
        );
        assert!(!config.namespaces.chat.public);
        assert!(!config.namespaces.notifications.public);
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

    #[test]
    fn the_help_names_every_setting() {
        for setting in SETTINGS {
            assert!(
                USAGE.contains(setting.flag),
                "{} missing from --help",
                setting.flag
            );
            assert!(
                USAGE.contains(setting.env),
                "{} missing from --help",
                setting.env
            );
        }
    }
}
