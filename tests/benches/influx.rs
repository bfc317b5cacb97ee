//! The InfluxDB writer's points/s into a real `influxd` (Debian's 1.6,
//! started on a free port with a temporary directory), next to a plain
//! loader posting the same line protocol in the same run (`make bench`).
//!
//! `BENCH_INFLUX_EVENTS` requests (200,000 by default) of generated Combined
//! traffic from the last hours are encoded once as the collector encodes
//! them (`RequestEncoder`: the `http_requests` schema, colliding timestamps
//! made unique). Then, `BENCH_RUNS` rounds (2 by default), each into fresh
//! databases of the same server, the best round counting:
//! - the plain loader (baseline): the same line protocol, 5,000 lines per
//!   `POST /write`, one request after the other, no gzip, HTTP/1.0 from
//!   `std::net` (`InfluxServer::write`);
//! - `Writer::write` with the collector's default `InfluxConfig` (5,000-line
//!   batches, gzip, 4 concurrent requests, retries) on the same bytes;
//! - encode + write: the events encoded again by a fresh `RequestEncoder`
//!   and written by the `Writer`, which is what the collector's writer does
//!   per bus chunk (reading the bus aside).
//!
//! Every run's database is checked to hold exactly one point per request.
//!
//! Beside them, in the same rounds, the lake writer's work on the same
//! events: grouped by UTC hour, cut into files of the default
//! `file_rows`, each encoded to Parquet (`lake::encode`, zstd) and written
//! durably (`durable::replace`: temporary file, fsync, rename, directory
//! fsync), as the `lake` consumer does. And the bytes per event of each
//! form the events take: the Combined log, the wire (the agent's batches
//! of its default size, zstd at its default level), line protocol, the lake.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logmon_collector::influx::{
    InfluxApi, InfluxClient, InfluxConfig, Lines, RequestEncoder, Tier, V1Config, Writer,
};
use logmon_protocol::generate::{TrafficSpec, generate_parsed};
use logmon_protocol::{Event, Format};
use logmon_tests::bench::{Table, cpus, env_number, thousands};
use logmon_tests::influx::InfluxServer;

const PLAIN_BATCH_LINES: usize = 5_000;

/// `n` requests of generated Combined traffic ending about now (InfluxDB
/// drops points older than the retention policy).
fn events(n: u64) -> Vec<Event> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64;
    let rate = 100.0;
    let spec = TrafficSpec {
        format: Format::Combined,
        lines: n,
        start: now - (n as f64 / rate) as i64 - 600,
        base_rate: rate,
        disorder: 1,
        seed: 9,
        ..TrafficSpec::default()
    };
    generate_parsed(&spec).expect("generating traffic").1
}

fn encode(events: &[Event]) -> Vec<u8> {
    let mut encoder = RequestEncoder::default();
    let mut lines = Lines::new();
    for e in events {
        encoder.push(&mut lines, "web-01", e);
    }
    lines.into_bytes()
}

/// A client of the collector's default configuration writing to `db`.
async fn client(server: &InfluxServer, db: &str) -> InfluxClient {
    let client = InfluxClient::new(InfluxConfig {
        url: server.url(),
        api: InfluxApi::V1(V1Config {
            database: db.into(),
            ..V1Config::default()
        }),
        ..InfluxConfig::default()
    })
    .expect("an InfluxDB client");
    client
        .ensure_schema()
        .await
        .expect("creating the database and retention policies");
    client
}

fn count(server: &InfluxServer, db: &str) -> i64 {
    server.scalar(&format!(
        r#"SELECT count("bytes") FROM "{db}"."logmon_hot"."http_requests""#
    ))
}

/// Seconds for the `Writer` with the collector's defaults to store `lines`
/// into `db`, or, given `encoding`, those events encoded on the clock.
async fn write(server: &InfluxServer, db: &str, lines: &[u8], encoding: Option<&[Event]>) -> f64 {
    let writer = Writer::new(client(server, db).await);
    let body = lines.to_vec();
    let started = Instant::now();
    let body = encoding.map_or(body, encode);
    let report = writer.write(Tier::Hot, body).await.expect("writing");
    assert!(report.partial.is_empty(), "{:?}", report.partial);
    started.elapsed().as_secs_f64()
}

