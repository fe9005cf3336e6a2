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

use crate::clock;
use crate::upstream::conn::{Finish, UpstreamConn};
pub use crate::upstream::pool::RouteRequest;
use crate::upstream::pool::{Connected, Lease, Upstreams};
use crate::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};

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
    /// Called once when the loop ends.
    fn finished(&mut self);
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connected, UpstreamFailure>> + Send>>;

/// Runs the session until it is over, connecting upstream when the client
/// side names its route.
pub async fn drive<S: ClientSide>(mut side: S, upstreams: Arc<Upstreams>) {
    let settings = Arc::clone(upstreams.settings());
    let mut conn: Option<UpstreamConn> = None;
    let mut lease: Option<Lease> = None;
    let mut connecting: Option<Connecting> = None;
    let mut routed = false;
    // Our closing tag is queued: nothing more is written, but the server's
    // remaining stanzas and its own closing tag are still read (UP-48, UP-50).
    let mut closing = false;
    let mut congested = false;
    let mut actions = VecDeque::new();
    let mut events = Vec::new();
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        if !routed && let Some(route) = side.upstream_route(clock::now()) {
            routed = true;
            side.take_actions(&mut actions);
            match actions.pop_front() {
                Some(UpstreamAction::Open(open)) if !open.restart => {
                    let pools = Arc::clone(&upstreams);
                    connecting = Some(Box::pin(
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
        if let Some(c) = conn.as_mut()
            && c.has_pending_writes()
            && let Err(failure) = c.try_flush()
        {
            conn = None;
            upstream_failed(&mut side, lease.as_ref(), closing, failure);
            continue;
        }
        if side.is_done() {
            break;
        }
        // Client input waits while the server is not taking what it already
        // has, or before there is a server at all: client data never piles up.
        let now_congested = connecting.is_some()
            || conn
                .as_ref()
                .is_some_and(|c| c.queued_bytes() > settings.max_write_queue);
        if now_congested != congested {
            congested = now_congested;
            side.upstream_congested(congested);
        }
        let deadline = side.next_deadline();
        if deadline != armed {
            if let Some(d) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
            armed = deadline;
        }
        let can_read = conn.as_ref().is_some_and(|c| !c.read_done()) && side.wants_upstream_data();
        let must_write = conn.as_ref().is_some_and(UpstreamConn::has_pending_writes);
        let write_deadline = conn
            .as_ref()
            .and_then(UpstreamConn::write_stalled_since)
            .map(|since| tokio::time::Instant::from_std(since + settings.write_timeout));
        tokio::select! {
            result = connected(connecting.as_mut()), if connecting.is_some() => {
                connecting = None;
                match result {
                    Ok(mut done) => {
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
            ready = readable(conn.as_ref()), if can_read => {
                if let Some(c) = conn.as_mut() {
                    match ready {
                        Ok(()) => c.read_events(&mut events),
                        Err(e) => events.push(UpstreamEvent::Failed(UpstreamFailure::Lost(e.to_string()))),
                    }
                }
                let lost = events.iter().any(|e| matches!(e, UpstreamEvent::Failed(UpstreamFailure::Lost(_))));
                if lost && !closing && let Some(lease) = &lease {
                    // A server that drops sessions is taken out of rotation.
                    lease.report_lost();
                }
                if !events.is_empty() {
                    side.on_upstream(clock::now(), &mut events);
                    events.clear();
                }
            }
            _ = writable(conn.as_ref()), if must_write => {}
            () = stall(write_deadline), if write_deadline.is_some() => {
                // UP-42: a server that stops reading is as good as gone.
                conn = None;
                let failure = UpstreamFailure::Lost(format!(
                    "the server took no data for {} s",
                    settings.write_timeout.as_secs()
                ));
                tracing::warn!("upstream write stalled: {failure}");
                upstream_failed(&mut side, lease.as_ref(), closing, failure);
            }
            input = side.client_ready() => side.on_client(clock::now(), input),
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                side.on_timeout(clock::now());
            }
        }
    }
    side.finished();
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

async fn stall(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: Option<&mut Connecting>) -> Result<Connected, UpstreamFailure> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn readable(conn: Option<&UpstreamConn>) -> std::io::Result<()> {
    match conn {
        Some(c) => c.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(conn: Option<&UpstreamConn>) -> std::io::Result<()> {
    match conn {
        Some(c) => c.writable().await,
        None => std::future::pending().await,
    }
}
