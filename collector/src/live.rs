//! The live engine: a bus consumer that feeds stored batches into the
//! event-time engine, closes seconds by per-stream watermarks (see
//! [`crate::watermark`]) or the wall clock when no stream holds time back,
//! and runs the same per-second pipeline as `replay`: rules, alert lines,
//! statistics blocks.
//!
//! Crash resilience: the engine snapshots itself (see [`crate::snapshot`])
//! every `snapshot_every` and at shutdown, and commits its bus offset only
//! after the snapshot is durable. On start it restores the snapshot and
//! replays the bus from its offset as fast as it can read, reporting its lag
//! until caught up; transitions the replay produces again are recognised by
//! the outbox and neither stored nor printed twice. Time advances after every
//! record, so the seconds closed, and the transitions, depend on the bus
//! records and not on how reads happen to be cut.
//!
//! Runs on its own thread: the engine and the rule host are synchronous.
//! Events further ahead of the wall clock than `max_future` are refused
//! (counted), so one bad timestamp cannot make the engine hold years of open
//! seconds.

use crate::console::Pipeline;
use crate::engine::{EventTimeEngine, Observed};
use crate::ingest::Bus;
use crate::outbox::{Outbox, OutboxWriter};
use crate::snapshot::{self, Snapshot};
use crate::watermark::Watermarks;
use anyhow::Context as _;
use logmon_protocol::wire::{self, Limits};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The engine's consumer name in the bus.
pub const CONSUMER: &str = "engine";

/// Live engine settings.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub lateness: u32,
    /// A stream its agent has said nothing of for this long (agent clock),
    /// while the agent kept sending, no longer holds time back.
    pub quiet_after: Duration,
    /// An agent heard nothing from for this long no longer holds time back.
    pub silent_after: Duration,
    /// Events more than this far ahead of the wall clock are refused.
    pub max_future: Duration,
    /// How often time is advanced when no data arrives.
    pub tick: Duration,
    /// Records read from the bus per step.
    pub read_records: usize,
    pub limits: Limits,
    /// Where snapshots go; `None` runs without (and starts from the bus's
    /// committed offset with a fresh engine).
    pub snapshot_dir: Option<PathBuf>,
    pub snapshot_every: Duration,
    /// A watched directory of rule components (see [`crate::rules::reload`]).
    pub rules_dir: Option<PathBuf>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            lateness: 5,
            quiet_after: Duration::from_secs(30),
            silent_after: Duration::from_secs(30),
            max_future: Duration::from_secs(300),
            tick: Duration::from_millis(200),
            read_records: 64,
            limits: Limits::default(),
            snapshot_dir: None,
            snapshot_every: Duration::from_secs(5),
            rules_dir: None,
        }
    }
}

/// Counters of the live engine, readable from other threads.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub batches: AtomicU64,
    pub heartbeats: AtomicU64,
    pub events: AtomicU64,
    pub late: AtomicU64,
    pub future: AtomicU64,
    pub undecodable: AtomicU64,
    pub watermark: AtomicU64,
    pub offset: AtomicU64,
    /// Records between the engine and the bus's end (catch-up lag).
    pub lag_records: AtomicU64,
    pub snapshots: AtomicU64,
    /// Transitions a replay produced again and the outbox recognised.
    pub replayed_transitions: AtomicU64,
    /// The rule instances as `GET /api/rules` shows them, refreshed as
    /// seconds close (at most ten times a second) and at least each second.
    pub rules: std::sync::Mutex<serde_json::Value>,
}

fn wall_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The engine's moving parts between two snapshots.
struct Live {
    engine: EventTimeEngine,
    watermarks: Watermarks,
    offset: u64,
}

impl Live {
    fn fresh(opts: &LiveOptions, offset: u64) -> Live {
        Live {
            engine: EventTimeEngine::new(opts.lateness),
            watermarks: Watermarks::new(opts.lateness, opts.quiet_after, opts.silent_after),
            offset,
        }
    }
}

