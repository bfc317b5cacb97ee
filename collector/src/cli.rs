//! Command-line interface of `logmon-collector`: raw flags parsed by clap,
//! then turned into the validated options of each command.

use crate::generate::{Burst, Gap, TrafficSpec};
use crate::output::OutputKind;
use crate::replay::{FormatChoice, ReplayOptions};
use crate::rules::{RuleSpec, SandboxLimits};
use clap::{Args, Parser, Subcommand};
use logmon_protocol::Format;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "logmon-collector",
    version,
    about = "logmon collector: event-time HTTP traffic statistics and WebAssembly alert rules"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read an access log (a file, or stdin) and print traffic statistics and
    /// alerts in log time: the original console monitor.
    Replay(ReplayArgs),
    /// Write a realistic generated access log (bursts, silences, disorder).
    Generate(GenerateArgs),
    /// Run the live collector: ingest API, durable bus, live engine and rules.
    Serve(ServeArgs),
    /// Write, test and inspect alert rules: `rules new|test|list|describe`.
    Rules(crate::rules_cli::RulesArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the ingest API (`POST /v1/batches`, `/health`, `/metrics`).
    #[arg(long, env = "LOGMON_LISTEN", default_value = "127.0.0.1:8470")]
    pub listen: std::net::SocketAddr,
    /// Directory of the event bus and the collector's state.
    #[arg(long, env = "LOGMON_DATA_DIR", default_value = "logmon-data")]
    pub data_dir: PathBuf,
    /// A bearer token agents may use. Repeatable; comma-separated in the env.
    #[arg(
        long = "token",
        env = "LOGMON_TOKENS",
        value_delimiter = ',',
        required = true
    )]
    pub tokens: Vec<String>,
    /// Seconds an event may trail its stream's newest one and still count.
    #[arg(long, default_value_t = 5)]
    pub lateness: u32,
    /// Seconds (of the agent's clock) after which a file its agent stopped
    /// sending, while sending others, stops holding event time back (a
    /// fallback: agents say when they close a file).
    #[arg(long, default_value_t = 30)]
    pub quiet_after: u64,
    /// Seconds without anything from an agent after which its files stop
    /// holding event time back: outages shorter than this lose no exactness.
    #[arg(long, default_value_t = 30)]
    pub silent_after: u64,
    /// Seconds between engine snapshots.
    #[arg(long, default_value_t = 5)]
    pub snapshot_every: u64,
    /// high-traffic: average requests per second that fire the alert.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// high-traffic: seconds averaged.
    #[arg(long, default_value_t = 120)]
    pub window: u32,
    /// One more rule instance (see `replay --rule`). Repeatable.
    #[arg(long = "rule", value_name = "SPEC")]
    pub rule: Vec<RuleSpec>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
    #[arg(long, default_value_t = 10)]
    pub stats_every: u32,
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Bus backlog (MiB) past which ingest answers 503 (backpressure).
    #[arg(long, default_value_t = 1024)]
    pub max_backlog_mib: u64,
    /// InfluxDB base URL (v1 API); events, rollups and alerts are stored there.
    #[arg(long, env = "LOGMON_INFLUX_URL")]
    pub influx_url: Option<String>,
    /// Where alert transitions are sent: `webhook=URL`, `slack=URL`,
    /// `alertmanager=URL` (the Alertmanager base URL), or `NAME:KIND=URL` to
    /// name a target. Repeatable. Each target gets every transition, in
    /// order, retried until delivered.
    #[arg(long = "notify", value_name = "TARGET")]
    pub notify: Vec<crate::notify::Target>,
    /// A directory of rule components (`*.wasm`), watched: adding,
    /// replacing or removing a file starts, swaps or stops its instance
    /// within seconds, without a restart.
    #[arg(long)]
    pub rules_dir: Option<PathBuf>,
    /// A TOML file of rule instances (lifecycle, severity, routing) and
    /// notification targets; see the README. Adds to --rule and --notify.
    #[arg(long, env = "LOGMON_CONFIG")]
    pub config: Option<PathBuf>,
    /// InfluxDB database (v1), created when absent.
    #[arg(long, env = "LOGMON_INFLUX_DB", default_value = "logmon")]
    pub influx_db: String,
    /// A read-only token for the dashboard's API (`/api/*`), given as
    /// `Authorization: Bearer TOKEN` or `?token=TOKEN`; the page and its
    /// assets stay public. Without it the API is open. It must differ from
    /// every ingest token: neither opens the other's routes.
    #[arg(long, env = "LOGMON_DASHBOARD_TOKEN")]
    pub dashboard_token: Option<String>,
    /// A path prefix (`/logmon`) under which the dashboard is served too,
    /// for a reverse proxy that forwards it instead of stripping it.
    #[arg(long, env = "LOGMON_DASHBOARD_PREFIX")]
    pub dashboard_prefix: Option<String>,
}

