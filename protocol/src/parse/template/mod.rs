//! nginx `log_format` and Apache `LogFormat` strings, compiled into parsers
//! (and renderers) of the lines they describe.
//!
//! A compiled [`LogTemplate`] is a list of literal and variable segments
//! with a literal between every two variables, so a line splits one way
//! only. Matching walks the line once, left to right: a literal must be
//! there byte for byte; a variable ends at its closing quote when the
//! format quotes it (`"$request"`, backslash escapes skipped), else at the
//! first occurrence of the literal that follows it (or the line's end). Two
//! values may hold that literal themselves and are read by their shape
//! instead: `$time_local` (`10/Oct/2000:13:55:36 -0700` has a space) and
//! `$upstream_response_time` (`0.010, 0.020 : 0.003`).
//!
//! Invariants: every field of the [`Event`] is written on every line (what
//! the format lacks is empty, zero or `None`), so a reused event never
//! leaks a previous line; no input makes the matcher panic; a line that
//! does not match is a [`ParseError`] that names the byte column, the
//! variable and what was expected.

use std::fmt;
use std::sync::Arc;

use memchr::memchr2;

use super::{
    ParseError, Parsed, parse_bytes, parse_clf_time, parse_rfc3339, parse_seconds_to_micros,
    parse_status, parse_u64, parse_unix_seconds, set, set_opt, snippet, split_request,
};
use crate::civil::{push_clf_time, push_rfc3339};
use crate::event::Event;
use crate::parse::Format;

mod syntax;
#[cfg(test)]
mod tests;

use syntax::Piece;

/// Which server's format-string language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// nginx `log_format`: `$variable`.
    Nginx,
    /// Apache `LogFormat`: `%directive`.
    Apache,
}

impl Dialect {
    /// `nginx` or `apache`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Nginx => "nginx",
            Dialect::Apache => "apache",
        }
    }
}

/// What to do with a variable the event has no field for
/// (`$upstream_connect_time`, `%{X-Forwarded-For}i`, ...).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UnknownVariables {
    /// Keep its value as a label named after the variable (nginx's name
    /// without `$`; Apache headers as nginx names them: `http_x_forwarded_for`).
    #[default]
    Label,
    /// Match it and throw the value away.
    Skip,
}

/// A policy name that [`UnknownVariables::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown-variable policy `{0}` (expected label or skip)")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for UnknownVariables {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "label" => Ok(UnknownVariables::Label),
            "skip" => Ok(UnknownVariables::Skip),
            _ => Err(UnknownPolicy(s.to_owned())),
        }
    }
}

/// Why a format string did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the format string is empty")]
    Empty,
    #[error("column {column}: {reason}")]
    Syntax { column: usize, reason: String },
    #[error(
        "column {column}: {first} and {second} have nothing between them, so a line cannot be split between them"
    )]
    Adjacent {
        column: usize,
        first: String,
        second: String,
    },
    #[error(
        "the format has no time variable ($time_local, $time_iso8601, $msec, %t, %{{sec}}t, %{{msec}}t or %{{usec}}t)"
    )]
    NoTime,
}

/// What a variable fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Client,
    /// Apache `%l` (identd): matched, never kept.
    Ident,
    User,
    TimeLocal,
    TimeIso,
    /// Unix seconds with a fraction (`$msec`, `%{sec}t`).
    EpochSeconds,
    EpochMillis,
    EpochMicros,
    Request,
    Method,
    Uri,
    Protocol,
    Status,
    BodyBytes,
    BytesSent,
    Referer,
    UserAgent,
    /// Seconds with a fraction (`$request_time`).
    Seconds,
    WholeSeconds,
    Millis,
    Micros,
    Upstream,
    Host,
    /// No event field: a label or skipped, by [`UnknownVariables`].
    Other(String),
}

/// The event field a variable writes and how precise it is: where a
/// format has several variables for one field (`$time_local` and `$msec`,
/// `%b` and `%O`), the most precise (then the first) one writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Client,
    User,
    Time,
    Request,
    Method,
    Uri,
    Protocol,
    Status,
    Bytes,
    Referer,
    UserAgent,
    Duration,
    Upstream,
    Host,
}

