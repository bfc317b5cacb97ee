//! `logmon-collector serve`: the live collector in one process (the embedded
//! deployment): the ingest API makes batches durable in the local bus; the
//! live engine consumes the bus and prints the same statistics and alert lines
//! as `replay`, and feeds the web dashboard served on the same listener;
//! segments every consumer has passed are deleted.
//!
//! Shutdown (SIGINT/SIGTERM): stop intake and drain requests, stop the bus
//! writer (answering what was queued), stop the engine, persist dedup state.

use crate::bus::{EventBus, LocalBus, LogConfig};
use crate::console::printer::{OutputKind, Printer};
use crate::engine::consumer::{self, LiveCounters, LiveOptions};
use crate::engine::observer::Observer as _;
use crate::engine::pipeline::Pipeline;
use crate::engine::stats::StatsClock;
use crate::http::Router;
use crate::http::status::{Health, HealthSource, Level, MetricsSource, Status};
use crate::ingest::{IngestConfig, IngestRoutes, IngestState};
use crate::rules::{RuleRuntime, RuleSet, RuleSpec, SandboxLimits};
use crate::shutdown::Supervisor;
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    /// Size at which a bus segment is sealed (the unit of deletion).
    pub segment_bytes: u64,
    /// The data directory's free-space floor; `None`: [`crate::disk::default_floor`].
    pub min_free_bytes: Option<u64>,
    /// Where transitions are sent besides the console and InfluxDB.
    pub notify: Vec<crate::alerts::notify::Target>,
    /// Rule instance → severity label (from the config file).
    pub severity: std::collections::BTreeMap<String, String>,
    /// Rule instance → the only targets it notifies.
    pub routes: std::collections::BTreeMap<String, Vec<String>>,
    /// Where events, rollups and alerts are stored; `None` runs without.
    pub influx: Option<crate::influx::InfluxConfig>,
    /// The cold tier's Parquet files; `None` runs without.
    pub lake: Option<crate::lake::LakeConfig>,
    /// The listener.
    pub http: crate::http::ServerConfig,
    /// How long after a shutdown begins everything is stopped hard.
    pub shutdown_deadline: Duration,
    /// The collector's own log.
    pub log: logmon_io::log::LogConfig,
    /// The web dashboard's token and path prefix.
    pub dashboard: crate::dashboard::DashboardOptions,
}

