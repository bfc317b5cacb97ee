//! The logmon event model and the access-log parsers.
//!
//! This crate holds what crosses process boundaries: [`Event`] (one HTTP
//! request), the parsers that turn log lines into events, and renderers that
//! turn events back into log lines. It does no I/O and no async.
#![forbid(unsafe_code)]

pub mod event;
pub mod parse;
pub mod render;
pub mod wire;

pub use event::{Event, section_of};
pub use parse::{Format, LineParser, ParseError, Parsed};
