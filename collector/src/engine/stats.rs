//! Traffic statistics over fixed intervals of event time (10 s by default),
//! aligned to multiples of the interval, built from closed seconds.

use crate::engine::{SecondStats, StatusClasses};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct SectionTotals {
    hits: u64,
    bytes: u64,
    server_errors: u64,
}

/// The running totals of one interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntervalStats {
    start: i64,
    len: i64,
    seconds: i64,
    hits: u64,
    bytes: u64,
    statuses: StatusClasses,
    sections: HashMap<Box<str>, SectionTotals>,
    methods: HashMap<Box<str>, u64>,
    clients: HashMap<Box<str>, u64>,
}

/// One section in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionLine {
    pub section: String,
    pub hits: u64,
    /// Share of the interval's hits, 0..=1.
    pub share: f64,
    pub bytes: u64,
    /// Share of the section's hits that were 5xx, 0..=1.
    pub error_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub hits: u64,
}

/// The statistics block printed every interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// Unix seconds, inclusive.
    pub start: i64,
    /// Unix seconds, exclusive.
    pub end: i64,
    pub hits: u64,
    /// Hits per second over the seconds of the interval that closed.
    pub rate: f64,
    pub bytes: u64,
    pub statuses: StatusClasses,
    pub sections: Vec<SectionLine>,
    pub methods: Vec<Count>,
    pub clients: Vec<Count>,
}

fn top(map: &HashMap<Box<str>, u64>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .iter()
        .map(|(k, &hits)| Count {
            name: k.to_string(),
            hits,
        })
        .collect();
    v.sort_unstable_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

impl IntervalStats {
    pub fn new(start: i64, len: i64) -> IntervalStats {
        IntervalStats {
            start,
            len,
            seconds: 0,
            hits: 0,
            bytes: 0,
            statuses: StatusClasses::default(),
            sections: HashMap::new(),
            methods: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    pub fn absorb(&mut self, s: &SecondStats) {
        self.seconds += 1;
        self.hits += s.hits;
        self.bytes += s.bytes;
        self.statuses.add(&s.statuses);
        for (name, agg) in &s.sections {
            let t = match self.sections.get_mut(name) {
                Some(t) => t,
                None => self.sections.entry(name.clone()).or_default(),
            };
            t.hits += agg.hits;
            t.bytes += agg.bytes;
            t.server_errors += agg.statuses.server_error;
        }
        for (map, from) in [
            (&mut self.methods, &s.methods),
            (&mut self.clients, &s.clients),
        ] {
            for (k, &n) in from {
                match map.get_mut(k) {
                    Some(v) => *v += n,
                    None => {
                        map.insert(k.clone(), n);
                    }
                }
            }
        }
    }

    /// The report, with the `top` busiest sections and clients.
    pub fn report(&self, top_n: usize) -> StatsReport {
        let mut sections: Vec<SectionLine> = self
            .sections
            .iter()
            .map(|(name, t)| SectionLine {
                section: name.to_string(),
                hits: t.hits,
                share: if self.hits == 0 {
                    0.0
                } else {
                    t.hits as f64 / self.hits as f64
                },
                bytes: t.bytes,
                error_rate: if t.hits == 0 {
                    0.0
                } else {
                    t.server_errors as f64 / t.hits as f64
                },
            })
            .collect();
        sections
            .sort_unstable_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.section.cmp(&b.section)));
        sections.truncate(top_n);
        StatsReport {
            start: self.start,
            end: self.start + self.len,
            hits: self.hits,
            rate: self.hits as f64 / self.seconds.max(1) as f64,
            bytes: self.bytes,
            statuses: self.statuses,
            sections,
            methods: top(&self.methods, usize::MAX),
            clients: top(&self.clients, top_n),
        }
    }
}

/// Cuts the stream of closed seconds into aligned intervals.
#[derive(Debug)]
pub struct StatsClock {
    every: i64,
    top: usize,
    current: Option<IntervalStats>,
}

impl StatsClock {
    pub fn new(every: u32, top: usize) -> StatsClock {
        StatsClock {
            every: i64::from(every.max(1)),
            top,
            current: None,
        }
    }

    /// The interval length, seconds.
    pub fn every(&self) -> i64 {
        self.every
    }

    /// Absorb a closed second; returns the reports it completes (the previous
    /// interval's when this second starts a new one, this interval's when it
    /// is its last second).
    pub fn second(&mut self, s: &SecondStats, mut emit: impl FnMut(StatsReport)) {
        let start = s.time - s.time.rem_euclid(self.every);
        if let Some(current) = &self.current
            && current.start() != start
        {
            emit(current.report(self.top));
            self.current = None;
        }
        let current = self
            .current
            .get_or_insert_with(|| IntervalStats::new(start, self.every));
        current.absorb(s);
        if s.time == start + self.every - 1 {
            emit(current.report(self.top));
            self.current = None;
        }
    }

    /// The interval in progress, for snapshots.
    pub fn save(&self) -> Option<IntervalStats> {
        self.current.clone()
    }

    /// Continue an interval saved by [`Self::save`].
    pub fn restore(&mut self, current: Option<IntervalStats>) {
        self.current = current;
    }

    /// End of input: report the interval in progress, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(StatsReport)) {
        if let Some(current) = self.current.take() {
            emit(current.report(self.top));
        }
    }
}
