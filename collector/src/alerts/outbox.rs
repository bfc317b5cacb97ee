//! The alert outbox: every transition the engine produced, durable, in the
//! order it happened, each once. Whatever delivers transitions (the InfluxDB
//! writer, notifiers) reads the outbox as a consumer with its own committed
//! offset, so a target that is down receives everything, in order, once it is
//! back, and a crash of the collector neither loses nor repeats a delivery
//! beyond the consumer's own uncommitted tail.
//!
//! The outbox is a segment log of its own (the same format as the event bus),
//! one JSON [`Transition`] per record.
//!
//! # Replays never notify twice
//!
//! An engine snapshot records the outbox length at the time it was taken.
//! After a crash the engine restores the snapshot and replays the bus from the
//! snapshot's offset, which produces again the transitions it had produced
//! between the snapshot and the crash; those are already in the outbox, after
//! the recorded length. [`OutboxWriter`] loads their identities (rule, key,
//! state, event time) and drops each regenerated transition that matches one,
//! so every transition enters the outbox once.

use crate::bus::{BusError, ConsumerLag, LogConfig, SegmentLog};
use crate::rules::{AlertState, Transition};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A transition's identity: rule instance, key, state, event time.
pub type TransitionId = (String, String, AlertState, i64);

fn id(t: &Transition) -> TransitionId {
    (t.rule.clone(), t.key.clone(), t.state, t.at)
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("alert outbox: {0}")]
    Log(#[from] BusError),
    #[error("alert outbox record {offset} is not a transition: {reason}")]
    Corrupt { offset: u64, reason: String },
}

/// A shared handle on the outbox log.
#[derive(Debug, Clone)]
pub struct Outbox {
    log: Arc<Mutex<SegmentLog>>,
}

