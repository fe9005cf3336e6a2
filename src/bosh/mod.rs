//! BOSH (XEP-0124 with XEP-0206): request parsing, response writing and the
//! per-session state machine. Pure: no tokio, no sockets, no clock.

pub mod condition;
pub mod keys;
pub mod request;
pub mod response;
pub mod session;

pub use condition::Condition;
pub use request::{BodyError, BoshRequest, parse_request};
pub use session::{BoshLimits, BoshSession, EndReason, ReqId, Response};
