//! The ingest API over real TCP: authentication, size limits, undecodable
//! bodies, deduplication (also across restarts), overlap, backpressure,
//! group commit and graceful shutdown. Every refusal is checked to leave the
//! bus exactly as it was.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logmon_collector::bus::{LocalBus, LogConfig, SegmentLog, StreamKey};
use logmon_collector::http::ServerConfig;
use logmon_collector::ingest::{self, IngestConfig, IngestState, Rejection, STORED_OFFSET_HEADER};
use logmon_protocol::event::Event;
use logmon_protocol::parse::Format;
use logmon_protocol::wire::{self, Batch, Limits, StreamId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret-token";

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct Server {
    addr: SocketAddr,
    state: Arc<IngestState>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(dir: &std::path::Path, config: IngestConfig) -> Server {
        Self::start_with(dir, config, true).await
    }

    async fn start_with(dir: &std::path::Path, config: IngestConfig, fsync: bool) -> Server {
        let log_config = LogConfig {
            fsync,
            ..LogConfig::new(dir)
        };
        let (log, _) = SegmentLog::open(log_config).unwrap();
        let (bus, _) = LocalBus::with_log(log, config.limits).unwrap();
        let state = IngestState::open(config, Arc::new(bus)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ingest::run_alone(
            listener,
            Arc::clone(&state),
            ServerConfig::default(),
            shutdown.clone(),
        ));
        Server {
            addr,
            state,
            shutdown,
            task,
        }
    }

    /// Graceful shutdown, writer stopped, dedup index persisted, bus closed.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        let state = self.state;
        tokio::task::spawn_blocking(move || {
            state.close().unwrap();
            // Wait for the last references (finished connection tasks) so the
            // bus LOCK is released when this returns.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&state) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await
        .unwrap();
    }

    fn records(&self) -> Vec<Vec<u8>> {
        let bus = self.state.bus();
        bus.read(bus.first_offset(), usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn config() -> IngestConfig {
    IngestConfig {
        tokens: vec!["other-token".into(), TOKEN.into()],
        ..IngestConfig::default()
    }
}

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn stored_offset(&self) -> Option<u64> {
        self.headers
            .get(STORED_OFFSET_HEADER)
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
}

async fn send(client: &Client<HttpConnector, Body>, request: Request<Body>) -> Answer {
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post_request(server: &Server, auth: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(server.url("/v1/batches"))
        .header(header::CONTENT_TYPE, "application/zstd");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    request
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap()
}

async fn post(server: &Server, body: Vec<u8>) -> Answer {
    let auth = format!("Bearer {TOKEN}");
    send(&client(), post_request(server, Some(&auth), body)).await
}

async fn get(server: &Server, path: &str) -> Answer {
    let request = Request::get(server.url(path))
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap();
    send(&client(), request).await
}

fn event(i: u64) -> Event {
    Event {
        timestamp: 1_719_800_000_000_000_000 + i as i64 * 1_000_000,
        client: format!("10.0.{}.{}", i % 7, i % 200),
        user: String::new(),
        method: if i.is_multiple_of(8) { "POST" } else { "GET" }.into(),
        path: format!("/api/user/{}", i % 5000),
        protocol: "HTTP/1.1".into(),
        status: [200, 200, 200, 304, 404, 500][(i % 6) as usize],
        bytes: 200 + (i * 7919) % 60_000,
        referer: Some("https://www.example.com/".into()),
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0".into(),
        ),
        duration_us: Some(100 + (i * 104_729) % 900_000),
        labels: Vec::new(),
    }
}

fn batch(agent: &str, fingerprint: u64, start: u64, end: u64, events: u64) -> Batch {
    Batch {
        agent_id: agent.into(),
        host: "web-1".into(),
        stream: StreamId {
            fingerprint,
            path: "/var/log/nginx/access.log".into(),
        },
        start,
        end,
        format: Format::Combined,
        labels: vec![("env".into(), "test".into())],
        events: (start..start + events).map(event).collect(),
        malformed: 0,
        caught_up: false,
        finished: false,
        sent_at: 1_700_000_000_000_000_000,
    }
}

fn body(agent: &str, fingerprint: u64, start: u64, end: u64) -> Vec<u8> {
    wire::encode(
        &batch(agent, fingerprint, start, end, 3),
        wire::DEFAULT_LEVEL,
    )
    .unwrap()
}

/// A request body fed chunk by chunk from the test.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    (sender, ChannelBody(receiver))
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

#[tokio::test]
async fn refuses_missing_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let valid = body("a", 1, 0, 100);
    for auth in [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
        Some("Bearer ".to_owned()),
    ] {
        let answer = send(
            &client(),
            post_request(&server, auth.as_deref(), valid.clone()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(answer.json()["error"], "unauthorized");
    }
    assert_eq!(server.records().len(), 0);
    assert_eq!(server.state.metrics().rejected(Rejection::Unauthorized), 5);
    // The scheme is case-insensitive.
    let auth = format!("bearer {TOKEN}");
    let answer = send(&client(), post_request(&server, Some(&auth), valid)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    server.stop().await;
}

#[tokio::test]
async fn no_configured_tokens_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), IngestConfig::default()).await;
    let answer = post(&server, body("a", 1, 0, 100)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.records().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn refuses_undecodable_and_oversized_bodies_without_touching_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_compressed: 64 << 10,
        ..Limits::default()
    };
    let server = Server::start(dir.path(), IngestConfig { limits, ..config() }).await;
    let stored = body("a", 1, 0, 100);
    assert_eq!(post(&server, stored.clone()).await.status, StatusCode::OK);

    let valid = body("a", 1, 100, 200);
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() - 5);
    // A payload of a version this build does not read.
    let future = zstd(&[&[wire::FORMAT_VERSION + 1][..], &[0u8; 40][..]].concat());
    // Incompressible-looking bytes one over the body limit.
    let over: Vec<u8> = (0..(64u32 << 10) + 1)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "garbage",
            b"this is not zstd at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "corrupt",
        ),
        (
            "truncated zstd",
            truncated,
            StatusCode::BAD_REQUEST,
            "corrupt",
        ),
        ("empty body", Vec::new(), StatusCode::BAD_REQUEST, "empty"),
        ("empty frame", zstd(b""), StatusCode::BAD_REQUEST, "empty"),
        (
            "future version",
            future,
            StatusCode::BAD_REQUEST,
            "unsupported_version",
        ),
        (
            "payload garbage",
            zstd(&[wire::FORMAT_VERSION, 0xff, 0xff, 0xff]),
            StatusCode::BAD_REQUEST,
            "corrupt",
        ),
        (
            "inverted range",
            body("a", 1, 300, 200),
            StatusCode::BAD_REQUEST,
            "bad_range",
        ),
        (
            "empty range with events",
            body("a", 1, 200, 200),
            StatusCode::BAD_REQUEST,
            "bad_range",
        ),
        (
            "over the body limit",
            over,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (what, bad, status, code) in cases {
        let answer = post(&server, bad).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(answer.json()["error"], code, "{what}");
        let records = server.records();
        assert_eq!(records, vec![stored.clone()], "{what} changed the bus");
    }
    let m = server.state.metrics();
    assert_eq!(m.rejected(Rejection::Corrupt), 3);
    assert_eq!(m.rejected(Rejection::Empty), 2);
    assert_eq!(m.rejected(Rejection::UnsupportedVersion), 1);
    assert_eq!(m.rejected(Rejection::BadRange), 2);
    assert_eq!(m.rejected(Rejection::TooLarge), 1);
    server.stop().await;
}

/// A chunked body (no Content-Length) over the cap is cut off while read.
#[tokio::test]
async fn refuses_a_chunked_body_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_compressed: 1000,
        ..Limits::default()
    };
    let server = Server::start(dir.path(), IngestConfig { limits, ..config() }).await;
    let (sender, channel) = channel_body();
    let request = Request::post(server.url("/v1/batches"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(channel.boxed_unsync())
        .unwrap();
    let feed = tokio::spawn(async move {
        for _ in 0..100 {
            if sender.send(Bytes::from(vec![0x28u8; 100])).await.is_err() {
                break;
            }
        }
    });
    let answer = send(&client(), request).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.body
    );
    feed.await.unwrap();
    assert!(server.records().is_empty());
    server.stop().await;
}

/// 200 MB of zeros compress to a few KB; the decoder stops at the
/// decompressed limit (64 MiB) and answers 413.
#[tokio::test]
async fn refuses_a_zstd_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..200 {
        encoder.write_all(&chunk).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 64 << 10, "bomb is {} bytes", bomb.len());
    let answer = post(&server, bomb).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["error"], "too_large");
    assert!(server.records().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn stores_a_batch_once_with_its_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let valid = body("a", 7, 0, 1234);
    let answer = post(&server, valid.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["status"], "stored");
    assert_eq!(answer.json()["offset"], 0);
    assert_eq!(answer.stored_offset(), Some(1234));
    assert_eq!(server.records(), vec![valid.clone()]);

    let again = post(&server, valid.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(again.stored_offset(), Some(1234));
    assert_eq!(server.records(), vec![valid]);

    let m = server.state.metrics();
    assert_eq!((m.accepted(), m.duplicates(), m.events()), (1, 1, 3));
    server.stop().await;
}

/// Re-sent bytes grouped differently: batches inside what is stored are
/// duplicates; a batch straddling the stored end is refused with 409 and
/// the stored offset; resuming there is stored.
#[tokio::test]
async fn regrouped_resends_are_duplicates_and_overlaps_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let first = body("a", 1, 0, 100);
    let second = body("a", 1, 100, 200);
    assert_eq!(post(&server, first.clone()).await.status, StatusCode::OK);
    assert_eq!(post(&server, second.clone()).await.status, StatusCode::OK);

    for (start, end) in [(0, 200), (0, 150), (50, 100), (150, 200)] {
        let answer = post(&server, body("a", 1, start, end)).await;
        assert_eq!(answer.status, StatusCode::OK, "[{start}, {end})");
        assert_eq!(answer.json()["status"], "duplicate", "[{start}, {end})");
    }
    let overlap = post(&server, body("a", 1, 150, 300)).await;
    assert_eq!(overlap.status, StatusCode::CONFLICT, "{}", overlap.body);
    assert_eq!(overlap.stored_offset(), Some(200));
    assert_eq!(overlap.json()["error"], "overlap");
    assert_eq!(server.records(), vec![first.clone(), second.clone()]);

    // The agent acknowledges 200 and re-reads from there.
    let resumed = body("a", 1, 200, 300);
    assert_eq!(post(&server, resumed.clone()).await.status, StatusCode::OK);
    // Another agent, or another file, with the same offsets is its own stream.
    let other_agent = body("b", 1, 0, 100);
    let other_file = body("a", 2, 0, 100);
    assert_eq!(
        post(&server, other_agent.clone()).await.json()["status"],
        "stored"
    );
    assert_eq!(
        post(&server, other_file.clone()).await.json()["status"],
        "stored"
    );
    assert_eq!(
        server.records(),
        vec![first, second, resumed, other_agent, other_file]
    );
    assert_eq!(server.state.metrics().rejected(Rejection::Overlap), 1);
    server.stop().await;
}

#[tokio::test]
async fn gaps_are_stored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    assert_eq!(
        post(&server, body("a", 1, 0, 100)).await.status,
        StatusCode::OK
    );
    let answer = post(&server, body("a", 1, 150, 200)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["gap_bytes"], 50);
    assert_eq!(server.records().len(), 2);
    assert_eq!(server.state.metrics().gaps(), 1);
    let metrics = get(&server, "/metrics").await.body;
    assert!(
        metrics.contains("logmon_ingest_stream_gap_bytes_total 50\n"),
        "{metrics}"
    );
    server.stop().await;
}

