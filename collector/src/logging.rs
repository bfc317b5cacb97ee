//! The collector's own log: `tracing` events on stderr, as text or one JSON
//! object per line (level, target, message and fields), filtered with
//! `tracing`'s directive syntax (`info,logmon_collector::ingest=debug`).
//! The console's statistics and alert lines are not log events: they stay
//! on stdout, exactly as `replay` prints them.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

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
