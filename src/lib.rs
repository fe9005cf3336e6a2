//! xmpp-edge: an XMPP connection manager for BOSH and WebSocket clients.
//!
//! Module rings: pure protocol code ([`xml`], [`stanza`], [`bosh`],
//! [`upstream::negotiate`]) takes bytes and time as arguments and returns
//! intentions; [`relay`] runs one task per session; [`http`] and [`app`]
//! move bytes.

pub mod app;
pub mod bosh;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod relay;
pub mod sessions;
pub mod stanza;
pub mod upstream;
pub mod xml;
