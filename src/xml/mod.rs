//! XML handling that both transports share; pure, no I/O.

pub mod check;
pub mod escape;
pub mod ns;
pub mod reserialize;
pub mod splitter;
