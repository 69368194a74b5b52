//! `fanout`: N subscribers and one publisher emitting `broadcast`; the server relays `tick`
//! to every other socket of the namespace, so each broadcast is due to every subscriber.
//!
//! Each broadcast's payload starts with its send time (nanoseconds since the generator
//! started; publisher and subscribers share the clock). Closed loop (default): the next
//! broadcast goes out when the previous one is acked. `--rate R`: broadcasts at fixed times,
//! R / N per second (R deliveries/s), stamped with their scheduled time, so a late send shows
//! in the latency instead of hiding it.
//!
//! With `--publisher-addr`, the publisher connects to another node of a cluster than the
//! subscribers, so every delivery crosses from one server to the other (through Redis, say).
//!
//! Counted are the broadcasts stamped inside the measurement window and the deliveries of
//! those broadcasts that arrive before the drain ends: deliveries/s = delivered / window,
//! delivery ratio = delivered / (broadcasts × subscribers), latency = arrival − stamp.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::{base, secs, Plan};
use crate::conn::{open_many, Target, Ws};
use crate::metrics::{histogram, latency_fields, record, round, Window};
use crate::opts::Opts;
use crate::wire::{stamp_of, stamped, Incoming, Proto};

#[derive(Default)]
struct Publisher {
    /// Broadcasts sent with a stamp inside the window.
    sent_in_window: u64,
    /// Broadcasts sent in all.
    sent: u64,
    /// Acks received.
    acks: u64,
    /// The publisher's connection ended early.
    disconnected: bool,
}

struct Subscribers {
    delivered: u64,
    hist: Histogram<u64>,
    disconnected: u64,
}

/// Nanoseconds from `epoch` to `t`.
fn nanos(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_nanos() as u64
}

async fn subscriber(
    mut ws: Ws,
    proto: Proto,
    plan: Plan,
    epoch: Instant,
    stats: Rc<RefCell<Subscribers>>,
) {
    let (from, to) = (
        nanos(epoch, plan.measure_start),
        nanos(epoch, plan.measure_end),
    );
    loop {
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    break;
                }
                match tokio::time::timeout_at(plan.stop_at.into(), ws.next()).await {
                    Ok(next) => next,
                    Err(_) => return,
                }
            }
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        match proto.parse(&text) {
            Incoming::Tick(payload) => {
                let Some(stamp) = stamp_of(payload) else {
                    continue;
                };
                if stamp >= from && stamp < to {
                    let now = nanos(epoch, Instant::now());
                    let mut stats = stats.borrow_mut();
                    stats.delivered += 1;
                    record(
                        &mut stats.hist,
                        Duration::from_nanos(now.saturating_sub(stamp)),
                    );
                }
            }
            Incoming::Ping => {
                if ws.feed(proto.pong()).await.is_err() {
                    break;
                }
            }
            Incoming::Ack(_) | Incoming::Other => {}
        }
    }
    stats.borrow_mut().disconnected += 1;
}

