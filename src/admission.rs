//! Admission control: how many sessions may live in total and per client
//! address, how fast one address may open new ones, and how many client
//! connections may be open at once. Counts outlive configuration reloads;
//! the limits come from the configuration in force at each call.
//!
//! Addresses are grouped by IPv4 address and by IPv6 /64 (one subscriber
//! usually holds a whole /64). A session holds a [`SessionSlot`] and a
//! connection a [`ConnectionSlot`]; dropping them gives the place back.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::config::LimitsConfig;
use crate::metrics::Limit;

/// Why a new session was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `limits.max_sessions` reached.
    #[error("xmpp-edge is at its session limit")]
    Full,
    /// `limits.max_sessions_per_ip` reached for this address.
    #[error("too many sessions from this address")]
    TooManyFromAddress,
    /// `limits.new_sessions_per_ip_per_sec` exceeded.
    #[error("sessions opened too fast from this address")]
    TooFast,
}

impl Refusal {
    /// The limit, for metrics.
    pub fn limit(self) -> Limit {
        match self {
            Self::Full => Limit::Sessions,
            Self::TooManyFromAddress => Limit::SessionsPerIp,
            Self::TooFast => Limit::NewSessionsPerIp,
        }
    }

    /// HTTP status for a refused WebSocket handshake: 503 when xmpp-edge
    /// is full (another replica may have room), 429 for one address.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Full => 503,
            Self::TooManyFromAddress | Self::TooFast => 429,
        }
    }
}

/// An address group: IPv4 address, or IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AddressKey(u128);

impl AddressKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(u32::from(v4))),
                None => Self((u128::from(v6) & !((1u128 << 64) - 1)) | 1),
            },
        }
    }
}

#[derive(Debug)]
struct AddressState {
    sessions: u32,
    /// Token bucket for new sessions.
    tokens: f64,
    refilled: Instant,
}

/// Live counts behind the limits.
#[derive(Debug)]
pub struct Admission {
    by_address: DashMap<AddressKey, AddressState>,
    sessions: AtomicUsize,
    connections: AtomicUsize,
    /// Connection limit used when `limits.max_connections` is 0.
    auto_max_connections: usize,
    last_sweep: Mutex<Option<Instant>>,
}

/// How often idle address entries are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    /// No sessions yet; `auto_max_connections` stands in for a
    /// `limits.max_connections` of 0.
    pub fn new(auto_max_connections: usize) -> Self {
        Self {
            by_address: DashMap::new(),
            sessions: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            auto_max_connections,
            last_sweep: Mutex::new(None),
        }
    }

    /// Admits a new session from `client` (unknown: only the total counts).
    pub fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        limits: &LimitsConfig,
        now: Instant,
    ) -> Result<SessionSlot, Refusal> {
        self.sweep(limits, now);
        let total = self.sessions.fetch_add(1, Ordering::AcqRel);
        let mut slot = SessionSlot {
            admission: Arc::clone(self),
            key: None,
        };
        if total >= limits.max_sessions as usize {
            return Err(Refusal::Full);
        }
        let Some(ip) = client else {
            return Ok(slot);
        };
        let key = AddressKey::of(ip);
        let rate = f64::from(limits.new_sessions_per_ip_per_sec);
        let burst = rate * 2.0;
        let mut entry = self.by_address.entry(key).or_insert(AddressState {
            sessions: 0,
            tokens: burst,
            refilled: now,
        });
        let state = entry.value_mut();
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(burst);
        state.refilled = now;
        if state.sessions >= limits.max_sessions_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        if state.tokens < 1.0 {
            return Err(Refusal::TooFast);
        }
        state.tokens -= 1.0;
        state.sessions += 1;
        slot.key = Some(key);
        Ok(slot)
    }

    /// Live sessions admitted.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Address groups currently tracked.
    pub fn tracked_addresses(&self) -> usize {
        self.by_address.len()
    }

    /// Takes a place for a client connection, or `None` at the limit.
    pub fn connection(self: &Arc<Self>, limits: &LimitsConfig) -> Option<ConnectionSlot> {
        let max = match limits.max_connections {
            0 => self.auto_max_connections,
            n => n as usize,
        };
        let open = self.connections.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot {
            admission: Arc::clone(self),
        };
        (open < max).then_some(slot)
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Drops entries with no session whose bucket has refilled.
    fn sweep(&self, limits: &LimitsConfig, now: Instant) {
        {
            let mut last = self.last_sweep.lock();
            if last.is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let rate = f64::from(limits.new_sessions_per_ip_per_sec);
        let burst = rate * 2.0;
        self.by_address.retain(|_, s| {
            let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
            s.sessions > 0 || s.tokens + elapsed * rate < burst
        });
    }

    fn release(&self, key: Option<AddressKey>) {
        self.sessions.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = key {
            self.by_address
                .entry(key)
                .and_modify(|s| s.sessions = s.sessions.saturating_sub(1));
        }
    }
}

/// A session's place; given back when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    admission: Arc<Admission>,
    key: Option<AddressKey>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.admission.release(self.key.take());
    }
}

