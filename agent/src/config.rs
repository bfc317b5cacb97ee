//! The agent's configuration, in two stages: [`AgentConfig`] is the raw TOML
//! (plain data, `deny_unknown_fields`, every field documented with its
//! default), overridden by environment variables ([`AgentConfig::apply_env`])
//! and then by command-line flags ([`AgentConfig::apply`]);
//! [`AgentConfig::validate`] turns it into [`Settings`], checked and ready to
//! run. Nothing is opened or started before validation succeeds.
//!
//! A complete file with every default:
//!
//! ```toml
//! agent_id = ""                 # "" = the host name
//! host = ""                     # "" = the host name
//! collector_urls = ["http://127.0.0.1:8470"]
//! token = ""                    # or token_file = "/etc/logmon/token"
//! checkpoint_dir = "/var/lib/logmon-agent"
//! metrics_listen = "127.0.0.1:9180"   # "" disables /metrics and /health
//! batch_max_events = 1000
//! batch_max_bytes = 1048576
//! linger_ms = 200
//! max_in_flight = 4
//! pipeline_depth = 4           # batches of one file in flight at once
//! max_buffered_batches = 16
//! read_budget_bytes = 1048576
//! idle_poll_ms = 100
//! heartbeat_ms = 1000          # 0 = never
//! checkpoint_interval_ms = 1000
//! retry_min_ms = 100
//! retry_max_ms = 5000
//! request_timeout_ms = 10000
//! shutdown_deadline_ms = 5000
//! zstd_level = 1
//! labels = { dc = "eu-1" }
//!
//! [[sources]]
//! include = ["/var/log/nginx/access.log"]
//! exclude = []
//! format = "auto"              # auto | csv | clf | combined | json | { nginx = '…' } | { apache = '…' } | { component = "w3c" }
//! labels = { site = "shop" }
//!
//! [tail]                        # passed to every source's tailer
//! start_at = "end"
//!
//! [log]                         # the agent's own log, on stderr
//! format = "text"               # text | json (one object per line)
//! filter = "info"               # tracing filter: "info,logmon_agent::ship=debug"
//!
//! [tls]                         # for https:// collector_urls
//! # ca_file = "/etc/logmon/ca.pem"        # default: the system's roots
//! # client_cert = "/etc/logmon/agent.pem" # mutual TLS, with client_key
//! # client_key = "/etc/logmon/agent.key"
//! # pins = ["<sha-256 hex of the collector's certificate>"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::filter::FilterConfig;
use crate::parser::{ParserConfig, SourceFormat};
use crate::tail::{StartAt, TailerConfig, fnv1a64};
use logmon_io::log::{LogConfig, LogFormat};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How to read a source's lines: `auto`, a built-in format's name, or a
/// server's format string (`{ nginx = '…' }`, `{ apache = '…' }`, with
/// `unknown_variables = "label" | "skip"`); shared with the collector's
/// `replay --input-format`.
pub use logmon_protocol::FormatChoice;

/// A set of log files read the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Names the source's checkpoint directory (`checkpoint_dir/<name>`).
    /// Default: a checksum of `include`, so reordering sources keeps their
    /// checkpoints (changing the globs starts the source afresh).
    #[serde(default)]
    pub name: Option<String>,
    /// Glob patterns of the files to tail. Required, at least one.
    pub include: Vec<String>,
    /// Glob patterns of matched files to leave alone. Default: none.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The log format: `auto`, `csv`, `clf`, `combined`, `json`, a
    /// format string, `{ nginx = '<log_format>' }` / `{ apache =
    /// '<LogFormat>' }` (optional `unknown_variables = "label" | "skip"`),
    /// or an edge parser, `{ component = "w3c" }` (see [`ParserConfig`];
    /// needs the `wasm` feature). Default: `auto`.
    #[serde(default)]
    pub format: SourceFormat,
    /// Labels added to every batch of this source (over the global ones).
    /// Default: none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Edge filters applied to each batch, in order:
    /// `[{ component = "drop", params = { path_prefix = "/healthz" } }]`
    /// (see [`FilterConfig`]). Needs the `wasm` feature. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterConfig>,
}

impl SourceConfig {
    /// A source with one glob and `format`.
    pub fn new(include: impl Into<String>, format: impl Into<SourceFormat>) -> Self {
        Self {
            name: None,
            include: vec![include.into()],
            exclude: Vec::new(),
            format: format.into(),
            labels: BTreeMap::new(),
            filters: Vec::new(),
        }
    }