fn rule_set(opts: &ServeOptions) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::new(RuleRuntime::new(opts.limits)?);
    let default = RuleSpec::high_traffic(opts.threshold, opts.window);
    for spec in std::iter::once(&default).chain(&opts.rules) {
        if let Err(e) = rules.add(spec) {
            tracing::error!(error = %e, "rule not started");
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
    let bus_config = LogConfig {
        segment_bytes: opts.segment_bytes,
        ..LogConfig::new(opts.data_dir.join("bus"))
    };
    let (bus, recovery, rebuild) =
        LocalBus::open(bus_config, opts.ingest.limits).context("opening the event bus")?;
    if let Some(torn) = &recovery.torn {
        tracing::warn!(
            segment = %torn.segment.display(),
            position = torn.position,
            bytes = torn.bytes,
            damage = %torn.damage,
            "bus recovery cut a torn tail (an append the crash interrupted, never acknowledged)"
        );
    }
    report_rebuild(&rebuild);
    let bus: Arc<dyn EventBus> = Arc::new(bus);
    // Transitions: the engine appends them to the outbox, from which the
    // InfluxDB writer (and notifiers) deliver them.
    let outbox = crate::alerts::outbox::Outbox::open(&opts.data_dir.join("outbox"))
        .context("opening the alert outbox")?;
    // Every consumer the configuration implies holds its records from the
    // start, before ingest takes a batch or gc runs, whether or not its
    // target is reachable yet.
    let (bus_consumers, outbox_consumers) = consumers(&opts);
    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let stale = bus
        .declare(&names(&bus_consumers))
        .context("declaring the bus consumers")?;
    report_unconfigured("event bus", "bus", &stale, &opts.data_dir);
    let stale = outbox
        .declare(&names(&outbox_consumers))
        .context("declaring the alert outbox consumers")?;
    report_unconfigured("alert outbox", "outbox", &stale, &opts.data_dir);
    let state = IngestState::open(opts.ingest.clone(), Arc::clone(&bus))?;
    let floor = opts
        .min_free_bytes
        .unwrap_or_else(|| crate::disk::default_floor(&opts.data_dir));
    let disk = Arc::new(crate::disk::DiskWatch::new(&opts.data_dir, floor));
    state.watch_disk(Arc::clone(&disk));
    if let Some(lake) = &opts.lake {
        // The lake's position moves when a file is complete, up to
        // `flush_after` behind by design.
        state.allow_lag(crate::lake::CONSUMER, lake.flush_after);
    }
    let tls = match &opts.http.tls {
        None => None,
        Some(config) => {
            Some(crate::http::tls::Tls::new(config).context("setting up TLS on the listener")?)
        }
    };
    let listener = tokio::net::TcpListener::bind(opts.http.listen)
        .await
        .with_context(|| format!("binding {}", opts.http.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        listen = %listener.local_addr()?,
        bus = %opts.data_dir.join("bus").display(),
        records = recovery.records,
        client_certificates = ?opts.http.tls.as_ref().map(|t| if t.require_client_cert {
            "required"
        } else if t.client_ca.is_some() {
            "optional"
        } else {
            "off"
        }),
        "collector listening on {scheme}://{}",
        listener.local_addr()?
    );

    let supervisor = Supervisor::new(opts.shutdown_deadline);
    let shutdown = supervisor.shutdown();
    let stop_engine = CancellationToken::new();
    let counters = Arc::new(LiveCounters::default());

    // The engine: its own thread, since rules and the engine are synchronous.
    // Fatal: a collector whose engine is gone must not go on taking batches.
    let rules = rule_set(&opts)?;
    let hub = crate::dashboard::Hub::new(opts.live.lateness);
    let engine = {
        let bus = Arc::clone(&bus);
        let stop = stop_engine.clone();
        let counters = Arc::clone(&counters);
        let live_opts = opts.live.clone();
        let outbox = outbox.clone();
        let console = Printer::new(opts.output, std::io::LineWriter::new(std::io::stdout()));
        let pipeline = Pipeline::new(
            rules,
            StatsClock::new(opts.stats_every, opts.top),
            (console, crate::dashboard::HubObserver(Arc::clone(&hub))),
        );
        supervisor.fatal_thread("engine", move || {
            consumer::run(&*bus, Some(&outbox), pipeline, &live_opts, &counters, &stop)
        })?
    };

    // Segment deletion once every consumer has passed.
    {
        let (bus, outbox, every) = (Arc::clone(&bus), outbox.clone(), opts.gc_every);
        supervisor.restarting("gc", move |tokens| {
            let (bus, outbox) = (Arc::clone(&bus), outbox.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = tokens.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(every) => {}
                    }
                    let (bus, outbox) = (Arc::clone(&bus), outbox.clone());
                    let result = tokio::task::spawn_blocking(move || {
                        bus.gc()?;
                        outbox.gc()?;
                        anyhow::Ok(())
                    })
                    .await?;
                    if let Err(e) = result {
                        tracing::error!(error = %format!("{e:#}"), "gc failed");
                    }
                }
            }
        });
    }

    // The InfluxDB writer: a bus consumer of its own, started again if it
    // fails (its progress is committed with its snapshot).
    let store_counters = Arc::new(crate::influx::consumer::StoreCounters::default());
    if let Some(config) = opts.influx.clone() {
        let (bus, outbox) = (Arc::clone(&bus), outbox.clone());
        let counters = Arc::clone(&store_counters);
        let data_dir = opts.data_dir.clone();
        supervisor.restarting("influx-writer", move |tokens| {
            crate::influx::consumer::run(
                Arc::clone(&bus),
                config.clone(),
                Arc::clone(&counters),
                outbox.clone(),
                Some(data_dir.clone()),
                tokens.hard,
                tokens.drain,
            )
        });
    }

    // The lake writer: a bus consumer of its own, started again if it fails
    // (its position is committed only after its files are in place).
    let lake_counters = Arc::new(crate::lake::LakeCounters::default());
    if let Some(config) = opts.lake.clone() {
        if let Some(warning) = tiers_warning(&config, opts.influx.as_ref()) {
            tracing::warn!("{warning}");
        }
        let bus = Arc::clone(&bus);
        let counters = Arc::clone(&lake_counters);
        supervisor.restarting("lake-writer", move |tokens| {
            crate::lake::run(
                Arc::clone(&bus),
                config.clone(),
                Arc::clone(&counters),
                tokens.hard,
                tokens.drain,
            )
        });
    }

    // Notifiers: one outbox consumer per target.
    let notify_counters: Vec<(String, Arc<crate::alerts::notify::TargetCounters>)> = opts
        .notify
        .iter()
        .map(|t| (t.name.clone(), Arc::default()))
        .collect();
    for (target, (_, counters)) in opts.notify.iter().zip(&notify_counters) {
        let (target, outbox, counters) = (target.clone(), outbox.clone(), Arc::clone(counters));
        let settings = crate::alerts::notify::NotifySettings {
            state_dir: Some(opts.data_dir.clone()),
            routes: opts.routes.clone(),
            severity: opts.severity.clone(),
            ..crate::alerts::notify::NotifySettings::default()
        };
        supervisor.restarting(format!("notifier {}", target.name), move |tokens| {
            let (target, outbox, settings) = (target.clone(), outbox.clone(), settings.clone());
            let counters = Arc::clone(&counters);
            async move {
                crate::alerts::notify::run(
                    target,
                    outbox,
                    settings,
                    counters,
                    tokens.hard,
                    tokens.drain,
                )
                .await
                .map_err(anyhow::Error::from)
            }
        });
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
    let status = Status::new(opts.ingest.retry_after_secs)
        .health_from(Arc::clone(&state) as _)
        .health_from(supervisor.parts() as _)
        .health_from(Arc::clone(&disk) as _)
        .health_from(Arc::new(EngineHealth(Arc::clone(&counters))))
        .health_from(Arc::new(OutboxHealth {
            outbox: outbox.clone(),
            configured: outbox_consumers.clone(),
        }))
        .metrics_from(Arc::clone(&state) as _)
        .metrics_from(supervisor.parts() as _)
        .metrics_from(disk as _)
        .metrics_from(Arc::new(PipelineMetrics {
            live: Arc::clone(&counters),
            store: opts.influx.is_some().then(|| Arc::clone(&store_counters)),
            notifiers: notify_counters,
            bus: Arc::clone(&bus),
            outbox: outbox.clone(),
            outbox_consumers,
        }));
    let status = if opts.lake.is_some() {
        status.metrics_from(lake_counters as _)
    } else {
        status
    };
    let status = match &tls {
        Some(tls) => status.metrics_from(Arc::clone(&tls.counters) as _),
        None => status,
    };
    let clients = Arc::new(crate::http::server::PerClient::default());
    let status = status.metrics_from(Arc::clone(&clients) as _);
    let router = Router::new()
        .mount(Arc::new(IngestRoutes(Arc::clone(&state))))
        .mount(Arc::new(dashboard))
        .mount(Arc::new(status));

    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            logmon_io::signal::terminated().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        })
    };

    // Shutdown in order: intake stops and drains, the bus writer answers
    // what was queued, the engine takes its last snapshot, then the writers
    // and notifiers deliver what is left, all within the deadline.
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
    }
    if !opts.ingest.token_files.is_empty() {
        tokio::spawn(reload_tokens(Arc::clone(&state), shutdown.clone()));
    }
    let served = crate::http::server::run(
        listener,
        Arc::new(router),
        opts.http.clone(),
        tls,
        state.metrics().connections(),
        clients,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    signals.abort();
    {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.close()).await??;
    }
    stop_engine.cancel();
    let pipeline = tokio::task::spawn_blocking(move || engine.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    supervisor.drain().cancel();
    supervisor.wait().await;
    if let Some(mut pipeline) = pipeline {
        pipeline.finish_stats()?;
        pipeline.observer.flush()?;
    }
    served.context("serving HTTP")?;
    if let Some(why) = supervisor.fatal() {
        anyhow::bail!("the collector stopped because {why}");
    }
    Ok(())
}