impl Field {
    fn target(&self) -> Option<(Target, u8)> {
        Some(match self {
            Field::Client => (Target::Client, 0),
            Field::User => (Target::User, 0),
            Field::TimeLocal => (Target::Time, 1),
            Field::TimeIso => (Target::Time, 1),
            Field::EpochSeconds | Field::EpochMillis => (Target::Time, 2),
            Field::EpochMicros => (Target::Time, 3),
            Field::Request => (Target::Request, 0),
            Field::Method => (Target::Method, 0),
            Field::Uri => (Target::Uri, 0),
            Field::Protocol => (Target::Protocol, 0),
            Field::Status => (Target::Status, 0),
            Field::BodyBytes => (Target::Bytes, 1),
            Field::BytesSent => (Target::Bytes, 0),
            Field::Referer => (Target::Referer, 0),
            Field::UserAgent => (Target::UserAgent, 0),
            Field::WholeSeconds => (Target::Duration, 0),
            Field::Seconds | Field::Millis => (Target::Duration, 1),
            Field::Micros => (Target::Duration, 2),
            Field::Upstream => (Target::Upstream, 0),
            Field::Host => (Target::Host, 0),
            Field::Ident | Field::Other(_) => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Var {
    name: String,
    field: Field,
    /// Writes its event field (see [`Target`]); otherwise only checked.
    keep: bool,
    /// The label slot of an [`Field::Other`] kept as a label.
    label: Option<usize>,
    /// Between `"` and `"` in the format: the value ends at the closing quote.
    quoted: bool,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Var(Var),
}

/// A compiled format string.
#[derive(Debug, Clone)]
pub struct LogTemplate {
    dialect: Dialect,
    source: String,
    unknown: UnknownVariables,
    segments: Vec<Segment>,
    labels: Vec<String>,
    wire_format: Format,
}

impl PartialEq for LogTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.dialect == other.dialect
            && self.source == other.source
            && self.unknown == other.unknown
    }
}

impl Eq for LogTemplate {}

impl LogTemplate {
    /// Compiles `source`, a format string of `dialect` as written in the
    /// server's configuration (its config-file quoting may be kept).
    pub fn compile(
        dialect: Dialect,
        source: &str,
        unknown: UnknownVariables,
    ) -> Result<LogTemplate, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let pieces = match dialect {
            Dialect::Nginx => syntax::nginx(source)?,
            Dialect::Apache => syntax::apache(source)?,
        };
        for pair in pieces.windows(2) {
            if let [
                Piece::Var { name: first, .. },
                Piece::Var {
                    name: second,
                    column,
                    ..
                },
            ] = pair
            {
                return Err(TemplateError::Adjacent {
                    column: *column,
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
        let mut labels = Vec::new();
        let mut segments: Vec<Segment> = pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(l) => Segment::Literal(l),
                Piece::Var { name, field, .. } => {
                    let label = match (&field, unknown) {
                        (Field::Other(label), UnknownVariables::Label) => {
                            labels.push(label.clone());
                            Some(labels.len() - 1)
                        }
                        _ => None,
                    };
                    Segment::Var(Var {
                        name,
                        field,
                        keep: false,
                        label,
                        quoted: false,
                    })
                }
            })
            .collect();
        mark_quoted(&mut segments);
        mark_kept(&mut segments);
        let vars = || {
            segments.iter().filter_map(|s| match s {
                Segment::Var(v) => Some(v),
                Segment::Literal(_) => None,
            })
        };
        if !vars().any(|v| v.field.target().is_some_and(|(t, _)| t == Target::Time)) {
            return Err(TemplateError::NoTime);
        }
        let combined = vars().any(|v| matches!(v.field, Field::Referer | Field::UserAgent));
        Ok(LogTemplate {
            dialect,
            source: source.to_owned(),
            unknown,
            segments,
            labels,
            wire_format: if combined {
                Format::Combined
            } else {
                Format::Clf
            },
        })
    }

    /// An nginx `log_format` string, unknown variables kept as labels.
    pub fn nginx(source: &str) -> Result<LogTemplate, TemplateError> {
        LogTemplate::compile(Dialect::Nginx, source, UnknownVariables::Label)
    }

    /// An Apache `LogFormat` string, unknown directives kept as labels.
    pub fn apache(source: &str) -> Result<LogTemplate, TemplateError> {
        LogTemplate::compile(Dialect::Apache, source, UnknownVariables::Label)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The format string as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn unknown_variables(&self) -> UnknownVariables {
        self.unknown
    }

    /// The names of the labels a line gives, in format order.
    pub fn label_names(&self) -> &[String] {
        &self.labels
    }

    /// The built-in format a batch of these events is marked with on the
    /// wire: `combined` when the format has a referer or user agent, else
    /// `clf`. (The wire has no code for format strings; the mark is
    /// informational, the events carry what was parsed.)
    pub fn wire_format(&self) -> Format {
        self.wire_format
    }

    /// A parser of this format's lines (outside this crate:
    /// [`crate::LineParser::with_template`]).
    pub(crate) fn parser(self: &Arc<Self>) -> TemplateParser {
        TemplateParser {
            template: Arc::clone(self),
            state: LineState {
                extras: LineExtras {
                    host: None,
                    upstream_response_us: Vec::new(),
                    labels: self
                        .labels
                        .iter()
                        .map(|name| (name.clone(), String::new()))
                        .collect(),
                },
                text: String::new(),
                bytes: Vec::new(),
            },
        }
    }

    /// Appends `event` (and `extras`) as one line of this format, without a
    /// newline: the inverse of the parser for every event the format can
    /// hold (times and durations at the format's precision, text without
    /// the literal that follows it when the format does not quote it).
    /// Times are written in UTC. Label values come from `extras` by name;
    /// a missing one, a skipped variable and an empty value are `-`.
    pub fn render(&self, event: &Event, extras: &LineExtras, out: &mut String) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Var(v) => self.render_var(v, event, extras, out),
            }
        }
    }
}

impl fmt::Display for LogTemplate {
    /// `nginx:<source>` or `apache:<source>`, as `--input-format` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dialect.name(), self.source)
    }
}

