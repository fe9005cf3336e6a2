//! XMPP over WebSocket (RFC 7395): message parsing and the framing
//! translator. Pure: no tokio, no sockets, no clock.

pub mod framing;
pub mod message;

pub use framing::{ClientAction, WsEnd, WsLimits, WsSession};