/// The consumers of the event bus and of the alert outbox that `opts`
/// configures: the engine always; the InfluxDB writer when InfluxDB is
/// configured; the lake writer when the lake is (bus only); each notifier
/// (outbox only).
fn consumers(opts: &ServeOptions) -> (Vec<String>, Vec<String>) {
    let mut bus = vec![consumer::CONSUMER.to_owned()];
    let mut outbox = vec![consumer::CONSUMER.to_owned()];
    if opts.influx.is_some() {
        bus.push(crate::influx::consumer::CONSUMER.to_owned());
        outbox.push(crate::influx::consumer::CONSUMER.to_owned());
    }
    if opts.lake.is_some() {
        bus.push(crate::lake::CONSUMER.to_owned());
    }
    outbox.extend(opts.notify.iter().map(crate::alerts::notify::consumer));
    (bus, outbox)
}

/// Says, at start, which registered consumers the configuration no longer
/// names: they keep their records until an operator removes them.
fn report_unconfigured(
    what: &str,
    log: &str,
    stale: &[crate::bus::ConsumerLag],
    data_dir: &std::path::Path,
) {
    for c in stale {
        tracing::warn!(
            consumer = %c.name,
            log,
            lag_records = c.records,
            lag_bytes = c.bytes,
            "{what} consumer `{}` is not in the configuration; it is {} records ({} bytes) behind and keeps them from deletion. If it is gone for good: logmon-collector bus consumers remove {} --log {log} --data-dir {}",
            c.name,
            c.records,
            c.bytes,
            c.name,
            data_dir.display()
        );
    }
}

