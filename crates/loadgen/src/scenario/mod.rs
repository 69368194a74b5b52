//! The scenarios. Each opens its connections first, then runs a timed plan (warm-up,
//! measurement, drain) and returns one flat JSON object of results.

pub(crate) mod connect;
pub(crate) mod echo;
pub(crate) mod fanout;
pub(crate) mod idle;
pub(crate) mod rooms;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::opts::Opts;

/// The timeline of a measured run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Load starts.
    pub start: Instant,
    /// Measurement starts (after the warm-up).
    pub measure_start: Instant,
    /// Measurement ends; no new load after it.
    pub measure_end: Instant,
    /// Clients stop waiting for late answers.
    pub stop_at: Instant,
}

impl Plan {
    /// A plan starting now.
    pub(crate) fn now(opts: &Opts) -> Plan {
        let start = Instant::now();
        let measure_start = start + opts.warmup;
        let measure_end = measure_start + opts.duration;
        Plan {
            start,
            measure_start,
            measure_end,
            stop_at: measure_end + opts.drain,
        }
    }

    /// Whether `t` lies in the measurement window.
    pub(crate) fn measures(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.measure_end
    }
}

/// The fields every result starts with: what ran, against what, with which parameters.
pub(crate) fn base(opts: &Opts) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("case".into(), json!(opts.case));
    out.insert("scenario".into(), json!(opts.scenario.name()));
    out.insert("server".into(), json!(opts.server));
    out.insert("proto".into(), json!(opts.proto.name()));
    out.insert("addr".into(), json!(opts.addr.to_string()));
    out
}

/// Seconds as a JSON number with millisecond precision.
pub(crate) fn secs(d: Duration) -> Value {
    json!(crate::metrics::round(d.as_secs_f64(), 3))
}
