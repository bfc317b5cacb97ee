//! A watched rules directory: every `*.wasm` component in it runs as an
//! instance named after the file (`busy.wasm` → `busy`) with its default
//! parameters. Adding a file starts an instance, removing it stops the
//! instance, replacing it (new size or modification time) swaps the
//! component in place: the new one gets the old one's saved state when its
//! `restore` accepts it, and starts fresh otherwise, saying so. A file that
//! does not load is reported and retried when it changes again; the other
//! rules carry on.
//!
//! Polling (not inotify): portable, and a change is seen within one poll
//! interval (the live engine polls every 2 s).

use super::{RuleSet, RuleSource, RuleSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a file looked like when last loaded (or tried).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
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
        let mut now: BTreeMap<PathBuf, (Option<SystemTime>, u64)> = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let path = e.path();
                    if path.extension().is_some_and(|x| x == "wasm")
                        && let Ok(meta) = e.metadata()
                        && meta.is_file()
                    {
                        now.insert(path, (meta.modified().ok(), meta.len()));
                    }
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
        for (path, (modified, len)) in now {
            let seen = self.seen.get(&path);
            if seen.is_some_and(|s| s.modified == modified && s.len == len) {
                continue;
            }
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut spec = RuleSpec::new(RuleSource::File(path.clone()), Vec::new());
            spec.name = Some(stem.clone());
            let running = seen.and_then(|s| s.instance.clone());
            let instance = match running {
                Some(name) => match rules.replace(&name, &spec) {
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
                None => match rules.add(&spec) {
                    Ok(i) => {
                        log.push(format!("rule {} started from {}", i.name, path.display()));
                        Some(i.name.clone())
                    }
                    Err(e) => {
                        log.push(format!("rule from {} not started: {e}", path.display()));
                        None
                    }
                },
            };
            self.seen.insert(
                path,
                Seen {
                    modified,
                    len,
                    instance,
                },
            );
        }
        log
    }
}
