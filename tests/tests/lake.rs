//! The lake end to end: a generated log shipped by the real agent to the
//! real `logmon-collector serve --lake-dir`, the collector SIGKILLed in the
//! middle of a Parquet file and started again, and the files read back by an
//! independent reader, DuckDB (its Python package, in the virtualenv
//! `scripts/setup.sh` makes at tests/lake/.venv).

use logmon_protocol::{Event, Format, LineParser, Parsed};
use logmon_tests::harness::{Rng, Running, chaos_seed, free_port, http_get, wait_for_health};
use logmon_tests::influx::InfluxServer;
use logmon_tests::{GenSpec, agent_bin, collector_bin, generate, skipped};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "lake-secret";

fn duckdb_python() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/lake/.venv/bin/python"
    ))
}

/// The virtualenv's Python when it has DuckDB; otherwise why not.
fn duckdb() -> Result<PathBuf, String> {
    let python = duckdb_python();
    if !python.is_file() {
        return Err(format!(
            "{} is absent: run scripts/setup.sh (it installs DuckDB from PyPI there)",
            python.display()
        ));
    }
    let out = Command::new(&python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "DuckDB does not import in {}: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(python)
}

/// DuckDB's Python, or `None` after saying SKIPPED (on stderr, past the
/// harness) why `test` cannot run its checks.
fn duckdb_or_skip(test: &str) -> Option<PathBuf> {
    duckdb()
        .map_err(|why| {
            skipped(&format!(
                "the lake's {test} test needs DuckDB, the independent reader: {why}"
            ))
        })
        .ok()
}

/// What DuckDB reads from every complete file of the lake.
const QUERY: &str = r#"
import duckdb, glob, json, sys
files = sys.argv[1] + "/date=*/hour=*/*.parquet"
if not glob.glob(files):
    print(json.dumps({"count": 0, "paths": 0, "first": None, "last": None, "bytes": None,
                      "labelled": 0, "hours": [], "rows": []}))
    sys.exit(0)
con = duckdb.connect()
con.execute(f"CREATE VIEW lake AS SELECT * FROM read_parquet('{files}', hive_partitioning = true)")
count, paths, first, last, total = con.execute(
    "SELECT count(*), count(DISTINCT path), min(epoch_ns(time)), max(epoch_ns(time)), sum(bytes) FROM lake"
).fetchone()
labelled = con.execute("SELECT count(*) FROM lake WHERE labels['env'] = 'lake-test'").fetchone()[0]
hours = con.execute(
    "SELECT CAST(date AS VARCHAR) || ' ' || lpad(CAST(hour AS VARCHAR), 2, '0'), count(*) FROM lake GROUP BY 1 ORDER BY 1"
).fetchall()
rows = con.execute(
    "SELECT epoch_ns(time), path, client, status, bytes FROM lake ORDER BY ALL"
).fetchall()
print(json.dumps({
    "count": count, "paths": paths, "first": first, "last": last,
    "bytes": None if total is None else int(total), "labelled": labelled,
    "hours": [[h, n] for h, n in hours],
    "rows": [[t, p, c, s, b] for t, p, c, s, b in rows],
}))
"#;

/// What the lake holds, as DuckDB reads it.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    count: u64,
    paths: u64,
    first: Option<i64>,
    last: Option<i64>,
    bytes: Option<u64>,
    /// Rows with the agent's label.
    labelled: u64,
    hours: Vec<(String, u64)>,
    rows: Vec<(i64, String, String, u16, u64)>,
}

fn read_lake(python: &Path, lake: &Path) -> Read {
    let out = Command::new(python)
        .args(["-c", QUERY])
        .arg(lake)
        .output()
        .expect("running DuckDB");
    assert!(
        out.status.success(),
        "DuckDB failed on {}: {}",
        lake.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("DuckDB's JSON");
    Read {
        count: v["count"].as_u64().unwrap(),
        paths: v["paths"].as_u64().unwrap(),
        first: v["first"].as_i64(),
        last: v["last"].as_i64(),
        bytes: v["bytes"].as_u64(),
        labelled: v["labelled"].as_u64().unwrap(),
        hours: v["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_owned(), h[1].as_u64().unwrap()))
            .collect(),
        rows: v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_i64().unwrap(),
                    r[1].as_str().unwrap().to_owned(),
                    r[2].as_str().unwrap().to_owned(),
                    r[3].as_u64().unwrap() as u16,
                    r[4].as_u64().unwrap(),
                )
            })
            .collect(),
    }
}

