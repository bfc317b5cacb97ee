//! The live engine: a bus consumer that feeds stored batches into the
//! event-time engine, closes seconds by per-stream watermarks (or the wall
//! clock when every stream is idle) and runs the same per-second pipeline as
//! `replay`: rules, alert lines, statistics blocks.
//!
//! Runs on its own thread: the engine and the rule host are synchronous.
//! Events further ahead of the wall clock than `max_future` are refused
//! (counted), so one bad timestamp cannot make the engine hold years of open
//! seconds.

use crate::console::Pipeline;
use crate::engine::{EventTimeEngine, Observed};
use crate::ingest::Bus;
use crate::watermark::Watermarks;
use logmon_protocol::wire::{self, Limits};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The engine's consumer name in the bus.
pub const CONSUMER: &str = "engine";

/// Live engine settings.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub lateness: u32,
    /// A stream with no event for this long no longer holds time back.
    pub idle_after: Duration,
    /// Events more than this far ahead of the wall clock are refused.
    pub max_future: Duration,
    /// How often time is advanced when no data arrives.
    pub tick: Duration,
    /// Records read from the bus per step.
    pub read_records: usize,
    pub limits: Limits,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            lateness: 5,
            idle_after: Duration::from_secs(10),
            max_future: Duration::from_secs(300),
            tick: Duration::from_millis(200),
            read_records: 64,
            limits: Limits::default(),
        }
    }
}

/// Counters of the live engine, readable from other threads.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub late: AtomicU64,
    pub future: AtomicU64,
    pub undecodable: AtomicU64,
    pub watermark: AtomicU64,
    pub offset: AtomicU64,
}

fn wall_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Consume the bus from the engine's committed offset until `stop` is set.
pub fn run<W: Write>(
    bus: &Bus,
    mut pipeline: Pipeline<W>,
    opts: &LiveOptions,
    counters: &LiveCounters,
    stop: &AtomicBool,
) -> anyhow::Result<Pipeline<W>> {
    let mut offset = bus.register(CONSUMER)?;
    let mut engine = EventTimeEngine::new(opts.lateness);
    let mut watermarks: Watermarks<(String, u64)> = Watermarks::new(opts.lateness, opts.idle_after);
    let max_future = opts.max_future.as_secs() as i64;
    while !stop.load(Ordering::Relaxed) {
        let records = bus.read(offset, opts.read_records, 64 << 20)?;
        let now = Instant::now();
        let wall = wall_seconds();
        for (at, record) in &records {
            offset = at + 1;
            let batch = match wire::decode(record, &opts.limits) {
                Ok(b) => b,
                Err(_) => {
                    counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            counters.batches.fetch_add(1, Ordering::Relaxed);
            let stream = (batch.agent_id.clone(), batch.stream.fingerprint);
            for event in &batch.events {
                let second = event.second();
                if second > wall + max_future {
                    counters.future.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                watermarks.observe(&stream, second, now);
                counters.events.fetch_add(1, Ordering::Relaxed);
                if engine.insert(event) == Observed::Late {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(w) = watermarks.advance(now, wall) {
            engine.start_at(w);
            engine.close_before(w, &mut |s| pipeline.on_second(s));
            counters.watermark.store(w.max(0) as u64, Ordering::Relaxed);
        }
        if let Some(e) = pipeline.error.take() {
            return Err(e.into());
        }
        pipeline.printer.flush()?;
        if !records.is_empty() {
            bus.commit(CONSUMER, offset)?;
            counters.offset.store(offset, Ordering::Relaxed);
        } else {
            std::thread::sleep(opts.tick);
        }
        watermarks.expire(now, Duration::from_secs(3600));
    }
    Ok(pipeline)
}
