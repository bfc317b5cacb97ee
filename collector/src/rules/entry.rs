//! One `[[rules]]` entry of the collector's configuration file, also the
//! whole of an instance file (`NAME.toml`) in the watched rules directory,
//! and how it becomes a [`RuleSpec`].

use super::{RuleSource, RuleSpec, parse_seconds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub component: String,
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(rename = "for")]
    pub pending_for: Option<toml::Value>,
    pub keep_firing_for: Option<toml::Value>,
    /// The instance's memory cap: `"256M"`, `"1G"`, or bytes.
    pub memory: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
    pub notify: Option<Vec<String>>,
}

fn scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn seconds(v: &Option<toml::Value>, what: &str, rule: &str) -> Result<u32, String> {
    match v {
        None => Ok(0),
        Some(v) => parse_seconds(&scalar(v)).map_err(|e| format!("rule {rule}: `{what}`: {e}")),
    }
}

impl RuleConfig {
    /// The instance this entry describes. A relative component path is taken
    /// relative to `base` when given (a file in the watched rules directory).
    pub fn spec(&self, base: Option<&Path>) -> Result<RuleSpec, String> {
        let label = self.name.clone().unwrap_or_else(|| self.component.clone());
        let source = if self.component.contains('/') || self.component.ends_with(".wasm") {
            let path = Path::new(&self.component);
            RuleSource::File(match base {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.to_path_buf(),
            })
        } else {
            RuleSource::Shipped(self.component.clone())
        };
        let mut spec = RuleSpec::new(
            source,
            self.params
                .iter()
                .map(|(k, v)| (k.clone(), scalar(v)))
                .collect(),
        );
        spec.name.clone_from(&self.name);
        spec.pending_for = seconds(&self.pending_for, "for", &label)?;
        spec.keep_firing_for = seconds(&self.keep_firing_for, "keep_firing_for", &label)?;
        if let Some(memory) = &self.memory {
            spec.memory = Some(
                crate::rules::parse_memory(&scalar(memory))
                    .map_err(|e| format!("rule {label}: memory: {e}"))?,
            );
        }
        Ok(spec)
    }
}

impl From<RuleSpec> for RuleConfig {
    /// A `--rule` flag as a `[[rules]]` entry.
    fn from(spec: RuleSpec) -> RuleConfig {
        RuleConfig {
            component: match &spec.source {
                RuleSource::Shipped(name) => name.clone(),
                RuleSource::File(path) => path.display().to_string(),
            },
            name: spec.name.clone(),
            params: spec
                .params
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect(),
            pending_for: (spec.pending_for > 0)
                .then(|| toml::Value::Integer(spec.pending_for.into())),
            keep_firing_for: (spec.keep_firing_for > 0)
                .then(|| toml::Value::Integer(spec.keep_firing_for.into())),
            memory: spec.memory.map(|m| toml::Value::Integer(m as i64)),
            severity: String::new(),
            notify: None,
        }
    }
}
