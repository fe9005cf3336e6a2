//! axum/hyper adapters. No protocol decisions are made here: requests are
//! turned into core inputs and core outputs into HTTP responses.

pub mod bosh;
pub mod discovery;
pub mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::bosh::BoshLimits;
use crate::config::Config;
use crate::sessions::SessionTable;
use crate::upstream::conn::ConnSettings;
use crate::websocket::WsLimits;
use crate::xml::reserialize::ClientXmlLimits;

/// The address of the TCP peer of an HTTP connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Shared state of the HTTP front end.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Limits for new BOSH sessions.
    pub bosh_limits: Arc<BoshLimits>,
    /// Bounds on client XML.
    pub client_xml: ClientXmlLimits,
    /// Upstream connection settings.
    pub conn: Arc<ConnSettings>,
    /// Upstream targets per served domain.
    pub upstreams: HashMap<String, Arc<[String]>>,
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
    pub fn new(config: Config) -> Self {
        let conn = ConnSettings {
            connect_timeout: config.connect_timeout(),
            close_timeout: Duration::from_secs(u64::from(config.upstream.close_timeout_secs)),
            splitter: config.splitter_limits(),
        };
        let upstreams = config
            .hosts
            .iter()
            .map(|(domain, host)| (domain.clone(), Arc::from(host.upstreams.clone())))
            .collect();
        Self {
            bosh_limits: config.bosh_limits(),
            client_xml: config.client_xml_limits(),
            conn: Arc::new(conn),
            upstreams,
            sessions: Arc::new(SessionTable::new()),
            cors: Cors::new(&config.bosh.cors_origins),
            ws_limits: config.ws_limits(),
            ws_origins: Cors::new(&config.websocket.allowed_origins),
            shutdown: watch::Sender::new(false),
            config: Arc::new(config),
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
