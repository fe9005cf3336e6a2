//! `soak`: a long mixed workload against a running xmpp-edge, watching its
//! resident memory, open file descriptors and threads for growth.
//!
//! Workload, all bounded by `--minutes`:
//! - `--pairs` pairs, each one BOSH and one WebSocket session, play
//!   numbered ping-pong (checked: every ping and answer arrives once and in
//!   order); each pair logs out and in again every `--pair-lifetime-secs`;
//! - `--churn-per-sec` short sessions (alternating BOSH and WebSocket) log
//!   in, ping the server and leave: most close cleanly, `--vanish-percent`
//!   just drop their connections, which xmpp-edge must reap.
//!
//! Every `--sample-secs` one CSV row: elapsed seconds, RSS (KiB), open fds,
//! threads, live sessions (from the metrics endpoint, if given), CPU
//! seconds, round trips, churned sessions, errors. After the run, the
//! samples after `--warmup-secs` are split in thirds: RSS, fds and threads
//! fail the soak if the largest value in the last third exceeds the largest
//! in the first third by more than the tolerance; the least-squares slope
//! per hour is reported beside it. Out-of-order or duplicated messages fail
//! it too, and so do sessions still open `--settle-secs` after the load.
//! One JSON line with the verdict; exit status 1 on failure.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::procstat;
use crate::xmpp::{ClientError, Session, Target, Transport};

/// Options of `loadtest soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// xmpp-edge's HTTP address (BOSH and WebSocket).
    #[arg(long, default_value = "127.0.0.1:5280")]
    addr: SocketAddr,
    /// XMPP domain (sessions log in anonymously).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The xmpp-edge process to watch.
    #[arg(long)]
    pid: u32,
    /// xmpp-edge's metrics address, for the live session count.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Length of the run, minutes (fractions allowed).
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Samples before this are not judged (buffers and pools fill up).
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// Where to write the samples.
    #[arg(long, default_value = "soak.csv")]
    csv: PathBuf,
    /// Ping-pong pairs (one BOSH and one WebSocket session each).
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Milliseconds between a pair's round trips.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// A pair logs out and in again after this long.
    #[arg(long, default_value_t = 60)]
    pair_lifetime_secs: u64,
    /// Short sessions started per second.
    #[arg(long, default_value_t = 4.0)]
    churn_per_sec: f64,
    /// Percentage of short sessions that vanish instead of closing.
    #[arg(long, default_value_t = 20)]
    vanish_percent: u64,
    /// Allowed growth, percent of the first third's maximum, on top of the
    /// absolute slack (RSS 4 MiB, 16 fds, 2 threads).
    #[arg(long, default_value_t = 10.0)]
    tolerance_percent: f64,
    /// After the load, sessions must be gone within this many seconds
    /// (longer than xmpp-edge's BOSH inactivity and WebSocket idle timeout).
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Connect from 127.0.0.1 .. 127.0.0.N, round robin.
    #[arg(long, default_value_t = 4)]
    sources: u8,
}

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    churned: AtomicU64,
    vanished: AtomicU64,
    login_errors: AtomicU64,
    session_errors: AtomicU64,
    /// Lost, duplicated or reordered messages: always a failure.
    order_errors: AtomicU64,
    next_source: AtomicU64,
}

impl Counters {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    rss_kib: f64,
    fds: f64,
    threads: f64,
    sessions: Option<f64>,
    cpu_secs: f64,
}

struct Shared {
    args: SoakArgs,
    counters: Counters,
    stop: AtomicBool,
}

impl Shared {
    fn target(&self, transport: Transport) -> Target {
        Target {
            transport,
            addr: self.args.addr,
            path: match transport {
                Transport::Bosh => "/http-bind",
                _ => "/xmpp-websocket",
            }
            .to_owned(),
            domain: self.args.domain.clone(),
            credentials: None,
            ws_legacy: false,
        }
    }

