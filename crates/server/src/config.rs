//! The server's configuration, declared once with clap: each option is one field below, with
//! its flag, its environment variable and its default, and its doc comment as its help text.
//! `--help` shows them all; the README's tables list the same (a test keeps them in step).
//!
//! Variables are read through a lookup ([`parse`] takes one: the process environment in the
//! binary, a map in tests); blank ones count as unset, and flags win over them. A TOML file
//! (`--config`, see [`crate::config_file`]) gives defaults of its own, under the variables.
//! `switchyard mint-token …` mints a development token with the same settings;
//! `switchyard check-config` prints the effective configuration.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use switchyard::engineio::CorsConfig;
use switchyard_admin::{AdminAuth, AdminMode};
use switchyard_auth::TokenSource;

use crate::config_file::{self, FileSetting, Layers, CONFIG_FLAG};

/// The development secret of `--jwt-dev-secret` and `mint-token --dev`: public, so only for a
/// local try-out.
pub(crate) const DEV_SECRET: &str = "switchyard-development-secret-do-not-use-in-production";

/// The command line: the settings, and optionally the `mint-token` command.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    about = "Switchyard: a Socket.IO server with a chat and a notifications demo.",
    after_help = "Every option can also be set by the environment variable shown with it, or in \
                  the TOML file of --config under its flag's name (port = 3000); flags win over \
                  variables, variables over the file, and an empty variable counts as unset.\n\
                  Logging: RUST_LOG (default `info`), e.g. RUST_LOG=switchyard=debug.",
    disable_help_subcommand = true,
    // The last of repeated flags wins (and a flag wins over its variable, which is passed
    // before the command line: see `parse`).
    args_override_self = true
)]
struct Cli {
    /// A TOML file of settings, keyed by flag name (`port = 3000`); variables and flags win
    /// over it. `check-config` shows the result.
    #[arg(long = CONFIG_FLAG, env = "SWITCHYARD_CONFIG", value_name = "FILE", value_parser = parse_path)]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<SubCommand>,
}

#[derive(Debug, Subcommand)]
enum SubCommand {
    /// Prints an HS256 token signed with JWT_SECRET, or the development secret with --dev;
    /// JWT_ISSUER and JWT_AUDIENCE go in when set.
    #[command(args_override_self = true)]
    MintToken(MintOptions),
    /// Checks the settings (values, key and certificate files) and prints the effective
    /// configuration, secrets masked, as a TOML file; exits 1 when something is wrong.
    CheckConfig,
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub(crate) struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_host)]
    pub host: String,

    /// TCP port, 0 for any free one.
    #[arg(long, env = "PORT", default_value = "3000", value_parser = parse_port)]
    pub port: u16,

    /// Time between server pings, in milliseconds.
    #[arg(long = "ping-interval-ms", env = "PING_INTERVAL_MS", value_name = "MS", default_value = "25000", value_parser = parse_millis)]
    pub ping_interval: Duration,

    /// Time a client has to answer a ping, in milliseconds.
    #[arg(long = "ping-timeout-ms", env = "PING_TIMEOUT_MS", value_name = "MS", default_value = "20000", value_parser = parse_millis)]
    pub ping_timeout: Duration,

    /// Cross-origin access (browsers' CORS): `*`, or comma-separated origins such as
    /// `https://app.example.com`. Unset: same origin only (no CORS headers).
    #[arg(long = "cors-origins", env = "CORS_ORIGINS", value_name = "LIST", value_parser = parse_cors)]
    pub cors: Option<Cors>,

    /// On SIGINT or SIGTERM, how long to wait for connections to close after the drain
    /// window, in milliseconds (0: do not wait).
    #[arg(long = "drain-timeout-ms", env = "DRAIN_TIMEOUT_MS", value_name = "MS", default_value = "3000", value_parser = parse_millis_or_zero)]
    pub drain_timeout: Duration,

    /// Keys of the backend API (/api/v1/…), comma-separated, each at least 16 bytes; callers
    /// send one as `Authorization: Bearer <key>`. Unset: the API is off.
    #[arg(long = "api-keys", env = "API_KEYS", value_name = "KEYS", hide_env_values = true, value_parser = parse_api_keys)]
    pub api_keys: Option<std::vec::Vec<String>>,

    /// Port of the backend API over gRPC (proto/switchyard.proto; HTTP/2, on --host), 0 for
    /// any free one; needs --api-keys. Unset: off.
    #[arg(long = "grpc-port", env = "GRPC_PORT", value_name = "PORT", value_parser = parse_port)]
    pub grpc_port: Option<u16>,

    /// Log lines as `text` (for people) or `json` (one object per line, for log collectors).
    /// The level is RUST_LOG's (default `info`).
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,

    /// Serve the server's metrics at /metrics (Prometheus text format). They tell anyone who
    /// can reach the port how busy the server is: keep the path away from the public at the
    /// proxy, or turn it off.
    #[arg(long, env = "METRICS", value_name = "BOOL", action = ArgAction::Set, default_value = "true", value_parser = parse_bool)]
    pub metrics: bool,

    /// On SIGINT or SIGTERM, the window over which connections are closed, each at a random
    /// instant, in milliseconds, so that the clients reconnecting to other servers do not all
    /// arrive at once (0: all at once).
    #[arg(long = "drain-window-ms", env = "DRAIN_WINDOW_MS", value_name = "MS", default_value = "0", value_parser = parse_millis_or_zero)]
    pub drain_window: Duration,

    /// Connection state recovery: how long the session of a client whose connection broke
    /// (socket id, rooms, the messages it misses) is kept for it to resume, in milliseconds
    /// (0: off, as on the reference server). A resuming client is authenticated again first
    /// and gets back only the rooms its token still allows.
    #[arg(long = "recovery-ms", env = "RECOVERY_MS", value_name = "MS", default_value = "0", value_parser = parse_millis_or_zero)]
    pub recovery: Duration,

    /// Redis server to form a cluster with other Switchyard and Node socket.io servers on it
    /// (`redis://host:port/db`); for `redis-sharded`, one or more nodes of the Redis Cluster,
    /// comma-separated (the others are discovered). Without it the server runs alone, rooms
    /// in memory.
    #[arg(long = "redis-url", env = "REDIS_URL", value_name = "URL", value_parser = parse_trimmed, help_heading = "Cluster")]
    pub redis_url: Option<String>,

    /// The wire protocol of the cluster, that of a Node adapter: `redis` (the classic
    /// `@socket.io/redis-adapter`, `createAdapter`: pub/sub), `redis-sharded` (its
    /// `createShardedAdapter`: sharded pub/sub on a Redis Cluster) or `redis-streams`
    /// (`@socket.io/redis-streams-adapter`: a Redis stream, with which a client recovers its
    /// session on any server). Default: `redis-streams` when recovery is on, else `redis`.
    #[arg(long, env = "ADAPTER", value_name = "KIND", value_parser = parse_adapter, help_heading = "Cluster")]
    pub adapter: Option<AdapterKind>,

    /// The prefix of the cluster's Redis channels (Node's `key`).
    #[arg(long = "redis-prefix", env = "REDIS_PREFIX", value_name = "PREFIX", default_value = "socket.io", value_parser = parse_trimmed, help_heading = "Cluster")]
    pub redis_prefix: String,

    /// How long a request to the other servers of the cluster (fetch sockets, server-side
    /// emit, broadcast with acks) waits for their answers, in milliseconds.
    #[arg(long = "redis-requests-timeout-ms", env = "REDIS_REQUESTS_TIMEOUT_MS", value_name = "MS", default_value = "5000", value_parser = parse_millis, help_heading = "Cluster")]
    pub redis_requests_timeout: Duration,

    /// TLS certificate chain, PEM; with --tls-key. Without them the server speaks plain
    /// HTTP/WS.
    #[arg(long, env = "TLS_CERT", value_name = "FILE", requires = "tls_key", value_parser = parse_path, help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (PKCS#8, PKCS#1 or SEC1); with --tls-cert.
    #[arg(long, env = "TLS_KEY", value_name = "FILE", requires = "tls_cert", value_parser = parse_path, help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,

    /// Largest message a client may send, in bytes: a polling body, a WebSocket frame or
    /// message.
    #[arg(long, env = "MAX_PAYLOAD", value_name = "BYTES", default_value = "1000000", value_parser = parse_bytes, help_heading = LIMITS)]
    pub max_payload: usize,

    /// Abuse limits.
    #[command(flatten)]
    pub limits: LimitSettings,

    /// JWT authentication.
    #[command(flatten)]
    pub jwt: JwtSettings,

    /// Bytes of room history kept in memory (a lone server), over all rooms; past it the
    /// rooms written to least recently are forgotten first.
    #[arg(long, env = "HISTORY_MAX_BYTES", value_name = "BYTES", default_value = "67108864", value_parser = parse_bytes, help_heading = LIMITS)]
    pub history_max_bytes: usize,

    /// Bytes of notification inboxes kept in memory (a lone server), over all users, apart
    /// from the room history; past it the inboxes written to least recently are forgotten
    /// first.
    #[arg(long, env = "INBOX_MAX_BYTES", value_name = "BYTES", default_value = "16777216", value_parser = parse_bytes, help_heading = LIMITS)]
    pub inbox_max_bytes: usize,

    /// How long a room's history stays in Redis after its last message, in seconds.
    #[arg(long = "history-ttl-s", env = "HISTORY_TTL_S", value_name = "S", default_value = "604800", value_parser = parse_ttl, help_heading = "Cluster")]
    pub history_ttl: Duration,

    /// Notifications one socket may cause a minute (`notify` and chat mentions), also at once;
    /// past it `notify` is refused and mentions are skipped.
    #[arg(long = "notify-rate", env = "NOTIFY_RATE", value_name = "N", default_value = "30", value_parser = parse_count, help_heading = LIMITS)]
    pub notify_rate: u32,

    /// How long a caller whose call on /calls was declined or not answered waits before
    /// calling the same user again, in milliseconds.
    #[arg(long = "call-retry-cooldown-ms", env = "CALL_RETRY_COOLDOWN_MS", value_name = "MS", default_value = "10000", value_parser = parse_millis, help_heading = LIMITS)]
    pub call_retry_cooldown: Duration,

    /// How long a call on /calls rings before it ends with `no answer`, in milliseconds.
    #[arg(long = "call-ring-timeout-ms", env = "CALL_RING_TIMEOUT_MS", value_name = "MS", default_value = "30000", value_parser = parse_millis)]
    pub call_ring_timeout: Duration,

    /// Per-namespace settings.
    #[command(flatten)]
    pub namespaces: NamespaceOptions,

    /// How webhooks are called.
    #[command(flatten)]
    pub webhooks: WebhookSettings,

    /// The Socket.IO Admin UI's namespace.
    #[command(flatten)]
    pub admin_ui: AdminUiSettings,

    /// The shared documents (Yjs) namespace.
    #[command(flatten)]
    pub docs: DocsSettings,
}

/// The shared documents' namespace (`switchyard-docs`: Yjs documents synced, relayed and
/// stored in SQLite).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Shared documents (Yjs)")]
pub(crate) struct DocsSettings {
    /// Serve shared Yjs documents on --docs-namespace (stored under --data-dir; clients
    /// identified as on /chat). Default: on when the server runs alone, off with --redis-url
    /// (two servers started from one directory would share the default --data-dir: give each
    /// its own); --docs=false turns them off, --docs=true on (then documents converge across
    /// the cluster, each server with its own store).
    #[arg(long = "docs", id = "docs_enabled", env = "DOCS", value_name = "BOOL", action = ArgAction::Set, value_parser = parse_bool)]
    pub enabled: Option<bool>,

    /// The namespace of the shared documents.
    #[arg(long = "docs-namespace", id = "docs_namespace", env = "DOCS_NAMESPACE", value_name = "NSP", default_value = "/docs", value_parser = parse_docs_namespace)]
    pub namespace: String,

    /// Directory of the server's data: the documents' SQLite file `docs.sqlite3` (created if
    /// missing).
    #[arg(long = "data-dir", id = "data_dir", env = "SWITCHYARD_DATA_DIR", value_name = "DIR", default_value = "./switchyard-data", value_parser = parse_path)]
    pub data_dir: PathBuf,

    /// Keep the documents in memory only (lost when the server stops), nothing under
    /// --data-dir.
    #[arg(long = "docs-in-memory", id = "docs_in_memory", env = "DOCS_IN_MEMORY", value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub in_memory: bool,

    /// Largest document update a client may send, in bytes.
    #[arg(long = "docs-max-update-bytes", id = "docs_max_update_bytes", env = "DOCS_MAX_UPDATE_BYTES", value_name = "BYTES", default_value = "262144", value_parser = parse_bytes, help_heading = LIMITS)]
    pub max_update_bytes: usize,

    /// Largest a document's encoded state may become, in bytes (an update that would pass it
    /// is refused); a joining client gets up to this much at once, so keep it under
    /// --max-buffered-bytes. At most 4194304 (4 MiB: what the stacks of the threads that apply
    /// updates cover).
    #[arg(long = "docs-max-document-bytes", id = "docs_max_document_bytes", env = "DOCS_MAX_DOCUMENT_BYTES", value_name = "BYTES", default_value = "524288", value_parser = parse_document_bytes, help_heading = LIMITS)]
    pub max_document_bytes: usize,

    /// Documents one socket may have open at once.
    #[arg(long = "docs-max-per-socket", id = "docs_max_per_socket", env = "DOCS_MAX_PER_SOCKET", value_name = "N", default_value = "8", value_parser = parse_size, help_heading = LIMITS)]
    pub max_per_socket: usize,

    /// Largest awareness update (cursors, names) a client may send, in bytes.
    #[arg(long = "docs-max-awareness-bytes", id = "docs_max_awareness_bytes", env = "DOCS_MAX_AWARENESS_BYTES", value_name = "BYTES", default_value = "8192", value_parser = parse_bytes, help_heading = LIMITS)]
    pub max_awareness_bytes: usize,

