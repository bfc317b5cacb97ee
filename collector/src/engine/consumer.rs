//! The live engine: a bus consumer that feeds stored batches into the
//! event-time engine, closes seconds by per-stream watermarks (see
//! [`crate::engine::watermark`]) or the wall clock when no stream holds time back,
//! and runs the same per-second pipeline as `replay`: rules, alert lines,
//! statistics blocks.
//!
//! Crash resilience: the engine snapshots itself (see [`crate::engine::snapshot`])
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

use super::observer::{BatchSeen, Observer};
use super::pipeline::Pipeline;
use crate::alerts::outbox::{Outbox, OutboxWriter};
use crate::bus::EventBus;
use crate::bus::records::RecordDecoder;
use crate::engine::snapshot::{self, Snapshot};
use crate::engine::watermark::Watermarks;
use crate::engine::{EventTimeEngine, Observed};
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// A file read to its end that trails the leading one by more than this
    /// in event time no longer holds time back (see
    /// [`crate::engine::watermark`]).
    pub max_skew: Duration,
    /// Events more than this far ahead of the wall clock are refused.
    pub max_future: Duration,
    /// How often time is advanced when no data arrives.
    pub tick: Duration,
    /// Records read from the bus per step.
    pub read_records: usize,
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
            max_skew: Duration::from_secs(60),
            max_future: Duration::from_secs(300),
            tick: Duration::from_millis(200),
            read_records: 64,
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
    /// Engine snapshots that could not be written (retried).
    pub snapshot_failures: AtomicU64,
    /// Why the last snapshot failed and since when (unix ms), until one is
    /// written again.
    pub snapshot_problem: std::sync::Mutex<Option<(i64, String)>>,
    /// How the engine's alert outbox appends fare (the engine waits inside
    /// one that fails, so it reports here itself).
    pub outbox_append: std::sync::Arc<crate::alerts::outbox::AppendStatus>,
    /// The rule instances as `GET /api/rules` shows them, refreshed as
    /// seconds close (at most ten times a second) and at least each second.
    pub rules: std::sync::Mutex<Vec<crate::rules::RuleStatus>>,
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
            watermarks: Watermarks::new(opts.lateness, opts.quiet_after, opts.silent_after)
                .with_max_skew(opts.max_skew.as_secs() as i64),
            offset,
        }
    }
}