/// Heartbeats (empty, caught-up batches at the stored end) are stored so the
/// engine sees them, without moving the high-water mark; one below the mark
/// is a stale duplicate.
#[tokio::test]
async fn heartbeats_at_the_stored_end_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let data = body("a", 1, 0, 100);
    assert_eq!(post(&server, data.clone()).await.status, StatusCode::OK);
    let marker = |at: u64, finished: bool| {
        let b = Batch {
            caught_up: true,
            finished,
            ..batch("a", 1, at, at, 0)
        };
        wire::encode(&b, wire::DEFAULT_LEVEL).unwrap()
    };
    let answer = post(&server, marker(100, false)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["status"], "stored");
    assert_eq!(answer.stored_offset(), Some(100));
    let stale = post(&server, marker(40, false)).await;
    assert_eq!(stale.json()["status"], "duplicate");
    let finished = post(&server, marker(100, true)).await;
    assert_eq!(finished.json()["status"], "stored");
    assert_eq!(
        server.records(),
        vec![data, marker(100, false), marker(100, true)]
    );
    // The data that follows is contiguous with the mark.
    let next = post(&server, body("a", 1, 100, 200)).await;
    assert_eq!(next.json()["gap_bytes"], 0);
    server.stop().await;
}

#[tokio::test]
async fn backpressure_answers_503_until_consumers_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        max_backlog_bytes: 10,
        retry_after_secs: 7,
        ..config()
    };
    let server = Server::start(dir.path(), config).await;
    let bus = server.state.bus().clone();
    bus.declare(&["influx"]).unwrap();
    assert_eq!(
        post(&server, body("a", 1, 0, 100)).await.status,
        StatusCode::OK
    );
    assert!(bus.backlog_bytes() > 10);

    let answer = post(&server, body("a", 1, 100, 200)).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.headers[header::RETRY_AFTER], "7");
    assert_eq!(answer.json()["error"], "backpressure");
    assert_eq!(server.records().len(), 1);

    bus.commit("influx", bus.next_offset()).unwrap();
    assert_eq!(bus.backlog_bytes(), 0);
    let answer = post(&server, body("a", 1, 100, 200)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(server.records().len(), 2);
    assert_eq!(server.state.metrics().rejected(Rejection::Backpressure), 1);
    server.stop().await;
}

