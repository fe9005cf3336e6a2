//! Arbitrary event sequences through the BOSH session state machine
//! ([`BoshSession`]), with a fake clock that only moves forward.
//!
//! Events: requests with a chosen rid (next, offset, or a repeat), `ack`,
//! `pause`, `type='terminate'`, `xmpp:restart`, keys and payloads (each
//! request body goes through the real `parse_request`); HTTP requests going
//! away; upstream events (server bytes through the real splitter, closes,
//! failures; element reads stop while the core asks for backpressure);
//! timer ticks; shutdown and kick.
//!
//! Invariants checked:
//! - no panic;
//! - payloads go upstream strictly in rid order and never twice;
//! - each HTTP request gets at most one response, and once the clock has run
//!   out every request that did not go away got exactly one, and the session
//!   has ended;
//! - responses for one rid that carry data (not `type='terminate'` or
//!   `type='error'`) are byte-identical (BOSH-54: a repeat gets the cached
//!   response);
//! - a request whose payload was not forwarded is not answered as if it had been;
//! - every response is one well-formed `<body/>` in the httpbind namespace;
//!   upstream headers and payloads are well-formed; nothing goes upstream
//!   after `Close`/`Abort`;
//! - server elements reach the client in order and at most once, and none
//!   is lost when the session ends other than by the client vanishing
//!   (checked when every rid was sent in order);
//! - at most `hold` requests are held (one while the creation request waits);
//! - client-bound data queued in the core stays within `max_queued_bytes`
//!   plus one element.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use xmpp_edge::bosh::session::EndReason;
use xmpp_edge::bosh::{BoshLimits, BoshSession, ReqId, parse_request};
use xmpp_edge::upstream::negotiate::stream_header;
use xmpp_edge::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};
use xmpp_edge::xml::reserialize::ClientXmlLimits;
use xmpp_edge::xml::splitter::SplitterLimits;

use crate::{
    HTTPBIND_NS, SERVER_HEADER, UPSTREAM_CONTEXT, check_fragment, check_one_element,
    check_upstream_header, is_known_issue, server_events, text_escape, xml_clean,
};

