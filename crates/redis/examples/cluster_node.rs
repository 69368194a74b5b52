//! `cluster_node`: a Switchyard server on a classic Redis cluster, for the mixed-cluster tests
//! (`tests/cluster`). Clients drive cluster-wide operations through control events; a Node
//! server (`tests/cluster/node-node.mjs`) implements the same protocol, so every operation is
//! tried from both kinds of node. The protocol is in `tests/cluster/README.md`.
//!
//! ```text
//! cluster_node --port 3001 --redis-url redis://127.0.0.1:6379 --name a [--requests-timeout-ms 3000]
//!              [--adapter classic|streams|sharded] [--recovery-ms N]
//! ```
//!
//! `--adapter streams` speaks the protocol of `@socket.io/redis-streams-adapter` 0.3 instead of
//! the classic one, `--adapter sharded` that of `createShardedAdapter` on the Redis Cluster
//! `--redis-url` is a node of; `--recovery-ms N` turns connection state recovery on (maximum disconnection
//! duration N ms, middlewares skipped as on the reference server).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard::{
    Args, BroadcastOperator, Namespace, RecoveryConfig, Socket, SocketIo, SocketIoConfig,
};
use switchyard_redis::{
    RedisAdapterConfig, RedisCluster, RedisShardedCluster, RedisShardedConfig, RedisStreamsCluster,
    RedisStreamsConfig,
};

#[derive(Parser)]
struct Options {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// The Redis server.
    #[arg(long)]
    redis_url: String,
    /// This node's name, answered to `whoami` and in server-side acks.
    #[arg(long)]
    name: String,
    /// How long requests to the other nodes wait.
    #[arg(long, default_value_t = 5000)]
    requests_timeout_ms: u64,
    /// The adapter: `classic` (pub/sub), `streams` or `sharded` (Redis Cluster).
    #[arg(long, default_value = "classic")]
    adapter: String,
    /// Connection state recovery, with this maximum disconnection duration.
    #[arg(long)]
    recovery_ms: Option<u64>,
}

