//! A BOSH client that survives broken connections the way XEP-0124 §14
//! lets a real one: every request goes out on a fresh connection; a request
//! whose response is cut, reset or late is sent again with the same rid and
//! the same bytes (possibly after later rids already went out); responses
//! are processed in rid order. Optional misbehaviour for fault tests:
//! duplicate sends, and acknowledgements that lag (XEP-0124 §9.2 `report`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::bosh::{
    BoshClient, HTTPBIND, HttpResponse, Incoming, check_bosh_response, read_response, sign_in,
};
use super::faults::Rng;
use super::numbered::numbers;
use super::xml::{attr, children};

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct RetryOptions {
    /// Longest wait for one attempt's response before it is sent again.
    pub attempt_timeout: Duration,
    /// Pause before a resend, drawn uniformly from `0..=resend_jitter_ms`
    /// (during which later rids may go out first).
    pub resend_jitter_ms: u64,
    /// Stanzas per request at most.
    pub batch: usize,
    /// Requests in flight at most (the session's `requests`).
    pub in_flight: usize,
    /// Ask for acknowledgements (`ack='1'`) and send `ack` on every request.
    pub acks: bool,
    /// Chance that a request is also sent a second time at once, on another connection.
    pub duplicate_chance: f64,
    /// Chance that a request's `ack` claims one response fewer than received.
    pub lag_chance: f64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(8),
            resend_jitter_ms: 50,
            batch: 25,
            in_flight: 2,
            acks: false,
            duplicate_chance: 0.0,
            lag_chance: 0.0,
        }
    }
}

/// What the client counted.
#[derive(Debug, Default)]
pub struct RetryStats {
    /// Requests (first sends).
    pub requests: AtomicU64,
    /// Attempts sent again after a failure.
    pub resends: AtomicU64,
    /// Extra copies sent on purpose.
    pub duplicates: AtomicU64,
    /// Recoverable `type='error'` answers (XEP-0124 §14.3).
    pub recoverable_errors: AtomicU64,
    /// Requests with a lagging `ack`.
    pub lagging_acks: AtomicU64,
    /// `report` answers.
    pub reports: AtomicU64,
    /// Reported rids fetched again and compared byte for byte.
    pub report_checks: AtomicU64,
    /// Largest `time` seen in a report, ms.
    pub max_report_time: AtomicU64,
}

impl RetryStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One attempt on a fresh connection; `Err` when it was cut, reset or late.
pub async fn try_post(
    addr: SocketAddr,
    body: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "POST /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let response = read_response(&mut stream)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let length = response
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok());
        if length != Some(response.body.len()) {
            return Err(format!(
                "truncated: {} of {length:?} bytes",
                response.body.len()
            ));
        }
        Ok(response)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// A logged-in session at the request level: (client, next rid, full JID).
/// Logs in on `addr` directly; later traffic may go through a proxy.
pub async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
    create_attrs: &str,
) -> (BoshClient, u64, String) {
    let (client, created) = BoshClient::create(addr, create_attrs).await;
    assert!(
        created.body.contains("<mechanism>PLAIN</mechanism>"),
        "creation: {}",
        created.body
    );
    let (rid, jid) = sign_in(&client, "localhost", user, password, resource)
        .await
        .unwrap_or_else(|e| panic!("login of {user}: {e}"));
    // Available, so messages to the full JID are delivered.
    let r = client
        .request(rid, "", "<presence xmlns='jabber:client'/>")
        .await;
    assert_eq!(r.status, 200);
    (client, rid + 1, jid)
}

/// A running retrying client.
pub struct RetryingBosh {
    pub jid: String,
    pub sid: String,
    /// The first rid this client sent.
    pub first_rid: u64,
    pub stats: Arc<RetryStats>,
    outgoing: mpsc::UnboundedSender<Out>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

enum Out {
    Stanza(String),
    Terminate,
}

impl RetryingBosh {
    /// Drives `client` from `next_rid` on, sending every request to `via`.
    pub fn start(
        client: BoshClient,
        next_rid: u64,
        jid: String,
        via: SocketAddr,
        options: RetryOptions,
        rng: Rng,
    ) -> Self {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(RetryStats::default());
        let sid = client.sid.clone();
        let task = tokio::spawn(engine(
            Engine {
                via,
                sid: client.sid,
                options,
                stats: Arc::clone(&stats),
            },
            next_rid,
            rng,
            out_rx,
            in_tx,
        ));
        Self {
            jid,
            sid,
            first_rid: next_rid,
            stats,
            outgoing: out_tx,
            incoming: in_rx,
            task,
        }
    }

    pub fn send(&self, stanza: impl Into<String>) {
        let _ = self.outgoing.send(Out::Stanza(stanza.into()));
    }

