//! The web dashboard, served by `serve` on its one listener next to the
//! ingest API: the page and its assets (embedded at build time), a small
//! JSON API and a stream of Server-Sent Events.
//!
//! | route | answer |
//! |---|---|
//! | `GET /`, `GET /dashboard` | the page |
//! | `GET /assets/NAME` | an embedded file |
//! | `GET /api/series?range=900\|3600\|21600\|86400` | requests, bytes, status classes and the busiest sections over the range |
//! | `GET /api/stats` | the latest 10-second statistics block, or `null` |
//! | `GET /api/alerts?limit=N` | active alerts and the latest transitions |
//! | `GET /api/rules` | rule instances and their health |
//! | `GET /api/agents` | agents and their streams |
//! | `GET /api/overview` | version, clocks, watermark, counters |
//! | `GET /api/stream` | `hello`, then `second`, `stats`, `alert` (and `reset`) events |
//!
//! With `--dashboard-token` every `/api/*` route needs the token (as a
//! bearer token or `?token=`); the page and its assets stay public. With
//! `--dashboard-prefix /P`, `/P/...` is served as `/...` too (for a proxy
//! that forwards the prefix), and `/P` redirects to `/P/` so that the page's
//! relative URLs resolve under it.
//!
//! The engine feeds the [`Hub`]; nothing the HTTP side does can make the
//! engine wait on a client.

pub mod agents;
pub mod assets;
pub mod hub;
pub mod rollups;
pub mod series;
pub mod sse;

pub use agents::BatchSeen;
pub use hub::Hub;

use crate::ingest::{ApiRequest, ApiRoutes, ResponseBody, constant_time_eq};
use crate::live::LiveCounters;
use crate::outbox::{Outbox, OutboxError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use rollups::RollupSource;
use serde_json::json;
use series::{Grid, TOP_PER_RANGE, busiest};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The ranges `/api/series` answers, in seconds, with their resolution.
pub const RANGES: [(i64, i64); 4] = [(900, 1), (3600, 1), (21600, 10), (86400, 60)];
/// Transitions `/api/alerts` returns by default, and at most.
pub const ALERTS_DEFAULT: u64 = 200;
pub const ALERTS_MAX: u64 = 5000;
/// Event streams open at once; more are answered 503.
pub const MAX_STREAMS: usize = 256;

/// `serve`'s dashboard flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardOptions {
    /// Read-only token every `/api/*` request must carry.
    pub token: Option<String>,
    /// A path prefix (`/logmon`, no trailing slash) also served as the root.
    pub prefix: Option<String>,
}

impl DashboardOptions {
    /// Checks a `--dashboard-prefix`: `/` followed by path segments; a
    /// trailing `/` is dropped, and `/` alone means none.
    pub fn parse_prefix(raw: &str) -> Result<Option<String>, String> {
        let trimmed = raw.trim_end_matches('/');
        if !raw.starts_with('/') {
            return Err(format!("--dashboard-prefix `{raw}` must start with `/`"));
        }
        if trimmed.contains(['?', '#', ' ']) || trimmed.contains("//") {
            return Err(format!(
                "--dashboard-prefix `{raw}` must be a plain path (no `?`, `#`, spaces or empty segments)"
            ));
        }
        Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
    }
}

/// The HTTP side of the dashboard.
#[derive(Debug)]
pub struct Dashboard {
    hub: Arc<Hub>,
    options: DashboardOptions,
    live: Arc<LiveCounters>,
    outbox: Outbox,
    rollups: Option<RollupSource>,
    lateness: u32,
    shutdown: CancellationToken,
    streams: Arc<Semaphore>,
    keep_alive: Duration,
}

