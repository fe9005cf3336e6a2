use super::harness::*;
use crate::bosh::session::BoshLimits;

#[test]
fn bosh_40_payloads_go_upstream_in_rid_order() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(30);
    assert!(h.answered(n));
    let b = h.send(RID + 3, "<message id='B'/>");
    assert_eq!(h.sent_upstream(), "", "B must wait for A");
    assert!(!h.answered(b));
    let a = h.send(RID + 2, "<message id='A'/>");
    assert_eq!(h.sent_upstream(), "<message id='A'/><message id='B'/>");
    // BOSH-42: A is answered before B.
    assert!(h.answered(a));
    let order = h.answer_order();
    let pos = |id| order.iter().position(|&x| x == id);
    assert!(pos(a) < pos(b).or(Some(usize::MAX)));
}

#[test]
fn bosh_46_request_above_a_gap_waits_for_it() {
    let limits = BoshLimits {
        enforce_overactivity: false,
        ..BoshLimits::default()
    };
    let mut h = Harness::established_with(limits, "hold='1' wait='30' ver='1.6'");
    let n = h.send(RID + 1, "");
    let n2 = h.send(RID + 3, "<message id='two'/>");
    assert!(!h.answered(n) && !h.answered(n2));
    let n1 = h.send(RID + 2, "<message id='one'/>");
    assert!(h.answered(n) && h.answered(n1));
    assert!(!h.answered(n2));
    assert_eq!(h.sent_upstream(), "<message id='one'/><message id='two'/>");
}

#[test]
fn bosh_53_rid_above_the_window_is_item_not_found() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    let bad = h.send(RID + 4, "");
    assert_eq!(condition_of(&h.body(bad)), Some("item-not-found"));
    // BOSH-79: the held request learns about it too.
    assert_eq!(condition_of(&h.body(n)), Some("item-not-found"));
    assert!(h.session.ended().is_some());
}

#[test]
fn bosh_54_repeated_rid_gets_the_same_bytes_and_nothing_twice() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, &msg(1));
    h.upstream_xml("<message id='reply'/>");
    let first = h.response(n).unwrap().body.clone();
    let again = h.send(RID + 1, &msg(1));
    assert_eq!(h.response(again).unwrap().body, first);
    assert_eq!(h.sent_upstream(), msg(1), "payload forwarded once");
    assert_eq!(h.session.stats().retransmissions, 1);
}

#[test]
fn bosh_55_repeat_of_a_held_rid_replaces_the_older_copy() {
    let mut h = Harness::established();
    let old = h.send(RID + 1, "");
    let new = h.send(RID + 1, "");
    assert_eq!(
        h.body(old),
        "<body xmlns='http://jabber.org/protocol/httpbind' type='error'/>"
    );
    assert!(!h.answered(new));
    h.upstream_xml("<message id='late'/>");
    assert!(h.body(new).contains("id='late'"));
}

#[test]
fn bosh_56_rid_no_longer_buffered_is_item_not_found() {
    let mut h = Harness::established();
    for i in 1..=6 {
        h.send(RID + i, "");
    }
    let again = h.send(RID + 1, "");
    assert_eq!(condition_of(&h.body(again)), Some("item-not-found"));
}

#[test]
fn bosh_57_pause_responses_are_not_buffered() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    let pause = h.send_raw(RID + 2, "pause='10'", "");
    assert!(h.answered(pause));
    let again = h.send_raw(RID + 2, "pause='10'", "");
    assert_eq!(condition_of(&h.body(again)), Some("item-not-found"));
}

#[test]
fn bosh_58_too_many_repeats_is_policy_violation() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    let mut last = 0;
    for _ in 0..20 {
        last = h.send(RID + 1, "");
        if h.session.ended().is_some() {
            break;
        }
    }
    assert_eq!(condition_of(&h.body(last)), Some("policy-violation"));
}

#[test]
fn bosh_59_empty_and_restart_requests_consume_rids_in_order() {
    let mut h = Harness::established();
    let n = h.send(
        RID + 1,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>",
    );
    h.upstream_xml("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert!(h.body(n).contains("<success"));
    h.upstream.clear();
    // The restart at N+2 waits for N+1.
    let restart = h.send_raw(RID + 3, "xmpp:restart='true' to='localhost'", "");
    assert!(h.upstream.is_empty());
    h.send(RID + 2, "<presence/>");
    assert!(matches!(&h.upstream[..], [
        crate::upstream::UpstreamAction::Send(_),
        crate::upstream::UpstreamAction::Open(o),
    ] if o.restart));
    let _ = restart;
}

#[test]
fn bosh_87_later_to_or_route_without_restart_is_a_normal_request() {
    let mut h = Harness::established();
    h.upstream.clear();
    let r = h.send_raw(
        RID + 1,
        "to='other.example' route='xmpp:evil:1'",
        "<presence/>",
    );
    assert!(!h.answered(r));
    assert_eq!(h.upstream.len(), 1, "no new stream: {:?}", h.upstream);
    assert!(h.session.ended().is_none());
}
