//! The shipper: delivers sealed batches with `POST /v1/batches` and tells
//! the reader what the collector acknowledged.
//!
//! Ordering and pipelining: the collector must store each file's batches in
//! file order (its stored offset per stream is a plain high-water mark: a
//! later batch stored first would make the earlier one look like a
//! duplicate). With one batch per file in flight that is given, but the
//! file's rate is then capped at one batch per round trip. So once the
//! collector says it can (its answers carry `Logmon-Pipelining`), up to
//! `pipeline_depth` batches of a file are in flight at once, each after the
//! first sent with `Logmon-After: START` ("store me only once the stream is
//! stored up to my start"). A batch that overtakes the one before it (other
//! connections, other handler threads) is held by the collector until that
//! one is stored; one still early after the collector's hold gets 409 with
//! the stored offset below its start (`early`); it waits until every batch
//! before it in its file has settled and is sent again, then without the
//! header (its
//! predecessor may have been dropped as undecodable, and a gap must then
//! be accepted as before). If the batch before it was answered with an
//! overlap (the source rewinds), it is abandoned: the reader re-reads from
//! the stored offset. A batch is therefore only stored once everything
//! before it is, and an acknowledgement of `end` means all of the file
//! before `end` is durable, in whatever order the answers come back: the
//! checkpoint never passes an unacknowledged byte. Several files ship in
//! parallel, up to `max_in_flight` requests in all.
//!
//! Answers:
//! - 2xx: acknowledged.
//! - 409 with `Logmon-Stored-Offset: N`: the collector already has the
//!   stream up to `N`. `N >= end`: a duplicate, acknowledged. `start < N <
//!   end`: acknowledge `N` and rewind the source so reading resumes at `N`.
//!   `N <= start`: the collector lacks bytes it acknowledged before (it lost
//!   state); they cannot be sent again, so the agent logs an error, counts
//!   it and moves on rather than stall the file forever. 409 without the
//!   header counts as a duplicate.
//! - 400: the collector cannot decode the batch, and never will: logged,
//!   counted as rejected, and acknowledged so the file does not stall.
//! - 413: the batch is split in two at an event boundary and both halves are
//!   sent in order; a batch of one event that is still too large is dropped
//!   like a 400.
//! - 401/403: logged loudly and retried with backoff (the token file is read
//!   again first): data is never dropped over a credential problem; the agent
//!   holds its place until the token is fixed.
//! - 429, 503, other 5xx, other 4xx, network errors and timeouts: retried with
//!   exponential backoff and full jitter, honoring `Retry-After`; network
//!   errors and 5xx other than 503 move to the next collector URL.
//!
//! While batches wait, nothing new is acknowledged, the reader's buffer of
//! unfinished batches fills and it stops reading: memory stays bounded.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logmon_protocol::wire::{self, Batch};
use rand::Rng;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channel::{Sealed, ToReader, ToShipper};
use crate::config::{Settings, Token};
use crate::metrics::Metrics;
use crate::tail::FileFingerprint;

/// The longest `Retry-After` honoured (when above `retry_max`).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// The response header of a 409: how far the collector has the stream.
pub const STORED_OFFSET_HEADER: &str = "logmon-stored-offset";

/// The request header of a pipelined batch: see the module docs.
pub const AFTER_HEADER: &str = "logmon-after";

/// The response header of a collector that honours [`AFTER_HEADER`].
pub const PIPELINING_HEADER: &str = "logmon-pipelining";

/// Largest response body read (answers are short; the rest is ignored).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The collector URLs and which one is in use.
#[derive(Debug)]
struct Endpoints {
    uris: Vec<Uri>,
    current: AtomicUsize,
}

impl Endpoints {
    fn current(&self) -> (usize, &Uri) {
        let i = self.current.load(Ordering::Relaxed) % self.uris.len();
        (i, &self.uris[i])
    }

