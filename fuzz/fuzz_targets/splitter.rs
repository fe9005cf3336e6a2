//! libFuzzer entry point; the target and its oracle are in src/targets/splitter.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xmpp_edge_fuzz::targets::splitter::run(data));
