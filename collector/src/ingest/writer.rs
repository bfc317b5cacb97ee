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
//!
//! A pipelined batch that came before the one it follows (`Stored::Early`)
//! is not answered at once: it is held, up to [`HOLD_EARLY`], and judged
//! again with every later group, whose batches are then judged per stream
//! in file order (so a predecessor arriving with it goes first). Usually its predecessor is a
//! few milliseconds behind on another connection, and the batch is then
//! stored without the agent sending it twice; only one still early after
//! the hold is answered 409 `early`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use crate::bus::{Append, EventBus, Stored, StreamKey};

/// Most records in one group commit.
pub const MAX_GROUP_RECORDS: usize = 1024;
/// Most body bytes in one group commit (a group always takes its first job).
pub const MAX_GROUP_BYTES: usize = 64 << 20;
/// How long an early pipelined batch is held for its predecessor.
pub const HOLD_EARLY: Duration = Duration::from_secs(2);
/// Most early batches held at once; past it they are answered at once.
const MAX_HELD: usize = 1024;

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
    /// When it was first judged early, while it is held.
    pub held_since: Option<Instant>,
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
    // Early batches waiting for their predecessor.
    let mut held: Vec<Job> = Vec::new();
    loop {
        let first = if held.is_empty() {
            match jobs.blocking_recv() {
                Some(job) => Some(job),
                None => break,
            }
        } else {
            // Something is held: look for new jobs without blocking, so the
            // held ones are judged again and time out.
            match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        };
        if let Some(first) = first {
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
        } else {
            // Nothing new: only what waited too long is judged (and answered).
            let now = Instant::now();
            let (expired, waiting): (Vec<Job>, Vec<Job>) = held.drain(..).partition(|job| {
                job.held_since
                    .is_some_and(|at| now.duration_since(at) >= HOLD_EARLY)
            });
            held = waiting;
            if expired.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            group.extend(expired);
        }
        // Held jobs join the new ones, and each stream's batches are judged
        // in file order: a predecessor among the new ones is stored first,
        // and a chain of held batches goes in at once.
        if !held.is_empty() {
            group.append(&mut held);
            group.sort_by(|a, b| {
                (&a.stream.agent_id, a.stream.fingerprint, a.start).cmp(&(
                    &b.stream.agent_id,
                    b.stream.fingerprint,
                    b.start,
                ))
            });
        }
        held = commit_group(&*bus, &metrics, &mut group, true);
    }
    // Shutting down: what is still held is answered early.
    group.append(&mut held);
    if !group.is_empty() {
        commit_group(&*bus, &metrics, &mut group, false);
    }
}

/// Appends `group` and answers its jobs; with `hold`, an early job that has
/// waited less than [`HOLD_EARLY`] is returned instead, to be held.
fn commit_group(
    bus: &dyn EventBus,
    metrics: &Metrics,
    group: &mut Vec<Job>,
    hold: bool,
) -> Vec<Job> {
    let mut held = Vec::new();
    let now = Instant::now();
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
    for (i, mut job) in group.drain(..).enumerate() {
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
                    Stored::Early { .. } => {
                        let since = *job.held_since.get_or_insert(now);
                        if hold && now.duration_since(since) < HOLD_EARLY && held.len() < MAX_HELD {
                            held.push(job);
                            continue;
                        }
                    }
                }
                Ok(v)
            }
        };
        // The requester may have gone (client disconnected); the record
        // stays stored and a retry will be a duplicate.
        let _ = job.reply.send(answer);
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::local::LocalBus;
    use crate::bus::log::LogConfig;
    use logmon_protocol::wire::Limits;

    fn job(
        start: u64,
        end: u64,
        after: Option<u64>,
    ) -> (Job, oneshot::Receiver<Result<Stored, WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            body: Bytes::from(vec![1u8; 32]),
            stream: StreamKey {
                agent_id: "a".into(),
                fingerprint: 7,
            },
            start,
            end,
            after,
            held_since: None,
            events: 1,
            reply,
        };
        (job, answer)
    }

    /// The batch behind another arrives first: it is held, not refused, and
    /// stored right after its predecessor; one whose predecessor never comes
    /// is answered early once the hold is over.
    #[test]
    fn an_early_batch_is_held_until_its_predecessor_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            fsync: false,
            ..LogConfig::new(dir.path())
        };
        let (bus, ..) = LocalBus::open(config, Limits::default()).unwrap();
        bus.declare(&["engine"]).unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(bus);
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel(16);
        let writer = {
            let bus = Arc::clone(&bus);
            let metrics = Arc::clone(&metrics);
            std::thread::spawn(move || run_writer(bus, metrics, rx))
        };
        let (second, second_answer) = job(100, 200, Some(100));
        tx.blocking_send(second).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (first, first_answer) = job(0, 100, None);
        tx.blocking_send(first).unwrap();
        assert_eq!(
            first_answer.blocking_recv().unwrap().unwrap(),
            Stored::New { offset: 0, gap: 0 }
        );
        assert_eq!(
            second_answer.blocking_recv().unwrap().unwrap(),
            Stored::New { offset: 1, gap: 0 },
            "held, then stored after its predecessor, not refused"
        );

        let started = Instant::now();
        let (orphan, orphan_answer) = job(300, 400, Some(300));
        tx.blocking_send(orphan).unwrap();
        assert_eq!(
            orphan_answer.blocking_recv().unwrap().unwrap(),
            Stored::Early { stored: 200 }
        );
        assert!(
            started.elapsed() >= HOLD_EARLY,
            "answered only after the hold"
        );
        drop(tx);
        writer.join().unwrap();
        assert_eq!(
            bus.high_water(&StreamKey {
                agent_id: "a".into(),
                fingerprint: 7
            }),
            Some(200)
        );
    }
}
