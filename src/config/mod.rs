//! Typed configuration with defaults and cross-field validation.
//!
//! Every section has `Default`, so an empty file (or none at all) runs
//! xmpp-edge on `0.0.0.0:5280` serving `localhost` from `127.0.0.1:5222`.
//! Each limit's doc says what it costs in memory or what clients see.

mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bosh::BoshLimits;
pub use crate::upstream::proxy_protocol::ProxyVersion;
pub use crate::upstream::route::TlsMode;
use crate::xml::reserialize::ClientXmlLimits;
use crate::xml::splitter::SplitterLimits;

pub use load::{ConfigError, load_file, load_str, parse_host_port, parse_network};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listener.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// BOSH endpoint and session limits.
    pub bosh: BoshConfig,
    /// XMPP over WebSocket endpoint.
    pub websocket: WebSocketConfig,
    /// The XMPP stream to the upstream servers.
    pub upstream: UpstreamConfig,
    /// DNS for upstream names and SRV discovery.
    pub dns: DnsConfig,
    /// The Prometheus and health listener.
    pub metrics: MetricsConfig,
    /// The admin API and status page listener.
    pub admin: AdminConfig,
    /// What one client, and everyone together, may use.
    pub limits: LimitsConfig,
    /// The HTTPS listener.
    pub tls: TlsConfig,
    /// Several replicas serving any session: forwarding BOSH requests to
    /// the replica that owns the session.
    pub cluster: ClusterConfig,
    /// Served XMPP domains and their upstream servers.
    pub hosts: BTreeMap<String, HostConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "localhost".to_owned(),
            HostConfig {
                upstreams: vec![UpstreamEntry::address("127.0.0.1:5222")],
                ..HostConfig::default()
            },
        );
        Self {
            server: ServerConfig::default(),
            log: LogConfig::default(),
            bosh: BoshConfig::default(),
            websocket: WebSocketConfig::default(),
            upstream: UpstreamConfig::default(),
            dns: DnsConfig::default(),
            metrics: MetricsConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            cluster: ClusterConfig::default(),
            hosts,
        }
    }
}

/// `[server]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the plain HTTP listener (BOSH, WebSocket, discovery).
    pub listen: SocketAddr,
    /// Reverse proxies (addresses or CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the real client; from anyone else
    /// those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// On SIGTERM: time between readiness going false (no new sessions) and
    /// live sessions being ended, so load balancers stop sending new ones.
    pub shutdown_delay_secs: u16,
    /// Then: time for sessions to end (`system-shutdown`) and flush before
    /// the process exits.
    pub shutdown_grace_secs: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5280)),
            trusted_proxies: Vec::new(),
            shutdown_delay_secs: 0,
            shutdown_grace_secs: 10,
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Where; only those three paths are served there, nothing secret.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 9280)),
        }
    }
}

/// `[tls]`: the HTTPS listener (BOSH and host-meta over HTTP/1.1 or HTTP/2,
/// WebSocket over HTTP/1.1 or HTTP/2 extended CONNECT). On when at least one
/// certificate is configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Certificates, chosen by the name the client asks for (SNI) among the
    /// DNS names of each; the first one serves clients that ask for none
    /// or for a name no certificate has.
    pub certificates: Vec<CertificateConfig>,
    /// Answer plain HTTP with a redirect to HTTPS (BOSH: `see-other-uri`).
    pub redirect_http: bool,
    /// How often certificate files are checked for changes, seconds (they
    /// are also re-read on reload).
    pub reload_check_secs: u16,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            certificates: Vec::new(),
            redirect_http: false,
            reload_check_secs: 10,
        }
    }
}

/// One certificate of `[tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// `[limits]`: resources a stranger can make xmpp-edge spend. The per-message
/// limits live with their transport (`bosh.max_body_bytes`,
/// `websocket.max_message_bytes`, `upstream.max_stanza_bytes`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Live sessions (BOSH and WebSocket together); new ones beyond get 503.
    pub max_sessions: u32,
    /// Live sessions per client address (IPv6: per /64); beyond: 429.
    pub max_sessions_per_ip: u32,
    /// New sessions per second per client address (IPv6: per /64), with a
    /// burst of twice as many; beyond: 429.
    pub new_sessions_per_ip_per_sec: u32,
    /// Open client connections on all listeners; `0` derives it from the
    /// open-file limit (half of it, as each session also holds an upstream
    /// socket). Connections beyond are closed at once.
    pub max_connections: u32,
    /// Attributes accepted on one element from a client.
    pub max_attributes: u16,
    /// Time for a client to send request headers; also how long an idle
    /// keep-alive connection stays open (slowloris).
    pub header_read_timeout_secs: u16,
    /// Time for a client to complete the TLS handshake.
    pub tls_handshake_timeout_secs: u16,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
            max_sessions_per_ip: 100,
            new_sessions_per_ip_per_sec: 20,
            max_connections: 0,
            max_attributes: 64,
            header_read_timeout_secs: 30,
            tls_handshake_timeout_secs: 10,
        }
    }
}

