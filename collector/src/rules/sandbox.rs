//! The wasmtime side of the rule host: one engine per process, one store per
//! rule instance, a memory cap (by kind of component, or the instance's
//! own), an epoch deadline per call, and WASI with nothing granted (no
//! filesystem, network, environment or arguments). What a guest writes to
//! stderr is kept, its tail only, so that a rule which traps is reported with
//! its own last words (a Python traceback, a JavaScript error, a Rust panic).
//!
//! Compilation goes through [`ComponentCache`]: a component is compiled once
//! per process, and once per machine when the cache has a directory.

use super::RuleFault;
pub use super::cache::Compiled;
use super::cache::{ComponentCache, Loaded};
use super::kind::ComponentKind;
use super::stderr::StderrTail;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "rule",
    path: "../wasm-rules/wit",
});

pub use logmon::rules::types as wit;

/// How often the epoch advances; deadlines are whole multiples of it.
const TICK: Duration = Duration::from_millis(5);

/// Limits applied to every rule instance.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Linear memory cap per instance of a compiled component (Rust, C, …),
    /// in bytes.
    pub memory: usize,
    /// The cap for a Python component (componentize-py: an interpreter
    /// with its heap, 12 MiB before the rule runs).
    pub python_memory: usize,
    /// The cap for a JavaScript component (componentize-js: SpiderMonkey,
    /// 9 MiB before the rule runs).
    pub js_memory: usize,
    /// Wall-time budget of one call into the rule.
    pub call_deadline: Duration,
    /// Budget of instantiation and configuration.
    pub start_deadline: Duration,
    /// Most alerts one evaluation may return.
    pub max_alerts: usize,
    /// Most bytes of keys and messages one evaluation may return.
    pub max_result_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory: 64 << 20,
            python_memory: 256 << 20,
            js_memory: 256 << 20,
            call_deadline: Duration::from_millis(200),
            start_deadline: Duration::from_secs(2),
            max_alerts: 10_000,
            max_result_bytes: 1 << 20,
        }
    }
}

impl SandboxLimits {
    /// The memory cap of an instance of a `kind` component.
    pub fn memory_for(&self, kind: ComponentKind) -> usize {
        match kind {
            ComponentKind::Python => self.python_memory,
            ComponentKind::JavaScript => self.js_memory,
            ComponentKind::Rust | ComponentKind::Other => self.memory,
        }
    }
}

/// Per-store host state.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    /// Set when the guest asked for memory past the cap.
    denied_memory: Option<usize>,
    /// The most linear memory the guest has held (all its memories).
    memory_peak: usize,
    /// What its memories hold now, by growth seen (wasmtime reports
    /// each memory's growth from its current size).
    memory_now: usize,
    stderr: StderrTail,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A component may hold several memories (one per core module that
        // defines one): the cap is on their sum.
        let total = self.memory_now - current.min(self.memory_now) + desired;
        if total > self.memory_cap {
            self.denied_memory = Some(total);
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
        self.memory_now = total;
        self.memory_peak = self.memory_peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Increments the engine's epoch every [`TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("rule-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiles and instantiates rule components.
pub struct RuleRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: SandboxLimits,
    cache: ComponentCache,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for RuleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleRuntime")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish()
    }
}

/// A compiled rule component, ready to instantiate any number of times.
#[derive(Clone)]
pub struct RuleComponent {
    pre: RulePre<Sandbox>,
    pub kind: ComponentKind,
    /// Size of the `.wasm` binary.
    pub size: usize,
    /// SHA-256 of the `.wasm` binary, hex.
    pub digest: Arc<str>,
    /// How it was obtained, and the time that took.
    pub compiled: Compiled,
    pub load_time: Duration,
}

impl std::fmt::Debug for RuleComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleComponent")
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("digest", &self.digest)
            .field("compiled", &self.compiled)
            .finish()
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// The engine configuration every rule runs with; the disk cache's entries
/// are keyed by its compatibility hash.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    config
}

impl RuleRuntime {
    /// A runtime whose compiled components are cached on disk where
    /// [`ComponentCache::default_dir`] says (`LOGMON_RULE_CACHE`).
    pub fn new(limits: SandboxLimits) -> anyhow::Result<RuleRuntime> {
        RuleRuntime::with_cache_dir(limits, ComponentCache::default_dir())
    }

    /// A runtime that caches compiled components in `dir`, or in memory
    /// only with `None`.
    pub fn with_cache_dir(
        limits: SandboxLimits,
        dir: Option<PathBuf>,
    ) -> anyhow::Result<RuleRuntime> {
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(RuleRuntime {
            _ticker: EpochTicker::start(engine.clone()),
            cache: ComponentCache::new(&engine, dir),
            engine,
            linker,
            limits,
        })
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Where compiled components are kept across runs, if anywhere.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.dir()
    }

