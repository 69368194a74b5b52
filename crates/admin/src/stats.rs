//! `server_stats`: this server's connections, namespaces and traffic since the last report.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchyard::Metrics;

use crate::observer::{AdminObserver, CLOSE_REASONS};

/// The running totals the previous report ended at.
struct Totals {
    opened: u64,
    closed: [u64; CLOSE_REASONS.len()],
    messages_in: u64,
    bytes_in: u64,
    messages_out: u64,
    bytes_out: u64,
}

/// Builds the reports: what changed between two of them goes in `aggregatedEvents`.
pub(crate) struct Stats {
    server_id: String,
    hostname: String,
    started: Instant,
    last: Totals,
}

impl Stats {
    /// Reports counting from `metrics`, the server's counts now.
    pub(crate) fn new(server_id: String, metrics: &Metrics, observer: &AdminObserver) -> Stats {
        Stats {
            server_id,
            hostname: crate::hostname(),
            started: Instant::now(),
            last: totals(metrics, observer),
        }
    }

    /// The report for `metrics`, now; the traffic counts are those since the previous one.
    ///
    /// Packets and bytes are the engine's (heartbeats included, where the reference counts
    /// only packets with data); all of a report's traffic is put at the second it is made.
    pub(crate) fn report(&mut self, metrics: &Metrics, observer: &AdminObserver) -> Value {
        let now = totals(metrics, observer);
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs() * 1000)
            .unwrap_or(0);
        let mut events = Vec::new();
        let mut push = |kind: &str, sub_type: Option<&str>, count: u64| {
            if count > 0 {
                let mut event = json!({ "timestamp": second, "type": kind, "count": count });
                if let Some(sub_type) = sub_type {
                    event["subType"] = Value::from(sub_type);
                }
                events.push(event);
            }
        };
        push(
            "rawConnection",
            None,
            now.opened.saturating_sub(self.last.opened),
        );
        for (index, reason) in CLOSE_REASONS.iter().enumerate() {
            let count = now.closed[index].saturating_sub(self.last.closed[index]);
            push("rawDisconnection", Some(reason.as_str()), count);
        }
        push(
            "packetsIn",
            None,
            now.messages_in.saturating_sub(self.last.messages_in),
        );
        push(
            "bytesIn",
            None,
            now.bytes_in.saturating_sub(self.last.bytes_in),
        );
        push(
            "packetsOut",
            None,
            now.messages_out.saturating_sub(self.last.messages_out),
        );
        push(
            "bytesOut",
            None,
            now.bytes_out.saturating_sub(self.last.bytes_out),
        );
        self.last = now;
        let engine = &metrics.engine;
        let namespaces: Vec<Value> = metrics
            .sockets
            .iter()
            .map(|(name, count)| json!({ "name": name, "socketsCount": count }))
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": engine.sessions_polling + engine.sessions_websocket,
            "pollingClientsCount": engine.sessions_polling,
            "aggregatedEvents": events,
            "namespaces": namespaces,
        })
    }
}

/// The running totals of `metrics` and `observer` now.
fn totals(metrics: &Metrics, observer: &AdminObserver) -> Totals {
    let engine = &metrics.engine;
    Totals {
        opened: observer.opened.load(Ordering::Relaxed),
        closed: std::array::from_fn(|i| observer.closed[i].load(Ordering::Relaxed)),
        messages_in: engine.messages_in,
        bytes_in: engine.bytes_in,
        messages_out: engine.messages_out,
        bytes_out: engine.bytes_out,
    }
}