/// `[cluster]`: replicas that forward each BOSH request to the replica
/// owning its session, so no load balancer needs sticky sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Turn cluster mode on. Off: one replica, nothing below is used.
    pub enabled: bool,
    /// The internal listener (HTTP/2 without TLS, prior knowledge), for
    /// peers only: every request needs the shared secret.
    pub listen: SocketAddr,
    /// The shared secret, inline (at least 16 bytes); or `secret_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// File holding the shared secret (e.g. a Kubernetes Secret), read at
    /// start-up; surrounding white space is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// Static peers: `host:port` of their internal listeners. May include
    /// this replica, which recognises itself and skips it.
    pub peers: Vec<String>,
    /// `name:port` whose A/AAAA records are the peers (a Kubernetes
    /// headless Service), resolved with `[dns]`; empty: none.
    pub peer_dns: String,
    /// How often peers are discovered again and asked for their state.
    pub refresh_secs: u16,
    /// Bound on connecting to a peer and on asking for its state; a
    /// forwarded long-poll itself may last up to `bosh.max_wait_secs`.
    pub forward_timeout_secs: u16,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 5290)),
            secret: None,
            secret_file: None,
            peers: Vec::new(),
            peer_dns: String::new(),
            refresh_secs: 10,
            forward_timeout_secs: 5,
        }
    }
}

/// `[admin]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API and the status page.
    pub enabled: bool,
    /// Where. Anything but loopback requires a token.
    pub listen: SocketAddr,
    /// Bearer token required on every API call (`Authorization: Bearer ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the token (e.g. a Kubernetes secret), read at start-up
    /// and on reload; instead of `token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9281)),
            token: None,
            token_file: None,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Default filter when `RUST_LOG` is unset, e.g. `info` or `xmpp_edge=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[bosh]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoshConfig {
    /// URL paths the BOSH endpoint answers on; a query string is ignored.
    pub paths: Vec<String>,
    /// Longest `wait` granted, seconds. 50 keeps a long-poll (and a client's
    /// own timeout of about 1.1 × wait) inside the 60 s idle timeout of
    /// common load balancers and reverse proxies.
    pub max_wait_secs: u16,
    /// Largest `hold` granted; each held request keeps one HTTP connection open.
    pub max_hold: u8,
    /// Seconds without a request before a session is dropped (BOSH-66).
    pub inactivity_secs: u16,
    /// Longest pause a client may ask for, seconds; 0 disables pausing.
    pub maxpause_secs: u16,
    /// Shortest interval between empty polls, seconds (BOSH-71, BOSH-72).
    pub polling_secs: u16,
    /// End sessions that poll too often or send too many requests (BOSH-70..74).
    pub enforce_overactivity: bool,
    /// Largest request entity read, bytes (BOSH-12).
    pub max_body_bytes: usize,
    /// Client-bound bytes queued per session before reading from the
    /// upstream pauses; the memory a slow client can make one session hold.
    pub max_queued_bytes: usize,
    /// Origins allowed by CORS; `*` allows any (XMPP authenticates in-band).
    pub cors_origins: Vec<String>,
    /// `host:port` targets a client may name in `route`; empty ignores `route` (BOSH-23).
    pub route_allowlist: Vec<String>,
}

impl Default for BoshConfig {
    fn default() -> Self {
        Self {
            paths: vec!["/http-bind".to_owned()],
            max_wait_secs: 50,
            max_hold: 1,
            inactivity_secs: 60,
            maxpause_secs: 120,
            polling_secs: 2,
            enforce_overactivity: true,
            max_body_bytes: 256 * 1024,
            max_queued_bytes: 512 * 1024,
            cors_origins: vec!["*".to_owned()],
            route_allowlist: Vec::new(),
        }
    }
}

/// `[websocket]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// URL paths of the WebSocket endpoint.
    pub paths: Vec<String>,
    /// Refuse handshakes that do not offer the `xmpp` subprotocol (RFC 7395 §3.1).
    pub require_subprotocol: bool,
    /// `Origin` values allowed to connect; `*` allows any. Handshakes without
    /// an `Origin` header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Largest message (and frame) accepted from a client, bytes.
    pub max_message_bytes: usize,
    /// Read buffer per connection, bytes (kept for the connection's life).
    pub read_buffer_bytes: usize,
    /// Bytes queued for a client that does not read before the session is
    /// closed with `policy-violation`.
    pub max_backlog_bytes: usize,
    /// Time allowed for the first `<open/>`, seconds.
    pub open_timeout_secs: u16,
    /// Client silence after which a WebSocket Ping is sent, seconds.
    pub ping_interval_secs: u16,
    /// Client silence (no frame, no Pong) after which the stream is closed, seconds.
    pub idle_timeout_secs: u16,
    /// Wait for the other side's `<close/>` or Close frame, seconds.
    pub close_timeout_secs: u16,
    /// Accept several elements in one message (old clients; RFC 7395 forbids it).
    pub allow_multiple_elements: bool,
    /// Redirect every client to this `wss://` (or `https://` BOSH) URI with
    /// `<close see-other-uri=…/>` instead of serving it.
    pub see_other_uri: Option<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            paths: vec!["/xmpp-websocket".to_owned()],
            require_subprotocol: true,
            allowed_origins: vec!["*".to_owned()],
            max_message_bytes: 256 * 1024,
            read_buffer_bytes: 512,
            max_backlog_bytes: 1024 * 1024,
            open_timeout_secs: 10,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            close_timeout_secs: 5,
            allow_multiple_elements: false,
            see_other_uri: None,
        }
    }
}

