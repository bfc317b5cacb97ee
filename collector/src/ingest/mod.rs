//! The ingest API: agents `POST /v1/batches`; a batch is answered 200 only
//! once it is durable in the event bus, and a batch already stored is
//! acknowledged without being stored again.
//!
//! # Request handling
//!
//! `POST /v1/batches`, in this order:
//! 1. `Authorization: Bearer <token>` against the configured tokens (constant
//!    time) → 401 with `WWW-Authenticate: Bearer`. No tokens configured means
//!    every batch is refused.
//! 2. Backpressure: the bus backlog (bytes behind its slowest consumer) above
//!    `max_backlog_bytes` → 503 with `Retry-After` (checked before the body
//!    is read, so a refused agent uploads nothing).
//! 3. The body, read with a hard cap of `limits.max_compressed` → 413.
//! 4. [`wire::inspect`](logmon_protocol::wire::inspect): every check of
//!    [`wire::decode`](logmon_protocol::wire::decode), without building the
//!    events → 400 (corrupt, empty, unsupported version, or an
//!    empty/inverted byte range) or 413 (decompressed size over the limit).
//! 5. Deduplication and the durable append (below) → 200, or 409 on overlap.
//!
//! The bus record is the request body exactly as received (the compressed
//! wire batch): nothing is re-encoded, and a consumer decodes it with
//! [`wire::decode`](logmon_protocol::wire::decode).
//!
//! # Deduplication and overlapping batches
//!
//! The agent re-delivers the same lines at the same offsets after a rewind or
//! restart, but may group them into batches differently. So the collector
//! keeps, per stream (agent id, file fingerprint), the high-water mark `hwm`:
//! the largest `end` it has stored ([`DedupIndex`]). A batch `[start, end)`:
//! - `end <= hwm`: everything in it is stored already → **200**, body
//!   `{"status":"duplicate"}`, not stored again;
//! - `start >= hwm` (or a new stream) → stored, **200** `{"status":"stored"}`.
//!   `start > hwm` is a gap (bytes never received, e.g. lost to a
//!   copytruncate race); it is accepted, since the agent may not have those
//!   bytes any more, and counted (`logmon_ingest_stream_gaps_total`);
//! - `start < hwm < end`: part of it is stored and events carry no byte
//!   offsets, so the collector can neither store it whole (duplicates) nor
//!   cut it. → **409 Conflict** with `Logmon-Stored-Offset: <hwm>`. `hwm` is
//!   the end of a batch the agent sent, hence a line boundary in its stream:
//!   the agent acknowledges up to `hwm` (those bytes are durable) and re-reads
//!   from there; the next batch starts at `hwm` and is stored. Nothing is lost
//!   and nothing duplicated;
//! - with `Logmon-After: P` (a pipelining agent: the batch before this one
//!   is still on its way) and `hwm < P` (or an unknown stream): the batch
//!   came early. The writer holds it (up to `writer::HOLD_EARLY`, 2 s) and
//!   stores it as soon as its predecessor is in; still early then → **409**
//!   with `Logmon-Stored-Offset: <hwm>` (0 if unknown) and
//!   `{"error":"early"}`, not stored, and the agent sends it again once the
//!   batch before it has settled. A duplicate is still a duplicate.
//!
//! Every 200 carries `Logmon-Stored-Offset` too (the stream's `hwm`), and
//! every 200 (and every early 409) `Logmon-Pipelining: 1`: an
//! agent may then keep several batches of a file in flight.
//!
//! Requirements this places on the agent: batches of one stream beyond the
//! first in flight carry `Logmon-After` (batches arriving out of order would
//! otherwise look like a gap followed by duplicates), and on 409 it
//! acknowledges and resumes at `Logmon-Stored-Offset`. A file truncated in
//! place whose first lines come back identical restarts at offset 0; the
//! agent gives such content a new stream identity (a generation of its
//! fingerprint), so its first `hwm` bytes are not taken for duplicates.
//!
//! # Durability and group commit
//!
//! Handlers inspect the body, then hand the body to the bus writer thread (see
//! [`writer`]) through a bounded queue; the writer takes everything queued,
//! deduplicates in arrival order, appends all new records with one
//! `SegmentLog::append` (one fsync) and answers each request afterwards.
//! Deduplication happens in the writer, so two concurrent copies of one batch
//! cannot both be stored.
//!
//! The deduplication itself belongs to the bus ([`crate::bus::EventBus::append`]:
//! the local bus keeps the index with its log; see [`crate::bus::local`]).
//!
//! # Serving
//!
//! [`IngestRoutes`] is ingest's peer on the collector's one HTTP server
//! ([`crate::http`]); [`IngestState`] reports into `/health` (backpressure,
//! stuck consumers: see [`health`]) and `/metrics`. When the server drains,
//! new batches get 503 `shutting_down`.
pub mod handler;
pub mod health;
pub mod limit;
pub mod metrics;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use hyper::HeaderMap;
use hyper::body::Incoming;
use logmon_protocol::wire::Limits;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::bus::{EventBus, MAX_RECORD_BYTES};
use crate::http::status::{MetricsSource, Status};
use crate::http::{Answer, ConnectionSlot, Router, Routes};

