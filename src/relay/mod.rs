//! The per-session pipeline between a client transport and its upstream
//! stream. [`driver::drive`] is the one relay loop; each transport supplies a
//! [`driver::ClientSide`] (BOSH: [`bosh::BoshRelay`], WebSocket: [`websocket::WsRelay`]).

pub mod bosh;
pub mod driver;
pub mod read_ahead;
pub mod websocket;

pub use driver::{ClientSide, RouteRequest, drive};
