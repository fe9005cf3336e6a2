//! The BOSH session state machine (XEP-0124 with XEP-0206), without I/O.
//!
//! A [`BoshSession`] sees numbered HTTP requests ([`ReqId`]) and upstream
//! events, and emits responses for those requests and actions for the
//! upstream stream. It owns no sockets, tasks or clocks: every input carries
//! `now`, and [`BoshSession::poll_timeout`] says when
//! [`BoshSession::handle_timeout`] is due (early or repeated calls are no-ops).
//!
//! Callers feed inputs, then drain [`BoshSession::poll_response`] (answer the
//! HTTP requests named) and [`BoshSession::poll_upstream`] (write upstream, in
//! order), then re-arm their timer from [`BoshSession::poll_timeout`].
//!
//! ```text
//!  create ──► creation request held ──features or wait──► active ─┬─ client terminate ──► ended
//!                    │                                            ├─ terminal condition ─► ended
//!                    └── upstream failure ──► ended               └─ inactivity ─────────► ended
//!  (a terminal condition with no request held is kept for the next request, BOSH-79)
//! ```
//!
//! Invariants: payloads go upstream strictly in rid order (BOSH-40); requests
//! are answered in rid order and at most `hold` stay held (BOSH-42, BOSH-45);
//! client-bound data rides on the oldest live held request; every response
//! that may be asked for again is cached until the client can no longer
//! repeat its rid (BOSH-54..57).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bosh::condition::Condition;
use crate::bosh::keys::KeyChain;
use crate::bosh::request::{BoshRequest, PayloadError, Version};
use crate::bosh::response::{BodyAttrs, BodyKind, CreationAttrs, StreamInfo, write_body};
use crate::stanza::{ElementKind, StandaloneContext, Stanza, StreamHeader};
use crate::upstream::{OpenStream, UpstreamAction, UpstreamEvent, UpstreamFailure};
use crate::xml::reserialize::ClientXmlError;

/// Identifies one HTTP request while the core may still answer it.
pub type ReqId = u64;

/// Server-side limits every session is negotiated against (from config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoshLimits {
    /// Longest `wait` granted, seconds; also used when the client sends none.
    pub max_wait: u16,
    /// Largest `hold` granted.
    pub max_hold: u8,
    /// `inactivity`, seconds.
    pub inactivity: u16,
    /// `polling`, seconds: shortest interval between empty polls.
    pub polling: u16,
    /// `maxpause`, seconds; 0 disables pausing.
    pub maxpause: u16,
    /// Enforce the overactivity rules (BOSH-70..72, BOSH-74).
    pub enforce_overactivity: bool,
    /// Client-bound bytes queued before upstream reads pause (BOSH-48).
    pub max_queued_bytes: usize,
    /// How often one rid may be repeated before `policy-violation` (BOSH-58).
    pub max_rid_repeats: u8,
}

impl Default for BoshLimits {
    fn default() -> Self {
        Self {
            max_wait: 50,
            max_hold: 1,
            inactivity: 60,
            polling: 2,
            maxpause: 120,
            enforce_overactivity: true,
            max_queued_bytes: 512 * 1024,
            max_rid_repeats: 8,
        }
    }
}

/// An answer for one HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request being answered.
    pub req_id: ReqId,
    /// HTTP status: 200, or 400/403/404 for legacy clients (BOSH-85).
    pub status: u16,
    /// The complete `<body/>`.
    pub body: Bytes,
}

/// Why a session ended, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent `type='terminate'`.
    ClientTerminate,
    /// No request for `inactivity` seconds (or past a pause).
    Inactivity,
    /// The server closed its stream without an error.
    UpstreamClosed,
    /// A terminal condition was sent (or was pending when the session expired).
    Condition(Condition),
}

/// Plain counters, pulled by the metrics layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests received, repeats included.
    pub requests: u64,
    /// Responses sent again from the cache (BOSH-54).
    pub retransmissions: u64,
    /// Elements relayed to the client.
    pub elements_to_client: u64,
    /// Bytes of elements relayed to the client (as received).
    pub bytes_to_client: u64,
    /// Payload elements forwarded upstream.
    pub elements_to_upstream: u64,
    /// Payload bytes forwarded upstream.
    pub bytes_to_upstream: u64,
    /// Requests refused for their rid (beyond the window, or too old).
    pub rid_errors: u64,
    /// Payloads refused for nesting too deep.
    pub too_deep: u64,
    /// Payloads refused for too many attributes on an element.
    pub too_many_attributes: u64,
    /// Sessions ended for too many or too frequent requests.
    pub overactivity: u64,
}

/// What the session agreed with the client at creation.
#[derive(Clone, Copy, Debug)]
struct Negotiated {
    wait: u16,
    hold: u8,
    requests: u8,
    inactivity: u16,
    polling: u16,
    maxpause: Option<u16>,
    ver: Version,
    /// No `ver` on creation: HTTP status codes instead of some conditions.
    legacy: bool,
    /// The client asked for acknowledgements (`ack='1'`).
    acks: bool,
    /// `wait='0'` or `hold='0'` (BOSH-72).
    polling_session: bool,
}

