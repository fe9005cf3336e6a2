//! The BOSH endpoint: POST bodies in, `<body/>` responses out.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;

use crate::bosh::response::terminate_without_session;
use crate::bosh::{BoshRequest, BoshSession, Condition, parse_request};
use crate::clock;
use crate::http::{AppState, ConnInfo};
use crate::relay::bosh::{BoshRelay, BoshShared, Reply, Submitted};
use crate::relay::{RouteRequest, drive};
use crate::sessions::Sid;
use crate::upstream::proxy_protocol::ClientInfo;
use crate::upstream::route::Candidate;

const DEFAULT_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// `POST` on a BOSH path.
pub async fn post(
    State(state): State<Arc<AppState>>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cors = state.cors.allow(&headers);
    let bytes = match read_body(body, state.config.bosh.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyReadError::TooLarge) => {
            // BOSH-12: never parse a partial entity.
            let mut response = reply_response(terminal(Condition::PolicyViolation), cors, &state);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyReadError::Io) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let request = match parse_request(&bytes, state.client_xml) {
        Ok(request) => request,
        Err(e) => {
            // BOSH-86: no session can be told; the client gets bad-request.
            tracing::debug!("unreadable BOSH request: {e}");
            return reply_response(terminal(Condition::BadRequest), cors, &state);
        }
    };
    let reply = match request.sid.as_deref() {
        None => {
            let client = state.client_info(conn.map(|c| c.0), &headers, "bosh");
            create(&state, request, client).await
        }
        Some(sid) => match state.sessions.bosh(sid) {
            Some(session) => {
                if !request.payload.is_empty() {
                    let window = usize::from(state.config.bosh.max_hold) + 1;
                    session.room_for_payload(window).await;
                }
                let submitted = session.submit(clock::now(), request);
                wait_reply(&session, submitted, reply_timeout(&state)).await
            }
            None => terminal(Condition::ItemNotFound),
        },
    };
    reply_response(reply, cors, &state)
}

/// `OPTIONS` on a BOSH path: the CORS preflight (BOSH-9).
pub async fn preflight(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    if let Some(origin) = state.cors.allow(&headers) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS"),
        );
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("Content-Type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    if state.cors.varies() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET` on a BOSH path: a short page for people who open the URL (BOSH-2).
pub async fn info() -> Response {
    let page = "<!DOCTYPE html><html><head><title>xmpp-edge BOSH</title></head><body>\
        <h1>xmpp-edge</h1><p>This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206). \
        Point an XMPP client such as Converse.js or Strophe.js at this URL; \
        it expects HTTP POST requests.</p></body></html>";
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// Session creation (BOSH-18..38).
async fn create(state: &Arc<AppState>, request: BoshRequest, client: ClientInfo) -> Reply {
    let Some(to) = request
        .stream
        .to
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    else {
        return terminal(Condition::ImproperAddressing);
    };
    let domain = to.trim().trim_end_matches('.').to_ascii_lowercase();
    if state.upstreams.serves(&domain).is_none() {
        tracing::info!(domain, "session refused: domain not served");
        return terminal(Condition::HostUnknown);
    }
    let mut target = None;
    let allowlist = &state.config.bosh.route_allowlist;
    if let Some(route) = request.stream.route.as_deref()
        && !allowlist.is_empty()
    {
        // BOSH-22, BOSH-23: only allow-listed targets, never an open relay.
        match route_target(route).filter(|t| allowlist.iter().any(|a| a.eq_ignore_ascii_case(t))) {
            Some(allowed) => target = route_candidate(&allowed, &state.config, &domain),
            None => {
                tracing::info!(route, "session refused: route not allowed");
                return terminal(Condition::HostUnknown);
            }
        }
    }
    let sid = Sid::random();
    let core = BoshSession::create(
        Arc::clone(&state.bosh_limits),
        sid.to_string().into(),
        domain.clone().into(),
        1,
        request,
        clock::now(),
    );
    let (session, creation) = BoshShared::new(sid, core, 1);
    state.sessions.insert_bosh(sid, Arc::clone(&session));
    let span = tracing::info_span!("bosh", %sid);
    span.in_scope(|| tracing::info!(domain, "session created"));
    let route = RouteRequest {
        domain: domain.into(),
        client,
        target,
    };
    let relay = BoshRelay::new(Arc::clone(&session), Arc::clone(&state.sessions), route);
    tokio::spawn(drive(relay, Arc::clone(&state.upstreams)).instrument(span));
    wait_reply(
        &session,
        Submitted::Waiting(1, creation),
        reply_timeout(state),
    )
    .await
}

/// `xmpp:host:port` (IPv6 in brackets) to `host:port` (BOSH-22): split at the
/// first colon for the protocol and the last for the port, not with URI rules.
fn route_target(route: &str) -> Option<String> {
    let (proto, rest) = route.split_once(':')?;
    if proto != "xmpp" {
        return None;
    }
    let (host, port) = crate::config::parse_host_port(rest)?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{}:{port}", host.to_ascii_lowercase())
    })
}

