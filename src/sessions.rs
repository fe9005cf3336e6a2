//! Session ids and the table of live BOSH sessions.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use rand::RngCore;

use crate::relay::bosh::BoshShared;

/// A BOSH session id: 128 bits from a CSPRNG seeded by the OS (BOSH-29),
/// written as 32 lower-case hex digits.
#[derive(Clone, Copy, Eq)]
pub struct Sid([u8; 16]);

impl Sid {
    /// A fresh, unpredictable id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses the 32-hex-digit form; anything else is not a sid of ours.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            bytes[i] = (hi << 4) | lo;
        }
        Some(Self(bytes))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Constant-time comparison, so response timing says nothing about how much
/// of a guessed sid was right.
impl PartialEq for Sid {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

// Consistent with the constant-time `eq`: equal ids hash equally.
impl std::hash::Hash for Sid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

/// Live sessions: BOSH sessions by id (their requests must find them), and a
/// count of WebSocket sessions (each is owned by its connection's task).
/// Entries are removed by the session's driver task when the session ends.
#[derive(Debug, Default)]
pub struct SessionTable {
    bosh: DashMap<Sid, Arc<BoshShared>>,
    websockets: AtomicUsize,
    ws_backlog_closed: AtomicU64,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks a BOSH session up by the sid a client sent.
    pub fn bosh(&self, sid: &str) -> Option<Arc<BoshShared>> {
        let sid = Sid::parse(sid)?;
        self.bosh.get(&sid).map(|e| Arc::clone(e.value()))
    }

    /// Adds a new session.
    pub fn insert_bosh(&self, sid: Sid, session: Arc<BoshShared>) {
        self.bosh.insert(sid, session);
    }

    /// Removes `session` if it is still the one registered under its sid.
    pub fn remove_bosh(&self, sid: Sid, session: &Arc<BoshShared>) {
        self.bosh.remove_if(&sid, |_, v| Arc::ptr_eq(v, session));
    }

    /// Number of live BOSH sessions.
    pub fn bosh_count(&self) -> usize {
        self.bosh.len()
    }

    /// A WebSocket session started.
    pub fn ws_opened(&self) {
        self.websockets.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket session ended.
    pub fn ws_closed(&self) {
        self.websockets.fetch_sub(1, Ordering::Relaxed);
    }

    /// Number of live WebSocket sessions.
    pub fn ws_count(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }

    /// Counts a WebSocket session closed because its client stopped reading.
    pub fn ws_backlog_closed(&self) {
        self.ws_backlog_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many WebSocket sessions were closed for not reading.
    pub fn ws_backlog_closed_total(&self) -> u64 {
        self.ws_backlog_closed.load(Ordering::Relaxed)
    }

    /// Every live BOSH session (for shutdown and the admin API).
    pub fn bosh_sessions(&self) -> Vec<Arc<BoshShared>> {
        self.bosh.iter().map(|e| Arc::clone(e.value())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bosh_29_sids_are_unique_128_bit_values() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let sid = Sid::random();
            let text = sid.to_string();
            assert_eq!(text.len(), 32);
            assert_eq!(Sid::parse(&text), Some(sid));
            assert!(seen.insert(text));
        }
    }

    #[test]
    fn foreign_sids_do_not_parse() {
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse(&"g".repeat(32)), None);
        assert_eq!(Sid::parse(&"0".repeat(33)), None);
    }

    #[test]
    fn comparison_sees_every_byte() {
        let a = Sid([0; 16]);
        let mut b = [0; 16];
        b[15] = 1;
        assert_ne!(a, Sid(b));
        assert_eq!(a, Sid([0; 16]));
    }
}
