//! Session ids and the table of live sessions, with what operators see of
//! each (admin API, metrics).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::RngCore;
use tokio::sync::Notify;

use crate::clock;
use crate::relay::bosh::BoshShared;

/// A BOSH session id: 128 bits from a CSPRNG seeded by the OS (BOSH-29),
/// written as 32 lower-case hex digits. In cluster mode the owning
/// replica's [`NodeTag`] comes first (8 more hex digits), so any replica
/// can tell where a session lives without a shared table.
#[derive(Clone, Copy, Eq)]
pub struct Sid {
    tag: Option<NodeTag>,
    random: [u8; 16],
}

impl Sid {
    /// A fresh, unpredictable id.
    pub fn random() -> Self {
        Self::random_for(None)
    }

    /// A fresh id owned by the replica `tag` (cluster mode), or untagged.
    pub fn random_for(tag: Option<NodeTag>) -> Self {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        Self { tag, random }
    }

    /// Parses the 32- or 40-hex-digit form; anything else is not a sid of ours.
    pub fn parse(text: &str) -> Option<Self> {
        let (tag, rest) = match text.len() {
            32 => (None, text),
            40 => {
                let (tag, rest) = text.split_at_checked(8)?;
                (Some(NodeTag::parse(tag)?), rest)
            }
            _ => return None,
        };
        let mut random = [0u8; 16];
        decode_hex(rest.as_bytes(), &mut random)?;
        Some(Self { tag, random })
    }

    /// The replica that issued it, in cluster mode.
    pub fn tag(&self) -> Option<NodeTag> {
        self.tag
    }
}

/// Which replica of a cluster owns a session: 32 random bits chosen at
/// start-up, so a sid names its owner without revealing an address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeTag([u8; 4]);

impl NodeTag {
    /// A fresh tag.
    pub fn random() -> Self {
        let mut bytes = [0u8; 4];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses 8 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 4];
        decode_hex(text.as_bytes(), &mut bytes)?;
        Some(Self(bytes))
    }

    /// The tag of a sid as a client sent it, if it carries one.
    pub fn of_sid(sid: &str) -> Option<Self> {
        Sid::parse(sid)?.tag
    }
}

impl fmt::Display for NodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeTag({self})")
    }
}

/// Fills `out` from exactly `2 * out.len()` hex digits.
fn decode_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
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
/// of a guessed sid was right. (The tag is public: it is in every sid.)
impl PartialEq for Sid {
    fn eq(&self, other: &Self) -> bool {
        self.tag == other.tag
            && self
                .random
                .iter()
                .zip(other.random.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

// Consistent with the constant-time `eq`: equal ids hash equally.
impl std::hash::Hash for Sid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tag.hash(state);
        self.random.hash(state);
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tag) = self.tag {
            write!(f, "{tag}")?;
        }
        for b in self.random {
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

/// Which front end a session came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// XEP-0124/0206.
    Bosh,
    /// RFC 7395.
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Transport {
    /// Label value for metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bosh => "bosh",
            Self::WebSocket => "websocket",
        }
    }
}

/// Where a session is in its life, for the admin API and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Waiting for the upstream connection.
    Connecting,
    /// Relaying.
    Open,
    /// Ending: closing handshakes or final flushes.
    Closing,
}

impl SessionState {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::Closing => "closing",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Open,
            _ => Self::Closing,
        }
    }
}

/// What operators can see of one session, updated by its driver task with
/// plain atomic stores and read by the admin API and the metrics scrape.
#[derive(Debug)]
pub struct SessionInfo {
    /// xmpp-edge's id for the session: the BOSH `sid`; for WebSocket an id
    /// of its own (the client sees the server's stream id, [`Self::stream_id`]).
    pub sid: Sid,
    /// Front end.
    pub transport: Transport,
    /// The client's address (after trusted forwarding headers).
    pub client: Option<SocketAddr>,
    /// When the session started.
    pub started: Instant,
    /// Seconds since the Unix epoch at the start, for display.
    pub started_unix: u64,
    domain: OnceLock<Box<str>>,
    upstream: OnceLock<Box<str>>,
    jid: OnceLock<Box<str>>,
    /// The server's current stream id (it changes at each stream restart).
    stream_id: arc_swap::ArcSwapOption<Box<str>>,
    state: AtomicU8,
    /// Milliseconds after `started` of the client's last request or frame.
    last_client_ms: AtomicU64,
    /// Elements and bytes relayed each way.
    pub stanzas_to_client: AtomicU64,
    /// See [`Self::stanzas_to_client`].
    pub bytes_to_client: AtomicU64,
    /// See [`Self::stanzas_to_client`].
    pub stanzas_to_upstream: AtomicU64,
    /// See [`Self::stanzas_to_client`].
    pub bytes_to_upstream: AtomicU64,
    /// Bytes waiting for the client.
    pub queued_to_client: AtomicU64,
    /// Bytes waiting for the server.
    pub queued_to_upstream: AtomicU64,
    /// BOSH requests parked (long-polls).
    pub held_requests: AtomicU64,
    kicked: AtomicBool,
    shutting_down: AtomicBool,
    /// Wakes the session's driver for a kick or a shutdown.
    kick: Notify,
}

