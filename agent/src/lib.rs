//! The logmon agent: tails access logs, parses them and ships batches to the
//! collector. This crate is a skeleton until the live pipeline lands; it
//! already links only `logmon-protocol`, which keeps the agent small.
#![forbid(unsafe_code)]

/// The formats the agent can read, by name.
pub fn supported_formats() -> [&'static str; 4] {
    [
        logmon_protocol::Format::Csv.name(),
        logmon_protocol::Format::Clf.name(),
        logmon_protocol::Format::Combined.name(),
        logmon_protocol::Format::Json.name(),
    ]
}