/// A client connection's place; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    admission: Arc<Admission>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.admission.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Half the soft open-file limit (each session holds a client and an
/// upstream socket), read from `/proc/self/limits`; 10,000 when unknown.
pub fn auto_max_connections() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line.split_whitespace().nth(3)?;
            soft.parse::<usize>().ok()
        })
        .map_or(10_000, |files| files.saturating_sub(100) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_ip: u32, rate: u32) -> LimitsConfig {
        LimitsConfig {
            max_sessions: total,
            max_sessions_per_ip: per_ip,
            new_sessions_per_ip_per_sec: rate,
            ..LimitsConfig::default()
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn per_address_cap_and_release() {
        let a = Arc::new(Admission::new(100));
        let l = limits(100, 2, 1000);
        let now = crate::clock::now();
        let s1 = a.admit(ip("192.0.2.1"), &l, now).unwrap();
        let _s2 = a.admit(ip("192.0.2.1"), &l, now).unwrap();
        assert_eq!(
            a.admit(ip("192.0.2.1"), &l, now).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        // Another address is not affected.
        let _s3 = a.admit(ip("192.0.2.2"), &l, now).unwrap();
        drop(s1);
        let _s4 = a.admit(ip("192.0.2.1"), &l, now).unwrap();
        assert_eq!(a.sessions(), 3, "a refused session holds no place");
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_budget() {
        let a = Arc::new(Admission::new(100));
        let l = limits(100, 1, 1000);
        let now = crate::clock::now();
        let _s = a.admit(ip("2001:db8:1:2::1"), &l, now).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2::ffff"), &l, now).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        assert!(a.admit(ip("2001:db8:1:3::1"), &l, now).is_ok());
        // An IPv4-mapped address counts as the IPv4 address.
        let _v4 = a.admit(ip("198.51.100.7"), &l, now).unwrap();
        assert!(a.admit(ip("::ffff:198.51.100.7"), &l, now).is_err());
    }

    #[test]
    fn new_sessions_are_rate_limited_with_a_burst() {
        let a = Arc::new(Admission::new(100));
        let l = limits(1000, 1000, 5);
        let start = crate::clock::now();
        let mut slots = Vec::new();
        for _ in 0..10 {
            slots.push(a.admit(ip("203.0.113.9"), &l, start).unwrap());
        }
        assert_eq!(
            a.admit(ip("203.0.113.9"), &l, start).unwrap_err(),
            Refusal::TooFast
        );
        // One token per 200 ms comes back.
        let later = start + Duration::from_millis(210);
        assert!(a.admit(ip("203.0.113.9"), &l, later).is_ok());
        assert_eq!(
            a.admit(ip("203.0.113.9"), &l, later).unwrap_err(),
            Refusal::TooFast
        );
    }

    #[test]
    fn total_cap_and_connections() {
        let a = Arc::new(Admission::new(2));
        let l = limits(1, 10, 10);
        let now = crate::clock::now();
        let _s = a.admit(None, &l, now).unwrap();
        assert_eq!(
            a.admit(ip("192.0.2.1"), &l, now).unwrap_err(),
            Refusal::Full
        );
        let c1 = a.connection(&l).unwrap();
        let _c2 = a.connection(&l).unwrap();
        assert!(a.connection(&l).is_none());
        drop(c1);
        assert!(a.connection(&l).is_some());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let a = Arc::new(Admission::new(100));
        let l = limits(100, 10, 10);
        let start = crate::clock::now();
        for i in 0..50 {
            drop(a.admit(ip(&format!("10.0.0.{i}")), &l, start).unwrap());
        }
        assert_eq!(a.tracked_addresses(), 50);
        let _ = a.admit(None, &l, start + Duration::from_secs(30));
        assert_eq!(a.tracked_addresses(), 0);
    }
}