/// The outbox's consumers for `/health` and `/metrics`.
fn outbox_status(
    outbox: &crate::alerts::outbox::Outbox,
    configured: &[String],
) -> Vec<crate::bus::ConsumerStatus> {
    outbox
        .consumers()
        .into_iter()
        .map(|c| crate::bus::ConsumerStatus {
            configured: configured.contains(&c.name),
            offset: c.offset,
            lag_records: c.records,
            lag_bytes: c.bytes,
            lag_seconds: None,
            problem: None,
            problem_seconds: None,
            name: c.name,
        })
        .collect()
}

/// The engine in `/health`: down (503) while it waits for an alert outbox
/// append that fails (a full disk: it evaluates nothing meanwhile);
/// degraded while its snapshots fail (it evaluates on; a restart would
/// replay more of the bus).
struct EngineHealth(Arc<LiveCounters>);

impl HealthSource for EngineHealth {
    fn health(&self) -> Health {
        let waiting = self
            .0
            .outbox_append
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((since, why)) = waiting {
            let seconds = (crate::clock::now_ms() - since).max(0) / 1000;
            let mut details = serde_json::Map::new();
            details.insert(
                "engine".into(),
                serde_json::json!({ "outbox_failing_seconds": seconds, "problem": why }),
            );
            return Health {
                level: Level::Down,
                status: "engine_waiting",
                reasons: vec![format!(
                    "engine: alert outbox appends failing for {seconds} s; the engine waits and retries: {why}"
                )],
                details,
            };
        }
        let problem = self
            .0
            .snapshot_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some((since, why)) = problem else {
            return Health::ok();
        };
        let seconds = (crate::clock::now_ms() - since).max(0) / 1000;
        let mut details = serde_json::Map::new();
        details.insert(
            "engine".into(),
            serde_json::json!({ "snapshot_failing_seconds": seconds, "problem": why }),
        );
        Health {
            level: Level::Degraded,
            status: "degraded",
            reasons: vec![format!(
                "engine: snapshots failing for {seconds} s (retried): {why}"
            )],
            details,
        }
    }
}

/// The alert outbox's consumers in `/health`.
struct OutboxHealth {
    outbox: crate::alerts::outbox::Outbox,
    configured: Vec<String>,
}

impl HealthSource for OutboxHealth {
    fn health(&self) -> Health {
        let consumers = outbox_status(&self.outbox, &self.configured);
        let reasons: Vec<String> = consumers
            .iter()
            .filter(|c| crate::ingest::health::stuck(c, 0))
            .map(|c| format!("alert outbox: {}", crate::ingest::health::describe(c)))
            .collect();
        let mut details = serde_json::Map::new();
        details.insert("outbox".into(), serde_json::json!(consumers));
        Health {
            level: if reasons.is_empty() {
                Level::Ok
            } else {
                Level::Degraded
            },
            status: "degraded",
            reasons,
            details,
        }
    }
}