impl SessionInfo {
    /// A session starting now.
    pub fn new(sid: Sid, transport: Transport, client: Option<SocketAddr>) -> Self {
        Self {
            sid,
            transport,
            client,
            started: clock::now(),
            started_unix: clock::unix_time().as_secs(),
            domain: OnceLock::new(),
            upstream: OnceLock::new(),
            jid: OnceLock::new(),
            stream_id: arc_swap::ArcSwapOption::empty(),
            state: AtomicU8::new(0),
            last_client_ms: AtomicU64::new(0),
            stanzas_to_client: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            stanzas_to_upstream: AtomicU64::new(0),
            bytes_to_upstream: AtomicU64::new(0),
            queued_to_client: AtomicU64::new(0),
            queued_to_upstream: AtomicU64::new(0),
            held_requests: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            kick: Notify::new(),
        }
    }

    /// The XMPP domain, once known.
    pub fn domain(&self) -> Option<&str> {
        self.domain.get().map(|d| &**d)
    }

    /// Records the XMPP domain (first value wins).
    pub fn set_domain(&self, domain: &str) {
        let _ = self.domain.set(domain.into());
    }

    /// The upstream server (`host:port`), once connected.
    pub fn upstream(&self) -> Option<&str> {
        self.upstream.get().map(|u| &**u)
    }

    /// Records the upstream server.
    pub fn set_upstream(&self, address: &str) {
        let _ = self.upstream.set(address.into());
    }

    /// The bound JID, once the server has assigned it.
    pub fn jid(&self) -> Option<&str> {
        self.jid.get().map(|j| &**j)
    }

    /// Whether the bound JID is still unknown (worth looking for).
    pub fn wants_jid(&self) -> bool {
        self.jid.get().is_none()
    }

    /// Records the bound JID.
    pub fn set_jid(&self, jid: &str) {
        let _ = self.jid.set(jid.into());
    }

    /// The id of the server's current stream: a WebSocket client sees it in
    /// its latest `<open id=…/>`; a BOSH client's `authid` is the first one's.
    pub fn stream_id(&self) -> Option<Arc<Box<str>>> {
        self.stream_id.load_full()
    }

