//! Live event time: one watermark per agent stream, and the global watermark
//! that closes seconds.
//!
//! A stream is one file of one agent. Its watermark is the newest event time
//! it sent, or the time of its latest heartbeat if that is newer, minus the
//! allowed lateness. A heartbeat is an empty batch the agent sends for a file
//! it has read to the end with everything acknowledged, so it promises that
//! no line older than its `sent_at` is on the way: a quiet server still moves
//! time, and a recovery during silence is reported when it happens.
//!
//! The global watermark is the minimum over the streams that hold time back:
//! - a stream the agent says is finished (rotated away or deleted, read to
//!   its end) is dropped;
//! - a stream stops holding time back when its agent keeps talking (batches or
//!   heartbeats of other files) but has said nothing of this stream for
//!   `quiet_after` of the agent's own clock: a fallback for a finish marker
//!   that never came (the agent restarted after the file left its globs).
//!   Batches of different files of one agent do not arrive in `sent_at`
//!   order (one is in flight per file), so after an outage a file's backlog
//!   can arrive after newer batches of another: `quiet_after` must exceed the
//!   outages to ride out (30 s, like `silent_after`). This test uses the
//!   agents' `sent_at` stamps only, so replaying the bus decides it the same
//!   way;
//! - every stream of an agent stops holding time back when nothing at all has
//!   come from the agent for `silent_after` of the collector's wall clock: the
//!   agent is gone or cut off. Until then its streams hold time, so lines it
//!   sends after a crash, a restart or a network outage shorter than that are
//!   not late. Longer outages trade exactness for liveness: time moves on and
//!   what arrives later is counted late (and still stored).
//!
//! When no stream holds time back (or there is none), the wall clock minus the
//! lateness drives time. The global watermark never moves backwards.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A stream: (agent id, file fingerprint).
pub type StreamRef = (String, u64);

const NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct StreamClock {
    /// Newest event second.
    newest: Option<i64>,
    /// Second of the newest heartbeat.
    caught_up: Option<i64>,
    /// Newest `sent_at` of the stream's batches (agent clock, nanoseconds).
    sent_at: i64,
}

impl StreamClock {
    fn mark(&self) -> Option<i64> {
        match (self.newest, self.caught_up) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct AgentClock {
    sent_at: i64,
    heard: Instant,
}

/// Durable form of [`Watermarks`] for engine snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWatermarks {
    pub streams: Vec<SavedStream>,
    pub global: Option<i64>,
}

/// One stream in [`SavedWatermarks`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SavedStream {
    pub agent: String,
    pub fingerprint: u64,
    /// Newest event second.
    pub newest: Option<i64>,
    /// Second of the newest heartbeat.
    pub caught_up: Option<i64>,
    /// Newest `sent_at` (agent clock, unix nanoseconds).
    pub sent_at: i64,
}

/// Per-stream watermarks and the global one. See the module documentation.
#[derive(Debug)]
pub struct Watermarks {
    lateness: i64,
    quiet_after: i64,
    silent_after: Duration,
    streams: HashMap<StreamRef, StreamClock>,
    agents: HashMap<String, AgentClock>,
    global: Option<i64>,
}

impl Watermarks {
    /// `lateness` in seconds; see the module documentation for the others.
    pub fn new(lateness: u32, quiet_after: Duration, silent_after: Duration) -> Self {
        Watermarks {
            lateness: i64::from(lateness),
            quiet_after: i64::try_from(quiet_after.as_nanos()).unwrap_or(i64::MAX),
            silent_after,
            streams: HashMap::new(),
            agents: HashMap::new(),
            global: None,
        }
    }

