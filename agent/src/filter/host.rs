//! The wasmtime side of edge filters: one engine per agent, one store per
//! configured filter (the sandbox of `logmon-sandbox`: memory cap, deadline
//! per call, WASI with nothing granted), one call per batch.
//!
//! A batch goes to the guest by column ([`Columns`], its buffers reused from
//! batch to batch); the verdict is checked whole before any of it applies:
//! a keep bitmap of exactly ceil(n/8) bytes with no bit past `n`, patch and
//! label indices inside the batch, and at most [`MAX_VERDICT_BYTES`] plus
//! 1 KiB per event of text. A call that fails is handled by the filter's
//! [`OnError`] policy, and its instance is made afresh (instantiated and
//! configured again) before the next batch, so a trap leaves no half state.

use std::path::Path;
use std::time::{Duration, Instant};

use logmon_protocol::Event;
use logmon_sandbox::{EpochTicker, Fault, Sandbox, engine_config};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::{ChainStats, FilterConfig, OnError};
use crate::metrics::FilterState;

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wasm-rules/edge-wit",
});

use logmon::edge::types as wit;

/// Text a verdict may carry beyond 1 KiB per event.
pub const MAX_VERDICT_BYTES: usize = 1 << 20;

/// Budget of instantiation and `configure`.
const START_DEADLINE: Duration = Duration::from_secs(2);

/// Why a filter could not start.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("no shipped filter named `{0}` (shipped: {names}); a component is a path ending in .wasm", names = super::names())]
    Unknown(String),
    #[error("reading filter {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a logmon filter component: {1:#}")]
    Compile(String, wasmtime::Error),
    #[error("filter {0} failed to start: {1}")]
    Start(String, String),
    #[error("filter {0} refused its configuration: {1}")]
    Config(String, String),
    #[error("{0}")]
    Invalid(String),
}

