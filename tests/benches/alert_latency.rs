//! Alert latency with the real binaries: from the line appended to a log
//! file that makes a second cross the `high-traffic` threshold, to the
//! collector printing that alert on its console (`make bench`).
//!
//! One writer appends CSV lines stamped with the wall-clock second they are
//! written in. Two release `logmon-agent`s (default configuration: 200 ms
//! linger, 100 ms idle poll) tail that file; each ships to its own
//! `logmon-collector serve --output json` (no InfluxDB) with
//! `--threshold 10 --window 1`: one at the default lateness of 5 s, the
//! subject, and one at `--lateness 0`, the baseline that shows what the
//! pipeline itself costs. The engine closes a second only when the
//! event-time watermark (newest event minus lateness) passes it, so at the
//! default lateness an alert cannot be printed before about 5 s after its
//! second ends.
//!
//! Traffic alternates, second by second, between 30 lines (the average over
//! the 1 s window passes 10 at the 11th line: the alert fires for that
//! second) and 2 lines (it resolves for that second), for `BENCH_ALERT_CYCLES`
//! cycles (30 by default, one minute). Firing latency counts from the append
//! of that 11th line; resolving latency from the end of the quiet second
//! (when its count became final). The collector's stdout is read as it
//! comes, each line stamped on arrival.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logmon_tests::bench::{Running, Table, cpus, env_number, free_port, http_get, metric};
use logmon_tests::{agent_bin, collector_bin};
use serde_json::Value;

const THRESHOLD: u64 = 10;
const HIGH_LINES: u64 = 30;
const LOW_LINES: u64 = 2;
/// Quiet seconds written after the last cycle, so that its seconds close.
const TAIL_SECONDS: u64 = 8;
const HEADER: &str =
    "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n";

/// A `high-traffic` transition printed by a collector, stamped on arrival.
#[derive(Debug, Clone, Copy)]
struct Printed {
    firing: bool,
    at: i64,
    seen: Instant,
}

/// A collector and the transitions it printed so far.
struct Collector {
    _process: Running,
    lateness: u32,
    printed: Arc<Mutex<Vec<Printed>>>,
    url: String,
}

fn start_collector(dir: &Path, lateness: u32) -> Collector {
    let port = free_port();
    let mut child = Command::new(collector_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--token", "bench", "--output", "json"])
        .args(["--threshold", &THRESHOLD.to_string(), "--window", "1"])
        .args(["--lateness", &lateness.to_string()])
        .arg("--data-dir")
        .arg(dir.join(format!("collector-{lateness}")))
        .stdout(Stdio::piped())
        .stderr(File::create(dir.join(format!("collector-{lateness}.err"))).expect("stderr file"))
        .spawn()
        .expect("starting logmon-collector serve");
    let stdout = child.stdout.take().expect("the collector's stdout");
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&printed);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let seen = Instant::now();
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["kind"] == "alert" && v["rule"] == "high-traffic" {
                sink.lock().expect("printed").push(Printed {
                    firing: v["state"] == "firing",
                    at: v["at"].as_i64().expect("an alert's second"),
                    seen,
                });
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port, "/health").starts_with("HTTP/1.1 200") {
        assert!(
            Instant::now() < deadline,
            "the collector never became healthy: {}",
            std::fs::read_to_string(dir.join(format!("collector-{lateness}.err")))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Collector {
        _process: Running(child),
        lateness,
        printed,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn start_agent(dir: &Path, log: &Path, collector: &Collector) -> (Running, u16) {
    let metrics_port = free_port();
    let name = format!("agent-{}", collector.lateness);
    let child = Command::new(agent_bin())
        .args(["--collector", &collector.url, "--token", "bench"])
        .arg("--file")
        .arg(format!("{}:csv", log.display()))
        .arg("--checkpoint-dir")
        .arg(dir.join(&name))
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}.err"))).expect("stderr file"))
        .spawn()
        .expect("starting logmon-agent");
    let agent = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &http_get(metrics_port, "/metrics"),
        "logmon_agent_lines_read_total",
    )
    .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the agent's /metrics never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (agent, metrics_port)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
}

/// Sleeps until the wall clock reaches `at` (unix time).
fn sleep_until_unix(at: Duration) {
    if let Some(wait) = at.checked_sub(unix_now()) {
        std::thread::sleep(wait);
    }
}

/// What the writer did: when each loud second's threshold-crossing line was
/// appended, and when each quiet second ended.
struct Written {
    crossing: HashMap<i64, Instant>,
    quiet_ended: HashMap<i64, Instant>,
    lines: u64,
}

fn write_traffic(log: &Path, cycles: u64) -> Written {
    let mut file = OpenOptions::new()
        .append(true)
        .open(log)
        .expect("opening the log");
    let mut written = Written {
        crossing: HashMap::new(),
        quiet_ended: HashMap::new(),
        lines: 0,
    };
    let first = unix_now().as_secs() as i64 + 1;
    for k in 0..cycles * 2 + TAIL_SECONDS {
        let second = first + k as i64;
        let loud = k < cycles * 2 && k % 2 == 0;
        let n = if loud { HIGH_LINES } else { LOW_LINES };
        for i in 0..n {
            let at = Duration::from_secs(second as u64) + Duration::from_millis(1000 * i / n + 10);
            sleep_until_unix(at);
            let line = format!(
                "\"10.0.0.{}\",\"-\",\"apache\",{second},\"GET /api/user HTTP/1.0\",200,1234\n",
                i % 250
            );
            file.write_all(line.as_bytes())
                .expect("appending to the log");
            written.lines += 1;
            if loud && i == THRESHOLD {
                written.crossing.insert(second, Instant::now());
            }
        }
        sleep_until_unix(Duration::from_secs(second as u64 + 1));
        if !loud {
            written.quiet_ended.insert(second, Instant::now());
        }
    }
    written
}

/// Latencies (s) of one collector's transitions: (firing, resolving,
/// transitions that match no written second).
fn latencies(printed: &[Printed], written: &Written) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut firing, mut resolving, mut unmatched) = (Vec::new(), Vec::new(), 0);
    for p in printed {
        let from = if p.firing {
            written.crossing.get(&p.at)
        } else {
            written.quiet_ended.get(&p.at)
        };
        match from {
            Some(&from) => {
                let latency = p.seen.saturating_duration_since(from).as_secs_f64();
                if p.firing {
                    firing.push(latency);
                } else {
                    resolving.push(latency);
                }
            }
            None => unmatched += 1,
        }
    }
    (firing, resolving, unmatched)
}

