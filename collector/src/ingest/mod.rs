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
//!   and nothing duplicated.
//!
//! Every 200 carries `Logmon-Stored-Offset` too (the stream's `hwm`).
//!
//! Requirements this places on the agent: at most one unacknowledged batch
//! per stream is in flight (pipelined batches arriving out of order would
//! look like a gap followed by duplicates), and on 409 it acknowledges and
//! resumes at `Logmon-Stored-Offset`. Known limit: a file truncated in place
//! that comes back with the *same* fingerprint restarts at offset 0 under the
//! same stream key, and its first `hwm` bytes are taken for duplicates; the
//! agent must give such a file a new stream identity.
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
//! The log and the dedup index share one mutex inside [`Bus`], the handle
//! consumers use for reads, offsets and `gc`. `Bus::gc` persists the index
//! (JSON, temp + fsync + rename) before deleting segments; at start the
//! index is the persisted table plus a scan of the records after it
//! ([`DedupIndex::rebuild`]). [`IngestState::close`] persists it at shutdown.
//!
//! # Serving
//!
//! [`run`] serves HTTP/1.1 and HTTP/2 (prior knowledge or h2c upgrade-less)
//! on one listener, with at most `max_connections` connections, not counting
//! those that carry the dashboard's event streams while they do (capped on
//! their own; see [`ConnectionSlot`]). On shutdown
//! it stops accepting, lets in-flight requests finish (HTTP/2 GOAWAY,
//! HTTP/1 closes after the current response), and drops what is left after
//! `drain_timeout_secs`.

pub mod dedup;
pub mod http;
pub mod metrics;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use logmon_protocol::wire::Limits;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{MAX_RECORD_BYTES, SegmentLog};

pub use dedup::{DedupError, DedupIndex, Rebuild, StreamKey, Verdict};
pub use http::STORED_OFFSET_HEADER;
pub use metrics::{Metrics, Rejection};
pub use writer::{Bus, WriteError};

use writer::{Job, Store};

/// Ingest settings (the `[ingest]` table of the collector's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address to listen on. Default `0.0.0.0:8470`.
    #[serde(default = "IngestConfig::default_listen")]
    pub listen: SocketAddr,
    /// Accepted bearer tokens. Default none, which refuses every batch
    /// (401): an ingest endpoint is never open by accident.
    #[serde(default)]
    pub tokens: Vec<String>,
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
    /// Most simultaneous client connections; more wait to be accepted.
    /// A connection carrying the dashboard's event streams does not count
    /// while they are open (they have their own cap, see
    /// [`ConnectionSlot`]). Default 1024.
    #[serde(default = "IngestConfig::default_max_connections")]
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests. Default 30.
    #[serde(default = "IngestConfig::default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
}

#[derive(Deserialize)]
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
            listen: Self::default_listen(),
            tokens: Vec::new(),
            limits: Limits::default(),
            max_backlog_bytes: Self::default_max_backlog_bytes(),
            retry_after_secs: Self::default_retry_after_secs(),
            max_connections: Self::default_max_connections(),
            drain_timeout_secs: Self::default_drain_timeout_secs(),
        }
    }
}

