//! The agent against an in-process fake collector: real files, real HTTP on
//! 127.0.0.1, real checkpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use logmon_agent::Agent;
use logmon_agent::config::{AgentConfig, FormatChoice, SourceConfig};
use logmon_agent::metrics::Metrics;
use logmon_agent::tail::StartAt;
use logmon_protocol::wire::{self, Batch, Limits};

const HEADER: &str =
    "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n";

/// Line `i` of a test log: its `bytes` field is `i`, to check order; the
/// user is the file's name, so that files have different fingerprints.
fn csv_line(path: &Path, i: u64) -> String {
    let user = path.file_name().unwrap().to_string_lossy();
    format!(
        "\"10.0.0.{}\",\"-\",\"{user}\",{},\"GET /api/user/{i} HTTP/1.0\",200,{i}\n",
        i % 250,
        1_549_573_860 + i / 10
    )
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn append_lines(path: &Path, range: std::ops::Range<u64>) {
    let text: String = range.map(|i| csv_line(path, i)).collect();
    append(path, &text);
}

/// How the fake collector answers for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Unavailable,
    CloseConnection,
    Unauthorized,
    /// 413 for batches of more than this many events.
    LimitEvents(usize),
    /// Says it pipelines and keeps the collector's per-stream high-water
    /// mark with `Logmon-After`; holds requests without that header 25 ms,
    /// so the pipelined batch behind one always overtakes it.
    Pipelining,
}

#[derive(Debug)]
struct CollectorState {
    mode: Mode,
    delay: Duration,
    /// Every batch answered 200, in arrival order, duplicates included.
    accepted: Vec<Batch>,
    requests: u64,
    tokens: HashSet<String>,
    /// Pipelining: stored end per stream, and the batches stored in the
    /// order they were stored (what the real collector's bus would hold).
    hwm: HashMap<u64, u64>,
    stored: Vec<(u64, u64, u64)>,
    early: u64,
}

