//! xmpp-edge: an XMPP connection manager for BOSH and WebSocket clients.

pub mod bosh;
pub mod clock;
pub mod stanza;
pub mod upstream;
pub mod xml;
