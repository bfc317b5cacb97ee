//! Replay throughput, stage by stage, next to a read-only baseline measured in
//! the same run (`make bench`).
//!
//! A CSV log of `BENCH_LINES` lines (1,000,000 by default) is generated once
//! into a temporary file; every stage then reads that file from the page
//! cache. Each stage runs `BENCH_RUNS` times (5 by default), the stages
//! interleaved round by round so drift on a noisy machine hits them alike,
//! and the best time counts. Because absolute figures vary between machines
//! and runs, every stage is also given as a ratio to the time of merely
//! reading the file's lines in the same run.
//!
//! Only `std::time::Instant`; no benchmark framework.

mod common;

use logmon_collector::console::printer::OutputKind;
use logmon_collector::console::replay::{self, ReplayOptions};
use logmon_collector::engine::stats::StatsClock;
use logmon_collector::engine::{EventTimeEngine, SecondStats};
use logmon_collector::rules::{RuleRuntime, RuleSet};
use logmon_protocol::generate::{Burst, Gap, TrafficSpec, generate};
use logmon_protocol::parse::Parsed;
use logmon_protocol::{Event, Format, LineParser};
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Same buffer size as `replay` uses.
const READ_BUFFER: usize = 1 << 20;

/// The generated log, removed when the bench ends.
struct TempLog {
    path: PathBuf,
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Traffic at a realistic rate: 200 req/s, with bursts and a short outage,
/// a little out of order, as a busy site's access log.
fn spec(lines: u64) -> TrafficSpec {
    TrafficSpec {
        format: Format::Csv,
        lines,
        base_rate: 200.0,
        bursts: vec![
            Burst {
                at: 600,
                duration: 300,
                rate: 650.0,
            },
            Burst {
                at: 2400,
                duration: 120,
                rate: 1200.0,
            },
        ],
        gaps: vec![Gap {
            at: 1500,
            duration: 60,
        }],
        disorder: 2,
        error_rate: 0.02,
        sections: 12,
        clients: 500,
        seed: 7,
        ..TrafficSpec::default()
    }
}

fn generate_log(lines: u64) -> (TempLog, u64) {
    let path = std::env::temp_dir().join(format!(
        "logmon-bench-replay-{}-{}.csv",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let log = TempLog { path };
    let mut out = BufWriter::new(File::create(&log.path).expect("creating the temporary log"));
    let made = generate(&spec(lines), &mut out).expect("writing the temporary log");
    out.flush().expect("writing the temporary log");
    (log, made)
}

fn reader(path: &Path) -> BufReader<File> {
    BufReader::with_capacity(READ_BUFFER, File::open(path).expect("opening the log"))
}

/// Calls `each` with every line of `path`, without its `\n`, like replay's
/// line reader.
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8])) {
    let mut input = reader(path);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).expect("reading the log") == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        each(&buf);
    }
}

/// What a stage saw; checked against the other stages so that none of them
/// silently does less work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    lines: u64,
    events: u64,
    seconds: u64,
    reports: u64,
}

/// Stage 1: read lines, touching each (summing lengths).
fn read_lines(path: &Path) -> Seen {
    let mut lines = 0u64;
    let mut bytes = 0u64;
    for_each_line(path, |line| {
        lines += 1;
        bytes += black_box(line).len() as u64;
    });
    black_box(bytes);
    Seen {
        lines,
        ..Seen::default()
    }
}

/// Parses every line of `path` as replay does (UTF-8 check, then
/// `parse_into` on a reused event) and hands each event to `on_event`.
fn parse_lines(path: &Path, mut on_event: impl FnMut(&Event)) -> Seen {
    let mut parser = LineParser::new(Format::Csv);
    let mut event = Event::empty();
    let mut seen = Seen::default();
    for_each_line(path, |line| {
        seen.lines += 1;
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        if let Ok(Parsed::Event) = parser.parse_into(text, &mut event) {
            seen.events += 1;
            on_event(&event);
        }
    });
    seen
}

/// Stage 2: read + parse.
fn read_parse(path: &Path) -> Seen {
    let mut status_sum = 0u64;
    let seen = parse_lines(path, |e| status_sum += u64::from(black_box(e).status));
    black_box(status_sum);
    seen
}

