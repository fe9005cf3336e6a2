//! Every Prometheus metric of xmpp-edge, in one registry owned by the
//! application state (never the global one, so tests do not share counters).
//!
//! Events are counted where they happen (counters, histograms). Levels —
//! live sessions, parked requests, queued bytes, upstream health — are not
//! tracked on every change: they are read from the session table and the
//! pools when Prometheus scrapes ([`Metrics::render`]). Labels are closed
//! sets (transport, state, reason, condition, configured domains and
//! upstream addresses); never a sid or a JID.

use std::collections::HashMap;

use parking_lot::Mutex;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::sessions::{SessionInfo, SessionState, Transport};
use crate::upstream::pool::UpstreamStatus;

/// Latency buckets, seconds: loopback sub-millisecond up to a slow TLS
/// handshake across the world.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A limit of `[limits]` or of a transport section, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_sessions`.
    Sessions,
    /// `limits.max_sessions_per_ip`.
    SessionsPerIp,
    /// `limits.new_sessions_per_ip_per_sec`.
    NewSessionsPerIp,
    /// `limits.max_connections`.
    Connections,
    /// `bosh.max_body_bytes`.
    BoshBodyBytes,
    /// `websocket.max_message_bytes`.
    WebSocketMessageBytes,
    /// `upstream.max_depth` / `limits.max_attributes` on client XML.
    ClientXml,
    /// `upstream.max_stanza_bytes` / `upstream.max_depth` on server XML.
    UpstreamXml,
    /// BOSH `requests`/`polling` rules (XEP-0124 §11).
    BoshOveractivity,
    /// `websocket.max_backlog_bytes`.
    ClientBacklog,
    /// `upstream.max_write_queue_bytes`: the client was held back.
    UpstreamWriteQueue,
    /// `limits.header_read_timeout_secs`.
    HeaderReadTimeout,
    /// `limits.tls_handshake_timeout_secs`.
    TlsHandshakeTimeout,
}

impl Limit {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::SessionsPerIp => "sessions_per_ip",
            Self::NewSessionsPerIp => "new_sessions_per_ip",
            Self::Connections => "connections",
            Self::BoshBodyBytes => "bosh_body_bytes",
            Self::WebSocketMessageBytes => "websocket_message_bytes",
            Self::ClientXml => "client_xml",
            Self::UpstreamXml => "upstream_xml",
            Self::BoshOveractivity => "bosh_overactivity",
            Self::ClientBacklog => "client_backlog",
            Self::UpstreamWriteQueue => "upstream_write_queue",
            Self::HeaderReadTimeout => "header_read_timeout",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
        }
    }
}

/// Why a session ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// `client_close`, `client_gone`, `inactivity`, `upstream_closed`,
    /// `upstream_error`, `shutdown`, `redirected`, `kicked`, `error`.
    pub reason: &'static str,
    /// The stream error or BOSH condition sent, or `""`.
    pub condition: &'static str,
}

/// Everything a scrape reads that is not a counter.
#[derive(Debug, Default)]
pub struct Levels {
    /// Live sessions.
    pub sessions: Vec<std::sync::Arc<SessionInfo>>,
    /// The upstreams of the configuration in force.
    pub upstreams: Vec<UpstreamStatus>,
    /// Whether xmpp-edge is draining.
    pub draining: bool,
}

