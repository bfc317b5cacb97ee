//! `logmon-collector replay`: the original console program on the event-time
//! engine. Reads an access log (file or stdin), prints statistics every
//! interval of log time and the alert transitions of the rules, exactly as
//! the seconds close.

use crate::console::follow;
use crate::console::printer::{OutputKind, Printer};
use crate::engine::observer::{Observer, Summary};
use crate::engine::pipeline::Pipeline;
use crate::engine::seconds::{Closer, Observed};
use crate::engine::stats::StatsClock;
use crate::engine::{EventTimeEngine, SecondStats};
use crate::rules::{RuleRuntime, RuleSet, RuleSource, RuleSpec, SandboxLimits};
use anyhow::Context as _;
use logmon_protocol::parse::{DETECT_LINES, Parsed, detect};
use logmon_protocol::{Event, Format, LineParser};
use std::io::Write;
use std::path::PathBuf;

/// How to pick the input format: `auto`, a built-in format's name, or a
/// server's format string (`nginx:<log_format>`, `apache:<LogFormat>`);
/// the agent's `format` takes the same.
pub use logmon_protocol::FormatChoice;

/// Everything `replay` needs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The log; `None` or `-` reads stdin.
    pub input: Option<PathBuf>,
    pub format: FormatChoice,
    /// `high-traffic` threshold, requests per second.
    pub threshold: f64,
    /// `high-traffic` window, seconds.
    pub window: u32,
    pub lateness: u32,
    pub stats_every: u32,
    /// Directory of extra rule components (`*.wasm`), run with defaults.
    pub rules_dir: Option<PathBuf>,
    /// Extra rule instances.
    pub rules: Vec<RuleSpec>,
    pub output: OutputKind,
    /// Sections and clients listed per stats block.
    pub top: usize,
    /// Malformed lines reported one by one before only counting.
    pub report_malformed: u64,
    pub limits: SandboxLimits,
    /// `--follow`: keep reading `input` as it grows, across rotation.
    pub follow: bool,
    /// Follow standard input when it is a pipe or a terminal (`replay`
    /// does; `rules test` reads it to its end).
    pub follow_stdin: bool,
    /// `--from-end`: a followed file starts at its end, like `tail -f`.
    pub from_end: bool,
    /// While following: seconds without a line after which the wall clock
    /// (minus lateness) closes seconds. `None`: the lateness.
    pub idle_after: Option<u32>,
    /// `--lake DIR`: read the lake's events instead of a log (a backtest).
    pub lake: Option<PathBuf>,
    /// The window of a backtest, unix seconds: `from <= second < to`.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            input: None,
            format: FormatChoice::Auto,
            threshold: 10.0,
            window: 120,
            lateness: 5,
            stats_every: 10,
            rules_dir: None,
            rules: Vec::new(),
            output: OutputKind::Text,
            top: 5,
            report_malformed: 20,
            limits: SandboxLimits::default(),
            follow: false,
            follow_stdin: false,
            from_end: false,
            idle_after: None,
            lake: None,
            from: None,
            to: None,
        }
    }
}

/// The rule instances a replay runs: `high-traffic` with the threshold and
/// window given, then the rules directory, then `--rule`s.
pub fn rule_specs(opts: &ReplayOptions) -> anyhow::Result<Vec<RuleSpec>> {
    let mut specs = vec![RuleSpec::high_traffic(opts.threshold, opts.window)];
    if let Some(dir) = &opts.rules_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading rules directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        specs.extend(
            files
                .into_iter()
                .map(|path| RuleSpec::new(RuleSource::File(path), Vec::new())),
        );
    }
    specs.extend(opts.rules.iter().cloned());
    Ok(specs)
}

/// Run a replay, writing reports to `out` and diagnostics to `diag`.
pub fn run<W: Write>(
    opts: &ReplayOptions,
    out: W,
    diag: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let runtime = RuleRuntime::new(opts.limits).context("starting the WebAssembly runtime")?;
    let mut rules = RuleSet::new(runtime);
    for spec in rule_specs(opts)? {
        if let Err(e) = rules.add(&spec) {
            writeln!(diag, "logmon: rule not started: {e}")?;
        }
    }
    let mut pipeline = Pipeline::new(
        rules,
        StatsClock::new(opts.stats_every, opts.top),
        Printer::new(opts.output, out),
    );
    let counts = read_log(opts, diag, &mut pipeline).context("writing output")?;
    pipeline.finish_stats()?;
    let summary = &mut pipeline.summary;
    summary.lines = counts.lines;
    summary.events = counts.events;
    summary.skipped = counts.skipped;
    summary.malformed = counts.malformed;
    summary.late = counts.late;
    if let Some(e) = pipeline.error.take() {
        return Err(e).context("writing output");
    }
    pipeline.observer.summary(&pipeline.summary)?;
    pipeline.observer.flush()?;
    Ok(pipeline.summary)
}

/// What reading a log found, besides its seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    pub lines: u64,
    pub events: u64,
    pub skipped: u64,
    pub malformed: u64,
    pub late: u64,
}

