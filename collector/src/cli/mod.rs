//! Command-line interface of `logmon-collector`: raw flags parsed by clap,
//! then turned into the validated options of each command.

use crate::console::printer::OutputKind;
use crate::console::replay::{FormatChoice, ReplayOptions};
use crate::rules::{RuleSpec, SandboxLimits};
use clap::{Args, Parser, Subcommand};
use logmon_protocol::generate::{Burst, Gap, Site, TrafficSpec};

pub mod bus;
pub mod lake;
pub mod rules;
use logmon_protocol::{Format, UnknownVariables};
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
    Serve(Box<ServeArgs>),
    /// Write, test and inspect alert rules: `rules new|test|list|describe`.
    Rules(crate::cli::rules::RulesArgs),
    /// Inspect the data directory's logs while the collector is stopped:
    /// `bus consumers [list|remove NAME]`.
    Bus(crate::cli::bus::BusArgs),
    /// Inspect the Parquet lake: `lake ls` (partitions, rows, bytes, time
    /// range), `lake export` (its events as log lines).
    Lake(crate::cli::lake::LakeArgs),
}

/// `serve`'s flags. Every setting has a key in the config file (see
/// `collector.example.toml`); a flag or its environment variable, when
/// given, overrides the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration file (every setting; see docs/configuration.md).
    #[arg(long, env = "LOGMON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the configuration the file, the environment and the flags make
    /// together, as TOML, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address of the HTTP listener (ingest, dashboard, /health, /metrics).
    /// [http] listen; default 127.0.0.1:8470.
    #[arg(long, env = "LOGMON_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain ([http.tls] cert;
    /// reloaded when the file changes or on SIGHUP). Needs --tls-key.
    #[arg(long, env = "LOGMON_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert ([http.tls] key).
    #[arg(long, env = "LOGMON_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Verify client certificates against these PEM CA certificates: an
    /// agent with one may write only as the agent its certificate names
    /// ([http.tls] client_ca).
    #[arg(long, env = "LOGMON_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse clients without a certificate ([http.tls] require_client_cert).
    #[arg(long)]
    pub require_client_cert: bool,
    /// Directory of the event bus and the collector's state. Default logmon-data.
    #[arg(long, env = "LOGMON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A bearer token agents may use. Repeatable; comma-separated in the
    /// env. Replaces [ingest] tokens.
    #[arg(long = "token", env = "LOGMON_TOKENS", value_delimiter = ',')]
    pub tokens: Vec<String>,
    /// Seconds an event may trail its stream's newest one and still count.
    #[arg(long)]
    pub lateness: Option<u32>,
    /// Seconds (of the agent's clock) after which a file its agent stopped
    /// sending, while sending others, stops holding event time back (a
    /// fallback: agents say when they close a file).
    #[arg(long)]
    pub quiet_after: Option<u64>,
    /// Seconds without anything from an agent after which its files stop
    /// holding event time back: outages shorter than this lose no exactness.
    #[arg(long)]
    pub silent_after: Option<u64>,
    /// Seconds a file read to its end may trail the leading one in event
    /// time and still hold event time back; further behind (a wrong host
    /// clock), its events count as late.
    #[arg(long)]
    pub max_skew: Option<u64>,
    /// Seconds between engine snapshots.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// high-traffic: average requests per second that fire the alert.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// high-traffic: seconds averaged.
    #[arg(long)]
    pub window: Option<u32>,
    /// One more rule instance (see `replay --rule`). Repeatable; adds to
    /// the file's [[rules]].
    #[arg(long = "rule", value_name = "SPEC")]
    pub rule: Vec<RuleSpec>,
    #[arg(long, value_enum)]
    pub output: Option<OutputKind>,
    #[arg(long)]
    pub stats_every: Option<u32>,
    #[arg(long)]
    pub top: Option<usize>,
    /// Bus backlog (MiB) past which ingest answers 503 (backpressure).
    #[arg(long)]
    pub max_backlog_mib: Option<u64>,
    /// Size (MiB) at which a bus segment is sealed; segments are deleted
    /// whole once every consumer has passed them.
    #[arg(long)]
    pub segment_mib: Option<u64>,
    /// Seconds between deletions of the segments every consumer has passed.
    #[arg(long)]
    pub gc_every: Option<u64>,
    /// Free space (MiB) in the data directory's filesystem under which
    /// batches are refused (503 disk_full). Default: 1 GiB or 5 % of the
    /// filesystem, whichever is smaller.
    #[arg(long)]
    pub min_free_mib: Option<u64>,
    /// InfluxDB base URL; events, rollups and alerts are stored there (the
    /// v1 API unless the file's [influx.api.v2] says otherwise).
    #[arg(long, env = "LOGMON_INFLUX_URL")]
    pub influx_url: Option<String>,
    /// InfluxDB database (v1), created when absent. Default logmon.
    #[arg(long, env = "LOGMON_INFLUX_DB")]
    pub influx_db: Option<String>,
    /// Write every event to Parquet files per UTC hour in this directory
    /// (the cold tier; [lake] in the file, docs/lake.md).
    #[arg(long, env = "LOGMON_LAKE_DIR")]
    pub lake_dir: Option<PathBuf>,
    /// Where alert transitions are sent: `webhook=URL`, `slack=URL`,
    /// `alertmanager=URL` (the Alertmanager base URL), or `NAME:KIND=URL` to
    /// name a target. Repeatable; adds to the file's [[notify]].
    #[arg(long = "notify", value_name = "TARGET")]
    pub notify: Vec<crate::alerts::notify::Target>,
    /// A directory of rule components (`*.wasm`) and instance files
    /// (`*.toml`), watched: adding, replacing or removing a file starts,
    /// swaps or stops its instance within seconds, without a restart.
    #[arg(long)]
    pub rules_dir: Option<PathBuf>,
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
    /// Per-rule memory cap of compiled (Rust) components, MiB.
    #[arg(long)]
    pub rule_memory_mib: Option<usize>,
    /// Per-call time budget of a rule, milliseconds.
    #[arg(long)]
    pub rule_deadline_ms: Option<u64>,
    /// The collector's log on stderr: text or json (one object per line).
    #[arg(long, env = "LOGMON_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<crate::config::LogFormat>,
    /// Which log events: a `tracing` filter (`info,logmon_collector::ingest=debug`).
    #[arg(long = "log", env = "LOGMON_LOG")]
    pub log_filter: Option<String>,
}