/// The candidate for an allow-listed `route` target, secured as the domain's upstreams are.
fn route_candidate(
    target: &str,
    config: &crate::config::Config,
    domain: &str,
) -> Option<Candidate> {
    let (host, port) = crate::config::parse_host_port(target)?;
    Some(Candidate {
        host: host.into(),
        port,
        tls: config.host(domain).map(|h| h.tls).unwrap_or_default(),
        priority: 0,
        weight: 1,
    })
}

/// Longest a handler waits for the core; the core always answers within
/// `wait`, this only guards against a driver that died.
fn reply_timeout(state: &AppState) -> Duration {
    let settings = state.upstreams.settings();
    Duration::from_secs(u64::from(state.config.bosh.max_wait_secs))
        + settings.connect_timeout * 4
        + settings.handshake_timeout
        + Duration::from_secs(10)
}

/// Tells the session when a held request's HTTP exchange is dropped unanswered.
struct GoneGuard<'a> {
    session: &'a BoshShared,
    req_id: crate::bosh::ReqId,
    armed: bool,
}

impl Drop for GoneGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.session.gone(self.req_id);
        }
    }
}

async fn wait_reply(session: &Arc<BoshShared>, submitted: Submitted, limit: Duration) -> Reply {
    let (req_id, rx) = match submitted {
        Submitted::Ready(reply) => return reply,
        Submitted::Waiting(req_id, rx) => (req_id, rx),
    };
    let mut guard = GoneGuard {
        session,
        req_id,
        armed: true,
    };
    let result = tokio::time::timeout(limit, rx).await;
    guard.armed = false;
    match result {
        Ok(Ok(reply)) => reply,
        _ => {
            tracing::error!(sid = %session.sid(), req_id, "no answer from the session core");
            session.gone(req_id);
            terminal(Condition::InternalServerError)
        }
    }
}

fn terminal(condition: Condition) -> Reply {
    Reply {
        status: 200,
        body: terminate_without_session(condition),
        content_type: None,
    }
}

fn reply_response(reply: Reply, cors: Option<HeaderValue>, state: &AppState) -> Response {
    let content_type = reply
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    // BOSH-10: intermediaries must never replay a response.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(origin) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if state.cors.varies() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

enum BodyReadError {
    TooLarge,
    Io,
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyReadError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyReadError::TooLarge),
        Err(_) => Err(BodyReadError::Io),
    }
}

#[cfg(test)]
mod tests {
    use super::route_target;

    #[test]
    fn bosh_22_route_is_split_at_first_and_last_colon() {
        assert_eq!(
            route_target("xmpp:example.com:9999").as_deref(),
            Some("example.com:9999")
        );
        assert_eq!(
            route_target("xmpp:[2001:db8::1]:5222").as_deref(),
            Some("[2001:db8::1]:5222")
        );
        assert_eq!(route_target("http:example.com:80"), None);
        assert_eq!(route_target("xmpp:example.com"), None);
    }
}