    /// Parses a `--file GLOB[:FORMAT]` flag: the part after the last `:` is
    /// a format only when it names one (or `auto`), so paths with colons
    /// still work; `GLOB:nginx:<log_format>` and `GLOB:apache:<LogFormat>`
    /// take a format string (which may hold colons itself), as
    /// `replay --input-format` does.
    pub fn from_flag(flag: &str) -> Self {
        let lower = flag.to_ascii_lowercase();
        if let Some(at) = [":nginx:", ":apache:"]
            .iter()
            .filter_map(|tag| lower.find(tag))
            .min()
            && at > 0
            && let Ok(format) = flag[at + 1..].parse::<FormatChoice>()
        {
            return Self::new(&flag[..at], format);
        }
        if let Some((glob, format)) = flag.rsplit_once(':')
            && let Ok(format) = format.parse::<FormatChoice>()
            && !glob.is_empty()
        {
            return Self::new(glob, format);
        }
        Self::new(flag, FormatChoice::Auto)
    }
}

/// Tailer settings shared by every source (`TailerConfig` without the globs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSettings {
    /// Where to start files that existed at startup without a checkpoint:
    /// `end` (default, like `tail -f`) or `beginning`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longest line, in bytes; longer lines are cut. Default: 65536.
    #[serde(default = "TailerConfig::default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Size of one read. Default: 65536.
    #[serde(default = "TailerConfig::default_read_chunk_bytes")]
    pub read_chunk_bytes: usize,
    /// How often the globs are expanded again. Default: 1000.
    #[serde(default = "TailerConfig::default_rescan_interval_ms")]
    pub rescan_interval_ms: u64,
    /// Most bytes of a file's head in its fingerprint. Default: 256.
    #[serde(default = "TailerConfig::default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// Complete lines in a fingerprint when they end sooner. Default: 2.
    #[serde(default = "TailerConfig::default_fingerprint_lines")]
    pub fingerprint_lines: usize,
    /// How long a finished rotated file stays open. Default: 5000.
    #[serde(default = "TailerConfig::default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// Checkpoints of files unseen this long are forgotten. Default: a week.
    #[serde(default = "TailerConfig::default_checkpoint_ttl_secs")]
    pub checkpoint_ttl_secs: u64,
    /// Find new files by file-system events (inotify) as well as by the
    /// rescan, so a file that has a matching name only briefly is read.
    /// Default: true.
    #[serde(default = "TailerConfig::default_file_events")]
    pub file_events: bool,
}

impl Default for TailSettings {
    fn default() -> Self {
        Self {
            start_at: StartAt::default(),
            max_line_bytes: TailerConfig::default_max_line_bytes(),
            read_chunk_bytes: TailerConfig::default_read_chunk_bytes(),
            rescan_interval_ms: TailerConfig::default_rescan_interval_ms(),
            fingerprint_bytes: TailerConfig::default_fingerprint_bytes(),
            fingerprint_lines: TailerConfig::default_fingerprint_lines(),
            rotate_wait_ms: TailerConfig::default_rotate_wait_ms(),
            checkpoint_ttl_secs: TailerConfig::default_checkpoint_ttl_secs(),
            file_events: TailerConfig::default_file_events(),
        }
    }
}

impl TailSettings {
    fn tailer_config(&self, source: &SourceConfig) -> TailerConfig {
        TailerConfig {
            include: source.include.clone(),
            exclude: source.exclude.clone(),
            start_at: self.start_at,
            max_line_bytes: self.max_line_bytes,
            read_chunk_bytes: self.read_chunk_bytes,
            rescan_interval_ms: self.rescan_interval_ms,
            fingerprint_bytes: self.fingerprint_bytes,
            fingerprint_lines: self.fingerprint_lines,
            rotate_wait_ms: self.rotate_wait_ms,
            checkpoint_ttl_secs: self.checkpoint_ttl_secs,
            file_events: self.file_events,
        }
    }
}