impl IngestConfig {
    fn default_listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 8470))
    }

    const fn default_max_backlog_bytes() -> u64 {
        1 << 30
    }

    const fn default_retry_after_secs() -> u32 {
        5
    }

    const fn default_max_connections() -> usize {
        1024
    }

    const fn default_drain_timeout_secs() -> u64 {
        30
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
        if self.max_connections == 0 {
            return bad("max_connections must be positive".into());
        }
        if self.tokens.iter().any(|t| t.is_empty()) {
            return bad("tokens must not be empty strings".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid ingest configuration: {0}")]
    Config(String),
    #[error("rebuilding the dedup index: {0}")]
    Dedup(#[from] DedupError),
    #[error("starting the bus writer thread: {0}")]
    Spawn(std::io::Error),
}

/// Everything the ingest handlers share: settings, the bus, the writer queue
/// and the counters.
#[derive(Debug)]
pub struct IngestState {
    config: IngestConfig,
    bus: Bus,
    metrics: Arc<Metrics>,
    /// `None` once closed.
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shutting_down: AtomicBool,
    /// More metric families for `/metrics` (the engine's, the writer's).
    extra_metrics: std::sync::OnceLock<ExtraMetrics>,
    /// More routes (the dashboard's).
    api: std::sync::OnceLock<ApiRoutes>,
}

/// More routes on the ingest listener (the dashboard, its JSON API and its
/// event stream): every request that is not for `/v1/batches`, `/health` or
/// `/metrics` is offered to them; `None` means the path is not theirs (404).
/// They get the request's method, URI (with its query string) and headers,
/// not its body, and answer with any status, headers and body, streamed or
/// whole.
pub struct ApiRoutes(pub Box<ApiFn>);

/// See [`ApiRoutes`].
pub type ApiFn = dyn Fn(ApiRequest) -> ApiFuture + Send + Sync;

/// What [`ApiRoutes`] answer, some time later.
pub type ApiFuture =
    std::pin::Pin<Box<dyn Future<Output = Option<hyper::Response<ResponseBody>>> + Send>>;

/// The body of every response: whole (with a `Content-Length`) or streamed.
pub type ResponseBody =
    http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// A request offered to [`ApiRoutes`]: everything but the body, and the
/// connection it came on (`None` when answered in-process).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub connection: Option<ConnectionSlot>,
}

/// A connection's place among the listener's `max_connections`: a permit
/// of [`run`]'s semaphore, taken before the connection is accepted.
///
/// A route that answers with a long-lived stream capped on its own (the
/// dashboard's event streams) takes the connection out of that budget with
/// [`ConnectionSlot::give_back`] while the stream lives, so open streams
/// never hold the places agents connect with: at most `max_connections`
/// other connections, plus at most one per open stream. When the connection's
/// last such stream ends and it is still open (HTTP/2, or HTTP/1 after a
/// stream ended early), it takes a place again, or closes gracefully if none
/// is free.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(Arc<SlotShared>);

#[derive(Debug)]
struct SlotShared {
    limit: Arc<Semaphore>,
    state: Mutex<SlotState>,
    /// Cancelled when the connection must close: no place was free when
    /// its last stream ended.
    evicted: CancellationToken,
}

#[derive(Debug)]
struct SlotState {
    permit: Option<OwnedSemaphorePermit>,
    loans: usize,
}

/// While it lives, its connection does not count against
/// `max_connections`. See [`ConnectionSlot`].
#[derive(Debug)]
pub struct SlotLoan(Arc<SlotShared>);

impl ConnectionSlot {
    fn new(limit: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> ConnectionSlot {
        ConnectionSlot(Arc::new(SlotShared {
            limit,
            state: Mutex::new(SlotState {
                permit: Some(permit),
                loans: 0,
            }),
            evicted: CancellationToken::new(),
        }))
    }

    /// Gives the connection's place back to the listener until the loan
    /// drops.
    pub fn give_back(&self) -> SlotLoan {
        let released = {
            let mut state = self.0.lock();
            state.loans += 1;
            state.permit.take()
        };
        drop(released);
        SlotLoan(Arc::clone(&self.0))
    }

    /// Whether the connection holds a place now.
    pub fn counted(&self) -> bool {
        self.0.lock().permit.is_some()
    }
}

impl SlotShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SlotLoan {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.loans -= 1;
        if state.loans > 0 {
            return;
        }
        match Arc::clone(&self.0.limit).try_acquire_owned() {
            Ok(permit) => state.permit = Some(permit),
            Err(_) => self.0.evicted.cancel(),
        }
    }
}

impl std::fmt::Debug for ApiRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiRoutes")
    }
}

/// Renders more Prometheus text for `/metrics`.
pub struct ExtraMetrics(pub Box<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtraMetrics")
    }
}

impl IngestState {
    /// Takes over `log` (ingest is its only writer), rebuilds the dedup index
    /// from it and starts the bus writer thread.
    pub fn open(
        config: IngestConfig,
        log: SegmentLog,
    ) -> Result<(Arc<Self>, Rebuild), IngestError> {
        config.validate()?;
        let (dedup, rebuild) = DedupIndex::rebuild(&log, &config.limits)?;
        let metrics = Arc::new(Metrics::default());
        let bus = Bus::new(Store { log, dedup }, Arc::clone(&metrics));
        let (sender, receiver) = mpsc::channel(writer::QUEUE);
        let writer_bus = bus.clone();
        let writer = std::thread::Builder::new()
            .name("bus-writer".into())
            .spawn(move || writer::run_writer(writer_bus, receiver))
            .map_err(IngestError::Spawn)?;
        let state = Self {
            config,
            bus,
            metrics,
            jobs: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            shutting_down: AtomicBool::new(false),
            extra_metrics: std::sync::OnceLock::new(),
            api: std::sync::OnceLock::new(),
        };
        Ok((Arc::new(state), rebuild))
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The bus, for consumers.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds metric families to `/metrics` (set once).
    pub fn add_metrics(&self, render: ExtraMetrics) {
        let _ = self.extra_metrics.set(render);
    }

    /// Adds routes (set once).
    pub fn add_api(&self, routes: ApiRoutes) {
        let _ = self.api.set(routes);
    }

    /// The added routes' answer to `request`, `None` when no route takes it.
    pub fn api(&self, request: ApiRequest) -> Option<ApiFuture> {
        Some((self.api.get()?.0)(request))
    }

    /// The `/metrics` text: ingest's families and any added ones.
    pub fn render_metrics(&self) -> String {
        let mut text = self.metrics.render();
        if let Some(extra) = self.extra_metrics.get() {
            text.push_str(&(extra.0)());
        }
        text
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Relaxed)
    }

