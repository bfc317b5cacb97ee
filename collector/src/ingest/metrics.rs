//! Ingest counters and their Prometheus text rendering.
//!
//! Everything is a relaxed atomic: counters only grow, gauges are set by
//! their single owner, and a scrape may see them a moment apart.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a batch was not stored (besides being a duplicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Unauthorized,
    TooLarge,
    Corrupt,
    Empty,
    UnsupportedVersion,
    BadRange,
    Overlap,
    Backpressure,
    BusError,
    ShuttingDown,
    DiskFull,
    Forbidden,
    RateLimited,
    BodyTimeout,
    /// A pipelined batch that came before the one it follows (409; the agent
    /// sends it again after that one).
    Early,
}

impl Rejection {
    pub const ALL: [Rejection; 15] = [
        Rejection::Unauthorized,
        Rejection::TooLarge,
        Rejection::Corrupt,
        Rejection::Empty,
        Rejection::UnsupportedVersion,
        Rejection::BadRange,
        Rejection::Overlap,
        Rejection::Backpressure,
        Rejection::BusError,
        Rejection::ShuttingDown,
        Rejection::DiskFull,
        Rejection::Forbidden,
        Rejection::RateLimited,
        Rejection::BodyTimeout,
        Rejection::Early,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::TooLarge => "too_large",
            Rejection::Corrupt => "corrupt",
            Rejection::Empty => "empty",
            Rejection::UnsupportedVersion => "unsupported_version",
            Rejection::BadRange => "bad_range",
            Rejection::Overlap => "overlap",
            Rejection::Backpressure => "backpressure",
            Rejection::BusError => "bus_error",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::DiskFull => "disk_full",
            Rejection::Forbidden => "forbidden",
            Rejection::RateLimited => "rate_limited",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Early => "early",
        }
    }
}

/// Upper bounds (seconds) of the bus append latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The ingest counters. Shared by the HTTP handlers and the bus writer.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    pub(crate) events: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) gap_bytes: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) appended_records: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    pub(crate) backlog_bytes: AtomicU64,
    /// Shared with the HTTP server, which counts its connections in it.
    pub(crate) active_connections: std::sync::Arc<AtomicU64>,
}

impl Metrics {
    pub(crate) fn reject(&self, why: Rejection) {
        let i = Rejection::ALL
            .iter()
            .position(|r| *r == why)
            .expect("listed");
        self.rejected[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn observe_append(&self, records: usize, took: Duration) {
        self.appends.fetch_add(1, Relaxed);
        self.appended_records.fetch_add(records as u64, Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
                break;
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Batches stored in the bus.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Batches acknowledged as already stored.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Relaxed)
    }

    /// Batches refused for `why`.
    pub fn rejected(&self, why: Rejection) -> u64 {
        let i = Rejection::ALL
            .iter()
            .position(|r| *r == why)
            .expect("listed");
        self.rejected[i].load(Relaxed)
    }

    /// Events in stored batches.
    pub fn events(&self) -> u64 {
        self.events.load(Relaxed)
    }

    /// Group commits: `append` calls on the bus (one fsync each).
    pub fn bus_appends(&self) -> u64 {
        self.appends.load(Relaxed)
    }

    /// Records written by those appends.
    pub fn bus_records(&self) -> u64 {
        self.appended_records.load(Relaxed)
    }

    /// Batches stored after a gap in their stream.
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Relaxed)
    }

    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Relaxed)
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    /// The gauge of open connections, for the HTTP server to keep.
    pub fn connections(&self) -> std::sync::Arc<AtomicU64> {
        std::sync::Arc::clone(&self.active_connections)
    }

    pub fn render(&self) -> String {
        use logmon_protocol::prometheus::{Kind, Text};
        let mut text = Text::new();
        for (name, help, value) in [
            (
                "logmon_ingest_batches_accepted_total",
                "Batches made durable in the event bus.",
                self.accepted(),
            ),
            (
                "logmon_ingest_batches_duplicate_total",
                "Batches acknowledged without storing because they were stored before.",
                self.duplicates(),
            ),
            (
                "logmon_ingest_events_accepted_total",
                "Events in batches made durable.",
                self.events(),
            ),
            (
                "logmon_ingest_bytes_received_total",
                "Request body bytes received on POST /v1/batches (compressed).",
                self.bytes_received.load(Relaxed),
            ),
            (
                "logmon_ingest_stream_gaps_total",
                "Batches stored that start past the stored end of their stream.",
                self.gaps(),
            ),
            (
                "logmon_ingest_stream_gap_bytes_total",
                "Stream bytes skipped by those gaps (never received).",
                self.gap_bytes.load(Relaxed),
            ),
            (
                "logmon_ingest_bus_appends_total",
                "Group commits to the event bus (one fsync each).",
                self.bus_appends(),
            ),
            (
                "logmon_ingest_bus_records_total",
                "Records written to the event bus by group commits.",
                self.bus_records(),
            ),
        ] {
            text.single(name, Kind::Counter, help, value);
        }

        let name = "logmon_ingest_batches_rejected_total";
        text.family(name, Kind::Counter, "Batches refused, by reason.");
        for why in Rejection::ALL {
            text.sample(name, &[("reason", why.label())], self.rejected(why));
        }

        let name = "logmon_ingest_bus_append_seconds";
        text.family(
            name,
            Kind::Histogram,
            "Latency of one group commit to the event bus (write and fsync).",
        );
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += count.load(Relaxed);
            text.sample(&bucket, &[("le", &bound.to_string())], cumulative);
        }
        let count = self.latency_count.load(Relaxed);
        let sum = self.latency_sum_ns.load(Relaxed) as f64 / 1e9;
        text.sample(&bucket, &[("le", "+Inf")], count);
        text.sample(&format!("{name}_sum"), &[], sum);
        text.sample(&format!("{name}_count"), &[], count);

        text.single(
            "logmon_ingest_bus_backlog_bytes",
            Kind::Gauge,
            "Event bus bytes not yet consumed by the slowest consumer.",
            self.backlog_bytes.load(Relaxed),
        );
        text.single(
            "logmon_ingest_active_connections",
            Kind::Gauge,
            "Open client connections.",
            self.active_connections(),
        );
        text.into_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = Metrics::default();
        m.accepted.fetch_add(3, Relaxed);
        m.reject(Rejection::Overlap);
        m.observe_append(5, Duration::from_micros(700));
        let text = m.render();
        assert!(text.contains("logmon_ingest_batches_accepted_total 3\n"));
        assert!(text.contains("logmon_ingest_batches_rejected_total{reason=\"overlap\"} 1\n"));
        assert!(text.contains("logmon_ingest_bus_append_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("logmon_ingest_bus_append_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("logmon_ingest_bus_append_seconds_count 1\n"));
        assert!(text.contains("logmon_ingest_bus_records_total 5\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {name}"
            );
        }
    }
}
