//! A session, a virtual clock and everything it emitted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::bosh::request::parse_request;
use crate::bosh::session::{BoshLimits, BoshSession, ReqId, Response};
use crate::stanza::{Stanza, StreamHeader};
use crate::upstream::{UpstreamAction, UpstreamEvent};
use crate::xml::reserialize::ClientXmlLimits;
use crate::xml::splitter::{Item, Splitter, SplitterLimits};

pub(super) const SID: &str = "test-sid";
pub(super) const RID: u64 = 1000;

pub(super) struct Harness {
    pub(super) session: BoshSession,
    pub(super) now: Instant,
    next_req: ReqId,
    responses: HashMap<ReqId, Response>,
    order: Vec<ReqId>,
    pub(super) upstream: Vec<UpstreamAction>,
}

impl Harness {
    /// A session created with `attrs` on the creation body (rid 1000, to='localhost').
    pub(super) fn create_with(limits: BoshLimits, attrs: &str) -> Self {
        let body = format!(
            "<body rid='{RID}' to='localhost' {attrs} xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        );
        let request = parse_request(body.as_bytes(), ClientXmlLimits::default()).unwrap();
        let now = crate::clock::now();
        let session = BoshSession::create(
            Arc::new(limits),
            SID.into(),
            "localhost".into(),
            1,
            request,
            now,
        );
        let mut h = Self {
            session,
            now,
            next_req: 2,
            responses: HashMap::new(),
            order: Vec::new(),
            upstream: Vec::new(),
        };
        h.drain();
        h
    }

    /// hold=1, wait=30, ver=1.6, and the upstream answers with header and features.
    pub(super) fn established() -> Self {
        Self::established_with(BoshLimits::default(), "hold='1' wait='30' ver='1.6'")
    }

    pub(super) fn established_with(limits: BoshLimits, attrs: &str) -> Self {
        let mut h = Self::create_with(limits, attrs);
        h.upstream_header();
        h.upstream_xml("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        assert!(h.body(1).contains("<stream:features"), "{}", h.body(1));
        h.upstream.clear();
        h
    }

    /// Sends a request body with `attrs` and `payload`; returns its request id.
    pub(super) fn send_raw(&mut self, rid: u64, attrs: &str, payload: &str) -> ReqId {
        let body = format!(
            "<body rid='{rid}' sid='{SID}' {attrs} xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'>{payload}</body>"
        );
        let request = parse_request(body.as_bytes(), ClientXmlLimits::default()).unwrap();
        let req_id = self.next_req;
        self.next_req += 1;
        self.session.handle_request(self.now, req_id, request);
        self.drain();
        req_id
    }

    pub(super) fn send(&mut self, rid: u64, payload: &str) -> ReqId {
        self.send_raw(rid, "", payload)
    }

    pub(super) fn gone(&mut self, req_id: ReqId) {
        self.session.handle_request_gone(self.now, req_id);
        self.drain();
    }

    pub(super) fn event(&mut self, event: UpstreamEvent) {
        self.session.handle_upstream(self.now, event);
        self.drain();
    }

    pub(super) fn upstream_header(&mut self) {
        self.event(UpstreamEvent::StreamOpened(StreamHeader {
            id: Some("stream-1".into()),
            from: Some("localhost".into()),
            version: Some("1.0".into()),
            default_ns: Some("jabber:client".into()),
            ..StreamHeader::default()
        }));
    }

    pub(super) fn upstream_xml(&mut self, xml: &str) {
        for stanza in elements(xml) {
            self.event(UpstreamEvent::Element(stanza));
        }
    }

    /// Moves the clock, firing every deadline crossed on the way.
    pub(super) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(deadline) = self.session.poll_timeout() {
            if deadline > end {
                break;
            }
            self.now = self.now.max(deadline);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    pub(super) fn advance_secs(&mut self, s: u64) {
        self.advance(Duration::from_secs(s));
    }

    fn drain(&mut self) {
        while let Some(r) = self.session.poll_response() {
            assert!(
                !self.responses.contains_key(&r.req_id),
                "request {} answered twice",
                r.req_id
            );
            self.order.push(r.req_id);
            self.responses.insert(r.req_id, r);
        }
        while let Some(a) = self.session.poll_upstream() {
            self.upstream.push(a);
        }
    }

    pub(super) fn response(&self, req_id: ReqId) -> Option<&Response> {
        self.responses.get(&req_id)
    }

    pub(super) fn answered(&self, req_id: ReqId) -> bool {
        self.responses.contains_key(&req_id)
    }

    /// The body of an answered request, as text.
    pub(super) fn body(&self, req_id: ReqId) -> String {
        let r = self
            .responses
            .get(&req_id)
            .unwrap_or_else(|| panic!("request {req_id} not answered"));
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// Request ids in the order they were answered.
    pub(super) fn answer_order(&self) -> &[ReqId] {
        &self.order
    }

    /// Bytes written upstream by `Send` actions, concatenated.
    pub(super) fn sent_upstream(&self) -> String {
        self.upstream
            .iter()
            .filter_map(|a| match a {
                UpstreamAction::Send(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
                _ => None,
            })
            .collect()
    }
}

const HEADER: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x'>";

/// Upstream elements parsed by the real splitter.
pub(super) fn elements(xml: &str) -> Vec<Stanza> {
    let mut splitter = Splitter::new(SplitterLimits::default());
    let mut buf = BytesMut::from(format!("{HEADER}{xml}").as_bytes());
    let mut out = Vec::new();
    while let Some(item) = splitter.feed(&mut buf).unwrap() {
        if let Item::Element(s) = item {
            out.push(s);
        }
    }
    out
}

pub(super) fn is_empty_body(body: &str) -> bool {
    body == "<body xmlns='http://jabber.org/protocol/httpbind'/>"
}

pub(super) fn condition_of(body: &str) -> Option<&str> {
    let at = body.find("condition='")? + "condition='".len();
    Some(&body[at..at + body[at..].find('\'')?])
}

pub(super) fn msg(n: u32) -> String {
    format!("<message to='bob@localhost' id='m{n}'><body>{n}</body></message>")
}
