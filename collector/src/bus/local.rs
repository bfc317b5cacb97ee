//! The embedded event bus: the local segment log ([`super::log`]) and the
//! deduplication index that describes it ([`super::dedup`]), behind one
//! mutex so the index always describes exactly the durable records.
//!
//! `append` judges each batch against the index in arrival order (earlier
//! batches of the same call included), appends the new ones with one
//! `SegmentLog::append` (one fsync), and rolls the index back if that fails.
//! `gc` persists the index before deleting segments, so a restart never needs
//! records that are gone to rebuild it. Reads wait at most for one append.

use super::dedup::{DedupError, DedupIndex, Rebuild, StreamKey, Verdict};
use super::lag::AppendTimes;
use super::log::{BusError, ConsumerLag, LogConfig, Recovery, SegmentLog};
use super::{Append, ConsumerStatus, EventBus, Stored};
use crate::clock::now_ms;
use logmon_protocol::wire::Limits;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    log: SegmentLog,
    dedup: DedupIndex,
    times: AppendTimes,
    /// The consumers the configuration names (see [`EventBus::declare`]).
    declared: BTreeSet<String>,
    /// Consumer → since when (ms) and why it cannot make progress, as it
    /// last said.
    problems: BTreeMap<String, (i64, String)>,
    /// The dedup table on disk covers the records below this offset: gc
    /// may delete segments below it even when persisting the table fails
    /// (a full disk), without ever deleting a record the table on disk
    /// does not reflect.
    persisted_through: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct LocalBus {
    state: Mutex<State>,
    limits: Limits,
    /// The backlog as of the last append, commit or gc: read without the
    /// lock by every ingest request.
    backlog: AtomicU64,
}

impl From<DedupError> for BusError {
    fn from(e: DedupError) -> BusError {
        match e {
            DedupError::Bus(e) => e,
            other => BusError::Index(other.to_string()),
        }
    }
}

impl LocalBus {
    /// Opens (or creates) the log in `config.dir`, recovers it and rebuilds
    /// the dedup index (records checked with `limits`).
    pub fn open(
        config: LogConfig,
        limits: Limits,
    ) -> Result<(LocalBus, Recovery, Rebuild), BusError> {
        let (log, recovery) = SegmentLog::open(config)?;
        let (bus, rebuild) = LocalBus::with_log(log, limits)?;
        Ok((bus, recovery, rebuild))
    }

    /// Takes over an opened log.
    pub fn with_log(log: SegmentLog, limits: Limits) -> Result<(LocalBus, Rebuild), BusError> {
        let (dedup, rebuild) = DedupIndex::rebuild(&log, &limits)?;
        let bus = LocalBus {
            state: Mutex::new(State {
                times: AppendTimes::seed(&log),
                dedup,
                declared: BTreeSet::new(),
                problems: BTreeMap::new(),
                persisted_through: log.first_offset(),
                log,
            }),
            limits,
            backlog: AtomicU64::new(0),
        };
        bus.refresh_backlog(&bus.lock());
        Ok((bus, rebuild))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock left the log in a state its own
        // methods keep consistent (a failed write is undone, or poisons the
        // log when it cannot be).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_backlog(&self, state: &State) {
        self.backlog.store(state.log.backlog_bytes(), Relaxed);
    }

    /// Registers `consumer` at the oldest retained offset unless it exists
    /// (see [`SegmentLog::register`]); for tests and tools — `serve`
    /// declares its consumers.
    pub fn register(&self, consumer: &str) -> Result<u64, BusError> {
        let mut state = self.lock();
        let offset = state.log.register(consumer)?;
        self.refresh_backlog(&state);
        Ok(offset)
    }
}

