//! The agent's counters and gauges, rendered as Prometheus text for
//! `/metrics`, plus the tiny HTTP server that serves them and `/health`.
//!
//! Counters are atomics bumped by the reader thread and the shipper; per-file
//! state is a snapshot the reader refreshes about once a second, so a scrape
//! never touches the tailer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use logmon_protocol::prometheus::{Kind, Text};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One watched file's position, as last seen by the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// The source it belongs to.
    pub source: String,
    /// Where it was last seen.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Read (delivered to batches) up to here.
    pub read: u64,
    /// Acknowledged by the collector up to here.
    pub acked: u64,
}

/// Everything `/metrics` shows. Cheap to share: one `Arc` per task.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub events_parsed: AtomicU64,
    pub lines_malformed: AtomicU64,
    pub lines_skipped: AtomicU64,
    pub batches_sealed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub requests_sent: AtomicU64,
    pub batches_acked: AtomicU64,
    pub events_acked: AtomicU64,
    pub bytes_shipped: AtomicU64,
    pub batches_retried: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub batches_split: AtomicU64,
    pub batches_conflicted: AtomicU64,
    /// Pipelined batches that overtook the one before them (sent again).
    pub batches_early: AtomicU64,
    pub unauthorized: AtomicU64,
    pub rewinds: AtomicU64,
    /// Batches read and not yet finished (queued, in flight or retrying).
    pub batches_buffered: AtomicU64,
    /// The most `batches_buffered` ever was.
    pub batches_buffered_max: AtomicU64,
    /// Requests outstanding now.
    pub in_flight: AtomicU64,
    /// 1 while reading is paused because too many batches are unacknowledged.
    pub reading_paused: AtomicU64,
    pub checkpoint_saves: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    /// Unix milliseconds when the checkpoints on disk last matched memory.
    pub checkpoint_current_unix_ms: AtomicU64,
    /// Why the last checkpoint write failed, while writes keep failing
    /// (a full or read-only checkpoint directory); `None` once one works.
    checkpoint_failure: Mutex<Option<String>>,
    files: Mutex<Vec<FileState>>,
    /// Events edge filters dropped (acknowledged as handled, never sent).
    pub events_filtered: AtomicU64,
    /// The tailers' counters, summed over the sources (set, not added).
    pub tail_rotations: AtomicU64,
    pub tail_truncations: AtomicU64,
    pub tail_generations: AtomicU64,
    pub tail_duplicates: AtomicU64,
    pub tail_found_by_events: AtomicU64,
    pub tail_io_errors: AtomicU64,
    /// Sources whose new files are found by file-system events too.
    pub tail_file_events: AtomicU64,
    filters: Mutex<Vec<FilterState>>,
    parsers: Mutex<Vec<ParserState>>,
}

/// What `/metrics` shows of one configured edge filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterState {
    /// Its source's name.
    pub source: String,
    /// Its position in the source's chain, from 0.
    pub position: usize,
    /// The component (shipped name or path).
    pub filter: String,
    /// Batches it was called on.
    pub calls: u64,
    /// Events it was given.
    pub events_in: u64,
    /// Events it dropped (its policy's drops on failure included).
    pub dropped: u64,
    /// Calls that failed (trap, deadline, memory, malformed verdict).
    pub errors: u64,
    /// Time spent in calls, building its input and applying its verdict.
    pub nanos: u64,
}

/// What `/metrics` shows of one source's edge parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParserState {
    /// Its source's name.
    pub source: String,
    /// The component (shipped name or path).
    pub parser: String,
    /// Calls on a poll's lines (replays not included).
    pub calls: u64,
    /// Lines given to it in those calls.
    pub lines: u64,
    /// Events it made of them.
    pub events: u64,
    /// Lines it found malformed, or that a failed call made malformed.
    pub malformed: u64,
    /// Calls that failed (trap, deadline, memory, malformed answer, a
    /// replay that could not be made).
    pub errors: u64,
    /// Replays of a file's directives before where reading started.
    pub replays: u64,
    /// Directive lines given to it in replays.
    pub replay_lines: u64,
    /// Bytes of files scanned for replays.
    pub replay_bytes: u64,
    /// Time spent in calls, building their input and checking their answer.
    pub nanos: u64,
}

/// The tailers' counters summed over the sources, for `/metrics`.
#[derive(Debug, Default)]
pub struct TailTotals {
    rotations: u64,
    truncations: u64,
    generations: u64,
    duplicates: u64,
    found_by_events: u64,
    io_errors: u64,
    file_events: u64,
}

