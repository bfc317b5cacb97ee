//! With the `wasm` feature: builds the edge filters in `wasm-rules/filters/`
//! and the edge parsers in `wasm-rules/parsers/` for `wasm32-wasip2`, so the
//! agent can embed the shipped ones (`drop`, `redact-clients`,
//! `redact-query`, `label`, `sample`; the `w3c` parser) and its tests can
//! load the hostile ones. A nested cargo with its own target dir avoids
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

const PARSERS: &[(&str, &str)] = &[
    ("parser-w3c", "parser_w3c"),
    ("parser-hostile", "parser_hostile"),
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
        "wasm-rules/parser-wit",
        "wasm-rules/parser-sdk",
        "wasm-rules/parsers",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // One nested build for both, so they share its compiled dependencies.
    let components: Vec<_> = FILTERS.iter().chain(PARSERS).copied().collect();
    build_components(
        root,
        &out,
        "filters-target",
        "edge",
        &components,
        "edge filters and parsers",
    );
}

include!("../wasm-rules/build_components.rs");
