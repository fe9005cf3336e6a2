//! The relay loop: one tokio task per session owns the upstream connection
//! and moves events between it and the session's protocol core.
//!
//! The connection is made as soon as the client side names its targets (BOSH:
//! at once; WebSocket: after the first `<open/>`), while client input and
//! timers keep being served. Each turn: hand the core's upstream actions to
//! the connection once it is up, flush,
//! re-arm the single timer if the core's deadline moved, then wait for
//! whichever comes first: upstream data (only while the core accepts more,
//! which is how a slow client pushes back on the server), socket
//! writability, client-side work, or the deadline. After the core closes
//! the stream, the connection is still read until the server closes its
//! side (clients such as xmpp.js wait for that answer); an abort hands it to
//! a short-lived task at once. When the session is over, a closing
//! connection is finished in the background.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::admission::{ConnectionSlot, SessionSlot};
use crate::clock;
use crate::metrics::{CloseReason, Limit, Metrics, Traffic};
use crate::sessions::{SessionInfo, SessionState, SessionTable};
use crate::upstream::conn::{Finish, UpstreamConn};
pub use crate::upstream::pool::RouteRequest;
use crate::upstream::pool::{Connected, Lease, Upstreams};
use crate::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};
use crate::xml::splitter::SplitError;

/// The client-facing half of a session, as the relay loop sees it.
pub trait ClientSide: Send + 'static {
    /// What [`Self::client_ready`] yields.
    type ClientInput: Send;

    /// Where to connect, once known; asked until it answers. The core's
    /// first upstream action must then be the stream header to open with.
    fn upstream_route(&mut self, now: Instant) -> Option<RouteRequest>;
    /// Feeds upstream events (in order) to the core and delivers its output to the client.
    fn on_upstream(&mut self, now: Instant, events: &mut Vec<UpstreamEvent>);
    /// Fires the core's deadlines.
    fn on_timeout(&mut self, now: Instant);
    /// Moves the core's pending upstream actions into `out`, in order.
    fn take_actions(&mut self, out: &mut VecDeque<UpstreamAction>);
    /// When [`Self::on_timeout`] is next due.
    fn next_deadline(&mut self) -> Option<Instant>;
    /// Whether the core accepts more upstream data now.
    fn wants_upstream_data(&mut self) -> bool;
    /// Whether the session is over.
    fn is_done(&mut self) -> bool;
    /// Resolves when the client side has work for the core (cancel-safe).
    fn client_ready(&mut self) -> impl Future<Output = Self::ClientInput> + Send + '_;
    /// Handles what [`Self::client_ready`] produced.
    fn on_client(&mut self, now: Instant, input: Self::ClientInput);
    /// The server is not taking client data fast enough (or is not connected
    /// yet): stop reading from the client until this is called with `false`.
    fn upstream_congested(&mut self, congested: bool);
    /// Counters and queue levels, for the session table and metrics.
    fn report(&mut self) -> SideReport;
    /// An operator ends the session (admin kick).
    fn kick(&mut self, now: Instant);
    /// xmpp-edge is stopping: end with `system-shutdown`.
    fn shutdown(&mut self, now: Instant);
    /// Why the session ended, once it has.
    fn close_reason(&mut self) -> CloseReason;
    /// Called once when the loop ends.
    fn finished(&mut self);
}

/// What a client side reports to the driver each turn.
#[derive(Clone, Copy, Debug, Default)]
pub struct SideReport {
    /// Totals so far.
    pub traffic: Traffic,
    /// Bytes waiting for the client.
    pub queued_to_client: usize,
    /// Parked BOSH requests.
    pub held_requests: usize,
}

