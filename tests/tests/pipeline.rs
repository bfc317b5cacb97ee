//! The live pipeline end to end, with the real binaries and a real InfluxDB:
//! an agent tails two files that rotate, the collector stores every request.

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
    let deadline = Instant::now() + Duration::from_secs(60);
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
