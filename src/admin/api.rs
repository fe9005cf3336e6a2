//! The admin JSON API: the session table, kicking a session, reloading the
//! configuration, and the totals the status page plots.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Serialize;

use crate::clock;
use crate::http::AppState;
use crate::sessions::{SessionInfo, SessionState, Transport};
use crate::upstream::pool::UpstreamStatus;

/// One session as the API shows it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// xmpp-edge's id for the session (the BOSH `sid`).
    pub sid: String,
    /// The server's current stream id (a WebSocket client's latest `<open id=…/>`).
    pub stream_id: Option<String>,
    /// `bosh` or `websocket`.
    pub transport: Transport,
    /// `connecting`, `open` or `closing`.
    pub state: SessionState,
    /// The XMPP domain.
    pub domain: Option<String>,
    /// The bound JID, once known.
    pub jid: Option<String>,
    /// The client's address.
    pub client: Option<String>,
    /// The upstream server.
    pub upstream: Option<String>,
    /// Start, seconds since the Unix epoch.
    pub started: u64,
    /// Seconds since the start.
    pub age_secs: f64,
    /// Seconds since the client's last request or frame.
    pub idle_secs: f64,
    /// Elements relayed to the client.
    pub stanzas_to_client: u64,
    /// Their bytes.
    pub bytes_to_client: u64,
    /// Elements relayed to the server.
    pub stanzas_to_upstream: u64,
    /// Their bytes.
    pub bytes_to_upstream: u64,
    /// Bytes waiting for the client.
    pub queued_to_client: u64,
    /// Bytes waiting for the server.
    pub queued_to_upstream: u64,
    /// Parked BOSH requests.
    pub held_requests: u64,
}

impl SessionView {
    fn of(info: &SessionInfo, now: Instant) -> Self {
        Self {
            sid: info.sid.to_string(),
            stream_id: info.stream_id().map(|id| id.to_string()),
            transport: info.transport,
            state: info.state(),
            domain: info.domain().map(str::to_owned),
            jid: info.jid().map(str::to_owned),
            client: info.client.map(|c| c.to_string()),
            upstream: info.upstream().map(str::to_owned),
            started: info.started_unix,
            age_secs: round(now.saturating_duration_since(info.started).as_secs_f64()),
            idle_secs: round(info.idle(now).as_secs_f64()),
            stanzas_to_client: info.stanzas_to_client.load(Relaxed),
            bytes_to_client: info.bytes_to_client.load(Relaxed),
            stanzas_to_upstream: info.stanzas_to_upstream.load(Relaxed),
            bytes_to_upstream: info.bytes_to_upstream.load(Relaxed),
            queued_to_client: info.queued_to_client.load(Relaxed),
            queued_to_upstream: info.queued_to_upstream.load(Relaxed),
            held_requests: info.held_requests.load(Relaxed),
        }
    }
}

fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// Totals since start, for rates on the status page.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Sessions started.
    pub sessions_opened: u64,
    /// Sessions ended.
    pub sessions_closed: u64,
    /// Elements relayed to clients.
    pub stanzas_to_client: u64,
    /// Elements relayed to servers.
    pub stanzas_to_upstream: u64,
    /// Bytes relayed to clients.
    pub bytes_to_client: u64,
    /// Bytes relayed to servers.
    pub bytes_to_upstream: u64,
}

/// `GET /admin/status`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// xmpp-edge's version.
    pub version: &'static str,
    /// Seconds since the Unix epoch, now.
    pub time: u64,
    /// Milliseconds since the Unix epoch, now (for rates).
    pub time_ms: u64,
    /// When the process started, seconds since the Unix epoch.
    pub started: u64,
    /// Seconds since the start.
    pub uptime_secs: u64,
    /// Ready for new sessions.
    pub ready: bool,
    /// Why not, if not.
    pub not_ready_because: Option<&'static str>,
    /// Shutting down.
    pub draining: bool,
    /// Live BOSH sessions.
    pub bosh_sessions: usize,
    /// Live WebSocket sessions.
    pub websocket_sessions: usize,
    /// Counters since start.
    pub totals: Totals,
    /// Upstream servers of the configuration in force.
    pub upstreams: Vec<UpstreamStatus>,
    /// Cluster mode: this replica's tag and the peers it knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
}

/// The cluster as one replica sees it.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// This replica's node tag (the first 8 hex digits of its sids).
    pub node: String,
    /// The other replicas it forwards to.
    pub peers: Vec<crate::cluster::Peer>,
}

