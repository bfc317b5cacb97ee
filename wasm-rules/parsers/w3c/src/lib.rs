//! `w3c`: the W3C Extended Log File Format as IIS writes it.
//!
//! A file is blocks of directives and lines: `#Software:`, `#Version:`,
//! `#Date:` and `#Fields:` (the others, `#Remark:` …, are skipped). The
//! `#Fields:` directive names the space-separated fields of the lines after
//! it, until the next one; a file may hold several blocks (IIS starts one
//! when it restarts or its configuration changes). `-` is an empty field;
//! in `cs(User-Agent)` and `cs(Referer)` a `+` stands for a space (IIS's
//! encoding), decoded unless `plus_as_space = false`. `date` and `time` are
//! UTC; a block without `date` takes the day of its `#Date:`.
//!
//! Fields read: `date`, `time`, `c-ip`, `cs-username`, `cs-method`,
//! `cs-uri-stem`, `cs-uri-query` (the path is stem + `?` + query when the
//! query is not `-`), `cs-uri` (a whole target, when there is no stem),
//! `cs-version` (the protocol), `sc-status`, `sc-bytes`, `cs(User-Agent)`,
//! `cs(Referer)`, `time-taken` (milliseconds; the event's duration). Others
//! (`s-ip`, `s-port`, `sc-substatus`, `sc-win32-status`, `cs-host`,
//! `cs-bytes`, …) are read past. A block must have `time`, `sc-status` and
//! `cs-uri-stem` or `cs-uri`.
//!
//! Malformed: a line before any `#Fields:` (or after one this parser cannot
//! use), a line with another number of fields than its `#Fields:` names, a
//! bad date, time, status, byte count or time taken.

use std::collections::HashMap;

use logmon_parser::{Event, Output, Params, Parser, ParserInfo, TextColumn, param};

/// Where the fields this parser reads are in a block's lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Layout {
    /// How many fields a line has.
    count: usize,
    date: Option<usize>,
    time: usize,
    client: Option<usize>,
    user: Option<usize>,
    method: Option<usize>,
    stem: Option<usize>,
    query: Option<usize>,
    uri: Option<usize>,
    protocol: Option<usize>,
    status: usize,
    bytes: Option<usize>,
    user_agent: Option<usize>,
    referer: Option<usize>,
    time_taken: Option<usize>,
}

impl Layout {
    /// The layout of a `#Fields:` directive's names, or why it is unusable.
    fn new(names: &str) -> Result<Layout, String> {
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let find = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let need = |name: &str| {
            find(name).ok_or_else(|| format!("the #Fields directive has no `{name}` field"))
        };
        let layout = Layout {
            count: names.len(),
            date: find("date"),
            time: need("time")?,
            client: find("c-ip"),
            user: find("cs-username"),
            method: find("cs-method"),
            stem: find("cs-uri-stem"),
            query: find("cs-uri-query"),
            uri: find("cs-uri"),
            protocol: find("cs-version"),
            status: need("sc-status")?,
            bytes: find("sc-bytes"),
            user_agent: find("cs(User-Agent)"),
            referer: find("cs(Referer)"),
            time_taken: find("time-taken"),
        };
        if layout.stem.is_none() && layout.uri.is_none() {
            return Err("the #Fields directive has no `cs-uri-stem` or `cs-uri` field".into());
        }
        Ok(layout)
    }
}

/// What one file's directives said so far.
#[derive(Debug, Clone, Default)]
struct StreamState {
    /// The current block's layout, or why it has none.
    layout: Option<Result<Layout, String>>,
    /// Days since the epoch of the last `#Date:`.
    date: Option<i64>,
}

#[derive(Debug, Default)]
pub struct W3c {
    streams: HashMap<u64, StreamState>,
    keep_plus: bool,
    /// Scratch for the `+`-decoded user agent and referer, and the path.
    user_agent: String,
    referer: String,
    path: String,
}

