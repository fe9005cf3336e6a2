//! Glue between HTTP requests, the BOSH session core and the relay loop.
//!
//! The core sits behind a mutex that HTTP handlers and the driver task take
//! briefly. Whoever feeds the core drains its responses right away: each goes
//! to the oneshot of the HTTP request it answers. Upstream actions are left
//! for the driver, which a [`Notify`] wakes.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::bosh::{BoshRequest, BoshSession, Condition, EndReason, ReqId};
use crate::metrics::{CloseReason, Traffic};
use crate::relay::driver::{ClientSide, RouteRequest, SideReport};
use crate::sessions::{SessionTable, Sid};
use crate::upstream::{UpstreamAction, UpstreamEvent};

/// The HTTP answer to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `<body/>`.
    pub body: Bytes,
    /// The session's content type, when the client chose one (BOSH-4).
    pub content_type: Option<Arc<str>>,
}

/// Outcome of handing a request to the session.
#[derive(Debug)]
pub enum Submitted {
    /// Answered at once.
    Ready(Reply),
    /// Held; the reply comes on the receiver.
    Waiting(ReqId, oneshot::Receiver<Reply>),
}

/// One BOSH session, shared by its HTTP requests and its driver task.
#[derive(Debug)]
pub struct BoshShared {
    sid: Sid,
    inner: Mutex<Inner>,
    wake: Notify,
    /// The server is behind on client data (or not connected yet).
    congested: AtomicBool,
    /// Signalled when `congested` clears or the session ends.
    room: Notify,
    /// Requests waiting for room.
    room_waiters: AtomicUsize,
}

/// Longest a payload waits for a congested server before it is handed over
/// anyway; a server that takes nothing at all is cut off by the write
/// timeout (UP-42) instead.
const ROOM_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Inner {
    core: BoshSession,
    waiters: Vec<(ReqId, oneshot::Sender<Reply>)>,
    next_req: ReqId,
}

impl Inner {
    /// Sends every response the core produced; returns the one for `mine`.
    fn dispatch(&mut self, mine: Option<ReqId>) -> Option<Reply> {
        let mut own = None;
        let content_type = self.core.content_type().cloned();
        while let Some(response) = self.core.poll_response() {
            let reply = Reply {
                status: response.status,
                body: response.body,
                content_type: content_type.clone(),
            };
            if Some(response.req_id) == mine {
                own = Some(reply);
            } else if let Some(at) = self
                .waiters
                .iter()
                .position(|(id, _)| *id == response.req_id)
            {
                let (_, tx) = self.waiters.swap_remove(at);
                // The receiver may be gone with its HTTP request; the core
                // cached anything that matters for a retry.
                let _ = tx.send(reply);
            }
        }
        own
    }
}

// === impl BoshShared ===

impl BoshShared {
    /// Wraps a newly created core whose creation request is `creation`.
    pub fn new(
        sid: Sid,
        core: BoshSession,
        creation: ReqId,
    ) -> (Arc<Self>, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Self {
            sid,
            inner: Mutex::new(Inner {
                core,
                waiters: vec![(creation, tx)],
                next_req: creation + 1,
            }),
            wake: Notify::new(),
            congested: AtomicBool::new(false),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
        });
        {
            let mut inner = shared.inner.lock();
            inner.dispatch(None);
        }
        (shared, rx)
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The XMPP domain.
    pub fn domain(&self) -> String {
        self.inner.lock().core.domain().to_owned()
    }

