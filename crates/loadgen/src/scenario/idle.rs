//! `idle`: holds N connections while only heartbeats flow.
//!
//! The server's VmRSS is read before the first connection, once all are open and settled
//! (2 s), and at the end of the hold (`--duration`, which should exceed the server's ping
//! interval, 25 s by default, so every connection has exchanged heartbeats). RSS per
//! connection = (RSS − RSS before) / connections open, at both points. Server CPU is measured
//! over the hold. Each connection is answered by its own task, spawned as soon as it opens, so
//! no ping goes unanswered while the rest connect.
//!
//! Over Socket.IO each connection is in the main namespace `/` and, as a real client would be
//! (its user's room, say), in one room of its own: it emits `join` with `idle-<index>` and waits
//! for the ack before it counts as connected. The bare framing has no rooms.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{base, rooms, secs};
use crate::conn::{note_error, Target, Ws};
use crate::metrics::{proc_rss_kib, round, Window};
use crate::opts::Opts;
use crate::wire::{Incoming, Proto};

const SETTLE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counters {
    pings: Cell<u64>,
    disconnected: Cell<u64>,
}

async fn hold(
    mut ws: Ws,
    target: Rc<Target>,
    counters: Rc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let proto = target.proto();
    loop {
        let next = tokio::select! {
            next = ws.next() => next,
            _ = stop.wait_for(|stop| *stop) => {
                let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
                return;
            }
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                if proto.parse(&text) == Incoming::Ping {
                    counters.pings.set(counters.pings.get() + 1);
                    if ws.send(proto.pong()).await.is_err() {
                        break;
                    }
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    counters.disconnected.set(counters.disconnected.get() + 1);
}

/// The `idle` scenario.
pub(crate) async fn run(opts: &Opts) -> anyhow::Result<Value> {
    let target = Rc::new(Target::new(opts));
    let mut out = base(opts);
    let rss_before = opts.server_pid.and_then(proc_rss_kib);
    let counters = Rc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    let gate = Rc::new(Semaphore::new(opts.concurrency));
    let mut tasks = JoinSet::new();
    let started = std::time::Instant::now();
    for index in 0..opts.clients {
        let (target, counters, stop, gate, done) = (
            target.clone(),
            counters.clone(),
            stop_rx.clone(),
            gate.clone(),
            done_tx.clone(),
        );
        tasks.spawn_local(async move {
            let opened = {
                let _permit = gate.acquire().await;
                match target.connect(index).await {
                    Ok(ws) if target.proto() == Proto::SocketIo => {
                        rooms::join(ws, Proto::SocketIo, format!("idle-{index}"))
                            .await
                            .map(|(ws, _)| ws)
                    }
                    opened => opened,
                }
            };
            match opened {
                Ok(ws) => {
                    let _ = done.send(Ok(()));
                    hold(ws, target, counters, stop).await;
                }
                Err(error) => {
                    let _ = done.send(Err(error));
                }
            }
        });
    }
    drop(done_tx);
    let (mut connected, mut failures, mut errors) = (0usize, 0usize, Vec::new());
    while let Some(result) = done_rx.recv().await {
        match result {
            Ok(()) => connected += 1,
            Err(error) => {
                failures += 1;
                note_error(&mut errors, format!("{error:#}"));
            }
        }
        if connected + failures == opts.clients {
            break;
        }
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss_connected = opts.server_pid.and_then(proc_rss_kib);
    let pings_before = counters.pings.get();
    let window = Window::start(opts.server_pid);
    tokio::time::sleep(opts.duration).await;
    window.finish(&mut out);
    let rss_end = opts.server_pid.and_then(proc_rss_kib);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    out.insert("clients".into(), json!(opts.clients));
    out.insert("connected".into(), json!(connected));
    out.insert("failures".into(), json!(failures));
    if !errors.is_empty() {
        out.insert("errors".into(), json!(errors));
    }
    out.insert("connect_s".into(), secs(connect_time));
    out.insert("hold_s".into(), secs(opts.duration));
    out.insert(
        "source_ips".into(),
        json!(opts
            .source_ips
            .iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()),
    );
    out.insert(
        "pings_in_hold".into(),
        json!(counters.pings.get() - pings_before),
    );
    out.insert("disconnected".into(), json!(counters.disconnected.get()));
    let per_conn = |rss: Option<u64>| match (rss_before, rss) {
        (Some(before), Some(after)) if connected > 0 => Some(round(
            (after as f64 - before as f64) * 1024.0 / connected as f64,
            0,
        )),
        _ => None,
    };
    if let Some(before) = rss_before {
        out.insert("rss_before_kib".into(), json!(before));
    }
    if let Some(rss) = rss_connected {
        out.insert("rss_connected_kib".into(), json!(rss));
    }
    if let Some(rss) = rss_end {
        out.insert("rss_end_kib".into(), json!(rss));
    }
    if let Some(bytes) = per_conn(rss_connected) {
        out.insert("rss_per_conn_connected_bytes".into(), json!(bytes));
    }
    if let Some(bytes) = per_conn(rss_end) {
        out.insert("rss_per_conn_bytes".into(), json!(bytes));
        // The server's RSS with a million such connections: what it held before the first,
        // plus a million times what each one added. Per-connection cost measured at 10,000 is
        // flat from there on (BENCHMARKS.md compares 1,000, 5,000 and 10,000), and the maps
        // that grow with the count are in it.
        if let Some(before) = rss_before {
            let projected = before as f64 * 1024.0 + bytes * 1e6;
            out.insert(
                "rss_projected_1m_gib".into(),
                json!(round(projected / f64::from(1u32 << 30), 2)),
            );
        }
    }
    Ok(Value::Object(out))
}