/// The baseline: sequential 5,000-line posts of `lines` into `db`.
fn plain_loader(server: &InfluxServer, db: &str, lines: &[u8]) -> f64 {
    let text = std::str::from_utf8(lines).expect("UTF-8 line protocol");
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    let started = Instant::now();
    for batch in all.chunks(PLAIN_BATCH_LINES) {
        let (status, body) = server.write(db, "logmon_hot", batch.concat().as_bytes());
        assert_eq!(status, 204, "{body}");
    }
    started.elapsed().as_secs_f64()
}

/// Seconds for the lake writer's work on `events` into `root`: files of
/// at most `file_rows` rows per UTC hour, encoded and written durably; and
/// the bytes written.
fn lake_write(events: &[Event], root: &std::path::Path) -> (f64, u64) {
    use logmon_collector::durable::{Options, replace};
    use logmon_collector::lake::encode::{Row, Source, encode};
    use logmon_collector::lake::layout::{Partition, Range};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let source = Arc::new(Source {
        host: "web-01".into(),
        agent: "bench".into(),
        stream: "/var/log/nginx/access.log".into(),
        fingerprint: 1,
        labels: vec![("env".into(), "bench".into())],
    });
    let started = Instant::now();
    let mut hours: BTreeMap<Partition, Vec<Row>> = BTreeMap::new();
    for e in events {
        hours
            .entry(Partition::of(e.timestamp))
            .or_default()
            .push(Row {
                source: Arc::clone(&source),
                event: e.clone(),
            });
    }
    let (mut bytes, mut first) = (0, 0u64);
    for (partition, mut rows) in hours {
        let dir = root.join(partition.relative_dir());
        std::fs::create_dir_all(&dir).expect("a partition directory");
        for chunk in rows.chunks_mut(logmon_collector::lake::DEFAULT_FILE_ROWS) {
            let range = Range {
                first,
                end: first + chunk.len() as u64,
            };
            first = range.end;
            let file = encode(chunk, range, logmon_collector::lake::DEFAULT_ROW_GROUP_ROWS)
                .expect("encoding a lake file");
            let options = Options {
                fsync: true,
                ..Options::default()
            };
            replace(
                &dir.join(range.file_name()),
                &dir.join(range.temp_name()),
                &file,
                options,
            )
            .expect("writing a lake file");
            bytes += file.len() as u64;
        }
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// Bytes of `events` as a Combined log and as the agent's wire batches of
/// its default size and zstd level.
fn log_and_wire_bytes(events: &[Event]) -> (u64, u64) {
    use logmon_protocol::wire::{Batch, StreamId};
    let mut line = String::new();
    let mut log = 0;
    for e in events {
        line.clear();
        logmon_protocol::render::render(Format::Combined, e, &mut line);
        log += line.len() as u64 + 1;
    }
    let defaults = logmon_agent::config::AgentConfig::default();
    let mut wire = 0;
    for (i, chunk) in events.chunks(defaults.batch_max_events).enumerate() {
        let batch = Batch {
            agent_id: "bench".into(),
            host: "web-01".into(),
            stream: StreamId {
                fingerprint: 1,
                path: "/var/log/nginx/access.log".into(),
            },
            start: i as u64,
            end: i as u64 + 1,
            format: Format::Combined,
            labels: vec![("env".into(), "bench".into())],
            events: chunk.to_vec(),
            malformed: 0,
            caught_up: false,
            finished: false,
            sent_at: 0,
        };
        wire += logmon_protocol::wire::encode(&batch, defaults.zstd_level)
            .expect("encoding a batch")
            .len() as u64;
    }
    (log, wire)
}

fn main() {
    let n = env_number("BENCH_INFLUX_EVENTS", 200_000);
    let runs = env_number("BENCH_RUNS", 2).max(1);
    let started = Instant::now();
    let events = events(n);
    let n = events.len();
    let t = Instant::now();
    let lines = encode(&events);
    let encode_secs = t.elapsed().as_secs_f64();
    let server = InfluxServer::start();
    let version = std::process::Command::new(logmon_tests::influx::influxd_bin())
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "InfluxDB writer: {n} requests ({} bytes of line protocol, {:.0} B/point), {version}, {} CPUs shared by influxd and this process; prepared in {:.1} s",
        lines.len(),
        lines.len() as f64 / n as f64,
        cpus(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "best of {runs} rounds, each into fresh databases; \"x plain\" = points/s / points/s of the plain loader in this run"
    );
    println!();

    let mut best = [f64::INFINITY; 4];
    let mut lake_bytes = 0;
    for round in 0..runs {
        // The plain loader first, then the writer, then encode + write.
        let db = format!("plain{round}");
        runtime.block_on(client(&server, &db));
        let secs = plain_loader(&server, &db, &lines);
        assert_eq!(count(&server, &db), n as i64, "plain loader: every point");
        best[0] = best[0].min(secs);

        for (k, encoding) in [(1, None), (2, Some(events.as_slice()))] {
            let db = format!("writer{k}r{round}");
            let secs = runtime.block_on(write(&server, &db, &lines, encoding));
            assert_eq!(count(&server, &db), n as i64, "{db}: every point");
            best[k] = best[k].min(secs);
        }
        let lake = tempfile::tempdir().expect("a temporary directory");
        let (secs, bytes) = lake_write(&events, lake.path());
        best[3] = best[3].min(secs);
        lake_bytes = bytes;
        // Let influxd settle (WAL, compactions) between rounds alike.
        std::thread::sleep(Duration::from_millis(500));
    }

    let defaults = InfluxConfig::default();
    let mut table = Table::new(&["loader", "best time (s)", "points/s", "x plain"]);
    let names = [
        format!("plain loader, {PLAIN_BATCH_LINES}-line posts, sequential, no gzip (baseline)"),
        format!(
            "Writer, defaults: {}-line batches, gzip {}, {} concurrent",
            defaults.batch_lines, defaults.gzip, defaults.concurrency
        ),
        "RequestEncoder + Writer (events to InfluxDB)".to_owned(),
        format!(
            "lake: Parquet encode + durable write, {}-row files (events to the lake)",
            logmon_collector::lake::DEFAULT_FILE_ROWS
        ),
    ];
    for (name, secs) in names.into_iter().zip(best) {
        table.row(vec![
            name,
            format!("{secs:.3}"),
            thousands(n as f64 / secs),
            format!("{:.2}", best[0] / secs),
        ]);
    }
    table.print();
    println!();
    println!(
        "encoding alone (RequestEncoder, 1 thread): {} points/s. target: the writer >= 0.90 x plain",
        thousands(n as f64 / encode_secs)
    );
    println!(
        "lake writer vs InfluxDB writer (events to each, this run): {:.2} x the events/s",
        best[2] / best[3]
    );
    println!();
    let (log_bytes, wire_bytes) = log_and_wire_bytes(&events);
    let mut sizes = Table::new(&["form of the same events", "bytes", "B/event", "x the log"]);
    for (name, bytes) in [
        ("Combined log (the raw log, baseline)", log_bytes),
        ("wire: agent batches, default size, zstd", wire_bytes),
        ("InfluxDB line protocol (uncompressed)", lines.len() as u64),
        ("lake: Parquet, zstd", lake_bytes),
    ] {
        sizes.row(vec![
            name.to_owned(),
            thousands(bytes as f64),
            format!("{:.1}", bytes as f64 / n as f64),
            format!("{:.3}", bytes as f64 / log_bytes as f64),
        ]);
    }
    sizes.print();
}
