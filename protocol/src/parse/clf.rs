//! Common Log Format and Combined Log Format (Apache and nginx defaults).
//!
//! `host ident authuser [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326`
//! and, for Combined, ` "referer" "user-agent"` after it, optionally followed
//! by a request time in seconds (nginx `$request_time`). Inside quotes, `\"`,
//! `\\` and ASCII `\xHH` escapes are decoded. CLF ignores anything after the
//! byte count; Combined ignores anything after the user agent (and request
//! time).

use memchr::{memchr, memchr2};

use super::{
    ParseError, Parsed, err, parse_bytes, parse_clf_time, parse_seconds_to_micros, parse_status,
    set_opt, set_user, snippet, split_request,
};
use crate::event::Event;

/// A quoted value: the text between the quotes and whether it has escapes.
#[derive(Debug, Clone, Copy)]
struct Quoted<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Quoted<'a> {
    /// The value, decoded into `scratch` when it has escapes.
    fn value<'s>(&self, scratch: &'s mut String) -> &'s str
    where
        'a: 's,
    {
        if self.escaped {
            unescape(self.raw, scratch);
            scratch
        } else {
            self.raw
        }
    }
}

/// Decodes `\"`, `\\` and `\xHH` (HH < 0x80) into `dst` (cleared first);
/// any other backslash stays as it is.
pub(crate) fn unescape(raw: &str, dst: &mut String) {
    dst.clear();
    let mut rest = raw;
    while let Some(i) = memchr(b'\\', rest.as_bytes()) {
        dst.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let ab = after.as_bytes();
        match ab.first() {
            Some(b'"') => {
                dst.push('"');
                rest = &after[1..];
            }
            Some(b'\\') => {
                dst.push('\\');
                rest = &after[1..];
            }
            Some(b'x') if ab.len() >= 3 => match (hex(ab[1]), hex(ab[2])) {
                (Some(h), Some(l)) if h < 8 => {
                    dst.push(char::from(h << 4 | l));
                    rest = &after[3..];
                }
                _ => {
                    dst.push('\\');
                    rest = after;
                }
            },
            _ => {
                dst.push('\\');
                rest = after;
            }
        }
    }
    dst.push_str(rest);
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A position in a line being parsed.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// Skips one or more spaces; `what` names what must follow.
    fn spaces(&mut self, what: &str) -> Result<(), ParseError> {
        let start = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        if self.pos == self.s.len() {
            err(format!("line ends before {what}"))
        } else if self.pos == start {
            err(format!("expected a space before {what}"))
        } else {
            Ok(())
        }
    }

    /// Everything up to the next space or the end of the line.
    fn token(&mut self) -> &'a str {
        let rest = &self.s.as_bytes()[self.pos..];
        let len = memchr(b' ', rest).unwrap_or(rest.len());
        let t = &self.s[self.pos..self.pos + len];
        self.pos += len;
        t
    }

    /// `[...]`.
    fn bracketed(&mut self) -> Result<&'a str, ParseError> {
        if self.peek() != Some(b'[') {
            return err("expected `[` before the timestamp");
        }
        let start = self.pos + 1;
        let Some(len) = memchr(b']', &self.s.as_bytes()[start..]) else {
            return err("unterminated `[` timestamp");
        };
        self.pos = start + len + 1;
        Ok(&self.s[start..start + len])
    }

    /// `"..."` with backslash escapes.
    fn quoted(&mut self, what: &str) -> Result<Quoted<'a>, ParseError> {
        if self.peek() != Some(b'"') {
            return err(format!("expected a quoted {what}"));
        }
        let b = self.s.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let Some(k) = memchr2(b'"', b'\\', &b[i..]) else {
                return err(format!("unterminated quoted {what}"));
            };
            let at = i + k;
            if b[at] == b'\\' {
                escaped = true;
                // Skip the escaped byte; it cannot be a closing quote.
                i = at + 2;
                if i > b.len() {
                    return err(format!("unterminated quoted {what}"));
                }
                continue;
            }
            self.pos = at + 1;
            return Ok(Quoted {
                raw: &self.s[start..at],
                escaped,
            });
        }
    }
}

pub(super) fn parse(
    line: &str,
    combined: bool,
    scratch: &mut String,
    out: &mut Event,
) -> Result<Parsed, ParseError> {
    let mut c = Cursor { s: line, pos: 0 };
    let host = c.token();
    if host.is_empty() {
        return err("line starts with a space");
    }
    c.spaces("ident")?;
    let _ident = c.token();
    c.spaces("authuser")?;
    let user = c.token();
    c.spaces("the timestamp")?;
    let time = c.bracketed()?;
    let Some(timestamp) = parse_clf_time(time) else {
        return err(format!("bad timestamp `{}`", snippet(time)));
    };
    c.spaces("the request")?;
    let request = c.quoted("request")?;
    c.spaces("the status")?;
    let status = parse_status(c.token())?;
    c.spaces("the byte count")?;
    let bytes = parse_bytes(c.token())?;
    out.duration_us = None;
    if combined {
        c.spaces("the referer")?;
        let referer = c.quoted("referer")?;
        c.spaces("the user agent")?;
        let agent = c.quoted("user agent")?;
        while c.peek() == Some(b' ') {
            c.pos += 1;
        }
        let extra = c.token();
        if !extra.is_empty() {
            out.duration_us = parse_seconds_to_micros(extra);
        }
        set_opt(&mut out.referer, referer.value(scratch));
        set_opt(&mut out.user_agent, agent.value(scratch));
    } else {
        out.referer = None;
        out.user_agent = None;
    }
    split_request(request.value(scratch), out)?;
    out.timestamp = timestamp;
    out.status = status;
    out.bytes = bytes;
    out.client.clear();
    out.client.push_str(host);
    set_user(&mut out.user, user);
    Ok(Parsed::Event)
}
