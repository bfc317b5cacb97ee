//! Collector ingest to the durable bus: events/s through the HTTP API, next
//! to bare `SegmentLog::append` of the same bodies in the same run
//! (`make bench`).
//!
//! 8 clients (half HTTP/1.1, half HTTP/2) post pre-encoded batches of 1,000
//! realistic events (generated Combined Log Format traffic parsed as the
//! agent does, each batch a distinct stream range so none is a duplicate) to
//! `ingest::run` on 127.0.0.1 for at most `BENCH_INGEST_SECONDS` (5), each
//! waiting for its answer before the next post, as an agent does. Every 200
//! means the batch was fsynced in the bus (group commit). The same run is
//! made again over HTTPS (`[http.tls]`, a self-signed P-256 certificate,
//! TLS 1.3, ALPN), on a fresh bus: the cost of TLS on the collector's side.
//!
//! The baselines append the very bodies the collector accepted to a fresh
//! `SegmentLog` with the same fsync policy (fsync on): 8 records per append
//! (one per client: the best group commit can do) and 1 record per append
//! (on the first 500 records), best of 3 each. `wire::decode` on one
//! thread, and `wire::inspect` (the same checks without building the
//! events), which every request pays before the append, are shown too. The
//! clients run in this process, on the same 2 CPUs as the server.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logmon_collector::bus::{LocalBus, LogConfig, SegmentLog};
use logmon_collector::http::tls::{Tls, TlsConfig};
use logmon_collector::ingest::{self, IngestConfig, IngestState};
use logmon_protocol::generate::{TrafficSpec, generate_parsed};
use logmon_protocol::wire::{self, Batch, Limits, StreamId};
use logmon_protocol::{Event, Format};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 8;
const EVENTS_PER_BATCH: usize = 1000;
const SINGLE_APPENDS: usize = 500;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Events of generated Combined traffic.
fn events(lines: u64) -> Vec<Event> {
    let spec = TrafficSpec {
        format: Format::Combined,
        lines,
        base_rate: 300.0,
        disorder: 1,
        seed: 5,
        ..TrafficSpec::default()
    };
    generate_parsed(&spec).expect("generating traffic").1
}

/// `per_client` bodies for each client, each a distinct range of the
/// client's own stream; encoded on every CPU.
fn bodies(events: &[Event], per_client: usize) -> Vec<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let jobs: Vec<(usize, usize)> = (0..CLIENTS)
        .flat_map(|c| (0..per_client).map(move |i| (c, i)))
        .collect();
    let encoded: Vec<Vec<(usize, usize, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(jobs.len().div_ceil(threads))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&(c, i)| {
                            let at = ((c * per_client + i) * EVENTS_PER_BATCH) % events.len();
                            let chunk: Vec<Event> = events
                                .iter()
                                .cycle()
                                .skip(at)
                                .take(EVENTS_PER_BATCH)
                                .cloned()
                                .collect();
                            let start = i as u64 * 200_000;
                            let batch = Batch {
                                agent_id: format!("bench-agent-{c}"),
                                host: format!("web-{c}"),
                                stream: StreamId {
                                    fingerprint: 0x1000 + c as u64,
                                    path: "/var/log/nginx/access.log".into(),
                                },
                                start,
                                end: start + 200_000,
                                format: Format::Combined,
                                labels: Vec::new(),
                                events: chunk,
                                malformed: 0,
                                caught_up: false,
                                finished: false,
                                sent_at: 1_719_800_000_000_000_000,
                            };
                            let body = wire::encode(&batch, wire::DEFAULT_LEVEL)
                                .expect("encoding a batch");
                            (c, i, body)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an encoder"))
            .collect()
    });
    let mut out: Vec<Vec<Vec<u8>>> = vec![vec![Vec::new(); per_client]; CLIENTS];
    for (c, i, body) in encoded.into_iter().flatten() {
        out[c][i] = body;
    }
    out
}

