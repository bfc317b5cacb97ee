//! What ingest tells `GET /health` (see [`crate::http::status`]): whether
//! this collector takes batches, and if a consumer of the bus is stuck,
//! which one and how far behind.
//!
//! - **503 `backpressure`**: the bus holds more unconsumed bytes than
//!   `max_backlog_bytes`, so `POST /v1/batches` answers 503 too; the reasons
//!   name the consumers holding the backlog, how far behind they are and
//!   what they last said stops them (InfluxDB unreachable, say).
//! - **503 `shutting_down`**.
//! - **503 `consumer_down`**: a configured consumer has said for
//!   [`DOWN_AFTER`] that it cannot make progress (InfluxDB unreachable):
//!   batches are still taken (the bus holds them), but the collector does
//!   not do its whole job, and says so to whatever watches it.
//! - **200 `degraded`**: batches are taken, but a consumer says it cannot
//!   make progress (for less than [`DOWN_AFTER`]), is more than [`BEHIND`]
//!   behind, or is not configured and holds records from deletion.
//! - **200 `ok`**: `{"status":"ok"}` and nothing else.
//!
//! Outside `ok` the body lists every consumer (`consumers`), the backlog and
//! its limit.

use super::IngestState;
use crate::bus::ConsumerStatus;
use crate::http::status::{Health, HealthSource, Level};
use serde_json::json;
use std::time::Duration;

/// A consumer this far behind (age of its oldest unread record) makes the
/// collector `degraded`.
pub const BEHIND: Duration = Duration::from_secs(60);

/// A consumer that has said for this long that it cannot make progress (its
/// target unreachable) makes the collector `consumer_down` (503).
pub const DOWN_AFTER: Duration = Duration::from_secs(30);

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{n} bytes")
    }
}

pub fn describe(c: &ConsumerStatus) -> String {
    let mut text = format!(
        "consumer `{}` is {} records ({}) behind",
        c.name,
        c.lag_records,
        bytes(c.lag_bytes)
    );
    if let Some(s) = c.lag_seconds {
        text.push_str(&format!(", {s} s"));
    }
    if !c.configured {
        text.push_str(
            " and not in the configuration (remove it with `logmon-collector bus consumers remove`)",
        );
    }
    if let Some(p) = &c.problem {
        text.push_str(&format!(": {p}"));
        if let Some(s) = c.problem_seconds {
            text.push_str(&format!(" (for {s} s)"));
        }
    }
    text
}

/// Whether `c` is stuck: it says it cannot make progress, is more than
/// [`BEHIND`] (plus the `allowance` seconds it trails by design) behind, or
/// is not configured and holds records.
pub fn stuck(c: &ConsumerStatus, allowance: u64) -> bool {
    c.problem.is_some()
        || c.lag_seconds
            .is_some_and(|s| s >= BEHIND.as_secs().saturating_add(allowance))
        || (!c.configured && c.lag_records > 0)
}

impl HealthSource for IngestState {
    fn health(&self) -> Health {
        if self.is_shutting_down() {
            return Health {
                level: Level::Down,
                status: "shutting_down",
                ..Health::ok()
            };
        }
        let consumers = self.bus().consumers();
        let backlog = self.bus().backlog_bytes();
        let limit = self.config().max_backlog_bytes;
        let mut reasons = Vec::new();
        let (level, status) = if backlog > limit {
            let most = consumers.iter().map(|c| c.lag_bytes).max().unwrap_or(0);
            reasons.push(format!(
                "the event bus holds {} not yet consumed, over the limit of {}: batches are refused (503) until its slowest consumers catch up",
                bytes(backlog),
                bytes(limit)
            ));
            reasons.extend(
                consumers
                    .iter()
                    .filter(|c| c.lag_bytes == most)
                    .map(describe),
            );
            (Level::Down, "backpressure")
        } else {
            reasons.extend(
                consumers
                    .iter()
                    .filter(|c| stuck(c, self.lag_allowance(&c.name)))
                    .map(describe),
            );
            let down = consumers
                .iter()
                .any(|c| c.configured && c.problem_seconds >= Some(DOWN_AFTER.as_secs()));
            if down {
                (Level::Down, "consumer_down")
            } else if reasons.is_empty() {
                (Level::Ok, "ok")
            } else {
                (Level::Degraded, "degraded")
            }
        };
        let mut details = serde_json::Map::new();
        details.insert("backlog_bytes".into(), backlog.into());
        details.insert("max_backlog_bytes".into(), limit.into());
        details.insert("consumers".into(), json!(consumers));
        Health {
            level,
            status,
            reasons,
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str, lag_seconds: u64) -> ConsumerStatus {
        ConsumerStatus {
            name: name.into(),
            configured: true,
            offset: 0,
            lag_records: 5,
            lag_bytes: 500,
            lag_seconds: Some(lag_seconds),
            problem: None,
            problem_seconds: None,
        }
    }

    #[test]
    fn a_consumer_is_behind_past_a_minute_plus_its_allowance() {
        assert!(!stuck(&consumer("influx", 59), 0));
        assert!(stuck(&consumer("influx", 60), 0));
        // The lake writer flushes every 300 s: 5 minutes behind is normal.
        assert!(!stuck(&consumer("lake", 359), 300));
        assert!(stuck(&consumer("lake", 360), 300));
        let failing = ConsumerStatus {
            problem: Some("InfluxDB unreachable".into()),
            ..consumer("influx", 0)
        };
        assert!(stuck(&failing, 300));
        let unconfigured = ConsumerStatus {
            configured: false,
            ..consumer("old", 0)
        };
        assert!(stuck(&unconfigured, 0));
    }
}
