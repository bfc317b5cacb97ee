//! The rule host: runs WebAssembly alert rules over closed seconds and turns
//! what each rule says is firing into fired/resolved transitions.
//!
//! Invariants: every live instance sees every closed second exactly once, in
//! order; a rule that traps, overruns its deadline or memory, or returns too
//! much is quarantined and never called again, and the others carry on; a key
//! cannot fire twice without resolving in between, because transitions are
//! the host's diff of consecutive firing sets.

mod cache;
pub mod entry;
mod float;
mod kind;
pub mod lifecycle;
pub mod reload;
mod sandbox;
pub mod shipped;

use crate::engine::SecondStats;
pub use cache::ComponentCache;
pub use kind::ComponentKind;
pub use sandbox::{Compiled, RuleComponent, RuleRuntime, SandboxLimits, check_answer, wit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most sections, and top clients, handed to a rule per second.
pub const MAX_SECTIONS: usize = 256;
pub const MAX_CLIENTS: usize = 16;

/// Why a rule was quarantined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFault {
    #[error("`{call}` overran its time budget")]
    DeadlineExceeded { call: &'static str },
    #[error("`{call}` wanted {desired} bytes of memory, over the cap of {cap}")]
    MemoryExceeded {
        call: &'static str,
        cap: usize,
        desired: usize,
    },
    #[error("`{call}` trapped: {message}")]
    Trapped { call: &'static str, message: String },
    #[error(
        "`evaluate` returned {alerts} alerts / {bytes} bytes, over the limit of {max_alerts} alerts / {max_bytes} bytes"
    )]
    OversizedResult {
        alerts: usize,
        bytes: usize,
        max_alerts: usize,
        max_bytes: usize,
    },
}

/// Why a rule could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuleLoadError {
    #[error("no shipped rule named `{0}` (shipped: {names})", names = shipped::names())]
    UnknownShipped(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a logmon rule component: {1:#}")]
    Compile(String, anyhow::Error),
    #[error("{0} failed to start: {1}")]
    Fault(String, RuleFault),
    #[error("{0} refused its configuration: {1}")]
    Config(String, String),
}

/// Where a rule's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    Shipped(String),
    File(PathBuf),
}

/// One rule instance to run: a component, its parameters and how the host
/// runs its alerts' lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub source: RuleSource,
    pub params: Vec<(String, String)>,
    /// The instance's name; by default the rule's own (`name#2`, … when taken).
    pub name: Option<String>,
    /// Seconds a key must fire before it is firing (pending meanwhile).
    pub pending_for: u32,
    /// Seconds a key keeps firing after the rule stops reporting it.
    pub keep_firing_for: u32,
    /// The instance's linear memory cap, bytes; by default its kind's
    /// ([`SandboxLimits::memory_for`]).
    pub memory: Option<usize>,
}

impl RuleSpec {
    /// An instance of `source` with `params` and no lifecycle durations.
    pub fn new(source: RuleSource, params: Vec<(String, String)>) -> RuleSpec {
        RuleSpec {
            source,
            params,
            name: None,
            pending_for: 0,
            keep_firing_for: 0,
            memory: None,
        }
    }

    /// The exercise's rule, `high-traffic`, with its threshold and window.
    pub fn high_traffic(threshold: f64, window: u32) -> RuleSpec {
        RuleSpec::new(
            RuleSource::Shipped("high-traffic".into()),
            vec![
                ("threshold".into(), threshold.to_string()),
                ("window".into(), window.to_string()),
            ],
        )
    }
}