    fn source(&self) -> Option<IpAddr> {
        let n = u64::from(self.args.sources.max(1));
        let i = self.counters.next_source.fetch_add(1, Ordering::Relaxed) % n;
        Some(IpAddr::from([127, 0, 0, 1 + i as u8]))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs the soak; `Err` (after printing the JSON line) when it failed.
pub async fn run(args: SoakArgs) -> Result<serde_json::Value, String> {
    if !args.addr.ip().is_loopback() || args.metrics.is_some_and(|m| !m.ip().is_loopback()) {
        return Err("the soak only targets loopback addresses".into());
    }
    let duration = Duration::from_secs_f64(args.minutes.max(0.05) * 60.0);
    let shared = Arc::new(Shared {
        args,
        counters: Counters::default(),
        stop: AtomicBool::new(false),
    });
    let mut csv = String::from(
        "elapsed_s,rss_kib,fds,threads,sessions,cpu_secs,round_trips,churned,errors\n",
    );
    let started = Instant::now();
    let mut load = JoinSet::new();
    for i in 0..shared.args.pairs {
        load.spawn(pair(Arc::clone(&shared), i));
    }
    load.spawn(churn(Arc::clone(&shared)));
    let mut samples = Vec::new();
    let every = Duration::from_secs(shared.args.sample_secs.max(1));
    let mut next = tokio::time::Instant::now();
    while started.elapsed() < duration {
        let Some(sample) = take_sample(&shared, started).await else {
            shared.stop.store(true, Ordering::Relaxed);
            return Err(format!("process {} is gone", shared.args.pid));
        };
        let c = &shared.counters;
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{:.2},{},{},{}",
            sample.t,
            sample.rss_kib,
            sample.fds,
            sample.threads,
            sample.sessions.map_or(String::new(), |s| s.to_string()),
            sample.cpu_secs,
            Counters::get(&c.round_trips),
            Counters::get(&c.churned),
            Counters::get(&c.login_errors) + Counters::get(&c.session_errors),
        );
        // Written as it goes, so a long run can be watched and plotted.
        std::fs::write(&shared.args.csv, &csv)
            .map_err(|e| format!("{}: {e}", shared.args.csv.display()))?;
        samples.push(sample);
        next += every;
        tokio::time::sleep_until(next).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Sessions end their current step and close.
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while load.join_next().await.is_some() {}
    })
    .await;
    load.abort_all();
    let load_secs = started.elapsed().as_secs_f64();
    // Then every session must go away: vanished ones by xmpp-edge's timeouts.
    let settle_deadline = Instant::now() + Duration::from_secs(shared.args.settle_secs);
    let mut left = None;
    if let Some(metrics) = shared.args.metrics {
        loop {
            left = live_sessions(metrics).await;
            if left == Some(0.0) || Instant::now() >= settle_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let verdict = judge(&shared, &samples, left, load_secs);
    let passed = verdict["verdict"] == "pass";
    if passed {
        Ok(verdict)
    } else {
        println!("{verdict}");
        Err("soak failed (see the verdict line)".into())
    }
}

async fn take_sample(shared: &Shared, started: Instant) -> Option<Sample> {
    let pid = shared.args.pid;
    let stat = procstat::read(pid)?;
    let threads = procstat::threads(pid).unwrap_or(0);
    let sessions = match shared.args.metrics {
        Some(m) => live_sessions(m).await,
        None => None,
    };
    Some(Sample {
        t: started.elapsed().as_secs_f64(),
        rss_kib: stat.rss_kib as f64,
        fds: stat.fds as f64,
        threads: threads as f64,
        sessions,
        cpu_secs: stat.cpu_secs,
    })
}

/// The sum of `xmpp_edge_sessions` on the metrics endpoint.
async fn live_sessions(addr: SocketAddr) -> Option<f64> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("xmpp_edge_sessions{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                // An empty f64 sum is -0.0.
                .sum::<f64>()
                + 0.0,
        )
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()?
}

/// Largest value of the first and last third after warm-up, and the
/// least-squares slope per hour.
#[derive(Debug, PartialEq)]
struct Trend {
    start: f64,
    end: f64,
    first_max: f64,
    last_max: f64,
    slope_per_hour: f64,
}

fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    if points.len() < 6 {
        return None;
    }
    let third = points.len() / 3;
    let max = |s: &[(f64, f64)]| s.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    let slope = if var > 0.0 { cov / var } else { 0.0 };
    Some(Trend {
        start: points[0].1,
        end: points[points.len() - 1].1,
        first_max: max(&points[..third]),
        last_max: max(&points[points.len() - third..]),
        slope_per_hour: slope * 3600.0,
    })
}

/// Whether growth from the first third to the last stays within `tolerance`
/// (a fraction of the first third's maximum) plus `slack`.
fn grew(t: &Trend, tolerance: f64, slack: f64) -> bool {
    t.last_max > t.first_max * (1.0 + tolerance) + slack
}