    pub fn terminate(&self) {
        let _ = self.outgoing.send(Out::Terminate);
    }

    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for RetryingBosh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Engine {
    via: SocketAddr,
    sid: String,
    options: RetryOptions,
    stats: Arc<RetryStats>,
}

impl Engine {
    /// Sends `body` for `rid` until a complete, non-error answer arrives.
    async fn deliver(
        self,
        rid: u64,
        body: String,
        mut rng: Rng,
    ) -> (u64, Result<HttpResponse, String>) {
        // A duplicate is sent at once on another connection. The request
        // counts as done only when the copy was answered too, so the client
        // never acknowledges a rid whose copy is still on the wire (a copy
        // arriving after that is refused with item-not-found, XEP-0124 §9.2).
        let mut copy = None;
        if rng.chance(self.options.duplicate_chance) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            let (via, body, timeout) = (self.via, body.clone(), self.options.attempt_timeout);
            copy = Some(tokio::spawn(async move {
                let _ = try_post(via, &body, timeout).await;
            }));
        }
        let result = self.send_until_answered(rid, &body, &mut rng).await;
        if let Some(copy) = copy {
            let _ = copy.await;
        }
        (rid, result)
    }

    async fn send_until_answered(
        &self,
        rid: u64,
        body: &str,
        rng: &mut Rng,
    ) -> Result<HttpResponse, String> {
        for _ in 0..200 {
            match try_post(self.via, body, self.options.attempt_timeout).await {
                Ok(r) if attr(&r.body, "type").as_deref() == Some("error") => {
                    // XEP-0124 §17.3: recoverable; send it again unchanged.
                    self.stats
                        .recoverable_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(rng.millis(0, self.options.resend_jitter_ms)).await;
                }
                Ok(r) => {
                    check_bosh_response(&r);
                    return Ok(r);
                }
                Err(why) => {
                    if std::env::var_os("BOSH_RETRY_DEBUG").is_some() {
                        eprintln!("{}: rid {rid}: {why}", self.sid);
                    }
                    self.stats.resends.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(rng.millis(0, self.options.resend_jitter_ms)).await;
                }
            }
        }
        Err(format!("rid {rid}: no complete answer after 200 attempts"))
    }
}

async fn engine(
    e: Engine,
    mut next_rid: u64,
    mut rng: Rng,
    mut outgoing: mpsc::UnboundedReceiver<Out>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut terminate = false;
    let mut in_flight: JoinSet<(u64, Result<HttpResponse, String>)> = JoinSet::new();
    let mut done: BTreeMap<u64, HttpResponse> = BTreeMap::new();
    // Bodies already processed, for checking `report` retransmissions.
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut next_to_process = next_rid;
    let mut input_open = true;
    let mut last_ack = 0u64;
    // (rid the client pretends it never got, rid of the request saying so).
    let mut pretend_missing: Option<(u64, u64)> = None;
    // What the client did, for the failure message.
    let mut trace: Vec<String> = Vec::new();
    let mut progress = std::time::Instant::now();
    let t0 = std::time::Instant::now();
    let fail = |why: String, trace: &[String]| {
        let recent = &trace[trace.len().saturating_sub(24)..];
        let _ = incoming.send(Incoming::Terminated(format!(
            "client check failed: {why}\nrecent: {recent:#?}"
        )));
    };
    loop {
        // At most `in_flight` rids past the oldest unprocessed one, so every
        // response the client may still ask for again is in the server's cache.
        loop {
            let room = in_flight.len() < e.options.in_flight
                && next_rid < next_to_process + e.options.in_flight as u64;
            if !((room && (!queue.is_empty() || terminate)) || in_flight.is_empty()) {
                break;
            }
            let n = queue.len().min(e.options.batch);
            let payload: String = queue.drain(..n).collect();
            let mut attrs = String::new();
            if terminate && queue.is_empty() {
                attrs.push_str(" type='terminate'");
                terminate = false;
            }
            if e.options.acks {
                // The highest rid processed with all before it.
                let acked = next_to_process - 1;
                // Only a lag behind what was already acknowledged can be
                // reported; until the missing response is fetched again,
                // no request acknowledges it (as a client that really lost it).
                let ack = if let Some((missing, _)) = pretend_missing {
                    acked.min(missing - 1)
                } else if rng.chance(e.options.lag_chance)
                    && seen.contains_key(&acked)
                    && last_ack < acked
                {
                    e.stats.lagging_acks.fetch_add(1, Ordering::Relaxed);
                    pretend_missing = Some((acked, next_rid));
                    acked - 1
                } else {
                    acked
                };
                last_ack = last_ack.max(ack);
                attrs.push_str(&format!(" ack='{ack}'"));
            }
            let rid = next_rid;
            next_rid += 1;
            e.stats.requests.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                "<body rid='{rid}' sid='{}'{attrs} {HTTPBIND}>{payload}</body>",
                e.sid
            );
            trace.push(format!(
                "{:?} send {rid} {attrs} n={n} q={} inflight={}",
                t0.elapsed(),
                queue.len(),
                in_flight.len()
            ));
            in_flight.spawn(e.clone().deliver(rid, body, rng.fork()));
        }
        tokio::select! {
            finished = in_flight.join_next(), if !in_flight.is_empty() => {
                let (rid, response) = match finished {
                    Some(Ok((rid, Ok(r)))) => (rid, r),
                    Some(Ok((_, Err(why)))) => return fail(why, &trace),
                    _ => return fail("request task failed".into(), &trace),
                };
                done.insert(rid, response);
                while let Some(response) = done.remove(&next_to_process) {
                    let rid = next_to_process;
                    next_to_process += 1;
                    let body = response.body;
                    trace.push(format!("{:?} got {rid}: {}", t0.elapsed(), body.chars().take(100).collect::<String>()));
                    if std::env::var_os("BOSH_RETRY_DEBUG").is_some() && progress.elapsed() > Duration::from_millis(900) {
                        eprintln!("{}: {:?} without progress: {:#?}", e.sid, progress.elapsed(), &trace[trace.len().saturating_sub(10)..]);
                    }
                    progress = std::time::Instant::now();
                    let report = attr(&body, "report").and_then(|r| r.parse::<u64>().ok());
                    if report.is_some() {
                        e.stats.reports.fetch_add(1, Ordering::Relaxed);
                        let time: u64 = attr(&body, "time").and_then(|t| t.parse().ok()).unwrap_or(u64::MAX);
                        e.stats.max_report_time.fetch_max(time, Ordering::Relaxed);
                    }
                    // A report of a response the client already acknowledged
                    // in a later request (the request was overtaken on the
                    // wire) is stale: the server rightly forgot it.
                    if let Some(report) = report.filter(|r| *r > last_ack) {
                        // XEP-0124 §9.2: fetch the reported rid again; it must be the same bytes.
                        e.stats.report_checks.fetch_add(1, Ordering::Relaxed);
                        let Some(original) = seen.get(&report).cloned() else {
                            return fail(format!("report of rid {report}, which was never processed"), &trace);
                        };
                        let again = format!("<body rid='{report}' sid='{}' {HTTPBIND}/>", e.sid);
                        match e.clone().deliver(report, again, rng.fork()).await {
                            (_, Ok(r)) if r.body == original => {}
                            (_, Ok(r)) => return fail(format!("rid {report} again: {} != {original}", r.body), &trace),
                            (_, Err(why)) => return fail(why, &trace),
                        }
                        if pretend_missing.is_some_and(|(missing, _)| missing == report) {
                            pretend_missing = None;
                        }
                    }
                    if pretend_missing.is_some_and(|(_, asked)| asked <= rid) {
                        // Reporting is optional: no report came; stop pretending.
                        pretend_missing = None;
                    }
                    for child in children(&body) {
                        let _ = incoming.send(Incoming::Stanza(child));
                    }
                    if attr(&body, "type").as_deref() == Some("terminate") || response.status != 200 {
                        let body = match attr(&body, "condition") {
                            // An error: say what led to it.
                            Some(_) => format!("{body}\nrecent: {:#?}", &trace[trace.len().saturating_sub(24)..]),
                            None => body,
                        };
                        let _ = incoming.send(Incoming::Terminated(body));
                        return;
                    }
                    seen.insert(rid, body);
                    while seen.len() > 16 {
                        seen.pop_first();
                    }
                }
            }
            message = outgoing.recv(), if input_open => match message {
                Some(Out::Stanza(s)) => queue.push_back(s),
                Some(Out::Terminate) => terminate = true,
                None => input_open = false,
            },
        }
    }
}

/// Reads stanzas until `count` messages whose body starts with `tag-` have
/// arrived; returns their numbers in arrival order. Panics on a stall or
/// an early end, naming `who`.
pub async fn collect(
    stream: &mut RetryingBosh,
    tag: &str,
    count: usize,
    timeout: Duration,
) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Some(Incoming::Stanza(s)) => seen.extend(numbers(&s, tag)),
            Some(Incoming::Terminated(body)) => panic!(
                "{}: session ended after {} of {count} messages: {body}",
                stream.jid,
                seen.len()
            ),
            None => panic!(
                "{}: stalled after {} of {count} messages (last {:?})",
                stream.jid,
                seen.len(),
                seen.last()
            ),
        }
    }
    seen
}
