//! The wasmtime side of edge filters: one engine per agent, one store per
//! configured filter (the sandbox of `logmon-sandbox`: memory cap, deadline
//! per call, WASI with nothing granted), one call per batch.
//!
//! A batch goes to the guest by column (its buffers reused from batch to
//! batch), and only the columns the filter says it reads (`reads`) are
//! filled. The verdict is checked whole before any of it applies: a keep
//! bitmap of exactly ceil(n/8) bytes with no bit past `n`, replaced columns
//! and label columns of exactly `n` values, label codes inside their
//! values, patch and label indices inside the batch, UTF-8 text, and at
//! most [`MAX_VERDICT_BYTES`] plus 1 KiB per event of text.
//!
//! Labels the filters add are not written into the events: they are kept
//! beside them ([`Added`], interned) and given to the wire encoder with
//! each kept event ([`Chain::encode_kept`]), so a labelled event costs no
//! allocation. A call that fails is handled by the filter's
//! [`OnError`] policy, and its instance is made afresh (instantiated and
//! configured again) before the next batch, so a trap leaves no half state.

use std::path::Path;
use std::time::{Duration, Instant};

use logmon_protocol::{Event, wire};
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
            reads: Reads::default(),
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
    /// The columns it reads, as it said after `configure`.
    reads: Reads,
    state: FilterState,
    burst: Burst,
}

/// A set of [`wit::Column`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reads(u16);

impl Reads {
    fn of(columns: &[wit::Column]) -> Reads {
        Reads(columns.iter().fold(0, |m, &c| m | 1 << c as u16))
    }