/// `[upstream]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Time allowed to connect to one upstream address, seconds.
    pub connect_timeout_secs: u16,
    /// Time allowed for TLS handshakes and stream negotiation, seconds.
    pub handshake_timeout_secs: u16,
    /// Time to wait for the server's closing tag after ours, seconds.
    pub close_timeout_secs: u16,
    /// A write to the server that makes no progress for this long means the
    /// connection is dead (UP-42), seconds.
    pub write_timeout_secs: u16,
    /// Client data waiting for a server that does not read it fast enough,
    /// bytes, beyond which xmpp-edge stops reading from that client.
    pub max_write_queue_bytes: usize,
    /// Largest element accepted from the server, bytes; one element of this
    /// size may be buffered per session while it arrives.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting accepted from either side.
    pub max_depth: u16,
    /// Consecutive failures (connect, TLS, negotiation, lost connection)
    /// after which an upstream is taken out of rotation.
    pub failure_threshold: u16,
    /// First back-off before a failed upstream is tried again, seconds; doubles per failure.
    pub backoff_initial_secs: u16,
    /// Longest back-off, seconds.
    pub backoff_max_secs: u16,
    /// Active health check interval (TCP connect and stream header probe), seconds; 0 turns it off.
    pub health_check_interval_secs: u16,
    /// Pre-dialed connections are replaced after this long, before a server
    /// would time them out, seconds.
    pub warm_max_idle_secs: u16,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 5,
            handshake_timeout_secs: 10,
            close_timeout_secs: 5,
            write_timeout_secs: 30,
            max_write_queue_bytes: 256 * 1024,
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            failure_threshold: 2,
            backoff_initial_secs: 2,
            backoff_max_secs: 60,
            health_check_interval_secs: 0,
            warm_max_idle_secs: 20,
        }
    }
}

/// `[dns]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers (`ip:port`) for upstream names and SRV records; empty
    /// uses the system's (`/etc/resolv.conf`). The hosts file is read first.
    pub nameservers: Vec<SocketAddr>,
}

/// `[hosts."domain"]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Static upstream servers: `"host:port"` or `{ address = "host:port",
    /// tls = "direct", weight = 2, proxy_protocol = "v2" }`.
    pub upstreams: Vec<UpstreamEntry>,
    /// Find the servers with DNS SRV (`_xmpp-client._tcp` and
    /// `_xmpps-client._tcp`, XEP-0368) instead of a static list, falling
    /// back to the domain's A/AAAA on port 5222.
    pub srv: bool,
    /// TLS to static upstreams and `_xmpp-client` SRV targets: `none`,
    /// `starttls` or `direct`. `_xmpps-client` targets always use direct TLS.
    pub tls: TlsMode,
    /// PEM bundle of CAs trusted for this domain's upstreams, besides the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// Do not check upstream certificates. Development only; logged loudly.
    pub tls_insecure_skip_verify: bool,
    /// Send a PROXY protocol header with the client's address: `v1` or `v2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyVersion>,
    /// Add TLVs (client TLS, authority, ALPN, transport) to v2 headers.
    pub proxy_protocol_tlvs: bool,
    /// Pre-dialed connections kept per static upstream (TCP, plus direct
    /// TLS), so creating a session does not wait for a handshake. Not with
    /// PROXY protocol, whose header must name the client.
    pub warm_connections: u16,
    /// Public base URL of xmpp-edge for this domain (e.g.
    /// `https://chat.example.com`), used in host-meta links; when xmpp-edge
    /// sits behind TLS offload it cannot know it otherwise. Without it, links
    /// are derived from the request (`http://` + `Host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
}

