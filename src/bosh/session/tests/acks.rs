use super::harness::*;
use crate::bosh::session::BoshLimits;

fn ack_session() -> Harness {
    Harness::established_with(
        BoshLimits::default(),
        "hold='1' wait='30' ver='1.6' ack='1'",
    )
}

fn attr<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}='");
    let at = body.find(&key)? + key.len();
    Some(&body[at..at + body[at..].find('\'')?])
}

#[test]
fn bosh_33_61_creation_response_acknowledges_the_creation_rid() {
    let h = ack_session();
    assert_eq!(attr(&h.body(1), "ack"), Some("1000"));
}

#[test]
fn bosh_61_no_acks_without_the_clients_request() {
    let mut h = Harness::established();
    let a = h.send(RID + 1, "");
    h.send(RID + 2, "");
    assert_eq!(attr(&h.body(1), "ack"), None);
    assert_eq!(attr(&h.body(a), "ack"), None);
}

#[test]
fn bosh_60_older_response_acknowledges_the_newer_request() {
    let mut h = ack_session();
    let n = h.send_raw(RID + 1, "ack='1000'", "");
    h.send_raw(RID + 2, "ack='1000'", "<presence/>");
    assert_eq!(attr(&h.body(n), "ack"), Some("1002"));
}

#[test]
fn bosh_61_ack_is_left_out_when_it_equals_the_rid_answered() {
    let mut h = ack_session();
    let n = h.send_raw(RID + 1, "ack='1000'", "");
    h.advance_secs(30);
    assert_eq!(attr(&h.body(n), "ack"), None, "{}", h.body(n));
}

#[test]
fn bosh_63_acknowledged_responses_leave_the_cache() {
    let mut h = ack_session();
    h.send_raw(RID + 1, "ack='1000'", "<presence/>");
    h.send_raw(RID + 2, "ack='1000'", "<presence/>");
    h.send_raw(RID + 3, "ack='1001'", "<presence/>");
    h.send_raw(RID + 4, "ack='1002'", "<presence/>");
    // 1003 answered, not yet acknowledged: still repeatable.
    let again = h.send_raw(RID + 3, "ack='1002'", "");
    assert!(condition_of(&h.body(again)).is_none(), "{}", h.body(again));
    // 1001 was acknowledged: gone.
    let gone = h.send_raw(RID + 1, "ack='1002'", "");
    assert_eq!(condition_of(&h.body(gone)), Some("item-not-found"));
}

#[test]
fn bosh_62_request_without_ack_means_everything_was_received() {
    let mut h = ack_session();
    h.send_raw(RID + 1, "ack='1000'", "");
    h.send(RID + 2, "");
    let gone = h.send(RID + 1, "");
    assert_eq!(condition_of(&h.body(gone)), Some("item-not-found"));
}

#[test]
fn bosh_64_lagging_client_is_answered_at_once_with_report_and_time() {
    let mut h = ack_session();
    h.send_raw(RID + 1, "ack='1000'", "");
    h.send_raw(RID + 2, "ack='1000'", "<presence/>");
    h.advance_secs(30); // answers 1002
    h.now += std::time::Duration::from_millis(1500);
    // The client says it only has 1000: 1001 is missing on its side.
    let lag = h.send_raw(RID + 3, "ack='1000'", "");
    let body = h.body(lag);
    assert_eq!(attr(&body, "report"), Some("1001"), "{body}");
    let time: u64 = attr(&body, "time").unwrap().parse().unwrap();
    assert!((31_000..=31_600).contains(&time), "{time}");
    // The client can then fetch the missing response.
    let again = h.send_raw(RID + 1, "ack='1000'", "");
    assert!(condition_of(&h.body(again)).is_none());
}
