//! What `/api/agents` shows: every agent the engine has read from, with its
//! streams (one per file), from the bus records as the engine reads them.
//!
//! A stream's watermark is what [`crate::engine::watermark`] computes for it: its
//! newest event second, or the second of its latest heartbeat if newer, minus
//! the lateness. The view is bounded: agents not heard from for an hour are
//! forgotten, and past [`MAX_STREAMS`] streams the least recently heard one
//! goes.
//!
//! The engine thread updates the view for every bus record, under the hub's
//! mutex; `/api/agents` only copies it there ([`AgentsView::snapshot`]:
//! numbers and shared strings) and builds its JSON after.

pub use crate::engine::observer::BatchSeen;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Streams the view holds at most.
pub const MAX_STREAMS: usize = 10_000;
/// Agents silent for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
const NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone)]
struct StreamView {
    path: Arc<str>,
    newest: Option<i64>,
    heartbeat: Option<i64>,
    caught_up: bool,
    finished: bool,
    events: u64,
    heard: Instant,
}

impl StreamView {
    /// The newest event or heartbeat second (`None` sorts first).
    fn mark(&self) -> Option<i64> {
        self.newest.max(self.heartbeat)
    }
}

#[derive(Debug, Clone)]
struct AgentView {
    host: Arc<str>,
    /// Newest `sent_at` (agent clock, nanoseconds).
    sent_at: i64,
    heard: Instant,
    streams: HashMap<u64, StreamView>,
}

/// Agents and their streams. See the module documentation.
#[derive(Debug)]
pub struct AgentsView {
    lateness: i64,
    agents: BTreeMap<Arc<str>, AgentView>,
    streams: usize,
    last_expiry: Option<Instant>,
}

/// A copy of an [`AgentsView`] taken under the lock, to serialize after it.
#[derive(Debug, Clone)]
pub struct AgentsSnapshot {
    lateness: i64,
    agents: Vec<AgentRow>,
}

#[derive(Debug, Clone)]
struct AgentRow {
    agent: Arc<str>,
    host: Arc<str>,
    sent_at: i64,
    streams: Vec<StreamRow>,
}

#[derive(Debug, Clone)]
struct StreamRow {
    fingerprint: u64,
    path: Arc<str>,
    mark: Option<i64>,
    caught_up: bool,
    finished: bool,
    events: u64,
}

impl AgentsView {
    pub fn new(lateness: u32) -> AgentsView {
        AgentsView {
            lateness: i64::from(lateness),
            agents: BTreeMap::new(),
            streams: 0,
            last_expiry: None,
        }
    }

