//! The two format-string languages, read into the same pieces: literal text
//! and variables, each variable already named by the [`Field`] it fills.
//!
//! nginx: `$name` or `${name}`; everything else is literal. Apache:
//! `%[<>][!]?[codes]{arg}?X` directives and `%%`; everything else is
//! literal, and Apache's `%t` (which writes its own brackets) becomes
//! `[`, the time, `]`. A string pasted with its config-file quoting
//! (nginx `'…' '…'`, Apache `"…\"…\"…"`) is unwrapped first.

use super::{Field, TemplateError};

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Literal(String),
    Var {
        /// As written (`$status`, `%>s`, `%{Referer}i`), for messages.
        name: String,
        field: Field,
        /// Byte column (from 1) of the variable in the format string.
        column: usize,
    },
}

fn syntax(column: usize, reason: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        column,
        reason: reason.into(),
    }
}

fn push_literal(pieces: &mut Vec<Piece>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Piece::Literal(last)) = pieces.last_mut() {
        last.push_str(text);
    } else {
        pieces.push(Piece::Literal(text.to_owned()));
    }
}

// --- nginx ------------------------------------------------------------------

/// nginx's `log_format` quoting: one or more `'…'` pieces separated by
/// white space, concatenated. Anything else is taken as it is.
fn unwrap_nginx(source: &str) -> String {
    let t = source.trim();
    if !t.starts_with('\'') {
        return source.to_owned();
    }
    let mut out = String::new();
    let mut rest = t;
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('\'') else {
            return source.to_owned();
        };
        let Some(end) = inner.find('\'') else {
            return source.to_owned();
        };
        out.push_str(&inner[..end]);
        rest = inner[end + 1..].trim_start();
    }
    out
}

/// The field an nginx variable fills.
fn nginx_field(name: &str) -> Field {
    match name {
        "remote_addr" | "realip_remote_addr" => Field::Client,
        "remote_user" => Field::User,
        "time_local" => Field::TimeLocal,
        "time_iso8601" => Field::TimeIso,
        "msec" => Field::EpochSeconds,
        "request" => Field::Request,
        "request_method" => Field::Method,
        "request_uri" => Field::Uri,
        "server_protocol" => Field::Protocol,
        "status" => Field::Status,
        "body_bytes_sent" => Field::BodyBytes,
        "bytes_sent" => Field::BytesSent,
        "http_referer" => Field::Referer,
        "http_user_agent" => Field::UserAgent,
        "request_time" => Field::Seconds,
        "upstream_response_time" => Field::Upstream,
        "host" => Field::Host,
        other => Field::Other(other.to_owned()),
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub(super) fn nginx(source: &str) -> Result<Vec<Piece>, TemplateError> {
    let source = unwrap_nginx(source);
    let b = source.as_bytes();
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        push_literal(&mut pieces, &source[lit_start..i]);
        let column = i + 1;
        let (name, end) = if b.get(i + 1) == Some(&b'{') {
            let Some(close) = source[i + 2..].find('}') else {
                return Err(syntax(column, "unterminated `${`"));
            };
            (&source[i + 2..i + 2 + close], i + 3 + close)
        } else {
            let len = b[i + 1..].iter().take_while(|&&c| is_name_byte(c)).count();
            (&source[i + 1..i + 1 + len], i + 1 + len)
        };
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(syntax(column, "`$` is not followed by a variable name"));
        }
        pieces.push(Piece::Var {
            name: format!("${name}"),
            field: nginx_field(name),
            column,
        });
        i = end;
        lit_start = end;
    }
    push_literal(&mut pieces, &source[lit_start..]);
    Ok(pieces)
}

// --- Apache -------------------------------------------------------------------

/// Apache's quoting in `httpd.conf`: a string wrapped in `"…"` (with no
/// unescaped quote inside) loses the wrapping; `\"` and `\\` are decoded,
/// as are `\n` and `\t`, which `mod_log_config` reads as control characters.
fn unwrap_apache(source: &str) -> String {
    let t = source.trim();
    let inner = match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !has_bare_quote(inner) => inner,
        _ => source,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn has_bare_quote(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return true,
            _ => i += 1,
        }
    }
    false
}

