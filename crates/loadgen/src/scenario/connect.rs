//! `connect`: opens N clients, at most `--concurrency` at a time, and keeps them open until
//! all are done (then closes them all).
//!
//! A handshake is complete when the client is connected to namespace `/`: WebSocket upgrade,
//! Engine.IO open packet, Socket.IO CONNECT answered. With `--upgrade`: a polling handshake
//! (HTTP GET), then a WebSocket with that sid, `2probe`/`3probe`/`5`, then the CONNECT over the
//! WebSocket. On the bare server it is the WebSocket upgrade alone.
//! handshakes/s = completed / (time from the first attempt to the last completion).

use serde_json::{json, Value};

use super::base;
use crate::conn::{open_many, Target};
use crate::metrics::{histogram, latency_fields, record, round, Window};
use crate::opts::Opts;

/// The `connect` scenario.
pub(crate) async fn run(opts: &Opts) -> anyhow::Result<Value> {
    let target = Target::new(opts);
    let mut out = base(opts);
    let window = Window::start(opts.server_pid);
    let opened = open_many(&target, 0, opts.clients, opts.concurrency, opts.upgrade).await;
    window.finish(&mut out);
    let mut hist = histogram();
    for (_, took) in &opened.conns {
        record(&mut hist, *took);
    }
    let elapsed = opened.elapsed.as_secs_f64().max(1e-9);
    out.insert(
        "mode".into(),
        json!(if opts.upgrade { "upgrade" } else { "websocket" }),
    );
    out.insert("clients".into(), json!(opts.clients));
    out.insert("concurrency".into(), json!(opts.concurrency));
    out.insert("connected".into(), json!(opened.conns.len()));
    out.insert("failures".into(), json!(opened.failures));
    if !opened.errors.is_empty() {
        out.insert("errors".into(), json!(opened.errors));
    }
    out.insert("elapsed_s".into(), json!(round(elapsed, 3)));
    out.insert(
        "handshakes_per_s".into(),
        json!((opened.conns.len() as f64 / elapsed).round()),
    );
    latency_fields(&mut out, "", &hist);
    drop(opened.conns);
    Ok(Value::Object(out))
}
