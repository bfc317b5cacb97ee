//! The InfluxDB writer against a real `influxd` 1.x: schema setup, every
//! request stored despite colliding timestamps, exact rollups, retries
//! through an outage, partial writes reported and not retried.
//!
//! Timestamps are recent: InfluxDB drops points older than the retention
//! policy's duration.

use logmon_collector::influx::{
    InfluxApi, InfluxClient, InfluxConfig, Lines, RequestEncoder, Tier, TrafficRollup, V1Config,
    WriteError, Writer, push_alert,
};
use logmon_collector::rules::AlertState;
use logmon_protocol::Event;
use logmon_tests::influx::InfluxServer;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NS: i64 = 1_000_000_000;
const HOT: &str = r#""logmon"."logmon_hot""#;
const ROLLUPS: &str = r#""logmon"."logmon_rollups""#;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config(server: &InfluxServer) -> InfluxConfig {
    InfluxConfig {
        url: server.url(),
        initial_backoff_ms: 50,
        max_backoff_ms: 500,
        ..InfluxConfig::default()
    }
}

/// `n` requests over `seconds` seconds from `start`, whole-second
/// timestamps (like the exercise's CSV), few sections, methods and statuses:
/// many share second and tag set. Deterministic.
fn events(n: usize, start: i64, seconds: i64) -> Vec<Event> {
    let sections = ["/api", "/report", "/pages"];
    let statuses = [200u16, 200, 200, 404, 503, 302];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let section = sections[(x % 3) as usize];
            Event {
                timestamp: (start + (i as i64 * seconds) / n as i64) * NS,
                client: format!("10.0.0.{}", x % 7),
                user: if x.is_multiple_of(5) {
                    "ann".into()
                } else {
                    String::new()
                },
                method: if x.is_multiple_of(4) {
                    "POST".into()
                } else {
                    "GET".into()
                },
                path: format!("{section}/item/{}", x % 100),
                protocol: "HTTP/1.1".into(),
                status: statuses[(x >> 8) as usize % statuses.len()],
                bytes: x % 10_000,
                referer: x
                    .is_multiple_of(3)
                    .then(|| "http://example.com/\"a b\"".into()),
                user_agent: x
                    .is_multiple_of(2)
                    .then(|| "curl/8.0, like \\ Gecko".into()),
                duration_us: x.is_multiple_of(6).then_some(x % 1_000_000),
                labels: Vec::new(),
            }
        })
        .collect()
}

fn encode(host: &str, events: &[Event]) -> Lines {
    let mut enc = RequestEncoder::default();
    let mut lines = Lines::new();
    for e in events {
        enc.push(&mut lines, host, e);
    }
    lines
}

