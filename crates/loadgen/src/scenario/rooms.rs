//! `rooms`: R rooms of M members (R × M clients), chat-like.
//!
//! The bench servers have no room-broadcast event, so this scenario measures two things:
//! 1. join throughput: once all clients are connected, every client emits `join` with its
//!    room name (`room-<r>`, client i in room i mod R) at the same time and waits for the ack;
//!    joins/s = joins acked / time from the first emit to the last ack; join latency per emit;
//! 2. echo traffic spread over all members of all rooms: with every socket in its room (so
//!    the server's room index holds R rooms), each client keeps `--inflight` (default 1)
//!    `echo` emits in flight for the measured duration, exactly as in `echo`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{base, echo};
use crate::conn::{open_many, Target, Ws};
use crate::metrics::{histogram, latency_fields, record, round};
use crate::opts::Opts;
use crate::wire::{Incoming, Proto};

/// Joins `room` and waits for the ack; returns the connection and the round trip.
pub(crate) async fn join(mut ws: Ws, proto: Proto, room: String) -> anyhow::Result<(Ws, Duration)> {
    let frame = proto
        .join(0, &room)
        .ok_or_else(|| anyhow::anyhow!("no rooms in this framing"))?;
    let began = Instant::now();
    ws.send(frame).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match proto.parse(&text) {
                Incoming::Ack(0) => return Ok((ws, began.elapsed())),
                Incoming::Ping => ws.send(proto.pong()).await?,
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None => anyhow::bail!("closed by the server"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
}

/// The `rooms` scenario.
pub(crate) async fn run(opts: &Opts) -> anyhow::Result<Value> {
    let target = Target::new(opts);
    let proto = target.proto();
    let mut out = base(opts);
    let clients = opts.rooms * opts.members;
    anyhow::ensure!(clients > 0, "--rooms and --members must be at least 1");
    let opened = open_many(&target, 0, clients, opts.concurrency, false).await;
    out.insert("rooms".into(), json!(opts.rooms));
    out.insert("members".into(), json!(opts.members));
    out.insert("connect_failures".into(), json!(opened.failures));
    if !opened.errors.is_empty() {
        out.insert("errors".into(), json!(opened.errors));
    }
    anyhow::ensure!(!opened.conns.is_empty(), "no client could connect");

    // Phase 1: everybody joins at once.
    let join_hist: Rc<RefCell<Histogram<u64>>> = Rc::new(RefCell::new(histogram()));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for (i, (ws, _)) in opened.conns.into_iter().enumerate() {
        let room = format!("room-{}", i % opts.rooms.max(1));
        tasks.spawn_local(tokio::time::timeout(
            opts.connect_timeout,
            join(ws, proto, room),
        ));
    }
    let mut joined = Vec::new();
    let mut join_failures = 0usize;
    let mut last = started;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(Ok((ws, took)))) => {
                last = Instant::now();
                record(&mut join_hist.borrow_mut(), took);
                joined.push(ws);
            }
            _ => join_failures += 1,
        }
    }
    let join_time = (last - started).as_secs_f64().max(1e-9);
    out.insert("joins".into(), json!(joined.len()));
    out.insert("join_failures".into(), json!(join_failures));
    out.insert("join_s".into(), json!(round(join_time, 3)));
    out.insert(
        "joins_per_s".into(),
        json!((joined.len() as f64 / join_time).round()),
    );
    latency_fields(&mut out, "join_", &join_hist.borrow());
    anyhow::ensure!(!joined.is_empty(), "no client could join");

    // Phase 2: echo traffic over every member of every room.
    echo::measure(opts, proto, joined, &mut out).await;
    Ok(Value::Object(out))
}
