//! No missed files, end to end: files that have a matching name only
//! briefly, and a copytruncated file whose first lines come back identical,
//! through the real agent, collector and InfluxDB.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logmon_tests::agent_bin;
use logmon_tests::harness::{Rng, Running, append_text, chaos_seed, clf_time, free_port, http_get};
use logmon_tests::influx::InfluxServer;

use super::start_collector;

const COUNT: &str = r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests""#;

fn agent(collector: u16, logs: &Path, state: &Path, metrics: u16) -> Running {
    Running(
        Command::new(agent_bin())
            .args(["--collector", &format!("http://127.0.0.1:{collector}")])
            .args(["--token", "secret"])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(state.with_extension("err")).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// InfluxDB, a collector and an agent tailing `logs/*.log`.
struct Site {
    influx: InfluxServer,
    dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    metrics: u16,
    _collector: Running,
    _agent: Running,
}

impl Site {
    fn start() -> Site {
        let influx = InfluxServer::start();
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let port = free_port();
        let collector = start_collector(port, &dir.path().join("collector"), &influx.url());
        let metrics = free_port();
        let agent = agent(port, &logs, &dir.path().join("agent"), metrics);
        std::thread::sleep(Duration::from_millis(500));
        Site {
            influx,
            dir,
            logs,
            metrics,
            _collector: collector,
            _agent: agent,
        }
    }
}

fn lines(tag: &str, second: i64, range: std::ops::Range<u64>) -> String {
    let stamp = clf_time(second);
    range
        .map(|i| {
            format!(
                "10.1.0.{} - - [{stamp}] \"GET /{tag}/{i} HTTP/1.1\" 200 {}\n",
                i % 250,
                10 + i
            )
        })
        .collect()
}

fn wait_for_count(influx: &InfluxServer, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = influx.scalar(COUNT);
    while got < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = influx.scalar(COUNT);
    }
    // Nothing more arrives later either.
    std::thread::sleep(Duration::from_millis(1500));
    influx.scalar(COUNT)
}

fn metric(port: u16, name: &str) -> u64 {
    let text = http_get(port, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A file created and renamed out of the glob within 200 ms, a hundred times
/// in a row, is read every time, one-line files included: the rescan (every
/// second) alone misses most of them.
#[test]
fn files_created_and_renamed_away_within_200_ms_are_read_every_time() {
    let site = Site::start();
    let (influx, dir, logs, metrics) = (&site.influx, &site.dir, &site.logs, site.metrics);

    let mut rng = Rng(chaos_seed("file lifetimes"));
    let now = logmon_tests::harness::unix_now() as i64;
    let live = logs.join("app.log");
    let mut longest = Duration::ZERO;
    // Every fifth file has one line only: it never completes its head (two
    // lines) and is known by that line once it has left its name.
    let mut written = 0;
    for i in 0..100u64 {
        let born = Instant::now();
        let n = if i % 5 == 0 { 1 } else { 3 };
        written += n;
        append_text(&live, &lines(&format!("f{i}"), now - 1, 0..n));
        std::thread::sleep(Duration::from_secs_f64(rng.seconds(0.0, 0.15)));
        std::fs::rename(&live, logs.join(format!("app.log.{i}"))).unwrap();
        longest = longest.max(born.elapsed());
    }
    eprintln!("longest time a file had its name: {longest:?}");

    assert_eq!(written, 260);
    let stored = wait_for_count(influx, 260);
    let err = std::fs::read_to_string(dir.path().join("agent.err")).unwrap_or_default();
    assert_eq!(stored, 260, "agent log:\n{err}");
    let paths = influx
        .scalar(r#"SELECT count(DISTINCT "path") FROM "logmon"."logmon_hot"."http_requests""#);
    assert_eq!(paths, 260);
    eprintln!(
        "files found by events before a rescan: {}",
        metric(metrics, "logmon_agent_files_found_by_events_total")
    );
    assert_eq!(metric(metrics, "logmon_agent_file_event_sources"), 1);
}

/// logrotate's copytruncate of a log whose first two lines come back
/// byte-identical: the new content is a new stream (a generation), so the
/// collector's high-water mark of the old one does not drop it as resent.
#[test]
fn a_copytruncated_log_whose_first_lines_come_back_identical_loses_no_line() {
    let site = Site::start();
    let (influx, dir, logs, metrics) = (&site.influx, &site.dir, &site.logs, site.metrics);

    let now = logmon_tests::harness::unix_now() as i64;
    let live = logs.join("access.log");
    let head = lines("same-start", now - 2, 0..2);
    append_text(&live, &format!("{head}{}", lines("old", now - 2, 0..50)));
    assert_eq!(wait_for_count(influx, 52), 52);

    std::fs::copy(&live, logs.join("access.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    // More than the old content, so a resumed offset would also cut it.
    append_text(&live, &format!("{head}{}", lines("new", now - 1, 0..80)));

    let stored = wait_for_count(influx, 52 + 82);
    let err = std::fs::read_to_string(dir.path().join("agent.err")).unwrap_or_default();
    assert_eq!(stored, 52 + 82, "agent log:\n{err}");
    let section = |s: &str| {
        influx.scalar(&format!(
            r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests" WHERE "section" = '/{s}'"#
        ))
    };
    assert_eq!(
        (section("same-start"), section("old"), section("new")),
        (4, 50, 80)
    );
    assert_eq!(metric(metrics, "logmon_agent_file_truncations_total"), 1);
    assert_eq!(metric(metrics, "logmon_agent_file_generations_total"), 1);
    assert_eq!(metric(metrics, "logmon_agent_batches_conflicted_total"), 0);
}
