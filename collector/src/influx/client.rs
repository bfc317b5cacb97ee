//! An HTTP/1.1 client for InfluxDB's write and query APIs: builds v1 and v2
//! write requests, gzips bodies, retries what may succeed later and reports
//! what will not.
//!
//! Outcome of a write, by what the server answered:
//! - 2xx: accepted;
//! - 400: the body was (partly) rejected — bad lines, field type conflicts.
//!   The rest was stored; sending it again would fail again, so it is
//!   reported as [`WriteError::Partial`] and not retried;
//! - 401, 403, 404, 413 and other 4xx: the configuration is wrong (token,
//!   database, batch size): [`WriteError::Rejected`], fatal, not retried;
//! - 429, 5xx, connect errors, resets and timeouts: retried with exponential
//!   backoff and jitter, honouring `Retry-After`, up to `max_retries`
//!   ([`WriteError::Exhausted`]).
//!
//! Retrying a write is safe because a point is identified by its series and
//! timestamp: writing it again overwrites it with itself.

use super::config::{InfluxApi, InfluxConfig, V1Config, parse_duration_ns};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest response body read (InfluxDB's answers are small JSON).
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Bodies larger than this are compressed on the blocking pool.
const INLINE_GZIP_BYTES: usize = 64 << 10;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Which data a write carries, and so where it goes: the raw-event
/// retention policy (v1) or bucket (v2), or the rollups'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// `http_requests` and `alerts`.
    Hot,
    /// `http_traffic`.
    Rollups,
}

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("influx url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("influx config: {0}")]
    Invalid(String),
}

/// Why a write did not (wholly) succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// InfluxDB rejected some or all lines of the body (HTTP 400) and stored
    /// the others. Not retried.
    #[error("partial write: {0}")]
    Partial(String),
    /// InfluxDB refused the request for a reason retrying cannot fix.
    #[error("InfluxDB refused the write with {status}: {message}")]
    Rejected { status: u16, message: String },
    /// Retryable failures went on for longer than `max_retries` retries.
    #[error("InfluxDB write failed {attempts} times, last: {last}")]
    Exhausted { attempts: u32, last: String },
}

impl WriteError {
    /// Whether the writer should stop: anything but a partial write.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, WriteError::Partial(_))
    }
}

/// Why a query (or schema setup) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("InfluxDB answered the query with {status}: {message}")]
    Status { status: u16, message: String },
    #[error("InfluxDB query failed {attempts} times, last: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("InfluxDB statement failed: {0}")]
    Statement(String),
    #[error("InfluxDB query answer is not JSON: {0}")]
    Json(String),
    #[error("not available with the v2 API: {0}")]
    Unsupported(&'static str),
}

/// Counters of what the client did, for metrics and tests.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Retries after a retryable failure.
    pub retries: AtomicU64,
    /// Write requests accepted.
    pub writes: AtomicU64,
    /// Write requests answered 400.
    pub partial_writes: AtomicU64,
    /// Uncompressed line-protocol bytes accepted.
    pub bytes_written: AtomicU64,
    /// Why the last attempt failed, until an attempt gets an answer again:
    /// what keeps a caller waiting while the client retries.
    pub failing: std::sync::Mutex<Option<String>>,
}

impl ClientStats {
    /// See [`ClientStats::failing`].
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_failing(&self, reason: Option<&str>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.as_deref() != reason {
            *failing = reason.map(str::to_owned);
        }
    }
}

/// What [`InfluxClient::ensure_schema`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Retention policies created.
    pub created: Vec<String>,
    /// Retention policies whose duration or default flag was changed.
    pub altered: Vec<String>,
}

/// A response as read by [`InfluxClient::exchange`].
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Bytes,
}

/// One failed attempt, and whether to try again.
#[derive(Debug)]
enum Attempt {
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Final(Answer),
}

/// An InfluxDB client; cheap to clone (clones share the connection pool and
/// the counters).
#[derive(Clone)]
pub struct InfluxClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: crate::http::client::HttpsClient,
    /// `http[s]://authority[/prefix]`, no trailing `/`.
    base: String,
    config: InfluxConfig,
    authorization: Option<HeaderValue>,
    stats: ClientStats,
}

