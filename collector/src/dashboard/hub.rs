//! The engine's side of the dashboard: the engine thread hands the hub each
//! closed second, each completed statistics block, each alert transition the
//! outbox accepted and each bus record it read; the HTTP side reads what the
//! hub keeps and subscribes to what it publishes.
//!
//! Nothing here waits on a client: the engine takes a mutex held only for
//! in-memory copies, and publishes to a broadcast channel, which never
//! blocks (see [`super::sse`]). Events are serialized only while someone
//! listens, and published only after what they announce can be read.

use super::agents::{AgentsView, BatchSeen};
use super::series::{STATUS_CLASSES, SecondPoint, SeriesRing};
use super::sse;
use crate::engine::observer::Observer;
use crate::engine::seconds::SecondStats;
use crate::engine::stats::StatsReport;
use crate::rules::Transition;
use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::broadcast;

/// Shared between the engine thread and the HTTP handlers.
#[derive(Debug)]
pub struct Hub {
    series: Mutex<SeriesRing>,
    stats: Mutex<Option<Arc<serde_json::Value>>>,
    agents: Mutex<AgentsView>,
    events: broadcast::Sender<Bytes>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `second` event's data.
pub fn second_json(p: &SecondPoint) -> serde_json::Value {
    let status: serde_json::Map<String, serde_json::Value> = STATUS_CLASSES
        .iter()
        .zip(p.status)
        .map(|(name, n)| ((*name).into(), n.into()))
        .collect();
    let sections: serde_json::Map<String, serde_json::Value> = p
        .sections
        .iter()
        .map(|(name, n)| (name.to_string(), (*n).into()))
        .collect();
    serde_json::json!({
        "t": p.t,
        "total": p.total,
        "bytes": p.bytes,
        "status": status,
        "sections": sections,
        "other": p.other(),
    })
}

/// The statistics block as `--output json` prints it.
pub fn stats_json(r: &StatsReport) -> serde_json::Value {
    let mut v = serde_json::json!({ "kind": "stats" });
    if let (Some(map), Ok(serde_json::Value::Object(fields))) =
        (v.as_object_mut(), serde_json::to_value(r))
    {
        map.extend(fields);
    }
    v
}

impl Hub {
    /// `lateness`: the engine's, for the streams' watermarks.
    pub fn new(lateness: u32) -> Arc<Hub> {
        Arc::new(Hub {
            series: Mutex::new(SeriesRing::new()),
            stats: Mutex::new(None),
            agents: Mutex::new(AgentsView::new(lateness)),
            events: broadcast::channel(sse::CHANNEL_FRAMES).0,
        })
    }

    fn publish(&self, event: &str, data: impl FnOnce() -> serde_json::Value) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(sse::frame(event, &data().to_string()));
        }
    }

    /// A closed second (silent ones too).
    pub fn second(&self, s: &SecondStats) {
        let point = SecondPoint::from_stats(s);
        let data = (self.events.receiver_count() > 0).then(|| second_json(&point));
        // Kept before it is published: a client that saw the event finds
        // the second in `/api/series`.
        lock(&self.series).insert(point);
        if let Some(data) = data {
            let _ = self.events.send(sse::frame("second", &data.to_string()));
        }
    }

    /// The silent seconds `from..to` closed at once: memory holds the last
    /// [`MEMORY_SECONDS`](super::series::MEMORY_SECONDS) of them as zero
    /// points, and only the last is published (a page that sees the seconds
    /// skip fetches the series again).
    pub fn silence(&self, from: i64, to: i64) {
        if to <= from {
            return;
        }
        let held = from.max(to - super::series::MEMORY_SECONDS);
        {
            let mut series = lock(&self.series);
            for time in held..to - 1 {
                series.insert(SecondPoint::from_stats(&SecondStats::silent(time)));
            }
        }
        self.second(&SecondStats::silent(to - 1));
    }

    /// A completed statistics block.
    pub fn stats(&self, r: &StatsReport) {
        let json = Arc::new(stats_json(r));
        *lock(&self.stats) = Some(Arc::clone(&json));
        self.publish("stats", || (*json).clone());
    }

    /// A transition the outbox took as new.
    pub fn transition(&self, t: &Transition) {
        self.publish("alert", || crate::alerts::notify::webhook_payload(t));
    }

    /// A bus record the engine read.
    pub fn batch(&self, b: &BatchSeen<'_>) {
        lock(&self.agents).seen(b, Instant::now());
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.events.subscribe()
    }

    /// The closed seconds in memory.
    pub fn series(&self) -> MutexGuard<'_, SeriesRing> {
        lock(&self.series)
    }

    /// The latest statistics block, if one completed.
    pub fn latest_stats(&self) -> Option<Arc<serde_json::Value>> {
        lock(&self.stats).clone()
    }

    /// `/api/agents` at wall-clock second `wall`.
    pub fn agents_json(&self, wall: i64) -> serde_json::Value {
        // Copied under the lock, serialized after it.
        let snapshot = lock(&self.agents).snapshot();
        snapshot.json(wall)
    }
}