    /// Waits while the server is behind on client data, so a client cannot
    /// pile payloads up in xmpp-edge faster than the server reads them. At
    /// most `max_waiting` requests wait (the session's request window);
    /// more go straight to the core, which judges them.
    pub async fn room_for_payload(&self, max_waiting: usize) {
        if !self.congested.load(Ordering::Acquire) {
            return;
        }
        // Counted until this request stops waiting, even if its HTTP
        // connection goes away meanwhile.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let previous = self.room_waiters.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.room_waiters);
        if previous >= max_waiting {
            return;
        }
        let _ = tokio::time::timeout(ROOM_WAIT, async {
            loop {
                let notified = self.room.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.congested.load(Ordering::Acquire) || self.ended().is_some() {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn set_congested(&self, congested: bool) {
        self.congested.store(congested, Ordering::Release);
        if !congested {
            self.room.notify_waiters();
        }
    }

    /// Hands a request to the core.
    pub fn submit(&self, now: Instant, request: BoshRequest) -> Submitted {
        let submitted = {
            let mut inner = self.inner.lock();
            let req_id = inner.next_req;
            inner.next_req += 1;
            inner.core.handle_request(now, req_id, request);
            match inner.dispatch(Some(req_id)) {
                Some(reply) => Submitted::Ready(reply),
                None => {
                    let (tx, rx) = oneshot::channel();
                    inner.waiters.push((req_id, tx));
                    Submitted::Waiting(req_id, rx)
                }
            }
        };
        self.wake.notify_one();
        submitted
    }

    /// The HTTP request `req_id` went away unanswered.
    pub fn gone(&self, req_id: ReqId) {
        {
            let mut inner = self.inner.lock();
            inner.waiters.retain(|(id, _)| *id != req_id);
            inner.core.handle_request_gone(crate::clock::now(), req_id);
            inner.dispatch(None);
        }
        // The inactivity deadline may have moved closer.
        self.wake.notify_one();
    }

    /// Ends the session with `system-shutdown` (graceful shutdown).
    pub fn shutdown(&self, now: Instant) {
        {
            let mut inner = self.inner.lock();
            inner.core.handle_shutdown(now);
            inner.dispatch(None);
        }
        self.wake.notify_one();
    }

    /// Ends the session for an operator (admin kick).
    pub fn kick(&self, now: Instant) {
        {
            let mut inner = self.inner.lock();
            inner.core.handle_kick(now);
            inner.dispatch(None);
        }
        self.wake.notify_one();
    }

    /// Ends the session because its domain is no longer served.
    pub fn host_gone(&self, now: Instant) {
        {
            let mut inner = self.inner.lock();
            inner.core.handle_host_gone(now);
            inner.dispatch(None);
        }
        self.wake.notify_one();
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<EndReason> {
        self.inner.lock().core.ended()
    }

    /// Whether the ended session still answers repeated rids ([`BoshSession::lingers`]).
    pub fn lingers(&self) -> bool {
        self.inner.lock().core.lingers()
    }
}

/// A session's end as a metric label.
pub fn close_reason(reason: Option<EndReason>) -> CloseReason {
    let (reason, condition) = match reason {
        Some(EndReason::ClientTerminate) => ("client_close", ""),
        Some(EndReason::Inactivity) => ("inactivity", ""),
        Some(EndReason::UpstreamClosed) => ("upstream_closed", ""),
        Some(EndReason::Condition(c)) => (
            match c {
                Condition::RemoteConnectionFailed | Condition::RemoteStreamError => {
                    "upstream_error"
                }
                Condition::SeeOtherUri => "redirected",
                Condition::SystemShutdown => "shutdown",
                _ => "error",
            },
            c.as_str(),
        ),
        None => ("error", ""),
    };
    CloseReason { reason, condition }
}

/// How long an ended session keeps answering repeated rids from its cache
/// (see [`BoshSession::lingers`]): a client that lost a response on a cut
/// connection sends the rid again at once.
pub const LINGER: Duration = Duration::from_secs(5);

/// The BOSH side of the relay loop.
#[derive(Debug)]
pub struct BoshRelay {
    shared: Arc<BoshShared>,
    route: Option<RouteRequest>,
    table: Arc<SessionTable>,
}

impl BoshRelay {
    /// Drives `shared` on `route`; `table` keeps it reachable for a while after it ends.
    pub fn new(shared: Arc<BoshShared>, route: RouteRequest, table: Arc<SessionTable>) -> Self {
        Self {
            shared,
            route: Some(route),
            table,
        }
    }
}

impl ClientSide for BoshRelay {
    type ClientInput = ();

    fn upstream_route(&mut self, _now: Instant) -> Option<RouteRequest> {
        self.route.take()
    }

    fn on_upstream(&mut self, now: Instant, events: &mut Vec<UpstreamEvent>) {
        let mut inner = self.shared.inner.lock();
        for event in events.drain(..) {
            inner.core.handle_upstream(now, event);
        }
        inner.dispatch(None);
    }

    fn on_timeout(&mut self, now: Instant) {
        let mut inner = self.shared.inner.lock();
        inner.core.handle_timeout(now);
        inner.dispatch(None);
    }

    fn take_actions(&mut self, out: &mut VecDeque<UpstreamAction>) {
        let mut inner = self.shared.inner.lock();
        while let Some(action) = inner.core.poll_upstream() {
            out.push_back(action);
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.shared.inner.lock().core.poll_timeout()
    }

    fn wants_upstream_data(&mut self) -> bool {
        self.shared.inner.lock().core.wants_upstream_data()
    }

    fn is_done(&mut self) -> bool {
        self.shared.inner.lock().core.ended().is_some()
    }

    fn client_ready(&mut self) -> impl Future<Output = ()> + Send + '_ {
        self.shared.wake.notified()
    }

    fn upstream_congested(&mut self, congested: bool) {
        self.shared.set_congested(congested);
    }

    fn report(&mut self) -> SideReport {
        let inner = self.shared.inner.lock();
        let stats = inner.core.stats();
        SideReport {
            traffic: Traffic {
                stanzas_to_client: stats.elements_to_client,
                bytes_to_client: stats.bytes_to_client,
                stanzas_to_upstream: stats.elements_to_upstream,
                bytes_to_upstream: stats.bytes_to_upstream,
                retransmissions: stats.retransmissions,
                rid_errors: stats.rid_errors,
                client_xml_limit_hits: stats.too_deep + stats.too_many_attributes,
                overactivity: stats.overactivity,
                ..Traffic::default()
            },
            queued_to_client: inner.core.queued_bytes(),
            held_requests: inner.core.held_requests(),
        }
    }

    fn kick(&mut self, now: Instant) {
        self.shared.kick(now);
    }

    fn shutdown(&mut self, now: Instant) {
        self.shared.shutdown(now);
    }

    fn close_reason(&mut self) -> CloseReason {
        close_reason(self.shared.ended())
    }

    fn on_client(&mut self, _now: Instant, _input: ()) {}

    fn finished(&mut self) {
        let reason = self.shared.ended();
        tracing::info!(?reason, "session ended");
        self.shared.set_congested(false);
        if self.shared.lingers() {
            let sid = self.shared.sid();
            self.table.retire(sid, Arc::clone(&self.shared));
            let table = Arc::clone(&self.table);
            tokio::spawn(async move {
                tokio::time::sleep(LINGER).await;
                table.forget_retired(sid);
            });
        }
    }
}
