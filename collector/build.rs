//! Builds the WebAssembly rules in `wasm-rules/` for `wasm32-wasip2` so the
//! collector can embed the shipped ones (`high-traffic`, `error-rate`,
//! `traffic-drop`, `client-flood`) and its
//! tests can load the hostile one. A nested cargo with its own target dir
//! avoids waiting on the outer build's lock.

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
}

fn copy_if_changed(from: &Path, to: &Path) {
    let new = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(new.as_slice()) {
        std::fs::write(to, new).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
    }
}