/// What the log says the lake must hold, computed from its lines.
fn expected(log: &Path) -> Read {
    let text = std::fs::read_to_string(log).unwrap();
    let mut parser = LineParser::new(Format::Combined);
    let mut event = Event::empty();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Ok(Parsed::Event) = parser.parse_into(line, &mut event) {
            rows.push((
                event.timestamp,
                event.path.clone(),
                event.client.clone(),
                event.status,
                event.bytes,
            ));
        }
    }
    rows.sort();
    let mut hours: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let t = time::OffsetDateTime::from_unix_timestamp(r.0.div_euclid(1_000_000_000)).unwrap();
        let key = format!(
            "{:04}-{:02}-{:02} {:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        );
        *hours.entry(key).or_default() += 1;
    }
    let paths: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    Read {
        count: rows.len() as u64,
        paths: paths.len() as u64,
        first: rows.first().map(|r| r.0),
        last: rows.last().map(|r| r.0),
        bytes: Some(rows.iter().map(|r| r.4).sum()),
        labelled: rows.len() as u64,
        hours: hours.into_iter().collect(),
        rows,
    }
}

/// Files under `lake` whose name ends with `suffix`.
fn files(lake: &Path, suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(lake, suffix, &mut out);
    out.sort();
    out
}

struct Site {
    dir: tempfile::TempDir,
    port: u16,
    /// InfluxDB's URL, when the collector writes there too.
    influx: Option<String>,
    /// More of the collector's configuration file.
    config: String,
}

impl Site {
    /// A directory with `logs/access.log`: `lines` generated Combined lines
    /// at 0.7 a second ending about ten minutes ago (6,000 span 2.4 hours:
    /// three or four UTC hours), and what the lake must hold once they are
    /// in it. Recent, so the engine (which the lake does not wait for) has
    /// no years of silence to close.
    fn with_log(lines: u64) -> (Site, Read) {
        Site::with_log_at(lines, 0.7)
    }

    /// [`with_log`](Self::with_log) at `rate` lines a second.
    fn with_log_at(lines: u64, rate: f64) -> (Site, Read) {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            influx: None,
            config: String::new(),
        };
        let logs = site.dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let generated = generate(
            site.dir.path(),
            &GenSpec {
                format: Format::Combined,
                lines,
                start: logmon_tests::harness::unix_now() as i64
                    - 600
                    - (lines as f64 / rate) as i64,
                rate,
                seed: 7,
                steady: true,
                ..GenSpec::default()
            },
        );
        std::fs::rename(&generated, site.log()).unwrap();
        let want = expected(&site.log());
        assert_eq!(want.count, lines);
        (site, want)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("logs").join("access.log")
    }

    /// Stops `collector` with SIGTERM (a drain writes what is in memory);
    /// asserts it exits 0.
    fn stop(&self, mut collector: Running) {
        let status = Command::new("kill")
            .args(["-TERM", &collector.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = collector.0.wait().unwrap();
        assert!(exit.success(), "{exit}: {}", self.collector_log());
    }

    fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// The collector's and the agent's stderr.
    fn collector_log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "collector:\n{}\nagent:\n{}",
            read("collector.err"),
            read("agent.err")
        )
    }

    /// `serve` with the lake on (small files, so that a run writes many),
    /// `pause_ms` into every file write when given.
    fn collector(&self, pause_ms: Option<u64>) -> Running {
        let config = self.dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "[lake]\nfile_rows = 500\nrow_group_rows = 200\nflush_secs = 1\n{}",
                self.config
            ),
        )
        .unwrap();
        let mut cmd = Command::new(collector_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--token", TOKEN])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--lake-dir")
            .arg(self.lake())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("collector.err"))
                    .unwrap(),
            );
        if let Some(ms) = pause_ms {
            cmd.env(logmon_collector::faults::LAKE_PAUSE_ENV, ms.to_string());
        }
        if let Some(url) = &self.influx {
            cmd.args(["--influx-url", url, "--influx-db", "lake"]);
        }
        let c = Running(cmd.spawn().expect("starting logmon-collector serve"));
        wait_for_health(self.port);
        c
    }

    /// The agent, reading the log from its beginning, every batch labelled
    /// `env=lake-test`.
    fn agent(&self) -> Running {
        let config = self.dir.path().join("agent.toml");
        std::fs::write(
            &config,
            "[labels]\nenv = \"lake-test\"\n[tail]\nstart_at = \"beginning\"\n",
        )
        .unwrap();
        Running(
            Command::new(agent_bin())
                .arg("--config")
                .arg(&config)
                .args(["--collector", &format!("http://127.0.0.1:{}", self.port)])
                .args(["--token", TOKEN, "--metrics-listen", ""])
                .arg("--file")
                .arg(format!(
                    "{}/*.log:combined",
                    self.dir.path().join("logs").display()
                ))
                .arg("--checkpoint-dir")
                .arg(self.dir.path().join("agent"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path().join("agent.err")).unwrap())
                .spawn()
                .expect("starting logmon-agent"),
        )
    }

    fn metric(&self, name: &str) -> u64 {
        logmon_tests::bench::metric(&http_get(self.port, "/metrics"), name).unwrap_or(0)
    }
}