/// Restore the last snapshot into `pipeline`, or start fresh at the bus's
/// committed offset; either way with an outbox writer resumed accordingly.
fn resume<W: Write>(
    bus: &Bus,
    outbox: Option<&Outbox>,
    pipeline: &mut Pipeline<W>,
    opts: &LiveOptions,
) -> anyhow::Result<Live> {
    let committed = bus.register(CONSUMER)?;
    let saved = match &opts.snapshot_dir {
        Some(dir) => snapshot::load(dir)?,
        None => None,
    };
    let (live, outbox_from) = match saved {
        Some(s) => {
            let mut live = Live::fresh(opts, s.bus_offset);
            live.engine = EventTimeEngine::restore(s.engine);
            live.watermarks.restore(&s.watermarks, Instant::now());
            pipeline.clock.restore(s.interval);
            if let Err(fresh) = pipeline.rules.restore(&s.rules) {
                for line in fresh {
                    eprintln!("logmon: rule state: {line}");
                }
            }
            eprintln!(
                "logmon: engine restored from its snapshot at bus offset {} (bus committed {committed})",
                s.bus_offset
            );
            (live, s.outbox_offset)
        }
        None => {
            let from = outbox.map_or(0, Outbox::next_offset);
            (Live::fresh(opts, committed), from)
        }
    };
    if let Some(outbox) = outbox {
        // The outbox keeps what follows the snapshot for the dedup above.
        outbox.register(CONSUMER)?;
        pipeline.outbox = Some(OutboxWriter::resume(outbox.clone(), outbox_from)?);
    }
    Ok(live)
}

