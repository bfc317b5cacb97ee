//! The parsers compiled into the agent (built by `build.rs` from
//! `wasm-rules/parsers/`), so a fresh binary runs them with no files.

macro_rules! parser {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file, ".wasm"))
    };
}

/// Shipped parsers by name.
pub const SHIPPED: &[(&str, &[u8])] = &[("w3c", parser!("parser_w3c"))];

/// The deliberately hostile test parser (`wasm-rules/parsers/hostile`),
/// built with the others but not shipped. For tests only.
#[doc(hidden)]
pub const HOSTILE_PATH: &str = concat!(env!("OUT_DIR"), "/parser_hostile.wasm");

/// The component bytes of a shipped parser.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The shipped parsers' names, comma-separated.
pub fn names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
