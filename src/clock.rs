//! The one place that reads the time.
//!
//! Protocol cores take `now` as an argument; the I/O layer gets it here. It
//! goes through tokio's clock so tests with paused time (`start_paused`) see
//! virtual time everywhere.

use std::time::Instant;

/// The current instant on tokio's clock (virtual when time is paused).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Seconds since the Unix epoch, for logs and the admin API.
#[allow(clippy::disallowed_methods)]
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// The wall clock, for HTTP `Date` headers.
#[allow(clippy::disallowed_methods)]
pub fn system_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}
