//! Builds the WebAssembly rules in `wasm-rules/` for `wasm32-wasip2` so the
//! collector can embed the shipped ones (`high-traffic`, `error-rate`,
//! `traffic-drop`, `client-flood`) and its
//! tests can load the hostile one. A nested cargo with its own target dir
//! avoids waiting on the outer build's lock.
//!
//! Also embeds the web dashboard (`web/`): its own files from `web/src` and
//! uPlot from `web/node_modules` (installed here with `npm ci` when missing
//! or not what `package-lock.json` locks, unless `LOGMON_SKIP_NPM=1`),
//! listed in `$OUT_DIR/dashboard_assets.rs`. Without npm the build still
//! succeeds, with a warning and a page that says how to build the real one;
//! `LOGMON_REQUIRE_DASHBOARD=1` makes that a build error instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RULES: &[(&str, &str)] = &[
    ("rule-high-traffic", "rule_high_traffic"),
    ("rule-error-rate", "rule_error_rate"),
    ("rule-traffic-drop", "rule_traffic_drop"),
    ("rule-client-flood", "rule_client_flood"),
    ("rule-hostile", "rule_hostile"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("collector/ is inside the workspace");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));

    for dir in [
        "wasm-rules/wit",
        "wasm-rules/sdk",
        "wasm-rules/high-traffic",
        "wasm-rules/error-rate",
        "wasm-rules/traffic-drop",
        "wasm-rules/client-flood",
        "wasm-rules/hostile",
        "wasm-rules/build_components.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    build_components(
        root,
        &out,
        "rules-target",
        "rule",
        RULES,
        "WebAssembly rules",
    );

    dashboard_assets(&manifest_dir.join("web"), &out);
}

/// The dashboard's files: (name served under `assets/`, content type, file).
fn dashboard_files(web: &Path) -> [(&'static str, &'static str, PathBuf); 5] {
    let (src, uplot) = (web.join("src"), web.join("node_modules/uplot/dist"));
    [
        (
            "index.html",
            "text/html; charset=utf-8",
            src.join("index.html"),
        ),
        (
            "app.js",
            "text/javascript; charset=utf-8",
            src.join("app.js"),
        ),
        ("app.css", "text/css; charset=utf-8", src.join("app.css")),
        (
            "uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
            uplot.join("uPlot.iife.min.js"),
        ),
        (
            "uPlot.min.css",
            "text/css; charset=utf-8",
            uplot.join("uPlot.min.css"),
        ),
    ]
}

/// Writes `$OUT_DIR/dashboard_assets.rs`: `ASSETS`, every file included
/// with `include_bytes!`, or only a fallback `index.html` when uPlot could
/// not be installed (a build error instead with `LOGMON_REQUIRE_DASHBOARD=1`).
///
/// Cargo runs this again when a watched path changes, and on every build
/// when one is missing: so only paths that exist are watched (`src`, the
/// package files, and once installed what is embedded and npm's record of
/// the install), and without npm the script does not retry `npm ci` on
/// every build.
fn dashboard_assets(web: &Path, out: &Path) {
    for watched in ["src", "package.json", "package-lock.json"] {
        watch(&web.join(watched));
    }
    println!("cargo:rerun-if-env-changed=LOGMON_SKIP_NPM");
    println!("cargo:rerun-if-env-changed=LOGMON_REQUIRE_DASHBOARD");

    let files = dashboard_files(web);
    let mut failed = None;
    if let Some(why) = install_needed(web, &files)
        && let Err(e) = npm_ci(web, &files)
    {
        failed = Some(format!("{why}, and npm could not install it: {e}"));
    }
    let missing = files.iter().find(|(_, _, path)| !path.is_file());
    let assets: Vec<(&str, &str, PathBuf)> = match (missing, failed) {
        (None, failed) => {
            if let Some(why) = failed {
                println!("cargo:warning=dashboard: {why}; embedding what it holds");
            }
            for (_, _, path) in &files {
                watch(path);
            }
            watch(&web.join(INSTALLED_LOCK));
            files.into_iter().collect()
        }
        (Some((_, _, path)), failed) => {
            let why = failed.unwrap_or_else(|| format!("{} is missing", path.display()));
            let lockfile = web.join("package-lock.json");
            if std::env::var_os("LOGMON_REQUIRE_DASHBOARD").is_some_and(|v| v == "1") {
                // A build error with just this message (no panic backtrace).
                eprintln!(
                    "error: LOGMON_REQUIRE_DASHBOARD=1, and the dashboard cannot be built: {why}.\n\
                     To fix: install Node.js and npm (`scripts/setup.sh`) with the npm registry \
                     reachable (or uPlot in npm's cache), or run `npm ci` in {web}; then \
                     `touch {lockfile}` and rebuild. Without LOGMON_REQUIRE_DASHBOARD the \
                     collector builds with a page that says how to build the dashboard.",
                    web = web.display(),
                    lockfile = lockfile.display(),
                );
                std::process::exit(1);
            }
            println!(
                "cargo:warning=dashboard not built ({why}); the collector serves a page that says how to build it. Once npm works, `touch {}` and rebuild.",
                lockfile.display()
            );
            let page = out.join("dashboard-missing.html");
            write_if_changed(&page, FALLBACK_PAGE.as_bytes());
            vec![("index.html", "text/html; charset=utf-8", page)]
        }
    };
    let mut code = String::from(
        "/// The dashboard's files: (name, content type, bytes), generated by `collector/build.rs`.\n\
         pub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (name, content_type, path) in &assets {
        let path = path.to_str().expect("a UTF-8 path to the dashboard files");
        code.push_str(&format!(
            "    ({name:?}, {content_type:?}, include_bytes!({path:?})),\n"
        ));
    }
    code.push_str("];\n");
    write_if_changed(&out.join("dashboard_assets.rs"), code.as_bytes());
}