/// Stages 3 and 4: read + parse + engine, with `on_second` for each closed
/// second.
fn read_parse_engine(path: &Path, mut on_second: impl FnMut(&SecondStats)) -> Seen {
    let mut engine = EventTimeEngine::new(ReplayOptions::default().lateness);
    let mut seconds = 0u64;
    let mut closed = |s: &SecondStats| {
        seconds += 1;
        on_second(s);
    };
    let mut seen = parse_lines(path, |e| {
        engine.observe(e, &mut closed);
    });
    engine.finish(&mut closed);
    seen.seconds = seconds;
    seen
}

/// Stage 3: closed seconds only counted.
fn read_parse_engine_only(path: &Path) -> Seen {
    read_parse_engine(path, |s| {
        black_box(s.hits);
    })
}

/// Stage 4: closed seconds go through the statistics clock; reports are
/// built, not printed.
fn read_parse_engine_stats(path: &Path) -> Seen {
    let opts = ReplayOptions::default();
    let mut clock = StatsClock::new(opts.stats_every, opts.top);
    let mut reports = 0u64;
    let mut seen = read_parse_engine(path, |s| {
        clock.second(s, |r| {
            reports += 1;
            black_box(r);
        });
    });
    clock.finish(|r| {
        reports += 1;
        black_box(r);
    });
    seen.reports = reports;
    seen
}

fn replay_options(path: &Path, output: OutputKind) -> ReplayOptions {
    ReplayOptions {
        input: Some(path.to_owned()),
        rules: vec!["error-rate".parse().expect("a shipped rule name")],
        output,
        ..ReplayOptions::default()
    }
}

/// Stages 5 and 6: the whole replay, output discarded.
fn full_replay(path: &Path, output: OutputKind) -> Seen {
    let summary = replay::run(
        &replay_options(path, output),
        std::io::sink(),
        &mut std::io::sink(),
    )
    .expect("replay failed");
    Seen {
        lines: summary.lines,
        events: summary.events,
        seconds: summary.seconds,
        reports: 0,
    }
}

/// The log's events as a lake (one Parquet file per UTC hour, as the lake
/// writer lays them out), for the backtest row.
fn build_lake(path: &Path, root: &Path) -> u64 {
    use logmon_collector::lake::encode::{Row, Source, encode};
    use logmon_collector::lake::layout::{Partition, Range};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let source = Arc::new(Source {
        host: "bench".into(),
        agent: "bench".into(),
        stream: "/bench.log".into(),
        fingerprint: 1,
        labels: Vec::new(),
    });
    let mut hours: BTreeMap<Partition, Vec<Row>> = BTreeMap::new();
    parse_lines(path, |e| {
        hours
            .entry(Partition::of(e.timestamp))
            .or_default()
            .push(Row {
                source: Arc::clone(&source),
                event: e.clone(),
            })
    });
    let mut bytes = 0;
    for (i, (partition, mut rows)) in hours.into_iter().enumerate() {
        let range = Range {
            first: i as u64,
            end: i as u64 + 1,
        };
        let file = encode(
            &mut rows,
            range,
            logmon_collector::lake::DEFAULT_ROW_GROUP_ROWS,
        )
        .expect("encoding a lake file");
        let dir = root.join(partition.relative_dir());
        std::fs::create_dir_all(&dir).expect("a partition directory");
        std::fs::write(dir.join(range.file_name()), &file).expect("writing a lake file");
        bytes += file.len() as u64;
    }
    bytes
}

/// One measurement of the rules alone.
#[derive(Debug, Clone, Copy)]
struct RuleTimes {
    /// `RuleRuntime::new` + `RuleSet::add` for each rule replay starts.
    startup: Duration,
    /// `RuleSet::evaluate` over every closed second (interface conversion,
    /// the calls into WebAssembly, transition diffing).
    evaluate: Duration,
    /// Time inside the guests' `evaluate` calls (sum of `health.busy`).
    busy: Duration,
    transitions: usize,
}