/// A duration in seconds: `90`, `90s`, `5m`, `2h`.
pub fn parse_seconds(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u32 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (90, 90s, 5m, 2h)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{s}`: the units are s, m and h")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// A memory size: `268435456` (bytes), `256K`, `256M`, `1G` (also `MiB`,
/// `GiB`, …: powers of 1024).
pub fn parse_memory(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(at);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a memory size (256M, 1G)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(format!("`{s}`: the units are K, M and G")),
    };
    match n.checked_mul(1 << shift) {
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        Some(_) => Err(format!("`{s}` is below 1M, too little for any rule")),
        None => Err(format!("`{s}` is too large")),
    }
}

impl std::str::FromStr for RuleSpec {
    type Err = String;

    /// `NAME-OR-PATH[:key=value,key=value]`; the host's keys are `for`,
    /// `keep_firing_for`, `name` and `memory`. A value containing `.wasm` or a
    /// `/` is a path, anything else names a shipped rule.
    fn from_str(s: &str) -> Result<RuleSpec, String> {
        let (source, params) = match s.rsplit_once(':') {
            Some((source, params)) if params.contains('=') => (source, params),
            _ => (s, ""),
        };
        if source.is_empty() {
            return Err("empty rule name".into());
        }
        let source = if source.contains('/') || source.ends_with(".wasm") {
            RuleSource::File(PathBuf::from(source))
        } else {
            RuleSource::Shipped(source.to_owned())
        };
        let params: Vec<(String, String)> = params
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("parameter `{p}` is not key=value"))
            })
            .collect::<Result<_, _>>()?;
        // `for`, `keep_firing_for`, `name` and `memory` are the host's, not
        // the rule's.
        let mut spec = RuleSpec::new(source, Vec::new());
        for (k, v) in params {
            match k.as_str() {
                "for" => spec.pending_for = parse_seconds(&v)?,
                "keep_firing_for" => spec.keep_firing_for = parse_seconds(&v)?,
                "name" => spec.name = Some(v),
                "memory" => spec.memory = Some(parse_memory(&v)?),
                _ => spec.params.push((k, v)),
            }
        }
        Ok(spec)
    }
}

/// Whether an alert key is firing or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// A change of an alert key's state at a second of event time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    pub rule: String,
    pub key: String,
    pub state: AlertState,
    /// Unix seconds of event time.
    pub at: i64,
    #[serde(with = "float")]
    pub value: f64,
    pub message: String,
}

/// A rule instance as `GET /api/rules` shows it (see [`RuleInstance::view`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleStatus {
    /// The instance's name.
    pub name: String,
    /// The rule's own name (`describe`).
    pub rule: String,
    pub description: String,
    pub version: String,
    /// The parameters it was configured with.
    pub params: BTreeMap<String, String>,
    /// The rule's parameters and their defaults.
    pub defaults: BTreeMap<String, String>,
    pub health: HealthStatus,
    pub component: ComponentStatus,
    pub start: StartStatus,
    pub memory: MemoryStatus,
    /// Seconds a key stays pending before it fires.
    #[serde(rename = "for")]
    pub pending_for: i64,
    pub keep_firing_for: i64,
    pub pending: Vec<PendingKey>,
    pub active: Vec<ActiveKey>,
}

fn as_str<S: serde::Serializer>(s: &Arc<str>, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(s)
}

/// Evaluations and their cost; the quarantine, if any.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthStatus {
    pub evaluations: u64,
    pub busy_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
    /// Why the instance is quarantined, while it is.
    pub quarantined: Option<String>,
}

/// The component an instance runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComponentStatus {
    pub kind: ComponentKind,
    /// Size of the `.wasm` binary.
    pub bytes: usize,
    #[serde(serialize_with = "as_str")]
    pub sha256: Arc<str>,
    pub compiled: Compiled,
}

/// What starting the instance cost, microseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StartStatus {
    pub load_us: f64,
    pub instantiate_us: f64,
}

/// Linear memory, bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryStatus {
    pub bytes: usize,
    pub peak_bytes: usize,
    pub cap_bytes: usize,
}

/// A key waiting out its `for`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PendingKey {
    pub key: String,
    pub since: i64,
    pub value: f64,
}

/// A key firing now; `value` is `null` when not finite.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActiveKey {
    pub key: String,
    pub value: Option<f64>,
    pub message: String,
}

/// Evaluation health of one rule instance.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RuleHealth {
    pub evaluations: u64,
    pub busy: Duration,
    /// The longest `evaluate` call.
    pub slowest: Duration,
    pub quarantined: Option<String>,
}

/// What starting an instance cost.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StartCost {
    /// Compiling the component, or reading it from a cache.
    pub load: Duration,
    /// Instantiating it in a fresh sandbox, `describe` and `configure`.
    pub instantiate: Duration,
}

/// A running rule instance with its alert keys.
pub struct RuleInstance {
    pub name: String,
    pub info: wit::RuleInfo,
    guest: sandbox::Guest,
    /// The component it runs.
    pub component: RuleComponent,
    pub started: StartCost,
    pub health: RuleHealth,
    /// The parameters it was configured with.
    pub params: Vec<(String, String)>,
    /// Each key's place in the alert lifecycle.
    pub lifecycle: lifecycle::Lifecycle,
    /// A digest of what the last evaluation answered.
    answered: u64,
    /// After an evaluation of a silent second: its answer and saved state,
    /// to tell whether the next silent second changed anything.
    silent: Option<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for RuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleInstance")
            .field("name", &self.name)
            .field("health", &self.health)
            .finish()
    }
}

impl RuleInstance {
    /// Start an instance: instantiate (with `memory` bytes at most, or its
    /// kind's default), describe, configure.
    pub fn start(
        runtime: &RuleRuntime,
        component: &RuleComponent,
        label: &str,
        params: &[(String, String)],
        memory: Option<usize>,
    ) -> Result<RuleInstance, RuleLoadError> {
        let fault = |f| RuleLoadError::Fault(label.to_owned(), f);
        let began = Instant::now();
        let mut guest = runtime.instantiate(component, memory).map_err(fault)?;
        let info = guest.describe().map_err(fault)?;
        guest
            .configure(params)
            .map_err(fault)?
            .map_err(|e| RuleLoadError::Config(label.to_owned(), e))?;
        Ok(RuleInstance {
            name: info.name.clone(),
            info,
            guest,
            started: StartCost {
                load: component.load_time,
                instantiate: began.elapsed(),
            },
            component: component.clone(),
            health: RuleHealth::default(),
            params: params.to_vec(),
            lifecycle: lifecycle::Lifecycle::default(),
            answered: 0,
            silent: None,
        })
    }

    /// Linear memory the instance holds now and at most so far, and its
    /// cap, in bytes.
    pub fn memory(&self) -> (usize, usize, usize) {
        self.guest.memory()
    }

    /// What `GET /api/rules` shows of the instance, and what `/metrics`
    /// reads its families from.
    pub fn view(&self) -> RuleStatus {
        let evaluations = self.health.evaluations;
        let busy_us = self.health.busy.as_secs_f64() * 1e6;
        let (memory_now, memory_peak, memory_cap) = self.memory();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        RuleStatus {
            name: self.name.clone(),
            rule: self.info.name.clone(),
            description: self.info.description.clone(),
            version: self.info.version.clone(),
            params: self.params.iter().cloned().collect(),
            defaults: self
                .info
                .params
                .iter()
                .map(|p| (p.name.clone(), p.default_value.clone()))
                .collect(),
            health: HealthStatus {
                evaluations,
                busy_us,
                mean_us: if evaluations > 0 {
                    busy_us / evaluations as f64
                } else {
                    0.0
                },
                max_us: us(self.health.slowest),
                quarantined: self.health.quarantined.clone(),
            },
            component: ComponentStatus {
                kind: self.component.kind,
                bytes: self.component.size,
                sha256: self.component.digest.clone(),
                compiled: self.component.compiled,
            },
            start: StartStatus {
                load_us: us(self.started.load),
                instantiate_us: us(self.started.instantiate),
            },
            memory: MemoryStatus {
                bytes: memory_now,
                peak_bytes: memory_peak,
                cap_bytes: memory_cap,
            },
            pending_for: self.lifecycle.pending_for,
            keep_firing_for: self.lifecycle.keep_firing_for,
            pending: self
                .lifecycle
                .keys
                .iter()
                .filter_map(|(k, s)| match s {
                    lifecycle::KeyState::Pending { since, value, .. } => Some(PendingKey {
                        key: k.clone(),
                        since: *since,
                        value: *value,
                    }),
                    lifecycle::KeyState::Firing { .. } => None,
                })
                .collect(),
            active: self
                .lifecycle
                .firing()
                .map(|(k, v, m)| ActiveKey {
                    key: k.to_owned(),
                    value: v.is_finite().then_some(v),
                    message: m.to_owned(),
                })
                .collect(),
        }
    }

    pub fn is_quarantined(&self) -> bool {
        self.health.quarantined.is_some()
    }

    /// Evaluate one second and append the transitions it causes. A fault
    /// quarantines the instance and is returned; its alerts stay as they were.
    pub fn evaluate(
        &mut self,
        second: &wit::Second,
        out: &mut Vec<Transition>,
    ) -> Result<(), RuleFault> {
        if let Some(reason) = &self.health.quarantined {
            return Err(RuleFault::Trapped {
                call: "evaluate",
                message: format!("quarantined earlier: {reason}"),
            });
        }
        let started = Instant::now();
        let result = self.guest.evaluate(second);
        let took = started.elapsed();
        self.health.busy += took;
        self.health.slowest = self.health.slowest.max(took);
        self.health.evaluations += 1;
        match result {
            Ok(alerts) => {
                self.answered = digest(&alerts);
                self.apply(second.time, alerts, out);
                Ok(())
            }
            Err(fault) => {
                self.health.quarantined = Some(fault.to_string());
                Err(fault)
            }
        }
    }

    /// Diff the rule's answer against the keys firing before.
    fn apply(&mut self, at: i64, alerts: Vec<wit::Alert>, out: &mut Vec<Transition>) {
        apply_answer(&self.name, &mut self.lifecycle, at, alerts, out);
    }

    /// After evaluating a silent second: whether further silent seconds
    /// would change nothing — the rule answered as it did for the silent
    /// second before, its saved state is the same, and no key is pending or
    /// counting down its `keep_firing_for`. A rule is taken to depend on the
    /// time of a silent second only through its state and its answer, so
    /// from here on its every answer and transition would repeat.
    fn steady_in_silence(&mut self) -> bool {
        let Ok(state) = self.guest.save() else {
            self.silent = None;
            return false;
        };
        let now = (self.answered, state);
        let same = self.silent.as_ref() == Some(&now);
        self.silent = Some(now);
        same && self.lifecycle.settled()
    }

    /// Keys firing now, with their latest value and message.
    pub fn active(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        self.lifecycle.firing()
    }

    pub fn save(&mut self) -> Result<Vec<u8>, RuleFault> {
        self.guest.save()
    }

    pub fn restore(&mut self, state: &[u8]) -> Result<Result<(), String>, RuleFault> {
        self.silent = None;
        self.guest.restore(state)
    }
}

/// Rule `name`'s answer for second `at` (already checked by
/// [`check_answer`]) diffed against the keys of `lifecycle`: the
/// transitions it makes are appended to `out`. Of several alerts with one
/// key, the first counts.
pub fn apply_answer(
    name: &str,
    lifecycle: &mut lifecycle::Lifecycle,
    at: i64,
    alerts: Vec<wit::Alert>,
    out: &mut Vec<Transition>,
) {
    let mut firing: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut quiet: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for a in alerts {
        let into = if a.firing { &mut firing } else { &mut quiet };
        into.entry(a.key).or_insert((a.value, a.message));
    }
    lifecycle.step(
        name,
        at,
        &firing,
        |key, last| {
            quiet.remove(key).unwrap_or_else(|| {
                let what = if key.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name} {key}")
                };
                let when = crate::clock::utc(at);
                (last, format!("{what} resolved at {when} ({at})"))
            })
        },
        out,
    );
}

/// A digest of a rule's answer (its alerts in order, every field).
fn digest(alerts: &[wit::Alert]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for a in alerts {
        a.key.hash(&mut h);
        a.firing.hash(&mut h);
        a.value.to_bits().hash(&mut h);
        a.message.hash(&mut h);
    }
    alerts.len().hash(&mut h);
    h.finish()
}

/// Hand `saved` to `instance`; `None` when it took it, else why it starts fresh.
fn restore_one(instance: &mut RuleInstance, saved: &SavedRule) -> Option<String> {
    match instance.restore(&saved.state) {
        Ok(Ok(())) => {
            instance.lifecycle.keys = saved.keys.clone();
            None
        }
        Ok(Err(reason)) => Some(format!(
            "{}: saved state refused ({reason}), starting fresh",
            instance.name
        )),
        Err(fault) => {
            instance.health.quarantined = Some(fault.to_string());
            Some(format!(
                "{}: quarantined while restoring: {fault}",
                instance.name
            ))
        }
    }
}

/// A rule that was quarantined, reported once.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quarantine {
    pub rule: String,
    /// The second being evaluated.
    pub at: i64,
    pub reason: String,
}

/// A rule instance's state for a snapshot: the guest's own `save` output and
/// the host's firing keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedRule {
    pub name: String,
    pub state: Vec<u8>,
    /// Each pending or firing key's lifecycle state.
    pub keys: BTreeMap<String, lifecycle::KeyState>,
}

/// Every rule instance of a run, evaluated together on each closed second.
#[derive(Debug)]
pub struct RuleSet {
    runtime: RuleRuntime,
    instances: Vec<RuleInstance>,
    second: wit::Second,
    /// Keys that were firing in instances since removed: resolved at the
    /// next evaluated second, so every consumer of the transitions (outbox,
    /// InfluxDB, notifiers, Alertmanager's active set) sees the alert end.
    retired: Vec<(String, String, f64)>,
}

impl RuleSet {
    pub fn new(runtime: RuleRuntime) -> RuleSet {
        RuleSet {
            runtime,
            instances: Vec::new(),
            second: empty_second(0),
            retired: Vec::new(),
        }
    }

    pub fn runtime(&self) -> &RuleRuntime {
        &self.runtime
    }

    pub fn instances(&self) -> &[RuleInstance] {
        &self.instances
    }

    /// Load and start a rule; instance names are made unique (`name#2`).
    pub fn add(&mut self, spec: &RuleSpec) -> Result<&RuleInstance, RuleLoadError> {
        let (label, bytes) = match &spec.source {
            RuleSource::Shipped(name) => {
                let bytes = shipped::by_name(name)
                    .ok_or_else(|| RuleLoadError::UnknownShipped(name.clone()))?;
                (name.clone(), std::borrow::Cow::Borrowed(bytes))
            }
            RuleSource::File(path) => (
                path.display().to_string(),
                std::borrow::Cow::Owned(read_component(path)?),
            ),
        };
        // Instances of one component share one compilation (the runtime's
        // cache), and a restart reads it from disk.
        let component = self
            .runtime
            .compile(&bytes)
            .map_err(|e| RuleLoadError::Compile(label.clone(), e))?;
        let mut instance =
            RuleInstance::start(&self.runtime, &component, &label, &spec.params, spec.memory)?;
        instance.lifecycle = lifecycle::Lifecycle::new(spec.pending_for, spec.keep_firing_for);
        if let Some(name) = &spec.name {
            instance.name.clone_from(name);
        }
        let base = instance.name.clone();
        let mut n = 1;
        while self.instances.iter().any(|i| i.name == instance.name) {
            n += 1;
            instance.name = format!("{base}#{n}");
        }
        self.instances.push(instance);
        Ok(self.instances.last().expect("just pushed"))
    }

    /// Save every live instance. A rule whose `save` faults is quarantined
    /// and left out.
    pub fn save(&mut self) -> Result<Vec<SavedRule>, Vec<Quarantine>> {
        let mut saved = Vec::new();
        let mut faults = Vec::new();
        for instance in self.instances.iter_mut().filter(|i| !i.is_quarantined()) {
            match instance.save() {
                Ok(state) => saved.push(SavedRule {
                    name: instance.name.clone(),
                    state,
                    keys: instance.lifecycle.keys.clone(),
                }),
                Err(fault) => {
                    instance.health.quarantined = Some(fault.to_string());
                    faults.push(Quarantine {
                        rule: instance.name.clone(),
                        at: 0,
                        reason: fault.to_string(),
                    });
                }
            }
        }
        if faults.is_empty() {
            Ok(saved)
        } else {
            Err(faults)
        }
    }

    /// Restore saved states by instance name. An instance whose rule refuses
    /// its old state (or has none) starts fresh; the error lists those, with
    /// the reason, and everything else is restored.
    pub fn restore(&mut self, saved: &[SavedRule]) -> Result<(), Vec<String>> {
        let mut fresh = Vec::new();
        for instance in self.instances.iter_mut().filter(|i| !i.is_quarantined()) {
            let Some(s) = saved.iter().find(|s| s.name == instance.name) else {
                fresh.push(format!("{}: no saved state, starting fresh", instance.name));
                continue;
            };
            if let Some(why) = restore_one(instance, s) {
                fresh.push(why);
            }
        }
        if fresh.is_empty() { Ok(()) } else { Err(fresh) }
    }

    /// Stop and forget the instance `name`. Its firing keys resolve at the
    /// next evaluated second; pending ones never fired and just end.
    pub fn remove(&mut self, name: &str) -> Option<RuleInstance> {
        let i = self.instances.iter().position(|i| i.name == name)?;
        let gone = self.instances.remove(i);
        for (key, state) in &gone.lifecycle.keys {
            if let lifecycle::KeyState::Firing { value, .. } = state {
                self.retired.push((gone.name.clone(), key.clone(), *value));
            }
        }
        Some(gone)
    }

    /// Replace the instance `name` with a new one from `spec` (same name),
    /// handing it the old one's state. `Ok(None)`: the new rule took the
    /// state; `Ok(Some(why))`: it starts fresh, and why.
    pub fn replace(
        &mut self,
        name: &str,
        spec: &RuleSpec,
    ) -> Result<Option<String>, RuleLoadError> {
        let saved = match self.instances.iter_mut().find(|i| i.name == name) {
            Some(old) if !old.is_quarantined() => old.save().ok().map(|state| SavedRule {
                name: name.to_owned(),
                state,
                keys: old.lifecycle.keys.clone(),
            }),
            _ => None,
        };
        let mut spec = spec.clone();
        spec.name = Some(name.to_owned());
        // Start the new one first: a component that does not load leaves the
        // old instance running.
        let position = self.instances.iter().position(|i| i.name == name);
        let old = position.map(|i| self.instances.remove(i));
        if let Err(e) = self.add(&spec) {
            if let (Some(i), Some(old)) = (position, old) {
                self.instances.insert(i, old);
            }
            return Err(e);
        }
        let new = self.instances.last_mut().expect("just added");
        Ok(match saved {
            Some(s) => {
                let why = restore_one(new, &s);
                // Starting fresh, the alerts already sent still stand: the
                // host keeps their keys, so the new rule either reports them
                // again (nothing sent) or they resolve, as with any key a
                // rule stops reporting.
                if why.is_some() && !new.is_quarantined() {
                    new.lifecycle.keys = s.keys;
                }
                why
            }
            None => Some(format!("{name}: no state to carry over, starting fresh")),
        })
    }

    /// Evaluate a closed second on every live instance.
    pub fn evaluate(
        &mut self,
        stats: &SecondStats,
        transitions: &mut Vec<Transition>,
        quarantined: &mut Vec<Quarantine>,
    ) {
        for instance in &mut self.instances {
            instance.silent = None;
        }
        self.evaluate_filled(stats, transitions, quarantined);
    }

    /// Evaluate the silent second `time` like [`Self::evaluate`]; true when
    /// every instance is steady in silence (see
    /// [`RuleInstance::steady_in_silence`]): the silent seconds after it need
    /// no evaluation, since they would answer the same and change nothing.
    pub fn evaluate_silent(
        &mut self,
        time: i64,
        transitions: &mut Vec<Transition>,
        quarantined: &mut Vec<Quarantine>,
    ) -> bool {
        let retiring = !self.retired.is_empty();
        self.evaluate_filled(&SecondStats::silent(time), transitions, quarantined);
        let mut steady = !retiring;
        for instance in self.instances.iter_mut().filter(|i| !i.is_quarantined()) {
            steady &= instance.steady_in_silence();
        }
        steady
    }

    fn evaluate_filled(
        &mut self,
        stats: &SecondStats,
        transitions: &mut Vec<Transition>,
        quarantined: &mut Vec<Quarantine>,
    ) {
        fill_second(&mut self.second, stats);
        for (rule, key, value) in self.retired.drain(..) {
            let on = if key.is_empty() {
                String::new()
            } else {
                format!(" for {key}")
            };
            transitions.push(Transition {
                message: format!("Rule {rule} was removed; its alert{on} is resolved"),
                rule,
                key,
                state: AlertState::Resolved,
                at: stats.time,
                value,
            });
        }
        for instance in self.instances.iter_mut().filter(|i| !i.is_quarantined()) {
            if let Err(fault) = instance.evaluate(&self.second, transitions) {
                quarantined.push(Quarantine {
                    rule: instance.name.clone(),
                    at: stats.time,
                    reason: fault.to_string(),
                });
            }
        }
    }
}

