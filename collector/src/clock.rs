//! The wall clock, read in one place, and how times are written.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch of `t` (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// Now, in whole seconds since the epoch.
pub fn now_seconds() -> i64 {
    now_ms().div_euclid(1000)
}

/// `2019-02-07 21:11:00 UTC`.
pub fn utc(time: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(time) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{time}"),
    }
}