impl ServeArgs {
    /// The options `serve` runs with: [`ServeArgs::config`], validated.
    /// What a flag got wrong is named by the flag.
    pub fn options(self) -> anyhow::Result<crate::serve::ServeOptions> {
        if let Some(token) = &self.dashboard_token {
            anyhow::ensure!(!token.is_empty(), "--dashboard-token must not be empty");
            anyhow::ensure!(
                !self.tokens.contains(token),
                "--dashboard-token must differ from the ingest tokens"
            );
        }
        if let Some(raw) = &self.dashboard_prefix {
            crate::dashboard::DashboardOptions::parse_prefix(raw).map_err(anyhow::Error::msg)?;
        }
        Ok(self.config()?.validate()?)
    }

    /// The file (or the defaults), with the environment and the flags
    /// applied.
    pub fn config(self) -> Result<crate::config::CollectorConfig, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => crate::config::CollectorConfig::load(path)?,
            None => crate::config::CollectorConfig::default(),
        };
        let wants_client_certs = self.tls_client_ca.is_some() || self.require_client_cert;
        config.apply(crate::config::Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            tokens: (!self.tokens.is_empty()).then_some(self.tokens),
            lateness: self.lateness,
            quiet_after_secs: self.quiet_after,
            silent_after_secs: self.silent_after,
            max_skew_secs: self.max_skew,
            snapshot_every_secs: self.snapshot_every,
            threshold: self.threshold,
            window: self.window,
            output: self.output,
            stats_every: self.stats_every,
            top: self.top,
            max_backlog_mib: self.max_backlog_mib,
            segment_mib: self.segment_mib,
            gc_every_secs: self.gc_every,
            min_free_mib: self.min_free_mib,
            influx_url: self.influx_url,
            influx_db: self.influx_db,
            lake_dir: self.lake_dir,
            rules_dir: self.rules_dir,
            dashboard_token: self.dashboard_token,
            dashboard_prefix: self.dashboard_prefix,
            rule_memory_mib: self.rule_memory_mib,
            rule_deadline_ms: self.rule_deadline_ms,
            log_format: self.log_format,
            log_filter: self.log_filter,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_client_ca: self.tls_client_ca,
            require_client_cert: self.require_client_cert,
            rules: self.rule,
            notify: self.notify,
        });
        if wants_client_certs && config.http.tls.is_none() {
            return Err(crate::config::ConfigError::Invalid(
                "--tls-client-ca and --require-client-cert need TLS: --tls-cert and --tls-key, or [http.tls]".into(),
            ));
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The access log; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// auto, csv, clf, combined, json, or a server's format string:
    /// `nginx:'<log_format>'` or `apache:'<LogFormat>'` (docs/formats.md).
    #[arg(long, default_value = "auto")]
    pub input_format: FormatChoice,
    /// With an nginx:/apache: format: keep variables an event has no field
    /// for as labels (`label`, the default) or drop them (`skip`).
    #[arg(long, value_name = "label|skip")]
    pub unknown_variables: Option<UnknownVariables>,
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
    /// Keep reading FILE as it grows, like `tail -F` (rename rotation and
    /// copytruncate followed); ends on SIGINT or SIGTERM with the summary.
    /// Standard input is followed by itself when it is a pipe or a terminal.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: start at the file's end instead of its beginning.
    #[arg(long, requires = "follow")]
    pub from_end: bool,
    /// While following: seconds without a new line after which the wall
    /// clock (minus --lateness) closes seconds, as the live collector does.
    /// Default: the lateness.
    #[arg(long, value_name = "SECS")]
    pub idle_after: Option<u32>,
    /// Backtest: read the events of a Parquet lake (serve's `--lake-dir`)
    /// instead of a log, in event time, through the same engine and rules.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "follow"])]
    pub lake: Option<PathBuf>,
    /// With --lake: the window's start, unix seconds or RFC 3339
    /// (`2026-11-01T00:00:00Z`), inclusive.
    #[arg(long, visible_alias = "since", requires = "lake", value_parser = parse_time)]
    pub from: Option<i64>,
    /// With --lake: the window's end, exclusive.
    #[arg(long, visible_alias = "until", requires = "lake", value_parser = parse_time)]
    pub to: Option<i64>,
}

