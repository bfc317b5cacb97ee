//! The collector's configuration: one TOML file (`serve --config FILE`)
//! with every setting, then `LOGMON_*` environment variables, then flags
//! (each overrides the one before); [`CollectorConfig::validate`] checks it
//! all and turns it into [`ServeOptions`] before anything is opened or
//! started. `serve --print-config` prints the result of the three, which
//! reads back as the same configuration.
//!
//! A file naming every field, with its default (`docs/configuration.md`
//! explains each; `collector/collector.example.toml` is this file):
//!
//! ```toml
#![doc = include_str!("../collector.example.toml")]
//! ```
//!
//! Unknown keys are refused, naming the key and its line.

use crate::alerts::notify::{Target, TargetKind};
use crate::console::printer::OutputKind;
use crate::http::ServerConfig;
use crate::influx::InfluxConfig;
use crate::ingest::IngestConfig;
pub use crate::rules::entry::RuleConfig;
use crate::rules::{RuleSpec, SandboxLimits};
use crate::serve::ServeOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole file, as written (every table optional).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Directory of the event bus, the outbox and every snapshot.
    pub data_dir: PathBuf,
    /// A watched directory of rule components and instance files.
    pub rules_dir: Option<PathBuf>,
    pub http: ServerConfig,
    pub ingest: IngestConfig,
    pub bus: BusSection,
    pub engine: EngineSection,
    pub high_traffic: HighTrafficSection,
    pub sandbox: SandboxSection,
    pub console: ConsoleSection,
    pub dashboard: DashboardSection,
    pub shutdown: ShutdownSection,
    pub log: LogSection,
    /// Where events, rollups and alerts are stored; absent: nowhere.
    pub influx: Option<InfluxConfig>,
    pub lake: LakeSection,
    pub rules: Vec<RuleConfig>,
    pub notify: Vec<NotifyConfig>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            data_dir: PathBuf::from("logmon-data"),
            rules_dir: None,
            http: ServerConfig::default(),
            ingest: IngestConfig::default(),
            bus: BusSection::default(),
            engine: EngineSection::default(),
            high_traffic: HighTrafficSection::default(),
            sandbox: SandboxSection::default(),
            console: ConsoleSection::default(),
            dashboard: DashboardSection::default(),
            shutdown: ShutdownSection::default(),
            log: LogSection::default(),
            influx: None,
            lake: LakeSection::default(),
            rules: Vec::new(),
            notify: Vec::new(),
        }
    }
}

/// `[bus]`: the local segment log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSection {
    /// A segment is sealed at this size (MiB); segments are deleted whole
    /// once every consumer has passed them. Default 64.
    pub segment_mib: u64,
    /// Seconds between deletions of consumed segments. Default 5.
    pub gc_every_secs: u64,
    /// Free space (MiB) in the data directory's filesystem under which
    /// batches are refused (503 `disk_full`), kept for offsets, snapshots
    /// and the dedup table. Default: 1 GiB or 5 % of the filesystem,
    /// whichever is smaller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_mib: Option<u64>,
}

impl Default for BusSection {
    fn default() -> Self {
        BusSection {
            segment_mib: 64,
            gc_every_secs: 5,
            min_free_mib: None,
        }
    }
}

/// `[lake]`: the cold tier, Parquet files per UTC hour (docs/lake.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeSection {
    /// Write every event to the lake. Default false; `--lake-dir` turns it on.
    pub enabled: bool,
    /// The lake's directory. Default: `lake` in the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A partition's file is written once it holds this many rows (or all
    /// partitions in memory together do: then the largest). Default 250000.
    pub file_rows: usize,
    /// Rows per row group within a file. Default 50000.
    pub row_group_rows: usize,
    /// A partition's file is written at the latest this many seconds after
    /// its first row arrived. Default 600.
    pub flush_secs: u64,
    /// Partitions whose hour ended more than this many days ago are
    /// deleted; 0 keeps everything. Default 0.
    pub retention_days: u32,
}

