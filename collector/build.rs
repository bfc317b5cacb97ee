//! Builds the WebAssembly rules in `wasm-rules/` for `wasm32-wasip2` so the
//! collector can embed the shipped ones (`high-traffic`, `error-rate`,
//! `traffic-drop`, `client-flood`) and its
//! tests can load the hostile one. A nested cargo with its own target dir
//! avoids waiting on the outer build's lock.
//!
//! Also embeds the web dashboard (`web/`): its own files from `web/src` and
//! uPlot from `web/node_modules` (installed here with `npm ci` when missing,
//! unless `LOGMON_SKIP_NPM=1`), listed in `$OUT_DIR/dashboard_assets.rs`.
//! Without npm the build still succeeds, with a warning and a page that
//! says how to build the real one.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    let target_dir = out.join("rules-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for dir in [
        "wasm-rules/wit",
        "wasm-rules/sdk",
        "wasm-rules/high-traffic",
        "wasm-rules/error-rate",
        "wasm-rules/traffic-drop",
        "wasm-rules/client-flood",
        "wasm-rules/hostile",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", "wasm32-wasip2", "--profile", "rule", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in RULES {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host
    // target; the rules are built plainly.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the wasm rules");
    assert!(
        status.success(),
        "building the WebAssembly rules failed; is the target installed? (`rustup target add wasm32-wasip2`)"
    );

    let built = target_dir.join("wasm32-wasip2").join("rule");
    for (_, file) in RULES {
        let from = built.join(format!("{file}.wasm"));
        let to = out.join(format!("{file}.wasm"));
        copy_if_changed(&from, &to);
    }

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
/// not be installed.
fn dashboard_assets(web: &Path, out: &Path) {
    for watched in [
        "src",
        "package.json",
        "package-lock.json",
        "node_modules/uplot/package.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=LOGMON_SKIP_NPM");

    let files = dashboard_files(web);
    let missing = || files.iter().find(|(_, _, path)| !path.is_file());
    if missing().is_some()
        && let Err(why) = npm_ci(web)
    {
        println!("cargo:warning=dashboard assets not built: {why}");
    }
    let assets: Vec<(&str, &str, PathBuf)> = match missing() {
        None => files.into_iter().collect(),
        Some((_, _, path)) => {
            println!(
                "cargo:warning=dashboard: {} is missing; the collector serves a page that says how to build the dashboard",
                path.display()
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

/// `npm ci` in `web`, when allowed and npm is there.
fn npm_ci(web: &Path) -> Result<(), String> {
    const HOW: &str = "run `scripts/setup.sh` (installs Node.js and npm), then rebuild";
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
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
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

const FALLBACK_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>logmon: dashboard not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>logmon: the dashboard was not built</h1>
<p>This collector was built without its dashboard assets: the chart library
(uPlot) is installed from the npm registry while the collector builds, and
npm was missing, skipped (<code>LOGMON_SKIP_NPM=1</code>) or failed.</p>
<p>To build it: <code>scripts/setup.sh</code> (installs Node.js and npm), then
<code>cargo build --release -p logmon-collector</code>, or
<code>cd collector/web &amp;&amp; npm ci</code> before building.</p>
<p>The JSON API (<code>api/series</code>, <code>api/alerts</code>,
<code>api/rules</code>, <code>api/stream</code>) works without it.</p>
</body></html>
"#;

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

fn copy_if_changed(from: &Path, to: &Path) {
    let new = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    write_if_changed(to, &new);
}
