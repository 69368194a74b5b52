//! `loadgen`: the load generator of the Switchyard benchmarks.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 directly over WebSocket (tokio-tungstenite), with
//! pre-encoded frames, and uses only three events that any Socket.IO v4 server can implement:
//! `echo` (ack with the arguments), `broadcast` (relay `tick` to every other socket, then ack)
//! and `join` (join the named room, then ack). `--bare` speaks the minimal framing of the bare
//! WebSocket server in `bench/peers/bare` instead (see `wire.rs`).
//!
//! It runs on one thread (a current_thread runtime; the benchmark pins it to one core), only
//! against loopback addresses, and every run stops by itself: each scenario is timed, every
//! handshake has a timeout, and a watchdog ends the process after `--max-time`.
//! Every result reports the generator's own CPU time (getrusage) over the measurement window,
//! so a saturated generator shows. Run `loadgen --help` for the scenarios and options.

mod conn;
mod metrics;
mod opts;
mod report;
mod scenario;
mod wire;

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;

use crate::opts::{Opts, Scenario, USAGE};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args) {
        eprintln!("loadgen: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(command) = args.first() else {
        bail!("no scenario given\n\n{USAGE}");
    };
    let scenario = match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return Ok(());
        }
        "report" => return report(&args[1..]),
        "echo" => Scenario::Echo,
        "fanout" => Scenario::Fanout,
        "connect" => Scenario::Connect,
        "idle" => Scenario::Idle,
        "rooms" => Scenario::Rooms,
        other => bail!("unknown scenario {other:?}\n\n{USAGE}"),
    };
    let opts = Opts::parse(scenario, &args[1..])?;
    watchdog(opts.max_time);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        match opts.scenario {
            Scenario::Echo => scenario::echo::run(&opts).await,
            Scenario::Fanout => scenario::fanout::run(&opts).await,
            Scenario::Connect => scenario::connect::run(&opts).await,
            Scenario::Idle => scenario::idle::run(&opts).await,
            Scenario::Rooms => scenario::rooms::run(&opts).await,
        }
    });
    // Connections still open are dropped with the runtime, without waiting.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(value) => metrics::emit(&value, opts.json.as_deref()),
        Err(error) => {
            let value = json!({
                "case": opts.case,
                "scenario": opts.scenario.name(),
                "server": opts.server,
                "error": format!("{error:#}"),
            });
            metrics::emit(&value, opts.json.as_deref())?;
            Err(error)
        }
    }
}

/// Ends the process after `limit`, whatever it is doing.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "loadgen: --max-time of {} s reached, stopping",
            limit.as_secs_f64()
        );
        std::process::exit(3);
    });
}

fn report(args: &[String]) -> anyhow::Result<()> {
    let mut input = None;
    let mut base = "switchyard".to_owned();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--base" => base = iter.next().context("--base needs a name")?.clone(),
            path if input.is_none() => input = Some(path.to_owned()),
            other => bail!("unexpected argument {other:?}"),
        }
    }
    let input = input.context("report needs a results file")?;
    let lines = std::fs::read_to_string(&input).with_context(|| format!("cannot read {input}"))?;
    print!("{}", report::render(&lines, &base)?);
    Ok(())
}
