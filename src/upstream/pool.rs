//! Upstream pools: which server a new session goes to, and keeping track of
//! which servers work.
//!
//! Per served domain: a static list of upstreams, or DNS SRV discovery
//! (with the A/AAAA fallback). Each upstream has passive health (consecutive
//! failures take it out of rotation for an exponentially growing back-off,
//! after which one session may try it again), optional active probes, a
//! session count for least-sessions balancing with weights, and optional
//! pre-dialed ("warm") connections. A session that cannot connect to one
//! upstream tries the next before its client is told anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use rand::Rng;

use crate::clock;
use crate::config::{Config, ProxySetting, UpstreamEntry};
use crate::upstream::conn::{ConnSettings, UpstreamConn};
use crate::upstream::dial::{DialError, connect_tcp, establish, open_transport, secure_transport};
use crate::upstream::dns::{Dns, DnsError};
use crate::upstream::proxy_protocol::{self, ClientInfo, ProxyVersion};
use crate::upstream::route::{Candidate, SrvOutcome, TlsMode, order_srv};
use crate::upstream::tls::{TlsContext, TlsSetupError};
use crate::upstream::{OpenStream, UpstreamEvent, UpstreamFailure};

/// Redirects (`see-other-host`) followed for one session at most (UP-44).
const MAX_REDIRECTS: usize = 3;

/// Health rules from config.
#[derive(Clone, Copy, Debug)]
pub struct HealthSettings {
    /// Consecutive failures that take an upstream out of rotation.
    pub failure_threshold: u32,
    /// First back-off.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// Active probe interval, if any.
    pub check_interval: Option<Duration>,
    /// Age at which a pre-dialed connection is replaced.
    pub warm_max_idle: Duration,
}

/// Why the upstream side could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    /// TLS settings of a domain.
    #[error("hosts.{domain}: {source}")]
    Tls {
        /// The domain.
        domain: String,
        /// What failed.
        source: TlsSetupError,
    },
    /// The resolver.
    #[error("dns: {0}")]
    Dns(String),
}

#[derive(Debug)]
struct Health {
    consecutive_failures: u32,
    down_until: Option<Instant>,
    backoff: Duration,
}

/// A pre-dialed connection and when it was made.
struct WarmConn {
    conn: UpstreamConn,
    since: Instant,
}

/// One upstream server of a domain.
pub struct Upstream {
    /// Where it is and how it is secured.
    pub candidate: Candidate,
    proxy: Option<ProxyVersion>,
    health: Mutex<Health>,
    sessions: AtomicUsize,
    warm: Mutex<Vec<WarmConn>>,
    /// Wakes the refill task when a pre-dialed connection was taken.
    warm_taken: tokio::sync::Notify,
    connects: AtomicU64,
    failures: AtomicU64,
    tls_resumptions: AtomicU64,
    /// The process-wide metrics counters of this server, once attached.
    counters: std::sync::OnceLock<ServerCounters>,
}