/// The engine's, the InfluxDB writer's, the notifiers' and the consumers'
/// families in `/metrics`.
struct PipelineMetrics {
    live: Arc<LiveCounters>,
    store: Option<Arc<crate::influx::consumer::StoreCounters>>,
    notifiers: Vec<(String, Arc<crate::alerts::notify::TargetCounters>)>,
    bus: Arc<dyn EventBus>,
    outbox: crate::alerts::outbox::Outbox,
    outbox_consumers: Vec<String>,
}

impl MetricsSource for PipelineMetrics {
    fn render(&self, out: &mut String) {
        out.push_str(&pipeline_metrics(
            &self.live,
            self.store.as_deref(),
            &self.notifiers,
        ));
        out.push_str(&consumer_metrics(
            &self.bus.consumers(),
            &outbox_status(&self.outbox, &self.outbox_consumers),
        ));
    }
}

/// Says what the dedup index's rebuild found that can let duplicates in.
fn report_rebuild(rebuild: &crate::bus::Rebuild) {
    if rebuild.missing > 0 {
        tracing::warn!(
            records = rebuild.missing,
            "{} bus records were deleted without the dedup table covering them; their streams may accept duplicates",
            rebuild.missing
        );
    }
    if rebuild.undecodable > 0 {
        tracing::warn!(
            records = rebuild.undecodable,
            "{} bus records did not decode while rebuilding the dedup table; their streams may accept duplicates",
            rebuild.undecodable
        );
    }
}

/// Prometheus text: per consumer of each log, its lag.
fn consumer_metrics(
    bus: &[crate::bus::ConsumerStatus],
    outbox: &[crate::bus::ConsumerStatus],
) -> String {
    use logmon_protocol::prometheus::{Kind, Text};
    let mut text = Text::new();
    let rows = || {
        bus.iter()
            .map(|c| ("bus", c))
            .chain(outbox.iter().map(|c| ("outbox", c)))
    };
    type Value = fn(&crate::bus::ConsumerStatus) -> Option<u64>;
    let families: [(&str, &str, Value); 4] = [
        (
            "logmon_consumer_lag_records",
            "Records a consumer has yet to read.",
            |c| Some(c.lag_records),
        ),
        (
            "logmon_consumer_lag_bytes",
            "Bytes a consumer has yet to read (kept from deletion for it).",
            |c| Some(c.lag_bytes),
        ),
        (
            "logmon_consumer_lag_seconds",
            "Age of the oldest record a consumer has yet to read.",
            |c| c.lag_seconds,
        ),
        (
            "logmon_consumer_configured",
            "1 when the configuration names the consumer; 0 for one left in the data directory.",
            |c| Some(u64::from(c.configured)),
        ),
    ];
    for (name, help, value) in families {
        text.family(name, Kind::Gauge, help);
        for (log, c) in rows() {
            if let Some(v) = value(c) {
                text.sample(name, &[("log", log), ("consumer", &c.name)], v);
            }
        }
    }
    text.into_string()
}

