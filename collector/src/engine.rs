//! The event-time engine: per-second aggregates closed in order by a watermark.
//!
//! Invariants: seconds close strictly in ascending order, each exactly once,
//! silent seconds included; an event for a second that already closed is
//! counted as late and never re-opens it; only seconds between the next one to
//! close and the newest event are held, so memory does not grow with input
//! length.

use logmon_protocol::Event;
use std::collections::{HashMap, VecDeque};

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusClasses {
    pub informational: u64,
    pub success: u64,
    pub redirection: u64,
    pub client_error: u64,
    pub server_error: u64,
    pub other: u64,
}

impl StatusClasses {
    pub fn count(&mut self, status: u16, n: u64) {
        match status {
            100..=199 => self.informational += n,
            200..=299 => self.success += n,
            300..=399 => self.redirection += n,
            400..=499 => self.client_error += n,
            500..=599 => self.server_error += n,
            _ => self.other += n,
        }
    }

    pub fn add(&mut self, o: &StatusClasses) {
        self.informational += o.informational;
        self.success += o.success;
        self.redirection += o.redirection;
        self.client_error += o.client_error;
        self.server_error += o.server_error;
        self.other += o.other;
    }
}

/// One section's traffic within a second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionAgg {
    pub hits: u64,
    pub bytes: u64,
    pub statuses: StatusClasses,
}

/// The aggregate of one second of event time.
#[derive(Debug, Clone, Default)]
pub struct SecondStats {
    /// Unix seconds (UTC).
    pub time: i64,
    pub hits: u64,
    pub bytes: u64,
    pub statuses: StatusClasses,
    pub sections: HashMap<Box<str>, SectionAgg>,
    pub status_codes: HashMap<u16, u64>,
    pub methods: HashMap<Box<str>, u64>,
    pub clients: HashMap<Box<str>, u64>,
}

fn bump(map: &mut HashMap<Box<str>, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.into(), n);
        }
    }
}

impl SecondStats {
    fn reset(&mut self, time: i64) {
        self.time = time;
        self.hits = 0;
        self.bytes = 0;
        self.statuses = StatusClasses::default();
        self.sections.clear();
        self.status_codes.clear();
        self.methods.clear();
        self.clients.clear();
    }

    /// Count one request.
    pub fn add(&mut self, event: &Event) {
        self.hits += 1;
        self.bytes += event.bytes;
        self.statuses.count(event.status, 1);
        let section = event.section();
        let agg = match self.sections.get_mut(section) {
            Some(agg) => agg,
            None => self.sections.entry(section.into()).or_default(),
        };
        agg.hits += 1;
        agg.bytes += event.bytes;
        agg.statuses.count(event.status, 1);
        *self.status_codes.entry(event.status).or_default() += 1;
        bump(&mut self.methods, &event.method, 1);
        bump(&mut self.clients, &event.client, 1);
    }
}

/// What became of an observed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in an open second.
    Accepted,
    /// Its second had already closed: counted as late, not aggregated.
    Late,
}

/// Engine counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineCounters {
    pub accepted: u64,
    pub late: u64,
    pub seconds_closed: u64,
}

/// Aggregates events by second and closes seconds in order as the watermark
/// (newest event time minus the allowed lateness) passes them.
#[derive(Debug)]
pub struct EventTimeEngine {
    lateness: i64,
    /// Open seconds `base ..= base + open.len() - 1`; `base` is the next
    /// second to close once any event arrived. Before the first close it is
    /// the oldest second seen, which may still move back within the lateness.
    open: VecDeque<SecondStats>,
    base: Option<i64>,
    newest: Option<i64>,
    closing_started: bool,
    spare: Vec<SecondStats>,
    counters: EngineCounters,
}

impl EventTimeEngine {
    /// `lateness`: seconds an event may trail the newest one and still count.
    pub fn new(lateness: u32) -> EventTimeEngine {
        EventTimeEngine {
            lateness: i64::from(lateness),
            open: VecDeque::new(),
            base: None,
            newest: None,
            closing_started: false,
            spare: Vec::new(),
            counters: EngineCounters::default(),
        }
    }

    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// The next second to close, once known.
    pub fn next_to_close(&self) -> Option<i64> {
        self.base
    }

    /// The watermark: every second before it is closed or about to be.
    pub fn watermark(&self) -> Option<i64> {
        self.newest.map(|n| n - self.lateness)
    }

    /// Add an event. Seconds the event pushes past the watermark are closed
    /// first and handed to `closed`, in order.
    pub fn observe(&mut self, event: &Event, closed: &mut impl FnMut(&SecondStats)) -> Observed {
        let second = event.second();
        let (Some(base), Some(newest)) = (self.base, self.newest) else {
            self.base = Some(second);
            self.newest = Some(second);
            self.slot(second).add(event);
            self.counters.accepted += 1;
            return Observed::Accepted;
        };
        if second < base {
            // Before anything closed, an event within the lateness of the
            // newest one opens earlier seconds; otherwise it is late.
            if self.closing_started || second < newest - self.lateness {
                self.counters.late += 1;
                return Observed::Late;
            }
            for time in (second..base).rev() {
                let mut s = self.spare.pop().unwrap_or_default();
                s.reset(time);
                self.open.push_front(s);
            }
            self.base = Some(second);
        } else if second > newest {
            self.newest = Some(second);
            self.close_before(second - self.lateness, closed);
        }
        self.slot(second).add(event);
        self.counters.accepted += 1;
        Observed::Accepted
    }

    /// Close every second before `watermark` (exclusive), in order. Used by
    /// live mode when the wall clock drives time, and by [`Self::observe`].
    pub fn close_before(&mut self, watermark: i64, closed: &mut impl FnMut(&SecondStats)) {
        let Some(mut base) = self.base else { return };
        if base < watermark {
            self.closing_started = true;
        }
        while base < watermark {
            let mut stats = match self.open.pop_front() {
                Some(s) => s,
                None => {
                    let mut s = self.spare.pop().unwrap_or_default();
                    s.reset(base);
                    s
                }
            };
            debug_assert_eq!(stats.time, base);
            closed(&stats);
            stats.reset(0);
            self.spare.push(stats);
            self.counters.seconds_closed += 1;
            base += 1;
            if self.open.is_empty() && base < watermark {
                // A long silence: the rest of the run is empty seconds.
                self.spare.truncate(4);
            }
        }
        self.base = Some(base);
    }

    /// End of input: close everything up to and including the newest second.
    pub fn finish(&mut self, closed: &mut impl FnMut(&SecondStats)) {
        if let Some(newest) = self.newest {
            self.close_before(newest + 1, closed);
        }
    }

    /// The open slot for `second` (≥ base), creating it and any before it.
    fn slot(&mut self, second: i64) -> &mut SecondStats {
        let base = self.base.expect("slot after the first event");
        let index = usize::try_from(second - base).expect("second >= base");
        while self.open.len() <= index {
            let time = base + self.open.len() as i64;
            let mut s = self.spare.pop().unwrap_or_default();
            s.reset(time);
            self.open.push_back(s);
        }
        &mut self.open[index]
    }
}
