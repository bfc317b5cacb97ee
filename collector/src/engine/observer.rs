//! What the engine tells the outputs: each closed second, each alert
//! transition and quarantine, each statistics block, each bus record the live
//! engine read. The console printer and the dashboard implement
//! [`Observer`]; the engine knows only this trait, so it imports no output.
//!
//! Calls come on the engine's thread, in event-time order: a second's
//! `second` before the transitions it caused, those before the block it
//! completes. An observer must not block for long: the engine waits.

use super::seconds::SecondStats;
use super::stats::StatsReport;
use crate::rules::{Quarantine, Transition};
use std::io;

/// A bus record the live engine read, as the dashboard's agents view needs it.
#[derive(Debug, Clone, Copy)]
pub struct BatchSeen<'a> {
    pub agent: &'a str,
    pub host: &'a str,
    pub fingerprint: u64,
    pub path: &'a str,
    /// The agent's clock when it cut the batch (unix nanoseconds).
    pub sent_at: i64,
    pub caught_up: bool,
    pub finished: bool,
    /// Events the engine counted (on time or late).
    pub events: u64,
    /// The newest of their seconds.
    pub newest: Option<i64>,
}

/// End-of-run counters (`replay`'s closing line).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub lines: u64,
    pub events: u64,
    pub skipped: u64,
    pub malformed: u64,
    pub late: u64,
    pub seconds: u64,
    pub transitions: u64,
    pub quarantined: u64,
}

/// An output of the engine. Every method has a default that ignores the
/// call; an error is the output's (a closed stdout), which the engine keeps
/// and reports, evaluating on.
pub trait Observer {
    /// A second closed, before the rules evaluate it.
    fn second(&mut self, _second: &SecondStats) -> io::Result<()> {
        Ok(())
    }

    /// The seconds `from..to` closed silent without being evaluated one by
    /// one (see [`crate::engine::pipeline`]). By default each is handed to
    /// [`Observer::second`].
    fn silence(&mut self, from: i64, to: i64) -> io::Result<()> {
        let mut empty = SecondStats::silent(from);
        for time in from..to {
            empty.time = time;
            self.second(&empty)?;
        }
        Ok(())
    }

    /// The statistics blocks `from..to` had no traffic; told instead of
    /// each block when the silence is long (see
    /// [`crate::engine::pipeline::QUIET_AFTER`]).
    fn quiet(&mut self, _from: i64, _to: i64) -> io::Result<()> {
        Ok(())
    }

    /// A transition the rules produced (and, live, the outbox accepted).
    fn transition(&mut self, _transition: &Transition) -> io::Result<()> {
        Ok(())
    }

    /// A rule instance quarantined.
    fn quarantine(&mut self, _quarantine: &Quarantine) -> io::Result<()> {
        Ok(())
    }

    /// A statistics block completed.
    fn stats(&mut self, _report: &StatsReport) -> io::Result<()> {
        Ok(())
    }

    /// A bus record the live engine read.
    fn batch(&mut self, _batch: &BatchSeen<'_>) {}

    /// The run ended.
    fn summary(&mut self, _summary: &Summary) -> io::Result<()> {
        Ok(())
    }

    /// Whatever is buffered goes out.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Two observers, told in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn second(&mut self, second: &SecondStats) -> io::Result<()> {
        let first = self.0.second(second);
        first.and(self.1.second(second))
    }

    fn silence(&mut self, from: i64, to: i64) -> io::Result<()> {
        let first = self.0.silence(from, to);
        first.and(self.1.silence(from, to))
    }

    fn quiet(&mut self, from: i64, to: i64) -> io::Result<()> {
        let first = self.0.quiet(from, to);
        first.and(self.1.quiet(from, to))
    }

    fn transition(&mut self, transition: &Transition) -> io::Result<()> {
        let first = self.0.transition(transition);
        first.and(self.1.transition(transition))
    }

    fn quarantine(&mut self, quarantine: &Quarantine) -> io::Result<()> {
        let first = self.0.quarantine(quarantine);
        first.and(self.1.quarantine(quarantine))
    }

    fn stats(&mut self, report: &StatsReport) -> io::Result<()> {
        let first = self.0.stats(report);
        first.and(self.1.stats(report))
    }

    fn batch(&mut self, batch: &BatchSeen<'_>) {
        self.0.batch(batch);
        self.1.batch(batch);
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        let first = self.0.summary(summary);
        first.and(self.1.summary(summary))
    }

    fn flush(&mut self) -> io::Result<()> {
        let first = self.0.flush();
        first.and(self.1.flush())
    }
}