/// A collector on 127.0.0.1:0 that decodes batches with `wire::decode`.
struct FakeCollector {
    url: String,
    state: Arc<Mutex<CollectorState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCollector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(CollectorState {
            mode: Mode::Accept,
            delay: Duration::ZERO,
            accepted: Vec::new(),
            requests: 0,
            tokens: HashSet::new(),
            hwm: HashMap::new(),
            stored: Vec::new(),
            early: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { answer(req, state).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state, task }
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    fn accepted(&self) -> Vec<Batch> {
        self.state.lock().unwrap().accepted.clone()
    }

    fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Events accepted, after deduplicating batches by (stream, end).
    fn unique_events(&self) -> usize {
        let mut seen = HashSet::new();
        self.accepted()
            .into_iter()
            .filter(|b| seen.insert((b.stream.fingerprint, b.end)))
            .map(|b| b.events.len())
            .sum()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<CollectorState>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (mode, delay) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        if let Some(t) = req.headers().get("authorization") {
            s.tokens.insert(t.to_str().unwrap().to_owned());
        }
        (s.mode, s.delay)
    };
    let respond = |status: StatusCode, body: &str| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
        *r.status_mut() = status;
        r
    };
    assert_eq!(req.uri().path(), "/v1/batches");
    let after: Option<u64> = req
        .headers()
        .get("logmon-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    tokio::time::sleep(delay).await;
    if mode == Mode::Pipelining {
        return Ok(pipelined(&body, after, &state).await);
    }
    match mode {
        Mode::Unavailable => {
            let mut r = respond(StatusCode::SERVICE_UNAVAILABLE, "busy");
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            return Ok(r);
        }
        Mode::CloseConnection => {
            return Err(std::io::Error::other("hang up"));
        }
        Mode::Unauthorized => return Ok(respond(StatusCode::UNAUTHORIZED, "bad token")),
        Mode::Accept | Mode::LimitEvents(_) | Mode::Pipelining => {}
    }
    let batch = match wire::decode(&body, &Limits::default()) {
        Ok(batch) => batch,
        Err(e) => return Ok(respond(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    if let Mode::LimitEvents(max) = mode
        && batch.events.len() > max
    {
        return Ok(respond(StatusCode::PAYLOAD_TOO_LARGE, "too many events"));
    }
    state.lock().unwrap().accepted.push(batch);
    Ok(respond(StatusCode::OK, "ok"))
}

/// The collector's rules for `Logmon-After` (see the ingest module).
async fn pipelined(
    body: &[u8],
    after: Option<u64>,
    state: &Mutex<CollectorState>,
) -> Response<Full<Bytes>> {
    if after.is_none() {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let batch = wire::decode(body, &Limits::default()).unwrap();
    let fp = batch.stream.fingerprint;
    let mut s = state.lock().unwrap();
    let hwm = s.hwm.get(&fp).copied();
    let stored = hwm.unwrap_or(0);
    let (status, store) = match (hwm, after) {
        (Some(h), _) if batch.end <= h => (StatusCode::OK, false),
        (_, Some(a)) if hwm.is_none_or(|h| h < a) => {
            s.early += 1;
            (StatusCode::CONFLICT, false)
        }
        (Some(h), _) if batch.start < h => (StatusCode::CONFLICT, false),
        _ => (StatusCode::OK, true),
    };
    if store {
        s.hwm.insert(fp, batch.end);
        s.stored.push((fp, batch.start, batch.end));
        s.accepted.push(batch);
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert("logmon-pipelining", "1".parse().unwrap());
    let offset = if store { s.hwm[&fp] } else { stored };
    headers.insert("logmon-stored-offset", offset.into());
    r
}

/// A config for `dir/*.log` (CSV) shipping to `url`, fast timers.
fn config(dir: &Path, url: &str) -> AgentConfig {
    let mut config = AgentConfig {
        agent_id: "test-agent".into(),
        host: "test-host".into(),
        collector_urls: vec![url.into()],
        token: "secret".into(),
        sources: vec![SourceConfig::new(
            dir.join("*.log").display().to_string(),
            FormatChoice::Auto,
        )],
        checkpoint_dir: dir.join("state"),
        metrics_listen: "127.0.0.1:0".into(),
        batch_max_events: 500,
        linger_ms: 20,
        idle_poll_ms: 5,
        checkpoint_interval_ms: 50,
        retry_min_ms: 5,
        retry_max_ms: 50,
        request_timeout_ms: 2000,
        shutdown_deadline_ms: 2000,
        // Off by default here: the tests below count batches exactly.
        heartbeat_ms: 0,
        ..AgentConfig::default()
    };
    config.tail.start_at = StartAt::Beginning;
    config.tail.rescan_interval_ms = 20;
    config.tail.rotate_wait_ms = 0;
    config
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The byte ranges received per file (by fingerprint), deduplicated,
/// sorted; asserts they tile `[0, end)` without gaps or overlaps and that
/// the events come in file order (`bytes` = line number).
fn assert_tiles(batches: &[Batch], expected_lines: &BTreeMap<String, u64>) {
    let mut by_path: BTreeMap<String, BTreeMap<u64, &Batch>> = BTreeMap::new();
    for b in batches {
        let path = Path::new(&b.stream.path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        by_path.entry(path).or_default().insert(b.start, b);
    }
    assert_eq!(
        by_path.keys().collect::<Vec<_>>(),
        expected_lines.keys().collect::<Vec<_>>()
    );
    for (path, ranges) in by_path {
        let mut at = 0;
        let mut next_line = 0u64;
        for (start, b) in ranges {
            assert_eq!(start, at, "{path}: gap or overlap at {at}");
            at = b.end;
            for e in &b.events {
                assert_eq!(e.bytes, next_line, "{path}: events out of order");
                next_line += 1;
            }
            assert_eq!(b.malformed, 0);
        }
        assert_eq!(next_line, expected_lines[&path], "{path}: lines missing");
    }
}

fn checkpoint_offsets(dir: &Path) -> Vec<u64> {
    let state = dir.join("state");
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(state).unwrap() {
        let file = entry.unwrap().path().join("checkpoints.json");
        if let Ok(text) = std::fs::read_to_string(file) {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            for c in json["checkpoints"].as_array().unwrap() {
                offsets.push(c["offset"].as_u64().unwrap());
            }
        }
    }
    offsets.sort_unstable();
    offsets
}

fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn appended_lines_arrive_exactly_once_in_order() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, HEADER);
    append(&b, HEADER);
    let agent = Agent::start(config(dir.path(), &collector.url).validate().unwrap())
        .await
        .unwrap();
    let mut written_a = 0;
    let mut written_b = 0;
    for k in 0..40u64 {
        let n = 1 + (k * 37) % 400;
        append_lines(&a, written_a..written_a + n);
        written_a += n;
        append_lines(&b, written_b..written_b + 7);
        written_b += 7;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = (written_a + written_b) as usize;
    wait_until("every event", Duration::from_secs(20), || {
        collector.unique_events() >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let batches = collector.accepted();
    let keys: HashSet<_> = batches
        .iter()
        .map(|b| (b.stream.fingerprint, b.end))
        .collect();
    assert_eq!(keys.len(), batches.len(), "a batch arrived twice");
    let expected = BTreeMap::from([
        ("a.log".to_owned(), written_a),
        ("b.log".to_owned(), written_b),
    ]);
    assert_tiles(&batches, &expected);
    assert!(
        batches
            .iter()
            .all(|b| b.agent_id == "test-agent" && b.host == "test-host")
    );
    assert!(
        batches
            .iter()
            .all(|b| b.format == logmon_protocol::Format::Csv)
    );
    assert_eq!(
        collector.state.lock().unwrap().tokens,
        HashSet::from(["Bearer secret".to_owned()])
    );

    // Checkpoints catch up with the acknowledged ends within about a second.
    let sizes = {
        let mut s = vec![file_len(&a), file_len(&b)];
        s.sort_unstable();
        s
    };
    wait_until("checkpoints", Duration::from_secs(5), || {
        checkpoint_offsets(dir.path()) == sizes
    })
    .await;
    let m = agent.metrics();
    assert_eq!(Metrics::get(&m.events_acked), total as u64);
    assert_eq!(Metrics::get(&m.lines_malformed), 0);
    assert_eq!(Metrics::get(&m.lines_skipped), 2, "the two headers");

    // /metrics and /health answer.
    let addr = agent.metrics_addr().unwrap();
    let text = http_get(addr, "/metrics").await;
    assert!(
        text.contains(&format!("logmon_agent_events_acked_total {total}")),
        "{text}"
    );
    assert!(text.contains("logmon_agent_file_lag_bytes{"), "{text}");
    assert!(
        http_get(addr, "/health")
            .await
            .contains("\"status\":\"ok\"")
    );
    agent.shutdown().await.unwrap();
}

/// Several batches of one file in flight against a collector that says it
/// pipelines: the ones that overtake the batch before them are refused as
/// early and sent again, so the collector stores the file in order, once,
/// and the checkpoint ends at the file's end.
#[tokio::test]
async fn pipelined_batches_are_stored_in_file_order_exactly_once() {
    let collector = FakeCollector::start().await;
    collector.set_mode(Mode::Pipelining);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    append_lines(&a, 0..6000);
    let mut config = config(dir.path(), &collector.url);
    config.batch_max_events = 100;
    config.pipeline_depth = 4;
    config.max_in_flight = 4;
    let agent = Agent::start(config.validate().unwrap()).await.unwrap();
    wait_until("every event", Duration::from_secs(30), || {
        collector.unique_events() >= 6000
    })
    .await;
    let size = file_len(&a);
    wait_until("the checkpoint", Duration::from_secs(5), || {
        checkpoint_offsets(dir.path()) == [size]
    })
    .await;
    let (stored, early) = {
        let s = collector.state.lock().unwrap();
        (s.stored.clone(), s.early)
    };
    // Stored in file order, each range once, contiguous from 0 to the end.
    let mut at = 0;
    for &(_, start, end) in &stored {
        assert_eq!(start, at, "stored out of order or twice: {stored:?}");
        at = end;
    }
    assert_eq!(at, size);
    assert_tiles(
        &collector.accepted(),
        &BTreeMap::from([("a.log".to_owned(), 6000)]),
    );
    let m = agent.metrics();
    assert!(early > 0, "batches overtook the one before them");
    assert_eq!(Metrics::get(&m.batches_early), early);
    assert_eq!(Metrics::get(&m.events_acked), 6000);
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn ships_an_nginx_format_and_counts_lines_that_do_not_match() {
    const NGINX: &str = r#"$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time urt="$upstream_response_time""#;
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    append(
        &dir.path().join("access.log"),
        concat!(
            r#"shop.example 192.0.2.10 - alice [07/Feb/2019:21:11:00 +0000] "GET /api/user?id=1 HTTP/1.1" 200 512 "-" "curl/8.5.0" rt=0.012 urt="0.010""#,
            "\n",
            r#"192.0.2.10 - - [07/Feb/2019:21:11:01 +0000] "GET / HTTP/1.1" 200 1 "-" "combined, not the format""#,
            "\n",
            r#"shop.example 192.0.2.11 - - [07/Feb/2019:21:11:02 +0000] "POST /cart HTTP/2.0" 503 0 "https://shop.example/" "Mozilla/5.0" rt=1.500 urt="0.500, 1.000""#,
            "\n",
        ),
    );
    let mut config = config(dir.path(), &collector.url);
    config.sources[0].format = format!("nginx:{NGINX}").parse().unwrap();
    let agent = Agent::start(config.validate().unwrap()).await.unwrap();
    wait_until("both events", Duration::from_secs(10), || {
        collector.unique_events() >= 2
    })
    .await;
    let batches = collector.accepted();
    let events: Vec<_> = batches.iter().flat_map(|b| b.events.clone()).collect();
    let event =
        |ts: i64, client: &str, user: &str, request: (&str, &str, &str)| logmon_protocol::Event {
            timestamp: ts * 1_000_000_000,
            client: client.into(),
            user: user.into(),
            method: request.0.into(),
            path: request.1.into(),
            protocol: request.2.into(),
            ..logmon_protocol::Event::empty()
        };
    assert_eq!(
        events,
        [
            logmon_protocol::Event {
                status: 200,
                bytes: 512,
                user_agent: Some("curl/8.5.0".into()),
                duration_us: Some(12_000),
                ..event(
                    1_549_573_860,
                    "192.0.2.10",
                    "alice",
                    ("GET", "/api/user?id=1", "HTTP/1.1")
                )
            },
            logmon_protocol::Event {
                status: 503,
                bytes: 0,
                referer: Some("https://shop.example/".into()),
                user_agent: Some("Mozilla/5.0".into()),
                duration_us: Some(1_500_000),
                ..event(
                    1_549_573_862,
                    "192.0.2.11",
                    "",
                    ("POST", "/cart", "HTTP/2.0")
                )
            },
        ]
    );
    assert_eq!(batches.iter().map(|b| b.malformed).sum::<u64>(), 1);
    assert!(
        batches
            .iter()
            .all(|b| b.format == logmon_protocol::Format::Combined)
    );
    assert_eq!(Metrics::get(&agent.metrics().lines_malformed), 1);
    agent.shutdown().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn holds_its_place_while_the_collector_is_away_then_catches_up() {
    let collector = FakeCollector::start().await;
    collector.set_mode(Mode::Unavailable);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    let mut cfg = config(dir.path(), &collector.url);
    cfg.batch_max_events = 100;
    cfg.max_buffered_batches = 4;
    cfg.read_budget_bytes = 16 * 1024;
    let settings = cfg.validate().unwrap();
    let agent = Agent::start(settings).await.unwrap();
    let total = 20_000u64;
    append_lines(&a, 0..total);
    let m = agent.metrics().clone();
    wait_until("reading to pause", Duration::from_secs(10), || {
        Metrics::get(&m.reading_paused) == 1
    })
    .await;
    for mode in [Mode::Unavailable, Mode::CloseConnection, Mode::Unauthorized] {
        collector.set_mode(mode);
        let before = collector.requests();
        wait_until("retries", Duration::from_secs(10), || {
            collector.requests() >= before + 5
        })
        .await;
    }
    // Nothing was accepted, and the agent did not read far ahead.
    assert!(collector.accepted().is_empty());
    let read = Metrics::get(&m.lines_read);
    assert!(
        read < total / 4,
        "read {read} lines while the collector was away"
    );
    assert!(Metrics::get(&m.batches_buffered_max) <= 4 + 16 * 1024 / (100 * 60));
    let bound = 4 * 100 * 80 + 16 * 1024;
    for f in m.files() {
        assert!(f.read - f.acked <= bound, "{f:?} read too far ahead");
    }
    // The fake counts a request when it arrives; the agent counts the failed
    // attempt after handling the answer, so wait for the counters to catch up.
    wait_until("failed attempts counted", Duration::from_secs(10), || {
        Metrics::get(&m.batches_retried) >= 15 && Metrics::get(&m.unauthorized) >= 5
    })
    .await;

    collector.set_mode(Mode::Accept);
    wait_until("every event", Duration::from_secs(30), || {
        collector.unique_events() >= total as usize
    })
    .await;
    let batches = collector.accepted();
    let keys: HashSet<_> = batches
        .iter()
        .map(|b| (b.stream.fingerprint, b.end))
        .collect();
    assert_eq!(keys.len(), batches.len(), "a batch was stored twice");
    assert_tiles(&batches, &BTreeMap::from([("a.log".to_owned(), total)]));
    agent.shutdown().await.unwrap();
    assert_eq!(checkpoint_offsets(dir.path()), vec![file_len(&a)]);
}

#[tokio::test]
async fn a_restart_resends_at_most_the_unacknowledged_tail() {
    let collector = FakeCollector::start().await;
    collector.set_delay(Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    let mut cfg = config(dir.path(), &collector.url);
    cfg.batch_max_events = 50;
    cfg.checkpoint_interval_ms = 200;
    let total = 30_000u64;
    append_lines(&a, 0..total / 2);

    let agent = Agent::start(cfg.clone().validate().unwrap()).await.unwrap();
    wait_until("some events", Duration::from_secs(10), || {
        collector.unique_events() > 2000
    })
    .await;
    append_lines(&a, total / 2..total);
    // A crash: no flush, no final checkpoint.
    agent.kill().await;
    let first_run = collector.accepted().len();
    let saved = checkpoint_offsets(dir.path());
    assert_eq!(saved.len(), 1);
    let acked_before: u64 = collector.accepted().iter().map(|b| b.end).max().unwrap();
    assert!(
        saved[0] <= acked_before,
        "checkpoint past an acknowledged byte"
    );

    let agent = Agent::start(cfg.validate().unwrap()).await.unwrap();
    wait_until("every event", Duration::from_secs(30), || {
        collector.unique_events() >= total as usize
    })
    .await;
    agent.shutdown().await.unwrap();
    let batches = collector.accepted();
    // The second run started at the checkpoint, and resent only bytes the
    // first run had sent after it.
    let second = &batches[first_run..];
    assert!(second.iter().all(|b| b.start >= saved[0]));
    let resent: u64 = second
        .iter()
        .filter(|b| b.start < acked_before)
        .map(|b| b.end.min(acked_before) - b.start)
        .sum();
    assert!(resent <= acked_before - saved[0]);
    // After deduplicating by range, the file arrived whole and in order.
    let mut unique: BTreeMap<u64, Batch> = BTreeMap::new();
    let mut covered = 0;
    for b in batches {
        if b.end > covered {
            assert!(b.start <= covered, "gap before {}", b.start);
            covered = b.end;
            unique.insert(b.start, b);
        }
    }
    let mut next = 0;
    let mut seen = 0u64;
    for b in unique.values() {
        for e in &b.events {
            if e.bytes >= next {
                assert_eq!(e.bytes, next);
                next += 1;
            }
            seen += 1;
        }
    }
    assert_eq!(next, total);
    assert!(seen >= total);
    assert_eq!(checkpoint_offsets(dir.path()), vec![file_len(&a)]);
}

#[tokio::test]
async fn graceful_shutdown_flushes_in_flight_batches_and_saves_checkpoints() {
    let collector = FakeCollector::start().await;
    collector.set_delay(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, HEADER);
    append(&b, HEADER);
    let mut cfg = config(dir.path(), &collector.url);
    cfg.linger_ms = 60_000; // only size and shutdown close batches
    cfg.checkpoint_interval_ms = 60_000; // only shutdown saves
    cfg.batch_max_events = 200;
    let agent = Agent::start(cfg.validate().unwrap()).await.unwrap();
    append_lines(&a, 0..1050);
    append_lines(&b, 0..30);
    let m = agent.metrics().clone();
    wait_until("lines read", Duration::from_secs(10), || {
        Metrics::get(&m.lines_read) == 1050 + 30 + 2
    })
    .await;
    assert!(collector.unique_events() < 1080, "still in flight or open");
    agent.shutdown().await.unwrap();
    assert_eq!(collector.unique_events(), 1080);
    let mut sizes = vec![file_len(&a), file_len(&b)];
    sizes.sort_unstable();
    assert_eq!(checkpoint_offsets(dir.path()), sizes);
}

#[tokio::test]
async fn shutdown_gives_up_at_the_deadline_and_keeps_unacknowledged_lines() {
    let collector = FakeCollector::start().await;
    collector.set_mode(Mode::Unavailable);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    append_lines(&a, 0..100);
    let mut cfg = config(dir.path(), &collector.url);
    cfg.shutdown_deadline_ms = 300;
    let agent = Agent::start(cfg.validate().unwrap()).await.unwrap();
    let m = agent.metrics().clone();
    wait_until("retries", Duration::from_secs(5), || {
        Metrics::get(&m.batches_retried) > 3
    })
    .await;
    let started = Instant::now();
    agent.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // The header was never acknowledged either: the whole file is pending.
    assert_eq!(checkpoint_offsets(dir.path()), vec![0]);
}

/// A file read to its end and acknowledged gets heartbeats (empty, caught
/// up, at its end); once it is rotated away and finished, one finish marker,
/// and nothing after it.
#[tokio::test]
async fn quiet_files_send_heartbeats_and_closed_files_a_finish_marker() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    append_lines(&a, 0..100);
    let mut cfg = config(dir.path(), &collector.url);
    cfg.heartbeat_ms = 50;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let agent = Agent::start(cfg.validate().unwrap()).await.unwrap();
    let markers = |finished: bool| -> Vec<Batch> {
        collector
            .accepted()
            .into_iter()
            .filter(|b| b.events.is_empty() && b.finished == finished)
            .collect()
    };
    wait_until("two heartbeats", Duration::from_secs(10), || {
        markers(false).len() >= 2
    })
    .await;
    let len = file_len(&a);
    let data: Vec<Batch> = collector
        .accepted()
        .into_iter()
        .filter(|b| !b.events.is_empty())
        .collect();
    assert_eq!(data.iter().map(|b| b.events.len()).sum::<usize>(), 100);
    assert!(data.iter().all(|b| !b.caught_up && !b.finished));
    let fingerprint = data[0].stream.fingerprint;
    let heartbeats = markers(false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for h in &heartbeats {
        assert_eq!((h.start, h.end), (len, len), "at the acknowledged end");
        assert!(h.caught_up);
        assert_eq!(h.stream.fingerprint, fingerprint);
        assert!(before <= h.sent_at && h.sent_at <= now);
    }
    assert!(
        heartbeats.windows(2).all(|w| w[0].sent_at < w[1].sent_at),
        "fresh stamps"
    );

    // Rotated away (no longer matching the glob) and finished: closed.
    std::fs::rename(&a, dir.path().join("a.log.1")).unwrap();
    wait_until("the finish marker", Duration::from_secs(10), || {
        !markers(true).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let finished = markers(true);
    assert_eq!(finished.len(), 1);
    let f = &finished[0];
    assert_eq!(
        (f.start, f.end, f.stream.fingerprint),
        (len, len, fingerprint)
    );
    assert!(f.caught_up);
    let all = collector.accepted();
    let at = all.iter().position(|b| b.finished).unwrap();
    assert!(
        all[at + 1..]
            .iter()
            .all(|b| b.stream.fingerprint != fingerprint),
        "nothing of the file after its finish marker"
    );
    assert_eq!(
        Metrics::get(&agent.metrics().heartbeats),
        markers(false).len() as u64,
        "every heartbeat sent arrived"
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn splits_batches_the_collector_finds_too_large() {
    let collector = FakeCollector::start().await;
    collector.set_mode(Mode::LimitEvents(60));
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, HEADER);
    append_lines(&a, 0..2000);
    let agent = Agent::start(config(dir.path(), &collector.url).validate().unwrap())
        .await
        .unwrap();
    wait_until("every event", Duration::from_secs(20), || {
        collector.unique_events() >= 2000
    })
    .await;
    let m = agent.metrics().clone();
    agent.shutdown().await.unwrap();
    assert!(Metrics::get(&m.batches_split) > 0);
    let batches = collector.accepted();
    assert!(batches.iter().all(|b| b.events.len() <= 60));
    assert_tiles(&batches, &BTreeMap::from([("a.log".to_owned(), 2000)]));
    assert_eq!(checkpoint_offsets(dir.path()), vec![file_len(&a)]);
}

/// Throughput: 1,000,000 CSV lines through the agent to an acknowledging
/// sink, next to reading the same file's lines. Run with
/// `cargo test -p logmon-agent --release --test ship -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_agent_throughput() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let lines = 1_000_000u64;
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        out.write_all(HEADER.as_bytes()).unwrap();
        for i in 0..lines {
            writeln!(
                out,
                "\"10.0.0.{}\",\"-\",\"apache\",{},\"GET /api/user HTTP/1.0\",200,1234",
                i % 250,
                1_549_573_860 + i / 100
            )
            .unwrap();
        }
    }
    let raw = file_len(&path);

    // Baseline: read the lines.
    let t = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut n = 0u64;
    for line in reader.lines() {
        std::hint::black_box(line.unwrap());
        n += 1;
    }
    let read_secs = t.elapsed().as_secs_f64();
    assert_eq!(n, lines + 1);

    // The tailer alone, then the tailer plus parsing, synchronously.
    let tail_only = |parse: bool| {
        let mut tc = logmon_agent::tail::TailerConfig::new(vec![path.display().to_string()]);
        tc.start_at = StartAt::Beginning;
        let mut tailer =
            logmon_agent::tail::Tailer::new(tc, logmon_agent::tail::Checkpoints::new()).unwrap();
        let mut parser = logmon_protocol::LineParser::new(logmon_protocol::Format::Csv);
        let mut event = logmon_protocol::Event::empty();
        let t = Instant::now();
        let mut n = 0u64;
        loop {
            let polled = tailer.poll(1 << 20);
            if polled.is_empty() {
                break;
            }
            for batch in polled {
                for line in &batch.lines {
                    if parse {
                        let _ = std::hint::black_box(parser.parse_into(&line.text, &mut event));
                    }
                    n += 1;
                }
            }
        }
        assert_eq!(n, lines + 1);
        t.elapsed().as_secs_f64()
    };
    let tail_secs = tail_only(false);
    let parse_secs = tail_only(true);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (agent_secs, body_bytes, requests) = runtime.block_on(async {
        let collector = FakeCollector::start().await;
        let mut cfg = config(dir.path(), &collector.url);
        // `LOGMON_BENCH_BATCH_EVENTS` tries other batch sizes.
        cfg.batch_max_events = std::env::var("LOGMON_BENCH_BATCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        cfg.idle_poll_ms = 100;
        cfg.retry_min_ms = 100;
        cfg.retry_max_ms = 1000;
        let t = Instant::now();
        let agent = Agent::start(cfg.validate().unwrap()).await.unwrap();
        let m = agent.metrics().clone();
        wait_until("every event", Duration::from_secs(300), || {
            Metrics::get(&m.events_acked) >= lines
        })
        .await;
        let secs = t.elapsed().as_secs_f64();
        let bytes = Metrics::get(&m.bytes_shipped);
        let requests = Metrics::get(&m.requests_sent);
        agent.shutdown().await.unwrap();
        assert_eq!(collector.unique_events(), lines as usize);
        (secs, bytes, requests)
    });

    let per_sec = |s: f64| lines as f64 / s;
    println!();
    println!("| pipeline ({lines} CSV lines, {raw} bytes) | lines/s | vs read |");
    println!("|---|---:|---:|");
    println!(
        "| BufRead::lines (baseline) | {:.0} | 1.00 |",
        per_sec(read_secs)
    );
    println!(
        "| Tailer::poll only | {:.0} | {:.3} |",
        per_sec(tail_secs),
        read_secs / tail_secs
    );
    println!(
        "| Tailer::poll + LineParser::parse_into | {:.0} | {:.3} |",
        per_sec(parse_secs),
        read_secs / parse_secs
    );
    println!(
        "| agent: tail, parse, batch, encode, POST, ack | {:.0} | {:.3} |",
        per_sec(agent_secs),
        read_secs / agent_secs
    );
    println!();
    println!("| size | bytes |");
    println!("|---|---:|");
    println!("| raw bytes per line | {:.1} |", raw as f64 / lines as f64);
    println!(
        "| wire bytes per event (zstd 3) | {:.2} |",
        body_bytes as f64 / lines as f64
    );
    println!(
        "| compression ratio | {:.1}x |",
        raw as f64 / body_bytes as f64
    );
    println!("| requests | {requests} |");
}