fn take_snapshot<W: Write>(
    bus: &Bus,
    live: &Live,
    pipeline: &mut Pipeline<W>,
    opts: &LiveOptions,
    counters: &LiveCounters,
) -> anyhow::Result<()> {
    let Some(dir) = &opts.snapshot_dir else {
        bus.commit(CONSUMER, live.offset)?;
        return Ok(());
    };
    let rules = match pipeline.rules.save() {
        Ok(rules) => rules,
        Err(quarantined) => {
            for q in &quarantined {
                pipeline.printer.quarantine(q)?;
            }
            // The quarantined rules are left out; the others are saved.
            pipeline.rules.save().unwrap_or_default()
        }
    };
    let snap = Snapshot {
        bus_offset: live.offset,
        outbox_offset: pipeline
            .outbox
            .as_ref()
            .map_or(0, |o| o.outbox().next_offset()),
        engine: live.engine.save(),
        watermarks: live.watermarks.save(),
        interval: pipeline.clock.save(),
        rules,
        taken_at_ms: unix_ms(),
    };
    snapshot::save(dir, &snap).context("writing the engine snapshot")?;
    bus.commit(CONSUMER, live.offset)?;
    if let Some(o) = &pipeline.outbox {
        o.outbox().commit(CONSUMER, snap.outbox_offset)?;
    }
    counters.snapshots.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Consume the bus until `stop` is set, snapshotting as configured.
pub fn run<W: Write>(
    bus: &Bus,
    outbox: Option<&Outbox>,
    mut pipeline: Pipeline<W>,
    opts: &LiveOptions,
    counters: &LiveCounters,
    stop: &AtomicBool,
) -> anyhow::Result<Pipeline<W>> {
    // The watched rules load before the snapshot is restored, so they get
    // their saved state back too.
    let mut rules_dir = opts
        .rules_dir
        .as_ref()
        .map(crate::rules::reload::RulesDir::new);
    if let Some(d) = &mut rules_dir {
        for line in d.poll(&mut pipeline.rules) {
            eprintln!("logmon: {line}");
        }
    }
    let mut last_reload = Instant::now();
    let mut live = resume(bus, outbox, &mut pipeline, opts)?;
    let max_future = opts.max_future.as_secs() as i64;
    let mut last_snapshot = Instant::now();
    let mut dirty = false;
    let mut closed_before = live.engine.counters().seconds_closed;
    let mut catching_up = true;
    let mut last_lag_report: Option<Instant> = None;
    let mut last_late_log: Option<Instant> = None;
    let mut last_view: Option<Instant> = None;
    let mut late_unlogged = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let records = bus.read(live.offset, opts.read_records, 64 << 20)?;
        let now = Instant::now();
        let wall = wall_seconds();
        for (at, record) in &records {
            live.offset = at + 1;
            let batch = match wire::decode(record, &opts.limits) {
                Ok(b) => b,
                Err(_) => {
                    counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if batch.events.is_empty() {
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.batches.fetch_add(1, Ordering::Relaxed);
            }
            let stream = (batch.agent_id.clone(), batch.stream.fingerprint);
            let mut late = 0u64;
            let mut oldest_late = i64::MAX;
            let mut counted = 0u64;
            let mut newest = None;
            live.watermarks
                .heard(&stream, batch.sent_at, batch.caught_up, now);
            if batch.finished {
                live.watermarks.finished(&stream);
            }
            for event in &batch.events {
                let second = event.second();
                if second > wall + max_future {
                    counters.future.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                live.watermarks.observe(&stream, second);
                counters.events.fetch_add(1, Ordering::Relaxed);
                counted += 1;
                newest = newest.max(Some(second));
                if live.engine.insert(event) == Observed::Late {
                    late += 1;
                    oldest_late = oldest_late.min(second);
                }
            }
            if let Some(hub) = &pipeline.dashboard {
                hub.batch(&crate::dashboard::BatchSeen {
                    agent: &batch.agent_id,
                    host: &batch.host,
                    fingerprint: batch.stream.fingerprint,
                    path: &batch.stream.path,
                    sent_at: batch.sent_at,
                    caught_up: batch.caught_up,
                    finished: batch.finished,
                    events: counted,
                    newest,
                });
            }
            if late > 0 {
                counters.late.fetch_add(late, Ordering::Relaxed);
                late_unlogged += late;
                if last_late_log.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
                {
                    eprintln!(
                        "logmon: {late_unlogged} late events (counted, stored, not evaluated); latest from {} {}: second {oldest_late}, already closed up to {}",
                        batch.agent_id,
                        batch.stream.path,
                        live.engine.next_to_close().unwrap_or_default()
                    );
                    last_late_log = Some(now);
                    late_unlogged = 0;
                }
            }
            advance(&mut live, &mut pipeline, now, wall, counters);
        }
        if records.is_empty() {
            advance(&mut live, &mut pipeline, now, wall, counters);
        }
        if let Some(e) = pipeline.error.take() {
            return Err(e.into());
        }
        pipeline.printer.flush()?;
        counters.offset.store(live.offset, Ordering::Relaxed);
        let lag = bus.next_offset().saturating_sub(live.offset);
        counters.lag_records.store(lag, Ordering::Relaxed);
        if catching_up {
            if lag == 0 {
                catching_up = false;
                eprintln!("logmon: engine caught up at bus offset {}", live.offset);
            } else if last_lag_report
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(2))
            {
                eprintln!("logmon: engine catching up: {lag} bus records behind");
                last_lag_report = Some(now);
            }
        }
        if let Some(o) = &pipeline.outbox {
            counters
                .replayed_transitions
                .store(o.replayed, Ordering::Relaxed);
        }
        let closed = live.engine.counters().seconds_closed;
        let seconds_closed = closed != closed_before;
        dirty |= !records.is_empty() || seconds_closed;
        closed_before = closed;
        if dirty && now.duration_since(last_snapshot) >= opts.snapshot_every {
            take_snapshot(bus, &live, &mut pipeline, opts, counters)?;
            last_snapshot = now;
            dirty = false;
        }
        if let Some(d) = &mut rules_dir
            && now.duration_since(last_reload) >= Duration::from_secs(2)
        {
            for line in d.poll(&mut pipeline.rules) {
                eprintln!("logmon: {line}");
            }
            last_reload = now;
        }
        // The rules view follows every closed second (throttled to 10 Hz).
        if last_view.is_none_or(|at| {
            let age = now.duration_since(at);
            age >= Duration::from_secs(1) || (seconds_closed && age >= Duration::from_millis(100))
        }) {
            let view: Vec<serde_json::Value> = pipeline
                .rules
                .instances()
                .iter()
                .map(|i| i.view())
                .collect();
            *counters.rules.lock().unwrap_or_else(|e| e.into_inner()) = view.into();
            last_view = Some(now);
        }
        if records.is_empty() {
            std::thread::sleep(opts.tick);
        }
        live.watermarks.expire(now, Duration::from_secs(3600));
    }
    take_snapshot(bus, &live, &mut pipeline, opts, counters)?;
    Ok(pipeline)
}

/// Move the global watermark and close the seconds it passed.
fn advance<W: Write>(
    live: &mut Live,
    pipeline: &mut Pipeline<W>,
    now: Instant,
    wall: i64,
    counters: &LiveCounters,
) {
    if let Some(w) = live.watermarks.advance(now, wall) {
        live.engine.start_at(w);
        live.engine.close_before(w, &mut |s| pipeline.on_second(s));
        counters.watermark.store(w.max(0) as u64, Ordering::Relaxed);
    }
}
