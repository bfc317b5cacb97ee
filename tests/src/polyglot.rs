//! The Python and JavaScript example rules (`wasm-rules/python/*`,
//! `wasm-rules/js/*`) as components, built once per change of their sources
//! by the real `logmon-collector rules build` with the toolchains
//! `scripts/setup.sh --rules` installs, and compiled once into a rule cache
//! the tests share ([`rule_cache`]), so the collectors they start load them
//! from disk.

use crate::collector_bin;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The languages beside Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Js,
}

impl Lang {
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

fn work_dir() -> PathBuf {
    let dir = root().join("target/tmp/polyglot");
    std::fs::create_dir_all(&dir).expect("creating target/tmp/polyglot");
    dir
}

/// The rule cache every test's collector uses (`LOGMON_RULE_CACHE`).
pub fn rule_cache() -> PathBuf {
    work_dir().join("rule-cache")
}

/// Fails, saying what to run, when a toolchain is missing: these tests never
/// skip.
pub fn require_toolchains() {
    let root = root();
    for (tool, what) in [
        (
            "wasm-rules/python/.venv/bin/componentize-py",
            "componentize-py",
        ),
        (
            "wasm-rules/js/node_modules/.bin/componentize-js",
            "componentize-js",
        ),
    ] {
        assert!(
            root.join(tool).is_file(),
            "{what} is not installed ({tool} is missing): run `make setup-rules` (scripts/setup.sh --rules)"
        );
    }
}

/// Digest of everything a component is built from.
fn sources_digest(dirs: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            f.file_name().hash(&mut h);
            std::fs::read(&f).expect("reading a source").hash(&mut h);
        }
    }
    h.finish()
}

static BUILDING: Mutex<()> = Mutex::new(());

/// The component of example `rule` in `lang` (`high-traffic`, `error-rate`,
/// `hostile`), built if its sources changed, and compiled into
/// [`rule_cache`].
pub fn example(lang: Lang, rule: &str) -> PathBuf {
    require_toolchains();
    let base = root().join("wasm-rules").join(lang.dir());
    let digest = sources_digest(&[
        base.join(rule),
        base.join("sdk"),
        base.join("sdk/logmon_rule"),
        root().join("wasm-rules/wit"),
    ]);
    let out = work_dir().join(format!("{}-{rule}-{digest:016x}.wasm", lang.dir()));
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if !out.is_file() {
        let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
        let built = Command::new(collector_bin())
            .args(["rules", "build"])
            .arg(base.join(rule))
            .arg("-o")
            .arg(&tmp)
            .output()
            .expect("running logmon-collector rules build");
        assert!(
            built.status.success(),
            "rules build {rule} ({lang:?}) failed:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::rename(&tmp, &out).expect("moving the component into place");
    }
    // Compile it into the shared cache (a no-op once there).
    let described = Command::new(collector_bin())
        .args(["rules", "describe"])
        .arg(&out)
        .env("LOGMON_RULE_CACHE", rule_cache())
        .output()
        .expect("running logmon-collector rules describe");
    assert!(
        described.status.success(),
        "{}",
        String::from_utf8_lossy(&described.stderr)
    );
    out
}