    /// Documents the server holds in memory at once, all sockets together (a `doc:join` that
    /// would load one more is refused).
    #[arg(long = "docs-max-open", id = "docs_max_open", env = "DOCS_MAX_OPEN", value_name = "N", default_value = "1000", value_parser = parse_size, help_heading = LIMITS)]
    pub max_open: usize,
}

/// The namespace of the official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Admin UI")]
pub(crate) struct AdminUiSettings {
    /// Turns the Admin UI's namespace on: `USER:BCRYPT_HASH` (a `$2a$`/`$2b$`/`$2y$` hash of
    /// the password, e.g. from `htpasswd -nbB USER PASSWORD`; quote it in a shell), or `off`
    /// for no login (a trusted network only). Unset: no admin namespace. The UI's origin must
    /// be in --cors-origins.
    #[arg(long = "admin-ui-auth", id = "admin_ui_auth", env = "ADMIN_UI_AUTH", value_name = "USER:HASH", hide_env_values = true, value_parser = parse_admin_auth)]
    pub auth: Option<AdminAuth>,

    /// The UI may only look: no join, leave or disconnect.
    #[arg(long = "admin-ui-read-only", id = "admin_ui_read_only", env = "ADMIN_UI_READ_ONLY", value_name = "BOOL", action = ArgAction::Set, default_value = "false", value_parser = parse_bool)]
    pub read_only: bool,

    /// `development`: sockets, rooms and live events; `production`: only the server's
    /// figures (the UI's Dashboard and Servers pages).
    #[arg(long = "admin-ui-mode", id = "admin_ui_mode", env = "ADMIN_UI_MODE", value_name = "MODE", default_value = "development", value_parser = parse_admin_mode)]
    pub mode: AdminMode,

    /// The namespace the UI connects to (its "Admin namespace" field).
    #[arg(long = "admin-ui-namespace", id = "admin_ui_namespace", env = "ADMIN_UI_NAMESPACE", value_name = "NSP", default_value = "/admin", value_parser = parse_admin_namespace)]
    pub namespace: String,

    /// This server's name on the UI's Servers page (distinct per server of a cluster).
    /// Unset: the host name.
    #[arg(long = "admin-ui-server-id", id = "admin_ui_server_id", env = "ADMIN_UI_SERVER_ID", value_name = "ID", value_parser = parse_trimmed)]
    pub server_id: Option<String>,
}

impl Config {
    /// What no single setting can check: the namespaces' webhooks
    /// ([`Namespaces::check`]), and the gRPC API's keys.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.namespaces
            .resolve()
            .check(self.webhooks.secret.is_some())?;
        if self.grpc_port.is_some() && self.api_keys.is_none() {
            return Err("--grpc-port needs --api-keys (API_KEYS)".to_owned());
        }
        if self.docs_enabled()
            && self.admin_ui.auth.is_some()
            && self.docs.namespace == self.admin_ui.namespace
        {
            return Err(format!(
                "--docs-namespace and --admin-ui-namespace are both {}",
                self.docs.namespace
            ));
        }
        Ok(())
    }

    /// Whether the shared documents are served: `--docs` if given, else on when the server
    /// runs alone and off in a cluster (`--redis-url`). Off there because each server would
    /// keep its own copies of a document (clients on different servers would not see each
    /// other's edits), and servers started side by side (the cluster demo) would share the
    /// default data directory, which one server at a time may open.
    pub(crate) fn docs_enabled(&self) -> bool {
        self.docs.enabled.unwrap_or(self.redis_url.is_none())
    }
}

/// How the app backend's webhooks are called (which ones: the namespace settings).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = WEBHOOKS)]
pub(crate) struct WebhookSettings {
    /// Key of the requests' HMAC-SHA256 signature (header `X-Switchyard-Signature`), at
    /// least 16 bytes; required with a webhook URL.
    #[arg(long = "webhook-secret", id = "webhook_secret", env = "WEBHOOK_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub secret: Option<String>,

    /// Time a webhook call may take (waiting for a free slot, connecting, sending, the whole
    /// answer), in milliseconds, at most 300000.
    #[arg(long = "webhook-timeout-ms", id = "webhook_timeout", env = "WEBHOOK_TIMEOUT_MS", value_name = "MS", default_value = "5000", value_parser = parse_webhook_timeout)]
    pub timeout: Duration,

    /// Webhook calls in flight at once over all clients, for each kind of call (connect,
    /// disconnect, event), at most 10000; a call that finds none free within its timeout fails
    /// (reason `busy`).
    #[arg(long = "webhook-concurrency", id = "webhook_concurrency", env = "WEBHOOK_CONCURRENCY", value_name = "N", default_value = "128", value_parser = parse_webhook_concurrency)]
    pub concurrency: usize,

    /// Forwarded events one socket may have waiting for the backend; past it the event's ack
    /// is {error: "too many pending webhook calls"}.
    #[arg(long = "webhook-max-pending", id = "webhook_max_pending", env = "WEBHOOK_MAX_PENDING", value_name = "N", default_value = "8", value_parser = parse_size)]
    pub max_pending: usize,

    /// Retries of a disconnect call that failed, 0 to 10 (the only idempotent call: the
    /// backend dedupes on `X-Switchyard-Delivery`); a connect or event call that fails is
    /// answered to the client at once.
    #[arg(long = "webhook-retries", id = "webhook_retries", env = "WEBHOOK_RETRIES", value_name = "N", default_value = "3", value_parser = parse_retries)]
    pub retries: u32,

    /// PEM file of certificate authorities trusted for https:// webhook URLs, besides the
    /// system's (a backend with a certificate of a private CA).
    #[arg(long = "webhook-ca-file", id = "webhook_ca_file", env = "WEBHOOK_CA_FILE", value_name = "FILE", value_parser = parse_path)]
    pub ca_file: Option<PathBuf>,

    /// Largest answer read from the backend, in bytes; a longer one fails the call.
    #[arg(long = "webhook-max-response-bytes", id = "webhook_max_response_bytes", env = "WEBHOOK_MAX_RESPONSE_BYTES", value_name = "BYTES", default_value = "65536", value_parser = parse_bytes)]
    pub max_response_bytes: usize,
}

// The off-able limits are typed `std::option::Option` (a full path): clap's derive then takes
// the type as it is, from the value parser (which reads `off` as `None`), instead of reading a
// bare `Option` as "the flag may be absent".

/// The abuse limits. `None` is off.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = LIMITS)]
pub(crate) struct LimitSettings {
    /// Connections in total.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "N", default_value = "10000", value_parser = parse_size)]
    pub max_connections: usize,

    /// Connections from one IP address, or off.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", value_name = "N", default_value = "256", value_parser = parse_size_or_off)]
    pub max_connections_per_ip: std::option::Option<usize>,

    /// New connections per second per IP address, or off.
    #[arg(long, env = "HANDSHAKE_RATE", value_name = "N", default_value = "20", value_parser = parse_count_or_off)]
    pub handshake_rate: std::option::Option<u32>,

    /// Handshakes an IP address may make at once.
    #[arg(long, env = "HANDSHAKE_BURST", value_name = "N", default_value = "50", value_parser = parse_count)]
    pub handshake_burst: u32,

    /// Events (and namespace CONNECTs) per second per connection, or off: leaving and
    /// re-joining a namespace does not refill it. Past it events are dropped (acks get
    /// {error: "rate limited"}, CONNECTs a connect_error), the client gets a `rate-limit`
    /// event, and one that keeps flooding for a burst more has its connection closed.
    #[arg(long, env = "EVENT_RATE", value_name = "N", default_value = "100", value_parser = parse_count_or_off)]
    pub event_rate: std::option::Option<u32>,

    /// Events a connection may send at once.
    #[arg(long, env = "EVENT_BURST", value_name = "N", default_value = "200", value_parser = parse_count)]
    pub event_burst: u32,

    /// Rooms one socket may be in (its personal room user:<id> included), or off.
    #[arg(long, env = "MAX_ROOMS_PER_SOCKET", value_name = "N", default_value = "32", value_parser = parse_size_or_off)]
    pub max_rooms_per_socket: std::option::Option<usize>,

    /// Acks the server may await from one socket.
    #[arg(long, env = "MAX_PENDING_ACKS", value_name = "N", default_value = "100", value_parser = parse_size)]
    pub max_pending_acks: usize,

    /// Outgoing bytes buffered per connection; past it volatile packets are dropped, then the
    /// connection is closed.
    #[arg(long, env = "MAX_BUFFERED_BYTES", value_name = "BYTES", default_value = "1048576", value_parser = parse_bytes)]
    pub max_buffered_bytes: usize,

    /// Namespaces one connection may join (or be joining) at once; past it a CONNECT gets a
    /// connect_error `too many namespaces`.
    #[arg(long, env = "MAX_NAMESPACES_PER_CONNECTION", value_name = "N", default_value = "32", value_parser = parse_size)]
    pub max_namespaces_per_connection: usize,

    /// Largest CONNECT payload (the client's `auth`), in bytes; a bigger one gets a
    /// connect_error `auth payload too large` without being parsed.
    #[arg(long, env = "MAX_AUTH_BYTES", value_name = "BYTES", default_value = "16384", value_parser = parse_bytes)]
    pub max_auth_bytes: usize,

    /// Time a peer may take to accept written bytes; a stalled peer (one that never reads)
    /// is disconnected within this, or within pingInterval + pingTimeout on WebSocket.
    #[arg(long = "write-timeout-ms", env = "WRITE_TIMEOUT_MS", value_name = "MS", default_value = "10000", value_parser = parse_millis)]
    pub write_timeout: Duration,

    /// Time a long-polling POST body may take to arrive; past it: 408 and the session ends.
    #[arg(long = "body-timeout-ms", env = "BODY_TIMEOUT_MS", value_name = "MS", default_value = "10000", value_parser = parse_millis)]
    pub body_timeout: Duration,

    /// Prefix length by which IPv6 peers are grouped for the per-address limits (IPv4 and
    /// IPv4-mapped addresses count one by one).
    #[arg(long, env = "IPV6_PREFIX_LEN", value_name = "BITS", default_value = "64", value_parser = parse_prefix_len)]
    pub ipv6_prefix_len: u8,

    /// Most bytes of request headers (names and values) and URI a handshake may carry; the session
    /// keeps them for its life. A bigger handshake gets 431 with a JSON body.
    #[arg(long, env = "MAX_HEADER_BYTES", value_name = "BYTES", default_value = "16384", value_parser = parse_bytes)]
    pub max_header_bytes: usize,

    /// Origins allowed to connect (the `Origin` header), comma-separated, or off (`*` too):
    /// any. Clients sending no Origin are not concerned.
    #[arg(long, env = "ALLOWED_ORIGINS", value_name = "LIST", default_value = "off", value_parser = parse_allowed_origins)]
    pub allowed_origins: std::option::Option<Vec<String>>,
}

/// The JWT settings; authentication is on when any key is given (else dev mode: clients name
/// themselves with auth.name on /chat, auth.user on /notifications).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "JWT authentication (on when a key is given)")]
pub(crate) struct JwtSettings {
    /// HMAC secret, at least 16 bytes: HS256/384/512 tokens.
    #[arg(long = "jwt-secret", env = "JWT_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub secret: Option<String>,

    /// Also accept the documented development secret (never in production).
    #[arg(long = "jwt-dev-secret", env = "JWT_DEV_SECRET", value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub dev_secret: bool,

    /// Public keys, PEM files, comma-separated: RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384),
    /// Ed25519 (EdDSA).
    #[arg(long = "jwt-public-key", env = "JWT_PUBLIC_KEY", value_name = "FILES", value_parser = parse_paths)]
    pub public_keys: Option<std::vec::Vec<PathBuf>>,

    /// JSON Web Key Set file; keys chosen by `kid`; re-read when the file changes (checked at
    /// most once a second).
    #[arg(long = "jwt-jwks", env = "JWT_JWKS", value_name = "FILE", value_parser = parse_path)]
    pub jwks: Option<PathBuf>,

    /// Required `iss`. Unset: not checked.
    #[arg(long = "jwt-issuer", env = "JWT_ISSUER", value_name = "ISS", value_parser = parse_trimmed)]
    pub issuer: Option<String>,

    /// Required `aud`. Unset: not checked.
    #[arg(long = "jwt-audience", env = "JWT_AUDIENCE", value_name = "AUD", value_parser = parse_trimmed)]
    pub audience: Option<String>,

    /// Clock skew allowed on exp and nbf, in seconds.
    #[arg(long = "jwt-leeway-s", env = "JWT_LEEWAY_S", value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub leeway: Duration,

    /// Where the token is looked for, in order, comma-separated: auth (auth.token), header
    /// (Authorization: Bearer), query (?token=).
    #[arg(long = "jwt-token-sources", env = "JWT_TOKEN_SOURCES", value_name = "LIST", default_value = "auth", value_parser = parse_sources)]
    pub sources: std::vec::Vec<TokenSource>,

    /// Send `auth_expired` and disconnect a socket when its token expires.
    #[arg(long = "jwt-disconnect-on-expiry", env = "JWT_DISCONNECT_ON_EXPIRY", value_name = "BOOL", action = ArgAction::Set, default_value = "true", value_parser = parse_bool)]
    pub disconnect_on_expiry: bool,

    /// For development only: `POST /auth/dev-token` mints development-secret tokens for any
    /// name, unauthenticated. Effective only without a real key (none configured, or only
    /// --jwt-dev-secret); with JWT_SECRET, public keys or a JWKS it is always off.
    #[arg(long = "dev-tokens", env = "DEV_TOKENS", value_name = "BOOL", action = ArgAction::Set, default_value = "true", value_parser = parse_bool)]
    pub dev_tokens: bool,

