//! Load client for the WebSocket echo server (tokio-tungstenite as client, current_thread
//! runtime; the benchmark pins it to its own core). Only ever connects to 127.0.0.1.
//!
//! ```text
//! load echo --port P [--conns 100] [--inflight 4] [--secs 10] [--size 32] [--warmup 1]
//!           [--binary] [--pid SERVER_PID]
//! load idle --port P --pid SERVER_PID [--conns 10000] [--secs 10]
//!           [--big-conns 200] [--big-size 1048576]
//! ```
//!
//! Each mode prints a human-readable report and one machine-readable `RESULT k=v ...` line.

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

struct Args {
    mode: String,
    port: u16,
    conns: usize,
    inflight: usize,
    secs: f64,
    warmup: f64,
    size: usize,
    binary: bool,
    pid: Option<u32>,
    big_conns: usize,
    big_size: usize,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    if mode != "echo" && mode != "idle" {
        eprintln!("usage: load <echo|idle> --port P [options]; see source header");
        std::process::exit(2);
    }
    let idle = mode == "idle";
    let mut a = Args {
        mode,
        port: 9000,
        conns: if idle { 10_000 } else { 100 },
        inflight: 4,
        secs: 10.0,
        warmup: 1.0,
        size: 32,
        binary: false,
        pid: None,
        big_conns: 200,
        big_size: 1 << 20,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("missing value for {flag}"));
        match flag.as_str() {
            "--port" => a.port = val().parse().unwrap(),
            "--conns" => a.conns = val().parse().unwrap(),
            "--inflight" => a.inflight = val().parse().unwrap(),
            "--secs" => a.secs = val().parse().unwrap(),
            "--warmup" => a.warmup = val().parse().unwrap(),
            "--size" => a.size = val().parse().unwrap(),
            "--pid" => a.pid = Some(val().parse().unwrap()),
            "--big-conns" => a.big_conns = val().parse().unwrap(),
            "--big-size" => a.big_size = val().parse().unwrap(),
            "--binary" => a.binary = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a.size = a.size.max(16);
    a
}

// ---------------------------------------------------------------- /proc helpers

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(key) {
            let rest = rest.trim_start_matches(':').trim();
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    panic!("{key} not found in /proc/{pid}/status");
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the `(comm)`: state is field 3; utime, stime are fields 14, 15.
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Sum of utime+stime over every process except `exclude` (other people's load on the
/// machine), and the steal counter from /proc/stat; both in clock ticks.
fn others_ticks(exclude: &[u32]) -> (std::collections::HashMap<u32, u64>, u64) {
    let mut m = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if exclude.contains(&pid) {
                continue;
            }
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let Some(i) = s.rfind(')') else { continue };
                let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
                if f.len() > 12 {
                    let t = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
                    m.insert(pid, t);
                }
            }
        }
    }
    let steal = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.split_whitespace().nth(8).map(String::from)))
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (m, steal)
}

/// Busy ticks of the whole machine (all CPUs): user+nice+system+irq+softirq+steal.
fn system_busy_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    if f.len() < 8 {
        return 0;
    }
    f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
}

/// Ticks used by other processes between two snapshots (a process that appeared in between
/// counts fully; one that exited in between is missed).
fn others_delta(
    a: &(std::collections::HashMap<u32, u64>, u64),
    b: &(std::collections::HashMap<u32, u64>, u64),
) -> (u64, u64) {
    let mut d = 0;
    for (pid, t1) in &b.0 {
        d += t1.saturating_sub(*a.0.get(pid).unwrap_or(&0));
    }
    (d, b.1.saturating_sub(a.1))
}

