//! The load modes. Every mode logs its sessions in for real, is bounded in
//! count and time, and returns one JSON object.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::procstat::{self, MachineStat, ProcStat};
use crate::stats::Summary;
use crate::xmpp::{ClientError, Session, Target};

/// What every mode shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// Where to log in.
    pub target: Target,
    /// Local loopback addresses to connect from, round robin.
    pub sources: Vec<IpAddr>,
    /// Processes whose memory and CPU are reported (the system under test).
    pub pids: Vec<u32>,
    /// Logins in flight at once.
    pub login_concurrency: usize,
}

impl Common {
    fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    fn stat(&self) -> ProcStat {
        procstat::read_all(&self.pids)
    }

    /// The target's figures once its RSS has stopped moving. A process whose
    /// port has just opened may still be starting (xmpp-edge's RSS rose by
    /// 2 MiB within 0.2 s of it), and that memory is not the sessions'.
    async fn settled_stat(&self) -> ProcStat {
        let mut history = Vec::new();
        loop {
            let now = self.stat();
            history.push(now.rss_kib);
            if rss_settled(&history) {
                return now;
            }
            tokio::time::sleep(SETTLE_STEP).await;
        }
    }
}

/// How often [`Common::settled_stat`] looks at the target's RSS.
const SETTLE_STEP: Duration = Duration::from_millis(100);
/// Readings in a row that must agree.
const SETTLE_SAME: usize = 4;
/// Readings after which it gives up waiting (3 s).
const SETTLE_MAX: usize = 30;

/// Whether RSS readings taken [`SETTLE_STEP`] apart have stopped moving:
/// the last [`SETTLE_SAME`] agree, or [`SETTLE_MAX`] were taken.
fn rss_settled(history: &[u64]) -> bool {
    history.len() >= SETTLE_MAX
        || (history.len() >= SETTLE_SAME
            && history[history.len() - SETTLE_SAME..]
                .windows(2)
                .all(|w| w[0] == w[1]))
}

/// The machine's busy and stolen CPU since `before` (JSON null if unknown).
fn machine_since(before: Option<MachineStat>) -> serde_json::Value {
    match (before, MachineStat::read()) {
        (Some(before), Some(now)) => now.since(&before),
        _ => serde_json::Value::Null,
    }
}

struct LoggedIn {
    session: Session,
    jid: String,
}

/// Logs `n` sessions in; returns those that made it, the login latencies and
/// the errors (counted by message).
async fn login_many(
    common: &Common,
    n: usize,
    first: usize,
) -> (Vec<LoggedIn>, Vec<Duration>, Vec<String>) {
    let limit = Arc::new(Semaphore::new(common.login_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let target = common.target.clone();
        let source = common.source(first + i);
        let limit = Arc::clone(&limit);
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let t0 = Instant::now();
            let result = Session::login(&target, source).await;
            (i, t0.elapsed(), result)
        });
    }
    let mut ok: Vec<(usize, LoggedIn)> = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, took, Ok((session, jid)))) => {
                latencies.push(took);
                ok.push((i, LoggedIn { session, jid }));
            }
            Ok((_, _, Err(e))) => errors.push(e.to_string()),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    ok.sort_by_key(|(i, _)| *i);
    (ok.into_iter().map(|(_, s)| s).collect(), latencies, errors)
}

fn error_summary(errors: &[String]) -> serde_json::Value {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for e in errors {
        let key: String = e.chars().take(120).collect();
        *counts.entry(key).or_default() += 1;
    }
    serde_json::json!(counts)
}

fn stat_json(s: &ProcStat) -> serde_json::Value {
    serde_json::json!({ "rss_kib": s.rss_kib, "cpu_secs": s.cpu_secs, "fds": s.fds })
}