/// The publisher: closed loop, or open loop with one broadcast every `period`.
async fn publisher(
    mut ws: Ws,
    proto: Proto,
    plan: Plan,
    epoch: Instant,
    payload: usize,
    period: Option<Duration>,
    stats: Rc<RefCell<Publisher>>,
) {
    let (from, to) = (
        nanos(epoch, plan.measure_start),
        nanos(epoch, plan.measure_end),
    );
    let mut next_id: u64 = 0;
    // Counts a broadcast stamped `at` and encodes it with the next ack id.
    let mut frame = |at: Instant| {
        let stamp = nanos(epoch, at);
        let mut stats = stats.borrow_mut();
        stats.sent += 1;
        if stamp >= from && stamp < to {
            stats.sent_in_window += 1;
        }
        next_id += 1;
        proto.broadcast(next_id, &stamped(stamp, payload))
    };
    let mut ticker = period.map(|period| {
        let mut ticker = tokio::time::interval_at(plan.start.into(), period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    if ticker.is_none() && ws.feed(frame(Instant::now())).await.is_err() {
        stats.borrow_mut().disconnected = true;
        return;
    }
    loop {
        if ws.flush().await.is_err() {
            break;
        }
        let next = tokio::select! {
            next = ws.next() => next,
            at = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                let at: Instant = at.into();
                if at < plan.measure_end {
                    if ws.feed(frame(at)).await.is_err() {
                        break;
                    }
                } else {
                    ticker = None;
                }
                continue;
            }
            _ = tokio::time::sleep_until(plan.stop_at.into()) => return,
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let result = match proto.parse(&text) {
            Incoming::Ack(_) => {
                stats.borrow_mut().acks += 1;
                let now = Instant::now();
                if period.is_none() && now < plan.measure_end {
                    ws.feed(frame(now)).await
                } else {
                    Ok(())
                }
            }
            Incoming::Ping => ws.feed(proto.pong()).await,
            Incoming::Tick(_) | Incoming::Other => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    stats.borrow_mut().disconnected = true;
}

/// The `fanout` scenario.
pub(crate) async fn run(opts: &Opts) -> anyhow::Result<Value> {
    let target = Target::new(opts);
    let proto = target.proto();
    let mut out = base(opts);
    let opened = open_many(&target, 0, opts.clients, opts.concurrency, false).await;
    // The publisher connects last, so every subscriber is in the namespace already.
    // With `--publisher-addr`, on another node: every delivery crosses the cluster.
    let publisher_target = opts
        .publisher_addr
        .map_or_else(|| target.clone(), |a| target.at(a));
    let publisher_conn = open_many(&publisher_target, opts.clients, 1, 1, false).await;
    let failures = opened.failures + publisher_conn.failures;
    out.insert("connect_failures".into(), json!(failures));
    let mut errors = opened.errors;
    errors.extend(publisher_conn.errors);
    if !errors.is_empty() {
        out.insert("errors".into(), json!(errors));
    }
    let Some((publisher_ws, _)) = publisher_conn.conns.into_iter().next() else {
        anyhow::bail!("the publisher could not connect: {errors:?}");
    };
    let subscribers = opened.conns.len();
    anyhow::ensure!(subscribers > 0, "no subscriber could connect: {errors:?}");
    let period = opts
        .rate
        .map(|rate| Duration::from_secs_f64(subscribers as f64 / rate));

    let epoch = Instant::now();
    let subs = Rc::new(RefCell::new(Subscribers {
        delivered: 0,
        hist: histogram(),
        disconnected: 0,
    }));
    let publ = Rc::new(RefCell::new(Publisher::default()));
    let plan = Plan::now(opts);
    let mut tasks = JoinSet::new();
    for (ws, _) in opened.conns {
        tasks.spawn_local(subscriber(ws, proto, plan, epoch, subs.clone()));
    }
    tasks.spawn_local(publisher(
        publisher_ws,
        proto,
        plan,
        epoch,
        opts.payload,
        period,
        publ.clone(),
    ));
    tokio::time::sleep_until(plan.measure_start.into()).await;
    let window = Window::start(opts.server_pid);
    tokio::time::sleep_until(plan.measure_end.into()).await;
    window.finish(&mut out);
    let _ = tokio::time::timeout_at((plan.stop_at + Duration::from_secs(1)).into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    let subs = subs.borrow();
    let publ = publ.borrow();
    let window = opts.duration.as_secs_f64().max(1e-9);
    let expected = publ.sent_in_window * subscribers as u64;
    out.insert(
        "mode".into(),
        json!(if opts.rate.is_some() {
            "rate"
        } else {
            "closed"
        }),
    );
    out.insert("subscribers".into(), json!(subscribers));
    if let Some(rate) = opts.rate {
        out.insert("target_rate".into(), json!(rate));
    }
    out.insert("payload_bytes".into(), json!(opts.payload));
    out.insert("duration_s".into(), secs(opts.duration));
    out.insert("broadcasts".into(), json!(publ.sent_in_window));
    out.insert(
        "broadcasts_per_s".into(),
        json!(round(publ.sent_in_window as f64 / window, 1)),
    );
    out.insert("publisher_acks".into(), json!(publ.acks));
    out.insert("expected".into(), json!(expected));
    out.insert("delivered".into(), json!(subs.delivered));
    out.insert(
        "deliveries_per_s".into(),
        json!((subs.delivered as f64 / window).round()),
    );
    out.insert(
        "delivery_ratio".into(),
        json!(if expected == 0 {
            0.0
        } else {
            round(subs.delivered as f64 / expected as f64, 5)
        }),
    );
    latency_fields(&mut out, "", &subs.hist);
    // Subscribers still connected at the end stop by the plan and are not counted here.
    out.insert("disconnected".into(), json!(subs.disconnected));
    out.insert("publisher_disconnected".into(), json!(publ.disconnected));
    Ok(Value::Object(out))
}
