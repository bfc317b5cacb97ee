//! The bus writer: one thread that owns appending and group-commits
//! concurrent requests with one durable append.
//!
//! Request handlers send a `Job` (the compressed body, its stream and byte
//! range) through a bounded channel and wait on a oneshot. The thread blocks
//! for the first job, drains whatever else is queued (up to
//! [`MAX_GROUP_RECORDS`] records or [`MAX_GROUP_BYTES`] bytes), hands the
//! group to [`EventBus::append`] (which judges each against what its stream
//! has stored, earlier jobs of the group included, and stores the new ones
//! together) and only then answers every job of the group. If the append
//! fails, every job of the group gets the error, duplicates too (their
//! verdict may rest on a record of the failed append).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use crate::bus::{Append, EventBus, Stored, StreamKey};

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
    /// The agent's `Logmon-After`: see [`crate::bus::Append::after`].
    pub after: Option<u64>,
    pub events: u64,
    pub reply: oneshot::Sender<Result<Stored, WriteError>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The append failed.
    #[error("event bus append failed: {0}")]
    Bus(String),
    /// The writer is gone (shutting down).
    #[error("the event bus writer has stopped")]
    Stopped,
}

/// Runs the writer until every sender is dropped; then every queued job has
/// been answered.
pub(crate) fn run_writer(
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    mut jobs: mpsc::Receiver<Job>,
) {
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
        commit_group(&*bus, &metrics, &mut group);
    }
}

fn commit_group(bus: &dyn EventBus, metrics: &Metrics, group: &mut Vec<Job>) {
    let appends: Vec<Append<'_>> = group
        .iter()
        .map(|job| Append {
            body: &job.body,
            stream: &job.stream,
            start: job.start,
            end: job.end,
            after: job.after,
        })
        .collect();
    let started = Instant::now();
    let outcome = bus.append(&appends);
    drop(appends);
    if let Ok(verdicts) = &outcome {
        let new = verdicts
            .iter()
            .filter(|v| matches!(v, Stored::New { .. }))
            .count();
        if new > 0 {
            metrics.observe_append(new, started.elapsed());
        }
    }
    let outcome = outcome.map_err(|e| WriteError::Bus(e.to_string()));
    for (i, job) in group.drain(..).enumerate() {
        let answer = match &outcome {
            Err(e) => Err(e.clone()),
            Ok(verdicts) => {
                let v = verdicts[i];
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
                    Stored::Early { .. } => {}
                }
                Ok(v)
            }
        };
        // The requester may have gone (client disconnected); the record
        // stays stored and a retry will be a duplicate.
        let _ = job.reply.send(answer);
    }
}
