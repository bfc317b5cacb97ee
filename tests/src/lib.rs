//! Helpers shared by the end-to-end tests: finding and running the real
//! `logmon-collector` binary, parsing its JSON output, and an independent
//! brute-force model of the `high-traffic` rule to check it against.

pub mod bench;
pub mod browser;
pub mod fuzz;
pub mod harness;
pub mod influx;
pub mod live;
pub mod pki;
pub mod polyglot;

use logmon_protocol::{Event, Format, LineParser, Parsed};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The exercise's public sample log, if it is present.
pub fn sample_csv() -> Option<PathBuf> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/sample_csv.txt"
    ));
    if path.is_file() {
        Some(path)
    } else {
        // Straight to the process's stderr, past the test harness's capture,
        // so that a run without the sample says what it did not check.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the exercise's public sample {} is absent; the checks on it did not run (the generated cases still do)",
            path.display()
        );
        None
    }
}

/// Says on the process's stderr, past the test harness's capture, that a
/// test did not run its checks and why.
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The `logmon-collector` binary: `$LOGMON_COLLECTOR_BIN`, or the one in the
/// target directory this test executable was built into.
pub fn collector_bin() -> PathBuf {
    binary("logmon-collector", "LOGMON_COLLECTOR_BIN")
}

/// The `logmon-agent` binary: `$LOGMON_AGENT_BIN`, or the one in the target
/// directory this test executable was built into.
pub fn agent_bin() -> PathBuf {
    binary("logmon-agent", "LOGMON_AGENT_BIN")
}

fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "{env}={} is not a file", bin.display());
        return bin;
    }
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().expect("the path of the test executable");
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join(&file);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no `{file}` binary found above {}: run `cargo build -p {name}` first (or set {env})",
        exe.display()
    );
}

// --- generate -----------------------------------------------------------------

/// Arguments of `logmon-collector generate`.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub format: Format,
    pub lines: u64,
    pub start: i64,
    pub rate: f64,
    /// `AT:DURATION:RATE` each.
    pub bursts: Vec<String>,
    /// `AT:DURATION` each.
    pub gaps: Vec<String>,
    pub steady: bool,
    pub disorder: u32,
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            format: Format::Csv,
            lines: 10_000,
            start: 1_549_573_860,
            rate: 8.0,
            bursts: Vec::new(),
            gaps: Vec::new(),
            steady: false,
            disorder: 2,
            seed: 1,
        }
    }
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Csv => "csv",
        Format::Json => "jsonl",
        Format::Clf | Format::Combined => "log",
    }
}

/// Runs `generate` into `dir` and returns the file written.
pub fn generate(dir: &Path, spec: &GenSpec) -> PathBuf {
    let path = dir.join(format!(
        "gen-{}-{}.{}",
        spec.format.name(),
        spec.seed,
        extension(spec.format)
    ));
    let mut cmd = Command::new(collector_bin());
    cmd.arg("generate")
        .args(["--format", spec.format.name()])
        .args(["--lines", &spec.lines.to_string()])
        .args(["--start", &spec.start.to_string()])
        .args(["--rate", &spec.rate.to_string()])
        .args(["--disorder", &spec.disorder.to_string()])
        .args(["--seed", &spec.seed.to_string()])
        .arg("-o")
        .arg(&path);
    for b in &spec.bursts {
        cmd.args(["--burst", b]);
    }
    for g in &spec.gaps {
        cmd.args(["--gap", g]);
    }
    if spec.steady {
        cmd.arg("--steady");
    }
    let out = cmd.output().expect("running logmon-collector generate");
    assert!(
        out.status.success(),
        "generate {spec:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// One request of a hand-built log: client, path, how many times.
pub type Requests = (&'static str, &'static str, u64);

/// Writes `access.csv` in `dir`, an exercise-CSV log of `seconds` seconds
/// from `start`: second `s` holds the requests `requests(s)`, in order.
pub fn csv_by_second(
    dir: &Path,
    start: i64,
    seconds: i64,
    requests: impl Fn(i64) -> Vec<Requests>,
) -> PathBuf {
    use std::fmt::Write as _;
    let mut log = String::from(
        "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n",
    );
    for s in 0..seconds {
        for (client, path, n) in requests(s) {
            for _ in 0..n {
                writeln!(
                    log,
                    "\"{client}\",\"-\",\"apache\",{},\"GET {path} HTTP/1.0\",200,1234",
                    start + s
                )
                .expect("writing to a String");
            }
        }
    }
    let path = dir.join("access.csv");
    std::fs::write(&path, log).expect("writing the log");
    path
}

// --- replay -------------------------------------------------------------------

/// Arguments of `logmon-collector replay`.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    pub input_format: String,
    pub threshold: f64,
    pub window: u32,
    pub lateness: u32,
    pub stats_every: u32,
    /// `--output json` when true, the default text otherwise.
    pub json: bool,
}

impl Default for ReplayArgs {
    fn default() -> Self {
        ReplayArgs {
            input_format: "auto".into(),
            threshold: 10.0,
            window: 120,
            lateness: 5,
            stats_every: 10,
            json: true,
        }
    }
}

impl ReplayArgs {
    fn command(&self, input: &str) -> Command {
        let mut cmd = Command::new(collector_bin());
        cmd.arg("replay")
            .arg(input)
            .args(["--input-format", &self.input_format])
            .args(["--threshold", &self.threshold.to_string()])
            .args(["--window", &self.window.to_string()])
            .args(["--lateness", &self.lateness.to_string()])
            .args(["--stats-every", &self.stats_every.to_string()]);
        if self.json {
            cmd.args(["--output", "json"]);
        }
        cmd
    }
}

/// One `{"kind":"stats",...}` line.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsLine {
    pub start: i64,
    pub end: i64,
    pub hits: u64,
}