/// Prometheus text for the engine, the InfluxDB writer, the notifiers and
/// the rule instances.
fn pipeline_metrics(
    live: &LiveCounters,
    store: Option<&crate::influx::consumer::StoreCounters>,
    notifiers: &[(String, Arc<crate::alerts::notify::TargetCounters>)],
) -> String {
    use logmon_protocol::prometheus::{Kind, Text};
    use std::sync::atomic::AtomicU64;
    let mut text = Text::new();
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    let engine: [(&str, Kind, &str, &AtomicU64); 13] = [
        (
            "logmon_engine_batches_total",
            Kind::Counter,
            "Bus records with events the engine read.",
            &live.batches,
        ),
        (
            "logmon_engine_heartbeats_total",
            Kind::Counter,
            "Heartbeats and finish markers the engine read.",
            &live.heartbeats,
        ),
        (
            "logmon_engine_events_total",
            Kind::Counter,
            "Events the engine aggregated or counted late.",
            &live.events,
        ),
        (
            "logmon_engine_late_events_total",
            Kind::Counter,
            "Events whose second had already closed (stored, not evaluated).",
            &live.late,
        ),
        (
            "logmon_engine_future_events_total",
            Kind::Counter,
            "Events refused for being too far ahead of the wall clock.",
            &live.future,
        ),
        (
            "logmon_engine_undecodable_total",
            Kind::Counter,
            "Bus records the engine could not decode.",
            &live.undecodable,
        ),
        (
            "logmon_engine_snapshots_total",
            Kind::Counter,
            "Engine snapshots written.",
            &live.snapshots,
        ),
        (
            "logmon_engine_snapshot_failures_total",
            Kind::Counter,
            "Engine snapshots that could not be written (retried at the next interval).",
            &live.snapshot_failures,
        ),
        (
            "logmon_engine_outbox_failures_total",
            Kind::Counter,
            "Alert outbox appends that failed (the engine waits and retries).",
            &live.outbox_append.failures,
        ),
        (
            "logmon_engine_replayed_transitions_total",
            Kind::Counter,
            "Transitions a replay produced again and the outbox recognised.",
            &live.replayed_transitions,
        ),
        (
            "logmon_engine_watermark_seconds",
            Kind::Gauge,
            "The global event-time watermark (unix seconds).",
            &live.watermark,
        ),
        (
            "logmon_engine_bus_offset",
            Kind::Gauge,
            "The next bus record the engine reads.",
            &live.offset,
        ),
        (
            "logmon_engine_lag_records",
            Kind::Gauge,
            "Bus records the engine has yet to read.",
            &live.lag_records,
        ),
    ];
    for (name, kind, help, v) in engine {
        text.single(name, kind, help, load(v));
    }
    if let Some(s) = store {
        let writer: [(&str, Kind, &str, &AtomicU64); 7] = [
            (
                "logmon_influx_batches_total",
                Kind::Counter,
                "Bus records written to InfluxDB.",
                &s.batches,
            ),
            (
                "logmon_influx_points_total",
                Kind::Counter,
                "Request points written to InfluxDB.",
                &s.points,
            ),
            (
                "logmon_influx_alerts_total",
                Kind::Counter,
                "Alert transitions written to InfluxDB.",
                &s.alerts,
            ),
            (
                "logmon_influx_partial_writes_total",
                Kind::Counter,
                "Writes InfluxDB accepted only in part.",
                &s.partial_writes,
            ),
            (
                "logmon_influx_failures_total",
                Kind::Counter,
                "Failed write attempts (retried).",
                &s.failures,
            ),
            (
                "logmon_influx_undecodable_total",
                Kind::Counter,
                "Bus records the InfluxDB writer could not decode (skipped, like the engine's).",
                &s.undecodable,
            ),
            (
                "logmon_influx_bus_offset",
                Kind::Gauge,
                "The next bus record the InfluxDB writer reads.",
                &s.offset,
            ),
        ];
        for (name, kind, help, v) in writer {
            text.single(name, kind, help, load(v));
        }
    }
    type Pick = fn(&crate::alerts::notify::TargetCounters) -> &AtomicU64;
    let per_target: [(&str, &str, Pick); 4] = [
        (
            "logmon_notify_delivered_total",
            "Transitions a target accepted.",
            |c| &c.delivered,
        ),
        (
            "logmon_notify_retries_total",
            "Failed delivery attempts (retried).",
            |c| &c.retries,
        ),
        (
            "logmon_notify_dropped_total",
            "Transitions a target refused for good (4xx).",
            |c| &c.dropped,
        ),
        (
            "logmon_notify_resent_total",
            "Firing alerts re-sent to Alertmanager.",
            |c| &c.resent,
        ),
    ];
    if !notifiers.is_empty() {
        for (name, help, pick) in per_target {
            text.family(name, Kind::Counter, help);
            for (target, c) in notifiers {
                text.sample(name, &[("target", target)], load(pick(c)));
            }
        }
    }
    // Per rule instance, from the engine's view of its rules.
    let rules = live.rules.lock().map(|v| v.clone()).unwrap_or_default();
    type Of = fn(&crate::rules::RuleStatus) -> f64;
    let per_rule: [(&str, Kind, &str, Of); 5] = [
        (
            "logmon_rule_evaluations_total",
            Kind::Counter,
            "Seconds the rule instance evaluated.",
            |r| r.health.evaluations as f64,
        ),
        (
            "logmon_rule_busy_seconds_total",
            Kind::Counter,
            "Time spent evaluating the rule instance.",
            |r| r.health.busy_us / 1e6,
        ),
        (
            "logmon_rule_quarantined",
            Kind::Gauge,
            "1 when the rule instance is quarantined.",
            |r| f64::from(u8::from(r.health.quarantined.is_some())),
        ),
        (
            "logmon_rule_firing_keys",
            Kind::Gauge,
            "Alert keys firing now.",
            |r| r.active.len() as f64,
        ),
        (
            "logmon_rule_pending_keys",
            Kind::Gauge,
            "Alert keys pending (waiting out `for`).",
            |r| r.pending.len() as f64,
        ),
    ];
    if !rules.is_empty() {
        for (name, kind, help, of) in per_rule {
            text.family(name, kind, help);
            for r in &rules {
                text.sample(name, &[("rule", &r.name)], of(r));
            }
        }
    }
    text.into_string()
}

