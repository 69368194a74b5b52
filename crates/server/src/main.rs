//! The Switchyard server: a Socket.IO v5 server with three demo namespaces (`/chat`,
//! `/notifications` and `/calls`, 1:1 WebRTC signaling) and a page at `/` that uses them.
//!
//! `cargo run --release` from the workspace root listens on 127.0.0.1:3000; see `--help` (or
//! [`config`]) for the settings, all of which can also come from environment variables.
//! Ctrl-C or SIGTERM closes every connection gracefully, then exits.

mod api;
mod backend;
mod calls;
mod chat;
mod config;
mod config_file;
mod grpc;
mod health;
mod history;
mod identity;
mod input;
mod metrics;
mod mint;
mod notifications;
mod presence;
mod rooms;
mod signin;
mod tls;
mod web;
mod webhooks;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard::adapter::AdapterFactory;
use switchyard::engineio::{serve_service_with_config, EngineConfig, Limits, Rate, ServeConfig};
use switchyard::{RecoveryConfig, SocketIo, SocketIoConfig, SocketLimits};
use switchyard_admin::{AdminAuth, AdminUi, AdminUiConfig};
use switchyard_auth::{ClaimRules, JwtAuth, JwtConfig, Key, KeySet};
use switchyard_docs::{DocLimits, DocService, DocsConfig, Storage};
use switchyard_redis::{
    RedisAdapterConfig, RedisCluster, RedisConnection, RedisShardedCluster, RedisShardedConfig,
    RedisStreamsCluster, RedisStreamsConfig,
};
use tokio::net::TcpStream;
use tower_layer::Layer;
use tracing::{error, info, warn};

use crate::config::{AdapterKind, AdminUiSettings, Command, Config, JwtSettings, LogFormat};
use crate::history::{History, RedisRooms};

/// How long Redis must stay unreachable before `/readyz` says so.
const REDIS_GRACE: Duration = Duration::from_secs(3);

/// How long the gRPC API may take to finish its calls once the server stops.
const GRPC_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often at most a JWKS file is looked at for changes.
const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(Command::Run(config)) => config,
        Ok(Command::MintToken(config, options)) => {
            return match mint::mint(&config, &options) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("switchyard: {error:#}");
                    ExitCode::from(2)
                }
            };
        }
        Ok(Command::CheckConfig(config, effective)) => return check_config(&config, &effective),
        // The help (on stdout, exit 0) or a usage error (on stderr, exit 2).
        Err(error) => error.exit(),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: loads what the settings name (JWT keys, TLS files), as the server would
