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
use crate::xml::reserialize::ClientXmlLimits;
use crate::xml::splitter::SplitterLimits;

pub use load::{ConfigError, load_file, load_str, parse_host_port};

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
    /// Served XMPP domains and their upstream servers.
    pub hosts: BTreeMap<String, HostConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "localhost".to_owned(),
            HostConfig {
                upstreams: vec!["127.0.0.1:5222".to_owned()],
                public_base_url: None,
            },
        );
        Self {
            server: ServerConfig::default(),
            log: LogConfig::default(),
            bosh: BoshConfig::default(),
            websocket: WebSocketConfig::default(),
            upstream: UpstreamConfig::default(),
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5280)),
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
            read_buffer_bytes: 4096,
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
    /// Time to wait for the server's closing tag after ours, seconds.
    pub close_timeout_secs: u16,
    /// Largest element accepted from the server, bytes; one element of this
    /// size may be buffered per session while it arrives.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting accepted from either side.
    pub max_depth: u16,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 5,
            close_timeout_secs: 5,
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
        }
    }
}

/// `[hosts."domain"]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Upstream XMPP servers (`host:port`), tried in order.
    pub upstreams: Vec<String>,
    /// Public base URL of xmpp-edge for this domain (e.g.
    /// `https://chat.example.com`), used in host-meta links; when xmpp-edge
    /// sits behind TLS offload it cannot know it otherwise. Without it, links
    /// are derived from the request (`http://` + `Host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
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
            ..ClientXmlLimits::default()
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
