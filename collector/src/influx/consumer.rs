//! The InfluxDB writer as a bus consumer (the `store` role): reads stored
//! batches, writes raw events to `http_requests` (hot tier) and per-second
//! rollups to `http_traffic` (rollup tier), and commits its bus offset only
//! after InfluxDB accepted both. An outage stalls this consumer, not ingest
//! or the engine: the bus holds the data (up to the backpressure limit).
//!
//! Restarts rewrite the same points: the collision de-duplicator and the
//! per-second rollup totals depend on every event before, so they are
//! snapshotted with the bus offset they correspond to (every
//! `SNAPSHOT_EVERY`, and at shutdown), and the bus offset is committed only
//! with a snapshot. After a crash the writer restores them and re-reads the
//! bus from that offset: each event gets the timestamp it got before (the
//! point is overwritten with itself) and each second's rollup its full total.

use crate::alerts::outbox::Outbox;
use crate::bus::EventBus;
use crate::bus::records::RecordDecoder;
use crate::influx::schema::{Lines, RequestEncoder, TrafficRollup, push_transition};
use crate::influx::{InfluxClient, InfluxConfig, Tier, Writer};
use bytes::Bytes;
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
    /// Bus records skipped as undecodable (see [`crate::bus::records`]).
    pub undecodable: AtomicU64,
    pub offset: AtomicU64,
    /// Why the writer's last call failed (it retries), until one succeeds.
    blocked: std::sync::Mutex<Option<String>>,
}

impl StoreCounters {
    fn set_blocked(&self, why: Option<String>) {
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn blocked(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Seconds behind the newest one for which collisions and rollups are tracked.
const HORIZON_SECS: u32 = 600;

/// File of the writer's snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "influx-snapshot.json";
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

/// The writer's state at a bus offset.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    bus_offset: u64,
    encoder: RequestEncoder,
    rollup: TrafficRollup,
}

/// Consume the bus into InfluxDB until `shutdown` (at once, at a consistent
/// point), or until it has written everything there is once `drain` is
/// cancelled.
pub async fn run(
    bus: Arc<dyn EventBus>,
    config: InfluxConfig,
    counters: Arc<StoreCounters>,
    outbox: Outbox,
    state_dir: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> anyhow::Result<()> {
    let client = InfluxClient::new(config)?;
    // The bus says why this consumer waits (for `/health`): from the
    // client's first failed attempt on while it retries a request, and
    // while the writer retries a call that failed.
    let watch = {
        let (client, bus, shutdown) = (client.clone(), bus.clone(), shutdown.clone());
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let mut said = None;
            loop {
                let problem = client
                    .stats()
                    .failing()
                    .map(|f| format!("InfluxDB unreachable: {f}"))
                    .or_else(|| counters.blocked());
                if problem != said {
                    bus.report_problem(CONSUMER, problem.clone());
                    said = problem;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    };
    let result = consume(bus, client, counters, outbox, state_dir, shutdown, drain).await;
    watch.abort();
    result
}

async fn consume(
    bus: Arc<dyn EventBus>,
    client: InfluxClient,
    counters: Arc<StoreCounters>,
    outbox: Outbox,
    state_dir: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> anyhow::Result<()> {
    // The positions were declared at start, before ingest accepted anything:
    // however long InfluxDB takes to answer, gc keeps every record for us.
    let committed = bus.position(CONSUMER)?;
    let mut alerts_offset = outbox.position(CONSUMER)?;
    loop {
        match client.ensure_schema().await {
            Ok(_) => {
                counters.set_blocked(None);
                break;
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "InfluxDB schema not ready; retrying");
                counters.set_blocked(Some(format!("InfluxDB schema not ready: {e}")));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
    let writer = Writer::new(client);
    let saved = match &state_dir {
        Some(dir) => crate::engine::snapshot::load_json::<Saved>(dir, SNAPSHOT_FILE)?,
        None => None,
    };
    // A snapshot behind the retained log belongs to a position an operator
    // removed (`bus consumers remove influx`): its records are gone.
    let saved = saved.filter(|s| {
        let usable = s.bus_offset >= bus.first_offset() && s.bus_offset <= bus.next_offset();
        if !usable {
            tracing::warn!(
                snapshot_offset = s.bus_offset,
                "the InfluxDB writer's snapshot is outside the retained log; starting fresh at {committed}"
            );
        }
        usable
    });
    let (mut offset, mut encoder, mut rollup) = match saved {
        Some(s) => (s.bus_offset, s.encoder, s.rollup),
        None => (
            committed,
            RequestEncoder::new(HORIZON_SECS),
            TrafficRollup::new(HORIZON_SECS),
        ),
    };
    let mut last_snapshot = std::time::Instant::now();
    let mut unsaved = false;
    let mut decoder = RecordDecoder::new(CONSUMER, bus.limits());
    // The offset is committed only with a snapshot of the state it goes with.
    let checkpoint = |offset: u64, encoder: &RequestEncoder, rollup: &TrafficRollup| {
        let bus = bus.clone();
        let saved = state_dir.as_ref().map(|dir| {
            (
                dir.clone(),
                Saved {
                    bus_offset: offset,
                    encoder: encoder.clone(),
                    rollup: rollup.clone(),
                },
            )
        });
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if let Some((dir, saved)) = saved {
                crate::engine::snapshot::save_json(&dir, SNAPSHOT_FILE, &saved)?;
            }
            bus.commit(CONSUMER, offset)?;
            Ok(())
        })
    };
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
        if unsaved && last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            checkpoint(offset, &encoder, &rollup).await??;
            counters.offset.store(offset, Ordering::Relaxed);
            last_snapshot = std::time::Instant::now();
            unsaved = false;
        }
        let Some(&(last, _)) = records.last() else {
            if drain.is_cancelled() && transitions.is_empty() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = drain.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        let mut raw = Lines::new();
        let mut points = 0u64;
        for (at, record) in &records {
            let Some(batch) = decoder.decode(*at, record, &counters.undecodable) else {
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
        unsaved = true;
    }
    if unsaved {
        checkpoint(offset, &encoder, &rollup).await??;
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
                counters.set_blocked(None);
                if !report.partial.is_empty() {
                    counters.partial_writes.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partial = ?report.partial, "InfluxDB accepted a write only in part");
                }
                return true;
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "InfluxDB write failed; retrying");
                counters.set_blocked(Some(format!("InfluxDB write failed: {e}")));
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
}