/// One fuzz input: the creation request, then up to 96 operations.
#[derive(Arbitrary, Debug)]
pub struct Input {
    creation: Creation,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Creation {
    rid: u32,
    hold: Option<u8>,
    wait: Option<u8>,
    /// `ver='1.6'`; without it the client is a legacy one (HTTP error codes).
    ver: bool,
    acks: bool,
    keys: bool,
    max_hold: u8,
    enforce_overactivity: bool,
    maxpause: u8,
    polling: u8,
    queued_kib: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Request(Req),
    /// The HTTP request with this index (among those sent) goes away.
    Gone(u8),
    Server(Server),
    /// Centiseconds; deadlines crossed on the way fire, as with a real timer.
    Advance(u16),
    /// Whole seconds with no timer firing (a late timer).
    Jump(u8),
    /// An early or repeated timer call.
    Tick,
    Shutdown,
    Kick,
}

#[derive(Arbitrary, Debug)]
struct Req {
    rid: Rid,
    ack: Option<Ack>,
    pause: Option<u8>,
    terminate: bool,
    restart: bool,
    /// Send some (wrong) key: the chain check refuses it.
    bad_key: bool,
    payload: Payload,
}

#[derive(Arbitrary, Debug)]
enum Rid {
    /// One above the highest rid sent so far.
    Next,
    /// Relative to the highest rid sent so far.
    Offset(i8),
    /// A rid sent before (index into the list of sent rids).
    Repeat(u8),
}

#[derive(Arbitrary, Debug)]
enum Ack {
    /// The highest rid the client has a response for.
    Honest,
    /// Relative to the highest rid sent.
    Offset(i8),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Empty,
    /// 1..=3 chat messages.
    Messages(u8),
    /// A message with chosen body text.
    Text(String),
    /// Restricted XML: a payload error.
    Comment,
    /// STARTTLS: refused.
    StartTls,
    /// Any string inside `<body>`: may not even parse.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Server {
    Header,
    Element { template: u8, text: String },
    Raw(String),
    Closed,
    Failed(u8),
}

const SID: &str = "fuzz-sid";

/// Known issue, see `terminal_body_goes_to_a_live_request_not_an_orphaned_one`
/// in src/bosh/session/tests/terminate.rs (ignored until fixed): a terminal
/// body that carries elements (queued stanzas, the server's `<stream:error>`)
/// is given to the oldest held request even when that request has gone away
/// and a live one is held, so the client never sees them. While `true`, the
/// target tolerates exactly that; set it to `false` once the fix is in.
const TOLERATE_TERMINAL_TO_ORPHAN: bool = false;

/// Known issue, see `kick_keeps_a_pending_stream_error` in
/// src/bosh/session/tests/terminate.rs (ignored until fixed): a kick or a
/// shutdown while a terminal body waits for the next request (BOSH-79)
/// replaces it, dropping the elements it carried (the server's
/// `<stream:error>`). While `true`, the loss check is off after a kick or
/// shutdown that finds the upstream already finished.
const TOLERATE_KICK_REPLACES_PENDING: bool = false;

/// Finds `~<tag><digits>~` markers in `bytes`, in order.
fn markers(bytes: &[u8], tag: u8) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == b'~' && bytes[i + 1] == tag {
            let digits: Vec<u8> = bytes[i + 2..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            let end = i + 2 + digits.len();
            if !digits.is_empty() && bytes.get(end) == Some(&b'~') {
                if let Some(n) = std::str::from_utf8(&digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                {
                    out.push(n);
                }
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn server_element(template: u8, text: &str, marker: u64) -> String {
    let t = text_escape(&xml_clean(text));
    let m = format!("~u{marker}~");
    match template % 8 {
        0 => format!(
            "<message from='bob@localhost/r' to='alice@localhost/w' type='chat' id='{m}'><body>{t}</body></message>"
        ),
        1 => format!("<presence from='bob@localhost/r' id='{m}'><status>{t}</status></presence>"),
        2 => format!(
            "<stream:features id='{m}'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        ),
        3 => format!("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{m}</success>"),
        4 => format!(
            "<iq type='result' id='{m}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/{t}</jid></bind></iq>"
        ),
        5 => format!(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{m}{t}</text></stream:error>"
        ),
        6 => format!("<r xmlns='urn:xmpp:sm:3' h='{m}'/>"),
        _ => format!(
            "<message from='bob@localhost/r' id='{m}' xml:lang='de'><body>{t}{t}{t}{t}{t}{t}{t}{t}</body></message>"
        ),
    }
}

struct Sent {
    rid: u64,
    /// The body carried data for upstream (and no restart, no payload error).
    payload: bool,
    gone: bool,
}

#[derive(Default)]
struct Checker {
    hold: usize,
    max_queued: usize,
    requests: BTreeMap<ReqId, Sent>,
    answered: HashMap<ReqId, Bytes>,
    /// Data-carrying responses by rid.
    data_by_rid: HashMap<u64, Bytes>,
    /// Terminal bodies by rid: an ended session repeats them from its cache.
    terminal_by_rid: HashMap<u64, Bytes>,
    sent_rids: BTreeSet<u64>,
    last_sent_rid: u64,
    upstream_finished: bool,
    /// Server element markers handed to the core, and delivered to a live request.
    handed: BTreeSet<u64>,
    delivered: BTreeSet<u64>,
    last_delivered: Option<u64>,
    /// Element markers carried by responses to requests that had gone away.
    to_nobody: BTreeSet<u64>,
}

impl Checker {
    fn drain(&mut self, s: &mut BoshSession) {
        while let Some(action) = s.poll_upstream() {
            assert!(!self.upstream_finished, "{action:?} after Close/Abort");
            match action {
                UpstreamAction::Open(open) => {
                    let header = stream_header(&open, true);
                    if let Err(e) = check_upstream_header(&header, &open) {
                        panic!(
                            "upstream header is broken: {e}\n{:?}",
                            String::from_utf8_lossy(&header)
                        );
                    }
                }
                UpstreamAction::Send(bytes) => {
                    if let Err(e) = check_fragment(&bytes, UPSTREAM_CONTEXT)
                        && !is_known_issue(&e)
                    {
                        panic!(
                            "Send is not well-formed: {e}\n{:?}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                    let reqs = markers(&bytes, b'p');
                    let rids: BTreeSet<u64> = reqs
                        .iter()
                        .filter_map(|r| self.requests.get(r).map(|s| s.rid))
                        .collect();
                    assert!(rids.len() <= 1, "one Send mixes payloads of rids {rids:?}");
                    if let Some(&rid) = rids.first() {
                        assert!(
                            rid > self.last_sent_rid,
                            "payload of rid {rid} sent after rid {} (sent before: {:?})",
                            self.last_sent_rid,
                            self.sent_rids
                        );
                        self.last_sent_rid = rid;
                        self.sent_rids.insert(rid);
                    }
                }
                UpstreamAction::Close | UpstreamAction::Abort => self.upstream_finished = true,
            }
        }
        while let Some(response) = s.poll_response() {
            let req = response.req_id;
            let Some(sent) = self.requests.get(&req) else {
                panic!("response for unknown request {req}");
            };
            assert!(
                self.answered.insert(req, response.body.clone()).is_none(),
                "request {req} (rid {}) answered twice",
                sent.rid
            );
            let body = &response.body;
            let kind = match check_one_element(body, "") {
                Ok(top) => {
                    assert!(
                        top.ns == HTTPBIND_NS && top.local == "body",
                        "response root is {{{}}}{}",
                        top.ns,
                        top.local
                    );
                    top.attrs
                        .iter()
                        .find(|(ns, l, _)| ns.is_empty() && l == "type")
                        .map(|(_, _, v)| v.clone())
                }
                // A relayed element with a known, tolerated defect: read the
                // body's own first tag (written by xmpp-edge) by hand.
                Err(e) if is_known_issue(&e) => {
                    let head = &body[..body.iter().position(|&b| b == b'>').unwrap_or(body.len())];
                    let head = String::from_utf8_lossy(head);
                    ["terminate", "error"]
                        .into_iter()
                        .find(|t| head.contains(&format!(" type='{t}'")))
                        .map(String::from)
                }
                Err(e) => panic!(
                    "response is not well-formed: {e}\n{:?}",
                    String::from_utf8_lossy(body)
                ),
            };
            let kind = kind.as_deref();
            let is_data = kind.is_none() && response.status == 200;
            let had_data = self.data_by_rid.contains_key(&sent.rid);
            let repeat = self.requests.range(..req).any(|(_, s)| s.rid == sent.rid);
            if is_data {
                if let Some(previous) = self.data_by_rid.get(&sent.rid) {
                    assert_eq!(
                        previous, body,
                        "rid {} answered twice with different data",
                        sent.rid
                    );
                } else {
                    self.data_by_rid.insert(sent.rid, body.clone());
                }
                if sent.payload && !repeat && !self.upstream_finished {
                    assert!(
                        self.sent_rids.contains(&sent.rid),
                        "rid {} answered normally but its payload never went upstream",
                        sent.rid
                    );
                }
            }
            // Server elements: in order, once; a cached copy for a repeat is the same bytes.
            let found = markers(body, b'u');
            // A session that ended on the server's side answers repeats of
            // its last rids from the cache, terminal body included.
            let cached_copy = (is_data && had_data)
                || (repeat && self.terminal_by_rid.get(&sent.rid) == Some(body));
            if kind == Some("terminate") {
                self.terminal_by_rid
                    .entry(sent.rid)
                    .or_insert_with(|| body.clone());
            }
            if !found.is_empty() && !cached_copy {
                for m in &found {
                    assert!(
                        self.handed.contains(m),
                        "element {m} delivered but never received"
                    );
                    if sent.gone {
                        assert!(
                            kind == Some("terminate") && TOLERATE_TERMINAL_TO_ORPHAN,
                            "element {m} carried on a response to a request that had gone away: {:?}",
                            String::from_utf8_lossy(body)
                        );
                        self.to_nobody.insert(*m);
                        continue;
                    }
                    assert!(
                        self.last_delivered.is_none_or(|l| *m > l),
                        "element {m} delivered after {:?} (duplicate or reordered)",
                        self.last_delivered
                    );
                    self.last_delivered = Some(*m);
                    self.delivered.insert(*m);
                }
            }
        }
        assert!(
            s.held_requests() <= self.hold.max(1),
            "{} requests held, hold is {}",
            s.held_requests(),
            self.hold
        );
        assert!(
            s.queued_bytes() <= self.max_queued + 4096,
            "{} bytes queued for the client (limit {})",
            s.queued_bytes(),
            self.max_queued
        );
    }
}

fn request_body(rid: u64, req: &Req, req_id: ReqId, ack: Option<u64>) -> (String, bool) {
    let mut attrs = format!("rid='{rid}' sid='{SID}'");
    if let Some(ack) = ack {
        attrs.push_str(&format!(" ack='{ack}'"));
    }
    if let Some(pause) = req.pause {
        attrs.push_str(&format!(" pause='{pause}'"));
    }
    if req.terminate {
        attrs.push_str(" type='terminate'");
    }
    if req.restart {
        attrs.push_str(" xmpp:restart='true' to='localhost'");
    }
    if req.bad_key {
        attrs.push_str(" key='0000000000000000000000000000000000000000'");
    }
    let (payload, data) = match &req.payload {
        Payload::Empty => (String::new(), false),
        Payload::Messages(n) => (
            (0..(n % 3) + 1)
                .map(|k| {
                    format!("<message to='bob@localhost' type='chat' id='~p{req_id}~{k}' xmlns='jabber:client'><body>hello {k}</body></message>")
                })
                .collect(),
            true,
        ),
        Payload::Text(text) => (
            format!(
                "<message to='bob@localhost' id='~p{req_id}~' xmlns='jabber:client'><body>{}</body></message>",
                text_escape(&text.replace('~', "-"))
            ),
            true,
        ),
        Payload::Comment => ("<message><!-- hidden --></message>".to_string(), false),
        Payload::StartTls => ("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_string(), false),
        Payload::Raw(raw) => (
            format!("<message id='~p{req_id}~'/>{}", raw.replace('~', "-")),
            true,
        ),
    };
    (
        format!(
            "<body {attrs} xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'>{payload}</body>"
        ),
        data && !req.restart,
    )
}

fn creation(c: &Creation) -> (BoshLimits, String, u64, usize) {
    let limits = BoshLimits {
        max_wait: 50,
        max_hold: c.max_hold % 3 + 1,
        inactivity: 60,
        polling: u16::from(c.polling % 4),
        maxpause: [0, 30, 120][usize::from(c.maxpause % 3)],
        enforce_overactivity: c.enforce_overactivity,
        max_queued_bytes: (usize::from(c.queued_kib % 8) + 1) * 256,
        max_rid_repeats: 8,
    };
    let rid = u64::from(c.rid) % 1_000_000 + 1;
    let mut attrs = format!("rid='{rid}' to='localhost' xmpp:version='1.0'");
    if let Some(hold) = c.hold {
        attrs.push_str(&format!(" hold='{}'", hold % 4));
    }
    if let Some(wait) = c.wait {
        attrs.push_str(&format!(" wait='{}'", wait % 70));
    }
    if c.ver {
        attrs.push_str(" ver='1.6'");
    }
    if c.acks {
        attrs.push_str(" ack='1'");
    }
    if c.keys {
        attrs.push_str(" newkey='ca393b51b682f61f98e7877d61146407f3d0a770'");
    }
    let hold = usize::from(c.hold.map_or(1, |h| h % 4).min(limits.max_hold));
    (
        limits,
        format!(
            "<body {attrs} xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
        rid,
        hold,
    )
}

/// Decodes `data` the way libfuzzer-sys 0.4's typed `fuzz_target!` does
/// (`arbitrary_take_rest`; inputs shorter than the size hint or that fail to
/// decode are skipped), so a saved file replays the `Input` libFuzzer ran.
pub fn run(data: &[u8]) {
    if data.len() < Input::size_hint(0).0 {
        return;
    }
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check(input);
    }
}

/// Runs one decoded input; panics when an invariant above breaks.
pub fn check(input: Input) {
    let (limits, body, first_rid, hold) = creation(&input.creation);
    let max_queued = limits.max_queued_bytes;
    let request =
        parse_request(body.as_bytes(), ClientXmlLimits::default()).expect("creation body parses");
    // The fake clock's origin: only time since it matters (clippy.toml's rule is for src/).
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut s = BoshSession::create(
        Arc::new(limits),
        SID.into(),
        "localhost".into(),
        1,
        request,
        now,
    );
    let mut c = Checker {
        hold,
        max_queued,
        ..Checker::default()
    };
    c.requests.insert(
        1,
        Sent {
            rid: first_rid,
            payload: false,
            gone: false,
        },
    );
    c.drain(&mut s);

    let mut next_req: ReqId = 2;
    let mut rids_sent = vec![first_rid];
    let mut highest = first_rid;
    let mut next_marker = 0u64;
    let mut ended_by_timer = false;
    // A repeated, skipped-ahead or out-of-window rid: the loss check is off
    // (a repeat may take the pending terminal body while elements are still
    // queued for the next in-order request; see the README).
    let mut irregular = false;
    let run_timers = |s: &mut BoshSession, c: &mut Checker, now: &mut Instant, end: Instant| {
        let mut guard = 0;
        while let Some(deadline) = s.poll_timeout() {
            if deadline > end {
                break;
            }
            guard += 1;
            assert!(guard < 10_000, "timer keeps firing without progress");
            *now = (*now).max(deadline);
            s.handle_timeout(*now);
            c.drain(s);
        }
        *now = (*now).max(end);
    };

    for op in input.ops.iter().take(96) {
        let was_running = s.ended().is_none();
        let mut by_timer = false;
        match op {
            Op::Request(req) => {
                let rid = match req.rid {
                    Rid::Next => highest + 1,
                    Rid::Offset(d) => highest.saturating_add_signed(i64::from(d)).max(1),
                    Rid::Repeat(i) => rids_sent[usize::from(i) % rids_sent.len()],
                };
                let ack = req.ack.as_ref().map(|a| match a {
                    Ack::Honest => c
                        .answered
                        .keys()
                        .filter_map(|r| c.requests.get(r).map(|s| s.rid))
                        .max()
                        .unwrap_or(first_rid),
                    Ack::Offset(d) => highest.saturating_add_signed(i64::from(*d)).max(1),
                });
                irregular |= rid != highest + 1;
                let req_id = next_req;
                let (body, data) = request_body(rid, req, req_id, ack);
                // An unreadable body is answered by the HTTP layer, never reaching the core.
                let Ok(request) = parse_request(body.as_bytes(), ClientXmlLimits::default()) else {
                    continue;
                };
                let data = data && request.payload_error.is_none() && request.payload_count > 0;
                next_req += 1;
                c.requests.insert(
                    req_id,
                    Sent {
                        rid,
                        payload: data,
                        gone: false,
                    },
                );
                rids_sent.push(rid);
                highest = highest.max(rid);
                s.handle_request(now, req_id, request);
            }
            Op::Gone(i) => {
                let ids: Vec<ReqId> = c.requests.keys().copied().collect();
                let id = ids[usize::from(*i) % ids.len()];
                if !c.answered.contains_key(&id) {
                    if let Some(sent) = c.requests.get_mut(&id) {
                        sent.gone = true;
                    }
                    s.handle_request_gone(now, id);
                }
            }
            Op::Server(server) => {
                let events = match server {
                    Server::Header => {
                        server_events(SERVER_HEADER.as_bytes(), SplitterLimits::default())
                    }
                    Server::Element { template, text } => {
                        next_marker += 1;
                        let doc = format!(
                            "{SERVER_HEADER}{}",
                            server_element(*template, text, next_marker)
                        );
                        server_events(doc.as_bytes(), SplitterLimits::default())
                            .into_iter()
                            .skip(1)
                            .collect()
                    }
                    Server::Raw(raw) => {
                        let doc = format!("{SERVER_HEADER}{}", xml_clean(raw).replace('~', "-"));
                        server_events(doc.as_bytes(), SplitterLimits::default())
                            .into_iter()
                            .skip(1)
                            .collect()
                    }
                    Server::Closed => vec![UpstreamEvent::StreamClosed],
                    Server::Failed(n) => vec![UpstreamEvent::Failed(match n % 3 {
                        0 => UpstreamFailure::Lost("reset".into()),
                        1 => UpstreamFailure::HostUnknown,
                        _ => UpstreamFailure::WriteStalled,
                    })],
                };
                for event in events {
                    let is_element = matches!(event, UpstreamEvent::Element(_));
                    // The driver reads no more while the core asks for backpressure.
                    if is_element && !s.wants_upstream_data() {
                        break;
                    }
                    if let UpstreamEvent::Element(stanza) = &event
                        && s.ended().is_none()
                        && !c.upstream_finished
                    {
                        c.handed.extend(markers(stanza.as_bytes(), b'u'));
                    }
                    s.handle_upstream(now, event);
                    c.drain(&mut s);
                }
            }
            Op::Advance(cs) => {
                let end = now + Duration::from_millis(u64::from(*cs) * 10);
                run_timers(&mut s, &mut c, &mut now, end);
                by_timer = true;
            }
            Op::Jump(secs) => now += Duration::from_secs(u64::from(*secs)),
            Op::Tick => {
                s.handle_timeout(now);
                by_timer = true;
            }
            Op::Shutdown | Op::Kick => {
                irregular |= TOLERATE_KICK_REPLACES_PENDING && c.upstream_finished;
                if matches!(op, Op::Kick) {
                    s.handle_kick(now);
                } else {
                    s.handle_shutdown(now);
                }
            }
        }
        c.drain(&mut s);
        if was_running && s.ended().is_some() {
            ended_by_timer = by_timer;
        }
    }

    // Run the clock out: the session must end and answer everyone still waiting.
    let far = now + Duration::from_secs(24 * 3600);
    let was_running = s.ended().is_none();
    run_timers(&mut s, &mut c, &mut now, far);
    if was_running && s.ended().is_some() {
        ended_by_timer = true;
    }
    assert!(
        s.ended().is_some(),
        "session still alive after a day without requests"
    );
    for (req, sent) in &c.requests {
        assert!(
            sent.gone || c.answered.contains_key(req),
            "request {req} (rid {}) never answered",
            sent.rid
        );
    }
    // Nothing lost unless the client vanished (inactivity) or never came back.
    let reason = s.ended();
    if !ended_by_timer && !irregular && reason != Some(EndReason::Inactivity) {
        let lost: Vec<u64> = c
            .handed
            .iter()
            .filter(|m| !c.delivered.contains(m) && !c.to_nobody.contains(m))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "session ended ({reason:?}) with server elements {lost:?} never delivered to a live request \
             (to requests that had gone away: {:?})",
            c.to_nobody
        );
    }
}
