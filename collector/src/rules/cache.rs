//! Compiled rule components, cached: in the process by the SHA-256 of the
//! component's bytes, and on disk (when the cache has a directory) as
//! wasmtime's serialized components, so a restart or a reload does not
//! compile again (a Python component carries an interpreter: seconds of
//! compilation).
//!
//! Invariant: nothing is handed to `Component::deserialize` but the exact
//! bytes this code got from `Component::serialize` with the same engine
//! configuration. wasmtime only lightly validates what it deserializes (its
//! docs: arbitrary input can run arbitrary code), so each entry carries the
//! component's digest, the engine's compatibility key and a SHA-256 of the
//! serialized bytes, all checked before deserializing; an entry that fails
//! any check, or that wasmtime then refuses (another wasmtime version), is
//! compiled again and replaced. Entries are written to a temporary file,
//! synced and renamed into place, so a crash leaves a whole entry or none.
//! What the checks cannot stop is someone who can write the cache directory
//! and also forges its digests: the directory is created private (0700) and
//! must be trusted like the collector's binary.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of an entry, with the format's version.
const MAGIC: &[u8; 14] = b"logmon-cwasm\n\x01";
/// Header: magic, component digest, engine key, payload digest.
const HEADER: usize = MAGIC.len() + 32 * 3;
/// Components kept compiled in the process.
const IN_MEMORY: usize = 32;
/// Entries kept on disk; past it, the oldest written go.
const ON_DISK: usize = 64;

/// A component ready to link, and how it was obtained.
#[derive(Debug)]
pub struct Loaded {
    pub component: Component,
    /// SHA-256 of the `.wasm` bytes, hex.
    pub digest: Arc<str>,
    pub compiled: Compiled,
}

/// How a component came to be ready to instantiate, for `/api/rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compiled {
    /// Compiled now (and written to the disk cache when there is one).
    Compiled,
    /// Read from the disk cache, compiled by an earlier run.
    DiskCache,
    /// Already compiled in this process.
    Memory,
}

/// Compiled components by the digest of their bytes.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// SHA-256 of the engine's precompile compatibility hash.
    engine_key: [u8; 32],
    memory: Mutex<Vec<(Arc<str>, Component)>>,
}