/// The raw agent configuration, as written in TOML. See the module docs for
/// a complete file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's identity in batches (part of the collector's
    /// deduplication key, so keep it stable). Default: the host name.
    #[serde(default)]
    pub agent_id: String,
    /// The `host` of every batch. Default: the host name.
    #[serde(default)]
    pub host: String,
    /// Collector base URLs (`http://host:port`), tried in order: a network
    /// error or 5xx moves on to the next. Default: `["http://127.0.0.1:8470"]`.
    /// Env: `LOGMON_COLLECTOR_URL` (comma-separated).
    #[serde(default = "AgentConfig::default_collector_urls")]
    pub collector_urls: Vec<String>,
    /// Bearer token. Default: none. Env: `LOGMON_AGENT_TOKEN`.
    #[serde(default)]
    pub token: String,
    /// File holding the bearer token (read at start and again after a 401).
    /// Default: none. Env: `LOGMON_AGENT_TOKEN_FILE`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The files to tail. Default: none (at least one is required, here or
    /// with `--file`).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Labels added to every batch. Default: none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A batch closes at this many events. Default: 1000.
    #[serde(default = "AgentConfig::default_batch_max_events")]
    pub batch_max_events: usize,
    /// ... or at this many bytes of log lines. Default: 1 MiB.
    #[serde(default = "AgentConfig::default_batch_max_bytes")]
    pub batch_max_bytes: u64,
    /// ... or this long after its first line was read. Default: 200.
    #[serde(default = "AgentConfig::default_linger_ms")]
    pub linger_ms: u64,
    /// Most requests outstanding at once. Default: 4.
    #[serde(default = "AgentConfig::default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most batches of one file in flight at once, once the collector has
    /// said it stores pipelined batches in order (its answers carry
    /// `Logmon-Pipelining`); 1 = one at a time. Default: 4.
    #[serde(default = "AgentConfig::default_pipeline_depth")]
    pub pipeline_depth: usize,
    /// Most batches read but not acknowledged (in flight, queued or being
    /// retried); reading pauses at this many. Bounds memory to about
    /// `max_buffered_batches * batch_max_bytes * 2`. Default: 16.
    #[serde(default = "AgentConfig::default_max_buffered_batches")]
    pub max_buffered_batches: usize,
    /// Most bytes read from files in one poll. Default: 1 MiB.
    #[serde(default = "AgentConfig::default_read_budget_bytes")]
    pub read_budget_bytes: u64,
    /// Pause between polls when the files had nothing new. Default: 100.
    #[serde(default = "AgentConfig::default_idle_poll_ms")]
    pub idle_poll_ms: u64,
    /// How often a file that is read to its end and fully acknowledged tells
    /// the collector so (an empty batch): it lets event time advance while the
    /// server is quiet, and its absence tells the collector this agent may
    /// still have lines to send. 0 disables. Default: 1000.
    #[serde(default = "AgentConfig::default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Where acknowledged offsets are kept, one directory per source.
    /// Default: `/var/lib/logmon-agent`. Env: `LOGMON_AGENT_CHECKPOINT_DIR`.
    #[serde(default = "AgentConfig::default_checkpoint_dir")]
    pub checkpoint_dir: PathBuf,
    /// How often changed checkpoints are written. Default: 1000.
    #[serde(default = "AgentConfig::default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Address of `/metrics` and `/health`; `""` disables them.
    /// Default: `127.0.0.1:9180`. Env: `LOGMON_AGENT_METRICS_LISTEN`.
    #[serde(default = "AgentConfig::default_metrics_listen")]
    pub metrics_listen: String,
    /// First retry delay (the backoff doubles from here, with full jitter).
    /// Default: 100.
    #[serde(default = "AgentConfig::default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// Longest retry delay (`Retry-After` is honoured to 60 s). Default: 5000:
    /// an agent is back within this of its collector's return, well inside
    /// the collector's `silent_after_secs` (30), so its lines are on time.
    #[serde(default = "AgentConfig::default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Time allowed for one request. Default: 10000.
    #[serde(default = "AgentConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, time allowed to deliver what was read before the
    /// agent writes its checkpoints and exits. Default: 5000.
    #[serde(default = "AgentConfig::default_shutdown_deadline_ms")]
    pub shutdown_deadline_ms: u64,
    /// zstd level of request bodies (1-19). Default: 1.
    #[serde(default = "AgentConfig::default_zstd_level")]
    pub zstd_level: i32,
    /// Tailer settings for every source.
    #[serde(default)]
    pub tail: TailSettings,
    /// The agent's own log on stderr. Env: `LOGMON_LOG_FORMAT`, `LOGMON_LOG`.
    #[serde(default)]
    pub log: LogConfig,
    /// How `https://` collectors are checked and what the agent shows them.
    #[serde(default)]
    pub tls: TlsSettings,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            agent_id: String::new(),
            host: String::new(),
            collector_urls: Self::default_collector_urls(),
            token: String::new(),
            token_file: None,
            sources: Vec::new(),
            labels: BTreeMap::new(),
            batch_max_events: Self::default_batch_max_events(),
            batch_max_bytes: Self::default_batch_max_bytes(),
            linger_ms: Self::default_linger_ms(),
            max_in_flight: Self::default_max_in_flight(),
            pipeline_depth: Self::default_pipeline_depth(),
            max_buffered_batches: Self::default_max_buffered_batches(),
            read_budget_bytes: Self::default_read_budget_bytes(),
            idle_poll_ms: Self::default_idle_poll_ms(),
            heartbeat_ms: Self::default_heartbeat_ms(),
            checkpoint_dir: Self::default_checkpoint_dir(),
            checkpoint_interval_ms: Self::default_checkpoint_interval_ms(),
            metrics_listen: Self::default_metrics_listen(),
            retry_min_ms: Self::default_retry_min_ms(),
            retry_max_ms: Self::default_retry_max_ms(),
            request_timeout_ms: Self::default_request_timeout_ms(),
            shutdown_deadline_ms: Self::default_shutdown_deadline_ms(),
            zstd_level: Self::default_zstd_level(),
            tail: TailSettings::default(),
            log: LogConfig::default(),
            tls: TlsSettings::default(),
        }
    }
}