    /// A batch of `stream` arrived at `now`, cut at `sent_at` (agent clock,
    /// unix nanoseconds); `caught_up` for a heartbeat-like batch.
    pub fn heard(&mut self, stream: &StreamRef, sent_at: i64, caught_up: bool, now: Instant) {
        let clock = self.streams.entry(stream.clone()).or_insert(StreamClock {
            newest: None,
            caught_up: None,
            sent_at,
        });
        clock.sent_at = clock.sent_at.max(sent_at);
        if caught_up {
            let second = sent_at.div_euclid(NANOS);
            clock.caught_up = Some(clock.caught_up.map_or(second, |c| c.max(second)));
        }
        match self.agents.get_mut(&stream.0) {
            Some(a) => {
                a.sent_at = a.sent_at.max(sent_at);
                a.heard = now;
            }
            None => {
                self.agents.insert(
                    stream.0.clone(),
                    AgentClock {
                        sent_at,
                        heard: now,
                    },
                );
            }
        }
    }

    /// The agent closed `stream`: it no longer holds time back.
    pub fn finished(&mut self, stream: &StreamRef) {
        self.streams.remove(stream);
    }

    /// Record an event second of `stream` (after [`Self::heard`] for its batch).
    pub fn observe(&mut self, stream: &StreamRef, second: i64) {
        if let Some(c) = self.streams.get_mut(stream) {
            c.newest = Some(c.newest.map_or(second, |n| n.max(second)));
        }
    }

    /// Whether `stream` holds time back at `now`.
    fn holds(&self, stream: &StreamRef, clock: &StreamClock, now: Instant) -> bool {
        let Some(agent) = self.agents.get(&stream.0) else {
            return false;
        };
        now.saturating_duration_since(agent.heard) < self.silent_after
            && agent.sent_at.saturating_sub(clock.sent_at) < self.quiet_after
    }

    /// The global watermark at `now` (`wall` = the wall clock in unix
    /// seconds): every second before it may close.
    pub fn advance(&mut self, now: Instant, wall: i64) -> Option<i64> {
        let holding = self
            .streams
            .iter()
            .filter(|(k, c)| self.holds(k, c, now))
            .filter_map(|(_, c)| c.mark())
            .map(|m| m - self.lateness)
            .min();
        let candidate = holding.unwrap_or(wall - self.lateness);
        self.global = Some(self.global.map_or(candidate, |g| g.max(candidate)));
        self.global
    }

    /// The newest event second of a stream.
    pub fn stream(&self, stream: &StreamRef) -> Option<i64> {
        self.streams.get(stream).and_then(|c| c.newest)
    }

    /// Forget agents silent for longer than `older_than`, with their streams.
    pub fn expire(&mut self, now: Instant, older_than: Duration) {
        self.agents
            .retain(|_, a| now.saturating_duration_since(a.heard) < older_than);
        let agents = &self.agents;
        self.streams.retain(|k, _| agents.contains_key(&k.0));
    }

    /// The state to snapshot.
    pub fn save(&self) -> SavedWatermarks {
        let mut streams: Vec<_> = self
            .streams
            .iter()
            .map(|(k, c)| SavedStream {
                agent: k.0.clone(),
                fingerprint: k.1,
                newest: c.newest,
                caught_up: c.caught_up,
                sent_at: c.sent_at,
            })
            .collect();
        streams.sort();
        SavedWatermarks {
            streams,
            global: self.global,
        }
    }