/// The metric set.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scrape: Mutex<()>,
    /// Sessions started, by transport.
    pub sessions_opened: IntCounterVec,
    /// Sessions ended, by transport, reason and condition.
    pub sessions_closed: IntCounterVec,
    /// BOSH HTTP requests, by outcome.
    pub bosh_requests: IntCounterVec,
    /// BOSH responses sent again for a repeated rid.
    pub bosh_retransmissions: IntCounter,
    /// BOSH requests refused for their rid (outside the window, or a gap).
    pub bosh_rid_errors: IntCounter,
    /// Elements relayed, by transport and direction.
    pub stanzas: IntCounterVec,
    /// Bytes relayed, by transport and direction.
    pub bytes: IntCounterVec,
    /// WebSocket messages, by direction.
    pub websocket_messages: IntCounterVec,
    /// Sessions closed because their client did not read fast enough.
    pub slow_client_closes: IntCounterVec,
    /// Time to open an upstream stream (TCP, TLS, negotiation), by domain and result.
    pub upstream_connect_seconds: HistogramVec,
    /// Time from a session's start to the server's features reaching it, by transport.
    pub session_setup_seconds: HistogramVec,
    /// Configuration reloads, by result.
    pub reloads: IntCounterVec,
    /// Limits hit, by limit.
    pub limit_hits: IntCounterVec,
    /// BOSH requests for sessions of other replicas (cluster mode), by outcome.
    pub cluster_forwarded: IntCounterVec,
    /// Known peers (cluster mode), by state: set by discovery.
    pub cluster_peers: IntGaugeVec,
    /// Streams opened to each upstream server, by domain and server: the
    /// pools count into it (`Upstreams::with_server_counters`).
    pub upstream_connects: IntCounterVec,
    /// Failures of each upstream server, by domain and server.
    pub upstream_failures: IntCounterVec,
    sessions_live: IntGaugeVec,
    bosh_held_requests: IntGauge,
    queued_bytes: IntGaugeVec,
    upstream_up: IntGaugeVec,
    upstream_sessions: IntGaugeVec,
    upstream_warm: IntGaugeVec,
    draining: IntGauge,
    /// Children of the per-message counters, resolved once: every
    /// `with_label_values` call hashes its labels and takes a read lock.
    relay: RelayCounters,
}

/// Per-message counters by transport, then direction (to client, to upstream).
#[derive(Debug)]
struct RelayCounters {
    stanzas: [[IntCounter; 2]; 2],
    bytes: [[IntCounter; 2]; 2],
    websocket_from_client: IntCounter,
    websocket_to_client: IntCounter,
    bosh_data: IntCounter,
    bosh_empty: IntCounter,
}

impl RelayCounters {
    fn resolve(
        stanzas: &IntCounterVec,
        bytes: &IntCounterVec,
        ws: &IntCounterVec,
        bosh: &IntCounterVec,
    ) -> Self {
        let by_transport = |vec: &IntCounterVec| {
            [Transport::Bosh, Transport::WebSocket].map(|t| {
                ["to_client", "to_upstream"].map(|d| vec.with_label_values(&[t.as_str(), d]))
            })
        };
        Self {
            stanzas: by_transport(stanzas),
            bytes: by_transport(bytes),
            websocket_from_client: ws.with_label_values(&["from_client"]),
            websocket_to_client: ws.with_label_values(&["to_client"]),
            bosh_data: bosh.with_label_values(&["data"]),
            bosh_empty: bosh.with_label_values(&["empty"]),
        }
    }
}

