//! `logmon-collector serve`: the live collector in one process (the embedded
//! deployment): the ingest API makes batches durable in the local bus; the
//! live engine consumes the bus and prints the same statistics and alert lines
//! as `replay`, and feeds the web dashboard served on the same listener;
//! segments every consumer has passed are deleted.
//!
//! Shutdown (SIGINT/SIGTERM): stop intake and drain requests, stop the bus
//! writer (answering what was queued), stop the engine, persist dedup state.

use crate::bus::{LogConfig, SegmentLog};
use crate::console::Pipeline;
use crate::ingest::{self, IngestConfig, IngestState};
use crate::live::{self, LiveCounters, LiveOptions};
use crate::output::{OutputKind, Printer};
use crate::rules::{RuleRuntime, RuleSet, RuleSpec, SandboxLimits};
use crate::stats::StatsClock;
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub ingest: IngestConfig,
    pub live: LiveOptions,
    pub threshold: f64,
    pub window: u32,
    pub rules: Vec<RuleSpec>,
    pub output: OutputKind,
    pub stats_every: u32,
    pub top: usize,
    pub limits: SandboxLimits,
    /// How often segments every consumer passed are deleted.
    pub gc_every: Duration,
    /// Where transitions are sent besides the console and InfluxDB.
    pub notify: Vec<crate::notify::Target>,
    /// Rule instance → severity label (from the config file).
    pub severity: std::collections::BTreeMap<String, String>,
    /// Rule instance → the only targets it notifies.
    pub routes: std::collections::BTreeMap<String, Vec<String>>,
    /// Where events, rollups and alerts are stored; `None` runs without.
    pub influx: Option<crate::influx::InfluxConfig>,
    /// The web dashboard's token and path prefix.
    pub dashboard: crate::dashboard::DashboardOptions,
}

fn rule_set(opts: &ServeOptions) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::new(RuleRuntime::new(opts.limits)?);
    let default = RuleSpec::high_traffic(opts.threshold, opts.window);
    for spec in std::iter::once(&default).chain(&opts.rules) {
        if let Err(e) = rules.add(spec) {
            eprintln!("logmon: rule not started: {e}");
        }
    }
    Ok(rules)
}

/// Run until SIGINT/SIGTERM.
pub fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    runtime.block_on(serve(opts))
}

