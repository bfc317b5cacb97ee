//! A watched rules directory. Two kinds of file in it start rule instances:
//!
//! - a component, `*.wasm`, runs as an instance named after the file
//!   (`busy.wasm` → `busy`) with its default parameters;
//! - an instance file, `*.toml`, runs the instance it describes, with the keys
//!   of a `[[rules]]` entry in the collector's configuration file: `component`
//!   (a shipped rule's name or a path, relative to the directory), `params`,
//!   `for`, `keep_firing_for`, and `name` (default: the file's stem).
//!   Severity and routing are set in the configuration file, which the
//!   notifiers read at start, so an instance file that sets them is refused.
//!   Components referenced this way belong outside the directory's top level
//!   (a `components/` subdirectory, say), or they would also run on their own.
//!
//! Adding a file starts an instance, removing it stops the instance, changing
//! it (new size or modification time, of the instance file or of the
//! component it names) swaps the instance in place: the new one gets the old
//! one's saved state when its `restore` accepts it, and starts fresh
//! otherwise, saying so. A file that does not load is reported and retried
//! when it changes again; the other rules carry on.
//!
//! Polling (not inotify): portable, and a change is seen within one poll
//! interval (the live engine polls every 2 s).

use super::{RuleSet, RuleSource, RuleSpec};
use crate::rules::entry::RuleConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file's modification time and size.
type Stamp = (Option<SystemTime>, u64);

/// A file found by a poll: its stamps, the component it names, and its spec
/// when the file itself changed (read again only then).
type Scanned = (
    Vec<Stamp>,
    Option<PathBuf>,
    Option<Result<RuleSpec, String>>,
);

/// What a file looked like when last loaded (or tried).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Modification time and size of the file, and of the component an
    /// instance file names.
    stamp: Vec<Stamp>,
    /// The component an instance file names, when it is a file of its own.
    component: Option<PathBuf>,
    /// The instance it runs as, when it loaded.
    instance: Option<String>,
}

/// The state of one watched directory.
#[derive(Debug)]
pub struct RulesDir {
    dir: PathBuf,
    seen: BTreeMap<PathBuf, Seen>,
}

impl RulesDir {
    pub fn new(dir: impl Into<PathBuf>) -> RulesDir {
        RulesDir {
            dir: dir.into(),
            seen: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Apply what changed in the directory since the last poll to `rules`;
    /// returns one line per change, for the log.
    pub fn poll(&mut self, rules: &mut RuleSet) -> Vec<String> {
        let mut log = Vec::new();
        let mut now: BTreeMap<PathBuf, Scanned> = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let path = e.path();
                    let is = |ext: &str| path.extension().is_some_and(|x| x == ext);
                    if !(is("wasm") || is("toml")) || !e.metadata().is_ok_and(|m| m.is_file()) {
                        continue;
                    }
                    // An unchanged file is not read again: only the component
                    // it names is looked at.
                    let own = stamp(&path);
                    let (component, spec) = match self.seen.get(&path) {
                        Some(s) if s.stamp.first() == Some(&own) => (s.component.clone(), None),
                        _ => {
                            let spec = self.spec(&path);
                            (component_of(&spec, &path), Some(spec))
                        }
                    };
                    let mut stamps = vec![own];
                    stamps.extend(component.as_deref().map(stamp));
                    now.insert(path, (stamps, component, spec));
                }
            }
            Err(e) => {
                log.push(format!("rules directory {}: {e}", self.dir.display()));
                return log;
            }
        }
        // Removed files.
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !now.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(Seen {
                instance: Some(name),
                ..
            }) = self.seen.remove(&path)
            {
                rules.remove(&name);
                log.push(format!(
                    "rule {name} stopped: {} was removed",
                    path.display()
                ));
            }
        }
        // New and changed files.
        for (path, (stamp, component, spec)) in now {
            let seen = self.seen.get(&path);
            if seen.is_some_and(|s| s.stamp == stamp) {
                continue;
            }
            let running = seen.and_then(|s| s.instance.clone());
            let instance = match spec.unwrap_or_else(|| self.spec(&path)) {
                Err(e) => {
                    log.push(format!("{}: {e}", path.display()));
                    running
                }
                Ok(spec) => Self::apply(rules, &path, &spec, running, &mut log),
            };
            self.seen.insert(
                path,
                Seen {
                    stamp,
                    component,
                    instance,
                },
            );
        }
        log
    }

    /// What `path` asks to run.
    fn spec(&self, path: &Path) -> Result<RuleSpec, String> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.extension().is_some_and(|x| x == "wasm") {
            let mut spec = RuleSpec::new(RuleSource::File(path.to_path_buf()), Vec::new());
            spec.name = Some(stem);
            return Ok(spec);
        }
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let entry: RuleConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        if !entry.severity.is_empty() || entry.notify.is_some() {
            return Err(
                "`severity` and `notify` are set in the configuration file (`serve --config`), \
                 not in the rules directory"
                    .into(),
            );
        }
        let mut spec = entry.spec(Some(&self.dir))?;
        spec.name.get_or_insert(stem);
        Ok(spec)
    }

    /// Start, replace or keep the instance of a new or changed file.
    fn apply(
        rules: &mut RuleSet,
        path: &Path,
        spec: &RuleSpec,
        running: Option<String>,
        log: &mut Vec<String>,
    ) -> Option<String> {
        match running {
            Some(name) => match rules.replace(&name, spec) {
                Ok(None) => {
                    log.push(format!("rule {name} replaced; its state carried over"));
                    Some(name)
                }
                Ok(Some(why)) => {
                    log.push(format!("rule {name} replaced; {why}"));
                    Some(name)
                }
                Err(e) => {
                    log.push(format!(
                        "rule {name}: the new {} did not load ({e}); the old one keeps running",
                        path.display()
                    ));
                    Some(name)
                }
            },
            None => match rules.add(spec) {
                Ok(i) => {
                    log.push(format!("rule {} started from {}", i.name, path.display()));
                    Some(i.name.clone())
                }
                Err(e) => {
                    log.push(format!("rule from {} not started: {e}", path.display()));
                    None
                }
            },
        }
    }
}

/// The component file `spec` names, when it is not `path` itself.
fn component_of(spec: &Result<RuleSpec, String>, path: &Path) -> Option<PathBuf> {
    match spec {
        Ok(RuleSpec {
            source: RuleSource::File(component),
            ..
        }) if component != path => Some(component.clone()),
        _ => None,
    }
}

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}