/// A metric could not be registered (a name clash: a programming error).
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let metric = IntCounter::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let metric = IntGauge::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    /// The metric set in a registry of its own, with process metrics.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build = gauge_vec(
            &r,
            "xmpp_edge_build_info",
            "Always 1; the version is in the label.",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let bosh_requests = counter_vec(
            &r,
            "xmpp_edge_bosh_requests_total",
            "BOSH HTTP requests by outcome: data, empty, terminate, or an HTTP error status.",
            &["outcome"],
        )?;
        let stanzas = counter_vec(
            &r,
            "xmpp_edge_stanzas_total",
            "XML elements relayed (stanzas and stream-level elements).",
            &["transport", "direction"],
        )?;
        let bytes = counter_vec(
            &r,
            "xmpp_edge_stanza_bytes_total",
            "Bytes of the elements relayed.",
            &["transport", "direction"],
        )?;
        let websocket_messages = counter_vec(
            &r,
            "xmpp_edge_websocket_messages_total",
            "WebSocket data messages.",
            &["direction"],
        )?;
        let metrics = Self {
            scrape: Mutex::new(()),
            sessions_opened: counter_vec(
                &r,
                "xmpp_edge_sessions_opened_total",
                "Client sessions started.",
                &["transport"],
            )?,
            sessions_closed: counter_vec(
                &r,
                "xmpp_edge_sessions_closed_total",
                "Client sessions ended, by why: reason is client_close, client_gone, inactivity, \
                 upstream_closed, upstream_error, shutdown, redirected, kicked or error; condition is \
                 the BOSH condition or stream error sent, if any.",
                &["transport", "reason", "condition"],
            )?,
            bosh_retransmissions: counter(
                &r,
                "xmpp_edge_bosh_retransmissions_total",
                "BOSH responses sent again because the client repeated a rid.",
            )?,
            bosh_rid_errors: counter(
                &r,
                "xmpp_edge_bosh_rid_errors_total",
                "BOSH requests refused because of their rid.",
            )?,
            slow_client_closes: counter_vec(
                &r,
                "xmpp_edge_slow_client_closes_total",
                "Sessions ended because the client did not read what was queued for it.",
                &["transport"],
            )?,
            upstream_connect_seconds: histogram_vec(
                &r,
                "xmpp_edge_upstream_connect_seconds",
                "Time to open a stream to one upstream server: TCP, TLS and negotiation up to \
                 its features.",
                &["domain", "result"],
            )?,
            session_setup_seconds: histogram_vec(
                &r,
                "xmpp_edge_session_setup_seconds",
                "Time from a client's session request (BOSH creation, WebSocket <open/>) to the \
                 server's features being ready for it, including upstream fail-over.",
                &["transport"],
            )?,
            reloads: counter_vec(
                &r,
                "xmpp_edge_config_reloads_total",
                "Configuration reloads, by result (ok or rejected).",
                &["result"],
            )?,
            limit_hits: counter_vec(
                &r,
                "xmpp_edge_limit_hits_total",
                "Requests, messages, sessions or connections refused or cut off by a limit.",
                &["limit"],
            )?,
            cluster_forwarded: counter_vec(
                &r,
                "xmpp_edge_cluster_forwarded_total",
                "BOSH requests sent to the replica owning the session (cluster mode), by outcome: \
                 ok, unknown_node (no live replica has the sid's tag: item-not-found), \
                 unreachable, failed (item-not-found), no_peer (draining, nobody to take a new \
                 session).",
                &["outcome"],
            )?,
            cluster_peers: gauge_vec(
                &r,
                "xmpp_edge_cluster_peers",
                "Other replicas known (cluster mode), by state: ready or draining.",
                &["state"],
            )?,
            sessions_live: gauge_vec(
                &r,
                "xmpp_edge_sessions",
                "Live sessions.",
                &["transport", "state", "upstream"],
            )?,
            bosh_held_requests: gauge(
                &r,
                "xmpp_edge_bosh_held_requests",
                "BOSH requests parked as long-polls.",
            )?,
            queued_bytes: gauge_vec(
                &r,
                "xmpp_edge_queued_bytes",
                "Bytes waiting in xmpp-edge: for clients (to_client) or for servers (to_upstream).",
                &["transport", "direction"],
            )?,
            upstream_up: gauge_vec(
                &r,
                "xmpp_edge_upstream_up",
                "1 when the upstream server is in rotation.",
                &["domain", "upstream"],
            )?,
            upstream_sessions: gauge_vec(
                &r,
                "xmpp_edge_upstream_sessions",
                "Live sessions on the upstream server.",
                &["domain", "upstream"],
            )?,
            upstream_warm: gauge_vec(
                &r,
                "xmpp_edge_upstream_warm_connections",
                "Pre-dialed connections ready.",
                &["domain", "upstream"],
            )?,
            upstream_connects: counter_vec(
                &r,
                "xmpp_edge_upstream_connects_total",
                "Streams opened to the upstream server (health-check probes included).",
                &["domain", "upstream"],
            )?,
            upstream_failures: counter_vec(
                &r,
                "xmpp_edge_upstream_failures_total",
                "Failures of the upstream server: failed connects and probes, streams lost mid-session.",
                &["domain", "upstream"],
            )?,
            draining: gauge(
                &r,
                "xmpp_edge_draining",
                "1 while shutting down: not ready, no new sessions.",
            )?,
            relay: RelayCounters::resolve(&stanzas, &bytes, &websocket_messages, &bosh_requests),
            stanzas,
            bytes,
            websocket_messages,
            bosh_requests,
            registry: r,
        };
        Ok(metrics)
    }

    /// Counts a limit being hit.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hit_by(limit, 1);
    }

    fn limit_hit_by(&self, limit: Limit, n: u64) {
        self.limit_hits
            .with_label_values(&[limit.as_str()])
            .inc_by(n);
    }

    /// Counts a new session.
    pub fn session_opened(&self, transport: Transport) {
        self.sessions_opened
            .with_label_values(&[transport.as_str()])
            .inc();
    }

    /// Counts an ended session.
    pub fn session_closed(&self, transport: Transport, why: CloseReason) {
        self.sessions_closed
            .with_label_values(&[transport.as_str(), why.reason, why.condition])
            .inc();
    }

    /// Counts a BOSH request by outcome (`xmpp_edge_bosh_requests_total`).
    pub fn bosh_request(&self, outcome: &str) {
        match outcome {
            "data" => self.relay.bosh_data.inc(),
            "empty" => self.relay.bosh_empty.inc(),
            other => self.bosh_requests.with_label_values(&[other]).inc(),
        }
    }

    /// Adds relayed traffic.
    pub fn relayed(&self, transport: Transport, delta: &Traffic) {
        let t = match transport {
            Transport::Bosh => 0,
            Transport::WebSocket => 1,
        };
        let add = |counters: &[[IntCounter; 2]; 2], direction: usize, n: u64| {
            if n > 0 {
                counters[t][direction].inc_by(n);
            }
        };
        add(&self.relay.stanzas, 0, delta.stanzas_to_client);
        add(&self.relay.stanzas, 1, delta.stanzas_to_upstream);
        add(&self.relay.bytes, 0, delta.bytes_to_client);
        add(&self.relay.bytes, 1, delta.bytes_to_upstream);
        if delta.messages_from_client > 0 {
            self.relay
                .websocket_from_client
                .inc_by(delta.messages_from_client);
        }
        if delta.messages_to_client > 0 {
            self.relay
                .websocket_to_client
                .inc_by(delta.messages_to_client);
        }
        if delta.retransmissions > 0 {
            self.bosh_retransmissions.inc_by(delta.retransmissions);
        }
        if delta.rid_errors > 0 {
            self.bosh_rid_errors.inc_by(delta.rid_errors);
        }
        if delta.client_xml_limit_hits > 0 {
            self.limit_hit_by(Limit::ClientXml, delta.client_xml_limit_hits);
        }
        if delta.overactivity > 0 {
            self.limit_hit_by(Limit::BoshOveractivity, delta.overactivity);
        }
    }

    /// The text exposition, with levels read from `levels`.
    pub fn render(&self, levels: &Levels) -> String {
        // One scrape at a time: levels are reset and refilled.
        let _scrape = self.scrape.lock();
        self.set_levels(levels);
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn set_levels(&self, levels: &Levels) {
        self.sessions_live.reset();
        self.queued_bytes.reset();
        let mut live: HashMap<(Transport, SessionState, &str), i64> = HashMap::new();
        let mut queued: HashMap<(Transport, &str), i64> = HashMap::new();
        let mut held = 0i64;
        for s in &levels.sessions {
            *live
                .entry((s.transport, s.state(), s.upstream().unwrap_or("")))
                .or_default() += 1;
            let load = |a: &std::sync::atomic::AtomicU64| {
                i64::try_from(a.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX)
            };
            *queued.entry((s.transport, "to_client")).or_default() += load(&s.queued_to_client);
            *queued.entry((s.transport, "to_upstream")).or_default() += load(&s.queued_to_upstream);
            held += load(&s.held_requests);
        }
        for transport in [Transport::Bosh, Transport::WebSocket] {
            // Always present, so dashboards see zeros rather than gaps.
            for direction in ["to_client", "to_upstream"] {
                self.queued_bytes
                    .with_label_values(&[transport.as_str(), direction])
                    .set(queued.get(&(transport, direction)).copied().unwrap_or(0));
            }
        }
        for ((transport, state, upstream), n) in live {
            self.sessions_live
                .with_label_values(&[transport.as_str(), state.as_str(), upstream])
                .set(n);
        }
        self.bosh_held_requests.set(held);
        for vec in [
            &self.upstream_up,
            &self.upstream_sessions,
            &self.upstream_warm,
        ] {
            vec.reset();
        }
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for u in &levels.upstreams {
            let labels = [u.domain.as_str(), u.address.as_str()];
            self.upstream_up
                .with_label_values(&labels)
                .set(i64::from(u.healthy));
            self.upstream_sessions
                .with_label_values(&labels)
                .set(clamp(u.sessions as u64));
            self.upstream_warm
                .with_label_values(&labels)
                .set(clamp(u.warm as u64));
        }
        self.draining.set(i64::from(levels.draining));
    }
}

