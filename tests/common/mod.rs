//! Support code for integration tests: a real Prosody on loopback, an
//! in-process xmpp-edge, and BOSH and WebSocket clients.
#![allow(dead_code, unreachable_pub)]

pub mod bosh;
pub mod edge;
pub mod prosody;
pub mod recording_upstream;
pub mod ws;
pub mod xml;
