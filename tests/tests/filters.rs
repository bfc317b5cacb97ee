//! Edge filters end to end, with the real binaries and a real InfluxDB: an
//! agent runs `drop` + `redact-clients` + `label` on one source, a trapping
//! filter (policy `pass`) on a second and an endless one (policy `drop`) on
//! a third; InfluxDB holds exactly what a brute-force model of the filters
//! gives, the agent's `/metrics` counts exactly the difference, and every
//! file is acknowledged to its end.

use logmon_tests::harness::{Running, free_port, http_get, wait_for_health};
use logmon_tests::influx::InfluxServer;
use logmon_tests::{agent_bin, collector_bin};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One generated request of the filtered source.
#[derive(Debug, Clone)]
struct Line {
    client: String,
    path: String,
    status: u16,
    agent: &'static str,
    bytes: u64,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `n` requests, bytes `base + i` (unique: the key InfluxDB rows are
/// matched by), from a seeded generator.
fn generate(n: u64, base: u64, seed: u64) -> Vec<Line> {
    let mut rng = logmon_tests::harness::Rng(seed);
    let paths = [
        "/healthz",
        "/api/user",
        "/api/order?id=7",
        "/static/app.css",
        "/static/logo.png",
        "/index.html",
        "/blog/post-1",
    ];
    let agents = [
        "Mozilla/5.0 (X11)",
        "curl/8.5",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
    ];
    (0..n)
        .map(|i| {
            let r = rng.next_u64();
            Line {
                client: if r.is_multiple_of(11) {
                    format!("2001:db8:{:x}:{:x}::{:x}", r % 5, (r >> 8) % 3, i)
                } else {
                    format!("10.{}.{}.{}", r % 4, (r >> 8) % 6, (r >> 16) % 250)
                },
                path: paths[(r >> 24) as usize % paths.len()].to_owned(),
                status: [200, 200, 304, 404, 500][(r >> 32) as usize % 5],
                agent: agents[(r >> 40) as usize % agents.len()],
                bytes: base + i,
            }
        })
        .collect()
}

fn write_log(path: &Path, lines: &[Line]) {
    let stamp = logmon_tests::harness::clf_time(now() - 2);
    let mut text = String::new();
    for l in lines {
        text.push_str(&format!(
            "{} - - [{stamp}] \"GET {} HTTP/1.1\" {} {} \"-\" \"{}\"\n",
            l.client, l.path, l.status, l.bytes, l.agent
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// The model of `drop` (path prefix /healthz, user agent "bot"),
/// `redact-clients` (prefix mode, /24 and /48) and `label` (route=api for
/// ^/api/, static for \.(css|png)$, page otherwise): what InfluxDB must
/// hold, by bytes: (client, path, labels).
fn model(lines: &[Line]) -> BTreeMap<u64, (String, String, String)> {
    lines
        .iter()
        .filter(|l| !l.path.starts_with("/healthz") && !l.agent.to_lowercase().contains("bot"))
        .map(|l| {
            let client = match l.client.parse::<std::net::IpAddr>().unwrap() {
                std::net::IpAddr::V4(a) => {
                    std::net::Ipv4Addr::from(u32::from(a) & 0xffff_ff00).to_string()
                }
                std::net::IpAddr::V6(a) => {
                    std::net::Ipv6Addr::from(u128::from(a) & !((1u128 << 80) - 1)).to_string()
                }
            };
            let route = if l.path.starts_with("/api/") {
                "api"
            } else if l.path.ends_with(".css") || l.path.ends_with(".png") {
                "static"
            } else {
                "page"
            };
            (l.bytes, (client, l.path.clone(), format!("route={route}")))
        })
        .collect()
}

fn metric(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn filters_ship_exactly_what_the_model_keeps() {
    let influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let filtered = generate(3_000, 1_000_000, 0x5eed_00f1);
    let trapped = generate(700, 2_000_000, 0x5eed_00f2);
    let spun = generate(300, 3_000_000, 0x5eed_00f3);
    write_log(&logs.join("web.log"), &filtered);
    write_log(&logs.join("trap.log"), &trapped);
    write_log(&logs.join("spin.log"), &spun);

    let port = free_port();
    let _collector = Running(
        Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "secret", "--influx-url", &influx.url()])
            .args(["--influx-db", "logmon"])
            .arg("--data-dir")
            .arg(dir.path().join("collector"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("collector.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_health(port);
    let metrics_port = free_port();
    let hostile = logmon_agent::filter::HOSTILE_PATH;
    let config = format!(
        r#"
collector_urls = ["http://127.0.0.1:{port}"]
token = "secret"
checkpoint_dir = {checkpoints:?}
metrics_listen = "127.0.0.1:{metrics_port}"
batch_max_events = 250

[tail]
start_at = "beginning"

[[sources]]
name = "web"
include = [{web:?}]
format = "combined"
filters = [
  {{ component = "drop", params = {{ path_prefix = ["/healthz"], user_agent = "bot" }} }},
  {{ component = "redact-clients", params = {{ mode = "prefix", ipv4_prefix = 24, ipv6_prefix = 48 }} }},
  {{ component = "label", params = {{ key = "route", patterns = 'api=^/api/; static=\.(css|png)$', default = "page" }} }},
]

[[sources]]
name = "trap"
include = [{trap:?}]
format = "combined"
filters = [{{ component = {hostile:?}, params = {{ mode = "trap" }}, on_error = "pass" }}]

[[sources]]
name = "spin"
include = [{spin:?}]
format = "combined"
filters = [{{ component = {hostile:?}, params = {{ mode = "spin" }}, on_error = "drop", deadline_ms = 20 }}]
"#,
        checkpoints = dir.path().join("agent").display().to_string(),
        web = logs.join("web.log").display().to_string(),
        trap = logs.join("trap.log").display().to_string(),
        spin = logs.join("spin.log").display().to_string(),
    );
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let agent_err = dir.path().join("agent.err");
    let _agent = Running(
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_err).unwrap())
            .spawn()
            .unwrap(),
    );

    let want = model(&filtered);
    let expected = (want.len() + trapped.len()) as i64;
    let count =
        || influx.scalar(r#"SELECT count("bytes") FROM "logmon"."logmon_hot"."http_requests""#);
    let metrics = || http_get(metrics_port, "/metrics");
    let sizes: u64 = ["web.log", "trap.log", "spin.log"]
        .iter()
        .map(|f| std::fs::metadata(logs.join(f)).unwrap().len())
        .sum();
    let acked = || -> f64 {
        metric(&metrics(), "logmon_agent_file_acked_offset_bytes")
            .iter()
            .map(|(_, v)| v)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while (count() < expected || acked() < sizes as f64) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    let agent_log = std::fs::read_to_string(&agent_err).unwrap_or_default();
    assert_eq!(count(), expected, "agent's log:\n{agent_log}");
    // Every file is acknowledged to its end: what filters dropped is handled.
    assert_eq!(acked(), sizes as f64, "{}", metrics());

    // The filtered source: exactly the model's events, changed as it says.
    let rows = influx.rows(
        r#"SELECT "bytes", "client", "path", "labels" FROM "logmon"."logmon_hot"."http_requests" WHERE "bytes" < 2000000"#,
    );
    let got: BTreeMap<u64, (String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or_default().to_owned();
            (r[1].as_i64().unwrap() as u64, (s(2), s(3), s(4)))
        })
        .collect();
    assert_eq!(got.len(), rows.len(), "no event stored twice");
    assert_eq!(got, want);

    // The trapping filter passed its source through unchanged.
    let in_range = |field: &str| {
        influx.scalar(&format!(
            r#"SELECT count("{field}") FROM "logmon"."logmon_hot"."http_requests" WHERE "bytes" >= 2000000"#
        ))
    };
    assert_eq!(in_range("bytes"), trapped.len() as i64);
    assert_eq!(in_range("labels"), 0);

    let text = metrics();
    let filtered_total = metric(&text, "logmon_agent_events_filtered_total");
    let dropped = (filtered.len() - want.len() + spun.len()) as f64;
    assert_eq!(
        filtered_total,
        vec![("logmon_agent_events_filtered_total".to_owned(), dropped)]
    );
    let by = |name: &str, source: &str| -> f64 {
        metric(&text, name)
            .iter()
            .filter(|(k, _)| k.contains(&format!("source=\"{source}\"")))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        by("logmon_agent_filter_dropped_total", "web"),
        (filtered.len() - want.len()) as f64
    );
    assert_eq!(by("logmon_agent_filter_errors_total", "web"), 0.0);
    let trap_calls = by("logmon_agent_filter_calls_total", "trap");
    assert!(
        trap_calls >= 3.0,
        "700 events in batches of at most 250: {text}"
    );
    assert_eq!(by("logmon_agent_filter_errors_total", "trap"), trap_calls);
    assert_eq!(by("logmon_agent_filter_dropped_total", "trap"), 0.0);
    assert_eq!(
        by("logmon_agent_filter_dropped_total", "spin"),
        spun.len() as f64
    );
    assert_eq!(
        by("logmon_agent_filter_errors_total", "spin"),
        by("logmon_agent_filter_calls_total", "spin")
    );
    // Failures are reported once per burst, with the policy.
    let reports: Vec<&str> = agent_log
        .lines()
        .filter(|l| l.contains("edge filter failed"))
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "one report per failing filter:\n{agent_log}"
    );
    assert!(
        reports
            .iter()
            .any(|l| l.contains("trapped") && l.contains("passed unfiltered")),
        "{agent_log}"
    );
    assert!(
        reports
            .iter()
            .any(|l| l.contains("overran its 20 ms deadline") && l.contains("batch dropped")),
        "{agent_log}"
    );
}
