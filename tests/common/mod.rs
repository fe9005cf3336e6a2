//! Support code for integration tests: a real Prosody or ejabberd on
//! loopback, an in-process xmpp-edge, and BOSH and WebSocket clients.
#![allow(dead_code, unreachable_pub)]

pub mod bosh;
pub mod bosh_retry;
pub mod dns;
pub mod edge;
pub mod ejabberd;
pub mod faults;
pub mod https;
pub mod metrics;
pub mod numbered;
pub mod process;
pub mod prosody;
pub mod recording_upstream;
pub mod tcp_proxy;
pub mod tls;
pub mod ws;
pub mod xml;