/// 8 clients (half over HTTP/2) post 200 batches at once: every one is
/// acknowledged and stored once, in fewer appends (fsyncs) than batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), config()).await);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let client = if t.is_multiple_of(2) {
                client()
            } else {
                h2_client()
            };
            let auth = format!("Bearer {TOKEN}");
            for i in 0..25u64 {
                let b = wire::encode(&batch("a", t, i * 100, (i + 1) * 100, 50), 1).unwrap();
                let answer = send(&client, post_request(&server, Some(&auth), b)).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                assert_eq!(answer.json()["status"], "stored");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let m = server.state.metrics();
    assert_eq!(server.records().len(), 200);
    assert_eq!(
        (m.accepted(), m.bus_records(), m.events()),
        (200, 200, 200 * 50)
    );
    eprintln!("200 batches in {} appends", m.bus_appends());
    assert!(m.bus_appends() < 200, "{} appends", m.bus_appends());
    for t in 0..8 {
        let stream = StreamKey {
            agent_id: "a".into(),
            fingerprint: t,
        };
        assert_eq!(server.state.bus().high_water(&stream), Some(2500));
    }
    Arc::into_inner(server).unwrap().stop().await;
}

/// Two copies of one batch racing are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_copies_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), config()).await);
    let valid = body("a", 1, 0, 100);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (server, valid) = (Arc::clone(&server), valid.clone());
        tasks.push(tokio::spawn(async move { post(&server, valid).await }));
    }
    let mut stored = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        stored += usize::from(answer.json()["status"] == "stored");
    }
    assert_eq!(stored, 1);
    assert_eq!(server.records(), vec![valid]);
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test]
async fn dedup_survives_restart_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let first = body("a", 1, 0, 100);
    let second = body("a", 1, 100, 200);
    post(&server, first.clone()).await;
    post(&server, second.clone()).await;
    server.stop().await;

    // Restart (the table was persisted at close): both are duplicates.
    let server = Server::start(dir.path(), config()).await;
    assert_eq!(
        post(&server, second.clone()).await.json()["status"],
        "duplicate"
    );
    assert_eq!(
        post(&server, first.clone()).await.json()["status"],
        "duplicate"
    );
    assert_eq!(server.records().len(), 2);
    server.stop().await;

    // Without the persisted table (a crash before any gc) the bus scan alone
    // rebuilds it.
    std::fs::remove_file(dir.path().join(logmon_collector::bus::dedup::DEDUP_FILE)).unwrap();
    let server = Server::start(dir.path(), config()).await;
    assert_eq!(
        post(&server, second.clone()).await.json()["status"],
        "duplicate"
    );
    let overlap = post(&server, body("a", 1, 150, 250)).await;
    assert_eq!(overlap.status, StatusCode::CONFLICT);
    assert_eq!(overlap.stored_offset(), Some(200));
    server.stop().await;
}

