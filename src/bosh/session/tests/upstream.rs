use super::harness::*;
use crate::bosh::session::{BoshLimits, EndReason};
use crate::upstream::{UpstreamAction, UpstreamEvent};

const ERROR: &str = "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
    <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>x</text><app xmlns='urn:app'/></stream:error>";

#[test]
fn bosh_83_91_stream_error_is_relayed_whole_after_undelivered_stanzas() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.upstream_xml(&format!("<message id='before'/>{ERROR}"));
    // The message goes out on a normal response first (clients drop the
    // children of a terminal body), then the error on the next request.
    assert!(h.body(n).contains("id='before'"));
    assert!(condition_of(&h.body(n)).is_none());
    let next = h.send(RID + 2, "");
    let body = h.body(next);
    assert_eq!(condition_of(&body), Some("remote-stream-error"));
    assert!(
        body.contains("xmlns:stream='http://etherx.jabber.org/streams'"),
        "{body}"
    );
    assert!(
        body.contains("<stream:error xmlns='jabber:client'><policy-violation"),
        "{body}"
    );
    assert!(
        body.contains("<app xmlns='urn:app'/></stream:error>"),
        "{body}"
    );
    // UP-46: our side of the stream is closed too.
    assert_eq!(h.upstream, [UpstreamAction::Close]);
}

#[test]
fn bosh_91_nothing_held_stanzas_then_error_on_following_requests() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(30);
    assert!(h.answered(n));
    h.upstream_xml(&format!("<message id='before'/>{ERROR}"));
    let first = h.send(RID + 2, "");
    assert!(h.body(first).contains("id='before'") && condition_of(&h.body(first)).is_none());
    let second = h.send(RID + 3, "");
    assert_eq!(condition_of(&h.body(second)), Some("remote-stream-error"));
}

#[test]
fn bosh_83_server_host_unknown_is_not_reported_as_host_unknown() {
    let mut h = Harness::create_with(BoshLimits::default(), "ver='1.6'");
    h.upstream_header();
    h.upstream_xml(
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    let body = h.body(1);
    assert_eq!(condition_of(&body), Some("remote-stream-error"));
    assert!(body.contains("<host-unknown"));
}

#[test]
fn bosh_92_93_94_restart_after_sasl_success() {
    let mut h = Harness::established();
    let auth = h.send(
        RID + 1,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE=</auth>",
    );
    h.upstream_xml("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert!(
        h.body(auth)
            .contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    );
    h.upstream.clear();
    let restart = h.send_raw(
        RID + 2,
        "xmpp:restart='true' to='localhost' xml:lang='en'",
        "<presence/>",
    );
    assert_eq!(
        h.upstream.len(),
        1,
        "no closing tag and no payload: {:?}",
        h.upstream
    );
    let UpstreamAction::Open(open) = &h.upstream[0] else {
        panic!("{:?}", h.upstream)
    };
    assert!(open.restart);
    assert_eq!(open.lang.as_deref(), Some("en"));
    h.event(UpstreamEvent::StreamOpened(Default::default()));
    h.upstream_xml(
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
    );
    let body = h.body(restart);
    assert!(
        body.contains("xmlns:stream=")
            && body.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"),
        "{body}"
    );
}

#[test]
fn bosh_95_restart_takes_from_from_the_restart_request() {
    let mut h = Harness::established();
    h.send(
        RID + 1,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
    );
    h.upstream_xml("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    h.upstream.clear();
    h.send_raw(RID + 2, "xmpp:restart='true' from='user@example.com'", "");
    assert!(
        matches!(&h.upstream[0], UpstreamAction::Open(o) if o.from.as_deref() == Some("user@example.com") && &*o.to == "localhost")
    );
}

#[test]
fn bosh_96_restart_before_sasl_success_is_bad_request() {
    let mut h = Harness::established();
    let r = h.send_raw(RID + 1, "xmpp:restart='true'", "");
    assert_eq!(condition_of(&h.body(r)), Some("bad-request"));
}

#[test]
fn bosh_99_clean_server_close_gives_a_terminate_body() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.event(UpstreamEvent::StreamClosed);
    assert_eq!(
        h.body(n),
        "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>"
    );
    assert_eq!(h.upstream, [UpstreamAction::Close]);
    assert_eq!(h.session.ended(), Some(EndReason::UpstreamClosed));
}

#[test]
fn bosh_48_client_bound_queue_applies_backpressure() {
    let limits = BoshLimits {
        max_queued_bytes: 1000,
        ..BoshLimits::default()
    };
    let mut h = Harness::established_with(limits, "hold='1' wait='30' ver='1.6'");
    assert!(h.session.wants_upstream_data());
    let big = format!("<message><body>{}</body></message>", "x".repeat(600));
    h.upstream_xml(&big);
    assert!(h.session.wants_upstream_data());
    h.upstream_xml(&big);
    assert!(!h.session.wants_upstream_data());
    let n = h.send(RID + 1, "");
    assert!(h.answered(n));
    assert!(h.session.wants_upstream_data());
}

#[test]
fn bosh_98_nothing_is_written_upstream_after_the_session_ended() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    h.advance_secs(30 + 60);
    assert_eq!(h.session.ended(), Some(EndReason::Inactivity));
    h.upstream.clear();
    h.upstream_xml("<message id='late'/><iq type='get' id='p'/>");
    assert!(
        h.upstream.is_empty(),
        "no bounce or error stanza: {:?}",
        h.upstream
    );
}

#[test]
fn orphaned_request_never_carries_data() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.gone(n);
    h.upstream_xml("<message id='keep'/>");
    // The dead request is answered empty (for rid order); the data waits.
    assert!(is_empty_body(&h.body(n)));
    let again = h.send(RID + 1, "");
    assert!(is_empty_body(&h.body(again)));
    let next = h.send(RID + 2, "");
    assert!(h.body(next).contains("id='keep'"));
}

#[test]
fn repeat_of_an_orphaned_request_takes_its_place_quietly() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.gone(n);
    let retry = h.send(RID + 1, "");
    assert!(!h.answered(n) && !h.answered(retry));
    h.upstream_xml("<message id='x'/>");
    assert!(h.body(retry).contains("id='x'"));
    assert!(!h.answered(n));
}
