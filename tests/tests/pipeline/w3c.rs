//! An IIS log (W3C extended, several `#Fields` blocks) read by the shipped
//! `w3c` edge parser through the real agent, collector and InfluxDB, with
//! the agent killed (SIGKILL) and restarted in the middle of a block: the
//! restarted agent replays the directives before its checkpoint, so the
//! lines after it are read with their block's columns, and every event is
//! stored exactly once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logmon_tests::agent_bin;
use logmon_tests::harness::{Running, append_text, free_port, http_get, unix_now};
use logmon_tests::influx::InfluxServer;

use super::start_collector;

const DEFAULT_FIELDS: &str = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken";
const WIDE_FIELDS: &str = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs-version cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus sc-win32-status sc-bytes time-taken";

/// `YYYY-MM-DD HH:MM:SS` of a Unix second, UTC.
fn w3c_time(second: i64) -> String {
    let (days, rem) = (second.div_euclid(86_400), second.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn header(fields: &str, second: i64) -> String {
    format!(
        "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: {}\r\n#Fields: {fields}\r\n",
        w3c_time(second)
    )
}

/// `n` lines of the default block, paths `/{tag}/{i}`.
fn default_lines(tag: &str, second: i64, range: std::ops::Range<u64>) -> String {
    let t = w3c_time(second);
    range
        .map(|i| {
            let query = if i % 3 == 0 { format!("id={i}&x=1") } else { "-".into() };
            format!(
                "{t} 10.0.0.5 GET /{tag}/{i} {query} 80 - 192.168.{}.{} Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) - {} 0 0 {}\r\n",
                i % 7,
                i % 250,
                if i % 10 == 0 { 404 } else { 200 },
                i % 500
            )
        })
        .collect()
}

/// `n` lines of the wide block, paths `/{tag}/{i}`.
fn wide_lines(tag: &str, second: i64, range: std::ops::Range<u64>) -> String {
    let t = w3c_time(second);
    range
        .map(|i| {
            format!(
                "{t} 10.0.0.5 POST /{tag}/{i} - 443 alice 10.9.{}.{} HTTP/1.1 curl/8.5.0 https://shop.example/cart shop.example {} 0 0 {} {}\r\n",
                i % 3,
                i % 250,
                if i % 4 == 0 { 500 } else { 201 },
                1000 + i,
                i % 90
            )
        })
        .collect()
}

/// A brute-force W3C reader: the (path, bytes) of each event of `text`.
fn model(text: &str) -> Vec<(String, i64)> {
    let mut fields: Option<Vec<&str>> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(names) = line.strip_prefix("#Fields:") {
            fields = Some(names.split_whitespace().collect());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(names) = &fields else { continue };
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != names.len() {
            continue;
        }
        let get = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .map(|i| values[i])
                .filter(|v| *v != "-")
        };
        let mut path = get("cs-uri-stem").unwrap().to_owned();
        if let Some(q) = get("cs-uri-query") {
            path = format!("{path}?{q}");
        }
        let bytes = get("sc-bytes").map_or(0, |b| b.parse().unwrap());
        out.push((path, bytes));
    }
    out
}

fn agent(config: &Path, err: &Path) -> Running {
    Running(
        Command::new(agent_bin())
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(err).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The sum of a metric's samples (any labels).
fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn stored(influx: &InfluxServer) -> Vec<(String, i64)> {
    influx
        .rows(r#"SELECT "path", "bytes" FROM "logmon"."logmon_hot"."http_requests""#)
        .iter()
        .map(|r| (r[1].as_str().unwrap().to_owned(), r[2].as_i64().unwrap()))
        .collect()
}

/// Waits until the collector has made its database (it does so as it
/// starts writing, and a query before then is an error).
fn wait_for_database(influx: &InfluxServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !influx
        .query("SHOW DATABASES")
        .to_string()
        .contains("\"logmon\"")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until InfluxDB holds `want` events and the agent acknowledged the
/// file to its end; then a little more, so nothing more arrives later.
fn settle(influx: &InfluxServer, metrics: u16, want: usize, size: u64) {
    let count =
        || influx.scalar(r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests""#);
    wait_for_database(influx);
    let deadline = Instant::now() + Duration::from_secs(90);
    while (count() < want as i64
        || metric(metrics, "logmon_agent_file_acked_offset_bytes") < size as f64)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past a checkpoint interval (1 s), so the checkpoint holds the end.
    std::thread::sleep(Duration::from_millis(2500));
}

#[test]
fn an_iis_log_through_the_w3c_parser_survives_a_sigkill_exactly() {
    let influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let _collector = start_collector(port, &dir.path().join("collector"), &influx.url());
    let metrics = free_port();
    let log = logs.join("u_ex240301.log");
    let config = format!(
        r#"
collector_urls = ["http://127.0.0.1:{port}"]
token = "secret"
checkpoint_dir = {checkpoints:?}
metrics_listen = "127.0.0.1:{metrics}"
batch_max_events = 40

[tail]
start_at = "beginning"

[[sources]]
name = "iis"
include = [{log:?}]
format = {{ component = "w3c" }}
"#,
        checkpoints = dir.path().join("agent").display().to_string(),
        log = log.display().to_string(),
    );
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let err = dir.path().join("agent.err");

    // Part one: two blocks (IIS restarted and logged more fields), a line
    // cut short and a blank line among them.
    let now = unix_now() as i64 - 5;
    let mut text = header(DEFAULT_FIELDS, now - 60);
    text.push_str(&default_lines("a", now - 3, 0..120));
    text.push_str("2024-03-01 00:00:01 10.0.0.5 GET /cut\r\n\r\n");
    text.push_str(&header(WIDE_FIELDS, now - 2));
    text.push_str(&wide_lines("b", now - 2, 0..130));
    append_text(&log, &text);
    let first = agent(&config_path, &err);
    let want = model(&text);
    assert_eq!(want.len(), 250);
    settle(&influx, metrics, want.len(), text.len() as u64);
    let log_text = || std::fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(
        stored(&influx).len(),
        want.len(),
        "agent log:\n{}",
        log_text()
    );
    assert_eq!(metric(metrics, "logmon_agent_lines_malformed_total"), 1.0);
    drop(first); // SIGKILL

    // Part two, while the agent is down: more lines of the wide block (no
    // new header: only a replay of the directives gives their columns),
    // then a third block.
    let mut more = wide_lines("c", now - 1, 0..70);
    more.push_str(&header(DEFAULT_FIELDS, now));
    more.push_str(&default_lines("d", now, 0..60));
    append_text(&log, &more);
    text.push_str(&more);
    let _second = agent(
        &config_path,
        &std::path::PathBuf::from(format!("{}.2", err.display())),
    );
    let want = model(&text);
    assert_eq!(want.len(), 380);
    settle(&influx, metrics, want.len(), text.len() as u64);

    let got = stored(&influx);
    let second_log = std::fs::read_to_string(format!("{}.2", err.display())).unwrap_or_default();
    assert_eq!(
        got.len(),
        want.len(),
        "no line lost or twice; agent log:\n{second_log}"
    );
    let distinct = influx
        .scalar(r#"SELECT count(DISTINCT "path") FROM "logmon"."logmon_hot"."http_requests""#);
    assert_eq!(distinct, want.len() as i64);
    let got: BTreeSet<_> = got.into_iter().collect();
    let want: BTreeSet<_> = want.into_iter().collect();
    assert_eq!(got, want);
    // The restarted agent started inside the file: one replay, and the wide
    // block's lines after the checkpoint were read with its columns.
    assert_eq!(metric(metrics, "logmon_agent_parser_replays_total"), 1.0);
    assert_eq!(metric(metrics, "logmon_agent_parser_errors_total"), 0.0);
    assert_eq!(
        metric(metrics, "logmon_agent_lines_malformed_total"),
        0.0,
        "{second_log}"
    );
}
