use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::*;
use crate::upstream::UpstreamFailure;
use crate::xml::splitter::{Item, Splitter, SplitterLimits};

struct H {
    s: WsSession,
    now: Instant,
    sent: Vec<ClientAction>,
    upstream: Vec<UpstreamAction>,
}

const OPEN: &str = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='en'/>";
const CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0' xml:lang='en'>";

impl H {
    fn with(limits: WsLimits) -> Self {
        let now = crate::clock::now();
        let mut h = Self {
            s: WsSession::new(Arc::new(limits), "own-id".into(), now),
            now,
            sent: Vec::new(),
            upstream: Vec::new(),
        };
        h.drain();
        h
    }

    fn new() -> Self {
        Self::with(WsLimits::default())
    }

    /// Opened, domain accepted, header and SASL features relayed.
    fn open() -> Self {
        let mut h = Self::new();
        h.text(OPEN);
        h.s.accept_domain(true);
        h.drain();
        h.server(&format!("{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"));
        h.sent.clear();
        h.upstream.clear();
        h
    }

    fn text(&mut self, text: &str) {
        self.s.handle_client_text(self.now, text);
        self.drain();
    }

    fn event(&mut self, event: UpstreamEvent) {
        self.s.handle_upstream(self.now, event);
        self.drain();
    }

