use super::harness::*;
use crate::bosh::session::BoshLimits;
use crate::upstream::{OpenStream, UpstreamAction, UpstreamEvent, UpstreamFailure};

#[test]
fn bosh_19_30_31_values_are_clamped_and_all_announced() {
    let mut h = Harness::create_with(BoshLimits::default(), "wait='3600' hold='5' ver='1.6'");
    h.upstream_header();
    h.upstream_xml("<stream:features/>");
    let body = h.body(1);
    for attr in [
        "sid='test-sid'",
        "wait='50'",
        "hold='1'",
        "requests='2'",
        "inactivity='60'",
        "polling='2'",
        "maxpause='120'",
        "ver='1.6'",
    ] {
        assert!(body.contains(attr), "{attr} missing in {body}");
    }
}

#[test]
fn bosh_18_minimal_creation_uses_defaults() {
    let mut h = Harness::create_with(BoshLimits::default(), "");
    h.upstream_header();
    h.upstream_xml("<stream:features/>");
    let body = h.body(1);
    assert!(
        body.contains("wait='50'") && body.contains("hold='1'"),
        "{body}"
    );
}

#[test]
fn bosh_30_wait_never_above_the_clients() {
    let mut h = Harness::create_with(BoshLimits::default(), "wait='10' hold='1' ver='1.6'");
    h.upstream_header();
    h.upstream_xml("<stream:features/>");
    assert!(h.body(1).contains("wait='10'"));
}

#[test]
fn bosh_32_ver_is_the_lower_of_both() {
    for (client, answer) in [
        ("1.10", "1.10"),
        ("1.9", "1.9"),
        ("2.0", "1.11"),
        ("1.6", "1.6"),
    ] {
        let mut h = Harness::create_with(BoshLimits::default(), &format!("ver='{client}'"));
        h.upstream_header();
        h.upstream_xml("<stream:features/>");
        assert!(
            h.body(1).contains(&format!("ver='{answer}'")),
            "{client}: {}",
            h.body(1)
        );
    }
}

#[test]
fn bosh_38_creation_is_held_until_features_arrive() {
    let mut h = Harness::create_with(BoshLimits::default(), "ver='1.6'");
    assert!(!h.answered(1));
    h.upstream_header();
    assert!(
        !h.answered(1),
        "header alone must not answer the creation request"
    );
    h.upstream_xml(
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
    );
    let body = h.body(1);
    // BOSH-35, BOSH-37, BOSH-39, BOSH-90
    assert!(body.contains("authid='stream-1'"), "{body}");
    assert!(body.contains("from='localhost'"), "{body}");
    assert!(body.contains("xmpp:version='1.0'"), "{body}");
    assert!(
        body.contains("xmlns:stream='http://etherx.jabber.org/streams'"),
        "{body}"
    );
    assert!(
        body.contains("<stream:features xmlns='jabber:client'><bind"),
        "{body}"
    );
    assert!(!body.contains("stream:stream"), "{body}");
}

#[test]
fn bosh_35_late_features_come_on_a_later_response_with_stream_info() {
    let mut h = Harness::create_with(BoshLimits::default(), "wait='5' ver='1.6'");
    h.advance_secs(5);
    let body = h.body(1);
    assert!(
        body.contains("sid='test-sid'") && !body.contains("authid"),
        "{body}"
    );
    let next = h.send(RID + 1, "");
    h.upstream_header();
    h.upstream_xml("<stream:features/>");
    let body = h.body(next);
    assert!(
        body.contains("authid='stream-1'") && body.contains("<stream:features"),
        "{body}"
    );
    // BOSH-34: creation-only attributes are not repeated.
    assert!(
        !body.contains("sid=") && !body.contains("requests="),
        "{body}"
    );
}

#[test]
fn bosh_36_restartlogic_is_advertised_with_its_namespace() {
    let h = Harness::established();
    let body = h.body(1);
    assert!(body.contains("xmpp:restartlogic='true'"), "{body}");
    assert!(body.contains("xmlns:xmpp='urn:xmpp:xbosh'"), "{body}");
}

#[test]
fn bosh_101_24_25_28_upstream_header_attributes() {
    let h = Harness::create_with(
        BoshLimits::default(),
        "from='alice@localhost' xml:lang='de' ver='1.6'",
    );
    assert_eq!(
        h.upstream,
        [UpstreamAction::Open(OpenStream {
            to: "localhost".into(),
            from: Some("alice@localhost".into()),
            lang: Some("de".into()),
            version: "1.0".into(),
            restart: false,
        })]
    );
    let h = Harness::create_with(BoshLimits::default(), "xmpp:version='1.0' ver='1.6'");
    assert!(
        matches!(&h.upstream[0], UpstreamAction::Open(o) if &*o.version == "1.0" && o.from.is_none())
    );
}

#[test]
fn bosh_38_82i_connect_failure_answers_remote_connection_failed() {
    let mut h = Harness::create_with(BoshLimits::default(), "ver='1.6'");
    h.event(UpstreamEvent::Failed(UpstreamFailure::Connect(
        "refused".into(),
    )));
    assert_eq!(condition_of(&h.body(1)), Some("remote-connection-failed"));
    assert!(h.session.ended().is_some());
}

#[test]
fn bosh_4_content_type_is_kept_when_safe() {
    let h = Harness::create_with(BoshLimits::default(), "content='text/html; charset=utf-8'");
    assert_eq!(
        h.session.content_type().map(|c| &**c),
        Some("text/html; charset=utf-8")
    );
    let h = Harness::create_with(BoshLimits::default(), "content='bad&#10;header'");
    assert_eq!(h.session.content_type(), None);
}

#[test]
fn bosh_73_requests_is_hold_plus_one() {
    let mut h = Harness::create_with(
        BoshLimits {
            max_hold: 2,
            ..BoshLimits::default()
        },
        "hold='2'",
    );
    h.upstream_header();
    h.upstream_xml("<stream:features/>");
    assert!(h.body(1).contains("requests='3'"));
}

#[test]
fn bosh_102_secure_is_never_emitted() {
    let h = Harness::established();
    assert!(!h.body(1).contains("secure"));
}