/// before listening, and prints the effective configuration.
fn check_config(config: &Config, effective: &str) -> ExitCode {
    let loaded = config
        .check()
        .map_err(anyhow::Error::msg)
        .and_then(|()| jwt_auth(&config.jwt).context("cannot load the JWT keys"))
        .and_then(|_| config.tls().as_ref().map(tls::acceptor).transpose())
        .and_then(|_| webhooks::tls_config(config.webhooks.ca_file.as_deref()));
    print!("{effective}");
    match loaded {
        Ok(_) => {
            eprintln!("switchyard: the configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The claim checks and token sources of `settings`.
fn jwt_config(settings: &JwtSettings) -> JwtConfig {
    JwtConfig {
        rules: ClaimRules {
            issuers: settings.issuer.iter().cloned().collect(),
            audiences: settings.audience.iter().cloned().collect(),
            leeway: settings.leeway,
            require_exp: true,
        },
        sources: settings.sources.clone(),
        disconnect_on_expiry: settings.disconnect_on_expiry,
    }
}

/// The verifier of development tokens (`POST /auth/dev-token`) in dev mode without a key:
/// the development secret, with the configured issuer, audience, leeway and sources.
fn dev_jwt_auth(settings: &JwtSettings) -> anyhow::Result<JwtAuth> {
    let keys = KeySet::new().with_key(Key::hmac_secret(config::DEV_SECRET.as_bytes())?);
    Ok(JwtAuth::new(keys, jwt_config(settings))?)
}

/// The JWT verifier for `settings`, `None` when no key is configured (dev mode).
fn jwt_auth(settings: &JwtSettings) -> anyhow::Result<Option<JwtAuth>> {
    if !settings.enabled() {
        return Ok(None);
    }
    let mut keys = KeySet::new();
    // With --jwt-dev-secret, the development secret is accepted besides JWT_SECRET.
    for secret in settings.hmac_secrets() {
        keys = keys.with_key(Key::hmac_secret(secret.as_bytes())?);
    }
    for path in settings.public_keys.iter().flatten() {
        keys = keys.with_key(Key::public_pem_file(path)?);
    }
    if let Some(path) = &settings.jwks {
        keys = keys.with_jwks_file(path, JWKS_CHECK_INTERVAL)?;
    }
    Ok(Some(JwtAuth::new(keys, jwt_config(settings))?))
}

/// The Socket.IO server for `config`, with the demo namespaces registered, and the webhooks'
/// client when a namespace has webhooks.
fn socket_io(
    config: &Config,
    adapter: Option<AdapterFactory>,
    history: &History,
    jwt: Option<JwtAuth>,
) -> anyhow::Result<(SocketIo, Option<webhooks::Webhooks>)> {
    let limits = &config.limits;
    let mut engine = EngineConfig::default()
        .path("/socket.io/")
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(config.max_payload)
        .max_buffered_bytes(limits.max_buffered_bytes)
        .write_timeout(limits.write_timeout)
        .body_timeout(limits.body_timeout)
        .ipv6_prefix_len(limits.ipv6_prefix_len)
        .max_header_bytes(limits.max_header_bytes)
        .limits(Limits {
            max_sessions: Some(limits.max_connections),
            max_sessions_per_ip: limits.max_connections_per_ip,
            handshake_rate_per_ip: limits
                .handshake_rate
                .map(|rate| Rate::new(f64::from(rate), limits.handshake_burst)),
            allowed_origins: limits.allowed_origins.clone(),
        });
    engine.cors = config.cors_config();
    let namespaces = config.namespaces.resolve();
    let io_config = SocketIoConfig {
        engine,
        limits: SocketLimits {
            event_rate: limits
                .event_rate
                .map(|rate| Rate::new(f64::from(rate), limits.event_burst)),
            max_rooms_per_socket: limits.max_rooms_per_socket,
            max_pending_acks: limits.max_pending_acks,
            max_namespaces_per_connection: limits.max_namespaces_per_connection,
            max_auth_bytes: limits.max_auth_bytes,
        },
        connection_state_recovery: (!config.recovery.is_zero()).then(|| RecoveryConfig {
            max_disconnection_duration: config.recovery,
            // Only where the settings say: not in the admin UI's namespace, nor in `/`.
            namespaces: Some(
                namespaces
                    .each()
                    .iter()
                    .filter(|(_, settings)| settings.recovery)
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
            ),
            ..RecoveryConfig::default()
        }),
        ..SocketIoConfig::default()
    };
    let io = match adapter {
        Some(factory) => SocketIo::with_adapter(io_config, factory),
        None => SocketIo::new(io_config),
    };
    config.check().map_err(anyhow::Error::msg)?;
    let webhooks = config.webhooks.secret.as_deref().and_then(|secret| {
        let used = namespaces
            .each()
            .iter()
            .any(|(_, settings)| settings.webhook.any());
        used.then(|| webhooks::Webhooks::new(&config.webhooks, secret))
    });
    let webhooks = webhooks
        .transpose()
        .context("cannot set up the webhooks' HTTP client")?;
    let hooks = |settings: &config::NamespaceSettings| {
        let hooks = webhooks.as_ref()?.for_namespace(&settings.webhook)?;
        info!(url = settings.webhook.url.as_deref().unwrap_or_default(),
            connect = settings.webhook.connect,
            disconnect = settings.webhook.disconnect,
            events = ?settings.webhook.events,
            "webhooks on");
        Some(hooks)
    };
    // Without a key, a client may still sign in with a development token.
    let dev = match &jwt {
        Some(_) => None,
        None => Some(dev_jwt_auth(&config.jwt).context("cannot set up the development key")?),
    };
    let required = |public: bool| match (&jwt, &dev) {
        (Some(jwt), _) if !public => identity::Verifier::Required(jwt.clone()),
        (Some(_), _) => identity::Verifier::Trust,
        (None, Some(dev)) => identity::Verifier::Optional(dev.clone()),
        (None, None) => identity::Verifier::Trust,
    };
    // The users' inboxes have a store of their own (in memory: --inbox-max-bytes).
    // With JWT on and /notifications public, its users are names taken on trust.
    let notifier = notifications::Notifier::new(&io, history.clone())
        .with_unverified_users(jwt.is_some() && namespaces.notifications.public)
        .with_rate(config.notify_rate);
    chat::register(
        &io,
        required(namespaces.chat.public),
        &namespaces.chat,
        hooks(&namespaces.chat),
        Some(history.clone()),
        Some(notifier.clone()),
    );
    notifications::register(
        &io,
        required(namespaces.notifications.public),
        &namespaces.notifications,
        hooks(&namespaces.notifications),
        Some(history.clone()),
        &notifier,
    );
    // Never public: with JWT on, a call needs a token.
    calls::register(
        &io,
        required(false),
        config.call_ring_timeout,
        config.call_retry_cooldown,
    );
    match &jwt {
        Some(_) => info!(
            chat = if namespaces.chat.public {
                "public"
            } else {
                "token required"
            },
            notifications = if namespaces.notifications.public {
                "public"
            } else {
                "token required"
            },
            dev_secret = config.jwt.dev_secret,
            "JWT authentication on"
        ),
        None => warn!(
            "no JWT key configured: dev mode, clients name themselves (auth.name / auth.user) or give a development token (auth.token)"
        ),
    }
    if config.jwt.dev_tokens_on() {
        warn!(
            ttl_s = config.jwt.dev_token_ttl.as_secs(),
            "POST /auth/dev-token mints development tokens for any name: for development only"
        );
    }
    if config.jwt.dev_secret {
        warn!(
            "the development JWT secret is accepted: anyone can mint tokens; never in production"
        );
    }
    if limits.max_buffered_bytes < config.max_payload {
        warn!(
            max_buffered_bytes = limits.max_buffered_bytes,
            max_payload = config.max_payload,
            "the outgoing buffer is smaller than the largest message: such a message closes its recipients' connections"
        );
    }
    Ok((io, webhooks))
}

/// The Socket.IO Admin UI's namespace, when `--admin-ui-auth` is set.
fn admin_ui(io: &SocketIo, settings: &AdminUiSettings) -> anyhow::Result<Option<AdminUi>> {
    let Some(auth) = settings.auth.clone() else {
        return Ok(None);
    };
    if auth == AdminAuth::Disabled {
        warn!("the admin UI's namespace has no login (--admin-ui-auth off): anyone who reaches the server may use it");
    }
    let mut admin = AdminUiConfig::new(auth);
    admin.namespace = settings.namespace.clone();
    admin.read_only = settings.read_only;
    admin.mode = settings.mode;
    if let Some(server_id) = &settings.server_id {
        admin.server_id = server_id.clone();
    }
    info!(
        namespace = admin.namespace,
        read_only = admin.read_only,
        mode = ?admin.mode,
        server_id = admin.server_id,
        "admin UI namespace on"
    );
    Ok(Some(
        AdminUi::install(io, admin).context("cannot set up the admin UI namespace")?,
    ))
}

/// The shared documents' namespace (`--docs`: on by default on a lone server, off in a
/// cluster): Yjs documents stored under `--data-dir` (or in memory). Its clients are
/// identified by the same middleware as `/chat`'s: the token's `sub` with JWT on, else
/// `auth.name` (dev mode), so that only an identified client edits.
async fn docs(
    io: &SocketIo,
    config: &Config,
    jwt: Option<JwtAuth>,
) -> anyhow::Result<Option<DocService>> {
    let settings = &config.docs;
    if !config.docs_enabled() {
        if settings.enabled.is_none() {
            info!("shared documents off in a cluster (--docs=true turns them on)");
        }
        return Ok(None);
    }
    let storage = if settings.in_memory {
        Storage::Memory
    } else {
        Storage::Directory(settings.data_dir.clone())
    };
    let limits = DocLimits {
        max_update_bytes: settings.max_update_bytes,
        max_document_bytes: settings.max_document_bytes,
        max_documents_per_socket: settings.max_per_socket,
        max_awareness_bytes: settings.max_awareness_bytes,
        max_open_documents: settings.max_open,
        ..DocLimits::default()
    };
    let namespace = io.of(&settings.namespace);
    let token_required = jwt.is_some();
    // As on /chat: a token with JWT on; in dev mode a development token, else a name.
    let verifier = match jwt {
        Some(jwt) => identity::Verifier::Required(jwt),
        None => identity::Verifier::Optional(
            dev_jwt_auth(&config.jwt).context("cannot set up the development key")?,
        ),
    };
    // Before the service's connection handler: a client that is not identified never
    // reaches the documents.
    identity::install(&namespace, verifier, "name");
    let service = DocService::attach(
        &namespace,
        DocsConfig {
            storage: storage.clone(),
            limits,
            // A join loading a document waits this long at most for the other servers of a
            // cluster (their answers go through the adapter's requests).
            peer_timeout: config.redis_requests_timeout,
            ..DocsConfig::default()
        },
    )
    .await
    .with_context(|| match &storage {
        Storage::Directory(directory) => format!(
            "cannot open the document store under {}",
            directory.display()
        ),
        Storage::Memory => "cannot open the in-memory document store".to_owned(),
    })?;
    match &storage {
        Storage::Directory(directory) => info!(
            namespace = settings.namespace,
            store = %directory.join(Storage::FILE_NAME).display(),
            token_required,
            "shared documents on"
        ),
        Storage::Memory => info!(
            namespace = settings.namespace,
            store = "memory",
            token_required,
            "shared documents on (in memory only: lost when the server stops)"
        ),
    }
    // In a cluster, each server keeps its own store and copies; the service keeps them
    // converging through the adapter's server-side events (`docs:update`, `docs:sync`).
    if config.redis_url.is_some() {
        info!(
            namespace = settings.namespace,
            "shared documents converge across the cluster; this server keeps its own store \
             (durability is per server, plus the sync with the others when a document loads)"
        );
    }
    // The join ack carries a whole document, and more may be waiting for the client.
    if settings
        .max_document_bytes
        .saturating_add(settings.max_update_bytes)
        > config.limits.max_buffered_bytes
    {
        warn!(
            max_document_bytes = settings.max_document_bytes,
            max_update_bytes = settings.max_update_bytes,
            max_buffered_bytes = config.limits.max_buffered_bytes,
            "a large document may not fit in a client's outgoing buffer, which closes its connection"
        );
    }
    Ok(Some(service))
}

/// Whether the cluster's backend answers, for `/readyz`.
type Reachable = Box<dyn Fn() -> bool + Send + Sync>;

/// A server in a cluster: its adapters, whether Redis answers, and the connection for the
/// server's own data (room history).
struct Clustered {
    factory: AdapterFactory,
    reachable: Reachable,
    connection: RedisConnection,
}

impl Clustered {
    fn new(factory: AdapterFactory, reachable: Reachable, connection: RedisConnection) -> Self {
        Clustered {
            factory,
            reachable,
            connection,
        }
    }
}

/// The cluster's adapters and their reachability, when a Redis server is configured.
async fn cluster(config: &Config) -> anyhow::Result<Option<Clustered>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let shown = config_file::redact_url(url);
    let unreachable = || format!("cannot connect to Redis at {shown}");
    match config.adapter_kind() {
        AdapterKind::Redis => {
            let options = RedisAdapterConfig {
                prefix: config.redis_prefix.clone(),
                requests_timeout: config.redis_requests_timeout,
                ..RedisAdapterConfig::default()
            };
            let cluster = RedisCluster::connect(url, options)
                .await
                .with_context(unreachable)?;
            info!(adapter = "redis", prefix = %config.redis_prefix, "clustered on Redis");
            if !config.recovery.is_zero() {
                warn!("with the redis adapter a client recovers its session only on the server it dropped from (sticky sessions); redis-streams recovers it on any");
            }
            let (factory, connection) = (cluster.factory(), cluster.connection());
            Ok(Some(Clustered::new(
                factory,
                Box::new(move || cluster.is_reachable()),
                connection,
            )))
        }
        AdapterKind::RedisStreams => {
            let options = RedisStreamsConfig {
                channel_prefix: config.redis_prefix.clone(),
                requests_timeout: config.redis_requests_timeout,
                ..RedisStreamsConfig::default()
            };
            let stream = options.stream_name.clone();
            let cluster = RedisStreamsCluster::connect(url, options)
                .await
                .with_context(unreachable)?;
            info!(adapter = "redis-streams", prefix = %config.redis_prefix, stream, "clustered on Redis");
            let (factory, connection) = (cluster.factory(), cluster.connection());
            Ok(Some(Clustered::new(
                factory,
                Box::new(move || cluster.is_reachable()),
                connection,
            )))
        }
        AdapterKind::RedisSharded => {
            let options = RedisShardedConfig {
                channel_prefix: config.redis_prefix.clone(),
                requests_timeout: config.redis_requests_timeout,
                ..RedisShardedConfig::default()
            };
            let seeds: Vec<String> = url
                .split(',')
                .map(str::trim)
                .filter(|seed| !seed.is_empty())
                .map(str::to_owned)
                .collect();
            let cluster = RedisShardedCluster::connect(&seeds, options)
                .await
                .with_context(|| format!("cannot connect to the Redis Cluster at {shown}"))?;
            info!(adapter = "redis-sharded", prefix = %config.redis_prefix, "clustered on a Redis Cluster");
            if !config.recovery.is_zero() {
                warn!("with the redis-sharded adapter a client recovers its session only on the server it dropped from (sticky sessions); redis-streams recovers it on any");
            }
            let (factory, connection) = (cluster.factory(), cluster.connection());
            Ok(Some(Clustered::new(
                factory,
                Box::new(move || cluster.is_reachable()),
                connection,
            )))
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let clustered = cluster(&config).await?;
    let history = match &clustered {
        Some(clustered) => History::in_redis(RedisRooms::new(
            clustered.connection.clone(),
            &config.redis_prefix,
            config.history_ttl,
            config.redis_requests_timeout,
        )),
        None => History::in_memory(config.history_max_bytes, config.inbox_max_bytes),
    };
    let (adapter, reachable) = clustered
        .map(|clustered| (clustered.factory, clustered.reachable))
        .unzip();
    // One verifier for every namespace (a JWKS file is watched once).
    let jwt = jwt_auth(&config.jwt).context("cannot load the JWT keys")?;
    let (io, webhooks) = socket_io(&config, adapter, &history, jwt.clone())?;
    // Kept for the server's life: dropping it stops the admin namespace's reports.
    let _admin_ui = admin_ui(&io, &config.admin_ui)?;
    let _docs = docs(&io, &config, jwt).await?;
    let readiness = Arc::new(health::Readiness::new(reachable, REDIS_GRACE));
    let tls = config.tls().as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // stdout, so scripts can read the URL (with PORT=0, the port picked).
    println!("Switchyard listening on {scheme}://{address}");
    info!(
        %address,
        tls = tls.is_some(),
        ping_interval_ms = config.ping_interval.as_millis() as u64,
        ping_timeout_ms = config.ping_timeout.as_millis() as u64,
        max_payload = config.max_payload,
        cors = ?config.cors,
        limits = ?config.limits,
        "started"
    );
    let mut operations = health::Health::new(web::StaticFiles, readiness.clone());
    if config.metrics {
        let exporter = metrics::Exporter::new(io.clone(), webhooks.as_ref().map(|w| w.metrics()));
        operations = operations.with_metrics(Arc::new(exporter));
    }
    let backend = config.api_keys.as_ref().map(|keys| {
        info!(keys = keys.len(), "backend API on at /api/v1/");
        (
            Arc::new(backend::ApiKeys::new(keys)),
            Arc::new(backend::Operations::new(io.clone(), history.clone())),
        )
    });
    let (stop_grpc, grpc_stopped) = tokio::sync::watch::channel(false);
    let grpc = match (config.grpc_port, &backend) {
        (None, _) => None,
        // Refused by `Config::check` already.
        (Some(_), None) => None,
        (Some(port), Some((keys, calls))) => {
            let listener = tokio::net::TcpListener::bind((config.host.as_str(), port))
                .await
                .with_context(|| format!("cannot listen on {}:{port} for gRPC", config.host))?;
            let address = listener
                .local_addr()
                .context("cannot read the gRPC listening address")?;
            // stdout, after the main line, so scripts can read the port picked.
            println!("Switchyard gRPC API listening on {address}");
            if !address.ip().is_loopback() && config.tls().is_none() {
                warn!(%address, "the gRPC API has no TLS (no --tls-cert): keep its port on a private network");
            }
            let mut stopped = grpc_stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let identity = config.tls().as_ref().map(grpc::identity).transpose()?;
            let serving = grpc::serve(listener, identity, keys.clone(), calls.clone(), shutdown);
            Some(tokio::spawn(async move {
                let served = serving.await;
                if let Err(error) = &served {
                    // Said when it happens, not at exit: the HTTP side keeps serving.
                    error!(%error, "the gRPC API stopped");
                }
                served
            }))
        }
    };
    let api = backend.as_ref().map(|(keys, calls)| {
        Arc::new(api::Api::new(
            keys.clone(),
            calls.clone(),
            config.limits.body_timeout,
        ))
    });
    let sign_in = Arc::new(signin::SignIn::new(&config.jwt, config.limits.body_timeout));
    let routes = signin::SignInService::new(operations, sign_in);
    let service = io.layer().layer(api::ApiService::new(routes, api));
    // The drain runs inside the shutdown future, so the listener keeps accepting meanwhile:
    // clients still reach their close (and new handshakes their 503), probes see "draining",
    // and /metrics and the API stay up. A second signal cuts the drain short.
    let shutdown = async {
        signals.recv().await;
        readiness.start_draining();
        info!(
            sessions = io.engine().session_count(),
            drain_window_ms = config.drain_window.as_millis() as u64,
            drain_timeout_ms = config.drain_timeout.as_millis() as u64,
            "shutting down: closing every connection"
        );
        tokio::select! {
            left = io.drain(config.drain_window, config.drain_timeout) => {
                if left > 0 {
                    warn!(left, "sessions still open after the drain timeout");
                }
            }
            () = signals.recv() => warn!("second signal: stopping without waiting for the drain"),
        }
    };
    let serve_config = ServeConfig {
        write_timeout: config.limits.write_timeout,
        ..ServeConfig::default()
    };
    match tls {
        Some(acceptor) => tls::serve_tls(listener, acceptor, service, shutdown, serve_config).await,
        None => {
            let plain = |stream: TcpStream, _| std::future::ready(Some(stream));
            serve_service_with_config(listener, plain, service, shutdown, serve_config).await
        }
    }
    // The backend hears of the sockets the drain closed (within the drain timeout).
    if let Some(webhooks) = &webhooks {
        let left = webhooks.settle(config.drain_timeout).await;
        if left > 0 {
            warn!(left, "disconnect webhook calls still running at exit");
        }
    }
    // The gRPC API answers through the drain, as the HTTP one; it stops with the server.
    let _ = stop_grpc.send(true);
    if let Some(grpc) = grpc {
        match tokio::time::timeout(GRPC_STOP_TIMEOUT, grpc).await {
            Ok(Ok(Ok(()))) => {}
            // Logged when it happened.
            Ok(Ok(Err(_))) => {}
            Ok(Err(error)) => warn!(%error, "the gRPC API task failed"),
            Err(_) => warn!("the gRPC API did not stop in time"),
        }
    }

    info!("stopped");
    Ok(())
}

/// The stop signals, listened to from the start: a signal that comes before the server is
/// serving (just after its startup line, say) still drains it instead of killing it.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => info!("Ctrl-C received"),
            _ = self.terminate.recv() => info!("SIGTERM received"),
        }
        #[cfg(not(unix))]
        match tokio::signal::ctrl_c().await {
            Ok(()) => info!("Ctrl-C received"),
            Err(error) => {
                warn!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}
