//! The embedded durable event bus: an append-only log of opaque records in
//! segment files, with named consumer offsets and deletion of segments that
//! every consumer has passed.
//!
//! Invariants:
//! - offsets are dense record numbers: the retained records are exactly
//!   `first_offset()..next_offset()`, with no gaps across segments;
//! - `append` returns only after every record it wrote is on disk (one
//!   `fdatasync` per batch, plus one per segment sealed during the batch), and
//!   nothing it has not made durable is ever visible to `read`, `commit` or
//!   `backlog_bytes`;
//! - at open, every record of every segment is checked against its CRC; the
//!   first damaged record of the last segment is taken as the start of a torn
//!   write and everything from it on is cut off (and reported), while damage
//!   in any sealed segment is corruption of acknowledged data and refuses to
//!   open;
//! - a segment is deleted only when it is not the active one and every
//!   registered consumer has committed past its last record.
//!
//! Concurrency: a [`SegmentLog`] is `Send + Sync` but every mutation takes
//! `&mut self`; give it to one thread or wrap it in a `Mutex`. `read` uses
//! positional reads and never moves a file cursor, so shared `&self` readers
//! are safe. One process at a time: `open` takes an exclusive lock on
//! `LOCK` in the directory.
//!
//! Layout of the directory: `<first offset, 20 digits>.seg` segment files (see
//! [`segment`]), `consumers.json` for offsets, `LOCK`.

mod offsets;
mod segment;
#[cfg(test)]
mod tests;

pub use segment::{Damage, MAX_RECORD_BYTES};

use segment::{Frame, HEADER_LEN, READ_CHUNK, Segment, encode_record, parse_file_name, sync_dir};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Default segment size: a segment is sealed once it reaches this many bytes.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Longest consumer name.
pub const MAX_CONSUMER_NAME: usize = 128;
/// Appends write through a buffer of about this size.
const WRITE_BUFFER: usize = 1 << 20;
const LOCK_NAME: &str = "LOCK";

/// Where and how the log is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Directory holding the segments and consumer offsets; created if absent.
    pub dir: PathBuf,
    /// A segment is sealed, and the next record starts a new one, once it
    /// holds at least this many bytes.
    #[serde(default = "LogConfig::default_segment_bytes")]
    pub segment_bytes: u64,
    /// `fdatasync` every append batch and every metadata change. Without it a
    /// machine crash can lose acknowledged records; only for tests and benches.
    #[serde(default = "LogConfig::default_fsync")]
    pub fsync: bool,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: true,
        }
    }

    const fn default_segment_bytes() -> u64 {
        DEFAULT_SEGMENT_BYTES
    }

    const fn default_fsync() -> bool {
        true
    }
}

/// What `open` found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files retained.
    pub segments: usize,
    /// Oldest retained offset.
    pub first_offset: u64,
    /// Offset the next append will get.
    pub next_offset: u64,
    /// Records retained: `next_offset - first_offset`.
    pub records: u64,
    /// The torn tail cut from the last segment, if any.
    pub torn: Option<TornTail>,
}

impl Recovery {
    /// Bytes cut from the end of the last segment.
    pub fn torn_bytes(&self) -> u64 {
        self.torn.as_ref().map_or(0, |t| t.bytes)
    }
}

/// An unfinished write at the end of the last segment, removed at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Byte position where the valid records end and the cut began.
    pub position: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// What the first invalid bytes looked like.
    pub damage: Damage,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid bus configuration: {0}")]
    Config(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{dir} is in use by another process (its LOCK is held)")]
    Locked { dir: PathBuf },
    #[error("segment {path} is corrupt at byte {position}: {damage}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        damage: Damage,
    },
    #[error("consumer offsets in {path} are unreadable: {reason}")]
    Offsets { path: PathBuf, reason: String },
    #[error(
        "consumer `{consumer}` is at offset {offset}, outside the retained log {first}..={next}; segments are missing"
    )]
    ConsumerOutsideLog {
        consumer: String,
        offset: u64,
        first: u64,
        next: u64,
    },
    #[error("record {index} of the batch is empty; the log stores only non-empty records")]
    EmptyRecord { index: usize },
    #[error("record {index} of the batch is {len} bytes, over the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { index: usize, len: usize },
    #[error("offset {requested} was deleted; the oldest retained offset is {first}")]
    OffsetDeleted { requested: u64, first: u64 },
    #[error("offset {requested} is past the end of the log (next offset {next})")]
    OffsetBeyondEnd { requested: u64, next: u64 },
    #[error(
        "no consumer named `{0}` is registered (consumers are declared when the collector starts)"
    )]
    UnknownConsumer(String),
    #[error(
        "`{0}` is not a valid consumer name (1..={MAX_CONSUMER_NAME} bytes, no control characters)"
    )]
    InvalidConsumerName(String),
    #[error("an earlier append failed part way; reopen the log to recover")]
    Poisoned,
    /// The index a bus keeps beside its log (the dedup table) failed.
    #[error("the dedup index: {0}")]
    Index(String),
}

