//! Edge filters: user WebAssembly components (world `logmon:edge/filter`
//! version 0.2.0,
//! `wasm-rules/edge-wit/filter.wit`) that see each batch of a source, by
//! column, before it is encoded, and answer which events go on, what to
//! change in them and which labels to add. One call per batch; the instance
//! is created once at start and reused.
//!
//! This module holds what the configuration names ([`FilterConfig`],
//! [`OnError`]) and is compiled always; the host ([`Chain`], wasmtime) only
//! with the `wasm` feature. Without it, a source with filters is refused at
//! start with a message that says so.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
mod shipped;

#[cfg(feature = "wasm")]
pub use host::{Chain, FilterError, Instance, MAX_VERDICT_BYTES, Runtime, Tested, test_file};
#[cfg(feature = "wasm")]
pub use shipped::{HOSTILE_PATH, SHIPPED, by_name, names};

#[cfg(not(feature = "wasm"))]
use crate::metrics::FilterState;

/// What one batch through a chain came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChainStats {
    /// Events dropped by the filters (policy drops included).
    pub dropped: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// Without the `wasm` feature there are no chains: configurations with
/// filters are refused before one could be needed.
#[cfg(not(feature = "wasm"))]
#[derive(Debug)]
pub enum Chain {}

#[cfg(not(feature = "wasm"))]
impl Chain {
    pub fn run(
        &mut self,
        _file: &str,
        _events: &mut [logmon_protocol::Event],
        _keep: &mut Vec<bool>,
    ) -> ChainStats {
        match *self {}
    }

    pub fn encode_kept(
        &self,
        _events: &[logmon_protocol::Event],
        _keep: &[bool],
        _encoder: &mut logmon_protocol::wire::Encoder,
    ) {
        match *self {}
    }

    pub fn states(&self) -> std::iter::Empty<&FilterState> {
        match *self {}
    }
}

/// The filter chain of each source (`None` for a source without filters),
/// compiled, instantiated and configured: a filter that cannot start stops
/// the agent's start with its reason.
pub fn load_chains(sources: &[(&str, &[FilterConfig])]) -> Result<Vec<Option<Chain>>, String> {
    #[cfg(feature = "wasm")]
    {
        let mut runtime = None;
        let mut chains = Vec::new();
        for &(name, filters) in sources {
            if filters.is_empty() {
                chains.push(None);
                continue;
            }
            if runtime.is_none() {
                runtime = Some(std::sync::Arc::new(
                    Runtime::new().map_err(|e| e.to_string())?,
                ));
            }
            let runtime = runtime.as_ref().expect("made above");
            let chain =
                Chain::load(runtime, name, filters).map_err(|e| format!("source {name}: {e}"))?;
            chains.push(Some(chain));
        }
        Ok(chains)
    }
    #[cfg(not(feature = "wasm"))]
    {
        match sources.iter().find(|(_, filters)| !filters.is_empty()) {
            Some((name, _)) => Err(format!(
                "source {name} has filters, and this agent was built without the `wasm` feature"
            )),
            None => Ok(sources.iter().map(|_| None).collect()),
        }
    }
}

/// What a filter's failure on a batch (a trap, an overrun deadline or
/// memory cap, a malformed verdict) does to that batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The batch goes on as if the filter were not there.
    #[default]
    Pass,
    /// The batch's events are dropped (counted as filtered).
    Drop,
}

/// A parameter's value in the configuration file: text, a number, a
/// boolean, or a list of them (passed to the filter joined with `,`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Bool(bool),
    List(Vec<ParamValue>),
}

impl ParamValue {
    /// The text the filter receives.
    pub fn text(&self) -> String {
        match self {
            ParamValue::Text(s) => s.clone(),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::List(items) => items
                .iter()
                .map(ParamValue::text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// One filter of a source, as configured:
/// `{ component = "drop", params = { path_prefix = "/healthz" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A shipped filter's name (`drop`, `redact-clients`, `redact-query`,
    /// `label`, `sample`) or the path of a `.wasm` component.
    pub component: String,
    /// Its parameters. Default: none (each keeps its default).
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// What a failure does to the batch. Default: `pass`.
    #[serde(default)]
    pub on_error: OnError,
    /// Linear memory cap of the instance, in MiB. Default: 64.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-time budget of one call, in milliseconds. Default: 100.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_memory_mb() -> u64 {
    64
}

fn default_deadline_ms() -> u64 {
    100
}

impl FilterConfig {
    /// A filter with default limits and policy.
    pub fn new(component: &str, params: &[(&str, &str)]) -> FilterConfig {
        FilterConfig {
            component: component.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ParamValue::Text((*v).to_owned())))
                .collect(),
            on_error: OnError::Pass,
            memory_mb: default_memory_mb(),
            deadline_ms: default_deadline_ms(),
        }
    }

    /// The parameters as the filter receives them.
    pub fn param_texts(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect()
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Checks the limits.
    pub fn check(&self) -> Result<(), String> {
        if self.component.trim().is_empty() {
            return Err("a filter needs a `component`".into());
        }
        if !(1..=4096).contains(&self.memory_mb) {
            return Err(format!(
                "filter {}: memory_mb must be in 1..=4096",
                self.component
            ));
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return Err(format!(
                "filter {}: deadline_ms must be in 1..=60000",
                self.component
            ));
        }
        Ok(())
    }
}

/// Whether this build can run filters.
pub const AVAILABLE: bool = cfg!(feature = "wasm");
