//! Live event time: one watermark per agent stream, and the global watermark
//! that closes seconds.
//!
//! A stream's watermark is its newest event time minus the allowed lateness.
//! The global watermark is the minimum over streams that are not idle, so a
//! slow stream holds time back until it is idle; when every stream is idle (or
//! there is none), the wall clock minus the lateness drives time, so silence
//! is closed, and evaluated, as it happens. The global watermark never moves
//! backwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct StreamClock {
    newest: i64,
    last_event: Instant,
}

/// Per-stream watermarks and the global one.
#[derive(Debug)]
pub struct Watermarks<K> {
    lateness: i64,
    idle_after: Duration,
    streams: HashMap<K, StreamClock>,
    global: Option<i64>,
}

impl<K: std::hash::Hash + Eq + Clone> Watermarks<K> {
    /// `lateness` in seconds; a stream with no event for `idle_after` no
    /// longer holds time back.
    pub fn new(lateness: u32, idle_after: Duration) -> Self {
        Watermarks {
            lateness: i64::from(lateness),
            idle_after,
            streams: HashMap::new(),
            global: None,
        }
    }

    /// Record an event second of `stream`, seen at `now`.
    pub fn observe(&mut self, stream: &K, second: i64, now: Instant) {
        match self.streams.get_mut(stream) {
            Some(c) => {
                c.newest = c.newest.max(second);
                c.last_event = now;
            }
            None => {
                self.streams.insert(
                    stream.clone(),
                    StreamClock {
                        newest: second,
                        last_event: now,
                    },
                );
            }
        }
    }

    /// The global watermark at `now` (`wall` = the wall clock in unix
    /// seconds): every second before it may close.
    pub fn advance(&mut self, now: Instant, wall: i64) -> Option<i64> {
        let active = self
            .streams
            .values()
            .filter(|c| now.saturating_duration_since(c.last_event) < self.idle_after)
            .map(|c| c.newest - self.lateness)
            .min();
        let candidate = match active {
            Some(w) => Some(w),
            None => Some(wall - self.lateness),
        };
        self.global = match (self.global, candidate) {
            (Some(g), Some(c)) => Some(g.max(c)),
            (g, c) => g.or(c),
        };
        self.global
    }

    /// The newest event second of a stream.
    pub fn stream(&self, stream: &K) -> Option<i64> {
        self.streams.get(stream).map(|c| c.newest)
    }

    /// Forget streams idle for longer than `older_than`.
    pub fn expire(&mut self, now: Instant, older_than: Duration) {
        self.streams
            .retain(|_, c| now.saturating_duration_since(c.last_event) < older_than);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_stream_holds_time_back() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5, Duration::from_secs(10));
        w.observe(&"a", 100, t0);
        w.observe(&"b", 90, t0);
        assert_eq!(w.advance(t0, 200), Some(85));
        w.observe(&"b", 120, t0);
        assert_eq!(w.advance(t0, 200), Some(95), "now a is the slowest");
    }

    #[test]
    fn an_idle_stream_stops_holding_time_back() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5, Duration::from_secs(10));
        w.observe(&"a", 100, t0);
        w.observe(&"b", 50, t0);
        let later = t0 + Duration::from_secs(5);
        w.observe(&"a", 105, later);
        assert_eq!(w.advance(later, 200), Some(45));
        let idle = t0 + Duration::from_secs(11);
        assert_eq!(w.advance(idle, 200), Some(100), "b is idle now");
    }

    #[test]
    fn the_wall_clock_drives_time_when_every_stream_is_idle() {
        let t0 = Instant::now();
        let mut w: Watermarks<&str> = Watermarks::new(5, Duration::from_secs(10));
        assert_eq!(w.advance(t0, 1_000), Some(995), "no stream yet");
        w.observe(&"a", 1_000, t0);
        assert_eq!(w.advance(t0, 1_001), Some(995));
        let idle = t0 + Duration::from_secs(30);
        assert_eq!(w.advance(idle, 1_030), Some(1_025));
    }

    #[test]
    fn never_moves_backwards() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, Duration::from_secs(10));
        w.observe(&"a", 100, t0);
        assert_eq!(w.advance(t0, 0), Some(100));
        w.observe(&"b", 10, t0);
        assert_eq!(
            w.advance(t0, 0),
            Some(100),
            "a new slow stream cannot rewind"
        );
    }
}