/// Unix seconds, or an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.trim().parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("`{s}` is neither unix seconds nor an RFC 3339 time: {e}"))
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
        use anyhow::Context as _;
        let format = match self.unknown_variables {
            Some(policy) => self
                .input_format
                .with_unknown_variables(policy)
                .context("--unknown-variables")?,
            None => self.input_format,
        };
        Ok(ReplayOptions {
            input: self.file,
            format,
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
            follow: self.follow,
            // A backtest reads the lake, not standard input.
            follow_stdin: self.lake.is_none(),
            lake: self.lake,
            from: self.from,
            to: self.to,
            from_end: self.from_end,
            idle_after: self.idle_after,
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
            site: Site::Sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::replay::{LogCounts, read_log};

    const NGINX: &str = r#"$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time"#;

    fn replay_options(args: &[&str]) -> anyhow::Result<ReplayOptions> {
        let argv = ["logmon-collector", "replay"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Replay(args) => args.options(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_reads_an_nginx_format_string() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let lines = [
            r#"shop.example 192.0.2.10 - - [07/Feb/2019:21:11:00 +0000] "GET /api/user HTTP/1.1" 200 300 "-" "curl/8.5.0" 0.012"#,
            r#"shop.example 192.0.2.11 - - [07/Feb/2019:21:11:00 +0000] "GET /report HTTP/1.1" 200 400 "-" "curl/8.5.0" 0.020"#,
            r#"192.0.2.1 - - [07/Feb/2019:21:11:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" 0.1"#,
            r#"blog.example 192.0.2.12 - bob [07/Feb/2019:21:11:01 +0000] "POST /api/post HTTP/2.0" 201 10 "https://blog.example/" "Mozilla/5.0" 1.5"#,
        ];
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let format = format!("nginx:{NGINX}");
        let opts = replay_options(&["--input-format", &format, log.to_str().unwrap()]).unwrap();
        let mut diag = Vec::new();
        let mut seconds = Vec::new();
        let counts = read_log(&opts, &mut diag, &mut |s: &crate::engine::SecondStats| {
            if s.hits > 0 {
                let mut sections: Vec<_> = s.sections.keys().map(|k| k.to_string()).collect();
                sections.sort();
                seconds.push((s.time, s.hits, s.bytes, sections));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(
            counts,
            LogCounts {
                lines: 4,
                events: 3,
                skipped: 0,
                malformed: 1,
                late: 0
            }
        );
        assert_eq!(
            seconds,
            [
                (
                    1_549_573_860,
                    2,
                    700,
                    vec!["/api".to_owned(), "/report".to_owned()]
                ),
                (1_549_573_861, 1, 10, vec!["/api".to_owned()]),
            ]
        );
        assert_eq!(
            String::from_utf8(diag).unwrap(),
            format!(
                "{}:3: malformed line skipped: column 15: expected ` [` after $remote_user, found none in `[07/Feb/2019:21:11:00 +0000] \"GET / HTTP…`\n",
                log.display()
            )
        );
    }

    #[test]
    fn replay_input_formats_are_trimmed_and_take_a_policy() {
        let format = |args: &[&str]| replay_options(args).map(|o| o.format);
        assert_eq!(
            format(&["--input-format", " Combined "]).unwrap(),
            FormatChoice::Fixed(Format::Combined)
        );
        let skip = format(&[
            "--input-format",
            "apache:%h %l %u %t \"%r\" %>s %b %{X-Request-Id}i",
            "--unknown-variables",
            "skip",
        ])
        .unwrap();
        let FormatChoice::Template(t) = skip else {
            panic!("{skip:?}")
        };
        assert_eq!(t.unknown_variables(), UnknownVariables::Skip);
        assert!(t.label_names().is_empty());
        let e = format(&["--input-format", "csv", "--unknown-variables", "skip"]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "--unknown-variables: an unknown-variable policy applies to nginx:/apache: format strings, not to `csv`"
        );
        let e = format(&["--input-format", "nginx:$status"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("bad nginx format string: the format has no time variable"),
            "{e}"
        );
    }
}
