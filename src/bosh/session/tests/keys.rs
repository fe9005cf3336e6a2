use super::harness::*;
use crate::bosh::keys::tests::chain;
use crate::bosh::session::BoshLimits;

#[test]
fn bosh_81_key_chain_is_verified_when_started() {
    let keys = chain("seed", 4);
    let mut h = Harness::established_with(
        BoshLimits::default(),
        &format!("hold='1' wait='30' ver='1.6' newkey='{}'", keys[3]),
    );
    h.send_raw(RID + 1, &format!("key='{}'", keys[2]), &msg(1));
    h.send_raw(RID + 2, &format!("key='{}'", keys[1]), &msg(2));
    assert!(h.session.ended().is_none());
    let bad = h.send_raw(RID + 3, "key='0000'", &msg(3));
    assert_eq!(condition_of(&h.body(bad)), Some("item-not-found"));
    assert_eq!(h.sent_upstream(), format!("{}{}", msg(1), msg(2)));
}

#[test]
fn bosh_80_keys_are_ignored_without_newkey() {
    let mut h = Harness::established();
    h.send_raw(RID + 1, "key='whatever'", "");
    h.send_raw(RID + 2, "", "<presence/>");
    assert!(h.session.ended().is_none());
}
