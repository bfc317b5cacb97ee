//! The rules compiled into the collector binary (built by `build.rs` from
//! `wasm-rules/`), so a fresh binary runs them with no files on disk.

/// `high-traffic`: the exercise's alert.
pub const HIGH_TRAFFIC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rule_high_traffic.wasm"));
/// `error-rate`: share of 5xx responses per section.
pub const ERROR_RATE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rule_error_rate.wasm"));

/// `traffic-drop`: request rate below a fraction of its trailing average.
pub const TRAFFIC_DROP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rule_traffic_drop.wasm"));
/// `client-flood`: one client above a number of requests per window.
pub const CLIENT_FLOOD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rule_client_flood.wasm"));

/// Shipped rules by name.
pub const SHIPPED: &[(&str, &[u8])] = &[
    ("high-traffic", HIGH_TRAFFIC),
    ("error-rate", ERROR_RATE),
    ("traffic-drop", TRAFFIC_DROP),
    ("client-flood", CLIENT_FLOOD),
];

/// The names of the shipped rules, comma-separated, for messages.
pub fn names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The component bytes of a shipped rule.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Path of the deliberately hostile test rule (`wasm-rules/hostile`), built
/// with the others but not embedded. For tests only.
#[doc(hidden)]
pub const HOSTILE_RULE_PATH: &str = concat!(env!("OUT_DIR"), "/rule_hostile.wasm");
