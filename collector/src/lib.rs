//! The logmon collector: the event-time engine, the WebAssembly rule host and
//! the `replay` console program built on them.
// One `unsafe` block in the crate, allowed where it stands: deserializing a
// compiled rule component from the disk cache (`rules/cache.rs`).
#![deny(unsafe_code)]

pub mod alerts;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod dashboard;
pub mod disk;
pub mod durable;
pub mod engine;
pub mod faults;
pub mod http;
pub mod influx;
pub mod ingest;
pub mod lake;
pub mod rules;
pub mod serve;
pub mod shutdown;