/// `[tls]`: for `https://` collector URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM CA certificates the collector's certificate must chain to.
    /// Default: the system's roots (`/etc/ssl/certs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The agent's PEM certificate chain, for a collector that asks for one
    /// (mutual TLS: its DNS name must be the agent id). With `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// SHA-256 fingerprints (hex) of collector certificates to accept, and
    /// no other (besides the usual checks). Default: none (no pinning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
}

impl TlsSettings {
    fn client(&self) -> logmon_io::tls::ClientTls {
        logmon_io::tls::ClientTls {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            pins: self.pins.clone(),
        }
    }
}

/// Values given on the command line; `None`/empty leaves the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--collector` (repeatable): replaces `collector_urls`.
    pub collector_urls: Vec<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--file GLOB[:FORMAT]` (repeatable): replaces `sources`.
    pub files: Vec<String>,
    /// `--checkpoint-dir`.
    pub checkpoint_dir: Option<PathBuf>,
    /// `--metrics-listen` (`""` disables).
    pub metrics_listen: Option<String>,
    /// `--log-format` (or `LOGMON_LOG_FORMAT`, read by the flag parser).
    pub log_format: Option<LogFormat>,
    /// `--log` (or `LOGMON_LOG`, read by the flag parser).
    pub log_filter: Option<String>,
}

#[allow(missing_docs)]
impl AgentConfig {
    pub fn default_collector_urls() -> Vec<String> {
        vec!["http://127.0.0.1:8470".into()]
    }
    pub const fn default_batch_max_events() -> usize {
        1000
    }
    pub const fn default_batch_max_bytes() -> u64 {
        1 << 20
    }
    pub const fn default_linger_ms() -> u64 {
        200
    }
    pub const fn default_max_in_flight() -> usize {
        4
    }
    pub const fn default_pipeline_depth() -> usize {
        4
    }
    pub const fn default_max_buffered_batches() -> usize {
        16
    }
    pub const fn default_read_budget_bytes() -> u64 {
        1 << 20
    }
    pub const fn default_idle_poll_ms() -> u64 {
        100
    }
    pub const fn default_heartbeat_ms() -> u64 {
        1000
    }
    pub fn default_checkpoint_dir() -> PathBuf {
        PathBuf::from("/var/lib/logmon-agent")
    }
    pub const fn default_checkpoint_interval_ms() -> u64 {
        1000
    }
    pub fn default_metrics_listen() -> String {
        "127.0.0.1:9180".into()
    }
    pub const fn default_retry_min_ms() -> u64 {
        100
    }
    pub const fn default_retry_max_ms() -> u64 {
        5_000
    }
    pub const fn default_request_timeout_ms() -> u64 {
        10_000
    }
    pub const fn default_shutdown_deadline_ms() -> u64 {
        5000
    }
    pub const fn default_zstd_level() -> i32 {
        logmon_protocol::wire::DEFAULT_LEVEL
    }
}

impl AgentConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Applies the `LOGMON_*` environment variables that `var` knows:
    /// `LOGMON_AGENT_ID`, `LOGMON_AGENT_HOST`, `LOGMON_COLLECTOR_URL`
    /// (comma-separated), `LOGMON_AGENT_TOKEN`, `LOGMON_AGENT_TOKEN_FILE`,
    /// `LOGMON_AGENT_CHECKPOINT_DIR`, `LOGMON_AGENT_METRICS_LISTEN`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var("LOGMON_AGENT_ID") {
            self.agent_id = v;
        }
        if let Some(v) = var("LOGMON_AGENT_HOST") {
            self.host = v;
        }
        if let Some(v) = var("LOGMON_COLLECTOR_URL") {
            self.collector_urls = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = var("LOGMON_AGENT_TOKEN") {
            self.token = v;
        }
        if let Some(v) = var("LOGMON_AGENT_TOKEN_FILE") {
            self.token_file = Some(v.into());
        }
        if let Some(v) = var("LOGMON_AGENT_CHECKPOINT_DIR") {
            self.checkpoint_dir = v.into();
        }
        if let Some(v) = var("LOGMON_AGENT_METRICS_LISTEN") {
            self.metrics_listen = v;
        }
    }

    /// Applies command-line flags (they win over the file and environment).
    pub fn apply(&mut self, flags: Overrides) {
        if !flags.collector_urls.is_empty() {
            self.collector_urls = flags.collector_urls;
        }
        if let Some(token) = flags.token {
            self.token = token;
            self.token_file = None;
        }
        if !flags.files.is_empty() {
            self.sources = flags
                .files
                .iter()
                .map(|f| SourceConfig::from_flag(f))
                .collect();
        }
        if let Some(dir) = flags.checkpoint_dir {
            self.checkpoint_dir = dir;
        }
        if let Some(listen) = flags.metrics_listen {
            self.metrics_listen = listen;
        }
        if let Some(format) = flags.log_format {
            self.log.format = format;
        }
        if let Some(filter) = flags.log_filter {
            self.log.filter = filter;
        }
    }

    /// Checks every value and resolves defaults (host name, token file).
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let hostname = hostname();
        let or_host = |s: &str| {
            if s.trim().is_empty() {
                hostname.clone()
            } else {
                s.trim().to_owned()
            }
        };
        if self.collector_urls.is_empty() {
            return invalid("`collector_urls` is empty".into());
        }
        if let Err(e) = logmon_io::log::check_filter(&self.log.filter) {
            return invalid(format!("`log.filter`: {e}"));
        }
        let mut endpoints = Vec::new();
        for url in &self.collector_urls {
            endpoints.push(batch_endpoint(url)?);
        }
        // Read the TLS files now, so that a wrong path or a bad PEM is an
        // error at start rather than at the first batch.
        let tls = self.tls.client();
        if endpoints.iter().any(|u| u.scheme_str() == Some("https")) {
            tls.config()
                .map_err(|e| ConfigError::Invalid(format!("[tls]: {e}")))?;
        } else if tls != logmon_io::tls::ClientTls::default() {
            return invalid("[tls] is set but no collector URL is https://".into());
        }
        if self.sources.is_empty() {
            return invalid("no sources: add [[sources]] or --file".into());
        }
        let positive = [
            ("batch_max_events", self.batch_max_events as u64),
            ("batch_max_bytes", self.batch_max_bytes),
            ("max_in_flight", self.max_in_flight as u64),
            ("pipeline_depth", self.pipeline_depth as u64),
            ("max_buffered_batches", self.max_buffered_batches as u64),
            ("read_budget_bytes", self.read_budget_bytes),
            ("retry_min_ms", self.retry_min_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return invalid(format!("`{name}` must be positive"));
            }
        }
        if self.retry_max_ms < self.retry_min_ms {
            return invalid("`retry_max_ms` is below `retry_min_ms`".into());
        }
        if !(1..=19).contains(&self.zstd_level) {
            return invalid("`zstd_level` must be in 1..=19".into());
        }
        let mut sources = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for source in &self.sources {
            let name = match &source.name {
                Some(name) => name.clone(),
                None => format!("{:016x}", fnv1a64(source.include.join("\n").as_bytes())),
            };
            if name.is_empty()
                || name.contains(['/', '\\'])
                || name == "."
                || name == ".."
                || !names.insert(name.clone())
            {
                return invalid(format!(
                    "source name {name:?} is empty, a path, or used twice"
                ));
            }
            let tailer = self.tail.tailer_config(source);
            tailer
                .check()
                .map_err(|e| ConfigError::Invalid(format!("source {name}: {e}")))?;
            let mut labels = self.labels.clone();
            labels.extend(source.labels.clone());
            if !source.filters.is_empty() && !crate::filter::AVAILABLE {
                return invalid(format!(
                    "source {name} has filters, and this agent was built without the `wasm` feature"
                ));
            }
            for f in &source.filters {
                f.check()
                    .map_err(|e| ConfigError::Invalid(format!("source {name}: {e}")))?;
            }
            let (format, parser) = match &source.format {
                SourceFormat::Line(choice) => (choice.clone(), None),
                SourceFormat::Component(parser) => {
                    if !crate::parser::AVAILABLE {
                        return invalid(format!(
                            "source {name} has a parser component, and this agent was built without the `wasm` feature"
                        ));
                    }
                    parser
                        .check()
                        .map_err(|e| ConfigError::Invalid(format!("source {name}: {e}")))?;
                    (FormatChoice::Auto, Some(parser.clone()))
                }
            };
            sources.push(SourceSettings {
                checkpoint_dir: self.checkpoint_dir.join(&name),
                name,
                tailer,
                format,
                parser,
                labels: labels.into_iter().collect(),
                filters: source.filters.clone(),
            });
        }
        let token = if let Some(path) = &self.token_file {
            let token = Token::File(path.clone());
            token.read()?;
            token
        } else if self.token.is_empty() {
            Token::None
        } else {
            Token::Inline(self.token.clone())
        };
        let metrics_listen = match self.metrics_listen.trim() {
            "" => None,
            addr => Some(
                addr.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::Invalid(format!("`metrics_listen` {addr:?}: {e}")))?,
            ),
        };
        Ok(Settings {
            agent_id: or_host(&self.agent_id),
            host: or_host(&self.host),
            endpoints,
            token,
            sources,
            batch_max_events: self.batch_max_events,
            batch_max_bytes: self.batch_max_bytes,
            linger: Duration::from_millis(self.linger_ms),
            max_in_flight: self.max_in_flight,
            pipeline_depth: self.pipeline_depth,
            max_buffered_batches: self.max_buffered_batches,
            read_budget_bytes: self.read_budget_bytes,
            idle_poll: Duration::from_millis(self.idle_poll_ms),
            heartbeat: (self.heartbeat_ms > 0).then(|| Duration::from_millis(self.heartbeat_ms)),
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            metrics_listen,
            retry_min: Duration::from_millis(self.retry_min_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
            zstd_level: self.zstd_level,
            log: self.log.clone(),
            tls,
        })
    }
}

/// `base` + `/v1/batches`, checked: `http` or `https`.
fn batch_endpoint(base: &str) -> Result<hyper::Uri, ConfigError> {
    let url = format!("{}/v1/batches", base.trim().trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("collector URL {base:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(ConfigError::Invalid(format!(
            "collector URL {base:?} must be http://host[:port] or https://host[:port]"
        )));
    }
    Ok(uri)
}

/// The machine's host name: `/proc/sys/kernel/hostname`, `/etc/hostname`,
/// `$HOSTNAME`, else `localhost`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Where the bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// No `Authorization` header.
    None,
    /// Given in the config, environment or flags.
    Inline(String),
    /// Read from a file (trimmed), again after every 401 so a rotated token
    /// is picked up.
    File(PathBuf),
}

impl Token {
    /// The token now.
    pub fn read(&self) -> Result<Option<String>, ConfigError> {
        match self {
            Token::None => Ok(None),
            Token::Inline(t) => Ok(Some(t.clone())),
            Token::File(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|source| ConfigError::TokenFile {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// One validated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// Its name (the checkpoint subdirectory).
    pub name: String,
    /// Its tailer's configuration.
    pub tailer: TailerConfig,
    /// Its line format; `Auto` detects per file. Unused with `parser`.
    pub format: FormatChoice,
    /// Its edge parser, when its format is a component.
    pub parser: Option<ParserConfig>,
    /// Labels of its batches (global, then the source's).
    pub labels: Vec<(String, String)>,
    /// `checkpoint_dir/<name>`.
    pub checkpoint_dir: PathBuf,
    /// Its edge filters, in order.
    pub filters: Vec<FilterConfig>,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Settings {
    pub agent_id: String,
    pub host: String,
    /// Full `/v1/batches` URLs, in failover order.
    pub endpoints: Vec<hyper::Uri>,
    pub token: Token,
    pub sources: Vec<SourceSettings>,
    pub batch_max_events: usize,
    pub batch_max_bytes: u64,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub pipeline_depth: usize,
    pub max_buffered_batches: usize,
    pub read_budget_bytes: u64,
    pub idle_poll: Duration,
    /// `None`: no heartbeats.
    pub heartbeat: Option<Duration>,
    pub checkpoint_interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    pub shutdown_deadline: Duration,
    pub zstd_level: i32,
    pub log: LogConfig,
    /// How `https://` collectors are checked (read at start: valid).
    pub tls: logmon_io::tls::ClientTls,
}

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_protocol::{Dialect, Format, UnknownVariables};

    #[test]
    fn a_minimal_file_gets_every_default() {
        let config = AgentConfig::from_toml(
            "[[sources]]\ninclude = [\"/var/log/a.log\"]\n",
            Path::new("t"),
        )
        .unwrap();
        let expected = AgentConfig {
            sources: vec![SourceConfig::new("/var/log/a.log", FormatChoice::Auto)],
            ..AgentConfig::default()
        };
        assert_eq!(config, expected);
        let settings = config.validate().unwrap();
        assert_eq!(settings.batch_max_events, 1000);
        assert_eq!(settings.linger, Duration::from_millis(200));
        assert_eq!(settings.max_in_flight, 4);
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9180".parse().unwrap())
        );
        assert_eq!(settings.agent_id, hostname());
        assert_eq!(
            settings.endpoints[0].to_string(),
            "http://127.0.0.1:8470/v1/batches"
        );
        assert_eq!(settings.sources[0].tailer.start_at, StartAt::End);
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.strip_prefix("//!").unwrap_or(l).trim_start()))
            .collect();
        let config = AgentConfig::from_toml(&example, Path::new("doc")).unwrap();
        let defaults = AgentConfig {
            sources: config.sources.clone(),
            labels: config.labels.clone(),
            ..AgentConfig::default()
        };
        assert_eq!(config, defaults, "the example shows the defaults");
        config.validate().unwrap();
    }

    #[test]
    fn env_then_flags_override_the_file() {
        let mut config = AgentConfig::from_toml(
            "token = \"file\"\ncollector_urls = [\"http://a:1\"]\n[[sources]]\ninclude = [\"x\"]\n",
            Path::new("t"),
        )
        .unwrap();
        config.apply_env(|k| match k {
            "LOGMON_AGENT_TOKEN" => Some("env".into()),
            "LOGMON_COLLECTOR_URL" => Some("http://b:2, http://c:3".into()),
            _ => None,
        });
        assert_eq!(config.token, "env");
        assert_eq!(config.collector_urls, ["http://b:2", "http://c:3"]);
        config.apply(Overrides {
            token: Some("flag".into()),
            files: vec!["/logs/*.log:combined".into(), "/odd:name.log".into()],
            metrics_listen: Some(String::new()),
            ..Overrides::default()
        });
        let settings = config.validate().unwrap();
        assert_eq!(settings.token, Token::Inline("flag".into()));
        assert_eq!(settings.endpoints.len(), 2);
        assert_eq!(settings.metrics_listen, None);
        assert_eq!(
            settings.sources[0].format,
            FormatChoice::Fixed(Format::Combined)
        );
        assert_eq!(settings.sources[0].tailer.include, ["/logs/*.log"]);
        assert_eq!(settings.sources[1].format, FormatChoice::Auto);
        assert_eq!(settings.sources[1].tailer.include, ["/odd:name.log"]);
    }

    #[test]
    fn the_log_section_is_read_overridden_and_checked() {
        let mut config = AgentConfig::from_toml(
            "[log]\nformat = \"json\"\n[[sources]]\ninclude = [\"x\"]\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(
            config.validate().unwrap().log,
            LogConfig {
                format: LogFormat::Json,
                filter: "info".into()
            }
        );
        config.apply(Overrides {
            log_format: Some(LogFormat::Text),
            log_filter: Some("warn,logmon_agent::ship=debug".into()),
            ..Overrides::default()
        });
        assert_eq!(
            config.validate().unwrap().log,
            LogConfig {
                format: LogFormat::Text,
                filter: "warn,logmon_agent::ship=debug".into()
            }
        );
        config.log.filter = "info,=[".into();
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("invalid configuration: `log.filter`: log filter `info,=[`"),
            "{e}"
        );
        let e = AgentConfig::from_toml("[log]\nlevel = \"info\"\n", Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `level`"), "{e}");
    }

    #[test]
    fn sources_take_nginx_and_apache_format_strings() {
        let toml = r#"
[[sources]]
include = ["/var/log/nginx/access.log"]
format = { nginx = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time"' }

[[sources]]
include = ["/var/log/apache2/access.log"]
format = { apache = "%v %h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D", unknown_variables = "skip" }

[[sources]]
include = ["/var/log/other.log"]
format = " Combined "
"#;
        let config = AgentConfig::from_toml(toml, Path::new("t")).unwrap();
        let settings = config.clone().validate().unwrap();
        let FormatChoice::Template(nginx) = &settings.sources[0].format else {
            panic!("{:?}", settings.sources[0].format);
        };
        assert_eq!(nginx.dialect(), Dialect::Nginx);
        assert_eq!(nginx.unknown_variables(), UnknownVariables::Label);
        assert_eq!(nginx.label_names(), ["upstream_connect_time"]);
        let FormatChoice::Template(apache) = &settings.sources[1].format else {
            panic!("{:?}", settings.sources[1].format);
        };
        assert_eq!(apache.dialect(), Dialect::Apache);
        assert_eq!(apache.unknown_variables(), UnknownVariables::Skip);
        assert_eq!(
            settings.sources[2].format,
            FormatChoice::Fixed(Format::Combined)
        );

        // The parser the agent makes of it reads the server's lines.
        let mut parser = settings.sources[0].format.parser().unwrap();
        let event = parser
            .parse(r#"192.0.2.10 - - [07/Feb/2019:21:11:00 +0000] "POST /api/user HTTP/1.1" 502 157 "-" "curl/8.5.0" rt=0.253 uct="0.001" urt="0.120""#)
            .unwrap()
            .unwrap();
        assert_eq!((event.status, event.duration_us), (502, Some(253_000)));

        // --print-config writes the table back, and it reads the same.
        let printed = toml::to_string_pretty(&config).unwrap();
        assert_eq!(
            AgentConfig::from_toml(&printed, Path::new("p")).unwrap(),
            config
        );
    }

    #[test]
    fn a_bad_format_string_is_refused_with_its_column() {
        let t = Path::new("t");
        let err = |format: &str| {
            let toml = format!("[[sources]]\ninclude = [\"a\"]\nformat = {format}\n");
            AgentConfig::from_toml(&toml, t).unwrap_err().to_string()
        };
        let e = err("{ nginx = '$remote_addr [$time_local] $status$body_bytes_sent' }");
        assert!(
            e.contains("bad nginx format string: column 35: $status and $body_bytes_sent have nothing between them"),
            "{e}"
        );
        let e = err("{ apache = '%h %t %Q' }");
        assert!(
            e.contains("bad apache format string: column 7: unknown directive `%Q`"),
            "{e}"
        );
        let e = err("{ nginx = '$msec', apache = '%t' }");
        assert!(e.contains("one of `nginx` and `apache`"), "{e}");
        let e = err("{ nginx = '$msec', unknown_variables = \"drop\" }");
        assert!(e.contains("unknown variant `drop`"), "{e}");
        let e = err("\"nginx\"");
        assert!(e.contains("unknown log format `nginx`"), "{e}");
    }

    #[test]
    fn a_source_format_may_be_a_parser_component() {
        let toml = r#"
[[sources]]
include = ["/inetpub/logs/LogFiles/W3SVC1/*.log"]
format = { component = "w3c", params = { plus_as_space = false }, deadline_ms = 500 }
"#;
        let settings = AgentConfig::from_toml(toml, Path::new("t"))
            .unwrap()
            .validate()
            .unwrap();
        let source = &settings.sources[0];
        let parser = source.parser.as_ref().unwrap();
        assert_eq!(parser.component, "w3c");
        assert_eq!(
            parser.param_texts(),
            vec![("plus_as_space".to_owned(), "false".to_owned())]
        );
        assert_eq!((parser.memory_mb, parser.deadline_ms), (64, 500));
        assert_eq!(source.format, FormatChoice::Auto);
        let e = AgentConfig::from_toml(
            "[[sources]]\ninclude = [\"a\"]\nformat = { component = \"w3c\", memory_mb = 0 }\n",
            Path::new("t"),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("parser w3c: memory_mb must be in 1..=4096"),
            "{e}"
        );
    }

    #[test]
    fn file_flags_take_format_strings() {
        let s = SourceConfig::from_flag("/logs/*.log:nginx:$remote_addr [$time_local] $status");
        assert_eq!(s.include, ["/logs/*.log"]);
        let SourceFormat::Line(FormatChoice::Template(t)) = &s.format else {
            panic!("{:?}", s.format);
        };
        assert_eq!(t.source(), "$remote_addr [$time_local] $status");
        let s = SourceConfig::from_flag("/logs/a.log:Apache:%h %t \"%r\" %>s %b");
        assert_eq!(s.include, ["/logs/a.log"]);
        assert!(matches!(
            s.format,
            SourceFormat::Line(FormatChoice::Template(_))
        ));
        assert_eq!(
            SourceConfig::from_flag("/x.log:json").format,
            SourceFormat::Line(FormatChoice::Fixed(Format::Json))
        );
        assert_eq!(
            SourceConfig::from_flag("/odd:name.log").format,
            SourceFormat::Line(FormatChoice::Auto)
        );
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values() {
        let t = Path::new("t");
        assert!(AgentConfig::from_toml("bacth_max_events = 3", t).is_err());
        assert!(AgentConfig::from_toml("[[sources]]\ninclude=[\"a\"]\nfromat=\"csv\"", t).is_err());
        let base = AgentConfig {
            sources: vec![SourceConfig::new("a", FormatChoice::Fixed(Format::Csv))],
            ..AgentConfig::default()
        };
        let bad = [
            AgentConfig {
                sources: vec![],
                ..base.clone()
            },
            AgentConfig {
                collector_urls: vec!["ftp://x".into()],
                ..base.clone()
            },
            // A CA file that is not there.
            AgentConfig {
                collector_urls: vec!["https://x".into()],
                tls: TlsSettings {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..TlsSettings::default()
                },
                ..base.clone()
            },
            // A client certificate without its key.
            AgentConfig {
                collector_urls: vec!["https://x".into()],
                tls: TlsSettings {
                    client_cert: Some("/nonexistent/agent.pem".into()),
                    ..TlsSettings::default()
                },
                ..base.clone()
            },
            // [tls] for plain-http collectors only: a mistake.
            AgentConfig {
                tls: TlsSettings {
                    pins: vec!["00".repeat(32)],
                    ..TlsSettings::default()
                },
                ..base.clone()
            },
            AgentConfig {
                max_in_flight: 0,
                ..base.clone()
            },
            AgentConfig {
                metrics_listen: "nope".into(),
                ..base.clone()
            },
            AgentConfig {
                sources: vec![SourceConfig::new("[", FormatChoice::Auto)],
                ..base.clone()
            },
            AgentConfig {
                sources: vec![base.sources[0].clone(), base.sources[0].clone()],
                ..base.clone()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        base.validate().unwrap();
    }
}
