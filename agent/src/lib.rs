//! The logmon agent: tails access logs, parses them and ships batches to the
//! collector.
//!
//! - [`tail`]: the synchronous, poll-driven tailer (files, rotation,
//!   checkpoints of acknowledged offsets), from `logmon-io`;
//! - [`config`]: the TOML configuration, environment and flag overrides,
//!   validated into [`config::Settings`];
//! - the reader thread (private `reader`) drives the tailers, parses and
//!   seals batches; [`ship`] delivers them and reports acknowledgements;
//!   the two talk only through the messages of the private `channel`;
//! - [`metrics`]: counters, `/metrics` and `/health`;
//! - [`run`]: [`Agent`], which starts all of it and shuts it down in order.
//!
//! - [`filter`]: edge filters (WebAssembly components run on each batch;
//!   the host only with the `wasm` feature).
//!
//! Without its `wasm` feature the crate links only `logmon-protocol` and
//! small utility crates (hyper for HTTP, tokio on one thread); with it,
//! wasmtime too (docs/agent.md gives the sizes).
#![forbid(unsafe_code)]

mod channel;
pub mod cli;
pub mod config;
pub mod filter;
pub mod metrics;
pub mod parser;
mod reader;
pub mod run;
pub mod ship;

/// The tailer lives in `logmon-io` (the collector's `replay --follow` uses
/// it too); re-exported here under its old path.
pub use logmon_io::tail;

pub use config::{AgentConfig, Settings};
pub use run::{Agent, AgentError};

/// The formats the agent can read, by name.
pub fn supported_formats() -> [&'static str; 4] {
    [
        logmon_protocol::Format::Csv.name(),
        logmon_protocol::Format::Clf.name(),
        logmon_protocol::Format::Combined.name(),
        logmon_protocol::Format::Json.name(),
    ]
}