    /// Lifetime of the tokens of `POST /auth/dev-token`, in seconds (10 to 86400).
    #[arg(long = "dev-token-ttl-s", env = "DEV_TOKEN_TTL_S", value_name = "S", default_value = "300", value_parser = parse_dev_token_ttl)]
    pub dev_token_ttl: Duration,
}

impl JwtSettings {
    /// Whether any key is configured, i.e. tokens are checked.
    pub(crate) fn enabled(&self) -> bool {
        self.secret.is_some()
            || self.dev_secret
            || self
                .public_keys
                .as_ref()
                .is_some_and(|keys| !keys.is_empty())
            || self.jwks.is_some()
    }

    /// Dev mode: no key configured, or the development secret accepted; development tokens
    /// are then accepted, so minting them gives nothing away.
    pub(crate) fn dev_mode(&self) -> bool {
        !self.enabled() || self.dev_secret
    }

    /// Whether a key other than the development secret is configured.
    fn real_key(&self) -> bool {
        self.secret.is_some()
            || self
                .public_keys
                .as_ref()
                .is_some_and(|keys| !keys.is_empty())
            || self.jwks.is_some()
    }

    /// Whether `POST /auth/dev-token` answers: `--dev-tokens` and no real key. A server with a
    /// real key never hands out tokens over HTTP, even with --jwt-dev-secret left on (which
    /// still accepts tokens signed offline with the published secret).
    pub(crate) fn dev_tokens_on(&self) -> bool {
        self.dev_mode() && self.dev_tokens && !self.real_key()
    }

    /// The HMAC secrets accepted: the configured one, and the development one if allowed.
    pub(crate) fn hmac_secrets(&self) -> Vec<&str> {
        self.secret
            .as_deref()
            .into_iter()
            .chain(self.dev_secret.then_some(DEV_SECRET))
            .collect()
    }
}

/// The heading of the limits in `--help`.
const LIMITS: &str = "Limits (`off` disables those that say so)";

/// The heading of the webhook settings in `--help`.
const WEBHOOKS: &str = "Webhooks to the app backend";

/// The default of `--room-policy`.
const DEFAULT_ROOM_POLICY: &str = "/chat=claim;/notifications=claim";
/// The default of `--relay-events`.
const DEFAULT_RELAY_EVENTS: &str = "/chat=message,typing;/notifications=";
/// The default of `--history`.
const DEFAULT_HISTORY: &str = "/chat=50;/notifications=0";
/// The most messages a room may keep.
const MAX_HISTORY: usize = 1000;

/// The namespace options as given; [`NamespaceOptions::resolve`] makes them per-namespace
/// settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Namespaces")]
pub(crate) struct NamespaceOptions {
    /// Namespaces open without a token (with JWT on), comma-separated: /chat, /notifications,
    /// or none.
    #[arg(long, env = "PUBLIC_NAMESPACES", value_name = "LIST", default_value = "none", value_parser = parse_namespace_set)]
    pub public_namespaces: NamespaceSet,

    /// Rooms a user may join, per namespace: `claim` (the token's `rooms` claim, `*`
    /// wildcards) or `open`, e.g. /chat=open;/notifications=claim. Public namespaces are open.
    /// A namespace left out keeps its default; repeated flags add up.
    #[arg(long, env = "ROOM_POLICY", value_name = "MAP", default_value = DEFAULT_ROOM_POLICY, value_parser = parse_room_policy)]
    pub room_policy: Vec<PerNamespace<RoomPolicy>>,

    /// Client events relayed to a room ({room, ...} to the room, with sender and time), per
    /// namespace, e.g. /chat=message,typing,reaction. A namespace left out keeps its default;
    /// repeated flags add up.
    #[arg(long, env = "RELAY_EVENTS", value_name = "MAP", default_value = DEFAULT_RELAY_EVENTS, value_parser = parse_relay_events)]
    pub relay_events: Vec<PerNamespace<Vec<String>>>,

    /// Namespaces whose rooms announce their users: a `presence` event { room, user, online }
    /// to the room when a user's first socket joins it or the last one leaves (a user with
    /// three tabs counts once), cluster-wide; comma-separated, or none.
    #[arg(long, env = "PRESENCE", value_name = "LIST", default_value = "/chat", value_parser = parse_namespace_set)]
    pub presence: NamespaceSet,

    /// Namespaces where connection state recovery is on when --recovery-ms is set,
    /// comma-separated, or none; elsewhere a client that drops starts a new session.
    #[arg(long = "recovery-namespaces", env = "RECOVERY_NAMESPACES", value_name = "LIST", default_value = "/chat,/notifications", value_parser = parse_namespace_set)]
    pub recovery_namespaces: NamespaceSet,

    /// Messages kept per room, per namespace (0: none), e.g. /chat=50: a client joining a
    /// room gets them in the join ack, the API reads them. In memory on a lone server, in
    /// Redis when clustered. At most 1000.
    #[arg(long, env = "HISTORY", value_name = "MAP", default_value = DEFAULT_HISTORY, value_parser = parse_history)]
    pub history: Vec<PerNamespace<usize>>,

    /// The app backend's webhook endpoint, per namespace, e.g.
    /// /chat=https://backend.internal/switchyard (https:// checked against the system's CAs and
    /// --webhook-ca-file, or plain http:// on a private network; the requests are signed with
    /// --webhook-secret). Which calls it gets: --webhook-connect, --webhook-disconnect,
    /// --webhook-events.
    #[arg(long, env = "WEBHOOK_URL", value_name = "MAP", value_parser = parse_webhook_urls, help_heading = WEBHOOKS)]
    pub webhook_url: Vec<PerNamespace<String>>,

    /// Namespaces whose connections the backend decides (allow or refuse, user data, rooms),
    /// comma-separated, or none. When the backend cannot answer, the client gets a
    /// connect_error.
    #[arg(long, env = "WEBHOOK_CONNECT", value_name = "LIST", default_value = "none", value_parser = parse_namespace_set, help_heading = WEBHOOKS)]
    pub webhook_connect: NamespaceSet,

    /// Namespaces whose disconnections (with the reason) are posted to the backend,
    /// comma-separated, or none.
    #[arg(long, env = "WEBHOOK_DISCONNECT", value_name = "LIST", default_value = "none", value_parser = parse_namespace_set, help_heading = WEBHOOKS)]
    pub webhook_disconnect: NamespaceSet,

    /// Client events forwarded to the backend, per namespace, e.g. /chat=order,vote; the
    /// backend's JSON answer is the event's ack.
    #[arg(long, env = "WEBHOOK_EVENTS", value_name = "MAP", value_parser = parse_relay_events, help_heading = WEBHOOKS)]
    pub webhook_events: Vec<PerNamespace<Vec<String>>>,
}

impl NamespaceOptions {
    /// The settings of each namespace: the defaults, then the maps in order.
    pub(crate) fn resolve(&self) -> Namespaces {
        let mut namespaces = Namespaces::base();
        namespaces.chat.public = self.public_namespaces.chat;
        namespaces.notifications.public = self.public_namespaces.notifications;
        for map in &self.room_policy {
            for (namespace, policy) in &map.0 {
                namespaces.get_mut(*namespace).rooms = *policy;
            }
        }
        for map in &self.relay_events {
            for (namespace, events) in &map.0 {
                namespaces.get_mut(*namespace).relay = events.clone();
            }
        }
        for map in &self.webhook_url {
            for (namespace, url) in &map.0 {
                namespaces.get_mut(*namespace).webhook.url = Some(url.clone());
            }
        }
        namespaces.chat.presence = self.presence.chat;
        namespaces.notifications.presence = self.presence.notifications;
        namespaces.chat.recovery = self.recovery_namespaces.chat;
        namespaces.notifications.recovery = self.recovery_namespaces.notifications;
        for map in &self.history {
            for (namespace, size) in &map.0 {
                namespaces.get_mut(*namespace).history = *size;
            }
        }
        namespaces.chat.webhook.connect = self.webhook_connect.chat;
        namespaces.notifications.webhook.connect = self.webhook_connect.notifications;
        namespaces.chat.webhook.disconnect = self.webhook_disconnect.chat;
        namespaces.notifications.webhook.disconnect = self.webhook_disconnect.notifications;
        for map in &self.webhook_events {
            for (namespace, events) in &map.0 {
                namespaces.get_mut(*namespace).webhook.events = events.clone();
            }
        }
        namespaces
    }
}

/// A demo namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    /// `/chat`.
    Chat,
    /// `/notifications`.
    Notifications,
}

/// A set of the demo namespaces (the public ones, those with a connect webhook, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NamespaceSet {
    /// `/chat`.
    pub chat: bool,
    /// `/notifications`.
    pub notifications: bool,
}

/// A `/namespace=value;…` map, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PerNamespace<T>(pub Vec<(Ns, T)>);

/// Which rooms a user may join in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomPolicy {
    /// The rooms the token's `rooms` claim allows.
    Claim,
    /// Any room.
    Open,
}

/// The settings of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceSettings {
    /// Whether clients connect without a token (with JWT on).
    pub public: bool,
    /// Which rooms a user may join (with JWT on, on a namespace that is not public).
    pub rooms: RoomPolicy,
    /// Client events relayed to rooms.
    pub relay: Vec<String>,
    /// Whether rooms announce their users.
    pub presence: bool,
    /// Whether connection state recovery is on (with --recovery-ms).
    pub recovery: bool,
    /// Messages kept per room.
    pub history: usize,
    /// What the app backend is told and asked.
    pub webhook: WebhookHooks,
}

/// A namespace's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WebhookHooks {
    /// The backend's endpoint (`http://…`).
    pub url: Option<String>,
    /// Whether the backend decides connections.
    pub connect: bool,
    /// Whether disconnections are posted.
    pub disconnect: bool,
    /// Client events forwarded, answered by the backend.
    pub events: Vec<String>,
}

impl WebhookHooks {
    /// Whether any call goes to the backend.
    pub(crate) fn any(&self) -> bool {
        self.connect || self.disconnect || !self.events.is_empty()
    }
}

/// Settings of `/chat` and `/notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespaces {
    /// `/chat`.
    pub chat: NamespaceSettings,
    /// `/notifications`.
    pub notifications: NamespaceSettings,
}

impl Namespaces {
    /// What a namespace left out of a map keeps: the same as [`DEFAULT_ROOM_POLICY`] and
    /// [`DEFAULT_RELAY_EVENTS`] (a test checks).
    fn base() -> Namespaces {
        Namespaces {
            chat: NamespaceSettings {
                public: false,
                rooms: RoomPolicy::Claim,
                relay: vec!["message".to_owned(), "typing".to_owned()],
                presence: true,
                recovery: true,
                history: 50,
                webhook: WebhookHooks::default(),
            },
            notifications: NamespaceSettings {
                public: false,
                rooms: RoomPolicy::Claim,
                relay: Vec::new(),
                presence: false,
                recovery: true,
                history: 0,
                webhook: WebhookHooks::default(),
            },
        }
    }

    /// The namespaces by name.
    pub(crate) fn each(&self) -> [(&'static str, &NamespaceSettings); 2] {
        [
            ("/chat", &self.chat),
            ("/notifications", &self.notifications),
        ]
    }

    /// What no single flag can check: webhooks without an endpoint or a secret, an event
    /// both relayed and forwarded.
    pub(crate) fn check(&self, webhook_secret: bool) -> Result<(), String> {
        for (name, settings) in self.each() {
            let hooks = &settings.webhook;
            if hooks.any() && hooks.url.is_none() {
                return Err(format!(
                    "{name}: webhooks are on but it has no --webhook-url"
                ));
            }
            if hooks.url.is_some() && !webhook_secret {
                return Err(format!(
                    "{name}: a webhook URL needs --webhook-secret (WEBHOOK_SECRET), with which the backend checks that requests come from this server"
                ));
            }
            if name != "/chat" && settings.history > 0 {
                return Err(format!(
                    "{name}: history keeps chat messages, which only /chat has (--history {name}=0)"
                ));
            }
            if let Some(event) = hooks
                .events
                .iter()
                .find(|event| settings.relay.contains(event))
            {
                return Err(format!(
                    "{name}: event {event:?} is both relayed and forwarded to the webhook"
                ));
            }
        }
        Ok(())
    }

    fn get_mut(&mut self, namespace: Ns) -> &mut NamespaceSettings {
        match namespace {
            Ns::Chat => &mut self.chat,
            Ns::Notifications => &mut self.notifications,
        }
    }
}

/// Which origins may use the server from another origin (browsers' CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cors {
    /// Any origin.
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    Origins(Vec<String>),
}

impl Cors {
    /// The engine's policy for this setting.
    pub(crate) fn to_engine(&self) -> CorsConfig {
        match self {
            Cors::Any => CorsConfig::any(),
            // Credentials allowed: socket.io-client's `withCredentials` (the Admin UI sets it,
            // for cookie-based sticky sessions) needs them, and only these origins get them.
            Cors::Origins(origins) => {
                CorsConfig::origins(origins.iter().cloned()).with_credentials()
            }
        }
    }
}

/// TLS certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

impl Config {
    /// The TLS files, when both are given (the parser refuses one without the other).
    pub(crate) fn tls(&self) -> Option<TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// The engine's cross-origin policy, `None` for same-origin only.
    pub(crate) fn cors_config(&self) -> Option<CorsConfig> {
        self.cors.as_ref().map(Cors::to_engine)
    }

    /// Reads the configuration from the process environment and command line.
    pub(crate) fn load() -> Result<Command, clap::Error> {
        parse(
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path),
            std::env::args_os(),
        )
    }
}

/// What `mint-token` signs.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub(crate) struct MintOptions {
    /// The user id: the `sub` claim.
    #[arg(long, value_name = "ID", default_value = "dev", value_parser = parse_sub)]
    pub sub: String,

    /// Comma-separated room patterns for the `rooms` claim. Unset: no `rooms` claim.
    #[arg(long, value_name = "PATTERNS", value_parser = parse_rooms)]
    pub rooms: Option<std::vec::Vec<String>>,

    /// Lifetime, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// Sign with the development secret (which the server accepts with --jwt-dev-secret).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub dev: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the server with this configuration.
    Run(Config),
    /// Print a token signed with the configuration's secret.
    MintToken(Config, MintOptions),
    /// Check the configuration; the text is the effective configuration to print.
    CheckConfig(Config, String),
}