/// One server's children of the `xmpp_edge_upstream_*_total` counters. They
/// are keyed by domain and address, so a server that a reload rebuilds
/// (another weight, say) keeps counting where it was.
#[derive(Debug)]
struct ServerCounters {
    connects: prometheus::IntCounter,
    failures: prometheus::IntCounter,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.candidate.address())
            .field("sessions", &self.sessions.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A snapshot of one upstream, for metrics, readiness and the admin API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamStatus {
    /// The domain it serves.
    pub domain: String,
    /// `host:port`.
    pub address: String,
    /// In rotation.
    pub healthy: bool,
    /// Live sessions on it.
    pub sessions: usize,
    /// Pre-dialed connections ready.
    pub warm: usize,
    /// Successful connects.
    pub connects: u64,
    /// Failures recorded.
    pub failures: u64,
    /// TLS handshakes that resumed an earlier session (UP-8).
    pub tls_resumptions: u64,
}

impl Upstream {
    fn new(candidate: Candidate, proxy: Option<ProxyVersion>, health: &HealthSettings) -> Self {
        Self {
            candidate,
            proxy,
            health: Mutex::new(Health {
                consecutive_failures: 0,
                down_until: None,
                backoff: health.backoff_initial,
            }),
            sessions: AtomicUsize::new(0),
            warm: Mutex::new(Vec::new()),
            warm_taken: tokio::sync::Notify::new(),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            tls_resumptions: AtomicU64::new(0),
            counters: std::sync::OnceLock::new(),
        }
    }

    /// Counts this server's connects and failures in `counters` too.
    fn attach(&self, domain: &str, counters: &UpstreamCounters) {
        let address = self.candidate.address();
        let labels = [domain, address.as_str()];
        // Set once, when the pools that list it are built.
        let _ = self.counters.set(ServerCounters {
            connects: counters.connects.with_label_values(&labels),
            failures: counters.failures.with_label_values(&labels),
        });
    }

    /// In rotation: never failed enough, or its back-off is over (one more try).
    pub fn eligible(&self, now: Instant) -> bool {
        self.health
            .lock()
            .down_until
            .is_none_or(|until| now >= until)
    }

    fn load(&self) -> f64 {
        self.sessions.load(Ordering::Relaxed) as f64 / f64::from(self.candidate.weight.max(1))
    }

    fn record_success(&self, settings: &HealthSettings) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.counters.get() {
            c.connects.inc();
        }
        let mut h = self.health.lock();
        if h.down_until.is_some() {
            tracing::info!(upstream = %self.candidate.address(), "upstream back in rotation");
        }
        h.consecutive_failures = 0;
        h.down_until = None;
        h.backoff = settings.backoff_initial;
    }

    fn record_failure(&self, now: Instant, settings: &HealthSettings) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.counters.get() {
            c.failures.inc();
        }
        let mut h = self.health.lock();
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        if h.consecutive_failures >= settings.failure_threshold {
            // Back-off with jitter, so replicas do not all retry at once (UP-7).
            let jitter = rand::rng().random_range(0.8..1.2);
            let wait = h.backoff.mul_f64(jitter);
            h.down_until = Some(now + wait);
            h.backoff = (h.backoff * 2).min(settings.backoff_max);
            tracing::warn!(
                upstream = %self.candidate.address(),
                failures = h.consecutive_failures,
                retry_in = ?wait,
                "upstream taken out of rotation"
            );
            drop(h);
            self.warm.lock().clear();
        }
    }
}

/// A session's hold on an upstream: counts it for balancing while it lives.
#[derive(Debug)]
pub struct Lease {
    upstream: Arc<Upstream>,
    settings: HealthSettings,
}

impl Lease {
    fn new(upstream: Arc<Upstream>, settings: HealthSettings) -> Self {
        upstream.sessions.fetch_add(1, Ordering::Relaxed);
        Self { upstream, settings }
    }

    /// The connection broke mid-session: counts against the upstream's health.
    pub fn report_lost(&self) {
        self.upstream.record_failure(clock::now(), &self.settings);
    }

