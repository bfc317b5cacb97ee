//! What happens to each closed second, in replay and live alike: the rules
//! evaluate it, their transitions and quarantines are printed, and it joins
//! the statistics interval, which is printed when complete. In `serve`, the
//! dashboard's hub gets the second, the new transitions and the blocks too.

use crate::engine::SecondStats;
use crate::output::{Printer, Summary};
use crate::rules::{Quarantine, RuleSet, Transition};
use crate::stats::StatsClock;
use std::io::Write;

/// What happens to each closed second: rules, then statistics.
pub struct Pipeline<W: Write> {
    pub rules: RuleSet,
    pub clock: StatsClock,
    pub printer: Printer<W>,
    transitions: Vec<Transition>,
    quarantined: Vec<Quarantine>,
    pub summary: Summary,
    /// The first output error; the caller decides when to stop on it.
    pub error: Option<std::io::Error>,
    /// The durable alert outbox (live mode): transitions enter it once, and
    /// only those it takes as new are printed.
    pub outbox: Option<crate::outbox::OutboxWriter>,
    /// The dashboard (live mode): every closed second, every transition the
    /// outbox took and every statistics block.
    pub dashboard: Option<std::sync::Arc<crate::dashboard::Hub>>,
}

impl<W: Write> Pipeline<W> {
    pub fn new(rules: RuleSet, clock: StatsClock, printer: Printer<W>) -> Self {
        Pipeline {
            rules,
            clock,
            printer,
            transitions: Vec::new(),
            quarantined: Vec::new(),
            summary: Summary::default(),
            error: None,
            outbox: None,
            dashboard: None,
        }
    }

    /// Report the statistics interval in progress (end of input or shutdown).
    pub fn finish_stats(&mut self) -> std::io::Result<()> {
        let printer = &mut self.printer;
        let mut result = Ok(());
        self.clock.finish(|r| result = printer.stats(&r));
        result
    }

    /// A closed second: rules first, then statistics.
    pub fn on_second(&mut self, s: &SecondStats) {
        self.summary.seconds += 1;
        if let Some(hub) = &self.dashboard {
            hub.second(s);
        }
        self.rules
            .evaluate(s, &mut self.transitions, &mut self.quarantined);
        let mut result = Ok(());
        if let Some(outbox) = &mut self.outbox
            && let Err(e) = outbox.offer(&mut self.transitions)
        {
            self.transitions.clear();
            result = Err(std::io::Error::other(e));
        }
        for q in self.quarantined.drain(..) {
            self.summary.quarantined += 1;
            result = result.and_then(|()| self.printer.quarantine(&q));
        }
        for t in self.transitions.drain(..) {
            self.summary.transitions += 1;
            if let Some(hub) = &self.dashboard {
                hub.transition(&t);
            }
            result = result.and_then(|()| self.printer.transition(&t));
        }
        let printer = &mut self.printer;
        let dashboard = self.dashboard.as_deref();
        self.clock.second(s, |r| {
            if let Some(hub) = dashboard {
                hub.stats(&r);
            }
            result = std::mem::replace(&mut result, Ok(())).and_then(|()| printer.stats(&r));
        });
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }
}

impl<W: Write> std::fmt::Debug for Pipeline<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("rules", &self.rules)
            .field("summary", &self.summary)
            .finish()
    }
}