/// Where [`read_log`] hands the seconds it closes.
pub trait SecondSink {
    fn second(&mut self, second: &SecondStats) -> std::io::Result<()>;

    /// The silent seconds `from..to`; by default one by one.
    fn silence(&mut self, from: i64, to: i64) -> std::io::Result<()> {
        let mut empty = SecondStats::silent(from);
        for time in from..to {
            empty.time = time;
            self.second(&empty)?;
        }
        Ok(())
    }
}

impl<F: FnMut(&SecondStats) -> std::io::Result<()>> SecondSink for F {
    fn second(&mut self, second: &SecondStats) -> std::io::Result<()> {
        self(second)
    }
}

/// The pipeline passes over long silences (see [`crate::engine::pipeline`]).
impl<O: Observer> SecondSink for Pipeline<O> {
    fn second(&mut self, second: &SecondStats) -> std::io::Result<()> {
        self.on_second(second);
        self.error.take().map_or(Ok(()), Err)
    }

    fn silence(&mut self, from: i64, to: i64) -> std::io::Result<()> {
        self.on_silence(from, to);
        self.error.take().map_or(Ok(()), Err)
    }
}

/// Read the log of `opts` (its input, format, lateness and malformed-line
/// reporting) through the event-time engine, handing each closed second to
/// `sink` in order, every second through the end of input. Malformed
/// lines are reported to `diag`. An error from `sink` stops the reading
/// (after the line being handled) and is returned.
pub fn read_log(
    opts: &ReplayOptions,
    diag: &mut dyn Write,
    sink: &mut dyn SecondSink,
) -> anyhow::Result<LogCounts> {
    if let Some(lake) = &opts.lake {
        return read_lake(lake, opts, diag, sink);
    }
    let reading = follow::Reading {
        follow: opts.follow,
        follow_stdin: opts.follow_stdin,
        from_end: opts.from_end,
    };
    let (name, mut input) = follow::open(opts.input.as_deref(), reading)?;
    let mut counts = LogCounts::default();
    let mut closed = Closed { sink, failed: None };
    let mut lines = Lines {
        opts,
        name: &name,
        counts: &mut counts,
        engine: EventTimeEngine::new(opts.lateness),
        parser: opts.format.parser(),
        head: Vec::new(),
        event: Event::empty(),
        line_no: 0,
        report_late: input.follows(),
        late_reported: 0,
    };
    // While following, SIGINT and SIGTERM end the reading like the end of
    // input does (the last seconds close and the summary prints).
    let stop = match input.follows() {
        true => Some(logmon_io::signal::flag().context("watching for SIGINT and SIGTERM")?),
        false => None,
    };
    let idle_after =
        std::time::Duration::from_secs(u64::from(opts.idle_after.unwrap_or(opts.lateness)));
    let mut last_line = std::time::Instant::now();
    loop {
        let step = input.next(&mut |line| {
            lines.line(line, &mut closed, diag)?;
            Ok(closed.failed.is_none())
        })?;
        match step {
            follow::Step::Lines => last_line = std::time::Instant::now(),
            follow::Step::Idle => {
                // A live log that went quiet: what arrived so far picks the
                // format, and the wall clock closes seconds as in the live
                // engine when no stream holds time.
                lines.detect(&mut closed, diag)?;
                if last_line.elapsed() >= idle_after {
                    let wall = crate::clock::now_seconds();
                    lines
                        .engine
                        .close_before(wall - i64::from(opts.lateness), &mut closed);
                }
            }
            follow::Step::End => break,
        }
        if closed.failed.is_some()
            || stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            break;
        }
    }
    lines.detect(&mut closed, diag)?;
    let Lines {
        mut engine,
        late_reported,
        ..
    } = lines;
    if closed.failed.is_none() {
        engine.finish(&mut closed);
    }
    counts.late = engine.counters().late;
    if counts.malformed > opts.report_malformed {
        writeln!(
            diag,
            "{name}: {} more malformed lines not shown",
            counts.malformed - opts.report_malformed
        )?;
    }
    if late_reported > opts.report_malformed {
        writeln!(
            diag,
            "{name}: {} more late events not shown",
            late_reported - opts.report_malformed
        )?;
    }
    match closed.failed {
        Some(e) => Err(e.into()),
        None => Ok(counts),
    }
}

