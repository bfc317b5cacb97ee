//! Deduplication of re-sent batches: per stream, the high-water mark of the
//! bytes already stored.
//!
//! A stream is (agent id, file fingerprint); the path is not part of it,
//! because rotation renames a file without changing its bytes or offsets. For
//! each stream the index keeps `hwm`, the largest `end` of a batch stored in
//! the bus. Against it a batch `[start, end)` is:
//! - a **duplicate** when `end <= hwm`: acknowledged, not stored again;
//! - **new** when `start >= hwm` (or the stream is unknown): stored, and
//!   `hwm` becomes `end`; `start > hwm` is a *gap* (bytes the collector never
//!   saw, e.g. lost to copytruncate), accepted and counted;
//! - **early** when the sender said the batch follows bytes up to `after`
//!   (it pipelines: the batch before it is still on its way) and `hwm <
//!   after`: refused for now, so batches sent together but arriving out of
//!   order are stored in order (storing the later one first would make the
//!   earlier one look like a duplicate);
//! - an **overlap** when `start < hwm < end`: refused, because events carry
//!   no byte offsets and the collector cannot drop the part below `hwm`. The
//!   agent re-delivers identical lines at identical offsets and `hwm` is the
//!   end of a batch it sent, so `hwm` is a line boundary: it acknowledges up
//!   to `hwm` and re-sends from there (see the `ingest` module docs).
//!
//! Invariant: the table reflects exactly the bus records below
//! [`DedupIndex::through_offset`]. It is rebuilt at start by loading the
//! persisted table and scanning the retained records from `through_offset`
//! on; it is persisted (temp file, fsync, rename, fsync dir) before any
//! segment is deleted, so a record that leaves the bus has always been
//! counted in a persisted table first.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use logmon_protocol::wire::{self, Limits};
use serde::{Deserialize, Serialize};

use super::log::{BusError, SegmentLog};

/// File name of the persisted table, in the bus directory.
pub const DEDUP_FILE: &str = "ingest-dedup.json";
const DEDUP_TEMP: &str = "ingest-dedup.json.tmp";
const FILE_VERSION: u32 = 1;
/// Records read per step while rebuilding.
const SCAN_RECORDS: usize = 256;
const SCAN_BYTES: usize = 64 << 20;

pub use logmon_protocol::wire::StreamKey;

/// What to do with a batch covering `[start, end)` of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it. `gap` is how many bytes lie between the stored end and
    /// `start` (0 when contiguous or the stream is new).
    New { gap: u64 },
    /// Everything up to `end` is stored already; `stored` is the high-water mark.
    Duplicate { stored: u64 },
    /// Part of the batch is stored: the sender must re-send from `stored`.
    Overlap { stored: u64 },
    /// The bytes it follows are not all stored yet (`stored`, 0 for an
    /// unknown stream): the sender re-sends once the batch before it is in.
    Early { stored: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("dedup table {path} is unreadable: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error(
        "dedup table {path} covers the bus up to offset {through}, past its end {next}; the bus directory was replaced"
    )]
    AheadOfBus {
        path: PathBuf,
        through: u64,
        next: u64,
    },
    #[error("scanning the bus: {0}")]
    Bus(#[from] BusError),
}

/// What [`DedupIndex::rebuild`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuild {
    /// Whether a persisted table was loaded.
    pub loaded: bool,
    /// Bus records decoded after the persisted table.
    pub scanned: u64,
    /// Records that did not decode as batches (skipped; they carry no key).
    pub undecodable: u64,
    /// Records deleted from the bus that the persisted table does not cover
    /// (someone ran `gc` without persisting first): their streams may accept
    /// duplicates.
    pub missing: u64,
    /// Streams known after the rebuild.
    pub streams: usize,
}