/// One XEP-0199 ping to the server and its answer.
async fn ping(session: &mut Session, jid: &str, n: u64) -> Result<(), ClientError> {
    let domain = jid
        .split('@')
        .nth(1)
        .and_then(|d| d.split('/').next())
        .unwrap_or("localhost");
    let id = format!("hp{n}");
    session
        .send(&format!(
            "<iq type='get' id='{id}' to='{domain}' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    let needle = format!("id='{id}'");
    let needle2 = format!("id=\"{id}\"");
    loop {
        for element in session.recv().await? {
            let t = std::str::from_utf8(&element).unwrap_or("");
            if t.contains(&needle) || t.contains(&needle2) {
                return Ok(());
            }
        }
    }
}

/// `idle`: N sessions logged in and left idle (BOSH: one parked request each,
/// re-parked when the connection manager answers it at `wait`); memory per
/// session from the target's RSS before and after; at the end every session
/// must answer a ping.
pub async fn idle(common: &Common, sessions: usize, hold: Duration) -> serde_json::Value {
    let before = common.settled_stat().await;
    let machine_before = MachineStat::read();
    let started = Instant::now();
    let (logged_in, latencies, errors) = login_many(common, sessions, 0).await;
    let login_secs = started.elapsed().as_secs_f64();
    // Let buffers settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = common.stat();
    // Idle: each session waits for anything (BOSH re-parks its poll).
    let healthy = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut set = JoinSet::new();
    let check = Arc::new(Semaphore::new(common.login_concurrency.max(1)));
    for (i, mut s) in logged_in.into_iter().enumerate() {
        let healthy = Arc::clone(&healthy);
        let failures = Arc::clone(&failures);
        let check = Arc::clone(&check);
        set.spawn(async move {
            let deadline = tokio::time::Instant::now() + hold;
            loop {
                match tokio::time::timeout_at(deadline, s.session.recv()).await {
                    Err(_) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        failures.lock().push(e.to_string());
                        return;
                    }
                }
            }
            let _permit = check.acquire().await;
            match tokio::time::timeout(
                Duration::from_secs(30),
                ping(&mut s.session, &s.jid, i as u64),
            )
            .await
            {
                Ok(Ok(())) => {
                    healthy.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => failures.lock().push(format!("final ping: {e}")),
                Err(_) => failures.lock().push("final ping: timed out".into()),
            }
            drop(_permit);
            s.session.close().await;
        });
    }
    while set.join_next().await.is_some() {}
    let logged = latencies.len();
    let mut latencies = latencies;
    let per_session = if logged > 0 {
        (after.rss_kib.saturating_sub(before.rss_kib)) as f64 / logged as f64
    } else {
        0.0
    };
    let failures = failures.lock().clone();
    serde_json::json!({
        "mode": "idle",
        "machine": machine_since(machine_before),
        "transport": format!("{:?}", common.target.transport).to_lowercase(),
        "sessions": sessions,
        "logged_in": logged,
        "healthy_at_end": healthy.load(Ordering::Relaxed),
        "login_errors": error_summary(&errors),
        "idle_errors": error_summary(&failures),
        "login_secs": login_secs,
        "logins_per_sec": logged as f64 / login_secs.max(1e-9),
        "login_ms": Summary::of(&mut latencies).to_json(),
        "target_before": stat_json(&before),
        "target_after": stat_json(&after),
        "kib_per_session": (per_session * 100.0).round() / 100.0,
        "hold_secs": hold.as_secs(),
    })
}

fn message(to: &str, id: &str, body: &str) -> String {
    format!(
        "<message to='{to}' id='{id}' type='chat' xmlns='jabber:client'><body>{body}</body></message>"
    )
}

/// The `id` attribute of an element, if it starts with `prefix`.
fn id_with_prefix<'a>(element: &'a str, prefix: &str) -> Option<&'a str> {
    let at = element.find(" id=")? + 5;
    let rest = &element[at..];
    let end = rest.find(['\'', '"'])?;
    let id = &rest[..end];
    id.starts_with(prefix).then_some(id)
}

