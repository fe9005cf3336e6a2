//! Which endpoint a request is for, and its answer: shared by the HTTP/1.1
//! and HTTP/2 front ends. WebSocket upgrades are taken by those front ends
//! before they get here (each upgrades in its own way).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use crate::http::bosh::BodyError;
use crate::http::{AppState, ConnInfo, Response, Runtime, bosh, discovery, plain, redirect};

/// The endpoints of the public listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A BOSH path (with or without a trailing `/`; Jitsi adds a query).
    Bosh,
    /// A WebSocket path.
    WebSocket,
    /// `/.well-known/host-meta`.
    HostMeta,
    /// `/.well-known/host-meta.json`.
    HostMetaJson,
    /// Anything else.
    NotFound,
}

/// The endpoint `path` names (query already removed).
pub fn endpoint(runtime: &Runtime, path: &str) -> Endpoint {
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let config = &runtime.config;
    if config
        .bosh
        .paths
        .iter()
        .any(|p| p.trim_end_matches('/') == trimmed)
    {
        Endpoint::Bosh
    } else if config.websocket.paths.iter().any(|p| p == path) {
        Endpoint::WebSocket
    } else if path == "/.well-known/host-meta" {
        Endpoint::HostMeta
    } else if path == "/.well-known/host-meta.json" {
        Endpoint::HostMetaJson
    } else {
        Endpoint::NotFound
    }
}

/// The largest body read for `endpoint` and `method`; other bodies are
/// refused (BOSH POSTs are the only requests that carry one).
pub fn body_limit(runtime: &Runtime, endpoint: Endpoint, method: &Method) -> usize {
    if endpoint == Endpoint::Bosh && method == Method::POST {
        runtime.config.bosh.max_body_bytes
    } else {
        16 * 1024
    }
}

/// One request that is not a WebSocket upgrade.
pub struct Request<'a> {
    /// The method.
    pub method: &'a Method,
    /// Path and query (and authority, over HTTP/2).
    pub uri: &'a Uri,
    /// Request headers (owned: a parked BOSH request drops them early).
    pub headers: HeaderMap,
    /// The connection it came on.
    pub conn: &'a ConnInfo,
    /// Whether the plain listener only redirects to HTTPS.
    pub redirecting: bool,
}

/// Answers `request`, whose body (if any) is `body`.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
pub fn handle(
    state: &Arc<AppState>,
    request: Request<'_>,
    body: Result<Bytes, BodyError>,
) -> impl Future<Output = Response> {
    // Not an `async fn`, which would copy `request` into a local and keep
    // both copies while a BOSH request is parked.
    async move {
        if request.redirecting {
            return redirect::respond(state, request.method, request.uri, &request.headers);
        }
        let runtime = state.runtime();
        match endpoint(&runtime, request.uri.path()) {
            Endpoint::Bosh => match *request.method {
                Method::POST => bosh::post(state, request.conn, request.headers, body).await,
                Method::OPTIONS => bosh::preflight(state, &request.headers),
                Method::GET | Method::HEAD => bosh::info(),
                _ => not_allowed("POST, GET, OPTIONS"),
            },
            Endpoint::HostMeta if request.method == Method::GET => {
                discovery::host_meta(state, request.conn, request.uri, &request.headers)
            }
            Endpoint::HostMetaJson if request.method == Method::GET => {
                discovery::host_meta_json(state, request.conn, request.uri, &request.headers)
            }
            Endpoint::HostMeta | Endpoint::HostMetaJson => not_allowed("GET"),
            // Reached only when the request is not an upgrade (WS-5).
            Endpoint::WebSocket => crate::http::websocket::not_upgraded(&request.headers),
            Endpoint::NotFound => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        let metrics = crate::metrics::Metrics::new().unwrap();
        let mut config = crate::config::Config::default();
        config.bosh.paths = vec!["/http-bind".into(), "/bosh/".into()];
        let runtime = Runtime::new(config, &metrics, None).unwrap();
        assert_eq!(endpoint(&runtime, "/http-bind"), Endpoint::Bosh);
        assert_eq!(endpoint(&runtime, "/http-bind/"), Endpoint::Bosh);
        assert_eq!(endpoint(&runtime, "/bosh"), Endpoint::Bosh);
        assert_eq!(endpoint(&runtime, "/xmpp-websocket"), Endpoint::WebSocket);
        assert_eq!(
            endpoint(&runtime, "/.well-known/host-meta"),
            Endpoint::HostMeta
        );
        assert_eq!(endpoint(&runtime, "/"), Endpoint::NotFound);
        assert_eq!(endpoint(&runtime, "/http-bindx"), Endpoint::NotFound);
    }
}