/// Traffic counted by a session's cores, as totals or as a difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Elements to the client.
    pub stanzas_to_client: u64,
    /// Their bytes.
    pub bytes_to_client: u64,
    /// Elements to the server.
    pub stanzas_to_upstream: u64,
    /// Their bytes.
    pub bytes_to_upstream: u64,
    /// WebSocket messages read.
    pub messages_from_client: u64,
    /// WebSocket messages sent.
    pub messages_to_client: u64,
    /// BOSH responses repeated.
    pub retransmissions: u64,
    /// BOSH requests refused for their rid.
    pub rid_errors: u64,
    /// Client elements refused for depth or attribute count.
    pub client_xml_limit_hits: u64,
    /// BOSH sessions ended for too many or too frequent requests.
    pub overactivity: u64,
}

impl Traffic {
    /// What grew since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            stanzas_to_client: self
                .stanzas_to_client
                .saturating_sub(earlier.stanzas_to_client),
            bytes_to_client: self.bytes_to_client.saturating_sub(earlier.bytes_to_client),
            stanzas_to_upstream: self
                .stanzas_to_upstream
                .saturating_sub(earlier.stanzas_to_upstream),
            bytes_to_upstream: self
                .bytes_to_upstream
                .saturating_sub(earlier.bytes_to_upstream),
            messages_from_client: self
                .messages_from_client
                .saturating_sub(earlier.messages_from_client),
            messages_to_client: self
                .messages_to_client
                .saturating_sub(earlier.messages_to_client),
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
            rid_errors: self.rid_errors.saturating_sub(earlier.rid_errors),
            client_xml_limit_hits: self
                .client_xml_limit_hits
                .saturating_sub(earlier.client_xml_limit_hits),
            overactivity: self.overactivity.saturating_sub(earlier.overactivity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{SessionInfo, Sid};
    use std::sync::Arc;

    fn value(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn levels_are_counted_by_label_and_reset_between_scrapes() {
        let m = Metrics::new().unwrap();
        let a = Arc::new(SessionInfo::new(Sid::random(), Transport::Bosh, None));
        a.set_upstream("127.0.0.1:5222");
        a.set_state(SessionState::Open);
        a.queued_to_client
            .store(100, std::sync::atomic::Ordering::Relaxed);
        let b = Arc::new(SessionInfo::new(Sid::random(), Transport::Bosh, None));
        b.set_upstream("127.0.0.1:5222");
        b.set_state(SessionState::Open);
        b.held_requests
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let levels = Levels {
            sessions: vec![a, b],
            upstreams: vec![],
            draining: true,
        };
        let text = m.render(&levels);
        assert_eq!(
            value(
                &text,
                "xmpp_edge_sessions{state=\"open\",transport=\"bosh\",upstream=\"127.0.0.1:5222\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(value(&text, "xmpp_edge_bosh_held_requests "), Some(1.0));
        assert_eq!(
            value(
                &text,
                "xmpp_edge_queued_bytes{direction=\"to_client\",transport=\"bosh\"}"
            ),
            Some(100.0)
        );
        assert_eq!(value(&text, "xmpp_edge_draining "), Some(1.0));
        let text = m.render(&Levels::default());
        assert_eq!(
            value(
                &text,
                "xmpp_edge_sessions{state=\"open\",transport=\"bosh\",upstream=\"127.0.0.1:5222\"}"
            ),
            None,
            "a gone session leaves no stale series"
        );
        assert_eq!(value(&text, "xmpp_edge_draining "), Some(0.0));
    }

    #[test]
    fn counters_add_differences_only() {
        let m = Metrics::new().unwrap();
        let first = Traffic {
            stanzas_to_client: 3,
            bytes_to_client: 300,
            ..Traffic::default()
        };
        m.relayed(Transport::WebSocket, &first.since(&Traffic::default()));
        let second = Traffic {
            stanzas_to_client: 5,
            bytes_to_client: 450,
            ..Traffic::default()
        };
        m.relayed(Transport::WebSocket, &second.since(&first));
        let text = m.render(&Levels::default());
        assert_eq!(
            value(
                &text,
                "xmpp_edge_stanzas_total{direction=\"to_client\",transport=\"websocket\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            value(
                &text,
                "xmpp_edge_stanza_bytes_total{direction=\"to_client\",transport=\"websocket\"}"
            ),
            Some(450.0)
        );
    }
}
