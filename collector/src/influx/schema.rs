//! logmon's InfluxDB schema: events, per-second traffic rollups and alert
//! transitions rendered as line protocol with
//! [`influxdb_line_protocol::LineProtocolBuilder`], never by concatenation.
//!
//! | measurement     | tags                              | fields |
//! |-----------------|-----------------------------------|--------|
//! | `http_requests` | host, section, method, status     | path, client, user (strings), bytes (integer), referer, user_agent (strings, when known), duration_us (integer, when known), labels (string, when the event has labels of its own: `k=v` joined by `,`) |
//! | `http_traffic`  | host, section                     | hits, bytes, status_1xx … status_5xx (integers) |
//! | `alerts`        | rule, key, state                  | value (float, when finite), message (string) |
//!
//! Invariants:
//! - every line is one physical line: the builder escapes what line protocol
//!   needs, and CR/LF inside values (which line protocol cannot carry in a
//!   tag and which would break batch splitting) become spaces;
//! - a tag whose value is empty is left out, which is how InfluxDB stores an
//!   empty tag anyway (`WHERE "key" = ''` matches it);
//! - integers are signed (`i` suffix): InfluxDB 1.x rejects unsigned fields
//!   unless built with them, so `u64` counts saturate at `i64::MAX`;
//! - InfluxDB keeps one point per (measurement, tag set, timestamp), so
//!   [`TimestampDeduper`] makes the timestamps of colliding requests unique
//!   and every request is stored.

use crate::rules::{AlertState, Transition};
use influxdb_line_protocol::LineProtocolBuilder;
use logmon_protocol::Event;
use logmon_protocol::event::NANOS_PER_SEC;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// Raw requests, one point each.
pub const HTTP_REQUESTS: &str = "http_requests";
/// Per-second, per-section rollups.
pub const HTTP_TRAFFIC: &str = "http_traffic";
/// Alert transitions.
pub const ALERTS: &str = "alerts";

/// How many seconds behind the newest one [`TimestampDeduper`] and
/// [`TrafficRollup`] keep their per-second state by default.
pub const DEFAULT_HORIZON_SECS: u32 = 60;

/// A body of line protocol being built: newline-terminated lines and their
/// count.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    buf: Vec<u8>,
    count: usize,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    pub fn with_capacity(bytes: usize) -> Lines {
        Lines {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }

    /// Starts a line appended to this buffer; the line counts once the
    /// caller has closed it (every caller here closes what it opens).
    fn line(&mut self) -> LineProtocolBuilder<&mut Vec<u8>> {
        self.count += 1;
        LineProtocolBuilder::new_with(&mut self.buf)
    }
}

