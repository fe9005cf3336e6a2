//! The plain listener when `tls.redirect_http` is on: everything moves to
//! HTTPS. BOSH clients get `see-other-uri` with the new URL in the body
//! (XEP-0124's way, BOSH-82k); everyone else a 308 redirect.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// The router that answers every request with the way to HTTPS.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(redirect).with_state(state)
}

async fn redirect(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let runtime = state.runtime();
    let port = state.tls_port.load(std::sync::atomic::Ordering::Relaxed);
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            if h.starts_with('[') {
                h.split_inclusive(']').next().unwrap_or(h)
            } else {
                h.split(':').next().unwrap_or(h)
            }
        })
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
    else {
        return (StatusCode::BAD_REQUEST, "a Host header is required\n").into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let bosh_path = request.uri().path().trim_end_matches('/');
    let is_bosh = runtime
        .config
        .bosh
        .paths
        .iter()
        .any(|p| p.trim_end_matches('/') == bosh_path);
    if is_bosh && request.method() == Method::POST {
        let mut body = Vec::with_capacity(target.len() + 160);
        body.extend_from_slice(
            b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' \
              condition='see-other-uri'><uri>",
        );
        crate::xml::escape::push_text_escaped(&mut body, &target);
        body.extend_from_slice(b"</uri></body>");
        let mut response = body.into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return response;
    }
    match HeaderValue::from_str(&target) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
            "moved to HTTPS\n",
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad Host header\n").into_response(),
    }
}
