//! The sandbox every logmon WebAssembly component runs in — the collector's
//! alert rules and the agent's edge filters alike: one store per instance,
//! a cap on its linear memory, an epoch deadline on each call, and WASI with
//! nothing granted (no filesystem, network, environment or arguments). What
//! a guest writes to stderr is kept, its tail only, so that a component that
//! traps is reported with its own last words.
//!
//! The host crates own their worlds' bindings; this crate gives them the
//! store's state ([`Sandbox`]), the engine configuration, the epoch ticker
//! and the reading of a failed call ([`Fault`]).

mod stderr;

pub use stderr::{KEPT, StderrTail};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; deadlines are whole multiples of it.
pub const TICK: Duration = Duration::from_millis(5);

/// Per-store host state.
pub struct Sandbox {
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

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("memory_cap", &self.memory_cap)
            .field("memory_now", &self.memory_now)
            .finish()
    }
}

impl Sandbox {
    /// A store for one instance with at most `memory_cap` bytes of linear
    /// memory, whose calls trap at their epoch deadline; `deadline` is the
    /// budget of instantiation.
    pub fn store(engine: &Engine, memory_cap: usize, deadline: Duration) -> Store<Sandbox> {
        let stderr = StderrTail::default();
        let sandbox = Sandbox {
            // Nothing inherited or granted: no env, args, stdin, files or
            // sockets; stdout is discarded, stderr's tail kept for reports.
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            memory_cap,
            denied_memory: None,
            memory_peak: 0,
            memory_now: 0,
            stderr,
        };
        let mut store = Store::new(engine, sandbox);
        store.limiter(|s| s);
        store.set_epoch_deadline(ticks(deadline));
        store.epoch_deadline_trap();
        store
    }

    /// Before each call: its deadline, and a stderr tail of its own.
    pub fn arm(store: &mut Store<Sandbox>, deadline: Duration) {
        store.set_epoch_deadline(ticks(deadline));
        store.data().stderr.clear();
    }

    /// Linear memory held now and at most so far, and the cap, in bytes.
    pub fn memory(&self) -> (usize, usize, usize) {
        (self.memory_now, self.memory_peak, self.memory_cap)
    }

    /// What the guest wrote to stderr during the current call.
    pub fn stderr(&self) -> &StderrTail {
        &self.stderr
    }
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

/// Increments an engine's epoch every [`TICK`] until dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread (named `name`).
    pub fn start(engine: Engine, name: &str) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name(name.into())
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

/// Epoch ticks for a deadline of `d` (at least one, plus one for the tick
/// already under way).
pub fn ticks(d: Duration) -> u64 {
    (d.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// The engine configuration every component runs with (components,
/// epoch interruption, a 1 MiB stack). `LOGMON_WASM_PERFMAP=1` in the
/// environment makes wasmtime write `/tmp/perf-PID.map`, so `perf report`
/// names the guests' functions.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    if std::env::var_os("LOGMON_WASM_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// Why a call into a guest failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// It overran its deadline.
    Deadline,
    /// It asked for `desired` bytes of memory, over the `cap`.
    Memory { cap: usize, desired: usize },
    /// It trapped (a panic, an exception, unreachable code): the trap,
    /// where it happened, and the end of what it wrote to stderr.
    Trapped(String),
}

/// Reads a wasmtime error of a call into the guest of `store`.
pub fn classify(store: &Store<Sandbox>, error: &wasmtime::Error) -> Fault {
    if let Some(desired) = store.data().denied_memory {
        return Fault::Memory {
            cap: store.data().memory_cap,
            desired,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return Fault::Deadline;
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
    Fault::Trapped(message)
}

/// At most `max` bytes of `s`, from its start, with `…` when cut.
pub fn clip_end(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
