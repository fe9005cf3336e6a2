//! HTTP adapters (own HTTP/1.1, hyper HTTP/2). No protocol decisions are made here: requests are
//! turned into core inputs and core outputs into HTTP responses.

pub mod bosh;
pub mod conn;
pub mod discovery;
pub mod h1;
pub mod h2;
pub mod redirect;
pub mod route;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, header};

use crate::admission::{Admission, ConnectionSlot};
use crate::bosh::BoshLimits;
use crate::config::Config;
use crate::metrics::{Metrics, MetricsError};
use crate::sessions::SessionTable;
use crate::upstream::pool::{PoolSetupError, UpstreamCounters, Upstreams};
use crate::upstream::proxy_protocol::ClientInfo;
use crate::websocket::WsLimits;
use crate::xml::reserialize::ClientXmlLimits;

/// What every endpoint answers: a status, headers and a whole body. The
/// bodies here are small and complete, so no streaming body type is needed.
pub type Response = http::Response<bytes::Bytes>;

/// A response with `status` and a plain-text (or empty) body.
pub fn plain(status: http::StatusCode, body: impl Into<bytes::Bytes>) -> Response {
    let body = body.into();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if !response.body().is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// The two ends of an HTTP connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The TCP peer (a client, or a reverse proxy).
    pub peer: SocketAddr,
    /// Our listening address it reached.
    pub local: SocketAddr,
    /// What TLS negotiated, on the HTTPS listener.
    pub tls: Option<TlsInfo>,
    /// The connection's place under `limits.max_connections`: a WebSocket
    /// upgrade takes it along, since its socket outlives the HTTP exchange.
    pub slot: Arc<parking_lot::Mutex<Option<ConnectionSlot>>>,
}

/// The TLS parameters of a client connection (for the upstream's PROXY TLVs).
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: Option<&'static str>,
    /// `h2` or `http/1.1`.
    pub alpn: Option<&'static str>,
    /// The name the client asked for (SNI).
    pub server_name: Option<Box<str>>,
}

/// Everything built from the configuration: what a reload replaces.
/// Requests read it once; sessions keep the one they started with, so a
/// reload never touches a live session.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Limits for new BOSH sessions.
    pub bosh_limits: Arc<BoshLimits>,
    /// Bounds on client XML.
    pub client_xml: ClientXmlLimits,
    /// Upstream pools per served domain.
    pub upstreams: Arc<Upstreams>,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// CORS policy for BOSH.
    pub cors: Cors,
    /// Limits for new WebSocket sessions.
    pub ws_limits: Arc<WsLimits>,
    /// Origins allowed to open a WebSocket.
    pub ws_origins: Cors,
    /// Bearer token of the admin API, if one is required.
    pub admin_token: Option<String>,
}

/// Why xmpp-edge could not be set up from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An upstream pool (TLS trust store, DNS resolver).
    #[error(transparent)]
    Pools(#[from] PoolSetupError),
    /// The metric registry.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `admin.token_file` could not be read.
    #[error("admin.token_file {path}: {source}")]
    TokenFile {
        /// The configured path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `[cluster]`: the secret or the peer resolver.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// `admin.token_file` holds too short a token.
    #[error("admin.token_file {0}: the token must be at least 16 characters")]
    TokenTooShort(String),
}

impl Runtime {
    /// Builds everything `config` describes; pools are not started yet.
    /// Servers `previous` already knows keep their state (reload).
    pub fn new(
        config: Config,
        metrics: &Metrics,
        previous: Option<&Self>,
    ) -> Result<Self, SetupError> {
        let admin_token = match (&config.admin.token, &config.admin.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SetupError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
                let token = text.trim().to_owned();
                if token.len() < 16 {
                    return Err(SetupError::TokenTooShort(path.clone()));
                }
                Some(token)
            }
            (None, None) => None,
        };
        let mut upstreams = Upstreams::new(&config)?
            .with_connect_histogram(metrics.upstream_connect_seconds.clone())
            .with_server_counters(UpstreamCounters {
                connects: metrics.upstream_connects.clone(),
                failures: metrics.upstream_failures.clone(),
            });
        if let Some(previous) = previous {
            upstreams.adopt(&previous.upstreams);
        }
        let trusted_proxies = config
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::config::parse_network(p))
            .collect();
        Ok(Self {
            bosh_limits: config.bosh_limits(),
            client_xml: config.client_xml_limits(),
            upstreams: Arc::new(upstreams),
            trusted_proxies,
            cors: Cors::new(&config.bosh.cors_origins),
            ws_limits: config.ws_limits(),
            ws_origins: Cors::new(&config.websocket.allowed_origins),
            admin_token,
            config: Arc::new(config),
        })
    }

    /// Who the client is, for the upstream's PROXY header (UP-16, WS-38):
    /// the TCP peer, or the address a trusted reverse proxy forwarded.
    pub fn client_info(
        &self,
        conn: Option<&ConnInfo>,
        headers: &HeaderMap,
        transport: &'static str,
    ) -> ClientInfo {
        let peer = conn.map(|c| c.peer);
        let tls = conn.and_then(|c| c.tls.as_ref());
        let source = match peer {
            Some(p) if self.trusted_proxies.iter().any(|n| n.contains(&p.ip())) => {
                forwarded_client(headers, &self.trusted_proxies).or(peer)
            }
            other => other,
        };
        let authority = tls.and_then(|t| t.server_name.clone()).or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| Box::from(h.rsplit_once(':').map_or(h, |(name, _)| name)))
        });
        ClientInfo {
            source,
            destination: conn.map(|c| c.local),
            tls_version: tls.and_then(|t| t.version),
            authority,
            alpn: Some(tls.and_then(|t| t.alpn).unwrap_or("http/1.1")),
            transport: Some(transport),
        }
    }
}

