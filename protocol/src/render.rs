//! Renderers: one [`Event`] back into one log line of a [`Format`], the
//! inverse of the parsers for every event the format can represent.
//!
//! - CSV quotes every text field (doubling quotes); the date is integer
//!   seconds for a whole-second timestamp, else seconds with the fraction;
//!   an empty user is `-`.
//! - CLF and Combined write the time in UTC (`+0000`) to the whole second,
//!   escape `"` and `\` with a backslash inside quotes, write `-` for an
//!   empty client or user and a missing referer or user agent; Combined
//!   appends the request time in seconds (6 decimals) when the event has one.
//! - JSON writes nginx-style names: `time_iso8601` (RFC 3339, UTC, with
//!   nanoseconds when non-zero), `remote_addr`, `remote_user`, `request`,
//!   `status`, `body_bytes_sent`, and `http_referer`, `http_user_agent`,
//!   `request_time` (seconds) only when the event has them.

use std::fmt::Write as _;

use crate::civil::{push_clf_time, push_rfc3339};
use crate::event::{Event, NANOS_PER_SEC};
use crate::parse::Format;

/// The CSV header line.
pub const CSV_HEADER: &str =
    r#""remotehost","rfc931","authuser","date","request","status","bytes""#;

/// The header line a file of `format` starts with, if it has one (CSV).
pub fn header(format: Format) -> Option<&'static str> {
    match format {
        Format::Csv => Some(CSV_HEADER),
        Format::Clf | Format::Combined | Format::Json => None,
    }
}

/// Appends `event` as one line of `format` (without a newline) to `out`.
pub fn render(format: Format, event: &Event, out: &mut String) {
    match format {
        Format::Csv => csv(event, out),
        Format::Clf => clf(event, false, out),
        Format::Combined => clf(event, true, out),
        Format::Json => json(event, out),
    }
}

/// Appends the request line, `METHOD PATH[ PROTOCOL]`, or `-` when empty,
/// through `push` (which escapes for the format).
fn request(event: &Event, out: &mut String, push: fn(&mut String, &str)) {
    if event.method.is_empty() && event.path.is_empty() && event.protocol.is_empty() {
        out.push('-');
        return;
    }
    push(out, &event.method);
    out.push(' ');
    push(out, &event.path);
    if !event.protocol.is_empty() {
        out.push(' ');
        push(out, &event.protocol);
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

// --- CSV -----------------------------------------------------------------

fn csv_text(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = memchr::memchr(b'"', rest.as_bytes()) {
        out.push_str(&rest[..=i]);
        out.push('"');
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn csv_quoted(out: &mut String, s: &str) {
    out.push('"');
    csv_text(out, s);
    out.push('"');
}

fn csv(e: &Event, out: &mut String) {
    csv_quoted(out, &e.client);
    out.push_str(",\"-\",");
    csv_quoted(out, or_dash(&e.user));
    out.push(',');
    push_unix_seconds(out, e.timestamp);
    out.push_str(",\"");
    request(e, out, csv_text);
    let _ = write!(out, "\",{},{}", e.status, e.bytes);
}

/// Unix seconds: an integer for a whole second, else with the fraction
/// (trailing zeros trimmed).
pub(crate) fn push_unix_seconds(out: &mut String, ts: i64) {
    if ts < 0 {
        out.push('-');
    }
    let abs = ts.unsigned_abs();
    let nanos_per_sec = NANOS_PER_SEC as u64;
    let (secs, frac) = (abs / nanos_per_sec, abs % nanos_per_sec);
    let _ = write!(out, "{secs}");
    if frac != 0 {
        let mut frac = frac;
        let mut width = 9;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let _ = write!(out, ".{frac:0width$}");
    }
}

// --- CLF / Combined -----------------------------------------------------------

fn clf_text(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = memchr::memchr2(b'"', b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn clf_quoted_or_dash(out: &mut String, s: Option<&str>) {
    out.push('"');
    clf_text(out, s.unwrap_or("-"));
    out.push('"');
}

fn clf(e: &Event, combined: bool, out: &mut String) {
    out.push_str(or_dash(&e.client));
    out.push_str(" - ");
    out.push_str(or_dash(&e.user));
    out.push_str(" [");
    push_clf_time(out, e.timestamp);
    out.push_str("] \"");
    request(e, out, clf_text);
    let _ = write!(out, "\" {} {}", e.status, e.bytes);
    if combined {
        out.push(' ');
        clf_quoted_or_dash(out, e.referer.as_deref());
        out.push(' ');
        clf_quoted_or_dash(out, e.user_agent.as_deref());
        if let Some(us) = e.duration_us {
            let _ = write!(out, " {}.{:06}", us / 1_000_000, us % 1_000_000);
        }
    }
}

// --- JSON ------------------------------------------------------------------

fn json_text(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{c:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

fn json_string(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    json_text(out, value);
    out.push('"');
}

fn json(e: &Event, out: &mut String) {
    out.push_str("{\"time_iso8601\":\"");
    push_rfc3339(out, e.timestamp);
    out.push('"');
    json_string(out, "remote_addr", &e.client);
    json_string(out, "remote_user", &e.user);
    out.push_str(",\"request\":\"");
    request(e, out, json_text);
    let _ = write!(
        out,
        "\",\"status\":{},\"body_bytes_sent\":{}",
        e.status, e.bytes
    );
    if let Some(r) = &e.referer {
        json_string(out, "http_referer", r);
    }
    if let Some(a) = &e.user_agent {
        json_string(out, "http_user_agent", a);
    }
    if let Some(us) = e.duration_us {
        let _ = write!(
            out,
            ",\"request_time\":{}.{:06}",
            us / 1_000_000,
            us % 1_000_000
        );
    }
    out.push('}');
}
