//! The HTTP routes: `POST /v1/batches`, `GET /health`, `GET /metrics`, and
//! whatever [`super::ApiRoutes`] were added (the dashboard); anything else is
//! a 404 JSON answer.
//!
//! Every refusal is a `Refusal`, mapped to its status in one place
//! (`Refusal::status`); bodies are short JSON objects.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use logmon_protocol::wire::{self, WireError};
use tokio::sync::oneshot;

use super::IngestState;
use super::dedup::StreamKey;
use super::metrics::Rejection;
use super::writer::{Job, Stored, WriteError};

/// Header carrying the stream's stored high-water mark on 200 and 409
/// answers to `POST /v1/batches`: every byte of the stream below it is stored.
pub const STORED_OFFSET_HEADER: &str = "logmon-stored-offset";

pub(crate) type Body = super::ResponseBody;

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
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("shutting down")]
    ShuttingDown,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Backpressure | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Body(_) => StatusCode::BAD_REQUEST,
            Refusal::Wire(WireError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Wire(_) | Refusal::BadRange { .. } => StatusCode::BAD_REQUEST,
            Refusal::Overlap { .. } => StatusCode::CONFLICT,
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
            Refusal::Wire(WireError::Empty) => Rejection::Empty,
            Refusal::Wire(WireError::UnsupportedVersion { .. }) => Rejection::UnsupportedVersion,
            Refusal::BadRange { .. } => Rejection::BadRange,
            Refusal::Overlap { .. } => Rejection::Overlap,
            Refusal::Write(WriteError::Bus(_)) => Rejection::BusError,
            Refusal::Write(WriteError::Stopped) | Refusal::ShuttingDown => Rejection::ShuttingDown,
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
            Refusal::Backpressure | Refusal::ShuttingDown | Refusal::Write(WriteError::Stopped) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(state.config.retry_after_secs),
                );
            }
            Refusal::Overlap { stored } => {
                headers.insert(STORED_OFFSET_HEADER, HeaderValue::from(stored));
            }
            _ => {}
        }
        response
    }
}

/// A body sent whole, with a `Content-Length`.
pub fn whole(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `value` as an `application/json` answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(whole(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The shape of every refusal: `{"error": CODE, "reason": TEXT}`.
pub fn error(status: StatusCode, code: &str, reason: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "reason": reason }),
    )
}

/// 405 with the methods the path takes.
pub fn method_not_allowed(allow: &'static str, reason: &str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", reason);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Routes one request. Never fails: every error is a response.
pub(crate) async fn handle(
    state: Arc<IngestState>,
    connection: super::ConnectionSlot,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = request.uri().path();
    let response = match (request.method(), path) {
        (&Method::POST, "/v1/batches") => match post_batch(&state, request).await {
            Ok(response) => response,
            Err(refusal) => refusal.into_response(&state),
        },
        (&Method::GET, "/health") => health(&state),
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(whole(state.render_metrics()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (_, "/v1/batches" | "/health" | "/metrics") => {
            let allow = if path == "/v1/batches" { "POST" } else { "GET" };
            method_not_allowed(allow, &format!("{path} takes {allow}"))
        }
        _ => {
            let (parts, _body) = request.into_parts();
            let (method, uri) = (parts.method.clone(), parts.uri.clone());
            let offered = super::ApiRequest {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                connection: Some(connection),
            };
            let answer = match state.api(offered) {
                Some(answer) => answer.await,
                None => None,
            };
            answer.unwrap_or_else(|| {
                let reason = format!("no route for {method} {}", uri.path());
                error(StatusCode::NOT_FOUND, "not_found", &reason)
            })
        }
    };
    Ok(response)
}

fn health(state: &IngestState) -> Response<Body> {
    if state.is_shutting_down() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "shutting_down" }),
        )
    } else {
        json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
    }
}

async fn post_batch(
    state: &Arc<IngestState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    if !state.authorized(request.headers()) {
        return Err(Refusal::Unauthorized);
    }
    if state.is_shutting_down() {
        return Err(Refusal::ShuttingDown);
    }
    // Cheap to check before reading the body: a refused client sends nothing more.
    if state.bus.backlog_bytes() > state.config.max_backlog_bytes {
        return Err(Refusal::Backpressure);
    }
    let limit = state.config.limits.max_compressed;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::BodyTooLarge { limit });
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(Refusal::BodyTooLarge { limit }),
        Err(e) => return Err(Refusal::Body(e.to_string())),
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

    let (reply, answer) = oneshot::channel();
    let job = Job {
        body,
        stream: StreamKey {
            agent_id: batch.agent_id,
            fingerprint: batch.stream.fingerprint,
        },
        start: batch.start,
        end: batch.end,
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
    };
    let mut response = json(StatusCode::OK, &value);
    response
        .headers_mut()
        .insert(STORED_OFFSET_HEADER, HeaderValue::from(stored_offset));
    Ok(response)
}