    /// A record the engine read at `now`.
    pub fn seen(&mut self, b: &BatchSeen<'_>, now: Instant) {
        if self
            .last_expiry
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60))
        {
            self.expire(now);
            self.last_expiry = Some(now);
        }
        let agent = match self.agents.get_mut(b.agent) {
            Some(a) => a,
            None => self
                .agents
                .entry(Arc::from(b.agent))
                .or_insert_with(|| AgentView {
                    host: Arc::from(""),
                    sent_at: b.sent_at,
                    heard: now,
                    streams: HashMap::new(),
                }),
        };
        if *agent.host != *b.host {
            agent.host = Arc::from(b.host);
        }
        agent.sent_at = agent.sent_at.max(b.sent_at);
        agent.heard = now;
        let stream = agent.streams.entry(b.fingerprint).or_insert_with(|| {
            self.streams += 1;
            StreamView {
                path: Arc::from(b.path),
                newest: None,
                heartbeat: None,
                caught_up: false,
                finished: false,
                events: 0,
                heard: now,
            }
        });
        if *stream.path != *b.path {
            stream.path = Arc::from(b.path);
        }
        stream.heard = now;
        stream.events += b.events;
        if let Some(n) = b.newest {
            stream.newest = Some(stream.newest.map_or(n, |m| m.max(n)));
        }
        if b.caught_up {
            let second = b.sent_at.div_euclid(NANOS);
            stream.heartbeat = Some(stream.heartbeat.map_or(second, |h| h.max(second)));
        }
        stream.caught_up = b.caught_up;
        stream.finished |= b.finished;
        if self.streams > MAX_STREAMS {
            self.evict_one();
        }
    }

    fn expire(&mut self, now: Instant) {
        self.agents
            .retain(|_, a| now.saturating_duration_since(a.heard) < FORGET_AFTER);
        self.streams = self.agents.values().map(|a| a.streams.len()).sum();
    }

    /// Drops the least recently heard stream (and its agent when that was
    /// its last).
    fn evict_one(&mut self) {
        let oldest = self
            .agents
            .iter()
            .flat_map(|(id, a)| a.streams.iter().map(move |(fp, s)| (s.heard, id, *fp)))
            .min();
        let Some((_, id, fp)) = oldest else { return };
        let id = Arc::clone(id);
        if let Some(a) = self.agents.get_mut(&id) {
            a.streams.remove(&fp);
            self.streams -= 1;
            if a.streams.is_empty() {
                self.agents.remove(&id);
            }
        }
    }

    /// What `/api/agents` needs, copied: no formatting, sorting or JSON
    /// while the engine may be waiting for the lock.
    pub fn snapshot(&self) -> AgentsSnapshot {
        let agents = self
            .agents
            .iter()
            .map(|(id, a)| AgentRow {
                agent: Arc::clone(id),
                host: Arc::clone(&a.host),
                sent_at: a.sent_at,
                streams: a
                    .streams
                    .iter()
                    .map(|(fp, s)| StreamRow {
                        fingerprint: *fp,
                        path: Arc::clone(&s.path),
                        mark: s.mark(),
                        caught_up: s.caught_up,
                        finished: s.finished,
                        events: s.events,
                    })
                    .collect(),
            })
            .collect();
        AgentsSnapshot {
            lateness: self.lateness,
            agents,
        }
    }
}