    /// Moves on from `failed` (unless another request already did).
    fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.uris.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// How one request ended, as far as the batch is concerned.
#[derive(Debug)]
enum Settled {
    Acked,
    Rejected(String),
    TooLarge,
    Conflict(u64),
    /// It overtook the batch before it (409 below `after`).
    Early,
    Aborted,
}

/// The batches of one file in flight, so one that came too early knows
/// when to go again.
#[derive(Debug, Default)]
struct Lane {
    /// Start offsets of the batches sent and not settled.
    unsettled: BTreeSet<u64>,
    /// Batches read before this rewind epoch are abandoned: one before them
    /// overlapped, and the reader re-reads from the stored offset.
    stale_below: u64,
}

/// Sends batches; shared by the delivery tasks.
#[derive(Debug)]
struct Delivery {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoints: Endpoints,
    token_source: Token,
    token: Mutex<Option<HeaderValue>>,
    retry_min: Duration,
    retry_max: Duration,
    request_timeout: Duration,
    zstd_level: i32,
    metrics: Arc<Metrics>,
    /// Woken when a request succeeds: batches of other files waiting out
    /// their backoff retry at once, so after an outage every file resumes
    /// together and no file's backlog lags behind the others' fresh lines.
    recovered: tokio::sync::Notify,
    /// Whether the collector said it stores pipelined batches in order.
    pipelining: AtomicBool,
    lanes: Mutex<HashMap<StreamSlot, Lane>>,
    /// Woken when a batch settles.
    settled: tokio::sync::Notify,
}

/// What one attempt got back.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    stored_offset: Option<u64>,
    pipelining: bool,
    body: String,
}

impl Delivery {
    fn bearer(token: Option<String>) -> Option<HeaderValue> {
        token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    }

    fn reload_token(&self) {
        match self.token_source.read() {
            Ok(t) => *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Self::bearer(t),
            Err(e) => tracing::error!("reloading the token: {e}"),
        }
    }

