//! What to tail and how: globs, where to start, and every bound.
//!
//! The raw config is plain data (`deny_unknown_fields`, documented defaults);
//! `TailerConfig::validate` turns it into compiled patterns and checked limits
//! before any file is opened.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TailError;

/// Where to start reading a file that has no checkpoint and existed when the
/// tailer started. Files that appear later are always read from their start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the whole file.
    Beginning,
    /// Skip what the file held at startup, like `tail -f`: a live monitor
    /// cares about now; history is what `logmon-collector replay` is for.
    #[default]
    End,
}

/// Tailer settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailerConfig {
    /// Glob patterns of the files to tail, e.g. `/var/log/nginx/*.log`.
    pub include: Vec<String>,
    /// Glob patterns of matched files to leave alone, e.g. `*.gz`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start files that existed at startup without a checkpoint.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longest line delivered, in bytes; longer lines are cut to this length,
    /// counted, and the rest of the line is skipped.
    #[serde(default = "TailerConfig::default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Size of one read from a file.
    #[serde(default = "TailerConfig::default_read_chunk_bytes")]
    pub read_chunk_bytes: usize,
    /// How often the globs are expanded again to find new and rotated files.
    #[serde(default = "TailerConfig::default_rescan_interval_ms")]
    pub rescan_interval_ms: u64,
    /// Most bytes of a file's head that make up its fingerprint.
    #[serde(default = "TailerConfig::default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// Complete lines that make up a fingerprint when they end before
    /// `fingerprint_bytes` (0: use bytes only). See `fingerprint`.
    #[serde(default = "TailerConfig::default_fingerprint_lines")]
    pub fingerprint_lines: usize,
    /// How long a rotated-away or deleted file, fully read and acknowledged,
    /// must stay unchanged before it is closed: writers often finish a last
    /// line into the old file before they reopen the path.
    #[serde(default = "TailerConfig::default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// Checkpoints of files not seen for this long are forgotten.
    #[serde(default = "TailerConfig::default_checkpoint_ttl_secs")]
    pub checkpoint_ttl_secs: u64,
    /// Find new files by file-system events too (inotify, on Linux), so a
    /// file that has a matching name only briefly is still read; the rescan
    /// stays the fallback.
    #[serde(default = "TailerConfig::default_file_events")]
    pub file_events: bool,
}

impl TailerConfig {
    /// A config with the given includes and every default.
    pub fn new(include: Vec<String>) -> Self {
        Self {
            include,
            exclude: Vec::new(),
            start_at: StartAt::default(),
            max_line_bytes: Self::default_max_line_bytes(),
            read_chunk_bytes: Self::default_read_chunk_bytes(),
            rescan_interval_ms: Self::default_rescan_interval_ms(),
            fingerprint_bytes: Self::default_fingerprint_bytes(),
            fingerprint_lines: Self::default_fingerprint_lines(),
            rotate_wait_ms: Self::default_rotate_wait_ms(),
            checkpoint_ttl_secs: Self::default_checkpoint_ttl_secs(),
            file_events: Self::default_file_events(),
        }
    }

    /// A config following exactly one file (its path escaped, so `[`, `*`
    /// or `?` in it are not patterns), with every default.
    pub fn for_file(path: &std::path::Path) -> Self {
        Self::new(vec![glob::Pattern::escape(&path.to_string_lossy())])
    }

    /// 64 KiB: far beyond any sane access-log line.
    pub const fn default_max_line_bytes() -> usize {
        64 * 1024
    }

    /// 64 KiB.
    pub const fn default_read_chunk_bytes() -> usize {
        64 * 1024
    }

    /// One second.
    pub const fn default_rescan_interval_ms() -> u64 {
        1000
    }

    /// 256 bytes.
    pub const fn default_fingerprint_bytes() -> usize {
        256
    }

    /// Two lines: a CSV header alone is not an identity.
    pub const fn default_fingerprint_lines() -> usize {
        2
    }

    /// Five seconds.
    pub const fn default_rotate_wait_ms() -> u64 {
        5000
    }

    /// A week.
    /// File-system events are on by default.
    pub const fn default_file_events() -> bool {
        true
    }

    pub const fn default_checkpoint_ttl_secs() -> u64 {
        7 * 24 * 3600
    }

    /// The rescan interval as a duration.
    pub const fn rescan_interval(&self) -> Duration {
        Duration::from_millis(self.rescan_interval_ms)
    }

    /// The rotate wait as a duration.
    pub const fn rotate_wait(&self) -> Duration {
        Duration::from_millis(self.rotate_wait_ms)
    }

    /// The checkpoint time-to-live as a duration.
    pub const fn checkpoint_ttl(&self) -> Duration {
        Duration::from_secs(self.checkpoint_ttl_secs)
    }

    /// Checks the limits and that every pattern compiles.
    pub fn check(&self) -> Result<(), TailError> {
        self.validate().map(drop)
    }

    /// Checks the limits and compiles the patterns.
    pub(crate) fn validate(&self) -> Result<Patterns, TailError> {
        const MAX_FINGERPRINT_BYTES: usize = 64 * 1024;
        if self.include.is_empty() {
            return Err(TailError::Config("`include` names no files".into()));
        }
        if self.max_line_bytes == 0 || self.read_chunk_bytes == 0 {
            return Err(TailError::Config(
                "`max_line_bytes` and `read_chunk_bytes` must be positive".into(),
            ));
        }
        if self.fingerprint_bytes == 0 || self.fingerprint_bytes > MAX_FINGERPRINT_BYTES {
            return Err(TailError::Config(format!(
                "`fingerprint_bytes` must be in 1..={MAX_FINGERPRINT_BYTES}"
            )));
        }
        let compile = |pattern: &String| {
            glob::Pattern::new(pattern).map_err(|source| TailError::Pattern {
                pattern: pattern.clone(),
                source,
            })
        };
        let include = self.include.iter().map(compile).collect::<Result<_, _>>()?;
        let exclude = self.exclude.iter().map(compile).collect::<Result<_, _>>()?;
        Ok(Patterns { include, exclude })
    }
}

/// Compiled include and exclude patterns.
#[derive(Debug, Clone)]
pub(crate) struct Patterns {
    pub(crate) include: Vec<glob::Pattern>,
    pub(crate) exclude: Vec<glob::Pattern>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_minimal_config_with_defaults() {
        let config: TailerConfig =
            serde_json::from_str(r#"{"include":["/var/log/nginx/*.log"]}"#).unwrap();
        assert_eq!(
            config,
            TailerConfig::new(vec!["/var/log/nginx/*.log".into()])
        );
        assert_eq!(config.start_at, StartAt::End);
        assert_eq!(config.fingerprint_bytes, 256);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(serde_json::from_str::<TailerConfig>(r#"{"include":[],"inclde":[]}"#).is_err());
        assert!(TailerConfig::new(vec![]).validate().is_err());
        assert!(TailerConfig::new(vec!["[".into()]).validate().is_err());
        let mut config = TailerConfig::new(vec!["*.log".into()]);
        config.fingerprint_bytes = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn one_file_is_matched_literally() {
        let config = TailerConfig::for_file(std::path::Path::new("/logs/a[1]*.log"));
        let patterns = config.validate().unwrap();
        assert!(patterns.include[0].matches("/logs/a[1]*.log"));
        assert!(!patterns.include[0].matches("/logs/a1x.log"));
    }
}
