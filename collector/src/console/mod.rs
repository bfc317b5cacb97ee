//! The console: statistics blocks and alert lines as text or JSON lines
//! ([`printer`]), and `replay`, the original console program ([`replay`]).

pub mod printer;
pub mod replay;