    async fn post(&self, uri: &Uri, body: Bytes, after: Option<u64>) -> Result<Answer, String> {
        let mut request = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        if let Some(after) = after {
            request
                .headers_mut()
                .insert(AFTER_HEADER, HeaderValue::from(after));
        }
        if let Some(token) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            request.headers_mut().insert(AUTHORIZATION, token);
        }
        let response = self.client.request(request).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let retry_after = header(RETRY_AFTER.as_str()).map(Duration::from_secs);
        let stored_offset = header(STORED_OFFSET_HEADER);
        let pipelining = response.headers().contains_key(PIPELINING_HEADER);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            stored_offset,
            pipelining,
            body,
        })
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<StreamSlot, Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a batch of `slot` starting at `start` as sent.
    fn sent(&self, slot: StreamSlot, start: u64) {
        self.lanes()
            .entry(slot)
            .or_default()
            .unsettled
            .insert(start);
    }

    /// Notes that the batch of `slot` starting at `start` is finished.
    fn settle(&self, slot: StreamSlot, start: u64) {
        let mut lanes = self.lanes();
        if let Some(lane) = lanes.get_mut(&slot) {
            lane.unsettled.remove(&start);
            if lane.unsettled.is_empty() && lane.stale_below == 0 {
                lanes.remove(&slot);
            }
        }
        drop(lanes);
        self.settled.notify_waiters();
    }

    /// Waits until every batch of `slot` before `start` has settled; `false`
    /// when this batch is to be abandoned (one before it overlapped).
    async fn wait_for_predecessors(&self, slot: StreamSlot, start: u64, epoch: u64) -> bool {
        loop {
            let settled = self.settled.notified();
            {
                let lanes = self.lanes();
                let Some(lane) = lanes.get(&slot) else {
                    return true;
                };
                if epoch < lane.stale_below {
                    return false;
                }
                if lane.unsettled.range(..start).next().is_none() {
                    return true;
                }
            }
            // The timeout only guards against a lost wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(100), settled).await;
        }
    }

    /// Full-jitter exponential backoff, at least `Retry-After` (capped).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .retry_min
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.retry_max);
        let jitter = Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64));
        match retry_after {
            // A collector's `Retry-After` is honoured to a minute (or
            // `retry_max` if longer): its rate limit knows when to come back.
            Some(after) => after.min(self.retry_max.max(RETRY_AFTER_CAP)).max(jitter),
            None => jitter,
        }
    }

    /// Sends one body until the collector settles its fate (or `abort`).
    async fn send(
        &self,
        sealed: &Sealed,
        after: Option<u64>,
        abort: &CancellationToken,
    ) -> Settled {
        let path = &sealed.batch.stream.path;
        let mut attempt = 0u32;
        loop {
            let (index, uri) = self.endpoints.current();
            Metrics::add(&self.metrics.requests_sent, 1);
            let outcome = tokio::select! {
                () = abort.cancelled() => return Settled::Aborted,
                r = tokio::time::timeout(self.request_timeout, self.post(uri, sealed.body.clone(), after)) => r,
            };
            let mut retry_after = None;
            if let Ok(Ok(answer)) = &outcome
                && answer.pipelining
            {
                self.pipelining.store(true, Ordering::Relaxed);
            }
            let problem = match outcome {
                Ok(Ok(answer)) => match answer.status.as_u16() {
                    200..=299 => {
                        self.recovered.notify_waiters();
                        return Settled::Acked;
                    }
                    409 => {
                        self.recovered.notify_waiters();
                        let stored = answer.stored_offset.unwrap_or(u64::MAX);
                        if after.is_some_and(|after| stored < after) {
                            return Settled::Early;
                        }
                        return Settled::Conflict(stored);
                    }
                    400 => return Settled::Rejected(answer.body),
                    413 => return Settled::TooLarge,
                    401 | 403 => {
                        Metrics::add(&self.metrics.unauthorized, 1);
                        self.reload_token();
                        let what = if answer.status == StatusCode::FORBIDDEN {
                            "refused this agent (its certificate or token is not for it)"
                        } else {
                            "refused the token"
                        };
                        format!(
                            "{uri} {what} ({}): {}; the agent holds its place and retries",
                            answer.status, answer.body
                        )
                    }
                    code => {
                        retry_after = answer.retry_after;
                        if code >= 500 && code != 503 {
                            self.endpoints.fail_over(index);
                        }
                        format!("{uri} answered {}: {}", answer.status, answer.body)
                    }
                },
                Ok(Err(e)) => {
                    self.endpoints.fail_over(index);
                    format!("{uri}: {e}")
                }
                Err(_) => {
                    self.endpoints.fail_over(index);
                    format!("{uri}: no answer within {:?}", self.request_timeout)
                }
            };
            let delay = self.backoff(attempt, retry_after);
            // Log the first failure of a batch and then every 10th.
            if attempt.is_multiple_of(10) {
                tracing::warn!(
                    file = %path,
                    start = sealed.batch.start,
                    end = sealed.batch.end,
                    attempt = attempt + 1,
                    retry_in_ms = delay.as_millis() as u64,
                    "batch not delivered: {problem}"
                );
            }
            Metrics::add(&self.metrics.batches_retried, 1);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = abort.cancelled() => return Settled::Aborted,
                () = tokio::time::sleep(delay) => {}
                // Another request got through: the collector is back.
                () = self.recovered.notified(), if retry_after.is_none() => attempt = 0,
            }
        }
    }

    /// Delivers one sealed batch (as several requests after a 413) and
    /// reports each acknowledged range to the reader.
    async fn deliver(
        &self,
        sealed: Sealed,
        mut after: Option<u64>,
        to_reader: &Sender<ToReader>,
        abort: &CancellationToken,
    ) {
        let slot = (sealed.source, sealed.stream.fingerprint);
        let mut pieces = vec![sealed];
        while let Some(piece) = pieces.pop() {
            let (start, end) = (piece.batch.start, piece.batch.end);
            let path = piece.batch.stream.path.clone();
            let acked = |end| ToReader::Acked {
                source: piece.source,
                stream: piece.stream.clone(),
                end,
            };
            // Only the first request of a batch can overtake anything: the
            // pieces of a split go one after the other.
            match self.send(&piece, after.take(), abort).await {
                Settled::Early => {
                    Metrics::add(&self.metrics.batches_early, 1);
                    if !self.wait_for_predecessors(slot, start, piece.epoch).await {
                        return;
                    }
                    pieces.push(piece);
                }
                Settled::Acked => {
                    Metrics::add(&self.metrics.batches_acked, 1);
                    Metrics::add(&self.metrics.events_acked, piece.events as u64);
                    Metrics::add(&self.metrics.bytes_shipped, piece.body.len() as u64);
                    let _ = to_reader.send(acked(end));
                }
                Settled::Rejected(reason) => {
                    Metrics::add(&self.metrics.batches_rejected, 1);
                    tracing::error!(
                        file = %path,
                        start,
                        end,
                        events = piece.events,
                        "the collector rejected the batch as undecodable: {reason}; dropped"
                    );
                    let _ = to_reader.send(acked(end));
                }
                Settled::TooLarge => match split(&piece, self.zstd_level) {
                    Some((first, second)) => {
                        Metrics::add(&self.metrics.batches_split, 1);
                        pieces.push(second);
                        pieces.push(first);
                    }
                    None => {
                        Metrics::add(&self.metrics.batches_rejected, 1);
                        tracing::error!(
                            file = %path,
                            start,
                            end,
                            "the batch is too large for the collector even alone; dropped"
                        );
                        let _ = to_reader.send(acked(end));
                    }
                },
                Settled::Conflict(stored) => {
                    Metrics::add(&self.metrics.batches_conflicted, 1);
                    if stored >= end {
                        let _ = to_reader.send(acked(end));
                    } else if stored > start {
                        {
                            let mut lanes = self.lanes();
                            let lane = lanes.entry(slot).or_default();
                            lane.stale_below = lane.stale_below.max(piece.epoch + 1);
                        }
                        let _ = to_reader.send(ToReader::Rewind {
                            source: piece.source,
                            epoch: piece.epoch,
                            stream: piece.stream.clone(),
                            to: stored,
                        });
                        // The rest of this batch is read again from `stored`.
                        return;
                    } else {
                        tracing::error!(
                            file = %path,
                            start,
                            end,
                            stored,
                            "the collector holds the file only up to byte {stored}, below this batch and below what it acknowledged before; those bytes cannot be resent"
                        );
                        let _ = to_reader.send(acked(end));
                    }
                }
                Settled::Aborted => return,
            }
        }
    }
}

