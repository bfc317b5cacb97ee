//! The logmon collector: the event-time engine, the WebAssembly rule host and
//! the `replay` console program built on them.
#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod engine;
pub mod generate;
pub mod output;
pub mod replay;
pub mod rules;
pub mod stats;