/// How often the ingest token files are checked for a change.
const TOKEN_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Reads the ingest token files again whenever they change, until `stop`:
/// tokens are added and retired without a restart.
async fn reload_tokens(state: Arc<IngestState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TOKEN_RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || s.reload_tokens()).await {
            Ok(Ok(Some(n))) => {
                tracing::info!(tokens = n, "ingest tokens reloaded from the token files")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(
                    "ingest tokens not reloaded, the previous ones are still accepted: {e}"
                )
            }
            Err(e) => tracing::warn!("ingest token reload failed: {e}"),
        }
    }
}

/// What to tell an operator whose lake deletes events sooner than
/// InfluxDB's raw tier does: nothing is lost meanwhile (InfluxDB holds
/// them), but past InfluxDB's retention such events are in neither tier,
/// which a cold tier is there to prevent (docs/lake.md "Tiers").
fn tiers_warning(
    lake: &crate::lake::LakeConfig,
    influx: Option<&crate::influx::config::InfluxConfig>,
) -> Option<String> {
    let days = lake.retention_days?;
    let crate::influx::config::InfluxApi::V1(v1) = &influx?.api else {
        return None;
    };
    let hot = crate::influx::config::parse_duration_ns(&v1.retention)?;
    let cold = u128::from(days) * 86_400 * 1_000_000_000;
    // 0: InfluxDB keeps them forever.
    (hot == 0 || cold < hot).then(|| {
        format!(
            "the lake keeps events {days} days (retention_days), less than InfluxDB's raw \
             tier ({}): the cold tier holds nothing InfluxDB does not; set retention_days \
             above it so events stay in the lake after InfluxDB drops them",
            v1.retention
        )
    })
}

#[cfg(test)]
mod tiers_tests {
    use super::tiers_warning;
    use crate::influx::config::{InfluxApi, InfluxConfig};
    use crate::lake::LakeConfig;

    fn influx(retention: &str) -> InfluxConfig {
        let mut config = InfluxConfig::default();
        let InfluxApi::V1(v1) = &mut config.api else {
            panic!("v1 is the default")
        };
        v1.retention = retention.into();
        config
    }

    #[test]
    fn a_lake_that_forgets_before_influxdb_is_warned_of() {
        let mut lake = LakeConfig::new("lake".into());
        assert_eq!(
            tiers_warning(&lake, Some(&influx("30d"))),
            None,
            "kept forever"
        );
        lake.retention_days = Some(31);
        assert_eq!(tiers_warning(&lake, Some(&influx("30d"))), None);
        assert_eq!(tiers_warning(&lake, None), None, "no InfluxDB");
        lake.retention_days = Some(7);
        let warning = tiers_warning(&lake, Some(&influx("30d"))).unwrap();
        assert!(
            warning.starts_with("the lake keeps events 7 days"),
            "{warning}"
        );
        assert!(warning.contains("(30d)"), "{warning}");
        assert!(tiers_warning(&lake, Some(&influx("INF"))).is_some());
    }
}