fn wait(what: &str, timeout: Duration, log: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 6,000 Combined lines over about 2.4 hours of event time (three or four
/// UTC hour partitions) reach the lake exactly once, although the collector is
/// SIGKILLed twice while a Parquet file is half written: DuckDB reads every
/// event of the log, no other, with the log's paths, times, hours and the
/// agent's labels.
#[test]
fn every_line_reaches_the_lake_once_across_a_crash_in_the_middle_of_a_file() {
    let Some(python) = duckdb_or_skip("end-to-end") else {
        return;
    };
    let (mut site, want) = Site::with_log(6_000);
    let influx = InfluxServer::start();
    site.influx = Some(influx.url());
    let log = site.log();
    assert!(want.hours.len() >= 3, "{:?}", want.hours);

    // Two runs in which every file write pauses halfway, each SIGKILLed in
    // such a pause once two more files are complete: so the second crash
    // falls between files renamed and a position not yet committed past
    // them, as well as in the middle of one.
    let agent = site.agent();
    let lake = site.lake();
    let mut seen = 0;
    for round in 1..=2 {
        let collector = site.collector(Some(300));
        wait(
            &format!("round {round}: two more lake files, then one half written"),
            Duration::from_secs(90),
            || site.collector_log(),
            || {
                files(&lake, ".parquet").len() >= seen + 2
                    && !files(&lake, ".parquet.tmp").is_empty()
            },
        );
        drop(collector);
        let half = files(&lake, ".parquet.tmp");
        assert_eq!(half.len(), 1, "one write was under way: {half:?}");
        seen = files(&lake, ".parquet").len();
        // What a reader sees meanwhile is whole files only, fewer rows
        // than the log.
        let during = read_lake(&python, &lake);
        assert!(
            during.count > 0 && during.count < want.count,
            "round {round}: {} rows",
            during.count
        );
    }

    // Then kills at seeded random moments of runs whose file writes pause
    // (so a kill often falls in one), while the agent goes on shipping.
    let mut rng = Rng(chaos_seed("lake writer kill moments") | 1);
    let mut mid_file = 0;
    for round in 1..=3 {
        let collector = site.collector(Some(150));
        std::thread::sleep(Duration::from_secs_f64(rng.seconds(0.3, 3.0)));
        let writing = !files(&lake, ".parquet.tmp").is_empty();
        drop(collector);
        mid_file += usize::from(writing);
        eprintln!("random kill {round}: a file write under way: {writing}");
    }
    eprintln!("{mid_file} of 3 random kills fell in the middle of a file");

    // The last run: the temporary file goes, the lost rows are written
    // again, and the rows files already held are not.
    let temps = files(&lake, ".parquet.tmp").len() as u64;
    let collector = site.collector(None);
    wait(
        "every line in the lake",
        Duration::from_secs(120),
        || site.collector_log(),
        || read_lake(&python, &lake).count >= want.count,
    );
    assert_eq!(site.metric("logmon_lake_temp_files_removed_total"), temps);
    let (lake_files, log_bytes) = (
        files(&lake, ".parquet"),
        std::fs::metadata(&log).unwrap().len(),
    );
    let lake_bytes: u64 = lake_files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    eprintln!(
        "lake: {} files, {lake_bytes} bytes ({:.1} a row; the log: {:.1} a line), {} rows read again and skipped after the last restart",
        lake_files.len(),
        lake_bytes as f64 / want.count as f64,
        log_bytes as f64 / want.count as f64,
        site.metric("logmon_lake_skipped_rows_total")
    );
    wait(
        "InfluxDB's writer to take every line",
        Duration::from_secs(60),
        || http_get(site.port, "/metrics"),
        || {
            http_get(site.port, "/metrics")
                .contains(r#"logmon_consumer_lag_records{log="bus",consumer="influx"} 0"#)
        },
    );
    drop(agent);
    // A graceful stop writes what is left in memory (nothing, here).
    site.stop(collector);

    assert!(files(&lake, ".tmp").is_empty(), "no temporary file is left");
    let got = read_lake(&python, &lake);
    assert_eq!(got.count, want.count, "rows");
    assert_eq!(got.paths, want.paths, "distinct paths");
    assert_eq!((got.first, got.last), (want.first, want.last), "time range");
    assert_eq!(got.bytes, want.bytes, "sum of bytes");
    assert_eq!(got.hours, want.hours, "rows per hour partition");
    assert_eq!(got.labelled, want.count, "rows with the agent's label");
    // Row for row: no event lost, none twice.
    assert!(
        got.rows == want.rows,
        "the lake's rows differ from the log's"
    );
    // InfluxDB, written by the other consumer of the same bus, holds as many.
    let hot = |q: &str| {
        influx.scalar(&format!(
            r#"SELECT {q} FROM "lake"."logmon_hot"."http_requests""#
        ))
    };
    assert_eq!(
        hot(r#"count("bytes")"#),
        want.count as i64,
        "InfluxDB's rows"
    );
    assert_eq!(
        hot(r#"count(DISTINCT "path")"#),
        want.paths as i64,
        "InfluxDB's paths"
    );
    assert_eq!(
        hot(r#"sum("bytes")"#),
        want.bytes.unwrap() as i64,
        "InfluxDB's bytes"
    );
    // Every file sits in the partition of its rows' hour, named by its
    // bus range.
    for file in files(&lake, ".parquet") {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("events-") && !name.starts_with('.'),
            "{name}"
        );
        let hour = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert!(hour.starts_with("hour="), "{}", file.display());
    }

    backtests_give_the_transitions_of_the_log(&lake, &log);
}

/// Every line of `text` parsed as `format` (each must be an event).
fn parse_all(text: &str, format: Format) -> Vec<Event> {
    let mut parser = LineParser::new(format);
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut event = Event::empty();
            let parsed = parser.parse_into(l, &mut event).unwrap();
            assert_eq!(parsed, Parsed::Event, "{l}");
            event
        })
        .collect()
}

/// The stdout of `logmon-collector ARGS`, which must succeed with an empty
/// stderr.
fn run_ok(args: &[&str]) -> String {
    let out = Command::new(collector_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert_eq!(stderr, "", "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Events in a canonical order, for comparing sets of them.
fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| {
        (a.timestamp, &a.path, &a.client, &a.user_agent, a.bytes).cmp(&(
            b.timestamp,
            &b.path,
            &b.client,
            &b.user_agent,
            b.bytes,
        ))
    });
    events
}

/// `lake ls` counts what the log holds, per hour partition and in total,
/// from the files' footers; `lake export` renders the lake's events back
/// into lines that parse into exactly the log's events (Combined and JSON:
/// every field; CSV and CLF: the fields those formats have), in time order,
/// and a `--since`/`--until` window gives exactly the log's events of it.
fn lake_ls_and_export_give_back_the_log(lake: &Path, text: &str, originals: &[Event]) {
    let lake_arg = lake.to_str().unwrap();
    let listed: Vec<Value> = run_ok(&["lake", "ls", lake_arg, "--output", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (total, partitions) = listed.split_last().unwrap();
    assert_eq!(total["kind"], "total");
    assert_eq!(total["rows"], originals.len() as u64);
    assert_eq!(total["partitions"], partitions.len() as u64);
    assert_eq!(total["unreadable_files"], 0);
    let lake_files = files(lake, ".parquet");
    assert_eq!(total["files"], lake_files.len() as u64);
    let on_disk: u64 = lake_files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(total["bytes"], on_disk);
    let mut per_hour: BTreeMap<String, u64> = BTreeMap::new();
    for e in originals {
        let t = time::OffsetDateTime::from_unix_timestamp(e.second()).unwrap();
        let name = format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        );
        *per_hour.entry(name).or_default() += 1;
    }
    let listed_hours: BTreeMap<String, u64> = partitions
        .iter()
        .map(|p| {
            (
                p["partition"].as_str().unwrap().to_owned(),
                p["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed_hours, per_hour, "rows per partition");
    let rfc = |s: i64| {
        time::OffsetDateTime::from_unix_timestamp(s)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let first = originals.iter().map(Event::second).min().unwrap();
    let last = originals.iter().map(Event::second).max().unwrap();
    assert_eq!(total["first"], rfc(first));
    assert_eq!(total["last"], rfc(last));
    let table = run_ok(&["lake", "ls", lake_arg]);
    assert!(
        table.lines().last().unwrap().starts_with(&format!(
            "total: {} partitions, {} files, {} rows, {on_disk} bytes, ",
            partitions.len(),
            lake_files.len(),
            originals.len()
        )),
        "{table}"
    );

    let want = sorted(originals.to_vec());
    for (name, format) in [("combined", Format::Combined), ("json", Format::Json)] {
        let exported = run_ok(&["lake", "export", lake_arg, "--format", name]);
        let back = parse_all(&exported, format);
        let times: Vec<i64> = back.iter().map(|e| e.timestamp).collect();
        assert!(times.is_sorted(), "{name}: the export is in time order");
        assert!(
            sorted(back) == want,
            "{name}: the export's events differ from the log's"
        );
    }
    // The Combined export of a Combined log is the log, line for line, up
    // to order.
    let exported = run_ok(&["lake", "export", lake_arg, "--format", "combined"]);
    let mut a: Vec<&str> = exported.lines().collect();
    let mut b: Vec<&str> = text.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert!(a == b, "the Combined export's lines differ from the log's");
    // CSV and CLF keep what they can say.
    let strip = |mut e: Event| {
        e.referer = None;
        e.user_agent = None;
        e.duration_us = None;
        e
    };
    for (name, format) in [("csv", Format::Csv), ("clf", Format::Clf)] {
        let exported = run_ok(&["lake", "export", lake_arg, "--format", name]);
        let body = if name == "csv" {
            let (header, rest) = exported.split_once('\n').unwrap();
            assert_eq!(header, logmon_protocol::render::CSV_HEADER);
            rest
        } else {
            &exported
        };
        let back: Vec<Event> = parse_all(body, format).into_iter().map(strip).collect();
        let want: Vec<Event> = want.iter().cloned().map(strip).collect();
        assert!(
            sorted(back) == sorted(want),
            "{name}: the export's events differ"
        );
    }
    // A window.
    let from = (first / 3600 + 1) * 3600;
    let to = from + 1800;
    let (from_s, to_s) = (from.to_string(), rfc(to));
    let exported = run_ok(&[
        "lake", "export", lake_arg, "--format", "json", "--since", &from_s, "--until", &to_s,
    ]);
    let window: Vec<Event> = originals
        .iter()
        .filter(|e| (from..to).contains(&e.second()))
        .cloned()
        .collect();
    assert!(!window.is_empty());
    assert!(
        sorted(parse_all(&exported, Format::Json)) == sorted(window),
        "the window's events"
    );
    println!(
        "lake ls: {} partitions, {} rows; lake export: {} events back in four formats",
        partitions.len(),
        originals.len(),
        originals.len()
    );
}

/// `replay` output (JSON lines) of `args`, which must succeed; its alert
/// and stats lines, and its summary's events.
fn replay_json(args: &[&str]) -> (Vec<Value>, u64, String) {
    let out = Command::new(collector_bin())
        .arg("replay")
        .args(args)
        .args(["--output", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {args:?}: {stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events = lines
        .iter()
        .find(|v| v["kind"] == "summary")
        .and_then(|v| v["events"].as_u64())
        .unwrap();
    let kept = lines
        .into_iter()
        .filter(|v| v["kind"] == "alert" || v["kind"] == "stats")
        .collect();
    (kept, events, stderr)
}

/// A backtest over the lake gives exactly what `replay` of the log gives,
/// for several rules and parameter sets, over the whole lake and over a
/// window of it (against the log's lines of that window).
fn backtests_give_the_transitions_of_the_log(lake: &Path, log: &Path) {
    let lake_arg = lake.to_str().unwrap();
    let log_arg = log.to_str().unwrap();
    let rules: [&[&str]; 3] = [
        &["--threshold", "0.8", "--window", "20"],
        &[
            "--threshold",
            "0.6",
            "--window",
            "60",
            "--rule",
            "error-rate:threshold=0.3,window=120",
        ],
        &[
            "--threshold",
            "2",
            "--window",
            "5",
            "--rule",
            "client-flood",
        ],
    ];
    let mut transitions = 0;
    for args in rules {
        let text = replay_json(&[&["--input-format", "combined", log_arg], args].concat());
        let lake_run = replay_json(&[&["--lake", lake_arg], args].concat());
        assert_eq!(lake_run.2, "", "the backtest's stderr");
        assert_eq!(lake_run.1, text.1, "{args:?}: events");
        assert_eq!(lake_run.0, text.0, "{args:?}: alerts and statistics");
        transitions += text.0.iter().filter(|v| v["kind"] == "alert").count();
    }
    assert!(transitions > 0, "the parameter sets produce transitions");
    println!("backtests: {transitions} transitions, the same from the lake as from the log");

    let text = std::fs::read_to_string(log).unwrap();
    let originals = parse_all(&text, Format::Combined);
    let seconds: Vec<i64> = originals.iter().map(Event::second).collect();

    // Against the definition: `high-traffic` by brute force over the log's
    // seconds (the default lateness, 5 s), and `rules test --lake` alike.
    let lake_run = replay_json(&["--lake", lake_arg, "--threshold", "0.8", "--window", "20"]);
    let model = logmon_tests::brute_force(&seconds, 0.8, 20, 5);
    let high: Vec<(String, i64, f64)> = lake_run
        .0
        .iter()
        .filter(|v| v["kind"] == "alert" && v["rule"] == "high-traffic")
        .map(|v| {
            (
                v["state"].as_str().unwrap().to_owned(),
                v["at"].as_i64().unwrap(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let states = |v: &[(String, i64, f64)]| -> Vec<(String, i64)> {
        v.iter().map(|(s, at, _)| (s.clone(), *at)).collect()
    };
    let expected: Vec<(String, i64)> = model
        .transitions
        .iter()
        .map(|t| {
            let state = match t.state {
                logmon_tests::State::Firing => "firing",
                logmon_tests::State::Resolved => "resolved",
            };
            (state.to_owned(), t.at)
        })
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(
        states(&high),
        expected,
        "the backtest against the brute force"
    );
    for ((_, at, value), e) in high.iter().zip(&model.transitions) {
        assert!(
            (value - e.value).abs() < 1e-9,
            "value at {at}: {value} vs {}",
            e.value
        );
    }
    let tested = run_ok(&[
        "rules",
        "test",
        "high-traffic",
        "--lake",
        lake_arg,
        "--param",
        "threshold=0.8",
        "--param",
        "window=20",
        "--output",
        "json",
    ]);
    let tested: Vec<(String, i64, f64)> = tested
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "transition")
        .map(|v| {
            (
                v["state"].as_str().unwrap().to_owned(),
                v["at"].as_i64().unwrap(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tested, high,
        "rules test --lake gives the backtest's transitions"
    );

    lake_ls_and_export_give_back_the_log(lake, &text, &originals);

    // A window: the second hour of the log, against the log's lines of it.
    let first = seconds.iter().min().unwrap();
    let from = (first / 3600 + 1) * 3600;
    let to = from + 3600;
    let window: String = text
        .lines()
        .zip(&seconds)
        .filter(|(_, s)| (from..to).contains(*s))
        .map(|(l, _)| format!("{l}\n"))
        .collect();
    let cut = log.with_file_name("window.log");
    std::fs::write(&cut, &window).unwrap();
    let args = ["--threshold", "0.8", "--window", "20"];
    let text_run = replay_json(
        &[
            &["--input-format", "combined", cut.to_str().unwrap()],
            &args[..],
        ]
        .concat(),
    );
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let lake_run = replay_json(
        &[
            &[
                "--lake",
                lake_arg,
                "--from",
                from_s.as_str(),
                "--to",
                to_s.as_str(),
            ],
            &args[..],
        ]
        .concat(),
    );
    assert_eq!(
        lake_run.1,
        window.lines().count() as u64,
        "events in the window"
    );
    assert_eq!(lake_run.1, text_run.1);
    assert_eq!(lake_run.0, text_run.0, "the window's alerts and statistics");

    // A truncated file in the lake (half of a real one, under a name of its
    // own) is reported with its path and skipped; the rest is read.
    let real = files(lake, ".parquet").into_iter().next().unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let broken = real.with_file_name("events-900000000-900000001.parquet");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let out = Command::new(collector_bin())
        .args(["replay", "--lake", lake_arg, "--output", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let skipped = format!("{}: skipped, not a readable lake file: ", broken.display());
    assert!(stderr.contains(&skipped), "{stderr}");
    // `lake ls` and `lake export` report it too, give the rest, and exit 1.
    for args in [
        &["lake", "ls", lake_arg, "--output", "json"][..],
        &["lake", "export", lake_arg, "--format", "json"][..],
    ] {
        let out = Command::new(collector_bin()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&skipped), "{args:?}: {stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        if args[1] == "ls" {
            let total: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            assert_eq!(total["rows"], seconds.len() as u64, "{stdout}");
            assert_eq!(total["unreadable_files"], 1, "{stdout}");
        } else {
            assert_eq!(stdout.lines().count(), seconds.len(), "{args:?}");
        }
    }
    let summary: Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == "summary")
        .unwrap();
    assert_eq!(summary["events"], seconds.len() as u64);
    std::fs::remove_file(&broken).unwrap();
}

/// A lake directory the writer cannot write in (a file where the date's
/// directory goes) stops the lake writer, and `/health` says so (503) while
/// ingest takes every line; once the way is clear the
/// supervisor's restart writes every line, once.
#[test]
fn a_lake_that_cannot_be_written_is_reported_and_catches_up_when_it_can() {
    let Some(python) = duckdb_or_skip("blocked-directory") else {
        return;
    };
    let (site, want) = Site::with_log(3_000);
    let lake = site.lake();
    std::fs::create_dir_all(&lake).unwrap();
    // The directory of the first event's date.
    let first =
        time::OffsetDateTime::from_unix_timestamp(want.first.unwrap() / 1_000_000_000).unwrap();
    let blocker = lake.join(format!(
        "date={:04}-{:02}-{:02}",
        first.year(),
        u8::from(first.month()),
        first.day()
    ));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let collector = site.collector(None);
    let agent = site.agent();
    wait(
        "ingest to take every line",
        Duration::from_secs(60),
        || {
            format!(
                "{}\n{}",
                http_get(site.port, "/metrics"),
                site.collector_log()
            )
        },
        || site.metric("logmon_ingest_events_accepted_total") == want.count,
    );
    wait(
        "/health to name the lake writer",
        Duration::from_secs(30),
        || site.collector_log(),
        || {
            let health = http_get(site.port, "/health");
            health.starts_with("HTTP/1.1 503") && health.contains("lake-writer: failed: creating")
        },
    );
    assert!(site.metric("logmon_lake_failures_total") >= 1);
    // Nothing of that date is in the lake (a run across UTC midnight may
    // have written the next date's rows).
    assert!(read_lake(&python, &lake).count < want.count);
    std::fs::remove_file(&blocker).unwrap();
    wait(
        "every line in the lake",
        Duration::from_secs(90),
        || site.collector_log(),
        || read_lake(&python, &lake).count >= want.count,
    );
    wait(
        "/health to be ok again",
        Duration::from_secs(30),
        || site.collector_log(),
        || !http_get(site.port, "/health").contains("lake-writer"),
    );
    drop(agent);
    site.stop(collector);
    assert_eq!(read_lake(&python, &lake), want);
}

/// The tiers at the hot tier's edge. InfluxDB keeps raw events for one hour
/// here (the shortest retention it allows) and its retention service runs
/// every second; a log whose events reach from about 4.6 hours ago to ten
/// minutes ago is shipped. InfluxDB deletes its shards past the retention
/// (1-hour shard groups, deleted once they ended more than an hour ago),
/// keeps every event of the last hour, and the lake keeps them all: every
/// event is in one tier at least, and those InfluxDB dropped are in the lake.
#[test]
fn every_event_is_in_influxdb_or_the_lake_at_the_hot_tiers_edge() {
    let Some(python) = duckdb_or_skip("tiers") else {
        return;
    };
    let (mut site, want) = Site::with_log_at(4_000, 0.25);
    let influx = InfluxServer::start_enforcing_retention();
    site.influx = Some(influx.url());
    site.config = "[influx.api.v1]\nretention = \"1h\"\n".into();
    let events = parse_all(
        &std::fs::read_to_string(site.log()).unwrap(),
        Format::Combined,
    );
    let collector = site.collector(None);
    let agent = site.agent();
    let hot = |q: &str| {
        influx.scalar(&format!(
            r#"SELECT count("bytes") FROM "lake"."logmon_hot"."http_requests"{q}"#
        ))
    };
    wait(
        "every line in the lake",
        Duration::from_secs(90),
        || site.collector_log(),
        || read_lake(&python, &site.lake()).count >= want.count,
    );
    wait(
        "InfluxDB's writer to take every line",
        Duration::from_secs(60),
        || http_get(site.port, "/metrics"),
        || {
            http_get(site.port, "/metrics")
                .contains(r#"logmon_consumer_lag_records{log="bus",consumer="influx"} 0"#)
        },
    );
    // Every event older than two hours is in a shard group that ended more
    // than an hour ago: the retention service deletes it.
    let now = logmon_tests::harness::unix_now() as i64;
    let old = events.iter().filter(|e| e.second() < now - 7200).count();
    assert!(old > 0, "the log reaches past InfluxDB's retention");
    wait(
        "InfluxDB's retention to delete the old shards",
        Duration::from_secs(30),
        || influx.log(),
        || hot(&format!(" WHERE time < {}s", now - 7200)) == 0,
    );
    drop(agent);
    site.stop(collector);

    // The lake: every event, once, the old ones too.
    assert_eq!(read_lake(&python, &site.lake()), want);
    // InfluxDB: every event of the last hour (never due for deletion).
    let check = logmon_tests::harness::unix_now() as i64;
    let recent = events.iter().filter(|e| e.second() >= check - 3600).count() as i64;
    assert!(recent > 0);
    assert_eq!(hot(&format!(" WHERE time >= {}s", check - 3600)), recent);
    let stored = hot("");
    assert!(
        stored >= recent && stored <= (events.len() - old) as i64,
        "InfluxDB holds {stored}"
    );
    eprintln!(
        "tiers: {} events; InfluxDB (1 h) holds {stored}, the lake all; {} only in the lake",
        events.len(),
        events.len() as i64 - stored
    );
}

/// A mounted file system, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` (`mount -o size=`) at `dir`; `None` when this
    /// process may not mount (not root, or no mount namespace of its own).
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remounting {}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A lake on a full file system (a 64 KiB tmpfs: a few files fit, then
/// every write fails with ENOSPC): the lake writer stops and `/health` says
/// so (503) while ingest takes every line and the InfluxDB writer stores
/// every one; once the file system grows (remounted at 64 MiB) the writer
/// resumes and the lake holds every line, once.
#[test]
fn a_lake_on_a_full_disk_stops_reports_and_resumes_without_loss() {
    let Some(python) = duckdb_or_skip("full-disk") else {
        return;
    };
    let (mut site, want) = Site::with_log(3_000);
    let Some(mount) = Mount::tmpfs(&site.lake(), "64k") else {
        skipped(
            "the lake's full-disk test mounts a small tmpfs, which needs root \
             (CI runs as root here)",
        );
        return;
    };
    let influx = InfluxServer::start();
    site.influx = Some(influx.url());
    let collector = site.collector(None);
    let agent = site.agent();
    wait(
        "ingest to take every line",
        Duration::from_secs(60),
        || site.collector_log(),
        || site.metric("logmon_ingest_events_accepted_total") == want.count,
    );
    wait(
        "/health to name the lake writer",
        Duration::from_secs(30),
        || site.collector_log(),
        || {
            let health = http_get(site.port, "/health");
            health.starts_with("HTTP/1.1 503") && health.contains("lake-writer: failed")
        },
    );
    let health = http_get(site.port, "/health");
    assert!(health.contains("No space left on device"), "{health}");
    wait(
        "InfluxDB's writer to store every line meanwhile",
        Duration::from_secs(60),
        || http_get(site.port, "/metrics"),
        || {
            http_get(site.port, "/metrics")
                .contains(r#"logmon_consumer_lag_records{log="bus",consumer="influx"} 0"#)
        },
    );
    let hot = influx.scalar(r#"SELECT count("bytes") FROM "lake"."logmon_hot"."http_requests""#);
    assert_eq!(hot, want.count as i64);
    assert!(read_lake(&python, &site.lake()).count < want.count);

    mount.resize("64m");
    wait(
        "every line in the lake",
        Duration::from_secs(120),
        || site.collector_log(),
        || read_lake(&python, &site.lake()).count >= want.count,
    );
    wait(
        "/health to be ok again",
        Duration::from_secs(30),
        || site.collector_log(),
        || !http_get(site.port, "/health").contains("lake-writer"),
    );
    drop(agent);
    site.stop(collector);
    assert_eq!(read_lake(&python, &site.lake()), want);
    assert!(
        files(&site.lake(), ".tmp").is_empty(),
        "no temporary file is left"
    );
}