/// Compiles and instantiates filters.
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
    pub fn new() -> Result<Runtime, FilterError> {
        let engine = Engine::new(&engine_config())
            .map_err(|e| FilterError::Invalid(format!("starting wasmtime: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| FilterError::Invalid(format!("linking WASI: {e:#}")))?;
        Ok(Runtime {
            _ticker: EpochTicker::start(engine.clone(), "filter-epoch"),
            engine,
            linker,
        })
    }

    /// The component bytes a filter names: a shipped one, or a file.
    fn bytes(component: &str) -> Result<Vec<u8>, FilterError> {
        if let Some(bytes) = super::by_name(component) {
            return Ok(bytes.to_vec());
        }
        if !component.ends_with(".wasm") {
            return Err(FilterError::Unknown(component.to_owned()));
        }
        std::fs::read(component).map_err(|source| FilterError::Read {
            path: component.to_owned(),
            source,
        })
    }

    /// What a component says of itself (instantiated, not configured).
    pub fn describe(&self, component: &str) -> Result<wit::FilterInfo, FilterError> {
        let bytes = Self::bytes(component)?;
        let compiled = Component::new(&self.engine, &bytes)
            .map_err(|e| FilterError::Compile(component.to_owned(), e))?;
        let mut store = Sandbox::store(&self.engine, 64 << 20, START_DEADLINE);
        Filter::instantiate(&mut store, &compiled, &self.linker)
            .and_then(|b| b.call_describe(&mut store))
            .map_err(|e| FilterError::Start(component.to_owned(), format!("{e:#}")))
    }

    /// Compiles, instantiates and configures one filter of `source`.
    pub fn load(&self, source: &str, config: &FilterConfig) -> Result<Instance, FilterError> {
        config.check().map_err(FilterError::Invalid)?;
        let name = config.component.clone();
        let bytes = Self::bytes(&name)?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| FilterError::Compile(name.clone(), e))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(FilterPre::new)
            .map_err(|e| FilterError::Compile(name.clone(), e))?;
        let mut instance = Instance {
            source: source.to_owned(),
            config: config.clone(),
            params: config.param_texts(),
            engine: self.engine.clone(),
            pre,
            live: None,
            info: None,
            state: FilterState {
                source: source.to_owned(),
                filter: name.clone(),
                ..FilterState::default()
            },
            burst: Burst::default(),
        };
        instance.start().map_err(|e| match e {
            Started::Fault(m) => FilterError::Start(name.clone(), m),
            Started::Refused(m) => FilterError::Config(name.clone(), m),
        })?;
        Ok(instance)
    }
}

/// Why an instance could not be (re)made.
enum Started {
    Fault(String),
    Refused(String),
}

/// A live instance: its store and exports.
struct Live {
    store: Store<Sandbox>,
    bindings: Filter,
}

/// Reports of failures: the first of a burst at once, then at most one a
/// minute with the count since.
#[derive(Debug, Default)]
struct Burst {
    last: Option<Instant>,
    unreported: u64,
}

/// One configured filter of a source.
pub struct Instance {
    source: String,
    config: FilterConfig,
    params: Vec<(String, String)>,
    engine: Engine,
    pre: FilterPre<Sandbox>,
    /// `None` after a failure, until the next batch makes it afresh.
    live: Option<Live>,
    info: Option<wit::FilterInfo>,
    state: FilterState,
    burst: Burst,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("config", &self.config)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn fault_text(fault: Fault, call: &str, config: &FilterConfig) -> String {
    match fault {
        Fault::Deadline => format!("`{call}` overran its {} ms deadline", config.deadline_ms),
        Fault::Memory { cap, desired } => {
            format!("`{call}` wanted {desired} bytes of memory, over the cap of {cap}")
        }
        Fault::Trapped(message) => format!("`{call}` trapped: {message}"),
    }
}

impl Instance {
    /// Instantiates and configures a fresh instance.
    fn start(&mut self) -> Result<(), Started> {
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
                Ok(info) => self.info = Some(info),
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

    /// What the filter says of itself.
    pub fn info(&self) -> Option<(&str, &str)> {
        self.info
            .as_ref()
            .map(|i| (i.name.as_str(), i.description.as_str()))
    }

    /// Calls the filter on `columns` (`n` events); the verdict, or why not.
    fn call(&mut self, batch: &wit::Batch, n: usize) -> Result<wit::Verdict, String> {
        if self.live.is_none() {
            self.start().map_err(|e| match e {
                Started::Fault(m) | Started::Refused(m) => format!("restarting: {m}"),
            })?;
        }
        let live = self.live.as_mut().expect("started above");
        Sandbox::arm(&mut live.store, self.config.deadline());
        let result = live.bindings.call_filter(&mut live.store, batch);
        match result {
            Ok(verdict) => {
                check_verdict(&verdict, n).inspect_err(|_| self.live = None)?;
                Ok(verdict)
            }
            Err(e) => {
                let fault = logmon_sandbox::classify(&live.store, &e);
                self.live = None;
                Err(fault_text(fault, "filter", &self.config))
            }
        }
    }

    /// Logs a failure, once per burst.
    fn report(&mut self, file: &str, message: &str) {
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
        let policy = match self.config.on_error {
            OnError::Pass => "batch passed unfiltered",
            OnError::Drop => "batch dropped",
        };
        tracing::warn!(
            source = %self.source,
            filter = %self.config.component,
            file,
            more_since_last_report = more,
            "edge filter failed: {message}; {policy} (on_error)"
        );
        self.burst.last = Some(now);
    }
}

/// Refuses a verdict that does not fit a batch of `n` events.
fn check_verdict(v: &wit::Verdict, n: usize) -> Result<(), String> {
    if v.keep.len() != n.div_ceil(8) {
        return Err(format!(
            "malformed verdict: keep has {} bytes for {n} events (want {})",
            v.keep.len(),
            n.div_ceil(8)
        ));
    }
    if !n.is_multiple_of(8) && v.keep.last().is_some_and(|b| b >> (n % 8) != 0) {
        return Err(format!("malformed verdict: keep bits set past event {n}"));
    }
    if let Some(p) = v.patches.iter().find(|p| p.index as usize >= n) {
        return Err(format!(
            "malformed verdict: a patch of event {} in a batch of {n}",
            p.index
        ));
    }
    if let Some(l) = v.labels.iter().find(|l| l.index as usize >= n) {
        return Err(format!(
            "malformed verdict: a label of event {} in a batch of {n}",
            l.index
        ));
    }
    let bytes: usize = v.patches.iter().map(|p| p.value.len()).sum::<usize>()
        + v.labels
            .iter()
            .map(|l| l.key.len() + l.value.len())
            .sum::<usize>();
    let max = MAX_VERDICT_BYTES + 1024 * n;
    if bytes > max {
        return Err(format!(
            "malformed verdict: {bytes} bytes of patches and labels, over {max}"
        ));
    }
    Ok(())
}

/// Fills a reused column batch from events.
fn fill(batch: &mut wit::Batch, source: &str, file: &str, all: &[Event], live: &[usize]) {
    let events = || live.iter().map(|&i| &all[i]);
    fn text<'a>(
        c: &mut wit::TextColumn,
        events: impl Iterator<Item = &'a Event>,
        f: impl Fn(&Event) -> &str,
    ) {
        c.data.clear();
        c.ends.clear();
        for e in events {
            c.data.extend_from_slice(f(e).as_bytes());
            c.ends.push(u32::try_from(c.data.len()).unwrap_or(u32::MAX));
        }
    }
    batch.source.clear();
    batch.source.push_str(source);
    batch.file.clear();
    batch.file.push_str(file);
    let c = &mut batch.events;
    c.timestamp.clear();
    c.timestamp.extend(events().map(|e| e.timestamp));
    text(&mut c.client, events(), |e| &e.client);
    text(&mut c.user, events(), |e| &e.user);
    text(&mut c.method, events(), |e| &e.method);
    text(&mut c.path, events(), |e| &e.path);
    text(&mut c.protocol, events(), |e| &e.protocol);
    c.status.clear();
    c.status.extend(events().map(|e| e.status));
    c.bytes.clear();
    c.bytes.extend(events().map(|e| e.bytes));
    text(&mut c.referer, events(), |e| {
        e.referer.as_deref().unwrap_or("")
    });
    text(&mut c.user_agent, events(), |e| {
        e.user_agent.as_deref().unwrap_or("")
    });
    c.duration_us.clear();
    c.duration_us.extend(events().map(|e| {
        e.duration_us
            .map_or(-1, |d| i64::try_from(d).unwrap_or(i64::MAX))
    }));
}

fn empty_batch() -> wit::Batch {
    let column = || wit::TextColumn {
        data: Vec::new(),
        ends: Vec::new(),
    };
    wit::Batch {
        source: String::new(),
        file: String::new(),
        events: wit::Events {
            timestamp: Vec::new(),
            client: column(),
            user: column(),
            method: column(),
            path: column(),
            protocol: column(),
            status: Vec::new(),
            bytes: Vec::new(),
            referer: column(),
            user_agent: column(),
            duration_us: Vec::new(),
        },
    }
}

/// Applies a checked verdict on the `live` events (the verdict's indices
/// are positions in `live`): patches and labels to the kept ones, and the
/// others marked dropped in `keep`. Returns how many were dropped.
fn apply(v: wit::Verdict, events: &mut [Event], live: &[usize], keep: &mut [bool]) -> usize {
    let kept = |j: usize| v.keep[j / 8] & (1 << (j % 8)) != 0;
    for p in v.patches {
        let j = p.index as usize;
        if !kept(j) {
            continue;
        }
        let e = &mut events[live[j]];
        let optional = |value: String| (!value.is_empty()).then_some(value);
        match p.field {
            wit::Field::Client => e.client = p.value,
            wit::Field::User => e.user = p.value,
            wit::Field::Method => e.method = p.value,
            wit::Field::Path => e.path = p.value,
            wit::Field::Protocol => e.protocol = p.value,
            wit::Field::Referer => e.referer = optional(p.value),
            wit::Field::UserAgent => e.user_agent = optional(p.value),
        }
    }
    for l in v.labels {
        let j = l.index as usize;
        if !kept(j) {
            continue;
        }
        let labels = &mut events[live[j]].labels;
        match labels.iter_mut().find(|(k, _)| *k == l.key) {
            Some(slot) => slot.1 = l.value,
            None => labels.push((l.key, l.value)),
        }
    }
    let mut dropped = 0;
    for (j, &i) in live.iter().enumerate() {
        if !kept(j) {
            keep[i] = false;
            dropped += 1;
        }
    }
    dropped
}

/// The filters of one source, in order.
#[derive(Debug)]
pub struct Chain {
    filters: Vec<Instance>,
    scratch: Option<Box<wit::Batch>>,
    live: Vec<usize>,
    /// Keeps the engine's epoch ticking while the chain lives.
    _runtime: Option<std::sync::Arc<Runtime>>,
}

impl Chain {
    /// Loads every filter of `source`; the first that cannot start fails all.
    pub fn load(
        runtime: &std::sync::Arc<Runtime>,
        source: &str,
        configs: &[FilterConfig],
    ) -> Result<Chain, FilterError> {
        let mut filters = Vec::new();
        for (position, config) in configs.iter().enumerate() {
            let mut instance = runtime.load(source, config)?;
            instance.state.position = position;
            filters.push(instance);
        }
        Ok(Chain {
            filters,
            scratch: None,
            live: Vec::new(),
            _runtime: Some(runtime.clone()),
        })
    }

    /// Runs the batch of `file` through every filter, in order; each sees
    /// the events the ones before kept, as they changed them. `keep` comes
    /// back with one flag per event: whether it goes on.
    pub fn run(&mut self, file: &str, events: &mut [Event], keep: &mut Vec<bool>) -> ChainStats {
        let mut stats = ChainStats::default();
        keep.clear();
        keep.resize(events.len(), true);
        let mut batch = self
            .scratch
            .take()
            .unwrap_or_else(|| Box::new(empty_batch()));
        let live = &mut self.live;
        for f in &mut self.filters {
            live.clear();
            live.extend((0..events.len()).filter(|&i| keep[i]));
            if live.is_empty() {
                break;
            }
            let started = Instant::now();
            let n = live.len();
            fill(&mut batch, &f.source, file, events, live);
            f.state.calls += 1;
            f.state.events_in += n as u64;
            let dropped = match f.call(&batch, n) {
                Ok(verdict) => apply(verdict, events, live, keep),
                Err(message) => {
                    f.state.errors += 1;
                    stats.errors += 1;
                    f.report(file, &message);
                    match f.config.on_error {
                        OnError::Pass => 0,
                        OnError::Drop => {
                            for &i in live.iter() {
                                keep[i] = false;
                            }
                            n
                        }
                    }
                }
            };
            f.state.dropped += dropped as u64;
            stats.dropped += dropped as u64;
            f.state.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        }
        self.scratch = Some(batch);
        stats
    }

    /// The filters' counters, for `/metrics`.
    pub fn states(&self) -> impl Iterator<Item = &FilterState> {
        self.filters.iter().map(|f| &f.state)
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }
}

/// What `logmon-agent filters test` found: per event of the file, whether
/// it was kept and how it left the chain.
#[derive(Debug)]
pub struct Tested {
    pub lines: u64,
    pub malformed: u64,
    /// (line number, event as parsed, event as kept or `None` if dropped).
    pub events: Vec<(u64, Event, Option<Event>)>,
    pub errors: u64,
}

/// Runs `file`'s lines (in `format`) through `configs` in batches of
/// `batch` events, as the agent would.
pub fn test_file(
    configs: &[FilterConfig],
    file: &Path,
    format: &logmon_protocol::FormatChoice,
    batch: usize,
) -> Result<Tested, FilterError> {
    let text = std::fs::read_to_string(file).map_err(|source| FilterError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let runtime = std::sync::Arc::new(Runtime::new()?);
    let mut chain = Chain::load(&runtime, "test", configs)?;
    let mut parser = format.parser_for(text.lines().take(16)).ok_or_else(|| {
        FilterError::Invalid(format!("{}: log format not recognised", file.display()))
    })?;
    let mut tested = Tested {
        lines: 0,
        malformed: 0,
        events: Vec::new(),
        errors: 0,
    };
    let mut parsed: Vec<(u64, Event)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        tested.lines += 1;
        match parser.parse(line) {
            Ok(Some(mut e)) => {
                if let Some(x) = parser.extras() {
                    e.labels.clone_from(&x.labels);
                }
                parsed.push((i as u64 + 1, e));
            }
            Ok(None) => {}
            Err(_) => tested.malformed += 1,
        }
    }
    let name = file.display().to_string();
    let mut keep = Vec::new();
    for chunk in parsed.chunks(batch.max(1)) {
        let mut events: Vec<Event> = chunk.iter().map(|(_, e)| e.clone()).collect();
        tested.errors += chain.run(&name, &mut events, &mut keep).errors;
        for (((n, before), after), kept) in chunk.iter().zip(events).zip(&keep) {
            tested
                .events
                .push((*n, before.clone(), kept.then_some(after)));
        }
    }
    Ok(tested)
}

#[cfg(test)]
mod tests;