/// Alert state of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Firing,
    Resolved,
}

/// One `{"kind":"alert",...}` line.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLine {
    pub rule: String,
    pub key: String,
    pub state: State,
    pub at: i64,
    pub value: f64,
    pub message: String,
}

/// The final `{"kind":"summary",...}` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryLine {
    pub lines: u64,
    pub events: u64,
    pub skipped: u64,
    pub malformed: u64,
    pub late: u64,
    pub seconds: u64,
    pub transitions: u64,
    pub quarantined: u64,
}

/// Everything a `replay` run printed.
#[derive(Debug)]
pub struct ReplayRun {
    pub stdout: String,
    pub stderr: String,
    pub stats: Vec<StatsLine>,
    pub alerts: Vec<AlertLine>,
    /// Number of `rule-quarantined` lines.
    pub quarantined: usize,
    /// `quiet` lines: runs of statistics blocks without traffic, (start, end).
    pub quiet: Vec<(i64, i64)>,
    /// `None` for text output.
    pub summary: Option<SummaryLine>,
}

impl ReplayRun {
    /// The `high-traffic` transitions as (state, at).
    pub fn high_traffic(&self) -> Vec<(State, i64)> {
        self.alerts
            .iter()
            .filter(|a| a.rule == "high-traffic")
            .map(|a| (a.state, a.at))
            .collect()
    }

    pub fn summary(&self) -> &SummaryLine {
        self.summary.as_ref().expect("a summary line (json output)")
    }

    pub fn stats_hits(&self) -> u64 {
        self.stats.iter().map(|s| s.hits).sum()
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer `{field}` in {v}"))
}

fn uint(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no unsigned `{field}` in {v}"))
}

fn string(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string `{field}` in {v}"))
        .to_owned()
}

/// Parses the JSON-lines stdout of `replay --output json`.
pub fn parse_json_output(stdout: &str, stderr: String) -> ReplayRun {
    let mut run = ReplayRun {
        stdout: stdout.to_owned(),
        stderr,
        stats: Vec::new(),
        alerts: Vec::new(),
        quarantined: 0,
        quiet: Vec::new(),
        summary: None,
    };
    for line in stdout.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(run.summary.is_none(), "output after the summary: {line}");
        match v.get("kind").and_then(Value::as_str) {
            Some("stats") => run.stats.push(StatsLine {
                start: int(&v, "start"),
                end: int(&v, "end"),
                hits: uint(&v, "hits"),
            }),
            Some("alert") => run.alerts.push(AlertLine {
                rule: string(&v, "rule"),
                key: string(&v, "key"),
                state: match string(&v, "state").as_str() {
                    "firing" => State::Firing,
                    "resolved" => State::Resolved,
                    other => panic!("unknown alert state `{other}`: {line}"),
                },
                at: int(&v, "at"),
                value: v
                    .get("value")
                    .and_then(Value::as_f64)
                    .unwrap_or_else(|| panic!("no value: {line}")),
                message: string(&v, "message"),
            }),
            Some("rule-quarantined") => run.quarantined += 1,
            Some("quiet") => run.quiet.push((int(&v, "start"), int(&v, "end"))),
            Some("summary") => {
                run.summary = Some(SummaryLine {
                    lines: uint(&v, "lines"),
                    events: uint(&v, "events"),
                    skipped: uint(&v, "skipped"),
                    malformed: uint(&v, "malformed"),
                    late: uint(&v, "late"),
                    seconds: uint(&v, "seconds"),
                    transitions: uint(&v, "transitions"),
                    quarantined: uint(&v, "quarantined"),
                })
            }
            _ => panic!("unknown output line: {line}"),
        }
    }
    run
}

