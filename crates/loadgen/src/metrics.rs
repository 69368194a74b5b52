//! Measurements: latency histograms, the generator's own CPU time, the server's CPU time and
//! RSS from /proc, and the output of one result.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// A latency histogram in microseconds, from 1 µs to 60 s, 3 significant figures.
pub(crate) fn histogram() -> Histogram<u64> {
    // The bounds are constants that `new_with_bounds` accepts.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Records a duration in microseconds (saturating at the histogram's top).
pub(crate) fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    hist.saturating_record((elapsed.as_micros() as u64).max(1));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Adds `<prefix>p50_ms`, `p99_ms`, `p999_ms`, `max_ms`, `mean_ms` and `<prefix>samples`.
pub(crate) fn latency_fields(out: &mut Map<String, Value>, prefix: &str, hist: &Histogram<u64>) {
    if hist.is_empty() {
        out.insert(format!("{prefix}samples"), json!(0));
        return;
    }
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        out.insert(
            format!("{prefix}{name}_ms"),
            json!(ms(hist.value_at_quantile(q))),
        );
    }
    out.insert(format!("{prefix}max_ms"), json!(ms(hist.max())));
    out.insert(
        format!("{prefix}mean_ms"),
        json!(round(hist.mean() / 1000.0, 3)),
    );
    out.insert(format!("{prefix}samples"), json!(hist.len()));
}

/// This process's user and system CPU time (getrusage).
pub(crate) fn self_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// A process's user + system CPU time, from /proc/PID/stat.
pub(crate) fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// A process's resident set size in KiB, from /proc/PID/status.
pub(crate) fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Busy CPU time of the whole machine (all cores), from /proc/stat.
pub(crate) fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_secs_f64(busy as f64 / ticks as f64))
}

/// CPU use over a measurement window: the generator's own, the whole machine's and, if known,
/// the server's.
pub(crate) struct Window {
    start: Instant,
    self_cpu: (Duration, Duration),
    machine_cpu: Option<Duration>,
    server_pid: Option<u32>,
    server_cpu: Option<Duration>,
}

impl Window {
    /// Starts a window now.
    pub(crate) fn start(server_pid: Option<u32>) -> Window {
        Window {
            start: Instant::now(),
            self_cpu: self_cpu(),
            machine_cpu: machine_cpu(),
            server_pid,
            server_cpu: server_pid.and_then(proc_cpu),
        }
    }

    /// Ends the window: adds `window_s`, `loadgen_user_s`, `loadgen_sys_s`,
    /// `loadgen_cpu_pct`, `machine_cpu_pct` (all processes; 100 = one core busy) and, with a
    /// server pid, `server_cpu_pct`, `server_rss_kib` and `others_cpu_pct` (the machine's less
    /// the server's and the generator's: other processes disturbing the run).
    pub(crate) fn finish(self, out: &mut Map<String, Value>) {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let (user, sys) = self_cpu();
        let user = user.saturating_sub(self.self_cpu.0).as_secs_f64();
        let sys = sys.saturating_sub(self.self_cpu.1).as_secs_f64();
        out.insert("window_s".into(), json!(round(wall, 3)));
        out.insert("loadgen_user_s".into(), json!(round(user, 3)));
        out.insert("loadgen_sys_s".into(), json!(round(sys, 3)));
        out.insert(
            "loadgen_cpu_pct".into(),
            json!(round((user + sys) / wall * 100.0, 1)),
        );
        let machine = match (self.machine_cpu, machine_cpu()) {
            (Some(before), Some(after)) => {
                let pct = after.saturating_sub(before).as_secs_f64() / wall * 100.0;
                out.insert("machine_cpu_pct".into(), json!(round(pct, 1)));
                Some(pct)
            }
            _ => None,
        };
        if let Some(pid) = self.server_pid {
            if let (Some(before), Some(after)) = (self.server_cpu, proc_cpu(pid)) {
                let used = after.saturating_sub(before).as_secs_f64() / wall * 100.0;
                out.insert("server_cpu_pct".into(), json!(round(used, 1)));
                if let Some(machine) = machine {
                    let own = (user + sys) / wall * 100.0;
                    out.insert(
                        "others_cpu_pct".into(),
                        json!(round((machine - used - own).max(0.0), 1)),
                    );
                }
            }
            if let Some(rss) = proc_rss_kib(pid) {
                out.insert("server_rss_kib".into(), json!(rss));
            }
        }
    }
}

/// Rounds to `digits` decimals.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Prints the result as a two-column table and as one JSON line (the only stdout line that
/// starts with `{`), and appends the JSON line to `json_path` if given.
pub(crate) fn emit(result: &Value, json_path: Option<&Path>) -> anyhow::Result<()> {
    let mut table = String::new();
    if let Value::Object(fields) = result {
        let width = fields.keys().map(String::len).max().unwrap_or(0);
        table.push_str(&format!("{:-<1$}\n", "", width + 24));
        for (key, value) in fields {
            let shown = match value {
                Value::String(s) => s.clone(),
                Value::Object(_) | Value::Array(_) => value.to_string(),
                other => other.to_string(),
            };
            table.push_str(&format!("{key:<width$}  {shown}\n"));
        }
        table.push_str(&format!("{:-<1$}\n", "", width + 24));
    }
    let line = serde_json::to_string(result)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{table}{line}")?;
    stdout.flush()?;
    if let Some(path) = json_path {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(proc_rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(proc_cpu(pid).is_some());
    }

    #[test]
    fn latency_in_ms() {
        let mut hist = histogram();
        for us in 1..=1000 {
            record(&mut hist, Duration::from_micros(us));
        }
        let mut out = Map::new();
        latency_fields(&mut out, "", &hist);
        let p50 = out["p50_ms"].as_f64().unwrap_or_default();
        assert!((0.49..=0.51).contains(&p50), "{p50}");
        assert_eq!(out["samples"], json!(1000));
    }
}
