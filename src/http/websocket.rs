//! The WebSocket endpoint: handshake checks (subprotocol, Origin, version),
//! then the upgraded connection is handed to the relay loop.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use tracing::Instrument;

use crate::clock;
use crate::http::{AppState, ConnInfo};
use crate::relay::drive;
use crate::relay::driver::SessionContext;
use crate::relay::websocket::WsRelay;
use crate::sessions::{SessionInfo, Sid, Transport};
use crate::websocket::WsSession;

/// The subprotocol of RFC 7395.
const SUBPROTOCOL: &str = "xmpp";

/// `GET` (upgrade) on a WebSocket path.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_)) => {
            // WS-47: name the version we speak.
            return (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "unsupported WebSocket version; this endpoint speaks version 13\n",
            )
                .into_response();
        }
        Err(_) => {
            // WS-5: a plain GET is not an error page, but never a 101 either.
            return (
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::UPGRADE, "websocket"),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                ],
                "xmpp-edge: this is an XMPP over WebSocket endpoint (RFC 7395). \
                 Connect with a WebSocket client offering the `xmpp` subprotocol.\n",
            )
                .into_response();
        }
    };
    let runtime = state.runtime();
    if state.is_draining() {
        // New sessions belong on another replica.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "xmpp-edge is shutting down\n",
        )
            .into_response();
    }
    // WS-4: a browser from an origin that is not allowed.
    if let Some(origin) = headers.get(header::ORIGIN)
        && !runtime.ws_origins.allows(origin)
    {
        tracing::info!(origin = ?origin, "WebSocket refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    // WS-1..3: `xmpp` must be offered, and only it is echoed.
    let offered = ws
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered && runtime.config.websocket.require_subprotocol {
        tracing::info!("WebSocket refused: the xmpp subprotocol was not offered");
        return (
            StatusCode::BAD_REQUEST,
            "the `xmpp` WebSocket subprotocol (RFC 7395) is required\n",
        )
            .into_response();
    }
    let w = &runtime.config.websocket;
    let mut ws = ws
        .read_buffer_size(w.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(w.max_backlog_bytes.saturating_add(w.max_message_bytes))
        .max_message_size(w.max_message_bytes)
        .max_frame_size(w.max_message_bytes);
    if offered {
        ws.set_selected_protocol(HeaderValue::from_static(SUBPROTOCOL));
    }
    let slot_holder = conn.as_ref().map(|c| Arc::clone(&c.slot));
    let client = runtime.client_info(conn.map(|c| c.0), &headers, "websocket");
    let ip = client.source.map(|s| s.ip());
    let slot = match state
        .admission
        .admit(ip, &runtime.config.limits, clock::now())
    {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::info!("WebSocket refused: {refusal}");
            state.metrics.limit_hit(refusal.limit());
            let status = StatusCode::from_u16(refusal.http_status())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (status, [(header::RETRY_AFTER, "5")], format!("{refusal}\n")).into_response();
        }
    };
    // The socket becomes the session's: so does its place under the limit.
    let connection = slot_holder.and_then(|s| s.lock().take());
    ws.on_upgrade(move |socket| {
        // The stream id doubles as the session's id in the admin API:
        // unpredictable (WS-21), 32 hex digits.
        let sid = Sid::random();
        let span = tracing::info_span!("ws", %sid);
        span.in_scope(|| tracing::debug!(client = ?client.source, "WebSocket connected"));
        let info = Arc::new(SessionInfo::new(sid, Transport::WebSocket, client.source));
        info.touch(clock::now());
        state.sessions.insert(Arc::clone(&info), None);
        let core = WsSession::new(
            Arc::clone(&runtime.ws_limits),
            sid.to_string().into(),
            clock::now(),
        );
        let upstreams = Arc::clone(&runtime.upstreams);
        let context = SessionContext {
            info: Arc::clone(&info),
            table: Arc::clone(&state.sessions),
            metrics: Arc::clone(&state.metrics),
            slot: Some(slot),
            connection,
        };
        let relay = WsRelay::new(core, socket, state, runtime, client, info);
        drive(Box::new(relay), upstreams, context).instrument(span)
    })
}