pub use handler::{AFTER_HEADER, PIPELINING_HEADER, STORED_OFFSET_HEADER};
pub use metrics::{Metrics, Rejection};
pub use writer::WriteError;

use writer::Job;

/// Ingest settings (the `[ingest]` table of the collector's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Accepted bearer tokens. Default none, which refuses every batch
    /// (401): an ingest endpoint is never open by accident.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Files of more tokens, one per line (blank lines and `#` comments
    /// skipped), read at start and again whenever they change, so tokens
    /// are rotated without a restart. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_files: Vec<std::path::PathBuf>,
    /// Body size limits: `max_compressed` (default 8 MiB, at most the bus's
    /// record limit of 64 MiB) and `max_decompressed` (default 64 MiB).
    #[serde(default, with = "LimitsConfig")]
    pub limits: Limits,
    /// Answer 503 while the bus holds more than this many bytes not yet
    /// consumed by its slowest consumer. Default 1 GiB.
    #[serde(default = "IngestConfig::default_max_backlog_bytes")]
    pub max_backlog_bytes: u64,
    /// `Retry-After` sent with 503 answers, in seconds. Default 5.
    #[serde(default = "IngestConfig::default_retry_after_secs")]
    pub retry_after_secs: u32,
    /// Requests and events per second per agent (`[ingest.rate_limit]`);
    /// off by default.
    #[serde(default)]
    pub rate_limit: limit::RateLimitConfig,
    /// Seconds a client has to send a batch's body once its headers came
    /// (a client that trickles it is answered 408). Default 30.
    #[serde(default = "IngestConfig::default_body_timeout_secs")]
    pub body_timeout_secs: u64,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(remote = "Limits", deny_unknown_fields)]
struct LimitsConfig {
    #[serde(default = "LimitsConfig::default_max_compressed")]
    max_compressed: usize,
    #[serde(default = "LimitsConfig::default_max_decompressed")]
    max_decompressed: usize,
}

impl LimitsConfig {
    fn default_max_compressed() -> usize {
        Limits::default().max_compressed
    }

    fn default_max_decompressed() -> usize {
        Limits::default().max_decompressed
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            token_files: Vec::new(),
            limits: Limits::default(),
            max_backlog_bytes: Self::default_max_backlog_bytes(),
            retry_after_secs: Self::default_retry_after_secs(),
            rate_limit: limit::RateLimitConfig::default(),
            body_timeout_secs: Self::default_body_timeout_secs(),
        }
    }
}