fn finish(out: Output, what: &str, json: bool) -> ReplayRun {
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8 stderr");
    assert!(
        out.status.success(),
        "{what} failed ({}): {stderr}",
        out.status
    );
    if json {
        let run = parse_json_output(&stdout, stderr);
        assert!(run.summary.is_some(), "{what}: no summary line");
        run
    } else {
        ReplayRun {
            stdout,
            stderr,
            stats: Vec::new(),
            alerts: Vec::new(),
            quarantined: 0,
            quiet: Vec::new(),
            summary: None,
        }
    }
}

/// Runs `replay FILE` and parses what it printed; panics if it fails.
pub fn replay(file: &Path, args: &ReplayArgs) -> ReplayRun {
    let input = file.to_str().expect("UTF-8 path");
    let out = args
        .command(input)
        .output()
        .expect("running logmon-collector replay");
    finish(
        out,
        &format!("replay {} {args:?}", file.display()),
        args.json,
    )
}

/// Runs `replay FILE` like [`replay`], killing it if it has not finished
/// within `limit` (a bound that keeps a hang from holding the suite, not a
/// timing assertion: the limit is far above the expected time).
pub fn replay_within(file: &Path, args: &ReplayArgs, limit: std::time::Duration) -> ReplayRun {
    let input = file.to_str().expect("UTF-8 path");
    let mut child = args
        .command(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running logmon-collector replay");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).map(|_| v)
    });
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for replay") {
            break status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay {} did not finish within {limit:?}", file.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap().expect("reading stdout"),
        stderr: err.join().unwrap().expect("reading stderr"),
    };
    finish(
        output,
        &format!("replay {} {args:?}", file.display()),
        args.json,
    )
}

/// Runs `replay -` with `file`'s bytes on standard input.
pub fn replay_stdin(file: &Path, args: &ReplayArgs) -> ReplayRun {
    let bytes = std::fs::read(file).expect("reading the log");
    let mut child = args
        .command("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running logmon-collector replay -");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("waiting for replay");
    writer.join().expect("stdin writer").expect("writing stdin");
    finish(
        out,
        &format!("replay - < {} {args:?}", file.display()),
        args.json,
    )
}

// --- independent model ----------------------------------------------------------

/// Splits one CSV record (double quotes, `""` escapes) into its fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The event seconds of a log, in file order. CSV is read here directly (the
/// 4th field, unix seconds; the header and unparsable lines are left out);
/// other formats go through `LineParser` for their timestamps only.
pub fn event_seconds(path: &Path, format: Format) -> Vec<i64> {
    let text = std::fs::read_to_string(path).expect("reading the log");
    let mut seconds = Vec::new();
    if format == Format::Csv {
        for line in text.lines() {
            let fields = csv_fields(line);
            if fields.len() == 7
                && let Ok(s) = fields[3].trim().parse::<i64>()
            {
                seconds.push(s);
            }
        }
    } else {
        let mut parser = LineParser::new(format);
        let mut event = Event::empty();
        for (i, line) in text.lines().enumerate() {
            match parser.parse_into(line, &mut event) {
                Ok(Parsed::Event) => seconds.push(event.timestamp.div_euclid(1_000_000_000)),
                Ok(Parsed::Skipped) => {}
                Err(e) => panic!("{}:{}: {e}", path.display(), i + 1),
            }
        }
    }
    seconds
}

/// A transition the model expects, with the window average at that second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    pub state: State,
    pub at: i64,
    pub value: f64,
}

/// What the brute-force model computes from a log.
#[derive(Debug, Default)]
pub struct Model {
    /// Hits per second of the events that were not late.
    pub hits: HashMap<i64, u64>,
    pub events: u64,
    pub late: u64,
    /// First and last second evaluated.
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub transitions: Vec<Expected>,
}

impl Model {
    /// (state, at) of the expected transitions.
    pub fn states(&self) -> Vec<(State, i64)> {
        self.transitions.iter().map(|t| (t.state, t.at)).collect()
    }

