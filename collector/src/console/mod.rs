//! The console: statistics blocks and alert lines as text or JSON lines
//! ([`printer`]), and `replay`, the original console program ([`replay`]),
//! reading a finished log or following a live one ([`follow`]).

pub mod follow;
pub mod printer;
pub mod replay;
