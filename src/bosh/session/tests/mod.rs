//! Scenario tests of the session core, one file per area of `bosh.md`;
//! test names carry the requirement IDs.

mod harness;

mod acks;
mod creation;
mod hold;
mod keys;
mod rid;
mod terminate;
mod timers;
mod upstream;