    /// The brute-force window average at second `t`.
    pub fn average(&self, t: i64, window: u32) -> f64 {
        let w = i64::from(window);
        let sum: u64 = (t - w + 1..=t)
            .map(|s| self.hits.get(&s).copied().unwrap_or(0))
            .sum();
        sum as f64 / f64::from(window)
    }
}

/// Evaluates `high-traffic` by brute force from its definition: an event is
/// late when it is more than `lateness` seconds behind the newest one seen
/// before it; every second from the oldest counted event to the newest is
/// evaluated (silent seconds too); avg(t) = (hits of t-W+1 ..= t) / W; above
/// `threshold` fires, below resolves, equal changes nothing.
pub fn brute_force(seconds: &[i64], threshold: f64, window: u32, lateness: u32) -> Model {
    brute_force_until(seconds, threshold, window, lateness, None)
}

/// [`brute_force`], evaluating the silent seconds after the newest event
/// through `until` as well (a live input whose seconds the wall clock
/// closes during silence).
pub fn brute_force_until(
    seconds: &[i64],
    threshold: f64,
    window: u32,
    lateness: u32,
    until: Option<i64>,
) -> Model {
    let mut model = Model::default();
    let mut newest: Option<i64> = None;
    for &s in seconds {
        if newest.is_some_and(|n| n - s > i64::from(lateness)) {
            model.late += 1;
            continue;
        }
        newest = Some(newest.map_or(s, |n| n.max(s)));
        model.events += 1;
        *model.hits.entry(s).or_insert(0) += 1;
    }
    model.first = model.hits.keys().min().copied();
    model.last = model.hits.keys().max().copied();
    let (Some(first), Some(last)) = (model.first, model.last) else {
        return model;
    };
    let mut firing = false;
    for t in first..=until.map_or(last, |u| u.max(last)) {
        let avg = model.average(t, window);
        if !firing && avg > threshold {
            firing = true;
            model.transitions.push(Expected {
                state: State::Firing,
                at: t,
                value: avg,
            });
        } else if firing && avg < threshold {
            firing = false;
            model.transitions.push(Expected {
                state: State::Resolved,
                at: t,
                value: avg,
            });
        }
    }
    model
}

/// Asserts that the replay's `high-traffic` transitions are exactly the
/// model's, values within 1e-9.
pub fn assert_matches_model(run: &ReplayRun, model: &Model, what: &str) {
    assert_eq!(
        run.high_traffic(),
        model.states(),
        "{what}: transitions (state, at) differ from the brute force"
    );
    let alerts: Vec<&AlertLine> = run
        .alerts
        .iter()
        .filter(|a| a.rule == "high-traffic")
        .collect();
    for (a, e) in alerts.iter().zip(&model.transitions) {
        assert_eq!(a.key, "", "{what}: high-traffic key");
        assert!(
            (a.value - e.value).abs() < 1e-9,
            "{what}: value at {} is {}, brute force {}",
            a.at,
            a.value,
            e.value
        );
    }
    assert_eq!(
        run.quarantined, 0,
        "{what}: a rule was quarantined: {}",
        run.stdout
    );
}

/// `2019-02-07 21:11:00 UTC` for a unix second (proleptic Gregorian, UTC).
pub fn utc(time: i64) -> String {
    let days = time.div_euclid(86_400);
    let secs = time.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_549_573_860), "2019-02-07 21:11:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn csv_fields_handle_quotes() {
        assert_eq!(
            csv_fields(r#""10.0.0.2","-","apache",1549573860,"GET /a,b HTTP/1.0",200,1234"#),
            [
                "10.0.0.2",
                "-",
                "apache",
                "1549573860",
                "GET /a,b HTTP/1.0",
                "200",
                "1234"
            ]
        );
    }

    #[test]
    fn brute_force_follows_the_definition() {
        // W=4, T=2: sums 3,6,8,8,14,12,11,12,3,2 → fires at 104 (3.5), resolves at 108 (0.75).
        let mut seconds = Vec::new();
        for (i, h) in [3, 3, 2, 0, 9, 1, 1, 1, 0, 1].into_iter().enumerate() {
            seconds.extend(std::iter::repeat_n(100 + i as i64, h));
        }
        let m = brute_force(&seconds, 2.0, 4, 5);
        assert_eq!(m.states(), [(State::Firing, 104), (State::Resolved, 108)]);
        assert_eq!(m.transitions[0].value, 3.5);
        assert_eq!(m.transitions[1].value, 0.75);
        // One event 6 s behind the newest is late.
        let m = brute_force(&[10, 20, 14, 15], 100.0, 4, 5);
        assert_eq!((m.events, m.late), (3, 1));
    }
}
