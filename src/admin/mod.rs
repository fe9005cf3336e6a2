//! The operator-facing listeners.
//!
//! - The metrics listener (`metrics.listen`) serves only `/metrics`,
//!   `/healthz` and `/readyz`: nothing secret, so Prometheus and the
//!   kubelet can reach it from anywhere in the cluster.
//! - The admin listener (`admin.listen`, loopback unless a token is set)
//!   serves the status page at `/` and the JSON API under `/admin/`.

pub mod api;
pub mod client;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{StatusCode, header};

use crate::http::AppState;
use crate::metrics::Levels;

/// `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The status page and the admin API.
pub fn admin_router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/admin/status", get(api::status))
        .route("/admin/sessions", get(api::list_sessions))
        .route("/admin/sessions/{sid}", get(api::get_session))
        .route("/admin/sessions/{sid}", delete(api::kick_session))
        .route("/admin/reload", post(api::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            api::require_token,
        ));
    Router::new()
        .route("/", get(page::index))
        .merge(api)
        .with_state(state)
}

/// What a scrape reports besides counters.
pub fn levels(state: &AppState) -> Levels {
    Levels {
        sessions: state.sessions.infos(),
        upstreams: state.runtime().upstreams.status(),
        draining: state.is_draining(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&levels(&state));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Alive: the process answers.
async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// Ready: listening, not draining, and at least one upstream in rotation.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match readiness(&state) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Why xmpp-edge is not ready, if it is not.
pub fn readiness(state: &AppState) -> Result<(), &'static str> {
    if state.is_draining() {
        return Err("draining");
    }
    if !state.runtime().upstreams.any_healthy() {
        return Err("no upstream server in rotation");
    }
    Ok(())
}
