//! Alerting end to end with the real binaries and a real InfluxDB: seven
//! rule instances (five from the configuration file, two from the watched
//! rules directory) over traffic that makes them fire and resolve, run four
//! times at once —
//!
//! - without faults (the reference);
//! - with the collector SIGKILLed six times at random moments, one of them in
//!   the middle of an engine snapshot write, and restarted;
//! - with the webhook receiver down for the first minute;
//! - with one rule added to the rules directory and another removed while
//!   traffic flows.
//!
//! The transitions (rule, key, state, event second) stored in InfluxDB and
//! received by the webhook are compared with the reference. Four more
//! instances run the Python and JavaScript `high-traffic` and `error-rate`
//! (`wasm-rules/python`, `wasm-rules/js`) beside their Rust twins, so their
//! `save`/`restore` go through the same kills: their transitions must be
//! their twins' in every run.

use logmon_tests::harness::{
    self, Notified, Rng, Running, WebhookSink, append_text, chaos_seed, clf_time, free_port,
    http_get, unix_now, wait_for_health,
};
use logmon_tests::influx::InfluxServer;
use logmon_tests::polyglot::{self, Lang};
use logmon_tests::{agent_bin, collector_bin};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of traffic: eight cycles of 8 s.
const SECONDS: i64 = 64;
/// Transitions are compared up to this event second (relative to the
/// start): after the traffic ends, the outage detector fires once for good.
const COMPARED: i64 = SECONDS + 10;

/// The configuration every run uses (the webhook's port filled in).
const CONFIG: &str = r#"
[[rules]]
component = "high-traffic"
name = "busy"
params = { threshold = 30, window = 2 }

[[rules]]
component = "high-traffic"
name = "busy-slow"
params = { threshold = 20, window = 4 }
for = "1s"
keep_firing_for = "1s"

[[rules]]
component = "error-rate"
name = "api-errors"
params = { threshold = 0.2, window = 4, min_requests = 10 }

[[rules]]
component = "client-flood"
name = "flood"
params = { limit = 60, window = 4 }

[[rules]]
component = "traffic-drop"
name = "drop"
params = { window = 2, baseline = 6, fraction = 0.4, min_baseline = 5 }

[[rules]]
component = "PY_HIGH_TRAFFIC"
name = "busy-slow-py"
params = { threshold = 20, window = 4 }
for = "1s"
keep_firing_for = "1s"

[[rules]]
component = "JS_HIGH_TRAFFIC"
name = "busy-slow-js"
params = { threshold = 20, window = 4 }
for = "1s"
keep_firing_for = "1s"

[[rules]]
component = "PY_ERROR_RATE"
name = "api-errors-py"
params = { threshold = 0.2, window = 4, min_requests = 10 }

[[rules]]
component = "JS_ERROR_RATE"
name = "api-errors-js"
params = { threshold = 0.2, window = 4, min_requests = 10 }