/// `echo`: sessions in pairs; in each pair the first sends `messages` pings
/// one after another and the second answers each. Reports messages per
/// second (both directions), round-trip percentiles, and the target's CPU
/// seconds per 1,000 messages.
pub async fn echo(common: &Common, sessions: usize, messages: usize) -> serde_json::Value {
    let (logged_in, _, errors) = login_many(common, sessions & !1, 0).await;
    let pairs = logged_in.len() / 2;
    let before = common.stat();
    let machine_before = MachineStat::read();
    let started = Instant::now();
    let mut set = JoinSet::new();
    let mut iter = logged_in.into_iter();
    let exchanged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let last_done = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    for _ in 0..pairs {
        let (Some(mut a), Some(mut b)) = (iter.next(), iter.next()) else {
            break;
        };
        let (a_jid, b_jid) = (a.jid.clone(), b.jid.clone());
        let exchanged = Arc::clone(&exchanged);
        let failures_b = Arc::clone(&failures);
        // The answering side.
        set.spawn(async move {
            let mut answered = 0;
            while answered < messages {
                match b.session.recv().await {
                    Ok(batch) => {
                        for element in batch {
                            let t = std::str::from_utf8(&element).unwrap_or("");
                            if let Some(id) = id_with_prefix(t, "p") {
                                let reply = message(&a_jid, &format!("r{}", &id[1..]), "pong");
                                if let Err(e) = b.session.send(&reply).await {
                                    failures_b.lock().push(e.to_string());
                                    return Vec::new();
                                }
                                answered += 1;
                            }
                        }
                    }
                    Err(e) => {
                        failures_b.lock().push(e.to_string());
                        return Vec::new();
                    }
                }
            }
            b.session.close().await;
            Vec::new()
        });
        let failures_a = Arc::clone(&failures);
        let last_done = Arc::clone(&last_done);
        set.spawn(async move {
            let mut rtts = Vec::with_capacity(messages);
            'outer: for n in 0..messages {
                let t0 = Instant::now();
                if let Err(e) = a
                    .session
                    .send(&message(&b_jid, &format!("p{n}"), "ping"))
                    .await
                {
                    failures_a.lock().push(e.to_string());
                    break;
                }
                let want = format!("r{n}");
                loop {
                    match a.session.recv().await {
                        Ok(batch) => {
                            let got = batch.iter().any(|e| {
                                id_with_prefix(std::str::from_utf8(e).unwrap_or(""), "r")
                                    == Some(want.as_str())
                            });
                            if got {
                                rtts.push(t0.elapsed());
                                exchanged.fetch_add(2, Ordering::Relaxed);
                                break;
                            }
                        }
                        Err(e) => {
                            failures_a.lock().push(e.to_string());
                            break 'outer;
                        }
                    }
                }
            }
            last_done.lock().replace(Instant::now());
            a.session.close().await;
            rtts
        });
    }
    let mut rtts = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(samples) = joined {
            rtts.extend(samples);
        }
    }
    // Until the last pair finished, not until every session has closed.
    let secs = last_done
        .lock()
        .map_or_else(|| started.elapsed(), |t| t.duration_since(started))
        .as_secs_f64();
    let after = common.stat();
    let total = exchanged.load(Ordering::Relaxed);
    let cpu = after.cpu_secs - before.cpu_secs;
    let sys_cpu = after.sys_cpu_secs - before.sys_cpu_secs;
    let failures = failures.lock().clone();
    serde_json::json!({
        "mode": "echo",
        "machine": machine_since(machine_before),
        "transport": format!("{:?}", common.target.transport).to_lowercase(),
        "sessions": pairs * 2,
        "messages": total,
        "seconds": secs,
        "msgs_per_sec": total as f64 / secs.max(1e-9),
        "rtt_ms": Summary::of(&mut rtts).to_json(),
        "target_cpu_secs": cpu,
        "target_cpu_per_1000_msgs": if total > 0 { cpu * 1000.0 / total as f64 } else { 0.0 },
        "target_sys_cpu_per_1000_msgs": if total > 0 { sys_cpu * 1000.0 / total as f64 } else { 0.0 },
        "target_rss_kib": after.rss_kib,
        "login_errors": error_summary(&errors),
        "errors": error_summary(&failures),
    })
}