/// What npm writes in `node_modules` after an install: the packages it
/// installed, in the same form as `package-lock.json`.
const INSTALLED_LOCK: &str = "node_modules/.package-lock.json";

/// `rerun-if-changed` for a path that exists: cargo takes a missing one for
/// changed on every build.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Why `npm ci` must run: a file to embed is missing, or `node_modules`
/// holds other packages than `package-lock.json` locks; `None` when
/// installed.
fn install_needed(web: &Path, files: &[(&str, &str, PathBuf)]) -> Option<String> {
    if let Some((_, _, path)) = files.iter().find(|(_, _, path)| !path.is_file()) {
        return Some(format!("{} is missing", path.display()));
    }
    let read = |name: &str| std::fs::read_to_string(web.join(name)).ok();
    let (locked, installed) = (read("package-lock.json"), read(INSTALLED_LOCK));
    let locked = locked.as_deref().and_then(locked_packages);
    if locked.is_none() || locked != installed.as_deref().and_then(locked_packages) {
        return Some(format!(
            "{} does not match package-lock.json",
            web.join(INSTALLED_LOCK).display()
        ));
    }
    None
}

/// The package entries of an npm lockfile (`"node_modules/NAME": {...}` to
/// the end), the part `package-lock.json` and npm's `.package-lock.json`
/// share: the first also describes the root package, before them.
fn locked_packages(lockfile: &str) -> Option<&str> {
    lockfile
        .find("\"node_modules/")
        .map(|at| lockfile[at..].trim_end())
}

/// `npm ci` in `web`, when allowed and npm is there, unless another build
/// installed the packages while this one waited for the lock.
fn npm_ci(web: &Path, files: &[(&str, &str, PathBuf)]) -> Result<(), String> {
    const HOW: &str = "`scripts/setup.sh` installs Node.js and npm";
    if std::env::var_os("LOGMON_SKIP_NPM").is_some_and(|v| v == "1") {
        return Err(format!("LOGMON_SKIP_NPM=1 skips npm; {HOW}"));
    }
    let npm_runs = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_runs {
        return Err(format!("npm not found; {HOW}"));
    }
    let _lock = NpmLock::acquire(web)?;
    if install_needed(web, files).is_none() {
        return Ok(());
    }
    // Offline, npm would retry each request for about a minute: once, soon,
    // then the fallback page (or the packages from npm's cache).
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--fetch-retries=1",
            "--fetch-timeout=30000",
            "--fetch-retry-mintimeout=1000",
            "--fetch-retry-maxtimeout=5000",
        ])
        .current_dir(web)
        // npm's progress output would be cargo's build log noise.
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running npm ci: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`npm ci` in {} failed ({status}); is the npm registry reachable?",
            web.display()
        ))
    }
}

/// `web/.npm-lock`, held while `npm ci` runs: two builds of one checkout
/// (`cargo build` next to `cargo clippy`, or two test runs) would otherwise
/// install into the same `node_modules` at once. Created with `create_new`,
/// removed on drop; one left by a killed build is taken over when the
/// process named in it is gone (where `/proc` tells) or after
/// [`NpmLock::STALE`].
struct NpmLock {
    path: PathBuf,
}

impl NpmLock {
    /// How long a build waits for another's `npm ci`.
    const WAIT: Duration = Duration::from_secs(600);
    /// A lock this old is left over: `npm ci` with the flags above gives up
    /// well before.
    const STALE: Duration = Duration::from_secs(900);

    fn acquire(web: &Path) -> Result<NpmLock, String> {
        let path = web.join(".npm-lock");
        let deadline = Instant::now() + Self::WAIT;
        let mut told = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(NpmLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::stale(&path) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{} was held by another build for {} s; remove it if no build is running",
                            path.display(),
                            Self::WAIT.as_secs()
                        ));
                    }
                    if !told {
                        println!(
                            "cargo:warning=dashboard: waiting for another build's `npm ci` ({})",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }

    /// Whether the lock at `path` was left by a build that is gone.
    fn stale(path: &Path) -> bool {
        let holder = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let proc = Path::new("/proc/self").exists();
        if let (Some(pid), true) = (holder, proc)
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            return true;
        }
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > Self::STALE))
    }
}

impl Drop for NpmLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

const FALLBACK_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>logmon: dashboard not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>logmon: the dashboard was not built</h1>
<p>This collector was built without its dashboard assets: the chart library
(uPlot) is installed from the npm registry while the collector builds, and
npm was missing, skipped (<code>LOGMON_SKIP_NPM=1</code>) or failed.</p>
<p>To build it: <code>scripts/setup.sh</code> (installs Node.js and npm), then
<code>touch collector/web/package-lock.json</code> (so that cargo runs the
build script again) and <code>cargo build --release -p logmon-collector</code>.
<code>cd collector/web &amp;&amp; npm ci</code> before the touch works too.</p>
<p>The JSON API (<code>api/series</code>, <code>api/alerts</code>,
<code>api/rules</code>, <code>api/stream</code>) works without it.</p>
</body></html>
"#;

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

include!("../wasm-rules/build_components.rs");
