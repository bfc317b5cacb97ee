//! The web dashboard, served by `serve` on its one listener next to the
//! ingest API: the page and its assets (embedded at build time), a small
//! JSON API and a stream of Server-Sent Events.
//!
//! | route | answer |
//! |---|---|
//! | `GET /`, `GET /dashboard` | the page |
//! | `GET /assets/NAME` | an embedded file |
//! | `GET /api/series?range=900\|3600\|21600\|86400\|604800\|2592000` | requests, bytes, status classes and the busiest sections over the range |
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
//! Every answer carries `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer` (the token may be in the page's URL); the
//! page carries [`PAGE_CSP`], which allows only the collector's own scripts.
//! `HEAD` is answered wherever `GET` is.
//!
//! Event streams are capped at [`MAX_STREAMS`] (then 503) and do not count
//! against the listener's `max_connections`: a connection carrying one gives
//! its place back while it does (see [`crate::ingest::ConnectionSlot`]), so
//! dashboards never take the places agents connect with.
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
pub use hub::{Hub, HubObserver};

use crate::alerts::outbox::{Outbox, OutboxError};
use crate::engine::consumer::LiveCounters;
use crate::http::auth::{bearer, constant_time_eq};
use crate::http::response::{error, json, method_not_allowed, whole};
use crate::http::{Answer, Body as ResponseBody, ConnectionSlot, RequestHead, Routes};
use bytes::Bytes;
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
/// 7 and 30 days come from the rollups only (memory holds an hour), at
/// 10-minute and 1-hour buckets: about a thousand points or fewer, what a
/// chart's width shows.
pub const RANGES: [(i64, i64); 6] = [
    (900, 1),
    (3600, 1),
    (21600, 10),
    (86400, 60),
    (604_800, 600),
    (2_592_000, 3600),
];
/// Transitions `/api/alerts` returns by default, and at most.
pub const ALERTS_DEFAULT: u64 = 200;
pub const ALERTS_MAX: u64 = 5000;
/// Event streams open at once; more are answered 503.
pub const MAX_STREAMS: usize = 256;
/// The page's `Content-Security-Policy`: scripts, styles and connections
/// from the collector only (uPlot sets inline styles; the icon is a
/// `data:` URL).
pub const PAGE_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
                            img-src 'self' data:; connect-src 'self'";

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
    max_streams: usize,
    keep_alive: Duration,
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
            max_streams: MAX_STREAMS,
            keep_alive: sse::KEEP_ALIVE,
        })
    }

    /// The same with another cap on event streams (tests reach it cheaply).
    #[cfg(test)]
    pub(crate) fn with_max_streams(mut self, max: usize) -> Dashboard {
        self.streams = Arc::new(Semaphore::new(max));
        self.max_streams = max;
        self
    }

    /// The answer to `request`, or `None` when the path is not the
    /// dashboard's.
    pub async fn handle(&self, request: RequestHead) -> Option<Response<ResponseBody>> {
        let mut response = self.route(&request).await?;
        let headers = response.headers_mut();
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        Some(response)
    }

    /// Whether `path` is the dashboard's: the page, its assets, the API,
    /// under the prefix when one is set (the prefix itself redirects).
    pub fn claims(&self, raw: &str) -> bool {
        let path = match &self.options.prefix {
            Some(prefix) if raw == prefix => return true,
            Some(prefix) => raw
                .strip_prefix(prefix.as_str())
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(raw),
            None => raw,
        };
        matches!(path, "/" | "/dashboard" | "/index.html" | "/api")
            || path.starts_with("/assets/")
            || path.starts_with("/api/")
    }

    async fn route(&self, request: &RequestHead) -> Option<Response<ResponseBody>> {
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
        let file = match path {
            "/" | "/dashboard" | "/index.html" => Some("index.html"),
            _ => path.strip_prefix("/assets/"),
        };
        if file.is_none() && path != "/api" && !path.starts_with("/api/") {
            return None;
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            return Some(method_not_allowed(
                "GET, HEAD",
                "the dashboard is read-only",
            ));
        }
        Some(match file {
            Some(name) => self.asset(request, name),
            None => self.api(request, path).await,
        })
    }

    fn asset(&self, request: &RequestHead, name: &str) -> Response<ResponseBody> {
        let Some(asset) = assets::find(name) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such asset");
        };
        let fresh = request
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == asset.etag || t.trim() == "*")
            });
        let mut response = if fresh {
            let mut r = Response::new(whole(Bytes::new()));
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
        // Every file is revalidated on each load (cheap with the ETag): a
        // new collector serves its new files at once, under the same names.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
        if asset.name == "index.html" {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            );
        }
        response
    }

    /// Whether the request carries the dashboard token (or none is set).
    fn authorized(&self, request: &RequestHead) -> bool {
        let Some(token) = &self.options.token else {
            return true;
        };
        let query;
        let given = match bearer(&request.headers) {
            Some(t) => Some(t),
            None => {
                query = query_param(request.uri.query(), "token");
                query.as_deref()
            }
        };
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }

    async fn api(&self, request: &RequestHead, path: &str) -> Response<ResponseBody> {
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
        let ok = |v: &serde_json::Value| json(StatusCode::OK, v);
        match path {
            "/api/series" => self.series(query).await,
            "/api/stats" => ok(&self
                .hub
                .latest_stats()
                .map_or(serde_json::Value::Null, |s| (*s).clone())),
            "/api/alerts" => self.alerts(query).await,
            "/api/rules" => ok(&serde_json::json!(self.rules())),
            "/api/agents" => ok(&self.hub.agents_json(crate::clock::now_seconds())),
            "/api/overview" => ok(&self.overview()),
            "/api/stream" => self.stream(request),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such API route"),
        }
    }

    fn rules(&self) -> Vec<crate::rules::RuleStatus> {
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
        let now = crate::clock::now_seconds();
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
            .unwrap_or_else(|| crate::clock::now_seconds() - i64::from(self.lateness) - 1)
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
                        "range must be 900, 3600, 21600, 86400, 604800 or 2592000 (seconds)",
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
        json(StatusCode::OK, &body)
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
        json(
            StatusCode::OK,
            &json!({ "active": active_alerts(&self.rules()), "history": history }),
        )
    }

    fn stream(&self, request: &RequestHead) -> Response<ResponseBody> {
        let body = if request.method == Method::HEAD {
            // The headers only: no stream to hold a place for.
            whole(Bytes::new())
        } else {
            let Ok(permit) = Arc::clone(&self.streams).try_acquire_owned() else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_streams",
                    &format!(
                        "{} event streams are open, the most there can be",
                        self.max_streams
                    ),
                );
            };
            // Counted here, not among the listener's connections.
            let loan = request.connection.as_ref().map(|c| c.give_back());
            // Subscribed before `hello` is built: nothing closes in between
            // unseen.
            let events = self.hub.subscribe();
            let newest = self.hub.series().newest();
            let hello = sse::frame(
                "hello",
                &json!({ "watermark": self.watermark(), "last": newest }).to_string(),
            );
            sse::stream(
                hello,
                events,
                self.keep_alive,
                self.shutdown.clone(),
                (permit, loan),
            )
        };
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