fn wall_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn whole(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut response = Response::new(whole(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, code: &str, reason: &str) -> Response<ResponseBody> {
    json_response(status, &json!({ "error": code, "reason": reason }))
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
        .next()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Dashboard {
    /// `influx`: where the rollups are (when the collector writes them).
    pub fn new(
        hub: Arc<Hub>,
        options: DashboardOptions,
        live: Arc<LiveCounters>,
        outbox: Outbox,
        influx: Option<&crate::influx::InfluxConfig>,
        lateness: u32,
        shutdown: CancellationToken,
    ) -> Result<Dashboard, crate::influx::ConfigError> {
        let rollups = influx.and_then(RollupSource::new).transpose()?;
        Ok(Dashboard {
            hub,
            options,
            live,
            outbox,
            rollups,
            lateness,
            shutdown,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            keep_alive: sse::KEEP_ALIVE,
        })
    }

    /// The routes to add to the ingest listener.
    pub fn routes(self: Arc<Self>) -> ApiRoutes {
        ApiRoutes(Box::new(move |request| {
            let dashboard = Arc::clone(&self);
            Box::pin(async move { dashboard.handle(request).await })
        }))
    }

    /// The answer to `request`, or `None` when the path is not the
    /// dashboard's.
    pub async fn handle(&self, request: ApiRequest) -> Option<Response<ResponseBody>> {
        let raw = request.uri.path();
        let path = match &self.options.prefix {
            Some(prefix) if raw == prefix => {
                let mut to = format!("{prefix}/");
                if let Some(q) = request.uri.query() {
                    to.push('?');
                    to.push_str(q);
                }
                return Some(redirect(&to));
            }
            Some(prefix) => raw
                .strip_prefix(prefix.as_str())
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(raw),
            None => raw,
        };
        let response = match path {
            "/" | "/dashboard" | "/index.html" => self.asset(&request, "index.html"),
            _ if path.starts_with("/assets/") => self.asset(&request, &path["/assets/".len()..]),
            _ if path == "/api" || path.starts_with("/api/") => self.api(&request, path).await,
            _ => return None,
        };
        Some(response)
    }

    fn asset(&self, request: &ApiRequest, name: &str) -> Response<ResponseBody> {
        if request.method != Method::GET && request.method != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let Some(asset) = assets::find(name) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such asset");
        };
        let etag = asset.etag();
        let fresh = request
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut response = if fresh {
            let mut r = Response::new(Empty::new().map_err(|e| match e {}).boxed());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = Response::new(whole(Bytes::from_static(asset.bytes)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            r
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(asset.cache_control()),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        response
    }

    /// Whether the request carries the dashboard token (or none is set).
    fn authorized(&self, request: &ApiRequest) -> bool {
        let Some(token) = &self.options.token else {
            return true;
        };
        let bearer = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split_at_checked(7)
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer "))
                    .map(|(_, t)| t.trim().to_owned())
            });
        let given = bearer.or_else(|| query_param(request.uri.query(), "token"));
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }

    async fn api(&self, request: &ApiRequest, path: &str) -> Response<ResponseBody> {
        if request.method != Method::GET && request.method != Method::HEAD {
            return method_not_allowed("GET");
        }
        if !self.authorized(request) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong dashboard token (Authorization: Bearer TOKEN, or ?token=TOKEN)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        let query = request.uri.query();
        let ok = |v: &serde_json::Value| json_response(StatusCode::OK, v);
        match path {
            "/api/series" => self.series(query).await,
            "/api/stats" => ok(&self
                .hub
                .latest_stats()
                .map_or(serde_json::Value::Null, |s| (*s).clone())),
            "/api/alerts" => self.alerts(query).await,
            "/api/rules" => ok(&self.rules()),
            "/api/agents" => ok(&self.hub.agents_json(wall_seconds())),
            "/api/overview" => ok(&self.overview()),
            "/api/stream" => self.stream(),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such API route"),
        }
    }

    fn rules(&self) -> serde_json::Value {
        self.live
            .rules
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    fn watermark(&self) -> Option<i64> {
        match self.live.watermark.load(Ordering::Relaxed) {
            0 => None,
            w => Some(w as i64),
        }
    }

    fn overview(&self) -> serde_json::Value {
        let now = wall_seconds();
        let watermark = self.watermark();
        let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "now": now,
            "watermark": watermark,
            "lateness": self.lateness,
            "engine_lag_seconds": watermark.map(|w| (now - w).max(0)),
            "events_total": counter(&self.live.events),
            "late_total": counter(&self.live.late),
            "bus_lag_records": counter(&self.live.lag_records),
        })
    }

    /// The newest closed second: memory's, else the one before the
    /// watermark, else the wall clock's.
    fn last_closed(&self, newest: Option<i64>) -> i64 {
        newest
            .or_else(|| self.watermark().map(|w| w - 1))
            .unwrap_or_else(|| wall_seconds() - i64::from(self.lateness) - 1)
    }

    async fn series(&self, query: Option<&str>) -> Response<ResponseBody> {
        let range = match query_param(query, "range") {
            None => 900,
            Some(v) => match v.parse::<i64>() {
                Ok(r) if RANGES.iter().any(|(range, _)| *range == r) => r,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_range",
                        "range must be 900, 3600, 21600 or 86400 (seconds)",
                    );
                }
            },
        };
        let res = RANGES
            .iter()
            .find(|(r, _)| *r == range)
            .map_or(1, |(_, res)| *res);
        let (newest, held_from) = {
            let ring = self.hub.series();
            (ring.newest(), ring.held_from())
        };
        let grid = Grid::new(range, res, self.last_closed(newest));
        // Buckets before `split` come from InfluxDB: those memory does not
        // hold whole.
        let mut split = match (&self.rollups, held_from) {
            (None, _) => 0,
            (Some(_), None) => grid.len,
            (Some(_), Some(from)) => grid.first_bucket_from(from),
        };
        let mut warnings: Vec<String> = Vec::new();
        let mut stored = None;
        if let (Some(rollups), true) = (&self.rollups, split > 0) {
            match rollups.totals(&grid, split).await {
                Ok(t) => stored = Some(t),
                Err(e) => {
                    warnings.push(format!("InfluxDB: {e}; showing what memory holds"));
                    split = 0;
                }
            }
        }
        let memory = self.hub.series().window(&grid, split);
        let mut totals = memory.section_totals();
        for (name, n) in stored.iter().flat_map(|s| &s.sections) {
            *totals.entry(name.clone()).or_default() += n;
        }
        let top = busiest(&totals, TOP_PER_RANGE);
        let mut sums = memory.sums(&grid, &top);
        if let (Some(rollups), Some(mut stored)) = (&self.rollups, stored) {
            match rollups.sections(&grid, split, &top).await {
                Ok((sections, partial)) => {
                    stored.sums.sections = sections;
                    stored.partial |= partial;
                }
                Err(e) => warnings.push(format!("InfluxDB sections: {e}")),
            }
            if stored.partial {
                warnings.push("InfluxDB cut its answer short (max-row-limit)".into());
            }
            sums.take_buckets(&stored.sums, 0..split);
        }
        let mut body = sums.per_second(&grid, &top);
        body["range"] = range.into();
        body["resolution"] = res.into();
        body["source"] = if split > 0 { "influxdb" } else { "memory" }.into();
        body["last"] = grid.last.into();
        if !warnings.is_empty() {
            body["warnings"] = warnings.into();
        }
        json_response(StatusCode::OK, &body)
    }

    async fn alerts(&self, query: Option<&str>) -> Response<ResponseBody> {
        let limit = match query_param(query, "limit").map(|v| v.parse::<u64>()) {
            None => ALERTS_DEFAULT,
            Some(Ok(n)) => n.min(ALERTS_MAX),
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_limit",
                    "limit must be a whole number (at most 5000 are returned)",
                );
            }
        };
        let outbox = self.outbox.clone();
        let history = tokio::task::spawn_blocking(move || history(&outbox, limit))
            .await
            .unwrap_or_else(|e| Err(format!("reading the outbox: {e}")));
        let history = match history {
            Ok(h) => h,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "outbox", &e),
        };
        json_response(
            StatusCode::OK,
            &json!({ "active": active_alerts(&self.rules()), "history": history }),
        )
    }

    fn stream(&self) -> Response<ResponseBody> {
        let Ok(permit) = Arc::clone(&self.streams).try_acquire_owned() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "too many event streams are open",
            );
        };
        // Subscribed before `hello` is built: nothing closes in between
        // unseen.
        let events = self.hub.subscribe();
        let newest = self.hub.series().newest();
        let hello = sse::frame(
            "hello",
            &json!({ "watermark": self.watermark(), "last": newest }).to_string(),
        );
        let body = sse::stream(
            hello,
            events,
            self.keep_alive,
            self.shutdown.clone(),
            permit,
        );
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx would otherwise buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

fn redirect(to: &str) -> Response<ResponseBody> {
    let mut r = Response::new(whole(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn method_not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the dashboard is read-only",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The keys firing now, each with its rule instance's name.
pub fn active_alerts(rules: &serde_json::Value) -> serde_json::Value {
    let active: Vec<serde_json::Value> = rules
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            let rule = r["name"].clone();
            r["active"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |mut a| {
                    a["rule"] = rule.clone();
                    a
                })
        })
        .collect();
    active.into()
}

/// The latest `limit` transitions in the outbox, newest first, as webhooks
/// get them; fewer when older ones were deleted.
fn history(outbox: &Outbox, limit: u64) -> Result<Vec<serde_json::Value>, String> {
    let mut from = outbox.next_offset().saturating_sub(limit);
    let read = loop {
        match outbox.read(from, limit as usize) {
            Err(OutboxError::Log(crate::bus::BusError::OffsetDeleted { first, .. }))
                if first > from =>
            {
                from = first;
            }
            other => break other,
        }
    };
    let mut history: Vec<serde_json::Value> = read
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, t)| crate::notify::webhook_payload(&t))
        .collect();
    history.reverse();
    Ok(history)
}

#[cfg(test)]
mod tests;
