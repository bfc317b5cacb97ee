//! JSON lines: one object a line, with the field names nginx and Apache JSON
//! log formats commonly use.
//!
//! | event field | accepted names (first present, non-null wins) |
//! |---|---|
//! | timestamp | `time`, `timestamp`, `time_local`, `time_iso8601`, `@timestamp`, `msec` |
//! | client | `remote_addr`, `client`, `client_ip`, `remotehost`, `host` |
//! | user | `remote_user`, `user`, `authuser` |
//! | request | `request`, or `method`/`request_method` + `path`/`uri`/`request_uri`/`url` + `protocol`/`server_protocol` |
//! | status | `status` |
//! | bytes | `body_bytes_sent`, `bytes_sent`, `bytes`, `size` |
//! | referer | `http_referer`, `referer`, `referrer` |
//! | user agent | `http_user_agent`, `user_agent`, `agent` |
//! | duration | `request_time` (seconds), `duration_us` |
//!
//! A time is an RFC 3339 string, a CLF time string, or a number (or numeric
//! string) of Unix seconds, possibly fractional; an integer above 10^17 is
//! nanoseconds. Timestamp, request and status are required.

use serde_json::{Map, Value};

use super::{
    ParseError, Parsed, err, parse_bytes, parse_clf_time, parse_decimal, parse_rfc3339,
    parse_seconds_to_micros, parse_status, set, set_opt, set_user, snippet, split_request,
};
use crate::event::{Event, NANOS_PER_SEC};

const TIME: &[&str] = &[
    "time",
    "timestamp",
    "time_local",
    "time_iso8601",
    "@timestamp",
    "msec",
];
const CLIENT: &[&str] = &["remote_addr", "client", "client_ip", "remotehost", "host"];
const USER: &[&str] = &["remote_user", "user", "authuser"];
const METHOD: &[&str] = &["method", "request_method"];
const PATH: &[&str] = &["path", "uri", "request_uri", "url"];
const PROTOCOL: &[&str] = &["protocol", "server_protocol"];
const BYTES: &[&str] = &["body_bytes_sent", "bytes_sent", "bytes", "size"];
const REFERER: &[&str] = &["http_referer", "referer", "referrer"];
const AGENT: &[&str] = &["http_user_agent", "user_agent", "agent"];

/// The first of `names` present and not null, with its name.
fn get<'m>(
    map: &'m Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'m Value)> {
    names
        .iter()
        .find_map(|&n| map.get(n).filter(|v| !v.is_null()).map(|v| (n, v)))
}

/// A string field (numbers are taken as their text).
fn get_str<'m>(
    map: &'m Map<String, Value>,
    names: &[&'static str],
    scratch: &'m mut String,
) -> Result<Option<&'m str>, ParseError> {
    match get(map, names) {
        None => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s)),
        Some((_, Value::Number(n))) => {
            scratch.clear();
            scratch.push_str(&n.to_string());
            Ok(Some(scratch))
        }
        Some((name, _)) => err(format!("field `{name}` is not a string")),
    }
}

/// The text of a number or string field, for the numeric parsers.
fn numeric_text(name: &str, v: &Value) -> Result<String, ParseError> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        _ => err(format!("field `{name}` is not a number")),
    }
}

/// Unix seconds (possibly fractional), or nanoseconds when an integer above
/// 10^17, as nanoseconds.
fn numeric_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if memchr::memchr(b'.', b).is_none() {
        let v = parse_decimal(b, 0)?;
        if v.unsigned_abs() > 100_000_000_000_000_000 {
            return i64::try_from(v).ok();
        }
        return i64::try_from(v.checked_mul(i128::from(NANOS_PER_SEC))?).ok();
    }
    i64::try_from(parse_decimal(b, 9)?).ok()
}

fn time(name: &str, v: &Value) -> Result<i64, ParseError> {
    let parsed = match v {
        // A float shows as its shortest exact decimal (never in exponent
        // form), so `1549573860.123` stays exactly .123.
        Value::Number(n) => numeric_time(&n.to_string()),
        Value::String(s) => parse_rfc3339(s)
            .or_else(|| parse_clf_time(s))
            .or_else(|| numeric_time(s)),
        _ => return err(format!("field `{name}` is not a time")),
    };
    match parsed {
        Some(t) => Ok(t),
        None => err(format!("bad timestamp `{}`", snippet(&v.to_string()))),
    }
}

pub(super) fn parse(
    line: &str,
    scratch: &mut String,
    out: &mut Event,
) -> Result<Parsed, ParseError> {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return err(format!("invalid JSON: {e}")),
    };
    let Value::Object(map) = value else {
        return err("not a JSON object");
    };

    let Some((name, t)) = get(&map, TIME) else {
        return err("no time field");
    };
    out.timestamp = time(name, t)?;

    out.status = match get(&map, &["status"]) {
        None => return err("no status field"),
        Some((_, Value::Number(n))) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(s) => s,
            None => return err(format!("bad status `{n}`")),
        },
        Some((_, Value::String(s))) => parse_status(s)?,
        Some(_) => return err("field `status` is not a number"),
    };

    out.bytes = match get(&map, BYTES) {
        None => 0,
        Some((_, Value::Number(n))) => match n.as_u64() {
            Some(b) => b,
            None => return err(format!("bad byte count `{n}`")),
        },
        Some((name, v)) => parse_bytes(&numeric_text(name, v)?)?,
    };

    out.duration_us = match (get(&map, &["request_time"]), get(&map, &["duration_us"])) {
        (Some((name, v)), _) => {
            let text = numeric_text(name, v)?;
            if text.trim() == "-" {
                None
            } else {
                match parse_seconds_to_micros(&text) {
                    Some(us) => Some(us),
                    None => return err(format!("bad request time `{}`", snippet(&text))),
                }
            }
        }
        (None, Some((name, v))) => {
            let text = numeric_text(name, v)?;
            match super::parse_u64(text.trim().as_bytes()) {
                Some(us) => Some(us),
                None => return err(format!("bad duration `{}`", snippet(&text))),
            }
        }
        (None, None) => None,
    };

    match get(&map, &["request"]) {
        Some((_, Value::String(r)))
            if (!r.is_empty() && r != "-") || get(&map, METHOD).is_none() =>
        {
            split_request(r, out)?
        }
        Some((_, v)) if !v.is_string() => return err("field `request` is not a string"),
        _ => {
            let Some(method) = get_str(&map, METHOD, scratch)?.map(str::to_owned) else {
                return err("no request (or method) field");
            };
            let Some(path) = get_str(&map, PATH, scratch)?.map(str::to_owned) else {
                return err("no path field");
            };
            set(&mut out.method, &method);
            set(&mut out.path, &path);
            let protocol = get_str(&map, PROTOCOL, scratch)?.unwrap_or("");
            set(&mut out.protocol, protocol);
        }
    }

    let client = get_str(&map, CLIENT, scratch)?.unwrap_or("");
    set(&mut out.client, client);
    let user = get_str(&map, USER, scratch)?.unwrap_or("");
    set_user(&mut out.user, user);
    let referer = get_str(&map, REFERER, scratch)?.unwrap_or("");
    set_opt(&mut out.referer, referer);
    let agent = get_str(&map, AGENT, scratch)?.unwrap_or("");
    set_opt(&mut out.user_agent, agent);
    Ok(Parsed::Event)
}