/// After every record has been consumed and its segments deleted, the
/// persisted table still knows the streams.
#[tokio::test]
async fn dedup_survives_gc_of_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let open = |dir: &std::path::Path| {
        let log_config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::new(dir)
        };
        SegmentLog::open(log_config).unwrap().0
    };
    let (bus, _) = LocalBus::with_log(open(dir.path()), config().limits).unwrap();
    let state = IngestState::open(config(), Arc::new(bus)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingest::run_alone(
        listener,
        Arc::clone(&state),
        ServerConfig::default(),
        shutdown.clone(),
    ));
    let server = Server {
        addr,
        state,
        shutdown,
        task,
    };
    for i in 0..3 {
        let answer = post(&server, body("a", 1, i * 100, (i + 1) * 100)).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    // A fourth record so that the first three are in sealed segments.
    post(&server, body("b", 1, 0, 10)).await;
    let bus = server.state.bus();
    bus.declare(&["engine"]).unwrap();
    bus.commit("engine", 3).unwrap();
    assert_eq!(bus.gc().unwrap(), 3);
    assert_eq!(bus.first_offset(), 3);
    server.stop().await;

    let server = Server::start(dir.path(), config()).await;
    let answer = post(&server, body("a", 1, 0, 300)).await;
    assert_eq!(answer.json()["status"], "duplicate", "{}", answer.body);
    let answer = post(&server, body("a", 1, 200, 400)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.stored_offset(), Some(300));
    assert_eq!(server.records().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn health_metrics_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let health = get(&server, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), serde_json::json!({ "status": "ok" }));

    post(&server, body("a", 1, 0, 100)).await;
    let metrics = get(&server, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        "# TYPE logmon_ingest_batches_accepted_total counter",
        "logmon_ingest_batches_accepted_total 1",
        "logmon_ingest_events_accepted_total 3",
        "logmon_ingest_batches_rejected_total{reason=\"unauthorized\"} 0",
        "# TYPE logmon_ingest_bus_append_seconds histogram",
        "logmon_ingest_bus_append_seconds_count 1",
        "# TYPE logmon_ingest_bus_backlog_bytes gauge",
        "# TYPE logmon_ingest_active_connections gauge",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "missing {line}:\n{}",
            metrics.body
        );
    }

    assert_eq!(get(&server, "/nope").await.status, StatusCode::NOT_FOUND);
    let wrong = get(&server, "/v1/batches").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::ALLOW], "POST");

    server.state.begin_shutdown();
    assert_eq!(
        get(&server, "/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.stop().await;
}

/// A request in flight when shutdown starts is finished and answered; new
/// connections are refused afterwards.
#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config()).await;
    let valid = body("a", 1, 0, 100);
    let (sender, channel) = channel_body();
    let request = Request::post(server.url("/v1/batches"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_LENGTH, valid.len())
        .body(channel.boxed_unsync())
        .unwrap();
    let client = client();
    let in_flight = tokio::spawn(async move { send(&client, request).await });
    let half = valid.len() / 2;
    sender
        .send(Bytes::copy_from_slice(&valid[..half]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    server.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    sender
        .send(Bytes::copy_from_slice(&valid[half..]))
        .await
        .unwrap();
    drop(sender);
    let answer = in_flight.await.unwrap();
    // The request had started before shutdown: it is finished and stored.
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(server.records(), vec![valid]);
    server.stop().await;
}

fn realistic_events(n: u64, seed: u64) -> Vec<Event> {
    (0..n)
        .map(|i| event(seed.wrapping_mul(1_000_003) + i))
        .collect()
}

/// Throughput of ingest to a durable bus against the bus append alone of the
/// same records, in the same run:
/// `cargo test -p logmon-collector --release --test ingest -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench_ingest_throughput() {
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 700;
    const EVENTS: u64 = 1000;
    const RUN: Duration = Duration::from_secs(5);

    // Pre-encode every body, in parallel: distinct streams so nothing is a
    // duplicate.
    let started = Instant::now();
    let bodies: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                s.spawn(move || {
                    (0..PER_CLIENT)
                        .map(|i| {
                            let mut b = batch("bench", t, i * 100_000, (i + 1) * 100_000, 0);
                            b.events = realistic_events(EVENTS, t * PER_CLIENT + i);
                            wire::encode(&b, wire::DEFAULT_LEVEL).unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let body_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    let count = (CLIENTS * PER_CLIENT) as usize;
    eprintln!(
        "encoded {count} bodies of {EVENTS} events ({} B/body avg) in {:.1?}",
        body_bytes / count,
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), config()).await);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, bodies) in bodies.iter().cloned().enumerate() {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let client = if t.is_multiple_of(2) {
                client()
            } else {
                h2_client()
            };
            let auth = format!("Bearer {TOKEN}");
            let mut sent = 0u64;
            for b in bodies {
                if started.elapsed() > RUN {
                    break;
                }
                let answer = send(&client, post_request(&server, Some(&auth), b)).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                sent += 1;
            }
            sent
        }));
    }
    let mut posted = 0;
    for task in tasks {
        posted += task.await.unwrap();
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let m = server.state.metrics();
    assert_eq!(m.accepted(), posted);
    let ingest_rate = (posted * EVENTS) as f64 / ingest_secs;
    let appends = m.bus_appends();
    Arc::into_inner(server).unwrap().stop().await;

    // The same records through the bus alone: one append (fsync) per record,
    // and groups of 8 (one per client).
    let records: Vec<&[u8]> = bodies
        .iter()
        .flatten()
        .take(posted as usize)
        .map(Vec::as_slice)
        .collect();
    let mut bus_rate = Vec::new();
    for group in [1usize, CLIENTS as usize] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(LogConfig::new(dir.path())).unwrap();
        let started = Instant::now();
        for chunk in records.chunks(group) {
            log.append(chunk).unwrap();
        }
        bus_rate.push((records.len() as u64 * EVENTS) as f64 / started.elapsed().as_secs_f64());
    }
    // Decoding alone, one thread: what every request pays before the append.
    let started = Instant::now();
    for r in records.iter().take(500) {
        wire::decode(r, &Limits::default()).unwrap();
    }
    let decode_rate = (500 * EVENTS) as f64 / started.elapsed().as_secs_f64();

    eprintln!();
    eprintln!("| path ({posted} batches x {EVENTS} events) | events/s | vs bus append x1 |");
    eprintln!("|---|---:|---:|");
    let row = |name: &str, rate: f64| {
        eprintln!("| {name} | {:.0} | {:.2} |", rate, rate / bus_rate[0]);
    };
    row(
        &format!("ingest HTTP, {CLIENTS} clients, fsync ({appends} appends)"),
        ingest_rate,
    );
    row("bus append, 1 record/fsync", bus_rate[0]);
    row(&format!("bus append, {CLIENTS} records/fsync"), bus_rate[1]);
    row("wire::decode, 1 thread", decode_rate);
    eprintln!("target: 1,000,000 events/s");
}