impl IngestConfig {
    /// `tokens` and those of `token_files`, in order; the file that could
    /// not be read, with why.
    pub fn all_tokens(&self) -> Result<Vec<String>, (std::path::PathBuf, std::io::Error)> {
        let mut all = self.tokens.clone();
        for file in &self.token_files {
            let text = std::fs::read_to_string(file).map_err(|e| (file.clone(), e))?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        Ok(all)
    }

    const fn default_body_timeout_secs() -> u64 {
        30
    }

    const fn default_max_backlog_bytes() -> u64 {
        1 << 30
    }

    const fn default_retry_after_secs() -> u32 {
        5
    }

    /// Checks the settings that cannot work.
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |msg: String| Err(IngestError::Config(msg));
        if self.limits.max_compressed == 0 || self.limits.max_compressed > MAX_RECORD_BYTES {
            return bad(format!(
                "limits.max_compressed must be in 1..={MAX_RECORD_BYTES} (a body is one bus record)"
            ));
        }
        if self.limits.max_decompressed == 0 {
            return bad("limits.max_decompressed must be positive".into());
        }
        if self.tokens.iter().any(|t| t.is_empty()) {
            return bad("tokens must not be empty strings".into());
        }
        self.rate_limit.validate().map_err(IngestError::Config)?;
        if self.body_timeout_secs == 0 {
            return bad("body_timeout_secs must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid ingest configuration: {0}")]
    Config(String),
    #[error("starting the bus writer thread: {0}")]
    Spawn(std::io::Error),
}

/// Everything the ingest handlers share: settings, the bus, the writer queue
/// and the counters.
#[derive(Debug)]
pub struct IngestState {
    config: IngestConfig,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    /// `None` once closed.
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shutting_down: AtomicBool,
    /// The data directory's free space, when it is watched.
    disk: std::sync::OnceLock<Arc<crate::disk::DiskWatch>>,
    /// Seconds of lag a consumer has by design (the lake writer's flush
    /// interval), on top of [`health::BEHIND`], before `/health` calls it
    /// behind.
    lag_allowances: RwLock<std::collections::BTreeMap<String, u64>>,
    /// `[ingest.rate_limit]`'s buckets.
    limiter: limit::RateLimiter,
    /// The tokens accepted now (`tokens` and the files'), and the files'
    /// stamps when they were read.
    tokens: RwLock<(Arc<Vec<String>>, Vec<FileStamp>)>,
}

/// A token file's modification time and length when it was read.
type FileStamp = (Option<std::time::SystemTime>, u64);

fn stamps(files: &[std::path::PathBuf]) -> Vec<FileStamp> {
    files
        .iter()
        .map(|f| match std::fs::metadata(f) {
            Ok(m) => (m.modified().ok(), m.len()),
            Err(_) => (None, 0),
        })
        .collect()
}

impl IngestState {
    /// Starts the bus writer thread over `bus`, of which ingest is the only
    /// writer.
    pub fn open(config: IngestConfig, bus: Arc<dyn EventBus>) -> Result<Arc<Self>, IngestError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let (sender, receiver) = mpsc::channel(writer::QUEUE);
        let (writer_bus, writer_metrics) = (Arc::clone(&bus), Arc::clone(&metrics));
        let writer = std::thread::Builder::new()
            .name("bus-writer".into())
            .spawn(move || writer::run_writer(writer_bus, writer_metrics, receiver))
            .map_err(IngestError::Spawn)?;
        let tokens = config
            .all_tokens()
            .map_err(|(path, e)| IngestError::Config(format!("{}: {e}", path.display())))?;
        let stamp = stamps(&config.token_files);
        Ok(Arc::new(Self {
            tokens: RwLock::new((Arc::new(tokens), stamp)),
            limiter: limit::RateLimiter::new(config.rate_limit.clone()),
            config,
            bus,
            metrics,
            jobs: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            shutting_down: AtomicBool::new(false),
            disk: std::sync::OnceLock::new(),
            lag_allowances: RwLock::new(std::collections::BTreeMap::new()),
        }))
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub(crate) fn limiter(&self) -> &limit::RateLimiter {
        &self.limiter
    }

    /// The bus, for consumers.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Refuse batches while the data directory is under its floor (set once).
    pub fn watch_disk(&self, disk: Arc<crate::disk::DiskWatch>) {
        let _ = self.disk.set(disk);
    }

    /// Lets `consumer` trail by `by` more than [`health::BEHIND`] before
    /// `/health` reports it (a consumer that batches by time, such as the
    /// lake writer, is that far behind by design).
    pub fn allow_lag(&self, consumer: &str, by: std::time::Duration) {
        self.lag_allowances
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(consumer.to_owned(), by.as_secs());
    }