#[derive(Debug)]
struct Held {
    rid: u64,
    req_id: ReqId,
    deadline: Instant,
    /// The HTTP request is gone: never put data on it.
    orphaned: bool,
    creation: bool,
    report: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Parked {
    rid: u64,
    req_id: ReqId,
    request: BoshRequest,
}

#[derive(Debug)]
struct Cached {
    rid: u64,
    status: u16,
    body: Bytes,
    sent_at: Instant,
}

/// How long a session ended by an operator or a reload waits for the
/// client's next request to carry its terminal body.
const OPERATOR_END_GRACE_SECS: u64 = 2;

/// A terminal body kept for the next request when none was held (BOSH-79).
#[derive(Debug)]
struct PendingTerminal {
    status: u16,
    body: Bytes,
    reason: EndReason,
}

#[derive(Debug, Default)]
struct UpstreamState {
    header: Option<StreamHeader>,
    /// `from`/`authid`/`xmpp:version` already reached the client.
    announced: bool,
    sasl_success: bool,
    /// No more upstream actions: Close or Abort was emitted.
    finished: bool,
}

/// Who caused a termination (BOSH-79 decides who gets which condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// The server or the connection to it.
    Upstream,
    /// A client request, which may not be held (out of window, repeated).
    Request(ReqId),
}

/// One BOSH session.
#[derive(Debug)]
pub struct BoshSession {
    limits: Arc<BoshLimits>,
    sid: Box<str>,
    neg: Negotiated,
    content_type: Option<Arc<str>>,
    to: Box<str>,
    from: Option<Box<str>>,
    lang: Option<Box<str>>,
    xmpp_version: Box<str>,
    upstream: UpstreamState,
    /// Highest rid such that every rid up to it has arrived.
    last_rid: u64,
    /// Highest rid answered.
    last_answered: u64,
    held: VecDeque<Held>,
    reorder: Vec<Parked>,
    cache: VecDeque<Cached>,
    outbox: VecDeque<Stanza>,
    outbox_bytes: usize,
    pending_terminal: Option<PendingTerminal>,
    keys: KeyChain,
    /// Inactivity or pause deadline; only counts while nothing is held (BOSH-66).
    idle_deadline: Option<Instant>,
    last_arrival: Option<Instant>,
    last_response_empty: bool,
    repeats: (u64, u8),
    responses: VecDeque<Response>,
    actions: VecDeque<UpstreamAction>,
    ended: Option<EndReason>,
    /// Ended by xmpp-edge or the server (not the client): the response
    /// cache outlives the session for a while, so a client whose last
    /// responses were cut can still fetch them again (see [`Self::lingers`]).
    linger: bool,
    stats: SessionStats,
}

/// Queued stanzas smaller than this are copied out of the shared read buffer.
const UNSHARE_BELOW: usize = 2048;

// === impl BoshSession ===

impl BoshSession {
    /// Starts a session from a creation request whose `to` the caller has
    /// already checked (BOSH-20, BOSH-21) and normalised.
    ///
    /// The creation request stays held until the upstream features arrive or
    /// `wait` runs out (BOSH-38); the first upstream action opens the stream.
    pub fn create(
        limits: Arc<BoshLimits>,
        sid: Box<str>,
        to: Box<str>,
        req_id: ReqId,
        request: BoshRequest,
        now: Instant,
    ) -> Self {
        let attrs = request.stream;
        let hold = attrs.hold.unwrap_or(1).min(limits.max_hold);
        let wait = attrs.wait.unwrap_or(limits.max_wait).min(limits.max_wait);
        let polling_session = hold == 0 || wait == 0;
        let inactivity = if polling_session {
            limits.inactivity.max(limits.polling.saturating_mul(2))
        } else {
            limits.inactivity
        };
        let neg = Negotiated {
            wait,
            hold,
            requests: hold.saturating_add(1),
            inactivity,
            polling: limits.polling,
            maxpause: (limits.maxpause > 0).then_some(limits.maxpause),
            ver: attrs.ver.map_or(Version::OURS, |v| v.min(Version::OURS)),
            legacy: attrs.ver.is_none(),
            acks: request.ack == Some(1),
            polling_session,
        };
        let content_type = attrs
            .content
            .as_deref()
            .filter(|c| is_header_safe(c))
            .map(Arc::from);
        let xmpp_version = attrs.xmpp_version.unwrap_or_else(|| Box::from("1.0"));
        let mut session = Self {
            limits,
            sid,
            neg,
            content_type,
            to,
            from: attrs.from,
            lang: attrs.lang,
            xmpp_version,
            upstream: UpstreamState::default(),
            last_rid: request.rid,
            last_answered: 0,
            held: VecDeque::with_capacity(2),
            reorder: Vec::new(),
            cache: VecDeque::new(),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            pending_terminal: None,
            keys: KeyChain::new(request.newkey.as_deref()),
            idle_deadline: None,
            last_arrival: Some(now),
            last_response_empty: false,
            repeats: (0, 0),
            responses: VecDeque::new(),
            actions: VecDeque::new(),
            ended: None,
            linger: false,
            stats: SessionStats {
                requests: 1,
                ..SessionStats::default()
            },
        };
        session
            .actions
            .push_back(UpstreamAction::Open(session.open_params(None, false)));
        session.held.push_back(Held {
            rid: request.rid,
            req_id,
            deadline: now + secs(wait),
            orphaned: false,
            creation: true,
            report: None,
        });
        session.expire_held(now);
        session
    }