impl fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxClient")
            .field("base", &self.inner.base)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl InfluxClient {
    /// Checks `config` and builds a client; connects lazily.
    pub fn new(config: InfluxConfig) -> Result<InfluxClient, ConfigError> {
        let uri: hyper::Uri = config.url.parse().map_err(|e| ConfigError::Url {
            url: config.url.clone(),
            reason: format!("{e}"),
        })?;
        let bad_url = |reason: &str| ConfigError::Url {
            url: config.url.clone(),
            reason: reason.into(),
        };
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            _ => return Err(bad_url("must start with http:// or https://")),
        };
        if scheme == "http" && config.tls != super::config::InfluxTls::default() {
            return Err(ConfigError::Invalid(
                "[influx.tls] is set but the URL is http://".into(),
            ));
        }
        let authority = uri.authority().ok_or_else(|| bad_url("no host"))?;
        if uri.query().is_some() {
            return Err(bad_url("must not have a query string"));
        }
        let base = format!("{scheme}://{authority}{}", uri.path().trim_end_matches('/'));
        if config.batch_lines == 0 {
            return Err(ConfigError::Invalid(
                "batch_lines must be at least 1".into(),
            ));
        }
        if config.concurrency == 0 {
            return Err(ConfigError::Invalid(
                "concurrency must be at least 1".into(),
            ));
        }
        let authorization = match &config.api {
            InfluxApi::V1(v1) => {
                for (what, d) in [
                    ("retention", &v1.retention),
                    ("rollup_retention", &v1.rollup_retention),
                ] {
                    if parse_duration_ns(d).is_none() {
                        return Err(ConfigError::Invalid(format!(
                            "{what} `{d}` is not an InfluxQL duration such as 30d"
                        )));
                    }
                }
                for (what, name) in [
                    ("database", &v1.database),
                    ("retention_policy", &v1.retention_policy),
                    ("rollup_policy", &v1.rollup_policy),
                ] {
                    if name.is_empty() {
                        return Err(ConfigError::Invalid(format!("{what} is empty")));
                    }
                }
                match (&v1.username, &v1.password) {
                    (Some(user), password) => Some(header_value(&format!(
                        "Basic {}",
                        base64(format!("{user}:{}", password.as_deref().unwrap_or("")).as_bytes())
                    ))?),
                    (None, Some(_)) => {
                        return Err(ConfigError::Invalid("password without username".into()));
                    }
                    (None, None) => None,
                }
            }
            InfluxApi::V2(v2) => {
                if v2.org.is_empty() || v2.bucket.is_empty() {
                    return Err(ConfigError::Invalid("v2 org and bucket must be set".into()));
                }
                Some(header_value(&format!("Token {}", v2.token))?)
            }
        };
        let http = crate::http::client::client(&crate::http::client::ClientOptions {
            tls: (scheme == "https").then(|| config.tls.client()),
            connect_timeout: Some(config.connect_timeout()),
            max_idle_per_host: Some(config.concurrency.max(1) * 2),
        })
        .map_err(|e| ConfigError::Invalid(format!("[influx.tls]: {e}")))?;
        Ok(InfluxClient {
            inner: Arc::new(Inner {
                http,
                base,
                config,
                authorization,
                stats: ClientStats::default(),
            }),
        })
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// The URI a write of `tier` goes to.
    pub fn write_uri(&self, tier: Tier) -> String {
        let base = &self.inner.base;
        match &self.inner.config.api {
            InfluxApi::V1(v1) => {
                let rp = match tier {
                    Tier::Hot => &v1.retention_policy,
                    Tier::Rollups => &v1.rollup_policy,
                };
                format!(
                    "{base}/write?db={}&rp={}&precision=ns",
                    encode(&v1.database),
                    encode(rp)
                )
            }
            InfluxApi::V2(v2) => {
                let bucket = match tier {
                    Tier::Hot => &v2.bucket,
                    Tier::Rollups => v2.rollup_bucket.as_ref().unwrap_or(&v2.bucket),
                };
                format!(
                    "{base}/api/v2/write?org={}&bucket={}&precision=ns",
                    encode(&v2.org),
                    encode(bucket)
                )
            }
        }
    }

    /// Writes one body of newline-terminated line protocol (nanosecond
    /// timestamps) to `tier`, retrying as the module documentation says.
    /// Returns the number of attempts it took.
    pub async fn write(&self, tier: Tier, lines: Bytes) -> Result<u32, WriteError> {
        let config = &self.inner.config;
        let len = lines.len() as u64;
        let body = if !config.gzip {
            lines
        } else if lines.len() <= INLINE_GZIP_BYTES {
            gzip(&lines)
        } else {
            tokio::task::spawn_blocking(move || gzip(&lines))
                .await
                .expect("gzip does not panic")
        };
        let uri = self.write_uri(tier);
        let build = || {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
            if config.gzip {
                req = req.header(header::CONTENT_ENCODING, "gzip");
            }
            if let Some(auth) = &self.inner.authorization {
                req = req.header(header::AUTHORIZATION, auth.clone());
            }
            req.body(Full::new(body.clone())).expect("a valid request")
        };
        let (answer, attempts) = self
            .exchange(build)
            .await
            .map_err(|(attempts, last)| WriteError::Exhausted { attempts, last })?;
        let stats = &self.inner.stats;
        if answer.status.is_success() {
            stats.writes.fetch_add(1, Ordering::Relaxed);
            stats.bytes_written.fetch_add(len, Ordering::Relaxed);
            return Ok(attempts);
        }
        let message = error_message(&answer.body);
        if answer.status == StatusCode::BAD_REQUEST {
            stats.partial_writes.fetch_add(1, Ordering::Relaxed);
            Err(WriteError::Partial(message))
        } else {
            Err(WriteError::Rejected {
                status: answer.status.as_u16(),
                message,
            })
        }
    }

    /// Runs InfluxQL through the v1 `/query` endpoint (POST, so that
    /// statements that change things are allowed) and returns its JSON, or
    /// the first statement error.
    pub async fn query(&self, db: Option<&str>, q: &str) -> Result<serde_json::Value, QueryError> {
        let mut uri = format!("{}/query", self.inner.base);
        if let Some(db) = db {
            uri.push_str("?db=");
            uri.push_str(&encode(db));
        }
        let form = Bytes::from(format!("q={}", encode(q)));
        let build = || {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            if let Some(auth) = &self.inner.authorization {
                req = req.header(header::AUTHORIZATION, auth.clone());
            }
            req.body(Full::new(form.clone())).expect("a valid request")
        };
        let (answer, _) = self
            .exchange(build)
            .await
            .map_err(|(attempts, last)| QueryError::Exhausted { attempts, last })?;
        if !answer.status.is_success() {
            return Err(QueryError::Status {
                status: answer.status.as_u16(),
                message: error_message(&answer.body),
            });
        }
        let json: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| QueryError::Json(e.to_string()))?;
        if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
            return Err(QueryError::Statement(e.to_owned()));
        }
        for result in json
            .get("results")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(e) = result.get("error").and_then(|e| e.as_str()) {
                return Err(QueryError::Statement(e.to_owned()));
            }
        }
        Ok(json)
    }

    /// Creates the database and the two retention policies when absent, and
    /// brings an existing policy's duration and DEFAULT flag (the raw-event
    /// policy is the default) to what the configuration says. Idempotent.
    /// With the v2 API, buckets are managed in InfluxDB: nothing to do.
    pub async fn ensure_schema(&self) -> Result<SchemaReport, QueryError> {
        let InfluxApi::V1(v1) = &self.inner.config.api else {
            return Ok(SchemaReport::default());
        };
        let mut report = SchemaReport::default();
        let db = ident(&v1.database);
        self.query(None, &format!("CREATE DATABASE {db}")).await?;
        let existing = self.retention_policies(v1).await?;
        for (name, duration, default) in [
            (&v1.retention_policy, &v1.retention, true),
            (&v1.rollup_policy, &v1.rollup_retention, false),
        ] {
            let want = parse_duration_ns(duration).expect("checked in new()");
            let rp = ident(name);
            match existing.iter().find(|p| &p.name == name) {
                None => {
                    let flag = if default { " DEFAULT" } else { "" };
                    self.query(
                        None,
                        &format!(
                            "CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1{flag}"
                        ),
                    )
                    .await?;
                    report.created.push(name.clone());
                }
                Some(p) => {
                    let mut changes = String::new();
                    if p.duration_ns != Some(want) {
                        changes.push_str(&format!(" DURATION {duration}"));
                    }
                    if default && !p.default {
                        changes.push_str(" DEFAULT");
                    }
                    if !changes.is_empty() {
                        self.query(
                            None,
                            &format!("ALTER RETENTION POLICY {rp} ON {db}{changes}"),
                        )
                        .await?;
                        report.altered.push(name.clone());
                    }
                }
            }
        }
        Ok(report)
    }

    async fn retention_policies(&self, v1: &V1Config) -> Result<Vec<PolicyRow>, QueryError> {
        let json = self
            .query(
                None,
                &format!("SHOW RETENTION POLICIES ON {}", ident(&v1.database)),
            )
            .await?;
        Ok(policy_rows(&json))
    }

    /// Sends the request `build` makes until the server gives an answer that
    /// is not worth retrying, or the retries run out (then: attempts and the
    /// last failure). Returns the answer and the attempts it took.
    async fn exchange(
        &self,
        build: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<(Answer, u32), (u32, String)> {
        let config = &self.inner.config;
        let stats = &self.inner.stats;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let (reason, retry_after) = match self.attempt(build()).await {
                Attempt::Final(answer) => {
                    stats.set_failing(None);
                    return Ok((answer, attempts));
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            stats.set_failing(Some(&reason));
            if attempts > config.max_retries {
                return Err((attempts, reason));
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            // Said at once (a wrong CA or address should not wait out
            // every retry to be seen), then every tenth attempt.
            if attempts % 10 == 1 {
                tracing::warn!(
                    attempt = attempts,
                    "InfluxDB request failed, retrying: {reason}"
                );
            }
            let delay = backoff(
                attempts,
                config.initial_backoff(),
                config.max_backoff(),
                rand::random::<f64>(),
            );
            let delay = retry_after.map_or(delay, |r| r.min(MAX_RETRY_AFTER).max(delay));
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, req: Request<Full<Bytes>>) -> Attempt {
        let timeout = self.inner.config.request_timeout();
        let exchange = async {
            let response = self.inner.http.request(req).await.map_err(|e| {
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    source = s.source();
                }
                reason
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer to a {status}: {e}"))?
                .to_bytes();
            Ok::<_, String>((Answer { status, body }, retry_after))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Attempt::Retry {
                reason: format!("no answer within {timeout:?}"),
                retry_after: None,
            },
            Ok(Err(reason)) => Attempt::Retry {
                reason,
                retry_after: None,
            },
            Ok(Ok((answer, retry_after))) => {
                let s = answer.status;
                if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() {
                    Attempt::Retry {
                        reason: format!("{s}: {}", error_message(&answer.body)),
                        retry_after,
                    }
                } else {
                    Attempt::Final(answer)
                }
            }
        }
    }
}

/// Backoff before retry number `retry` (1-based): `initial × 2^(retry-1)`,
/// capped at `max`, then scaled into its upper half by `jitter` ∈ [0, 1) so
/// that writers that failed together do not retry together.
pub fn backoff(retry: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = initial.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A row of `SHOW RETENTION POLICIES`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PolicyRow {
    name: String,
    duration_ns: Option<u128>,
    default: bool,
}

fn policy_rows(json: &serde_json::Value) -> Vec<PolicyRow> {
    let Some(series) = json.pointer("/results/0/series/0") else {
        return Vec::new();
    };
    let columns: Vec<&str> = series
        .get("columns")
        .and_then(|c| c.as_array())
        .map(|c| c.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    let col = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(name), Some(duration), Some(default)) =
        (col("name"), col("duration"), col("default"))
    else {
        return Vec::new();
    };
    series
        .get("values")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|row| {
            Some(PolicyRow {
                name: row.get(name)?.as_str()?.to_owned(),
                duration_ns: row.get(duration)?.as_str().and_then(parse_duration_ns),
                default: row.get(default)?.as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// InfluxDB's error message from an error body: `{"error": ...}` (1.x) or
/// `{"message": ...}` (2.x), else the body itself, trimmed.
fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(m) = json.get(key).and_then(|m| m.as_str()) {
                return m.to_owned();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(1000) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(data).expect("writing to a Vec");
    Bytes::from(enc.finish().expect("writing to a Vec"))
}

fn header_value(s: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(s)
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .map_err(|_| ConfigError::Invalid("credentials hold characters a header cannot".into()))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An InfluxQL double-quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Standard base64 with padding, for Basic authentication.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