    /// Records the id of a stream the server opened (the latest one wins).
    pub fn set_stream_id(&self, id: &str) {
        self.stream_id.store(Some(Arc::new(id.into())));
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        SessionState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Moves the session along.
    pub fn set_state(&self, state: SessionState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The client was heard from at `now`.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis();
        self.last_client_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Time since the client was last heard from.
    pub fn idle(&self, now: Instant) -> Duration {
        let last =
            self.started + Duration::from_millis(self.last_client_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// Asks the session to end (admin kick); its driver does the rest.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.kick.notify_one();
    }

    /// Whether an operator asked the session to end.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Asks the session to end because xmpp-edge is stopping.
    pub fn request_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.kick.notify_one();
    }

    /// Resolves once [`Self::kick`] or [`Self::request_shutdown`] was
    /// called (cancel-safe); [`Self::is_kicked`] tells which.
    pub async fn stop_requested(&self) {
        if !self.is_kicked() && !self.shutting_down.load(Ordering::Acquire) {
            self.kick.notified().await;
        }
    }
}

/// A registered session: what operators see, and for BOSH what its HTTP
/// requests need.
#[derive(Debug)]
struct Entry {
    info: Arc<SessionInfo>,
    bosh: Option<Arc<BoshShared>>,
}

/// Live sessions of both transports by id. Entries are removed by the
/// session's driver task when the session ends.
#[derive(Debug, Default)]
pub struct SessionTable {
    entries: DashMap<Sid, Entry>,
    /// Ended BOSH sessions that still answer repeated rids from their
    /// response cache for a little while ([`BoshShared::lingers`]).
    retired: DashMap<Sid, Arc<BoshShared>>,
    bosh: AtomicUsize,
    websockets: AtomicUsize,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks a BOSH session up by the sid a client sent.
    pub fn bosh(&self, sid: &str) -> Option<(Arc<SessionInfo>, Arc<BoshShared>)> {
        let sid = Sid::parse(sid)?;
        let entry = self.entries.get(&sid)?;
        let bosh = entry.bosh.clone()?;
        Some((Arc::clone(&entry.info), bosh))
    }

    /// Adds a session (with its BOSH state, for BOSH).
    pub fn insert(&self, info: Arc<SessionInfo>, bosh: Option<Arc<BoshShared>>) {
        match info.transport {
            Transport::Bosh => self.bosh.fetch_add(1, Ordering::Relaxed),
            Transport::WebSocket => self.websockets.fetch_add(1, Ordering::Relaxed),
        };
        self.entries.insert(info.sid, Entry { info, bosh });
    }

    /// Removes `info`'s session if it is still the one registered.
    pub fn remove(&self, info: &Arc<SessionInfo>) {
        let removed = self
            .entries
            .remove_if(&info.sid, |_, e| Arc::ptr_eq(&e.info, info));
        if removed.is_some() {
            match info.transport {
                Transport::Bosh => self.bosh.fetch_sub(1, Ordering::Relaxed),
                Transport::WebSocket => self.websockets.fetch_sub(1, Ordering::Relaxed),
            };
        }
    }

    /// A session by its printed id.
    pub fn get(&self, sid: &str) -> Option<Arc<SessionInfo>> {
        let sid = Sid::parse(sid)?;
        self.entries.get(&sid).map(|e| Arc::clone(&e.info))
    }

    /// Every live session.
    pub fn infos(&self) -> Vec<Arc<SessionInfo>> {
        self.entries.iter().map(|e| Arc::clone(&e.info)).collect()
    }

    /// Number of live BOSH sessions.
    pub fn bosh_count(&self) -> usize {
        self.bosh.load(Ordering::Relaxed)
    }

    /// Number of live WebSocket sessions.
    pub fn ws_count(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps an ended BOSH session reachable for repeated rids until
    /// [`Self::forget_retired`].
    pub fn retire(&self, sid: Sid, bosh: Arc<BoshShared>) {
        self.retired.insert(sid, bosh);
    }

    /// Drops a retired session.
    pub fn forget_retired(&self, sid: Sid) {
        self.retired.remove(&sid);
    }

    /// A retired BOSH session by the sid a client sent.
    pub fn retired_bosh(&self, sid: &str) -> Option<Arc<BoshShared>> {
        let sid = Sid::parse(sid)?;
        self.retired.get(&sid).map(|e| Arc::clone(e.value()))
    }

    /// Number of retired BOSH sessions still reachable.
    pub fn retired_count(&self) -> usize {
        self.retired.len()
    }

    /// Every live BOSH session (for shutdown).
    pub fn bosh_sessions(&self) -> Vec<Arc<BoshShared>> {
        self.entries.iter().filter_map(|e| e.bosh.clone()).collect()
    }

    /// Every live session that is not BOSH (WebSocket).
    pub fn websocket_sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.entries
            .iter()
            .filter(|e| e.bosh.is_none())
            .map(|e| Arc::clone(&e.info))
            .collect()
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
        let sid = |random| Sid { tag: None, random };
        let a = sid([0; 16]);
        let mut b = [0; 16];
        b[15] = 1;
        assert_ne!(a, sid(b));
        assert_eq!(a, sid([0; 16]));
        let tagged = Sid {
            tag: Some(NodeTag([0; 4])),
            random: [0; 16],
        };
        assert_ne!(a, tagged);
    }

    #[test]
    fn cluster_sids_carry_the_owner_tag_and_128_random_bits() {
        let tag = NodeTag::random();
        let sid = Sid::random_for(Some(tag));
        let text = sid.to_string();
        assert_eq!(text.len(), 40);
        assert!(text.starts_with(&tag.to_string()));
        assert_eq!(Sid::parse(&text), Some(sid));
        assert_eq!(NodeTag::of_sid(&text), Some(tag));
        // Same random part, other tag: another session.
        let other = format!("{}{}", NodeTag::random(), &text[8..]);
        assert_ne!(Sid::parse(&other), Some(sid));
        assert_eq!(NodeTag::of_sid(&Sid::random().to_string()), None);
        assert_eq!(Sid::parse(&format!("zzzzzzzz{}", &text[8..])), None);
    }
}