fn clock_ticks_per_sec() -> f64 {
    // getconf is universally present; avoids a libc dependency.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------- connections

async fn connect(port: u16, config: Option<WebSocketConfig>) -> Result<Ws, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://127.0.0.1:{port}/");
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(url, tcp, config)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// Opens `n` connections with at most `par` handshakes in flight.
async fn connect_many(port: u16, n: usize, par: usize, config: Option<WebSocketConfig>) -> Vec<Ws> {
    let results: Vec<Result<Ws, String>> = futures_util::stream::iter(0..n)
        .map(|_| connect(port, config))
        .buffer_unordered(par)
        .collect()
        .await;
    let mut out = Vec::with_capacity(n);
    let mut errors = 0;
    for r in results {
        match r {
            Ok(ws) => out.push(ws),
            Err(e) => {
                if errors < 5 {
                    eprintln!("connection failed: {e}");
                }
                errors += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} of {n} connections failed");
    }
    out
}

fn make_msg(binary: bool, size: usize, t0: Instant) -> Message {
    let ns = t0.elapsed().as_nanos() as u64;
    let mut buf = format!("{ns:016x}").into_bytes();
    buf.resize(size, b'x');
    if binary {
        Message::Binary(Bytes::from(buf))
    } else {
        Message::Text(String::from_utf8(buf).unwrap().into())
    }
}

fn sent_ns(msg: &Message) -> Option<u64> {
    let data: &[u8] = match msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return None,
    };
    let hex = std::str::from_utf8(data.get(..16)?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

// ---------------------------------------------------------------- echo mode

struct ConnStats {
    count: u64,
    lat_ns: Vec<u64>,
    error: Option<String>,
}

async fn echo_conn(
    mut ws: Ws,
    a: &Args,
    t0: Instant,
    measure_from: Instant,
    end: Instant,
) -> ConnStats {
    let mut st = ConnStats { count: 0, lat_ns: Vec::new(), error: None };
    let hard_end = end + Duration::from_secs(3);
    let mut outstanding = 0usize;
    for _ in 0..a.inflight {
        if let Err(e) = ws.feed(make_msg(a.binary, a.size, t0)).await {
            st.error = Some(e.to_string());
            return st;
        }
        outstanding += 1;
    }
    loop {
        // Take an already-available echo if there is one; otherwise flush the replies we
        // have queued (one write for all of them) and wait.
        let next = match poll_fn(|cx| Poll::Ready(ws.poll_next_unpin(cx))).await {
            Poll::Ready(m) => m,
            Poll::Pending => {
                if let Err(e) = ws.flush().await {
                    st.error = Some(e.to_string());
                    break;
                }
                match timeout_at(hard_end.into(), ws.next()).await {
                    Ok(m) => m,
                    Err(_) => {
                        st.error = Some(format!("timed out with {outstanding} outstanding"));
                        break;
                    }
                }
            }
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                st.error = Some(e.to_string());
                break;
            }
            None => {
                st.error = Some("closed by server".into());
                break;
            }
        };
        let Some(sent) = sent_ns(&msg) else { continue };
        outstanding -= 1;
        let now = Instant::now();
        if now >= measure_from && now < end {
            st.count += 1;
            st.lat_ns.push((now - t0).as_nanos() as u64 - sent);
        }
        if now < end {
            if let Err(e) = ws.feed(make_msg(a.binary, a.size, t0)).await {
                st.error = Some(e.to_string());
                break;
            }
            outstanding += 1;
        } else if outstanding == 0 {
            break;
        }
    }
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    st
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0 // µs
}

async fn run_echo(a: Args) {
    let conns = connect_many(a.port, a.conns, 64, None).await;
    if conns.len() != a.conns {
        eprintln!("could not open all connections");
        std::process::exit(1);
    }
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.secs);

    // Server CPU during the measured window.
    // Also other processes' CPU in the same window: this machine may be shared.
    let cpu_task = a.pid.map(|pid| {
        tokio::spawn(async move {
            let me = std::process::id();
            tokio::time::sleep_until(measure_from.into()).await;
            let (c0, m0, b0) = (cpu_ticks(pid), cpu_ticks(me), system_busy_ticks());
            let o0 = others_ticks(&[pid, me]);
            tokio::time::sleep_until(end.into()).await;
            let (c1, m1, b1) = (cpu_ticks(pid), cpu_ticks(me), system_busy_ticks());
            let o1 = others_ticks(&[pid, me]);
            // Busy time of the machine not charged to the server or to this client: other
            // processes, including ones that exited within the window, plus kernel time
            // not charged to any process.
            let unaccounted = (b1 - b0).saturating_sub((c1 - c0) + (m1 - m0));
            (c1 - c0, others_delta(&o0, &o1), unaccounted)
        })
    });

    let a = std::rc::Rc::new(a);
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|ws| {
            let a = a.clone();
            local.spawn_local(async move { echo_conn(ws, &a, t0, measure_from, end).await })
        })
        .collect();
    let stats = local
        .run_until(async move {
            let mut v = Vec::new();
            for h in handles {
                v.push(h.await.unwrap());
            }
            v
        })
        .await;

    let mut total = 0u64;
    let mut lats = Vec::new();
    let mut errors = 0;
    for s in stats {
        total += s.count;
        lats.extend_from_slice(&s.lat_ns);
        if let Some(e) = s.error {
            if errors < 5 {
                eprintln!("connection error: {e}");
            }
            errors += 1;
        }
    }
    lats.sort_unstable();
    let rate = total as f64 / a.secs;
    let (p50, p99, p999) = (pct(&lats, 0.50), pct(&lats, 0.99), pct(&lats, 0.999));
    let hz = clock_ticks_per_sec();
    let (cpu_pct, cpu_us_per_echo, others_pct, steal_pct, unacc_pct) = match cpu_task {
        Some(t) => {
            let (ticks, (others, steal), unacc) = t.await.unwrap();
            let cpu_s = ticks as f64 / hz;
            (
                100.0 * cpu_s / a.secs,
                1e6 * cpu_s / total.max(1) as f64,
                100.0 * others as f64 / hz / a.secs,
                100.0 * steal as f64 / hz / a.secs,
                100.0 * unacc as f64 / hz / a.secs,
            )
        }
        None => (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN),
    };
    println!(
        "echo: conns={} inflight={} size={} secs={} -> {:.0} echoes/s, p50={:.1}us p99={:.1}us \
         p99.9={:.1}us, server cpu={:.0}% ({:.2}us/echo), conn errors={}; other processes \
         used {:.0}% of a core, steal {:.0}%, unaccounted busy {:.0}%",
        a.conns,
        a.inflight,
        a.size,
        a.secs,
        rate,
        p50,
        p99,
        p999,
        cpu_pct,
        cpu_us_per_echo,
        errors,
        others_pct,
        steal_pct,
        unacc_pct
    );
    println!(
        "RESULT mode=echo rate={rate:.0} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} \
         server_cpu_pct={cpu_pct:.0} server_cpu_us_per_echo={cpu_us_per_echo:.2} errors={errors} \
         others_pct={others_pct:.0} steal_pct={steal_pct:.0} unacc_pct={unacc_pct:.0}"
    );
}

