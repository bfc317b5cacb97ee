//! Access-log line parsers: the exercise CSV, Common and Combined Log Format,
//! JSON lines, and nginx/Apache format strings ([`template`]).
//!
//! [`LineParser::parse_into`] is the hot path: it fills an existing [`Event`]
//! in place, reusing its string allocations, and scans bytes (no regex, no
//! per-line allocation for CSV, CLF and Combined in the common case).
//!
//! Rules shared by every format:
//! - a trailing `\r` (CRLF files) is ignored, and a blank line is
//!   [`Parsed::Skipped`], as is the CSV header;
//! - a request is `METHOD PATH [PROTOCOL]`; the last word is the protocol
//!   only when it starts with `HTTP/` (any case), otherwise the whole rest is
//!   the path; a request of `-` (or empty) gives empty method, path and
//!   protocol;
//! - a user of `-` becomes `""`, a referer or user agent of `-` (or empty)
//!   becomes `None`, a byte count of `-` becomes 0;
//! - any other malformation is a [`ParseError`] with a short reason; no input
//!   makes a parser panic.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::event::{Event, NANOS_PER_SEC};

mod choice;
mod clf;
mod csv;
mod json;
pub mod template;

pub use choice::{FormatChoice, FormatChoiceError};
pub use template::{
    Dialect, LineExtras, LogTemplate, TemplateError, UnknownPolicy, UnknownVariables,
};

/// An access-log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The exercise CSV: `"remotehost","rfc931","authuser","date","request","status","bytes"`.
    Csv,
    /// Common Log Format: `host ident authuser [date] "request" status bytes`.
    Clf,
    /// Combined Log Format: CLF + `"referer" "user-agent"` [+ request time].
    Combined,
    /// JSON lines, nginx/Apache-style field names.
    Json,
}

impl Format {
    /// Every format, in the order [`detect`] prefers them on a tie.
    pub const ALL: [Format; 4] = [Format::Csv, Format::Combined, Format::Clf, Format::Json];