fn retention_policies(server: &InfluxServer) -> Vec<Value> {
    server
        .rows(r#"SHOW RETENTION POLICIES ON "logmon""#)
        .into_iter()
        .map(Value::Array)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ensure_schema_creates_database_and_retention_policies() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(config(&server)).unwrap();
    let report = client.ensure_schema().await.unwrap();
    assert_eq!(report.created, ["logmon_hot", "logmon_rollups"]);
    assert!(report.altered.is_empty());
    let dbs = server.rows("SHOW DATABASES");
    assert!(dbs.contains(&vec![json!("logmon")]), "{dbs:?}");
    // name, duration, shardGroupDuration, replicaN, default
    let rps = retention_policies(&server);
    assert!(
        rps.contains(&json!(["logmon_hot", "720h0m0s", "24h0m0s", 1, true])),
        "{rps:?}"
    );
    assert!(
        rps.contains(&json!([
            "logmon_rollups",
            "9600h0m0s",
            "168h0m0s",
            1,
            false
        ])),
        "{rps:?}"
    );

    // Idempotent.
    let again = client.ensure_schema().await.unwrap();
    assert!(
        again.created.is_empty() && again.altered.is_empty(),
        "{again:?}"
    );
    assert_eq!(retention_policies(&server), rps);

    // A policy changed behind logmon's back is brought back.
    client
        .query(
            None,
            r#"ALTER RETENTION POLICY "logmon_hot" ON "logmon" DURATION 7d"#,
        )
        .await
        .unwrap();
    client
        .query(
            None,
            r#"ALTER RETENTION POLICY "autogen" ON "logmon" DEFAULT"#,
        )
        .await
        .unwrap();
    let fixed = client.ensure_schema().await.unwrap();
    assert_eq!(fixed.altered, ["logmon_hot"]);
    let rps = retention_policies(&server);
    assert!(
        rps.contains(&json!(["logmon_hot", "720h0m0s", "24h0m0s", 1, true])),
        "{rps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colliding_requests_are_all_stored() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(config(&server)).unwrap();
    client.ensure_schema().await.unwrap();
    let events = events(12_345, now_secs() - 600, 20);
    // The collisions are real: far fewer distinct (tag set, second) than events.
    let distinct: HashSet<_> = events
        .iter()
        .map(|e| {
            (
                e.section().to_owned(),
                e.method.clone(),
                e.status,
                e.timestamp,
            )
        })
        .collect();
    assert!(distinct.len() < 1_000, "{}", distinct.len());

    let lines = encode("web-1", &events);
    let writer = Writer::new(client.clone());
    let report = writer.write(Tier::Hot, lines.into_bytes()).await.unwrap();
    assert_eq!(
        (report.lines, report.batches, report.attempts),
        (12_345, 3, 3)
    );
    assert!(report.partial.is_empty(), "{:?}", report.partial);

    let q = |what: &str| format!(r#"SELECT {what} FROM {HOT}."http_requests""#);
    assert_eq!(server.scalar(&q(r#"count("bytes")"#)), 12_345);
    assert_eq!(server.scalar(&q(r#"count("path")"#)), 12_345);
    let bytes: u64 = events.iter().map(|e| e.bytes).sum();
    assert_eq!(server.scalar(&q(r#"sum("bytes")"#)), bytes as i64);
    let with_duration = events.iter().filter(|e| e.duration_us.is_some()).count();
    assert_eq!(
        server.scalar(&q(r#"count("duration_us")"#)),
        with_duration as i64
    );
    // Tags and escaped strings come back as written.
    let count = |filter: &str| {
        server.scalar(&format!(
            r#"SELECT count("bytes") FROM {HOT}."http_requests" WHERE {filter}"#
        ))
    };
    let api_503 = events
        .iter()
        .filter(|e| e.section() == "/api" && e.status == 503)
        .count();
    assert_eq!(
        count(r#""section" = '/api' AND "status" = '503'"#),
        api_503 as i64
    );
    assert_eq!(count(r#""host" = 'web-1'"#), 12_345);
    let agents = server.rows(&format!(
        r#"SELECT "user_agent", "referer" FROM {HOT}."http_requests" WHERE "user_agent" <> '' AND "referer" <> '' LIMIT 1"#
    ));
    assert_eq!(
        agents[0][1..],
        [
            json!("curl/8.0, like \\ Gecko"),
            json!("http://example.com/\"a b\"")
        ]
    );

    // Writing the same events again, from the same starting point, rewrites
    // the same points: nothing is duplicated.
    let again = encode("web-1", &events);
    writer.write(Tier::Hot, again.into_bytes()).await.unwrap();
    assert_eq!(server.scalar(&q(r#"count("bytes")"#)), 12_345);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollups_are_exact_per_second_and_section() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(config(&server)).unwrap();
    client.ensure_schema().await.unwrap();
    let writer = Writer::new(client);
    let mut events = events(12_345, now_secs() - 600, 30);
    // A little disorder, as several agents would cause.
    for pair in events.chunks_mut(7) {
        pair.reverse();
    }
    // Consumed as the bus would hand them over: chunks, flushed after each,
    // so seconds straddle chunks and are rewritten with full totals.
    let mut rollup = TrafficRollup::default();
    let mut points = 0;
    for chunk in events.chunks(1_000) {
        let mut lines = Lines::new();
        for e in chunk {
            rollup.add("web-1", e);
        }
        points += rollup.flush(&mut lines);
        writer
            .write(Tier::Rollups, lines.into_bytes())
            .await
            .unwrap();
    }
    assert_eq!(rollup.too_late(), 0);
    assert!(points > 90, "{points}");

    let mut want: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
    for e in &events {
        let w = want
            .entry((e.second(), e.section().to_owned()))
            .or_default();
        w.0 += 1;
        w.1 += e.bytes as i64;
        w.2 += i64::from(e.status / 100 == 5);
    }
    let rows = server.rows(&format!(
        r#"SELECT "hits", "bytes", "status_5xx", "section" FROM {ROLLUPS}."http_traffic""#
    ));
    assert_eq!(rows.len(), want.len(), "one point per (second, section)");
    let mut got = BTreeMap::new();
    for row in &rows {
        let t = row[0].as_str().unwrap();
        got.insert(
            (t.to_owned(), row[4].as_str().unwrap().to_owned()),
            (
                row[1].as_i64().unwrap(),
                row[2].as_i64().unwrap(),
                row[3].as_i64().unwrap(),
            ),
        );
    }
    // Compare the multisets of per-(second, section) totals, and the sums.
    let mut got_totals: Vec<_> = got.values().copied().collect();
    let mut want_totals: Vec<_> = want.values().copied().collect();
    got_totals.sort();
    want_totals.sort();
    assert_eq!(got_totals, want_totals);
    let sum = |f: &str| {
        server.scalar(&format!(
            r#"SELECT sum("{f}") FROM {ROLLUPS}."http_traffic""#
        ))
    };
    assert_eq!(sum("hits"), 12_345);
    assert_eq!(
        sum("bytes"),
        events.iter().map(|e| e.bytes as i64).sum::<i64>()
    );
    let by_class: i64 = [
        "status_1xx",
        "status_2xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
    ]
    .iter()
    .map(|f| sum(f))
    .sum();
    assert_eq!(by_class, 12_345);
    let api = server.scalar(&format!(
        r#"SELECT sum("hits") FROM {ROLLUPS}."http_traffic" WHERE "section" = '/api'"#
    ));
    assert_eq!(
        api,
        events.iter().filter(|e| e.section() == "/api").count() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_are_retried_through_an_outage() {
    let mut server = InfluxServer::start();
    let client = InfluxClient::new(InfluxConfig {
        max_retries: 200,
        ..config(&server)
    })
    .unwrap();
    client.ensure_schema().await.unwrap();
    let events = events(12_345, now_secs() - 600, 20);
    let lines = encode("web-1", &events);

    server.stop();
    let writer = Writer::new(client.clone());
    let started = Instant::now();
    let write = tokio::spawn(async move { writer.write(Tier::Hot, lines.into_bytes()).await });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!write.is_finished(), "the write waits for InfluxDB");
    server.restart();
    let report = write.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(report.attempts > 3, "{report:?}");
    assert!(client.stats().retries.load(Ordering::Relaxed) >= 3);
    assert_eq!(
        server.scalar(&format!(
            r#"SELECT count("bytes") FROM {HOT}."http_requests""#
        )),
        12_345
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_writes_are_reported_and_not_retried() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(config(&server)).unwrap();
    client.ensure_schema().await.unwrap();
    let t = (now_secs() - 60) * NS;
    // `bytes` is an integer in the shard once this is stored...
    client
        .write(
            Tier::Hot,
            format!("http_requests,section=/a bytes=1i {t}\n").into(),
        )
        .await
        .unwrap();
    // ...so a string `bytes` conflicts with it.
    let body = format!(
        "http_requests,section=/b bytes=\"many\" {}\n\
         http_requests,section=/c bytes=3i {}\n",
        t + 1,
        t + 2
    );
    let requests = client.stats().requests.load(Ordering::Relaxed);
    let err = client
        .write(Tier::Hot, body.clone().into())
        .await
        .unwrap_err();
    let WriteError::Partial(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("field type conflict"), "{message}");
    assert!(message.contains("dropped=1"), "{message}");
    assert_eq!(
        client.stats().requests.load(Ordering::Relaxed),
        requests + 1
    );
    assert_eq!(
        server.scalar(&format!(
            r#"SELECT count("bytes") FROM {HOT}."http_requests""#
        )),
        2,
        "the other lines are stored"
    );

    // Through the Writer: reported, the other batches still written, Ok.
    let writer = Writer::new(client.clone());
    let mut body = body.into_bytes();
    body.extend_from_slice(format!("http_requests,section=/d bytes=4i {}\n", t + 3).as_bytes());
    let requests = client.stats().requests.load(Ordering::Relaxed);
    let report = writer.write(Tier::Hot, body).await.unwrap();
    assert_eq!(report.partial.len(), 1, "{report:?}");
    assert_eq!(report.attempts, 1);
    assert_eq!(
        client.stats().requests.load(Ordering::Relaxed),
        requests + 1
    );
    assert_eq!(
        server.scalar(&format!(
            r#"SELECT count("bytes") FROM {HOT}."http_requests""#
        )),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_database_is_a_fatal_error() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(InfluxConfig {
        api: InfluxApi::V1(V1Config {
            database: "absent".into(),
            ..V1Config::default()
        }),
        ..config(&server)
    })
    .unwrap();
    let err = client
        .write(Tier::Hot, "m v=1i\n".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Rejected { status: 404, message } if message.contains("database not found")),
        "{err:?}"
    );
    assert_eq!(client.stats().requests.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_transitions_are_stored() {
    let server = InfluxServer::start();
    let client = InfluxClient::new(config(&server)).unwrap();
    client.ensure_schema().await.unwrap();
    let at = now_secs() - 120;
    let mut lines = Lines::new();
    push_alert(
        &mut lines,
        "high-traffic",
        "",
        AlertState::Firing,
        at,
        12.5,
        "High traffic generated an alert - hits = 12.5, triggered at x",
    );
    push_alert(
        &mut lines,
        "high-traffic",
        "",
        AlertState::Resolved,
        at + 60,
        9.0,
        "recovered",
    );
    Writer::new(client)
        .write(Tier::Hot, lines.into_bytes())
        .await
        .unwrap();
    let rows = server.rows(&format!(
        r#"SELECT "state", "value", "message" FROM {HOT}."alerts" WHERE "rule" = 'high-traffic'"#
    ));
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0][1..],
        [
            json!("firing"),
            json!(12.5),
            json!("High traffic generated an alert - hits = 12.5, triggered at x")
        ]
    );
    assert_eq!(
        rows[1][1..],
        [json!("resolved"), json!(9), json!("recovered")]
    );
}

/// Points per second of the Writer in a few settings against a plain loader
/// (sequential 5,000-line batches, no gzip, blocking HTTP/1.0), each into
/// its own database of one server. `cargo test -p logmon-tests --test
/// influx_writer -- --ignored --nocapture`; `LOGMON_BENCH_EVENTS` sets the
/// size (default 200,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn bench_writer_against_a_plain_loader() {
    let n: usize = std::env::var("LOGMON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let server = InfluxServer::start();
    let events = events(n, now_secs() - 3_600, 3_000);

    let started = Instant::now();
    let lines = encode("web-1", &events).into_bytes();
    let encode_rate = n as f64 / started.elapsed().as_secs_f64();

    let setup = |db: &str, concurrency: usize, gzip: bool| {
        InfluxClient::new(InfluxConfig {
            api: InfluxApi::V1(V1Config {
                database: db.into(),
                ..V1Config::default()
            }),
            concurrency,
            gzip,
            ..config(&server)
        })
        .unwrap()
    };
    let count = |db: &str| {
        server.scalar(&format!(
            r#"SELECT count("bytes") FROM "{db}"."logmon_hot"."http_requests""#
        ))
    };

    // Baseline.
    setup("plain", 1, false).ensure_schema().await.unwrap();
    let started = Instant::now();
    let text = std::str::from_utf8(&lines).unwrap();
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    for batch in all.chunks(5_000) {
        let (status, body) = server.write("plain", "logmon_hot", batch.concat().as_bytes());
        assert_eq!(status, 204, "{body}");
    }
    let base = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(count("plain"), n as i64);

    let mut table = vec![("plain loader, sequential, no gzip".to_owned(), base)];
    for (concurrency, gzip) in [(1, false), (1, true), (4, false), (4, true), (8, true)] {
        let db = format!("w{concurrency}{}", if gzip { "gz" } else { "" });
        let client = setup(&db, concurrency, gzip);
        client.ensure_schema().await.unwrap();
        let writer = Writer::new(client);
        let started = Instant::now();
        let report = writer.write(Tier::Hot, lines.clone()).await.unwrap();
        let rate = n as f64 / started.elapsed().as_secs_f64();
        assert!(report.partial.is_empty());
        assert_eq!(count(&db), n as i64);
        table.push((
            format!(
                "Writer, concurrency {concurrency}, {}",
                if gzip { "gzip" } else { "no gzip" }
            ),
            rate,
        ));
    }
    println!("\n{n} events, {} bytes of line protocol", lines.len());
    println!("encode (RequestEncoder): {encode_rate:>12.0} events/s");
    println!("{:<40} {:>12} {:>8}", "loader", "points/s", "ratio");
    for (name, rate) in table {
        println!("{name:<40} {rate:>12.0} {:>8.2}", rate / base);
    }
}
