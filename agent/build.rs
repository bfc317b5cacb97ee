//! With the `wasm` feature: builds the edge filters in `wasm-rules/filters/`
//! for `wasm32-wasip2`, so the agent can embed the shipped ones (`drop`,
//! `redact-clients`, `redact-query`, `label`, `sample`) and its tests can
//! load the hostile one. A nested cargo with its own target dir avoids
//! waiting on the outer build's lock (as the collector's rules do).

use std::path::PathBuf;

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
    for dir in [
        "wasm-rules/edge-wit",
        "wasm-rules/filter-sdk",
        "wasm-rules/filters",
        "wasm-rules/build_components.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    build_components(
        root,
        &out,
        "filters-target",
        "edge",
        FILTERS,
        "edge filters",
    );
}

include!("../wasm-rules/build_components.rs");
