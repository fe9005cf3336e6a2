use super::harness::*;
use crate::bosh::session::{BoshLimits, EndReason};
use crate::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};

#[test]
fn bosh_75_terminate_forwards_its_payload_then_closes() {
    let mut h = Harness::established();
    h.send_raw(
        RID + 1,
        "type='terminate'",
        "<presence type='unavailable'/>",
    );
    assert_eq!(h.upstream.len(), 2);
    assert!(
        matches!(&h.upstream[0], UpstreamAction::Send(b) if &b[..] == b"<presence type='unavailable'/>")
    );
    assert_eq!(h.upstream[1], UpstreamAction::Close);
    assert_eq!(h.session.ended(), Some(EndReason::ClientTerminate));
}

#[test]
fn bosh_76_oldest_open_request_gets_terminate() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    let t = h.send_raw(RID + 2, "type='terminate'", "");
    assert_eq!(
        h.body(n),
        "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>"
    );
    assert!(is_empty_body(&h.body(t)));
}

#[test]
fn bosh_76_terminate_alone_gets_the_terminate_body() {
    let mut h = Harness::established();
    let t = h.send_raw(RID + 1, "type='terminate'", "");
    assert_eq!(
        h.body(t),
        "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>"
    );
}

#[test]
fn bosh_77_after_terminate_the_sid_is_unknown() {
    let mut h = Harness::established();
    h.send_raw(RID + 1, "type='terminate'", "");
    let late = h.send(RID + 1, "");
    assert_eq!(condition_of(&h.body(late)), Some("item-not-found"));
}

#[test]
fn bosh_79_terminal_condition_waits_for_the_next_request() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.advance_secs(30);
    assert!(h.answered(n));
    h.event(UpstreamEvent::Failed(UpstreamFailure::Lost("reset".into())));
    assert_eq!(h.upstream, [UpstreamAction::Abort]);
    let next = h.send(RID + 2, "");
    assert_eq!(
        condition_of(&h.body(next)),
        Some("remote-connection-failed")
    );
    let after = h.send(RID + 3, "");
    assert_eq!(condition_of(&h.body(after)), Some("item-not-found"));
}

#[test]
fn bosh_79_82g_other_held_requests_get_other_request() {
    let limits = BoshLimits {
        max_hold: 2,
        ..BoshLimits::default()
    };
    let mut h = Harness::established_with(limits, "hold='2' wait='30' ver='1.6'");
    let a = h.send(RID + 1, "");
    let b = h.send(RID + 2, "");
    let bad = h.send(RID + 9, "");
    assert_eq!(condition_of(&h.body(a)), Some("item-not-found"));
    assert_eq!(condition_of(&h.body(b)), Some("other-request"));
    assert_eq!(condition_of(&h.body(bad)), Some("item-not-found"));
    // A client-caused end closes the upstream stream cleanly.
    assert_eq!(h.upstream, [UpstreamAction::Close]);
}

#[test]
fn bosh_85_legacy_clients_get_http_status_codes() {
    let mut h = Harness::established_with(BoshLimits::default(), "hold='1' wait='30'");
    let bad = h.send(RID + 5, "");
    assert_eq!(h.response(bad).unwrap().status, 404);

    let mut h = Harness::established();
    let bad = h.send(RID + 5, "");
    assert_eq!(h.response(bad).unwrap().status, 200);
    assert_eq!(condition_of(&h.body(bad)), Some("item-not-found"));
}

#[test]
fn bosh_15_82a_bad_payload_ends_with_bad_request_and_forwards_nothing() {
    let mut h = Harness::established();
    let bad = h.send(RID + 1, "<message><!-- hidden --></message>");
    assert_eq!(condition_of(&h.body(bad)), Some("bad-request"));
    assert_eq!(h.sent_upstream(), "");
}

#[test]
fn bosh_89_client_starttls_is_refused() {
    let mut h = Harness::established();
    let bad = h.send(
        RID + 1,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    );
    assert_eq!(condition_of(&h.body(bad)), Some("bad-request"));
    assert_eq!(h.sent_upstream(), "");
}

#[test]
fn bosh_82l_shutdown_answers_held_requests_with_system_shutdown() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.session.handle_shutdown(h.now);
    while let Some(r) = h.session.poll_response() {
        assert_eq!(r.req_id, n);
        assert!(String::from_utf8_lossy(&r.body).contains("condition='system-shutdown'"));
    }
    assert!(h.session.ended().is_some());
}