impl EventBus for LocalBus {
    fn append(&self, batches: &[Append<'_>]) -> Result<Vec<Stored>, BusError> {
        let mut state = self.lock();
        let State {
            log, dedup, times, ..
        } = &mut *state;
        let through = dedup.through_offset();
        let mut next = log.next_offset();
        let mut verdicts = Vec::with_capacity(batches.len());
        let mut undo = Vec::new();
        let mut records: Vec<&[u8]> = Vec::new();
        for batch in batches {
            let verdict = match dedup.check(batch.stream, batch.start, batch.end, batch.after) {
                Verdict::New { gap } => {
                    let previous = dedup.record(batch.stream, batch.end, next);
                    undo.push((batch.stream, previous));
                    records.push(batch.body);
                    next += 1;
                    Stored::New {
                        offset: next - 1,
                        gap,
                    }
                }
                Verdict::Duplicate { stored } => Stored::Duplicate { stored },
                Verdict::Overlap { stored } => Stored::Overlap { stored },
                Verdict::Early { stored } => Stored::Early { stored },
            };
            verdicts.push(verdict);
        }
        if !records.is_empty() {
            match log.append(&records) {
                Ok(range) => {
                    debug_assert_eq!(range.end, next);
                    times.appended(range, now_ms());
                }
                Err(e) => {
                    for (stream, previous) in undo.into_iter().rev() {
                        dedup.undo(stream, previous, through);
                    }
                    return Err(e);
                }
            }
        }
        self.refresh_backlog(&state);
        Ok(verdicts)
    }

    fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, BusError> {
        self.lock().log.read(from, max_records, max_bytes)
    }

    fn declare(&self, configured: &[&str]) -> Result<Vec<ConsumerLag>, BusError> {
        let mut state = self.lock();
        let stale = state.log.declare(configured)?;
        state
            .declared
            .extend(configured.iter().map(|c| (*c).to_owned()));
        self.refresh_backlog(&state);
        Ok(stale)
    }

    fn position(&self, consumer: &str) -> Result<u64, BusError> {
        self.lock()
            .log
            .committed(consumer)
            .ok_or_else(|| BusError::UnknownConsumer(consumer.to_owned()))
    }

    fn commit(&self, consumer: &str, offset: u64) -> Result<(), BusError> {
        let mut state = self.lock();
        state.log.commit(consumer, offset)?;
        self.refresh_backlog(&state);
        Ok(())
    }

    fn report_problem(&self, consumer: &str, problem: Option<String>) {
        let mut state = self.lock();
        match problem {
            Some(p) => {
                let since = state
                    .problems
                    .get(consumer)
                    .map_or_else(now_ms, |(t, _)| *t);
                state.problems.insert(consumer.to_owned(), (since, p));
            }
            None => {
                state.problems.remove(consumer);
            }
        }
    }

    fn consumers(&self) -> Vec<ConsumerStatus> {
        let state = self.lock();
        let now = now_ms();
        let next = state.log.next_offset();
        state
            .log
            .consumers()
            .into_iter()
            .map(|c| ConsumerStatus {
                configured: state.declared.contains(&c.name),
                lag_seconds: Some(state.times.age(c.offset, next, now).as_secs()),
                problem: state.problems.get(&c.name).map(|(_, p)| p.clone()),
                problem_seconds: state
                    .problems
                    .get(&c.name)
                    .map(|(since, _)| (now - since).max(0) as u64 / 1000),
                offset: c.offset,
                lag_records: c.records,
                lag_bytes: c.bytes,
                name: c.name,
            })
            .collect()
    }

    fn first_offset(&self) -> u64 {
        self.lock().log.first_offset()
    }

    fn next_offset(&self) -> u64 {
        self.lock().log.next_offset()
    }

    fn backlog_bytes(&self) -> u64 {
        self.backlog.load(Relaxed)
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn high_water(&self, stream: &StreamKey) -> Option<u64> {
        self.lock().dedup.high_water(stream)
    }

    /// Persists the dedup index, then deletes consumed segments. The index
    /// must be on disk before the records it came from are gone.
    /// Persists the dedup table, then deletes what every consumer passed.
    /// When the table cannot be written (a full disk), what the table on
    /// disk already covers is still deleted — freeing space needs none —
    /// and the failure is returned after.
    fn gc(&self) -> Result<usize, BusError> {
        let mut state = self.lock();
        let State {
            log,
            dedup,
            times,
            persisted_through,
            ..
        } = &mut *state;
        dedup.advance_to(log.next_offset());
        let persisted = dedup.persist(&log.config().dir, log.config().fsync);
        if persisted.is_ok() {
            *persisted_through = dedup.through_offset();
        }
        let through = *persisted_through;
        let deleted = log.gc_below(through)?;
        if let Some(slowest) = log.consumers().iter().map(|c| c.offset).min() {
            times.forget_below(slowest.min(through));
        }
        self.refresh_backlog(&state);
        if let Err(e) = persisted {
            if deleted > 0 {
                tracing::warn!(
                    segments = deleted,
                    through,
                    "gc deleted what the dedup table on disk covers; the table itself could not be written"
                );
            }
            return Err(e.into());
        }
        Ok(deleted)
    }

    /// Persists the dedup index, to spare the next start a scan.
    fn close(&self) -> Result<(), BusError> {
        let mut state = self.lock();
        let State { log, dedup, .. } = &mut *state;
        dedup.advance_to(log.next_offset());
        dedup.persist(&log.config().dir, log.config().fsync)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Append;
    use crate::bus::dedup::StreamKey;
    use crate::bus::log::LogConfig;

    fn bus(dir: &std::path::Path) -> LocalBus {
        let config = LogConfig {
            segment_bytes: 1,
            fsync: false,
            ..LogConfig::new(dir)
        };
        let (bus, ..) = LocalBus::open(config, Limits::default()).unwrap();
        bus.declare(&["engine"]).unwrap();
        bus
    }

    fn append(bus: &LocalBus, stream: &StreamKey, batches: std::ops::Range<u64>) {
        for i in batches {
            let body = vec![7u8; 64];
            let batch = Append {
                body: &body,
                stream,
                start: i * 10,
                end: (i + 1) * 10,
                after: None,
            };
            bus.append(&[batch]).unwrap();
        }
    }

    #[test]
    fn gc_deletes_what_the_table_on_disk_covers_when_the_table_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let bus = bus(dir.path());
        let stream = StreamKey {
            agent_id: "a".into(),
            fingerprint: 1,
        };
        // One record a segment; the engine passes the first four, the table
        // is persisted through them; gc keeps the last segment.
        append(&bus, &stream, 0..4);
        bus.commit("engine", 4).unwrap();
        assert_eq!(bus.gc().unwrap(), 3);
        assert_eq!(bus.first_offset(), 3);
        append(&bus, &stream, 4..8);
        bus.commit("engine", 8).unwrap();
        // The table's temporary file cannot be written (a directory is in
        // its place): gc deletes what the table on disk covers (below 4)
        // and nothing past it, and says why it stopped there.
        std::fs::create_dir(dir.path().join("ingest-dedup.json.tmp")).unwrap();
        let err = bus.gc().unwrap_err().to_string();
        assert!(err.contains("ingest-dedup.json"), "{err}");
        assert_eq!(bus.first_offset(), 4);
        // Once it can be written, gc catches up.
        std::fs::remove_dir(dir.path().join("ingest-dedup.json.tmp")).unwrap();
        assert_eq!(bus.gc().unwrap(), 3);
        assert_eq!(bus.first_offset(), 7);
        // Reopened, the table knows the stream's end: a resend is a duplicate.
        drop(bus);
        let bus = self::bus(dir.path());
        let body = vec![7u8; 64];
        let again = Append {
            body: &body,
            stream: &stream,
            start: 70,
            end: 80,
            after: None,
        };
        assert!(matches!(
            bus.append(&[again]).unwrap()[0],
            Stored::Duplicate { .. }
        ));
    }
}