/// The command line's declaration, as `--help` shows it. Every setting also applies after
/// `mint-token` (it is global), where `--help` lists it after mint-token's own options.
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_args(|arg| {
        let order = arg.get_display_order();
        arg.global(true).display_order(order + 100)
    })
}

/// Reads `args` (the program name first) with the variables that `env` looks up and the
/// configuration file, if `--config` or its variable names one, through `read`.
///
/// Clap would read each variable from the process environment when the option is declared,
/// and take an empty one as a value; instead the variables come from `env`, blank ones are
/// skipped, and each set one is passed as `--flag=value` before the command line, where the
/// user's flags override it. The file's settings are passed the same way before the
/// variables. Help and errors are clap's, to print with [`clap::Error::exit`].
pub(crate) fn parse<I, T>(
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&Path) -> std::io::Result<String>,
    args: I,
) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let documented = command();
    let mut args = args.into_iter().map(Into::into);
    let mut argv = vec![args.next().unwrap_or_else(|| "switchyard".into())];
    let user_args: Vec<OsString> = args.collect();
    // Built, so that the options can say how clap names them in errors.
    let mut built = documented.clone();
    built.build();
    let mut parser = documented.clone().mut_args(|arg| arg.env(None));

    let file = config_file_path(&env, &user_args);
    let file_settings = match &file {
        Some(path) => read_config_file(path, &read, &built)
            .map_err(|message| parser.error(ErrorKind::Io, message))?,
        None => Vec::new(),
    };
    let mut injected = Vec::new();
    for setting in &file_settings {
        argv.push(format!("--{}={}", setting.long, setting.value).into());
        let arg = built
            .get_arguments()
            .find(|arg| arg.get_long() == Some(setting.long.as_str()));
        injected.push(Injected {
            arg: arg.map(ToString::to_string).unwrap_or_default(),
            value: setting.value.clone(),
            hidden: arg.is_some_and(|arg| arg.is_hide_env_values_set()),
            source: Source::File {
                path: file.clone().unwrap_or_default(),
                key: setting.key.clone(),
            },
        });
    }
    let mut variables = Vec::new();
    for arg in built.get_arguments() {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let Some(variable) = variable.to_str() else {
            continue;
        };
        let Some(value) = env(variable).filter(|value| !value.trim().is_empty()) else {
            continue;
        };
        argv.push(format!("--{long}={value}").into());
        variables.push((arg.get_id().to_string(), variable.to_owned()));
        injected.push(Injected {
            arg: arg.to_string(),
            value,
            hidden: arg.is_hide_env_values_set(),
            source: Source::Variable(variable.to_owned()),
        });
    }
    let user_count = user_args.len();
    argv.extend(user_args);
    let matches = match parser.try_get_matches_from_mut(&argv) {
        Ok(matches) => matches,
        Err(error) if error.kind() == ErrorKind::DisplayHelp => {
            // The parser's help lacks the variables, cleared above: show the declaration's.
            return Err(documented
                .try_get_matches_from(&argv)
                .err()
                .unwrap_or(error));
        }
        Err(error) => return Err(name_the_source(error, &mut parser, &injected)),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut parser))?;
    Ok(match cli.command {
        None => Command::Run(cli.config),
        Some(SubCommand::MintToken(options)) => Command::MintToken(cli.config, options),
        Some(SubCommand::CheckConfig) => {
            let flags = command_line_ids(&documented, &argv[0], &argv[argv.len() - user_count..]);
            let layers = Layers {
                file: file.as_deref(),
                file_settings: &file_settings,
                variables: &variables,
                flags: &flags,
            };
            let text =
                config_file::effective(&built, &matches, &layers, &cli.config.namespaces.resolve());
            Command::CheckConfig(cli.config, text)
        }
    })
}

/// The ids of the settings that `args`, the command line alone, gives.
fn command_line_ids(
    documented: &clap::Command,
    program: &OsString,
    args: &[OsString],
) -> Vec<String> {
    // What the command line gives is already known valid with the other layers; alone it may
    // miss what they complete (a TLS key for a certificate), so errors are not its concern.
    let matches = documented
        .clone()
        .mut_args(|arg| arg.env(None))
        .ignore_errors(true)
        .try_get_matches_from(std::iter::once(program).chain(args));
    let Ok(matches) = matches else {
        return Vec::new();
    };
    let matches = match matches.subcommand() {
        Some((_, sub)) => sub.clone(),
        None => matches,
    };
    documented
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .collect()
}

/// The file `--config` names (the last one, as for every flag), or else its variable.
fn config_file_path(env: &impl Fn(&str) -> Option<String>, args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let mut found = None;
    let mut args = args.iter().map(|arg| arg.to_str());
    while let Some(arg) = args.next() {
        match arg {
            Some("--") => break,
            Some(arg) if arg == flag => found = args.next().flatten().map(PathBuf::from),
            Some(arg) => {
                if let Some(path) = arg
                    .strip_prefix(&flag)
                    .and_then(|rest| rest.strip_prefix('='))
                {
                    found = Some(PathBuf::from(path));
                }
            }
            None => {}
        }
    }
    found.or_else(|| {
        env("SWITCHYARD_CONFIG")
            .filter(|value| !value.trim().is_empty())
            .map(|value| PathBuf::from(value.trim()))
    })
}

/// The settings of the file at `path`, or why it cannot be used.
fn read_config_file(
    path: &Path,
    read: &impl Fn(&Path) -> std::io::Result<String>,
    built: &clap::Command,
) -> Result<Vec<FileSetting>, String> {
    let text = read(path).map_err(|error| {
        format!(
            "cannot read the configuration file {}: {error}",
            path.display()
        )
    })?;
    let longs: Vec<&str> = built
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|long| *long != "help")
        .collect();
    config_file::settings_from_file(&text, &longs)
        .map_err(|message| format!("configuration file {}: {message}", path.display()))
}

/// A setting passed as a flag on behalf of a variable or the file.
struct Injected {
    /// The flag as clap names it in errors (`--port <PORT>`).
    arg: String,
    value: String,
    /// Whether its value must not be shown (a secret).
    hidden: bool,
    source: Source,
}

/// Where an injected setting came from.
enum Source {
    Variable(String),
    File { path: PathBuf, key: String },
}

/// `error`, naming the variable or the file's key when the value it refuses came from one
/// (they are passed first, so a bad one is what fails, even when a flag would override it).
fn name_the_source(
    error: clap::Error,
    parser: &mut clap::Command,
    injected: &[Injected],
) -> clap::Error {
    if error.kind() != ErrorKind::ValueValidation {
        return error;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let reason = std::error::Error::source(&error)
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    let Some(source) = injected
        .iter()
        .find(|source| &source.arg == arg && &source.value == value)
    else {
        // From the command line: clap's message quotes the value, unless it is a secret.
        let secret = parser
            .get_arguments()
            .any(|declared| declared.is_hide_env_values_set() && declared.to_string() == *arg);
        if secret {
            return parser.error(
                ErrorKind::ValueValidation,
                format!("invalid value for '{arg}'{reason}"),
            );
        }
        return error;
    };
    let shown = if source.hidden {
        String::new()
    } else {
        format!(" '{value}'")
    };
    let origin = match &source.source {
        Source::Variable(variable) => format!("{variable} (the variable of '{arg}')"),
        Source::File { path, key } => {
            format!("`{key}` in {} (the file's '{arg}')", path.display())
        }
    };
    parser.error(
        ErrorKind::ValueValidation,
        format!("invalid value{shown} for {origin}{reason}"),
    )
}

/// Events the binary handles itself (Socket.IO's own are `switchyard::proto::RESERVED_EVENTS`).
const BINARY_EVENTS: &[&str] = &["join", "leave", "notify", "presence", "history"];

fn parse_namespace(name: &str) -> Result<Ns, String> {
    match name {
        "/chat" => Ok(Ns::Chat),
        "/notifications" => Ok(Ns::Notifications),
        _ => Err(format!(
            "unknown namespace {name:?} (expected /chat or /notifications)"
        )),
    }
}

fn parse_namespace_set(value: &str) -> Result<NamespaceSet, String> {
    let mut public = NamespaceSet::default();
    if value.trim() == "none" {
        return Ok(public);
    }
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match parse_namespace(name)? {
            Ns::Chat => public.chat = true,
            Ns::Notifications => public.notifications = true,
        }
    }
    Ok(public)
}

/// `/ns=value;/ns=value` pairs.
fn parse_map<T>(
    value: &str,
    parse: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<PerNamespace<T>, String> {
    let mut map = Vec::new();
    for pair in value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            format!("expected /namespace=value pairs separated by `;`, got {pair:?}")
        })?;
        let name = name.trim();
        let namespace = parse_namespace(name)?;
        map.push((namespace, parse(name, value)?));
    }
    Ok(PerNamespace(map))
}

fn parse_room_policy(value: &str) -> Result<PerNamespace<RoomPolicy>, String> {
    parse_map(value, |name, policy| match policy.trim() {
        "claim" => Ok(RoomPolicy::Claim),
        "open" => Ok(RoomPolicy::Open),
        other => Err(format!("{name}: expected claim or open, got {other:?}")),
    })
}

fn parse_relay_events(value: &str) -> Result<PerNamespace<Vec<String>>, String> {
    parse_map(value, |name, events| {
        events
            .split(',')
            .map(str::trim)
            .filter(|event| !event.is_empty())
            .map(|event| parse_event(name, event))
            .collect()
    })
}

fn parse_history(value: &str) -> Result<PerNamespace<usize>, String> {
    parse_map(value, |name, size| match size.trim().parse::<usize>() {
        Ok(size) if size <= MAX_HISTORY => Ok(size),
        _ => Err(format!(
            "{name}: expected 0 to {MAX_HISTORY} messages, got {size:?}"
        )),
    })
}

fn parse_webhook_urls(value: &str) -> Result<PerNamespace<String>, String> {
    parse_map(value, |name, url| {
        let url = url.trim();
        let uri: http::Uri = url
            .parse()
            .map_err(|_| format!("{name}: {url:?} is not a URL"))?;
        if uri
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'))
        {
            return Err(format!(
                "{name}: no credentials in the URL (they would not be sent); the backend authenticates the server by the requests' signature"
            ));
        }
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(url.to_owned()),
            _ => Err(format!(
                "{name}: expected an https:// or http:// URL with a host, got {url:?}"
            )),
        }
    })
}

fn parse_event(namespace: &str, event: &str) -> Result<String, String> {
    if event.chars().count() > 64 || event.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{namespace}: invalid event name {event:?}"));
    }
    if BINARY_EVENTS.contains(&event) || switchyard::proto::RESERVED_EVENTS.contains(&event) {
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

fn parse_secret(value: &str) -> Result<String, String> {
    if value.len() < 16 {
        return Err("expected a secret of at least 16 bytes".to_owned());
    }
    // The development secret is published: as JWT_SECRET it would make the server look
    // protected while anyone can sign its tokens.
    if value == DEV_SECRET {
        return Err(
            "this is the published development secret: use a secret of your own, or \
             --jwt-dev-secret for development"
                .to_owned(),
        );
    }
    Ok(value.to_owned())
}

fn parse_api_keys(value: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() || keys.iter().any(|key| key.len() < 16) {
        return Err("expected comma-separated keys of at least 16 bytes each".to_owned());
    }
    Ok(keys)
}

fn parse_admin_auth(value: &str) -> Result<AdminAuth, String> {
    let value = value.trim();
    if value == "off" {
        return Ok(AdminAuth::Disabled);
    }
    let Some((user, hash)) = value.split_once(':') else {
        return Err("expected USER:BCRYPT_HASH, or off".to_owned());
    };
    if user.is_empty() {
        return Err("expected a user name before the ':'".to_owned());
    }
    AdminAuth::basic(user, hash).map_err(|error| error.to_string())
}

fn parse_admin_mode(value: &str) -> Result<AdminMode, String> {
    match value.trim() {
        "development" => Ok(AdminMode::Development),
        "production" => Ok(AdminMode::Production),
        _ => Err("expected development or production".to_owned()),
    }
}

fn parse_admin_namespace(value: &str) -> Result<String, String> {
    let value = value.trim();
    if !value.starts_with('/') || value.len() < 2 {
        return Err("expected a namespace such as /admin".to_owned());
    }
    if matches!(value, "/chat" | "/notifications" | "/calls") {
        return Err(format!("{value} is the demo's namespace"));
    }
    Ok(value.to_owned())
}

fn parse_docs_namespace(value: &str) -> Result<String, String> {
    let value = value.trim();
    if !value.starts_with('/') || value.len() < 2 {
        return Err("expected a namespace such as /docs".to_owned());
    }
    if matches!(value, "/chat" | "/notifications" | "/calls") {
        return Err(format!("{value} is the demo's namespace"));
    }
    Ok(value.to_owned())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// The cluster's wire protocols the binary speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdapterKind {
    /// `@socket.io/redis-adapter`'s classic pub/sub protocol (`createAdapter`).
    Redis,
    /// `@socket.io/redis-streams-adapter`'s protocol: recovery across servers.
    RedisStreams,
    /// `@socket.io/redis-adapter`'s sharded pub/sub protocol (`createShardedAdapter`), on a
    /// Redis Cluster.
    RedisSharded,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".to_owned()),
    }
}

fn parse_adapter(value: &str) -> Result<AdapterKind, String> {
    match value.trim() {
        "redis" => Ok(AdapterKind::Redis),
        "redis-streams" => Ok(AdapterKind::RedisStreams),
        "redis-sharded" => Ok(AdapterKind::RedisSharded),
        _ => Err("expected redis, redis-sharded or redis-streams".to_owned()),
    }
}

