//! `logmon-collector replay`: the original console program on the event-time
//! engine. Reads an access log (file or stdin), prints statistics every
//! interval of log time and the alert transitions of the rules, exactly as
//! the seconds close.

use crate::console::printer::{OutputKind, Printer};
use crate::engine::observer::{Observer, Summary};
use crate::engine::pipeline::Pipeline;
use crate::engine::seconds::Closer;
use crate::engine::stats::StatsClock;
use crate::engine::{EventTimeEngine, SecondStats};
use crate::rules::{RuleRuntime, RuleSet, RuleSource, RuleSpec, SandboxLimits};
use anyhow::Context as _;
use logmon_protocol::parse::{DETECT_LINES, Parsed, detect};
use logmon_protocol::{Event, Format, LineParser};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

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
    let (name, reader): (String, Box<dyn Read>) = match &opts.input {
        None => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) if p == Path::new("-") => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) => (
            p.display().to_string(),
            Box::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?),
        ),
    };
    let mut counts = LogCounts::default();
    let mut closed = Closed { sink, failed: None };
    let mut engine = EventTimeEngine::new(opts.lateness);
    let mut input = LineReader::new(BufReader::with_capacity(1 << 20, reader));

    // Auto-detection looks at the first non-empty lines, which are then parsed
    // like the rest.
    let mut head: Vec<Vec<u8>> = Vec::new();
    let mut parser = match opts.format.parser() {
        Some(parser) => parser,
        None => {
            while head.iter().filter(|l| !l.trim_ascii().is_empty()).count() < DETECT_LINES {
                match input.next_line()? {
                    Some(line) => head.push(line.to_vec()),
                    None => break,
                }
            }
            let texts: Vec<&str> = head
                .iter()
                .filter_map(|l| std::str::from_utf8(l).ok())
                .filter(|l| !l.trim().is_empty())
                .collect();
            LineParser::new(match detect(texts.iter().copied()) {
                Some(f) => f,
                None if texts.is_empty() => Format::Csv,
                None => anyhow::bail!(
                    "{name}: could not detect the log format from its first lines; pass --input-format"
                ),
            })
        }
    };
    let mut event = Event::empty();
    let mut line_no = 0u64;
    let mut handle =
        |bytes: &[u8], closed: &mut Closed<'_>, diag: &mut dyn Write| -> std::io::Result<()> {
            line_no += 1;
            counts.lines += 1;
            let result = match std::str::from_utf8(bytes) {
                Ok(text) => parser
                    .parse_into(text, &mut event)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("not UTF-8 ({e})")),
            };
            match result {
                Ok(Parsed::Event) => {
                    counts.events += 1;
                    engine.observe(&event, closed);
                }
                Ok(Parsed::Skipped) => counts.skipped += 1,
                Err(reason) => {
                    counts.malformed += 1;
                    if counts.malformed <= opts.report_malformed {
                        writeln!(diag, "{name}:{line_no}: malformed line skipped: {reason}")?;
                    }
                }
            }
            Ok(())
        };
    for line in &head {
        handle(line, &mut closed, diag)?;
    }
    drop(head);
    while let Some(line) = input.next_line()? {
        handle(line, &mut closed, diag)?;
        if closed.failed.is_some() {
            break;
        }
    }
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

/// Lines from a reader, without their `\n`, reusing one buffer.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.buf.clear();
        if self.inner.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        Ok(Some(&self.buf))
    }
}