    /// The format's name: `csv`, `clf`, `combined` or `json`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Clf => "clf",
            Format::Combined => "combined",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}` (expected csv, clf, combined or json)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Accepts the names (any case) and a few aliases: `common` for clf,
    /// `jsonl`/`ndjson` for json.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "clf" | "common" => Ok(Format::Clf),
            "combined" => Ok(Format::Combined),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// Why a line did not parse. `Display` gives a short human reason
/// (`expected 7 fields, found 3`, ``bad timestamp `xyz` ``, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    reason: Cow<'static, str>,
}

impl ParseError {
    /// An error with this reason.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        ParseError {
            reason: reason.into(),
        }
    }

    /// The reason, as `Display` shows it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// What [`LineParser::parse_into`] made of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The line was an event; it is in `out`.
    Event,
    /// The line was a CSV header or blank: not an event, not an error. `out`
    /// is left unchanged.
    Skipped,
}

/// Parses lines of one format. Holds a scratch buffer, so keep one per
/// stream (or thread) and feed it every line.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: Format,
    scratch: String,
    /// Set when the lines follow a format string; `format` is then only
    /// the mark batches carry on the wire.
    template: Option<Box<template::TemplateParser>>,
}

impl LineParser {
    /// A parser for `format`.
    pub fn new(format: Format) -> Self {
        LineParser {
            format,
            scratch: String::new(),
            template: None,
        }
    }

    /// A parser for the lines of a format string.
    pub fn with_template(template: &Arc<LogTemplate>) -> Self {
        LineParser {
            format: template.wire_format(),
            scratch: String::new(),
            template: Some(Box::new(template.parser())),
        }
    }

    /// The format this parser reads; for a format string, the built-in
    /// format its batches are marked with ([`LogTemplate::wire_format`]).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The format string this parser reads, if it reads one.
    pub fn template(&self) -> Option<&Arc<LogTemplate>> {
        self.template.as_ref().map(|t| t.template())
    }

    /// What the last line gave beyond the event (virtual host, upstream
    /// times, labels), for a format-string parser.
    pub fn extras(&self) -> Option<&LineExtras> {
        self.template.as_ref().map(|t| t.extras())
    }

    /// Parses one line (without its trailing newline; a trailing `\r` is
    /// tolerated) into `out`, reusing `out`'s string allocations. On error or
    /// [`Parsed::Skipped`], `out` holds unspecified (but valid) values.
    pub fn parse_into(&mut self, line: &str, out: &mut Event) -> Result<Parsed, ParseError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.bytes().all(|b| b.is_ascii_whitespace()) {
            return Ok(Parsed::Skipped);
        }
        if let Some(template) = &mut self.template {
            return template.parse_into(line, out);
        }
        match self.format {
            Format::Csv => csv::parse(line, &mut self.scratch, out),
            Format::Clf => clf::parse(line, false, &mut self.scratch, out),
            Format::Combined => clf::parse(line, true, &mut self.scratch, out),
            Format::Json => json::parse(line, &mut self.scratch, out),
        }
    }

    /// Parses one line into a new event; `Ok(None)` for a skipped line.
    pub fn parse(&mut self, line: &str) -> Result<Option<Event>, ParseError> {
        let mut event = Event::empty();
        match self.parse_into(line, &mut event)? {
            Parsed::Event => Ok(Some(event)),
            Parsed::Skipped => Ok(None),
        }
    }
}

/// How many non-empty lines [`detect`] looks at.
pub const DETECT_LINES: usize = 20;

/// Detects the format from the first (up to [`DETECT_LINES`]) non-empty
/// lines: the format that parses the most of them (a CSV header counts for
/// CSV), ties broken csv > combined > clf > json; `None` if no format parses
/// any of them.
pub fn detect<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Format> {
    let mut parsers = Format::ALL.map(LineParser::new);
    let mut counts = [0usize; Format::ALL.len()];
    let mut event = Event::empty();
    let non_empty = lines
        .into_iter()
        .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()));
    for line in non_empty.take(DETECT_LINES) {
        for (parser, count) in parsers.iter_mut().zip(counts.iter_mut()) {
            if parser.parse_into(line, &mut event).is_ok() {
                *count += 1;
            }
        }
    }
    let mut best: Option<(Format, usize)> = None;
    for (format, count) in Format::ALL.into_iter().zip(counts) {
        if count > 0 && best.is_none_or(|(_, c)| count > c) {
            best = Some((format, count));
        }
    }
    best.map(|(f, _)| f)
}

// ---------------------------------------------------------------------------
// Helpers shared by the format modules (and the renderers).

pub(crate) fn err<T>(reason: impl Into<Cow<'static, str>>) -> Result<T, ParseError> {
    Err(ParseError::new(reason))
}

/// `s` cut to a short length (at a char boundary) for an error message.
pub(crate) fn snippet(s: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

/// Overwrites `dst` with `s`, keeping its allocation.
#[inline]
pub(crate) fn set(dst: &mut String, s: &str) {
    dst.clear();
    dst.push_str(s);
}

/// Overwrites `dst` with `s` (`-` and empty become `None`), keeping an
/// existing allocation when there is one.
#[inline]
pub(crate) fn set_opt(dst: &mut Option<String>, s: &str) {
    if s.is_empty() || s == "-" {
        *dst = None;
    } else {
        match dst {
            Some(d) => set(d, s),
            None => *dst = Some(s.to_owned()),
        }
    }
}

/// The user field: `-` becomes empty.
#[inline]
pub(crate) fn set_user(dst: &mut String, s: &str) {
    set(dst, if s == "-" { "" } else { s });
}

/// An unsigned decimal of ASCII digits only (no sign, no spaces).
#[inline]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

#[inline]
pub(crate) fn parse_status(s: &str) -> Result<u16, ParseError> {
    let t = s.trim();
    match parse_u64(t.as_bytes()).and_then(|n| u16::try_from(n).ok()) {
        Some(n) => Ok(n),
        None => err(format!("bad status `{}`", snippet(s))),
    }
}

/// A byte count; `-` is 0.
#[inline]
pub(crate) fn parse_bytes(s: &str) -> Result<u64, ParseError> {
    let t = s.trim();
    if t == "-" {
        return Ok(0);
    }
    match parse_u64(t.as_bytes()) {
        Some(n) => Ok(n),
        None => err(format!("bad byte count `{}`", snippet(s))),
    }
}

/// A decimal number `[+-]DIGITS[.DIGITS]`, scaled by `10^scale` and
/// truncated toward zero past `scale` fraction digits.
pub(crate) fn parse_decimal(s: &[u8], scale: u32) -> Option<i128> {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match memchr::memchr(b'.', s) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    // 20 integer digits (a u64's) keep i128 clear of overflow at any scale
    // up to 18: 30 digits at scale 9 overflowed (fuzzing, `format_strings`,
    // with overflow checks; a release build read a wrapped number).
    if int.is_empty() || int.len() > 20 || scale > 18 {
        return None;
    }
    let mut v: i128 = 0;
    for &b in int {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i128::from(d);
    }
    let mut digits = 0;
    if let Some(frac) = frac {
        if frac.is_empty() {
            return None;
        }
        for &b in frac {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            if digits < scale {
                v = v * 10 + i128::from(d);
                digits += 1;
            }
        }
    }
    for _ in digits..scale {
        v *= 10;
    }
    Some(if neg { -v } else { v })
}

/// Unix seconds, possibly fractional (to the nanosecond), as nanoseconds.
pub(crate) fn parse_unix_seconds(s: &str) -> Option<i64> {
    parse_decimal(s.trim().as_bytes(), 9).and_then(|v| i64::try_from(v).ok())
}

/// Seconds (a float like nginx's `$request_time`) as microseconds.
pub(crate) fn parse_seconds_to_micros(s: &str) -> Option<u64> {
    parse_decimal(s.trim().as_bytes(), 6).and_then(|v| u64::try_from(v).ok())
}

/// Splits `METHOD PATH [PROTOCOL]` into `out`. `-` or an empty request
/// gives empty method, path and protocol.
pub(crate) fn split_request(req: &str, out: &mut Event) -> Result<(), ParseError> {
    let req = req.trim_matches(' ');
    if req.is_empty() || req == "-" {
        out.method.clear();
        out.path.clear();
        out.protocol.clear();
        return Ok(());
    }
    let Some(sp) = memchr::memchr(b' ', req.as_bytes()) else {
        return err(format!("malformed request `{}`", snippet(req)));
    };
    let method = &req[..sp];
    let rest = req[sp + 1..].trim_start_matches(' ');
    let (path, protocol) = match memchr::memrchr(b' ', rest.as_bytes()) {
        Some(i) if is_protocol(&rest[i + 1..]) => (rest[..i].trim_end_matches(' '), &rest[i + 1..]),
        _ => (rest, ""),
    };
    set(&mut out.method, method);
    set(&mut out.path, path);
    set(&mut out.protocol, protocol);
    Ok(())
}

fn is_protocol(token: &str) -> bool {
    token.len() >= 5 && token.as_bytes()[..5].eq_ignore_ascii_case(b"HTTP/")
}

#[cfg(test)]
pub(crate) use crate::civil::civil_from_days;
pub(crate) use crate::civil::{MONTHS, days_from_civil, days_in_month};

/// `n` ASCII digits at the start of `s`.
fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n {
        return None;
    }
    let mut v = 0u32;
    for &b in &s[..n] {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    Some(v)
}

/// Parses `.DIGITS` at the start of `s` (if there) into nanoseconds;
/// returns (nanos, bytes consumed).
fn fraction(s: &[u8]) -> Option<(i64, usize)> {
    if s.first() != Some(&b'.') {
        return Some((0, 0));
    }
    let n = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut v = 0i64;
    for (i, &b) in s[1..=n].iter().enumerate() {
        if i < 9 {
            v = v * 10 + i64::from(b - b'0');
        }
    }
    for _ in n..9 {
        v *= 10;
    }
    Some((v, n + 1))
}

/// Combines a validated local date-time and its UTC offset into nanoseconds.
#[allow(clippy::too_many_arguments)]
fn to_nanos(
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    nanos: i64,
    offset_secs: i64,
) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s) - offset_secs;
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)
}

/// Parses a `+HHMM`, `-HH:MM` or `Z` offset at the start of `s`; returns
/// (offset seconds, bytes consumed).
fn offset(s: &[u8]) -> Option<(i64, usize)> {
    match s.first()? {
        b'Z' | b'z' => Some((0, 1)),
        &sign @ (b'+' | b'-') => {
            let h = digits(&s[1..], 2)?;
            let (m, used) = if s.get(3) == Some(&b':') {
                (digits(&s[4..], 2)?, 6)
            } else {
                (digits(&s[3..], 2)?, 5)
            };
            if h > 23 || m > 59 {
                return None;
            }
            let v = i64::from(h * 3600 + m * 60);
            Some((if sign == b'-' { -v } else { v }, used))
        }
        _ => None,
    }
}

/// A CLF time, `10/Oct/2000:13:55:36 -0700` (fractional seconds and a
/// missing offset, meaning UTC, tolerated), as UTC nanoseconds.
pub(crate) fn parse_clf_time(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
    {
        return None;
    }
    let d = digits(b, 2)?;
    let mo = MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(&b[3..6]))? as u32
        + 1;
    let y = digits(&b[7..], 4)?;
    let h = digits(&b[12..], 2)?;
    let mi = digits(&b[15..], 2)?;
    let sec = digits(&b[18..], 2)?;
    let (nanos, used) = fraction(&b[20..])?;
    let rest = &b[20 + used..];
    let off = if rest.is_empty() {
        0
    } else {
        let rest = rest.strip_prefix(b" ")?;
        let (off, used) = offset(rest)?;
        if used != rest.len() {
            return None;
        }
        off
    };
    to_nanos(i64::from(y), mo, d, h, mi, sec, nanos, off)
}

/// An RFC 3339 / ISO 8601 time, `2019-02-07T21:11:00.25+01:00` (`T`, `t` or
/// a space between date and time; `Z`, `+HH:MM` or `+HHMM`; no offset means
/// UTC), as UTC nanoseconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let y = digits(b, 4)?;
    let mo = digits(&b[5..], 2)?;
    let d = digits(&b[8..], 2)?;
    let h = digits(&b[11..], 2)?;
    let mi = digits(&b[14..], 2)?;
    let sec = digits(&b[17..], 2)?;
    let (nanos, used) = fraction(&b[19..])?;
    let rest = &b[19 + used..];
    let off = if rest.is_empty() {
        0
    } else {
        let (off, used) = offset(rest)?;
        if used != rest.len() {
            return None;
        }
        off
    };
    to_nanos(i64::from(y), mo, d, h, mi, sec, nanos, off)
}

#[cfg(test)]
mod tests;
