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
//! writability, client-side work, or the deadline. After the core asks to
//! close or abort, the connection is handed to a short-lived task and the
//! loop keeps serving the core's timers until the session is over.

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
    /// Called once when the loop ends.
    fn finished(&mut self);
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connected, UpstreamFailure>> + Send>>;

/// Runs the session until it is over, connecting upstream when the client
/// side names its route.
pub async fn drive<S: ClientSide>(mut side: S, upstreams: Arc<Upstreams>) {
    let mut conn: Option<UpstreamConn> = None;
    let mut lease: Option<Lease> = None;
    let mut connecting: Option<Connecting> = None;
    let mut routed = false;
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
        if conn.is_some() {
            side.take_actions(&mut actions);
        } else if connecting.is_none() {
            // No upstream (failed, or never needed): nothing to write to.
            side.take_actions(&mut actions);
            actions.clear();
        }
        while conn.is_some()
            && let Some(action) = actions.pop_front()
        {
            let Some(c) = conn.as_mut() else {
                break;
            };
            if let Some(finish) = c.apply(action)
                && let Some(c) = conn.take()
            {
                let close_timeout = upstreams.settings().close_timeout;
                let task = async move {
                    match finish {
                        Finish::Close => c.close_gracefully(close_timeout).await,
                        Finish::Abort => c.abort().await,
                    }
                };
                tokio::spawn(task.in_current_span());
                actions.clear();
            }
        }
        if let Some(c) = conn.as_mut()
            && c.has_pending_writes()
            && let Err(failure) = c.try_flush()
        {
            conn = None;
            if let Some(lease) = &lease {
                lease.report_lost();
            }
            side.on_upstream(clock::now(), &mut vec![UpstreamEvent::Failed(failure)]);
            continue;
        }
        if side.is_done() {
            break;
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
                if lost && let Some(lease) = &lease {
                    // A server that drops sessions is taken out of rotation.
                    lease.report_lost();
                }
                if !events.is_empty() {
                    side.on_upstream(clock::now(), &mut events);
                    events.clear();
                }
            }
            _ = writable(conn.as_ref()), if must_write => {}
            input = side.client_ready() => side.on_client(clock::now(), input),
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                side.on_timeout(clock::now());
            }
        }
    }
    side.finished();
    if let Some(c) = conn {
        tokio::spawn(c.abort().in_current_span());
    }
    drop(lease);
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