/// The hub as the engine's observer: it never fails and never waits.
#[derive(Debug, Clone)]
pub struct HubObserver(pub Arc<Hub>);

impl Observer for HubObserver {
    fn second(&mut self, s: &SecondStats) -> std::io::Result<()> {
        self.0.second(s);
        Ok(())
    }

    fn transition(&mut self, t: &Transition) -> std::io::Result<()> {
        self.0.transition(t);
        Ok(())
    }

    fn silence(&mut self, from: i64, to: i64) -> std::io::Result<()> {
        self.0.silence(from, to);
        Ok(())
    }

    fn stats(&mut self, r: &StatsReport) -> std::io::Result<()> {
        self.0.stats(r);
        Ok(())
    }

    fn batch(&mut self, b: &BatchSeen<'_>) {
        self.0.batch(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SectionAgg, StatusClasses};
    use crate::rules::AlertState;

    #[test]
    fn the_hub_keeps_and_publishes_what_the_engine_hands_it() {
        let hub = Hub::new(5);
        // Nobody listens: kept, not published.
        hub.second(&SecondStats {
            time: 99,
            hits: 1,
            ..SecondStats::default()
        });
        let mut events = hub.subscribe();
        let mut s = SecondStats {
            time: 100,
            hits: 3,
            bytes: 300,
            statuses: StatusClasses {
                success: 2,
                server_error: 1,
                ..StatusClasses::default()
            },
            ..SecondStats::default()
        };
        s.sections.insert(
            "/api".into(),
            SectionAgg {
                hits: 3,
                ..SectionAgg::default()
            },
        );
        hub.second(&s);
        hub.transition(&Transition {
            rule: "high-traffic".into(),
            key: String::new(),
            state: AlertState::Firing,
            at: 100,
            value: 10.5,
            message: "busy".into(),
        });
        let got = events.try_recv().unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            "event: second\ndata: {\"bytes\":300,\"other\":0,\"sections\":{\"/api\":3},\
             \"status\":{\"2xx\":2,\"3xx\":0,\"4xx\":0,\"5xx\":1},\"t\":100,\"total\":3}\n\n"
        );
        let got = events.try_recv().unwrap();
        let text = std::str::from_utf8(&got).unwrap();
        assert!(text.starts_with("event: alert\ndata: {"), "{text}");
        let data: serde_json::Value = serde_json::from_str(
            text.trim_end()
                .strip_prefix("event: alert\ndata: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["rule"], "high-traffic");
        assert_eq!(data["state"], "firing");
        assert_eq!(data["at"], 100);
        assert!(events.try_recv().is_err());
        let ring = hub.series();
        assert_eq!(ring.get(99).map(|p| p.total), Some(1));
        assert_eq!(ring.get(100).map(|p| p.total), Some(3));
        drop(ring);
        assert!(hub.latest_stats().is_none());
    }
}
