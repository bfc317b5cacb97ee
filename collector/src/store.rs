//! The InfluxDB writer as a bus consumer (the `store` role): reads stored
//! batches, writes raw events to `http_requests` (hot tier) and per-second
//! rollups to `http_traffic` (rollup tier), and commits its bus offset only
//! after InfluxDB accepted both. An outage stalls this consumer, not ingest
//! or the engine: the bus holds the data (up to the backpressure limit).

use crate::influx::schema::{Lines, RequestEncoder, TrafficRollup, push_transition};
use crate::influx::{InfluxClient, InfluxConfig, Tier, Writer};
use crate::ingest::Bus;
use crate::outbox::Outbox;
use bytes::Bytes;
use logmon_protocol::wire::{self, Limits};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The store's consumer name in the bus.
pub const CONSUMER: &str = "influx";

/// Counters of the store consumer.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub batches: AtomicU64,
    pub points: AtomicU64,
    pub partial_writes: AtomicU64,
    /// Writes of alert transitions.
    pub alerts: AtomicU64,
    pub failures: AtomicU64,
    pub offset: AtomicU64,
}

/// Seconds behind the newest one for which collisions and rollups are tracked.
const HORIZON_SECS: u32 = 600;

/// Consume the bus into InfluxDB until `shutdown`.
pub async fn run(
    bus: Bus,
    config: InfluxConfig,
    limits: Limits,
    counters: Arc<StoreCounters>,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = InfluxClient::new(config)?;
    loop {
        match client.ensure_schema().await {
            Ok(_) => break,
            Err(e) => {
                eprintln!("logmon: InfluxDB schema not ready ({e}); retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
    let writer = Writer::new(client);
    let mut offset = {
        let bus = bus.clone();
        tokio::task::spawn_blocking(move || bus.register(CONSUMER)).await??
    };
    let mut alerts_offset = {
        let outbox = outbox.clone();
        tokio::task::spawn_blocking(move || outbox.register(CONSUMER)).await??
    };
    let mut encoder = RequestEncoder::new(HORIZON_SECS);
    let mut rollup = TrafficRollup::new(HORIZON_SECS);
    while !shutdown.is_cancelled() {
        // Alert transitions from the outbox go to the long-lived tier, in
        // the order they happened, retried until accepted like the events;
        // the outbox offset moves only after.
        let transitions = {
            let outbox = outbox.clone();
            tokio::task::spawn_blocking(move || outbox.read(alerts_offset, 1000)).await??
        };
        if let Some(&(last, _)) = transitions.last() {
            let mut pending_alerts = Lines::new();
            for (_, t) in &transitions {
                push_transition(&mut pending_alerts, t);
            }
            let body = Bytes::from(pending_alerts.into_bytes());
            if !write_until_accepted(&writer, Tier::Rollups, body, &counters, &shutdown).await {
                return Ok(());
            }
            counters
                .alerts
                .fetch_add(transitions.len() as u64, Ordering::Relaxed);
            alerts_offset = last + 1;
            let outbox = outbox.clone();
            tokio::task::spawn_blocking(move || outbox.commit(CONSUMER, alerts_offset)).await??;
        }
        let records = {
            let bus = bus.clone();
            tokio::task::spawn_blocking(move || bus.read(offset, 64, 32 << 20)).await??
        };
        let Some(&(last, _)) = records.last() else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        let mut raw = Lines::new();
        let mut points = 0u64;
        for (_, record) in &records {
            let Ok(batch) = wire::decode(record, &limits) else {
                continue;
            };
            counters.batches.fetch_add(1, Ordering::Relaxed);
            for event in &batch.events {
                encoder.push(&mut raw, &batch.host, event);
                rollup.add(&batch.host, event);
                points += 1;
            }
        }
        let mut rolled = Lines::new();
        rollup.flush(&mut rolled);
        // Retry the same lines until accepted: the offset only moves after.
        for (tier, lines) in [(Tier::Hot, raw), (Tier::Rollups, rolled)] {
            if lines.is_empty() {
                continue;
            }
            let body = Bytes::from(lines.into_bytes());
            if !write_until_accepted(&writer, tier, body, &counters, &shutdown).await {
                return Ok(());
            }
        }
        counters.points.fetch_add(points, Ordering::Relaxed);
        offset = last + 1;
        let bus = bus.clone();
        tokio::task::spawn_blocking(move || bus.commit(CONSUMER, offset)).await??;
        counters.offset.store(offset, Ordering::Relaxed);
    }
    Ok(())
}

/// Write `body` to `tier` until InfluxDB accepts it (partial writes are
/// reported, not retried). `false` when shutdown came first.
async fn write_until_accepted(
    writer: &Writer,
    tier: Tier,
    body: Bytes,
    counters: &StoreCounters,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        match writer.write(tier, body.clone()).await {
            Ok(report) => {
                if !report.partial.is_empty() {
                    counters.partial_writes.fetch_add(1, Ordering::Relaxed);
                    eprintln!("logmon: InfluxDB partial write: {:?}", report.partial);
                }
                return true;
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("logmon: InfluxDB write failed ({e}); retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
}