fn post(scheme: &str, addr: std::net::SocketAddr, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("{scheme}://{addr}/v1/batches"))
        .header(hyper::header::CONTENT_TYPE, "application/zstd")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .expect("a request")
}

/// A self-signed certificate for 127.0.0.1 in `dir`: the collector's
/// `[http.tls]` and the clients' trust.
fn tls_files(dir: &std::path::Path) -> (TlsConfig, rustls::ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
        .expect("a self-signed certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("writing the certificate");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("writing the key");
    let client = logmon_io::tls::ClientTls {
        ca_file: Some(cert_path.clone()),
        ..Default::default()
    }
    .config()
    .expect("the client's TLS settings");
    (TlsConfig::new(cert_path, key_path), client)
}

/// Posts every client's bodies for at most `run`, over TLS (TLS 1.3, a
/// P-256 certificate, HTTP/1.1 or HTTP/2 by ALPN) when `tls`; returns the
/// bodies accepted per client (in order), the seconds taken and the bus
/// appends.
async fn ingest(bodies: &[Vec<Vec<u8>>], run: Duration, tls: bool) -> (Vec<usize>, f64, u64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (log, _) = SegmentLog::open(LogConfig::new(dir.path())).expect("opening the bus");
    let config = IngestConfig {
        tokens: vec![TOKEN.into()],
        max_backlog_bytes: u64::MAX,
        ..IngestConfig::default()
    };
    let (bus, _) = LocalBus::with_log(log, config.limits).expect("opening the bus");
    let state = IngestState::open(config, Arc::new(bus)).expect("opening ingest");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding ingest");
    let addr = listener.local_addr().expect("the ingest address");
    let shutdown = CancellationToken::new();
    let (server_tls, client_tls) = if tls {
        let (server, client) = tls_files(dir.path());
        (
            Some(Tls::new(&server).expect("the collector's TLS")),
            client,
        )
    } else {
        (None, logmon_io::tls::ClientTls::trusting_nothing())
    };
    let scheme = if tls { "https" } else { "http" };
    let server = tokio::spawn(logmon_collector::http::server::run(
        listener,
        Arc::new(ingest::router(&state)),
        logmon_collector::http::ServerConfig::default(),
        server_tls,
        state.metrics().connections(),
        Arc::default(),
        shutdown.clone(),
    ));

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, bodies) in bodies.iter().cloned().enumerate() {
        let client_tls = client_tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut builder = Client::builder(TokioExecutor::new());
            if c % 2 == 1 {
                builder.http2_only(true);
            }
            // As the agent's shipper does: no Nagle delay on small writes.
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(client_tls)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            let client: Client<_, Body> = builder.build(connector);
            let mut sent = 0;
            for body in bodies {
                if started.elapsed() > run {
                    break;
                }
                let response = client
                    .request(post(scheme, addr, body))
                    .await
                    .expect("posting a batch");
                let status = response.status();
                let text = response
                    .into_body()
                    .collect()
                    .await
                    .expect("the answer")
                    .to_bytes();
                assert_eq!(status, StatusCode::OK, "{text:?}");
                sent += 1;
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("a client"));
    }
    let secs = started.elapsed().as_secs_f64();
    let appends = state.metrics().bus_appends();
    assert_eq!(
        state.metrics().accepted(),
        sent.iter().sum::<usize>() as u64
    );
    shutdown.cancel();
    server
        .await
        .expect("the ingest server")
        .expect("ingest served");
    tokio::task::spawn_blocking(move || state.close())
        .await
        .expect("closing")
        .expect("closing ingest");
    (sent, secs, appends)
}

