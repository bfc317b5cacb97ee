//! `GET /health` and `GET /metrics`, which every part of the collector
//! reports into: a part is a [`HealthSource`] (what stops it, if anything)
//! and a [`MetricsSource`] (its Prometheus families).
//!
//! `/health` answers `200 {"status":"ok"}` when no part reports anything;
//! otherwise the worst report decides — `200` for [`Level::Degraded`] (the
//! collector still takes batches), `503` with `Retry-After` for
//! [`Level::Down`] — and the body carries the worst part's status, every
//! part's reasons and their details.

use super::connection::ConnectionSlot;
use super::response::{Body, json, method_not_allowed, whole};
use super::router::{Answer, Routes};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use std::sync::Arc;

/// How bad a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Working, with something an operator should know.
    Degraded,
    /// Not taking work (503).
    Down,
}

/// One part's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub level: Level,
    /// A short name for the state (`backpressure`, `shutting_down`, …).
    pub status: &'static str,
    pub reasons: Vec<String>,
    /// Fields merged into the `/health` body when it is not `ok`.
    pub details: Map<String, Value>,
}

impl Health {
    pub fn ok() -> Health {
        Health {
            level: Level::Ok,
            status: "ok",
            reasons: Vec::new(),
            details: Map::new(),
        }
    }
}

/// A part that reports its health.
pub trait HealthSource: Send + Sync {
    fn health(&self) -> Health;
}

/// A part that renders Prometheus text families.
pub trait MetricsSource: Send + Sync {
    fn render(&self, out: &mut String);
}

/// The status endpoints, over every part mounted into them.
#[derive(Default)]
pub struct Status {
    health: Vec<Arc<dyn HealthSource>>,
    metrics: Vec<Arc<dyn MetricsSource>>,
    retry_after_secs: u32,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("health", &self.health.len())
            .field("metrics", &self.metrics.len())
            .finish()
    }
}

impl Status {
    /// `retry_after_secs`: the `Retry-After` of a 503.
    pub fn new(retry_after_secs: u32) -> Status {
        Status {
            retry_after_secs,
            ..Status::default()
        }
    }

    pub fn health_from(mut self, source: Arc<dyn HealthSource>) -> Status {
        self.health.push(source);
        self
    }

    pub fn metrics_from(mut self, source: Arc<dyn MetricsSource>) -> Status {
        self.metrics.push(source);
        self
    }

    /// Every part's report, combined.
    pub fn check(&self) -> Health {
        let reports: Vec<Health> = self.health.iter().map(|s| s.health()).collect();
        let Some(worst) = reports.iter().max_by_key(|h| h.level) else {
            return Health::ok();
        };
        if worst.level == Level::Ok {
            return Health::ok();
        }
        let mut combined = Health {
            level: worst.level,
            status: worst.status,
            reasons: Vec::new(),
            details: Map::new(),
        };
        for report in reports {
            combined.reasons.extend(report.reasons);
            combined.details.extend(report.details);
        }
        combined
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        for source in &self.metrics {
            source.render(&mut out);
        }
        out
    }

    fn health_response(&self) -> Response<Body> {
        let health = self.check();
        if health.level == Level::Ok {
            return json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        let mut body = Map::new();
        body.insert("status".into(), health.status.into());
        body.insert("reasons".into(), health.reasons.into());
        body.extend(health.details);
        let status = if health.level == Level::Down {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        let mut response = json(status, &Value::Object(body));
        if health.level == Level::Down {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs),
            );
        }
        response
    }
}

impl Routes for Status {
    fn claims(&self, path: &str) -> bool {
        path == "/health" || path == "/metrics"
    }

    fn serve(self: Arc<Self>, request: Request<Incoming>, _connection: &ConnectionSlot) -> Answer {
        let path = request.uri().path();
        let response = match (request.method(), path) {
            (&Method::GET, "/health") => self.health_response(),
            (&Method::GET, _) => {
                let mut response = Response::new(whole(self.render_metrics()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => method_not_allowed("GET", &format!("{path} takes GET")),
        };
        Box::pin(async move { response })
    }
}
