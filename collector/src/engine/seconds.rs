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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SectionAgg {
    pub hits: u64,
    pub bytes: u64,
    pub statuses: StatusClasses,
}

/// The aggregate of one second of event time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// The second `time` with no request.
    pub fn silent(time: i64) -> SecondStats {
        SecondStats {
            time,
            ..SecondStats::default()
        }
    }

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

    /// Count `agg.hits` requests to `section` at once (their hits, bytes and
    /// status classes go to the second's totals as well): what
    /// [`Self::add`] of each of them does to everything but the status
    /// codes, methods and clients, which [`Self::add_status`],
    /// [`Self::add_method`] and [`Self::add_client`] count. For callers that
    /// tally a second's requests themselves (a backtest, from the lake's
    /// columns).
    pub fn add_section(&mut self, section: &str, agg: &SectionAgg) {
        self.hits += agg.hits;
        self.bytes += agg.bytes;
        self.statuses.add(&agg.statuses);
        let to = match self.sections.get_mut(section) {
            Some(to) => to,
            None => self.sections.entry(section.into()).or_default(),
        };
        to.hits += agg.hits;
        to.bytes += agg.bytes;
        to.statuses.add(&agg.statuses);
    }

    /// `n` requests answered with `status` (see [`Self::add_section`]).
    pub fn add_status(&mut self, status: u16, n: u64) {
        *self.status_codes.entry(status).or_default() += n;
    }

    /// `n` requests with `method` (see [`Self::add_section`]).
    pub fn add_method(&mut self, method: &str, n: u64) {
        bump(&mut self.methods, method, n);
    }

    /// `n` requests from `client` (see [`Self::add_section`]).
    pub fn add_client(&mut self, client: &str, n: u64) {
        bump(&mut self.clients, client, n);
    }
}

/// Where closed seconds go, in order.
pub trait Closer {
    /// One closed second.
    fn second(&mut self, second: &SecondStats);

    /// The seconds `from..to`, in which no event fell. By default each is
    /// handed to [`Closer::second`].
    fn silence(&mut self, from: i64, to: i64) {
        let mut empty = SecondStats::silent(from);
        for time in from..to {
            empty.time = time;
            self.second(&empty);
        }
    }
}