impl Config {
    /// The cluster's protocol: as set, else `redis-streams` when recovery is on (so a client
    /// recovers on whichever server it reaches), else `redis`.
    pub(crate) fn adapter_kind(&self) -> AdapterKind {
        self.adapter.unwrap_or(if self.recovery.is_zero() {
            AdapterKind::Redis
        } else {
            AdapterKind::RedisStreams
        })
    }
}

fn parse_trimmed(value: &str) -> Result<String, String> {
    Ok(value.trim().to_owned())
}

fn parse_path(value: &str) -> Result<PathBuf, String> {
    let path = value.trim();
    if path.is_empty() {
        return Err("expected a file path".to_owned());
    }
    Ok(PathBuf::from(path))
}

fn parse_paths(value: &str) -> Result<Vec<PathBuf>, String> {
    let paths = value
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(parse_path)
        .collect::<Result<Vec<_>, _>>()?;
    // An empty list (`","`, or `"$A,$B"` with both unset) would silently leave JWT off: the
    // server would run in dev mode, names taken on trust.
    if paths.is_empty() {
        return Err("expected one or more comma-separated files".to_owned());
    }
    Ok(paths)
}

fn parse_host(value: &str) -> Result<String, String> {
    let host = value.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected a host name or address".to_owned());
    }
    // `[::1]` is how addresses appear in URLs; the socket API wants `::1`.
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    Ok(host.to_owned())
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a port number 0-65535".to_owned())
}

fn parse_positive(value: &str, what: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(format!("expected {what} greater than 0")),
        Ok(number) => Ok(number),
        Err(_) => Err(format!("expected {what}")),
    }
}

fn parse_bytes(value: &str) -> Result<usize, String> {
    parse_positive(value, "a size in bytes")?
        .try_into()
        .map_err(|_| "too large".to_owned())
}

/// `--docs-max-document-bytes`: at most [`switchyard_docs::MAX_DOCUMENT_BYTES`].
fn parse_document_bytes(value: &str) -> Result<usize, String> {
    let bytes = parse_bytes(value)?;
    if bytes > switchyard_docs::MAX_DOCUMENT_BYTES {
        return Err(format!(
            "at most {} (4 MiB: what the stacks of the threads that apply updates cover)",
            switchyard_docs::MAX_DOCUMENT_BYTES
        ));
    }
    Ok(bytes)
}

fn parse_size(value: &str) -> Result<usize, String> {
    parse_positive(value, "a positive number")?
        .try_into()
        .map_err(|_| "too large".to_owned())
}

fn parse_prefix_len(value: &str) -> Result<u8, String> {
    match value.trim().parse::<u8>() {
        Ok(bits @ 1..=128) => Ok(bits),
        _ => Err("expected a prefix length from 1 to 128".to_owned()),
    }
}

fn parse_count(value: &str) -> Result<u32, String> {
    parse_positive(value, "a positive number")?
        .try_into()
        .map_err(|_| "too large".to_owned())
}

fn parse_webhook_timeout(value: &str) -> Result<Duration, String> {
    match parse_millis(value)? {
        timeout if timeout <= Duration::from_secs(300) => Ok(timeout),
        _ => Err("expected at most 300000 milliseconds".to_owned()),
    }
}

fn parse_webhook_concurrency(value: &str) -> Result<usize, String> {
    match parse_size(value)? {
        slots if slots <= 10_000 => Ok(slots),
        _ => Err("expected 1 to 10000".to_owned()),
    }
}

fn parse_retries(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(retries @ 0..=10) => Ok(retries),
        _ => Err("expected 0 to 10".to_owned()),
    }
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

fn parse_size_or_off(value: &str) -> Result<Option<usize>, String> {
    parse_or_off(value, parse_size)
}

fn parse_count_or_off(value: &str) -> Result<Option<u32>, String> {
    parse_or_off(value, parse_count)
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    parse_positive(value, "a number of milliseconds").map(Duration::from_millis)
}

fn parse_millis_or_zero(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| "expected a number of milliseconds".to_owned())
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| "expected a number of seconds".to_owned())
}

fn parse_ttl(value: &str) -> Result<Duration, String> {
    parse_positive(value, "a number of seconds").map(Duration::from_secs)
}

/// The bounds of `--dev-token-ttl-s`, in seconds.
const DEV_TOKEN_TTL_BOUNDS: std::ops::RangeInclusive<u64> = 10..=86_400;

fn parse_dev_token_ttl(value: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected a number of seconds from {} to {}",
            DEV_TOKEN_TTL_BOUNDS.start(),
            DEV_TOKEN_TTL_BOUNDS.end()
        )
    };
    let seconds: u64 = value.trim().parse().map_err(|_| expected())?;
    if !DEV_TOKEN_TTL_BOUNDS.contains(&seconds) {
        return Err(expected());
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_sub(value: &str) -> Result<String, String> {
    let sub = value.trim();
    if sub.is_empty() {
        return Err("expected a user id".to_owned());
    }
    Ok(sub.to_owned())
}

fn parse_rooms(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|room| !room.is_empty())
        .map(str::to_owned)
        .collect())
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

fn parse_allowed_origins(value: &str) -> Result<Option<Vec<String>>, String> {
    if matches!(value.trim(), "off" | "*") {
        return Ok(None);
    }
    parse_origins(value).map(Some)
}

