//! `echo`: N clients, each keeping K `echo` emits-with-ack in flight.
//!
//! Every client sends K pre-encoded emits whose ack ids are the slots 0..K; each ack frees its
//! slot, which is sent again at once until the measurement ends. Acks received inside the
//! measurement window are counted (acks/s = count / window) and their round-trip time, from
//! the send of that slot to its ack, goes into the latency histogram.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{base, secs, Plan};
use crate::conn::{open_many, Target, Ws};
use crate::metrics::{histogram, latency_fields, record, Window};
use crate::opts::Opts;
use crate::wire::{filler, Incoming, Proto};

/// What the echo clients measured.
pub(crate) struct EchoStats {
    /// Acks received in the window.
    pub acks: u64,
    /// Their round-trip times.
    pub hist: Histogram<u64>,
    /// Clients whose connection ended early.
    pub disconnected: u64,
    /// Emits still unanswered when the clients stopped.
    pub unanswered: u64,
}

impl EchoStats {
    /// Empty statistics.
    pub(crate) fn new() -> Rc<RefCell<EchoStats>> {
        Rc::new(RefCell::new(EchoStats {
            acks: 0,
            hist: histogram(),
            disconnected: 0,
            unanswered: 0,
        }))
    }
}

/// The K pre-encoded echo emits (slot i carries ack id i).
pub(crate) fn echo_frames(proto: Proto, inflight: usize, payload: usize) -> Rc<[Message]> {
    let payload = filler(payload);
    (0..inflight as u64)
        .map(|slot| proto.echo(slot, &payload))
        .collect()
}

/// One echo client: keeps every slot in flight until the measurement ends, then waits for the
/// outstanding acks until the plan's stop time.
pub(crate) async fn echo_client(
    mut ws: Ws,
    proto: Proto,
    plan: Plan,
    frames: Rc<[Message]>,
    stats: Rc<RefCell<EchoStats>>,
) {
    let mut sent = vec![plan.start; frames.len()];
    let mut outstanding = frames.len();
    let now = Instant::now();
    for (slot, frame) in frames.iter().enumerate() {
        if ws.feed(frame.clone()).await.is_err() {
            stats.borrow_mut().disconnected += 1;
            return;
        }
        sent[slot] = now;
    }
    loop {
        // Take what is already there; flush our writes only before waiting.
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    stats.borrow_mut().disconnected += 1;
                    return;
                }
                match tokio::time::timeout_at(plan.stop_at.into(), ws.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                stats.borrow_mut().disconnected += 1;
                return;
            }
            Some(Ok(_)) => continue,
        };
        let result = match proto.parse(&text) {
            Incoming::Ack(slot) => {
                let slot = slot as usize;
                if slot >= frames.len() {
                    continue;
                }
                let now = Instant::now();
                if plan.measures(now) {
                    let mut stats = stats.borrow_mut();
                    stats.acks += 1;
                    record(&mut stats.hist, now - sent[slot]);
                }
                if now < plan.measure_end {
                    sent[slot] = now;
                    ws.feed(frames[slot].clone()).await
                } else {
                    outstanding -= 1;
                    if outstanding == 0 {
                        break;
                    }
                    Ok(())
                }
            }
            Incoming::Ping => ws.feed(proto.pong()).await,
            Incoming::Tick(_) | Incoming::Other => Ok(()),
        };
        if result.is_err() {
            stats.borrow_mut().disconnected += 1;
            return;
        }
    }
    stats.borrow_mut().unanswered += outstanding as u64;
    let _ = ws.close(None).now_or_never();
}

/// Runs the echo phase over open connections and adds its results to `out`.
pub(crate) async fn measure(
    opts: &Opts,
    proto: Proto,
    conns: Vec<Ws>,
    out: &mut Map<String, Value>,
) {
    let clients = conns.len();
    let frames = echo_frames(proto, opts.inflight, opts.payload);
    let stats = EchoStats::new();
    let plan = Plan::now(opts);
    let mut tasks = JoinSet::new();
    for ws in conns {
        tasks.spawn_local(echo_client(ws, proto, plan, frames.clone(), stats.clone()));
    }
    tokio::time::sleep_until(plan.measure_start.into()).await;
    let window = Window::start(opts.server_pid);
    tokio::time::sleep_until(plan.measure_end.into()).await;
    window.finish(out);
    let _ = tokio::time::timeout_at((plan.stop_at + opts.drain).into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let stats = stats.borrow();
    let window = opts.duration.as_secs_f64().max(1e-9);
    out.insert("clients".into(), json!(clients));
    out.insert("inflight".into(), json!(opts.inflight));
    out.insert("payload_bytes".into(), json!(opts.payload));
    out.insert("duration_s".into(), secs(opts.duration));
    out.insert("acks".into(), json!(stats.acks));
    out.insert(
        "acks_per_s".into(),
        json!((stats.acks as f64 / window).round()),
    );
    latency_fields(out, "", &stats.hist);
    out.insert("disconnected".into(), json!(stats.disconnected));
    out.insert("unanswered".into(), json!(stats.unanswered));
}

/// The `echo` scenario.
pub(crate) async fn run(opts: &Opts) -> anyhow::Result<Value> {
    let target = Target::new(opts);
    let opened = open_many(&target, 0, opts.clients, opts.concurrency, false).await;
    let mut out = base(opts);
    out.insert("connect_failures".into(), json!(opened.failures));
    if !opened.errors.is_empty() {
        out.insert("errors".into(), json!(opened.errors));
    }
    anyhow::ensure!(
        !opened.conns.is_empty(),
        "no client could connect: {:?}",
        opened.errors
    );
    let conns = opened.conns.into_iter().map(|(ws, _)| ws).collect();
    measure(opts, target.proto(), conns, &mut out).await;
    Ok(Value::Object(out))
}
