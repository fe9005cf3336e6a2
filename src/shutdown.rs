//! Graceful drain on SIGTERM: readiness goes false and new sessions are
//! refused; after `shutdown_delay_secs` every session is told to end
//! (`system-shutdown`, after flushing what is queued for its client); the
//! process waits up to `shutdown_grace_secs` for them to finish. A second
//! signal cuts the wait short.

use std::future::Future;
use std::time::Duration;

use crate::clock;
use crate::http::AppState;

/// Runs the drain; returns when every session is gone, the grace period is
/// over, or `cut_short` resolves.
pub async fn drain(state: &AppState, cut_short: impl Future<Output = ()>) {
    let server = state.runtime().config.server.clone();
    let delay = Duration::from_secs(u64::from(server.shutdown_delay_secs));
    let grace = Duration::from_secs(u64::from(server.shutdown_grace_secs));
    tokio::pin!(cut_short);
    state.begin_drain();
    tracing::info!(
        sessions = state.sessions.len(),
        delay_secs = delay.as_secs(),
        grace_secs = grace.as_secs(),
        "draining: not ready, no new sessions"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = &mut cut_short => return,
    }
    state.begin_shutdown();
    let now = clock::now();
    // Pairs with the fence after a new WebSocket session joins the table.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    for session in state.sessions.bosh_sessions() {
        session.shutdown(now);
    }
    for session in state.sessions.websocket_sessions() {
        session.request_shutdown();
    }
    // Ended BOSH sessions linger briefly so that a client whose last
    // response was cut can fetch it again before the process goes.
    let all_gone = async {
        while !state.sessions.is_empty() || state.sessions.retired_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = all_gone => tracing::info!("every session has ended"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(left = state.sessions.len(), "grace period over");
        }
        () = &mut cut_short => tracing::warn!(left = state.sessions.len(), "drain cut short"),
    }
}