/// A session's place in the world: its entry in the session table (removed
/// when the driver ends) and the metrics it feeds.
#[derive(Debug)]
pub struct SessionContext {
    /// What operators see of the session.
    pub info: Arc<SessionInfo>,
    /// The table it is registered in.
    pub table: Arc<SessionTable>,
    /// Where its counters go.
    pub metrics: Arc<Metrics>,
    /// Its place under `[limits]`, given back when the session ends.
    pub slot: Option<SessionSlot>,
    /// The client connection's place, for transports whose connection is
    /// the session (WebSocket).
    pub connection: Option<ConnectionSlot>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connected, UpstreamFailure>> + Send>>;

/// Runs the session until it is over, connecting upstream when the client
/// side names its route.
///
/// The client side is boxed: the session's task holds this future for its
/// whole life, and an argument moved into an `async fn` occupies its state
/// twice (as captured and as local), which for the WebSocket side is a
/// kilobyte per idle session.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
pub fn drive<S: ClientSide>(
    mut side: Box<S>,
    upstreams: Arc<Upstreams>,
    ctx: SessionContext,
) -> impl Future<Output = ()> {
    // An `async move` block, not an `async fn`, which would also copy the
    // arguments into locals.
    async move {
        // Fields are used in place: destructuring would keep them twice in
        // this long-lived future.
        let info = &ctx.info;
        let metrics = &ctx.metrics;
        metrics.session_opened(info.transport);
        let mut reported = Traffic::default();
        let mut setup_started = clock::now();
        let mut stop_seen = false;
        let settings = Arc::clone(upstreams.settings());
        let mut conn: Option<UpstreamConn> = None;
        let mut lease: Option<Lease> = None;
        let mut connecting: Option<Connecting> = None;
        let mut routed = false;
        // Our closing tag is queued: nothing more is written, but the server's
        // remaining stanzas and its own closing tag are still read (UP-48, UP-50).
        let mut closing = false;
        let mut congested = false;
        // Allocated while in use only: an idle session keeps no capacity here.
        let mut actions = VecDeque::new();
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        {
            // Made once: a fresh `Notified` per pass would lock the notifier to
            // join and leave its waiter list on every relayed stanza.
            let stop = info.stop_requested();
            tokio::pin!(stop);
            let mut armed: Option<Instant> = None;
            loop {
                if !routed && let Some(route) = side.upstream_route(clock::now()) {
                    routed = true;
                    setup_started = clock::now();
                    info.set_domain(&route.domain);
                    side.take_actions(&mut actions);
                    match actions.pop_front() {
                        Some(UpstreamAction::Open(open)) if !open.restart => {
                            let pools = Arc::clone(&upstreams);
                            connecting =
                                Some(Box::pin(
                                    async move { pools.connect_route(&route, open).await },
                                ));
                        }
                        // The session ended before it needed a connection.
                        _ => actions.clear(),
                    }
                }
                if conn.is_some() && !closing {
                    side.take_actions(&mut actions);
                } else if connecting.is_none() {
                    // Nothing to write to (failed, never needed, or closing).
                    side.take_actions(&mut actions);
                    actions.clear();
                }
                while let Some(c) = conn.as_mut()
                    && let Some(action) = actions.pop_front()
                {
                    match c.apply(action) {
                        None => {}
                        Some(Finish::Close) => {
                            closing = true;
                            actions.clear();
                        }
                        Some(Finish::Abort) => {
                            if let Some(c) = conn.take() {
                                tokio::spawn(c.abort().in_current_span());
                            }
                            actions.clear();
                        }
                    }
                }
                if actions.is_empty() && actions.capacity() > 0 {
                    actions = VecDeque::new();
                }
                if let Some(c) = conn.as_mut()
                    && c.has_pending_writes()
                    && let Err(failure) = c.try_flush()
                {
                    conn = None;
                    upstream_failed(&mut *side, lease.as_ref(), closing, failure);
                    continue;
                }
                report(&mut *side, info, metrics, conn.as_ref(), &mut reported);
                if side.is_done() {
                    break;
                }
                info.set_state(
                    if closing || (conn.is_none() && connecting.is_none() && routed) {
                        SessionState::Closing
                    } else if conn.is_some() {
                        SessionState::Open
                    } else {
                        SessionState::Connecting
                    },
                );
                // Client input waits while the server is not taking what it already
                // has, or before there is a server at all: client data never piles up.
                let now_congested = connecting.is_some()
                    || conn
                        .as_ref()
                        .is_some_and(|c| c.queued_bytes() > settings.max_write_queue);
                if now_congested != congested {
                    congested = now_congested;
                    if congested && connecting.is_none() {
                        metrics.limit_hit(Limit::UpstreamWriteQueue);
                    }
                    side.upstream_congested(congested);
                }
                // One timer serves the side's deadlines and the upstream write
                // deadline (UP-42).
                let side_deadline = side.next_deadline();
                let write_deadline = conn
                    .as_ref()
                    .and_then(UpstreamConn::write_stalled_since)
                    .map(|since| since + settings.write_timeout);
                let deadline = match (side_deadline, write_deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if deadline != armed {
                    if let Some(d) = deadline {
                        sleep.as_mut().reset(tokio::time::Instant::from_std(d));
                    }
                    armed = deadline;
                }
                let can_read =
                    conn.as_ref().is_some_and(|c| !c.read_done()) && side.wants_upstream_data();
                let must_write = conn.as_ref().is_some_and(UpstreamConn::has_pending_writes);
                tokio::select! {
                    result = connected(connecting.as_mut()), if connecting.is_some() => {
                        connecting = None;
                        match result {
                            Ok(mut done) => {
                                info.set_upstream(&done.lease.address());
                                metrics
                                    .session_setup_seconds
                                    .with_label_values(&[info.transport.as_str()])
                                    .observe(clock::now().saturating_duration_since(setup_started).as_secs_f64());
                                conn = Some(done.conn);
                                lease = Some(done.lease);
                                side.on_upstream(clock::now(), &mut done.events);
                            }
                            Err(failure) => {
                                tracing::warn!("upstream unavailable: {failure}");
                                side.on_upstream(clock::now(), &mut vec![UpstreamEvent::Failed(failure)]);
                            }
                        }
                    }
                    ready = io_ready(conn.as_ref(), can_read, must_write), if can_read || must_write => {
                        // Writable: the loop's next pass flushes.
                        let readable = match &ready {
                            Ok(r) => can_read && (r.is_readable() || r.is_read_closed() || r.is_error()),
                            Err(_) => true,
                        };
                        if !readable {
                            continue;
                        }
                        let mut events = Vec::new();
                        if let Some(c) = conn.as_mut() {
                            match ready {
                                Ok(_) => c.read_events(&mut events),
                                Err(e) => events.push(UpstreamEvent::Failed(UpstreamFailure::Lost(e.to_string()))),
                            }
                        }
                        let lost = events.iter().any(|e| matches!(e, UpstreamEvent::Failed(UpstreamFailure::Lost(_))));
                        if events.iter().any(|e| {
                            matches!(
                                e,
                                UpstreamEvent::Failed(UpstreamFailure::Protocol(
                                    SplitError::TooLarge(_) | SplitError::TooDeep(_)
                                ))
                            )
                        }) {
                            metrics.limit_hit(Limit::UpstreamXml);
                        }
                        if lost && !closing && let Some(lease) = &lease {
                            // A server that drops sessions is taken out of rotation.
                            lease.report_lost();
                        }
                        // One pass for what the admin view records.
                        for event in &events {
                            match event {
                                UpstreamEvent::StreamOpened(header) => {
                                    if let Some(id) = &header.id {
                                        tracing::debug!(stream_id = %id, "server opened a stream");
                                        info.set_stream_id(id);
                                    }
                                }
                                UpstreamEvent::Element(element) if info.wants_jid() => {
                                    if let Some(jid) = element.bound_jid() {
                                        info.set_jid(&jid);
                                    }
                                }
                                _ => {}
                            }
                        }
                        if !events.is_empty() {
                            side.on_upstream(clock::now(), &mut events);
                        }
                    }
                    input = side.client_ready() => side.on_client(clock::now(), input),
                    () = &mut stop, if !stop_seen => {
                        stop_seen = true;
                        if info.is_kicked() {
                            tracing::info!("session ended by an operator");
                            side.kick(clock::now());
                        } else {
                            side.shutdown(clock::now());
                        }
                    }
                    () = &mut sleep, if armed.is_some() => {
                        armed = None;
                        let now = clock::now();
                        if write_deadline.is_some_and(|d| d <= now) {
                            // UP-42: a server that stops reading is as good as gone.
                            conn = None;
                            let failure = UpstreamFailure::Lost(format!(
                                "the server took no data for {} s",
                                settings.write_timeout.as_secs()
                            ));
                            tracing::warn!("upstream write stalled: {failure}");
                            upstream_failed(&mut *side, lease.as_ref(), closing, failure);
                        } else {
                            side.on_timeout(now);
                        }
                    }
                }
            }
        }
        side.finished();
        report(&mut *side, info, metrics, conn.as_ref(), &mut reported);
        ctx.table.remove(info);
        let SessionContext {
            info,
            metrics,
            slot,
            connection,
            ..
        } = ctx;
        drop(slot);
        drop(connection);
        let mut why = side.close_reason();
        if info.is_kicked() {
            why.reason = "kicked";
        }
        metrics.session_closed(info.transport, why);
        if let Some(c) = conn {
            let task = async move {
                if closing {
                    c.close_gracefully(settings.close_timeout).await;
                } else {
                    // The client vanished: no closing tag, so the server keeps
                    // a resumable session (UP-51).
                    c.abort().await;
                }
            };
            tokio::spawn(task.in_current_span());
        }
        drop(lease);
    }
}

/// Publishes the side's counters: differences to the metrics, levels to the
/// session's entry.
fn report<S: ClientSide>(
    side: &mut S,
    info: &SessionInfo,
    metrics: &Metrics,
    conn: Option<&UpstreamConn>,
    reported: &mut Traffic,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = side.report();
    let delta = now.traffic.since(reported);
    if delta != Traffic::default() {
        metrics.relayed(info.transport, &delta);
        *reported = now.traffic;
        info.stanzas_to_client
            .store(now.traffic.stanzas_to_client, Relaxed);
        info.bytes_to_client
            .store(now.traffic.bytes_to_client, Relaxed);
        info.stanzas_to_upstream
            .store(now.traffic.stanzas_to_upstream, Relaxed);
        info.bytes_to_upstream
            .store(now.traffic.bytes_to_upstream, Relaxed);
    }
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    info.queued_to_client
        .store(as_u64(now.queued_to_client), Relaxed);
    info.held_requests.store(as_u64(now.held_requests), Relaxed);
    info.queued_to_upstream
        .store(as_u64(conn.map_or(0, UpstreamConn::queued_bytes)), Relaxed);
}

/// The connection broke: counts against the server unless we were leaving
/// it anyway, and tells the core.
fn upstream_failed<S: ClientSide>(
    side: &mut S,
    lease: Option<&Lease>,
    closing: bool,
    failure: UpstreamFailure,
) {
    if !closing && let Some(lease) = lease {
        lease.report_lost();
    }
    side.on_upstream(clock::now(), &mut vec![UpstreamEvent::Failed(failure)]);
}

async fn io_ready(
    conn: Option<&UpstreamConn>,
    read: bool,
    write: bool,
) -> std::io::Result<tokio::io::Ready> {
    match conn {
        Some(c) => c.ready(read, write).await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: Option<&mut Connecting>) -> Result<Connected, UpstreamFailure> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
