//! The fuzz targets' bodies, as plain functions: the libFuzzer binaries in
//! fuzz_targets/ wrap them, and replay/tests/fuzz_replay.rs runs them on the
//! corpus, the saved crash inputs and mutations of both, in the main
//! workspace's ordinary `cargo test` (no libFuzzer, no instrumented build).
//!
//! Each `run(data)` takes the bytes libFuzzer hands the target and panics
//! when an invariant breaks.

pub mod bosh_body;
pub mod bosh_session;
pub mod splitter;
pub mod ws_message;