impl Outbox {
    /// Open (or create) the outbox in `dir`.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let (log, recovery) = SegmentLog::open(LogConfig::new(dir))?;
        if let Some(torn) = &recovery.torn {
            tracing::warn!(
                segment = %torn.segment.display(),
                bytes = torn.bytes,
                damage = %torn.damage,
                "alert outbox recovery cut a torn tail"
            );
        }
        Ok(Outbox {
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SegmentLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test hook: the next `n` writes fail half-way, as on a full disk.
    #[cfg(test)]
    pub(crate) fn fail_next_writes(&self, n: u32) {
        self.lock().fail_next_writes(n);
    }

    /// Offset the next transition will get.
    pub fn next_offset(&self) -> u64 {
        self.lock().next_offset()
    }

    /// Append transitions durably (fsync) in order.
    pub fn append(&self, transitions: &[Transition]) -> Result<(), OutboxError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let bodies: Vec<Vec<u8>> = transitions
            .iter()
            .map(|t| serde_json::to_vec(t).expect("a transition serializes"))
            .collect();
        let records: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        self.lock().append(&records)?;
        Ok(())
    }

    /// Up to `max` transitions from offset `from`, with their offsets.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, Transition)>, OutboxError> {
        let records = self.lock().read(from, max, 16 << 20)?;
        records
            .into_iter()
            .map(|(offset, body)| {
                serde_json::from_slice(&body)
                    .map(|t| (offset, t))
                    .map_err(|e| OutboxError::Corrupt {
                        offset,
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    /// Register a consumer; its committed offset.
    pub fn register(&self, consumer: &str) -> Result<u64, OutboxError> {
        Ok(self.lock().register(consumer)?)
    }

    /// Registers every consumer of `configured` at once and returns the
    /// registered ones it does not name (see [`SegmentLog::declare`]).
    pub fn declare(&self, configured: &[&str]) -> Result<Vec<ConsumerLag>, OutboxError> {
        Ok(self.lock().declare(configured)?)
    }

    /// The committed offset of a declared consumer (see
    /// [`crate::bus::EventBus::position`]).
    pub fn position(&self, consumer: &str) -> Result<u64, OutboxError> {
        self.lock()
            .committed(consumer)
            .ok_or_else(|| BusError::UnknownConsumer(consumer.to_owned()).into())
    }

    /// Every registered consumer and how far behind it is.
    pub fn consumers(&self) -> Vec<ConsumerLag> {
        self.lock().consumers()
    }

    /// Commit a consumer's offset: everything before it is delivered.
    pub fn commit(&self, consumer: &str, offset: u64) -> Result<(), OutboxError> {
        Ok(self.lock().commit(consumer, offset)?)
    }

    /// Delete segments every consumer has passed.
    pub fn gc(&self) -> Result<usize, OutboxError> {
        Ok(self.lock().gc()?)
    }
}

/// How the engine's outbox appends fare, shared with `/health` and
/// `/metrics` (the engine thread waits inside a failing append).
#[derive(Debug, Default)]
pub struct AppendStatus {
    /// Appends that failed (each retry counts).
    pub failures: AtomicU64,
    /// Since when (unix ms) and why appends fail, while they do.
    pub problem: Mutex<Option<(i64, String)>>,
}

/// First wait before a failed append is tried again; it doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The engine's side of the outbox: appends new transitions and drops those a
/// replay produces again (see the module documentation).
#[derive(Debug)]
pub struct OutboxWriter {
    outbox: Outbox,
    /// Identities already in the outbox after the restored snapshot, in order.
    already: VecDeque<TransitionId>,
    /// Regenerated transitions dropped so far.
    pub replayed: u64,
    status: Arc<AppendStatus>,
    /// Ends the retries of a failing append (shutdown).
    stop: Option<CancellationToken>,
}

impl OutboxWriter {
    /// A writer whose engine state corresponds to outbox offset `from`
    /// (the snapshot's; 0 for a fresh engine on an empty outbox).
    pub fn resume(outbox: Outbox, from: u64) -> Result<OutboxWriter, OutboxError> {
        let mut already = VecDeque::new();
        let mut at = from;
        loop {
            let batch = outbox.read(at, 1024)?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            already.extend(batch.iter().map(|(_, t)| id(t)));
            at = last + 1;
        }
        Ok(OutboxWriter {
            outbox,
            already,
            replayed: 0,
            status: Arc::default(),
            stop: None,
        })
    }

    /// Reports append failures to `status` and gives up retrying a failing
    /// append when `stop` is cancelled.
    pub fn watch(&mut self, status: Arc<AppendStatus>, stop: CancellationToken) {
        self.status = status;
        self.stop = Some(stop);
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Keep the transitions not yet in the outbox, append them, and return
    /// them (in order) for the console.
    pub fn offer(&mut self, transitions: &mut Vec<Transition>) -> Result<(), OutboxError> {
        transitions.retain(|t| {
            let key = id(t);
            match self.already.iter().position(|a| *a == key) {
                Some(i) => {
                    // Anything logged before it that the replay did not
                    // produce again stays logged; it is not expected any more.
                    self.already.drain(..=i);
                    self.replayed += 1;
                    false
                }
                None => true,
            }
        });
        // A local I/O error (a full disk) is waited out: the log undid the
        // failed write, the engine waits here (its bus position and snapshot
        // stay where they were), and the append is tried again with backoff
        // until it works or the collector shuts down.
        let mut wait = FIRST_RETRY;
        loop {
            let e = match self.outbox.append(transitions) {
                Ok(()) => {
                    let mut problem = self
                        .status
                        .problem
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if problem.take().is_some() {
                        tracing::info!("alert outbox appends work again");
                    }
                    return Ok(());
                }
                Err(e @ OutboxError::Log(BusError::Poisoned)) => return Err(e),
                Err(e) => e,
            };
            self.status.failures.fetch_add(1, Ordering::Relaxed);
            {
                let mut problem = self
                    .status
                    .problem
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if problem.is_none() {
                    tracing::warn!(error = %e, "alert outbox append failed; the engine waits and tries again");
                }
                let since = problem.as_ref().map_or_else(crate::clock::now_ms, |p| p.0);
                *problem = Some((since, e.to_string()));
            }
            let Some(stop) = &self.stop else {
                return Err(e);
            };
            if stop.is_cancelled() {
                return Err(e);
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(MAX_RETRY);
        }
    }

    /// Whether transitions from before the crash are still expected.
    pub fn replaying(&self) -> bool {
        !self.already.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rule: &str, state: AlertState, at: i64) -> Transition {
        Transition {
            rule: rule.into(),
            key: String::new(),
            state,
            at,
            value: 12.5,
            message: format!("{rule} at {at}"),
        }
    }

    #[test]
    fn a_failing_append_is_retried_until_it_works_and_reported_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut w = OutboxWriter::resume(outbox.clone(), 0).unwrap();
        let status = Arc::new(AppendStatus::default());
        w.watch(Arc::clone(&status), CancellationToken::new());
        w.offer(&mut vec![t("a", AlertState::Firing, 10)]).unwrap();
        // Three writes fail (a full disk), then space is back.
        outbox.fail_next_writes(3);
        let mut next = vec![
            t("a", AlertState::Resolved, 20),
            t("b", AlertState::Firing, 21),
        ];
        w.offer(&mut next).unwrap();
        assert_eq!(next.len(), 2);
        assert_eq!(status.failures.load(Ordering::Relaxed), 3);
        assert!(status.problem.lock().unwrap().is_none());
        let stored: Vec<Transition> = outbox
            .read(0, 100)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            stored,
            vec![
                t("a", AlertState::Firing, 10),
                t("a", AlertState::Resolved, 20),
                t("b", AlertState::Firing, 21)
            ]
        );
    }

    #[test]
    fn a_failing_append_gives_up_at_shutdown_with_the_reason_reported() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut w = OutboxWriter::resume(outbox.clone(), 0).unwrap();
        let status = Arc::new(AppendStatus::default());
        let stop = CancellationToken::new();
        w.watch(Arc::clone(&status), stop.clone());
        outbox.fail_next_writes(u32::MAX);
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                stop.cancel();
            })
        };
        let e = w
            .offer(&mut vec![t("a", AlertState::Firing, 10)])
            .unwrap_err();
        stopper.join().unwrap();
        assert!(e.to_string().contains("No space left on device"), "{e}");
        assert!(status.failures.load(Ordering::Relaxed) >= 2);
        let problem = status.problem.lock().unwrap().clone().unwrap();
        assert!(problem.1.contains("No space left on device"), "{problem:?}");
        assert_eq!(outbox.next_offset(), 0);
    }

    #[test]
    fn a_replay_appends_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut w = OutboxWriter::resume(outbox.clone(), 0).unwrap();
        let mut first = vec![t("a", AlertState::Firing, 10)];
        w.offer(&mut first).unwrap();
        assert_eq!(first.len(), 1);
        let snapshot_at = outbox.next_offset();
        let mut after = vec![
            t("a", AlertState::Resolved, 20),
            t("b", AlertState::Firing, 21),
        ];
        w.offer(&mut after).unwrap();
        // Crash; the engine restarts from the snapshot and replays.
        drop(w);
        let mut w = OutboxWriter::resume(outbox.clone(), snapshot_at).unwrap();
        assert!(w.replaying());
        let mut again = vec![t("a", AlertState::Resolved, 20)];
        w.offer(&mut again).unwrap();
        assert!(again.is_empty());
        let mut mixed = vec![
            t("b", AlertState::Firing, 21),
            t("b", AlertState::Resolved, 30),
        ];
        w.offer(&mut mixed).unwrap();
        assert_eq!(mixed, vec![t("b", AlertState::Resolved, 30)]);
        assert!(!w.replaying());
        assert_eq!(w.replayed, 2);
        let all: Vec<Transition> = outbox
            .read(0, 100)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            all,
            vec![
                t("a", AlertState::Firing, 10),
                t("a", AlertState::Resolved, 20),
                t("b", AlertState::Firing, 21),
                t("b", AlertState::Resolved, 30),
            ]
        );
    }

    #[test]
    fn consumers_resume_from_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.register("influx").unwrap(), 0);
        outbox
            .append(&[
                t("a", AlertState::Firing, 1),
                t("a", AlertState::Resolved, 2),
            ])
            .unwrap();
        outbox.commit("influx", 1).unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        let from = outbox.register("influx").unwrap();
        assert_eq!(from, 1);
        let rest = outbox.read(from, 10).unwrap();
        assert_eq!(rest, vec![(1, t("a", AlertState::Resolved, 2))]);
    }
}
