//! The agent's throughput, memory and CPU, with the real release
//! `logmon-agent` binary pinned to one core (`make bench`).
//!
//! A log of `BENCH_LINES` lines (1,000,000 by default) is generated once per
//! format into a temporary directory. The agent (`taskset -c 0`) reads it
//! from the beginning and ships it to an acknowledging sink in this process:
//! a minimal HTTP/1.1 server that answers 200 at once and keeps the bodies,
//! which are decoded after the clock stops to check that every line arrived.
//! This process runs on the other core when there is one, so the sink and
//! the agent do not share a CPU. The clock runs from spawning the agent until
//! its `/metrics` count every event acknowledged (polled every 20 ms).
//!
//! The baseline, measured in the same run: reading the same file's lines
//! with a plain `BufReader` loop (`wc -l`-like) in this process. To show
//! where the agent's time goes, its own pieces also run in this process on
//! the same file: the tailer alone, then with parsing, then with
//! `wire::Encoder` batches of 1,000 events (everything but the HTTP exchange,
//! the shipper and the threads). Each run happens `BENCH_RUNS` times (2 by
//! default), interleaved, and the best time counts.
//!
//! Then the agent's CPU at a realistic pace: idle for 5 s, then a writer
//! appending 10,000 lines/s (100 lines every 10 ms) for 10 s; CPU is
//! `utime + stime` from `/proc/<pid>/stat`, peak RSS `VmHWM` from
//! `/proc/<pid>/status`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use logmon_agent::tail::{Checkpoints, StartAt, Tailer, TailerConfig};
use logmon_protocol::generate::{TrafficSpec, generate};
use logmon_protocol::wire::{self, Batch, Limits, StreamId};
use logmon_protocol::{Event, Format, LineParser, Parsed};
use logmon_tests::agent_bin;
use logmon_tests::bench::{
    ProcSample, Running, Table, clock_ticks, cpus, env_number, free_port, http_get, metric,
    pin_self_to, sample, thousands,
};

const PACED_RATE: u64 = 10_000;
const PACED_SECONDS: u64 = 10;
const IDLE_SECONDS: u64 = 5;
const TICK: Duration = Duration::from_millis(10);

/// Bodies received, answered 200 without looking at them.
#[derive(Debug, Clone, Default)]
struct Sink {
    port: u16,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    /// Over TLS: the CA file the agent trusts.
    ca: Option<PathBuf>,
    /// A real `logmon-collector serve` on `port`, not this sink: nothing
    /// arrives in `bodies`.
    real: bool,
}

impl Sink {
    /// Serves on 127.0.0.1 from a thread of its own (one tokio thread).
    fn start() -> Sink {
        Sink::start_with(None)
    }

    /// [`start`](Self::start) over TLS (rustls, ring, a certificate for
    /// `localhost` made here), as the collector serves it.
    fn start_tls(dir: &Path) -> Sink {
        use rustls::pki_types::pem::PemObject;
        let ca = logmon_tests::pki::Ca::new(dir, "bench-ca");
        let issued = ca.issue(dir, "sink", &["localhost"]);
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&issued.cert)
            .expect("the sink's certificate")
            .map(|c| c.expect("a PEM certificate"))
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&issued.key).expect("its key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the sink's TLS configuration");
        let mut sink = Sink::start_with(Some(Arc::new(config)));
        sink.ca = Some(ca.cert.clone());
        sink
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let sink = Sink {
            port: listener.local_addr().expect("the sink's address").port(),
            bodies: Arc::default(),
            ca: None,
            real: false,
        };
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let bodies = Arc::clone(&sink.bodies);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the sink's runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("the sink's listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let bodies = Arc::clone(&bodies);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let bodies = Arc::clone(&bodies);
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                bodies.lock().expect("sink bodies").push(body);
                                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                            }
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        match acceptor {
                            None => {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = http.serve_connection(io, service).await;
                            }
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    let io = hyper_util::rt::TokioIo::new(tls);
                                    let _ = http.serve_connection(io, service).await;
                                }
                            }
                        }
                    });
                }
            });
        });
        sink
    }

    fn take(&self) -> Vec<Bytes> {
        std::mem::take(&mut *self.bodies.lock().expect("sink bodies"))
    }

    /// Decodes what arrived: (events, bodies, body bytes).
    fn drain(&self) -> (u64, usize, u64) {
        let bodies = self.take();
        let mut events = 0;
        let mut bytes = 0;
        for body in &bodies {
            let batch = wire::decode(body, &Limits::default()).expect("a valid batch");
            events += batch.events.len() as u64;
            bytes += body.len() as u64;
        }
        (events, bodies.len(), bytes)
    }
}

