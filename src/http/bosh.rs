//! The BOSH endpoint: POST bodies in, `<body/>` responses out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tracing::Instrument;

use crate::admission::{Refusal, SessionSlot};
use crate::bosh::response::terminate_without_session;
use crate::bosh::{BoshRequest, BoshSession, Condition, parse_request};
use crate::clock;
use crate::cluster::{Cluster, ForwardError, Owner};
use crate::http::{AppState, ConnInfo, Response, Runtime, plain};
use crate::metrics::Limit;
use crate::relay::bosh::{BoshRelay, BoshShared, Reply, Submitted};
use crate::relay::driver::SessionContext;
use crate::relay::{RouteRequest, drive};
use crate::sessions::{SessionInfo, Transport};
use crate::upstream::proxy_protocol::ClientInfo;
use crate::upstream::route::Candidate;

const DEFAULT_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// Why a request body could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than `bosh.max_body_bytes`.
    TooLarge,
    /// Broken or not a valid HTTP body.
    Io,
}

/// `POST` on a BOSH path.
pub async fn post(
    state: &Arc<AppState>,
    conn: &ConnInfo,
    headers: HeaderMap,
    body: Result<Bytes, BodyError>,
) -> Response {
    let runtime = state.runtime();
    let cors = runtime.cors.allow(&headers);
    let (bytes, request) = match read(state, &runtime, body, cors.clone()) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    if let Some(cluster) = state.cluster.as_ref()
        && let Some(response) =
            // Boxed, like `create` below: a rare path whose future would
            // otherwise size every parked request's.
            Box::pin(in_cluster(
                state, cluster, &runtime, conn, &headers, &bytes, &request,
            ))
            .await
    {
        return response;
    }
    // Only session creation needs the headers (the client's address); a
    // parked request keeps nothing of its HTTP head.
    let client = request
        .sid
        .is_none()
        .then(|| Box::new(runtime.client_info(Some(conn), &headers, "bosh")));
    drop(headers);
    drop(bytes);
    answer(state, &runtime, request, client, cors).await
}

/// A BOSH request another replica forwarded (cluster listener): the client
/// is who that replica says, and it is handled here whatever its sid, so
/// no request travels more than one hop.
pub async fn post_forwarded(
    state: &Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BodyError>,
) -> Response {
    let runtime = state.runtime();
    let cors = runtime.cors.allow(&headers);
    let (_, request) = match read(state, &runtime, body, cors.clone()) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let client = request
        .sid
        .is_none()
        .then(|| Box::new(crate::cluster::client_from(&headers)));
    if let Some(sid) = request.sid.as_deref() {
        let from = headers
            .get(crate::cluster::FROM_HEADER)
            .and_then(|v| v.to_str().ok());
        tracing::trace!(sid, from, "request forwarded by a peer");
    }
    drop(headers);
    answer(state, &runtime, request, client, cors).await
}

/// The body and the parsed request, or the answer when there is none.
/// The request is boxed: async frames keep a moved-from argument's storage,
/// so a parked request would otherwise hold three copies of it.
fn read(
    state: &AppState,
    runtime: &Runtime,
    body: Result<Bytes, BodyError>,
    cors: Option<HeaderValue>,
) -> Result<(Bytes, Box<BoshRequest>), Box<Response>> {
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            // BOSH-12: never parse a partial entity.
            state.metrics.limit_hit(Limit::BoshBodyBytes);
            let mut response =
                reply_response(state, runtime, terminal(Condition::PolicyViolation), cors);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(Box::new(response));
        }
        Err(BodyError::Io) => {
            count_outcome(state, "http_400");
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "unreadable request body\n",
            )));
        }
    };
    match parse_request(&bytes, runtime.client_xml) {
        Ok(request) => Ok((bytes, Box::new(request))),
        Err(e) => {
            // BOSH-86: no session can be told; the client gets bad-request.
            tracing::debug!("unreadable BOSH request: {e}");
            Err(Box::new(reply_response(
                state,
                runtime,
                terminal(Condition::BadRequest),
                cors,
            )))
        }
    }
}