async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let (log, recovery) = SegmentLog::open(LogConfig::new(opts.data_dir.join("bus")))
        .context("opening the event bus")?;
    if let Some(torn) = &recovery.torn {
        eprintln!("logmon: bus recovery truncated a torn tail: {torn:?}");
    }
    let (state, _rebuild) = IngestState::open(opts.ingest.clone(), log)?;
    let listener = tokio::net::TcpListener::bind(opts.ingest.listen)
        .await
        .with_context(|| format!("binding {}", opts.ingest.listen))?;
    eprintln!(
        "logmon: collector listening on http://{} (bus {}, {} records retained)",
        listener.local_addr()?,
        opts.data_dir.join("bus").display(),
        recovery.records
    );

    let shutdown = CancellationToken::new();
    let stop_engine = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(LiveCounters::default());

    // Transitions: the engine appends them to the outbox, from which the
    // InfluxDB writer (and notifiers) deliver them.
    let outbox = crate::outbox::Outbox::open(&opts.data_dir.join("outbox"))
        .context("opening the alert outbox")?;

    // The engine: its own thread, since rules and the engine are synchronous.
    let rules = rule_set(&opts)?;
    let hub = crate::dashboard::Hub::new(opts.live.lateness);
    let engine = {
        let state = Arc::clone(&state);
        let stop = Arc::clone(&stop_engine);
        let counters = Arc::clone(&counters);
        let live_opts = opts.live.clone();
        let outbox = outbox.clone();
        let mut pipeline = Pipeline::new(
            rules,
            StatsClock::new(opts.stats_every, opts.top),
            Printer::new(opts.output, std::io::LineWriter::new(std::io::stdout())),
        );
        pipeline.dashboard = Some(Arc::clone(&hub));
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                live::run(
                    state.bus(),
                    Some(&outbox),
                    pipeline,
                    &live_opts,
                    &counters,
                    &stop,
                )
            })?
    };

    // Segment deletion once every consumer has passed.
    let gc = {
        let state = Arc::clone(&state);
        let outbox = outbox.clone();
        let shutdown = shutdown.clone();
        let every = opts.gc_every;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let state = Arc::clone(&state);
                let outbox = outbox.clone();
                let result = tokio::task::spawn_blocking(move || {
                    state.bus().gc()?;
                    outbox.gc()?;
                    anyhow::Ok(())
                })
                .await;
                if let Ok(Err(e)) = result {
                    eprintln!("logmon: gc failed: {e:#}");
                }
            }
        })
    };

    // The InfluxDB writer: a bus consumer of its own.
    let store_counters = Arc::new(crate::store::StoreCounters::default());
    let store = opts.influx.clone().map(|config| {
        let bus = state.bus().clone();
        let limits = opts.ingest.limits;
        let counters = Arc::clone(&store_counters);
        let shutdown = shutdown.clone();
        let outbox = outbox.clone();
        let data_dir = opts.data_dir.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::store::run(
                bus,
                config,
                limits,
                counters,
                outbox,
                Some(data_dir),
                shutdown,
            )
            .await
            {
                eprintln!("logmon: the InfluxDB writer stopped: {e:#}");
            }
        })
    });

    // Notifiers: one outbox consumer per target.
    let notify_counters: Vec<(String, Arc<crate::notify::TargetCounters>)> = opts
        .notify
        .iter()
        .map(|t| (t.name.clone(), Arc::default()))
        .collect();
    let notifiers: Vec<_> = opts
        .notify
        .iter()
        .zip(&notify_counters)
        .map(|(target, (_, counters))| {
            let target = target.clone();
            let outbox = outbox.clone();
            let settings = crate::notify::NotifySettings {
                state_dir: Some(opts.data_dir.clone()),
                routes: opts.routes.clone(),
                severity: opts.severity.clone(),
                ..crate::notify::NotifySettings::default()
            };
            let shutdown = shutdown.clone();
            let counters = Arc::clone(counters);
            tokio::spawn(async move {
                let name = target.name.clone();
                if let Err(e) =
                    crate::notify::run(target, outbox, settings, counters, shutdown).await
                {
                    eprintln!("logmon: notifier {name} stopped: {e}");
                }
            })
        })
        .collect();

    {
        let live = Arc::clone(&counters);
        let store = opts.influx.is_some().then(|| Arc::clone(&store_counters));
        state.add_metrics(crate::ingest::ExtraMetrics(Box::new(move || {
            pipeline_metrics(&live, store.as_deref(), &notify_counters)
        })));
    }

    let dashboard = crate::dashboard::Dashboard::new(
        hub,
        opts.dashboard.clone(),
        Arc::clone(&counters),
        outbox.clone(),
        opts.influx.as_ref(),
        opts.live.lateness,
        shutdown.clone(),
    )?;
    state.add_api(Arc::new(dashboard).routes());

    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("logmon: shutting down");
            shutdown.cancel();
        })
    };

    let served = ingest::run(listener, Arc::clone(&state), shutdown.clone()).await;
    shutdown.cancel();
    signals.abort();
    let _ = gc.await;
    if let Some(store) = store {
        let _ = store.await;
    }
    for n in notifiers {
        let _ = n.await;
    }
    {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.close()).await??;
    }
    stop_engine.store(true, Ordering::Relaxed);
    let pipeline = tokio::task::spawn_blocking(move || engine.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))??;
    let mut pipeline = pipeline;
    pipeline.finish_stats()?;
    pipeline.printer.flush()?;
    served.context("serving the ingest API")?;
    Ok(())
}

