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
//! - a *live* stream whose event time trails the leading stream's by more
//!   than `max_skew` (default a minute) does not hold time back either: its
//!   host's clock is wrong, and waiting for it would hold everyone's alerts
//!   back by as much. Its events then count as late (stored, not evaluated),
//!   reported with how far it trails. Live means read to its end (the latest
//!   batch says caught up), or sent within `quiet_after` of its newest event
//!   by its own agent's clock: a host whose clock and lines are both ten
//!   minutes behind looks live to itself. A stream reading a backlog (an
//!   agent catching up after an outage: its clock far ahead of its events)
//!   holds time as before, so a restart does not turn its backlog late.
//!
//! When no stream holds time back (or there is none), the wall clock minus the
//! lateness drives time. The global watermark never moves backwards.

use logmon_protocol::wire::StreamKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct StreamClock {
    /// Newest event second.
    newest: Option<i64>,
    /// Second of the newest heartbeat.
    caught_up: Option<i64>,
    /// Newest `sent_at` of the stream's batches (agent clock, nanoseconds).
    sent_at: i64,
    /// Its latest batch said the agent had read the file to its end.
    at_end: bool,
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
    streams: HashMap<StreamKey, StreamClock>,
    agents: HashMap<String, AgentClock>,
    global: Option<i64>,
    /// Seconds a caught-up stream may trail the leading one and still hold
    /// time back.
    max_skew: i64,
}

