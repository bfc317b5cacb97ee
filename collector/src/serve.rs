//! `logmon-collector serve`: the live collector in one process (the embedded
//! deployment): the ingest API makes batches durable in the local bus; the
//! live engine consumes the bus and prints the same statistics and alert lines
//! as `replay`; segments every consumer has passed are deleted.
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
    /// Where events, rollups and alerts are stored; `None` runs without.
    pub influx: Option<crate::influx::InfluxConfig>,
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
    let engine = {
        let state = Arc::clone(&state);
        let stop = Arc::clone(&stop_engine);
        let counters = Arc::clone(&counters);
        let live_opts = opts.live.clone();
        let outbox = outbox.clone();
        let pipeline = Pipeline::new(
            rules,
            StatsClock::new(opts.stats_every, opts.top),
            Printer::new(opts.output, std::io::LineWriter::new(std::io::stdout())),
        );
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
    let notifiers: Vec<_> = opts
        .notify
        .iter()
        .map(|target| {
            let target = target.clone();
            let outbox = outbox.clone();
            let settings = crate::notify::NotifySettings {
                state_dir: Some(opts.data_dir.clone()),
                ..crate::notify::NotifySettings::default()
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let name = target.name.clone();
                let counters = Arc::new(crate::notify::TargetCounters::default());
                if let Err(e) =
                    crate::notify::run(target, outbox, settings, counters, shutdown).await
                {
                    eprintln!("logmon: notifier {name} stopped: {e}");
                }
            })
        })
        .collect();

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