/// A backtest: the lake's events of the window, in time order, through the
/// same engine (nothing to parse; a file the lake cannot read is reported
/// on `diag` and skipped). `lines` counts the rows read.
///
/// The events go to the engine a second at a time, tallied from the lake's
/// columns ([`crate::lake::seconds`]), not one by one: the same seconds
/// close, with the same aggregates, as from
/// [`crate::lake::read::LakeEvents`] event by event.
fn read_lake(
    lake: &std::path::Path,
    opts: &ReplayOptions,
    diag: &mut dyn Write,
    sink: &mut dyn SecondSink,
) -> anyhow::Result<LogCounts> {
    let mut seconds = crate::lake::seconds::LakeSeconds::open(lake, opts.from, opts.to)
        .with_context(|| format!("opening the lake {}", lake.display()))?;
    let mut closed = Closed { sink, failed: None };
    let mut engine = EventTimeEngine::new(opts.lateness);
    let mut counts = LogCounts::default();
    while seconds.next_second(&mut engine, &mut closed) {
        for problem in seconds.take_problems() {
            writeln!(diag, "logmon: {problem}")?;
        }
        if closed.failed.is_some() {
            break;
        }
    }
    for problem in seconds.take_problems() {
        writeln!(diag, "logmon: {problem}")?;
    }
    if closed.failed.is_none() {
        engine.finish(&mut closed);
    }
    let engine_counts = engine.counters();
    counts.lines = seconds.rows;
    counts.events = engine_counts.accepted + engine_counts.late;
    counts.late = engine_counts.late;
    match closed.failed {
        Some(e) => Err(e.into()),
        None => Ok(counts),
    }
}

/// Hands closed seconds on until the receiver fails once.
struct Closed<'a> {
    sink: &'a mut dyn SecondSink,
    failed: Option<std::io::Error>,
}

impl Closer for Closed<'_> {
    fn second(&mut self, s: &SecondStats) {
        if self.failed.is_none()
            && let Err(e) = self.sink.second(s)
        {
            self.failed = Some(e);
        }
    }

    fn silence(&mut self, from: i64, to: i64) {
        if self.failed.is_none()
            && let Err(e) = self.sink.silence(from, to)
        {
            self.failed = Some(e);
        }
    }
}

/// Parses lines into the engine, detecting the format from the first
/// ones when it was not given.
struct Lines<'a> {
    opts: &'a ReplayOptions,
    name: &'a str,
    counts: &'a mut LogCounts,
    engine: EventTimeEngine,
    /// `None` until the format is known.
    parser: Option<LineParser>,
    /// The first lines, held for format detection.
    head: Vec<Vec<u8>>,
    event: Event,
    line_no: u64,
    /// While following, each late event is reported (the first
    /// `report_malformed` of them), as the live engine reports them.
    report_late: bool,
    late_reported: u64,
}

impl Lines<'_> {
    fn line(
        &mut self,
        bytes: &[u8],
        closed: &mut Closed<'_>,
        diag: &mut dyn Write,
    ) -> anyhow::Result<()> {
        if self.parser.is_none() {
            self.head.push(bytes.to_vec());
            if self
                .head
                .iter()
                .filter(|l| !l.trim_ascii().is_empty())
                .count()
                >= DETECT_LINES
            {
                self.detect(closed, diag)?;
            }
            return Ok(());
        }
        self.parse(bytes, closed, diag)?;
        Ok(())
    }

    /// Picks the format from the held lines (when it is not known yet) and
    /// parses them. With no line at all, CSV.
    fn detect(&mut self, closed: &mut Closed<'_>, diag: &mut dyn Write) -> anyhow::Result<()> {
        if self.parser.is_some() {
            return Ok(());
        }
        let texts: Vec<&str> = self
            .head
            .iter()
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter(|l| !l.trim().is_empty())
            .collect();
        if texts.is_empty() && !self.head.is_empty() {
            // Only empty lines so far: wait for more.
            return Ok(());
        }
        self.parser = Some(LineParser::new(match detect(texts.iter().copied()) {
            Some(f) => f,
            None if texts.is_empty() => Format::Csv,
            None => anyhow::bail!(
                "{}: could not detect the log format from its first lines; pass --input-format",
                self.name
            ),
        }));
        for line in std::mem::take(&mut self.head) {
            self.parse(&line, closed, diag)?;
        }
        Ok(())
    }

    fn parse(
        &mut self,
        bytes: &[u8],
        closed: &mut Closed<'_>,
        diag: &mut dyn Write,
    ) -> std::io::Result<()> {
        let parser = self.parser.as_mut().expect("the format is known");
        self.line_no += 1;
        self.counts.lines += 1;
        let result = match std::str::from_utf8(bytes) {
            Ok(text) => parser
                .parse_into(text, &mut self.event)
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("not UTF-8 ({e})")),
        };
        match result {
            Ok(Parsed::Event) => {
                self.counts.events += 1;
                if self.engine.observe(&self.event, closed) == Observed::Late && self.report_late {
                    self.late_reported += 1;
                    if self.late_reported <= self.opts.report_malformed {
                        writeln!(
                            diag,
                            "{}:{}: late event counted, not aggregated: its second {} had closed",
                            self.name,
                            self.line_no,
                            crate::clock::utc(self.event.second())
                        )?;
                    }
                }
            }
            Ok(Parsed::Skipped) => self.counts.skipped += 1,
            Err(reason) => {
                self.counts.malformed += 1;
                if self.counts.malformed <= self.opts.report_malformed {
                    writeln!(
                        diag,
                        "{}:{}: malformed line skipped: {reason}",
                        self.name, self.line_no
                    )?;
                }
            }
        }
        Ok(())
    }
}