/// Prometheus text for the engine, the InfluxDB writer and the notifiers.
fn pipeline_metrics(
    live: &LiveCounters,
    store: Option<&crate::store::StoreCounters>,
    notifiers: &[(String, Arc<crate::notify::TargetCounters>)],
) -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::AtomicU64;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, values: &[(String, &AtomicU64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in values {
            let _ = writeln!(out, "{name}{labels} {}", v.load(Ordering::Relaxed));
        }
    };
    let one = |v| vec![(String::new(), v)];
    family(
        "logmon_engine_batches_total",
        "counter",
        "Bus records with events the engine read.",
        &one(&live.batches),
    );
    family(
        "logmon_engine_heartbeats_total",
        "counter",
        "Heartbeats and finish markers the engine read.",
        &one(&live.heartbeats),
    );
    family(
        "logmon_engine_events_total",
        "counter",
        "Events the engine aggregated or counted late.",
        &one(&live.events),
    );
    family(
        "logmon_engine_late_events_total",
        "counter",
        "Events whose second had already closed (stored, not evaluated).",
        &one(&live.late),
    );
    family(
        "logmon_engine_future_events_total",
        "counter",
        "Events refused for being too far ahead of the wall clock.",
        &one(&live.future),
    );
    family(
        "logmon_engine_undecodable_total",
        "counter",
        "Bus records the engine could not decode.",
        &one(&live.undecodable),
    );
    family(
        "logmon_engine_snapshots_total",
        "counter",
        "Engine snapshots written.",
        &one(&live.snapshots),
    );
    family(
        "logmon_engine_replayed_transitions_total",
        "counter",
        "Transitions a replay produced again and the outbox recognised.",
        &one(&live.replayed_transitions),
    );
    family(
        "logmon_engine_watermark_seconds",
        "gauge",
        "The global event-time watermark (unix seconds).",
        &one(&live.watermark),
    );
    family(
        "logmon_engine_bus_offset",
        "gauge",
        "The next bus record the engine reads.",
        &one(&live.offset),
    );
    family(
        "logmon_engine_lag_records",
        "gauge",
        "Bus records the engine has yet to read.",
        &one(&live.lag_records),
    );
    if let Some(s) = store {
        family(
            "logmon_influx_batches_total",
            "counter",
            "Bus records written to InfluxDB.",
            &one(&s.batches),
        );
        family(
            "logmon_influx_points_total",
            "counter",
            "Request points written to InfluxDB.",
            &one(&s.points),
        );
        family(
            "logmon_influx_alerts_total",
            "counter",
            "Alert transitions written to InfluxDB.",
            &one(&s.alerts),
        );
        family(
            "logmon_influx_partial_writes_total",
            "counter",
            "Writes InfluxDB accepted only in part.",
            &one(&s.partial_writes),
        );
        family(
            "logmon_influx_failures_total",
            "counter",
            "Failed write attempts (retried).",
            &one(&s.failures),
        );
        family(
            "logmon_influx_bus_offset",
            "gauge",
            "The next bus record the InfluxDB writer reads.",
            &one(&s.offset),
        );
    }
    let per_target = |pick: fn(&crate::notify::TargetCounters) -> &AtomicU64| {
        notifiers
            .iter()
            .map(|(name, c)| (format!("{{target=\"{name}\"}}"), pick(c)))
            .collect::<Vec<_>>()
    };
    if !notifiers.is_empty() {
        family(
            "logmon_notify_delivered_total",
            "counter",
            "Transitions a target accepted.",
            &per_target(|c| &c.delivered),
        );
        family(
            "logmon_notify_retries_total",
            "counter",
            "Failed delivery attempts (retried).",
            &per_target(|c| &c.retries),
        );
        family(
            "logmon_notify_dropped_total",
            "counter",
            "Transitions a target refused for good (4xx).",
            &per_target(|c| &c.dropped),
        );
        family(
            "logmon_notify_resent_total",
            "counter",
            "Firing alerts re-sent to Alertmanager.",
            &per_target(|c| &c.resent),
        );
    }
    // Per rule instance, from the engine's view of its rules.
    let rules = live.rules.lock().map(|v| v.clone()).unwrap_or_default();
    let rules = rules.as_array().cloned().unwrap_or_default();
    if !rules.is_empty() {
        let label = |r: &serde_json::Value| {
            let name = r["name"].as_str().unwrap_or_default();
            format!(
                "{{rule=\"{}\"}}",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            )
        };
        let mut per_rule =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&serde_json::Value) -> f64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for r in &rules {
                    let _ = writeln!(out, "{name}{} {}", label(r), value(r));
                }
            };
        per_rule(
            "logmon_rule_evaluations_total",
            "counter",
            "Seconds the rule instance evaluated.",
            &|r| r["health"]["evaluations"].as_f64().unwrap_or(0.0),
        );
        per_rule(
            "logmon_rule_busy_seconds_total",
            "counter",
            "Time spent evaluating the rule instance.",
            &|r| r["health"]["busy_us"].as_f64().unwrap_or(0.0) / 1e6,
        );
        per_rule(
            "logmon_rule_quarantined",
            "gauge",
            "1 when the rule instance is quarantined.",
            &|r| f64::from(u8::from(!r["health"]["quarantined"].is_null())),
        );
        per_rule(
            "logmon_rule_firing_keys",
            "gauge",
            "Alert keys firing now.",
            &|r| r["active"].as_array().map_or(0.0, |a| a.len() as f64),
        );
        per_rule(
            "logmon_rule_pending_keys",
            "gauge",
            "Alert keys pending (waiting out `for`).",
            &|r| r["pending"].as_array().map_or(0.0, |a| a.len() as f64),
        );
    }
    out
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