impl AgentsSnapshot {
    /// The `/api/agents` JSON at wall-clock second `wall`: agents by id,
    /// streams by file then fingerprint.
    ///
    /// `skew_seconds` is how far a stream's newest event or heartbeat trails
    /// the leading stream's (the engine stops letting a live stream hold
    /// time back past `max_skew`, [`crate::engine::watermark`]).
    pub fn json(mut self, wall: i64) -> serde_json::Value {
        let lateness = self.lateness;
        let lead = self
            .agents
            .iter()
            .flat_map(|a| a.streams.iter().filter_map(|s| s.mark))
            .max();
        let agents: Vec<serde_json::Value> = self
            .agents
            .iter_mut()
            .map(|a| {
                a.streams
                    .sort_by(|x, y| x.path.cmp(&y.path).then(x.fingerprint.cmp(&y.fingerprint)));
                let streams: Vec<serde_json::Value> = a
                    .streams
                    .iter()
                    .map(|s| {
                        json!({
                            "stream": format!("{:016x}", s.fingerprint),
                            "file": (!s.path.is_empty()).then_some(&*s.path),
                            "watermark": s.mark.map(|m| m - lateness),
                            "lag_seconds": s.mark.map(|m| (wall - m).max(0)),
                            "skew_seconds": s.mark.zip(lead).map(|(m, l)| l - m),
                            "caught_up": s.caught_up,
                            "finished": s.finished,
                            "events": s.events,
                        })
                    })
                    .collect();
                json!({
                    "agent": &*a.agent,
                    "host": &*a.host,
                    "last_seen": a.sent_at.div_euclid(NANOS),
                    "streams": streams,
                })
            })
            .collect();
        agents.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch<'a>(agent: &'a str, fp: u64, path: &'a str, sent: i64) -> BatchSeen<'a> {
        BatchSeen {
            agent,
            host: "web-1",
            fingerprint: fp,
            path,
            sent_at: sent * NANOS,
            caught_up: false,
            finished: false,
            events: 0,
            newest: None,
        }
    }

    #[test]
    fn streams_show_their_watermark_lag_and_state() {
        let mut view = AgentsView::new(5);
        let now = Instant::now();
        view.seen(
            &BatchSeen {
                events: 3,
                newest: Some(1000),
                ..batch("a1", 0xbeef, "/var/log/b.log", 1001)
            },
            now,
        );
        view.seen(
            &BatchSeen {
                caught_up: true,
                ..batch("a1", 0xbeef, "/var/log/b.log", 1010)
            },
            now,
        );
        view.seen(
            &BatchSeen {
                finished: true,
                ..batch("a1", 0x1, "/var/log/a.log", 1003)
            },
            now,
        );
        view.seen(&batch("a0", 0x2, "", 900), now);
        let json = view.snapshot().json(1020);
        assert_eq!(
            json,
            json!([
                {"agent": "a0", "host": "web-1", "last_seen": 900, "streams": [
                    {"stream": "0000000000000002", "file": null, "watermark": null,
                     "lag_seconds": null, "skew_seconds": null, "caught_up": false, "finished": false, "events": 0}
                ]},
                {"agent": "a1", "host": "web-1", "last_seen": 1010, "streams": [
                    {"stream": "0000000000000001", "file": "/var/log/a.log", "watermark": null,
                     "lag_seconds": null, "skew_seconds": null, "caught_up": false, "finished": true, "events": 0},
                    {"stream": "000000000000beef", "file": "/var/log/b.log", "watermark": 1005,
                     "lag_seconds": 10, "skew_seconds": 0, "caught_up": true, "finished": false, "events": 3}
                ]}
            ])
        );
    }

    #[test]
    fn a_stream_behind_the_others_shows_its_skew() {
        let mut view = AgentsView::new(5);
        let now = Instant::now();
        for (agent, fp, newest) in [("on-time", 1, 2000), ("behind", 2, 1400), ("also", 3, 1990)] {
            view.seen(
                &BatchSeen {
                    events: 1,
                    newest: Some(newest),
                    ..batch(agent, fp, "/a.log", newest)
                },
                now,
            );
        }
        let json = view.snapshot().json(2001);
        let skew = |agent: &str| {
            json.as_array()
                .unwrap()
                .iter()
                .find(|a| a["agent"] == agent)
                .map(|a| a["streams"][0]["skew_seconds"].clone())
                .unwrap()
        };
        assert_eq!(skew("on-time"), json!(0));
        assert_eq!(skew("behind"), json!(600));
        assert_eq!(skew("also"), json!(10));
    }

    #[test]
    fn a_snapshot_keeps_what_the_view_held_when_it_was_taken() {
        let mut view = AgentsView::new(5);
        let now = Instant::now();
        view.seen(&batch("a1", 0x1, "/old.log", 100), now);
        let snapshot = view.snapshot();
        view.seen(
            &BatchSeen {
                host: "web-2",
                events: 9,
                ..batch("a1", 0x1, "/new.log", 200)
            },
            now,
        );
        view.seen(&batch("a2", 0x2, "/b.log", 200), now);
        assert_eq!(
            snapshot.json(300),
            json!([{"agent": "a1", "host": "web-1", "last_seen": 100, "streams": [
                {"stream": "0000000000000001", "file": "/old.log", "watermark": null,
                 "lag_seconds": null, "skew_seconds": null, "caught_up": false, "finished": false, "events": 0}
            ]}])
        );
        assert_eq!(view.snapshot().json(300)[0]["host"], "web-2");
        assert_eq!(
            view.snapshot().json(300)[0]["streams"][0]["file"],
            "/new.log"
        );
    }

    #[test]
    fn the_view_is_bounded() {
        let mut view = AgentsView::new(5);
        let start = Instant::now();
        for i in 0..MAX_STREAMS as u64 + 10 {
            let now = start + Duration::from_millis(i);
            view.seen(&batch("a", i, "f", 1), now);
        }
        assert_eq!(view.streams, MAX_STREAMS);
        let a = &view.agents["a"];
        assert!(!a.streams.contains_key(&9), "the least recently heard went");
        assert!(a.streams.contains_key(&10));
        // An hour of silence: forgotten at the next record.
        let later = start + FORGET_AFTER + Duration::from_secs(61);
        view.seen(&batch("b", 1, "f", 2), later);
        assert_eq!(view.agents.len(), 1);
        assert_eq!(view.streams, 1);
    }
}