/// A generated log, with its line and byte counts.
struct Log {
    path: PathBuf,
    format: Format,
    /// Lines that are events (the CSV header not counted).
    events: u64,
    bytes: u64,
}

fn generate_log(dir: &Path, format: Format, lines: u64) -> Log {
    let path = dir.join(format!("access-{}.log", format.name()));
    let mut out = BufWriter::new(File::create(&path).expect("creating the log"));
    // Event time ending about now, as a live collector sees it (the
    // default start, in 2019, is all late for a live engine).
    let base_rate = 300.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64;
    let spec = TrafficSpec {
        format,
        lines,
        base_rate,
        start: now - (lines as f64 / base_rate) as i64,
        disorder: 0,
        seed: 3,
        ..TrafficSpec::default()
    };
    let events = generate(&spec, &mut out).expect("writing the log");
    out.flush().expect("writing the log");
    let bytes = std::fs::metadata(&path).expect("the log's size").len();
    Log {
        path,
        format,
        events,
        bytes,
    }
}

/// The baseline: every line of `path` with a plain buffered loop.
fn read_lines(path: &Path) -> (u64, f64) {
    let started = Instant::now();
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).expect("opening the log"));
    let mut buf = Vec::with_capacity(4096);
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).expect("reading the log") == 0 {
            break;
        }
        lines += 1;
        bytes += std::hint::black_box(&buf).len() as u64;
    }
    std::hint::black_box(bytes);
    (lines, started.elapsed().as_secs_f64())
}

/// How far an in-process stage of the agent's work goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Tail,
    Parse,
    Encode,
}

/// The agent's own pieces on `log`, synchronously on this thread:
/// `Tailer::poll` (1 MiB budget, as the agent), then `LineParser`, then
/// batches of 1,000 events encoded at the default level as the agent does
/// (each event pushed into a `wire::Encoder`). Seconds.
fn stage(log: &Log, stage: Stage) -> f64 {
    let started = Instant::now();
    let mut config = TailerConfig::new(vec![log.path.display().to_string()]);
    config.start_at = StartAt::Beginning;
    let mut tailer = Tailer::new(config, Checkpoints::new()).expect("a tailer");
    let mut parser = LineParser::new(log.format);
    let mut event = Event::empty();
    let mut encoder = wire::Encoder::new();
    let batch = Batch {
        agent_id: "bench".into(),
        host: "bench".into(),
        stream: StreamId {
            fingerprint: 1,
            path: log.path.display().to_string(),
        },
        start: 0,
        end: 0,
        format: log.format,
        labels: Vec::new(),
        events: Vec::new(),
        malformed: 0,
        caught_up: false,
        finished: false,
        sent_at: 0,
    };
    let (mut lines, mut events, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        let polled = tailer.poll(1 << 20);
        if polled.is_empty() {
            break;
        }
        for read in polled {
            for line in &read.lines {
                lines += 1;
                if stage == Stage::Tail {
                    bytes += std::hint::black_box(&line.text).len() as u64;
                    continue;
                }
                if let Ok(Parsed::Event) = parser.parse_into(&line.text, &mut event) {
                    events += 1;
                    if stage == Stage::Encode {
                        encoder.push(&event);
                        if encoder.len() == 1000 {
                            let body = encoder
                                .finish(&batch, wire::DEFAULT_LEVEL)
                                .expect("encoding");
                            bytes += body.len() as u64;
                        }
                    }
                }
            }
        }
    }
    if !encoder.is_empty() {
        bytes += encoder
            .finish(&batch, wire::DEFAULT_LEVEL)
            .expect("encoding")
            .len() as u64;
    }
    std::hint::black_box(bytes);
    assert_eq!(lines, log.events + u64::from(log.format == Format::Csv));
    assert!(stage == Stage::Tail || events == log.events);
    started.elapsed().as_secs_f64()
}

/// The agent's TOML: one source, this sink, metrics on `metrics_port`.
/// How an agent run reads: events per batch, from the files' beginning or
/// end, and its `filters = …` line ("" for none).
#[derive(Debug, Clone, Copy)]
struct Reading<'a> {
    batch_events: u64,
    from_beginning: bool,
    filters: &'a str,
    /// Extra top-level TOML lines (e.g. `pipeline_depth = 1`).
    extra: &'a str,
}