/// Marks the variables written between two `"` as quoted.
fn mark_quoted(segments: &mut [Segment]) {
    for i in 0..segments.len() {
        let before = i
            .checked_sub(1)
            .and_then(|j| literal(&segments[j]))
            .is_some_and(|l| l.ends_with('"'));
        let after = segments
            .get(i + 1)
            .and_then(literal)
            .is_some_and(|l| l.starts_with('"'));
        if let Segment::Var(v) = &mut segments[i] {
            v.quoted = before && after;
        }
    }
}

fn literal(segment: &Segment) -> Option<&str> {
    match segment {
        Segment::Literal(l) => Some(l),
        Segment::Var(_) => None,
    }
}

/// Picks, per event field, the variable that writes it: the most precise,
/// then the first. `$request` writes method, path and protocol, so it wins
/// over `$request_method`, `$request_uri` and `$server_protocol`.
fn mark_kept(segments: &mut [Segment]) {
    let mut best: Vec<(Target, u8, usize)> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let Segment::Var(v) = segment else { continue };
        let Some((target, rank)) = v.field.target() else {
            continue;
        };
        match best.iter_mut().find(|(t, _, _)| *t == target) {
            Some(b) if rank > b.1 => *b = (target, rank, i),
            Some(_) => {}
            None => best.push((target, rank, i)),
        }
    }
    let whole_request = best.iter().any(|(t, _, _)| *t == Target::Request);
    for (target, _, i) in best {
        let part = matches!(target, Target::Method | Target::Uri | Target::Protocol);
        if let Segment::Var(v) = &mut segments[i] {
            v.keep = !(part && whole_request);
        }
    }
}

/// What a line gave beyond the [`Event`]'s fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineExtras {
    /// `$host` / `%v`: the virtual host that served the request.
    pub host: Option<String>,
    /// `$upstream_response_time`: one entry per upstream tried, in
    /// microseconds; `None` for an entry of `-`; empty when the whole value
    /// is `-`.
    pub upstream_response_us: Vec<Option<u64>>,
    /// Unknown variables kept as labels: (name, value as logged, escapes
    /// decoded), in format order.
    pub labels: Vec<(String, String)>,
}

