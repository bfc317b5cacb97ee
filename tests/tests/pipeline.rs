//! The live pipeline end to end, with the real binaries and a real InfluxDB:
//! an agent tails two files that rotate, the collector stores every request.

#[path = "pipeline/discovery.rs"]
mod discovery;
#[path = "pipeline/w3c.rs"]
mod w3c;

use logmon_tests::agent_bin;
use logmon_tests::collector_bin;
use logmon_tests::harness::{
    Running, WebhookSink, append_text, clf_time, free_port, http_get as get, unix_now,
    wait_for_health,
};
use logmon_tests::influx::InfluxServer;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Appends `n` CLF lines numbered from `first`, stamped a few seconds ago
/// (recent, so InfluxDB's 30-day retention keeps them).
fn append(path: &Path, tag: &str, first: u64, n: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stamp = clf_time(now - 2);
    let mut text = String::new();
    for i in first..first + n {
        text.push_str(&format!(
            "10.0.{}.{} - - [{stamp}] \"GET /{tag}/item/{i} HTTP/1.1\" 200 {}\n",
            i % 7,
            i % 200,
            100 + i
        ));
    }
    append_text(path, &text);
}

#[test]
fn lines_from_two_rotating_files_arrive_in_influxdb_exactly() {
    let influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let _collector = Running(
        Command::new(collector_bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--token",
                "secret",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("collector"))
            .args([
                "--influx-url",
                &influx.url(),
                "--influx-db",
                "logmon",
                "--output",
                "json",
            ])
            // Bursts of ~1,600 req/s separated by 2 s of silence: the alert
            // fires and resolves more than once.
            .args(["--threshold", "100", "--window", "2"])
            .stdout(std::fs::File::create(dir.path().join("collector.out")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    let metrics_port = free_port();
    let _agent = Running(
        Command::new(agent_bin())
            .args([
                "--collector",
                &format!("http://127.0.0.1:{port}"),
                "--token",
                "secret",
            ])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(dir.path().join("agent"))
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));

    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let mut total = 0u64;
    let (mut next_a, mut next_b) = (0u64, 0u64);
    for round in 0..4u64 {
        for _ in 0..4 {
            append(&a, "a", next_a, 150);
            next_a += 150;
            append(&b, "b", next_b, 90);
            next_b += 90;
            total += 240;
            std::thread::sleep(Duration::from_millis(150));
        }
        // Rotate by rename + create: a every round, b every other round. The
        // rotated names no longer match the glob; the agent finishes them
        // from the handle it holds.
        std::fs::rename(&a, logs.join(format!("a.log.{round}"))).unwrap();
        if round % 2 == 1 {
            std::fs::rename(&b, logs.join(format!("b.log.{round}"))).unwrap();
        }
        append(&a, "a", next_a, 10);
        next_a += 10;
        total += 10;
        // The agent discovers new files on its rescan (every second): a file
        // created and rotated away between two rescans would never be seen.
        // Real rotations are minutes apart; give each generation two seconds.
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(total, 4 * (4 * 240 + 10));

    let count =
        || influx.scalar(r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests""#);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < total as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    if count() != total as i64 {
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let by_section = influx.rows(
            r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests" GROUP BY "section""#,
        );
        let metrics = |p: u16| -> String {
            get(p, "/metrics")
                .lines()
                .filter(|l| !l.starts_with('#') && (l.contains("total") || l.contains("lag")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "stored {} of {total} lines (a: {next_a}, b: {next_b}; {by_section:?})\n--- agent\n{}\n{}\n--- collector\n{}\n{}",
            count(),
            metrics(metrics_port),
            metrics(port),
            read("agent.err"),
            read("collector.err")
        );
    }
    // Nothing arrives twice later either.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(), total as i64);
    // The collector's /metrics: the engine saw every event, none late; the
    // writer wrote every point.
    let metrics = get(port, "/metrics");
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(metric("logmon_engine_events_total"), total);
    assert_eq!(metric("logmon_engine_late_events_total"), 0);
    assert_eq!(metric("logmon_influx_points_total"), total);
    assert_eq!(metric("logmon_ingest_events_accepted_total"), total);
    assert!(
        metric("logmon_engine_heartbeats_total") > 0,
        "quiet files heartbeat"
    );
    assert!(metric("logmon_rule_evaluations_total{rule=\"high-traffic\"}") > 0);
    assert_eq!(metric("logmon_rule_quarantined{rule=\"high-traffic\"}"), 0);
    let rollups =
        influx.scalar(r#"SELECT sum("hits") FROM "logmon"."logmon_rollups"."http_traffic""#);
    assert_eq!(rollups, total as i64, "the per-second rollups add up");
    let a_count = influx.scalar(
        r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests" WHERE "section" = '/a'"#,
    );
    assert_eq!(a_count, next_a as i64);

    // Alert transitions: what the console printed is what InfluxDB holds.
    let printed = || -> Vec<(String, String)> {
        std::fs::read_to_string(dir.path().join("collector.out"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "alert")
            .map(|v| {
                let at = time::OffsetDateTime::from_unix_timestamp(v["at"].as_i64().unwrap())
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                (v["state"].as_str().unwrap().to_owned(), at)
            })
            .collect()
    };
    // The last recovery comes once the stream is idle and the clock moves on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let p = printed();
        if !p.is_empty() && p.last().is_some_and(|(state, _)| state == "resolved") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let expected = printed();
    assert!(
        expected.len() >= 2,
        "the bursts fire and resolve: {expected:?}"
    );
    let stored = |expected: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = influx.rows(
                r#"SELECT "state", "value" FROM "logmon"."logmon_rollups"."alerts" WHERE "rule" = 'high-traffic'"#,
            );
            if rows.len() >= expected || Instant::now() > deadline {
                return rows
                    .into_iter()
                    .map(|r| {
                        (
                            r[1].as_str().unwrap().to_owned(),
                            r[0].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    assert_eq!(stored(expected.len()), expected);

    // The JSON API: the rules with their health, the alert history.
    let body = |path: &str| -> serde_json::Value {
        let reply = get(port, path);
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let rules = body("/api/rules");
    assert_eq!(rules[0]["name"], "high-traffic");
    assert_eq!(rules[0]["params"]["threshold"], "100");
    assert!(rules[0]["health"]["evaluations"].as_u64().unwrap() > 0);
    assert_eq!(rules[0]["health"]["quarantined"], serde_json::Value::Null);
    // The view follows closed seconds within a tenth of a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alerts = body("/api/alerts");
    while alerts["active"] != serde_json::json!([]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        alerts = body("/api/alerts");
    }
    assert_eq!(alerts["active"], serde_json::json!([]), "all resolved");
    let history: Vec<(String, String)> = alerts["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| {
            (
                a["state"].as_str().unwrap().to_owned(),
                a["at_rfc3339"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(history, expected, "the API's history is what was printed");
    assert!(get(port, "/api/nothing").starts_with("HTTP/1.1 404"));
}

fn start_collector(port: u16, data: &Path, influx: &str) -> Running {
    let collector = Running(
        Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "secret", "--influx-url", influx])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    collector
}

/// InfluxDB down for 30 s, then the collector killed with SIGKILL and
/// restarted while the agent keeps going: every line is stored exactly once.
#[test]
fn influxdb_outage_and_a_collector_crash_lose_and_duplicate_nothing() {
    let mut influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let data = dir.path().join("collector");
    let mut collector = start_collector(port, &data, &influx.url());
    let metrics_port = free_port();
    let _agent = Running(
        Command::new(agent_bin())
            .args(["--collector", &format!("http://127.0.0.1:{port}")])
            .args(["--token", "secret"])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(dir.path().join("agent"))
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = logs.join("app.log");
    let count = |influx: &InfluxServer| {
        influx.scalar(r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests""#)
    };
    let wait_for = |influx: &InfluxServer, n: i64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while count(influx) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(count(influx), n, "{what}");
    };

    append(&log, "app", 0, 2_000);
    wait_for(&influx, 2_000, "before any fault");

    // InfluxDB stopped for 30 s: ingest and the engine go on, the writer waits.
    influx.stop();
    append(&log, "app", 2_000, 1_000);
    std::thread::sleep(Duration::from_secs(30));
    influx.restart();
    wait_for(&influx, 3_000, "after InfluxDB came back");

    // The collector killed (SIGKILL) mid-stream, the agent retrying meanwhile.
    append(&log, "app", 3_000, 500);
    drop(collector);
    append(&log, "app", 3_500, 500);
    std::thread::sleep(Duration::from_secs(3));
    collector = start_collector(port, &data, &influx.url());
    wait_for(&influx, 4_000, "after the collector restarted");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&influx), 4_000, "nothing stored twice");
    drop(collector);
}

/// A TCP forwarder standing between the agent and the collector, which the
/// test can cut (every connection dropped, new ones refused) and restore:
/// the collector "unreachable" while it keeps running.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (up, stop) = (Arc::clone(&up), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    if !up.load(Ordering::Relaxed) {
                        continue; // dropped: the connection is reset
                    }
                    let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let up = Arc::clone(&up);
                        std::thread::spawn(move || pipe(from, to, &up));
                    }
                }
            });
        }
        Proxy { port, up, stop }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.set_up(false);
    }
}

fn pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    up: &std::sync::atomic::AtomicBool,
) {
    use std::io::{ErrorKind, Read};
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if !up.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// What a fault scenario does to the running pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The agent SIGKILLed and restarted 3 s later from its checkpoints.
    AgentKill,
    /// The collector SIGKILLed twice (restarted 2 s and 1 s later).
    CollectorKill,
    /// InfluxDB stopped for 30 s.
    InfluxOutage,
    /// Every connection to the collector cut for 10 s.
    Unreachable,
}

/// Lines per event second `s` of the scenario: cycles of 4 busy seconds
/// (60 req/s) and 4 quiet ones (10 req/s), so high-traffic (T=30, W=2) fires
/// and resolves once per cycle.
fn scenario_rate(s: u64) -> u64 {
    if s % 8 < 4 { 60 } else { 10 }
}
const SCENARIO_SECONDS: u64 = 48;

/// `n` CLF lines stamped `second`.
fn append_at(path: &Path, second: i64, first: u64, n: u64) {
    let stamp = clf_time(second);
    let mut text = String::new();
    for i in first..first + n {
        text.push_str(&format!(
            "10.1.{}.{} - - [{stamp}] \"GET /shop/item/{i} HTTP/1.1\" 200 {}\n",
            i % 5,
            i % 250,
            200 + i % 1000
        ));
    }
    append_text(path, &text);
}

/// What a scenario left in InfluxDB.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    written: u64,
    stored: i64,
    /// Sum of the per-second rollups' hits.
    rolled_up: i64,
    /// (state, event second relative to the scenario's start), as stored.
    transitions: Vec<(String, i64)>,
    /// The same, as received by a webhook.
    notified: Vec<(String, i64)>,
}

fn spawn_collector(
    port: u16,
    data: &Path,
    influx: &str,
    db: &str,
    out: &Path,
    webhook: u16,
) -> Running {
    let c = Running(
        Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--notify",
                &format!("webhook=http://127.0.0.1:{webhook}/hook"),
            ])
            .args([
                "--token",
                "secret",
                "--influx-url",
                influx,
                "--influx-db",
                db,
            ])
            .args(["--threshold", "30", "--window", "2", "--output", "json"])
            .arg("--data-dir")
            .arg(data)
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out)
                    .unwrap(),
            )
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out.with_extension("err"))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    c
}