impl BusError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BusError {
        let path = path.to_path_buf();
        move |source| BusError::Io {
            action,
            path,
            source,
        }
    }
}

/// How far a consumer is behind the end of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    pub name: String,
    /// The next offset it will read.
    pub offset: u64,
    /// Records from `offset` to the end of the log.
    pub records: u64,
    /// Record bytes (framing included) from `offset` to the end: what it
    /// keeps from deletion.
    pub bytes: u64,
}

/// Where a consumer stands: its next offset and the log byte position of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    offset: u64,
    bytes: u64,
}

/// The local segment log. See the module documentation for its guarantees.
#[derive(Debug)]
pub struct SegmentLog {
    config: LogConfig,
    /// Oldest first; never empty; the last one is the active segment.
    segments: VecDeque<Segment>,
    /// Durable end: records and bytes below these are acknowledged.
    next_offset: u64,
    end_bytes: u64,
    consumers: BTreeMap<String, Position>,
    write_buf: Vec<u8>,
    poisoned: bool,
    /// Test hook: this many more buffer writes fail half-way.
    #[cfg(test)]
    failing_writes: u32,
    _lock: File,
}

/// Where the log ended before a batch (see [`SegmentLog::roll_back`]).
#[derive(Debug, Clone, Copy)]
struct Mark {
    segments: usize,
    count: u64,
    len: u64,
    index: usize,
}