impl ServeArgs {
    pub fn options(self) -> anyhow::Result<crate::serve::ServeOptions> {
        anyhow::ensure!(self.window > 0, "--window must be at least 1 second");
        anyhow::ensure!(
            self.stats_every > 0,
            "--stats-every must be at least 1 second"
        );
        if let Some(token) = &self.dashboard_token {
            anyhow::ensure!(!token.is_empty(), "--dashboard-token must not be empty");
            anyhow::ensure!(
                !self.tokens.contains(token),
                "--dashboard-token must differ from the ingest tokens"
            );
        }
        let dashboard = crate::dashboard::DashboardOptions {
            token: self.dashboard_token,
            prefix: match &self.dashboard_prefix {
                Some(raw) => crate::dashboard::DashboardOptions::parse_prefix(raw)
                    .map_err(anyhow::Error::msg)?,
                None => None,
            },
        };
        let ingest = crate::ingest::IngestConfig {
            listen: self.listen,
            tokens: self.tokens,
            max_backlog_bytes: self.max_backlog_mib << 20,
            ..crate::ingest::IngestConfig::default()
        };
        let configured = match &self.config {
            Some(path) => crate::config::CollectorConfig::load(path)?
                .resolve()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => crate::config::Configured::default(),
        };
        let mut rules = self.rule;
        rules.extend(configured.rules);
        let mut notify = self.notify;
        notify.extend(configured.targets);
        Ok(crate::serve::ServeOptions {
            data_dir: self.data_dir.clone(),
            severity: configured.severity,
            routes: configured.routes,
            ingest,
            live: crate::live::LiveOptions {
                lateness: self.lateness,
                quiet_after: Duration::from_secs(self.quiet_after),
                silent_after: Duration::from_secs(self.silent_after),
                snapshot_dir: Some(self.data_dir.clone()),
                snapshot_every: Duration::from_secs(self.snapshot_every.max(1)),
                rules_dir: self.rules_dir.clone(),
                ..crate::live::LiveOptions::default()
            },
            threshold: self.threshold,
            window: self.window,
            rules,
            notify,
            output: self.output,
            stats_every: self.stats_every,
            top: self.top,
            limits: SandboxLimits::default(),
            gc_every: Duration::from_secs(5),
            dashboard,
            influx: self.influx_url.map(|url| crate::influx::InfluxConfig {
                url,
                api: crate::influx::InfluxApi::V1(crate::influx::V1Config {
                    database: self.influx_db,
                    ..crate::influx::V1Config::default()
                }),
                ..crate::influx::InfluxConfig::default()
            }),
        })
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The access log; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// auto, csv, clf, combined or json.
    #[arg(long, default_value = "auto")]
    pub input_format: FormatChoice,
    /// high-traffic: average requests per second that fire the alert.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// high-traffic: seconds averaged.
    #[arg(long, default_value_t = 120)]
    pub window: u32,
    /// Seconds an event may trail the newest one and still be counted.
    #[arg(long, default_value_t = 5)]
    pub lateness: u32,
    /// Seconds of log time per statistics block (blocks align to multiples).
    #[arg(long, default_value_t = 10)]
    pub stats_every: u32,
    /// Directory of more rule components (*.wasm) to run with their defaults.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// One more rule instance: a shipped rule's name or a .wasm path, with
    /// optional parameters: `error-rate:threshold=0.2,window=30`. Repeatable.
    #[arg(long = "rule", value_name = "SPEC")]
    pub rule: Vec<RuleSpec>,
    /// text or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
    /// Sections and clients listed per block.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Per-rule memory cap, MiB.
    #[arg(long, default_value_t = 64)]
    pub rule_memory_mib: usize,
    /// Per-call time budget of a rule, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rule_deadline_ms: u64,
}

impl ReplayArgs {
    pub fn options(self) -> anyhow::Result<ReplayOptions> {
        anyhow::ensure!(self.window > 0, "--window must be at least 1 second");
        anyhow::ensure!(
            self.stats_every > 0,
            "--stats-every must be at least 1 second"
        );
        anyhow::ensure!(
            self.threshold.is_finite() && self.threshold >= 0.0,
            "--threshold must be a non-negative number"
        );
        Ok(ReplayOptions {
            input: self.file,
            format: self.input_format,
            threshold: self.threshold,
            window: self.window,
            lateness: self.lateness,
            stats_every: self.stats_every,
            rules_dir: self.rules,
            rules: self.rule,
            output: self.output,
            top: self.top,
            limits: SandboxLimits {
                memory: self.rule_memory_mib << 20,
                call_deadline: Duration::from_millis(self.rule_deadline_ms),
                ..SandboxLimits::default()
            },
            ..ReplayOptions::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// csv, clf, combined or json.
    #[arg(long, default_value = "csv")]
    pub format: Format,
    /// Lines to write (the CSV header not counted).
    #[arg(long, default_value_t = 10_000)]
    pub lines: u64,
    /// Unix seconds of the first event.
    #[arg(long, default_value_t = 1_549_573_860)]
    pub start: i64,
    /// Mean requests per second outside bursts.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// A burst `AT:DURATION:RATE` (seconds from the start). Repeatable;
    /// replaces the default burst (300:180:25).
    #[arg(long)]
    pub burst: Vec<Burst>,
    /// A silence `AT:DURATION`. Repeatable; replaces the default gap (900:300).
    #[arg(long)]
    pub gap: Vec<Gap>,
    /// No default burst or gap: steady traffic unless --burst/--gap say otherwise.
    #[arg(long)]
    pub steady: bool,
    /// Max seconds an event may be written out of order.
    #[arg(long, default_value_t = 2)]
    pub disorder: u32,
    /// Share of 5xx responses.
    #[arg(long, default_value_t = 0.02)]
    pub error_rate: f64,
    #[arg(long, default_value_t = 12)]
    pub sections: usize,
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write to this file instead of standard output (appending with --live).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// A live log: start now and write each second's lines as the wall clock
    /// reaches it, for an agent to tail.
    #[arg(long)]
    pub live: bool,
}

impl GenerateArgs {
    pub fn spec(&self) -> TrafficSpec {
        let defaults = TrafficSpec::default();
        let start = if self.live {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(self.start, |d| d.as_secs() as i64)
        } else {
            self.start
        };
        let pick = |given: &[Burst], default: Vec<Burst>| {
            if !given.is_empty() {
                given.to_vec()
            } else if self.steady {
                Vec::new()
            } else {
                default
            }
        };
        let gaps = if !self.gap.is_empty() {
            self.gap.clone()
        } else if self.steady {
            Vec::new()
        } else {
            defaults.gaps.clone()
        };
        TrafficSpec {
            format: self.format,
            lines: self.lines,
            start,
            base_rate: self.rate,
            bursts: pick(&self.burst, defaults.bursts.clone()),
            gaps,
            disorder: self.disorder,
            error_rate: self.error_rate,
            sections: self.sections,
            clients: self.clients,
            seed: self.seed,
            pace: self.live,
        }
    }
}
