//! Command-line options.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context};

use crate::wire::Proto;

/// The usage text.
pub(crate) const USAGE: &str = "\
loadgen SCENARIO [options]      run one scenario, print a table and one JSON line
loadgen report RESULTS.jsonl    turn collected JSON lines into Markdown tables

Scenarios:
  echo      N clients each keep K `echo` emits-with-ack in flight  -> acks/s, latency
  fanout    N subscribers + 1 publisher emitting `broadcast`        -> deliveries/s, ratio, latency
  connect   open N clients as fast as allowed (--upgrade: polling first) -> handshakes/s
  idle      hold N connections, only heartbeats flow               -> server RSS/conn, CPU
  rooms     R rooms x M members: `join` throughput, then echo traffic over all members

Options:
  --addr HOST:PORT       server, loopback only (default 127.0.0.1:3000)
  --publisher-addr HOST:PORT  fanout: the publisher's server, when it is another node of a
                         cluster than the subscribers' (default: --addr)
  --path PATH            Engine.IO path (default /socket.io/)
  --bare                 speak the bare framing of bench/peers/bare (echo, fanout, connect, idle)
  --server NAME          label of the server in results (default `server`)
  --server-pid PID       read the server's CPU time and RSS from /proc/PID
  --clients N            clients (echo 100, fanout 1000 subscribers, connect 1000, idle 10000)
  --inflight K           echo emits in flight per client (echo 4, rooms 1)
  --payload BYTES        payload length (default 32)
  --duration SECS        measured time (echo/fanout/rooms 10, idle hold 30)
  --warmup SECS          unmeasured time before it (default 1)
  --drain SECS           time after it for late answers (default 2)
  --rate R               fanout: R deliveries/s, open loop (default: closed loop)
  --upgrade              connect: polling handshake, then upgrade to WebSocket
  --concurrency C        connections being opened at once (connect 64, others 256)
  --source-ips A,B,..    loopback source addresses, used round-robin
  --rooms R              rooms scenario: rooms (default 1000)
  --members M            rooms scenario: members per room (default 5)
  --connect-timeout SECS one connection's handshake limit (default 10)
  --max-time SECS        hard limit for the whole run (default: computed from the above)
  --case NAME            result label (default: scenario and mode, e.g. fanout-rate)
  --json FILE            also append the JSON line to FILE
";

/// The scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Echo with acks.
    Echo,
    /// Broadcast fan-out.
    Fanout,
    /// Connection handshakes.
    Connect,
    /// Idle connections.
    Idle,
    /// Rooms: joins, then echo traffic.
    Rooms,
}

impl Scenario {
    /// The scenario's name on the command line and in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Fanout => "fanout",
            Scenario::Connect => "connect",
            Scenario::Idle => "idle",
            Scenario::Rooms => "rooms",
        }
    }
}

/// All options of one run.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    /// The scenario.
    pub scenario: Scenario,
    /// The server's address.
    pub addr: SocketAddr,
    /// Fanout: the publisher's server, when it differs (a cluster's other node).
    pub publisher_addr: Option<SocketAddr>,
    /// The Engine.IO path, with a trailing slash.
    pub path: String,
    /// The framing.
    pub proto: Proto,
    /// The server's label.
    pub server: String,
    /// The server's process, for CPU and RSS.
    pub server_pid: Option<u32>,
    /// Number of clients (subscribers for fanout).
    pub clients: usize,
    /// Emits in flight per client.
    pub inflight: usize,
    /// Payload length in bytes.
    pub payload: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before the measurement.
    pub warmup: Duration,
    /// Time after the measurement for late answers.
    pub drain: Duration,
    /// Fan-out deliveries per second (open loop), if set.
    pub rate: Option<f64>,
    /// Connect through a polling handshake and an upgrade.
    pub upgrade: bool,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// Source addresses, round-robin; empty: the kernel's choice.
    pub source_ips: Vec<IpAddr>,
    /// Rooms (rooms scenario).
    pub rooms: usize,
    /// Members per room (rooms scenario).
    pub members: usize,
    /// One connection's handshake limit.
    pub connect_timeout: Duration,
    /// Hard limit of the whole run.
    pub max_time: Duration,
    /// Result label.
    pub case: String,
    /// File the JSON line is appended to.
    pub json: Option<PathBuf>,
}

fn secs(value: &str) -> anyhow::Result<Duration> {
    let secs: f64 = value
        .parse()
        .with_context(|| format!("{value:?} is not seconds"))?;
    ensure!(secs.is_finite() && secs >= 0.0, "{value:?} is not seconds");
    Ok(Duration::from_secs_f64(secs))
}

