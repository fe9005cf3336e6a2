use super::harness::*;
use crate::bosh::session::{BoshLimits, EndReason};
use crate::upstream::UpstreamAction;

#[test]
fn bosh_66_104_inactivity_ends_the_session_without_a_closing_tag() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(30);
    assert!(h.answered(n));
    h.advance_secs(59);
    assert!(h.session.ended().is_none());
    h.advance_secs(1);
    assert_eq!(h.session.ended(), Some(EndReason::Inactivity));
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
    let late = h.send(RID + 2, "");
    assert_eq!(condition_of(&h.body(late)), Some("item-not-found"));
}

#[test]
fn bosh_66_inactivity_does_not_run_while_a_request_is_held() {
    let mut h = Harness::established();
    for i in 1..=10 {
        let id = h.send(RID + i, "");
        h.advance_secs(30);
        assert!(h.answered(id));
    }
    assert!(h.session.ended().is_none());
}

#[test]
fn bosh_68_pause_answers_everything_and_stretches_inactivity() {
    let mut h = Harness::established();
    let held = h.send(RID + 1, "");
    h.upstream.clear();
    let pause = h.send_raw(RID + 2, "pause='100'", "");
    assert!(h.answered(held));
    assert!(is_empty_body(&h.body(pause)));
    h.advance_secs(90);
    assert!(h.session.ended().is_none());
    let back = h.send(RID + 3, "");
    assert!(!h.answered(back));
    h.advance_secs(30);
    // The normal limit is back.
    h.advance_secs(61);
    assert_eq!(h.session.ended(), Some(EndReason::Inactivity));
}

#[test]
fn bosh_68_pause_response_keeps_queued_payloads_for_later() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    h.advance_secs(30);
    h.upstream_xml("<message id='queued'/>");
    let pause = h.send_raw(RID + 2, "pause='60'", "");
    assert!(is_empty_body(&h.body(pause)), "{}", h.body(pause));
    let next = h.send(RID + 3, "");
    assert!(h.body(next).contains("queued"));
}

#[test]
fn bosh_69_pause_is_clamped_to_maxpause() {
    let mut h = Harness::established();
    h.send_raw(RID + 1, "pause='1000'", "");
    h.advance_secs(119);
    assert!(h.session.ended().is_none());
    h.advance_secs(1);
    assert_eq!(h.session.ended(), Some(EndReason::Inactivity));
}

#[test]
fn bosh_69_pause_without_maxpause_is_a_normal_request() {
    let limits = BoshLimits {
        maxpause: 0,
        ..BoshLimits::default()
    };
    let mut h = Harness::established_with(limits, "hold='1' wait='30' ver='1.6'");
    assert!(!h.body(1).contains("maxpause"));
    let p = h.send_raw(RID + 1, "pause='60'", "");
    assert!(!h.answered(p), "held like any request");
}

#[test]
fn bosh_70_too_many_simultaneous_requests_is_policy_violation() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    h.send(RID + 3, "<presence id='3'/>");
    let third = h.send(RID + 2, "<presence/>");
    assert_eq!(condition_of(&h.body(third)), Some("policy-violation"));
    assert_eq!(
        h.sent_upstream(),
        "",
        "nothing of the refused request is forwarded"
    );
}

#[test]
fn bosh_67_pause_or_terminate_may_exceed_requests_by_one() {
    let mut h = Harness::established();
    h.send(RID + 1, "");
    h.send(RID + 3, "<presence/>");
    h.send_raw(RID + 4, "type='terminate'", "");
    assert!(
        h.session.ended().is_none(),
        "terminate is allowed one extra"
    );
}

fn polling_limits() -> BoshLimits {
    BoshLimits {
        polling: 5,
        ..BoshLimits::default()
    }
}

#[test]
fn bosh_71_empty_polls_too_close_together_are_policy_violation() {
    let mut h = Harness::established_with(polling_limits(), "hold='1' wait='30' ver='1.6'");
    h.advance_secs(10);
    h.send(RID + 1, "");
    let second = h.send(RID + 2, "");
    assert_eq!(condition_of(&h.body(second)), Some("policy-violation"));
}

#[test]
fn bosh_71_empty_polls_far_enough_apart_are_fine() {
    let mut h = Harness::established_with(polling_limits(), "hold='1' wait='30' ver='1.6'");
    h.advance_secs(10);
    let first = h.send(RID + 1, "");
    h.advance_secs(6);
    let second = h.send(RID + 2, "");
    assert!(is_empty_body(&h.body(first)));
    assert!(!h.answered(second));
}

#[test]
fn bosh_71_poll_overtaken_by_the_following_data_request_is_fine() {
    // Strophe sends an empty poll and, a moment later, a data request; on two
    // TCP connections the data request can arrive first.
    let mut h = Harness::established_with(polling_limits(), "hold='1' wait='30' ver='1.6'");
    h.advance_secs(10);
    let data = h.send(RID + 2, "<presence/>");
    let poll = h.send(RID + 1, "");
    assert!(h.session.ended().is_none());
    assert!(h.answered(poll) && !h.answered(data));
    assert_eq!(h.sent_upstream(), "<presence/>");
}

#[test]
fn bosh_72_polling_session_empty_polls_too_fast() {
    let mut h = Harness::established_with(polling_limits(), "hold='0' wait='30' ver='1.6'");
    h.advance_secs(10);
    let first = h.send(RID + 1, "");
    assert!(is_empty_body(&h.body(first)));
    h.advance_secs(1);
    let second = h.send(RID + 2, "");
    assert_eq!(condition_of(&h.body(second)), Some("policy-violation"));

    let mut h = Harness::established_with(polling_limits(), "hold='0' wait='30' ver='1.6'");
    h.advance_secs(10);
    h.send(RID + 1, "");
    h.advance_secs(6);
    let second = h.send(RID + 2, "");
    assert!(is_empty_body(&h.body(second)));
    // BOSH-72: polling sessions get an inactivity above polling.
    assert!(h.body(1).contains("inactivity='60'"));
}

#[test]
fn bosh_74_enforcement_can_be_turned_off() {
    let limits = BoshLimits {
        enforce_overactivity: false,
        ..polling_limits()
    };
    let mut h = Harness::established_with(limits, "hold='1' wait='30' ver='1.6'");
    h.advance_secs(10);
    h.send(RID + 1, "");
    let second = h.send(RID + 2, "");
    assert!(h.session.ended().is_none());
    assert!(!h.answered(second));
}

/// Issue 9 (faults): a client that vanishes while a request is held (its
/// connection closes) is reaped `inactivity` after that, not `wait` +
/// `inactivity` later; coming back in time keeps the session.
#[test]
fn bosh_66_a_client_gone_with_its_held_request_is_reaped_after_inactivity() {
    // wait=30, inactivity=60.
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.gone(n);
    h.advance_secs(59);
    assert!(h.session.ended().is_none());
    h.advance_secs(2);
    assert_eq!(h.session.ended(), Some(EndReason::Inactivity));

    let mut back = Harness::established();
    let n = back.send(RID + 1, "");
    back.gone(n);
    back.advance_secs(20);
    // The same rid again on a new connection: held again, nobody is idle.
    let again = back.send(RID + 1, "");
    back.advance_secs(50);
    assert!(back.answered(again), "answered at wait");
    assert!(back.session.ended().is_none());
}