impl Default for LakeSection {
    fn default() -> Self {
        LakeSection {
            enabled: false,
            dir: None,
            file_rows: crate::lake::DEFAULT_FILE_ROWS,
            row_group_rows: crate::lake::DEFAULT_ROW_GROUP_ROWS,
            flush_secs: crate::lake::DEFAULT_FLUSH_SECS,
            retention_days: 0,
        }
    }
}

/// `[engine]`: event time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Seconds an event may trail its stream's newest one. Default 5.
    pub lateness: u32,
    /// Seconds (agent clock) after which a file its agent stopped sending,
    /// while sending others, stops holding time back. Default 30.
    pub quiet_after_secs: u64,
    /// Seconds without anything from an agent after which its files stop
    /// holding time back. Default 30.
    pub silent_after_secs: u64,
    /// Seconds a file read to its end may trail the leading one in event
    /// time and still hold time back (a host clock that is wrong). Default 60.
    pub max_skew_secs: u64,
    /// Events further ahead of the wall clock are refused. Default 300.
    pub max_future_secs: u64,
    /// Seconds between engine snapshots. Default 5.
    pub snapshot_every_secs: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            lateness: 5,
            quiet_after_secs: 30,
            silent_after_secs: 30,
            max_skew_secs: 60,
            max_future_secs: 300,
            snapshot_every_secs: 5,
        }
    }
}

/// `[high_traffic]`: the exercise's rule, which always runs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HighTrafficSection {
    /// Average requests per second that fire the alert. Default 10.
    pub threshold: f64,
    /// Seconds averaged. Default 120.
    pub window: u32,
}

impl Default for HighTrafficSection {
    fn default() -> Self {
        HighTrafficSection {
            threshold: 10.0,
            window: 120,
        }
    }
}

/// `[sandbox]`: what every rule instance may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSection {
    /// Memory cap of a compiled (Rust, C…) component, MiB. Default 64.
    pub memory_mib: usize,
    /// Memory cap of a Python component, MiB. Default 256.
    pub python_memory_mib: usize,
    /// Memory cap of a JavaScript component, MiB. Default 256.
    pub js_memory_mib: usize,
    /// Time budget of one call, milliseconds. Default 200.
    pub deadline_ms: u64,
}

impl Default for SandboxSection {
    fn default() -> Self {
        let d = SandboxLimits::default();
        SandboxSection {
            memory_mib: d.memory >> 20,
            python_memory_mib: d.python_memory >> 20,
            js_memory_mib: d.js_memory >> 20,
            deadline_ms: d.call_deadline.as_millis() as u64,
        }
    }
}

/// `[console]`: statistics and alert lines on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSection {
    /// `text` or `json` (one object per line). Default `text`.
    pub output: OutputKind,
    /// Seconds of event time per statistics block. Default 10.
    pub stats_every: u32,
    /// Sections and clients listed per block. Default 5.
    pub top: usize,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            output: OutputKind::Text,
            stats_every: 10,
            top: 5,
        }
    }
}

/// `[dashboard]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSection {
    /// A read-only token every `/api/*` request must carry; absent: open.
    /// Must differ from every ingest token.
    pub token: Option<String>,
    /// A path prefix (`/logmon`) the dashboard is also served under.
    pub prefix: Option<String>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// Seconds after a shutdown begins when everything still running is
    /// stopped. Default 30.
    pub deadline_secs: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection { deadline_secs: 30 }
    }
}

/// `[log]`: the collector's own log, on stderr (`format`, `filter`).
pub use logmon_io::log::LogConfig as LogSection;

/// How log events are written (`text` or `json`).
pub use logmon_io::log::LogFormat;

