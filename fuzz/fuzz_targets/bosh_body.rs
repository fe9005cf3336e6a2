//! libFuzzer entry point; the target and its oracle are in src/targets/bosh_body.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xmpp_edge_fuzz::targets::bosh_body::run(data));