/// Starts the rules of a default replay with `--rule error-rate` and feeds
/// them the closed seconds of the log.
fn rules_alone(opts: &ReplayOptions, seconds: &[SecondStats]) -> RuleTimes {
    let specs = replay::rule_specs(opts).expect("rule specs");
    let started = Instant::now();
    let runtime = RuleRuntime::new(opts.limits).expect("starting the rule runtime");
    let mut rules = RuleSet::new(runtime);
    for spec in &specs {
        rules.add(spec).expect("starting a shipped rule");
    }
    let startup = started.elapsed();
    assert_eq!(rules.instances().len(), 2, "both shipped rules run");

    let mut transitions = Vec::new();
    let mut quarantined = Vec::new();
    let mut count = 0;
    let started = Instant::now();
    for s in seconds {
        rules.evaluate(s, &mut transitions, &mut quarantined);
        count += transitions.len();
        transitions.clear();
    }
    let evaluate = started.elapsed();
    assert!(quarantined.is_empty(), "a shipped rule was quarantined");
    let busy = rules.instances().iter().map(|i| i.health.busy).sum();
    RuleTimes {
        startup,
        evaluate,
        busy,
        transitions: count,
    }
}

struct Stage {
    name: &'static str,
    run: Box<dyn Fn(&Path) -> Seen>,
    best: Duration,
    seen: Seen,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let runs = common::env_number("BENCH_RUNS", 5).max(1) as usize;
    let lines = common::env_number("BENCH_LINES", 1_000_000).max(1);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    let started = Instant::now();
    let (log, data_lines) = generate_log(lines);
    let path = log.path.as_path();
    let size = std::fs::metadata(path).expect("the log exists").len();
    let generated_in = started.elapsed();

    let mut stages: Vec<Stage> = vec![
        (
            "1 read lines (baseline)",
            Box::new(read_lines) as Box<dyn Fn(&Path) -> Seen>,
        ),
        ("2 read+parse", Box::new(read_parse)),
        ("3 read+parse+engine", Box::new(read_parse_engine_only)),
        (
            "4 read+parse+engine+stats",
            Box::new(read_parse_engine_stats),
        ),
        (
            "5 full replay, json",
            Box::new(|p: &Path| full_replay(p, OutputKind::Json)),
        ),
        (
            "6 full replay, text",
            Box::new(|p: &Path| full_replay(p, OutputKind::Text)),
        ),
    ]
    .into_iter()
    .map(|(name, run)| Stage {
        name,
        run,
        best: Duration::MAX,
        seen: Seen::default(),
    })
    .collect();

    // Warm the page cache (and the allocator) before anything is timed.
    let file_lines = read_lines(path).lines;

    // The closed seconds, kept for timing the rules alone.
    let mut closed: Vec<SecondStats> = Vec::new();
    read_parse_engine(path, |s| closed.push(s.clone()));

    let opts = replay_options(path, OutputKind::Json);
    let mut startup = Duration::MAX;
    let mut rule_eval = Duration::MAX;
    let mut rule_busy = Duration::MAX;
    let mut rule_transitions = 0;
    for _ in 0..runs {
        for stage in &mut stages {
            let t = Instant::now();
            let seen = black_box((stage.run)(path));
            let elapsed = t.elapsed();
            stage.best = stage.best.min(elapsed);
            stage.seen = seen;
        }
        let r = rules_alone(&opts, &closed);
        startup = startup.min(r.startup);
        rule_eval = rule_eval.min(r.evaluate);
        rule_busy = rule_busy.min(r.busy);
        rule_transitions = r.transitions;
    }

    // Every stage must have seen the same input.
    for stage in &stages {
        assert_eq!(stage.seen.lines, file_lines, "{}: lines", stage.name);
    }
    let events = stages[1].seen.events;
    assert_eq!(events, data_lines, "every data line is an event");
    for stage in &stages[2..] {
        assert_eq!(stage.seen.events, events, "{}: events", stage.name);
        assert_eq!(
            stage.seen.seconds, stages[2].seen.seconds,
            "{}: seconds",
            stage.name
        );
    }
    let seconds = stages[2].seen.seconds;
    assert_eq!(seconds, closed.len() as u64);