fn judge(
    shared: &Shared,
    samples: &[Sample],
    left: Option<f64>,
    load_secs: f64,
) -> serde_json::Value {
    let args = &shared.args;
    let c = &shared.counters;
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= args.warmup_secs as f64)
        .collect();
    let tolerance = args.tolerance_percent / 100.0;
    let mut reasons: Vec<String> = Vec::new();
    let mut figures = serde_json::Map::new();
    type Series = (&'static str, fn(&Sample) -> f64, f64);
    let series: [Series; 3] = [
        ("rss_kib", |s| s.rss_kib, 4096.0),
        ("fds", |s| s.fds, 16.0),
        ("threads", |s| s.threads, 2.0),
    ];
    for (name, get, slack) in series {
        let points: Vec<(f64, f64)> = warm.iter().map(|s| (s.t, get(s))).collect();
        match trend(&points) {
            Some(t) => {
                if grew(&t, tolerance, slack) {
                    reasons.push(format!(
                        "{name} grew: last third up to {} vs first third up to {} (slope {:.1}/h)",
                        t.last_max, t.first_max, t.slope_per_hour
                    ));
                }
                figures.insert(
                    name.to_owned(),
                    serde_json::json!({
                        "start": t.start, "end": t.end,
                        "first_third_max": t.first_max, "last_third_max": t.last_max,
                        "slope_per_hour": (t.slope_per_hour * 10.0).round() / 10.0,
                    }),
                );
            }
            None => reasons.push(format!(
                "too few samples after warm-up to judge {name} ({}); run longer",
                points.len()
            )),
        }
    }
    let order_errors = Counters::get(&c.order_errors);
    if order_errors > 0 {
        reasons.push(format!(
            "{order_errors} messages lost, duplicated or out of order"
        ));
    }
    let round_trips = Counters::get(&c.round_trips);
    if round_trips == 0 {
        reasons.push("no round trip completed".into());
    }
    let churned = Counters::get(&c.churned);
    let login_errors = Counters::get(&c.login_errors);
    // A few failed logins under load are noise; many mean something broke.
    if login_errors * 50 > churned + args.pairs as u64 * 2 {
        reasons.push(format!(
            "{login_errors} failed logins of {churned} short sessions"
        ));
    }
    if let Some(left) = left.filter(|l| *l > 0.0) {
        reasons.push(format!(
            "{left} sessions still open {} s after the load",
            args.settle_secs
        ));
    }
    let max_sessions = samples
        .iter()
        .filter_map(|s| s.sessions)
        .fold(0.0, f64::max);
    serde_json::json!({
        "mode": "soak",
        "verdict": if reasons.is_empty() { "pass" } else { "fail" },
        "reasons": reasons,
        "seconds": (load_secs * 10.0).round() / 10.0,
        "samples": samples.len(),
        "judged_samples": warm.len(),
        "warmup_secs": args.warmup_secs,
        "tolerance_percent": args.tolerance_percent,
        "figures": figures,
        "pairs": args.pairs,
        "round_trips": round_trips,
        "short_sessions": churned,
        "vanished_sessions": Counters::get(&c.vanished),
        "login_errors": login_errors,
        "session_errors": Counters::get(&c.session_errors),
        "order_errors": order_errors,
        "max_live_sessions": max_sessions,
        "sessions_left_after_settle": left,
        "cpu_secs": samples.last().map(|s| s.cpu_secs),
        "csv": args.csv.display().to_string(),
    })
}

// --- the workload ---

/// The numbered elements with `tag` in `batch` (`<message id='{tag}{n}'`).
fn numbered(batch: &[bytes::Bytes], tag: char) -> Vec<u64> {
    let needle = format!(" id='{tag}");
    let needle2 = format!(" id=\"{tag}");
    batch
        .iter()
        .filter_map(|e| {
            let t = std::str::from_utf8(e).ok()?;
            let at = t.find(&needle).or_else(|| t.find(&needle2))? + needle.len();
            let rest = &t[at..];
            rest[..rest.find(['\'', '"'])?].parse().ok()
        })
        .collect()
}

fn message(to: &str, id: String) -> String {
    format!(
        "<message to='{to}' id='{id}' type='chat' xmlns='jabber:client'><body>soak</body></message>"
    )
}