impl LineExtras {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Per-line buffers, reused.
#[derive(Debug, Clone)]
struct LineState {
    extras: LineExtras,
    text: String,
    bytes: Vec<u8>,
}

/// Parses the lines of one [`LogTemplate`]. Keep one per stream: it
/// reuses its buffers, and [`TemplateParser::extras`] describes the last
/// line parsed.
#[derive(Debug, Clone)]
pub(crate) struct TemplateParser {
    template: Arc<LogTemplate>,
    state: LineState,
}

impl TemplateParser {
    pub(crate) fn template(&self) -> &Arc<LogTemplate> {
        &self.template
    }

    /// What the last line parsed gave beyond the event.
    pub(crate) fn extras(&self) -> &LineExtras {
        &self.state.extras
    }

    /// Parses one line (no newline, no `\r`; not blank) into `out`.
    pub(crate) fn parse_into(&mut self, line: &str, out: &mut Event) -> Result<Parsed, ParseError> {
        let TemplateParser { template, state } = self;
        reset(out, &mut state.extras);
        let segments = &template.segments;
        let mut pos = 0;
        for (i, segment) in segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) => {
                    if !line.as_bytes()[pos..].starts_with(l.as_bytes()) {
                        return Err(missing_literal(segments, i, line, pos));
                    }
                    pos += l.len();
                }
                Segment::Var(v) => {
                    let next = segments.get(i + 1).and_then(literal);
                    let end = scan(v, line, pos, next)?;
                    fill(v, &line[pos..end], pos + 1, state, out)?;
                    pos = end;
                }
            }
        }
        if pos < line.len() {
            return Err(ParseError::new(format!(
                "column {}: the format ends here but the line goes on: `{}`",
                pos + 1,
                snippet(&line[pos..])
            )));
        }
        Ok(Parsed::Event)
    }
}

fn reset(out: &mut Event, extras: &mut LineExtras) {
    out.timestamp = 0;
    out.client.clear();
    out.user.clear();
    out.method.clear();
    out.path.clear();
    out.protocol.clear();
    out.status = 0;
    out.bytes = 0;
    out.referer = None;
    out.user_agent = None;
    out.duration_us = None;
    extras.host = None;
    extras.upstream_response_us.clear();
    for (_, value) in &mut extras.labels {
        value.clear();
    }
}

fn missing_literal(segments: &[Segment], i: usize, line: &str, pos: usize) -> ParseError {
    let Segment::Literal(expected) = &segments[i] else {
        unreachable!("called for literals only");
    };
    let after = match i.checked_sub(1).map(|j| &segments[j]) {
        Some(Segment::Var(v)) => format!(" after {}", v.name),
        _ if i == 0 => " at the start of the line".to_owned(),
        _ => String::new(),
    };
    let found = if pos >= line.len() {
        "the line ends".to_owned()
    } else {
        format!("found `{}`", snippet(&line[pos..]))
    };
    ParseError::new(format!(
        "column {}: expected `{}`{after}, {found}",
        pos + 1,
        shown(expected)
    ))
}

/// A literal as an error message shows it: tabs and newlines visible.
fn shown(literal: &str) -> String {
    literal.replace('\t', "\\t").replace('\n', "\\n")
}

/// The width of `10/Oct/2000:13:55:36 -0700`.
const TIME_LOCAL_LEN: usize = 26;

/// Where the value of `v`, starting at `pos`, ends.
fn scan(v: &Var, line: &str, pos: usize, next: Option<&str>) -> Result<usize, ParseError> {
    let b = line.as_bytes();
    if v.quoted {
        let mut i = pos;
        loop {
            match memchr2(b'"', b'\\', &b[i..]) {
                Some(k) if b[i + k] == b'\\' => i += k + 2,
                Some(k) => return Ok(i + k),
                None => break,
            }
            if i >= b.len() {
                break;
            }
        }
        return Err(ParseError::new(format!(
            "column {}: {} has no closing `\"`",
            pos + 1,
            v.name
        )));
    }
    if v.field == Field::Upstream {
        return Ok(scan_upstream(b, pos));
    }
    let Some(next) = next else {
        return Ok(b.len());
    };
    let from = if v.field == Field::TimeLocal {
        (pos + TIME_LOCAL_LEN).min(b.len())
    } else {
        pos
    };
    match find_literal(&b[from..], next.as_bytes()) {
        Some(k) => Ok(from + k),
        None => Err(ParseError::new(format!(
            "column {}: expected `{}` after {}, {}",
            pos + 1,
            shown(next),
            v.name,
            if pos >= b.len() {
                "the line ends".to_owned()
            } else {
                format!("found none in `{}`", snippet(&line[pos..]))
            }
        ))),
    }
}

