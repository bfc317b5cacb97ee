//! The wasmtime side of the rule host (the sandbox itself is `logmon-sandbox`,
//! shared with the agent's edge filters): one engine per process, one store per
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
use logmon_sandbox::{EpochTicker, Fault, Sandbox, engine_config};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};

wasmtime::component::bindgen!({
    world: "rule",
    path: "../wasm-rules/wit",
});

pub use logmon::rules::types as wit;

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
            _ticker: EpochTicker::start(engine.clone(), "rule-epoch"),
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
        let memory = memory.unwrap_or_else(|| self.limits.memory_for(component.kind));
        let mut store = Sandbox::store(&self.engine, memory, self.limits.start_deadline);
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
        Sandbox::arm(&mut self.store, deadline);
    }

    /// Linear memory held now and at most so far, and the cap, in bytes.
    pub fn memory(&self) -> (usize, usize, usize) {
        self.store.data().memory()
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
    match logmon_sandbox::classify(store, &error) {
        Fault::Memory { cap, desired } => RuleFault::MemoryExceeded { call, cap, desired },
        Fault::Deadline => RuleFault::DeadlineExceeded { call },
        Fault::Trapped(message) => RuleFault::Trapped { call, message },
    }
}
