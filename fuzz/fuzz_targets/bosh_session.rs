//! libFuzzer entry point; the target and its oracle are in src/targets/bosh_session.rs.
//! Typed, so that libFuzzer drops inputs that do not decode (not added to the
//! corpus) and `cargo fuzz fmt` prints the decoded `Input`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmpp_edge_fuzz::targets::bosh_session::{Input, check};

fuzz_target!(|input: Input| check(input));