/// The per-stream high-water marks. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupIndex {
    streams: HashMap<StreamKey, u64>,
    through_offset: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Persisted {
    version: u32,
    through_offset: u64,
    streams: Vec<PersistedStream>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedStream {
    agent_id: String,
    fingerprint: u64,
    end: u64,
}

impl DedupIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges a batch covering `[start, end)` (callers ensure `start <=
    /// end`) that follows bytes up to `after` if the sender says so.
    pub fn check(&self, stream: &StreamKey, start: u64, end: u64, after: Option<u64>) -> Verdict {
        let hwm = self.streams.get(stream).copied();
        match (hwm, after) {
            (Some(hwm), _) if start < end && end <= hwm => {
                return Verdict::Duplicate { stored: hwm };
            }
            (None, Some(_)) => return Verdict::Early { stored: 0 },
            (Some(hwm), Some(after)) if hwm < after => return Verdict::Early { stored: hwm },
            _ => {}
        }
        match self.streams.get(stream) {
            None => Verdict::New { gap: 0 },
            // An empty range at the stored end is a heartbeat: stored (it
            // moves event time while the file is quiet), the mark unchanged.
            Some(&hwm) if start == end && end == hwm => Verdict::New { gap: 0 },
            Some(&hwm) if end <= hwm => Verdict::Duplicate { stored: hwm },
            Some(&hwm) if start < hwm => Verdict::Overlap { stored: hwm },
            Some(&hwm) => Verdict::New { gap: start - hwm },
        }
    }

    /// Notes that a batch ending at `end` is stored as bus record `offset`.
    /// Returns the previous high-water mark, for [`DedupIndex::undo`].
    pub fn record(&mut self, stream: &StreamKey, end: u64, offset: u64) -> Option<u64> {
        self.through_offset = self.through_offset.max(offset + 1);
        match self.streams.get_mut(stream) {
            Some(hwm) => {
                let previous = *hwm;
                *hwm = previous.max(end);
                Some(previous)
            }
            None => {
                self.streams.insert(stream.clone(), end);
                None
            }
        }
    }

    /// Reverts a [`DedupIndex::record`] whose append failed.
    pub fn undo(&mut self, stream: &StreamKey, previous: Option<u64>, through_offset: u64) {
        match previous {
            Some(hwm) => {
                self.streams.insert(stream.clone(), hwm);
            }
            None => {
                self.streams.remove(stream);
            }
        }
        self.through_offset = through_offset;
    }

    /// The stored high-water mark of `stream`.
    pub fn high_water(&self, stream: &StreamKey) -> Option<u64> {
        self.streams.get(stream).copied()
    }

    /// Bus records below this offset are reflected in the table.
    pub fn through_offset(&self) -> u64 {
        self.through_offset
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Notes that the table also reflects the bus up to `next_offset`
    /// (records that were not batches, or the bus end at a persist).
    pub fn advance_to(&mut self, next_offset: u64) {
        self.through_offset = self.through_offset.max(next_offset);
    }

    /// Loads the table persisted in `dir`; an empty table if there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, DedupError> {
        let path = dir.join(DEDUP_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DedupError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        let persisted: Persisted =
            serde_json::from_slice(&text).map_err(|e| DedupError::Format {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if persisted.version != FILE_VERSION {
            return Err(DedupError::Format {
                path,
                reason: format!("unsupported version {}", persisted.version),
            });
        }
        let streams = persisted
            .streams
            .into_iter()
            .map(|s| {
                let key = StreamKey {
                    agent_id: s.agent_id,
                    fingerprint: s.fingerprint,
                };
                (key, s.end)
            })
            .collect();
        Ok(Some(Self {
            streams,
            through_offset: persisted.through_offset,
        }))
    }

    /// Writes the table to `dir` atomically: temp file, fsync, rename, and
    /// (with `fsync`) an fsync of the directory.
    pub fn persist(&self, dir: &Path, fsync: bool) -> Result<(), DedupError> {
        let mut streams: Vec<PersistedStream> = self
            .streams
            .iter()
            .map(|(k, &end)| PersistedStream {
                agent_id: k.agent_id.clone(),
                fingerprint: k.fingerprint,
                end,
            })
            .collect();
        streams.sort_by(|a, b| (&a.agent_id, a.fingerprint).cmp(&(&b.agent_id, b.fingerprint)));
        let persisted = Persisted {
            version: FILE_VERSION,
            through_offset: self.through_offset,
            streams,
        };
        let bytes = serde_json::to_vec(&persisted).expect("the table serializes");
        let temp = dir.join(DEDUP_TEMP);
        let path = dir.join(DEDUP_FILE);
        let options = crate::durable::Options {
            fsync,
            pause_halfway: None,
        };
        crate::durable::replace(&path, &temp, &bytes, options).map_err(|e| DedupError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        })
    }

    /// Loads the table persisted beside `log` and brings it up to the end of
    /// the log by decoding the records after it. Records are decoded with
    /// `limits.max_decompressed` (no compressed cap: they were accepted once).
    pub fn rebuild(log: &SegmentLog, limits: &Limits) -> Result<(Self, Rebuild), DedupError> {
        let dir = &log.config().dir;
        let loaded = Self::load(dir)?;
        let mut report = Rebuild {
            loaded: loaded.is_some(),
            ..Rebuild::default()
        };
        let mut index = loaded.unwrap_or_default();
        let (first, next) = (log.first_offset(), log.next_offset());
        if index.through_offset > next {
            return Err(DedupError::AheadOfBus {
                path: dir.join(DEDUP_FILE),
                through: index.through_offset,
                next,
            });
        }
        if index.through_offset < first {
            report.missing = first - index.through_offset;
            index.through_offset = first;
        }
        let limits = Limits {
            max_compressed: usize::MAX,
            max_decompressed: limits.max_decompressed,
        };
        let mut from = index.through_offset;
        while from < next {
            let records = log.read(from, SCAN_RECORDS, SCAN_BYTES)?;
            let Some(&(last, _)) = records.last() else {
                break;
            };
            for (offset, body) in records {
                report.scanned += 1;
                match wire::decode(&body, &limits) {
                    Ok(batch) => {
                        let key = StreamKey {
                            agent_id: batch.agent_id,
                            fingerprint: batch.stream.fingerprint,
                        };
                        index.record(&key, batch.end, offset);
                    }
                    Err(_) => report.undecodable += 1,
                }
            }
            from = last + 1;
        }
        index.advance_to(next);
        report.streams = index.stream_count();
        Ok((index, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::log::LogConfig;
    use logmon_protocol::parse::Format;
    use logmon_protocol::wire::{Batch, StreamId};

    fn key(agent: &str, fingerprint: u64) -> StreamKey {
        StreamKey {
            agent_id: agent.into(),
            fingerprint,
        }
    }

    fn body(agent: &str, fingerprint: u64, start: u64, end: u64) -> Vec<u8> {
        let batch = Batch {
            agent_id: agent.into(),
            host: "web-1".into(),
            stream: StreamId {
                fingerprint,
                path: "/var/log/access.log".into(),
            },
            start,
            end,
            format: Format::Clf,
            labels: Vec::new(),
            events: Vec::new(),
            malformed: 0,
            caught_up: false,
            finished: false,
            sent_at: 0,
        };
        wire::encode(&batch, 1).unwrap()
    }

    /// A pipelining agent sends batch 2 with `after` = its start while batch
    /// 1 is on its way: whichever arrives first, they are stored in order.
    #[test]
    fn pipelined_batches_that_arrive_early_wait_for_their_predecessor() {
        let mut index = DedupIndex::new();
        let a = key("a", 1);
        // Batch 2 first, on an unknown stream: early, with nothing stored.
        assert_eq!(
            index.check(&a, 100, 200, Some(100)),
            Verdict::Early { stored: 0 }
        );
        assert_eq!(index.check(&a, 0, 100, None), Verdict::New { gap: 0 });
        index.record(&a, 100, 0);
        assert_eq!(
            index.check(&a, 100, 200, Some(100)),
            Verdict::New { gap: 0 }
        );
        index.record(&a, 200, 1);
        // Batch 4 before 3: early, with the stored end; 3 then 4 are new.
        assert_eq!(
            index.check(&a, 300, 400, Some(300)),
            Verdict::Early { stored: 200 }
        );
        assert_eq!(
            index.check(&a, 200, 300, Some(200)),
            Verdict::New { gap: 0 }
        );
        index.record(&a, 300, 2);
        assert_eq!(
            index.check(&a, 300, 400, Some(300)),
            Verdict::New { gap: 0 }
        );
        // A re-sent batch that is stored already is a duplicate, `after` or not.
        assert_eq!(
            index.check(&a, 100, 200, Some(100)),
            Verdict::Duplicate { stored: 300 }
        );
        // A heartbeat at the stored end that follows it is stored.
        assert_eq!(
            index.check(&a, 300, 300, Some(300)),
            Verdict::New { gap: 0 }
        );
        assert_eq!(
            index.check(&a, 300, 300, Some(400)),
            Verdict::Early { stored: 300 }
        );
    }

    #[test]
    fn judges_against_the_high_water_mark() {
        let mut index = DedupIndex::new();
        let a = key("a", 1);
        assert_eq!(index.check(&a, 0, 100, None), Verdict::New { gap: 0 });
        index.record(&a, 100, 0);
        assert_eq!(
            index.check(&a, 0, 100, None),
            Verdict::Duplicate { stored: 100 }
        );
        assert_eq!(
            index.check(&a, 0, 50, None),
            Verdict::Duplicate { stored: 100 }
        );
        assert_eq!(
            index.check(&a, 50, 100, None),
            Verdict::Duplicate { stored: 100 }
        );
        assert_eq!(
            index.check(&a, 50, 150, None),
            Verdict::Overlap { stored: 100 }
        );
        assert_eq!(index.check(&a, 100, 150, None), Verdict::New { gap: 0 });
        assert_eq!(index.check(&a, 130, 150, None), Verdict::New { gap: 30 });
        // Other agents and other files are other streams.
        assert_eq!(
            index.check(&key("b", 1), 0, 100, None),
            Verdict::New { gap: 0 }
        );
        assert_eq!(
            index.check(&key("a", 2), 0, 100, None),
            Verdict::New { gap: 0 }
        );
        assert_eq!(index.through_offset(), 1);
    }

    #[test]
    fn undo_restores_the_previous_mark() {
        let mut index = DedupIndex::new();
        let a = key("a", 1);
        index.record(&a, 100, 0);
        let before = index.clone();
        let previous = index.record(&a, 200, 1);
        index.undo(&a, previous, 1);
        assert_eq!(index, before);
        let b = key("b", 1);
        let previous = index.record(&b, 10, 1);
        index.undo(&b, previous, 1);
        assert_eq!(index, before);
    }

    #[test]
    fn persists_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DedupIndex::load(dir.path()).unwrap(), None);
        let mut index = DedupIndex::new();
        index.record(&key("a", u64::MAX), 100, 0);
        index.record(&key("b\"\n", 7), 5, 1);
        index.persist(dir.path(), true).unwrap();
        assert_eq!(DedupIndex::load(dir.path()).unwrap(), Some(index));
        assert!(!dir.path().join(DEDUP_TEMP).exists());
    }

    #[test]
    fn refuses_a_corrupt_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DEDUP_FILE), b"{\"version\":1,").unwrap();
        assert!(matches!(
            DedupIndex::load(dir.path()),
            Err(DedupError::Format { .. })
        ));
    }

    fn small_log(dir: &Path) -> SegmentLog {
        let config = LogConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1,
            fsync: false,
        };
        SegmentLog::open(config).unwrap().0
    }

    #[test]
    fn rebuilds_from_the_bus_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = small_log(dir.path());
        let records = [
            body("a", 1, 0, 100),
            body("a", 1, 100, 180),
            body("b", 1, 0, 7),
        ];
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        log.append(&refs).unwrap();
        log.append(&[b"not a batch"]).unwrap();
        let (index, report) = DedupIndex::rebuild(&log, &Limits::default()).unwrap();
        assert_eq!(index.high_water(&key("a", 1)), Some(180));
        assert_eq!(index.high_water(&key("b", 1)), Some(7));
        assert_eq!(index.through_offset(), 4);
        assert_eq!(
            report,
            Rebuild {
                loaded: false,
                scanned: 4,
                undecodable: 1,
                missing: 0,
                streams: 2,
            }
        );
    }

    /// Segments deleted after a persist are covered by the table; the
    /// records after it are scanned.
    #[test]
    fn rebuilds_after_gc_from_the_persisted_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = small_log(dir.path());
        let mut index = DedupIndex::new();
        let a = key("a", 1);
        for (i, (start, end)) in [(0, 10), (10, 20), (20, 30)].into_iter().enumerate() {
            let offset = log.append(&[&body("a", 1, start, end)]).unwrap().start;
            assert_eq!(offset, i as u64);
            index.record(&a, end, offset);
        }
        log.register("writer").unwrap();
        log.commit("writer", 3).unwrap();
        index.persist(dir.path(), false).unwrap();
        // The active segment (record 2) stays.
        assert_eq!(log.gc().unwrap(), 2);
        assert_eq!(log.first_offset(), 2);
        log.append(&[&body("a", 1, 30, 40)]).unwrap();
        drop(log);

        let log = small_log(dir.path());
        let (rebuilt, report) = DedupIndex::rebuild(&log, &Limits::default()).unwrap();
        assert_eq!(rebuilt.high_water(&a), Some(40));
        assert_eq!(rebuilt.through_offset(), 4);
        assert!(report.loaded);
        assert_eq!((report.scanned, report.missing), (1, 0));
    }

    #[test]
    fn reports_records_lost_to_an_unpersisted_gc() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = small_log(dir.path());
        log.append(&[&body("a", 1, 0, 10)]).unwrap();
        log.append(&[&body("a", 1, 10, 20)]).unwrap();
        log.register("writer").unwrap();
        log.commit("writer", 1).unwrap();
        log.gc().unwrap();
        let (index, report) = DedupIndex::rebuild(&log, &Limits::default()).unwrap();
        assert_eq!(report.missing, 1);
        assert_eq!(index.high_water(&key("a", 1)), Some(20));
    }

    #[test]
    fn refuses_a_table_ahead_of_the_bus() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = DedupIndex::new();
        index.record(&key("a", 1), 10, 5);
        index.persist(dir.path(), false).unwrap();
        let log = small_log(dir.path());
        assert!(matches!(
            DedupIndex::rebuild(&log, &Limits::default()),
            Err(DedupError::AheadOfBus {
                through: 6,
                next: 0,
                ..
            })
        ));
    }
}