/// `s` with CR and LF replaced by spaces (borrowed when there are none).
fn one_line(s: &str) -> Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        Cow::Owned(s.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` as a tag value: on one line, and without a trailing backslash, which
/// InfluxDB 1.x cannot read (it takes `\\,` for an escaped comma and
/// refuses the line: `invalid tag format`, checked with influxd 1.6; found
/// by fuzzing, target `rule_answer`). Each trailing backslash is written
/// `%5C`, as in a URL: a section `/a\` is stored as `/a%5C`.
fn tag_value(s: &str) -> Cow<'_, str> {
    let s = one_line(s);
    if !s.ends_with('\\') {
        return s;
    }
    let kept = s.trim_end_matches('\\');
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(kept);
    for _ in 0..s.len() - kept.len() {
        out.push_str("%5C");
    }
    Cow::Owned(out)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stable 64-bit FNV-1a hash of a tag set, its parts separated by a byte
/// that cannot occur in them. Two tag sets that hash alike merely share a
/// collision counter in [`TimestampDeduper`]: their points still get
/// distinct timestamps.
pub fn series_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Makes the timestamps of points of one series unique.
///
/// For each (series, second) it remembers the last timestamp it handed out;
/// a point of that series and second gets `max(its timestamp, last + 1 ns)`.
/// Timestamps handed out within a (series, second) therefore strictly
/// increase, and a point never leaves its second (short of a billion points
/// of one series in one second, or collisions within the last nanoseconds of
/// a second — log timestamps are whole seconds, milli- or microseconds).
///
/// Memory is bounded: state is kept only for seconds at most `horizon`
/// seconds behind the newest second seen, and dropped as time moves past
/// them, so it holds at most (distinct series per second) × (horizon + 1)
/// entries. A point later than the horizon gets state that lives only until
/// the next newest second, so it could collide with a point written before;
/// with the default horizon of 60 s and the engine's 5 s of lateness such a
/// point is far beyond lateness anyway.
///
/// The outcome depends only on the sequence of (series, timestamp) given,
/// so replaying the same events from the same starting point reproduces the
/// same timestamps and rewrites the same points.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TimestampDeduper {
    horizon: i64,
    newest: Option<i64>,
    /// second → series → last timestamp handed out.
    seconds: BTreeMap<i64, HashMap<u64, i64>>,
}

impl Default for TimestampDeduper {
    fn default() -> Self {
        TimestampDeduper::new(DEFAULT_HORIZON_SECS)
    }
}

impl TimestampDeduper {
    pub fn new(horizon_secs: u32) -> TimestampDeduper {
        TimestampDeduper {
            horizon: i64::from(horizon_secs),
            newest: None,
            seconds: BTreeMap::new(),
        }
    }

    /// The timestamp to store a point of `series` at, for a point that
    /// happened at `ts` (nanoseconds).
    pub fn unique(&mut self, series: u64, ts: i64) -> i64 {
        let second = ts.div_euclid(NANOS_PER_SEC);
        if self.newest.is_none_or(|n| second > n) {
            self.newest = Some(second);
            // Keep seconds newest - horizon ..= newest.
            self.seconds = self.seconds.split_off(&(second - self.horizon));
        }
        let last = self.seconds.entry(second).or_default().entry(series);
        match last {
            std::collections::hash_map::Entry::Vacant(e) => *e.insert(ts),
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let next = ts.max(e.get().saturating_add(1));
                e.insert(next);
                next
            }
        }
    }

    /// Number of (series, second) entries held.
    pub fn entries(&self) -> usize {
        self.seconds.values().map(HashMap::len).sum()
    }

    /// Number of seconds held.
    pub fn seconds(&self) -> usize {
        self.seconds.len()
    }
}

/// Renders events as `http_requests` points with collision-free timestamps.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RequestEncoder {
    deduper: TimestampDeduper,
}

impl RequestEncoder {
    pub fn new(horizon_secs: u32) -> RequestEncoder {
        RequestEncoder {
            deduper: TimestampDeduper::new(horizon_secs),
        }
    }

    pub fn deduper(&self) -> &TimestampDeduper {
        &self.deduper
    }

    /// Appends `event`, served by `host`, to `out`.
    pub fn push(&mut self, out: &mut Lines, host: &str, event: &Event) {
        let host = tag_value(host);
        let section = tag_value(event.section());
        let method = tag_value(&event.method);
        let mut status = itoa_u16(event.status);
        let status = status.as_str();
        let series = series_hash(&[
            host.as_bytes(),
            section.as_bytes(),
            method.as_bytes(),
            status.as_bytes(),
        ]);
        let ts = self.deduper.unique(series, event.timestamp);

        let mut line = out.line().measurement(HTTP_REQUESTS);
        for (key, value) in [
            ("host", &*host),
            ("section", &*section),
            ("method", &*method),
            ("status", status),
        ] {
            if !value.is_empty() {
                line = line.tag(key, value);
            }
        }
        let mut line = line
            .field("path", &*one_line(&event.path))
            .field("client", &*one_line(&event.client))
            .field("user", &*one_line(&event.user))
            .field("bytes", saturating_i64(event.bytes));
        if let Some(referer) = &event.referer {
            line = line.field("referer", &*one_line(referer));
        }
        if let Some(agent) = &event.user_agent {
            line = line.field("user_agent", &*one_line(agent));
        }
        if let Some(us) = event.duration_us {
            line = line.field("duration_us", saturating_i64(us));
        }
        // An event's own labels (an edge filter's, a format's unknown
        // variables) are a field, not tags: their values are the user's
        // and could be of any cardinality.
        if !event.labels.is_empty() {
            let labels: Vec<String> = event
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line = line.field("labels", &*one_line(&labels.join(",")));
        }
        line.timestamp(ts).close_line();
    }
}

/// A status code as text without allocating.
struct StatusText {
    buf: [u8; 5],
    len: usize,
}

impl StatusText {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits")
    }
}

fn itoa_u16(n: u16) -> StatusText {
    let mut digits = [0u8; 5];
    let mut len = 0;
    let mut n = n;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[..len].reverse();
    StatusText { buf: digits, len }
}

/// Counts of one (host, section) in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SectionTraffic {
    pub hits: u64,
    pub bytes: u64,
    /// Hits per status class, `[1xx, 2xx, 3xx, 4xx, 5xx]`; codes outside
    /// 100–599 count in `hits` only.
    pub classes: [u64; 5],
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Tracked {
    traffic: SectionTraffic,
    /// Changed since it was last emitted.
    dirty: bool,
}

/// Per-second, per-(host, section) rollups for `http_traffic`.
///
/// A second's point always carries the second's full totals so far, so a
/// second written again (its events spanned batches, or came late) simply
/// overwrites the earlier, smaller point. That needs the totals in memory:
/// they are kept for seconds at most `horizon` seconds behind the newest
/// second seen, and dropped after they have been flushed. An event for a
/// second older than that is counted in [`TrafficRollup::too_late`] and left
/// out of the rollups (it is still stored raw in `http_requests`): adding it
/// to a fresh total would overwrite the real one.
///
/// The totals are part of the store consumer's snapshot, so after a restart
/// a second whose events straddle the restart point is rewritten with its
/// full totals (see [`crate::influx::consumer`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrafficRollup {
    horizon: i64,
    newest: Option<i64>,
    seconds: BTreeMap<i64, HashMap<String, HashMap<String, Tracked>>>,
    too_late: u64,
}

impl Default for TrafficRollup {
    fn default() -> Self {
        TrafficRollup::new(DEFAULT_HORIZON_SECS)
    }
}

impl TrafficRollup {
    pub fn new(horizon_secs: u32) -> TrafficRollup {
        TrafficRollup {
            horizon: i64::from(horizon_secs),
            newest: None,
            seconds: BTreeMap::new(),
            too_late: 0,
        }
    }

    /// Events left out of the rollups because their second had already
    /// been dropped.
    pub fn too_late(&self) -> u64 {
        self.too_late
    }

    /// Counts `event`, served by `host`.
    pub fn add(&mut self, host: &str, event: &Event) {
        let second = event.second();
        if self.newest.is_some_and(|n| second < n - self.horizon) {
            self.too_late += 1;
            return;
        }
        self.newest = Some(self.newest.map_or(second, |n| n.max(second)));
        let hosts = self.seconds.entry(second).or_default();
        let sections = match hosts.get_mut(host) {
            Some(s) => s,
            None => hosts.entry(host.to_owned()).or_default(),
        };
        let section = event.section();
        let tracked = match sections.get_mut(section) {
            Some(t) => t,
            None => sections.entry(section.to_owned()).or_default(),
        };
        let t = &mut tracked.traffic;
        t.hits += 1;
        t.bytes = t.bytes.saturating_add(event.bytes);
        if let 100..=599 = event.status {
            t.classes[usize::from(event.status / 100 - 1)] += 1;
        }
        tracked.dirty = true;
    }

    /// The totals of one (second, host, section), if still held.
    pub fn get(&self, second: i64, host: &str, section: &str) -> Option<SectionTraffic> {
        Some(self.seconds.get(&second)?.get(host)?.get(section)?.traffic)
    }

    /// Appends a point for every (second, host, section) that changed since
    /// the last flush, with its full totals, then drops the seconds past the
    /// horizon. Returns the number of points appended.
    pub fn flush(&mut self, out: &mut Lines) -> usize {
        let mut points = 0;
        for (&second, hosts) in &mut self.seconds {
            let ts = second.saturating_mul(NANOS_PER_SEC);
            for (host, sections) in hosts.iter_mut() {
                let host = tag_value(host);
                for (section, tracked) in sections.iter_mut() {
                    if !tracked.dirty {
                        continue;
                    }
                    tracked.dirty = false;
                    points += 1;
                    let mut line = out.line().measurement(HTTP_TRAFFIC);
                    if !host.is_empty() {
                        line = line.tag("host", &host);
                    }
                    let t = &tracked.traffic;
                    line.tag("section", &tag_value(section))
                        .field("hits", saturating_i64(t.hits))
                        .field("bytes", saturating_i64(t.bytes))
                        .field("status_1xx", saturating_i64(t.classes[0]))
                        .field("status_2xx", saturating_i64(t.classes[1]))
                        .field("status_3xx", saturating_i64(t.classes[2]))
                        .field("status_4xx", saturating_i64(t.classes[3]))
                        .field("status_5xx", saturating_i64(t.classes[4]))
                        .timestamp(ts)
                        .close_line();
                }
            }
        }
        if let Some(newest) = self.newest {
            self.seconds = self.seconds.split_off(&(newest - self.horizon));
        }
        points
    }
}

/// Appends an `alerts` point: a transition of (`rule`, `key`) to `state` at
/// `at` (Unix seconds of event time). A non-finite `value` (which line
/// protocol cannot carry) leaves the `value` field out.
pub fn push_alert(
    out: &mut Lines,
    rule: &str,
    key: &str,
    state: AlertState,
    at: i64,
    value: f64,
    message: &str,
) {
    let state = match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    let rule = tag_value(rule);
    let key = tag_value(key);
    let mut line = out.line().measurement(ALERTS);
    if !rule.is_empty() {
        line = line.tag("rule", &rule);
    }
    if !key.is_empty() {
        line = line.tag("key", &key);
    }
    let line = line.tag("state", state);
    let line = if value.is_finite() {
        line.field("value", value)
            .field("message", &*one_line(message))
    } else {
        line.field("message", &*one_line(message))
    };
    line.timestamp(at.saturating_mul(NANOS_PER_SEC))
        .close_line();
}

/// [`push_alert`] for an engine [`Transition`].
pub fn push_transition(out: &mut Lines, t: &Transition) {
    push_alert(out, &t.rule, &t.key, t.state, t.at, t.value, &t.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, method: &str, path: &str, status: u16, bytes: u64) -> Event {
        Event {
            timestamp: ts,
            client: "10.0.0.1".into(),
            user: "-".into(),
            method: method.into(),
            path: path.into(),
            protocol: "HTTP/1.1".into(),
            status,
            bytes,
            referer: None,
            user_agent: None,
            duration_us: None,
            labels: Vec::new(),
        }
    }

    const S: i64 = 1_549_573_860 * NANOS_PER_SEC;

    #[test]
    fn request_line_has_the_documented_schema() {
        let mut out = Lines::new();
        let mut enc = RequestEncoder::default();
        let mut e = event(S, "GET", "/api/user?id=1", 200, 1234);
        e.user = String::new();
        e.referer = Some("http://x/\"q\"".into());
        e.user_agent = Some("curl/8 (a, b)".into());
        e.duration_us = Some(1500);
        enc.push(&mut out, "web 1", &e);
        assert_eq!(out.len(), 1);
        assert_eq!(
            std::str::from_utf8(out.as_bytes()).unwrap(),
            "http_requests,host=web\\ 1,section=/api,method=GET,status=200 \
             path=\"/api/user?id=1\",client=\"10.0.0.1\",user=\"\",bytes=1234i,\
             referer=\"http://x/\\\"q\\\"\",user_agent=\"curl/8 (a, b)\",duration_us=1500i \
             1549573860000000000\n"
        );
        let mut out = Lines::new();
        e.labels = vec![
            ("route".into(), "api".into()),
            ("team".into(), "a b".into()),
        ];
        enc.push(&mut out, "web", &e);
        let text = std::str::from_utf8(out.as_bytes()).unwrap();
        assert!(
            text.contains(",duration_us=1500i,labels=\"route=api,team=a b\" "),
            "{text}"
        );
    }

    #[test]
    fn lines_are_parsed_back_by_the_reference_parser() {
        let mut out = Lines::new();
        let mut enc = RequestEncoder::default();
        let mut e = event(S, "", "/a,b c=d\\x\n/y", 404, u64::MAX);
        e.user_agent = Some("line\r\nbreak".into());
        enc.push(&mut out, "", &e);
        let text = std::str::from_utf8(out.as_bytes()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(text)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed.len(), 1);
        let line = &parsed[0];
        assert_eq!(line.series.measurement.as_str(), HTTP_REQUESTS);
        // Empty host and method are left out.
        let tags: Vec<(String, String)> = line
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            tags,
            [
                ("section".into(), "/a,b c=d\\x ".into()),
                ("status".into(), "404".into())
            ]
        );
        assert_eq!(
            line.field_value("bytes"),
            Some(&influxdb_line_protocol::FieldValue::I64(i64::MAX))
        );
        assert_eq!(
            line.field_value("user_agent"),
            Some(&influxdb_line_protocol::FieldValue::String(
                "line  break".into()
            ))
        );
    }

    #[test]
    fn colliding_timestamps_are_bumped_by_one_nanosecond() {
        let mut d = TimestampDeduper::new(2);
        assert_eq!(d.unique(1, S), S);
        assert_eq!(d.unique(1, S), S + 1);
        assert_eq!(d.unique(2, S), S, "another series has its own counter");
        assert_eq!(d.unique(1, S), S + 2);
        // A distinct sub-second time is kept when free...
        assert_eq!(d.unique(1, S + 500), S + 500);
        // ...and one behind what was handed out moves just past it.
        assert_eq!(d.unique(1, S + 100), S + 501);
        assert_eq!(d.unique(1, S + 501), S + 502);
        // Events of the next second start afresh, and the old second is kept
        // within the horizon for late events.
        assert_eq!(d.unique(1, S + NANOS_PER_SEC), S + NANOS_PER_SEC);
        assert_eq!(d.unique(1, S), S + 503);
        assert_eq!(d.seconds(), 2);
    }

    #[test]
    fn deduper_memory_stays_within_the_horizon() {
        let mut d = TimestampDeduper::new(3);
        for s in 0..1000 {
            for series in 0..10 {
                for _ in 0..5 {
                    d.unique(series, S + s * NANOS_PER_SEC);
                }
            }
            assert!(d.seconds() <= 4, "{} seconds held", d.seconds());
            assert!(d.entries() <= 40);
        }
        assert_eq!(d.seconds(), 4);
    }

    #[test]
    fn deduper_is_deterministic_and_unique_per_series() {
        // A pseudo-random but fixed sequence with heavy collisions and
        // disorder: same input, same output; never two equal timestamps in
        // one series; every point stays in its own second.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut input = Vec::new();
        for i in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let second = i / 100 - (x % 4) as i64;
            let sub = if x.is_multiple_of(3) {
                (x >> 8) as i64 % 1000
            } else {
                0
            };
            input.push((x % 5, S + second * NANOS_PER_SEC + sub));
        }
        let run = |input: &[(u64, i64)]| {
            let mut d = TimestampDeduper::new(10);
            input
                .iter()
                .map(|&(s, t)| d.unique(s, t))
                .collect::<Vec<_>>()
        };
        let a = run(&input);
        assert_eq!(a, run(&input));
        let mut seen = std::collections::HashSet::new();
        for (&(series, ts), &out) in input.iter().zip(&a) {
            assert!(seen.insert((series, out)), "duplicate {series} {out}");
            assert_eq!(out.div_euclid(NANOS_PER_SEC), ts.div_euclid(NANOS_PER_SEC));
            assert!(out >= ts);
        }
    }

    #[test]
    fn rollups_rewrite_full_totals_and_drop_past_the_horizon() {
        let mut r = TrafficRollup::new(2);
        let mut out = Lines::new();
        r.add("h", &event(S, "GET", "/api/a", 200, 10));
        r.add("h", &event(S + 5, "GET", "/api/b", 503, 20));
        r.add("h", &event(S, "GET", "/x", 404, 1));
        assert_eq!(r.flush(&mut out), 2);
        let mut lines: Vec<&str> = std::str::from_utf8(out.as_bytes())
            .unwrap()
            .lines()
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "http_traffic,host=h,section=/api hits=2i,bytes=30i,status_1xx=0i,status_2xx=1i,\
                 status_3xx=0i,status_4xx=0i,status_5xx=1i 1549573860000000000",
                "http_traffic,host=h,section=/x hits=1i,bytes=1i,status_1xx=0i,status_2xx=0i,\
                 status_3xx=0i,status_4xx=1i,status_5xx=0i 1549573860000000000",
            ]
        );
        // Nothing changed: nothing to write.
        out.clear();
        assert_eq!(r.flush(&mut out), 0);
        // A late event rewrites its second with the full total.
        r.add("h", &event(S + 7, "GET", "/api", 302, 5));
        r.add("h", &event(S + 3 * NANOS_PER_SEC, "GET", "/x", 200, 1));
        assert_eq!(r.flush(&mut out), 2);
        assert!(
            std::str::from_utf8(out.as_bytes()).unwrap().contains(
                "section=/api hits=3i,bytes=35i,status_1xx=0i,status_2xx=1i,status_3xx=1i"
            )
        );
        // S is now 3 s behind the newest second with a 2 s horizon: dropped.
        assert_eq!(r.get(S / NANOS_PER_SEC, "h", "/api"), None);
        r.add("h", &event(S, "GET", "/api", 200, 5));
        assert_eq!(r.too_late(), 1);
    }

    #[test]
    fn alert_lines_carry_rule_key_and_state() {
        let mut out = Lines::new();
        push_alert(
            &mut out,
            "high-traffic",
            "",
            AlertState::Firing,
            1_549_573_980,
            10.5,
            "High traffic",
        );
        push_alert(
            &mut out,
            "error-rate",
            "/api",
            AlertState::Resolved,
            1_549_574_000,
            f64::NAN,
            "ok",
        );
        assert_eq!(
            std::str::from_utf8(out.as_bytes()).unwrap(),
            "alerts,rule=high-traffic,state=firing value=10.5,message=\"High traffic\" 1549573980000000000\n\
             alerts,rule=error-rate,key=/api,state=resolved message=\"ok\" 1549574000000000000\n"
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn status_text_is_decimal() {
        for n in [0u16, 7, 200, 404, 65535] {
            assert_eq!(itoa_u16(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn tag_values_never_end_with_a_backslash() {
        assert_eq!(super::tag_value("/a\\\\"), "/a%5C%5C");
        assert_eq!(super::tag_value("/a\\b"), "/a\\b");
        assert_eq!(super::tag_value("x\ny"), "x y");
        let mut out = Lines::new();
        push_alert(&mut out, "r\\", "k\\", AlertState::Firing, 1, 2.0, "m\\");
        assert_eq!(
            std::str::from_utf8(out.as_bytes()).unwrap(),
            "alerts,rule=r%5C,key=k%5C,state=firing value=2,message=\"m\\\\\" 1000000000\n"
        );
    }
}
