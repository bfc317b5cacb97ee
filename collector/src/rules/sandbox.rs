//! The wasmtime side of the rule host: one engine per process, one store per
//! rule instance, a memory cap, an epoch deadline per call, and WASI with
//! nothing granted (no filesystem, network, environment or arguments).

use super::RuleFault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
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
    /// Linear memory cap per instance, in bytes.
    pub memory: usize,
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
            call_deadline: Duration::from_millis(200),
            start_deadline: Duration::from_secs(2),
            max_alerts: 10_000,
            max_result_bytes: 1 << 20,
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.denied_memory = Some(desired);
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
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
    _ticker: EpochTicker,
}

impl std::fmt::Debug for RuleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleRuntime")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A compiled rule component, ready to instantiate any number of times.
#[derive(Clone)]
pub struct RuleComponent {
    pub(crate) component: Component,
}

impl std::fmt::Debug for RuleComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleComponent")
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

impl RuleRuntime {
    pub fn new(limits: SandboxLimits) -> anyhow::Result<RuleRuntime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(1 << 20);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(RuleRuntime {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            limits,
        })
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Compile a component from its bytes (`.wasm` binary).
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<RuleComponent> {
        Ok(RuleComponent {
            component: Component::new(&self.engine, bytes)?,
        })
    }

    /// Instantiate a component in a fresh sandbox and read its description.
    pub(crate) fn instantiate(&self, component: &RuleComponent) -> Result<Guest, RuleFault> {
        let sandbox = Sandbox {
            // Nothing inherited or granted: no env, args, stdio, files or sockets.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory_cap: self.limits.memory,
            denied_memory: None,
        };
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| s);
        store.set_epoch_deadline(ticks(self.limits.start_deadline));
        store.epoch_deadline_trap();
        let bindings = Rule::instantiate(&mut store, &component.component, &self.linker)
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
    fn arm(&mut self, deadline: Duration) {
        self.store.set_epoch_deadline(ticks(deadline));
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
        let bytes: usize = alerts.iter().map(|a| a.key.len() + a.message.len()).sum();
        if alerts.len() > self.limits.max_alerts || bytes > self.limits.max_result_bytes {
            return Err(RuleFault::OversizedResult {
                alerts: alerts.len(),
                bytes,
                max_alerts: self.limits.max_alerts,
                max_bytes: self.limits.max_result_bytes,
            });
        }
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
    // One line: the trap itself, then where it happened, innermost frame
    // first (a Rust panic's own message went to the guest's stderr, which the
    // sandbox discards).
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
    let message: String = message.lines().collect::<Vec<_>>().join(" ");
    let message = if message.len() > 1000 {
        let mut end = 1000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &message[..end])
    } else {
        message
    };
    RuleFault::Trapped { call, message }
}