/// Seconds to append `records`, `group` per `SegmentLog::append`, fsync on.
fn bus_append(records: &[&[u8]], group: usize) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut log, _) = SegmentLog::open(LogConfig::new(dir.path())).expect("opening the bus");
    let started = Instant::now();
    for chunk in records.chunks(group) {
        log.append(chunk).expect("appending");
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let run = Duration::from_secs(common::env_number("BENCH_INGEST_SECONDS", 5));
    let per_client = common::env_number("BENCH_INGEST_BATCHES", 500) as usize;
    let started = Instant::now();
    let events = events(100_000);
    let bodies = bodies(&events, per_client);
    let total_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    let count = CLIENTS * per_client;
    println!(
        "collector ingest to the durable bus (fsync on): {CLIENTS} clients x up to {per_client} batches of {EVENTS_PER_BATCH} Combined events ({} B/body average), at most {} s; prepared in {:.1} s, {} CPUs",
        total_bytes / count,
        run.as_secs(),
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (sent, ingest_secs, appends) = runtime.block_on(ingest(&bodies, run, false));
    let (tls_sent, tls_secs, tls_appends) = runtime.block_on(ingest(&bodies, run, true));
    let posted: usize = sent.iter().sum();
    // Exactly the accepted bodies, interleaved by client as they arrived.
    let mut records: Vec<&[u8]> = Vec::with_capacity(posted);
    for i in 0..per_client {
        for (c, client) in bodies.iter().enumerate() {
            if i < sent[c] {
                records.push(&client[i]);
            }
        }
    }
    // fsync times swing on a shared disk: best of 3.
    let best = |records: &[&[u8]], group: usize| {
        (0..3)
            .map(|_| bus_append(records, group))
            .fold(f64::INFINITY, f64::min)
    };
    let group_secs = best(&records, CLIENTS);
    let single = &records[..records.len().min(SINGLE_APPENDS)];
    let single_secs = best(single, 1);
    let decoded = &records[..records.len().min(SINGLE_APPENDS)];
    let started = Instant::now();
    for r in decoded {
        std::hint::black_box(wire::decode(r, &Limits::default()).expect("decoding"));
    }
    let decode_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for r in decoded {
        std::hint::black_box(wire::inspect(r, &Limits::default()).expect("inspecting"));
    }
    let inspect_secs = started.elapsed().as_secs_f64();

    let rate = |records: usize, secs: f64| (records * EVENTS_PER_BATCH) as f64 / secs;
    let base = rate(records.len(), group_secs);
    println!(
        "\"x bus\" = events/s / events/s of the bare bus append, {CLIENTS} records per fsync, same bodies, this run"
    );
    println!();
    println!(
        "{:<52} | {:>9} | {:>12} | {:>6}",
        "path", "batches", "events/s", "x bus"
    );
    println!("{:-<52}-+-{:->9}-+-{:->12}-+-{:->6}", "", "", "", "");
    let row = |name: &str, records: usize, events_per_sec: f64| {
        println!(
            "{name:<52} | {records:>9} | {events_per_sec:>12.0} | {:>6.2}",
            events_per_sec / base
        );
    };
    row(
        &format!("bus append, {CLIENTS} records/fsync (baseline)"),
        records.len(),
        base,
    );
    row(
        "bus append, 1 record/fsync",
        single.len(),
        rate(single.len(), single_secs),
    );
    row(
        &format!("ingest over HTTP, {CLIENTS} clients, fsync ({appends} appends)"),
        posted,
        rate(posted, ingest_secs),
    );
    row(
        &format!("ingest over HTTPS, {CLIENTS} clients, fsync ({tls_appends} appends)"),
        tls_sent.iter().sum(),
        rate(tls_sent.iter().sum(), tls_secs),
    );
    row(
        "wire::decode alone, 1 thread",
        decoded.len(),
        rate(decoded.len(), decode_secs),
    );
    row(
        "wire::inspect alone (what ingest runs), 1 thread",
        decoded.len(),
        rate(decoded.len(), inspect_secs),
    );
    println!();
    println!("target: ingest >= 1,000,000 events/s");
}