    /// The upstream this session runs on.
    pub fn address(&self) -> String {
        self.upstream.candidate.address()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstream.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which domain a session needs, and who its client is (for PROXY headers).
#[derive(Clone, Debug)]
pub struct RouteRequest {
    /// The XMPP domain.
    pub domain: Box<str>,
    /// The client's addresses and front-end details.
    pub client: ClientInfo,
    /// An allow-listed `route` target that replaces the domain's upstreams (BOSH-23).
    pub target: Option<Candidate>,
}

/// A new session's upstream stream.
#[derive(Debug)]
pub struct Connected {
    /// The connection, negotiated up to the first features.
    pub conn: UpstreamConn,
    /// The server's header and features, for the core.
    pub events: Vec<UpstreamEvent>,
    /// Counts the session on its upstream.
    pub lease: Lease,
}

enum Source {
    Static(Vec<Arc<Upstream>>),
    Srv(DashMap<String, Arc<Upstream>>),
}

struct HostRoute {
    domain: String,
    source: Source,
    tls_mode: TlsMode,
    tls: TlsContext,
    proxy: Option<ProxyVersion>,
    proxy_tlvs: bool,
    warm: usize,
}

/// The metrics counters the pools count connects and failures into.
#[derive(Clone, Debug)]
pub struct UpstreamCounters {
    /// Streams opened, by domain and upstream.
    pub connects: prometheus::IntCounterVec,
    /// Failures, by domain and upstream.
    pub failures: prometheus::IntCounterVec,
}

/// Every served domain's upstreams.
pub struct Upstreams {
    hosts: HashMap<String, HostRoute>,
    dns: Dns,
    settings: Arc<ConnSettings>,
    health: HealthSettings,
    /// Time per stream opened, by domain and result (metrics).
    connect_seconds: Option<prometheus::HistogramVec>,
    /// Connects and failures per listed server (metrics).
    server_counters: Option<UpstreamCounters>,
    /// Replaced by a reload: background tasks stop.
    retired: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("domains", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

// === impl Upstreams ===

impl Upstreams {
    /// Records the time of every stream opened in `histogram` (labels:
    /// domain, result).
    pub fn with_connect_histogram(mut self, histogram: prometheus::HistogramVec) -> Self {
        self.connect_seconds = Some(histogram);
        self
    }

    /// Counts every listed server's connects and failures in `counters`
    /// (labels: domain, upstream); servers found through DNS later join
    /// when they are found.
    pub fn with_server_counters(mut self, counters: UpstreamCounters) -> Self {
        for route in self.hosts.values() {
            if let Source::Static(list) = &route.source {
                for upstream in list {
                    upstream.attach(&route.domain, &counters);
                }
            }
        }
        self.server_counters = Some(counters);
        self
    }

    /// Builds the pools of `config`.
    pub fn new(config: &Config) -> Result<Self, PoolSetupError> {
        let u = &config.upstream;
        let secs = |s: u16| Duration::from_secs(u64::from(s));
        let health = HealthSettings {
            failure_threshold: u32::from(u.failure_threshold),
            backoff_initial: secs(u.backoff_initial_secs),
            backoff_max: secs(u.backoff_max_secs),
            check_interval: (u.health_check_interval_secs > 0)
                .then(|| secs(u.health_check_interval_secs)),
            warm_max_idle: secs(u.warm_max_idle_secs),
        };
        let mut tls_cache: HashMap<(Option<String>, bool), TlsContext> = HashMap::new();
        let mut hosts = HashMap::new();
        for (domain, host) in &config.hosts {
            let key = (host.tls_ca_file.clone(), host.tls_insecure_skip_verify);
            let tls = match tls_cache.get(&key) {
                Some(tls) => tls.clone(),
                None => {
                    let tls = TlsContext::new(
                        host.tls_ca_file.as_deref().map(Path::new),
                        host.tls_insecure_skip_verify,
                    )
                    .map_err(|source| PoolSetupError::Tls {
                        domain: domain.clone(),
                        source,
                    })?;
                    tls_cache.insert(key, tls.clone());
                    tls
                }
            };
            if host.tls_insecure_skip_verify {
                tracing::warn!(
                    domain,
                    "tls_insecure_skip_verify is on: upstream certificates are NOT checked; never use this in production"
                );
            }
            let source = if host.srv {
                Source::Srv(DashMap::new())
            } else {
                Source::Static(
                    host.upstreams
                        .iter()
                        .filter_map(|entry| {
                            let (address, tls, weight, proxy) = match entry {
                                UpstreamEntry::Address(a) => {
                                    (a.as_str(), host.tls, 1, host.proxy_protocol)
                                }
                                UpstreamEntry::Details(d) => (
                                    d.address.as_str(),
                                    d.tls.unwrap_or(host.tls),
                                    d.weight.max(1),
                                    match d.proxy_protocol {
                                        None => host.proxy_protocol,
                                        Some(ProxySetting::Off) => None,
                                        Some(ProxySetting::V1) => Some(ProxyVersion::V1),
                                        Some(ProxySetting::V2) => Some(ProxyVersion::V2),
                                    },
                                ),
                            };
                            let (h, port) = crate::config::parse_host_port(address)?;
                            let candidate = Candidate {
                                host: h.into(),
                                port,
                                tls,
                                priority: 0,
                                weight,
                            };
                            Some(Arc::new(Upstream::new(candidate, proxy, &health)))
                        })
                        .collect(),
                )
            };
            hosts.insert(
                domain.clone(),
                HostRoute {
                    domain: domain.clone(),
                    source,
                    tls_mode: host.tls,
                    tls,
                    proxy: host.proxy_protocol,
                    proxy_tlvs: host.proxy_protocol_tlvs,
                    warm: usize::from(host.warm_connections),
                },
            );
        }
        let dns = Dns::new(&config.dns.nameservers).map_err(PoolSetupError::Dns)?;
        Ok(Self {
            hosts,
            dns,
            settings: Arc::new(config.conn_settings()),
            health,
            connect_seconds: None,
            server_counters: None,
            retired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Takes over, from the pools being replaced, the servers the new
    /// configuration still lists unchanged: their health, back-off, session
    /// counts, counters and warm connections survive a reload.
    pub fn adopt(&mut self, old: &Self) {
        for (domain, route) in &mut self.hosts {
            let Some(previous) = old.hosts.get(domain) else {
                continue;
            };
            match (&mut route.source, &previous.source) {
                (Source::Static(new), Source::Static(prev)) => {
                    for slot in new.iter_mut() {
                        if let Some(same) = prev
                            .iter()
                            .find(|u| u.candidate == slot.candidate && u.proxy == slot.proxy)
                        {
                            *slot = Arc::clone(same);
                        }
                    }
                }
                (Source::Srv(new), Source::Srv(prev)) if route.proxy == previous.proxy => {
                    for entry in prev {
                        new.insert(entry.key().clone(), Arc::clone(entry.value()));
                    }
                }
                _ => {}
            }
        }
    }

    /// Marks these pools replaced: their health checks and warm-pool
    /// refills stop (the new pools run their own).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Whether `domain` is served; `Some(true)` when its upstreams are our
    /// own configured servers rather than found through DNS (UP-49).
    pub fn serves(&self, domain: &str) -> Option<bool> {
        self.hosts
            .get(domain)
            .map(|h| matches!(h.source, Source::Static(_)))
    }

    /// Connection settings.
    pub fn settings(&self) -> &Arc<ConnSettings> {
        &self.settings
    }

    /// Status of every known upstream.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        let now = clock::now();
        let mut out = Vec::new();
        for route in self.hosts.values() {
            let mut push = |u: &Arc<Upstream>| {
                out.push(UpstreamStatus {
                    domain: route.domain.clone(),
                    address: u.candidate.address(),
                    healthy: u.eligible(now),
                    sessions: u.sessions.load(Ordering::Relaxed),
                    warm: u.warm.lock().len(),
                    connects: u.connects.load(Ordering::Relaxed),
                    failures: u.failures.load(Ordering::Relaxed),
                    tls_resumptions: u.tls_resumptions.load(Ordering::Relaxed),
                })
            };
            match &route.source {
                Source::Static(list) => list.iter().for_each(&mut push),
                Source::Srv(known) => known.iter().for_each(|e| push(e.value())),
            }
        }
        out.sort_by(|a, b| (&a.domain, &a.address).cmp(&(&b.domain, &b.address)));
        out
    }

    /// Whether at least one upstream is in rotation (readiness).
    pub fn any_healthy(&self) -> bool {
        let now = clock::now();
        self.hosts.values().any(|route| match &route.source {
            Source::Static(list) => list.iter().any(|u| u.eligible(now)),
            // DNS-discovered domains are checked when used.
            Source::Srv(_) => true,
        })
    }

    /// Opens the upstream stream of a new session for `domain`: picks a
    /// healthy upstream, fails over to the next on error, and negotiates up
    /// to the first features.
    pub async fn connect(
        &self,
        domain: &str,
        client: &ClientInfo,
        open: OpenStream,
    ) -> Result<Connected, UpstreamFailure> {
        let route = self.hosts.get(domain).ok_or(UpstreamFailure::HostUnknown)?;
        let candidates = self.candidates(route).await?;
        let now = clock::now();
        let mut order: Vec<Arc<Upstream>> =
            candidates.into_iter().filter(|u| u.eligible(now)).collect();
        if order.is_empty() {
            return Err(UpstreamFailure::NoHealthyUpstream);
        }
        // Lower priority first, then the least loaded for its weight; the
        // stable sort keeps the configured (or SRV-weighted) order on ties.
        order.sort_by(|a, b| {
            a.candidate
                .priority
                .cmp(&b.candidate.priority)
                .then(a.load().total_cmp(&b.load()))
        });
        let mut last = UpstreamFailure::NoHealthyUpstream;
        for upstream in order {
            let started = clock::now();
            let dialed = self.dial(route, &upstream, client, open.clone()).await;
            if let Some(h) = &self.connect_seconds {
                let result = if dialed.is_ok() { "ok" } else { "failed" };
                h.with_label_values(&[domain, result]).observe(
                    clock::now()
                        .saturating_duration_since(started)
                        .as_secs_f64(),
                );
            }
            match dialed {
                Ok((conn, events)) => {
                    upstream.record_success(&self.health);
                    if conn.tls_resumed() == Some(true) {
                        upstream.tls_resumptions.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(upstream = %upstream.candidate.address(), "upstream stream established");
                    return Ok(Connected {
                        conn,
                        events,
                        lease: Lease::new(upstream, self.health),
                    });
                }
                Err(failure) => {
                    tracing::warn!(upstream = %upstream.candidate.address(), "upstream failed: {failure}");
                    upstream.record_failure(clock::now(), &self.health);
                    last = failure;
                }
            }
        }
        Err(last)
    }

    /// [`Self::connect`], or straight to an allow-listed `route` target.
    pub async fn connect_route(
        &self,
        request: &RouteRequest,
        open: OpenStream,
    ) -> Result<Connected, UpstreamFailure> {
        let Some(target) = &request.target else {
            return self.connect(&request.domain, &request.client, open).await;
        };
        let route = self
            .hosts
            .get(&*request.domain)
            .ok_or(UpstreamFailure::HostUnknown)?;
        let upstream = Arc::new(Upstream::new(target.clone(), route.proxy, &self.health));
        let (conn, events) = self.dial(route, &upstream, &request.client, open).await?;
        Ok(Connected {
            conn,
            events,
            lease: Lease::new(upstream, self.health),
        })
    }

    async fn candidates(&self, route: &HostRoute) -> Result<Vec<Arc<Upstream>>, UpstreamFailure> {
        let known = match &route.source {
            Source::Static(list) => return Ok(list.clone()),
            Source::Srv(known) => known,
        };
        let records = self.dns.srv(&route.domain).await.map_err(|e| {
            UpstreamFailure::Connect(format!("SRV lookup for {}: {e}", route.domain))
        })?;
        let candidates =
            match order_srv(records, route.tls_mode, |n| rand::rng().random_range(0..n)) {
                SrvOutcome::Targets(targets) => targets,
                SrvOutcome::NotOffered => {
                    return Err(UpstreamFailure::Connect(format!(
                        "{} publishes no XMPP client service",
                        route.domain
                    )));
                }
                SrvOutcome::Fallback => {
                    // UP-5: the domain itself on 5222, if it exists at all.
                    match self.dns.addresses(&route.domain).await {
                        Ok(_) => vec![Candidate {
                            host: route.domain.clone().into(),
                            port: 5222,
                            tls: route.tls_mode,
                            priority: 0,
                            weight: 1,
                        }],
                        Err(DnsError::NotFound) => return Err(UpstreamFailure::HostUnknown),
                        Err(e) => {
                            return Err(UpstreamFailure::Connect(format!("{}: {e}", route.domain)));
                        }
                    }
                }
            };
        Ok(candidates
            .into_iter()
            .map(|c| {
                let upstream = known.entry(c.address()).or_insert_with(|| {
                    let found = Arc::new(Upstream::new(c.clone(), route.proxy, &self.health));
                    if let Some(counters) = &self.server_counters {
                        found.attach(&route.domain, counters);
                    }
                    found
                });
                Arc::clone(upstream.value())
            })
            .collect())
    }

    /// One upstream, following redirects (UP-44): same `to`, same TLS policy,
    /// certificate checked against the domain.
    async fn dial(
        &self,
        route: &HostRoute,
        upstream: &Upstream,
        client: &ClientInfo,
        open: OpenStream,
    ) -> Result<(UpstreamConn, Vec<UpstreamEvent>), UpstreamFailure> {
        let header = upstream.proxy.map(|v| match v {
            ProxyVersion::V1 => proxy_protocol::v1(client),
            ProxyVersion::V2 => proxy_protocol::v2(client, route.proxy_tlvs),
        });
        let mut candidate = upstream.candidate.clone();
        let mut warm = self.take_warm(upstream);
        for _ in 0..=MAX_REDIRECTS {
            let conn = match warm.take() {
                Some(conn) => conn,
                None => {
                    open_transport(
                        &candidate,
                        &route.domain,
                        &route.tls,
                        header.as_deref(),
                        &self.dns,
                        &self.settings,
                    )
                    .await?
                }
            };
            match establish(
                conn,
                candidate.tls,
                &route.domain,
                &route.tls,
                open.clone(),
                &self.settings,
            )
            .await
            {
                Ok(done) => return Ok(done),
                Err(DialError::Failed(f)) => return Err(f),
                Err(DialError::Redirect { host, port }) => {
                    tracing::info!(%host, ?port, "upstream redirects (see-other-host)");
                    candidate.port = port.unwrap_or(candidate.port);
                    candidate.host = host;
                }
            }
        }
        Err(UpstreamFailure::Negotiation(
            "too many see-other-host redirects",
        ))
    }

    /// A pre-dialed connection that is still alive, if any.
    fn take_warm(&self, upstream: &Upstream) -> Option<UpstreamConn> {
        let now = clock::now();
        let mut pool = upstream.warm.lock();
        let mut taken = None;
        while let Some(mut warm) = pool.pop() {
            if now.saturating_duration_since(warm.since) < self.health.warm_max_idle
                && warm.conn.is_idle_alive()
            {
                taken = Some(warm.conn);
                break;
            }
        }
        drop(pool);
        upstream.warm_taken.notify_one();
        taken
    }

    /// Starts the background work: active health checks and warm pools.
    /// Tasks stop when the pools are dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        for route in self.hosts.values() {
            let Source::Static(list) = &route.source else {
                continue;
            };
            for upstream in list {
                if let Some(interval) = self.health.check_interval {
                    tokio::spawn(probe_loop(
                        Arc::downgrade(self),
                        route.domain.clone(),
                        Arc::clone(upstream),
                        interval,
                    ));
                }
                if route.warm > 0 && upstream.proxy.is_none() {
                    tokio::spawn(warm_loop(
                        Arc::downgrade(self),
                        route.domain.clone(),
                        Arc::clone(upstream),
                        route.warm,
                    ));
                }
            }
        }
    }
}

/// Active health check: TCP connect and a stream header exchange (UP-7).
async fn probe_loop(
    pools: Weak<Upstreams>,
    domain: String,
    upstream: Arc<Upstream>,
    interval: Duration,
) {
    // A random first delay, so replicas do not probe in step.
    let first = interval.mul_f64(rand::rng().random_range(0.0..1.0));
    tokio::time::sleep(first).await;
    loop {
        let Some(pools) = pools.upgrade().filter(|p| !p.is_retired()) else {
            return;
        };
        let ok = probe_once(&pools, &domain, &upstream).await;
        match ok {
            Ok(()) => upstream.record_success(&pools.health),
            Err(e) => {
                tracing::warn!(upstream = %upstream.candidate.address(), "health check failed: {e}");
                upstream.record_failure(clock::now(), &pools.health);
            }
        }
        drop(pools);
        tokio::time::sleep(interval).await;
    }
}

async fn probe_once(
    pools: &Upstreams,
    domain: &str,
    upstream: &Upstream,
) -> Result<(), UpstreamFailure> {
    let route = pools
        .hosts
        .get(domain)
        .ok_or(UpstreamFailure::HostUnknown)?;
    let stream = connect_tcp(&upstream.candidate, &pools.dns, &pools.settings).await?;
    // A PROXY-protocol listener needs a header; the probe is our own
    // connection, so it names its own endpoints (LOCAL in v2).
    let own = ClientInfo {
        source: stream.local_addr().ok(),
        destination: stream.peer_addr().ok(),
        ..ClientInfo::default()
    };
    let header = upstream.proxy.map(|v| match v {
        ProxyVersion::V1 => proxy_protocol::v1(&own),
        ProxyVersion::V2 => proxy_protocol::v2_local(&own),
    });
    let conn = secure_transport(
        stream,
        upstream.candidate.tls,
        domain,
        &route.tls,
        header.as_deref(),
        &pools.settings,
    )
    .await?;
    let open = OpenStream {
        to: domain.into(),
        from: None,
        lang: None,
        version: "1.0".into(),
        restart: false,
    };
    match establish(
        conn,
        upstream.candidate.tls,
        domain,
        &route.tls,
        open,
        &pools.settings,
    )
    .await
    {
        Ok((mut conn, events)) => {
            if events.iter().any(|e| matches!(e, UpstreamEvent::Element(s) if s.kind() == crate::stanza::ElementKind::StreamError)) {
                return Err(UpstreamFailure::Negotiation("the server answered the probe with a stream error"));
            }
            let _ = conn.apply(crate::upstream::UpstreamAction::Close);
            conn.close_gracefully(Duration::from_secs(2)).await;
            Ok(())
        }
        Err(DialError::Redirect { .. }) => Ok(()),
        Err(DialError::Failed(f)) => Err(f),
    }
}

/// Keeps `size` pre-dialed connections ready, replacing stale ones.
async fn warm_loop(pools: Weak<Upstreams>, domain: String, upstream: Arc<Upstream>, size: usize) {
    loop {
        let Some(pools) = pools.upgrade().filter(|p| !p.is_retired()) else {
            return;
        };
        let now = clock::now();
        let max_idle = pools.health.warm_max_idle;
        upstream.warm.lock().retain_mut(|w| {
            now.saturating_duration_since(w.since) < max_idle && w.conn.is_idle_alive()
        });
        let missing = size.saturating_sub(upstream.warm.lock().len());
        if missing > 0
            && upstream.eligible(now)
            && let Some(route) = pools.hosts.get(&domain)
        {
            for _ in 0..missing {
                let dialed = async {
                    let stream =
                        connect_tcp(&upstream.candidate, &pools.dns, &pools.settings).await?;
                    secure_transport(
                        stream,
                        upstream.candidate.tls,
                        &domain,
                        &route.tls,
                        None,
                        &pools.settings,
                    )
                    .await
                }
                .await;
                match dialed {
                    Ok(conn) => upstream.warm.lock().push(WarmConn {
                        conn,
                        since: clock::now(),
                    }),
                    Err(e) => {
                        tracing::debug!(upstream = %upstream.candidate.address(), "pre-dial failed: {e}");
                        break;
                    }
                }
            }
        }
        drop(pools);
        // Refill as soon as one is taken; otherwise look again for stale ones.
        let _ = tokio::time::timeout(Duration::from_secs(1), upstream.warm_taken.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            failure_threshold: 2,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(10),
            check_interval: None,
            warm_max_idle: Duration::from_secs(20),
        }
    }

    fn upstream(weight: u16) -> Upstream {
        let candidate = Candidate {
            host: "127.0.0.1".into(),
            port: 5222,
            tls: TlsMode::None,
            priority: 0,
            weight,
        };
        Upstream::new(candidate, None, &settings())
    }

    #[test]
    fn taken_out_after_the_threshold_with_growing_backoff() {
        let s = settings();
        let u = upstream(1);
        let t0 = clock::now();
        u.record_failure(t0, &s);
        assert!(u.eligible(t0), "one failure is below the threshold");
        u.record_failure(t0, &s);
        assert!(!u.eligible(t0));
        // Jittered 2 s: back within 1.6..2.4 s.
        assert!(!u.eligible(t0 + Duration::from_millis(1500)));
        assert!(u.eligible(t0 + Duration::from_millis(2500)));
        // The trial fails: the next back-off is about 4 s.
        let t1 = t0 + Duration::from_millis(2500);
        u.record_failure(t1, &s);
        assert!(!u.eligible(t1 + Duration::from_millis(3000)));
        assert!(u.eligible(t1 + Duration::from_millis(5000)));
    }

    #[test]
    fn backoff_is_capped_and_reset_by_a_success() {
        let s = settings();
        let u = upstream(1);
        let mut t = clock::now();
        for _ in 0..10 {
            u.record_failure(t, &s);
            t += Duration::from_secs(60);
        }
        assert!(u.health.lock().backoff <= s.backoff_max);
        u.record_success(&s);
        assert!(u.eligible(t));
        assert_eq!(u.health.lock().backoff, s.backoff_initial);
        assert_eq!(u.health.lock().consecutive_failures, 0);
    }

    #[test]
    fn load_is_sessions_per_weight() {
        let s = settings();
        let light = Arc::new(upstream(1));
        let heavy = Arc::new(upstream(3));
        let _a = Lease::new(Arc::clone(&light), s);
        let _b = Lease::new(Arc::clone(&heavy), s);
        let _c = Lease::new(Arc::clone(&heavy), s);
        assert!(heavy.load() < light.load());
        drop(_a);
        assert_eq!(
            light.sessions.load(Ordering::Relaxed),
            0,
            "a lease frees its count"
        );
    }
}
