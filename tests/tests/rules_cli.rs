//! The rule author's workflow with the real binary: `rules new` writes a
//! crate that builds for `wasm32-wasip2` and passes its own tests, and
//! `rules test` runs it (and shipped rules) over hand-built logs, printing
//! exactly the transitions the logs imply; bad input exits 2, a faulting
//! rule exits 1.

use logmon_tests::{collector_bin, csv_by_second};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2019-02-07 21:11:00 UTC.
const T0: i64 = 1_549_573_860;
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A CSV log from `T0`: second `s` has `hits(s)` requests per section.
fn csv_log(dir: &Path, seconds: i64, hits: impl Fn(i64) -> Vec<(&'static str, u64)>) -> PathBuf {
    csv_by_second(dir, T0, seconds, |s| {
        hits(s)
            .into_iter()
            .map(|(section, n)| ("10.0.0.1", section, n))
            .collect()
    })
}

/// `rules test COMPONENT --input LOG` with `--param`s, then `more`.
fn rules_test<'a>(
    component: &'a str,
    log: &'a Path,
    params: &[&'a str],
    more: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["rules", "test", component, "--input", log.to_str().unwrap()];
    for p in params {
        args.extend(["--param", p]);
    }
    args.extend(more);
    args
}

fn collector(args: &[&str]) -> Output {
    Command::new(collector_bin())
        .args(args)
        .output()
        .expect("running logmon-collector")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Stdout of a run that must succeed.
fn success(args: &[&str]) -> String {
    let out = collector(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Stderr of a run that must exit with `code`.
fn failure(args: &[&str], code: i32) -> String {
    let out = collector(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// The output of `rules test` with the timing of its summary line masked.
fn masked(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            match (
                line.find(" transitions, "),
                line.find(" per second evaluated"),
            ) {
                (Some(a), Some(b)) if line.starts_with("── ") => {
                    format!("{} transitions, …{}", &line[..a], &line[b..])
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

/// `high-traffic` (threshold 2 req/s over 4 s) fires at second 4 (mean 3.5)
/// and resolves at second 8 (mean 0.75), whose traffic is nothing at all.
#[test]
fn a_shipped_rule_over_a_hand_built_log() {
    let dir = tempfile::tempdir().unwrap();
    let hits = [3, 3, 2, 0, 9, 1, 1, 1, 0, 0, 0, 1];
    let log = csv_log(dir.path(), hits.len() as i64, |s| {
        vec![("/api", hits[s as usize])]
    });
    let args = rules_test("high-traffic", &log, &["threshold=2", "window=4"], &[]);
    assert_eq!(
        masked(&success(&args)),
        [
            format!("rule high-traffic {VERSION}: threshold=2 window=4"),
            "firing    -  2019-02-07 21:11:04 UTC (1549573864)  value=3.5  High traffic generated an alert - hits = 3.5, triggered at 2019-02-07 21:11:04 UTC (1549573864)".into(),
            "resolved  -  2019-02-07 21:11:08 UTC (1549573868)  value=0.75  High traffic alert recovered - hits = 0.75, recovered at 2019-02-07 21:11:08 UTC (1549573868)".into(),
            "── 12 seconds evaluated (2019-02-07 21:11:00 UTC .. 2019-02-07 21:11:11 UTC), 2 transitions, … per second evaluated; 21 events, 0 malformed, 0 late".into(),
        ]
    );

    // The same as JSON lines.
    let json_args = rules_test(
        "high-traffic",
        &log,
        &["threshold=2", "window=4"],
        &["--output", "json"],
    );
    let lines: Vec<serde_json::Value> = success(&json_args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rule", "transition", "transition", "summary"]);
    assert_eq!(lines[0]["params"]["window"], "4");
    let t: Vec<(&str, i64, f64)> = lines[1..3]
        .iter()
        .map(|l| {
            (
                l["state"].as_str().unwrap(),
                l["at"].as_i64().unwrap(),
                l["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(t, [("firing", T0 + 4, 3.5), ("resolved", T0 + 8, 0.75)]);
    assert_eq!(lines[3]["seconds"], 12);
    assert_eq!(lines[3]["transitions"], 2);
    assert_eq!(lines[3]["events"], 21);
    assert!(lines[3]["eval_ns_per_second"].as_u64().unwrap() > 0);
    assert!(lines[3]["fault"].is_null());
}

#[test]
fn a_parameter_the_rule_refuses_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = csv_log(dir.path(), 3, |_| vec![("/api", 1)]);
    let test =
        |param: &str, code: i32| failure(&rules_test("high-traffic", &log, &[param], &[]), code);
    let stderr = test("threshold=lots", 2);
    assert!(
        stderr.contains("high-traffic refused its configuration: parameter `threshold` = `lots`"),
        "{stderr}"
    );
    let stderr = test("treshold=3", 2);
    assert!(
        stderr.contains("unknown parameter `treshold` (known: threshold, window)"),
        "{stderr}"
    );
    let stderr = test("threshold", 2);
    assert!(stderr.contains("`threshold` is not key=value"), "{stderr}");
}

#[test]
fn missing_files_and_unknown_rules_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = csv_log(dir.path(), 3, |_| vec![("/api", 1)]);
    let missing = dir.path().join("nope.csv");
    let stderr = failure(&rules_test("high-traffic", &missing, &[], &[]), 2);
    assert!(
        stderr.contains("nope.csv") && stderr.contains("No such file"),
        "{stderr}"
    );
    let component = dir.path().join("nope.wasm");
    let stderr = failure(&rules_test(component.to_str().unwrap(), &log, &[], &[]), 2);
    assert!(
        stderr.contains("nope.wasm") && stderr.contains("No such file"),
        "{stderr}"
    );
    let stderr = failure(&rules_test("hihg-traffic", &log, &[], &[]), 2);
    assert!(
        stderr.contains("no shipped rule named `hihg-traffic`"),
        "{stderr}"
    );
    // A file that is not a component.
    let stderr = failure(&["rules", "describe", log.to_str().unwrap()], 2);
    assert!(
        stderr.contains("is not a logmon rule component"),
        "{stderr}"
    );
}

#[test]
fn a_rule_that_faults_is_reported_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let log = csv_log(dir.path(), 10, |_| vec![("/api", 1)]);
    let hostile = logmon_collector::rules::shipped::HOSTILE_RULE_PATH;
    let out = collector(&rules_test(hostile, &log, &["mode=trap", "after=3"], &[]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = masked(&text(&out.stdout));
    assert_eq!(
        stdout[1],
        "FAULT     2019-02-07 21:11:03 UTC (1549573863)  `evaluate` trapped: wasm trap: wasm `unreachable` instruction executed; \
         stderr: thread '<unnamed>' (1) panicked at wasm-rules/hostile/src/lib.rs:55:23: / hostile rule trapping at second 1549573863 / \
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        "the panic's own message, from the guest's stderr"
    );
    assert_eq!(
        stdout[2],
        "── 4 of 10 seconds evaluated (2019-02-07 21:11:00 UTC .. 2019-02-07 21:11:09 UTC), 0 transitions, … per second evaluated; 10 events, 0 malformed, 0 late, rule faulted"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "rule hostile faulted at 2019-02-07 21:11:03 UTC (1549573863): `evaluate` trapped"
        ),
        "{stderr}"
    );
}

#[test]
fn list_and_describe_show_parameters_and_defaults() {
    let list = success(&["rules", "list"]);
    for name in ["high-traffic", "error-rate", "traffic-drop", "client-flood"] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{name} {VERSION}: "))),
            "{name} missing from:\n{list}"
        );
    }
    let described = success(&["rules", "describe", "high-traffic"]);
    assert_eq!(
        described.lines().collect::<Vec<_>>(),
        [
            format!(
                "high-traffic {VERSION}: Average requests per second over a window above a threshold"
            )
            .as_str(),
            "  threshold = 10   requests per second that fire the alert",
            "  window    = 120  seconds averaged, ending at the evaluated second",
        ]
    );
    assert!(list.contains(&described), "list shows what describe does");
}

/// `cargo` for the generated crate, free of this build's flags and wrappers,
/// with a target directory shared across runs (the SDK builds once).
fn cargo(dir: &Path, args: &[&str]) {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rules-new-target");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}{}",
        dir.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// From nothing to a rule evaluated over a log: `rules new`, the build for
/// `wasm32-wasip2`, the crate's own tests, then `rules test` on the
/// component. The template fires per section whose average over `window`
/// seconds is above `threshold`: with 5 s and 4 req/s, above 20 hits in 5 s.
#[test]
fn a_new_rule_builds_and_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let created = success(&[
        "rules",
        "new",
        "busy-section",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        created.contains("created rule `busy-section` (type BusySection)"),
        "{created}"
    );
    let krate = dir.path().join("busy-section");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"busy-section\""), "{manifest}");
    assert!(
        manifest.contains("\n[workspace]\n"),
        "a workspace of its own"
    );
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    assert!(lib.contains("export_rule!(BusySection)"));
    assert!(lib.contains("name: \"busy-section\".into()"));

    cargo(
        &krate,
        &["build", "--target", "wasm32-wasip2", "--release", "--quiet"],
    );
    // The unit tests, natively: `--release` reuses the macros just built.
    cargo(&krate, &["test", "--release", "--quiet"]);
    let component = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rules-new-target/wasm32-wasip2/release/busy_section.wasm");

    // /api: 8 req/s in seconds 10..=29, 2 otherwise (5-s sums 22 at 11, 16
    // at 33); /blog: 1 req/s with 20 at second 40 (24 at 40, 5 at 45).
    let log = csv_log(dir.path(), 60, |s| {
        let api = if (10..30).contains(&s) { 8 } else { 2 };
        let blog = if s == 40 { 20 } else { 1 };
        vec![("/api", api), ("/blog", blog)]
    });
    let component = component.to_str().unwrap();
    let stdout = success(&rules_test(
        component,
        &log,
        &["window=5", "threshold=4"],
        &[],
    ));
    assert_eq!(
        masked(&stdout),
        [
            "rule busy-section 0.1.0: threshold=4 window=5",
            "firing    /api  2019-02-07 21:11:11 UTC (1549573871)  value=4.4  /api: 4.4 req/s over 5 s, above 4 (at 2019-02-07 21:11:11 UTC (1549573871))",
            "resolved  /api  2019-02-07 21:11:33 UTC (1549573893)  value=3.2  /api: back to 3.2 req/s (at 2019-02-07 21:11:33 UTC (1549573893))",
            "firing    /blog  2019-02-07 21:11:40 UTC (1549573900)  value=4.8  /blog: 4.8 req/s over 5 s, above 4 (at 2019-02-07 21:11:40 UTC (1549573900))",
            "resolved  /blog  2019-02-07 21:11:45 UTC (1549573905)  value=1  /blog: back to 1 req/s (at 2019-02-07 21:11:45 UTC (1549573905))",
            "── 60 seconds evaluated (2019-02-07 21:11:00 UTC .. 2019-02-07 21:11:59 UTC), 4 transitions, … per second evaluated; 319 events, 0 malformed, 0 late",
        ]
    );

    // What it says of itself, and its defaults (threshold 5, window 10).
    let described = success(&["rules", "describe", component]);
    assert!(described.starts_with("busy-section 0.1.0: "), "{described}");
    let stdout = success(&rules_test(component, &log, &[], &[]));
    assert_eq!(
        masked(&stdout)[0],
        "rule busy-section 0.1.0: threshold=5 window=10"
    );
}