/// Cluster mode: the answer of the replica owning the session, or
/// `item-not-found` when that replica is gone (never a hang); while
/// draining, a new session goes to a peer that is not. `None`: handle here.
async fn in_cluster(
    state: &AppState,
    cluster: &Cluster,
    runtime: &Runtime,
    conn: &ConnInfo,
    headers: &HeaderMap,
    bytes: &Bytes,
    request: &BoshRequest,
) -> Option<Response> {
    let limit = reply_timeout(runtime) + cluster.forward_timeout();
    let forwarded = |outcome: &str| {
        state
            .metrics
            .cluster_forwarded
            .with_label_values(&[outcome])
            .inc();
    };
    let cors = || runtime.cors.allow(headers);
    match request.sid.as_deref() {
        Some(sid) => {
            let addr = match cluster.owner(sid) {
                Owner::Local => return None,
                Owner::Peer(addr) => addr,
                Owner::Unknown => {
                    forwarded("unknown_node");
                    tracing::info!(sid, "no replica owns this session: item-not-found");
                    let reply = terminal(Condition::ItemNotFound);
                    return Some(reply_response(state, runtime, reply, cors()));
                }
            };
            let client = runtime.client_info(Some(conn), headers, "bosh");
            match cluster
                .forward_bosh(addr, bytes.clone(), &client, headers, limit)
                .await
            {
                Ok(answer) => {
                    forwarded("ok");
                    Some(crate::cluster::relay(answer))
                }
                Err(e) => {
                    forwarded(e.outcome());
                    tracing::warn!(sid, "forwarding failed, item-not-found: {e}");
                    cluster.refresh_soon();
                    let reply = terminal(Condition::ItemNotFound);
                    Some(reply_response(state, runtime, reply, cors()))
                }
            }
        }
        None if state.is_draining() => {
            let client = runtime.client_info(Some(conn), headers, "bosh");
            for addr in cluster.ready_peers() {
                match cluster
                    .forward_bosh(addr, bytes.clone(), &client, headers, limit)
                    .await
                {
                    Ok(answer) => {
                        forwarded("ok");
                        tracing::info!(peer = %addr, "draining: new session forwarded");
                        return Some(crate::cluster::relay(answer));
                    }
                    // Nothing was sent: the next peer may take it.
                    Err(e @ ForwardError::Unreachable { .. }) => {
                        forwarded(e.outcome());
                        tracing::warn!("draining, new session not forwarded: {e}");
                    }
                    // Sent, maybe created there: not again elsewhere.
                    Err(e) => {
                        forwarded(e.outcome());
                        tracing::warn!("draining, new session not forwarded: {e}");
                        return None;
                    }
                }
            }
            forwarded("no_peer");
            None
        }
        None => None,
    }
}

/// The answer of this replica to a parsed request.
async fn answer(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    request: Box<BoshRequest>,
    client: Option<Box<ClientInfo>>,
    cors: Option<HeaderValue>,
) -> Response {
    let reply = match request.sid.as_deref() {
        None if state.is_draining() => {
            // Draining: new sessions belong on another replica.
            terminal(Condition::SystemShutdown)
        }
        None => {
            let client = client.map(|c| *c).unwrap_or_default();
            let ip = client.source.map(|s| s.ip());
            match state
                .admission
                .admit(ip, &runtime.config.limits, clock::now())
            {
                // Boxed: once per session, and inline it would make every
                // parked request's future (kept on the heap while it waits)
                // twice the size it needs.
                Ok(slot) => Box::pin(create(state, runtime, *request, client, slot)).await,
                Err(refusal) => return refused(state, runtime, refusal, cors),
            }
        }
        Some(sid) => match state.sessions.bosh(sid) {
            Some((info, session)) => {
                info.touch(clock::now());
                if info
                    .domain()
                    .is_some_and(|d| runtime.upstreams.serves(d).is_none())
                {
                    // BOSH-82b: a reload stopped serving the domain.
                    session.host_gone(clock::now());
                }
                if !request.payload.is_empty() {
                    let window = usize::from(runtime.config.bosh.max_hold) + 1;
                    session.room_for_payload(window).await;
                }
                let submitted = session.submit(clock::now(), *request);
                wait_reply(&session, submitted, reply_timeout(runtime)).await
            }
            None => match state.sessions.retired_bosh(sid) {
                // Ended, but a repeated rid still gets its cached response.
                Some(session) => match session.submit(clock::now(), *request) {
                    Submitted::Ready(reply) => reply,
                    Submitted::Waiting(req_id, _) => {
                        session.gone(req_id);
                        terminal(Condition::ItemNotFound)
                    }
                },
                None => terminal(Condition::ItemNotFound),
            },
        },
    };
    reply_response(state, runtime, reply, cors)
}