/// What flags and the environment set (each `Some` overrides the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub tokens: Option<Vec<String>>,
    pub lateness: Option<u32>,
    pub quiet_after_secs: Option<u64>,
    pub silent_after_secs: Option<u64>,
    pub max_skew_secs: Option<u64>,
    pub snapshot_every_secs: Option<u64>,
    pub threshold: Option<f64>,
    pub window: Option<u32>,
    pub output: Option<OutputKind>,
    pub stats_every: Option<u32>,
    pub top: Option<usize>,
    pub max_backlog_mib: Option<u64>,
    pub segment_mib: Option<u64>,
    pub gc_every_secs: Option<u64>,
    pub min_free_mib: Option<u64>,
    pub influx_url: Option<String>,
    pub influx_db: Option<String>,
    /// Turns the lake on, in this directory.
    pub lake_dir: Option<PathBuf>,
    pub rules_dir: Option<PathBuf>,
    pub dashboard_token: Option<String>,
    pub dashboard_prefix: Option<String>,
    pub rule_memory_mib: Option<usize>,
    pub rule_deadline_ms: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub log_filter: Option<String>,
    /// TLS on the listener: certificate and key (both, or neither), client
    /// CA, client certificates required.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
    /// More rule instances and targets (added to the file's).
    pub rules: Vec<RuleSpec>,
    pub notify: Vec<Target>,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl CollectorConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// The file as TOML (what `--print-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serializes as TOML")
    }

    /// Applies what flags and the environment set. `influx_url` turns
    /// InfluxDB on (v1, unless the file says otherwise); `influx_db` names
    /// the v1 database.
    pub fn apply(&mut self, o: Overrides) {
        set(&mut self.http.listen, o.listen);
        set(&mut self.data_dir, o.data_dir);
        set(&mut self.ingest.tokens, o.tokens);
        set(&mut self.engine.lateness, o.lateness);
        set(&mut self.engine.quiet_after_secs, o.quiet_after_secs);
        set(&mut self.engine.silent_after_secs, o.silent_after_secs);
        set(&mut self.engine.max_skew_secs, o.max_skew_secs);
        set(&mut self.engine.snapshot_every_secs, o.snapshot_every_secs);
        set(&mut self.high_traffic.threshold, o.threshold);
        set(&mut self.high_traffic.window, o.window);
        set(&mut self.console.output, o.output);
        set(&mut self.console.stats_every, o.stats_every);
        set(&mut self.console.top, o.top);
        set(
            &mut self.ingest.max_backlog_bytes,
            o.max_backlog_mib.map(|m| m << 20),
        );
        set(&mut self.bus.segment_mib, o.segment_mib);
        set(&mut self.bus.gc_every_secs, o.gc_every_secs);
        if o.min_free_mib.is_some() {
            self.bus.min_free_mib = o.min_free_mib;
        }
        set(&mut self.sandbox.memory_mib, o.rule_memory_mib);
        set(&mut self.sandbox.deadline_ms, o.rule_deadline_ms);
        set(&mut self.log.format, o.log_format);
        set(&mut self.log.filter, o.log_filter);
        if o.rules_dir.is_some() {
            self.rules_dir = o.rules_dir;
        }
        if o.dashboard_token.is_some() {
            self.dashboard.token = o.dashboard_token;
        }
        if o.dashboard_prefix.is_some() {
            self.dashboard.prefix = o.dashboard_prefix;
        }
        if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
            let tls = self
                .http
                .tls
                .get_or_insert_with(|| crate::http::tls::TlsConfig::new(cert.clone(), key.clone()));
            tls.cert.clone_from(cert);
            tls.key.clone_from(key);
        }
        if let Some(tls) = &mut self.http.tls {
            if o.tls_client_ca.is_some() {
                tls.client_ca = o.tls_client_ca;
            }
            tls.require_client_cert |= o.require_client_cert;
        }
        if let Some(url) = o.influx_url {
            self.influx.get_or_insert_with(InfluxConfig::default).url = url;
        }
        if let Some(db) = o.influx_db
            && let Some(influx) = &mut self.influx
        {
            match &mut influx.api {
                crate::influx::InfluxApi::V1(v1) => v1.database = db,
                crate::influx::InfluxApi::V2(_) => {}
            }
        }
        if let Some(dir) = o.lake_dir {
            self.lake.enabled = true;
            self.lake.dir = Some(dir);
        }
        self.rules.extend(o.rules.into_iter().map(RuleConfig::from));
        self.notify
            .extend(o.notify.into_iter().map(|t| NotifyConfig {
                name: t.name,
                kind: t.kind,
                url: t.url,
            }));
    }

    /// Checks everything and builds what `serve` runs. Token files are read
    /// here.
    pub fn validate(&self) -> Result<ServeOptions, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let ht = &self.high_traffic;
        if ht.window == 0 {
            return bad("high_traffic.window (--window) must be at least 1 second".into());
        }
        if !ht.threshold.is_finite() || ht.threshold < 0.0 {
            return bad(
                "high_traffic.threshold (--threshold) must be a non-negative number".into(),
            );
        }
        if self.console.stats_every == 0 {
            return bad("console.stats_every (--stats-every) must be at least 1 second".into());
        }
        if self.bus.segment_mib == 0 {
            return bad("bus.segment_mib (--segment-mib) must be at least 1".into());
        }
        if self.bus.gc_every_secs == 0 {
            return bad("bus.gc_every_secs (--gc-every) must be at least 1 second".into());
        }
        if self.sandbox.memory_mib == 0 || self.sandbox.deadline_ms == 0 {
            return bad("sandbox memory caps and deadline_ms must be positive".into());
        }
        self.http.validate().map_err(ConfigError::Invalid)?;
        let ingest = self.ingest.clone();
        // The files are read again by ingest, and again whenever they change.
        let all_tokens = ingest
            .all_tokens()
            .map_err(|(path, source)| ConfigError::Read { path, source })?;
        if all_tokens.is_empty() {
            return bad(
                "no ingest token: set ingest.tokens or ingest.token_files, --token or LOGMON_TOKENS (without one every batch would be refused)"
                    .into(),
            );
        }
        ingest
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(token) = &self.dashboard.token {
            if token.is_empty() {
                return bad("dashboard.token must not be empty".into());
            }
            if all_tokens.contains(token) {
                return bad("dashboard.token must differ from the ingest tokens".into());
            }
        }
        let prefix = match &self.dashboard.prefix {
            Some(raw) => crate::dashboard::DashboardOptions::parse_prefix(raw)
                .map_err(|e| ConfigError::Invalid(format!("dashboard.prefix: {e}")))?,
            None => None,
        };
        if let Some(influx) = &self.influx {
            crate::influx::InfluxClient::new(influx.clone())
                .map_err(|e| ConfigError::Invalid(format!("influx: {e}")))?;
        }
        let lake = &self.lake;
        if lake.enabled && (lake.file_rows == 0 || lake.row_group_rows == 0 || lake.flush_secs == 0)
        {
            return bad(
                "lake.file_rows, lake.row_group_rows and lake.flush_secs must be positive".into(),
            );
        }
        let configured = resolve(&self.rules, &self.notify).map_err(ConfigError::Invalid)?;
        let engine = &self.engine;
        Ok(ServeOptions {
            data_dir: self.data_dir.clone(),
            severity: configured.severity,
            routes: configured.routes,
            ingest,
            http: self.http.clone(),
            shutdown_deadline: Duration::from_secs(self.shutdown.deadline_secs),
            log: self.log.clone(),
            live: crate::engine::consumer::LiveOptions {
                lateness: engine.lateness,
                quiet_after: Duration::from_secs(engine.quiet_after_secs),
                silent_after: Duration::from_secs(engine.silent_after_secs),
                max_skew: Duration::from_secs(engine.max_skew_secs),
                max_future: Duration::from_secs(engine.max_future_secs),
                snapshot_dir: Some(self.data_dir.clone()),
                snapshot_every: Duration::from_secs(engine.snapshot_every_secs.max(1)),
                rules_dir: self.rules_dir.clone(),
                ..crate::engine::consumer::LiveOptions::default()
            },
            threshold: ht.threshold,
            window: ht.window,
            rules: configured.rules,
            notify: configured.targets,
            output: self.console.output,
            stats_every: self.console.stats_every,
            top: self.console.top,
            limits: SandboxLimits {
                memory: self.sandbox.memory_mib << 20,
                python_memory: self.sandbox.python_memory_mib << 20,
                js_memory: self.sandbox.js_memory_mib << 20,
                call_deadline: Duration::from_millis(self.sandbox.deadline_ms),
                ..SandboxLimits::default()
            },
            gc_every: Duration::from_secs(self.bus.gc_every_secs),
            segment_bytes: self.bus.segment_mib << 20,
            min_free_bytes: self.bus.min_free_mib.map(|m| m << 20),
            dashboard: crate::dashboard::DashboardOptions {
                token: self.dashboard.token.clone(),
                prefix,
            },
            influx: self.influx.clone(),
            lake: lake.enabled.then(|| crate::lake::LakeConfig {
                dir: lake
                    .dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("lake")),
                file_rows: lake.file_rows,
                row_group_rows: lake.row_group_rows,
                flush_after: Duration::from_secs(lake.flush_secs),
                retention_days: (lake.retention_days > 0).then_some(lake.retention_days),
                fsync: true,
            }),
        })
    }
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub name: String,
    pub kind: TargetKind,
    pub url: String,
}

