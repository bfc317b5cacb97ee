//! The bus writer: one thread that owns appending, deduplicates in arrival
//! order and group-commits concurrent requests with one fsync.
//!
//! Request handlers send a `Job` (the compressed body, its stream and byte
//! range) through a bounded channel and wait on a oneshot. The thread blocks
//! for the first job, drains whatever else is queued (up to
//! [`MAX_GROUP_RECORDS`] records or [`MAX_GROUP_BYTES`] bytes), judges each
//! against the [`DedupIndex`] (earlier jobs of the group included), appends
//! the new ones in one `SegmentLog::append` and only then answers every job
//! of the group. If the append fails, every job of the group gets the error,
//! duplicates too (their verdict may rest on a record of the failed append),
//! and the index is rolled back.
//!
//! The log and the index sit together behind one mutex ([`Bus`]), so the
//! index always describes exactly the durable records and a `gc` can persist
//! it before deleting segments. Consumers read through [`Bus`] too; a read
//! waits at most for one group commit.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::dedup::{DedupError, DedupIndex, StreamKey, Verdict};
use super::metrics::Metrics;
use crate::bus::{BusError, SegmentLog};

/// Most records in one group commit.
pub const MAX_GROUP_RECORDS: usize = 1024;
/// Most body bytes in one group commit (a group always takes its first job).
pub const MAX_GROUP_BYTES: usize = 64 << 20;
/// Jobs queued for the writer before senders wait.
pub(crate) const QUEUE: usize = 1024;

/// One checked batch waiting to be stored.
#[derive(Debug)]
pub(crate) struct Job {
    pub body: Bytes,
    pub stream: StreamKey,
    pub start: u64,
    pub end: u64,
    pub events: u64,
    pub reply: oneshot::Sender<Result<Stored, WriteError>>,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Durable as bus record `offset`; `gap` as in [`Verdict::New`].
    New {
        offset: u64,
        gap: u64,
    },
    Duplicate {
        stored: u64,
    },
    Overlap {
        stored: u64,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The append failed; the bus refuses appends until reopened.
    #[error("event bus append failed: {0}")]
    Bus(String),
    /// The writer is gone (shutting down).
    #[error("the event bus writer has stopped")]
    Stopped,
}

/// The log and the dedup index it is described by.
#[derive(Debug)]
pub struct Store {
    pub(crate) log: SegmentLog,
    pub(crate) dedup: DedupIndex,
}

/// A shared handle on the event bus for consumers: reads, offsets and
/// garbage collection. Appends go through the ingest writer only.
#[derive(Debug, Clone)]
pub struct Bus {
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
}

impl Bus {
    pub(crate) fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        let bus = Self {
            store: Arc::new(Mutex::new(store)),
            metrics,
        };
        bus.refresh_backlog(&bus.lock());
        bus
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock left the log in a state its own
        // methods keep consistent (they poison it on failed writes).
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_backlog(&self, store: &Store) {
        self.metrics
            .backlog_bytes
            .store(store.log.backlog_bytes(), Relaxed);
    }

    /// See [`SegmentLog::read`].
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, BusError> {
        self.lock().log.read(from, max_records, max_bytes)
    }

    /// See [`SegmentLog::register`].
    pub fn register(&self, consumer: &str) -> Result<u64, BusError> {
        let mut store = self.lock();
        let offset = store.log.register(consumer)?;
        self.refresh_backlog(&store);
        Ok(offset)
    }

    /// See [`SegmentLog::commit`].
    pub fn commit(&self, consumer: &str, offset: u64) -> Result<(), BusError> {
        let mut store = self.lock();
        store.log.commit(consumer, offset)?;
        self.refresh_backlog(&store);
        Ok(())
    }

    /// See [`SegmentLog::committed`].
    pub fn committed(&self, consumer: &str) -> Option<u64> {
        self.lock().log.committed(consumer)
    }

    pub fn first_offset(&self) -> u64 {
        self.lock().log.first_offset()
    }

    pub fn next_offset(&self) -> u64 {
        self.lock().log.next_offset()
    }