impl Parser for W3c {
    fn describe() -> ParserInfo {
        ParserInfo {
            name: "w3c".into(),
            description: "W3C Extended Log File Format, as IIS writes it (#Fields directives)"
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![param(
                "plus_as_space",
                "decode `+` to a space in cs(User-Agent) and cs(Referer)",
                true,
            )],
            directive_prefix: Some("#".into()),
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.keep_plus = !params.get("plus_as_space", true)?;
        Ok(())
    }

    fn parse(&mut self, stream: u64, lines: &TextColumn, out: &mut Output) {
        let mut state = self.streams.remove(&stream).unwrap_or_default();
        for (i, line) in lines.iter().enumerate() {
            if let Some(directive) = line.strip_prefix('#') {
                state.directive(directive);
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            match &state.layout {
                None => out.malformed(i, "a line before any #Fields directive"),
                Some(Err(why)) => out.malformed(i, format!("unusable block: {why}")),
                Some(Ok(layout)) => {
                    if let Err(why) = self.line(layout, state.date, line, i, out) {
                        out.malformed(i, why);
                    }
                }
            }
        }
        self.streams.insert(stream, state);
    }

    fn forget(&mut self, stream: u64) {
        self.streams.remove(&stream);
    }
}

impl StreamState {
    /// Takes in a directive (the line after its `#`).
    fn directive(&mut self, directive: &str) {
        let (name, value) = directive.split_once(':').unwrap_or((directive, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("Fields") {
            self.layout = Some(Layout::new(value));
        } else if name.eq_ignore_ascii_case("Date") {
            // `#Date: 2024-03-01 00:00:00`: the block's day.
            self.date = value
                .split_ascii_whitespace()
                .next()
                .and_then(|d| days(d).ok());
        }
    }
}

impl W3c {
    /// Reads one line of a block into `out`, or says why it cannot.
    fn line(
        &mut self,
        layout: &Layout,
        block_date: Option<i64>,
        line: &str,
        index: usize,
        out: &mut Output,
    ) -> Result<(), String> {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() != layout.count {
            return Err(format!(
                "expected {} fields (per #Fields), found {}",
                layout.count,
                fields.len()
            ));
        }
        let get = |at: Option<usize>| match at.map(|i| fields[i]) {
            None | Some("-") => "",
            Some(v) => v,
        };
        let day = match layout.date {
            Some(i) => days(fields[i])?,
            None => block_date.ok_or("no date field and no #Date directive")?,
        };
        let timestamp = day
            .checked_mul(86_400_000_000_000)
            .and_then(|t| t.checked_add(nanos_of_day(fields[layout.time])?))
            .ok_or_else(|| format!("bad time `{}`", fields[layout.time]))?;
        let status_text = fields[layout.status];
        let status: u16 = status_text
            .parse()
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| format!("bad sc-status `{status_text}`"))?;
        let bytes = match get(layout.bytes) {
            "" => 0,
            b => b.parse().map_err(|_| format!("bad sc-bytes `{b}`"))?,
        };
        let duration_us = match get(layout.time_taken) {
            "" => None,
            t => Some(millis_to_micros(t).ok_or_else(|| format!("bad time-taken `{t}`"))?),
        };
        self.path.clear();
        match layout.stem {
            Some(_) => {
                self.path.push_str(get(layout.stem));
                let query = get(layout.query);
                if !query.is_empty() {
                    self.path.push('?');
                    self.path.push_str(query);
                }
            }
            None => self.path.push_str(get(layout.uri)),
        }
        let keep_plus = self.keep_plus;
        let decode = |dst: &mut String, v: &str| {
            dst.clear();
            if keep_plus {
                dst.push_str(v);
            } else {
                dst.extend(v.chars().map(|c| if c == '+' { ' ' } else { c }));
            }
        };
        decode(&mut self.user_agent, get(layout.user_agent));
        decode(&mut self.referer, get(layout.referer));
        out.push(
            index,
            &Event {
                timestamp,
                client: get(layout.client),
                user: get(layout.user),
                method: get(layout.method),
                path: &self.path,
                protocol: get(layout.protocol),
                status,
                bytes,
                referer: &self.referer,
                user_agent: &self.user_agent,
                duration_us,
            },
        );
        Ok(())
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (the proleptic Gregorian
/// calendar, Howard Hinnant's `days_from_civil`).
fn days(date: &str) -> Result<i64, String> {
    let bad = || format!("bad date `{date}` (want YYYY-MM-DD)");
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return Err(bad());
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

/// Nanoseconds since midnight of `HH:MM:SS` or `HH:MM:SS.fff…`.
fn nanos_of_day(time: &str) -> Option<i64> {
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let two = |v: &str, max: i64| {
        (v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<i64>().ok())
            .flatten()
            .filter(|n| *n <= max)
    };
    let (h, m, s) = (two(h, 23)?, two(m, 59)?, two(s, 60)?);
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i64>().ok()? * 10_i64.pow(9 - fraction.len() as u32)
    };
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + frac)
}

/// Microseconds of a time-taken in milliseconds (`15`, or `15.5`).
fn millis_to_micros(ms: &str) -> Option<u64> {
    let (whole, fraction) = ms.split_once('.').unwrap_or((ms, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let micros = whole.parse::<u64>().ok()?.checked_mul(1000)?;
    let mut frac = fraction.bytes().take(3).map(|b| u64::from(b - b'0'));
    let extra = (0..3).fold(0, |acc, _| acc * 10 + frac.next().unwrap_or(0));
    micros.checked_add(extra)
}

logmon_parser::export_parser!(W3c);

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_parser::{OwnedEvent, Parsed, lines};

    const FIELDS: &str = "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken";

    fn run(parser: &mut W3c, stream: u64, text: &[&str]) -> Parsed {
        let mut out = Output::new();
        parser.parse(stream, &lines(text.iter().copied()), &mut out);
        out.finish()
    }

    fn configured(params: &[(&str, &str)]) -> W3c {
        let mut p = W3c::default();
        let params = Params::new(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        params.check(&W3c::describe()).unwrap();
        p.configure(&params).unwrap();
        p
    }

    fn event(ts: i64, method: &str, path: &str, status: u16) -> OwnedEvent {
        OwnedEvent {
            timestamp: ts,
            client: String::new(),
            user: String::new(),
            method: method.into(),
            path: path.into(),
            protocol: String::new(),
            status,
            bytes: 0,
            referer: String::new(),
            user_agent: String::new(),
            duration_us: None,
        }
    }

    /// 2024-03-01T00:00:00Z in Unix seconds.
    const MARCH_1: i64 = 1_709_251_200;

    #[test]
    fn an_iis_default_block_reads_every_field() {
        let mut p = configured(&[]);
        let parsed = run(
            &mut p,
            1,
            &[
                "#Software: Microsoft Internet Information Services 10.0",
                "#Version: 1.0",
                "#Date: 2024-03-01 00:00:00",
                FIELDS,
                "2024-03-01 00:00:01 10.0.0.5 GET /default.htm - 80 - 192.168.1.20 Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) - 200 0 0 15",
                "2024-03-01 00:00:02 10.0.0.5 POST /api/orders id=7&x=1 443 alice 192.168.1.21 curl/8.5.0 https://shop.example/cart?step=2 201 0 0 230",
                "",
                "2024-03-01 23:59:59 10.0.0.5 GET /img/logo.png - 80 - 2001:db8::1 - - 404 2 2 0",
            ],
        );
        assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
        let rows = parsed.rows();
        let mut first = event((MARCH_1 + 1) * 1_000_000_000, "GET", "/default.htm", 200);
        first.client = "192.168.1.20".into();
        first.user_agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)".into();
        first.duration_us = Some(15_000);
        let mut second = event(
            (MARCH_1 + 2) * 1_000_000_000,
            "POST",
            "/api/orders?id=7&x=1",
            201,
        );
        second.client = "192.168.1.21".into();
        second.user = "alice".into();
        second.user_agent = "curl/8.5.0".into();
        second.referer = "https://shop.example/cart?step=2".into();
        second.duration_us = Some(230_000);
        let mut third = event(
            (MARCH_1 + 86_399) * 1_000_000_000,
            "GET",
            "/img/logo.png",
            404,
        );
        third.client = "2001:db8::1".into();
        third.duration_us = Some(0);
        assert_eq!(rows, vec![(4, first), (5, second), (7, third)]);
    }

    #[test]
    fn a_new_fields_block_changes_the_columns_per_stream() {
        let mut p = configured(&[]);
        let a = run(
            &mut p,
            1,
            &[
                FIELDS,
                "2024-03-01 00:00:01 10.0.0.5 GET /a - 80 - 1.1.1.1 - - 200 0 0 1",
                "#Fields: date time cs-method cs-uri-stem cs-uri-query cs-host cs-version sc-status sc-bytes time-taken",
                "2024-03-01 00:00:02 GET /b q=1 shop.example HTTP/1.1 500 1234 7",
                // The old layout's field count is malformed now.
                "2024-03-01 00:00:03 10.0.0.5 GET /c - 80 - 1.1.1.1 - - 200 0 0 1",
            ],
        );
        // Another file in the same instance has a state of its own.
        let b = run(
            &mut p,
            2,
            &["2024-03-01 00:00:04 GET /d - shop.example HTTP/1.1 200 1 1"],
        );
        // And the first file's state carries over to its next call.
        let a2 = run(
            &mut p,
            1,
            &["2024-03-01 00:00:05 HEAD /e - shop.example HTTP/2 304 0 -"],
        );
        let paths = |p: &Parsed| {
            p.rows()
                .into_iter()
                .map(|(_, e)| e.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(&a), vec!["/a", "/b?q=1"]);
        let rows = a.rows();
        assert_eq!(rows[1].1.protocol, "HTTP/1.1");
        assert_eq!(rows[1].1.bytes, 1234);
        assert_eq!(rows[1].1.duration_us, Some(7000));
        assert_eq!(
            a.malformed_lines(),
            vec![(4, "expected 10 fields (per #Fields), found 15")]
        );
        assert!(b.events.is_empty());
        assert_eq!(
            b.malformed_lines(),
            vec![(0, "a line before any #Fields directive")]
        );
        assert_eq!(paths(&a2), vec!["/e"]);
        assert_eq!(a2.rows()[0].1.duration_us, None);
        p.forget(1);
        let after = run(
            &mut p,
            1,
            &["2024-03-01 00:00:05 HEAD /e - shop.example HTTP/2 304 0 -"],
        );
        assert_eq!(after.malformed.len(), 1);
    }

    #[test]
    fn bad_values_are_malformed_with_their_reason() {
        let mut p = configured(&[("plus_as_space", "false")]);
        let parsed = run(
            &mut p,
            9,
            &[
                "#Fields: time cs-method cs-uri sc-status cs(User-Agent)",
                // No date field and no #Date yet.
                "00:00:01 GET /x 200 a+b",
                "#Date: 2024-02-29 00:00:00",
                "00:00:01.5 GET /x?y 200 a+b",
                "24:00:00 GET /x 200 -",
                "00:00:01 GET /x 2000 -",
                "#Fields: date time cs-method",
                "2024-02-29 00:00:01 GET",
                "#Fields: date time cs-uri-stem sc-status",
                "2023-02-29 00:00:01 / 200",
            ],
        );
        let rows = parsed.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 3);
        assert_eq!(
            rows[0].1.timestamp,
            (MARCH_1 - 86_400 + 1) * 1_000_000_000 + 500_000_000
        );
        assert_eq!(rows[0].1.path, "/x?y");
        assert_eq!(rows[0].1.user_agent, "a+b");
        assert_eq!(
            parsed.malformed_lines(),
            vec![
                (1, "no date field and no #Date directive"),
                (4, "bad time `24:00:00`"),
                (5, "bad sc-status `2000`"),
                (
                    7,
                    "unusable block: the #Fields directive has no `sc-status` field"
                ),
                (9, "bad date `2023-02-29` (want YYYY-MM-DD)"),
            ]
        );
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let params = Params::new(vec![("nope".into(), "1".into())]);
        assert_eq!(
            params.check(&W3c::describe()).unwrap_err(),
            "unknown parameter `nope` (known: plus_as_space)"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(days("1970-01-01"), Ok(0));
        assert_eq!(days("2024-03-01"), Ok(MARCH_1 / 86_400));
        assert!(days("2024-3-01").is_err());
        assert_eq!(millis_to_micros("15"), Some(15_000));
        assert_eq!(millis_to_micros("1.25"), Some(1_250));
        assert_eq!(millis_to_micros("-1"), None);
        assert_eq!(nanos_of_day("01:02:03"), Some(3_723_000_000_000));
        assert_eq!(nanos_of_day("1:02:03"), None);
    }
}