/// Refuses API calls without the configured bearer token.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.runtime().admin_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({ "error": "a valid bearer token is required" })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /admin/status`.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<StatusView> {
    let m = &state.metrics;
    let sum = |vec: &prometheus::IntCounterVec, direction: &str| -> u64 {
        [Transport::Bosh, Transport::WebSocket]
            .iter()
            .map(|t| vec.with_label_values(&[t.as_str(), direction]).get())
            .sum()
    };
    let opened = [Transport::Bosh, Transport::WebSocket]
        .iter()
        .map(|t| m.sessions_opened.with_label_values(&[t.as_str()]).get())
        .sum::<u64>();
    let closed = counter_sum(&m.sessions_closed);
    let readiness = super::readiness(&state);
    let now = clock::unix_time();
    Json(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        time: now.as_secs(),
        time_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        started: state.started_unix,
        uptime_secs: now.as_secs().saturating_sub(state.started_unix),
        ready: readiness.is_ok(),
        not_ready_because: readiness.err(),
        draining: state.is_draining(),
        bosh_sessions: state.sessions.bosh_count(),
        websocket_sessions: state.sessions.ws_count(),
        totals: Totals {
            sessions_opened: opened,
            sessions_closed: closed,
            stanzas_to_client: sum(&m.stanzas, "to_client"),
            stanzas_to_upstream: sum(&m.stanzas, "to_upstream"),
            bytes_to_client: sum(&m.bytes, "to_client"),
            bytes_to_upstream: sum(&m.bytes, "to_upstream"),
        },
        upstreams: state.runtime().upstreams.status(),
        cluster: state.cluster.as_ref().map(|c| ClusterView {
            node: c.tag().to_string(),
            peers: c.peers(),
        }),
    })
}

/// The sum of every series of a counter family.
fn counter_sum(vec: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// `GET /admin/sessions`: every live session, oldest first.
pub async fn list_sessions(State(state): State<Arc<AppState>>) -> Json<Vec<SessionView>> {
    let now = clock::now();
    let mut infos = state.sessions.infos();
    infos.sort_by_key(|i| i.started);
    Json(infos.iter().map(|i| SessionView::of(i, now)).collect())
}

fn not_found(sid: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no session {sid}") })),
    )
        .into_response()
}

/// `GET /admin/sessions/{sid}`.
pub async fn get_session(State(state): State<Arc<AppState>>, Path(sid): Path<String>) -> Response {
    match state.sessions.get(&sid) {
        Some(info) => Json(SessionView::of(&info, clock::now())).into_response(),
        None => not_found(&sid),
    }
}

/// `DELETE /admin/sessions/{sid}`: ends the session (BOSH `policy-violation`,
/// WebSocket `policy-violation` stream error; the server's stream is closed).
pub async fn kick_session(State(state): State<Arc<AppState>>, Path(sid): Path<String>) -> Response {
    match state.sessions.get(&sid) {
        Some(info) => {
            tracing::info!(%sid, jid = ?info.jid(), "session kicked by an operator");
            info.kick();
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "sid": sid, "kicked": true })),
            )
                .into_response()
        }
        None => not_found(&sid),
    }
}

/// `POST /admin/reload`.
pub async fn reload(State(state): State<Arc<AppState>>) -> Response {
    match crate::reload::reload(&state).await {
        Ok(report) => Json(serde_json::json!({
            "reloaded": true,
            "needs_restart": report.needs_restart,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "reloaded": false, "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// The session list as a text table, for `xmpp-edge sessions`.
pub fn session_table(rows: &[serde_json::Value]) -> String {
    let field = |row: &serde_json::Value, key: &str| -> String {
        match &row[key] {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let mut lines = vec![
        [
            "SID",
            "TRANSPORT",
            "STATE",
            "JID",
            "CLIENT",
            "UPSTREAM",
            "AGE",
            "IDLE",
            "IN",
            "OUT",
            "QUEUED",
        ]
        .map(str::to_owned),
    ];
    for row in rows {
        let queued = row["queued_to_client"].as_u64().unwrap_or(0)
            + row["queued_to_upstream"].as_u64().unwrap_or(0);
        lines.push([
            field(row, "sid"),
            field(row, "transport"),
            field(row, "state"),
            field(row, "jid"),
            field(row, "client"),
            field(row, "upstream"),
            format!("{:.0}s", row["age_secs"].as_f64().unwrap_or(0.0)),
            format!("{:.0}s", row["idle_secs"].as_f64().unwrap_or(0.0)),
            field(row, "stanzas_to_upstream"),
            field(row, "stanzas_to_client"),
            queued.to_string(),
        ]);
    }
    let mut widths = [0usize; 11];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("{} session(s)\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_table_lines_up_columns() {
        let rows = vec![serde_json::json!({
            "sid": "ab", "transport": "bosh", "state": "open", "jid": null,
            "client": "127.0.0.1:1", "upstream": "127.0.0.1:5222", "age_secs": 3.2,
            "idle_secs": 0.4, "stanzas_to_upstream": 5, "stanzas_to_client": 7,
            "queued_to_client": 10, "queued_to_upstream": 2
        })];
        let table = session_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SID  TRANSPORT"), "{table}");
        assert!(
            lines[1].contains("bosh") && lines[1].contains("  -  "),
            "{table}"
        );
        assert!(lines[1].ends_with("12"), "{table}");
        assert_eq!(lines[2], "1 session(s)");
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-124", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret", b"secret-token-123"));
    }
}
