//! The logmon event model and the access-log parsers.
//!
//! This crate holds what crosses process boundaries: [`Event`] (one HTTP
//! request), the parsers that turn log lines into events, and renderers that
//! turn events back into log lines. It does no I/O and no async, but for
//! the `generate` feature's [`generate`] (realistic logs for the collector's
//! `generate` command, tests and benchmarks), which writes to an
//! [`std::io::Write`].
#![forbid(unsafe_code)]

mod civil;
pub mod event;
#[cfg(any(test, feature = "generate"))]
pub mod generate;
pub mod parse;
pub mod prometheus;
pub mod render;
pub mod wire;

pub use event::{Event, section_of};
pub use parse::{
    Dialect, Format, FormatChoice, LineExtras, LineParser, LogTemplate, ParseError, Parsed,
    UnknownVariables,
};
