//! `POST /v1/batches`: the checks in the order the module documentation of
//! [`super`] gives, then the durable append through the bus writer.
//!
//! Every refusal is a `Refusal`, mapped to its status in one place
//! (`Refusal::status`); bodies are short JSON objects.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use logmon_protocol::wire::{self, WireError};
use tokio::sync::oneshot;

use super::IngestState;
use super::metrics::Rejection;
use super::writer::{Job, WriteError};
use crate::bus::{Stored, StreamKey};
use crate::http::Body;
use crate::http::response::{error, json, method_not_allowed};

/// Header carrying the stream's stored high-water mark on 200 and 409
/// answers to `POST /v1/batches`: every byte of the stream below it is stored.
pub const STORED_OFFSET_HEADER: &str = "logmon-stored-offset";

/// The request header of a pipelining agent: the batch follows the stream's
/// bytes up to this offset (the batch before it is still on its way), so it
/// is stored only once those are (else 409 `early`).
pub const AFTER_HEADER: &str = "logmon-after";

/// The response header that tells an agent this collector honours
/// [`AFTER_HEADER`], so it may have several batches of a file in flight.
pub const PIPELINING_HEADER: &str = "logmon-pipelining";

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("event bus backlog over its limit; retry later")]
    Backpressure,
    #[error("body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading the body: {0}")]
    Body(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("byte range [{start}, {end}) is empty or inverted")]
    BadRange { start: u64, end: u64 },
    #[error(
        "batch overlaps stored data: the stream is stored up to offset {stored}; re-send from there"
    )]
    Overlap { stored: u64 },
    #[error(
        "the batch follows bytes up to offset {after}, but the stream is stored only up to {stored}: re-send it after the batch before it"
    )]
    Early { stored: u64, after: u64 },
    #[error("header {AFTER_HEADER}: {0:?} is not a byte offset")]
    BadAfter(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("shutting down")]
    ShuttingDown,
    #[error("{0}")]
    DiskFull(String),
    #[error(
        "the client certificate is for {names:?}, not for agent `{agent}`: an agent writes only its own streams"
    )]
    Forbidden { agent: String, names: Vec<String> },
    #[error("the body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("agent `{agent}` is over its rate limit; retry in {} ms", wait.as_millis())]
    RateLimited {
        agent: String,
        wait: std::time::Duration,
    },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Backpressure | Refusal::ShuttingDown | Refusal::DiskFull(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Body(_) => StatusCode::BAD_REQUEST,
            Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Wire(WireError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Wire(_) | Refusal::BadRange { .. } | Refusal::BadAfter(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::Overlap { .. } | Refusal::Early { .. } => StatusCode::CONFLICT,
            Refusal::Write(WriteError::Stopped) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Write(WriteError::Bus(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            Refusal::Unauthorized => Rejection::Unauthorized,
            Refusal::Backpressure => Rejection::Backpressure,
            Refusal::BodyTooLarge { .. } | Refusal::Wire(WireError::TooLarge { .. }) => {
                Rejection::TooLarge
            }
            Refusal::Body(_) | Refusal::Wire(WireError::Corrupt(_)) => Rejection::Corrupt,
            Refusal::BodyTimeout(_) => Rejection::BodyTimeout,
            Refusal::Wire(WireError::Empty) => Rejection::Empty,
            Refusal::Wire(WireError::UnsupportedVersion { .. }) => Rejection::UnsupportedVersion,
            Refusal::BadRange { .. } => Rejection::BadRange,
            Refusal::Overlap { .. } => Rejection::Overlap,
            Refusal::Early { .. } => Rejection::Early,
            Refusal::BadAfter(_) => Rejection::BadRange,
            Refusal::Write(WriteError::Bus(_)) => Rejection::BusError,
            Refusal::Write(WriteError::Stopped) | Refusal::ShuttingDown => Rejection::ShuttingDown,
            Refusal::DiskFull(_) => Rejection::DiskFull,
            Refusal::Forbidden { .. } => Rejection::Forbidden,
            Refusal::RateLimited { .. } => Rejection::RateLimited,
        }
    }

    /// A short machine-readable name for the body's `error` field.
    fn code(&self) -> &'static str {
        self.rejection().label()
    }

    fn into_response(self, state: &IngestState) -> Response<Body> {
        state.metrics.reject(self.rejection());
        let mut response = error(self.status(), self.code(), &self.to_string());
        let headers = response.headers_mut();
        match self {
            Refusal::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Refusal::Backpressure
            | Refusal::ShuttingDown
            | Refusal::DiskFull(_)
            | Refusal::Write(WriteError::Stopped) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(state.config.retry_after_secs),
                );
            }
            Refusal::Overlap { stored } => {
                headers.insert(STORED_OFFSET_HEADER, HeaderValue::from(stored));
            }
            Refusal::Early { stored, .. } => {
                headers.insert(STORED_OFFSET_HEADER, HeaderValue::from(stored));
                headers.insert(PIPELINING_HEADER, HeaderValue::from_static("1"));
            }
            Refusal::RateLimited { wait, .. } => {
                // Whole seconds, rounded up: never earlier than the bucket holds it.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}

/// `POST /v1/batches` (any other method gets 405). Never fails: every
/// refusal is a response.
pub(crate) async fn batches(
    state: &Arc<IngestState>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::POST {
        return method_not_allowed("POST", "/v1/batches takes POST");
    }
    match post_batch(state, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(state),
    }
}

async fn post_batch(
    state: &Arc<IngestState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    if !state.authorized(request.headers()) {
        return Err(Refusal::Unauthorized);
    }
    // Over mutual TLS, the client certificate says which agent this is.
    let identity = request
        .extensions()
        .get::<crate::http::tls::PeerIdentity>()
        .cloned();
    if state.is_shutting_down() {
        return Err(Refusal::ShuttingDown);
    }
    // Cheap to check before reading the body: a refused client sends nothing more.
    if state.bus.backlog_bytes() > state.config.max_backlog_bytes {
        return Err(Refusal::Backpressure);
    }
    let after = match request.headers().get(AFTER_HEADER) {
        None => None,
        Some(value) => {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| Refusal::BadAfter(text))?,
            )
        }
    };
    let limit = state.config.limits.max_compressed;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(disk) = state.disk()
        && let Some(why) = disk.refuse(declared.unwrap_or(0))
    {
        return Err(Refusal::DiskFull(why));
    }
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::BodyTooLarge { limit });
    }
    let timeout = std::time::Duration::from_secs(state.config.body_timeout_secs);
    let collected =
        tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect()).await;
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(Refusal::BodyTooLarge { limit }),
        Ok(Err(e)) => return Err(Refusal::Body(e.to_string())),
        Err(_) => return Err(Refusal::BodyTimeout(timeout.as_secs())),
    };
    state
        .metrics
        .bytes_received
        .fetch_add(body.len() as u64, Relaxed);

    // Decompressing can take tens of milliseconds for a large body: off the
    // async workers. `inspect` checks the body exactly as `wire::decode`
    // would (same limits, same errors) without building its events: the
    // body is stored as received and consumers decode it.
    let limits = state.config.limits;
    let inspect_body = body.clone();
    let inspected = tokio::task::spawn_blocking(move || wire::inspect(&inspect_body, &limits))
        .await
        .map_err(|e| Refusal::Body(format!("decoder failed: {e}")))??;
    let batch = inspected.batch;
    if let Some(identity) = identity
        && !identity.allows(&batch.agent_id)
    {
        return Err(Refusal::Forbidden {
            agent: batch.agent_id,
            names: identity.names,
        });
    }
    // An empty range is a heartbeat or a finish marker, which has no events.
    let bad_range = if inspected.events == 0 {
        batch.end < batch.start
    } else {
        batch.end <= batch.start
    };
    if bad_range {
        return Err(Refusal::BadRange {
            start: batch.start,
            end: batch.end,
        });
    }
    // By the agent the batch says it is: over mutual TLS the certificate's
    // name, checked above.
    if let Err(wait) = state.limiter().take(
        &batch.agent_id,
        inspected.events as u64,
        std::time::Instant::now(),
    ) {
        return Err(Refusal::RateLimited {
            agent: batch.agent_id,
            wait,
        });
    }

    let (reply, answer) = oneshot::channel();
    let job = Job {
        body,
        stream: StreamKey {
            agent_id: batch.agent_id,
            fingerprint: batch.stream.fingerprint,
        },
        start: batch.start,
        end: batch.end,
        after,
        held_since: None,
        events: inspected.events as u64,
        reply,
    };
    let end = job.end;
    let jobs = state.jobs().ok_or(Refusal::ShuttingDown)?;
    jobs.send(job).await.map_err(|_| WriteError::Stopped)?;
    let stored = answer.await.map_err(|_| WriteError::Stopped)??;
    let (value, stored_offset) = match stored {
        Stored::New { offset, gap } => (
            serde_json::json!({ "status": "stored", "offset": offset, "end": end, "gap_bytes": gap }),
            end,
        ),
        Stored::Duplicate { stored } => (
            serde_json::json!({ "status": "duplicate", "stored_offset": stored }),
            stored,
        ),
        Stored::Overlap { stored } => return Err(Refusal::Overlap { stored }),
        Stored::Early { stored } => {
            return Err(Refusal::Early {
                stored,
                after: after.unwrap_or_default(),
            });
        }
    };
    let mut response = json(StatusCode::OK, &value);
    let headers = response.headers_mut();
    headers.insert(STORED_OFFSET_HEADER, HeaderValue::from(stored_offset));
    headers.insert(PIPELINING_HEADER, HeaderValue::from_static("1"));
    Ok(response)
}
