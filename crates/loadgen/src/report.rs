//! `loadgen report RESULTS.jsonl [--base NAME]`: Markdown tables from collected result lines.
//!
//! For every case (in order of first appearance), one table of the headline metrics per
//! server, each as `median [min–max]` over the runs, and one table of ratios of the base
//! server's median (default `switchyard`) to every other server's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    better: Better,
    /// Whether the ratio table shows it.
    ratio: bool,
}

/// A metric with a ratio row when it has a better direction.
const fn m(key: &'static str, label: &'static str, better: Better) -> Metric {
    Metric {
        key,
        label,
        better,
        ratio: !matches!(better, Better::Neither),
    }
}

/// A metric shown with its direction but without a ratio row (counts, often zero).
const fn count(key: &'static str, label: &'static str, better: Better) -> Metric {
    Metric {
        key,
        label,
        better,
        ratio: false,
    }
}

const ECHO: &[Metric] = &[
    m("acks_per_s", "acks/s", Better::Higher),
    m("p50_ms", "latency p50 (ms)", Better::Lower),
    m("p99_ms", "latency p99 (ms)", Better::Lower),
    m("p999_ms", "latency p99.9 (ms)", Better::Lower),
    m("server_cpu_pct", "server CPU %", Better::Neither),
    m("loadgen_cpu_pct", "loadgen CPU %", Better::Neither),
    m("others_cpu_pct", "other processes CPU %", Better::Neither),
];
const FANOUT: &[Metric] = &[
    m("deliveries_per_s", "deliveries/s", Better::Higher),
    m("delivery_ratio", "delivery ratio", Better::Higher),
    m("broadcasts_per_s", "broadcasts/s", Better::Higher),
    m("p50_ms", "delivery latency p50 (ms)", Better::Lower),
    m("p99_ms", "delivery latency p99 (ms)", Better::Lower),
    m("server_cpu_pct", "server CPU %", Better::Neither),
    m("loadgen_cpu_pct", "loadgen CPU %", Better::Neither),
    m("others_cpu_pct", "other processes CPU %", Better::Neither),
];
const CONNECT: &[Metric] = &[
    m("handshakes_per_s", "handshakes/s", Better::Higher),
    count("failures", "failures", Better::Lower),
    m("p50_ms", "handshake p50 (ms)", Better::Lower),
    m("p99_ms", "handshake p99 (ms)", Better::Lower),
    m("server_cpu_pct", "server CPU %", Better::Neither),
    m("loadgen_cpu_pct", "loadgen CPU %", Better::Neither),
    m("others_cpu_pct", "other processes CPU %", Better::Neither),
];
const IDLE: &[Metric] = &[
    m(
        "rss_per_conn_bytes",
        "RSS/connection after hold (B)",
        Better::Lower,
    ),
    m(
        "rss_per_conn_connected_bytes",
        "RSS/connection at connect (B)",
        Better::Lower,
    ),
    m(
        "rss_projected_1m_gib",
        "RSS for 1M connections, projected (GiB): before + 10⁶ × per connection",
        Better::Lower,
    ),
    m(
        "server_cpu_pct",
        "server CPU % (heartbeats only)",
        Better::Lower,
    ),
    count("connected", "connected", Better::Higher),
    count("failures", "failures", Better::Lower),
    m("pings_in_hold", "pings answered in hold", Better::Neither),
    m("loadgen_cpu_pct", "loadgen CPU %", Better::Neither),
    m("others_cpu_pct", "other processes CPU %", Better::Neither),
];
const ROOMS: &[Metric] = &[
    m("joins_per_s", "joins/s", Better::Higher),
    m("join_p99_ms", "join latency p99 (ms)", Better::Lower),
    m("acks_per_s", "echo acks/s", Better::Higher),
    m("p50_ms", "echo latency p50 (ms)", Better::Lower),
    m("p99_ms", "echo latency p99 (ms)", Better::Lower),
    m("server_cpu_pct", "server CPU %", Better::Neither),
    m("loadgen_cpu_pct", "loadgen CPU %", Better::Neither),
    m("others_cpu_pct", "other processes CPU %", Better::Neither),
];

fn metrics(case: &str) -> &'static [Metric] {
    match case.split('-').next().unwrap_or(case) {
        "echo" => ECHO,
        "fanout" => FANOUT,
        "connect" => CONNECT,
        "idle" => IDLE,
        "rooms" => ROOMS,
        _ => &[],
    }
}

/// Parameters shown under a case's heading, when present.
const PARAMS: &[&str] = &[
    "mode",
    "clients",
    "subscribers",
    "inflight",
    "rooms",
    "members",
    "payload_bytes",
    "target_rate",
    "concurrency",
    "duration_s",
    "hold_s",
];

