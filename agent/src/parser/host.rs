//! The wasmtime side of edge parsers: one engine for the agent's parsers,
//! one store per source that names one (the sandbox of `logmon-sandbox`:
//! memory cap, deadline per call, WASI with nothing granted), one call per
//! poll of a file.
//!
//! A poll's lines go to the guest as one text column (its buffers reused);
//! the answer is checked whole before any of it is used ([`check_parsed`]):
//! every column one value per event, line indices increasing and inside the
//! call, no line both an event and malformed, UTF-8 text, timestamps
//! between 1970 and 2200, and at most 1 MiB plus twice the input plus 64
//! bytes a line of text. A call that fails (a trap, an overrun deadline or
//! memory cap, a malformed answer) makes its lines malformed, with the
//! reason; the instance is then made afresh, and every file's state with
//! it (below).
//!
//! **Directive replay.** A parser with a directive prefix keeps state per
//! file (W3C's `#Fields:`). The host knows, per file, the offset its next
//! lines must start at for that state to be right: where the last call
//! ended. Lines that start anywhere else — the first lines of a file read
//! from a checkpoint, lines after a rewind or after an acknowledgement
//! moved the read position, any file after the instance was made afresh —
//! first `forget` the file, then replay: the host reads the file before
//! that offset (pread on the tailer's open handle), gives the parser its
//! lines that start with the prefix, in calls of at most 256 KiB, and
//! drops what those calls answer. That costs one scan of the file up to
//! the offset per (re)start, at disk speed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logmon_protocol::{Event, ParseError, Parsed};
use logmon_sandbox::{EpochTicker, Fault, Sandbox, engine_config};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::ParserConfig;
use crate::metrics::ParserState;
use crate::tail::{FileFingerprint, ReadLines, Tailer};

/// The world's bindings, in a module of their own: the world's types
/// (`parsed` …) would clash with the protocol's.
mod bindings {
    wasmtime::component::bindgen!({
        world: "parser",
        path: "../wasm-rules/parser-wit",
    });
}

use bindings::logmon::parser::types as wit;
use bindings::{Parser, ParserPre};

/// Budget of instantiation and `configure`.
const START_DEADLINE: Duration = Duration::from_secs(2);

/// Text an answer may carry beyond twice its input and 64 bytes a line.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Directive lines given to one replay call, at most (in bytes).
const REPLAY_CALL_BYTES: usize = 256 << 10;

/// Latest timestamp an answer may hold: 2200-01-01T00:00:00Z.
const MAX_TIMESTAMP: i64 = 7_258_118_400 * 1_000_000_000;

/// Why a parser could not start.
#[derive(Debug, thiserror::Error)]
pub enum ParserError {
    #[error("no shipped parser named `{0}` (shipped: {names}); a component is a path ending in .wasm", names = super::names())]
    Unknown(String),
    #[error("reading parser {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a logmon parser component: {1:#}")]
    Compile(String, wasmtime::Error),
    #[error("parser {0} failed to start: {1}")]
    Start(String, String),
    #[error("parser {0} refused its configuration: {1}")]
    Config(String, String),
    #[error("{0}")]
    Invalid(String),
}