/// The configuration and mint options of an empty command line with no variables.
#[cfg(test)]
pub(crate) fn defaults() -> (Config, MintOptions) {
    match parse(
        |_| None,
        |_| Err(std::io::ErrorKind::NotFound.into()),
        ["switchyard", "mint-token"],
    ) {
        Ok(Command::MintToken(config, options)) => (config, options),
        other => panic!("the defaults do not parse: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn load(env: &[(&str, &str)], args: &[&str]) -> Result<Command, clap::Error> {
        load_with_files(env, &[], args)
    }

    /// Parses with these variables and these files (path, text) readable.
    fn load_with_files(
        env: &[(&str, &str)],
        files: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Command, clap::Error> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), text.to_string()))
            .collect();
        parse(
            |name| env.get(name).cloned(),
            |path| {
                files
                    .get(path)
                    .cloned()
                    .ok_or_else(|| std::io::ErrorKind::NotFound.into())
            },
            std::iter::once("switchyard").chain(args.iter().copied()),
        )
    }

    fn config(env: &[(&str, &str)], args: &[&str]) -> Config {
        match load(env, args) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    /// The error's message, without clap's usage lines.
    fn error(env: &[(&str, &str)], args: &[&str]) -> String {
        match load(env, args) {
            Err(error) => {
                let text = error.to_string();
                text.lines().next().unwrap_or_default().to_owned()
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn default_config() -> Config {
        defaults().0
    }

    /// Every option of the binary: the settings, then mint-token's.
    fn all_arguments() -> Vec<clap::Arg> {
        let command = command();
        let mut arguments: Vec<clap::Arg> = command.get_arguments().cloned().collect();
        for sub in command.get_subcommands() {
            arguments.extend(sub.get_arguments().cloned());
        }
        arguments
    }

    #[test]
    fn the_declaration_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let config = config(&[], &[]);
        assert_eq!(config, default_config());
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 3000);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
        assert_eq!(config.ping_timeout, Duration::from_secs(20));
        assert_eq!(config.max_payload, 1_000_000);
        assert_eq!(config.drain_timeout, Duration::from_secs(3));
        assert_eq!(config.drain_window, Duration::ZERO);
        assert_eq!(config.call_ring_timeout, Duration::from_secs(30));
        assert!(config.metrics);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.api_keys, None);
        assert_eq!(
            config.recovery,
            Duration::ZERO,
            "recovery is off by default"
        );
        assert_eq!(config.cors, None);
        assert_eq!(config.cors_config(), None);
        assert_eq!(config.tls(), None);
        assert!(!config.jwt.enabled());
    }

    #[test]
    fn the_inboxes_have_a_budget_of_their_own() {
        assert_eq!(config(&[], &[]).inbox_max_bytes, 16 * 1024 * 1024);
        let env = [("INBOX_MAX_BYTES", "1024")];
        assert_eq!(config(&env, &[]).inbox_max_bytes, 1024);
        assert_eq!(
            config(&env, &["--inbox-max-bytes", "2048"]).inbox_max_bytes,
            2048
        );
        assert!(error(&[], &["--inbox-max-bytes", "0"]).contains("inbox-max-bytes"));
    }

    #[test]
    fn notifications_and_call_retries_have_limits_of_their_own() {
        let defaults = config(&[], &[]);
        assert_eq!(defaults.notify_rate, 30);
        assert_eq!(defaults.call_retry_cooldown, Duration::from_secs(10));
        let env = [("NOTIFY_RATE", "5"), ("CALL_RETRY_COOLDOWN_MS", "250")];
        let set = config(&env, &[]);
        assert_eq!(
            (set.notify_rate, set.call_retry_cooldown),
            (5, Duration::from_millis(250))
        );
        let flags = config(
            &env,
            &["--notify-rate", "7", "--call-retry-cooldown-ms", "1"],
        );
        assert_eq!(
            (flags.notify_rate, flags.call_retry_cooldown),
            (7, Duration::from_millis(1))
        );
        assert!(error(&[], &["--notify-rate", "0"]).contains("notify-rate"));
    }

    #[test]
    fn the_limits_have_opinionated_defaults() {
        assert_eq!(
            default_config().limits,
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
                max_namespaces_per_connection: 32,
                max_auth_bytes: 16_384,
                write_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(10),
                ipv6_prefix_len: 64,
                max_header_bytes: 16_384,
                allowed_origins: None,
            }
        );
    }

    #[test]
    fn the_jwt_and_namespace_defaults() {
        let config = default_config();
        assert_eq!(
            config.jwt,
            JwtSettings {
                secret: None,
                dev_secret: false,
                public_keys: None,
                jwks: None,
                issuer: None,
                audience: None,
                leeway: Duration::from_secs(30),
                sources: vec![TokenSource::auth_token()],
                disconnect_on_expiry: true,
                dev_tokens: true,
                dev_token_ttl: Duration::from_secs(300),
            }
        );
        assert_eq!(
            config.namespaces.resolve(),
            Namespaces {
                chat: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Claim,
                    relay: vec!["message".into(), "typing".into()],
                    presence: true,
                    recovery: true,
                    history: 50,
                    webhook: WebhookHooks::default(),
                },
                notifications: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Claim,
                    relay: vec![],
                    presence: false,
                    recovery: true,
                    history: 0,
                    webhook: WebhookHooks::default(),
                },
            }
        );
    }

    #[test]
    fn the_declared_map_defaults_are_what_a_namespace_left_out_keeps() {
        let declared = NamespaceOptions {
            public_namespaces: NamespaceSet::default(),
            room_policy: vec![
                parse_room_policy(DEFAULT_ROOM_POLICY).unwrap_or_else(|e| panic!("{e}"))
            ],
            relay_events: vec![
                parse_relay_events(DEFAULT_RELAY_EVENTS).unwrap_or_else(|e| panic!("{e}"))
            ],
            presence: parse_namespace_set("/chat").unwrap_or_else(|e| panic!("{e}")),
            recovery_namespaces: parse_namespace_set("/chat,/notifications")
                .unwrap_or_else(|e| panic!("{e}")),
            history: vec![parse_history(DEFAULT_HISTORY).unwrap_or_else(|e| panic!("{e}"))],
            webhook_url: Vec::new(),
            webhook_connect: NamespaceSet::default(),
            webhook_disconnect: NamespaceSet::default(),
            webhook_events: Vec::new(),
        };
        let mut cleared = Namespaces::base();
        cleared.chat.relay.clear();
        cleared.notifications.relay.push("other".into());
        // Applied over anything, the declared defaults give the base.
        let mut applied = cleared;
        for map in &declared.room_policy {
            for (namespace, policy) in &map.0 {
                applied.get_mut(*namespace).rooms = *policy;
            }
        }
        for map in &declared.relay_events {
            for (namespace, events) in &map.0 {
                applied.get_mut(*namespace).relay = events.clone();
            }
        }
        assert_eq!(applied, Namespaces::base());
        assert_eq!(declared.resolve(), Namespaces::base());
    }

    /// A value for every variable (none a default).
    const EVERY_VARIABLE: &[(&str, &str)] = &[
        ("HOST", "0.0.0.0"),
        ("PORT", "8080"),
        ("PING_INTERVAL_MS", "1500"),
        ("PING_TIMEOUT_MS", "700"),
        ("DRAIN_TIMEOUT_MS", "0"),
        ("DRAIN_WINDOW_MS", "20000"),
        ("METRICS", "false"),
        ("LOG_FORMAT", "json"),
        ("API_KEYS", "key-one-0123456789, key-two-0123456789"),
        ("RECOVERY_MS", "90000"),
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
        ("MAX_NAMESPACES_PER_CONNECTION", "4"),
        ("MAX_AUTH_BYTES", "2048"),
        ("WRITE_TIMEOUT_MS", "1500"),
        ("BODY_TIMEOUT_MS", "2500"),
        ("IPV6_PREFIX_LEN", "48"),
        ("MAX_HEADER_BYTES", "8192"),
        ("ALLOWED_ORIGINS", "https://a.example"),
        ("JWT_SECRET", "0123456789abcdef0123"),
        ("JWT_DEV_SECRET", "yes"),
        ("JWT_PUBLIC_KEY", "/k/rsa.pem, /k/ec.pem"),
        ("JWT_JWKS", "/k/jwks.json"),
        ("JWT_ISSUER", "https://issuer.test"),
        ("JWT_AUDIENCE", "switchyard"),
        ("JWT_LEEWAY_S", "0"),
        ("JWT_TOKEN_SOURCES", "header, query,auth"),
        ("JWT_DISCONNECT_ON_EXPIRY", "false"),
        ("DEV_TOKENS", "false"),
        ("DEV_TOKEN_TTL_S", "60"),
        ("PUBLIC_NAMESPACES", "/notifications"),
        ("ROOM_POLICY", "/chat=open"),
        (
            "RELAY_EVENTS",
            "/chat=message,reaction;/notifications=alert",
        ),
        ("GRPC_PORT", "7000"),
        ("WEBHOOK_URL", "/chat=http://127.0.0.1:4000/hooks?ns=chat"),
        ("WEBHOOK_CONNECT", "/chat"),
        ("WEBHOOK_DISCONNECT", "/chat,/notifications"),
        ("WEBHOOK_EVENTS", "/chat=order,vote"),
        ("WEBHOOK_SECRET", "webhook-secret-0123"),
        ("WEBHOOK_TIMEOUT_MS", "1500"),
        ("WEBHOOK_CONCURRENCY", "16"),
        ("WEBHOOK_MAX_PENDING", "2"),
        ("WEBHOOK_RETRIES", "0"),
        ("WEBHOOK_CA_FILE", "/etc/switchyard/backend-ca.pem"),
        ("WEBHOOK_MAX_RESPONSE_BYTES", "2048"),
        ("CALL_RING_TIMEOUT_MS", "1500"),
    ];

    #[test]
    fn environment_variables_set_everything() {
        let config = config(EVERY_VARIABLE, &[]);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 8080);
        assert_eq!(config.ping_interval, Duration::from_millis(1500));
        assert_eq!(config.ping_timeout, Duration::from_millis(700));
        assert_eq!(config.drain_timeout, Duration::ZERO);
        assert_eq!(config.drain_window, Duration::from_secs(20));
        assert_eq!(config.call_ring_timeout, Duration::from_millis(1500));
        assert!(!config.metrics);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.api_keys,
            Some(vec![
                "key-one-0123456789".to_owned(),
                "key-two-0123456789".to_owned()
            ])
        );
        assert_eq!(config.recovery, Duration::from_secs(90));
        assert_eq!(config.max_payload, 4096);
        assert_eq!(
            config.cors,
            Some(Cors::Origins(vec![
                "https://a.example".to_owned(),
                "http://localhost:5173".to_owned()
            ]))
        );
        assert_eq!(
            config.tls(),
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
                max_namespaces_per_connection: 4,
                max_auth_bytes: 2048,
                write_timeout: Duration::from_millis(1500),
                body_timeout: Duration::from_millis(2500),
                ipv6_prefix_len: 48,
                max_header_bytes: 8192,
                allowed_origins: Some(vec!["https://a.example".to_owned()]),
            }
        );
        assert_eq!(
            config.jwt,
            JwtSettings {
                secret: Some("0123456789abcdef0123".into()),
                dev_secret: true,
                public_keys: Some(vec!["/k/rsa.pem".into(), "/k/ec.pem".into()]),
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
                dev_tokens: false,
                dev_token_ttl: Duration::from_secs(60),
            }
        );
        assert!(config.jwt.enabled());
        assert!(config.jwt.dev_mode());
        assert!(!config.jwt.dev_tokens_on());
        assert_eq!(
            config.jwt.hmac_secrets(),
            ["0123456789abcdef0123", DEV_SECRET]
        );
        assert_eq!(
            config.namespaces.resolve(),
            Namespaces {
                chat: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Open,
                    relay: vec!["message".into(), "reaction".into()],
                    presence: true,
                    recovery: true,
                    history: 50,
                    webhook: WebhookHooks {
                        url: Some("http://127.0.0.1:4000/hooks?ns=chat".into()),
                        connect: true,
                        disconnect: true,
                        events: vec!["order".into(), "vote".into()],
                    },
                },
                notifications: NamespaceSettings {
                    public: true,
                    rooms: RoomPolicy::Claim,
                    relay: vec!["alert".into()],
                    presence: false,
                    recovery: true,
                    history: 0,
                    webhook: WebhookHooks {
                        disconnect: true,
                        ..WebhookHooks::default()
                    },
                },
            }
        );
        assert_eq!(config.grpc_port, Some(7000));
        assert_eq!(
            config.webhooks,
            WebhookSettings {
                secret: Some("webhook-secret-0123".into()),
                timeout: Duration::from_millis(1500),
                concurrency: 16,
                max_pending: 2,
                retries: 0,
                ca_file: Some(PathBuf::from("/etc/switchyard/backend-ca.pem")),
                max_response_bytes: 2048,
            }
        );
    }

    #[test]
    fn webhooks_are_declared_per_namespace_and_checked_together() {
        let file = r#"
            webhook-timeout-ms = 800

            [namespaces."/chat"]
            webhook-url = "http://backend.internal:8080/switchyard"
            webhook-connect = true
            webhook-events = ["order"]

            [namespaces."/notifications"]
            webhook-url = "http://backend.internal:8080/notifications"
            webhook-disconnect = true
        "#;
        let from_file = config_with_file(&[("WEBHOOK_SECRET", "webhook-secret-0123")], file, &[]);
        let namespaces = from_file.namespaces.resolve();
        assert_eq!(
            namespaces.chat.webhook,
            WebhookHooks {
                url: Some("http://backend.internal:8080/switchyard".into()),
                connect: true,
                disconnect: false,
                events: vec!["order".into()],
            }
        );
        assert!(namespaces.notifications.webhook.disconnect);
        assert!(!namespaces.notifications.webhook.connect);
        assert_eq!(from_file.webhooks.timeout, Duration::from_millis(800));
        assert_eq!(namespaces.check(true), Ok(()));
        assert_eq!(
            config(&[("GRPC_PORT", "0")], &[]).check(),
            Err("--grpc-port needs --api-keys (API_KEYS)".to_owned())
        );
        // The defaults: no webhooks, and nothing to check.
        assert_eq!(Namespaces::base().check(false), Ok(()));
        let defaults = config(&[], &[]).webhooks;
        assert_eq!(defaults.timeout, Duration::from_secs(5));
        assert_eq!(defaults.concurrency, 128);
        assert_eq!(defaults.max_pending, 8);
        assert_eq!(defaults.retries, 3);
        assert_eq!(defaults.max_response_bytes, 65536);

        // What only the whole can tell.
        let unsigned = namespaces.check(false).expect_err("unsigned");
        assert!(unsigned.contains("needs --webhook-secret"), "{unsigned}");
        let mut nowhere = Namespaces::base();
        nowhere.chat.webhook.connect = true;
        assert_eq!(
            nowhere.check(true),
            Err("/chat: webhooks are on but it has no --webhook-url".to_owned())
        );
        let mut notes = Namespaces::base();
        notes.notifications.history = 5;
        assert!(notes
            .check(false)
            .is_err_and(|error| error.contains("history keeps chat messages")));
        let mut both = namespaces.clone();
        both.chat.webhook.events.push("message".into());
        assert_eq!(
            both.check(true),
            Err("/chat: event \"message\" is both relayed and forwarded to the webhook".to_owned())
        );
    }

    #[test]
    fn a_namespace_table_changes_only_its_own_namespace() {
        // `presence` is on for /chat by default: turning it on elsewhere keeps it there.
        let both = config_with_file(
            &[],
            "[namespaces.\"/notifications\"]\npresence = true\n",
            &[],
        );
        let namespaces = both.namespaces.resolve();
        assert!(namespaces.chat.presence && namespaces.notifications.presence);
        let off = config_with_file(&[], "[namespaces.\"/chat\"]\npresence = false\n", &[]);
        let namespaces = off.namespaces.resolve();
        assert!(!namespaces.chat.presence && !namespaces.notifications.presence);
        let public = config_with_file(&[], "[namespaces.\"/notifications\"]\npublic = true\n", &[]);
        let namespaces = public.namespaces.resolve();
        assert!(!namespaces.chat.public && namespaces.notifications.public);
        // Recovery is on in both by default (with --recovery-ms); a table turns it off in one.
        let defaults = config(&[], &[]).namespaces.resolve();
        assert!(defaults.chat.recovery && defaults.notifications.recovery);
        let no_recovery = config_with_file(
            &[],
            "recovery-ms = 60000\n[namespaces.\"/notifications\"]\nrecovery = false\n",
            &[],
        );
        let namespaces = no_recovery.namespaces.resolve();
        assert!(namespaces.chat.recovery && !namespaces.notifications.recovery);
        let flag = config(&[("RECOVERY_NAMESPACES", "none")], &[])
            .namespaces
            .resolve();
        assert!(!flag.chat.recovery && !flag.notifications.recovery);
    }

    #[test]
    fn webhook_urls_are_http_or_https_with_a_host() {
        assert!(parse_webhook_urls("/chat=http://10.0.0.2:4000/hooks").is_ok());
        assert!(parse_webhook_urls("/chat=https://backend.internal/hooks").is_ok());
        for (value, expected) in [
            (
                "/chat=ftp://backend/hooks",
                "expected an https:// or http:// URL with a host",
            ),
            (
                "/chat=/hooks",
                "expected an https:// or http:// URL with a host",
            ),
            ("/chat=http://", "is not a URL"),
            (
                "/chat=http://user:pass@backend/hooks",
                "no credentials in the URL",
            ),
            ("/lobby=http://backend/hooks", "unknown namespace"),
        ] {
            let error = parse_webhook_urls(value).expect_err(value);
            assert!(error.contains(expected), "{value}: {error}");
        }
        assert!(parse_retries("11").is_err());
        assert!(parse_webhook_timeout("300001").is_err());
        assert_eq!(
            parse_webhook_timeout("300000"),
            Ok(Duration::from_secs(300))
        );
        assert!(parse_webhook_concurrency("10001").is_err());
        assert!(parse_webhook_concurrency("0").is_err());
        assert_eq!(parse_retries("0"), Ok(0));
    }

    /// The flag name of each variable.
    fn flag_of(variable: &str) -> String {
        command()
            .get_arguments()
            .find(|arg| arg.get_env().and_then(|v| v.to_str()) == Some(variable))
            .and_then(clap::Arg::get_long)
            .unwrap_or_else(|| panic!("no flag for {variable}"))
            .to_owned()
    }

    fn config_with_file(env: &[(&str, &str)], file: &str, args: &[&str]) -> Config {
        let mut argv = vec!["--config", "/etc/switchyard.toml"];
        argv.extend_from_slice(args);
        match load_with_files(env, &[("/etc/switchyard.toml", file)], &argv) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    fn file_error(file: &str) -> String {
        match load_with_files(
            &[],
            &[("/etc/switchyard.toml", file)],
            &["--config", "/etc/switchyard.toml"],
        ) {
            Err(error) => error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn effective(env: &[(&str, &str)], file: &str, args: &[&str]) -> String {
        let mut argv = vec!["--config", "/etc/switchyard.toml", "check-config"];
        argv.extend_from_slice(args);
        match load_with_files(env, &[("/etc/switchyard.toml", file)], &argv) {
            Ok(Command::CheckConfig(_, text)) => text,
            other => panic!("expected check-config, got {other:?}"),
        }
    }

    #[test]
    fn a_file_sets_every_option_under_its_flag_name() {
        let file: String = EVERY_VARIABLE
            .iter()
            .map(|(variable, value)| format!("{} = {:?}\n", flag_of(variable), value))
            .collect();
        assert_eq!(
            config_with_file(&[], &file, &[]),
            config(EVERY_VARIABLE, &[])
        );
        // Typed values and arrays read as the command line spells them.
        let typed = config_with_file(
            &[],
            "port = 8080\njwt-dev-secret = true\ncors-origins = [\"https://a.example\", \"http://localhost:5173\"]\nmax-connections-per-ip = \"off\"\n",
            &[],
        );
        assert_eq!(typed.port, 8080);
        assert!(typed.jwt.dev_secret);
        assert_eq!(
            typed.cors,
            Some(Cors::Origins(vec![
                "https://a.example".to_owned(),
                "http://localhost:5173".to_owned()
            ]))
        );
        assert_eq!(typed.limits.max_connections_per_ip, None);
    }

    #[test]
    fn flags_win_over_variables_and_variables_over_the_file() {
        let file = "port = 1000\nhost = \"0.0.0.0\"\nmax-payload = 4096\n";
        let config = config_with_file(
            &[("PORT", "2000"), ("HOST", "::1")],
            file,
            &["--port", "3000"],
        );
        assert_eq!(config.port, 3000);
        assert_eq!(config.host, "::1");
        assert_eq!(config.max_payload, 4096);
        // What the file leaves out keeps its default.
        assert_eq!(config.ping_interval, default_config().ping_interval);
        // The file may also come from its variable; the flag wins over it.
        let files = [("/a.toml", "port = 1"), ("/b.toml", "port = 2")];
        let port = |env: &[(&str, &str)], args: &[&str]| match load_with_files(env, &files, args) {
            Ok(Command::Run(config)) => config.port,
            other => panic!("{other:?}"),
        };
        assert_eq!(port(&[("SWITCHYARD_CONFIG", "/a.toml")], &[]), 1);
        assert_eq!(
            port(&[("SWITCHYARD_CONFIG", "/a.toml")], &["--config=/b.toml"]),
            2
        );
        assert_eq!(
            port(&[], &["--config", "/a.toml", "--config", "/b.toml"]),
            2
        );
    }

    #[test]
    fn namespaces_are_declared_as_tables() {
        let file = r#"
            [namespaces."/chat"]
            public = true
            relay-events = ["message", "reaction"]

            [namespaces."/notifications"]
            rooms = "open"
            relay-events = []
        "#;
        assert_eq!(
            config_with_file(&[], file, &[]).namespaces.resolve(),
            Namespaces {
                chat: NamespaceSettings {
                    public: true,
                    rooms: RoomPolicy::Claim,
                    relay: vec!["message".into(), "reaction".into()],
                    presence: true,
                    recovery: true,
                    history: 50,
                    webhook: WebhookHooks::default(),
                },
                notifications: NamespaceSettings {
                    public: false,
                    rooms: RoomPolicy::Open,
                    relay: Vec::new(),
                    presence: false,
                    recovery: true,
                    history: 0,
                    webhook: WebhookHooks::default(),
                },
            }
        );
        // A variable replaces the file's map entry for its namespace only.
        let namespaces = config_with_file(&[("RELAY_EVENTS", "/chat=typing")], file, &[])
            .namespaces
            .resolve();
        assert_eq!(namespaces.chat.relay, vec!["typing".to_owned()]);
        assert_eq!(namespaces.notifications.rooms, RoomPolicy::Open);
        // Every namespace public = false resets the list.
        let none = config_with_file(
            &[("PUBLIC_NAMESPACES", "/chat")],
            "[namespaces.\"/chat\"]\npublic = false\n",
            &[],
        );
        assert!(none.namespaces.resolve().chat.public, "the variable wins");
        let none = config_with_file(&[], "[namespaces.\"/chat\"]\npublic = false\n", &[]);
        assert!(!none.namespaces.resolve().chat.public);
    }

    #[test]
    fn a_bad_file_is_refused_with_where_and_why() {
        assert_eq!(
            file_error("port = \"abc\""),
            "error: invalid value 'abc' for `port` in /etc/switchyard.toml (the file's '--port <PORT>'): expected a port number 0-65535"
        );
        assert_eq!(
            file_error("ping_interval_ms = 5"),
            "error: configuration file /etc/switchyard.toml: unknown key `ping_interval_ms` (did you mean `ping-interval-ms`?)"
        );
        assert_eq!(
            file_error("PORT = 5"),
            "error: configuration file /etc/switchyard.toml: unknown key `PORT` (did you mean `port`?)"
        );
        assert!(file_error("colour = 5").contains("unknown key `colour`"));
        assert!(file_error("port =").contains("TOML syntax error at line 1, column 7"));
        // A syntax error does not quote the line: it may hold a secret.
        let unquoted = file_error("port = 1\njwt-secret = 0123456789abcdef0123x");
        assert!(
            unquoted.contains("TOML syntax error at line 2"),
            "{unquoted}"
        );
        assert!(!unquoted.contains("0123456789abcdef"), "{unquoted}");
        let twice = file_error(
            "jwt-secret = \"0123456789abcdef0123\"\njwt-secret = \"0123456789abcdef0124\"",
        );
        assert!(!twice.contains("0123456789abcdef"), "{twice}");
        assert!(file_error("[port]\nx = 1").contains("`port`: expected a string"));
        assert!(file_error("cors-origins = [[\"a\"]]").contains("a list holds strings"));
        assert!(file_error("config = \"/other.toml\"").contains("`config` cannot be set"));
        assert!(file_error("[namespaces.\"/game\"]\npublic = true").contains("namespace `/game`"));
        assert!(file_error("[namespaces.\"/chat\"]\npublic = \"yes\"")
            .contains("expected true or false"));
        assert!(file_error("[namespaces.\"/chat\"]\nrooms = \"some\"").contains("invalid value"));
        assert!(file_error("[namespaces.\"/chat\"]\nmembers = 5")
            .contains("unknown key `namespaces.\"/chat\".members`"));
        assert!(file_error("[namespaces.\"/chat\"]\nhistory = \"lots\"")
            .contains("`namespaces.\"/chat\".history`: expected a whole number"));
        assert!(file_error("[namespaces.\"/chat\"]\nhistory = 5000")
            .contains("expected 0 to 1000 messages"));
        // A secret is not echoed.
        let secret = file_error("jwt-secret = \"short\"");
        assert!(
            secret.contains("`jwt-secret` in /etc/switchyard.toml"),
            "{secret}"
        );
        assert!(!secret.contains("short"), "{secret}");
        // An unreadable file.
        match load_with_files(&[], &[], &["--config", "/missing.toml"]) {
            Err(error) => assert!(
                error
                    .to_string()
                    .contains("cannot read the configuration file /missing.toml"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_config_prints_the_effective_configuration_with_its_sources() {
        let file = "port = 1000\nmax-payload = 4096\njwt-secret = \"0123456789abcdef0123\"\n[namespaces.\"/chat\"]\nrooms = \"open\"\nwebhook-url = \"http://backend:4000/hooks\"\nwebhook-connect = true\n";
        let text = effective(
            &[
                ("PING_INTERVAL_MS", "1500"),
                ("WEBHOOK_SECRET", "webhook-secret-0123"),
            ],
            file,
            &["--host", "0.0.0.0"],
        );
        for line in [
            "host = \"0.0.0.0\"  # flag",
            "port = 1000  # file, `port`",
            "max-payload = 4096  # file, `max-payload`",
            "ping-interval-ms = 1500  # variable PING_INTERVAL_MS",
            "ping-timeout-ms = 20000  # default",
            "# jwt-secret = (set, masked)  # file, `jwt-secret`",
            "# redis-url = (not set)",
            "[namespaces.\"/chat\"]\npublic = false\nrooms = \"open\"\nrelay-events = [\"message\", \"typing\"]",
            "webhook-url = \"http://backend:4000/hooks\"\nwebhook-connect = true\nwebhook-disconnect = false\nwebhook-events = []",
            "# webhook-secret = (set, masked)  # variable WEBHOOK_SECRET",
            "webhook-timeout-ms = 5000  # default",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("0123456789abcdef0123"), "{text}");
        assert!(!text.contains("webhook-secret-0123"), "{text}");
    }

    #[test]
    fn the_effective_configuration_reads_back_to_the_same_settings() {
        let env: Vec<(&str, &str)> = EVERY_VARIABLE
            .iter()
            .copied()
            // Secrets are masked: they do not read back.
            .filter(|(variable, _)| {
                !["JWT_SECRET", "API_KEYS", "WEBHOOK_SECRET"].contains(variable)
            })
            .collect();
        let original = config(&env, &[]);
        let text = match load(&env, &["check-config"]) {
            Ok(Command::CheckConfig(config, text)) => {
                assert_eq!(config, original);
                text
            }
            other => panic!("{other:?}"),
        };
        let read_back = config_with_file(&[], &text, &[]);
        assert_eq!(
            read_back.namespaces.resolve(),
            original.namespaces.resolve()
        );
        let same_namespaces = |mut config: Config| {
            config.namespaces = original.namespaces.clone();
            config
        };
        assert_eq!(same_namespaces(read_back), original);
    }

    #[test]
    fn redis_passwords_are_not_shown() {
        let text = effective(
            &[(
                "REDIS_URL",
                "redis://:hunter2-secret@10.0.0.1:6379/0,redis://app:pw@10.0.0.2",
            )],
            "",
            &[],
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains(
                "redis-url = \"redis://:****@10.0.0.1:6379/0,redis://app:****@10.0.0.2\""
            ),
            "{text}"
        );
        assert_eq!(
            config_file::redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            config_file::redact_url("rediss://user@host/0"),
            "rediss://user@host/0"
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = include_str!("../../../switchyard.example.toml");
        let config = config_with_file(&[], example, &[]);
        assert_eq!(config.recovery, Duration::from_secs(120));
        assert_eq!(
            config.cors,
            Some(Cors::Origins(vec!["http://localhost:5173".to_owned()]))
        );
        assert_eq!(config.namespaces.resolve(), Namespaces::base());
    }

    #[test]
    fn flags_override_the_environment_in_both_spellings() {
        let env = [
            ("PORT", "8080"),
            ("HOST", "0.0.0.0"),
            ("EVENT_RATE", "5"),
            ("JWT_DEV_SECRET", "false"),
            ("JWT_ISSUER", "from-env"),
            ("PING_TIMEOUT_MS", "700"),
        ];
        let config = config(
            &env,
            &[
                "--port",
                "9000",
                "--host=[::1]",
                "--cors-origins=*",
                "--event-rate",
                "7",
                "--jwt-dev-secret",
                "--jwt-issuer",
                "from-flag",
            ],
        );
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "::1");
        assert_eq!(config.cors, Some(Cors::Any));
        assert_eq!(config.cors_config(), Some(CorsConfig::any()));
        assert_eq!(config.limits.event_rate, Some(7));
        assert!(config.jwt.dev_secret);
        assert_eq!(config.jwt.hmac_secrets(), [DEV_SECRET]);
        assert_eq!(config.jwt.issuer.as_deref(), Some("from-flag"));
        // A variable without a flag still counts.
        assert_eq!(config.ping_timeout, Duration::from_millis(700));
        // The settings given after mint-token win too.
        match load(&env, &["mint-token", "--port=1", "--jwt-issuer", "late"]) {
            Ok(Command::MintToken(config, _)) => {
                assert_eq!(config.port, 1);
                assert_eq!(config.jwt.issuer.as_deref(), Some("late"));
                assert_eq!(config.host, "0.0.0.0");
            }
            other => panic!("expected mint-token, got {other:?}"),
        }
    }

    #[test]
    fn the_last_of_repeated_flags_wins_and_maps_add_up() {
        let config = config(
            &[("ROOM_POLICY", "/chat=open")],
            &[
                "--port=1",
                "--port=2",
                "--room-policy",
                "/notifications=open",
                "--relay-events=/notifications=alert",
                "--relay-events=/chat=reaction",
            ],
        );
        assert_eq!(config.port, 2);
        let namespaces = config.namespaces.resolve();
        // The variable's map and the flags' maps all apply, in order.
        assert_eq!(namespaces.chat.rooms, RoomPolicy::Open);
        assert_eq!(namespaces.notifications.rooms, RoomPolicy::Open);
        assert_eq!(namespaces.chat.relay, vec!["reaction".to_owned()]);
        assert_eq!(namespaces.notifications.relay, vec!["alert".to_owned()]);
        // A namespace left out of every map keeps its default.
        let only_notifications = config_relay(&["--relay-events", "/notifications=alert"]);
        assert_eq!(
            only_notifications.chat.relay,
            vec!["message".to_owned(), "typing".to_owned()]
        );
    }

    fn config_relay(args: &[&str]) -> Namespaces {
        config(&[], args).namespaces.resolve()
    }

    #[test]
    fn empty_variables_count_as_unset() {
        assert_eq!(
            config(
                &[
                    ("PORT", ""),
                    ("HOST", "  "),
                    ("JWT_SECRET", ""),
                    ("TLS_CERT", " ")
                ],
                &[]
            ),
            default_config()
        );
    }

    #[test]
    fn the_cluster_protocol_follows_recovery_unless_set() {
        assert_eq!(config(&[], &[]).adapter_kind(), AdapterKind::Redis);
        let recovering = config(&[("RECOVERY_MS", "60000")], &[]);
        assert_eq!(recovering.adapter_kind(), AdapterKind::RedisStreams);
        let classic = config(&[("RECOVERY_MS", "60000")], &["--adapter", "redis"]);
        assert_eq!(classic.adapter_kind(), AdapterKind::Redis);
        let streams = config(&[("ADAPTER", "redis-streams")], &[]);
        assert_eq!(streams.adapter_kind(), AdapterKind::RedisStreams);
        let sharded = config(&[("ADAPTER", "redis-sharded")], &[]);
        assert_eq!(sharded.adapter_kind(), AdapterKind::RedisSharded);
        assert!(error(&[], &["--adapter", "kafka"])
            .contains("expected redis, redis-sharded or redis-streams"));
    }

    #[test]
    fn port_zero_is_allowed_for_a_free_port() {
        assert_eq!(config(&[("PORT", "0")], &[]).port, 0);
    }

    fn help(args: &[&str]) -> String {
        match load(&[], args) {
            Err(error) if error.kind() == ErrorKind::DisplayHelp => error.to_string(),
            other => panic!("expected the help, got {other:?}"),
        }
    }

    #[test]
    fn help_wins_over_everything_after_it() {
        assert!(help(&["--help", "--bogus"]).contains("--max-payload"));
        assert!(help(&["-h"]).contains("mint-token"));
        assert!(help(&["mint-token", "-h"]).contains("--ttl"));
    }

    #[test]
    fn the_help_shows_every_option_with_its_variable_and_default() {
        let text = help(&["--help"]);
        for arg in command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    text.contains(&format!("--{long}")),
                    "--{long} not in --help"
                );
            }
            if let Some(variable) = arg.get_env().and_then(|v| v.to_str()) {
                assert!(
                    text.contains(&format!("[env: {variable}")),
                    "{variable} not in --help"
                );
            }
            for default in arg.get_default_values() {
                let default = default.to_string_lossy();
                assert!(
                    text.contains(&format!("[default: {default}]")),
                    "default {default} of {arg} not in --help"
                );
            }
        }
        let mint = help(&["mint-token", "--help"]);
        for long in ["--sub", "--rooms", "--ttl", "--dev", "--jwt-secret"] {
            assert!(mint.contains(long), "{long} not in mint-token --help");
        }
        assert!(mint.contains("[default: 3600]"));
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
        let (config, options) = defaults();
        assert_eq!(config, default_config());
        assert_eq!(
            options,
            MintOptions {
                sub: "dev".into(),
                rooms: None,
                ttl: Duration::from_secs(3600),
                dev: false,
            }
        );
        assert_eq!(
            load(
                &[],
                &[
                    "mint-token",
                    "--dev=false",
                    "--jwt-secret",
                    "0123456789abcdef"
                ]
            )
            .map(|command| match command {
                Command::MintToken(config, options) => (config.jwt.secret, options.dev),
                Command::Run(_) | Command::CheckConfig(..) => (None, true),
            })
            .ok(),
            Some((Some("0123456789abcdef".to_owned()), false))
        );
        assert_eq!(
            error(&[], &["mint-token", "--ttl", "0"]),
            "error: invalid value '0' for '--ttl <SECONDS>': \
             expected a number of seconds greater than 0"
        );
        // The mint options are not server flags.
        assert_eq!(
            error(&[], &["--sub", "x"]),
            "error: unexpected argument '--sub' found"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        /// Variables, flags, and what the error must say.
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
            &'static str,
        );
        let cases: &[Case] = &[
            (
                &[("DEV_TOKEN_TTL_S", "5")],
                &[],
                "DEV_TOKEN_TTL_S (the variable of '--dev-token-ttl-s <S>'): \
                 expected a number of seconds from 10 to 86400",
            ),
            (
                &[],
                &["--dev-token-ttl-s", "86401"],
                "'--dev-token-ttl-s <S>': expected a number of seconds from 10 to 86400",
            ),
            (
                &[("PORT", "70000")],
                &[],
                "invalid value '70000' for PORT (the variable of '--port <PORT>'): \
                 expected a port number 0-65535",
            ),
            (
                &[],
                &["--port", "http"],
                "invalid value 'http' for '--port <PORT>': expected a port number 0-65535",
            ),
            (
                &[("PING_INTERVAL_MS", "0")],
                &[],
                "PING_INTERVAL_MS (the variable of '--ping-interval-ms <MS>'): \
                 expected a number of milliseconds greater than 0",
            ),
            (
                &[],
                &["--ping-timeout-ms=1s"],
                "'--ping-timeout-ms <MS>': expected a number of milliseconds",
            ),
            (
                &[],
                &["--call-ring-timeout-ms", "0"],
                "'--call-ring-timeout-ms <MS>': expected a number of milliseconds greater than 0",
            ),
            (
                &[("MAX_PAYLOAD", "-5")],
                &[],
                "MAX_PAYLOAD (the variable of '--max-payload <BYTES>'): expected a size in bytes",
            ),
            (
                &[],
                &["--host", "a b"],
                "'--host <ADDR>': expected a host name or address",
            ),
            (
                &[("MAX_CONNECTIONS_PER_IP", "0")],
                &[],
                "MAX_CONNECTIONS_PER_IP (the variable of '--max-connections-per-ip <N>'): \
                 expected a positive number greater than 0 (or off)",
            ),
            (
                &[("MAX_CONNECTIONS", "off")],
                &[],
                "MAX_CONNECTIONS (the variable of '--max-connections <N>'): \
                 expected a positive number",
            ),
            (
                &[("JWT_TOKEN_SOURCES", "auth,cookie")],
                &[],
                "expected auth, header or query (comma-separated), got \"cookie\"",
            ),
            (
                &[("JWT_DISCONNECT_ON_EXPIRY", "maybe")],
                &[],
                "JWT_DISCONNECT_ON_EXPIRY (the variable of '--jwt-disconnect-on-expiry <BOOL>'): \
                 expected true or false",
            ),
            (
                &[("PUBLIC_NAMESPACES", "/admin")],
                &[],
                "unknown namespace \"/admin\" (expected /chat or /notifications)",
            ),
            (
                &[("ROOM_POLICY", "/chat=closed")],
                &[],
                "ROOM_POLICY (the variable of '--room-policy <MAP>'): \
                 /chat: expected claim or open, got \"closed\"",
            ),
            (
                &[("ROOM_POLICY", "open")],
                &[],
                "expected /namespace=value pairs separated by `;`, got \"open\"",
            ),
            (
                &[("ROOM_POLICY", "/admin=open")],
                &[],
                "unknown namespace \"/admin\"",
            ),
            (
                &[("RELAY_EVENTS", "/chat=message,join")],
                &[],
                "RELAY_EVENTS (the variable of '--relay-events <MAP>'): \
                 /chat: \"join\" cannot be relayed (reserved)",
            ),
        ];
        for (env, args, expected) in cases {
            let message = error(env, args);
            assert!(
                message.contains(expected),
                "{env:?} {args:?}: {message:?} does not say {expected:?}"
            );
        }
    }

    #[test]
    fn a_bad_secret_is_refused_without_being_shown() {
        let message = error(&[("JWT_SECRET", "short-secret")], &[]);
        assert_eq!(
            message,
            "error: invalid value for JWT_SECRET (the variable of '--jwt-secret <SECRET>'): \
             expected a secret of at least 16 bytes"
        );
        assert!(!help(&["--help"]).contains("short-secret"));
        // Nor from the command line, nor with a valid key beside the bad one.
        let message = error(&[], &["--api-keys", "good-key-0123456789,short"]);
        assert_eq!(
            message,
            "error: invalid value for '--api-keys <KEYS>': \
             expected comma-separated keys of at least 16 bytes each"
        );
        let message = error(&[], &["--jwt-secret=short-secret"]);
        assert!(!message.contains("short-secret"), "{message}");
    }

    #[test]
    fn keys_that_would_leave_the_server_open_are_refused() {
        // The published development secret as the real one: anyone could sign tokens.
        let message = error(&[("JWT_SECRET", DEV_SECRET)], &[]);
        assert!(
            message.contains("published development secret"),
            "{message}"
        );
        assert!(!message.contains(DEV_SECRET), "{message}");
        // An empty list of public keys would silently mean "no key": dev mode.
        for list in [",", " , "] {
            let message = error(&[], &["--jwt-public-key", list]);
            assert!(
                message.contains("expected one or more comma-separated files"),
                "{list:?}: {message}"
            );
        }
    }

    #[test]
    fn the_tls_files_go_together() {
        for (env, args) in [
            (&[("TLS_CERT", "/tmp/cert.pem")][..], &[][..]),
            (&[][..], &["--tls-key", "/tmp/key.pem"][..]),
        ] {
            let error = match load(env, args) {
                Err(error) => error,
                other => panic!("expected an error, got {other:?}"),
            };
            assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        }
        let tls = config(
            &[("TLS_CERT", "/tmp/cert.pem")],
            &["--tls-key=/tmp/key.pem"],
        )
        .tls();
        assert_eq!(
            tls,
            Some(TlsFiles {
                cert: "/tmp/cert.pem".into(),
                key: "/tmp/key.pem".into()
            })
        );
    }

    #[test]
    fn public_namespaces_can_be_reset() {
        let config = config(
            &[("PUBLIC_NAMESPACES", "/chat,/notifications")],
            &["--public-namespaces", "none"],
        );
        assert_eq!(config.namespaces.public_namespaces, NamespaceSet::default());
        let config = self::config(&[("PUBLIC_NAMESPACES", "/chat,/notifications")], &[]);
        assert_eq!(
            config.namespaces.public_namespaces,
            NamespaceSet {
                chat: true,
                notifications: true
            }
        );
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        assert!(
            error(&[("CORS_ORIGINS", "https://a.example/")], &[]).contains(
                "CORS_ORIGINS (the variable of '--cors-origins <LIST>'): \
             expected `*` or origins like https://app.example.com \
             (scheme and host, no path or trailing slash), got \"https://a.example/\""
            )
        );
        assert!(error(&[], &["--cors-origins", "a.example"]).contains(
            "expected `*` or origins like https://app.example.com \
             (scheme and host, no path or trailing slash), got \"a.example\""
        ));
        assert!(error(&[], &["--cors-origins", " , "])
            .contains("'--cors-origins <LIST>': expected `*` or at least one origin"));
    }

    #[test]
    fn unknown_and_incomplete_arguments_are_refused() {
        assert_eq!(
            error(&[], &["--prot", "1"]),
            "error: unexpected argument '--prot' found"
        );
        assert_eq!(
            load(&[], &["--port"]).err().map(|error| error.kind()),
            Some(ErrorKind::InvalidValue)
        );
        assert!(error(&[], &["--port"]).contains("a value is required for '--port <PORT>'"));
        // A boolean switch takes its value only with `=`.
        assert_eq!(
            error(&[], &["--jwt-dev-secret", "true"]),
            "error: unrecognized subcommand 'true'"
        );
    }

    #[test]
    fn the_admin_ui_takes_a_bcrypt_hash_and_keeps_it_masked() {
        // "secret" at cost 4, as bcryptjs and htpasswd write it.
        let hash = "$2b$04$YRKlvzVYO1Dl.PgqUYGq7e/tEhq15zfUGV9yxXpURTu130P7fE3ZK";
        let on = config(&[("ADMIN_UI_AUTH", &format!("admin:{hash}"))], &[]);
        assert_eq!(
            on.admin_ui.auth,
            Some(AdminAuth::basic("admin", hash).unwrap())
        );
        assert_eq!(on.admin_ui.namespace, "/admin");
        assert_eq!(on.admin_ui.mode, AdminMode::Development);
        assert!(!on.admin_ui.read_only);
        assert_eq!(config(&[], &[]).admin_ui.auth, None, "off unless asked for");
        let open = config(
            &[],
            &["--admin-ui-auth", "off", "--admin-ui-mode", "production"],
        );
        assert_eq!(open.admin_ui.auth, Some(AdminAuth::Disabled));
        assert_eq!(open.admin_ui.mode, AdminMode::Production);

        assert!(error(&[], &["--admin-ui-auth", "admin:password"]).contains("bcrypt hash"));
        assert!(error(&[], &["--admin-ui-auth", hash]).contains("USER:BCRYPT_HASH"));
        assert!(error(&[], &["--admin-ui-auth", &format!(":{hash}")]).contains("user name"));
        assert!(error(&[], &["--admin-ui-mode", "debug"]).contains("development or production"));
        assert!(error(&[], &["--admin-ui-namespace", "admin"]).contains("such as /admin"));
        assert!(error(&[], &["--admin-ui-namespace", "/chat"]).contains("demo's namespace"));

        let text = effective(&[("ADMIN_UI_AUTH", &format!("admin:{hash}"))], "", &[]);
        assert!(
            text.contains("# admin-ui-auth = (set, masked)  # variable ADMIN_UI_AUTH"),
            "{text}"
        );
        assert!(!text.contains(hash), "{text}");
    }

    #[test]
    fn every_variable_and_flag_is_declared_once() {
        let mut variables = HashSet::new();
        let mut flags = HashSet::new();
        let command = command();
        for arg in command.get_arguments() {
            if let Some(variable) = arg.get_env() {
                assert!(variables.insert(variable.to_owned()), "{variable:?} twice");
            }
            if let Some(long) = arg.get_long() {
                assert!(flags.insert(long.to_owned()), "--{long} twice");
            }
        }
        // Every setting has a variable (only help has none).
        for arg in command.get_arguments() {
            assert!(
                arg.get_env().is_some() || arg.get_id() == "help",
                "{arg} has no variable"
            );
        }
        assert!(variables.len() >= 30, "{} variables", variables.len());
    }

    #[test]
    fn shared_documents_settings() {
        let alone = config(&[], &[]);
        assert!(alone.docs_enabled(), "on by default on a lone server");
        let clustered = config(&[("REDIS_URL", "redis://127.0.0.1:6379")], &[]);
        assert!(!clustered.docs_enabled(), "off by default in a cluster");
        for (env, args, on) in [
            (&[][..], &["--docs=false"][..], false),
            (&[][..], &["--docs", "false"][..], false),
            (&[("DOCS", "off")][..], &[][..], false),
            (
                &[("REDIS_URL", "redis://127.0.0.1:6379")][..],
                &["--docs=true"][..],
                true,
            ),
        ] {
            assert_eq!(config(env, args).docs_enabled(), on, "{env:?} {args:?}");
        }
        let defaults = alone.docs;
        assert_eq!(defaults.enabled, None);
        assert_eq!(defaults.namespace, "/docs");
        assert_eq!(defaults.data_dir, PathBuf::from("./switchyard-data"));
        assert!(!defaults.in_memory);
        assert_eq!(
            (
                defaults.max_update_bytes,
                defaults.max_document_bytes,
                defaults.max_per_socket,
                defaults.max_awareness_bytes,
                defaults.max_open
            ),
            (262_144, 524_288, 8, 8192, 1000)
        );
        let set = config(
            &[
                ("SWITCHYARD_DATA_DIR", "/var/lib/switchyard"),
                ("DOCS", "on"),
            ],
            &[
                "--docs-in-memory",
                "--docs-max-per-socket",
                "3",
                "--docs-max-open",
                "5",
            ],
        )
        .docs;
        assert!(set.enabled == Some(true) && set.in_memory);
        assert_eq!(set.data_dir, PathBuf::from("/var/lib/switchyard"));
        assert_eq!((set.max_per_socket, set.max_open), (3, 5));
        assert!(
            error(&[], &["--docs-namespace", "/chat"]).contains("/chat is the demo's namespace")
        );
        assert!(error(&[], &["--docs-max-update-bytes", "0"]).contains("greater than 0"));
        // The document size is capped at what the apply threads' stacks cover (4 MiB).
        for (env, args) in [
            (&[][..], &["--docs-max-document-bytes", "4194305"][..]),
            (&[("DOCS_MAX_DOCUMENT_BYTES", "8388608")][..], &[][..]),
        ] {
            let refused = error(env, args);
            assert!(
                refused.contains("--docs-max-document-bytes")
                    && refused.contains(
                        "at most 4194304 (4 MiB: what the stacks of the threads that apply updates cover)"
                    ),
                "{refused}"
            );
        }
        assert_eq!(
            config(&[], &["--docs-max-document-bytes", "4194304"])
                .docs
                .max_document_bytes,
            4 << 20
        );
        assert_eq!(
            config(
                &[
                    ("DOCS", "on"),
                    ("ADMIN_UI_AUTH", "off"),
                    ("ADMIN_UI_NAMESPACE", "/docs")
                ],
                &[]
            )
            .check(),
            Err("--docs-namespace and --admin-ui-namespace are both /docs".to_owned())
        );
    }

    #[test]
    fn the_readme_documents_every_option() {
        let readme = include_str!("../../../README.md");
        for arg in all_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            if let Some(long) = arg.get_long() {
                assert!(
                    readme.contains(&format!("`--{long}`")),
                    "`--{long}` is not in README.md"
                );
            }
            if let Some(variable) = arg.get_env().and_then(|v| v.to_str()) {
                assert!(
                    readme.contains(&format!("`{variable}`")),
                    "`{variable}` is not in README.md"
                );
            }
        }
    }
}