fn spawn_agent(collector: u16, logs: &Path, checkpoints: &Path) -> Running {
    Running(
        Command::new(agent_bin())
            .args(["--collector", &format!("http://127.0.0.1:{collector}")])
            .args(["--token", "secret", "--metrics-listen", ""])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(checkpoints)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Runs the scenario's traffic through agent → collector → InfluxDB with
/// `fault` injected, and reads back what was stored.
fn run_scenario(
    fault: Fault,
    influx: &std::sync::Mutex<InfluxServer>,
    db: &str,
) -> (Outcome, String) {
    let url = influx.lock().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("LOGMON_KEEP").is_some() {
        eprintln!("{fault:?}: {}", dir.path().display());
    }
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (data, out) = (
        dir.path().join("collector"),
        dir.path().join("collector.out"),
    );
    let port = free_port();
    let webhook = WebhookSink::start();
    let mut collector = Some(spawn_collector(port, &data, &url, db, &out, webhook.port));
    let proxy = Proxy::start(port);
    let checkpoints = dir.path().join("agent");
    let mut agent = Some(spawn_agent(proxy.port, &logs, &checkpoints));
    let log = logs.join("app.log");

    // Event time starts at a whole second a little ahead; the lines of each
    // second are written during that second of the wall clock.
    let t0 = unix_now().ceil() as i64 + 2;
    let mut written = 0u64;
    for s in 0..SCENARIO_SECONDS {
        let due = (t0 + s as i64) as f64 + 0.05;
        let wait = due - unix_now();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        match (fault, s) {
            (Fault::AgentKill, 14) => agent = None,
            (Fault::AgentKill, 17) => agent = Some(spawn_agent(proxy.port, &logs, &checkpoints)),
            (Fault::CollectorKill, 10 | 26) => collector = None,
            (Fault::CollectorKill, 12 | 27) => {
                collector = Some(spawn_collector(port, &data, &url, db, &out, webhook.port));
            }
            (Fault::InfluxOutage, 6) => influx.lock().unwrap().stop(),
            (Fault::InfluxOutage, 36) => influx.lock().unwrap().restart(),
            (Fault::Unreachable, 12) => proxy.set_up(false),
            (Fault::Unreachable, 22) => proxy.set_up(true),
            _ => {}
        }
        if s == 20 {
            // Rotation by rename and create.
            std::fs::rename(&log, logs.join("app.log.1")).unwrap();
        }
        // In three parts over the second, so that a second's lines span
        // several batches (and a crash can fall between them).
        let n = scenario_rate(s);
        for part in 0..3 {
            if part > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            let k = n / 3 + u64::from(part < n % 3);
            append_at(&log, t0 + s as i64, written, k);
            written += k;
        }
    }
    assert!(agent.is_some() && collector.is_some());

    let q = |what: &str| format!(r#"SELECT {what} FROM "{db}"."logmon_hot"."http_requests""#);
    let deadline = Instant::now() + Duration::from_secs(120);
    while influx.lock().unwrap().scalar(&q(r#"count("bytes")"#)) < written as i64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    // The last quiet phase resolves once heartbeats move time past it; then
    // the transitions are stored. Wait until the stored list stops changing.
    let transitions = || -> Vec<(String, i64)> {
        influx
            .lock()
            .unwrap()
            .rows(&format!(
                r#"SELECT "state", "value" FROM "{db}"."logmon_rollups"."alerts" WHERE "rule" = 'high-traffic'"#
            ))
            .into_iter()
            .map(|r| {
                let at = logmon_tests::influx::unix_seconds(&r[0]);
                (r[1].as_str().unwrap().to_owned(), at - t0)
            })
            .collect()
    };
    let expected = 2 * (SCENARIO_SECONDS / 8) as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while transitions().len() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(2));
    let stored = influx.lock().unwrap().scalar(&q(r#"count("bytes")"#));
    let rolled_up = influx.lock().unwrap().scalar(&format!(
        r#"SELECT sum("hits") FROM "{db}"."logmon_rollups"."http_traffic""#
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while webhook.transitions(t0).len() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = Outcome {
        written,
        stored,
        rolled_up,
        transitions: transitions(),
        notified: webhook
            .transitions(t0)
            .into_iter()
            .map(|n| (n.state, n.at))
            .collect(),
    };
    drop(agent);
    drop(collector);
    let diagnostics = format!(
        "t0 {t0}\n{}",
        std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
    );
    if std::env::var_os("LOGMON_KEEP").is_some() {
        eprintln!("{fault:?}: t0 = {t0}");
        let _ = dir.keep();
    }
    (outcome, diagnostics)
}

/// Each fault leaves the stored count exact and the alert transitions equal
/// to those of the same traffic without faults. The five runs go at once
/// (InfluxDB outage on its own server, the others sharing one).
#[test]
fn faults_lose_nothing_duplicate_nothing_and_change_no_alert() {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(InfluxServer::start()));
    let runs: Vec<_> = [
        Fault::None,
        Fault::AgentKill,
        Fault::CollectorKill,
        Fault::Unreachable,
        Fault::InfluxOutage,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, fault)| {
        let shared = std::sync::Arc::clone(&shared);
        std::thread::spawn(move || {
            let db = format!("run{i}");
            if fault == Fault::InfluxOutage {
                let own = std::sync::Mutex::new(InfluxServer::start());
                (fault, run_scenario(fault, &own, &db))
            } else {
                (fault, run_scenario(fault, &shared, &db))
            }
        })
    })
    .collect();
    let outcomes: Vec<(Fault, (Outcome, String))> =
        runs.into_iter().map(|r| r.join().unwrap()).collect();
    let baseline = &outcomes[0].1.0;
    let cycles = (SCENARIO_SECONDS / 8) as usize;
    let expected_written: u64 = (0..SCENARIO_SECONDS).map(scenario_rate).sum();
    assert_eq!(baseline.written, expected_written);
    assert_eq!(baseline.stored, expected_written as i64, "{baseline:?}");
    assert_eq!(baseline.rolled_up, expected_written as i64, "{baseline:?}");
    assert_eq!(
        baseline.transitions.len(),
        2 * cycles,
        "fires and resolves once per cycle: {:?}",
        baseline.transitions
    );
    assert_eq!(
        baseline.notified, baseline.transitions,
        "the webhook got them all"
    );
    for (fault, (outcome, diagnostics)) in &outcomes[1..] {
        assert_eq!(
            outcome, baseline,
            "{fault:?} changed the outcome; its collector said:\n{diagnostics}"
        );
    }
}

/// Traffic for the InfluxDB-down-at-start tests: `cycles` cycles of 8 s
/// from `t0`, each 4 s at 5,000 req/s then 4 s at 20 req/s (high-traffic
/// with T=1000, W=2 fires in every busy half and resolves in every quiet
/// one), every request with a path of its own. Written at once, so `t0`
/// should be a little ahead of the wall clock: the live engine counts as late
/// what is older than the seconds it has closed. Returns the event seconds,
/// one per line, in file order.
fn write_cycles(path: &Path, t0: i64, cycles: i64) -> Vec<i64> {
    let mut seconds = Vec::new();
    let mut text = String::new();
    for s in 0..cycles * 8 {
        let stamp = clf_time(t0 + s);
        let n = if s % 8 < 4 { 5_000 } else { 20 };
        for _ in 0..n {
            let i = seconds.len();
            // A pseudo-random token in each path, so the bus holds several
            // segments of these lines even compressed.
            let token = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            text.push_str(&format!(
                "10.2.{}.{} - - [{stamp}] \"GET /shop/item/{i}?s={token:016x} HTTP/1.1\" 200 {}\n",
                i % 11,
                i % 250,
                300 + token % 50_000
            ));
            seconds.push(t0 + s);
        }
    }
    append_text(path, &text);
    seconds
}

/// A collector started while its InfluxDB is down (not yet running), with
/// 1 MiB bus segments and gc every second, and an agent feeding it.
struct DownAtStart {
    dir: tempfile::TempDir,
    influx: InfluxServer,
    port: u16,
    started: Instant,
    collector: Option<Running>,
    agent: Option<Running>,
}

impl DownAtStart {
    fn start(extra: &[&str]) -> DownAtStart {
        Self::start_on(None, extra)
    }

    /// With the collector's data directory at `data` (default: in the
    /// temporary directory).
    fn start_on(data: Option<&Path>, extra: &[&str]) -> DownAtStart {
        let influx = InfluxServer::reserve();
        let dir = tempfile::tempdir().unwrap();
        let data = data.map_or_else(|| dir.path().join("collector"), Path::to_path_buf);
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let port = free_port();
        let started = Instant::now();
        let collector = Running(
            Command::new(collector_bin())
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--token", "secret", "--influx-url", &influx.url()])
                .args(["--segment-mib", "1", "--gc-every", "1"])
                .args(extra)
                .arg("--data-dir")
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("collector.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for_health(port);
        let agent = spawn_agent(port, &logs, &dir.path().join("agent"));
        std::thread::sleep(Duration::from_millis(500));
        DownAtStart {
            dir,
            influx,
            port,
            started,
            collector: Some(collector),
            agent: Some(agent),
        }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("logs").join("app.log")
    }

    fn metric(&self, name: &str) -> u64 {
        logmon_tests::bench::metric(&get(self.port, "/metrics"), name).unwrap_or(0)
    }

    /// `/health`'s status code and JSON body.
    fn health(&self) -> (u16, serde_json::Value) {
        let answer = get(self.port, "/health");
        let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, serde_json::from_str(body).unwrap_or_default())
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; collector log:\n{}",
                std::fs::read_to_string(self.dir.path().join("collector.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn segments(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("collector/bus"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
            })
            .count()
    }

    /// `SELECT what` over the stored requests; 0 before the writer created
    /// the database and its retention policies.
    fn stored(&self, what: &str) -> i64 {
        let databases = self.influx.rows("SHOW DATABASES");
        if !databases.contains(&vec![serde_json::json!("logmon")]) {
            return 0;
        }
        let policies = self.influx.rows(r#"SHOW RETENTION POLICIES ON "logmon""#);
        if !policies.iter().any(|p| p[0] == "logmon_hot") {
            return 0;
        }
        self.influx.scalar(&format!(
            r#"SELECT {what} FROM "logmon"."logmon_hot"."http_requests""#
        ))
    }
}

impl Drop for DownAtStart {
    fn drop(&mut self) {
        self.agent.take();
        self.collector.take();
    }
}

/// The collector starts while InfluxDB is not running; the agent ships more
/// than two bus segments of events, all acknowledged, and the engine reads
/// them while gc runs every second; InfluxDB starts a minute after the
/// collector. Then InfluxDB holds exactly the lines written, and a webhook
/// receiver that was down from the start too gets exactly the transitions
/// the brute-force model gives (as InfluxDB's `alerts` does).
#[test]
fn influxdb_down_at_start_loses_nothing() {
    let webhook_port = logmon_tests::harness::reserved_port();
    let notify = format!("webhook=http://127.0.0.1:{webhook_port}/hook");
    let mut site =
        DownAtStart::start(&["--threshold", "1000", "--window", "2", "--notify", &notify]);
    let t0 = unix_now() as i64 + 5;
    let seconds = write_cycles(&site.log(), t0, 10);
    let n = seconds.len() as u64;
    site.wait("every line acknowledged", Duration::from_secs(300), || {
        site.metric("logmon_ingest_events_accepted_total") == n
    });
    site.wait(
        "the engine to read every line",
        Duration::from_secs(60),
        || site.metric("logmon_engine_events_total") == n,
    );
    let segments = site.segments();
    assert!(segments > 2, "the bus holds {segments} segments");

    // A minute of outage from the collector's start, gc running throughout.
    let minute = Duration::from_secs(60);
    std::thread::sleep(minute.saturating_sub(site.started.elapsed()));
    assert_eq!(site.metric("logmon_influx_points_total"), 0);
    // The writer's target has been unreachable for more than 30 s: the
    // collector says it does not do its whole job.
    let (code, health) = site.health();
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "consumer_down", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("consumer `influx`") && reasons.contains("InfluxDB unreachable"),
        "{health}"
    );
    site.influx.restart();
    let webhook = WebhookSink::start_on(webhook_port);
    site.wait("every line in InfluxDB", Duration::from_secs(120), || {
        site.stored(r#"count("bytes")"#) >= n as i64
    });
    assert_eq!(site.stored(r#"count("bytes")"#), n as i64);
    assert_eq!(site.stored(r#"count(distinct("path"))"#), n as i64);
    assert_eq!(site.metric("logmon_influx_points_total"), n);
    assert_eq!(site.metric("logmon_influx_undecodable_total"), 0);
    assert_eq!(site.metric("logmon_engine_undecodable_total"), 0);
    assert_eq!(site.metric("logmon_engine_late_events_total"), 0);

    let model = logmon_tests::brute_force(&seconds, 1000.0, 2, 5);
    let expected: Vec<(String, i64)> = model
        .states()
        .into_iter()
        .map(|(state, at)| (format!("{state:?}").to_lowercase(), at - t0))
        .collect();
    assert_eq!(expected.len(), 20, "{expected:?}");
    site.wait(
        "every transition delivered",
        Duration::from_secs(90),
        || webhook.transitions(t0).len() >= expected.len(),
    );
    let notified: Vec<(String, i64)> = webhook
        .transitions(t0)
        .into_iter()
        .map(|t| (t.state, t.at))
        .collect();
    assert_eq!(notified, expected);
    let stored = || -> Vec<(String, i64)> {
        site.influx
            // `state` is a tag: a query must select a field with it.
            .rows(r#"SELECT "state", "value" FROM "logmon"."logmon_rollups"."alerts" WHERE "rule" = 'high-traffic'"#)
            .into_iter()
            .map(|r| {
                let at = logmon_tests::influx::unix_seconds(&r[0]);
                (r[1].as_str().unwrap().to_owned(), at - t0)
            })
            .collect()
    };
    site.wait("every transition stored", Duration::from_secs(30), || {
        stored().len() >= expected.len()
    });
    assert_eq!(stored(), expected);
    site.wait("/health to say ok again", Duration::from_secs(30), || {
        site.health() == (200, serde_json::json!({ "status": "ok" }))
    });
}

/// InfluxDB down from the start long enough for the bus to reach its
/// backlog limit: ingest answers 503 and `/health` (503 too) names the
/// `influx` consumer and how far behind it is; when InfluxDB starts, every
/// line the agent wrote is stored, none twice.
#[test]
fn a_backlog_over_its_limit_refuses_batches_and_names_the_stuck_consumer() {
    let mut site = DownAtStart::start(&["--max-backlog-mib", "1"]);
    let t0 = unix_now() as i64 + 5;
    let n = write_cycles(&site.log(), t0, 10).len() as u64;
    site.wait("backpressure", Duration::from_secs(120), || {
        site.metric(r#"logmon_ingest_batches_rejected_total{reason="backpressure"}"#) > 0
    });
    let accepted = site.metric("logmon_ingest_events_accepted_total");
    assert!(
        accepted < n,
        "{accepted} of {n} accepted under backpressure"
    );
    site.wait("/health to say why", Duration::from_secs(30), || {
        site.health().1["reasons"]
            .to_string()
            .contains("InfluxDB unreachable")
    });
    let (code, health) = site.health();
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "backpressure", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("consumer `influx` is") && reasons.contains("InfluxDB unreachable"),
        "{health}"
    );
    let influx = health["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "influx")
        .cloned()
        .unwrap_or_default();
    assert_eq!(influx["offset"], 0, "{health}");
    assert_eq!(influx["configured"], true, "{health}");
    assert!(influx["lag_bytes"].as_u64().unwrap() > 1 << 20, "{health}");
    assert!(influx["lag_records"].as_u64().unwrap() > 0, "{health}");

    site.influx.restart();
    site.wait("every line in InfluxDB", Duration::from_secs(180), || {
        site.stored(r#"count("bytes")"#) >= n as i64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(site.stored(r#"count("bytes")"#), n as i64);
    assert_eq!(site.stored(r#"count(distinct("path"))"#), n as i64);
    assert_eq!(site.metric("logmon_ingest_events_accepted_total"), n);
    site.wait("/health to say ok again", Duration::from_secs(30), || {
        site.health() == (200, serde_json::json!({ "status": "ok" }))
    });
}

/// The engine fails (fault injection: at bus record 3): the collector stops
/// taking batches, shuts down in order and exits non-zero, saying why —
/// never a collector that takes batches it no longer evaluates. Nothing
/// acknowledged is lost: started again on the same data directory, the
/// engine reads every line the agent wrote, once.
#[test]
fn a_failed_engine_stops_the_collector_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("collector");
    let port = free_port();
    let spawn = |fail: bool| {
        let mut command = Command::new(collector_bin());
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "secret", "--snapshot-every", "3600"])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join(format!("collector-{fail}.err"))).unwrap(),
            );
        if fail {
            command.env(logmon_collector::faults::ENGINE_FAIL_ENV, "3");
        }
        let child = command.spawn().unwrap();
        wait_for_health(port);
        child
    };
    let mut failing = spawn(true);
    let _agent = spawn_agent(port, &logs, &dir.path().join("agent"));
    // The agent reads a file that exists when it starts from its end.
    std::thread::sleep(Duration::from_millis(500));
    let log = logs.join("app.log");
    for i in 0..10 {
        append(&log, "app", i * 10, 10);
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = failing.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let err = std::fs::read_to_string(dir.path().join("collector-true.err")).unwrap();
            assert!(
                err.contains("fault injection is on"),
                "the collector binary has no fault injection: build it with the workspace's tests (`cargo test --workspace` turns the `fault-injection` feature on), not alone:\n{err}"
            );
            panic!("the collector is still running:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(dir.path().join("collector-true.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "the collector stopped because engine failed: fault injection: failing at bus record 3"
        ),
        "{err}"
    );

    let _collector = Running(spawn(false));
    let engine_events = || {
        logmon_tests::bench::metric(&get(port, "/metrics"), "logmon_engine_events_total")
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine_events() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        engine_events(),
        100,
        "{}\n{}",
        get(port, "/metrics"),
        std::fs::read_to_string(dir.path().join("collector-false.err")).unwrap_or_default()
    );
}

/// `serve --config` with the example file (every documented field, a few
/// changed for the test: address, data directory, InfluxDB) starts and
/// serves; `--print-config` prints what reads back as the same
/// configuration, flags applied; an unknown key is refused naming it.
#[test]
fn serve_takes_the_documented_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/collector.example.toml"),
    )
    .unwrap();
    let influx_port = logmon_tests::harness::reserved_port();
    let text = example
        .replace("127.0.0.1:8470", &format!("127.0.0.1:{port}"))
        .replace(
            "data_dir = \"logmon-data\"",
            &format!(
                "data_dir = {:?}",
                dir.path().join("data").display().to_string()
            ),
        )
        .replace("127.0.0.1:8086", &format!("127.0.0.1:{influx_port}"));
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, &text).unwrap();

    let printed = Command::new(collector_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--print-config", "--threshold", "42"])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8(printed.stdout).unwrap();
    let config: logmon_collector::config::CollectorConfig = toml::from_str(&printed).unwrap();
    let mut expected: logmon_collector::config::CollectorConfig = toml::from_str(&text).unwrap();
    expected.high_traffic.threshold = 42.0;
    assert_eq!(config, expected, "{printed}");

    let _collector = Running(
        Command::new(collector_bin())
            .args(["serve", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    let metrics = get(port, "/metrics");
    assert!(metrics.contains("logmon_consumer_configured{log=\"bus\",consumer=\"influx\"} 1"));
    assert!(
        metrics.contains("logmon_consumer_configured{log=\"outbox\",consumer=\"notify:ops\"} 1")
    );

    std::fs::write(&file, text.replace("lateness = 5", "latenes = 5")).unwrap();
    let refused = Command::new(collector_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("unknown field `latenes`"), "{err}");
}

/// `--log-format json`: the collector's log on stderr is one JSON object per
/// line, each with its level, target, message and fields; the console's
/// lines stay on stdout.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let err = dir.path().join("collector.err");
    let mut child = Command::new(collector_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--token",
            "secret",
            "--log-format",
            "json",
            "--log",
            "debug",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    wait_for_health(port);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&err).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
    }
    let listening = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("collector listening"))
        })
        .unwrap_or_else(|| panic!("no listening line in {text}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "logmon_collector::serve");
    assert_eq!(listening["listen"], format!("127.0.0.1:{port}"));
    assert!(
        lines.iter().any(|l| l["message"] == "shutting down"),
        "{text}"
    );
}

#[test]
fn the_agents_json_log_gives_each_event_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let metrics = free_port();
    // Nothing listens on the collector's port: every delivery fails.
    let collector = free_port();
    let err = dir.path().join("agent.err");
    let mut child = Command::new(agent_bin())
        .arg("--collector")
        .arg(format!("http://127.0.0.1:{collector}"))
        .arg("--file")
        .arg(format!("{}:clf", log.display()))
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--log-format", "json", "--log", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let ok = format!(
        "10.0.0.1 - - [{}] \"GET /a HTTP/1.1\" 200 5\n",
        clf_time(unix_now() as i64)
    );
    // The agent starts at the end of what the file held: append after it
    // is up (its /health answers).
    wait_for_health(metrics);
    append_text(&log, &format!("{ok}not an access log line\n{ok}"));
    let read = || std::fs::read_to_string(&err).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(read().contains("malformed line skipped") && read().contains("batch not delivered")) {
        assert!(
            Instant::now() < deadline,
            "no malformed/undelivered lines in {}",
            read()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    let text = read();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
    }
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {text}"))
    };
    let serving = find("serving /metrics and /health");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["target"], "logmon_agent");
    assert_eq!(serving["addr"], format!("127.0.0.1:{metrics}"));
    let malformed = find("malformed line skipped");
    assert_eq!(malformed["level"], "WARN");
    assert_eq!(malformed["target"], "logmon_agent::reader");
    assert_eq!(malformed["file"], log.display().to_string());
    assert_eq!(malformed["offset"], ok.len() as u64);
    let undelivered = find("batch not delivered");
    assert_eq!(undelivered["level"], "WARN");
    assert_eq!(undelivered["target"], "logmon_agent::ship");
    assert_eq!(undelivered["attempt"], 1);
    assert_eq!(undelivered["start"], 0);
    assert!(undelivered["retry_in_ms"].is_u64(), "{undelivered}");
    assert_eq!(find("shutting down")["level"], "INFO");
}

/// A tmpfs of `mib` MiB mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (having printed why) where mounting is not allowed.
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                logmon_tests::skipped(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                logmon_tests::skipped(&format!("cannot run mount: {e}"));
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes free in the filesystem holding `path` (`df`, an independent reading).
fn df_free(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until ingest refuses batches for the full disk, and checks what
/// the collector says of it.
fn assert_disk_full(site: &DownAtStart, n: u64) {
    site.wait("disk_full refusals", Duration::from_secs(120), || {
        site.metric(r#"logmon_ingest_batches_rejected_total{reason="disk_full"}"#) > 0
    });
    assert!(site.metric("logmon_disk_full_refusals_total") > 0);
    let accepted = site.metric("logmon_ingest_events_accepted_total");
    assert!(accepted < n, "{accepted} of {n} accepted on a full disk");
    let (code, health) = site.health();
    assert_eq!(code, 503, "{health}");
    assert!(
        health["reasons"].to_string().contains("under its floor"),
        "{health}"
    );
    assert!(site.metric("logmon_disk_free_bytes") < site.metric("logmon_disk_floor_bytes"));
}

/// Waits until every line is in InfluxDB, exactly once, and the collector
/// is healthy with its disk above the floor again — without a restart.
fn assert_healed(site: &DownAtStart, data: &Path, n: u64) {
    site.wait("every line in InfluxDB", Duration::from_secs(240), || {
        site.stored(r#"count("bytes")"#) >= n as i64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(site.stored(r#"count("bytes")"#), n as i64);
    assert_eq!(site.stored(r#"count(distinct("path"))"#), n as i64);
    assert_eq!(site.metric("logmon_ingest_events_accepted_total"), n);
    site.wait("/health to say ok again", Duration::from_secs(60), || {
        site.health() == (200, serde_json::json!({ "status": "ok" }))
    });
    let floor = site.metric("logmon_disk_floor_bytes");
    site.wait("the disk released", Duration::from_secs(30), || {
        df_free(data) > floor
    });
    assert_eq!(site.metric("logmon_task_restarts_total"), 0);
}

/// The bus fills a small data disk while InfluxDB is down: ingest refuses
/// batches with 503 `disk_full` before the disk is full, `/health` says so;
/// when InfluxDB starts, the writer drains, gc frees the segments, ingest
/// takes batches again and InfluxDB holds exactly the lines written.
#[test]
fn a_full_data_disk_refuses_batches_and_heals_when_its_consumer_catches_up() {
    let Some(disk) = Tmpfs::mount(8) else {
        return;
    };
    let data = disk.path().join("collector");
    let mut site = DownAtStart::start_on(Some(&data), &["--min-free-mib", "5"]);
    let t0 = unix_now() as i64 + 5;
    let n = write_cycles(&site.log(), t0, 10).len() as u64;
    assert_disk_full(&site, n);
    site.influx.restart();
    assert_healed(&site, &data, n);
}

/// The same disk filled by another process (a ballast file): refused while
/// it is there, everything stored once it is deleted.
#[test]
fn a_disk_filled_by_another_process_refuses_batches_until_space_returns() {
    let Some(disk) = Tmpfs::mount(8) else {
        return;
    };
    let data = disk.path().join("collector");
    let mut site = DownAtStart::start_on(Some(&data), &["--min-free-mib", "4"]);
    site.influx.restart();
    // Leave 1 MiB above nothing and under the 4 MiB floor.
    let ballast = disk.path().join("ballast");
    let size = df_free(disk.path()).saturating_sub(1 << 20);
    std::fs::write(&ballast, vec![0u8; size as usize]).unwrap();
    let t0 = unix_now() as i64 + 5;
    let n = write_cycles(&site.log(), t0, 10).len() as u64;
    assert_disk_full(&site, n);
    std::fs::remove_file(&ballast).unwrap();
    assert_healed(&site, &data, n);
}

/// The agent's checkpoint directory (a tmpfs) turns read-only mid-run: the
/// agent keeps shipping, says so in `/health` and `/metrics`; SIGKILLed in
/// that state and restarted once the directory is writable again, it reads
/// again from its last written checkpoint, and InfluxDB holds every line
/// exactly once.
#[test]
fn a_read_only_checkpoint_directory_loses_and_repeats_nothing() {
    let Some(disk) = Tmpfs::mount(4) else {
        return;
    };
    let checkpoints = disk.path().join("agent");
    let mut site = DownAtStart::start(&[]);
    site.influx.restart();
    // This test's own agent, with its checkpoints on the tmpfs and /health.
    site.agent.take();
    let metrics = free_port();
    let agent_err = site.dir.path().join("agent.err");
    let spawn = || {
        Running(
            Command::new(agent_bin())
                .args(["--collector", &format!("http://127.0.0.1:{}", site.port)])
                .args(["--token", "secret"])
                .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
                .arg("--file")
                .arg(format!(
                    "{}/*.log:clf",
                    site.dir.path().join("logs").display()
                ))
                .arg("--checkpoint-dir")
                .arg(&checkpoints)
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&agent_err)
                        .unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    };
    let agent_health = || -> (u16, serde_json::Value) {
        let answer = get(metrics, "/health");
        let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, serde_json::from_str(body).unwrap_or_default())
    };
    // The log appears after the agent started (a file it finds at start
    // without a checkpoint is followed from its end).
    let log = site.log();
    let mut agent = spawn();
    wait_for_health(metrics);
    std::thread::sleep(Duration::from_millis(500));
    let mut written = 0u64;
    let mut write = |n: u64| {
        append(&log, "ro", written, n);
        written += n;
        written
    };
    let accepted = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while site.metric("logmon_ingest_events_accepted_total") < n {
            assert!(
                Instant::now() < deadline,
                "{n} events not accepted; agent log:\n{}\nagent metrics:\n{}\nfiles: {:?}",
                std::fs::read_to_string(&agent_err).unwrap_or_default(),
                get(metrics, "/metrics"),
                std::fs::read_dir(site.dir.path().join("logs"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let n = write(1000);
    accepted(n);
    // Checkpoints are written every second: let one hold all of it.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(agent_health().0, 200);
    let remount = |how: &str| {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(disk.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount,{how}");
    };
    remount("ro");
    let n = write(1000);
    accepted(n);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, health) = agent_health();
        if code == 503 {
            assert_eq!(health["status"], "checkpoints_failing", "{health}");
            let reason = health["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("Read-only file system"), "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent /health stayed {code}: {health}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let agent_metric =
        |name: &str| logmon_tests::bench::metric(&get(metrics, "/metrics"), name).unwrap_or(0);
    assert_eq!(
        agent_metric("logmon_agent_checkpoints_failing"),
        1,
        "{}\n{}",
        get(metrics, "/metrics"),
        std::fs::read_to_string(&agent_err).unwrap_or_default()
    );
    assert!(agent_metric("logmon_agent_checkpoint_errors_total") >= 1);
    // Shipping went on: the second thousand was acknowledged.
    assert_eq!(agent_metric("logmon_agent_events_acked_total"), 2000);
    // One log line for the burst of failures so far, not one per attempt.
    std::thread::sleep(Duration::from_millis(3000));
    let errors = std::fs::read_to_string(&agent_err).unwrap();
    assert_eq!(
        errors.matches("checkpoints cannot be written").count(),
        1,
        "{errors}"
    );
    // A crash in that state, then the directory is writable again.
    drop(agent);
    remount("rw");
    agent = spawn();
    let n = write(1000);
    site.wait("every line in InfluxDB", Duration::from_secs(120), || {
        site.stored(r#"count("bytes")"#) >= n as i64
    });
    assert_eq!(site.stored(r#"count("bytes")"#), n as i64);
    assert_eq!(site.stored(r#"count(distinct("path"))"#), n as i64);
    println!(
        "after the restart: {} duplicate batches refused by the collector",
        site.metric("logmon_ingest_batches_duplicate_total")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent_health().0 != 200 {
        assert!(Instant::now() < deadline, "{:?}", agent_health());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
}

/// A second agent on a host whose clock is ten minutes behind (Debian's
/// faketime), writing lines ten minutes behind: the first agent's alerts are
/// exactly the brute-force ones, its seconds close as if the second agent
/// were not there (the global watermark stays with the first agent's
/// lines), the trailing agent's events count as late, and `/api/agents`
/// shows its stream ten minutes behind.
#[test]
fn an_agent_whose_clock_trails_by_ten_minutes_holds_no_one_back() {
    // libfaketime preloaded into the agent itself (not the `faketime`
    // wrapper, which would stand between the test and the process it
    // kills); the monotonic clock left true, as a host's wrong wall clock
    // leaves it.
    let Some(libfaketime) = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file()) else {
        logmon_tests::skipped("libfaketime is not installed (scripts/setup.sh installs faketime)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (logs_a, logs_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&logs_a).unwrap();
    std::fs::create_dir_all(&logs_b).unwrap();
    let webhook = WebhookSink::start();
    let port = free_port();
    let _collector = Running(
        Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "secret", "--threshold", "1000", "--window", "2"])
            .args([
                "--notify",
                &format!("webhook=http://127.0.0.1:{}/hook", webhook.port),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("collector"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("collector.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    let agent = |logs: &Path, id: &str, faked: bool| {
        let mut cmd = Command::new(agent_bin());
        if faked {
            cmd.env("LD_PRELOAD", libfaketime)
                .env("FAKETIME", "-600s")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        cmd.env("LOGMON_AGENT_ID", id)
            .args(["--collector", &format!("http://127.0.0.1:{port}")])
            .args(["--token", "secret", "--metrics-listen", ""])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(dir.path().join(format!("{id}-checkpoints")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Running(cmd.spawn().unwrap())
    };
    // No stream holds time yet, so the collector's wall clock drives it:
    // wait until it has, or the trailing lines could come before the
    // engine's first tick and set time themselves (the agent finds a new
    // file at once by inotify, within that first second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while logmon_tests::bench::metric(&get(port, "/metrics"), "logmon_engine_watermark_seconds")
        .unwrap_or(0)
        < unix_now() as u64 - 60
    {
        assert!(
            Instant::now() < deadline,
            "the engine's clock did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The trailing agent first, its file growing while the other's runs.
    let _b = agent(&logs_b, "behind", true);
    let _a = agent(&logs_a, "on-time", false);
    std::thread::sleep(Duration::from_millis(500));
    let behind = logs_b.join("app.log");
    let mut b_lines = 0u64;
    let mut write_behind = |n: u64| {
        let stamp = clf_time(unix_now() as i64 - 600);
        let text: String = (0..n)
            .map(|i| {
                format!("10.9.0.1 - - [{stamp}] \"GET /late/{b_lines}-{i} HTTP/1.1\" 200 10\n")
            })
            .collect();
        append_text(&behind, &text);
        b_lines += n;
    };
    write_behind(50);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = unix_now() as i64 + 5;
    let seconds = write_cycles(&logs_a.join("app.log"), t0, 4);
    let n = seconds.len() as u64;
    let model = logmon_tests::brute_force(&seconds, 1000.0, 2, 5);
    let expected: Vec<(String, i64)> = model
        .states()
        .into_iter()
        .map(|(state, at)| (format!("{state:?}").to_lowercase(), at - t0))
        .collect();
    assert_eq!(expected.len(), 8, "{expected:?}");
    let metrics = || get(port, "/metrics");
    let metric = |name: &str| logmon_tests::bench::metric(&metrics(), name).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    while webhook.transitions(t0).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the on-time agent's transitions, held back? {} of {}; watermark {} (t0 {t0}); events {}; agents {}; collector log:\n{}",
            webhook.transitions(t0).len(),
            expected.len(),
            metric("logmon_engine_watermark_seconds"),
            metric("logmon_engine_events_total"),
            get(port, "/api/agents"),
            std::fs::read_to_string(dir.path().join("collector.err")).unwrap_or_default()
        );
        write_behind(5);
        std::thread::sleep(Duration::from_millis(500));
    }
    let notified: Vec<(String, i64)> = webhook
        .transitions(t0)
        .into_iter()
        .map(|t| (t.state, t.at))
        .collect();
    assert_eq!(notified, expected);
    // Everything read: the on-time lines counted, the trailing ones late.
    write_behind(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric("logmon_engine_events_total") < n + b_lines {
        assert!(
            Instant::now() < deadline,
            "events {}",
            metric("logmon_engine_events_total")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric("logmon_engine_events_total"), n + b_lines);
    assert_eq!(metric("logmon_engine_late_events_total"), b_lines);
    // /api/agents: the trailing stream ten minutes behind the collector's
    // clock, the other not.
    let agents = get(port, "/api/agents");
    let body = agents.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let agents: serde_json::Value = serde_json::from_str(body).unwrap();
    let lag = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == id)
            .and_then(|a| a["streams"][0]["lag_seconds"].as_i64())
            .unwrap_or_else(|| panic!("no stream of {id}: {agents}"))
    };
    let behind_by = lag("behind");
    assert!((595..=620).contains(&behind_by), "{agents}");
    assert!(lag("on-time") < 120, "{agents}");
    // And its measured skew: how far it trails the leading stream.
    let skew = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == id)
            .and_then(|a| a["streams"][0]["skew_seconds"].as_i64())
            .unwrap_or_else(|| panic!("no skew of {id}: {agents}"))
    };
    assert_eq!(skew("on-time"), 0, "{agents}");
    assert!((595..=605).contains(&skew("behind")), "{agents}");
}

/// A child's stdout, line by line, each with the wall time it was read.
struct Lines {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(f64, String)>>>,
}

impl Lines {
    fn watch(out: impl std::io::Read + Send + 'static) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                into.lock().unwrap().push((unix_now(), line));
            }
        });
        Lines { seen }
    }

    fn all(&self) -> Vec<(f64, String)> {
        self.seen.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        self.all().into_iter().map(|(_, l)| l + "\n").collect()
    }

    /// The `kind: alert` lines as (state, second), with when each was read.
    fn alerts(&self) -> Vec<(String, i64, f64)> {
        self.all()
            .into_iter()
            .filter_map(|(at, line)| {
                let v: serde_json::Value = serde_json::from_str(&line).ok()?;
                (v["kind"] == "alert" && v["rule"] == "high-traffic").then(|| {
                    (
                        v["state"].as_str().unwrap().to_owned(),
                        v["at"].as_i64().unwrap(),
                        at,
                    )
                })
            })
            .collect()
    }

    fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "no {what} in:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `replay` following a live input: with `--follow FILE` or a pipe on
/// stdin.
fn spawn_follow(input: Option<&Path>, lateness: u32) -> (Running, Lines) {
    let mut cmd = Command::new(collector_bin());
    cmd.arg("replay");
    match input {
        Some(path) => cmd.arg(path).arg("--follow").stdin(Stdio::null()),
        None => cmd.arg("-").stdin(Stdio::piped()),
    };
    let mut child = cmd
        .args([
            "--input-format",
            "clf",
            "--threshold",
            "10",
            "--window",
            "2",
        ])
        .args(["--lateness", &lateness.to_string(), "--stats-every", "1"])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::watch(child.stdout.take().unwrap());
    (Running(child), lines)
}

/// SIGTERM, then what the process printed, parsed; it must end cleanly.
fn stop_follow(mut run: Running, lines: &Lines) -> logmon_tests::ReplayRun {
    let status = Command::new("kill")
        .args(["-TERM", &run.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = run.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        exit.success(),
        "replay --follow ended with {exit}: {stderr}"
    );
    // The reader thread has the last lines once the pipe closed.
    std::thread::sleep(Duration::from_millis(200));
    logmon_tests::parse_json_output(&lines.text(), stderr)
}

/// Sleeps until `at` (unix seconds, fractional).
fn sleep_until(at: f64) {
    let now = unix_now();
    if at > now {
        std::thread::sleep(Duration::from_secs_f64(at - now));
    }
}

#[test]
fn replay_follow_closes_seconds_in_silence_like_the_live_collector() {
    const LATENESS: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("access.log");
    std::fs::write(&log, "").unwrap();

    // The live collector with the same rule, fed by an agent.
    let port = free_port();
    let serve_out = dir.path().join("serve.out");
    let _serve = Running(
        Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "secret", "--threshold", "10", "--window", "2"])
            .args(["--lateness", &LATENESS.to_string(), "--output", "json"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::fs::File::create(&serve_out).unwrap())
            .stderr(std::fs::File::create(dir.path().join("serve.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    let _agent = spawn_agent(port, &logs, &dir.path().join("checkpoints"));
    let (file_run, file_lines) = spawn_follow(Some(&log), LATENESS);
    let (mut pipe_run, pipe_lines) = spawn_follow(None, LATENESS);
    let mut pipe = pipe_run.0.stdin.take().unwrap();
    // Give the followers a moment to start reading.
    std::thread::sleep(Duration::from_millis(1500));

    // Each second's lines written in that second, stamped with it: quiet,
    // a burst over the threshold, then silence.
    let t0 = unix_now().ceil() as i64 + 1;
    let per_second = [4, 4, 4, 30, 30, 30, 30, 30];
    let mut seconds = Vec::new();
    let mut n = 0;
    for (k, &count) in per_second.iter().enumerate() {
        let second = t0 + k as i64;
        sleep_until(second as f64 + 0.2);
        let stamp = clf_time(second);
        let mut text = String::new();
        for _ in 0..count {
            text.push_str(&format!(
                "10.3.0.{} - - [{stamp}] \"GET /live/{n} HTTP/1.1\" 200 {}\n",
                n % 9,
                100 + n
            ));
            seconds.push(second);
            n += 1;
        }
        append_text(&log, &text);
        pipe.write_all(text.as_bytes()).unwrap();
        pipe.flush().unwrap();
    }
    let last = *seconds.last().unwrap();
    let model = logmon_tests::brute_force_until(&seconds, 10.0, 2, LATENESS, Some(last + 10));
    let expected = model.states();
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert_eq!(expected[1].1, last + 2, "the recovery falls in the silence");
    // Nothing more is written: the recovery must come from the wall clock.
    for (what, lines) in [("--follow", &file_lines), ("stdin", &pipe_lines)] {
        lines.wait(
            &format!("recovery from replay {what}"),
            Duration::from_secs(30),
            |l| l.alerts().len() >= 2,
        );
        let (_, at, read) = lines.alerts()[1].clone();
        println!(
            "replay {what}: the recovery at second {at} was printed {:.2} s after its second ended (lateness {LATENESS} s)",
            read - (at + 1) as f64
        );
    }
    let serve_alerts = || -> Vec<(logmon_tests::State, i64)> {
        std::fs::read_to_string(&serve_out)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "alert" && v["rule"] == "high-traffic")
            .map(|v| {
                let state = match v["state"].as_str().unwrap() {
                    "firing" => logmon_tests::State::Firing,
                    _ => logmon_tests::State::Resolved,
                };
                (state, v["at"].as_i64().unwrap())
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve_alerts().len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "serve printed {:?}",
            serve_alerts()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(serve_alerts(), expected, "serve + agent");

    drop(pipe);
    // End of the pipe ends that replay by itself, with its summary.
    let exit = pipe_run.0.wait().unwrap();
    assert!(exit.success(), "{exit}");
    std::thread::sleep(Duration::from_millis(200));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut pipe_run.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let runs = [
        ("--follow", stop_follow(file_run, &file_lines)),
        (
            "stdin",
            logmon_tests::parse_json_output(&pipe_lines.text(), stderr),
        ),
    ];
    for (what, run) in runs {
        logmon_tests::assert_matches_model(&run, &model, what);
        let summary = run.summary();
        assert_eq!(summary.events, n, "{what}: {}", run.stderr);
        assert_eq!(summary.late, 0, "{what}");
        assert_eq!(summary.malformed, 0, "{what}");
        assert_eq!(run.stats_hits(), n, "{what}");
        assert_eq!(run.stderr, "", "{what}");
    }
}

#[test]
fn replay_follow_loses_no_line_across_rename_rotation_and_copytruncate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let (run, lines) = spawn_follow(Some(&log), 1);
    let mut n = 0u64;
    let mut write = |path: &Path, count: u64| {
        let stamp = clf_time(unix_now() as i64);
        let mut text = String::new();
        for _ in 0..count {
            text.push_str(&format!(
                "10.4.0.1 - - [{stamp}] \"GET /rot/{n} HTTP/1.1\" 200 7\n"
            ));
            n += 1;
        }
        append_text(path, &text);
    };
    write(&log, 100);
    std::thread::sleep(Duration::from_millis(1500));
    // Rename rotation: the old file gets a last line after the move, and a
    // new file takes the path.
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    write(&dir.path().join("access.log.1"), 7);
    write(&log, 100);
    std::thread::sleep(Duration::from_millis(2500));
    // copytruncate: the content is copied away and the file cut to zero.
    std::fs::copy(&log, dir.path().join("access.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    write(&log, 50);
    std::thread::sleep(Duration::from_millis(1500));
    write(&log, 50);
    let written = n;
    lines.wait(
        "every line in the statistics",
        Duration::from_secs(30),
        |l| {
            l.all()
                .iter()
                .filter_map(|(_, line)| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|v| v["kind"] == "stats")
                .map(|v| v["hits"].as_u64().unwrap())
                .sum::<u64>()
                >= written
        },
    );
    let run = stop_follow(run, &lines);
    assert_eq!(run.stats_hits(), written);
    assert_eq!(run.summary().events, written);
    assert_eq!(run.summary().lines, written);
    assert_eq!(run.summary().late, 0);
}
