//! The shipped `traffic-drop` and `client-flood` rules, run by the real
//! `logmon-collector replay` over hand-built logs whose outage and floods are
//! known to the second.

use logmon_tests::{AlertLine, ReplayRun, State, collector_bin, csv_by_second, parse_json_output};
use std::path::Path;
use std::process::Command;

/// 2019-02-07 21:11:00 UTC.
const T0: i64 = 1_549_573_860;

/// A CSV log of `seconds` seconds from `T0`; `clients(s)` lists the requests
/// of second `s` by client.
fn csv_log(dir: &Path, seconds: i64, clients: impl Fn(i64) -> Vec<(&'static str, u64)>) -> String {
    let log = csv_by_second(dir, T0, seconds, |s| {
        clients(s)
            .into_iter()
            .map(|(client, hits)| (client, "/api/user", hits))
            .collect()
    });
    log.to_str().expect("UTF-8 path").to_owned()
}

/// Four steady clients, one request a second each: 4 req/s.
fn background() -> Vec<(&'static str, u64)> {
    vec![
        ("10.0.0.1", 1),
        ("10.0.0.2", 1),
        ("10.0.0.3", 1),
        ("10.0.0.4", 1),
    ]
}

fn replay(file: &str, rules: &[&str]) -> ReplayRun {
    let mut cmd = Command::new(collector_bin());
    cmd.args(["replay", file, "--output", "json"]);
    for rule in rules {
        cmd.args(["--rule", rule]);
    }
    let out = cmd.output().expect("running logmon-collector replay");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8 stderr");
    assert!(out.status.success(), "replay failed: {stderr}");
    let run = parse_json_output(&String::from_utf8(out.stdout).expect("UTF-8"), stderr);
    assert!(run.summary.is_some(), "no summary line");
    assert_eq!(run.quarantined, 0, "{}", run.stderr);
    run
}

/// (rule, key, state, second after `T0`) of every transition.
fn transitions(run: &ReplayRun) -> Vec<(&str, &str, State, i64)> {
    run.alerts
        .iter()
        .map(|a| (a.rule.as_str(), a.key.as_str(), a.state, a.at - T0))
        .collect()
}

/// The value and message of the transition of `rule`'s `key` to `state`.
fn assert_alert(
    run: &ReplayRun,
    (rule, key, state): (&str, &str, State),
    value: f64,
    message: &str,
) {
    let alert: &AlertLine = run
        .alerts
        .iter()
        .find(|a| a.rule == rule && a.key == key && a.state == state)
        .unwrap_or_else(|| panic!("no {rule} {key} {state:?} in {:?}", run.alerts));
    assert_eq!((alert.value, alert.message.as_str()), (value, message));
}

#[test]
fn traffic_drop_fires_on_an_outage_and_resolves_when_traffic_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // 4 req/s, silent for seconds 120..150, 4 req/s again until 200.
    let log = csv_log(dir.path(), 200, |s| {
        if (120..150).contains(&s) {
            Vec::new()
        } else {
            background()
        }
    });
    let run = replay(
        &log,
        &[
            "traffic-drop:window=10,baseline=60,fraction=0.5,min_baseline=1",
            "client-flood:limit=100,window=10",
        ],
    );
    // The recent 10 s average falls to 2 req/s (exactly half of the 4 req/s
    // in the 60 s before it) at second 124, below it at 125: fires. Traffic is
    // back at 150; the average is exactly 2 again at 154, above at 155:
    // resolves. Nothing else fires (client-flood: 10 requests per client).
    assert_eq!(
        transitions(&run),
        [
            ("traffic-drop", "", State::Firing, 125),
            ("traffic-drop", "", State::Resolved, 155),
        ]
    );
    assert_alert(
        &run,
        ("traffic-drop", "", State::Firing),
        1.6,
        "Traffic drop generated an alert - hits = 1.6 req/s, below 50% of the trailing 4 req/s, triggered at 2019-02-07 21:13:05 UTC (1549573985)",
    );
    assert_alert(
        &run,
        ("traffic-drop", "", State::Resolved),
        2.4,
        "Traffic drop alert recovered - hits = 2.4 req/s, above 50% of the trailing 4 req/s, recovered at 2019-02-07 21:13:35 UTC (1549574015)",
    );
}

#[test]
fn client_flood_fires_and_resolves_per_client() {
    let dir = tempfile::tempdir().unwrap();
    // Over the 4 req/s background: 10.0.0.66 sends 20 req/s in 20..30,
    // 10.0.0.77 15 req/s in 22..32, 10.0.0.88 10 req/s in 40..50 (exactly
    // the limit over 10 s, never above).
    let log = csv_log(dir.path(), 80, |s| {
        let mut c = background();
        if (20..30).contains(&s) {
            c.push(("10.0.0.66", 20));
        }
        if (22..32).contains(&s) {
            c.push(("10.0.0.77", 15));
        }
        if (40..50).contains(&s) {
            c.push(("10.0.0.88", 10));
        }
        c
    });
    let run = replay(&log, &["client-flood:limit=100,window=10"]);
    // .66: 100 requests at 24 (the limit), 120 at 25 fires; 100 again at 34
    // resolves. .77: 105 at 28 fires; 90 at 35 resolves.
    assert_eq!(
        transitions(&run),
        [
            ("client-flood", "10.0.0.66", State::Firing, 25),
            ("client-flood", "10.0.0.77", State::Firing, 28),
            ("client-flood", "10.0.0.66", State::Resolved, 34),
            ("client-flood", "10.0.0.77", State::Resolved, 35),
        ]
    );
    assert_alert(
        &run,
        ("client-flood", "10.0.0.66", State::Firing),
        120.0,
        "Client flood from 10.0.0.66 - 120 requests over 10 s (limit 100), triggered at 2019-02-07 21:11:25 UTC (1549573885)",
    );
    assert_alert(
        &run,
        ("client-flood", "10.0.0.77", State::Resolved),
        90.0,
        "Client flood from 10.0.0.77 recovered - 90 requests over 10 s (limit 100), recovered at 2019-02-07 21:11:35 UTC (1549573895)",
    );
}

#[test]
fn bad_parameters_keep_the_rule_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let log = csv_log(dir.path(), 5, |_| background());
    let run = replay(
        &log,
        &[
            "traffic-drop:fraction=1.5",
            "client-flood:window=0",
            "client-flood:burst=3",
        ],
    );
    for expect in [
        "fraction must be within 0 < f <= 1, got 1.5",
        "window must be 1 ..= 300 seconds, got 0",
        "unknown parameter `burst` (known: limit, window)",
    ] {
        assert!(run.stderr.contains(expect), "{expect}: {}", run.stderr);
    }
    assert!(run.alerts.is_empty());
}
