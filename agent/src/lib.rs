//! The logmon agent: tails access logs, parses them and ships batches to the
//! collector. The tailer (`tail`) is a synchronous, poll-driven library; the
//! shipping loop that drives it comes later, and the crate links only
//! `logmon-protocol` beyond small utility crates, which keeps the agent small.
#![forbid(unsafe_code)]

pub mod tail;

/// The formats the agent can read, by name.
pub fn supported_formats() -> [&'static str; 4] {
    [
        logmon_protocol::Format::Csv.name(),
        logmon_protocol::Format::Clf.name(),
        logmon_protocol::Format::Combined.name(),
        logmon_protocol::Format::Json.name(),
    ]
}