    /// Restore a snapshot taken by [`Self::save`]; every agent counts as
    /// heard at `now`, so its streams hold time for `silent_after` while it
    /// reconnects.
    pub fn restore(&mut self, saved: &SavedWatermarks, now: Instant) {
        self.streams.clear();
        self.agents.clear();
        for s in &saved.streams {
            self.streams.insert(
                (s.agent.clone(), s.fingerprint),
                StreamClock {
                    newest: s.newest,
                    caught_up: s.caught_up,
                    sent_at: s.sent_at,
                },
            );
            let a = self.agents.entry(s.agent.clone()).or_insert(AgentClock {
                sent_at: s.sent_at,
                heard: now,
            });
            a.sent_at = a.sent_at.max(s.sent_at);
        }
        self.global = saved.global;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn key(agent: &str, fp: u64) -> StreamRef {
        (agent.to_string(), fp)
    }

    fn marks() -> Watermarks {
        Watermarks::new(5, 5 * S, 30 * S)
    }

    /// A batch of events at `seconds`, cut at agent time `sent`.
    fn batch(w: &mut Watermarks, k: &StreamRef, sent: i64, seconds: &[i64], now: Instant) {
        w.heard(k, sent * NANOS, false, now);
        for &s in seconds {
            w.observe(k, s);
        }
    }

    #[test]
    fn the_slowest_stream_holds_time_back() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[100], t0);
        batch(&mut w, &key("b", 1), 100, &[90], t0);
        assert_eq!(w.advance(t0, 200), Some(85));
        batch(&mut w, &key("b", 1), 101, &[120], t0);
        assert_eq!(w.advance(t0, 200), Some(95), "now a is the slowest");
    }

    #[test]
    fn a_heartbeat_moves_a_quiet_stream() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[100], t0);
        assert_eq!(w.advance(t0, 200), Some(95));
        w.heard(&key("a", 1), 140 * NANOS + 5, true, t0);
        assert_eq!(w.advance(t0, 200), Some(135));
        // Events older than the heartbeat do not move it back.
        batch(&mut w, &key("a", 1), 141, &[139], t0);
        assert_eq!(w.advance(t0, 200), Some(135));
    }

    #[test]
    fn a_stream_its_agent_stopped_sending_stops_holding_time() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[50], t0);
        batch(&mut w, &key("a", 2), 100, &[100], t0);
        assert_eq!(w.advance(t0, 200), Some(45));
        // The agent's clock moves 4 s on through the other file: still held.
        batch(&mut w, &key("a", 2), 104, &[104], t0);
        assert_eq!(w.advance(t0, 200), Some(45));
        // 5 s: file 1 was closed by the agent.
        batch(&mut w, &key("a", 2), 105, &[105], t0);
        assert_eq!(w.advance(t0, 200), Some(100));
    }

    #[test]
    fn a_finished_stream_stops_holding_time() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[50], t0);
        batch(&mut w, &key("a", 2), 100, &[100], t0);
        assert_eq!(w.advance(t0, 200), Some(45));
        w.finished(&key("a", 1));
        assert_eq!(w.advance(t0, 200), Some(95));
    }

    #[test]
    fn a_silent_agent_holds_time_until_silent_after() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[100], t0);
        batch(&mut w, &key("b", 1), 100, &[300], t0);
        batch(&mut w, &key("b", 1), 120, &[320], t0 + 20 * S);
        assert_eq!(w.advance(t0 + 29 * S, 400), Some(95), "a may still send");
        assert_eq!(w.advance(t0 + 30 * S, 400), Some(315), "a is gone");
    }

    #[test]
    fn the_wall_clock_drives_time_when_no_stream_holds_it() {
        let t0 = Instant::now();
        let mut w = marks();
        assert_eq!(w.advance(t0, 1_000), Some(995), "no stream yet");
        batch(&mut w, &key("a", 1), 1_000, &[1_000], t0);
        assert_eq!(w.advance(t0, 1_001), Some(995));
        assert_eq!(w.advance(t0 + 30 * S, 1_030), Some(1_025));
    }

    #[test]
    fn never_moves_backwards() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, 5 * S, 30 * S);
        batch(&mut w, &key("a", 1), 100, &[100], t0);
        assert_eq!(w.advance(t0, 0), Some(100));
        batch(&mut w, &key("b", 1), 100, &[10], t0);
        assert_eq!(
            w.advance(t0, 0),
            Some(100),
            "a new slow stream cannot rewind"
        );
    }

    #[test]
    fn a_restored_agent_holds_time_for_silent_after_again() {
        let t0 = Instant::now();
        let mut w = marks();
        batch(&mut w, &key("a", 1), 100, &[100], t0);
        w.heard(&key("a", 2), 99 * NANOS, true, t0);
        let saved = w.save();
        let later = t0 + 60 * S;
        let mut r = marks();
        r.restore(&saved, later);
        assert_eq!(r.save(), saved);
        assert_eq!(r.advance(later + 29 * S, 500), Some(94));
        assert_eq!(r.advance(later + 30 * S, 500), Some(495));
    }
}