impl<F: FnMut(&SecondStats)> Closer for F {
    fn second(&mut self, second: &SecondStats) {
        self(second)
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineCounters {
    pub accepted: u64,
    pub late: u64,
    pub seconds_closed: u64,
}

/// The engine's state, for snapshots.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedEngine {
    pub lateness: i64,
    pub open: Vec<SecondStats>,
    pub base: Option<i64>,
    pub newest: Option<i64>,
    pub closing_started: bool,
    pub counters: EngineCounters,
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

    /// The state to snapshot: open seconds, clock and counters.
    pub fn save(&self) -> SavedEngine {
        SavedEngine {
            lateness: self.lateness,
            open: self.open.iter().cloned().collect(),
            base: self.base,
            newest: self.newest,
            closing_started: self.closing_started,
            counters: self.counters,
        }
    }

    /// An engine in the state [`Self::save`] captured.
    pub fn restore(saved: SavedEngine) -> EventTimeEngine {
        EventTimeEngine {
            lateness: saved.lateness,
            open: saved.open.into(),
            base: saved.base,
            newest: saved.newest,
            closing_started: saved.closing_started,
            spare: Vec::new(),
            counters: saved.counters,
        }
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
    pub fn observe(&mut self, event: &Event, closed: &mut impl Closer) -> Observed {
        if !self.advance(event.second(), closed) {
            self.counters.late += 1;
            return Observed::Late;
        }
        self.insert(event)
    }

    /// Add the `events` events of one second at once, as [`Self::observe`]
    /// of each of them in a row would: the first may close seconds, the
    /// others cannot (their second is then the newest), and either all of
    /// them are late or none is. `fill` adds them to the second's aggregate
    /// (with the `SecondStats::add_*` methods); when they are late it is not
    /// called. For input that comes a second at a time (a backtest over the
    /// lake's sorted files), so the engine's work is per second, not per
    /// event.
    pub fn observe_second(
        &mut self,
        second: i64,
        events: u64,
        closed: &mut impl Closer,
        fill: impl FnOnce(&mut SecondStats),
    ) -> Observed {
        if !(self.advance(second, closed) && self.admit(second)) {
            self.counters.late += events;
            return Observed::Late;
        }
        fill(self.slot(second));
        self.counters.accepted += events;
        Observed::Accepted
    }

    /// Event time reaching `second`: the seconds it pushes past the
    /// watermark close. False when `second` is older than the watermark
    /// (late even before anything closed); then nothing changes.
    fn advance(&mut self, second: i64, closed: &mut impl Closer) -> bool {
        if let (Some(base), Some(newest)) = (self.base, self.newest) {
            if second < base && second < newest - self.lateness {
                return false;
            }
            if second > newest {
                self.close_before(second - self.lateness, closed);
            }
        }
        true
    }

    /// Add an event without moving time: live mode, where an external
    /// watermark (per-stream, or the wall clock) decides when seconds close
    /// through [`Self::close_before`]. Late only if its second already closed.
    /// The caller bounds how far ahead of the watermark events may be, since
    /// every second up to the newest is held open.
    pub fn insert(&mut self, event: &Event) -> Observed {
        let second = event.second();
        if !self.admit(second) {
            self.counters.late += 1;
            return Observed::Late;
        }
        self.slot(second).add(event);
        self.counters.accepted += 1;
        Observed::Accepted
    }

    /// Opens `second` (and the seconds between it and the open ones) for
    /// events, and makes it the newest if it is. False when it has already
    /// closed; then nothing changes.
    fn admit(&mut self, second: i64) -> bool {
        match self.base {
            None => self.base = Some(second),
            Some(base) if second < base => {
                if self.closing_started {
                    return false;
                }
                for time in (second..base).rev() {
                    let mut s = self.spare.pop().unwrap_or_default();
                    s.reset(time);
                    self.open.push_front(s);
                }
                self.base = Some(second);
            }
            Some(_) => {}
        }
        if self.newest.is_none_or(|n| second > n) {
            self.newest = Some(second);
        }
        true
    }

    /// Start the clock at `second` when no event has arrived yet, so silence
    /// from the start is closed (and evaluated) as time passes.
    pub fn start_at(&mut self, second: i64) {
        if self.base.is_none() {
            self.base = Some(second);
        }
    }

    /// Close every second before `watermark` (exclusive), in order. Used by
    /// live mode when the wall clock drives time, and by [`Self::observe`].
    ///
    /// A run of seconds no event fell in (the open seconds are used up) is
    /// handed to [`Closer::silence`] whole, so a caller can pass over a
    /// long silence at the cost of what happens in it, not of its length.
    pub fn close_before(&mut self, watermark: i64, closed: &mut impl Closer) {
        let Some(mut base) = self.base else { return };
        if base < watermark {
            self.closing_started = true;
        }
        while base < watermark {
            let Some(mut stats) = self.open.pop_front() else {
                // The rest of the run is silent: no event is held past it.
                self.spare.truncate(4);
                closed.silence(base, watermark);
                self.counters.seconds_closed += (watermark - base) as u64;
                base = watermark;
                break;
            };
            debug_assert_eq!(stats.time, base);
            closed.second(&stats);
            stats.reset(0);
            self.spare.push(stats);
            self.counters.seconds_closed += 1;
            base += 1;
        }
        self.base = Some(base);
    }

    /// End of input: close everything up to and including the newest second.
    pub fn finish(&mut self, closed: &mut impl Closer) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_protocol::event::NANOS_PER_SEC;
    use proptest::prelude::*;

    fn event(second: i64, path: &str, status: u16) -> Event {
        Event {
            timestamp: second * NANOS_PER_SEC + 123,
            client: "10.0.0.1".into(),
            method: "GET".into(),
            path: path.into(),
            protocol: "HTTP/1.1".into(),
            status,
            bytes: 100,
            ..Event::empty()
        }
    }

    /// Feed seconds; collect (time, hits) of the closed ones.
    fn run(lateness: u32, seconds: &[i64]) -> (Vec<(i64, u64)>, EngineCounters) {
        let mut engine = EventTimeEngine::new(lateness);
        let mut closed = Vec::new();
        for &s in seconds {
            engine.observe(&event(s, "/api/x", 200), &mut |c: &SecondStats| {
                closed.push((c.time, c.hits))
            });
        }
        engine.finish(&mut |c: &SecondStats| closed.push((c.time, c.hits)));
        (closed, engine.counters())
    }

    #[test]
    fn closes_silent_seconds_in_order() {
        let (closed, counters) = run(0, &[10, 10, 13]);
        assert_eq!(closed, [(10, 2), (11, 0), (12, 0), (13, 1)]);
        assert_eq!(counters.seconds_closed, 4);
    }

    #[test]
    fn a_second_closes_only_when_the_watermark_passes_it() {
        let mut engine = EventTimeEngine::new(2);
        let mut closed = Vec::new();
        engine.observe(&event(100, "/", 200), &mut |c: &SecondStats| {
            closed.push(c.time)
        });
        engine.observe(&event(102, "/", 200), &mut |c: &SecondStats| {
            closed.push(c.time)
        });
        assert!(closed.is_empty(), "watermark 100 closes nothing yet");
        engine.observe(&event(103, "/", 200), &mut |c: &SecondStats| {
            closed.push(c.time)
        });
        assert_eq!(closed, [100]);
        assert_eq!(engine.watermark(), Some(101));
        engine.close_before(103, &mut |c: &SecondStats| closed.push(c.time));
        assert_eq!(closed, [100, 101, 102]);
    }

    #[test]
    fn disorder_within_lateness_opens_earlier_seconds_before_the_first_close() {
        let (closed, counters) = run(5, &[100, 97, 101, 96, 98]);
        assert_eq!(
            closed,
            [(96, 1), (97, 1), (98, 1), (99, 0), (100, 1), (101, 1)]
        );
        assert_eq!(counters.late, 0);
    }

    #[test]
    fn events_behind_a_closed_second_are_late() {
        // 100..=107: at 107 the watermark is 102, so 100 and 101 are closed.
        let (closed, counters) = run(5, &[100, 107, 101, 102, 94]);
        assert_eq!(
            counters.late, 2,
            "101 and 94 arrive after their seconds closed"
        );
        assert_eq!(counters.accepted, 3);
        let hits: u64 = closed.iter().map(|c| c.1).sum();
        assert_eq!(hits, 3);
        assert_eq!(closed.first(), Some(&(100, 1)));
        assert_eq!(closed.last(), Some(&(107, 1)));
    }

    #[test]
    fn an_event_older_than_the_watermark_is_late_even_before_any_close() {
        let (closed, counters) = run(5, &[100, 90]);
        assert_eq!(counters.late, 1);
        assert_eq!(closed, [(100, 1)]);
    }

    #[test]
    fn aggregates_sections_statuses_methods_and_clients() {
        let mut engine = EventTimeEngine::new(0);
        let mut seen = Vec::new();
        for (path, status) in [("/api/user", 200), ("/api/x?y=/z", 503), ("/report", 404)] {
            engine.observe(&event(5, path, status), &mut |_: &SecondStats| {});
        }
        engine.finish(&mut |c: &SecondStats| seen.push(c.clone()));
        let s = &seen[0];
        assert_eq!(s.hits, 3);
        assert_eq!(s.bytes, 300);
        assert_eq!(s.sections["/api"].hits, 2);
        assert_eq!(s.sections["/api"].statuses.server_error, 1);
        assert_eq!(s.sections["/report"].statuses.client_error, 1);
        assert_eq!(s.status_codes[&503], 1);
        assert_eq!(s.methods["GET"], 3);
        assert_eq!(s.clients["10.0.0.1"], 3);
        assert_eq!(
            s.statuses,
            StatusClasses {
                success: 1,
                client_error: 1,
                server_error: 1,
                ..StatusClasses::default()
            }
        );
    }

    #[test]
    fn memory_stays_bounded_over_a_long_input() {
        let mut engine = EventTimeEngine::new(5);
        let mut closed = 0u64;
        for i in 0..200_000i64 {
            // Ten events a second, jittered by up to 3 s.
            let s = i / 10 + (i * 7919 % 4) - 2;
            engine.observe(&event(s.max(0), "/a/b", 200), &mut |_: &SecondStats| {
                closed += 1
            });
            assert!(
                engine.open.len() <= 5 + 4,
                "open seconds: {}",
                engine.open.len()
            );
            assert!(
                engine.spare.len() <= 16,
                "spare seconds: {}",
                engine.spare.len()
            );
        }
        assert!(closed > 19_000);
    }

    #[test]
    fn live_inserts_wait_for_the_external_watermark() {
        let mut engine = EventTimeEngine::new(5);
        let mut closed = Vec::new();
        engine.start_at(98);
        assert_eq!(engine.insert(&event(100, "/", 200)), Observed::Accepted);
        assert_eq!(engine.insert(&event(130, "/", 200)), Observed::Accepted);
        assert!(closed.is_empty(), "insert never closes by itself");
        engine.close_before(101, &mut |c: &SecondStats| closed.push((c.time, c.hits)));
        assert_eq!(closed, [(98, 0), (99, 0), (100, 1)]);
        assert_eq!(engine.insert(&event(100, "/", 200)), Observed::Late);
        assert_eq!(engine.insert(&event(101, "/", 200)), Observed::Accepted);
        engine.close_before(102, &mut |c: &SecondStats| closed.push((c.time, c.hits)));
        assert_eq!(closed.last(), Some(&(101, 1)));
    }

    proptest! {
        /// With disorder below the lateness nothing is late, every second
        /// from the oldest to the newest closes once, in order, and the hits
        /// add up to the events.
        #[test]
        fn bounded_disorder_loses_nothing(
            steps in prop::collection::vec((0i64..3, 0i64..4), 1..400),
            lateness in 4u32..8,
        ) {
            let mut t = 1_000i64;
            let mut seconds = Vec::new();
            for (advance, back) in steps {
                t += advance;
                seconds.push(t - back);
            }
            let (closed, counters) = run(lateness, &seconds);
            prop_assert_eq!(counters.late, 0);
            let min = *seconds.iter().min().unwrap();
            let max = *seconds.iter().max().unwrap();
            let times: Vec<i64> = closed.iter().map(|c| c.0).collect();
            prop_assert_eq!(times, (min..=max).collect::<Vec<_>>());
            let hits: u64 = closed.iter().map(|c| c.1).sum();
            prop_assert_eq!(hits, seconds.len() as u64);
        }
    }
}