/// One static upstream server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDetails {
    /// `host:port`.
    pub address: String,
    /// Overrides the host's `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// Balancing weight (sessions are spread in proportion), default 1.
    #[serde(default = "one")]
    pub weight: u16,
    /// Overrides the host's `proxy_protocol`; `"off"` disables it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxySetting>,
}

fn one() -> u16 {
    1
}

/// A per-upstream PROXY protocol choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxySetting {
    /// No header to this upstream.
    Off,
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// A static upstream: `"host:port"` or a table with details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum UpstreamEntry {
    /// Just the address; the host's settings apply.
    Address(String),
    /// Address with settings of its own.
    Details(UpstreamDetails),
}

impl UpstreamEntry {
    /// An entry with only an address.
    pub fn address(address: &str) -> Self {
        Self::Address(address.to_owned())
    }

    /// The `host:port` of the entry.
    pub fn addr(&self) -> &str {
        match self {
            Self::Address(a) => a,
            Self::Details(d) => &d.address,
        }
    }
}

// A string or a table, with the table's own field errors (an untagged enum
// would only say that nothing matched).
impl<'de> Deserialize<'de> for UpstreamEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UpstreamEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"host:port\" or a table with `address`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(UpstreamEntry::Address(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                UpstreamDetails::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(UpstreamEntry::Details)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

// === impl Config ===

impl Config {
    /// Limits handed to each BOSH session core.
    pub fn bosh_limits(&self) -> Arc<BoshLimits> {
        let b = &self.bosh;
        Arc::new(BoshLimits {
            max_wait: b.max_wait_secs,
            max_hold: b.max_hold,
            inactivity: b.inactivity_secs,
            polling: b.polling_secs,
            maxpause: b.maxpause_secs,
            enforce_overactivity: b.enforce_overactivity,
            max_queued_bytes: b.max_queued_bytes,
            ..BoshLimits::default()
        })
    }

    /// Bounds on elements read from the upstream stream.
    pub fn splitter_limits(&self) -> SplitterLimits {
        SplitterLimits {
            max_element_bytes: self.upstream.max_stanza_bytes,
            max_depth: self.upstream.max_depth,
        }
    }

    /// Bounds on elements read from clients.
    pub fn client_xml_limits(&self) -> ClientXmlLimits {
        ClientXmlLimits {
            max_depth: self.upstream.max_depth,
            max_attributes: self.limits.max_attributes,
        }
    }

    /// Timers and limits handed to each WebSocket session core.
    pub fn ws_limits(&self) -> Arc<crate::websocket::WsLimits> {
        let w = &self.websocket;
        let secs = |s: u16| Duration::from_secs(u64::from(s));
        Arc::new(crate::websocket::WsLimits {
            open_timeout: secs(w.open_timeout_secs),
            ping_interval: secs(w.ping_interval_secs),
            idle_timeout: secs(w.idle_timeout_secs),
            close_timeout: secs(w.close_timeout_secs),
            max_backlog_bytes: w.max_backlog_bytes,
            allow_multiple_elements: w.allow_multiple_elements,
            see_other_uri: w.see_other_uri.as_deref().map(Box::from),
            client_xml: self.client_xml_limits(),
        })
    }

    /// Connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.upstream.connect_timeout_secs))
    }

    /// Settings shared by every upstream connection.
    pub fn conn_settings(&self) -> crate::upstream::conn::ConnSettings {
        let u = &self.upstream;
        let secs = |s: u16| Duration::from_secs(u64::from(s));
        crate::upstream::conn::ConnSettings {
            connect_timeout: secs(u.connect_timeout_secs),
            handshake_timeout: secs(u.handshake_timeout_secs),
            close_timeout: secs(u.close_timeout_secs),
            write_timeout: secs(u.write_timeout_secs),
            max_write_queue: u.max_write_queue_bytes,
            splitter: self.splitter_limits(),
        }
    }

    /// The host entry for `domain` (already lower-case).
    pub fn host(&self, domain: &str) -> Option<&HostConfig> {
        self.hosts.get(domain)
    }

    /// Renders the effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