/// Splits a batch in two at its middle event; `None` if it has fewer than two.
/// The events come back from the body (this agent encoded it): a sealed
/// batch does not keep them.
fn split(sealed: &Sealed, level: i32) -> Option<(Sealed, Sealed)> {
    let n = sealed.events;
    if n < 2 {
        return None;
    }
    let limits = wire::Limits {
        max_compressed: usize::MAX,
        max_decompressed: usize::MAX / 64,
    };
    let events = wire::decode(&sealed.body, &limits).ok()?.events;
    if events.len() != n {
        return None;
    }
    let k = n / 2;
    let boundary = sealed.offsets[k];
    let part = |range: std::ops::Range<usize>, start: u64, end: u64| -> Option<Sealed> {
        let malformed_offsets: Vec<u64> = sealed
            .malformed_offsets
            .iter()
            .copied()
            .filter(|&o| o >= start && o < end)
            .collect();
        let batch = Batch {
            start,
            end,
            events: events[range.clone()].to_vec(),
            malformed: malformed_offsets.len() as u64,
            ..sealed.batch.clone_header()
        };
        let body = Bytes::from(wire::encode(&batch, level).ok()?);
        Some(Sealed {
            source: sealed.source,
            epoch: sealed.epoch,
            stream: sealed.stream.clone(),
            events: range.len(),
            batch: Batch {
                events: Vec::new(),
                ..batch
            },
            offsets: sealed.offsets[range].to_vec(),
            malformed_offsets,
            body,
        })
    };
    Some((
        part(0..k, sealed.batch.start, boundary)?,
        part(k..n, boundary, sealed.batch.end)?,
    ))
}

/// A batch's header fields with no events.
trait CloneHeader {
    fn clone_header(&self) -> Batch;
}

impl CloneHeader for Batch {
    fn clone_header(&self) -> Batch {
        Batch {
            agent_id: self.agent_id.clone(),
            host: self.host.clone(),
            stream: self.stream.clone(),
            start: self.start,
            end: self.end,
            format: self.format,
            labels: self.labels.clone(),
            events: Vec::new(),
            malformed: self.malformed,
            caught_up: self.caught_up,
            finished: self.finished,
            sent_at: self.sent_at,
        }
    }
}

type StreamSlot = (usize, FileFingerprint);

