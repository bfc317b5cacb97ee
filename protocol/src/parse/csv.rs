//! The exercise CSV:
//! `"remotehost","rfc931","authuser","date","request","status","bytes"`.
//!
//! Fields are optionally double-quoted; inside a quoted field a quote is
//! doubled (`""`). `date` is Unix seconds, possibly fractional. A line whose
//! first field is `remotehost` is the header and is skipped.

use memchr::memchr;

use super::{
    ParseError, Parsed, err, parse_bytes, parse_status, parse_unix_seconds, set_user, snippet,
    split_request,
};
use crate::event::Event;

/// Fields in a line.
pub(crate) const FIELDS: usize = 7;

/// One field: its text between the quotes (or the whole unquoted text), and
/// whether it holds doubled quotes to undo.
#[derive(Debug, Clone, Copy, Default)]
struct Field<'a> {
    raw: &'a str,
    doubled: bool,
}

impl Field<'_> {
    /// Writes the field's value into `dst` (cleared first).
    fn write_to(&self, dst: &mut String) {
        dst.clear();
        if !self.doubled {
            dst.push_str(self.raw);
            return;
        }
        let mut rest = self.raw;
        while let Some(i) = memchr(b'"', rest.as_bytes()) {
            // Every quote in `raw` is the first of a `""` pair.
            dst.push_str(&rest[..=i]);
            rest = rest.get(i + 2..).unwrap_or("");
        }
        dst.push_str(rest);
    }
}

/// Reads the field starting at byte `start`; returns it and where the next
/// field starts (`None` at the end of the line).
#[inline]
fn next_field(line: &str, start: usize) -> Result<(Field<'_>, Option<usize>), ParseError> {
    let b = line.as_bytes();
    if b.get(start) == Some(&b'"') {
        let mut i = start + 1;
        let mut doubled = false;
        loop {
            let Some(k) = memchr(b'"', &b[i..]) else {
                return err("unterminated quoted field");
            };
            let q = i + k;
            if b.get(q + 1) == Some(&b'"') {
                doubled = true;
                i = q + 2;
                continue;
            }
            let field = Field {
                raw: &line[start + 1..q],
                doubled,
            };
            return match b.get(q + 1) {
                None => Ok((field, None)),
                Some(b',') => Ok((field, Some(q + 2))),
                Some(_) => err("unexpected character after a closing quote"),
            };
        }
    }
    Ok(match memchr(b',', &b[start..]) {
        Some(k) => (
            Field {
                raw: &line[start..start + k],
                doubled: false,
            },
            Some(start + k + 1),
        ),
        None => (
            Field {
                raw: &line[start..],
                doubled: false,
            },
            None,
        ),
    })
}

pub(super) fn parse(
    line: &str,
    scratch: &mut String,
    out: &mut Event,
) -> Result<Parsed, ParseError> {
    let mut fields = [Field::default(); FIELDS];
    let mut n = 0;
    let mut pos = Some(0);
    while let Some(start) = pos {
        let (field, next) = next_field(line, start)?;
        if n < FIELDS {
            fields[n] = field;
        } else if fields[0].raw == "remotehost" {
            return Ok(Parsed::Skipped);
        }
        n += 1;
        pos = next;
    }
    let [host, _rfc931, user, date, request, status, bytes] = fields;
    if host.raw == "remotehost" {
        return Ok(Parsed::Skipped);
    }
    if n != FIELDS {
        return err(format!("expected {FIELDS} fields, found {n}"));
    }
    let Some(timestamp) = parse_unix_seconds(date.raw) else {
        return err(format!("bad timestamp `{}`", snippet(date.raw)));
    };
    out.timestamp = timestamp;
    out.status = parse_status(status.raw)?;
    out.bytes = parse_bytes(bytes.raw)?;
    if request.doubled {
        request.write_to(scratch);
        split_request(scratch, out)?;
    } else {
        split_request(request.raw, out)?;
    }
    host.write_to(&mut out.client);
    if user.doubled {
        user.write_to(&mut out.user);
    } else {
        set_user(&mut out.user, user.raw);
    }
    out.referer = None;
    out.user_agent = None;
    out.duration_us = None;
    Ok(Parsed::Event)
}
