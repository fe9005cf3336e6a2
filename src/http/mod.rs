//! axum/hyper adapters. No protocol decisions are made here: requests are
//! turned into core inputs and core outputs into HTTP responses.

pub mod bosh;
pub mod discovery;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::bosh::BoshLimits;
use crate::config::Config;
use crate::sessions::SessionTable;
use crate::upstream::pool::{PoolSetupError, Upstreams};
use crate::upstream::proxy_protocol::ClientInfo;
use crate::websocket::WsLimits;
use crate::xml::reserialize::ClientXmlLimits;

/// The two ends of an HTTP connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The TCP peer (a client, or a reverse proxy).
    pub peer: SocketAddr,
    /// Our listening address it reached.
    pub local: SocketAddr,
}

/// Shared state of the HTTP front end.
#[derive(Debug)]
pub struct AppState {
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
    /// Live sessions.
    pub sessions: Arc<SessionTable>,
    /// CORS policy for BOSH.
    pub cors: Cors,
    /// Limits for new WebSocket sessions.
    pub ws_limits: Arc<WsLimits>,
    /// Origins allowed to open a WebSocket.
    pub ws_origins: Cors,
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Builds the state for `config`.
    pub fn new(config: Config) -> Result<Self, PoolSetupError> {
        let upstreams = Arc::new(Upstreams::new(&config)?);
        let trusted_proxies = config
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::config::parse_network(p))
            .collect();
        Ok(Self {
            bosh_limits: config.bosh_limits(),
            client_xml: config.client_xml_limits(),
            upstreams,
            trusted_proxies,
            sessions: Arc::new(SessionTable::new()),
            cors: Cors::new(&config.bosh.cors_origins),
            ws_limits: config.ws_limits(),
            ws_origins: Cors::new(&config.websocket.allowed_origins),
            shutdown: watch::Sender::new(false),
            config: Arc::new(config),
        })
    }

    /// Who the client is, for the upstream's PROXY header (UP-16, WS-38):
    /// the TCP peer, or the address a trusted reverse proxy forwarded.
    pub fn client_info(
        &self,
        conn: Option<ConnInfo>,
        headers: &HeaderMap,
        transport: &'static str,
    ) -> ClientInfo {
        let peer = conn.map(|c| c.peer);
        let source = match peer {
            Some(p) if self.trusted_proxies.iter().any(|n| n.contains(&p.ip())) => {
                forwarded_client(headers, &self.trusted_proxies).or(peer)
            }
            other => other,
        };
        let authority = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| Box::from(h.rsplit_once(':').map_or(h, |(name, _)| name)));
        ClientInfo {
            source,
            destination: conn.map(|c| c.local),
            tls_version: None,
            authority,
            alpn: Some("http/1.1"),
            transport: Some(transport),
        }
    }

    /// Resolves for sessions that must end because xmpp-edge is stopping.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every session that xmpp-edge is stopping.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Counts a WebSocket session closed because its client stopped reading.
    pub fn metrics_backlog_closed(&self) {
        self.sessions.ws_backlog_closed();
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

/// The router for the public listener.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for path in &state.config.bosh.paths {
        let route = post(bosh::post).options(bosh::preflight).get(bosh::info);
        router = router.route(path, route.clone());
        if !path.ends_with('/') {
            router = router.route(&format!("{path}/"), route);
        }
    }
    for path in &state.config.websocket.paths {
        router = router.route(path, get(websocket::upgrade));
    }
    router
        .route("/.well-known/host-meta", get(discovery::host_meta))
        .route(
            "/.well-known/host-meta.json",
            get(discovery::host_meta_json),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
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