    let read = secs(stages[0].best);
    println!();
    println!(
        "replay throughput: {} data lines (+1 CSV header), {:.1} MB ({} bytes), \
         {} s of log time, {} CPUs; generated in {:.2} s",
        data_lines,
        size as f64 / 1e6,
        size,
        seconds,
        cpus,
        secs(generated_in)
    );
    println!(
        "best of {runs} runs each, file in the page cache; \"x read\" = stage time / \
         read-baseline time of this same run"
    );
    println!();
    println!(
        "{:<26} | {:>13} | {:>12} | {:>8}",
        "stage", "best time (s)", "lines/s", "x read"
    );
    println!("{:-<26}-+-{:-<13}-+-{:-<12}-+-{:-<8}", "", "", "", "");
    for stage in &stages {
        let t = secs(stage.best);
        println!(
            "{:<26} | {:>13.4} | {:>12.0} | {:>8.2}",
            stage.name,
            t,
            data_lines as f64 / t,
            t / read
        );
    }

    println!();
    println!("rules (high-traffic + error-rate), measured alone, best of {runs}:");
    println!(
        "  startup (RuleRuntime::new + RuleSet::add x2): {:.4} s  ({:.2} x read)",
        secs(startup),
        secs(startup) / read
    );
    let per_second = |d: Duration| secs(d) * 1e6 / seconds.max(1) as f64;
    println!(
        "  evaluation, inside the guests (health.busy):  {:.1} us per closed second \
         for both rules ({seconds} seconds, {:.4} s)",
        per_second(rule_busy),
        secs(rule_busy)
    );
    println!(
        "  RuleSet::evaluate, all included:             {:.1} us per closed second \
         ({:.4} s, {:.2} x read; {} transitions)",
        per_second(rule_eval),
        secs(rule_eval),
        secs(rule_eval) / read,
        rule_transitions
    );

    let t: Vec<f64> = stages.iter().map(|s| secs(s.best)).collect();
    let full = t[4];
    let share = |d: f64| 100.0 * d / full;
    println!();
    println!("where the time goes (differences of best times, as a share of stage 5):");
    let rows = [
        ("reading lines (stage 1)", t[0]),
        ("parsing (2 - 1)", t[1] - t[0]),
        ("engine (3 - 2)", t[2] - t[1]),
        ("statistics (4 - 3)", t[3] - t[2]),
        ("rules + output + setup (5 - 4)", t[4] - t[3]),
        ("  of which rule startup", secs(startup)),
        ("  of which RuleSet::evaluate", secs(rule_eval)),
        (
            "  rest: json output, pipeline",
            t[4] - t[3] - secs(startup) - secs(rule_eval),
        ),
        ("text instead of json (6 - 5)", t[5] - t[4]),
    ];
    for (name, d) in rows {
        println!("  {name:<32} {d:>8.4} s  {:>6.1} %", share(d));
    }
    println!("  (noise can make a small difference negative)");

    // The same events from a lake: a backtest (`replay --lake`), against
    // stage 5 (the text log replayed with the same rules, json output).
    let lake = tempfile::tempdir().expect("a temporary directory");
    let lake_bytes = build_lake(path, lake.path());
    let backtest = ReplayOptions {
        input: None,
        lake: Some(lake.path().to_owned()),
        ..replay_options(path, OutputKind::Json)
    };
    let mut best = Duration::MAX;
    let mut summary = None;
    for _ in 0..runs {
        let t = Instant::now();
        let s = replay::run(&backtest, std::io::sink(), &mut std::io::sink()).expect("backtest");
        best = best.min(t.elapsed());
        summary = Some(s);
    }
    let summary = summary.expect("at least one run");
    let text = replay::run(
        &replay_options(path, OutputKind::Json),
        std::io::sink(),
        &mut std::io::sink(),
    )
    .expect("replay");
    assert_eq!(summary.events, events, "the backtest read every event");
    assert_eq!(
        summary.transitions, text.transitions,
        "the same transitions"
    );
    println!();
    println!(
        "backtest from the lake, the same {events} events (Parquet, one file per hour, {:.1} MB, \
         {:.1} B/event; the log {:.1} B/line), best of {runs}:",
        lake_bytes as f64 / 1e6,
        lake_bytes as f64 / events as f64,
        size as f64 / data_lines as f64
    );
    println!(
        "  {:.4} s, {:.0} events/s, {:.2} x the time of stage 5 ({} transitions, as stage 5)",
        secs(best),
        events as f64 / secs(best),
        secs(best) / full,
        summary.transitions
    );
    println!();
    drop(log);
}