    /// Bytes behind the slowest consumer, as of the last append or commit.
    pub fn backlog_bytes(&self) -> u64 {
        self.metrics.backlog_bytes.load(Relaxed)
    }

    /// Persists the dedup index, then deletes consumed segments (see
    /// [`SegmentLog::gc`]). Never call `gc` on the log any other way: the
    /// index must be on disk before the records it came from are gone.
    pub fn gc(&self) -> Result<usize, DedupError> {
        let mut store = self.lock();
        let Store { log, dedup } = &mut *store;
        dedup.advance_to(log.next_offset());
        dedup.persist(&log.config().dir, log.config().fsync)?;
        let deleted = log.gc()?;
        self.refresh_backlog(&store);
        Ok(deleted)
    }

    /// Persists the dedup index (at shutdown, to spare the next start a scan).
    pub fn persist_dedup(&self) -> Result<(), DedupError> {
        let mut store = self.lock();
        let Store { log, dedup } = &mut *store;
        dedup.advance_to(log.next_offset());
        dedup.persist(&log.config().dir, log.config().fsync)
    }

    /// The stored high-water mark of a stream.
    pub fn high_water(&self, agent_id: &str, fingerprint: u64) -> Option<u64> {
        self.lock().dedup.high_water(&StreamKey {
            agent_id: agent_id.to_owned(),
            fingerprint,
        })
    }
}

/// Runs the writer until every sender is dropped; then every queued job has
/// been answered.
pub(crate) fn run_writer(bus: Bus, mut jobs: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP_RECORDS);
    while let Some(first) = jobs.blocking_recv() {
        let mut bytes = first.body.len();
        group.push(first);
        while group.len() < MAX_GROUP_RECORDS && bytes < MAX_GROUP_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.body.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&bus, &mut group);
    }
}

fn commit_group(bus: &Bus, group: &mut Vec<Job>) {
    let metrics = &bus.metrics;
    let mut store = bus.lock();
    let Store { log, dedup } = &mut *store;
    let through = dedup.through_offset();
    let mut next = log.next_offset();
    let mut verdicts = Vec::with_capacity(group.len());
    let mut undo = Vec::new();
    let mut records: Vec<&[u8]> = Vec::new();
    for job in group.iter() {
        let verdict = match dedup.check(&job.stream, job.start, job.end) {
            Verdict::New { gap } => {
                let previous = dedup.record(&job.stream, job.end, next);
                undo.push((&job.stream, previous));
                records.push(&job.body);
                next += 1;
                Stored::New {
                    offset: next - 1,
                    gap,
                }
            }
            Verdict::Duplicate { stored } => Stored::Duplicate { stored },
            Verdict::Overlap { stored } => Stored::Overlap { stored },
        };
        verdicts.push(verdict);
    }
    let outcome = if records.is_empty() {
        Ok(())
    } else {
        let started = Instant::now();
        let result = log.append(&records);
        metrics.observe_append(records.len(), started.elapsed());
        match result {
            Ok(range) => {
                debug_assert_eq!(range.end, next);
                Ok(())
            }
            Err(e) => {
                for (stream, previous) in undo.into_iter().rev() {
                    dedup.undo(stream, previous, through);
                }
                Err(WriteError::Bus(e.to_string()))
            }
        }
    };
    bus.refresh_backlog(&store);
    drop(store);

    for (job, verdict) in group.drain(..).zip(verdicts) {
        let answer = match (&outcome, verdict) {
            (Err(e), _) => Err(e.clone()),
            (Ok(()), v) => {
                match v {
                    Stored::New { gap, .. } => {
                        metrics.accepted.fetch_add(1, Relaxed);
                        metrics.events.fetch_add(job.events, Relaxed);
                        if gap > 0 {
                            metrics.gaps.fetch_add(1, Relaxed);
                            metrics.gap_bytes.fetch_add(gap, Relaxed);
                        }
                    }
                    Stored::Duplicate { .. } => {
                        metrics.duplicates.fetch_add(1, Relaxed);
                    }
                    Stored::Overlap { .. } => {}
                }
                Ok(v)
            }
        };
        // The requester may have gone (client disconnected); the record
        // stays stored and a retry will be a duplicate.
        let _ = job.reply.send(answer);
    }
}
