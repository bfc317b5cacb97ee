//! With the `wasm` feature: builds the edge filters in `wasm-rules/filters/`
//! for `wasm32-wasip2`, so the agent can embed the shipped ones (`drop`,
//! `redact-clients`, `redact-query`, `label`, `sample`) and its tests can
//! load the hostile one. A nested cargo with its own target dir avoids
//! waiting on the outer build's lock (as the collector's rules do).

use std::path::PathBuf;
use std::process::Command;

const FILTERS: &[(&str, &str)] = &[
    ("filter-drop", "filter_drop"),
    ("filter-redact-clients", "filter_redact_clients"),
    ("filter-redact-query", "filter_redact_query"),
    ("filter-label", "filter_label"),
    ("filter-sample", "filter_sample"),
    ("filter-hostile", "filter_hostile"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_WASM").is_none() {
        return;
    }
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("agent/ is inside the workspace");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let target_dir = out.join("filters-target");
    for dir in [
        "wasm-rules/edge-wit",
        "wasm-rules/filter-sdk",
        "wasm-rules/filters",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", "wasm32-wasip2", "--profile", "rule", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in FILTERS {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers are for the host target.
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
        .expect("could not run cargo to build the edge filters");
    assert!(
        status.success(),
        "building the edge filters failed; is the target installed? (`rustup target add wasm32-wasip2`)"
    );
    let built = target_dir.join("wasm32-wasip2").join("rule");
    for (_, file) in FILTERS {
        let from = built.join(format!("{file}.wasm"));
        let to = out.join(format!("{file}.wasm"));
        let bytes =
            std::fs::read(&from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        if std::fs::read(&to).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&to, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
        }
    }
}
