//! The filters compiled into the agent (built by `build.rs` from
//! `wasm-rules/filters/`), so a fresh binary runs them with no files.

macro_rules! filter {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file, ".wasm"))
    };
}

/// Shipped filters by name.
pub const SHIPPED: &[(&str, &[u8])] = &[
    ("drop", filter!("filter_drop")),
    ("redact-clients", filter!("filter_redact_clients")),
    ("redact-query", filter!("filter_redact_query")),
    ("label", filter!("filter_label")),
    ("sample", filter!("filter_sample")),
];

/// The deliberately hostile test filter (`wasm-rules/filters/hostile`),
/// built with the others but not shipped. For tests only.
#[doc(hidden)]
pub const HOSTILE_PATH: &str = concat!(env!("OUT_DIR"), "/filter_hostile.wasm");

/// The component bytes of a shipped filter.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The shipped filters' names, comma-separated.
pub fn names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