    /// A compiled component from its bytes (`.wasm` binary): from this
    /// process's cache, the disk cache, or compiled now.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<RuleComponent> {
        let started = Instant::now();
        let Loaded {
            component,
            digest,
            compiled,
        } = self.cache.load(&self.engine, bytes)?;
        let pre = RulePre::new(self.linker.instantiate_pre(&component)?)?;
        Ok(RuleComponent {
            pre,
            kind: ComponentKind::detect(bytes),
            size: bytes.len(),
            digest,
            compiled,
            load_time: started.elapsed(),
        })
    }

    /// Instantiate a component in a fresh sandbox with `memory` bytes of
    /// linear memory at most (its kind's default when `None`).
    pub(crate) fn instantiate(
        &self,
        component: &RuleComponent,
        memory: Option<usize>,
    ) -> Result<Guest, RuleFault> {
        let stderr = StderrTail::default();
        let sandbox = Sandbox {
            // Nothing inherited or granted: no env, args, stdin, files or
            // sockets; stdout is discarded, stderr's tail kept for reports.
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            memory_cap: memory.unwrap_or_else(|| self.limits.memory_for(component.kind)),
            denied_memory: None,
            memory_peak: 0,
            memory_now: 0,
            stderr,
        };
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| s);
        store.set_epoch_deadline(ticks(self.limits.start_deadline));
        store.epoch_deadline_trap();
        let bindings = component
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e, "instantiate"))?;
        Ok(Guest {
            store,
            bindings,
            limits: self.limits,
        })
    }
}

/// One live rule instance in its own store.
pub(crate) struct Guest {
    store: Store<Sandbox>,
    bindings: Rule,
    limits: SandboxLimits,
}

impl Guest {
    /// Before each call: its deadline, and a stderr tail of its own.
    fn arm(&mut self, deadline: Duration) {
        self.store.set_epoch_deadline(ticks(deadline));
        self.store.data().stderr.clear();
    }

    /// Linear memory held now and at most so far, and the cap, in bytes.
    pub fn memory(&self) -> (usize, usize, usize) {
        let s = self.store.data();
        (s.memory_now, s.memory_peak, s.memory_cap)
    }

    pub fn describe(&mut self) -> Result<wit::RuleInfo, RuleFault> {
        self.arm(self.limits.start_deadline);
        self.bindings
            .call_describe(&mut self.store)
            .map_err(|e| classify(&self.store, e, "describe"))
    }

    pub fn configure(
        &mut self,
        params: &[(String, String)],
    ) -> Result<Result<(), String>, RuleFault> {
        self.arm(self.limits.start_deadline);
        self.bindings
            .call_configure(&mut self.store, params)
            .map_err(|e| classify(&self.store, e, "configure"))
    }

    pub fn evaluate(&mut self, second: &wit::Second) -> Result<Vec<wit::Alert>, RuleFault> {
        self.arm(self.limits.call_deadline);
        let alerts = self
            .bindings
            .call_evaluate(&mut self.store, second)
            .map_err(|e| classify(&self.store, e, "evaluate"))?;
        check_answer(&alerts, &self.limits)?;
        Ok(alerts)
    }

    pub fn save(&mut self) -> Result<Vec<u8>, RuleFault> {
        self.arm(self.limits.call_deadline);
        self.bindings
            .call_save(&mut self.store)
            .map_err(|e| classify(&self.store, e, "save"))
    }

    pub fn restore(&mut self, state: &[u8]) -> Result<Result<(), String>, RuleFault> {
        self.arm(self.limits.call_deadline);
        self.bindings
            .call_restore(&mut self.store, state)
            .map_err(|e| classify(&self.store, e, "restore"))
    }
}

/// The host's check of what a rule's `evaluate` answered: at most
/// `max_alerts` alerts and `max_result_bytes` of keys and messages, else
/// the rule is quarantined. Every value is taken (NaN and the infinities
/// included: they are stored as such, see `rules::float`), and any string
/// (a key or message with line breaks is written to InfluxDB on one line).
/// Fuzzed with what follows it: `tests/src/fuzz.rs`, target `rule_answer`.
pub fn check_answer(alerts: &[wit::Alert], limits: &SandboxLimits) -> Result<(), RuleFault> {
    let bytes: usize = alerts.iter().map(|a| a.key.len() + a.message.len()).sum();
    if alerts.len() > limits.max_alerts || bytes > limits.max_result_bytes {
        return Err(RuleFault::OversizedResult {
            alerts: alerts.len(),
            bytes,
            max_alerts: limits.max_alerts,
            max_bytes: limits.max_result_bytes,
        });
    }
    Ok(())
}

/// Turn a wasmtime error into the reason a rule is quarantined.
fn classify(store: &Store<Sandbox>, error: wasmtime::Error, call: &'static str) -> RuleFault {
    if let Some(desired) = store.data().denied_memory {
        return RuleFault::MemoryExceeded {
            call,
            cap: store.data().memory_cap,
            desired,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return RuleFault::DeadlineExceeded { call };
    }
    // One line: the trap itself, where it happened (innermost frame first),
    // then the end of what the guest wrote to stderr during the call: a
    // Python traceback ends with the exception, a Rust panic prints its
    // message there, componentize-js its error.
    let mut message = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    if let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = trace
            .frames()
            .iter()
            .filter_map(|f| f.func_name().map(str::to_owned))
            .take(4)
            .collect();
        if !frames.is_empty() {
            message.push_str(" in ");
            message.push_str(&frames.join(" < "));
        }
    }
    let mut message: String = clip_end(&message.lines().collect::<Vec<_>>().join(" "), 600);
    if let Some(said) = store.data().stderr.last_words(600) {
        message.push_str("; stderr: ");
        message.push_str(&said);
    }
    RuleFault::Trapped { call, message }
}

/// At most `max` bytes of `s`, from its start, with `…` when cut.
fn clip_end(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