fn read_component(path: &Path) -> Result<Vec<u8>, RuleLoadError> {
    std::fs::read(path).map_err(|source| RuleLoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An empty second in the rule interface's shape.
pub fn empty_second(time: i64) -> wit::Second {
    wit::Second {
        time,
        hits: 0,
        bytes: 0,
        statuses: classes(&Default::default()),
        sections: Vec::new(),
        status_codes: Vec::new(),
        methods: Vec::new(),
        top_clients: Vec::new(),
    }
}

fn classes(c: &crate::engine::StatusClasses) -> wit::StatusClasses {
    wit::StatusClasses {
        informational: c.informational,
        success: c.success,
        redirection: c.redirection,
        client_error: c.client_error,
        server_error: c.server_error,
        other: c.other,
    }
}

/// Busiest first, ties by name so the order is deterministic.
fn busiest<'a, V>(
    items: impl Iterator<Item = (&'a str, V)>,
    hits: impl Fn(&V) -> u64,
    limit: usize,
) -> Vec<(&'a str, V)> {
    let order =
        |a: &(&str, V), b: &(&str, V)| hits(&b.1).cmp(&hits(&a.1)).then_with(|| a.0.cmp(b.0));
    let mut v: Vec<(&str, V)> = items.collect();
    // Only the first `limit` need sorting: select them first (a second can
    // hold thousands of clients).
    if v.len() > limit && limit > 0 {
        v.select_nth_unstable_by(limit - 1, order);
        v.truncate(limit);
    }
    v.sort_unstable_by(order);
    v.truncate(limit);
    v
}

/// Write a closed second into the interface's record, reusing its buffers.
pub fn fill_second(out: &mut wit::Second, s: &SecondStats) {
    out.time = s.time;
    out.hits = s.hits;
    out.bytes = s.bytes;
    out.statuses = classes(&s.statuses);
    out.sections.clear();
    out.sections.extend(
        busiest(
            s.sections.iter().map(|(k, v)| (&**k, v)),
            |v| v.hits,
            MAX_SECTIONS,
        )
        .into_iter()
        .map(|(name, agg)| wit::SectionStats {
            section: name.to_owned(),
            hits: agg.hits,
            bytes: agg.bytes,
            statuses: classes(&agg.statuses),
        }),
    );
    out.status_codes.clear();
    out.status_codes.extend(
        s.status_codes
            .iter()
            .map(|(&status, &hits)| wit::StatusCount { status, hits }),
    );
    out.status_codes.sort_unstable_by_key(|c| c.status);
    out.methods.clear();
    out.methods.extend(
        busiest(
            s.methods.iter().map(|(k, v)| (&**k, *v)),
            |v| *v,
            usize::MAX,
        )
        .into_iter()
        .map(|(method, hits)| wit::MethodCount {
            method: method.to_owned(),
            hits,
        }),
    );
    out.top_clients.clear();
    out.top_clients.extend(
        busiest(
            s.clients.iter().map(|(k, v)| (&**k, *v)),
            |v| *v,
            MAX_CLIENTS,
        )
        .into_iter()
        .map(|(client, hits)| wit::ClientCount {
            client: client.to_owned(),
            hits,
        }),
    );
}
