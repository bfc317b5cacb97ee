//! The dashboard under load (`make bench`): time to first render and the
//! browser's JS heap with 50 sections of traffic and 1,000 alert transitions
//! in the history, next to the same page on an empty collector (the
//! baseline), both measured in this run.
//!
//! The loaded collector gets live Combined traffic over 50 sections from the
//! real agent, `--top 50` (its 10-s blocks list all 50 sections), and three
//! rule instances set to flap: `error-rate` keyed by section and
//! `client-flood` keyed by client over 1-s windows, and `high-traffic` at
//! its mean rate. It runs until `api/alerts` holds 1,000 transitions and at
//! least `BENCH_DASHBOARD_WARMUP` seconds (120), so the 15-minute charts hold
//! that many seconds of traffic (the collector's memory starts empty: event
//! time cannot be back-filled into a live engine).
//!
//! Each page load is a fresh browser context (`tests/browser/dashboard.mjs
//! measure`): time to first render is from navigation start to the app's
//! `logmon:first-render` mark (charts drawn with the fetched series, alert
//! history, stats, rules and agents rendered), of which the page waited for
//! the collector's API until its last answer arrived. The page keeps every
//! transition of the history but only the rows in view in the DOM; the heap is
//! `JSHeapUsedSize` from CDP `Performance.getMetrics` after a forced
//! garbage collection, a second after first render; the range switch is a
//! click on "1 h" until the charts hold the hour (3,600 points a series).
//! `BENCH_DASHBOARD_RUNS` loads each (5); the table shows medians.

use logmon_tests::bench::{Table, env_number};
use logmon_tests::browser::{artifacts_dir, drive, require_browser};
use logmon_tests::live::LiveSite;
use serde_json::Value;
use std::time::{Duration, Instant};

const SECTIONS: &str = "50";
const RATE: &str = "100";
const HISTORY: usize = 1000;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of `field` over the runs of a `measure` answer.
fn field(result: &Value, name: &str) -> f64 {
    median(
        result["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r[name].as_f64())
            .collect(),
    )
}

fn measure(site: &LiveSite, runs: u64, data: bool, shot: Option<&str>) -> Value {
    let url = format!("{}/", site.url());
    let runs = runs.to_string();
    let mut args = vec!["measure", "--url", &url, "--runs", &runs, "--timeout", "60"];
    if data {
        args.push("--data");
    }
    if let Some(shot) = shot {
        args.extend(["--screenshot", shot]);
    }
    let result =
        drive(&args).unwrap_or_else(|e| panic!("{e}\n--- collector\n{}", site.collector_log()));
    for run in result["runs"].as_array().expect("runs") {
        let errors = run["errors"].as_array().expect("errors");
        assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    }
    result
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    require_browser();
    let runs = env_number("BENCH_DASHBOARD_RUNS", 5);
    let warmup = Duration::from_secs(env_number("BENCH_DASHBOARD_WARMUP", 120));

    let started = Instant::now();
    let flags = |extra: &[&str]| -> Vec<String> {
        ["--lateness", "0", "--top", SECTIONS]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let empty = LiveSite::start(&flags(&[]));
    let mut loaded = LiveSite::start(&flags(&[
        "--threshold",
        RATE,
        "--window",
        "1",
        "--rule",
        "error-rate:threshold=0.1,window=1,min_requests=1,name=section-errors",
        "--rule",
        "client-flood:limit=2,window=1,name=busy-client",
    ]));
    loaded.feed_live(
        "access",
        &[
            "--rate",
            RATE,
            "--steady",
            "--disorder",
            "0",
            "--sections",
            SECTIONS,
            "--error-rate",
            "0.08",
            "--lines",
            "100000000",
            "--seed",
            "11",
        ],
    );
    let history = format!("/api/alerts?limit={HISTORY}");
    loaded.wait_until(
        "1,000 transitions in the alert history",
        Duration::from_secs(300),
        || {
            let alerts = loaded.json(&history);
            alerts["history"].as_array().map_or(0, Vec::len) >= HISTORY
                && started.elapsed() >= warmup
        },
    );
    let stats = loaded.json("/api/stats");
    let sections = stats["sections"].as_array().map_or(0, Vec::len);
    let series = loaded.json("/api/series?range=900");
    let busy_seconds = series["total"]
        .as_array()
        .expect("series total")
        .iter()
        .filter(|v| v.as_f64().unwrap_or(0.0) > 0.0)
        .count();
    println!(
        "dashboard: loaded collector after {:.0} s: {sections} sections in its 10-s block, {} sections charted, \
         {busy_seconds} seconds with traffic in the 15-min series, {HISTORY}+ alert transitions; \
         {runs} page loads each, medians; Chromium {}",
        started.elapsed().as_secs_f64(),
        series["sections"].as_object().map_or(0, |s| s.len()),
        chromium_version(),
    );

    let base = measure(&empty, runs, false, None);
    let shot = artifacts_dir().join("dashboard-bench.png");
    let full = measure(&loaded, runs, true, shot.to_str());

    let mut table = Table::new(&[
        "page",
        "first render (ms)",
        "x empty",
        "last API answer (ms)",
        "JS heap (MiB)",
        "x empty",
        "DOM nodes",
        "history entries / DOM rows",
        "longest task (ms)",
        "1 h switch (ms)",
    ]);
    let mib = |r: &Value| field(r, "heapUsedBytes") / (1024.0 * 1024.0);
    for (name, r) in [
        ("empty collector (baseline)", &base),
        ("50 sections, 1,000 alerts", &full),
    ] {
        table.row(vec![
            name.to_owned(),
            format!("{:.0}", field(r, "firstRenderMs")),
            format!(
                "{:.2}",
                field(r, "firstRenderMs") / field(&base, "firstRenderMs")
            ),
            format!("{:.0}", field(r, "apiMs")),
            format!("{:.2}", mib(r)),
            format!("{:.2}", mib(r) / mib(&base)),
            format!("{:.0}", field(r, "domNodes")),
            format!(
                "{:.0} / {:.0}",
                field(r, "historyEntries"),
                field(r, "historyRows")
            ),
            format!("{:.0}", field(r, "longestTask")),
            format!("{:.0}", field(r, "rangeSwitchMs")),
        ]);
    }
    table.print();
    println!("screenshot of the loaded page: {}", shot.display());
}

fn chromium_version() -> String {
    std::process::Command::new(logmon_tests::browser::chromium_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