    fn has(self, c: wit::Column) -> bool {
        self.0 & 1 << c as u16 != 0
    }
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
        match bindings.call_reads(&mut store) {
            Ok(columns) => self.reads = Reads::of(&columns),
            Err(e) => {
                let f = logmon_sandbox::classify(&store, &e);
                return Err(Started::Fault(fault_text(f, "reads", &self.config)));
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
    for c in &v.columns {
        check_column(&c.values, n)
            .map_err(|e| format!("malformed verdict: the {:?} column {e}", c.field))?;
    }
    if let Some(p) = v.patches.iter().find(|p| p.index as usize >= n) {
        return Err(format!(
            "malformed verdict: a patch of event {} in a batch of {n}",
            p.index
        ));
    }
    for l in &v.label_columns {
        if l.codes.len() != n {
            return Err(format!(
                "malformed verdict: label column `{}` has {} codes for {n} events",
                l.key,
                l.codes.len()
            ));
        }
        if let Some(k) = l.codes.iter().find(|&&k| k as usize > l.values.len()) {
            return Err(format!(
                "malformed verdict: label column `{}` has code {k} for {} values",
                l.key,
                l.values.len()
            ));
        }
    }
    if let Some(l) = v.labels.iter().find(|l| l.index as usize >= n) {
        return Err(format!(
            "malformed verdict: a label of event {} in a batch of {n}",
            l.index
        ));
    }
    let bytes: usize = v.columns.iter().map(|c| c.values.data.len()).sum::<usize>()
        + v.patches.iter().map(|p| p.value.len()).sum::<usize>()
        + v.label_columns
            .iter()
            .map(|l| l.key.len() + l.values.iter().map(String::len).sum::<usize>())
            .sum::<usize>()
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

/// Checks a replaced column: `n` values, ends in order inside the data,
/// UTF-8 split only at character boundaries.
fn check_column(c: &wit::TextColumn, n: usize) -> Result<(), String> {
    if c.ends.len() != n {
        return Err(format!("has {} values for {n} events", c.ends.len()));
    }
    if c.ends.last().map_or(0, |&e| e as usize) != c.data.len() {
        return Err("does not end where its data ends".into());
    }
    if c.ends.windows(2).any(|w| w[0] > w[1]) {
        return Err("has its ends out of order".into());
    }
    let text = std::str::from_utf8(&c.data).map_err(|e| format!("is not UTF-8: {e}"))?;
    if let Some(e) = c.ends.iter().find(|&&e| !text.is_char_boundary(e as usize)) {
        return Err(format!("splits a character at byte {e}"));
    }
    Ok(())
}

/// Fills a reused column batch from events: the columns in `reads`, the
/// others left empty.
fn fill(
    batch: &mut wit::Batch,
    reads: Reads,
    source: &str,
    file: &str,
    all: &[Event],
    live: &[usize],
) {
    use wit::Column as C;
    let events = || live.iter().map(|&i| &all[i]);
    fn text<'a>(
        c: &mut wit::TextColumn,
        on: bool,
        events: impl Iterator<Item = &'a Event>,
        f: impl Fn(&Event) -> &str,
    ) {
        c.data.clear();
        c.ends.clear();
        if !on {
            return;
        }
        for e in events {
            c.data.extend_from_slice(f(e).as_bytes());
            c.ends.push(u32::try_from(c.data.len()).unwrap_or(u32::MAX));
        }
    }
    fn scalar<'a, T>(
        c: &mut Vec<T>,
        on: bool,
        events: impl Iterator<Item = &'a Event>,
        f: impl Fn(&Event) -> T,
    ) {
        c.clear();
        if on {
            c.extend(events.map(f));
        }
    }
    batch.source.clear();
    batch.source.push_str(source);
    batch.file.clear();
    batch.file.push_str(file);
    let c = &mut batch.events;
    c.count = u32::try_from(live.len()).unwrap_or(u32::MAX);
    scalar(&mut c.timestamp, reads.has(C::Timestamp), events(), |e| {
        e.timestamp
    });
    text(&mut c.client, reads.has(C::Client), events(), |e| &e.client);
    text(&mut c.user, reads.has(C::User), events(), |e| &e.user);
    text(&mut c.method, reads.has(C::Method), events(), |e| &e.method);
    text(&mut c.path, reads.has(C::Path), events(), |e| &e.path);
    text(&mut c.protocol, reads.has(C::Protocol), events(), |e| {
        &e.protocol
    });
    scalar(&mut c.status, reads.has(C::Status), events(), |e| e.status);
    scalar(&mut c.bytes, reads.has(C::Bytes), events(), |e| e.bytes);
    text(&mut c.referer, reads.has(C::Referer), events(), |e| {
        e.referer.as_deref().unwrap_or("")
    });
    text(&mut c.user_agent, reads.has(C::UserAgent), events(), |e| {
        e.user_agent.as_deref().unwrap_or("")
    });
    scalar(
        &mut c.duration_us,
        reads.has(C::DurationUs),
        events(),
        |e| {
            e.duration_us
                .map_or(-1, |d| i64::try_from(d).unwrap_or(i64::MAX))
        },
    );
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
            count: 0,
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

/// Sets a text field in place, keeping the string's allocation.
fn set_field(e: &mut Event, field: wit::Field, value: &str) {
    fn set(s: &mut String, value: &str) {
        s.clear();
        s.push_str(value);
    }
    fn set_optional(s: &mut Option<String>, value: &str) {
        if value.is_empty() {
            *s = None;
        } else {
            set(s.get_or_insert_with(String::new), value);
        }
    }
    match field {
        wit::Field::Client => set(&mut e.client, value),
        wit::Field::User => set(&mut e.user, value),
        wit::Field::Method => set(&mut e.method, value),
        wit::Field::Path => set(&mut e.path, value),
        wit::Field::Protocol => set(&mut e.protocol, value),
        wit::Field::Referer => set_optional(&mut e.referer, value),
        wit::Field::UserAgent => set_optional(&mut e.user_agent, value),
    }
}

/// Labels the chain added to the events of a batch, beside them:
/// (event index, key, value), the strings interned.
#[derive(Debug, Default)]
pub struct Added {
    labels: Vec<(u32, u32, u32)>,
    names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

/// Interned label strings kept at most (then forgotten between batches).
const INTERNED: usize = 1 << 16;

impl Added {
    fn clear(&mut self) {
        self.labels.clear();
        if self.names.len() > INTERNED {
            self.names.clear();
            self.index.clear();
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_owned());
        self.index.insert(s.to_owned(), id);
        id
    }

    /// In event order, each event's in the order the filters added them
    /// (already so when one filter added them all, in order).
    fn sort(&mut self) {
        if !self.labels.is_sorted_by_key(|&(i, _, _)| i) {
            self.labels.sort_by_key(|&(i, _, _)| i);
        }
    }

    /// `base` with the labels added to one event, later ones replacing
    /// earlier ones of the same key, into `out`.
    fn merged<'a>(
        &'a self,
        base: &'a [(String, String)],
        added: &[(u32, u32, u32)],
        out: &mut Vec<(&'a str, &'a str)>,
    ) {
        out.clear();
        out.extend(base.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for &(_, k, v) in added {
            let (k, v) = (
                self.names[k as usize].as_str(),
                self.names[v as usize].as_str(),
            );
            match out.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
    }
}

/// Applies a checked verdict on the `live` events (the verdict's indices
/// are positions in `live`): replaced columns and patches to the kept ones,
/// labels to `added`, and the others marked dropped in `keep`. Returns how
/// many were dropped.
fn apply(
    v: wit::Verdict,
    events: &mut [Event],
    live: &[usize],
    keep: &mut [bool],
    added: &mut Added,
) -> usize {
    let kept = |j: usize| v.keep[j / 8] & (1 << (j % 8)) != 0;
    for c in &v.columns {
        // Checked: UTF-8, split only at character boundaries.
        let text = std::str::from_utf8(&c.values.data).unwrap_or("");
        let mut start = 0;
        for (j, &end) in c.values.ends.iter().enumerate() {
            let end = end as usize;
            if kept(j) {
                let value = text.get(start..end).unwrap_or("");
                set_field(&mut events[live[j]], c.field, value);
            }
            start = end;
        }
    }
    for p in &v.patches {
        let j = p.index as usize;
        if kept(j) {
            set_field(&mut events[live[j]], p.field, &p.value);
        }
    }
    for l in &v.label_columns {
        let key = added.intern(&l.key);
        let values: Vec<u32> = l.values.iter().map(|value| added.intern(value)).collect();
        for (j, &code) in l.codes.iter().enumerate() {
            if code > 0 && kept(j) {
                let index = u32::try_from(live[j]).unwrap_or(u32::MAX);
                added.labels.push((index, key, values[code as usize - 1]));
            }
        }
    }
    for l in &v.labels {
        let j = l.index as usize;
        if kept(j) {
            let (key, value) = (added.intern(&l.key), added.intern(&l.value));
            let index = u32::try_from(live[j]).unwrap_or(u32::MAX);
            added.labels.push((index, key, value));
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
    /// The labels added to the last batch run.
    added: Added,
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
            added: Added::default(),
            _runtime: Some(runtime.clone()),
        })
    }

    /// Runs the batch of `file` through every filter, in order; each sees
    /// the events the ones before kept, as they changed them. `keep` comes
    /// back with one flag per event: whether it goes on. The labels the
    /// filters added are kept beside the events until the next run: see
    /// [`Chain::encode_kept`] and [`Chain::labels_into`].
    pub fn run(&mut self, file: &str, events: &mut [Event], keep: &mut Vec<bool>) -> ChainStats {
        let mut stats = ChainStats::default();
        keep.clear();
        keep.resize(events.len(), true);
        self.added.clear();
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
            fill(&mut batch, f.reads, &f.source, file, events, live);
            f.state.calls += 1;
            f.state.events_in += n as u64;
            let dropped = match f.call(&batch, n) {
                Ok(verdict) => apply(verdict, events, live, keep, &mut self.added),
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
        self.added.sort();
        // A label added before a later filter dropped its event goes too.
        self.added.labels.retain(|&(i, _, _)| keep[i as usize]);
        stats
    }

    /// Pushes the events the last run kept into `encoder`, each with the
    /// labels the filters added to it.
    pub fn encode_kept(&self, events: &[Event], keep: &[bool], encoder: &mut wire::Encoder) {
        let mut merged = Vec::new();
        // The encoder's code of each (key, value) seen alone on an event
        // without labels of its own, the common case (a `label` filter):
        // its set is then written and looked up once per batch, not once
        // per event.
        let mut codes: Vec<(u32, u32, u64)> = Vec::new();
        let mut added = self.added.labels.as_slice();
        for (i, event) in events.iter().enumerate() {
            let own = added.partition_point(|&(e, _, _)| e as usize == i);
            let (mine, rest) = added.split_at(own);
            added = rest;
            if !keep[i] {
                continue;
            }
            match mine {
                [] => encoder.push(event),
                &[(_, k, v)] if event.labels.is_empty() => {
                    let code = match codes.iter().find(|c| (c.0, c.1) == (k, v)) {
                        Some(c) => c.2,
                        None => {
                            let names = &self.added.names;
                            let pair = (names[k as usize].as_str(), names[v as usize].as_str());
                            let code = encoder.label_code(&[pair]);
                            if codes.len() < 64 {
                                codes.push((k, v, code));
                            }
                            code
                        }
                    };
                    encoder.push_coded(event, code);
                }
                _ => {
                    self.added.merged(&event.labels, mine, &mut merged);
                    encoder.push_labelled(event, &merged);
                }
            }
        }
    }

    /// Writes the labels the last run added into the events themselves
    /// (for `filters test` and the tests; the agent uses
    /// [`Chain::encode_kept`]).
    pub fn labels_into(&self, events: &mut [Event]) {
        for (i, event) in events.iter_mut().enumerate() {
            let mut merged = Vec::new();
            let start = self
                .added
                .labels
                .partition_point(|&(e, _, _)| (e as usize) < i);
            let end = self
                .added
                .labels
                .partition_point(|&(e, _, _)| e as usize <= i);
            if start == end {
                continue;
            }
            self.added
                .merged(&event.labels, &self.added.labels[start..end], &mut merged);
            let labels: Vec<(String, String)> = merged
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            event.labels = labels;
        }
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
        chain.labels_into(&mut events);
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
