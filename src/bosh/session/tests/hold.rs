use super::harness::*;
use crate::bosh::session::BoshLimits;

#[test]
fn bosh_45_hold_overflow_answers_the_oldest_at_once() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    assert!(!h.answered(n));
    let n1 = h.send(RID + 2, &msg(1));
    assert!(is_empty_body(&h.body(n)), "{}", h.body(n));
    assert!(!h.answered(n1), "the new request stays held");
    assert_eq!(h.sent_upstream(), msg(1));
}

#[test]
fn bosh_43_44_idle_request_gets_an_empty_body_at_wait() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(29);
    assert!(!h.answered(n));
    h.advance_secs(1);
    assert!(is_empty_body(&h.body(n)), "{}", h.body(n));
}

#[test]
fn bosh_42_data_rides_on_the_oldest_held_request() {
    let mut h = Harness::established_with(
        BoshLimits {
            max_hold: 2,
            ..BoshLimits::default()
        },
        "hold='2' wait='30' ver='1.6'",
    );
    let a = h.send(RID + 1, "");
    let b = h.send(RID + 2, "");
    h.upstream_xml("<message from='x@localhost'><body>hi</body></message>");
    assert!(
        h.body(a)
            .contains("<message from='x@localhost' xmlns='jabber:client'>")
    );
    assert!(!h.answered(b));
}

#[test]
fn bosh_47_queued_payloads_go_out_together_on_the_next_request() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(30);
    assert!(h.answered(n));
    for i in 0..5 {
        h.upstream_xml(&format!("<message id='q{i}'/>"));
    }
    let next = h.send(RID + 2, "");
    let body = h.body(next);
    let positions: Vec<_> = (0..5)
        .map(|i| body.find(&format!("id='q{i}'")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
}

#[test]
fn bosh_50_upstream_stanzas_carry_jabber_client() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.upstream_xml("<presence from='a@localhost/r'/>");
    assert!(
        h.body(n)
            .contains("<presence from='a@localhost/r' xmlns='jabber:client'/>")
    );
}

#[test]
fn bosh_14_server_whitespace_never_reaches_a_body() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.upstream_xml("   \n <presence/> \t ");
    let body = h.body(n);
    assert_eq!(
        body,
        "<body xmlns='http://jabber.org/protocol/httpbind'><presence xmlns='jabber:client'/></body>"
    );
}

#[test]
fn bosh_49_empty_polls_are_held_like_any_request() {
    let mut h = Harness::established();
    let a = h.send(RID + 1, "");
    h.advance_secs(3);
    let b = h.send(RID + 2, "");
    assert!(h.answered(a) && !h.answered(b));
}

#[test]
fn bosh_41_every_request_gets_exactly_one_response() {
    let mut h = Harness::established();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(h.send(RID + 1 + i, &msg(i as u32)));
        h.upstream_xml("<message/>");
    }
    h.advance_secs(60);
    for id in ids {
        assert!(h.answered(id), "request {id}");
    }
}