    /// Marks the state as shutting down: `/health` answers 503 and new
    /// batches are refused with 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Relaxed);
    }

    /// Stops the bus writer once every queued batch is answered, then
    /// persists the dedup index. Blocks; call it after [`run`] returned (from
    /// async code, through `spawn_blocking`). Idempotent.
    pub fn close(&self) -> Result<(), IngestError> {
        self.begin_shutdown();
        self.jobs.write().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            // The writer only ends when every sender (in-flight handlers
            // hold clones) is gone.
            let _ = writer.join();
        }
        self.bus.persist_dedup()?;
        Ok(())
    }

    pub(crate) fn jobs(&self) -> Option<mpsc::Sender<Job>> {
        self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the request carries `Authorization: Bearer <one of the
    /// tokens>`. Every token is compared, each in time independent of where
    /// bytes differ.
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = bearer(headers) else {
            return false;
        };
        let mut found = false;
        for candidate in &self.config.tokens {
            found |= constant_time_eq(candidate.as_bytes(), token.as_bytes());
        }
        found
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme in any
/// case, surrounding spaces dropped), if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    std::str::from_utf8(token.trim_ascii()).ok()
}

/// Compares without stopping at the first difference (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Decrements the connection gauge when a connection task ends.
struct ConnectionGuard(Arc<IngestState>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.metrics.active_connections.fetch_sub(1, Relaxed);
    }
}

/// Serves the ingest API on `listener` until `shutdown` is cancelled, then
/// stops accepting, waits up to `drain_timeout_secs` for open connections to
/// finish their requests, and returns. The bus writer keeps running: call
/// [`IngestState::close`] afterwards.
pub async fn run(
    listener: TcpListener,
    state: Arc<IngestState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let mut backoff = Duration::from_millis(10);

    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.expect("never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    stream
                }
                // Out of descriptors, a connection reset before accept:
                // transient; back off instead of spinning or dying.
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        state.metrics.active_connections.fetch_add(1, Relaxed);
        let guard = ConnectionGuard(Arc::clone(&state));
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        let evicted = slot.0.evicted.clone();
        let service_state = Arc::clone(&state);
        let service = service_fn(move |request| {
            http::handle(Arc::clone(&service_state), slot.clone(), request)
        });
        let builder = builder.clone();
        let (shutdown, force) = (shutdown.clone(), force.clone());
        tracker.spawn(async move {
            let _guard = guard;
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = shutdown.cancelled() => {}
                _ = evicted.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = force.cancelled() => {}
            }
        });
    }

    state.begin_shutdown();
    drop(listener);
    tracker.close();
    let drain = Duration::from_secs(state.config.drain_timeout_secs);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_gives_its_connections_place_back_while_it_lives() {
        let limit = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&limit).try_acquire_owned().unwrap();
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        assert_eq!(limit.available_permits(), 0);
        let first = slot.give_back();
        let second = slot.give_back();
        assert!(!slot.counted());
        assert_eq!(limit.available_permits(), 1);
        drop(first);
        assert_eq!(limit.available_permits(), 1, "a stream is still open");
        // The last stream ends: the connection takes a place again.
        drop(second);
        assert!(slot.counted());
        assert_eq!(limit.available_permits(), 0);
        assert!(!slot.0.evicted.is_cancelled());
        drop(slot);
        assert_eq!(limit.available_permits(), 1);
    }

    #[test]
    fn a_connection_whose_stream_ended_closes_when_no_place_is_free() {
        let limit = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&limit).try_acquire_owned().unwrap();
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        let loan = slot.give_back();
        // An agent connects in the place the stream gave back.
        let agent = Arc::clone(&limit).try_acquire_owned().unwrap();
        drop(loan);
        assert!(!slot.counted());
        assert!(slot.0.evicted.is_cancelled());
        drop(agent);
        assert_eq!(limit.available_permits(), 1);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let with = |value: &'static [u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_bytes(value).unwrap(),
            );
            headers
        };
        assert_eq!(bearer(&with(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with(b"bEARER   abc  ")), Some("abc"));
        assert_eq!(bearer(&with(b"Bearer ")), Some(""));
        assert_eq!(bearer(&with(b"Basic abc")), None);
        assert_eq!(bearer(&with(b"Bearer")), None);
        assert_eq!(bearer(&with(b"abc")), None);
        assert_eq!(bearer(&with(b"Bearer \xff")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
