//! Fault injection for the crash and failure tests, compiled in only with
//! the `fault-injection` cargo feature (the workspace's test crate turns it
//! on; a release build of the collector has none of it: every function here
//! is then a constant `None`).
//!
//! - `LOGMON_FAULT_SNAPSHOT_PAUSE_MS=N`: every engine snapshot write stops
//!   N ms halfway through its temporary file (written and synced up to
//!   there), so a test can SIGKILL the collector in the middle of a write.
//! - `LOGMON_FAULT_ENGINE_FAIL_AT=N`: the engine fails when it reaches bus
//!   record N (a stand-in for a fault of its own, to test what the
//!   supervisor does with it).
//! - `LOGMON_FAULT_LAKE_PAUSE_MS=N`: every lake file write stops N ms
//!   halfway through its temporary file, so a test can SIGKILL the
//!   collector in the middle of a Parquet file.

/// See the module documentation.
pub const SNAPSHOT_PAUSE_ENV: &str = "LOGMON_FAULT_SNAPSHOT_PAUSE_MS";
/// See the module documentation.
pub const ENGINE_FAIL_ENV: &str = "LOGMON_FAULT_ENGINE_FAIL_AT";
/// See the module documentation.
pub const LAKE_PAUSE_ENV: &str = "LOGMON_FAULT_LAKE_PAUSE_MS";

#[cfg(feature = "fault-injection")]
fn read<T: std::str::FromStr + Copy + Send + Sync + 'static>(
    cell: &'static std::sync::OnceLock<Option<T>>,
    name: &str,
) -> Option<T> {
    *cell.get_or_init(|| {
        let value = std::env::var(name).ok()?.parse().ok()?;
        tracing::warn!(variable = name, "fault injection is on");
        Some(value)
    })
}

/// How long a snapshot write pauses halfway, if asked.
pub fn snapshot_pause() -> Option<std::time::Duration> {
    #[cfg(feature = "fault-injection")]
    {
        static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        read(&PAUSE, SNAPSHOT_PAUSE_ENV).map(std::time::Duration::from_millis)
    }
    #[cfg(not(feature = "fault-injection"))]
    None
}

/// The bus record at which the engine fails, if asked.
pub fn engine_fails_at() -> Option<u64> {
    #[cfg(feature = "fault-injection")]
    {
        static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        read(&AT, ENGINE_FAIL_ENV)
    }
    #[cfg(not(feature = "fault-injection"))]
    None
}

/// How long a lake file write pauses halfway, if asked.
pub fn lake_pause() -> Option<std::time::Duration> {
    #[cfg(feature = "fault-injection")]
    {
        static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        read(&PAUSE, LAKE_PAUSE_ENV).map(std::time::Duration::from_millis)
    }
    #[cfg(not(feature = "fault-injection"))]
    None
}