impl TailTotals {
    /// Adds one source's tailer.
    pub fn add(&mut self, stats: &crate::tail::TailStats) {
        self.rotations += stats.rotations;
        self.truncations += stats.truncations;
        self.generations += stats.generations;
        self.duplicates += stats.duplicates;
        self.found_by_events += stats.found_by_events;
        self.io_errors += stats.io_errors;
        self.file_events += u64::from(stats.file_events);
    }

    /// Shows the sums.
    pub fn publish(&self, metrics: &Metrics) {
        let set = |counter: &AtomicU64, value| counter.store(value, Ordering::Relaxed);
        set(&metrics.tail_rotations, self.rotations);
        set(&metrics.tail_truncations, self.truncations);
        set(&metrics.tail_generations, self.generations);
        set(&metrics.tail_duplicates, self.duplicates);
        set(&metrics.tail_found_by_events, self.found_by_events);
        set(&metrics.tail_io_errors, self.io_errors);
        set(&metrics.tail_file_events, self.file_events);
    }
}

/// Unix time now, in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock in unix nanoseconds (UTC).
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Replaces the per-filter snapshot.
    pub fn set_filters(&self, filters: Vec<FilterState>) {
        *self.filters.lock().unwrap_or_else(|e| e.into_inner()) = filters;
    }

    /// The per-filter snapshot.
    pub fn filters(&self) -> Vec<FilterState> {
        self.filters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the per-parser snapshot.
    pub fn set_parsers(&self, parsers: Vec<ParserState>) {
        *self.parsers.lock().unwrap_or_else(|e| e.into_inner()) = parsers;
    }

    /// The per-parser snapshot.
    pub fn parsers(&self) -> Vec<ParserState> {
        self.parsers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the per-file snapshot.
    pub fn set_files(&self, files: Vec<FileState>) {
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
    }

    /// Records whether the last checkpoint write failed, and why.
    pub fn set_checkpoint_failure(&self, failure: Option<String>) {
        *self
            .checkpoint_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failure;
    }

    /// Why checkpoint writes are failing, if they are.
    pub fn checkpoint_failure(&self) -> Option<String> {
        self.checkpoint_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `/health`: 200 `ok`, or 503 `checkpoints_failing` with the reason
    /// while checkpoints cannot be written (shipping goes on; a restart in
    /// that state reads again what was acknowledged since the last
    /// checkpoint that was written, and the collector drops the repeats).
    pub fn health(&self) -> (StatusCode, String) {
        let common = format!(
            "\"batches_buffered\":{},\"reading_paused\":{},\"checkpoint_age_seconds\":{}",
            Metrics::get(&self.batches_buffered),
            Metrics::get(&self.reading_paused) == 1,
            self.checkpoint_age_seconds()
        );
        match self.checkpoint_failure() {
            None => (StatusCode::OK, format!("{{\"status\":\"ok\",{common}}}\n")),
            Some(reason) => {
                let quoted = serde_json::Value::String(reason).to_string();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{{\"status\":\"checkpoints_failing\",\"reason\":{quoted},{common}}}\n"
                    ),
                )
            }
        }
    }

    /// The per-file snapshot.
    pub fn files(&self) -> Vec<FileState> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Seconds since the checkpoints on disk last matched what was
    /// acknowledged (stays under about one second while saving works).
    pub fn checkpoint_age_seconds(&self) -> f64 {
        let at = Self::get(&self.checkpoint_current_unix_ms);
        if at == 0 {
            return 0.0;
        }
        unix_ms().saturating_sub(at) as f64 / 1000.0
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Text::new();
        let counters: [(&str, &str, &AtomicU64); 27] = [
            (
                "events_filtered_total",
                "Events edge filters dropped (handled, not sent).",
                &self.events_filtered,
            ),
            (
                "lines_read_total",
                "Lines read from log files.",
                &self.lines_read,
            ),
            (
                "bytes_read_total",
                "Bytes of lines read from log files.",
                &self.bytes_read,
            ),
            (
                "events_parsed_total",
                "Lines parsed into events.",
                &self.events_parsed,
            ),
            (
                "lines_malformed_total",
                "Lines that did not parse.",
                &self.lines_malformed,
            ),
            (
                "lines_skipped_total",
                "Blank lines and CSV headers.",
                &self.lines_skipped,
            ),
            (
                "batches_sealed_total",
                "Batches built.",
                &self.batches_sealed,
            ),
            (
                "heartbeats_total",
                "Empty batches sent for files read to their end and acknowledged.",
                &self.heartbeats,
            ),
            (
                "requests_total",
                "POST /v1/batches requests sent.",
                &self.requests_sent,
            ),
            (
                "batches_acked_total",
                "Batches the collector acknowledged.",
                &self.batches_acked,
            ),
            (
                "events_acked_total",
                "Events the collector acknowledged.",
                &self.events_acked,
            ),
            (
                "bytes_shipped_total",
                "Compressed body bytes acknowledged.",
                &self.bytes_shipped,
            ),
            (
                "batches_retried_total",
                "Retries after 5xx, 503, 401 or network errors.",
                &self.batches_retried,
            ),
            (
                "batches_rejected_total",
                "Batches dropped: 400, or a single event over 413.",
                &self.batches_rejected,
            ),
            (
                "batches_split_total",
                "Batches split after 413.",
                &self.batches_split,
            ),
            (
                "batches_conflicted_total",
                "409 answers (collector already had data).",
                &self.batches_conflicted,
            ),
            (
                "batches_early_total",
                "Pipelined batches that overtook the one before them (409 early; sent again after it).",
                &self.batches_early,
            ),
            ("unauthorized_total", "401 answers.", &self.unauthorized),
            (
                "rewinds_total",
                "Times a source was rewound to its acknowledged offsets.",
                &self.rewinds,
            ),
            (
                "checkpoint_saves_total",
                "Checkpoint files written.",
                &self.checkpoint_saves,
            ),
            (
                "checkpoint_errors_total",
                "Checkpoint writes that failed.",
                &self.checkpoint_errors,
            ),
            (
                "file_rotations_total",
                "Times a watched file left its name (rotated or deleted).",
                &self.tail_rotations,
            ),
            (
                "file_truncations_total",
                "Files found shorter than read (copytruncate), read again from 0.",
                &self.tail_truncations,
            ),
            (
                "file_generations_total",
                "Truncated files whose first lines came back identical, read as a new stream.",
                &self.tail_generations,
            ),
            (
                "file_duplicates_total",
                "Files skipped as copies of a watched file (same head).",
                &self.tail_duplicates,
            ),
            (
                "files_found_by_events_total",
                "Files opened on a file-system event before any rescan found them.",
                &self.tail_found_by_events,
            ),
            (
                "file_errors_total",
                "I/O errors on log files (each retried).",
                &self.tail_io_errors,
            ),
        ];
        for (name, help, value) in counters {
            out.single(
                &format!("logmon_agent_{name}"),
                Kind::Counter,
                help,
                Self::get(value),
            );
        }
        let gauges: [(&str, &str, f64); 7] = [
            (
                "file_event_sources",
                "Sources that find new files by file-system events as well as the rescan.",
                Self::get(&self.tail_file_events) as f64,
            ),
            (
                "batches_buffered",
                "Batches read and not finished.",
                Self::get(&self.batches_buffered) as f64,
            ),
            (
                "batches_buffered_max",
                "Most batches ever buffered at once.",
                Self::get(&self.batches_buffered_max) as f64,
            ),
            (
                "in_flight",
                "Requests outstanding.",
                Self::get(&self.in_flight) as f64,
            ),
            (
                "reading_paused",
                "1 while reading waits for acknowledgements.",
                Self::get(&self.reading_paused) as f64,
            ),
            (
                "checkpoint_age_seconds",
                "Seconds since checkpoints on disk matched acknowledgements.",
                self.checkpoint_age_seconds(),
            ),
            (
                "checkpoints_failing",
                "1 while checkpoints cannot be written (see /health for why).",
                f64::from(u8::from(self.checkpoint_failure().is_some())),
            ),
        ];
        for (name, help, value) in gauges {
            out.single(&format!("logmon_agent_{name}"), Kind::Gauge, help, value);
        }
        let files = self.files();
        type PerFile = (&'static str, &'static str, fn(&FileState) -> u64);
        let per_file: [PerFile; 3] = [
            (
                "file_lag_bytes",
                "File size minus acknowledged offset.",
                |f| f.size.saturating_sub(f.acked),
            ),
            (
                "file_unacked_read_bytes",
                "Bytes read but not acknowledged.",
                |f| f.read.saturating_sub(f.acked),
            ),
            ("file_acked_offset_bytes", "Acknowledged offset.", |f| {
                f.acked
            }),
        ];
        for (name, help, value) in per_file {
            let name = format!("logmon_agent_{name}");
            out.family(&name, Kind::Gauge, help);
            for f in &files {
                let labels = [("source", f.source.as_str()), ("path", f.path.as_str())];
                out.sample(&name, &labels, value(f));
            }
        }
        let filters = self.filters();
        if !filters.is_empty() {
            type PerFilter = (&'static str, &'static str, fn(&FilterState) -> u64);
            let per_filter: [PerFilter; 5] = [
                ("filter_calls_total", "Batches given to the filter.", |f| {
                    f.calls
                }),
                ("filter_events_total", "Events given to the filter.", |f| {
                    f.events_in
                }),
                (
                    "filter_dropped_total",
                    "Events the filter dropped (on failure too, with on_error = drop).",
                    |f| f.dropped,
                ),
                (
                    "filter_errors_total",
                    "Calls that trapped, overran or answered a malformed verdict.",
                    |f| f.errors,
                ),
                (
                    "filter_nanoseconds_total",
                    "Time in the filter: input, call and verdict.",
                    |f| f.nanos,
                ),
            ];
            for (name, help, value) in per_filter {
                let name = format!("logmon_agent_{name}");
                out.family(&name, Kind::Counter, help);
                for f in &filters {
                    let position = f.position.to_string();
                    let labels = [
                        ("source", f.source.as_str()),
                        ("position", position.as_str()),
                        ("filter", f.filter.as_str()),
                    ];
                    out.sample(&name, &labels, value(f));
                }
            }
        }
        self.render_parsers(&mut out);
        out.into_string()
    }

    /// The edge parsers' families, when a source has one.
    fn render_parsers(&self, out: &mut Text) {
        let parsers = self.parsers();
        if parsers.is_empty() {
            return;
        }
        type PerParser = (&'static str, &'static str, fn(&ParserState) -> u64);
        let per_parser: [PerParser; 9] = [
            (
                "parser_calls_total",
                "Calls on a poll's lines of a file.",
                |p| p.calls,
            ),
            ("parser_lines_total", "Lines given to the parser.", |p| {
                p.lines
            }),
            ("parser_events_total", "Events the parser made.", |p| {
                p.events
            }),
            (
                "parser_malformed_total",
                "Lines the parser found malformed, or a failed call made malformed.",
                |p| p.malformed,
            ),
            (
                "parser_errors_total",
                "Calls that trapped, overran, answered a malformed answer, or could not replay.",
                |p| p.errors,
            ),
            (
                "parser_replays_total",
                "Replays of a file's directives before where reading started.",
                |p| p.replays,
            ),
            (
                "parser_replay_lines_total",
                "Directive lines given to the parser in replays.",
                |p| p.replay_lines,
            ),
            (
                "parser_replay_bytes_total",
                "Bytes of files scanned for replays.",
                |p| p.replay_bytes,
            ),
            (
                "parser_nanoseconds_total",
                "Time in the parser: input, call and checking the answer.",
                |p| p.nanos,
            ),
        ];
        for (name, help, value) in per_parser {
            let name = format!("logmon_agent_{name}");
            out.family(&name, Kind::Counter, help);
            for p in &parsers {
                let labels = [("source", p.source.as_str()), ("parser", p.parser.as_str())];
                out.sample(&name, &labels, value(p));
            }
        }
    }
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // A handful of scrapers at most: bound the connections anyway.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/health" => {
            let (status, body) = metrics.health();
            (status, "application/json", body)
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// Binds `addr` for [`serve`]; returns the listener and its actual address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_says_why_checkpoints_fail_until_they_work_again() {
        let m = Metrics::default();
        let (status, body) = m.health();
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("{\"status\":\"ok\","), "{body}");
        m.set_checkpoint_failure(Some(
            "checkpoint file /c/\"x\": Read-only file system".into(),
        ));
        let (status, body) = m.health();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "checkpoints_failing");
        assert_eq!(
            v["reason"],
            "checkpoint file /c/\"x\": Read-only file system"
        );
        assert!(m.render().contains("logmon_agent_checkpoints_failing 1\n"));
        m.set_checkpoint_failure(None);
        assert_eq!(m.health().0, StatusCode::OK);
        assert!(m.render().contains("logmon_agent_checkpoints_failing 0\n"));
    }

    #[test]
    fn renders_counters_and_files() {
        let m = Metrics::default();
        Metrics::add(&m.lines_read, 3);
        m.set_files(vec![FileState {
            source: "s".into(),
            path: "/a \"b\".log".into(),
            size: 100,
            read: 80,
            acked: 50,
        }]);
        let text = m.render();
        assert!(text.contains("logmon_agent_lines_read_total 3\n"), "{text}");
        assert!(
            text.contains(
                "logmon_agent_file_lag_bytes{source=\"s\",path=\"/a \\\"b\\\".log\"} 50\n"
            )
        );
        assert!(text.contains(
            "logmon_agent_file_unacked_read_bytes{source=\"s\",path=\"/a \\\"b\\\".log\"} 30\n"
        ));
    }
}