[[notify]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:WEBHOOK/hook"
"#;

/// Instance files of the rules directory.
const RELOAD_A: &str = "component = \"high-traffic\"\nparams = { threshold = 40, window = 1 }\n";
const RELOAD_B: &str = "component = \"high-traffic\"\nparams = { threshold = 15, window = 3 }\n";
/// When the reload run adds `reload-b` and removes `reload-a` (wall seconds
/// after the start, which the event seconds follow).
const ADD_AT: i64 = 16;
const REMOVE_AT: i64 = 40;

/// The access-log lines of event second `s` (relative), stamped `t0 + s`.
/// Cycles of 4 busy seconds (60 req/s) and 4 quiet ones (10 req/s); in busy
/// seconds of even cycles one client sends half the requests (client-flood),
/// in busy seconds of odd cycles half of `/api`'s ten requests fail
/// (error-rate).
fn lines(t0: i64, s: i64) -> Vec<String> {
    let (cycle, busy) = (s / 8, s % 8 < 4);
    let stamp = clf_time(t0 + s);
    let line = |client: String, path: String, status: u16, bytes: i64| {
        format!("{client} - - [{stamp}] \"GET {path} HTTP/1.1\" {status} {bytes}\n")
    };
    let mut out = Vec::new();
    let (total, api) = if busy { (60, 10) } else { (10, 2) };
    for i in 0..api {
        let status = if busy && cycle % 2 == 1 && i % 2 == 0 {
            500
        } else {
            200
        };
        out.push(line(
            format!("10.2.0.{i}"),
            format!("/api/v1/{i}"),
            status,
            300 + i,
        ));
    }
    let flood = if busy && cycle % 2 == 0 { 30 } else { 0 };
    for i in 0..flood {
        out.push(line(
            "10.9.9.9".into(),
            format!("/shop/cart/{i}"),
            200,
            100 + i,
        ));
    }
    for i in out.len() as i64..total {
        let client = format!("10.1.{}.{}", i % 3, (s * 61 + i) % 250);
        out.push(line(client, format!("/shop/item/{i}"), 200, 200 + i));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Reference,
    Crashes,
    ReceiverDown,
    Reload,
}

/// What one run left behind.
#[derive(Debug)]
struct Outcome {
    written: u64,
    stored: i64,
    /// (rule, key, state, relative event second) from InfluxDB, sorted.
    stored_transitions: Vec<Notified>,
    /// As the webhook received them, in order.
    notified: Vec<Notified>,
    /// Deliveries the webhook got twice in a row (same `id`).
    redelivered: usize,
    kills: usize,
    /// Whether the kill aimed at a snapshot write found the write under way
    /// and left its temporary file behind.
    killed_mid_write: bool,
    /// The collector's stderr, for failure messages.
    log: String,
}

/// One collector process's settings.
struct Collector {
    port: u16,
    data: PathBuf,
    config: PathBuf,
    rules_dir: PathBuf,
    influx: String,
    db: String,
    out: PathBuf,
    env: Vec<(&'static str, String)>,
    extra: Vec<String>,
}

impl Collector {
    fn spawn(&self) -> Running {
        let file = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let mut cmd = Command::new(collector_bin());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--token", "secret", "--influx-url", &self.influx])
            .args(["--influx-db", &self.db, "--output", "json"])
            .arg("--config")
            .arg(&self.config)
            .arg("--rules-dir")
            .arg(&self.rules_dir)
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(file(&self.out))
            .stderr(file(&self.out.with_extension("err")));
        let c = Running(cmd.spawn().unwrap());
        wait_for_health(self.port);
        c
    }
}

/// Kills and restarts the collector at random moments until `stop`.
/// Returns (kills, whether the aimed kill caught a snapshot write).
fn crash_loop(
    collector: &Mutex<Option<Running>>,
    settings: &Collector,
    seed: u64,
    start: Instant,
) -> (usize, bool) {
    let mut rng = Rng(seed | 1);
    let kills = 6;
    let aimed = (rng.next_u64() % kills) as usize;
    let temp = settings
        .data
        .join(format!("{}.tmp", logmon_collector::engine::snapshot::FILE));
    let mut caught = false;
    // One kill in each of six slots of 9 s over the traffic, at a random
    // moment of its slot; restarted 0.2–2 s later.
    for k in 0..kills as usize {
        let at = 3.0 + 9.0 * k as f64 + rng.seconds(0.0, 6.0);
        let wait = at - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        if k == aimed {
            // In the middle of a snapshot write: the temporary file exists
            // only while one is under way (writes pause halfway here).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !temp.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        drop(collector.lock().unwrap().take());
        if k == aimed {
            caught = temp.exists();
        }
        std::thread::sleep(Duration::from_secs_f64(rng.seconds(0.2, 2.0)));
        *collector.lock().unwrap() = Some(settings.spawn());
    }
    (kills as usize, caught)
}

fn run(mode: Mode, influx: &Mutex<InfluxServer>, db: &str, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("LOGMON_KEEP").is_some();
    if keep {
        eprintln!("{mode:?}: {}", dir.path().display());
    }
    let logs = dir.path().join("logs");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("reload-a.toml"), RELOAD_A).unwrap();
    if mode != Mode::Reload {
        std::fs::write(rules_dir.join("reload-b.toml"), RELOAD_B).unwrap();
    }
    // The receiver that is down for a minute: its port is given to the
    // notifier now, and nothing listens on it until then. Reserved below the
    // ephemeral range, so no server the tests start and no outgoing
    // connection takes it meanwhile (a CI run once lost it that way).
    let (webhook_port, mut webhook) = if mode == Mode::ReceiverDown {
        (harness::reserved_port(), None)
    } else {
        let sink = WebhookSink::start();
        (sink.port, Some(sink))
    };
    let config = dir.path().join("collector.toml");
    let mut text = CONFIG.replace("WEBHOOK", &webhook_port.to_string());
    for (placeholder, lang, rule) in [
        ("PY_HIGH_TRAFFIC", Lang::Python, "high-traffic"),
        ("JS_HIGH_TRAFFIC", Lang::Js, "high-traffic"),
        ("PY_ERROR_RATE", Lang::Python, "error-rate"),
        ("JS_ERROR_RATE", Lang::Js, "error-rate"),
    ] {
        let path = polyglot::example(lang, rule);
        text = text.replace(placeholder, path.to_str().expect("a UTF-8 path"));
    }
    std::fs::write(&config, text).unwrap();
    let settings = Collector {
        port: free_port(),
        data: dir.path().join("collector"),
        config,
        rules_dir: rules_dir.clone(),
        influx: influx.lock().unwrap().url(),
        db: db.to_owned(),
        out: dir.path().join("collector.out"),
        env: {
            // The components were compiled into this cache once, before.
            let cache = (
                "LOGMON_RULE_CACHE",
                polyglot::rule_cache().display().to_string(),
            );
            match mode {
                Mode::Crashes => vec![
                    (
                        logmon_collector::faults::SNAPSHOT_PAUSE_ENV,
                        "300".to_owned(),
                    ),
                    cache,
                ],
                _ => vec![cache],
            }
        },
        extra: match mode {
            Mode::Crashes => vec!["--snapshot-every".into(), "1".into()],
            _ => Vec::new(),
        },
    };
    let collector = Arc::new(Mutex::new(Some(settings.spawn())));
    let agent = Running(
        Command::new(agent_bin())
            .args([
                "--collector",
                &format!("http://127.0.0.1:{}", settings.port),
            ])
            .args(["--token", "secret", "--metrics-listen", ""])
            .arg("--file")
            .arg(format!("{}/*.log:clf", logs.display()))
            .arg("--checkpoint-dir")
            .arg(dir.path().join("agent"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log = logs.join("access.log");

    // Event second s is written during wall second t0 + s, in three parts.
    let t0 = unix_now().ceil() as i64 + 2;
    let start = Instant::now() + Duration::from_secs_f64(t0 as f64 - unix_now());
    let settings = Arc::new(settings);
    let chaos = (mode == Mode::Crashes).then(|| {
        let (collector, settings) = (Arc::clone(&collector), Arc::clone(&settings));
        std::thread::spawn(move || crash_loop(&collector, &settings, seed, start))
    });
    let mut written = 0u64;
    for s in 0..SECONDS {
        let wait = (t0 + s) as f64 + 0.05 - unix_now();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        match (mode, s) {
            (Mode::Reload, ADD_AT) => {
                std::fs::write(rules_dir.join("reload-b.toml"), RELOAD_B).unwrap();
            }
            (Mode::Reload, REMOVE_AT) => {
                std::fs::remove_file(rules_dir.join("reload-a.toml")).unwrap();
            }
            (Mode::ReceiverDown, 60) => webhook = Some(WebhookSink::start_on(webhook_port)),
            _ => {}
        }
        let all = lines(t0, s);
        for (part, chunk) in all.chunks(all.len().div_ceil(3)).enumerate() {
            if part > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            append_text(&log, &chunk.concat());
            written += chunk.len() as u64;
        }
    }
    let (kills, killed_mid_write) = chaos.map_or((0, false), |c| c.join().unwrap());
    let webhook = webhook.expect("the receiver is up by now");

    // Everything stored, and event time past the compared span.
    let influx_query = |q: &str| influx.lock().unwrap().scalar(q);
    let count = format!(r#"SELECT count("bytes") FROM "{db}"."logmon_hot"."http_requests""#);
    let deadline = Instant::now() + Duration::from_secs(120);
    while influx_query(&count) < written as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let watermark = || {
        let metrics = http_get(settings.port, "/metrics");
        logmon_tests::bench::metric(&metrics, "logmon_engine_watermark_seconds").unwrap_or(0) as i64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while watermark() < t0 + COMPARED + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    // Delivered: the stored list and the webhook's settle.
    let stored_transitions = || {
        let mut rows: Vec<Notified> = influx
            .lock()
            .unwrap()
            .rows(&format!(
                r#"SELECT "message", "state", "rule", "key" FROM "{db}"."logmon_rollups"."alerts""#
            ))
            .into_iter()
            .map(|r| {
                let at = logmon_tests::influx::unix_seconds(&r[0]);
                Notified {
                    state: r[2].as_str().unwrap().to_owned(),
                    rule: r[3].as_str().unwrap().to_owned(),
                    key: r[4].as_str().unwrap_or_default().to_owned(),
                    at: at - t0,
                }
            })
            .filter(|n| n.at <= COMPARED)
            .collect();
        rows.sort();
        rows
    };
    // Settled: nothing changed for 2 s and the notifier has delivered
    // every transition of the outbox (a notifier waiting out its backoff
    // after the receiver was down changes nothing for longer than 2 s).
    let notify_lag = || {
        let metrics = http_get(settings.port, "/metrics");
        logmon_tests::bench::metric(
            &metrics,
            r#"logmon_consumer_lag_records{log="outbox",consumer="notify:hook"}"#,
        )
    };
    let mut last = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = (stored_transitions(), webhook.received().len());
        if (now == last && notify_lag() == Some(0)) || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    // A delivery repeated at once is the at-least-once window of a crash
    // (delivered, killed before the notifier recorded it, sent again first
    // thing after the restart); any other repeat is a defect.
    let received = webhook.received();
    let raw = webhook.transitions(t0);
    let mut notified: Vec<Notified> = Vec::new();
    let mut redelivered = 0;
    for (i, n) in raw.into_iter().enumerate() {
        if i > 0 && received[i]["id"] == received[i - 1]["id"] {
            redelivered += 1;
        } else if n.at <= COMPARED {
            notified.push(n);
        }
    }
    let outcome = Outcome {
        written,
        stored: influx_query(&count),
        stored_transitions: stored_transitions(),
        notified,
        redelivered,
        kills,
        killed_mid_write,
        log: std::fs::read_to_string(settings.out.with_extension("err")).unwrap_or_default(),
    };
    drop(agent);
    drop(collector.lock().unwrap().take());
    if keep {
        eprintln!("{mode:?}: t0 = {t0}");
        let _ = dir.keep();
    }
    outcome
}

/// The transitions of `rule` in `list`.
fn of<'a>(list: &'a [Notified], rule: &str) -> Vec<&'a Notified> {
    list.iter().filter(|n| n.rule == rule).collect()
}

#[test]
fn crashes_a_receiver_outage_and_hot_reload_change_no_alert() {
    let seed = chaos_seed("crash moments");
    // Built and compiled into the shared rule cache before the runs start.
    for lang in [Lang::Python, Lang::Js] {
        for rule in ["high-traffic", "error-rate"] {
            polyglot::example(lang, rule);
        }
    }
    let influx = Arc::new(Mutex::new(InfluxServer::start()));
    let runs: Vec<_> = [
        Mode::Reference,
        Mode::Crashes,
        Mode::ReceiverDown,
        Mode::Reload,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, mode)| {
        let influx = Arc::clone(&influx);
        std::thread::spawn(move || (mode, run(mode, &influx, &format!("alerting{i}"), seed)))
    })
    .collect();
    let outcomes: BTreeMap<_, _> = runs
        .into_iter()
        .map(|r| {
            let (mode, outcome) = r.join().unwrap();
            (mode as u8, outcome)
        })
        .collect();
    let [reference, crashes, receiver_down, reload] =
        [0, 1, 2, 3].map(|m| outcomes.get(&m).unwrap());

    // The reference: every line stored; at least four instances fire and
    // resolve; the webhook got what InfluxDB holds.
    let written: u64 = (0..SECONDS).map(|s| lines(0, s).len() as u64).sum();
    for o in outcomes.values() {
        assert_eq!((o.written, o.stored), (written, written as i64));
    }
    let cycled: Vec<&str> = [
        "busy",
        "busy-slow",
        "api-errors",
        "flood",
        "drop",
        "reload-a",
        "reload-b",
    ]
    .into_iter()
    .filter(|rule| {
        let states: Vec<&str> = of(&reference.stored_transitions, rule)
            .iter()
            .map(|n| n.state.as_str())
            .collect();
        states.contains(&"firing") && states.contains(&"resolved")
    })
    .collect();
    assert!(
        cycled.len() >= 4,
        "instances that fired and resolved: {cycled:?}\n{:#?}",
        reference.stored_transitions
    );
    let mut notified = reference.notified.clone();
    notified.sort();
    assert_eq!(notified, reference.stored_transitions);
    assert_eq!(reference.redelivered, 0, "no crash, no redelivery");

    eprintln!(
        "reference: {} transitions stored, {} notified; instances that fired and resolved: {cycled:?}; \
         crash run: {} kills, {} redelivered",
        reference.stored_transitions.len(),
        reference.notified.len(),
        crashes.kills,
        crashes.redelivered
    );

    // The Python and JavaScript twins: their Rust twin's transitions, in
    // every run (so through every kill and restore).
    for o in outcomes.values() {
        for (twin, rust) in [
            ("busy-slow-py", "busy-slow"),
            ("busy-slow-js", "busy-slow"),
            ("api-errors-py", "api-errors"),
            ("api-errors-js", "api-errors"),
        ] {
            let strip = |list: &[&Notified]| -> Vec<(String, String, i64)> {
                list.iter()
                    .map(|n| (n.key.clone(), n.state.clone(), n.at))
                    .collect()
            };
            assert_eq!(
                strip(&of(&o.stored_transitions, twin)),
                strip(&of(&o.stored_transitions, rust)),
                "{twin} differs from {rust}"
            );
        }
    }
    assert!(
        !of(&reference.stored_transitions, "api-errors-js").is_empty()
            && !of(&reference.stored_transitions, "busy-slow-py").is_empty()
    );

    // Six kills, one of them during a snapshot write: the same transitions,
    // in InfluxDB and, in the same order, at the webhook.
    assert_eq!(crashes.kills, 6);
    assert!(
        crashes.killed_mid_write,
        "the aimed kill missed the snapshot write"
    );
    assert_eq!(
        crashes.stored_transitions, reference.stored_transitions,
        "crashes changed the stored transitions; the collector said:\n{}",
        crashes.log
    );
    assert_eq!(
        crashes.notified, reference.notified,
        "crashes changed the notifications; the collector said:\n{}",
        crashes.log
    );
    assert!(
        crashes.redelivered <= crashes.kills,
        "at most one redelivery per crash: {}",
        crashes.redelivered
    );

    // The receiver down for a minute gets everything, in order, once.
    assert_eq!(receiver_down.notified, reference.notified);
    assert_eq!(receiver_down.redelivered, 0);
    assert_eq!(
        receiver_down.stored_transitions,
        reference.stored_transitions
    );

    // Hot reload: the other rules are unaffected; the added rule evaluates
    // (from the first whole cycle after it was added, exactly as the
    // reference's); the removed one stops.
    let others = |list: &[Notified]| -> Vec<Notified> {
        list.iter()
            .filter(|n| !n.rule.starts_with("reload-"))
            .cloned()
            .collect()
    };
    assert_eq!(
        others(&reload.stored_transitions),
        others(&reference.stored_transitions)
    );
    assert_eq!(others(&reload.notified), others(&reference.notified));
    assert!(
        reload.log.contains("rule reload-b started from")
            && reload.log.contains("rule reload-a stopped"),
        "{}",
        reload.log
    );
    let settled = (ADD_AT / 8 + 2) * 8;
    let after = |list: &[Notified], rule: &str, from: i64| -> Vec<Notified> {
        of(list, rule)
            .into_iter()
            .filter(|n| n.at >= from)
            .cloned()
            .collect()
    };
    let added = after(&reload.stored_transitions, "reload-b", settled);
    assert!(!added.is_empty(), "{:#?}", reload.stored_transitions);
    assert_eq!(
        added,
        after(&reference.stored_transitions, "reload-b", settled)
    );
    assert!(
        of(&reload.stored_transitions, "reload-b")
            .iter()
            .all(|n| n.at >= ADD_AT - 10),
        "reload-b evaluated before it was added: {:#?}",
        reload.stored_transitions
    );
    let removed = of(&reload.stored_transitions, "reload-a");
    assert!(
        removed.iter().all(|n| n.at <= REMOVE_AT),
        "reload-a evaluated after it was removed: {removed:#?}"
    );
    assert_eq!(
        removed.last().map(|n| n.state.as_str()),
        Some("resolved"),
        "a removed rule leaves no alert firing"
    );
    let before: Vec<&Notified> = of(&reference.stored_transitions, "reload-a")
        .into_iter()
        .filter(|n| n.at < REMOVE_AT - 10)
        .collect();
    assert!(!before.is_empty());
    assert_eq!(
        removed
            .iter()
            .filter(|n| n.at < REMOVE_AT - 10)
            .copied()
            .collect::<Vec<_>>(),
        before
    );
}