fn agent_config(
    dir: &Path,
    log: &Path,
    format: Format,
    sink: &Sink,
    metrics_port: u16,
    reading: Reading<'_>,
) -> PathBuf {
    let Reading {
        batch_events,
        from_beginning,
        filters,
        extra,
    } = reading;
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let (url, tls) = match &sink.ca {
        None => (format!("http://127.0.0.1:{}", sink.port), String::new()),
        Some(ca) => (
            format!("https://localhost:{}", sink.port),
            format!("\n[tls]\nca_file = {ca:?}\n"),
        ),
    };
    let config = format!(
        r#"agent_id = "bench"
host = "bench"
collector_urls = ["{url}"]
token = "bench"
checkpoint_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
batch_max_events = {batch_events}
{extra}

[[sources]]
include = ["{log}"]
format = "{format}"
{filters}

[tail]
start_at = "{start}"
{tls}"#,
        state = state.display(),
        log = log.display(),
        format = format.name(),
        start = if from_beginning { "beginning" } else { "end" },
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).expect("writing the agent's config");
    path
}

/// Starts the agent on CPU 0 (when there are two CPUs) with `config`.
fn spawn_agent(config: &Path, dir: &Path) -> Running {
    spawn_binary(&agent_bin(), config, dir)
}

/// [`spawn_agent`] with another build of the agent.
fn spawn_binary(binary: &Path, config: &Path, dir: &Path) -> Running {
    // `BENCH_AGENT_WRAP="strace -f -c -o FILE"` runs the agent under a
    // tool, to see where its system time goes (its CPU figures are then the
    // tool's, not the agent's).
    let wrap: Vec<String> = std::env::var("BENCH_AGENT_WRAP")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut cmd = if cpus() > 1 {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).args(&wrap).arg(binary);
        c
    } else if let Some((tool, args)) = wrap.split_first() {
        let mut c = Command::new(tool);
        c.args(args).arg(binary);
        c
    } else {
        Command::new(binary)
    };
    Running(
        cmd.arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("agent.err")).expect("the agent's stderr"))
            .spawn()
            .expect("starting logmon-agent"),
    )
}

fn acked(metrics_port: u16) -> Option<u64> {
    metric(
        &http_get(metrics_port, "/metrics"),
        "logmon_agent_events_acked_total",
    )
}