impl Opts {
    /// Parses the arguments after the scenario name.
    pub(crate) fn parse(scenario: Scenario, args: &[String]) -> anyhow::Result<Opts> {
        let mut clients = None;
        let mut inflight = None;
        let mut duration = None;
        let mut concurrency = None;
        let mut max_time = None;
        let mut case = None;
        let mut opts = Opts {
            scenario,
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            publisher_addr: None,
            path: "/socket.io/".to_owned(),
            proto: Proto::SocketIo,
            server: "server".to_owned(),
            server_pid: None,
            clients: 0,
            inflight: 0,
            payload: 32,
            duration: Duration::ZERO,
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(2),
            rate: None,
            upgrade: false,
            concurrency: 0,
            source_ips: Vec::new(),
            rooms: 1000,
            members: 5,
            connect_timeout: Duration::from_secs(10),
            max_time: Duration::ZERO,
            case: String::new(),
            json: None,
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            match flag.as_str() {
                "--bare" => {
                    opts.proto = Proto::Bare;
                    continue;
                }
                "--upgrade" => {
                    opts.upgrade = true;
                    continue;
                }
                _ => {}
            }
            let value = iter
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            let number = || -> anyhow::Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag}: {value:?} is not a number"))
            };
            match flag.as_str() {
                "--addr" => {
                    opts.addr = value
                        .parse()
                        .with_context(|| format!("--addr: {value:?} is not HOST:PORT"))?
                }
                "--publisher-addr" => {
                    opts.publisher_addr =
                        Some(value.parse().with_context(|| {
                            format!("--publisher-addr: {value:?} is not HOST:PORT")
                        })?)
                }
                "--path" => {
                    opts.path = value.clone();
                    if !opts.path.ends_with('/') {
                        opts.path.push('/');
                    }
                }
                "--server" => opts.server = value.clone(),
                "--server-pid" => opts.server_pid = Some(number()? as u32),
                "--clients" => clients = Some(number()?),
                "--inflight" => inflight = Some(number()?),
                "--payload" => opts.payload = number()?,
                "--duration" => duration = Some(secs(value)?),
                "--warmup" => opts.warmup = secs(value)?,
                "--drain" => opts.drain = secs(value)?,
                "--rate" => {
                    let rate: f64 = value.parse().context("--rate needs deliveries/s")?;
                    ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
                    opts.rate = Some(rate);
                }
                "--concurrency" => concurrency = Some(number()?),
                "--source-ips" => {
                    opts.source_ips = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().with_context(|| format!("bad address {s:?}")))
                        .collect::<anyhow::Result<_>>()?
                }
                "--rooms" => opts.rooms = number()?,
                "--members" => opts.members = number()?,
                "--connect-timeout" => opts.connect_timeout = secs(value)?,
                "--max-time" => max_time = Some(secs(value)?),
                "--case" => case = Some(value.clone()),
                "--json" => opts.json = Some(PathBuf::from(value)),
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
        }
        // Load goes to this machine only.
        ensure!(
            opts.addr.ip().is_loopback()
                && opts
                    .publisher_addr
                    .is_none_or(|addr| addr.ip().is_loopback()),
            "--addr and --publisher-addr must be loopback addresses (127.0.0.0/8 or ::1)"
        );
        ensure!(
            opts.source_ips.iter().all(IpAddr::is_loopback),
            "--source-ips must be loopback addresses"
        );
        opts.clients = clients.unwrap_or(match scenario {
            Scenario::Echo => 100,
            Scenario::Fanout => 1000,
            Scenario::Connect => 1000,
            Scenario::Idle => 10_000,
            Scenario::Rooms => opts.rooms * opts.members,
        });
        opts.inflight = inflight.unwrap_or(match scenario {
            Scenario::Rooms => 1,
            _ => 4,
        });
        opts.duration = duration.unwrap_or(Duration::from_secs(match scenario {
            Scenario::Idle => 30,
            _ => 10,
        }));
        opts.concurrency = concurrency
            .unwrap_or(match scenario {
                Scenario::Connect => 64,
                _ => 256,
            })
            .max(1);
        ensure!(opts.clients > 0, "--clients must be at least 1");
        ensure!(opts.inflight > 0, "--inflight must be at least 1");
        if opts.proto == Proto::Bare {
            ensure!(
                scenario != Scenario::Rooms,
                "the bare server has no rooms: rooms needs Socket.IO"
            );
            ensure!(
                !opts.upgrade,
                "the bare server has no polling: no --upgrade"
            );
        }
        if scenario == Scenario::Fanout {
            ensure!(
                opts.payload >= crate::wire::STAMP_DIGITS,
                "fanout payloads carry a {}-digit timestamp: --payload must be at least that",
                crate::wire::STAMP_DIGITS
            );
        }
        // Connecting is bounded by the handshake timeout per wave of `concurrency`.
        let waves = opts.clients.div_ceil(opts.concurrency) as u32;
        let connecting = (opts.connect_timeout * waves.min(6)).max(Duration::from_secs(30));
        opts.max_time = max_time.unwrap_or(
            connecting + opts.warmup + opts.duration + opts.drain + Duration::from_secs(60),
        );
        opts.case = case.unwrap_or_else(|| match scenario {
            Scenario::Fanout if opts.rate.is_some() => "fanout-rate".to_owned(),
            Scenario::Fanout => "fanout-closed".to_owned(),
            Scenario::Connect if opts.upgrade => "connect-upgrade".to_owned(),
            Scenario::Connect => "connect-ws".to_owned(),
            other => other.name().to_owned(),
        });
        Ok(opts)
    }
}