/// Count, median and 99th percentile of some latencies (s).
#[derive(Debug, Clone, Copy)]
struct Summary {
    count: usize,
    p50: f64,
    p99: f64,
}

impl Summary {
    fn of(values: &mut [f64]) -> Summary {
        Summary {
            count: values.len(),
            p50: quantile(values, 0.5),
            p99: quantile(values, 0.99),
        }
    }
}

/// One collector's results.
struct Row {
    lateness: u32,
    firing: Summary,
    resolved: Summary,
    unmatched: usize,
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn main() {
    let cycles = env_number("BENCH_ALERT_CYCLES", 30);
    let dir = tempfile::Builder::new()
        .prefix("logmon-bench-alerts-")
        .tempdir()
        .expect("a temporary directory");
    let log = dir.path().join("access.csv");
    std::fs::write(&log, HEADER).expect("creating the log");
    let collectors = [
        start_collector(dir.path(), 5),
        start_collector(dir.path(), 0),
    ];
    let agents: Vec<_> = collectors
        .iter()
        .map(|c| start_agent(dir.path(), &log, c))
        .collect();
    println!(
        "alert latency: release logmon-collector serve (--output json, --threshold {THRESHOLD} --window 1, no InfluxDB) and logmon-agent (defaults), {} CPUs; {cycles} cycles of a {HIGH_LINES}-line second then a {LOW_LINES}-line second, lines stamped with the wall-clock second",
        cpus()
    );
    let written = write_traffic(&log, cycles);
    // The last transitions close up to lateness + a poll after the tail.
    std::thread::sleep(Duration::from_secs(2));
    for (agent, port) in &agents {
        let read = metric(
            &http_get(*port, "/metrics"),
            "logmon_agent_events_acked_total",
        )
        .unwrap_or(0);
        assert_eq!(read, written.lines, "agent {} acknowledged", agent.pid());
    }
    drop(agents);

    let mut rows = Vec::new();
    for c in &collectors {
        let printed = c.printed.lock().expect("printed").clone();
        let (mut firing, mut resolving, unmatched) = latencies(&printed, &written);
        rows.push(Row {
            lateness: c.lateness,
            firing: Summary::of(&mut firing),
            resolved: Summary::of(&mut resolving),
            unmatched,
        });
    }
    let (base_fire, base_resolved) = (rows[1].firing.p50, rows[1].resolved.p50);
    println!(
        "firing: from the append of the line that crossed the threshold; resolving: from the end of the quiet second. \"x lateness 0\" = p50 / p50 of the --lateness 0 collector in this run"
    );
    println!();
    let mut table = Table::new(&[
        "collector",
        "transition",
        "count",
        "p50 (s)",
        "p99 (s)",
        "x lateness 0",
    ]);
    for row in rows.iter().rev() {
        let name = if row.lateness == 0 {
            "--lateness 0 (baseline)".to_owned()
        } else {
            format!("default, --lateness {}", row.lateness)
        };
        for (kind, s, base) in [
            ("firing", row.firing, base_fire),
            ("resolved", row.resolved, base_resolved),
        ] {
            table.row(vec![
                name.clone(),
                kind.into(),
                s.count.to_string(),
                format!("{:.3}", s.p50),
                format!("{:.3}", s.p99),
                format!("{:.2}", s.p50 / base),
            ]);
        }
        if row.unmatched > 0 {
            println!(
                "note: --lateness {}: {} transitions at seconds the traffic did not cause",
                row.lateness, row.unmatched
            );
        }
    }
    table.print();
    println!();
    println!(
        "{cycles} transitions of each kind expected per collector; p99 is the nearest rank, so with fewer than 100 samples it is the largest"
    );
}