/// One pair for its whole life: log in, ping-pong, log out, again.
async fn pair(shared: Arc<Shared>, index: usize) {
    // Spread the pairs' starts over the first seconds.
    tokio::time::sleep(Duration::from_millis(97 * index as u64 % 5_000)).await;
    let c = &shared.counters;
    while !shared.stopped() {
        let lifetime = Duration::from_secs(shared.args.pair_lifetime_secs.max(1));
        let a = Session::login(&shared.target(Transport::Bosh), shared.source()).await;
        let b = Session::login(&shared.target(Transport::Websocket), shared.source()).await;
        let (mut a, a_jid, mut b, b_jid) = match (a, b) {
            (Ok((a, aj)), Ok((b, bj))) => (a, aj, b, bj),
            (a, b) => {
                c.login_errors.fetch_add(1, Ordering::Relaxed);
                for s in [a.ok(), b.ok()].into_iter().flatten() {
                    s.0.close().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let born = Instant::now();
        let mut n = 0u64;
        let outcome: Result<(), ClientError> = async {
            while born.elapsed() < lifetime && !shared.stopped() {
                a.send(&message(&b_jid, format!("p{n}"))).await?;
                wait_for(&mut b, 'p', n, c).await?;
                b.send(&message(&a_jid, format!("r{n}"))).await?;
                wait_for(&mut a, 'r', n, c).await?;
                c.round_trips.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(shared.args.interval_ms)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            c.session_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: pair {index}: {e}");
        }
        a.close().await;
        b.close().await;
    }
}

/// Receives until message `n` with `tag` arrives; any other number of
/// that tag is an ordering error.
async fn wait_for(s: &mut Session, tag: char, n: u64, c: &Counters) -> Result<(), ClientError> {
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(30), s.recv())
            .await
            .map_err(|_| ClientError::Timeout("soak message"))??;
        for got in numbered(&batch, tag) {
            if got == n {
                return Ok(());
            }
            c.order_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: expected {tag}{n}, got {tag}{got}");
        }
    }
}

/// Short sessions at a fixed rate, alternating transports.
async fn churn(shared: Arc<Shared>) {
    let rate = shared.args.churn_per_sec;
    if rate <= 0.0 {
        return;
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut running = JoinSet::new();
    let mut i = 0u64;
    while !shared.stopped() {
        tick.tick().await;
        // Bounded: if xmpp-edge falls behind, sessions are skipped, not piled up.
        while running.try_join_next().is_some() {}
        if running.len() >= 64 {
            continue;
        }
        let transport = if i.is_multiple_of(2) {
            Transport::Bosh
        } else {
            Transport::Websocket
        };
        let vanish = (i * 37 + 11) % 100 < shared.args.vanish_percent;
        i += 1;
        let shared = Arc::clone(&shared);
        running.spawn(async move {
            let c = &shared.counters;
            match Session::login(&shared.target(transport), shared.source()).await {
                Ok((mut s, jid)) => {
                    c.churned.fetch_add(1, Ordering::Relaxed);
                    let me = message(&jid, "q0".into());
                    let ok = async {
                        s.send(&me).await?;
                        wait_for(&mut s, 'q', 0, c).await
                    }
                    .await;
                    if ok.is_err() {
                        c.session_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if vanish {
                        // Connections dropped, no goodbye: xmpp-edge must reap it.
                        c.vanished.fetch_add(1, Ordering::Relaxed);
                        drop(s);
                    } else {
                        s.close().await;
                    }
                }
                Err(e) => {
                    c.login_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("soak: login: {e}");
                }
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while running.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * 5.0, *v))
            .collect()
    }

    #[test]
    fn flat_noise_passes_and_steady_growth_fails() {
        let flat = trend(&line(&[
            100.0, 104.0, 99.0, 103.0, 100.0, 102.0, 98.0, 104.0, 101.0,
        ]))
        .unwrap();
        assert!(!grew(&flat, 0.10, 0.0));
        let leak: Vec<f64> = (0..30).map(|i| 1000.0 + 20.0 * i as f64).collect();
        let t = trend(&line(&leak)).unwrap();
        assert!(grew(&t, 0.10, 16.0), "{t:?}");
        // 20 per 5 s is 14,400 per hour.
        assert!((t.slope_per_hour - 14_400.0).abs() < 1.0, "{t:?}");
        assert!(trend(&line(&[1.0, 2.0])).is_none());
    }

    #[test]
    fn numbers_are_read_from_ids() {
        let batch = vec![
            bytes::Bytes::from_static(b"<message id='p3' to='x'><body>soak</body></message>"),
            bytes::Bytes::from_static(b"<message id=\"p4\"/>"),
            bytes::Bytes::from_static(b"<message id='r4'/>"),
        ];
        assert_eq!(numbered(&batch, 'p'), vec![3, 4]);
        assert_eq!(numbered(&batch, 'r'), vec![4]);
    }
}
