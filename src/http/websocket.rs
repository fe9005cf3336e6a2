//! The WebSocket endpoint: the handshake checks (version, Origin,
//! subprotocol, draining, limits) shared by HTTP/1.1 upgrades and HTTP/2
//! extended CONNECT (RFC 8441), then the session on the upgraded stream.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::admission::{ConnectionSlot, SessionSlot};
use crate::clock;
use crate::http::{AppState, ConnInfo, Response, Runtime, plain};
use crate::relay::drive;
use crate::relay::driver::SessionContext;
use crate::relay::read_ahead::ReadAhead;
use crate::relay::websocket::{WsIo, WsRelay};
use crate::sessions::{SessionInfo, Transport};
use crate::upstream::proxy_protocol::ClientInfo;
use crate::websocket::WsSession;

/// The subprotocol of RFC 7395.
const SUBPROTOCOL: &str = "xmpp";

/// A handshake that passed every check: what the session needs.
#[derive(Debug)]
pub struct Accepted {
    /// The configuration the session runs under for its whole life.
    pub runtime: Arc<Runtime>,
    /// Whether `xmpp` was offered (and is echoed).
    pub subprotocol: bool,
    /// Who the client is.
    pub client: ClientInfo,
    /// Its place under `[limits]`.
    pub slot: SessionSlot,
    /// The connection's place, which the session now owns.
    pub connection: Option<ConnectionSlot>,
}

/// A GET on the WebSocket path that is not an upgrade (WS-5): not an error
/// page, but never a 101 either.
pub fn not_upgraded(headers: &HeaderMap) -> Response {
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        return wrong_version();
    }
    let mut response = plain(
        StatusCode::UPGRADE_REQUIRED,
        "xmpp-edge: this is an XMPP over WebSocket endpoint (RFC 7395). \
         Connect with a WebSocket client offering the `xmpp` subprotocol.\n",
    );
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response
}

/// WS-47: name the version we speak.
fn wrong_version() -> Response {
    let mut response = plain(
        StatusCode::UPGRADE_REQUIRED,
        "unsupported WebSocket version; this endpoint speaks version 13\n",
    );
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}

/// Checks an upgrade request (HTTP/1.1 `Upgrade: websocket` or HTTP/2
/// CONNECT with `:protocol websocket`); the caller has checked the method
/// and the framing-specific headers.
pub fn accept(
    state: &AppState,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Accepted, Box<Response>> {
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Box::new(wrong_version()));
    }
    let runtime = state.runtime();
    if state.is_draining() {
        // New sessions belong on another replica.
        let mut response = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "xmpp-edge is shutting down\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(Box::new(response));
    }
    // WS-4: a browser from an origin that is not allowed.
    if let Some(origin) = headers.get(header::ORIGIN)
        && !runtime.ws_origins.allows(origin)
    {
        tracing::info!(origin = ?origin, "WebSocket refused: origin not allowed");
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "origin not allowed\n",
        )));
    }
    // WS-1..3: `xmpp` must be offered, and only it is echoed.
    let subprotocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !subprotocol && runtime.config.websocket.require_subprotocol {
        tracing::info!("WebSocket refused: the xmpp subprotocol was not offered");
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "the `xmpp` WebSocket subprotocol (RFC 7395) is required\n",
        )));
    }
    let client = runtime.client_info(Some(conn), headers, "websocket");
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
            let mut response = plain(status, format!("{refusal}\n"));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(Box::new(response));
        }
    };
    // The socket becomes the session's: so does its place under the limit.
    let connection = conn.slot.lock().take();
    Ok(Accepted {
        runtime,
        subprotocol,
        client,
        slot,
        connection,
    })
}

/// The response headers that complete the handshake (besides the
/// HTTP/1.1-specific `Upgrade`/`Connection`/`Sec-WebSocket-Accept`).
pub fn subprotocol_header(accepted: &Accepted) -> Option<(header::HeaderName, HeaderValue)> {
    accepted.subprotocol.then(|| {
        (
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        )
    })
}

/// tungstenite settings for a session under `runtime`.
fn socket_config(runtime: &Runtime) -> WebSocketConfig {
    let w = &runtime.config.websocket;
    WebSocketConfig::default()
        .read_buffer_size(w.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(w.max_backlog_bytes.saturating_add(w.max_message_bytes))
        .max_message_size(Some(w.max_message_bytes))
        .max_frame_size(Some(w.max_message_bytes))
}

/// Runs the session on `io`, which has completed the handshake; `read`
/// holds bytes the client sent right after it.
pub async fn run<S: WsIo>(state: Arc<AppState>, accepted: Accepted, io: S, read: Vec<u8>) {
    let Accepted {
        runtime,
        client,
        slot,
        connection,
        ..
    } = accepted;
    let config = socket_config(&runtime);
    let io = ReadAhead::new(io);
    let socket = if read.is_empty() {
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
    } else {
        WebSocketStream::from_partially_read(io, read, Role::Server, Some(config)).await
    };
    // The stream id doubles as the session's id in the admin API:
    // unpredictable (WS-21), 32 hex digits.
    let sid = state.new_sid();
    let span = tracing::info_span!("ws", %sid);
    span.in_scope(|| tracing::debug!(client = ?client.source, "WebSocket connected"));
    let info = Arc::new(SessionInfo::new(sid, Transport::WebSocket, client.source));
    info.touch(clock::now());
    state.sessions.insert(Arc::clone(&info), None);
    // The drain asks the sessions in the table; one that joined it after
    // the drain looked is told here.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    if state.is_shutting_down() {
        info.request_shutdown();
    }
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
    // A task of its own, sized for the session alone (this function's
    // set-up state goes with this task).
    tokio::spawn(drive(Box::new(relay), upstreams, context).instrument(span));
}
