//! The process's own log: `tracing` events on stderr, as text or one JSON
//! object per line (level, target, message and fields), filtered with
//! `tracing`'s directive syntax (`info,logmon_collector::ingest=debug`).
//! What a binary prints as its output (the console's statistics and alert
//! lines) is not a log event and stays on stdout.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (text or json)")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// `[log]` in either binary's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (one object per line). Default `text`.
    pub format: LogFormat,
    /// Which events, `tracing` filter syntax
    /// (`info,logmon_collector::ingest=debug`). Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

impl LogConfig {
    /// Installs this configuration's subscriber ([`init`]).
    pub fn init(&self) -> Result<(), String> {
        init(self.format, &self.filter)
    }
}

/// Checks a filter without installing it, so a configuration can be refused
/// before anything starts.
pub fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("log filter `{filter}`: {e}"))
}

/// Installs the process's subscriber. A filter that does not parse is an
/// error naming it.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("log filter `{filter}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| format!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_in_any_case_and_unknown_ones_are_named() {
        assert_eq!(" JSON ".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!(
            "xml".parse::<LogFormat>(),
            Err("unknown log format `xml` (text or json)".to_owned())
        );
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn a_bad_filter_is_refused_naming_it() {
        assert_eq!(check_filter("info,logmon_agent=debug"), Ok(()));
        let e = check_filter("info,=[").unwrap_err();
        assert!(e.starts_with("log filter `info,=[`: "), "{e}");
    }
}