/// `OPTIONS` on a BOSH path: the CORS preflight (BOSH-9).
pub fn preflight(state: &AppState, headers: &HeaderMap) -> Response {
    let mut response = plain(StatusCode::OK, "");
    let h = response.headers_mut();
    let runtime = state.runtime();
    if let Some(origin) = runtime.cors.allow(headers) {
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
    if runtime.cors.varies() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET` on a BOSH path: a short page for people who open the URL (BOSH-2).
pub fn info() -> Response {
    let page = "<!DOCTYPE html><html><head><title>xmpp-edge BOSH</title></head><body>\
        <h1>xmpp-edge</h1><p>This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206). \
        Point an XMPP client such as Converse.js or Strophe.js at this URL; \
        it expects HTTP POST requests.</p></body></html>";
    let mut response = plain(StatusCode::OK, page);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Session creation (BOSH-18..38).
async fn create(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    request: BoshRequest,
    client: ClientInfo,
    slot: SessionSlot,
) -> Reply {
    let Some(to) = request
        .stream
        .to
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    else {
        return terminal(Condition::ImproperAddressing);
    };
    let domain = to.trim().trim_end_matches('.').to_ascii_lowercase();
    if runtime.upstreams.serves(&domain).is_none() {
        tracing::info!(domain, "session refused: domain not served");
        return terminal(Condition::HostUnknown);
    }
    let mut target = None;
    let allowlist = &runtime.config.bosh.route_allowlist;
    if let Some(route) = request.stream.route.as_deref()
        && !allowlist.is_empty()
    {
        // BOSH-22, BOSH-23: only allow-listed targets, never an open relay.
        match route_target(route).filter(|t| allowlist.iter().any(|a| a.eq_ignore_ascii_case(t))) {
            Some(allowed) => target = route_candidate(&allowed, &runtime.config, &domain),
            None => {
                tracing::info!(route, "session refused: route not allowed");
                return terminal(Condition::HostUnknown);
            }
        }
    }
    let sid = state.new_sid();
    let core = BoshSession::create(
        Arc::clone(&runtime.bosh_limits),
        sid.to_string().into(),
        domain.clone().into(),
        1,
        request,
        clock::now(),
    );
    let (session, creation) = BoshShared::new(sid, core, 1);
    let info = Arc::new(SessionInfo::new(sid, Transport::Bosh, client.source));
    info.touch(clock::now());
    state
        .sessions
        .insert(Arc::clone(&info), Some(Arc::clone(&session)));
    let span = tracing::info_span!("bosh", %sid);
    span.in_scope(|| tracing::info!(domain, client = ?client.source, "session created"));
    let route = RouteRequest {
        domain: domain.into(),
        client,
        target,
    };
    let relay = BoshRelay::new(Arc::clone(&session), route, Arc::clone(&state.sessions));
    let context = SessionContext {
        info,
        table: Arc::clone(&state.sessions),
        metrics: Arc::clone(&state.metrics),
        slot: Some(slot),
        connection: None,
    };
    tokio::spawn(drive(Box::new(relay), Arc::clone(&runtime.upstreams), context).instrument(span));
    wait_reply(
        &session,
        Submitted::Waiting(1, creation),
        reply_timeout(runtime),
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
fn reply_timeout(runtime: &Runtime) -> Duration {
    let settings = runtime.upstreams.settings();
    Duration::from_secs(u64::from(runtime.config.bosh.max_wait_secs))
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

/// A session refused by `[limits]`: 503 when xmpp-edge is full (another
/// replica may have room), 429 for one address; both say when to retry.
fn refused(
    state: &AppState,
    runtime: &Runtime,
    refusal: Refusal,
    cors: Option<HeaderValue>,
) -> Response {
    tracing::info!("session refused: {refusal}");
    state.metrics.limit_hit(refusal.limit());
    count_outcome(state, "http_error");
    let status =
        StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = plain(status, format!("{refusal}\n"));
    let h = response.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(origin) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if runtime.cors.varies() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// Counts a request's outcome (`xmpp_edge_bosh_requests_total`).
fn count_outcome(state: &AppState, outcome: &str) {
    state.metrics.bosh_request(outcome);
}

fn reply_response(
    state: &AppState,
    runtime: &Runtime,
    reply: Reply,
    cors: Option<HeaderValue>,
) -> Response {
    let outcome = if reply.status != 200 {
        "http_error"
    } else if memchr::memmem::find(&reply.body, b"type='terminate'").is_some() {
        "terminate"
    } else if memchr::memmem::find(&reply.body, b"</body>").is_none() {
        "empty"
    } else {
        "data"
    };
    count_outcome(state, outcome);
    let content_type = reply
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    let mut response = Response::new(reply.body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    // BOSH-10: intermediaries must never replay a response.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(origin) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if runtime.cors.varies() {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
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