/// Formats a figure: thousands separated at 1000 and above, else 3 significant digits.
fn fmt(value: f64) -> String {
    if !value.is_finite() {
        return "–".to_owned();
    }
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if value < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if value == value.trunc() {
        format!("{value:.0}")
    } else {
        let decimals = (2 - value.abs().log10().floor() as i32).clamp(0, 4) as usize;
        format!("{value:.decimals$}")
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

struct Runs {
    ok: Vec<Value>,
    failed: Vec<String>,
}

/// Renders the report.
pub(crate) fn render(lines: &str, base: &str) -> anyhow::Result<String> {
    let mut cases: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let mut runs: BTreeMap<(String, String), Runs> = BTreeMap::new();
    for (n, line) in lines.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("line {} is not JSON", n + 1))?;
        let field = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let (Some(case), Some(server)) = (field("case"), field("server")) else {
            continue;
        };
        if !cases.contains(&case) {
            cases.push(case.clone());
        }
        if !servers.contains(&server) {
            servers.push(server.clone());
        }
        let entry = runs.entry((case, server)).or_insert(Runs {
            ok: Vec::new(),
            failed: Vec::new(),
        });
        match field("error") {
            Some(error) => entry.failed.push(error),
            None => entry.ok.push(value),
        }
    }
    // The base server first, then the others in order of appearance.
    servers.sort_by_key(|s| s != base);
    let mut out = String::new();
    for case in &cases {
        let present: Vec<&String> = servers
            .iter()
            .filter(|s| runs.contains_key(&(case.clone(), (*s).clone())))
            .collect();
        writeln!(out, "### {case}\n")?;
        if let Some(first) = present
            .iter()
            .find_map(|s| runs[&(case.clone(), (*s).clone())].ok.first())
        {
            let params: Vec<String> = PARAMS
                .iter()
                .filter_map(|key| first.get(*key).map(|v| format!("{key}={}", plain(v))))
                .collect();
            if !params.is_empty() {
                writeln!(out, "Parameters: {}\n", params.join(", "))?;
            }
        }
        // Figures: median [min–max].
        write!(out, "| metric |")?;
        for s in &present {
            let r = &runs[&(case.clone(), (*s).clone())];
            write!(
                out,
                " {s} ({} run{}) |",
                r.ok.len(),
                if r.ok.len() == 1 { "" } else { "s" }
            )?;
        }
        writeln!(out)?;
        writeln!(out, "|---|{}", "---|".repeat(present.len()))?;
        let mut medians: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for metric in metrics(case) {
            let mut row = format!("| {}{} |", metric.label, arrow(metric.better));
            let mut any = false;
            for s in &present {
                let r = &runs[&(case.clone(), (*s).clone())];
                let mut values: Vec<f64> =
                    r.ok.iter()
                        .filter_map(|v| v.get(metric.key).and_then(Value::as_f64))
                        .collect();
                values.sort_by(f64::total_cmp);
                if values.is_empty() {
                    row.push_str(" – |");
                    continue;
                }
                any = true;
                let mid = median(&values);
                medians.insert((metric.key, s.as_str()), mid);
                let (lo, hi) = (values[0], values[values.len() - 1]);
                if values.len() == 1 {
                    write!(row, " {} |", fmt(mid))?;
                } else {
                    write!(row, " {} [{}–{}] |", fmt(mid), fmt(lo), fmt(hi))?;
                }
            }
            if any {
                writeln!(out, "{row}")?;
            }
        }
        let failed: Vec<String> = present
            .iter()
            .filter_map(|s| {
                let r = &runs[&(case.clone(), (*s).clone())];
                (!r.failed.is_empty()).then(|| format!("{s}: {}", r.failed.join("; ")))
            })
            .collect();
        if !failed.is_empty() {
            writeln!(out, "\nFailed runs: {}", failed.join(" | "))?;
        }
        writeln!(out)?;
        // Ratios of the base server's medians to the others'.
        let others: Vec<&&String> = present.iter().filter(|s| s.as_str() != base).collect();
        if present.iter().any(|s| s.as_str() == base) && !others.is_empty() {
            write!(out, "| ratio (median) |")?;
            for s in &others {
                write!(out, " {base}/{s} |")?;
            }
            writeln!(out)?;
            writeln!(out, "|---|{}", "---|".repeat(others.len()))?;
            for metric in metrics(case).iter().filter(|m| m.ratio) {
                let Some(own) = medians.get(&(metric.key, base)) else {
                    continue;
                };
                let mut row = format!("| {}{} |", metric.label, arrow(metric.better));
                for s in &others {
                    match medians.get(&(metric.key, s.as_str())) {
                        Some(theirs) if *theirs != 0.0 => write!(row, " {:.2}× |", own / theirs)?,
                        _ => row.push_str(" – |"),
                    }
                }
                writeln!(out, "{row}")?;
            }
            writeln!(out)?;
        }
    }
    Ok(out)
}

fn arrow(better: Better) -> &'static str {
    match better {
        Better::Higher => " ↑",
        Better::Lower => " ↓",
        Better::Neither => "",
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(fmt(1234567.4), "1,234,567");
        assert_eq!(fmt(12.345), "12.3");
        assert_eq!(fmt(0.12345), "0.123");
        assert_eq!(fmt(3.0), "3");
    }

    #[test]
    fn tables_and_ratios() {
        let lines = [
            r#"{"case":"echo","server":"node","acks_per_s":100.0,"p50_ms":2.0,"clients":100}"#,
            r#"{"case":"echo","server":"switchyard","acks_per_s":300.0,"p50_ms":1.0}"#,
            r#"{"case":"echo","server":"switchyard","acks_per_s":200.0,"p50_ms":1.0}"#,
            r#"{"case":"echo","server":"switchyard","acks_per_s":250.0,"p50_ms":1.0}"#,
            r#"{"case":"echo","server":"node","error":"timed out"}"#,
        ]
        .join("\n");
        let report = render(&lines, "switchyard").unwrap_or_default();
        assert!(
            report.contains("| switchyard (3 runs) | node (1 run) |"),
            "{report}"
        );
        assert!(
            report.contains("| acks/s ↑ | 250 [200–300] | 100 |"),
            "{report}"
        );
        assert!(report.contains("| acks/s ↑ | 2.50× |"), "{report}");
        assert!(
            report.contains("| latency p50 (ms) ↓ | 0.50× |"),
            "{report}"
        );
        assert!(report.contains("Failed runs: node: timed out"), "{report}");
    }
}
