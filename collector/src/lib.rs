//! The logmon collector: the event-time engine, the WebAssembly rule host and
//! the `replay` console program built on them.
#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod config;
pub mod console;
pub mod dashboard;
pub mod engine;
pub mod generate;
pub mod influx;
pub mod ingest;
pub mod live;
pub mod notify;
pub mod outbox;
pub mod output;
pub mod replay;
pub mod rules;
pub mod rules_cli;
pub mod serve;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod watermark;
