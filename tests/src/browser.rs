//! Headless Chromium for the dashboard's test and bench: runs the
//! playwright-core driver `tests/browser/dashboard.mjs` with Node.js against
//! Debian's `/usr/bin/chromium`, and reads the one JSON object it prints.
//!
//! Nothing here skips: without Node.js, Chromium or playwright-core the
//! caller panics with what to install (`make test` installs all three).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/browser`: the driver script and its `node_modules`.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser"))
}

/// The Chromium binary: `$CHROMIUM_BIN`, else Debian's.
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Panics with what to install when Node.js, Chromium or playwright-core
/// is missing.
pub fn require_browser() {
    const HOW: &str = "`make test` installs it (or run `scripts/setup.sh --browser`)";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the dashboard tests need Node.js (`node`), which is missing: {HOW}"
    );
    let chromium = chromium_bin();
    assert!(
        chromium.is_file(),
        "the dashboard tests need Chromium at {}, which is missing: {HOW}",
        chromium.display()
    );
    let playwright = browser_dir().join("node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "the dashboard tests need playwright-core in {}, which is missing: {HOW}",
        playwright.display()
    );
}

/// Where tests leave screenshots: `<target dir>/test-artifacts`, found from
/// the running executable (`target/<profile>/deps/…`).
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let target = exe
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .or_else(|| exe.ancestors().nth(3))
        .expect("a target directory above the test executable");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating the test artifacts directory");
    dir
}

/// Runs `node dashboard.mjs ARGS…`; the JSON it printed, or what it said
/// on stderr when it failed.
pub fn drive(args: &[&str]) -> Result<Value, String> {
    require_browser();
    let out = Command::new("node")
        .arg("dashboard.mjs")
        .args(args)
        .env("CHROMIUM_BIN", chromium_bin())
        .current_dir(browser_dir())
        .output()
        .map_err(|e| format!("running node: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "dashboard.mjs {args:?} failed ({}):\n{stderr}{stdout}",
            out.status
        ));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("dashboard.mjs printed no JSON ({e}): {stdout}\n{stderr}"))
}

/// True when `path` holds a PNG (by its 8-byte signature).
pub fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}
