//! The lake: the cold tier. Every event of the bus, in Apache Parquet files
//! partitioned by UTC hour (`date=YYYY-MM-DD/hour=HH/`), zstd-compressed,
//! sorted by time within a file ([`encode`]), each named by the bus range
//! it covers ([`layout`]), written by the `lake` bus consumer
//! ([`consumer`]), read back in event time for backtests ([`read`], and a
//! second at a time straight from the columns, [`seconds`]).
//!
//! The invariant: every event of a record before the consumer's committed
//! position is in exactly one complete file, and a name that ends in
//! `.parquet` is always a complete file. A crash at any moment leaves at
//! most a temporary file, removed at the next start; what the crash lost
//! is read again from the bus and written to the same files, no row lost and
//! none twice (docs/lake.md).

pub mod consumer;
pub mod encode;
pub mod layout;
pub mod read;
pub mod seconds;
mod strings;

pub use consumer::{CONSUMER, LakeCounters, LakeError, LakeWriter, run};

use std::path::PathBuf;
use std::time::Duration;

/// How the lake is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeConfig {
    /// The lake's root directory.
    pub dir: PathBuf,
    /// A partition's file is written once it holds this many rows, and the
    /// largest partition's whenever all of them together hold this many.
    pub file_rows: usize,
    /// Rows per row group within a file.
    pub row_group_rows: usize,
    /// A partition's file is written at the latest this long after its
    /// first row arrived.
    pub flush_after: Duration,
    /// Partitions whose hour ended more than this many days ago are
    /// deleted; `None` keeps everything.
    pub retention_days: Option<u32>,
    /// Sync files and directories (off only in tests and benches).
    pub fsync: bool,
}

impl LakeConfig {
    /// The defaults (docs/lake.md explains them) for a lake in `dir`.
    pub fn new(dir: PathBuf) -> LakeConfig {
        LakeConfig {
            dir,
            file_rows: DEFAULT_FILE_ROWS,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            flush_after: Duration::from_secs(DEFAULT_FLUSH_SECS),
            retention_days: None,
            fsync: true,
        }
    }
}

/// See [`LakeConfig::file_rows`].
pub const DEFAULT_FILE_ROWS: usize = 250_000;
/// See [`LakeConfig::row_group_rows`].
pub const DEFAULT_ROW_GROUP_ROWS: usize = 50_000;
/// See [`LakeConfig::flush_after`].
pub const DEFAULT_FLUSH_SECS: u64 = 600;