impl std::fmt::Debug for ComponentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Feeds what a `Hash` impl writes into SHA-256 (a stable digest, unlike
/// `DefaultHasher`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentCache {
    /// A cache for components of `engine`, on disk in `dir` when given.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        // The compatibility hash covers wasmtime's version and the engine's
        // settings; the host's own bindings are in the component, not here.
        ComponentCache {
            dir,
            engine_key: h.0.finalize().into(),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// The directory `RuleRuntime::new` caches in: `LOGMON_RULE_CACHE` when
    /// set (`off` or empty: no disk cache), else `$XDG_CACHE_HOME/logmon/rules`,
    /// else `$HOME/.cache/logmon/rules`, else none.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = std::env::var_os("LOGMON_RULE_CACHE") {
            return (!dir.is_empty() && dir != "off").then(|| PathBuf::from(dir));
        }
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))
            .map(|base| base.join("logmon").join("rules"))
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The entry file of a component with digest `digest`.
    fn entry(&self, dir: &Path, digest: &str) -> PathBuf {
        dir.join(format!("{digest}-{}.cwasm", hex(&self.engine_key[..8])))
    }

    /// `bytes` compiled: from memory, from disk, or compiled now (and stored).
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<Loaded> {
        let raw = sha256(bytes);
        let digest: Arc<str> = hex(&raw).into();
        let memory = |c: &Component, compiled| Loaded {
            component: c.clone(),
            digest: digest.clone(),
            compiled,
        };
        if let Some((_, c)) = self.lock().iter().find(|(d, _)| *d == digest) {
            return Ok(memory(c, Compiled::Memory));
        }
        let entry = self.dir.as_deref().map(|dir| self.entry(dir, &digest));
        let from_disk = entry
            .as_deref()
            .and_then(|path| match self.read(engine, path, &raw) {
                Ok(found) => found,
                Err(why) => {
                    tracing::warn!(
                        entry = %path.display(),
                        "rule cache entry not used ({why}); compiling again"
                    );
                    let _ = std::fs::remove_file(path);
                    None
                }
            });
        let (component, compiled) = match from_disk {
            Some(c) => (c, Compiled::DiskCache),
            None => {
                let c = Component::new(engine, bytes)?;
                if let Some(path) = &entry
                    && let Err(e) = self.write(path, &raw, &c)
                {
                    tracing::warn!(
                        entry = %path.display(),
                        error = %format!("{e:#}"),
                        "rule cache: could not write an entry"
                    );
                }
                (c, Compiled::Compiled)
            }
        };
        let mut cached = self.lock();
        if cached.len() >= IN_MEMORY {
            cached.remove(0);
        }
        cached.push((digest.clone(), component.clone()));
        drop(cached);
        Ok(memory(&component, compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<str>, Component)>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The component stored at `path`, `None` when there is none, or why the
    /// entry is not to be used.
    #[allow(unsafe_code)]
    fn read(
        &self,
        engine: &Engine,
        path: &Path,
        component: &[u8; 32],
    ) -> Result<Option<Component>, String> {
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
            return Err("not an entry of this format".into());
        }
        let (header, payload) = data.split_at(HEADER);
        let field = |i: usize| &header[MAGIC.len() + 32 * i..MAGIC.len() + 32 * (i + 1)];
        if field(0) != component {
            return Err("made for another component".into());
        }
        if field(1) != self.engine_key {
            return Err("made by another engine configuration".into());
        }
        if field(2) != sha256(payload) {
            return Err("its checksum does not match: corrupt".into());
        }
        // SAFETY: `payload` is, byte for byte (its SHA-256 checked above),
        // what `write` stored from `Component::serialize` for this component
        // and an engine of this configuration (both keys checked). wasmtime
        // refuses, safely, what another version of it serialized.
        unsafe { Component::deserialize(engine, payload) }
            .map(Some)
            .map_err(|e| format!("wasmtime refused it: {e}"))
    }

    fn write(&self, path: &Path, component: &[u8; 32], c: &Component) -> anyhow::Result<()> {
        let dir = path.parent().expect("entries are in the cache directory");
        create_private_dir(dir)?;
        let payload = c.serialize()?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        let mut bytes = Vec::with_capacity(MAGIC.len() + 96 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(component);
        bytes.extend_from_slice(&self.engine_key);
        bytes.extend_from_slice(&sha256(&payload));
        bytes.extend_from_slice(&payload);
        crate::durable::replace(path, &tmp, &bytes, crate::durable::Options::default())?;
        prune(dir);
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Remove the oldest entries past [`ON_DISK`].
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if found.len() <= ON_DISK {
        return;
    }
    found.sort();
    for (_, path) in &found[..found.len() - ON_DISK] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::shipped::HIGH_TRAFFIC;

    fn engine(epochs: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(epochs);
        config.max_wasm_stack(1 << 20);
        Engine::new(&config).unwrap()
    }

    fn entry_of(dir: &Path) -> PathBuf {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.pop().unwrap()
    }

    #[test]
    fn a_restart_reads_the_compiled_component_from_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rules");
        let e = engine(true);
        let first = ComponentCache::new(&e, Some(dir.clone()));
        assert_eq!(
            first.load(&e, HIGH_TRAFFIC).unwrap().compiled,
            Compiled::Compiled
        );
        assert_eq!(
            first.load(&e, HIGH_TRAFFIC).unwrap().compiled,
            Compiled::Memory
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
        // A new process: the engine is new, the entry on disk is used.
        let e2 = engine(true);
        let again = ComponentCache::new(&e2, Some(dir));
        let loaded = again.load(&e2, HIGH_TRAFFIC).unwrap();
        assert_eq!(loaded.compiled, Compiled::DiskCache);
        assert_eq!(&*loaded.digest, hex(&sha256(HIGH_TRAFFIC)));
    }

    /// Every kind of damage is compiled again, and the entry replaced by a
    /// good one.
    #[test]
    fn damaged_or_foreign_entries_are_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(true);
        ComponentCache::new(&e, Some(dir.path().to_owned()))
            .load(&e, HIGH_TRAFFIC)
            .unwrap();
        let path = entry_of(dir.path());
        let good = std::fs::read(&path).unwrap();

        // The same component serialized by an engine of another
        // configuration, under this engine's keys and a correct checksum:
        // only wasmtime's own check can tell, and it must.
        let other = engine(false);
        let foreign = Component::new(&other, HIGH_TRAFFIC)
            .unwrap()
            .serialize()
            .unwrap();
        let mut forged = good[..HEADER - 32].to_vec();
        forged.extend_from_slice(&sha256(&foreign));
        forged.extend_from_slice(&foreign);

        let flip = |at: usize| {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            bad
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a flipped byte in the compiled code", flip(good.len() / 2)),
            ("a flipped byte in the checksum", flip(HEADER - 1)),
            ("another engine's key", flip(MAGIC.len() + 32)),
            ("another component's digest", flip(MAGIC.len())),
            ("truncated", good[..good.len() - 100].to_vec()),
            ("torn header", good[..20].to_vec()),
            ("empty", Vec::new()),
            ("another engine's compiled code", forged),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let e = engine(true);
            let cache = ComponentCache::new(&e, Some(dir.path().to_owned()));
            let loaded = cache.load(&e, HIGH_TRAFFIC).unwrap();
            assert_eq!(loaded.compiled, Compiled::Compiled, "{what}");
            // It runs, and the entry is good again.
            let runtime = crate::rules::RuleRuntime::with_cache_dir(
                crate::rules::SandboxLimits::default(),
                Some(dir.path().to_owned()),
            )
            .unwrap();
            let component = runtime.compile(HIGH_TRAFFIC).unwrap();
            assert_eq!(component.compiled, Compiled::DiskCache, "{what}");
            let mut guest = runtime.instantiate(&component, None).unwrap();
            assert_eq!(guest.describe().unwrap().name, "high-traffic", "{what}");
            let rewritten = std::fs::read(entry_of(dir.path())).unwrap();
            assert_eq!(rewritten.len(), good.len(), "{what}");
        }
    }

    #[test]
    fn without_a_directory_it_caches_in_memory_only() {
        let e = engine(true);
        let cache = ComponentCache::new(&e, None);
        assert_eq!(
            cache.load(&e, HIGH_TRAFFIC).unwrap().compiled,
            Compiled::Compiled
        );
        assert_eq!(
            cache.load(&e, HIGH_TRAFFIC).unwrap().compiled,
            Compiled::Memory
        );
    }
}