/// Compiles and instantiates parsers: an engine, a linker with WASI, and
/// the epoch ticker of their deadlines. (The filters' runtime is of the
/// same making; the two are kept apart so each world's host stands alone.)
pub struct Runtime {
    engine: Engine,
    linker: Linker<Sandbox>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new() -> Result<Runtime, ParserError> {
        let engine = Engine::new(&engine_config())
            .map_err(|e| ParserError::Invalid(format!("starting wasmtime: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| ParserError::Invalid(format!("linking WASI: {e:#}")))?;
        Ok(Runtime {
            _ticker: EpochTicker::start(engine.clone(), "parser-epoch"),
            engine,
            linker,
        })
    }

    /// The component bytes a parser names: a shipped one, or a file.
    fn bytes(component: &str) -> Result<Vec<u8>, ParserError> {
        if let Some(bytes) = super::by_name(component) {
            return Ok(bytes.to_vec());
        }
        if !component.ends_with(".wasm") {
            return Err(ParserError::Unknown(component.to_owned()));
        }
        std::fs::read(component).map_err(|source| ParserError::Read {
            path: component.to_owned(),
            source,
        })
    }
}

/// A live instance: its store and exports.
struct Live {
    store: Store<Sandbox>,
    bindings: Parser,
}

/// Reports of failures: the first of a burst at once, then at most one a
/// minute with the count since.
#[derive(Debug, Default)]
struct Burst {
    last: Option<Instant>,
    unreported: u64,
}

/// What one line of a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Skipped,
    /// The index of its event.
    Event(usize),
    /// The index of its reason.
    Malformed(usize),
}

/// What a call made of a poll's lines, line by line, for the reader to
/// take in order ([`Outcomes::take`]).
#[derive(Debug, Default)]
pub struct Outcomes {
    kinds: Vec<Kind>,
    /// Only the first ones count; the others are kept for their strings.
    events: Vec<Event>,
    reasons: Vec<String>,
}

impl Outcomes {
    fn reset(&mut self, n: usize) {
        self.kinds.clear();
        self.kinds.resize(n, Kind::Skipped);
        self.reasons.clear();
    }

    /// Every line malformed, for `reason`.
    fn all_malformed(&mut self, reason: String) {
        self.reasons.clear();
        self.reasons.push(reason);
        self.kinds.fill(Kind::Malformed(0));
    }

    /// Line `line`'s outcome, as a [`logmon_protocol::LineParser`] would
    /// give it: its event swapped into `event`, skipped, or malformed.
    pub fn take(&mut self, line: usize, event: &mut Event) -> Result<Parsed, ParseError> {
        match self.kinds.get(line) {
            Some(Kind::Event(j)) => {
                std::mem::swap(event, &mut self.events[*j]);
                Ok(Parsed::Event)
            }
            Some(Kind::Malformed(j)) => Err(ParseError::new(self.reasons[*j].clone())),
            Some(Kind::Skipped) | None => Ok(Parsed::Skipped),
        }
    }

    /// Events, malformed lines.
    fn counts(&self) -> (u64, u64) {
        let mut counts = (0, 0);
        for k in &self.kinds {
            match k {
                Kind::Event(_) => counts.0 += 1,
                Kind::Malformed(_) => counts.1 += 1,
                Kind::Skipped => {}
            }
        }
        counts
    }
}

/// A text column of an answer, checked: its text and where each value ends.
#[derive(Debug)]
struct Text {
    data: String,
    ends: Vec<u32>,
}

impl Text {
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
}

/// An answer that passed [`check_parsed`].
#[derive(Debug)]
pub struct Checked {
    timestamp: Vec<i64>,
    /// client, user, method, path, protocol, referer, user agent.
    text: [Text; 7],
    status: Vec<u16>,
    bytes: Vec<u64>,
    duration_us: Vec<i64>,
    line: Vec<u32>,
    malformed: Vec<wit::MalformedLine>,
}

/// Checks an answer to a call of `n` lines holding `input` bytes, whole;
/// the first thing wrong with it, or the answer in checked form.
pub fn check_parsed(p: wit::Parsed, n: usize, input: usize) -> Result<Checked, String> {
    let bad = |what: String| Err(format!("malformed answer: {what}"));
    let m = p.line.len();
    let e = p.events;
    let scalar = [
        ("timestamp", e.timestamp.len()),
        ("status", e.status.len()),
        ("bytes", e.bytes.len()),
        ("duration-us", e.duration_us.len()),
    ];
    let columns = [
        ("client", e.client),
        ("user", e.user),
        ("method", e.method),
        ("path", e.path),
        ("protocol", e.protocol),
        ("referer", e.referer),
        ("user-agent", e.user_agent),
    ];
    for (name, len) in scalar
        .into_iter()
        .chain(columns.iter().map(|(name, c)| (*name, c.ends.len())))
    {
        if len != m {
            return bad(format!("{m} events by `line`, {len} in `{name}`"));
        }
    }
    let mut previous = None;
    for &l in &p.line {
        if l as usize >= n {
            return bad(format!("an event of line {l} in a call of {n} lines"));
        }
        if previous.is_some_and(|p| p >= l) {
            return bad(format!(
                "event lines not increasing ({l} after {previous:?})"
            ));
        }
        previous = Some(l);
    }
    let mut previous = None;
    let mut reasons = 0;
    for f in &p.malformed {
        let l = f.line;
        if l as usize >= n {
            return bad(format!("a malformed line {l} in a call of {n} lines"));
        }
        if previous.is_some_and(|p| p >= l) {
            return bad(format!(
                "malformed lines not increasing ({l} after {previous:?})"
            ));
        }
        previous = Some(l);
        reasons += f.reason.len();
    }
    // Both lists increase: one walk finds a line in both.
    let (mut i, mut j) = (0, 0);
    while i < p.line.len() && j < p.malformed.len() {
        let (a, b) = (p.line[i], p.malformed[j].line);
        if a == b {
            return bad(format!("line {a} is both an event and malformed"));
        }
        if a < b {
            i += 1;
        } else {
            j += 1;
        }
    }
    if let Some(t) = e
        .timestamp
        .iter()
        .find(|t| !(0..MAX_TIMESTAMP).contains(*t))
    {
        return bad(format!("timestamp {t} ns is not between 1970 and 2200"));
    }
    if let Some(d) = e.duration_us.iter().find(|d| **d < -1) {
        return bad(format!("duration {d} µs"));
    }
    let total = reasons + columns.iter().map(|(_, c)| c.data.len()).sum::<usize>();
    let max = MAX_ANSWER_BYTES + 2 * input + 64 * n;
    if total > max {
        return bad(format!(
            "{total} bytes of text for {input} bytes of lines (at most {max})"
        ));
    }
    let mut text = Vec::with_capacity(7);
    for (name, c) in columns {
        let data = match String::from_utf8(c.data) {
            Ok(data) => data,
            Err(_) => return bad(format!("`{name}` is not UTF-8")),
        };
        let mut start = 0;
        for &end in &c.ends {
            let end = end as usize;
            if end < start || end > data.len() || !data.is_char_boundary(end) {
                return bad(format!("`{name}` ends at {end}, inside or past its text"));
            }
            start = end;
        }
        if start != data.len() {
            return bad(format!("`{name}` has text past its last value"));
        }
        text.push(Text { data, ends: c.ends });
    }
    let text: [Text; 7] = text.try_into().expect("seven columns");
    Ok(Checked {
        timestamp: e.timestamp,
        text,
        status: e.status,
        bytes: e.bytes,
        duration_us: e.duration_us,
        line: p.line,
        malformed: p.malformed,
    })
}

/// The edge parser of one source.
pub struct SourceParser {
    source: String,
    config: ParserConfig,
    params: Vec<(String, String)>,
    engine: Engine,
    pre: ParserPre<Sandbox>,
    /// `None` after a failure, until the next call makes it afresh.
    live: Option<Live>,
    info: Option<wit::ParserInfo>,
    /// Lines that start with this are directives (none: no per-file state).
    prefix: Option<Vec<u8>>,
    max_line_bytes: usize,
    /// Per file: where its next lines must start for the instance's state
    /// of it to be right (the end of its last call).
    synced: HashMap<FileFingerprint, u64>,
    column: wit::TextColumn,
    outcomes: Outcomes,
    state: ParserState,
    burst: Burst,
    /// Keeps the engine's epoch ticking while the parser lives.
    _runtime: Arc<Runtime>,
}

impl std::fmt::Debug for SourceParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceParser")
            .field("config", &self.config)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn fault_text(fault: Fault, call: &str, config: &ParserConfig) -> String {
    match fault {
        Fault::Deadline => format!("`{call}` overran its {} ms deadline", config.deadline_ms),
        Fault::Memory { cap, desired } => {
            format!("`{call}` wanted {desired} bytes of memory, over the cap of {cap}")
        }
        Fault::Trapped(message) => format!("`{call}` trapped: {message}"),
    }
}

/// Why an instance could not be (re)made.
enum Started {
    Fault(String),
    Refused(String),
}

impl SourceParser {
    /// Compiles, instantiates and configures the parser of `source`, whose
    /// lines are cut at `max_line_bytes`.
    pub fn load(
        runtime: &Arc<Runtime>,
        source: &str,
        config: &ParserConfig,
        max_line_bytes: usize,
    ) -> Result<SourceParser, ParserError> {
        config.check().map_err(ParserError::Invalid)?;
        let name = config.component.clone();
        let bytes = Runtime::bytes(&name)?;
        let component = Component::new(&runtime.engine, &bytes)
            .map_err(|e| ParserError::Compile(name.clone(), e))?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .and_then(ParserPre::new)
            .map_err(|e| ParserError::Compile(name.clone(), e))?;
        let mut parser = SourceParser {
            source: source.to_owned(),
            config: config.clone(),
            params: config.param_texts(),
            engine: runtime.engine.clone(),
            pre,
            live: None,
            info: None,
            prefix: None,
            max_line_bytes: max_line_bytes.max(1),
            synced: HashMap::new(),
            column: wit::TextColumn {
                data: Vec::new(),
                ends: Vec::new(),
            },
            outcomes: Outcomes::default(),
            state: ParserState {
                source: source.to_owned(),
                parser: name.clone(),
                ..ParserState::default()
            },
            burst: Burst::default(),
            _runtime: runtime.clone(),
        };
        parser.start().map_err(|e| match e {
            Started::Fault(m) => ParserError::Start(name.clone(), m),
            Started::Refused(m) => ParserError::Config(name.clone(), m),
        })?;
        Ok(parser)
    }

    /// Instantiates and configures a fresh instance; it knows no file.
    fn start(&mut self) -> Result<(), Started> {
        self.synced.clear();
        let memory = usize::try_from(self.config.memory_mb << 20).unwrap_or(usize::MAX);
        let mut store = Sandbox::store(&self.engine, memory, START_DEADLINE);
        let bindings = match self.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                let f = logmon_sandbox::classify(&store, &e);
                return Err(Started::Fault(fault_text(f, "instantiate", &self.config)));
            }
        };
        if self.info.is_none() {
            match bindings.call_describe(&mut store) {
                Ok(info) => {
                    self.prefix = info
                        .directive_prefix
                        .as_ref()
                        .filter(|p| !p.is_empty())
                        .map(|p| p.as_bytes().to_vec());
                    self.info = Some(info);
                }
                Err(e) => {
                    let f = logmon_sandbox::classify(&store, &e);
                    return Err(Started::Fault(fault_text(f, "describe", &self.config)));
                }
            }
        }
        Sandbox::arm(&mut store, START_DEADLINE);
        match bindings.call_configure(&mut store, &self.params) {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => return Err(Started::Refused(refused)),
            Err(e) => {
                let f = logmon_sandbox::classify(&store, &e);
                return Err(Started::Fault(fault_text(f, "configure", &self.config)));
            }
        }
        self.live = Some(Live { store, bindings });
        Ok(())
    }

    /// What the parser says of itself: name, description, directive prefix.
    pub fn info(&self) -> Option<(&str, &str, Option<&str>)> {
        self.info.as_ref().map(|i| {
            (
                i.name.as_str(),
                i.description.as_str(),
                i.directive_prefix.as_deref(),
            )
        })
    }

    /// The parser's counters, for `/metrics`.
    pub fn state(&self) -> &ParserState {
        &self.state
    }

    /// Makes the instance afresh if the last call failed.
    fn ensure_live(&mut self) -> Result<(), String> {
        if self.live.is_none() {
            self.start().map_err(|e| match e {
                Started::Fault(m) | Started::Refused(m) => format!("restarting: {m}"),
            })?;
        }
        Ok(())
    }

    /// Calls `parse` on `self.column` (`n` lines); the checked answer, or
    /// why not (then the instance is thrown away).
    fn call(&mut self, stream: FileFingerprint, n: usize) -> Result<Checked, String> {
        self.ensure_live()?;
        let live = self.live.as_mut().expect("made above");
        Sandbox::arm(&mut live.store, self.config.deadline());
        let result = live
            .bindings
            .call_parse(&mut live.store, stream.get(), &self.column);
        let checked = match result {
            Ok(parsed) => check_parsed(parsed, n, self.column.data.len()),
            Err(e) => Err(fault_text(
                logmon_sandbox::classify(&live.store, &e),
                "parse",
                &self.config,
            )),
        };
        if checked.is_err() {
            self.live = None;
            self.synced.clear();
        }
        checked
    }

    /// Makes the instance's state of `stream` right for lines starting at
    /// `start`: forgets it and replays its directives before `start`,
    /// unless its last call ended there.
    fn sync(&mut self, tailer: &Tailer, stream: FileFingerprint, start: u64) -> Result<(), String> {
        if self.synced.get(&stream) == Some(&start) {
            return Ok(());
        }
        self.ensure_live()?;
        let live = self.live.as_mut().expect("made above");
        Sandbox::arm(&mut live.store, self.config.deadline());
        if let Err(e) = live.bindings.call_forget(&mut live.store, stream.get()) {
            let f = logmon_sandbox::classify(&live.store, &e);
            self.live = None;
            self.synced.clear();
            return Err(fault_text(f, "forget", &self.config));
        }
        self.synced.remove(&stream);
        if start > 0 && self.prefix.is_some() {
            self.replay(tailer, stream, start)?;
        }
        Ok(())
    }

    /// Gives the parser the lines of `stream` before `end` that start with
    /// the directive prefix, dropping what it answers.
    fn replay(&mut self, tailer: &Tailer, stream: FileFingerprint, end: u64) -> Result<(), String> {
        let prefix = self.prefix.clone().unwrap_or_default();
        self.state.replays += 1;
        let mut buf = vec![0u8; 64 << 10];
        let mut pos = 0u64;
        // The line being read: its first bytes until they tell whether it
        // is a directive, then all of it (up to max_line_bytes) if it is.
        let mut line: Vec<u8> = Vec::new();
        let mut directive: Option<bool> = None;
        self.column.data.clear();
        self.column.ends.clear();
        while pos < end {
            let want = usize::try_from(end - pos).map_or(buf.len(), |left| left.min(buf.len()));
            let n = match tailer.read_at(stream, pos, &mut buf[..want]) {
                None => return Err("replaying directives: the file is no longer open".into()),
                Some(Err(e)) => return Err(format!("replaying directives: reading the file: {e}")),
                Some(Ok(0)) => {
                    return Err(format!(
                        "replaying directives: the file ends at {pos}, before {end}"
                    ));
                }
                Some(Ok(n)) => n,
            };
            pos += n as u64;
            self.state.replay_bytes += n as u64;
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let (segment, ended, rest) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (&chunk[..i], true, &chunk[i + 1..]),
                    None => (chunk, false, &chunk[chunk.len()..]),
                };
                if directive != Some(false) {
                    let room = self.max_line_bytes.saturating_sub(line.len());
                    line.extend_from_slice(&segment[..segment.len().min(room)]);
                    if directive.is_none() && line.len() >= prefix.len() {
                        directive = Some(line.starts_with(&prefix));
                    }
                }
                if ended {
                    if directive == Some(true) {
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.column
                            .data
                            .extend_from_slice(String::from_utf8_lossy(&line).as_bytes());
                        self.column
                            .ends
                            .push(u32::try_from(self.column.data.len()).unwrap_or(u32::MAX));
                        if self.column.data.len() >= REPLAY_CALL_BYTES {
                            self.replay_call(stream)?;
                        }
                    }
                    line.clear();
                    directive = None;
                }
                chunk = rest;
            }
        }
        self.replay_call(stream)
    }

    /// One call of a replay, on the directives in `self.column`.
    fn replay_call(&mut self, stream: FileFingerprint) -> Result<(), String> {
        let n = self.column.ends.len();
        if n == 0 {
            return Ok(());
        }
        self.state.replay_lines += n as u64;
        self.call(stream, n)
            .map_err(|m| format!("replaying directives: {m}"))?;
        self.column.data.clear();
        self.column.ends.clear();
        Ok(())
    }

    /// Parses one poll's lines of one file (`tailer` is the source's, for
    /// a replay); their outcomes, line by line. Never fails: a failure
    /// makes every line malformed, with the reason.
    pub fn parse(&mut self, tailer: &Tailer, lines: &ReadLines) -> &mut Outcomes {
        let started = Instant::now();
        let n = lines.lines.len();
        let stream = lines.stream.fingerprint;
        self.outcomes.reset(n);
        let answer = self.sync(tailer, stream, lines.start).and_then(|()| {
            self.column.data.clear();
            self.column.ends.clear();
            for line in &lines.lines {
                self.column.data.extend_from_slice(line.text.as_bytes());
                self.column
                    .ends
                    .push(u32::try_from(self.column.data.len()).unwrap_or(u32::MAX));
            }
            self.call(stream, n)
        });
        match answer {
            Ok(checked) => {
                self.take(checked);
                self.synced.insert(stream, lines.end);
            }
            Err(message) => {
                self.state.errors += 1;
                self.report(&lines.stream.path, &message);
                self.outcomes.all_malformed(format!(
                    "parser `{}` failed: {message}",
                    self.config.component
                ));
            }
        }
        let (events, malformed) = self.outcomes.counts();
        self.state.calls += 1;
        self.state.lines += n as u64;
        self.state.events += events;
        self.state.malformed += malformed;
        self.state.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        &mut self.outcomes
    }

    /// Turns a checked answer into the outcomes.
    fn take(&mut self, c: Checked) {
        let o = &mut self.outcomes;
        for (j, &line) in c.line.iter().enumerate() {
            if o.events.len() <= j {
                o.events.push(Event::empty());
            }
            let e = &mut o.events[j];
            let set = |dst: &mut String, k: usize| {
                dst.clear();
                dst.push_str(c.text[k].get(j));
            };
            e.timestamp = c.timestamp[j];
            set(&mut e.client, 0);
            set(&mut e.user, 1);
            set(&mut e.method, 2);
            set(&mut e.path, 3);
            set(&mut e.protocol, 4);
            e.status = c.status[j];
            e.bytes = c.bytes[j];
            let optional = |dst: &mut Option<String>, k: usize| {
                let v = c.text[k].get(j);
                if v.is_empty() {
                    *dst = None;
                } else if let Some(s) = dst {
                    s.clear();
                    s.push_str(v);
                } else {
                    *dst = Some(v.to_owned());
                }
            };
            optional(&mut e.referer, 5);
            optional(&mut e.user_agent, 6);
            e.duration_us = u64::try_from(c.duration_us[j]).ok();
            e.labels.clear();
            o.kinds[line as usize] = Kind::Event(j);
        }
        for (k, m) in c.malformed.into_iter().enumerate() {
            o.kinds[m.line as usize] = Kind::Malformed(k);
            o.reasons.push(m.reason);
        }
    }

    /// The agent is done with `stream` (its file was closed).
    pub fn forget(&mut self, stream: FileFingerprint) {
        if self.synced.remove(&stream).is_none() {
            return;
        }
        let deadline = self.config.deadline();
        if let Some(live) = self.live.as_mut() {
            Sandbox::arm(&mut live.store, deadline);
            if let Err(e) = live.bindings.call_forget(&mut live.store, stream.get()) {
                let f = logmon_sandbox::classify(&live.store, &e);
                self.live = None;
                self.synced.clear();
                self.state.errors += 1;
                let message = fault_text(f, "forget", &self.config);
                self.report(Path::new(""), &message);
            }
        }
    }

    /// Logs a failure, once per burst.
    fn report(&mut self, file: &Path, message: &str) {
        let now = Instant::now();
        if self
            .burst
            .last
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(60))
        {
            self.burst.unreported += 1;
            return;
        }
        let more = std::mem::take(&mut self.burst.unreported);
        tracing::warn!(
            source = %self.source,
            parser = %self.config.component,
            file = %file.display(),
            more_since_last_report = more,
            "edge parser failed: {message}; its lines are counted malformed, and the parser is made afresh"
        );
        self.burst.last = Some(now);
    }
}

#[cfg(test)]
mod tests;