/// Shared state of the listeners.
#[derive(Debug)]
pub struct AppState {
    runtime: ArcSwap<Runtime>,
    /// Live sessions.
    pub sessions: Arc<SessionTable>,
    /// The metric set.
    pub metrics: Arc<Metrics>,
    /// Session and connection counts behind `[limits]`.
    pub admission: Arc<Admission>,
    /// TLS settings of the HTTPS listener, swapped when certificates change.
    pub front_tls: arc_swap::ArcSwapOption<rustls::ServerConfig>,
    /// The HTTPS listener's bound port (redirect targets).
    pub tls_port: std::sync::atomic::AtomicU16,
    shutdown: AtomicBool,
    draining: AtomicBool,
    /// The file the configuration came from, for reloads.
    config_path: parking_lot::Mutex<Option<std::path::PathBuf>>,
    /// Serializes reloads (SIGHUP and the admin API).
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// When the process started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Cluster mode, when enabled (fixed at start).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AppState {
    /// Builds the state for `config`.
    pub fn new(config: Config) -> Result<Self, SetupError> {
        let metrics = Arc::new(Metrics::new()?);
        let cluster = match config.cluster.enabled {
            true => Some(Arc::new(crate::cluster::Cluster::new(&config)?)),
            false => None,
        };
        let runtime = Runtime::new(config, &metrics, None)?;
        Ok(Self {
            runtime: ArcSwap::from_pointee(runtime),
            sessions: Arc::new(SessionTable::new()),
            metrics,
            admission: Arc::new(Admission::new(crate::admission::auto_max_connections())),
            front_tls: arc_swap::ArcSwapOption::empty(),
            tls_port: std::sync::atomic::AtomicU16::new(443),
            shutdown: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            config_path: parking_lot::Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            started_unix: crate::clock::unix_time().as_secs(),
            cluster,
        })
    }

    /// A new session id: tagged with this replica in cluster mode.
    pub fn new_sid(&self) -> crate::sessions::Sid {
        crate::sessions::Sid::random_for(self.cluster.as_ref().map(|c| c.tag()))
    }

    /// Remembers the file to re-read on reload.
    pub fn set_config_path(&self, path: Option<std::path::PathBuf>) {
        *self.config_path.lock() = path;
    }

    /// The file to re-read on reload, if the configuration came from one.
    pub fn config_path(&self) -> Option<std::path::PathBuf> {
        self.config_path.lock().clone()
    }

    /// The configuration in force, and what was built from it.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Puts `runtime` in force for new sessions and requests; returns the old one.
    pub fn replace_runtime(&self, runtime: Runtime) -> Arc<Runtime> {
        self.runtime.swap(Arc::new(runtime))
    }

    /// Whether sessions are being told to end because xmpp-edge is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Stops taking new sessions (readiness goes false); live ones go on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether xmpp-edge is draining (not ready, no new sessions).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Tells every session that xmpp-edge is stopping.
    pub fn begin_shutdown(&self) {
        self.begin_drain();
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// The client address a chain of trusted proxies forwarded: the right-most
/// address that is not itself a trusted proxy (`Forwarded` first, then
/// `X-Forwarded-For`).
fn forwarded_client(headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<SocketAddr> {
    let mut chain: Vec<SocketAddr> = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        for element in value.to_str().ok()?.split(',') {
            for pair in element.split(';') {
                if let Some((key, v)) = pair.trim().split_once('=')
                    && key.eq_ignore_ascii_case("for")
                    && let Some(addr) = parse_forwarded_node(v.trim().trim_matches('"'))
                {
                    chain.push(addr);
                }
            }
        }
    }
    if chain.is_empty() {
        for value in headers.get_all("x-forwarded-for") {
            for part in value.to_str().ok()?.split(',') {
                if let Some(addr) = parse_forwarded_node(part.trim()) {
                    chain.push(addr);
                }
            }
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|a| !trusted.iter().any(|n| n.contains(&a.ip())))
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_forwarded_node(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// Which browser origins may call an endpoint (BOSH-9).
#[derive(Clone, Debug)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// From a list of origins, `*` meaning any.
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request, if it is allowed.
    pub fn allow(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then(|| origin.clone())
    }

    /// Whether an `Origin` header value is allowed.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || origin
                .to_str()
                .is_ok_and(|o| self.origins.contains(&o.to_ascii_lowercase()))
    }

    /// Whether responses depend on the `Origin` header (so caches must vary on it).
    pub fn varies(&self) -> bool {
        !self.any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn ws_38_forwarded_client_skips_trusted_hops() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        assert_eq!(
            forwarded_client(&h, &trusted),
            Some("203.0.113.9:0".parse().unwrap())
        );
        let h = headers(&[(
            "forwarded",
            "for=\"[2001:db8::7]:4711\";proto=https, for=10.1.1.1",
        )]);
        assert_eq!(
            forwarded_client(&h, &trusted),
            Some("[2001:db8::7]:4711".parse().unwrap())
        );
        // A forged left-most entry does not win over the real client.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.5, 10.0.0.2")]);
        assert_eq!(
            forwarded_client(&h, &trusted),
            Some("198.51.100.5:0".parse().unwrap())
        );
    }
}