    /// The extra lag `consumer` is allowed, in seconds.
    pub fn lag_allowance(&self, consumer: &str) -> u64 {
        self.lag_allowances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(consumer)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn disk(&self) -> Option<&crate::disk::DiskWatch> {
        self.disk.get().map(|d| &**d)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Relaxed)
    }

    /// Marks the state as shutting down: `/health` answers 503 and new
    /// batches are refused with 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Relaxed);
    }

    /// Stops the bus writer once every queued batch is answered, then closes
    /// the bus (the local one persists its dedup index). Blocks; call it
    /// after the server returned (from async code, through
    /// `spawn_blocking`). Idempotent.
    pub fn close(&self) -> Result<(), crate::bus::BusError> {
        self.begin_shutdown();
        self.jobs.write().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            // The writer only ends when every sender (in-flight handlers
            // hold clones) is gone.
            let _ = writer.join();
        }
        self.bus.close()
    }

    pub(crate) fn jobs(&self) -> Option<mpsc::Sender<Job>> {
        self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the request carries `Authorization: Bearer <one of the
    /// tokens>`.
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        let tokens = Arc::clone(&self.tokens.read().unwrap_or_else(|e| e.into_inner()).0);
        crate::http::auth::bearer(headers)
            .is_some_and(|token| crate::http::auth::one_of(token, tokens.iter()))
    }

    /// Reads the token files again when they changed: `Ok(Some(n))` when
    /// `n` tokens are accepted from now on, `Ok(None)` when nothing
    /// changed. A file that cannot be read, or a change that would leave no
    /// token at all, keeps the tokens accepted until now (`Err` says why).
    pub fn reload_tokens(&self) -> Result<Option<usize>, String> {
        let now = stamps(&self.config.token_files);
        if self.tokens.read().unwrap_or_else(|e| e.into_inner()).1 == now {
            return Ok(None);
        }
        let result = match self.config.all_tokens() {
            Err((path, e)) => Err(format!("{}: {e}", path.display())),
            Ok(tokens) if tokens.is_empty() => {
                Err("the token files hold no token; every agent would be refused".into())
            }
            Ok(tokens) => Ok(tokens),
        };
        let mut current = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        // Not read again until the files change again.
        current.1 = now;
        let tokens = result?;
        let n = tokens.len();
        current.0 = Arc::new(tokens);
        Ok(Some(n))
    }
}

impl MetricsSource for IngestState {
    fn render(&self, out: &mut String) {
        self.metrics
            .backlog_bytes
            .store(self.bus.backlog_bytes(), Relaxed);
        out.push_str(&self.metrics.render());
    }
}

/// Ingest's peer on the router: `POST /v1/batches`.
#[derive(Debug, Clone)]
pub struct IngestRoutes(pub Arc<IngestState>);

impl Routes for IngestRoutes {
    fn claims(&self, path: &str) -> bool {
        path == "/v1/batches"
    }

    fn serve(self: Arc<Self>, request: hyper::Request<Incoming>, _: &ConnectionSlot) -> Answer {
        Box::pin(async move { handler::batches(&self.0, request).await })
    }

    fn draining(&self) {
        self.0.begin_shutdown();
    }
}

/// Ingest with its status endpoints and nothing else: ingest alone behind a
/// listener (tests, benches).
pub fn router(state: &Arc<IngestState>) -> Router {
    let status = Status::new(state.config.retry_after_secs)
        .health_from(Arc::clone(state) as _)
        .metrics_from(Arc::clone(state) as _);
    Router::new()
        .mount(Arc::new(IngestRoutes(Arc::clone(state))))
        .mount(Arc::new(status))
}

/// Serves ingest alone on `listener` (see [`router`]) until `shutdown`,
/// then drains; the bus writer keeps running: call [`IngestState::close`]
/// afterwards.
pub async fn run_alone(
    listener: tokio::net::TcpListener,
    state: Arc<IngestState>,
    server: crate::http::ServerConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let router = Arc::new(router(&state));
    crate::http::server::run(
        listener,
        router,
        server,
        None,
        state.metrics().connections(),
        Arc::default(),
        shutdown,
    )
    .await
}