fn wait_acked(metrics_port: u16, events: u64, timeout: Duration, dir: &Path) {
    let deadline = Instant::now() + timeout;
    while acked(metrics_port).unwrap_or(0) < events {
        assert!(
            Instant::now() < deadline,
            "the agent did not deliver {events} events within {timeout:?}; stderr:\n{}",
            std::fs::read_to_string(dir.join("agent.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One throughput run of the agent over the whole of `log`.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    secs: f64,
    process: ProcSample,
    body_bytes: u64,
}

fn agent_throughput(dir: &Path, log: &Log, sink: &Sink, batch_events: u64) -> Throughput {
    filtered_throughput(dir, log, sink, batch_events, &agent_bin(), "", None).0
}

/// A real `logmon-collector serve` (the build beside the agent) with a data
/// directory of its own and no InfluxDB: the bus appends (fsync and all),
/// the engine and the dashboard run as they would for an agent in
/// production. Inherits this process's CPU (1).
struct RealCollector {
    run: Running,
    sink: Sink,
}

impl RealCollector {
    fn start(dir: &Path) -> RealCollector {
        let port = free_port();
        let data = dir.join("collector-data");
        let _ = std::fs::remove_dir_all(&data);
        let run = Running(
            Command::new(logmon_tests::collector_bin())
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--token", "bench"])
                .arg("--data-dir")
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(File::create(dir.join("collector.err")).expect("the collector's stderr"))
                .spawn()
                .expect("starting logmon-collector"),
        );
        logmon_tests::harness::wait_for_health(port);
        RealCollector {
            run,
            sink: Sink {
                port,
                real: true,
                ..Sink::default()
            },
        }
    }

    fn accepted(&self) -> u64 {
        metric(
            &http_get(self.sink.port, "/metrics"),
            "logmon_ingest_events_accepted_total",
        )
        .unwrap_or(0)
    }
}

/// The shipped filters of the filter table's three-filter row.
const DROP: &str = r#"{ component = "drop", params = { path_prefix = ["/healthz", "/favicon.ico"], user_agent = "bot-that-never-comes" } }"#;

fn three_filters() -> String {
    format!(
        r#"filters = [{DROP}, {{ component = "redact-clients", params = {{ mode = "prefix" }} }}, {{ component = "label", params = {{ patterns = 'api=^/api/; static=\.(css|js|png)$', default = "page" }} }}]"#
    )
}

/// One run of the agent against a real collector: what it is called, its
/// pipeline depth and its `filters = …` line ("" for none).
struct CollectorCase {
    name: String,
    depth: usize,
    filters: String,
}

/// A case's best run, the collector's CPU in it, its early 409s and the
/// agent's start-up CPU (compiling its filters), taken off its CPU/line.
struct CollectorRun {
    name: String,
    run: Throughput,
    collector_cpu: Duration,
    early: u64,
    startup: f64,
}

/// The agent against a real collector: one batch per file in flight,
/// pipelined, and pipelined with the three shipped filters.
fn collector_runs(dir: &Path, log: &Log, runs: u64) -> Vec<CollectorRun> {
    // `BENCH_DEPTHS=4` runs only that depth (and no filters).
    let depths: Vec<usize> = std::env::var("BENCH_DEPTHS")
        .ok()
        .map(|d| d.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4]);
    let mut cases: Vec<CollectorCase> = depths
        .iter()
        .map(|&depth| CollectorCase {
            name: if depth == 1 {
                "one batch per file in flight (pipeline_depth = 1)".into()
            } else {
                format!("pipelined, pipeline_depth = {depth}")
            },
            depth,
            filters: String::new(),
        })
        .collect();
    if std::env::var_os("BENCH_DEPTHS").is_none() {
        cases.push(CollectorCase {
            name: "pipelined (4), drop + redact-clients + label".into(),
            depth: 4,
            filters: three_filters(),
        });
    }
    let mut out = Vec::new();
    for case in cases {
        let mut best: Option<CollectorRun> = None;
        for _ in 0..runs {
            let collector = RealCollector::start(dir);
            let startup = if case.filters.is_empty() {
                0.0
            } else {
                startup_cpu(dir, &collector.sink, &agent_bin(), &case.filters)
            };
            let before = sample(collector.run.pid(), clock_ticks()).expect("the collector's /proc");
            let extra = format!("pipeline_depth = {}", case.depth);
            let (run, metrics) = run_agent(
                dir,
                log,
                &collector.sink,
                1000,
                &agent_bin(),
                &case.filters,
                None,
                &extra,
            );
            let after = sample(collector.run.pid(), clock_ticks()).expect("the collector's /proc");
            let filtered = metric(&metrics, "logmon_agent_events_filtered_total").unwrap_or(0);
            assert_eq!(
                collector.accepted(),
                log.events - filtered,
                "the collector stored every event the filters kept"
            );
            let collector_cpu = after.cpu.saturating_sub(before.cpu);
            let early = metric(&metrics, "logmon_agent_batches_early_total").unwrap_or(0);
            if best.as_ref().is_none_or(|b| run.secs < b.run.secs) {
                best = Some(CollectorRun {
                    name: case.name.clone(),
                    run,
                    collector_cpu,
                    early,
                    startup,
                });
            }
        }
        out.push(best.expect("a run"));
    }
    out
}

fn collector_table(dir: &Path, log: &Log, runs: u64, in_process: Option<Throughput>) {
    let results = collector_runs(dir, log, runs);
    let mut table = Table::new(&[
        "agent -> real logmon-collector serve, combined, 1,000 events/batch",
        "best time (s)",
        "lines/s",
        "agent CPU (s)",
        "of which system",
        "agent us/line",
        "collector CPU (s)",
        "409 early",
        "x in-process sink",
    ]);
    let base = in_process.map(|t| t.secs);
    if let Some(t) = in_process {
        table.row(vec![
            "in-process sink (baseline of this table)".into(),
            format!("{:.4}", t.secs),
            thousands(log.events as f64 / t.secs),
            format!("{:.2}", t.process.cpu.as_secs_f64()),
            format!("{:.2}", t.process.system.as_secs_f64()),
            format!(
                "{:.3}",
                t.process.cpu.as_secs_f64() * 1e6 / log.events as f64
            ),
            "-".into(),
            "-".into(),
            "1.00".into(),
        ]);
    }
    for r in results {
        let cpu = r.run.process.cpu.as_secs_f64() - r.startup;
        table.row(vec![
            r.name,
            format!("{:.4}", r.run.secs),
            thousands(log.events as f64 / r.run.secs),
            format!("{cpu:.2}"),
            format!("{:.2}", r.run.process.system.as_secs_f64()),
            format!("{:.3}", cpu * 1e6 / log.events as f64),
            format!("{:.2}", r.collector_cpu.as_secs_f64()),
            r.early.to_string(),
            base.map_or_else(|| "-".into(), |b| format!("{:.2}", r.run.secs / b)),
        ]);
    }
    table.print();
    println!(
        "target: >= 1,000,000 lines/s per core at <= 1 us CPU/line to a real collector, with or without filters; the agent pinned to CPU 0, the collector on CPU 1 with this process; agent CPU = utime+stime, less the start-up CPU (compiling filters, measured in a run of its own), system = stime"
    );
    println!();
}

/// One run of `binary` over `log` with `filters` (a TOML `filters = …`
/// line, or ""), waiting for `kept` events (all when `None`); also gives
/// the agent's `/metrics` at the end.
fn filtered_throughput(
    dir: &Path,
    log: &Log,
    sink: &Sink,
    batch_events: u64,
    binary: &Path,
    filters: &str,
    kept: Option<u64>,
) -> (Throughput, String) {
    run_agent(dir, log, sink, batch_events, binary, filters, kept, "")
}

/// [`filtered_throughput`] with `extra` top-level configuration lines.
#[expect(
    clippy::too_many_arguments,
    reason = "a bench helper; each is one knob of a run"
)]
fn run_agent(
    dir: &Path,
    log: &Log,
    sink: &Sink,
    batch_events: u64,
    binary: &Path,
    filters: &str,
    kept: Option<u64>,
    extra: &str,
) -> (Throughput, String) {
    let metrics_port = free_port();
    let config = agent_config(
        dir,
        &log.path,
        log.format,
        sink,
        metrics_port,
        Reading {
            batch_events,
            from_beginning: true,
            filters,
            extra,
        },
    );
    let started = Instant::now();
    let agent = spawn_binary(binary, &config, dir);
    let kept = kept.unwrap_or(log.events);
    wait_acked(metrics_port, kept, Duration::from_secs(300), dir);
    // Timed to the last acknowledged event: the per-file offsets below are
    // refreshed once per checkpoint interval (1 s), and timing to them
    // rounded every run up to the next refresh.
    let secs = started.elapsed().as_secs_f64();
    // With filters, the last batches may hold no event: wait for the file
    // to be acknowledged to its end too.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let m = http_get(metrics_port, "/metrics");
        if samples(&m, "logmon_agent_file_acked_offset_bytes")
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>()
            >= log.bytes as f64
            || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let process = sample(agent.pid(), clock_ticks()).expect("the agent's /proc entries");
    drop(agent);
    let (events, _, body_bytes) = sink.drain();
    assert!(
        sink.real || events >= kept,
        "the sink decoded {events} events, {kept} were expected",
    );
    (
        Throughput {
            secs,
            process,
            body_bytes,
        },
        metrics,
    )
}

/// The agent's CPU while idle, then while a writer appends
/// `PACED_RATE` lines/s for `PACED_SECONDS`.
struct Paced {
    idle_cpu: Duration,
    busy_cpu: Duration,
    busy_secs: f64,
    lines: u64,
    peak_rss_kib: u64,
}

fn agent_paced(dir: &Path, source: &Log, sink: &Sink) -> Paced {
    let lines_needed = PACED_RATE * PACED_SECONDS;
    // Lines to append, in chunks of one tick, taken from the generated log
    // (its CSV header, if any, left out).
    let per_tick = (PACED_RATE as u128 * TICK.as_millis() / 1000) as usize;
    let text = std::fs::read_to_string(&source.path).expect("reading the log");
    let lines: Vec<&str> = text
        .split_inclusive('\n')
        .skip(usize::from(source.format == Format::Csv))
        .take(lines_needed as usize)
        .collect();
    assert_eq!(lines.len() as u64, lines_needed, "the log is too short");
    let chunks: Vec<String> = lines.chunks(per_tick).map(|c| c.concat()).collect();

    let live = dir.join(format!("live.{}", source.format.name()));
    let mut file = File::create(&live).expect("creating the live log");
    let metrics_port = free_port();
    let config = agent_config(
        dir,
        &live,
        source.format,
        sink,
        metrics_port,
        Reading {
            batch_events: 1000,
            from_beginning: false,
            filters: "",
            extra: "",
        },
    );
    let agent = spawn_agent(&config, dir);
    let ticks = clock_ticks();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked(metrics_port).is_none() {
        assert!(
            Instant::now() < deadline,
            "the agent's /metrics never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = sample(agent.pid(), ticks).expect("the agent's /proc entries");
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let idle = sample(agent.pid(), ticks).expect("the agent's /proc entries");

    let began = Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        let due = began + TICK * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        file.write_all(chunk.as_bytes())
            .expect("appending to the live log");
    }
    let end = began + TICK * chunks.len() as u32;
    if let Some(wait) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let busy_secs = began.elapsed().as_secs_f64();
    wait_acked(metrics_port, lines_needed, Duration::from_secs(60), dir);
    let busy = sample(agent.pid(), ticks).expect("the agent's /proc entries");
    drop(agent);
    let (events, _, _) = sink.drain();
    assert_eq!(events, lines_needed, "events delivered at the paced rate");
    Paced {
        idle_cpu: idle.cpu - start.cpu,
        busy_cpu: busy.cpu - idle.cpu,
        busy_secs,
        lines: lines_needed,
        peak_rss_kib: busy.peak_rss_kib,
    }
}

/// The CPU `binary` takes to start with `filters` (compiling them) until
/// its `/metrics` answer, on an empty log.
fn startup_cpu(dir: &Path, sink: &Sink, binary: &Path, filters: &str) -> f64 {
    let empty = dir.join("empty.log");
    std::fs::write(&empty, "").expect("an empty log");
    let port = free_port();
    let config = agent_config(
        dir,
        &empty,
        Format::Combined,
        sink,
        port,
        Reading {
            batch_events: 1000,
            from_beginning: true,
            filters,
            extra: "",
        },
    );
    let agent = spawn_binary(binary, &config, dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/metrics").is_empty() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    sample(agent.pid(), clock_ticks())
        .expect("the agent's /proc entries")
        .cpu
        .as_secs_f64()
}

/// The size of `binary` without its symbols and line tables (`strip`), or
/// as built when `strip` is missing.
fn stripped_size(binary: &Path, dir: &Path) -> u64 {
    let out = dir.join("stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    let size = std::fs::metadata(if ok { &out } else { binary }).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&out);
    size
}

/// Every sample of a metric family: (labels, value).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| Some((labels.to_owned(), value.parse().ok()?)))?
        })
        .collect()
}

/// The filter rows: the combined log through agents with 0, 1 and 3
/// shipped filters, and through an agent built without the `wasm` feature
/// (`LOGMON_AGENT_NOWASM_BIN`, which `make bench` builds), best of `runs`.
fn filter_table(dir: &Path, log: &Log, sink: &Sink, runs: u64) {
    let nowasm = std::env::var_os("LOGMON_AGENT_NOWASM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            agent_bin()
                .parent()
                .and_then(Path::parent)
                .map(|t| t.join("agent-nowasm/release/logmon-agent"))
                .unwrap_or_default()
        });

    let cases: Vec<(String, PathBuf, String)> = vec![
        (
            "agent without the wasm feature".into(),
            nowasm.clone(),
            String::new(),
        ),
        (
            "agent, no filter (baseline)".into(),
            agent_bin(),
            String::new(),
        ),
        (
            "agent, a filter that keeps all (hostile, calm)".into(),
            agent_bin(),
            format!(
                "filters = [{{ component = {:?} }}]",
                logmon_agent::filter::HOSTILE_PATH
            ),
        ),
        (
            "agent, drop".into(),
            agent_bin(),
            format!("filters = [{DROP}]"),
        ),
        (
            "agent, drop + redact-clients + label".into(),
            agent_bin(),
            three_filters(),
        ),
    ];
    let mut best: Vec<Option<(Throughput, String)>> = vec![None; cases.len()];
    let mut peak = vec![0u64; cases.len()];
    let mut start = vec![f64::INFINITY; cases.len()];
    for _ in 0..runs {
        for (c, (_, binary, filters)) in cases.iter().enumerate() {
            if !binary.is_file() {
                continue;
            }
            start[c] = start[c].min(startup_cpu(dir, sink, binary, filters));
            let run = filtered_throughput(dir, log, sink, 1000, binary, filters, None);
            peak[c] = peak[c].max(run.0.process.peak_rss_kib);
            if best[c].as_ref().is_none_or(|b| run.0.secs < b.0.secs) {
                best[c] = Some(run);
            }
        }
    }
    let baseline = best[1]
        .as_ref()
        .expect("the baseline ran")
        .0
        .process
        .cpu
        .as_secs_f64()
        - start[1];
    let mut table = Table::new(&[
        "combined, 1,000 events/batch",
        "best time (s)",
        "lines/s",
        "CPU (s)",
        "start-up CPU (s)",
        "CPU us/line after start",
        "x CPU no filter",
        "chain ns/line",
        "peak RSS (MiB)",
        "stripped binary (MiB)",
    ]);
    for (c, (name, binary, _)) in cases.iter().enumerate() {
        let Some((run, metrics)) = &best[c] else {
            table.row(vec![
                format!("{name}: skipped, {} missing", binary.display()),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            continue;
        };
        let cpu = run.process.cpu.as_secs_f64();
        let nanos: f64 = samples(metrics, "logmon_agent_filter_nanoseconds_total")
            .iter()
            .map(|(_, v)| v)
            .sum();
        let size = stripped_size(binary, dir);
        let after = cpu - start[c];
        table.row(vec![
            name.clone(),
            format!("{:.4}", run.secs),
            thousands(log.events as f64 / run.secs),
            format!("{cpu:.2}"),
            format!("{:.2}", start[c]),
            format!("{:.3}", after * 1e6 / log.events as f64),
            format!("{:.2}", after / baseline),
            if nanos > 0.0 {
                format!("{:.0}", nanos / log.events as f64)
            } else {
                "-".into()
            },
            mib(peak[c]),
            format!("{:.1}", size as f64 / (1 << 20) as f64),
        ]);
    }
    table.print();
    if let Some((_, metrics)) = &best[4] {
        let per = |name: &str| samples(metrics, name);
        let (nanos, events) = (
            per("logmon_agent_filter_nanoseconds_total"),
            per("logmon_agent_filter_events_total"),
        );
        let each: Vec<String> = nanos
            .iter()
            .zip(&events)
            .map(|((labels, n), (_, e))| {
                let filter = labels
                    .split("filter=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?");
                format!("{filter} {:.0} ns", n / e.max(1.0))
            })
            .collect();
        println!("per filter of the chain, per event: {}", each.join(", "));
    }
    println!();
    println!(
        "edge filters: \"chain ns/line\" = the agent's logmon_agent_filter_nanoseconds_total summed over the chain / lines (input, call, verdict); start-up CPU = the agent's CPU until /metrics answer on an empty log (compiling its filters), taken off before \"x CPU no filter\"; target: three filters <= 1.30 x the CPU of no filter"
    );
    println!();
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn main() {
    let lines = env_number("BENCH_LINES", 1_000_000);
    let runs = env_number("BENCH_RUNS", 2).max(1);
    let pinned = pin_self_to(1);
    let dir = tempfile::Builder::new()
        .prefix("logmon-bench-agent-")
        .tempdir()
        .expect("a temporary directory");
    let started = Instant::now();
    let logs = [
        generate_log(dir.path(), Format::Combined, lines),
        generate_log(dir.path(), Format::Csv, lines),
    ];
    let sink = Sink::start();
    if std::env::var("BENCH_AGENT_ONLY").as_deref() == Ok("filters") {
        filter_table(dir.path(), &logs[0], &sink, runs);
        return;
    }
    if std::env::var("BENCH_AGENT_ONLY").as_deref() == Ok("collector") {
        let mut best: Option<Throughput> = None;
        for _ in 0..runs {
            let run = agent_throughput(dir.path(), &logs[0], &sink, 1000);
            if best.is_none_or(|b| run.secs < b.secs) {
                best = Some(run);
            }
        }
        collector_table(dir.path(), &logs[0], runs, best);
        return;
    }
    let tls_sink = Sink::start_tls(dir.path());
    println!(
        "agent throughput: the release logmon-agent {}, {} CPUs, this process (sink, baselines, writer) {}; logs generated in {:.2} s",
        if cpus() > 1 {
            "pinned to CPU 0 (taskset -c 0)"
        } else {
            "on the only CPU"
        },
        cpus(),
        if pinned {
            "pinned to CPU 1"
        } else {
            "not pinned"
        },
        started.elapsed().as_secs_f64()
    );
    for log in &logs {
        println!(
            "  {}: {} lines, {} bytes ({:.1} B/line)",
            log.format.name(),
            log.events,
            log.bytes,
            log.bytes as f64 / log.events as f64
        );
    }
    println!(
        "best of {runs} runs each, file in the page cache; \"x read\" = time / read-baseline time of the same file in this run"
    );
    println!();

    // (format index, events per batch, over TLS) of each agent row.
    let cases = [
        (0usize, 1000u64, false),
        (0, 1000, true),
        (0, 10_000, false),
        (1, 1000, false),
    ];
    let stages = [
        (Stage::Tail, "Tailer::poll"),
        (Stage::Parse, "Tailer::poll + parse"),
        (Stage::Encode, "Tailer::poll + parse + wire::Encoder"),
    ];
    let mut read_best = [f64::INFINITY; 2];
    let mut stage_best = [[f64::INFINITY; 3]; 2];
    let mut best: Vec<Option<Throughput>> = vec![None; cases.len()];
    let mut peak_rss = vec![0u64; cases.len()];
    for _ in 0..runs {
        for (i, log) in logs.iter().enumerate() {
            let (n, secs) = read_lines(&log.path);
            assert_eq!(n, log.events + u64::from(log.format == Format::Csv));
            read_best[i] = read_best[i].min(secs);
            for (k, &(which, _)) in stages.iter().enumerate() {
                stage_best[i][k] = stage_best[i][k].min(stage(log, which));
            }
        }
        for (c, &(i, batch, tls)) in cases.iter().enumerate() {
            let to = if tls { &tls_sink } else { &sink };
            let run = agent_throughput(dir.path(), &logs[i], to, batch);
            peak_rss[c] = peak_rss[c].max(run.process.peak_rss_kib);
            if best[c].is_none_or(|b| run.secs < b.secs) {
                best[c] = Some(run);
            }
        }
    }

    let mut table = Table::new(&[
        "run",
        "best time (s)",
        "lines/s",
        "CPU (s)",
        "lines/CPU-s",
        "peak RSS (MiB)",
        "wire B/event",
        "x read",
    ]);
    for (i, log) in logs.iter().enumerate() {
        let secs = read_best[i];
        table.row(vec![
            format!("read lines, {} (baseline)", log.format.name()),
            format!("{secs:.4}"),
            thousands(log.events as f64 / secs),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "1.00".into(),
        ]);
        for (k, &(_, name)) in stages.iter().enumerate() {
            let t = stage_best[i][k];
            table.row(vec![
                format!("in process: {name}"),
                format!("{t:.4}"),
                thousands(log.events as f64 / t),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{:.2}", t / secs),
            ]);
        }
        for (c, &(li, batch, tls)) in cases.iter().enumerate() {
            if li != i {
                continue;
            }
            let run = best[c].expect("a run");
            let cpu = run.process.cpu.as_secs_f64();
            table.row(vec![
                format!(
                    "agent, {}, {} events/batch{}",
                    log.format.name(),
                    thousands(batch as f64),
                    if tls { ", over TLS" } else { "" }
                ),
                format!("{:.4}", run.secs),
                thousands(log.events as f64 / run.secs),
                format!("{cpu:.2}"),
                thousands(log.events as f64 / cpu),
                mib(peak_rss[c]),
                format!("{:.1}", run.body_bytes as f64 / log.events as f64),
                format!("{:.2}", run.secs / secs),
            ]);
        }
    }
    table.print();
    println!();
    let cpu_of = |c: usize| best[c].expect("a run").process.cpu.as_secs_f64();
    println!(
        "TLS: the agent's CPU per line over TLS = {:.3} x plain HTTP (combined, 1,000 events/batch, this run); target <= 1.10",
        cpu_of(1) / cpu_of(0)
    );
    println!(
        "targets: >= 1,000,000 lines/s on one core; peak RSS <= 20 MiB. CPU (s) = the agent's utime+stime for the run; peak RSS = VmHWM, the most over the runs"
    );
    println!();

    filter_table(dir.path(), &logs[0], &sink, runs);
    collector_table(dir.path(), &logs[0], runs, best[0]);

    let paced = agent_paced(dir.path(), &logs[0], &sink);
    // The baseline's cost of reading as many lines, from its best time.
    let read_cost = read_best[0] * paced.lines as f64 / logs[0].events as f64;
    let percent = |cpu: Duration, secs: f64| 100.0 * cpu.as_secs_f64() / secs;
    let mut table = Table::new(&[
        "agent, combined, default config",
        "wall (s)",
        "lines",
        "CPU (s)",
        "% of a core",
        "x read",
    ]);
    table.row(vec![
        format!("idle, {IDLE_SECONDS} s"),
        format!("{:.2}", IDLE_SECONDS as f64),
        "0".into(),
        format!("{:.2}", paced.idle_cpu.as_secs_f64()),
        format!("{:.2}", percent(paced.idle_cpu, IDLE_SECONDS as f64)),
        "-".into(),
    ]);
    table.row(vec![
        format!(
            "{} lines/s for {PACED_SECONDS} s",
            thousands(PACED_RATE as f64)
        ),
        format!("{:.2}", paced.busy_secs),
        thousands(paced.lines as f64),
        format!("{:.2}", paced.busy_cpu.as_secs_f64()),
        format!("{:.2}", percent(paced.busy_cpu, paced.busy_secs)),
        format!("{:.2}", paced.busy_cpu.as_secs_f64() / read_cost),
    ]);
    table.print();
    println!();
    println!(
        "target: <= 3 % of a core at 10,000 lines/s. CPU from /proc/<pid>/stat ({} ticks/s), including the acknowledgement of the last batch; \"x read\" = CPU / the baseline's time to read as many lines; peak RSS {} MiB",
        clock_ticks(),
        mib(paced.peak_rss_kib)
    );
}