/// Restore the last snapshot into `pipeline`, or start fresh at the bus's
/// committed offset; either way with an outbox writer resumed accordingly.
fn resume<O: Observer>(
    bus: &dyn EventBus,
    outbox: Option<&Outbox>,
    pipeline: &mut Pipeline<O>,
    opts: &LiveOptions,
) -> anyhow::Result<Live> {
    let committed = bus.position(CONSUMER)?;
    let saved = match &opts.snapshot_dir {
        Some(dir) => snapshot::load(dir)?,
        None => None,
    };
    // A snapshot behind the retained log belongs to a position an operator
    // removed (`bus consumers remove engine`): its records are gone.
    let saved = saved.filter(|s| {
        let usable = s.bus_offset >= bus.first_offset() && s.bus_offset <= bus.next_offset();
        if !usable {
            tracing::warn!(
                snapshot_offset = s.bus_offset,
                first = bus.first_offset(),
                next = bus.next_offset(),
                "the engine snapshot is outside the retained log; starting fresh at {committed}"
            );
        }
        usable
    });
    let (live, outbox_from) = match saved {
        Some(s) => {
            let mut live = Live::fresh(opts, s.bus_offset);
            live.engine = EventTimeEngine::restore(s.engine);
            live.watermarks.restore(&s.watermarks, Instant::now());
            pipeline.clock.restore(s.interval);
            if let Err(fresh) = pipeline.rules.restore(&s.rules) {
                for line in fresh {
                    tracing::warn!("rule state: {line}");
                }
            }
            tracing::info!(
                offset = s.bus_offset,
                committed,
                "engine restored from its snapshot at bus offset {}",
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
        outbox.position(CONSUMER)?;
        pipeline.outbox = Some(OutboxWriter::resume(outbox.clone(), outbox_from)?);
    }
    Ok(live)
}

fn take_snapshot<O: Observer>(
    bus: &dyn EventBus,
    live: &Live,
    pipeline: &mut Pipeline<O>,
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
                pipeline.observer.quarantine(q)?;
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
        taken_at_ms: crate::clock::now_ms() as u64,
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
pub fn run<O: Observer>(
    bus: &dyn EventBus,
    outbox: Option<&Outbox>,
    mut pipeline: Pipeline<O>,
    opts: &LiveOptions,
    counters: &LiveCounters,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Pipeline<O>> {
    // The watched rules load before the snapshot is restored, so they get
    // their saved state back too.
    let mut rules_dir = opts
        .rules_dir
        .as_ref()
        .map(crate::rules::reload::RulesDir::new);
    if let Some(d) = &mut rules_dir {
        for line in d.poll(&mut pipeline.rules) {
            tracing::info!("{line}");
        }
    }
    let mut last_reload = Instant::now();
    let mut live = resume(bus, outbox, &mut pipeline, opts)?;
    if let Some(writer) = &mut pipeline.outbox {
        writer.watch(std::sync::Arc::clone(&counters.outbox_append), stop.clone());
    }
    let max_future = opts.max_future.as_secs() as i64;
    let mut last_snapshot = Instant::now();
    let mut dirty = false;
    let mut closed_before = live.engine.counters().seconds_closed;
    let mut catching_up = true;
    let mut last_lag_report: Option<Instant> = None;
    let mut last_late_log: Option<Instant> = None;
    let mut last_view: Option<Instant> = None;
    let mut late_unlogged = 0u64;
    let mut decoder = RecordDecoder::new(CONSUMER, bus.limits());
    while !stop.is_cancelled() {
        let records = bus.read(live.offset, opts.read_records, 64 << 20)?;
        let now = Instant::now();
        let wall = crate::clock::now_seconds();
        for (at, record) in &records {
            if crate::faults::engine_fails_at() == Some(*at) {
                anyhow::bail!("fault injection: failing at bus record {at}");
            }
            live.offset = at + 1;
            let Some(batch) = decoder.decode(*at, record, &counters.undecodable) else {
                continue;
            };
            if batch.events.is_empty() {
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.batches.fetch_add(1, Ordering::Relaxed);
            }
            let stream = batch.stream_key();
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
            pipeline.observer.batch(&BatchSeen {
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
            if late > 0 {
                counters.late.fetch_add(late, Ordering::Relaxed);
                late_unlogged += late;
                if last_late_log.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
                {
                    tracing::warn!(
                        events = late_unlogged,
                        agent = %batch.agent_id,
                        stream = %batch.stream.path,
                        trailing_seconds = live.watermarks.trailing(&stream),
                        second = oldest_late,
                        closed_to = live.engine.next_to_close().unwrap_or_default(),
                        "late events (counted, stored, not evaluated)"
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
        pipeline.observer.flush()?;
        counters.offset.store(live.offset, Ordering::Relaxed);
        let lag = bus.next_offset().saturating_sub(live.offset);
        counters.lag_records.store(lag, Ordering::Relaxed);
        if catching_up {
            if lag == 0 {
                catching_up = false;
                tracing::info!(offset = live.offset, "engine caught up");
            } else if last_lag_report
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(2))
            {
                tracing::info!(lag_records = lag, "engine catching up");
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
            // A snapshot that cannot be written (a full disk) is tried again
            // at the next interval: the bus offset is committed only after a
            // snapshot is durable, so a restart meanwhile replays from the
            // last good one and loses nothing.
            match take_snapshot(bus, &live, &mut pipeline, opts, counters) {
                Ok(()) => {
                    dirty = false;
                    *lock(&counters.snapshot_problem) = None;
                }
                Err(e) => {
                    counters.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                    let mut problem = lock(&counters.snapshot_problem);
                    if problem.is_none() {
                        tracing::warn!(error = %format!("{e:#}"), "engine snapshot failed; retrying at each interval");
                    }
                    let since = problem.as_ref().map_or_else(crate::clock::now_ms, |p| p.0);
                    *problem = Some((since, format!("{e:#}")));
                }
            }
            last_snapshot = now;
        }
        if let Some(d) = &mut rules_dir
            && now.duration_since(last_reload) >= Duration::from_secs(2)
        {
            for line in d.poll(&mut pipeline.rules) {
                tracing::info!("{line}");
            }
            last_reload = now;
        }
        // The rules view follows every closed second (throttled to 10 Hz).
        if last_view.is_none_or(|at| {
            let age = now.duration_since(at);
            age >= Duration::from_secs(1) || (seconds_closed && age >= Duration::from_millis(100))
        }) {
            let view: Vec<crate::rules::RuleStatus> = pipeline
                .rules
                .instances()
                .iter()
                .map(|i| i.view())
                .collect();
            *counters.rules.lock().unwrap_or_else(|e| e.into_inner()) = view;
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Move the global watermark and close the seconds it passed.
fn advance<O: Observer>(
    live: &mut Live,
    pipeline: &mut Pipeline<O>,
    now: Instant,
    wall: i64,
    counters: &LiveCounters,
) {
    if let Some(w) = live.watermarks.advance(now, wall) {
        live.engine.start_at(w);
        live.engine.close_before(w, pipeline);
        counters.watermark.store(w.max(0) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    //! The live engine's time under an injected clock: the `advance` the
    //! run loop calls, given `Instant`s and wall seconds by the test.
    use super::*;
    use crate::engine::SecondStats;
    use crate::engine::stats::{StatsClock, StatsReport};
    use crate::rules::{AlertState, RuleRuntime, RuleSet, RuleSpec, SandboxLimits, Transition};
    use logmon_protocol::Event;
    use logmon_protocol::event::NANOS_PER_SEC;

    #[derive(Debug, Default)]
    struct Recorder {
        /// Seconds told one by one.
        seconds: u64,
        /// Runs told at once.
        silences: Vec<(i64, i64)>,
        quiet: Vec<(i64, i64)>,
        blocks: Vec<(i64, u64)>,
        transitions: Vec<Transition>,
    }

    impl Observer for Recorder {
        fn second(&mut self, _: &SecondStats) -> std::io::Result<()> {
            self.seconds += 1;
            Ok(())
        }
        fn silence(&mut self, from: i64, to: i64) -> std::io::Result<()> {
            self.silences.push((from, to));
            Ok(())
        }
        fn quiet(&mut self, from: i64, to: i64) -> std::io::Result<()> {
            self.quiet.push((from, to));
            Ok(())
        }
        fn stats(&mut self, r: &StatsReport) -> std::io::Result<()> {
            self.blocks.push((r.start, r.hits));
            Ok(())
        }
        fn transition(&mut self, t: &Transition) -> std::io::Result<()> {
            self.transitions.push(t.clone());
            Ok(())
        }
    }

    fn pipeline() -> Pipeline<Recorder> {
        let runtime = RuleRuntime::new(SandboxLimits::default()).unwrap();
        let mut rules = RuleSet::new(runtime);
        rules.add(&RuleSpec::high_traffic(10.0, 120)).unwrap();
        Pipeline::new(rules, StatsClock::new(10, 5), Recorder::default())
    }

    const START: i64 = 1_700_000_000;
    const STREAM: (&str, u64) = ("agent-a", 7);

    /// 20 requests a second for 200 s from START, through the live path:
    /// heard, observed, inserted, time advanced after each second.
    fn busy(live: &mut Live, p: &mut Pipeline<impl Observer>, t0: Instant) {
        let stream = logmon_protocol::wire::StreamKey {
            agent_id: STREAM.0.to_owned(),
            fingerprint: STREAM.1,
        };
        let counters = LiveCounters::default();
        for i in 0..200 {
            let second = START + i;
            let now = t0 + Duration::from_secs(i as u64);
            live.watermarks
                .heard(&stream, second * NANOS_PER_SEC, true, now);
            for n in 0..20 {
                let event = Event {
                    timestamp: second * NANOS_PER_SEC + n,
                    client: "10.0.0.1".into(),
                    method: "GET".into(),
                    path: "/api/user".into(),
                    status: 200,
                    bytes: 10,
                    ..Event::empty()
                };
                live.watermarks.observe(&stream, second);
                live.engine.insert(&event);
            }
            advance(live, p, now, second, &counters);
        }
    }

    /// `(instant offset, wall second)` steps after the busy part.
    fn idle(live: &mut Live, p: &mut Pipeline<impl Observer>, t0: Instant, steps: &[(u64, i64)]) {
        let counters = LiveCounters::default();
        for &(after, wall) in steps {
            advance(live, p, t0 + Duration::from_secs(after), wall, &counters);
        }
    }

    /// Every closed second evaluated one by one: the engine's close hands
    /// seconds to a closure, whose silences go second by second.
    fn brute(steps: &[(u64, i64)]) -> Vec<Transition> {
        let mut live = Live::fresh(&LiveOptions::default(), 0);
        let mut p = pipeline();
        let t0 = Instant::now();
        busy(&mut live, &mut p, t0);
        for &(after, wall) in steps {
            if let Some(w) = live
                .watermarks
                .advance(t0 + Duration::from_secs(after), wall)
            {
                live.engine
                    .close_before(w, &mut |s: &SecondStats| p.on_second(s));
            }
        }
        assert!(p.observer.silences.is_empty());
        p.observer.transitions
    }

    #[test]
    fn hours_of_silence_cost_what_happens_in_them_with_the_same_transitions() {
        let days = 3 * 86_400;
        // Quiet for 40 s (the stream stops holding time), then the wall
        // clock three days on.
        let steps = [(240, START + 240), (days as u64, START + days)];
        let t0 = Instant::now();
        let mut live = Live::fresh(&LiveOptions::default(), 0);
        let mut p = pipeline();
        busy(&mut live, &mut p, t0);
        idle(&mut live, &mut p, t0, &steps);
        let r = &p.observer;
        let want = brute(&steps);
        let at: Vec<(AlertState, i64)> = want.iter().map(|t| (t.state, t.at)).collect();
        // Fires at the 61st busy second; the average drops below 10 at
        // the 61st second after the last busy one.
        assert_eq!(
            at,
            [
                (AlertState::Firing, START + 60),
                (AlertState::Resolved, START + 260)
            ]
        );
        assert_eq!(r.transitions, want);
        // Everything closed up to the watermark, but only the seconds up to
        // where the rule is steady were evaluated.
        let closed_to = START + days - 5;
        assert_eq!(live.engine.next_to_close(), Some(closed_to));
        assert_eq!(p.summary.seconds, (closed_to - START) as u64);
        let evaluations = p.rules.instances()[0].health.evaluations;
        assert!(evaluations < 1_000, "{evaluations} evaluations");
        // One quiet run between the block boundaries inside the silence;
        // the blocks before and after it were told, the skipped seconds at once.
        assert_eq!(r.quiet.len(), 1, "{:?}", r.quiet);
        let (q_from, q_to) = r.quiet[0];
        assert_eq!(q_from, START + 240);
        assert_eq!(q_to, closed_to - closed_to.rem_euclid(10));
        assert_eq!(r.silences.len(), 1);
        assert_eq!(r.silences[0].1, q_to);
        assert!(r.blocks.iter().all(|&(s, _)| s < q_from || s >= q_to));
        assert_eq!(r.blocks.iter().map(|b| b.1).sum::<u64>(), 200 * 20);
    }

    #[test]
    fn a_wall_clock_jump_while_idle_costs_nothing_and_changes_no_alert() {
        let hours = 3 * 3600;
        let settle = [(300, START + 300), (400, START + 400)];
        let t0 = Instant::now();
        let mut live = Live::fresh(&LiveOptions::default(), 0);
        let mut p = pipeline();
        busy(&mut live, &mut p, t0);
        idle(&mut live, &mut p, t0, &settle);
        let before = p.observer.transitions.len();
        let evaluated = p.rules.instances()[0].health.evaluations;
        // +3 h on the wall clock, one second on the monotonic one.
        idle(&mut live, &mut p, t0, &[(401, START + 400 + hours)]);
        assert_eq!(p.observer.transitions.len(), before);
        assert_eq!(live.engine.next_to_close(), Some(START + 400 + hours - 5));
        // The rule was steady already: not one evaluation for three hours.
        assert_eq!(p.rules.instances()[0].health.evaluations, evaluated + 2);
        assert_eq!(p.observer.quiet.len(), 1);
        // −3 h: time does not go back, nothing closes twice.
        let closed = live.engine.counters().seconds_closed;
        idle(&mut live, &mut p, t0, &[(402, START + 400 - hours)]);
        assert_eq!(live.engine.counters().seconds_closed, closed);
        assert_eq!(p.observer.transitions.len(), before);
    }
}