    /// Feeds server bytes through the real splitter (a header must come first).
    fn server(&mut self, xml: &str) {
        let mut splitter = Splitter::new(SplitterLimits::default());
        let mut buf = BytesMut::from(xml.as_bytes());
        while let Some(item) = splitter.feed(&mut buf).unwrap() {
            let event = match item {
                Item::StreamOpen(h) => UpstreamEvent::StreamOpened(h),
                Item::Element(s) => UpstreamEvent::Element(s),
                Item::StreamClose => UpstreamEvent::StreamClosed,
            };
            self.event(event);
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(d) = self.s.poll_timeout() {
            if d > end {
                break;
            }
            self.now = self.now.max(d);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.s.handle_timeout(self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(a) = self.s.poll_client() {
            self.sent.push(a);
        }
        while let Some(a) = self.s.poll_upstream() {
            self.upstream.push(a);
        }
    }

    fn texts(&self) -> Vec<String> {
        self.sent
            .iter()
            .filter_map(|a| match a {
                ClientAction::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn close_code(&self) -> Option<u16> {
        self.sent.iter().find_map(|a| match a {
            ClientAction::Close(c) => Some(*c),
            _ => None,
        })
    }
}

/// The (message before the error, error) of an error sequence ending in `<close/>`.
fn error_sequence(h: &H) -> (String, String) {
    let texts = h.texts();
    let n = texts.len();
    assert!(n >= 2, "{texts:?}");
    assert_eq!(texts[n - 1], CLOSE, "{texts:?}");
    assert!(texts[n - 2].starts_with("<stream:error"), "{texts:?}");
    let before = if n >= 3 {
        texts[n - 3].clone()
    } else {
        String::new()
    };
    (before, texts[n - 2].clone())
}

#[test]
fn ws_17_nothing_is_sent_before_the_clients_open() {
    let mut h = H::new();
    h.advance(Duration::from_secs(2));
    assert!(h.sent.is_empty());
    assert!(h.upstream.is_empty());
}

#[test]
fn ws_19_open_becomes_an_upstream_header_once_the_domain_is_accepted() {
    let mut h = H::new();
    h.text("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='LocalHost' version='1.0' xml:lang='de' from='a@localhost'/>");
    assert_eq!(h.s.requested_domain(), Some("localhost"));
    assert!(h.upstream.is_empty());
    h.s.accept_domain(true);
    h.drain();
    assert_eq!(
        h.upstream,
        [UpstreamAction::Open(OpenStream {
            to: "localhost".into(),
            from: Some("a@localhost".into()),
            lang: Some("de".into()),
            version: "1.0".into(),
            restart: false,
        })]
    );
}

#[test]
fn ws_20_server_header_becomes_a_self_closing_open() {
    let mut h = H::new();
    h.text(OPEN);
    h.s.accept_domain(true);
    h.server(HEADER);
    assert_eq!(
        h.texts(),
        [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0' xml:lang='en'/>"
        ]
    );
    assert!(h.s.is_open());
}

#[test]
fn ws_9_11_12_elements_are_standalone_messages() {
    let mut h = H::open();
    h.server(&format!(
        "{HEADER}<message from='b@localhost' id='1'><body>a</body></message> <presence xml:lang='fr'/>\n<iq type='result' id='x'/>"
    ));
    let texts = h.texts();
    // The first message is the new <open/> of the replayed header.
    assert_eq!(
        &texts[texts.len() - 3..],
        [
            "<message from='b@localhost' id='1' xmlns='jabber:client' xml:lang='en'><body>a</body></message>",
            "<presence xml:lang='fr' xmlns='jabber:client'/>",
            "<iq type='result' id='x' xmlns='jabber:client' xml:lang='en'/>",
        ]
    );
}

#[test]
fn ws_12_features_declare_the_stream_prefix() {
    let mut h = H::new();
    h.text(OPEN);
    h.s.accept_domain(true);
    h.server(&format!("{HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"));
    let texts = h.texts();
    assert_eq!(
        texts[1],
        "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    );
}

#[test]
fn ws_13_client_stanzas_are_reserialised_upstream() {
    let mut h = H::open();
    h.text("<message to='b@localhost' xmlns='jabber:client'><body>x</body></message>");
    assert_eq!(
        h.upstream,
        [UpstreamAction::Send(Bytes::from_static(
            b"<message to='b@localhost'><body>x</body></message>"
        ))]
    );
}

#[test]
fn ws_23_restart_after_sasl_success() {
    let mut h = H::open();
    h.text("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>");
    h.server(&format!(
        "{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    ));
    h.upstream.clear();
    h.sent.clear();
    h.text(OPEN);
    assert!(matches!(&h.upstream[..], [UpstreamAction::Open(o)] if o.restart));
    h.server("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s2' from='localhost' version='1.0'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
    let texts = h.texts();
    assert!(
        texts[0].starts_with("<open ") && texts[0].contains("id='s2'"),
        "{texts:?}"
    );
    assert!(texts[1].contains("xmpp-bind"));
}

#[test]
fn restart_before_sasl_success_is_refused() {
    let mut h = H::open();
    h.text(OPEN);
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<policy-violation"), "{error}");
}

#[test]
fn ws_25_client_close_waits_for_the_server() {
    let mut h = H::open();
    h.text(CLOSE);
    assert_eq!(h.upstream, [UpstreamAction::Close]);
    assert!(h.texts().is_empty());
    h.event(UpstreamEvent::StreamClosed);
    assert_eq!(h.texts(), [CLOSE]);
    assert_eq!(
        h.close_code(),
        None,
        "the client starts the WebSocket close"
    );
    h.s.handle_client_close(h.now);
    assert_eq!(h.s.ended(), Some(WsEnd::Closed));
}

#[test]
fn ws_25_client_close_times_out_without_the_server() {
    let mut h = H::open();
    h.text(CLOSE);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.texts(), [CLOSE]);
    assert_eq!(h.close_code(), Some(close_code::NORMAL));
}

#[test]
fn ws_26_server_close_is_relayed_and_answered() {
    let mut h = H::open();
    h.event(UpstreamEvent::StreamClosed);
    assert_eq!(h.texts(), [CLOSE]);
    assert_eq!(h.upstream, [UpstreamAction::Close]);
    h.text(CLOSE);
    assert_eq!(h.close_code(), Some(close_code::NORMAL));
    h.s.handle_client_close(h.now);
    assert_eq!(h.s.ended(), Some(WsEnd::Closed));
}

#[test]
fn ws_27_dropped_websocket_aborts_upstream_without_a_closing_tag() {
    let mut h = H::open();
    h.s.handle_client_gone();
    h.drain();
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
    assert_eq!(h.s.ended(), Some(WsEnd::ClientGone));
}

#[test]
fn ws_28_server_stream_error_is_forwarded_then_closed() {
    let mut h = H::open();
    h.server(&format!(
        "{HEADER}<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text></stream:error>"
    ));
    let texts = h.texts();
    let n = texts.len();
    assert!(texts[n - 2].starts_with("<stream:error xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><conflict"), "{texts:?}");
    assert_eq!(texts[n - 1], CLOSE);
    assert_eq!(h.close_code(), Some(close_code::NORMAL));
    assert_eq!(h.upstream, [UpstreamAction::Close]);
}

#[test]
fn ws_29_21_unknown_domain_gets_an_own_open_then_host_unknown() {
    let mut h = H::new();
    h.text(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='unknown.example' version='1.0'/>",
    );
    h.s.refuse_domain(h.now);
    h.drain();
    let (open, error) = error_sequence(&h);
    assert_eq!(
        open,
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='' id='own-id' version='1.0' xml:lang='en'/>"
    );
    assert!(error.contains("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
    assert!(h.upstream.is_empty(), "never connected");
}

#[test]
fn ws_29_upstream_failure_before_the_header_is_internal_server_error() {
    let mut h = H::new();
    h.text(OPEN);
    h.s.accept_domain(true);
    h.drain();
    h.event(UpstreamEvent::Failed(UpstreamFailure::Connect(
        "refused".into(),
    )));
    let (open, error) = error_sequence(&h);
    assert!(
        open.contains("from='localhost'") && open.contains("id='own-id'"),
        "{open}"
    );
    assert!(error.contains("<internal-server-error"), "{error}");
}

#[test]
fn ws_29_dns_found_upstream_failure_is_remote_connection_failed() {
    let mut h = H::new();
    h.text(OPEN);
    h.s.accept_domain(false);
    h.drain();
    h.event(UpstreamEvent::Failed(UpstreamFailure::Connect(
        "refused".into(),
    )));
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<remote-connection-failed"), "{error}");
}

#[test]
fn ws_18_open_in_the_wrong_namespace() {
    let mut h = H::new();
    h.text("<open xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'/>");
    let (open, error) = error_sequence(&h);
    assert!(open.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"));
    assert!(error.contains("<invalid-namespace"), "{error}");
}

#[test]
fn ws_10_30_broken_xml_is_not_well_formed() {
    let mut h = H::open();
    h.text("<message><body>x");
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<not-well-formed"), "{error}");
    assert_eq!(h.upstream, [UpstreamAction::Close]);
    assert!(
        h.upstream
            .iter()
            .all(|a| !matches!(a, UpstreamAction::Send(_)))
    );
}

#[test]
fn ws_10_two_elements_in_one_message() {
    let mut h = H::open();
    h.text("<presence/><presence/>");
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<not-well-formed"), "{error}");
    let mut h = H::with(WsLimits {
        allow_multiple_elements: true,
        ..WsLimits::default()
    });
    h.text(OPEN);
    h.s.accept_domain(true);
    h.drain();
    h.server(HEADER);
    h.upstream.clear();
    h.text("<presence/><presence type='unavailable'/>");
    assert_eq!(
        h.upstream,
        [UpstreamAction::Send(Bytes::from_static(
            b"<presence/><presence type='unavailable'/>"
        ))]
    );
}

#[test]
fn ws_48_restricted_xml_nothing_goes_upstream() {
    let mut h = H::open();
    h.text("<message xmlns='jabber:client'><!-- x --><body>a</body></message>");
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<restricted-xml"), "{error}");
    assert!(
        h.upstream
            .iter()
            .all(|a| !matches!(a, UpstreamAction::Send(_)))
    );
}

#[test]
fn ws_7_37_binary_message_closes_with_1003() {
    let mut h = H::open();
    h.s.handle_client_binary(h.now);
    h.drain();
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<unsupported-encoding"), "{error}");
    assert_eq!(h.close_code(), Some(close_code::UNSUPPORTED_DATA));
}

#[test]
fn ws_7_37_invalid_utf8_closes_with_1007() {
    let mut h = H::open();
    h.s.handle_client_invalid_utf8(h.now);
    h.drain();
    assert_eq!(h.close_code(), Some(close_code::INVALID_PAYLOAD));
    assert!(
        h.s.ended().is_some(),
        "failed at once: nothing more can be read"
    );
}

/// UP-56: the client-side stanza limit.
#[test]
fn ws_16_37_oversize_message_closes_with_1009() {
    let mut h = H::open();
    h.s.handle_client_too_big(h.now);
    h.drain();
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<policy-violation"), "{error}");
    assert_eq!(h.close_code(), Some(close_code::MESSAGE_TOO_BIG));
}

#[test]
fn ws_30_no_open_in_time_is_connection_timeout() {
    let mut h = H::new();
    h.advance(Duration::from_secs(10));
    let (open, error) = error_sequence(&h);
    assert!(open.starts_with("<open "));
    assert!(error.contains("<connection-timeout"), "{error}");
}

#[test]
fn ws_34_pings_when_idle_and_closes_when_unanswered() {
    let mut h = H::open();
    h.advance(Duration::from_secs(30));
    assert_eq!(h.sent, [ClientAction::Ping]);
    h.s.handle_client_pong(h.now);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.sent, [ClientAction::Ping, ClientAction::Ping]);
    // No pong any more: closed after the idle timeout.
    h.advance(Duration::from_secs(90));
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<connection-timeout"), "{error}");
    assert_eq!(
        h.upstream,
        [UpstreamAction::Abort],
        "client may come back and resume"
    );
}

#[test]
fn ws_31_redirect_with_see_other_uri() {
    let mut h = H::with(WsLimits {
        see_other_uri: Some("wss://other.example/xmpp-websocket".into()),
        ..WsLimits::default()
    });
    h.text(OPEN);
    assert_eq!(
        h.texts(),
        [
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://other.example/xmpp-websocket'/>"
        ]
    );
    assert_eq!(h.close_code(), Some(close_code::NORMAL));
    assert!(h.upstream.is_empty());
}

#[test]
fn ws_35_client_starttls_gets_failure_and_close() {
    let mut h = H::open();
    h.text("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(
        h.texts(),
        ["<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", CLOSE]
    );
    assert!(
        h.upstream
            .iter()
            .all(|a| !matches!(a, UpstreamAction::Send(_)))
    );
}

#[test]
fn ws_22_open_after_close_is_refused() {
    let mut h = H::open();
    h.text(CLOSE);
    h.text(OPEN);
    assert_eq!(h.close_code(), Some(close_code::POLICY_VIOLATION));
    assert_eq!(h.upstream, [UpstreamAction::Close]);
}

#[test]
fn ws_36_stream_management_passes_through() {
    let mut h = H::open();
    h.text("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert_eq!(
        h.upstream,
        [UpstreamAction::Send(Bytes::from_static(
            b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
        ))]
    );
    h.server(&format!(
        "{HEADER}<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300'/>"
    ));
    assert!(
        h.texts()
            .iter()
            .any(|t| t == "<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300'/>")
    );
}

#[test]
fn unsupported_version_is_refused() {
    let mut h = H::new();
    h.text("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost'/>");
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<unsupported-version"), "{error}");
}

#[test]
fn slow_client_backlog_closes_with_policy_violation() {
    let mut h = H::open();
    h.s.handle_client_backlog(h.now, 2 * 1024 * 1024);
    h.drain();
    assert_eq!(h.sent[0], ClientAction::DropBacklog);
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<policy-violation"), "{error}");
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
}

#[test]
fn shutdown_sends_system_shutdown_and_1001() {
    let mut h = H::open();
    h.s.handle_shutdown(h.now);
    h.drain();
    let (_, error) = error_sequence(&h);
    assert!(error.contains("<system-shutdown"), "{error}");
    assert_eq!(h.close_code(), Some(close_code::GOING_AWAY));
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
}

#[test]
fn close_frame_wait_is_bounded() {
    let mut h = H::open();
    h.s.handle_shutdown(h.now);
    h.drain();
    assert!(h.s.ended().is_none());
    h.advance(Duration::from_secs(5));
    assert!(h.s.ended().is_some());
}

#[test]
fn ws_8_37_protocol_error_fails_the_connection_with_1002() {
    let mut h = H::open();
    h.s.handle_client_protocol_error(h.now);
    h.drain();
    assert_eq!(h.close_code(), Some(close_code::PROTOCOL_ERROR));
    assert!(h.s.ended().is_some());
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
}