impl SegmentLog {
    /// Opens (or creates) the log in `config.dir`, checking every record and
    /// cutting off a torn tail of the last segment.
    pub fn open(config: LogConfig) -> Result<(SegmentLog, Recovery), BusError> {
        if config.segment_bytes == 0 {
            return Err(BusError::Config("segment_bytes must be positive".into()));
        }
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(BusError::io("creating", &dir))?;
        let lock = lock_dir(&dir)?;
        let temp = dir.join(offsets::TEMP_NAME);
        match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(BusError::io("removing", &temp)(e));
            }
            _ => {}
        }

        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(BusError::io("listing", &dir))? {
            let entry = entry.map_err(BusError::io("listing", &dir))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut segments = VecDeque::with_capacity(bases.len().max(1));
        let mut torn = None;
        let mut start_bytes = 0;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment::file_name(base));
            if let Some(prev) = segments.back().map(Segment::end_offset)
                && prev != base
            {
                let damage = Damage::Gap {
                    expected: prev,
                    found: base,
                };
                return Err(BusError::Corrupt {
                    path,
                    position: 0,
                    damage,
                });
            }
            let last = i + 1 == bases.len();
            let scan = Segment::scan(path.clone(), base, start_bytes, last)
                .map_err(BusError::io("reading", &path))?;
            let mut seg = scan.segment;
            if let Some((position, damage)) = scan.damage {
                let torn_write = last
                    && !matches!(
                        damage,
                        Damage::BadMagic
                            | Damage::HeaderChecksum
                            | Damage::UnsupportedVersion(_)
                            | Damage::BaseMismatch { .. }
                    );
                if !torn_write {
                    return Err(BusError::Corrupt {
                        path,
                        position,
                        damage,
                    });
                }
                seg.truncate_to_valid(config.fsync)
                    .map_err(BusError::io("truncating", &path))?;
                torn = Some(TornTail {
                    segment: path,
                    position,
                    bytes: scan.file_len - position,
                    damage,
                });
            }
            start_bytes = seg.end_bytes();
            segments.push_back(seg);
        }
        if segments.is_empty() {
            let seg = Segment::create(&dir, 0, 0, config.fsync)
                .map_err(BusError::io("creating a segment in", &dir))?;
            segments.push_back(seg);
        }

        let active = segments.back().expect("at least one segment");
        let next_offset = active.end_offset();
        let end_bytes = active.end_bytes();
        let mut log = SegmentLog {
            config,
            segments,
            next_offset,
            end_bytes,
            consumers: BTreeMap::new(),
            write_buf: Vec::new(),
            poisoned: false,
            #[cfg(test)]
            failing_writes: 0,
            _lock: lock,
        };
        for (name, offset) in offsets::load(&dir)? {
            if offset < log.first_offset() || offset > log.next_offset {
                return Err(BusError::ConsumerOutsideLog {
                    consumer: name,
                    offset,
                    first: log.first_offset(),
                    next: log.next_offset,
                });
            }
            let bytes = log.byte_position(offset)?;
            log.consumers.insert(name, Position { offset, bytes });
        }
        let recovery = Recovery {
            segments: log.segments.len(),
            first_offset: log.first_offset(),
            next_offset: log.next_offset,
            records: log.next_offset - log.first_offset(),
            torn,
        };
        Ok((log, recovery))
    }

    /// Appends `records` as one group commit and returns their offsets. Either
    /// every record is durable when this returns `Ok`, or the batch was
    /// refused before anything was written (empty or oversized record), or an
    /// I/O error part way was undone (the log is as before the call, and a
    /// later append may succeed); only when undoing fails too is the log
    /// poisoned, refusing appends until reopened (the failed batch was never acknowledged, so recovery may keep
    /// or drop any of it).
    pub fn append(&mut self, records: &[&[u8]]) -> Result<Range<u64>, BusError> {
        if self.poisoned {
            return Err(BusError::Poisoned);
        }
        for (index, record) in records.iter().enumerate() {
            if record.is_empty() {
                return Err(BusError::EmptyRecord { index });
            }
            if record.len() > MAX_RECORD_BYTES {
                let len = record.len();
                return Err(BusError::RecordTooLarge { index, len });
            }
        }
        let start = self.next_offset;
        if records.is_empty() {
            return Ok(start..start);
        }
        let mark = self.mark();
        match self.write_batch(records) {
            Ok(()) => {
                let active = self.segments.back().expect("at least one segment");
                self.next_offset = active.end_offset();
                self.end_bytes = active.end_bytes();
                Ok(start..self.next_offset)
            }
            Err(e) => {
                self.write_buf = Vec::new();
                // Cut what this batch wrote (a full disk leaves part of it):
                // truncating and deleting need no space, so the log is as
                // before the call and the next append may succeed. Only if
                // that fails too is the log poisoned until reopened.
                if let Err(undo) = self.roll_back(mark) {
                    tracing::error!(
                        dir = %self.config.dir.display(),
                        "a failed append could not be undone ({undo}); the log refuses appends until it is opened again"
                    );
                    self.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// Where the log ends now, for [`Self::roll_back`].
    fn mark(&self) -> Mark {
        let active = self.segments.back().expect("at least one segment");
        Mark {
            segments: self.segments.len(),
            count: active.count,
            len: active.len,
            index: active.index.len(),
        }
    }

    /// Undoes a failed batch: the segments it created are deleted and the
    /// active segment of `mark` is cut back to its length then.
    fn roll_back(&mut self, mark: Mark) -> Result<(), BusError> {
        while self.segments.len() > mark.segments {
            let seg = self
                .segments
                .pop_back()
                .expect("more segments than the mark");
            drop(seg.file);
            std::fs::remove_file(&seg.path).map_err(BusError::io("removing", &seg.path))?;
        }
        let active = self.segments.back_mut().expect("at least one segment");
        active
            .file
            .set_len(mark.len)
            .map_err(BusError::io("truncating", &active.path))?;
        if self.config.fsync {
            active
                .file
                .sync_data()
                .map_err(BusError::io("syncing", &active.path))?;
        }
        active.count = mark.count;
        active.len = mark.len;
        active.index.truncate(mark.index);
        Ok(())
    }

    /// Test hook: the next `n` buffer writes write half their bytes, then
    /// fail as a full disk does.
    #[cfg(test)]
    pub(crate) fn fail_next_writes(&mut self, n: u32) {
        self.failing_writes = n;
    }

    fn write_batch(&mut self, records: &[&[u8]]) -> Result<(), BusError> {
        self.write_buf.clear();
        for record in records {
            let active = self.segments.back().expect("at least one segment");
            if active.len >= self.config.segment_bytes && active.count > 0 {
                let (base, start_bytes) = (active.end_offset(), active.end_bytes());
                self.flush_buffer(true)?;
                let seg = Segment::create(&self.config.dir, base, start_bytes, self.config.fsync)
                    .map_err(BusError::io("creating a segment in", &self.config.dir))?;
                self.segments.push_back(seg);
            }
            encode_record(&mut self.write_buf, record);
            self.segments
                .back_mut()
                .expect("at least one segment")
                .note_record(record.len());
            if self.write_buf.len() >= WRITE_BUFFER {
                self.flush_buffer(false)?;
            }
        }
        self.flush_buffer(true)?;
        if self.write_buf.capacity() > 4 * WRITE_BUFFER {
            self.write_buf = Vec::new();
        }
        Ok(())
    }

    /// Writes the buffered bytes to the active segment, and syncs it if asked.
    fn flush_buffer(&mut self, sync: bool) -> Result<(), BusError> {
        let active = self.segments.back_mut().expect("at least one segment");
        #[cfg(test)]
        if self.failing_writes > 0 && !self.write_buf.is_empty() {
            self.failing_writes -= 1;
            let half = self.write_buf.len() / 2;
            active
                .file
                .write_all(&self.write_buf[..half])
                .map_err(BusError::io("writing", &active.path))?;
            return Err(BusError::io("writing", &active.path)(
                io::Error::from_raw_os_error(28),
            ));
        }
        if !self.write_buf.is_empty() {
            active
                .file
                .write_all(&self.write_buf)
                .map_err(BusError::io("writing", &active.path))?;
            self.write_buf.clear();
        }
        if sync && self.config.fsync {
            active
                .file
                .sync_data()
                .map_err(BusError::io("syncing", &active.path))?;
        }
        Ok(())
    }

    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Oldest offset still retained (segments below it were deleted by `gc`).
    pub fn first_offset(&self) -> u64 {
        self.segments.front().expect("at least one segment").base
    }

    /// Segment files currently retained, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Each retained segment's first offset and when its file was last
    /// written (milliseconds since the epoch).
    pub fn segment_times(&self) -> Vec<(u64, i64)> {
        self.segments
            .iter()
            .map(|s| {
                let written = std::fs::metadata(&s.path)
                    .and_then(|m| m.modified())
                    .map_or_else(|_| crate::clock::now_ms(), crate::clock::unix_ms);
                (s.base, written)
            })
            .collect()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Reads records from `from` on, at most `max_records` of them and no more
    /// than `max_bytes` of payload, except that the first record is always
    /// returned whatever its size (so one large record cannot stall a
    /// consumer). Reading at `next_offset()` returns nothing.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, BusError> {
        self.check_offset(from)?;
        let mut out = Vec::new();
        let mut offset = from;
        let mut bytes = 0usize;
        let mut seg_index = self.segment_index(from);
        while out.len() < max_records && offset < self.next_offset {
            let seg = &self.segments[seg_index];
            seg_index += 1;
            let seg_end = seg.end_offset().min(self.next_offset);
            if offset >= seg_end {
                continue;
            }
            let mut reader = self.reader_at(seg, offset)?;
            while out.len() < max_records && offset < seg_end {
                let at = reader.position();
                let corrupt = |damage| BusError::Corrupt {
                    path: seg.path.clone(),
                    position: at,
                    damage,
                };
                let (len, crc) = match reader.frame().map_err(BusError::io("reading", &seg.path))? {
                    Frame::Record { len, crc } => (len, crc),
                    Frame::Damaged(damage) => return Err(corrupt(damage)),
                    Frame::End => return Err(corrupt(Damage::PartialHeader)),
                };
                if !out.is_empty() && bytes + len as usize > max_bytes {
                    return Ok(out);
                }
                let payload = reader
                    .payload(len, crc)
                    .map_err(BusError::io("reading", &seg.path))?
                    .map_err(corrupt)?;
                bytes += payload.len();
                out.push((offset, payload.to_vec()));
                offset += 1;
            }
        }
        Ok(out)
    }

    /// Records `offset` as the next record `consumer` will read, durably.
    /// Moving backwards is allowed while the records are still retained.
    pub fn commit(&mut self, consumer: &str, offset: u64) -> Result<(), BusError> {
        let current = *self
            .consumers
            .get(consumer)
            .ok_or_else(|| BusError::UnknownConsumer(consumer.to_owned()))?;
        self.check_offset(offset)?;
        if current.offset == offset {
            return Ok(());
        }
        let bytes = self.byte_position(offset)?;
        let mut map = self.offset_map();
        map.insert(consumer.to_owned(), offset);
        offsets::store(&self.config.dir, map, self.config.fsync)?;
        self.consumers
            .insert(consumer.to_owned(), Position { offset, bytes });
        Ok(())
    }

    /// The next offset `consumer` will read, if it is registered.
    pub fn committed(&self, consumer: &str) -> Option<u64> {
        self.consumers.get(consumer).map(|p| p.offset)
    }

    /// Registers `consumer` at the oldest retained offset unless it already
    /// exists, and returns its committed offset. Registered consumers hold
    /// back `gc` until they commit.
    pub fn register(&mut self, consumer: &str) -> Result<u64, BusError> {
        self.add_consumers(&[consumer])?;
        Ok(self.consumers[consumer].offset)
    }

    /// Registers every consumer of `configured` that is not registered yet
    /// (at the oldest retained offset, in one durable write of the offsets),
    /// and returns those registered but not in `configured`, with how far
    /// behind they are: they still hold back `gc`, and only
    /// [`unregister`](Self::unregister) (an operator's decision) releases them.
    ///
    /// Called at start, before anything is appended or collected, with every
    /// consumer the configuration implies, so a consumer that waits a long
    /// time for its target (InfluxDB down at start) never finds its records
    /// deleted.
    pub fn declare(&mut self, configured: &[&str]) -> Result<Vec<ConsumerLag>, BusError> {
        self.add_consumers(configured)?;
        Ok(self
            .consumers()
            .into_iter()
            .filter(|c| !configured.contains(&c.name.as_str()))
            .collect())
    }

    /// Registers those of `names` not registered yet at the oldest retained
    /// offset, with one durable write of the offsets.
    fn add_consumers(&mut self, names: &[&str]) -> Result<(), BusError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !self.consumers.contains_key(*name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for name in &missing {
            check_consumer_name(name)?;
        }
        let first = self.segments.front().expect("at least one segment");
        let position = Position {
            offset: first.base,
            bytes: first.start_bytes,
        };
        let mut map = self.offset_map();
        for name in &missing {
            map.insert((*name).to_owned(), position.offset);
        }
        offsets::store(&self.config.dir, map, self.config.fsync)?;
        for name in missing {
            self.consumers.insert(name.to_owned(), position);
        }
        Ok(())
    }

    /// Every registered consumer and how far behind the end of the log it is.
    pub fn consumers(&self) -> Vec<ConsumerLag> {
        self.consumers
            .iter()
            .map(|(name, p)| ConsumerLag {
                name: name.clone(),
                offset: p.offset,
                records: self.next_offset - p.offset,
                bytes: self.end_bytes - p.bytes,
            })
            .collect()
    }

    /// Forgets `consumer`, so it no longer holds back `gc`. Returns whether it existed.
    pub fn unregister(&mut self, consumer: &str) -> Result<bool, BusError> {
        if !self.consumers.contains_key(consumer) {
            return Ok(false);
        }
        let mut map = self.offset_map();
        map.remove(consumer);
        offsets::store(&self.config.dir, map, self.config.fsync)?;
        self.consumers.remove(consumer);
        Ok(true)
    }

    /// Deletes, oldest first, the sealed segments whose every record all
    /// registered consumers have committed past. With no consumers registered
    /// nothing is deleted: the records are not known to be consumed.
    pub fn gc(&mut self) -> Result<usize, BusError> {
        self.gc_below(u64::MAX)
    }

    /// Like [`Self::gc`], deleting only segments wholly below `limit` too
    /// (the part of the log another index has made durable).
    pub fn gc_below(&mut self, limit: u64) -> Result<usize, BusError> {
        let Some(slowest) = self.consumers.values().map(|p| p.offset).min() else {
            return Ok(0);
        };
        let slowest = slowest.min(limit);
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[0].end_offset() <= slowest {
            // Delete before forgetting, so a failure leaves the retained range
            // contiguous and still described in memory.
            let path = &self.segments[0].path;
            std::fs::remove_file(path).map_err(BusError::io("deleting", path))?;
            self.segments.pop_front();
            deleted += 1;
        }
        if deleted > 0 && self.config.fsync {
            sync_dir(&self.config.dir).map_err(BusError::io("syncing", &self.config.dir))?;
        }
        Ok(deleted)
    }

    /// Record bytes (framing included) between the slowest consumer and the
    /// end of the log; all retained bytes if no consumer is registered.
    pub fn backlog_bytes(&self) -> u64 {
        let first = self.segments.front().expect("at least one segment");
        let slowest = self
            .consumers
            .values()
            .map(|p| p.bytes)
            .min()
            .unwrap_or(first.start_bytes);
        self.end_bytes - slowest
    }

    fn offset_map(&self) -> BTreeMap<String, u64> {
        self.consumers
            .iter()
            .map(|(name, p)| (name.clone(), p.offset))
            .collect()
    }

    fn check_offset(&self, offset: u64) -> Result<(), BusError> {
        if offset < self.first_offset() {
            return Err(BusError::OffsetDeleted {
                requested: offset,
                first: self.first_offset(),
            });
        }
        if offset > self.next_offset {
            return Err(BusError::OffsetBeyondEnd {
                requested: offset,
                next: self.next_offset,
            });
        }
        Ok(())
    }

    /// Index of the segment holding `offset` (the active one for `next_offset`).
    fn segment_index(&self, offset: u64) -> usize {
        self.segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1)
    }

    /// A reader positioned at the start of record `offset` of `seg`.
    fn reader_at<'s>(
        &self,
        seg: &'s Segment,
        offset: u64,
    ) -> Result<segment::RecordReader<'s>, BusError> {
        let (mut at, pos) = seg.seek_hint(offset);
        let mut reader = seg.reader(pos, READ_CHUNK);
        while at < offset {
            let position = reader.position();
            match reader.frame().map_err(BusError::io("reading", &seg.path))? {
                Frame::Record { len, .. } => reader.skip(len),
                Frame::Damaged(damage) => {
                    return Err(BusError::Corrupt {
                        path: seg.path.clone(),
                        position,
                        damage,
                    });
                }
                Frame::End => {
                    return Err(BusError::Corrupt {
                        path: seg.path.clone(),
                        position,
                        damage: Damage::PartialHeader,
                    });
                }
            }
            at += 1;
        }
        Ok(reader)
    }

    /// The log byte position (see `Segment::start_bytes`) where record `offset` starts.
    fn byte_position(&self, offset: u64) -> Result<u64, BusError> {
        if offset == self.next_offset {
            return Ok(self.end_bytes);
        }
        let seg = &self.segments[self.segment_index(offset)];
        let reader = self.reader_at(seg, offset)?;
        Ok(seg.start_bytes + reader.position() - HEADER_LEN)
    }
}

fn check_consumer_name(consumer: &str) -> Result<(), BusError> {
    if consumer.is_empty()
        || consumer.len() > MAX_CONSUMER_NAME
        || consumer.chars().any(char::is_control)
    {
        return Err(BusError::InvalidConsumerName(consumer.to_owned()));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File, BusError> {
    let path = dir.join(LOCK_NAME);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BusError::io("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BusError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(BusError::io("locking", &path)(e)),
    }
}