/// `flood`: sessions in pairs; senders send at a fixed total rate no matter
/// how fast answers come (open loop), receivers time each message from its
/// scheduled send time, so stalls are not hidden.
pub async fn flood(
    common: &Common,
    sessions: usize,
    rate: f64,
    duration: Duration,
) -> serde_json::Value {
    let (logged_in, _, errors) = login_many(common, sessions & !1, 0).await;
    let pairs = logged_in.len() / 2;
    let per_pair = rate / pairs.max(1) as f64;
    let interval = Duration::from_secs_f64(1.0 / per_pair.max(1e-6));
    let epoch = Instant::now() + Duration::from_millis(200);
    let before = common.stat();
    let machine_before = MachineStat::read();
    let mut set = JoinSet::new();
    let mut iter = logged_in.into_iter();
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let count = (duration.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    for p in 0..pairs {
        let (Some(mut a), Some(mut b)) = (iter.next(), iter.next()) else {
            break;
        };
        let b_jid = b.jid.clone();
        let sent = Arc::clone(&sent);
        let failures_a = Arc::clone(&failures);
        // Spread the pairs' schedules over one interval.
        let offset = interval.mul_f64(p as f64 / pairs.max(1) as f64);
        set.spawn(async move {
            for n in 0..count {
                let due = epoch + offset + interval.mul_f64(n as f64);
                tokio::time::sleep_until(due.into()).await;
                let stamp = due.duration_since(epoch).as_micros();
                if let Err(e) = a
                    .session
                    .send(&message(&b_jid, &format!("f{n}"), &stamp.to_string()))
                    .await
                {
                    failures_a.lock().push(e.to_string());
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            // Keep reading until the receiver is done, then leave.
            tokio::time::sleep(Duration::from_secs(2)).await;
            a.session.close().await;
            Vec::new()
        });
        let failures_b = Arc::clone(&failures);
        set.spawn(async move {
            let mut latencies = Vec::with_capacity(count as usize);
            let end = epoch + offset + interval.mul_f64(count as f64) + Duration::from_secs(10);
            while (latencies.len() as u64) < count {
                match tokio::time::timeout_at(end.into(), b.session.recv()).await {
                    Err(_) => break,
                    Ok(Ok(batch)) => {
                        let now = Instant::now();
                        for element in batch {
                            let t = std::str::from_utf8(&element).unwrap_or("");
                            if id_with_prefix(t, "f").is_none() {
                                continue;
                            }
                            let stamp = t
                                .split("<body>")
                                .nth(1)
                                .and_then(|r| r.split('<').next())
                                .and_then(|v| v.parse::<u64>().ok());
                            if let Some(us) = stamp {
                                let due = epoch + Duration::from_micros(us);
                                latencies.push(now.saturating_duration_since(due));
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        failures_b.lock().push(e.to_string());
                        break;
                    }
                }
            }
            b.session.close().await;
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(samples) = joined {
            latencies.extend(samples);
        }
    }
    let after = common.stat();
    let total_sent = sent.load(Ordering::Relaxed);
    let received = latencies.len() as u64;
    let failures = failures.lock().clone();
    serde_json::json!({
        "mode": "flood",
        "machine": machine_since(machine_before),
        "transport": format!("{:?}", common.target.transport).to_lowercase(),
        "sessions": pairs * 2,
        "offered_per_sec": rate,
        "seconds": duration.as_secs_f64(),
        "sent": total_sent,
        "received": received,
        "lost": total_sent.saturating_sub(received),
        "latency_ms": Summary::of(&mut latencies).to_json(),
        "target_cpu_secs": after.cpu_secs - before.cpu_secs,
        "login_errors": error_summary(&errors),
        "errors": error_summary(&failures),
    })
}

/// `churn`: new sessions started at a fixed rate, each logging in and
/// leaving at once; reports session set-up latency and the rate achieved.
pub async fn churn(
    common: &Common,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> serde_json::Value {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-6));
    let count = (duration.as_secs_f64() * rate).floor() as usize;
    let limit = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let started = Instant::now();
    let before = common.stat();
    let machine_before = MachineStat::read();
    let mut set = JoinSet::new();
    let mut skipped = 0usize;
    for i in 0..count {
        tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            // The target cannot keep up: a session that would have waited
            // is counted, not queued (no coordinated omission).
            skipped += 1;
            continue;
        };
        let target = common.target.clone();
        let source = common.source(i);
        set.spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            match Session::login(&target, source).await {
                Ok((session, _)) => {
                    let took = t0.elapsed();
                    let leaving = Instant::now();
                    session.close().await;
                    Ok((took, leaving.elapsed()))
                }
                Err(e) => Err(e.to_string()),
            }
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut closes = Vec::with_capacity(count);
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((took, closing))) => {
                latencies.push(took);
                closes.push(closing);
            }
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let after = common.stat();
    let done = latencies.len();
    serde_json::json!({
        "mode": "churn",
        "machine": machine_since(machine_before),
        "transport": format!("{:?}", common.target.transport).to_lowercase(),
        "offered_per_sec": rate,
        "attempted": count,
        "completed": done,
        "skipped_target_busy": skipped,
        "seconds": secs,
        "sessions_per_sec": done as f64 / secs.max(1e-9),
        "setup_ms": Summary::of(&mut latencies).to_json(),
        // A session holds its in-flight slot until it has left, so a slow
        // leave lowers the set-up rate as much as a slow login.
        "leave_ms": Summary::of(&mut closes).to_json(),
        "target_cpu_secs": after.cpu_secs - before.cpu_secs,
        "errors": error_summary(&errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_by_prefix() {
        assert_eq!(
            id_with_prefix("<message to='x' id='p12' type='chat'>", "p"),
            Some("p12")
        );
        assert_eq!(id_with_prefix("<message id=\"r3\">", "r"), Some("r3"));
        assert_eq!(id_with_prefix("<message id='r3'>", "p"), None);
        assert_eq!(id_with_prefix("<presence/>", "p"), None);
    }

    #[test]
    fn rss_is_settled_after_four_equal_readings_or_thirty() {
        // xmpp-edge just after its port opened: 8,644 KiB, then 10,592 for good.
        assert!(!rss_settled(&[8644]));
        assert!(!rss_settled(&[8644, 10592, 10592, 10592]));
        assert!(rss_settled(&[8644, 10592, 10592, 10592, 10592]));
        assert!(rss_settled(&[10592; 4]));
        let moving: Vec<u64> = (0..SETTLE_MAX as u64).collect();
        assert!(!rss_settled(&moving[..SETTLE_MAX - 1]));
        assert!(rss_settled(&moving));
    }
}
