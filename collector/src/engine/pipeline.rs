//! What happens to each closed second, in replay and live alike: the rules
//! evaluate it, and the observer (the console printer; live, the dashboard
//! too) hears of the second, of the transitions and quarantines it caused,
//! and of the statistics block it completes. An observer's error is kept
//! (the first one) and the others are still told.
//!
//! **Long silences** ([`QUIET_AFTER`] seconds or more with no event: a
//! far-future timestamp, a night without traffic, a restart after days, a
//! clock jump) cost what happens in them, not their length. The silent
//! seconds are evaluated one by one only until every rule is steady (it
//! answered the same and saved the same state for two silent seconds in a
//! row, with nothing pending: see [`RuleSet::evaluate_silent`]); from there
//! to the silence's end every evaluation would repeat, so none is made. The
//! transitions are exactly those of evaluating every second. The statistics
//! blocks wholly inside the silence are told as one quiet run
//! ([`Observer::quiet`]: "no traffic from A to B") instead of one empty block
//! each. Shorter silences are evaluated and reported second by second.

use super::observer::{Observer, Summary};
use super::seconds::{Closer, SecondStats};
use super::stats::StatsClock;
use crate::alerts::outbox::OutboxWriter;
use crate::rules::{Quarantine, RuleSet, Transition};

/// Silences at least this long (seconds) are passed over once the rules are
/// steady, and their empty statistics blocks told as one quiet run.
pub const QUIET_AFTER: i64 = 3600;

/// What happens to each closed second: rules, then statistics.
pub struct Pipeline<O: Observer> {
    pub rules: RuleSet,
    pub clock: StatsClock,
    pub observer: O,
    transitions: Vec<Transition>,
    quarantined: Vec<Quarantine>,
    pub summary: Summary,
    /// The first output error; the caller decides when to stop on it.
    pub error: Option<std::io::Error>,
    /// The durable alert outbox (live mode): transitions enter it once, and
    /// only those it takes as new reach the observer.
    pub outbox: Option<OutboxWriter>,
}

impl<O: Observer> Pipeline<O> {
    pub fn new(rules: RuleSet, clock: StatsClock, observer: O) -> Self {
        Pipeline {
            rules,
            clock,
            observer,
            transitions: Vec::new(),
            quarantined: Vec::new(),
            summary: Summary::default(),
            error: None,
            outbox: None,
        }
    }

    /// Report the statistics interval in progress (end of input or shutdown).
    pub fn finish_stats(&mut self) -> std::io::Result<()> {
        let observer = &mut self.observer;
        let mut result = Ok(());
        self.clock.finish(|r| result = observer.stats(&r));
        result
    }

    /// A closed second: rules first, then statistics.
    pub fn on_second(&mut self, s: &SecondStats) {
        self.summary.seconds += 1;
        let result = self.observer.second(s);
        self.rules
            .evaluate(s, &mut self.transitions, &mut self.quarantined);
        self.told(s, result);
    }

    /// The seconds `from..to`, all silent (see the module's notes on long
    /// silences).
    pub fn on_silence(&mut self, from: i64, to: i64) {
        let every = self.clock.every();
        // The first block boundary at or after `from`, the last at or
        // before `to`: the blocks between are wholly silent.
        let quiet_from = from + (every - from.rem_euclid(every)) % every;
        let quiet_to = to - to.rem_euclid(every);
        if to - from < QUIET_AFTER || quiet_to - quiet_from < every {
            let mut empty = SecondStats::silent(from);
            for time in from..to {
                empty.time = time;
                self.on_second(&empty);
            }
            return;
        }
        let mut steady = false;
        // The block in progress completes as usual.
        for time in from..quiet_from {
            self.silent_second(time, &mut steady, true);
        }
        // Inside the quiet blocks, the rules until they are steady.
        let mut time = quiet_from;
        while time < quiet_to && !steady {
            self.silent_second(time, &mut steady, false);
            time += 1;
        }
        self.summary.seconds += (quiet_to - time) as u64;
        let mut result = self.observer.silence(time, quiet_to);
        result = result.and(self.observer.quiet(quiet_from, quiet_to));
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
        // The block `to` falls in starts silent.
        for time in quiet_to..to {
            self.silent_second(time, &mut steady, true);
        }
    }

    /// One silent second of a long silence: evaluated while the rules are
    /// not yet steady, counted into the statistics when `stats`.
    fn silent_second(&mut self, time: i64, steady: &mut bool, stats: bool) {
        self.summary.seconds += 1;
        let s = SecondStats::silent(time);
        let result = self.observer.second(&s);
        if !*steady {
            *steady =
                self.rules
                    .evaluate_silent(time, &mut self.transitions, &mut self.quarantined);
        }
        if stats {
            self.told(&s, result);
        } else {
            let result = self.tell_rules(result);
            if let Err(e) = result {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The rules' transitions and quarantines of second `s` to the outbox
    /// and the observer, then `s` to the statistics.
    fn told(&mut self, s: &SecondStats, result: std::io::Result<()>) {
        let mut result = self.tell_rules(result);
        let observer = &mut self.observer;
        self.clock.second(s, |r| {
            let told = observer.stats(&r);
            result = std::mem::replace(&mut result, Ok(())).and(told);
        });
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    fn tell_rules(&mut self, mut result: std::io::Result<()>) -> std::io::Result<()> {
        if let Some(outbox) = &mut self.outbox
            && let Err(e) = outbox.offer(&mut self.transitions)
        {
            self.transitions.clear();
            result = result.and(Err(std::io::Error::other(e)));
        }
        for q in self.quarantined.drain(..) {
            self.summary.quarantined += 1;
            let told = self.observer.quarantine(&q);
            result = result.and(told);
        }
        for t in self.transitions.drain(..) {
            self.summary.transitions += 1;
            let told = self.observer.transition(&t);
            result = result.and(told);
        }
        result
    }
}

impl<O: Observer> Closer for Pipeline<O> {
    fn second(&mut self, second: &SecondStats) {
        self.on_second(second);
    }

    fn silence(&mut self, from: i64, to: i64) {
        self.on_silence(from, to);
    }
}

impl<O: Observer> std::fmt::Debug for Pipeline<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("rules", &self.rules)
            .field("summary", &self.summary)
            .finish()
    }
}
