//! The collector's configuration file (`serve --config FILE`, TOML): rule
//! instances with their lifecycle, severity and routing, and notification
//! targets. Flags still set everything else; `--rule` and `--notify` add to
//! what the file lists.
//!
//! ```toml
//! [[rules]]
//! component = "high-traffic"     # a shipped rule's name, or a path to a .wasm component
//! name = "site-busy"             # the instance's name (default: the rule's own)
//! params = { threshold = 10, window = 120 }
//! for = "30s"                    # pending this long before firing (default 0)
//! keep_firing_for = "1m"         # firing this long after it stops (default 0)
//! severity = "warning"           # a label for notifiers (default "")
//! notify = ["ops"]               # target names; absent = every target
//!
//! [[notify]]
//! name = "ops"
//! kind = "alertmanager"          # webhook | slack | alertmanager
//! url = "http://127.0.0.1:9093"
//! ```

use crate::notify::{Target, TargetKind};
use crate::rules::{RuleSource, RuleSpec, parse_seconds};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub component: String,
    pub name: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(rename = "for")]
    pub pending_for: Option<toml::Value>,
    pub keep_firing_for: Option<toml::Value>,
    #[serde(default)]
    pub severity: String,
    pub notify: Option<Vec<String>>,
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub name: String,
    pub kind: TargetKind,
    pub url: String,
}

/// What the file configures, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configured {
    pub rules: Vec<RuleSpec>,
    pub targets: Vec<Target>,
    /// Instance name → severity, for the instances that set one.
    pub severity: BTreeMap<String, String>,
    /// Instance name → the only targets it notifies (absent: every target).
    pub routes: BTreeMap<String, Vec<String>>,
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
        Ok(spec)
    }
}

impl CollectorConfig {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> anyhow::Result<CollectorConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Check names and references and turn entries into specs and targets.
    pub fn resolve(&self) -> Result<Configured, String> {
        let mut out = Configured::default();
        for n in &self.notify {
            let target = Target::new(n.name.clone(), n.kind, &n.url)
                .map_err(|e| format!("notify {}: {e}", n.name))?;
            if out.targets.iter().any(|t| t.name == target.name) {
                return Err(format!("notify {}: the name is used twice", n.name));
            }
            out.targets.push(target);
        }
        for r in &self.rules {
            let label = r.name.clone().unwrap_or_else(|| r.component.clone());
            let spec = r.spec(None)?;
            if (!r.severity.is_empty() || r.notify.is_some()) && r.name.is_none() {
                return Err(format!(
                    "rule {label}: give it a `name` to set its severity or routing"
                ));
            }
            if !r.severity.is_empty() {
                out.severity.insert(label.clone(), r.severity.clone());
            }
            if let Some(targets) = &r.notify {
                for t in targets {
                    if !out.targets.iter().any(|x| &x.name == t) {
                        return Err(format!("rule {label}: no [[notify]] target named {t:?}"));
                    }
                }
                out.routes.insert(label.clone(), targets.clone());
            }
            out.rules.push(spec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[rules]]
component = "high-traffic"
name = "site-busy"
params = { threshold = 10, window = 120 }
for = "30s"
keep_firing_for = "1m"
severity = "warning"
notify = ["ops"]

[[rules]]
component = "/etc/logmon/rules/mine.wasm"
params = { limit = "5" }

[[notify]]
name = "ops"
kind = "alertmanager"
url = "http://127.0.0.1:9093"

[[notify]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:8080/hook"
"#;

    #[test]
    fn the_documented_example_resolves() {
        let c: CollectorConfig = toml::from_str(EXAMPLE).unwrap();
        let r = c.resolve().unwrap();
        let busy = &r.rules[0];
        assert_eq!(busy.source, RuleSource::Shipped("high-traffic".into()));
        assert_eq!(
            busy.params,
            vec![
                ("threshold".to_string(), "10".to_string()),
                ("window".to_string(), "120".to_string())
            ]
        );
        assert_eq!((busy.pending_for, busy.keep_firing_for), (30, 60));
        assert_eq!(busy.name.as_deref(), Some("site-busy"));
        assert_eq!(
            r.rules[1].source,
            RuleSource::File("/etc/logmon/rules/mine.wasm".into())
        );
        assert_eq!(r.severity["site-busy"], "warning");
        assert_eq!(r.routes["site-busy"], vec!["ops".to_string()]);
        assert_eq!(
            r.targets
                .iter()
                .map(|t| (t.name.as_str(), t.kind))
                .collect::<Vec<_>>(),
            vec![
                ("ops", TargetKind::Alertmanager),
                ("chat", TargetKind::Slack)
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, why) in [
            ("[[rules]]\ncomponent = \"x\"\nfor = \"3 days\"", "`for`"),
            (
                "[[rules]]\ncomponent = \"x\"\nname = \"a\"\nnotify = [\"nope\"]",
                "no [[notify]] target named \"nope\"",
            ),
            (
                "[[rules]]\ncomponent = \"x\"\nseverity = \"page\"",
                "give it a `name`",
            ),
            (
                "[[notify]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://x\"\n[[notify]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://y\"",
                "used twice",
            ),
        ] {
            let c: CollectorConfig = toml::from_str(text).unwrap();
            let err = c.resolve().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(
            toml::from_str::<CollectorConfig>("[[rules]]\ncomponent = \"x\"\ncolour = 1").is_err()
        );
    }
}