/// What the file configures, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configured {
    pub rules: Vec<RuleSpec>,
    pub targets: Vec<Target>,
    /// Instance name → severity, for the instances that set one.
    pub severity: BTreeMap<String, String>,
    /// Instance name → the only targets it notifies (absent: every target).
    pub routes: BTreeMap<String, Vec<String>>,
}

impl CollectorConfig {
    /// Checks names and references and turns entries into specs and targets.
    pub fn resolve(&self) -> Result<Configured, String> {
        resolve(&self.rules, &self.notify)
    }
}

/// Checks names and references and turns entries into specs and targets.
fn resolve(rules: &[RuleConfig], notify: &[NotifyConfig]) -> Result<Configured, String> {
    {
        let mut out = Configured::default();
        for n in notify {
            let target = Target::new(n.name.clone(), n.kind, &n.url)
                .map_err(|e| format!("notify {}: {e}", n.name))?;
            if out.targets.iter().any(|t| t.name == target.name) {
                return Err(format!("notify {}: the name is used twice", n.name));
            }
            out.targets.push(target);
        }
        for r in rules {
            let label = r.name.clone().unwrap_or_else(|| r.component.clone());
            let spec = r.spec(None)?;
            if (!r.severity.is_empty() || r.notify.is_some()) && r.name.is_none() {
                return Err(format!(
                    "rule {label}: give it a `name` to set its severity or routing"
                ));
            }
            if !r.severity.is_empty() {
                out.severity.insert(label.clone(), r.severity.clone());
            }
            if let Some(targets) = &r.notify {
                for t in targets {
                    if !out.targets.iter().any(|x| &x.name == t) {
                        return Err(format!("rule {label}: no [[notify]] target named {t:?}"));
                    }
                }
                out.routes.insert(label.clone(), targets.clone());
            }
            out.rules.push(spec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;

    const FULL: &str = include_str!("../collector.example.toml");

    #[test]
    fn the_example_file_names_every_field_and_validates() {
        let config: CollectorConfig = toml::from_str(FULL).unwrap();
        let options = config.validate().unwrap();
        assert_eq!(options.http.listen.to_string(), "127.0.0.1:8470");
        assert_eq!(options.ingest.tokens, ["change-me"]);
        assert_eq!(options.segment_bytes, 64 << 20);
        assert_eq!(options.live.max_future, Duration::from_secs(300));
        assert_eq!(options.limits.python_memory, 256 << 20);
        assert_eq!(options.rules[0].name.as_deref(), Some("api-errors"));
        assert_eq!(options.rules[0].memory, Some(128 << 20));
        assert_eq!(options.notify[0].name, "ops");
        assert_eq!(options.routes["api-errors"], ["ops"]);
        // Every field of the defaults is in the file: printing the defaults
        // and the example gives the same keys.
        let keys = |text: &str| -> Vec<String> {
            let value: toml::Value = toml::from_str(text).unwrap();
            let mut out = Vec::new();
            fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
                if let toml::Value::Table(t) = v {
                    for (k, v) in t {
                        let path = format!("{prefix}.{k}");
                        out.push(path.clone());
                        if !matches!(v, toml::Value::Array(_)) {
                            walk(&path, v, out);
                        }
                    }
                }
            }
            walk("", &value, &mut out);
            out.sort();
            out
        };
        let defaults = CollectorConfig {
            influx: Some(InfluxConfig::default()),
            ..CollectorConfig::default()
        };
        for key in keys(&defaults.to_toml()) {
            assert!(
                keys(FULL).contains(&key),
                "{key} is not in the example file"
            );
        }
    }

    #[test]
    fn print_config_reads_back_as_the_same_configuration() {
        let mut config: CollectorConfig = toml::from_str(FULL).unwrap();
        config.apply(Overrides {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            threshold: Some(25.5),
            influx_db: Some("other".into()),
            rules: vec!["high-traffic:threshold=3".parse().unwrap()],
            ..Overrides::default()
        });
        let printed = config.to_toml();
        let back: CollectorConfig = toml::from_str(&printed).unwrap();
        assert_eq!(back, config, "{printed}");
        let defaults: CollectorConfig =
            toml::from_str(&CollectorConfig::default().to_toml()).unwrap();
        assert_eq!(defaults, CollectorConfig::default());
    }

    #[test]
    fn flags_override_the_file_and_add_rules_and_targets() {
        let mut config: CollectorConfig = toml::from_str(FULL).unwrap();
        config.apply(Overrides {
            tokens: Some(vec!["from-flag".into()]),
            window: Some(60),
            influx_url: Some("http://10.0.0.1:8086".into()),
            notify: vec!["chat:slack=http://127.0.0.1:1/hook".parse().unwrap()],
            ..Overrides::default()
        });
        let options = config.validate().unwrap();
        assert_eq!(options.ingest.tokens, ["from-flag"]);
        assert_eq!(options.window, 60);
        assert_eq!(options.influx.unwrap().url, "http://10.0.0.1:8086");
        let names: Vec<&str> = options.notify.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ops", "chat"]);
        // Without a file, --influx-url alone turns InfluxDB (v1) on.
        let mut bare = CollectorConfig::default();
        bare.apply(Overrides {
            tokens: Some(vec!["t".into()]),
            influx_url: Some("http://127.0.0.1:8086".into()),
            influx_db: Some("metrics".into()),
            ..Overrides::default()
        });
        let influx = bare.validate().unwrap().influx.unwrap();
        match influx.api {
            crate::influx::InfluxApi::V1(v1) => assert_eq!(v1.database, "metrics"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lake_dir_turns_the_lake_on() {
        let mut config: CollectorConfig = toml::from_str(FULL).unwrap();
        assert_eq!(config.validate().unwrap().lake, None);
        config.apply(Overrides {
            lake_dir: Some("/srv/lake".into()),
            ..Overrides::default()
        });
        let lake = config.validate().unwrap().lake.unwrap();
        assert_eq!(lake.dir, Path::new("/srv/lake"));
        assert_eq!(lake.file_rows, crate::lake::DEFAULT_FILE_ROWS);
        assert_eq!(lake.retention_days, None);
        let on: CollectorConfig = toml::from_str(
            "data_dir = \"/d\"\n[ingest]\ntokens = [\"a\"]\n[lake]\nenabled = true\nretention_days = 90",
        )
        .unwrap();
        let lake = on.validate().unwrap().lake.unwrap();
        assert_eq!(lake.dir, Path::new("/d/lake"));
        assert_eq!(lake.retention_days, Some(90));
    }

    #[test]
    fn mistakes_are_refused_before_anything_starts() {
        let err = toml::from_str::<CollectorConfig>("[engine]\nlatenes = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field `latenes`"), "{err}");
        let err = toml::from_str::<CollectorConfig>("colour = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        for (text, why) in [
            ("", "no ingest token"),
            (
                "[ingest]\ntokens = [\"a\"]\n[high_traffic]\nwindow = 0",
                "window",
            ),
            (
                "[ingest]\ntokens = [\"a\"]\n[high_traffic]\nthreshold = -1.0",
                "threshold",
            ),
            (
                "[ingest]\ntokens = [\"a\"]\n[dashboard]\ntoken = \"a\"",
                "differ",
            ),
            (
                "[ingest]\ntokens = [\"a\"]\n[bus]\nsegment_mib = 0",
                "segment_mib",
            ),
            (
                "[ingest]\ntokens = [\"a\"]\n[http]\nmax_connections = 0",
                "max_connections",
            ),
            (
                "[ingest]\ntokens = [\"a\"]\ntoken_files = [\"/nonexistent/tokens\"]",
                "/nonexistent/tokens",
            ),
        ] {
            let config: CollectorConfig = toml::from_str(text).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn token_files_add_their_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# agents\nalpha\n\n  beta  \n").unwrap();
        let mut config = CollectorConfig::default();
        config.ingest.tokens = vec!["inline".into()];
        config.ingest.token_files = vec![file];
        assert_eq!(
            config.validate().unwrap().ingest.all_tokens().unwrap(),
            ["inline", "alpha", "beta"]
        );
    }

    const EXAMPLE: &str = r#"
[[rules]]
component = "high-traffic"
name = "site-busy"
params = { threshold = 10, window = 120 }
for = "30s"
keep_firing_for = "1m"
severity = "warning"
notify = ["ops"]

[[rules]]
component = "/etc/logmon/rules/mine.wasm"
params = { limit = "5" }

[[notify]]
name = "ops"
kind = "alertmanager"
url = "http://127.0.0.1:9093"

[[notify]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:8080/hook"
"#;

    #[test]
    fn the_documented_example_resolves() {
        let c: CollectorConfig = toml::from_str(EXAMPLE).unwrap();
        let r = c.resolve().unwrap();
        let busy = &r.rules[0];
        assert_eq!(busy.source, RuleSource::Shipped("high-traffic".into()));
        assert_eq!(
            busy.params,
            vec![
                ("threshold".to_string(), "10".to_string()),
                ("window".to_string(), "120".to_string())
            ]
        );
        assert_eq!((busy.pending_for, busy.keep_firing_for), (30, 60));
        assert_eq!(busy.name.as_deref(), Some("site-busy"));
        assert_eq!(
            r.rules[1].source,
            RuleSource::File("/etc/logmon/rules/mine.wasm".into())
        );
        assert_eq!(r.severity["site-busy"], "warning");
        assert_eq!(r.routes["site-busy"], vec!["ops".to_string()]);
        assert_eq!(
            r.targets
                .iter()
                .map(|t| (t.name.as_str(), t.kind))
                .collect::<Vec<_>>(),
            vec![
                ("ops", TargetKind::Alertmanager),
                ("chat", TargetKind::Slack)
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, why) in [
            ("[[rules]]\ncomponent = \"x\"\nfor = \"3 days\"", "`for`"),
            (
                "[[rules]]\ncomponent = \"x\"\nname = \"a\"\nnotify = [\"nope\"]",
                "no [[notify]] target named \"nope\"",
            ),
            (
                "[[rules]]\ncomponent = \"x\"\nseverity = \"page\"",
                "give it a `name`",
            ),
            (
                "[[notify]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://x\"\n[[notify]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://y\"",
                "used twice",
            ),
        ] {
            let c: CollectorConfig = toml::from_str(text).unwrap();
            let err = c.resolve().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(
            toml::from_str::<CollectorConfig>("[[rules]]\ncomponent = \"x\"\ncolour = 1").is_err()
        );
    }
}