// ---------------------------------------------------------------- idle mode

async fn roundtrip(ws: &mut Ws, msg: Message) -> Result<(), String> {
    let want = match &msg {
        Message::Binary(b) => b.len(),
        Message::Text(t) => t.len(),
        _ => 0,
    };
    ws.send(msg).await.map_err(|e| e.to_string())?;
    match timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) if b.len() == want => Ok(()),
        Ok(Some(Ok(Message::Text(t)))) if t.len() == want => Ok(()),
        Ok(other) => Err(format!("unexpected reply: {:?}", other.map(|r| r.map(|m| m.len())))),
        Err(_) => Err("echo timed out".into()),
    }
}

async fn settle_rss(pid: u32) -> u64 {
    // Let the server go quiet, then read.
    sleep(Duration::from_millis(1000)).await;
    rss_kib(pid)
}

async fn run_idle(a: Args) {
    let pid = a.pid.expect("idle mode needs --pid SERVER_PID");
    // Small client buffers so that 10k client connections stay cheap; the server is what
    // we measure.
    let client_cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);

    let rss0 = rss_kib(pid);
    let t = Instant::now();
    let mut conns = connect_many(a.port, a.conns, 128, Some(client_cfg)).await;
    let n = conns.len();
    // One small message per connection so the server's read (and write) path ran once.
    let results: Vec<Result<(), String>> = futures_util::stream::iter(conns.iter_mut())
        .map(|ws| roundtrip(ws, Message::Text("hello".into())))
        .buffer_unordered(256)
        .collect()
        .await;
    let bad = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("{bad} first-message echoes failed, e.g. {e}");
    }
    let setup = t.elapsed();
    sleep(Duration::from_secs_f64(a.secs)).await;
    let rss1 = rss_kib(pid);
    let per_conn = (rss1 as f64 - rss0 as f64) / n.max(1) as f64;
    println!(
        "idle: {n} conns open in {:.2}s; server RSS {rss0} KiB -> {rss1} KiB after {}s idle: \
         {per_conn:.2} KiB per idle connection",
        setup.as_secs_f64(),
        a.secs
    );

    // Big-message retention: one big message per connection on a subset, sequentially (so
    // the server never holds more than one big message at a time), then measure.
    let b = a.big_conns.min(n);
    let (mut big_kib, mut after_small_kib, mut rss2, mut rss3) = (f64::NAN, f64::NAN, rss1, rss1);
    if b > 0 {
        let big = Bytes::from(vec![b'b'; a.big_size]);
        let mut bad = 0;
        for ws in conns.iter_mut().take(b) {
            if let Err(e) = roundtrip(ws, Message::Binary(big.clone())).await {
                if bad == 0 {
                    eprintln!("big echo failed: {e}");
                }
                bad += 1;
            }
        }
        rss2 = settle_rss(pid).await;
        big_kib = (rss2 as f64 - rss1 as f64) / b as f64;
        // Then one small message on the same connections: does the buffer shrink back?
        for ws in conns.iter_mut().take(b) {
            if let Err(e) = roundtrip(ws, Message::Text("small again".into())).await {
                if bad == 0 {
                    eprintln!("small echo after big failed: {e}");
                }
                bad += 1;
            }
        }
        rss3 = settle_rss(pid).await;
        after_small_kib = (rss3 as f64 - rss1 as f64) / b as f64;
        println!(
            "big: after one {} B message on {b} conns: RSS {rss2} KiB (+{big_kib:.0} KiB per \
             such conn); after one more small message each: RSS {rss3} KiB (+{after_small_kib:.0} \
             KiB per such conn){}",
            a.big_size,
            if bad > 0 { format!(", {bad} failures") } else { String::new() }
        );
    }

    // Close everything and see how much the server gives back.
    let t = Instant::now();
    let _: Vec<()> = futures_util::stream::iter(conns.iter_mut())
        .map(|ws| async move {
            let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
        })
        .buffer_unordered(512)
        .collect()
        .await;
    drop(conns);
    let rss4 = settle_rss(pid).await;
    let hwm = proc_status_kib(pid, "VmHWM");
    println!(
        "closed all in {:.2}s: server RSS {rss4} KiB, peak (VmHWM) {hwm} KiB",
        t.elapsed().as_secs_f64()
    );
    println!(
        "RESULT mode=idle conns={n} failed={bad} rss_base_kib={rss0} rss_idle_kib={rss1} \
         kib_per_conn={per_conn:.2} big_size={} big_conns={b} rss_after_big_kib={rss2} \
         big_kib_per_conn={big_kib:.0} rss_after_small_kib={rss3} \
         after_small_kib_per_conn={after_small_kib:.0} rss_after_close_kib={rss4} hwm_kib={hwm}",
        a.big_size
    );
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match a.mode.as_str() {
        "echo" => rt.block_on(run_echo(a)),
        _ => rt.block_on(run_idle(a)),
    }
}