/// `Referer` → `referer`, `X-Forwarded-For` → `x_forwarded_for`: the
/// names nginx gives headers, so labels read the same for both servers.
fn header_name(arg: &str) -> String {
    arg.chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn apache_field(letter: char, arg: Option<&str>, column: usize) -> Result<Field, TemplateError> {
    let other = |name: &str| Ok(Field::Other(name.to_owned()));
    match (letter, arg) {
        ('h' | 'a', _) => Ok(Field::Client),
        ('l', _) => Ok(Field::Ident),
        ('u', _) => Ok(Field::User),
        ('t', None) => Ok(Field::TimeLocal),
        ('t', Some("sec")) => Ok(Field::EpochSeconds),
        ('t', Some("msec")) => Ok(Field::EpochMillis),
        ('t', Some("usec")) => Ok(Field::EpochMicros),
        ('t', Some(arg)) => Err(syntax(
            column,
            format!("`%{{{arg}}}t`: only %t, %{{sec}}t, %{{msec}}t and %{{usec}}t are supported"),
        )),
        ('r', _) => Ok(Field::Request),
        ('m', _) => Ok(Field::Method),
        ('U', _) => Ok(Field::Uri),
        ('H', _) => Ok(Field::Protocol),
        ('s', _) => Ok(Field::Status),
        ('b' | 'B', _) => Ok(Field::BodyBytes),
        ('O', _) => Ok(Field::BytesSent),
        ('D', _) => Ok(Field::Micros),
        ('T', None | Some("s")) => Ok(Field::WholeSeconds),
        ('T', Some("ms")) => Ok(Field::Millis),
        ('T', Some("us")) => Ok(Field::Micros),
        ('T', Some(arg)) => Err(syntax(
            column,
            format!("`%{{{arg}}}T`: expected s, ms or us"),
        )),
        ('v' | 'V', _) => Ok(Field::Host),
        ('i', Some(h)) if h.eq_ignore_ascii_case("referer") => Ok(Field::Referer),
        ('i', Some(h)) if h.eq_ignore_ascii_case("user-agent") => Ok(Field::UserAgent),
        ('i', Some(h)) => other(&format!("http_{}", header_name(h))),
        ('o', Some(h)) => other(&format!("sent_http_{}", header_name(h))),
        ('C', Some(c)) => other(&format!("cookie_{c}")),
        ('e', Some(e)) => other(&format!("env_{e}")),
        ('n', Some(n)) => other(&format!("note_{n}")),
        ('A', _) => other("server_addr"),
        ('p', _) => other("server_port"),
        ('P', _) => other("pid"),
        ('q', _) => other("query_string"),
        ('f', _) => other("request_filename"),
        ('k', _) => other("keepalive_requests"),
        ('L', _) => other("request_log_id"),
        ('R', _) => other("handler"),
        ('X', _) => other("connection_status"),
        ('I', _) => other("request_length"),
        ('S', _) => other("bytes_transferred"),
        ('i' | 'o' | 'C' | 'e' | 'n', None) => Err(syntax(
            column,
            format!("`%{letter}` needs a name: `%{{Name}}{letter}`"),
        )),
        (c, _) => Err(syntax(column, format!("unknown directive `%{c}`"))),
    }
}

pub(super) fn apache(source: &str) -> Result<Vec<Piece>, TemplateError> {
    let source = unwrap_apache(source);
    let s = source.as_str();
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] != b'%' {
            i += 1;
            continue;
        }
        push_literal(&mut pieces, &s[lit_start..i]);
        let column = i + 1;
        let mut j = i + 1;
        if s.as_bytes().get(j) == Some(&b'%') {
            push_literal(&mut pieces, "%");
            i = j + 1;
            lit_start = i;
            continue;
        }
        // Modifiers: `<`/`>` (original or final request) and a status
        // condition (`!`, codes, commas). A condition only makes the
        // server write `-`, which every field already reads.
        while let Some(&c) = s.as_bytes().get(j) {
            if matches!(c, b'<' | b'>' | b'!' | b',') || c.is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let arg = if s.as_bytes().get(j) == Some(&b'{') {
            let Some(close) = s[j + 1..].find('}') else {
                return Err(syntax(column, "unterminated `%{`"));
            };
            let arg = &s[j + 1..j + 1 + close];
            j += close + 2;
            Some(arg)
        } else {
            None
        };
        let Some(letter) = s[j..].chars().next() else {
            return Err(syntax(column, "`%` at the end of the format"));
        };
        let end = j + letter.len_utf8();
        let name = s[i..end].to_owned();
        let field = apache_field(letter, arg, column)?;
        if field == Field::TimeLocal {
            push_literal(&mut pieces, "[");
            pieces.push(Piece::Var {
                name,
                field,
                column,
            });
            pieces.push(Piece::Literal("]".to_owned()));
        } else {
            pieces.push(Piece::Var {
                name,
                field,
                column,
            });
        }
        i = end;
        lit_start = end;
    }
    push_literal(&mut pieces, &s[lit_start..]);
    Ok(pieces)
}