/// Runs the delivery loop until the reader closes its channel and every
/// batch is finished, or until `abort` (the shutdown deadline), when
/// unfinished batches are abandoned: their lines stay unacknowledged and are
/// read again after a restart.
pub(crate) async fn ship(
    settings: &Settings,
    mut intake: UnboundedReceiver<ToShipper>,
    to_reader: Sender<ToReader>,
    metrics: Arc<Metrics>,
    abort: CancellationToken,
) {
    // No Nagle delay: a request's last partial segment would otherwise wait
    // for the collector's delayed ACK (up to 40 ms on Linux) whenever the
    // body spans several segments, and one file ships one batch at a time.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls(settings))
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let delivery = Arc::new(Delivery {
        client,
        endpoints: Endpoints {
            uris: settings.endpoints.clone(),
            current: AtomicUsize::new(0),
        },
        token: Mutex::new(Delivery::bearer(settings.token.read().ok().flatten())),
        token_source: settings.token.clone(),
        retry_min: settings.retry_min,
        retry_max: settings.retry_max,
        request_timeout: settings.request_timeout,
        zstd_level: settings.zstd_level,
        metrics: metrics.clone(),
        recovered: tokio::sync::Notify::new(),
        pipelining: AtomicBool::new(false),
        lanes: Mutex::new(HashMap::new()),
        settled: tokio::sync::Notify::new(),
    });
    let mut queues: HashMap<StreamSlot, VecDeque<Sealed>> = HashMap::new();
    // Batches in flight per stream.
    let mut busy: HashMap<StreamSlot, usize> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut slots: HashMap<tokio::task::Id, (StreamSlot, u64)> = HashMap::new();
    let mut intake_open = true;
    let mut turn = 0usize;
    loop {
        // Start what may start: up to the depth per stream (1 until the
        // collector says it pipelines), `max_in_flight` in all, taking the
        // streams in turns.
        let depth = if delivery.pipelining.load(Ordering::Relaxed) {
            settings.pipeline_depth
        } else {
            1
        };
        let mut ready: Vec<StreamSlot> = queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(slot, _)| *slot)
            .collect();
        ready.sort_unstable();
        if !ready.is_empty() {
            let len = ready.len();
            ready.rotate_left(turn % len);
            turn = turn.wrapping_add(1);
        }
        let mut started = true;
        while started && tasks.len() < settings.max_in_flight {
            started = false;
            for &slot in &ready {
                if tasks.len() >= settings.max_in_flight {
                    break;
                }
                let in_flight = busy.get(&slot).copied().unwrap_or(0);
                if in_flight >= depth {
                    continue;
                }
                let Some(sealed) = queues.get_mut(&slot).and_then(VecDeque::pop_front) else {
                    continue;
                };
                started = true;
                *busy.entry(slot).or_default() += 1;
                let start = sealed.batch.start;
                // Behind a batch still in flight: stored only after it.
                let after = (in_flight > 0).then_some(start);
                delivery.sent(slot, start);
                let delivery = delivery.clone();
                let to_reader = to_reader.clone();
                let abort = abort.clone();
                let handle = tasks.spawn(async move {
                    delivery.deliver(sealed, after, &to_reader, &abort).await;
                    delivery.settle(slot, start);
                    let _ = to_reader.send(ToReader::Released);
                });
                slots.insert(handle.id(), (slot, start));
            }
        }
        queues.retain(|_, q| !q.is_empty());
        metrics
            .in_flight
            .store(tasks.len() as u64, Ordering::Relaxed);
        if !intake_open && tasks.is_empty() && queues.is_empty() {
            return;
        }
        tokio::select! {
            () = abort.cancelled() => break,
            msg = intake.recv(), if intake_open => match msg {
                Some(ToShipper::Batch(sealed)) => {
                    queues
                        .entry((sealed.source, sealed.stream.fingerprint))
                        .or_default()
                        .push_back(*sealed);
                }
                Some(ToShipper::Invalidate { source, epoch }) => {
                    for ((s, _), queue) in queues.iter_mut() {
                        if *s == source {
                            let before = queue.len();
                            queue.retain(|b| b.epoch >= epoch);
                            for _ in queue.len()..before {
                                let _ = to_reader.send(ToReader::Released);
                            }
                        }
                    }
                }
                None => intake_open = false,
            },
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, panicked) = match done {
                    Ok((id, ())) => (id, false),
                    Err(e) => {
                        // A panicked delivery: its batch stays unacknowledged.
                        tracing::error!("a delivery task failed: {e}");
                        let _ = to_reader.send(ToReader::Released);
                        (e.id(), true)
                    }
                };
                if let Some((slot, start)) = slots.remove(&id) {
                    // A task that panicked did not settle its batch.
                    if panicked {
                        delivery.settle(slot, start);
                    }
                    if let Some(n) = busy.get_mut(&slot) {
                        *n -= 1;
                        if *n == 0 {
                            busy.remove(&slot);
                        }
                    }
                }
            }
        }
    }
    // Deadline: abandon what is left. Aborted tasks release their batches.
    tasks.abort_all();
    while let Some(done) = tasks.join_next().await {
        if done.is_err() {
            let _ = to_reader.send(ToReader::Released);
        }
    }
    for queue in queues.values() {
        for _ in queue {
            let _ = to_reader.send(ToReader::Released);
        }
    }
    metrics.in_flight.store(0, Ordering::Relaxed);
}

/// The TLS client configuration for `https://` collectors; for plain
/// `http://` ones a configuration that trusts nothing (never used: the
/// connector speaks TLS only to `https` URLs).
fn client_tls(settings: &Settings) -> rustls::ClientConfig {
    let https = settings
        .endpoints
        .iter()
        .any(|u| u.scheme_str() == Some("https"));
    match https.then(|| settings.tls.config()) {
        Some(Ok(config)) => config,
        // Read at start (`AgentConfig::validate`); a file changed since is
        // reported, and no collector is trusted until a restart.
        Some(Err(e)) => {
            tracing::error!("[tls]: {e}: no https collector can be reached");
            logmon_io::tls::ClientTls::trusting_nothing()
        }
        None => logmon_io::tls::ClientTls::trusting_nothing(),
    }
}