/// Found by the `bosh_session` fuzz target (fuzz/regressions/bosh_session/):
/// a terminal body that carries elements (here the server's `<stream:error>`,
/// BOSH-83, BOSH-91) goes to the oldest held request even when that request
/// has gone away and a live one is held; the live one gets a bare terminate,
/// and the client never sees the error. The same choice is made by
/// `terminate_by_client` and for `Cause::Request` terminations.
#[test]
fn terminal_body_goes_to_a_live_request_not_an_orphaned_one() {
    let limits = BoshLimits {
        max_hold: 2,
        ..BoshLimits::default()
    };
    let mut h = Harness::established_with(limits, "hold='2' wait='30' ver='1.6'");
    let gone = h.send(RID + 1, "");
    let live = h.send(RID + 2, "");
    h.gone(gone);
    h.upstream_xml(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    assert_eq!(
        condition_of(&h.body(live)),
        Some("remote-stream-error"),
        "{}",
        h.body(live)
    );
    assert!(
        h.body(live).contains("<conflict"),
        "the live request got {}",
        h.body(live)
    );
}

/// Found by the `bosh_session` fuzz target (fuzz/regressions/bosh_session/):
/// with nothing held, the server's `<stream:error>` waits in the pending
/// terminal body for the client's next request (BOSH-79); a kick or a
/// shutdown before that request replaced it with a bare `policy-violation`
/// (`system-shutdown`) body, so the client never saw the server's error.
#[test]
fn kick_or_shutdown_keeps_a_pending_stream_error() {
    let end: [fn(&mut Harness); 2] = [
        |h| h.session.handle_kick(h.now),
        |h| h.session.handle_shutdown(h.now),
    ];
    for end_session in end {
        let mut h = Harness::established();
        let n = h.send(RID + 1, "");
        h.advance_secs(30);
        assert!(h.answered(n));
        h.upstream_xml(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        );
        end_session(&mut h);
        let next = h.send(RID + 2, "");
        assert!(
            h.body(next).contains("<conflict"),
            "the next request got {}",
            h.body(next)
        );
    }
}

/// Issue 9 (faults): the last stanzas go out on a normal response and the
/// terminal body waits for the next request (BOSH-79). If that normal
/// response is lost on the wire, the client sends its rid again: it must
/// get the cached copy (BOSH-54), not the terminal body in its place.
#[test]
fn bosh_54_79_a_repeat_is_not_swallowed_by_the_pending_terminal() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.upstream_xml(&msg(1));
    let data = h.body(n);
    assert!(data.contains(">1</body>"), "{data}");
    h.event(UpstreamEvent::Failed(UpstreamFailure::Lost("reset".into())));
    // The response to RID + 1 was cut; the client asks again.
    let again = h.send(RID + 1, "");
    assert_eq!(h.body(again), data, "the cached response, stanza included");
    assert!(h.session.ended().is_none(), "the terminal body still waits");
    let next = h.send(RID + 2, "");
    assert_eq!(
        condition_of(&h.body(next)),
        Some("remote-connection-failed")
    );
}

/// Issue 9 (faults): after an end the client did not ask for, repeats of
/// the last answered rids (the terminal one included) are still served
/// from the cache; new rids get item-not-found. A client-ended or
/// inactive session keeps nothing (BOSH-77, BOSH-66).
#[test]
fn bosh_54_79_an_ended_session_lingers_for_repeats_only_when_the_client_did_not_end_it() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.upstream_xml(&msg(1));
    let data = h.body(n);
    h.session.handle_shutdown(h.now);
    let last = h.send(RID + 2, "");
    let terminal = h.body(last);
    assert_eq!(condition_of(&terminal), Some("system-shutdown"));
    assert!(h.session.lingers());
    let again = h.send(RID + 1, "");
    assert_eq!(h.body(again), data);
    let terminal_again = h.send(RID + 2, "");
    assert_eq!(h.body(terminal_again), terminal);
    let new = h.send(RID + 3, "");
    assert_eq!(condition_of(&h.body(new)), Some("item-not-found"));
    assert_eq!(h.session.stats().retransmissions, 2);

    let mut client_ended = Harness::established();
    client_ended.send(RID + 1, "");
    client_ended.send_raw(RID + 2, "type='terminate'", "");
    assert!(!client_ended.session.lingers());

    let mut idle = Harness::established();
    let n = idle.send(RID + 1, "");
    idle.advance_secs(30);
    assert!(idle.answered(n));
    idle.event(UpstreamEvent::Failed(UpstreamFailure::Lost("reset".into())));
    idle.advance_secs(61);
    assert_eq!(
        idle.session.ended(),
        Some(EndReason::Condition(
            crate::bosh::Condition::RemoteConnectionFailed
        ))
    );
    assert!(!idle.session.lingers(), "inactivity: nobody to answer");
    let late = idle.send(RID + 1, "");
    assert_eq!(condition_of(&idle.body(late)), Some("item-not-found"));
}

/// A kicked session whose held request has gone away keeps its terminal
/// body for the client's next request, but only briefly: it must not stay
/// listed (and counted) for a whole `inactivity`.
#[test]
fn kicked_session_with_a_gone_request_ends_promptly() {
    let mut h = Harness::established();
    let n = h.send(RID + 1, "");
    h.gone(n);
    let now = h.now;
    h.session.handle_kick(now);
    assert!(h.session.ended().is_none(), "the terminal body waits");
    h.advance_secs(3);
    assert!(h.session.ended().is_some(), "still alive after the grace");
}