/// The keys firing now, each with its rule instance's name.
pub fn active_alerts(rules: &[crate::rules::RuleStatus]) -> serde_json::Value {
    rules
        .iter()
        .flat_map(|r| {
            r.active.iter().map(
                |a| json!({ "rule": r.name, "key": a.key, "value": a.value, "message": a.message }),
            )
        })
        .collect::<Vec<_>>()
        .into()
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
        .map(|(_, t)| crate::alerts::notify::webhook_payload(&t))
        .collect();
    history.reverse();
    Ok(history)
}

/// The dashboard's peer on the router: the page, its assets, `/api/*`.
impl Routes for Dashboard {
    fn claims(&self, path: &str) -> bool {
        Dashboard::claims(self, path)
    }

    fn serve(
        self: Arc<Self>,
        request: hyper::Request<hyper::body::Incoming>,
        connection: &ConnectionSlot,
    ) -> Answer {
        let head = RequestHead::of(request, connection);
        Box::pin(async move {
            let path = head.uri.path().to_owned();
            let method = head.method.clone();
            self.handle(head).await.unwrap_or_else(|| {
                let reason = format!("no route for {method} {path}");
                error(StatusCode::NOT_FOUND, "not_found", &reason)
            })
        })
    }
}

#[cfg(test)]
mod tests;