    // --- accessors ---

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The response `Content-Type` the client asked for, if any (BOSH-4).
    pub fn content_type(&self) -> Option<&Arc<str>> {
        self.content_type.as_ref()
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Whether the session has ended but still answers repeated rids from
    /// its response cache: after an end the client did not ask for
    /// (upstream failure or close, shutdown, kick), the responses just
    /// before the terminal one may have been lost on the wire, and a client
    /// that sends their rid again must get them, not `item-not-found`
    /// (BOSH-54 over BOSH-79's "then forget the session"). New rids get
    /// `item-not-found`. The caller decides how long this lasts.
    pub fn lingers(&self) -> bool {
        self.ended.is_some() && self.linger
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The XMPP domain of the session.
    pub fn domain(&self) -> &str {
        &self.to
    }

    /// Whether the driver should read more from the upstream (backpressure, BOSH-48).
    pub fn wants_upstream_data(&self) -> bool {
        self.ended.is_none()
            && !self.upstream.finished
            && self.outbox_bytes < self.limits.max_queued_bytes
    }

    /// Number of requests currently held (for the session table).
    pub fn held_requests(&self) -> usize {
        self.held.len()
    }

    /// Bytes of client-bound elements waiting for a request.
    pub fn queued_bytes(&self) -> usize {
        self.outbox_bytes
    }

    // --- outputs ---

    /// The next response to deliver.
    pub fn poll_response(&mut self) -> Option<Response> {
        crate::stanza::pop_or_release(&mut self.responses)
    }

    /// The next upstream action, in order.
    pub fn poll_upstream(&mut self) -> Option<UpstreamAction> {
        crate::stanza::pop_or_release(&mut self.actions)
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        let held = self.held.iter().map(|h| h.deadline).min();
        let idle = self
            .idle_deadline
            .filter(|_| self.held.iter().all(|h| h.orphaned));
        match (held, idle) {
            (Some(h), Some(i)) => Some(h.min(i)),
            (h, i) => h.or(i),
        }
    }

    // --- inputs ---

    /// A parsed request for this session arrived as HTTP request `req_id`.
    pub fn handle_request(&mut self, now: Instant, req_id: ReqId, request: BoshRequest) {
        self.stats.requests += 1;
        if self.ended.is_some() {
            if self.linger && self.answer_from_cache(req_id, request.rid) {
                return;
            }
            let status = self.status_for(Condition::ItemNotFound);
            let body = crate::bosh::response::terminate_without_session(Condition::ItemNotFound);
            self.responses.push_back(Response {
                req_id,
                status,
                body,
            });
            return;
        }
        if self.pending_terminal.is_some()
            && request.rid <= self.last_rid
            && self.answer_from_cache(req_id, request.rid)
        {
            // A repeat of a response that may carry the last stanzas: the
            // terminal body waits for a new rid, never takes its place.
            return;
        }
        if let Some(pending) = self.pending_terminal.take() {
            if !self.outbox.is_empty() && request.rid == self.last_rid + 1 {
                // What the server sent before it went away comes first.
                self.last_rid = request.rid;
                self.held.push_back(Held {
                    rid: request.rid,
                    req_id,
                    deadline: now,
                    orphaned: false,
                    creation: false,
                    report: None,
                });
                self.answer_oldest(now);
                self.pending_terminal = Some(pending);
                return;
            }
            if self.linger {
                self.cache_response(request.rid, pending.status, pending.body.clone(), now);
            }
            self.responses.push_back(Response {
                req_id,
                status: pending.status,
                body: pending.body,
            });
            self.finish(pending.reason);
            return;
        }
        let rid = request.rid;
        if rid <= self.last_rid || self.reorder.iter().any(|p| p.rid == rid) {
            self.handle_repeat(now, req_id, rid);
            return;
        }
        let extra = u64::from(request.terminate || request.pause.is_some());
        if rid > self.last_rid + u64::from(self.neg.requests) + extra {
            // BOSH-53: beyond the window.
            self.stats.rid_errors += 1;
            self.terminate(
                now,
                Some(Condition::ItemNotFound),
                None,
                Cause::Request(req_id),
            );
            return;
        }
        if let Some(condition) = self.overactivity(now, &request) {
            tracing::info!(sid = %self.sid, rid, "overactivity: {condition}");
            self.stats.overactivity += 1;
            self.terminate(now, Some(condition), None, Cause::Request(req_id));
            return;
        }
        self.last_arrival = Some(now);
        if rid != self.last_rid + 1 {
            // BOSH-46: wait for the gap to fill; never answered before it does.
            let at = self.reorder.partition_point(|p| p.rid < rid);
            self.reorder.insert(
                at,
                Parked {
                    rid,
                    req_id,
                    request,
                },
            );
            return;
        }
        self.process_in_order(now, req_id, request);
        while self.ended.is_none()
            && self
                .reorder
                .first()
                .is_some_and(|p| p.rid == self.last_rid + 1)
        {
            let parked = self.reorder.remove(0);
            self.process_in_order(now, parked.req_id, parked.request);
        }
    }

    /// The HTTP request `req_id` went away before it was answered.
    pub fn handle_request_gone(&mut self, now: Instant, req_id: ReqId) {
        if let Some(held) = self.held.iter_mut().find(|h| h.req_id == req_id) {
            held.orphaned = true;
            if self.ended.is_none()
                && self.idle_deadline.is_none()
                && self.held.iter().all(|h| h.orphaned)
            {
                // BOSH-66: no client waits on what is held any more; it has
                // `inactivity` to come back, not `wait` + `inactivity`.
                self.idle_deadline = Some(now + secs(self.neg.inactivity));
            }
        } else if let Some(at) = self.reorder.iter().position(|p| p.req_id == req_id) {
            // Its payload was never forwarded; the client will send the rid again.
            self.reorder.remove(at);
        }
    }

    /// Something happened upstream.
    pub fn handle_upstream(&mut self, now: Instant, event: UpstreamEvent) {
        if self.ended.is_some() || self.upstream.finished {
            return;
        }
        match event {
            UpstreamEvent::StreamOpened(header) => self.upstream.header = Some(header),
            UpstreamEvent::Element(stanza) => match stanza.kind() {
                ElementKind::StreamError => {
                    // BOSH-83, BOSH-91: relayed whole, never as a look-alike condition.
                    self.finish_upstream(UpstreamAction::Close);
                    self.terminate(
                        now,
                        Some(Condition::RemoteStreamError),
                        Some(stanza),
                        Cause::Upstream,
                    );
                }
                kind => {
                    if kind == ElementKind::SaslSuccess {
                        self.upstream.sasl_success = true;
                    }
                    self.queue(stanza);
                    self.flush_outbox(now);
                }
            },
            UpstreamEvent::StreamClosed => {
                // BOSH-99, UP-48: answer the server's close with ours.
                self.finish_upstream(UpstreamAction::Close);
                self.terminate(now, None, None, Cause::Upstream);
            }
            UpstreamEvent::Failed(failure) => {
                tracing::info!(sid = %self.sid, "upstream failed: {failure}");
                // DNS says the domain does not exist: the client named a bad host.
                let condition = if failure == UpstreamFailure::HostUnknown {
                    Condition::HostUnknown
                } else {
                    Condition::RemoteConnectionFailed
                };
                self.finish_upstream(UpstreamAction::Abort);
                self.terminate(now, Some(condition), None, Cause::Upstream);
            }
        }
    }

    /// Deadlines at or before `now` fire; anything else is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.expire_held(now);
        let nobody_waits = self.held.iter().all(|h| h.orphaned);
        if nobody_waits && self.idle_deadline.is_some_and(|d| d <= now) {
            // BOSH-66: the client is gone; a pending terminal body dies with it.
            tracing::debug!(sid = %self.sid, "inactivity timeout");
            for parked in std::mem::take(&mut self.reorder) {
                let body =
                    crate::bosh::response::terminate_without_session(Condition::ItemNotFound);
                let status = self.status_for(Condition::ItemNotFound);
                self.responses.push_back(Response {
                    req_id: parked.req_id,
                    status,
                    body,
                });
            }
            let reason = self
                .pending_terminal
                .take()
                .map_or(EndReason::Inactivity, |p| p.reason);
            // Nobody is left to ask for anything again.
            self.linger = false;
            // BOSH-104: no closing tag, so the server may keep the session resumable.
            self.finish_upstream(UpstreamAction::Abort);
            self.finish(reason);
        }
    }

    /// xmpp-edge is shutting down: every held request gets `system-shutdown` (BOSH-82l).
    pub fn handle_shutdown(&mut self, now: Instant) {
        // As in end_served: a terminal body already waiting is kept.
        if self.ended.is_some() || self.pending_terminal.is_some() {
            return;
        }
        self.flush_outbox(now);
        self.finish_upstream(UpstreamAction::Abort);
        self.terminate(now, Some(Condition::SystemShutdown), None, Cause::Upstream);
    }

    /// An operator ends the session: what is queued still goes out, the
    /// server's stream is closed properly (nothing to resume), and the client
    /// gets `policy-violation`.
    pub fn handle_kick(&mut self, now: Instant) {
        self.end_served(now, Condition::PolicyViolation);
    }

    /// The session's domain is no longer served (a reload removed it): the
    /// client gets `host-gone` (BOSH-82b), the server a proper close.
    pub fn handle_host_gone(&mut self, now: Instant) {
        self.end_served(now, Condition::HostGone);
    }

    fn end_served(&mut self, now: Instant, condition: Condition) {
        // A terminal body already waiting (e.g. the server's <stream:error>)
        // says more than ours would; the client's next request gets it.
        if self.ended.is_some() || self.pending_terminal.is_some() {
            return;
        }
        self.flush_outbox(now);
        self.finish_upstream(UpstreamAction::Close);
        self.terminate(now, Some(condition), None, Cause::Upstream);
        if self.pending_terminal.is_some() {
            // Nothing live was held: the terminal body waits for the next
            // request, but an ended session must not stay listed for a whole
            // `inactivity`; a client that is still there polls within this.
            self.idle_deadline = Some(now + Duration::from_secs(OPERATOR_END_GRACE_SECS));
        }
    }

    // --- request processing ---

    fn handle_repeat(&mut self, now: Instant, req_id: ReqId, rid: u64) {
        if self.repeats.0 == rid {
            self.repeats.1 = self.repeats.1.saturating_add(1);
        } else {
            self.repeats = (rid, 1);
        }
        if self.repeats.1 > self.limits.max_rid_repeats {
            // BOSH-58.
            self.terminate(
                now,
                Some(Condition::PolicyViolation),
                None,
                Cause::Request(req_id),
            );
            return;
        }
        let older = if let Some(held) = self.held.iter_mut().find(|h| h.rid == rid) {
            let older = (!held.orphaned).then_some(held.req_id);
            held.req_id = req_id;
            held.orphaned = false;
            // Someone waits again: inactivity stops (BOSH-66).
            self.idle_deadline = None;
            Some(older)
        } else if let Some(parked) = self.reorder.iter_mut().find(|p| p.rid == rid) {
            Some(Some(std::mem::replace(&mut parked.req_id, req_id)))
        } else {
            None
        };
        match older {
            // BOSH-55: the older copy gets a recoverable error, the new one takes its place.
            Some(Some(older_req)) => {
                let attrs = BodyAttrs {
                    kind: BodyKind::RecoverableError,
                    ..BodyAttrs::NORMAL
                };
                let body = write_body(&attrs, std::iter::empty(), &StandaloneContext::default());
                self.responses.push_back(Response {
                    req_id: older_req,
                    status: 200,
                    body,
                });
            }
            Some(None) => {}
            None => match self.cache.iter().find(|c| c.rid == rid) {
                // BOSH-54: the same bytes again, nothing forwarded twice.
                Some(cached) => {
                    self.stats.retransmissions += 1;
                    let response = Response {
                        req_id,
                        status: cached.status,
                        body: cached.body.clone(),
                    };
                    self.responses.push_back(response);
                }
                // BOSH-56.
                None => {
                    self.stats.rid_errors += 1;
                    self.terminate(
                        now,
                        Some(Condition::ItemNotFound),
                        None,
                        Cause::Request(req_id),
                    );
                }
            },
        }
    }

    /// Answers `req_id` with the cached response for `rid`, if there is one (BOSH-54).
    fn answer_from_cache(&mut self, req_id: ReqId, rid: u64) -> bool {
        let Some(cached) = self.cache.iter().find(|c| c.rid == rid) else {
            return false;
        };
        let response = Response {
            req_id,
            status: cached.status,
            body: cached.body.clone(),
        };
        self.stats.retransmissions += 1;
        self.responses.push_back(response);
        true
    }

    /// BOSH-70..72: returns the condition to end the session with, if any.
    fn overactivity(&self, now: Instant, request: &BoshRequest) -> Option<Condition> {
        if !self.limits.enforce_overactivity || request.terminate || request.pause.is_some() {
            return None;
        }
        let live_held = self.held.iter().filter(|h| !h.orphaned).count();
        let outstanding = live_held + self.reorder.len() + 1;
        let requests = usize::from(self.neg.requests);
        if outstanding > requests {
            return Some(Condition::PolicyViolation);
        }
        // "The last request" of XEP-0124 §11 is the highest rid: an empty poll
        // overtaken on the wire by the data request sent after it is fine.
        let is_last = self.reorder.last().is_none_or(|p| p.rid < request.rid);
        let too_soon = self
            .last_arrival
            .is_some_and(|t| now.saturating_duration_since(t) < secs(self.neg.polling));
        let empty_poll = request.is_empty() && !request.restart;
        if empty_poll && too_soon && is_last {
            if outstanding == requests && !self.neg.polling_session {
                return Some(Condition::PolicyViolation);
            }
            if self.neg.polling_session && self.last_response_empty && live_held == 0 {
                return Some(Condition::PolicyViolation);
            }
        }
        None
    }

    fn process_in_order(&mut self, now: Instant, req_id: ReqId, request: BoshRequest) {
        self.last_rid = request.rid;
        if self
            .keys
            .verify(request.key.as_deref(), request.newkey.as_deref())
            .is_err()
        {
            // BOSH-81: the request is not processed.
            tracing::info!(sid = %self.sid, rid = request.rid, "key sequence mismatch");
            self.terminate(
                now,
                Some(Condition::ItemNotFound),
                None,
                Cause::Request(req_id),
            );
            return;
        }
        if let Some(error) = request.payload_error {
            tracing::info!(sid = %self.sid, rid = request.rid, "refused payload: {error}");
            // A limit is a policy; anything else is a malformed request.
            let condition = match error {
                PayloadError::Xml(ClientXmlError::TooDeep) => {
                    self.stats.too_deep += 1;
                    Condition::PolicyViolation
                }
                PayloadError::Xml(ClientXmlError::TooManyAttributes) => {
                    self.stats.too_many_attributes += 1;
                    Condition::PolicyViolation
                }
                _ => Condition::BadRequest,
            };
            self.terminate(now, Some(condition), None, Cause::Request(req_id));
            return;
        }
        let report = if self.neg.acks {
            self.acknowledge(now, request.ack)
        } else {
            None
        };
        if request.restart {
            if !self.upstream.sasl_success {
                // BOSH-96.
                self.terminate(
                    now,
                    Some(Condition::BadRequest),
                    None,
                    Cause::Request(req_id),
                );
                return;
            }
            // BOSH-92..95: new header on the same connection; payloads ignored.
            self.upstream.sasl_success = false;
            let open = self.open_params(Some(&request), true);
            self.push_upstream(UpstreamAction::Open(open));
        } else if request.payload_count > 0 {
            self.stats.elements_to_upstream += u64::from(request.payload_count);
            self.stats.bytes_to_upstream += request.payload.len() as u64;
            self.push_upstream(UpstreamAction::Send(request.payload));
        }
        if request.terminate {
            // BOSH-75, BOSH-76.
            self.finish_upstream(UpstreamAction::Close);
            self.terminate_by_client(req_id);
            return;
        }
        if let (Some(pause), Some(maxpause)) = (request.pause, self.neg.maxpause) {
            // BOSH-68, BOSH-69: answer everything; this response carries no payload.
            while !self.held.is_empty() {
                self.answer_oldest(now);
            }
            let body = Bytes::from_static(crate::bosh::response::EMPTY_BODY);
            self.responses.push_back(Response {
                req_id,
                status: 200,
                body,
            });
            self.last_answered = self.last_answered.max(request.rid);
            self.idle_deadline = Some(now + secs(pause.min(maxpause)));
            return;
        }
        self.held.push_back(Held {
            rid: request.rid,
            req_id,
            deadline: now + secs(self.neg.wait),
            orphaned: false,
            creation: false,
            report,
        });
        self.idle_deadline = None;
        // BOSH-45: never more than `hold`; the oldest goes first.
        while self.held.len() > usize::from(self.neg.hold) {
            self.answer_oldest(now);
        }
        self.flush_outbox(now);
        if report.is_some() {
            // BOSH-64: a lagging client is answered at once.
            while self.held.iter().any(|h| h.report.is_some()) {
                self.answer_oldest(now);
            }
        }
        self.expire_held(now);
    }

    /// Prunes the response cache by the client's `ack` and says whether a
    /// response is missing on the client side (BOSH-62..64).
    fn acknowledge(&mut self, now: Instant, ack: Option<u64>) -> Option<(u64, u64)> {
        let Some(ack) = ack else {
            self.cache.clear();
            return None;
        };
        self.cache.retain(|c| c.rid > ack);
        if ack < self.last_answered {
            let missing = self.cache.iter().find(|c| c.rid == ack + 1)?;
            let elapsed = now.saturating_duration_since(missing.sent_at);
            return Some((missing.rid, elapsed.as_millis().min(65535) as u64));
        }
        None
    }

    // --- answering ---

    /// Answers the oldest held request, carrying queued elements unless it is orphaned.
    fn answer_oldest(&mut self, now: Instant) {
        let Some(held) = self.held.pop_front() else {
            return;
        };
        let carry = !held.orphaned;
        let ack = (self.neg.acks && (held.creation || self.last_rid != held.rid))
            .then_some(self.last_rid);
        let announce = !self.upstream.announced && self.upstream.header.is_some();
        let body = {
            let header = self.upstream.header.as_ref();
            let stream_info = announce.then(|| StreamInfo {
                from: header.and_then(|h| h.from.as_deref()),
                authid: header.and_then(|h| h.id.as_deref()),
                xmpp_version: header.and_then(|h| h.version.as_deref()),
            });
            let creation = held.creation.then_some(CreationAttrs {
                sid: &self.sid,
                wait: self.neg.wait,
                hold: self.neg.hold,
                requests: self.neg.requests,
                inactivity: self.neg.inactivity,
                polling: self.neg.polling,
                maxpause: self.neg.maxpause,
                ver: self.neg.ver,
            });
            let attrs = BodyAttrs {
                kind: BodyKind::Normal,
                ack,
                report: held.report,
                creation,
                stream_info,
            };
            let payloads = self.outbox.iter().take(if carry { usize::MAX } else { 0 });
            write_body(&attrs, payloads, &self.standalone_context())
        };
        if announce {
            self.upstream.announced = true;
        }
        let carried = if carry { self.outbox.len() } else { 0 };
        if carried > 0 {
            self.stats.elements_to_client += carried as u64;
            self.stats.bytes_to_client += self.outbox_bytes as u64;
            // Sent: an idle session keeps no queue storage.
            self.outbox = VecDeque::new();
            self.outbox_bytes = 0;
        }
        self.last_response_empty = carried == 0;
        self.cache_response(held.rid, 200, body.clone(), now);
        self.responses.push_back(Response {
            req_id: held.req_id,
            status: 200,
            body,
        });
        self.last_answered = self.last_answered.max(held.rid);
        if self.held.is_empty() {
            let fresh = now + secs(self.neg.inactivity);
            // A request nobody waited on does not push the deadline back.
            self.idle_deadline = Some(match self.idle_deadline {
                Some(earlier) if !carry => earlier.min(fresh),
                _ => fresh,
            });
        }
    }

    /// Puts queued elements on the oldest live held request (BOSH-42, BOSH-47).
    fn flush_outbox(&mut self, now: Instant) {
        while !self.outbox.is_empty() && !self.held.is_empty() {
            let live = self.held.front().is_some_and(|h| !h.orphaned);
            self.answer_oldest(now);
            if live {
                break;
            }
        }
    }

    /// Answers held requests whose `wait` ran out, and every older one (BOSH-43, BOSH-44).
    fn expire_held(&mut self, now: Instant) {
        if let Some(last) = self.held.iter().rposition(|h| h.deadline <= now) {
            for _ in 0..=last {
                self.answer_oldest(now);
            }
        }
    }

    fn cache_response(&mut self, rid: u64, status: u16, body: Bytes, now: Instant) {
        self.cache.push_back(Cached {
            rid,
            status,
            body,
            sent_at: now,
        });
        // BOSH-57: the client can repeat at most `requests` (+1 for pause/terminate) rids back.
        let keep = usize::from(self.neg.requests) + 1;
        let keep = if self.neg.acks { keep * 2 } else { keep };
        while self.cache.len() > keep {
            self.cache.pop_front();
        }
    }

    /// BOSH-76: the oldest open request gets `type='terminate'`, every other one an empty body.
    fn terminate_by_client(&mut self, req_id: ReqId) {
        // Requests whose connection is gone cannot carry the queued elements.
        let (gone, live): (Vec<Held>, Vec<Held>) = self.held.drain(..).partition(|h| h.orphaned);
        let mut targets: Vec<ReqId> = live.into_iter().map(|h| h.req_id).collect();
        targets.push(req_id);
        targets.extend(gone.into_iter().map(|h| h.req_id));
        targets.extend(self.reorder.drain(..).map(|p| p.req_id));
        let attrs = BodyAttrs {
            kind: BodyKind::Terminate(None),
            ..BodyAttrs::NORMAL
        };
        let terminal = write_body(&attrs, self.outbox.iter(), &self.standalone_context());
        self.outbox.clear();
        self.outbox_bytes = 0;
        for (i, target) in targets.into_iter().enumerate() {
            let body = if i == 0 {
                terminal.clone()
            } else {
                Bytes::from_static(crate::bosh::response::EMPTY_BODY)
            };
            self.responses.push_back(Response {
                req_id: target,
                status: 200,
                body,
            });
        }
        self.finish(EndReason::ClientTerminate);
    }

    /// Ends the session with `condition` (None: a clean terminate without
    /// condition), delivering `payload` after any queued elements (BOSH-79, BOSH-91).
    fn terminate(
        &mut self,
        now: Instant,
        condition: Option<Condition>,
        payload: Option<Stanza>,
        cause: Cause,
    ) {
        if cause == Cause::Upstream {
            // Queued elements go out on a normal response first: clients drop
            // the children of a terminal body.
            self.flush_outbox(now);
        } else {
            self.finish_upstream(UpstreamAction::Close);
        }
        self.linger = cause == Cause::Upstream;
        let held_rids: Vec<(ReqId, u64)> = self.held.iter().map(|h| (h.req_id, h.rid)).collect();
        // The first live request carries the body; one whose connection is
        // gone would lose it (and the server's <stream:error> with it).
        let (gone, live): (Vec<Held>, Vec<Held>) = self.held.drain(..).partition(|h| h.orphaned);
        let mut targets: Vec<ReqId> = live.into_iter().map(|h| h.req_id).collect();
        if let Cause::Request(req_id) = cause
            && !targets.contains(&req_id)
        {
            targets.push(req_id);
        }
        targets.extend(self.reorder.drain(..).map(|p| p.req_id));
        let gone: Vec<ReqId> = gone.into_iter().map(|h| h.req_id).collect();
        for &req_id in &gone {
            self.responses.push_back(Response {
                req_id,
                status: 200,
                body: Bytes::from_static(crate::bosh::response::EMPTY_BODY),
            });
        }

        let kind = BodyKind::Terminate(condition);
        let attrs = BodyAttrs {
            kind,
            ..BodyAttrs::NORMAL
        };
        // With nothing held, queued elements stay for a normal response to
        // the next request; the terminal body follows on the one after.
        let include_outbox = !(cause == Cause::Upstream && targets.is_empty());
        let carried = if include_outbox { self.outbox.len() } else { 0 };
        let body = write_body(
            &attrs,
            self.outbox.iter().take(carried).chain(payload.iter()),
            &self.standalone_context(),
        );
        self.stats.elements_to_client += (carried + usize::from(payload.is_some())) as u64;
        if include_outbox {
            self.outbox.clear();
            self.outbox_bytes = 0;
        }
        let status = condition.map_or(200, |c| self.status_for(c));
        let reason = condition.map_or(EndReason::UpstreamClosed, EndReason::Condition);
        if targets.is_empty() {
            // Nothing held: the next request gets it, within `inactivity`.
            self.pending_terminal = Some(PendingTerminal {
                status,
                body,
                reason,
            });
            if self.idle_deadline.is_none() {
                self.idle_deadline = Some(now + secs(self.neg.inactivity));
            }
            return;
        }
        let others = match (cause, condition) {
            (Cause::Request(_), Some(_)) => Some(Condition::OtherRequest),
            _ => condition,
        };
        let other_attrs = BodyAttrs {
            kind: BodyKind::Terminate(others),
            ..BodyAttrs::NORMAL
        };
        let other_body = write_body(
            &other_attrs,
            std::iter::empty(),
            &StandaloneContext::default(),
        );
        let other_status = others.map_or(200, |c| self.status_for(c));
        for (i, target) in targets.into_iter().enumerate() {
            let response = if i == 0 || cause == Cause::Request(target) {
                Response {
                    req_id: target,
                    status,
                    body: if i == 0 {
                        body.clone()
                    } else {
                        bare_terminal(condition)
                    },
                }
            } else {
                Response {
                    req_id: target,
                    status: other_status,
                    body: other_body.clone(),
                }
            };
            if self.linger
                && let Some(&(_, rid)) = held_rids.iter().find(|(id, _)| *id == target)
            {
                // Asked for again while the session lingers: the same answer.
                self.cache_response(rid, response.status, response.body.clone(), now);
            }
            self.responses.push_back(response);
        }
        self.finish(reason);
    }

    // --- helpers ---

    fn finish(&mut self, reason: EndReason) {
        self.ended = Some(reason);
        self.held.clear();
        self.reorder.clear();
        if !self.linger {
            self.cache.clear();
        }
        self.outbox.clear();
        self.outbox_bytes = 0;
        self.idle_deadline = None;
    }

    fn finish_upstream(&mut self, action: UpstreamAction) {
        if !self.upstream.finished {
            self.upstream.finished = true;
            self.actions.push_back(action);
        }
    }

    fn push_upstream(&mut self, action: UpstreamAction) {
        if !self.upstream.finished {
            self.actions.push_back(action);
        }
    }

    fn queue(&mut self, mut stanza: Stanza) {
        if stanza.len() < UNSHARE_BELOW && self.held.iter().all(|h| h.orphaned) {
            stanza.unshare();
        }
        self.outbox_bytes += stanza.len();
        self.outbox.push_back(stanza);
    }

    fn status_for(&self, condition: Condition) -> u16 {
        if self.neg.legacy {
            condition.legacy_http_status()
        } else {
            200
        }
    }

    fn open_params(&self, restart: Option<&BoshRequest>, is_restart: bool) -> OpenStream {
        let attrs = restart.map(|r| &r.stream);
        OpenStream {
            to: self.to.clone(),
            from: attrs
                .and_then(|a| a.from.clone())
                .or_else(|| self.from.clone()),
            lang: attrs
                .and_then(|a| a.lang.clone())
                .or_else(|| self.lang.clone()),
            version: self.xmpp_version.clone(),
            restart: is_restart,
        }
    }

    fn standalone_context(&self) -> StandaloneContext<'_> {
        let header = self.upstream.header.as_ref();
        StandaloneContext {
            default_ns: Some(
                header
                    .and_then(|h| h.default_ns.as_deref())
                    .unwrap_or(crate::xml::ns::JABBER_CLIENT),
            ),
            declare_stream_prefix: false,
            lang: None,
            extra_ns: header.map_or(&[], |h| h.extra_ns.as_slice()),
        }
    }
}

fn bare_terminal(condition: Option<Condition>) -> Bytes {
    let attrs = BodyAttrs {
        kind: BodyKind::Terminate(condition),
        ..BodyAttrs::NORMAL
    };
    write_body(&attrs, std::iter::empty(), &StandaloneContext::default())
}

fn secs(s: u16) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// A client-chosen `content` value must be safe to echo as a header (BOSH-4).
fn is_header_safe(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests;