/// Where `literal` (not empty) first occurs in `hay`. Literals here are a
/// few bytes long and usually found within a few bytes, where a `memchr`
/// for the first byte beats setting up a substring searcher per call.
fn find_literal(hay: &[u8], literal: &[u8]) -> Option<usize> {
    let (&first, rest) = literal.split_first()?;
    let mut at = 0;
    while let Some(k) = memchr::memchr(first, &hay[at..]) {
        let i = at + k;
        if hay[i + 1..].starts_with(rest) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// `0.010, 0.020 : -`: entries of digits, `.` and `-` joined by `, `
/// (upstreams of one group) or ` : ` (internal redirects).
fn scan_upstream(b: &[u8], pos: usize) -> usize {
    let entry = |c: u8| c.is_ascii_digit() || c == b'.' || c == b'-';
    let mut i = pos;
    loop {
        while i < b.len() && entry(b[i]) {
            i += 1;
        }
        let rest = &b[i..];
        let sep = if rest.starts_with(b", ") {
            2
        } else if rest.starts_with(b" : ") {
            3
        } else {
            return i;
        };
        if b.get(i + sep).is_some_and(|&c| entry(c)) {
            i += sep;
        } else {
            return i;
        }
    }
}

fn bad(v: &Var, column: usize, raw: &str) -> ParseError {
    ParseError::new(format!(
        "column {column}: bad {} `{}`",
        v.name,
        snippet(raw)
    ))
}

/// Decodes the servers' escapes into `dst`: `\xHH` (nginx; Apache's
/// `\xhh`), `\"` and `\\`, `\n \r \t \b \f \v` (Apache, nginx
/// `escape=json`) and `\uXXXX` (nginx `escape=json`). Neither server writes
/// a bare backslash, so none of these can be literal text. Other
/// backslashes stay; decoded bytes that are not UTF-8 become U+FFFD.
fn decode(raw: &str, dst: &mut String, bytes: &mut Vec<u8>) {
    if memchr::memchr(b'\\', raw.as_bytes()).is_none() {
        set(dst, raw);
        return;
    }
    bytes.clear();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            bytes.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(&c @ (b'"' | b'\\' | b'/')) => {
                bytes.push(c);
                i += 2;
            }
            Some(&c @ (b'n' | b'r' | b't' | b'b' | b'f' | b'v')) => {
                bytes.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    _ => 0x0b,
                });
                i += 2;
            }
            Some(b'u') => match b.get(i + 2..i + 6).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                char::from_u32(u32::from_str_radix(h, 16).ok()?)
            }) {
                Some(c) => {
                    let mut utf8 = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    i += 6;
                }
                None => {
                    bytes.push(b'\\');
                    i += 1;
                }
            },
            Some(b'x') => match (
                b.get(i + 2).and_then(|&c| hex(c)),
                b.get(i + 3).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    bytes.push(h << 4 | l);
                    i += 4;
                }
                _ => {
                    bytes.push(b'\\');
                    i += 1;
                }
            },
            _ => {
                bytes.push(b'\\');
                i += 1;
            }
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => set(dst, s),
        Err(_) => set(dst, &String::from_utf8_lossy(bytes)),
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn or_none(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

/// Converts one value and, when `v` keeps its field, writes it.
fn fill(
    v: &Var,
    raw: &str,
    column: usize,
    state: &mut LineState,
    out: &mut Event,
) -> Result<(), ParseError> {
    let bad = || bad(v, column, raw);
    let text = &mut state.text;
    let bytes = &mut state.bytes;
    let time = |t: Option<i64>, out: &mut Event| {
        let t = t.ok_or_else(bad)?;
        if v.keep {
            out.timestamp = t;
        }
        Ok(())
    };
    let duration = |d: Option<Option<u64>>, out: &mut Event| {
        let d = d.ok_or_else(bad)?;
        if v.keep {
            out.duration_us = d;
        }
        Ok(())
    };
    let scaled = |raw: &str, by: u64| match or_none(raw) {
        None => Some(None),
        Some(s) => parse_u64(s.as_bytes())
            .and_then(|n| n.checked_mul(by))
            .map(Some),
    };
    match &v.field {
        Field::TimeLocal => return time(parse_clf_time(raw), out),
        Field::TimeIso => return time(parse_rfc3339(raw), out),
        Field::EpochSeconds => return time(parse_unix_seconds(raw), out),
        Field::EpochMillis | Field::EpochMicros => {
            let by = if v.field == Field::EpochMillis {
                1_000_000
            } else {
                1_000
            };
            let t = parse_u64(raw.as_bytes())
                .and_then(|n| i64::try_from(n).ok())
                .and_then(|n| n.checked_mul(by));
            return time(t, out);
        }
        Field::Seconds => {
            let d = match or_none(raw) {
                None => Some(None),
                Some(s) => parse_seconds_to_micros(s).map(Some),
            };
            return duration(d, out);
        }
        Field::WholeSeconds => return duration(scaled(raw, 1_000_000), out),
        Field::Millis => return duration(scaled(raw, 1_000), out),
        Field::Micros => return duration(scaled(raw, 1), out),
        Field::Status => {
            let status = parse_status(raw).map_err(|_| bad())?;
            if v.keep {
                out.status = status;
            }
            return Ok(());
        }
        Field::BodyBytes | Field::BytesSent => {
            let n = parse_bytes(raw).map_err(|_| bad())?;
            if v.keep {
                out.bytes = n;
            }
            return Ok(());
        }
        Field::Upstream => {
            let list = &mut state.extras.upstream_response_us;
            list.clear();
            if raw != "-" {
                // Entries are split at `,` and `:` (nginx writes `, ` and
                // ` : `); the spaces around them are trimmed.
                for entry in raw.split([',', ':']) {
                    let us = match or_none(entry.trim_matches(' ')) {
                        None => None,
                        Some(s) => Some(parse_seconds_to_micros(s).ok_or_else(bad)?),
                    };
                    list.push(us);
                }
            }
            if !v.keep {
                list.clear();
            }
            return Ok(());
        }
        Field::Ident => return Ok(()),
        Field::Other(_) => {
            if let Some(slot) = v.label {
                decode(raw, &mut state.extras.labels[slot].1, bytes);
            }
            return Ok(());
        }
        _ => {}
    }
    // Text fields.
    if !v.keep {
        return Ok(());
    }
    decode(raw, text, bytes);
    let dash_empty = if text.as_str() == "-" {
        ""
    } else {
        text.as_str()
    };
    match v.field {
        // As CLF: a line without its client address is malformed (an empty
        // one would be written back as `-`, another client; fuzzing,
        // target `format_strings`).
        Field::Client if text.is_empty() => {
            return Err(ParseError::new(format!(
                "column {column}: empty {} (the client address)",
                v.name
            )));
        }
        Field::Client => set(&mut out.client, text),
        Field::User => set(&mut out.user, dash_empty),
        Field::Method => set(&mut out.method, dash_empty),
        Field::Uri => set(&mut out.path, dash_empty),
        Field::Protocol => set(&mut out.protocol, dash_empty),
        Field::Referer => set_opt(&mut out.referer, text),
        Field::UserAgent => set_opt(&mut out.user_agent, text),
        Field::Host => set_opt(&mut state.extras.host, text),
        Field::Request => split_request(text, out).map_err(|_| {
            ParseError::new(format!(
                "column {column}: malformed {} `{}` (expected METHOD PATH [PROTOCOL])",
                v.name,
                snippet(raw)
            ))
        })?,
        _ => unreachable!("non-text fields returned above"),
    }
    Ok(())
}

// --- rendering ---------------------------------------------------------------

impl LogTemplate {
    fn render_var(&self, v: &Var, e: &Event, extras: &LineExtras, out: &mut String) {
        use std::fmt::Write as _;
        let text = |out: &mut String, s: &str| {
            if s.is_empty() {
                out.push('-');
            } else {
                push_escaped(self.dialect, out, s);
            }
        };
        let millis = |out: &mut String, us: u64| {
            let _ = write!(out, "{}.{:03}", us / 1_000_000, us % 1_000_000 / 1_000);
        };
        let duration = |out: &mut String, f: &dyn Fn(&mut String, u64)| match e.duration_us {
            Some(us) => f(out, us),
            None => out.push('-'),
        };
        match &v.field {
            Field::Client => text(out, &e.client),
            Field::Ident => out.push('-'),
            Field::User => text(out, &e.user),
            Field::TimeLocal => push_clf_time(out, e.timestamp),
            Field::TimeIso => push_rfc3339(out, e.timestamp),
            Field::EpochSeconds => {
                // Sign and magnitude, as it is read: -1.250 is 1.25 s
                // before the epoch (floored to the millisecond). Before this,
                // -1.250 came out as `-2.750` (fuzzing, `format_strings`).
                let ms = e.timestamp.div_euclid(1_000_000);
                let sign = if ms < 0 { "-" } else { "" };
                let abs = ms.unsigned_abs();
                let _ = write!(out, "{sign}{}.{:03}", abs / 1000, abs % 1000);
            }
            Field::EpochMillis => {
                let _ = write!(out, "{}", e.timestamp.div_euclid(1_000_000));
            }
            Field::EpochMicros => {
                let _ = write!(out, "{}", e.timestamp.div_euclid(1_000));
            }
            Field::Request => {
                if e.method.is_empty() && e.path.is_empty() && e.protocol.is_empty() {
                    out.push('-');
                } else {
                    push_escaped(self.dialect, out, &e.method);
                    out.push(' ');
                    push_escaped(self.dialect, out, &e.path);
                    if !e.protocol.is_empty() {
                        out.push(' ');
                        push_escaped(self.dialect, out, &e.protocol);
                    }
                }
            }
            Field::Method => text(out, &e.method),
            Field::Uri => text(out, &e.path),
            Field::Protocol => text(out, &e.protocol),
            Field::Status => {
                let _ = write!(out, "{}", e.status);
            }
            Field::BodyBytes | Field::BytesSent => {
                let _ = write!(out, "{}", e.bytes);
            }
            Field::Referer => text(out, e.referer.as_deref().unwrap_or("")),
            Field::UserAgent => text(out, e.user_agent.as_deref().unwrap_or("")),
            Field::Seconds => duration(out, &millis),
            Field::WholeSeconds => duration(out, &|out, us| {
                let _ = write!(out, "{}", us / 1_000_000);
            }),
            Field::Millis => duration(out, &|out, us| {
                let _ = write!(out, "{}", us / 1_000);
            }),
            Field::Micros => duration(out, &|out, us| {
                let _ = write!(out, "{us}");
            }),
            Field::Upstream => {
                if extras.upstream_response_us.is_empty() {
                    out.push('-');
                }
                for (i, us) in extras.upstream_response_us.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match us {
                        Some(us) => millis(out, *us),
                        None => out.push('-'),
                    }
                }
            }
            Field::Host => text(out, extras.host.as_deref().unwrap_or("")),
            Field::Other(name) => match v.label {
                Some(_) => text(out, extras.label(name).unwrap_or("")),
                None => out.push('-'),
            },
        }
    }
}

/// Escapes as the server does: nginx writes `"`, `\`, control and
/// non-ASCII bytes as `\xHH`; Apache writes `\"`, `\\` and `\xhh`.
fn push_escaped(dialect: Dialect, out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for (i, c) in s.char_indices() {
        let plain = c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\';
        if plain {
            out.push(c);
            continue;
        }
        match (dialect, c) {
            (Dialect::Apache, '"' | '\\') => {
                out.push('\\');
                out.push(c);
            }
            _ => {
                for b in s[i..i + c.len_utf8()].bytes() {
                    let _ = match dialect {
                        Dialect::Nginx => write!(out, "\\x{b:02X}"),
                        Dialect::Apache => write!(out, "\\x{b:02x}"),
                    };
                }
            }
        }
    }
}