/// The default of [`Watermarks::with_max_skew`], seconds.
pub const MAX_SKEW: i64 = 60;

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
            max_skew: MAX_SKEW,
        }
    }

    /// How far (seconds) a caught-up stream may trail the leading one and
    /// still hold time back; see the module documentation.
    pub fn with_max_skew(mut self, seconds: i64) -> Self {
        self.max_skew = seconds.max(0);
        self
    }

    /// A batch of `stream` arrived at `now`, cut at `sent_at` (agent clock,
    /// unix nanoseconds); `caught_up` for a heartbeat-like batch.
    pub fn heard(&mut self, stream: &StreamKey, sent_at: i64, caught_up: bool, now: Instant) {
        let clock = self.streams.entry(stream.clone()).or_insert(StreamClock {
            newest: None,
            caught_up: None,
            sent_at,
            at_end: false,
        });
        clock.sent_at = clock.sent_at.max(sent_at);
        clock.at_end = caught_up;
        if caught_up {
            let second = sent_at.div_euclid(NANOS);
            clock.caught_up = Some(clock.caught_up.map_or(second, |c| c.max(second)));
        }
        match self.agents.get_mut(&stream.agent_id) {
            Some(a) => {
                a.sent_at = a.sent_at.max(sent_at);
                a.heard = now;
            }
            None => {
                self.agents.insert(
                    stream.agent_id.clone(),
                    AgentClock {
                        sent_at,
                        heard: now,
                    },
                );
            }
        }
    }

    /// The agent closed `stream`: it no longer holds time back.
    pub fn finished(&mut self, stream: &StreamKey) {
        self.streams.remove(stream);
    }

    /// Record an event second of `stream` (after [`Self::heard`] for its batch).
    pub fn observe(&mut self, stream: &StreamKey, second: i64) {
        if let Some(c) = self.streams.get_mut(stream) {
            c.newest = Some(c.newest.map_or(second, |n| n.max(second)));
        }
    }

    /// Whether `stream` holds time back at `now`.
    fn holds(&self, stream: &StreamKey, clock: &StreamClock, now: Instant) -> bool {
        let Some(agent) = self.agents.get(&stream.agent_id) else {
            return false;
        };
        now.saturating_duration_since(agent.heard) < self.silent_after
            && agent.sent_at.saturating_sub(clock.sent_at) < self.quiet_after
    }

    /// The global watermark at `now` (`wall` = the wall clock in unix
    /// seconds): every second before it may close.
    pub fn advance(&mut self, now: Instant, wall: i64) -> Option<i64> {
        let holding: Vec<(bool, i64)> = self
            .streams
            .iter()
            .filter(|(k, c)| self.holds(k, c, now))
            .filter_map(|(_, c)| Some((self.live(c), c.mark()?)))
            .collect();
        let lead = holding.iter().map(|&(_, m)| m).max();
        let holding = holding
            .iter()
            .filter(|&&(at_end, m)| !(at_end && lead.is_some_and(|l| l - m > self.max_skew)))
            .map(|&(_, m)| m - self.lateness)
            .min();
        let candidate = holding.unwrap_or(wall - self.lateness);
        self.global = Some(self.global.map_or(candidate, |g| g.max(candidate)));
        self.global
    }

    /// Whether a stream is live rather than reading a backlog (see the
    /// module documentation).
    fn live(&self, c: &StreamClock) -> bool {
        c.at_end
            || c.mark().is_some_and(|m| {
                c.sent_at.saturating_sub(m.saturating_mul(NANOS)) < self.quiet_after
            })
    }

    /// How far (seconds) a live `stream` trails the leading stream,
    /// when that is more than the allowed skew (it no longer holds time).
    pub fn trailing(&self, stream: &StreamKey) -> Option<i64> {
        let clock = self.streams.get(stream)?;
        let lead = self.streams.values().filter_map(StreamClock::mark).max()?;
        let behind = lead - clock.mark()?;
        (self.live(clock) && behind > self.max_skew).then_some(behind)
    }

    /// The newest event second of a stream.
    pub fn stream(&self, stream: &StreamKey) -> Option<i64> {
        self.streams.get(stream).and_then(|c| c.newest)
    }

    /// Forget agents silent for longer than `older_than`, with their streams.
    pub fn expire(&mut self, now: Instant, older_than: Duration) {
        self.agents
            .retain(|_, a| now.saturating_duration_since(a.heard) < older_than);
        let agents = &self.agents;
        self.streams.retain(|k, _| agents.contains_key(&k.agent_id));
    }

    /// The state to snapshot.
    pub fn save(&self) -> SavedWatermarks {
        let mut streams: Vec<_> = self
            .streams
            .iter()
            .map(|(k, c)| SavedStream {
                agent: k.agent_id.clone(),
                fingerprint: k.fingerprint,
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
                StreamKey {
                    agent_id: s.agent.clone(),
                    fingerprint: s.fingerprint,
                },
                StreamClock {
                    newest: s.newest,
                    caught_up: s.caught_up,
                    sent_at: s.sent_at,
                    at_end: false,
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

    fn key(agent: &str, fp: u64) -> StreamKey {
        StreamKey {
            agent_id: agent.to_string(),
            fingerprint: fp,
        }
    }

    fn marks() -> Watermarks {
        Watermarks::new(5, 5 * S, 30 * S)
    }

    /// A batch of events at `seconds`, cut at agent time `sent`.
    fn batch(w: &mut Watermarks, k: &StreamKey, sent: i64, seconds: &[i64], now: Instant) {
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
        // Two streams 200 s apart in event time: a skew this test does not
        // look at, set out of the way.
        let mut w = marks().with_max_skew(1_000);
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

    #[test]
    fn a_caught_up_stream_far_behind_the_others_stops_holding_time() {
        let t0 = Instant::now();
        let mut w = marks();
        let (a, b) = (key("a", 1), key("b", 2));
        // b's host is ten minutes behind: its lines and its clock.
        w.heard(&a, 1_000 * NANOS, true, t0);
        w.observe(&a, 1_000);
        w.heard(&b, 400 * NANOS, true, t0);
        w.observe(&b, 400);
        assert_eq!(w.advance(t0, 1_001), Some(995));
        assert_eq!(w.trailing(&b), Some(600));
        assert_eq!(w.trailing(&a), None);
        // Not caught up, but sending as fast as its lines come by its own
        // (wrong) clock: live, far behind, holds no one back.
        let mut w = marks();
        w.heard(&a, 1_000 * NANOS, true, t0);
        w.observe(&a, 1_000);
        batch(&mut w, &b, 401, &[400], t0);
        assert_eq!(w.advance(t0, 1_001), Some(995));
        assert_eq!(w.trailing(&b), Some(600));
        // Within the skew it holds time as before.
        let mut w = marks();
        w.heard(&a, 1_000 * NANOS, true, t0);
        w.observe(&a, 1_000);
        w.heard(&b, 950 * NANOS, true, t0);
        w.observe(&b, 950);
        assert_eq!(w.advance(t0, 1_001), Some(945));
        assert_eq!(w.trailing(&b), None);
        // A stream still reading its backlog holds time however far behind.
        let mut w = marks();
        w.heard(&a, 1_000 * NANOS, true, t0);
        w.observe(&a, 1_000);
        batch(&mut w, &b, 1_000, &[400], t0);
        assert_eq!(w.advance(t0, 1_001), Some(395));
        assert_eq!(w.trailing(&b), None);
        // The skew is configurable.
        let mut w = marks().with_max_skew(3_600);
        w.heard(&a, 1_000 * NANOS, true, t0);
        w.observe(&a, 1_000);
        w.heard(&b, 400 * NANOS, true, t0);
        w.observe(&b, 400);
        assert_eq!(w.advance(t0, 1_001), Some(395));
    }
}