/// Which sockets a control event targets.
#[derive(Deserialize, Default)]
struct Target {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

impl Target {
    fn operator(&self, namespace: &Namespace) -> BroadcastOperator {
        namespace
            .broadcast()
            .to(self.rooms.clone())
            .except(self.except.clone())
    }
}

type Events = Arc<Mutex<Vec<Value>>>;

/// The first argument of a control event, whatever else came with it.
fn object(args: &Args) -> Value {
    args.values.first().cloned().unwrap_or(Value::Null)
}

fn target(args: &Args) -> Target {
    serde_json::from_value(object(args)).unwrap_or_default()
}

fn field<T: for<'de> Deserialize<'de> + Default>(args: &Args, name: &str) -> T {
    object(args)
        .get(name)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The `args` array of the first argument, binary attachments kept.
fn event_args(args: &Args) -> Args {
    let values = match object(args).get("args") {
        Some(Value::Array(values)) => values.clone(),
        _ => Vec::new(),
    };
    Args {
        values,
        attachments: args.attachments.clone(),
    }
}

fn ok() -> Result<Value, Infallible> {
    Ok(json!({ "ok": true }))
}

fn register(socket: &Socket, name: Arc<str>) {
    socket.on("whoami", move |_: Socket, _: Args| {
        let name = name.clone();
        async move { Ok::<_, Infallible>(json!({ "name": &*name })) }
    });
    socket.on("join", |socket: Socket, args: Args| async move {
        socket.join(field::<Vec<String>>(&args, "rooms"));
        ok()
    });
    socket.on("leave", |socket: Socket, args: Args| async move {
        socket.leave(field::<String>(&args, "room").as_str());
        ok()
    });
    socket.on("set-data", |socket: Socket, args: Args| async move {
        let data = object(&args).get("data").cloned().unwrap_or(Value::Null);
        if let Err(error) = socket.set_session_data(&data) {
            return Ok(json!({ "error": error.to_string() }));
        }
        ok()
    });
    socket.on("broadcast", |socket: Socket, args: Args| async move {
        let event: String = field(&args, "event");
        let sent = target(&args)
            .operator(&socket.namespace())
            .emit(&event, event_args(&args));
        match sent {
            Ok(()) => ok(),
            Err(error) => Ok(json!({ "error": error.to_string() })),
        }
    });
    socket.on(
        "broadcast-with-ack",
        |socket: Socket, args: Args| async move {
            let event: String = field(&args, "event");
            let timeout = Duration::from_millis(field::<u64>(&args, "timeout").max(1));
            let replies = target(&args)
                .operator(&socket.namespace())
                .timeout(timeout)
                .emit_with_ack(&event, event_args(&args))
                .await;
            Ok::<_, Infallible>(match replies {
                Ok(replies) => {
                    let timed_out = replies.iter().any(|reply| reply.result.is_err());
                    let responses: Vec<Value> = replies
                        .into_iter()
                        .filter_map(|reply| reply.result.ok())
                        .map(|args| args.values.into_iter().next().unwrap_or(Value::Null))
                        .collect();
                    json!({
                        "error": timed_out.then_some("operation has timed out"),
                        "responses": responses,
                    })
                }
                Err(error) => json!({ "error": error.to_string(), "responses": [] }),
            })
        },
    );
    socket.on("sockets-join", |socket: Socket, args: Args| async move {
        let rooms: Vec<String> = field(&args, "join");
        let done = target(&args)
            .operator(&socket.namespace())
            .sockets_join(rooms)
            .await;
        Ok::<_, Infallible>(answer(done))
    });
    socket.on("sockets-leave", |socket: Socket, args: Args| async move {
        let rooms: Vec<String> = field(&args, "leave");
        let done = target(&args)
            .operator(&socket.namespace())
            .sockets_leave(rooms)
            .await;
        Ok::<_, Infallible>(answer(done))
    });
    socket.on(
        "disconnect-sockets",
        |socket: Socket, args: Args| async move {
            let close: bool = field(&args, "close");
            let done = target(&args)
                .operator(&socket.namespace())
                .disconnect_sockets(close)
                .await;
            Ok::<_, Infallible>(answer(done))
        },
    );
    socket.on("fetch-sockets", |socket: Socket, args: Args| async move {
        let found = target(&args)
            .operator(&socket.namespace())
            .fetch_sockets()
            .await;
        Ok::<_, Infallible>(match found {
            Ok(found) => {
                let mut sockets: Vec<Value> = found
                    .iter()
                    .map(|remote| {
                        let mut rooms: Vec<String> =
                            remote.rooms().iter().map(|r| r.to_string()).collect();
                        rooms.sort();
                        json!({ "id": &**remote.id(), "rooms": rooms, "data": remote.data() })
                    })
                    .collect();
                sockets.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                json!({ "sockets": sockets })
            }
            Err(error) => json!({ "error": error.to_string() }),
        })
    });
    socket.on(
        "server-side-emit",
        |socket: Socket, args: Args| async move {
            let event: String = field(&args, "event");
            let namespace = socket.namespace();
            let with_ack: bool = field(&args, "ack");
            Ok::<_, Infallible>(if with_ack {
                let timeout = Duration::from_secs(5);
                match namespace
                    .server_side_emit_with_ack(&event, event_args(&args), timeout)
                    .await
                {
                    Ok(answers) => {
                        let responses: Vec<Value> = answers
                            .into_iter()
                            .map(|args| args.values.into_iter().next().unwrap_or(Value::Null))
                            .collect();
                        json!({ "error": null, "responses": responses })
                    }
                    Err(error) => json!({ "error": error.to_string(), "responses": [] }),
                }
            } else {
                match namespace.server_side_emit(&event, event_args(&args)).await {
                    Ok(()) => json!({ "ok": true }),
                    Err(error) => json!({ "error": error.to_string() }),
                }
            })
        },
    );
}

fn answer(done: Result<(), switchyard::AdapterError>) -> Value {
    match done {
        Ok(()) => json!({ "ok": true }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = Options::parse();
    let requests_timeout = Duration::from_millis(options.requests_timeout_ms);
    let factory = match options.adapter.as_str() {
        "classic" => {
            let config = RedisAdapterConfig {
                requests_timeout,
                ..Default::default()
            };
            RedisCluster::connect(&options.redis_url, config)
                .await
                .context("connecting to Redis")?
                .factory()
        }
        "streams" => {
            let config = RedisStreamsConfig {
                requests_timeout,
                ..Default::default()
            };
            RedisStreamsCluster::connect(&options.redis_url, config)
                .await
                .context("connecting to Redis")?
                .factory()
        }
        "sharded" => {
            let config = RedisShardedConfig {
                requests_timeout,
                ..Default::default()
            };
            RedisShardedCluster::connect(std::slice::from_ref(&options.redis_url), config)
                .await
                .context("connecting to the Redis Cluster")?
                .factory()
        }
        other => anyhow::bail!("unknown adapter {other:?} (classic, streams or sharded)"),
    };
    let config = SocketIoConfig {
        connection_state_recovery: options.recovery_ms.map(|ms| RecoveryConfig {
            max_disconnection_duration: Duration::from_millis(ms),
            skip_middlewares: true,
            ..RecoveryConfig::default()
        }),
        ..SocketIoConfig::default()
    };
    let io = SocketIo::with_adapter(config, factory);
    let name: Arc<str> = options.name.as_str().into();
    let events: Events = Arc::default();

    let namespace = io.of("/");
    let (log, me) = (events.clone(), name.clone());
    namespace.on_server_event("hello-servers", move |args: Args| {
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(json!({ "event": "hello-servers", "args": args.values }));
        let me = me.clone();
        async move { json!({ "name": &*me, "args": args.values }) }
    });
    namespace.on_connection(move |socket: Socket| {
        let (name, events) = (name.clone(), events.clone());
        async move {
            register(&socket, name);
            socket.on("server-events", move |_: Socket, _: Args| {
                let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
                async move { Ok::<_, Infallible>(json!({ "events": events })) }
            });
        }
    });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
    tracing::info!(port = options.port, name = %options.name, "cluster node listening");
    io.serve(listener).await?;
    Ok(())
}
