//! A deterministic generator of realistic HTTP access-log traffic, for demos,
//! load tests and end-to-end tests (`logmon-collector generate`).
//!
//! Per second of event time the number of requests is drawn from a Poisson
//! distribution around the rate in force (the base rate, a burst's rate, or
//! zero inside a gap). Sections follow a Zipf-like popularity, clients too;
//! methods, statuses (with some sections worse than others), byte counts
//! (log-normal), user agents, referers and request times look like a real
//! site's. Events are written with bounded disorder: an event is never
//! written after one more than `disorder` seconds newer than it.
//!
//! The same [`TrafficSpec`] (seed included) always gives the same bytes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::{self, Write as _};
use std::io;
use std::str::FromStr;

use logmon_protocol::event::NANOS_PER_SEC;
use logmon_protocol::render::{header, render};
use logmon_protocol::{Event, Format, LineParser, Parsed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What traffic to generate.
#[derive(Debug, Clone)]
pub struct TrafficSpec {
    /// Output log format.
    pub format: Format,
    /// How many lines to write (the CSV header not counted).
    pub lines: u64,
    /// Unix seconds of the first event.
    pub start: i64,
    /// Mean requests per second outside bursts.
    pub base_rate: f64,
    /// Rate overrides.
    pub bursts: Vec<Burst>,
    /// Periods of silence (they win over bursts).
    pub gaps: Vec<Gap>,
    /// Max seconds an event may be written out of order (0 = sorted).
    pub disorder: u32,
    /// Overall share of 5xx responses; some sections are worse than others.
    pub error_rate: f64,
    /// Number of distinct sections.
    pub sections: usize,
    /// Number of distinct clients.
    pub clients: usize,
    /// Seed of the random generator.
    pub seed: u64,
    /// Write each second's lines when the wall clock reaches the second
    /// after it (a live log for the agent to tail) instead of at once.
    pub pace: bool,
}

/// A period with its own mean rate: from `at` seconds after the start, for
/// `duration` seconds, `rate` requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub at: i64,
    pub duration: i64,
    pub rate: f64,
}

/// A period of silence: from `at` seconds after the start, for `duration`
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub at: i64,
    pub duration: i64,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            format: Format::Csv,
            lines: 10_000,
            start: 1_549_573_860,
            base_rate: 8.0,
            bursts: vec![Burst {
                at: 300,
                duration: 180,
                rate: 25.0,
            }],
            gaps: vec![Gap {
                at: 900,
                duration: 300,
            }],
            disorder: 2,
            error_rate: 0.02,
            sections: 12,
            clients: 50,
            seed: 1,
            pace: false,
        }
    }
}

/// A `Burst` or `Gap` that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn field<T: FromStr>(s: &str, what: &str, whole: &str, form: &str) -> Result<T, SpecError> {
    s.trim()
        .parse()
        .map_err(|_| SpecError(format!("bad {what} `{s}` in `{whole}` (expected {form})")))
}

impl FromStr for Burst {
    type Err = SpecError;

    /// `AT:DURATION:RATE`, e.g. `300:180:25`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "AT:DURATION:RATE";
        let parts: Vec<&str> = s.split(':').collect();
        let [at, duration, rate] = parts[..] else {
            return Err(SpecError(format!("bad burst `{s}` (expected {FORM})")));
        };
        let burst = Burst {
            at: field(at, "start", s, FORM)?,
            duration: field(duration, "duration", s, FORM)?,
            rate: field(rate, "rate", s, FORM)?,
        };
        if burst.duration < 0 || !burst.rate.is_finite() || burst.rate < 0.0 {
            return Err(SpecError(format!(
                "bad burst `{s}`: duration and rate must be non-negative"
            )));
        }
        Ok(burst)
    }
}

impl FromStr for Gap {
    type Err = SpecError;

    /// `AT:DURATION`, e.g. `900:300`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "AT:DURATION";
        let parts: Vec<&str> = s.split(':').collect();
        let [at, duration] = parts[..] else {
            return Err(SpecError(format!("bad gap `{s}` (expected {FORM})")));
        };
        let gap = Gap {
            at: field(at, "start", s, FORM)?,
            duration: field(duration, "duration", s, FORM)?,
        };
        if gap.duration < 0 {
            return Err(SpecError(format!(
                "bad gap `{s}`: duration must be non-negative"
            )));
        }
        Ok(gap)
    }
}

// --- vocabulary -----------------------------------------------------------------

const SECTIONS: &[&str] = &[
    "/api",
    "/",
    "/static",
    "/report",
    "/users",
    "/products",
    "/search",
    "/orders",
    "/images",
    "/blog",
    "/login",
    "/cart",
    "/checkout",
    "/help",
    "/docs",
    "/admin",
    "/account",
    "/news",
    "/pages",
    "/media",
];
const RESOURCES: &[&str] = &[
    "user",
    "orders",
    "list",
    "item",
    "help",
    "update",
    "create",
    "details",
    "index.html",
    "stats",
    "export",
    "settings",
    "style.css",
    "app.js",
    "logo.png",
    "feed",
];
const QUERIES: &[&str] = &[
    "x=1",
    "page=2",
    "q=shoes",
    "sort=desc&limit=50",
    "lang=en",
    "utm_source=newsletter",
];
const USERS: &[&str] = &["apache", "alice", "bob", "carol", "dave", "erin", "mallory"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "curl/8.7.1",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Go-http-client/1.1",
];
const REFERERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.bing.com/search?q=logmon",
    "https://news.ycombinator.com/",
    "https://t.co/x1y2z3",
];
const METHODS: &[(&str, u32)] = &[
    ("GET", 800),
    ("POST", 120),
    ("PUT", 30),
    ("DELETE", 20),
    ("HEAD", 20),
    ("PATCH", 6),
    ("OPTIONS", 4),
];
const OK_STATUSES: &[(u16, u32)] = &[
    (200, 860),
    (201, 10),
    (204, 10),
    (301, 10),
    (302, 20),
    (304, 40),
    (400, 10),
    (401, 8),
    (403, 7),
    (404, 40),
    (429, 5),
];
const ERROR_STATUSES: &[(u16, u32)] = &[(500, 50), (502, 20), (503, 20), (504, 10)];
const PROTOCOLS: &[(&str, u32)] = &[("HTTP/1.1", 80), ("HTTP/2.0", 17), ("HTTP/1.0", 3)];

/// Cumulative weights for sampling an index.
#[derive(Debug, Clone)]
struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect();
        Weighted { cumulative }
    }

    /// Weights `1 / (k + 1)^s`: Zipf-like popularity.
    fn zipf(n: usize, s: f64) -> Self {
        Weighted::new((0..n.max(1)).map(|k| 1.0 / ((k + 1) as f64).powf(s)))
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

fn table<T: Copy>(items: &[(T, u32)]) -> (Vec<T>, Weighted) {
    (
        items.iter().map(|&(t, _)| t).collect(),
        Weighted::new(items.iter().map(|&(_, w)| f64::from(w))),
    )
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson sample: exact (Knuth) for small means, normal approximation above.
fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p: f64 = rng.random();
        while p > limit {
            k += 1;
            p *= rng.random::<f64>();
        }
        return k;
    }
    (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64
}

/// One generated request, compact: indices into the vocabulary.
#[derive(Debug, Clone, Copy)]
struct Request {
    timestamp: i64,
    client: u32,
    section: u32,
    resource: u16,
    /// 0 = the bare section, 1 = `/section/resource`, 2 = with an id, 3 = with a query.
    shape: u8,
    id: u32,
    query: u8,
    method: u8,
    protocol: u8,
    status: u16,
    bytes: u64,
    referer: Option<u8>,
    duration_us: u64,
}

/// A request waiting in the disorder buffer, ordered by its write key.
#[derive(Debug)]
struct Pending {
    key: i64,
    seq: u64,
    request: Request,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so that `BinaryHeap` pops the smallest key first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.key, other.seq).cmp(&(self.key, self.seq))
    }
}

/// Everything drawn once per run: the site and its visitors.
#[derive(Debug)]
struct Site {
    sections: Vec<String>,
    section_weights: Weighted,
    /// Per-section share of 5xx responses.
    section_errors: Vec<f64>,
    clients: Vec<String>,
    client_users: Vec<&'static str>,
    client_agents: Vec<u8>,
    client_weights: Weighted,
    methods: (Vec<&'static str>, Weighted),
    ok_statuses: (Vec<u16>, Weighted),
    error_statuses: (Vec<u16>, Weighted),
    protocols: (Vec<&'static str>, Weighted),
}

impl Site {
    fn new(spec: &TrafficSpec, rng: &mut StdRng) -> Site {
        let n_sections = spec.sections.max(1);
        let sections: Vec<String> = (0..n_sections)
            .map(|i| {
                SECTIONS
                    .get(i)
                    .map_or_else(|| format!("/section{i}"), |s| (*s).to_owned())
            })
            .collect();
        let section_weights = Weighted::zipf(n_sections, 1.1);
        // Every fourth section (from the third) is three times as error-prone;
        // scale so the traffic-weighted mean is the spec's error rate.
        let multipliers: Vec<f64> = (0..n_sections)
            .map(|i| if i % 4 == 2 { 3.0 } else { 1.0 })
            .collect();
        let total = section_weights.cumulative.last().copied().unwrap_or(1.0);
        let mut previous = 0.0;
        let mean: f64 = section_weights
            .cumulative
            .iter()
            .zip(&multipliers)
            .map(|(&c, &m)| {
                let w = c - previous;
                previous = c;
                w * m / total
            })
            .sum();
        let error_rate = if spec.error_rate.is_finite() {
            spec.error_rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let section_errors = multipliers
            .iter()
            .map(|m| (error_rate * m / mean).min(1.0))
            .collect();

        let n_clients = spec.clients.max(1);
        let mut clients = Vec::with_capacity(n_clients);
        let mut client_users = Vec::with_capacity(n_clients);
        let mut client_agents = Vec::with_capacity(n_clients);
        for i in 0..n_clients {
            // Private addresses for the busiest few (like the exercise's
            // 10.0.0.x), public-looking ones for the rest; all distinct.
            let ip = if i < 8 {
                format!("10.0.0.{}", i + 1)
            } else {
                let a = [81u32, 93, 104, 151, 172, 185, 203, 212][rng.random_range(0..8)];
                format!("{a}.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
            };
            clients.push(ip);
            client_users.push(if rng.random::<f64>() < 0.3 {
                USERS[rng.random_range(0..USERS.len())]
            } else {
                "-"
            });
            client_agents.push(rng.random_range(0..AGENTS.len()) as u8);
        }
        Site {
            sections,
            section_weights,
            section_errors,
            clients,
            client_users,
            client_agents,
            client_weights: Weighted::zipf(n_clients, 0.9),
            methods: table(METHODS),
            ok_statuses: table(OK_STATUSES),
            error_statuses: table(ERROR_STATUSES),
            protocols: table(PROTOCOLS),
        }
    }

    fn request(&self, rng: &mut StdRng, timestamp: i64) -> Request {
        let section = self.section_weights.pick(rng);
        let method = self.methods.1.pick(rng);
        let status = if rng.random::<f64>() < self.section_errors[section] {
            self.error_statuses.0[self.error_statuses.1.pick(rng)]
        } else {
            let s = self.ok_statuses.0[self.ok_statuses.1.pick(rng)];
            match (self.methods.0[method], s) {
                ("POST", 200) if rng.random::<f64>() < 0.3 => 201,
                (_, s) => s,
            }
        };
        let method_name = self.methods.0[method];
        let bytes = if matches!(status, 204 | 304) || method_name == "HEAD" {
            0
        } else if status >= 300 {
            (150.0 * (0.3 * normal(rng)).exp()) as u64
        } else {
            // Log-normal around 2 kB with a heavy tail.
            ((7.6 + 1.2 * normal(rng)).exp() as u64).min(50_000_000)
        };
        let slow = if status >= 500 { 8.0 } else { 1.0 };
        let duration_us = ((10.0 + 1.0 * normal(rng)).exp() * slow) as u64;
        let shape = match rng.random_range(0..10u8) {
            0 => 0,
            1..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        Request {
            timestamp,
            client: self.client_weights.pick(rng) as u32,
            section: section as u32,
            resource: rng.random_range(0..RESOURCES.len()) as u16,
            shape,
            id: rng.random_range(1..100_000),
            query: rng.random_range(0..QUERIES.len()) as u8,
            method: method as u8,
            protocol: self.protocols.1.pick(rng) as u8,
            status,
            bytes,
            referer: if rng.random::<f64>() < 0.6 {
                Some(rng.random_range(0..REFERERS.len() + 1) as u8)
            } else {
                None
            },
            duration_us,
        }
    }

    /// Writes `r` into the reusable `event`.
    fn fill(&self, r: &Request, with_extras: bool, event: &mut Event) {
        event.timestamp = r.timestamp;
        set(&mut event.client, &self.clients[r.client as usize]);
        let user = self.client_users[r.client as usize];
        set(&mut event.user, if user == "-" { "" } else { user });
        set(&mut event.method, self.methods.0[r.method as usize]);
        let section = &self.sections[r.section as usize];
        let base = if section == "/" { "" } else { section.as_str() };
        let resource = RESOURCES[r.resource as usize];
        event.path.clear();
        let _ = match r.shape {
            0 => write!(event.path, "{section}"),
            1 => write!(event.path, "{base}/{resource}"),
            2 => write!(event.path, "{base}/{resource}/{}", r.id),
            _ => write!(
                event.path,
                "{base}/{resource}?{}",
                QUERIES[r.query as usize]
            ),
        };
        set(&mut event.protocol, self.protocols.0[r.protocol as usize]);
        event.status = r.status;
        event.bytes = r.bytes;
        if with_extras {
            match r.referer.map(|i| REFERERS.get(i as usize)) {
                None => event.referer = None,
                Some(Some(external)) => set_opt(&mut event.referer, external),
                Some(None) => {
                    // An internal referer: another page of this site.
                    let referer = event.referer.get_or_insert_with(String::new);
                    referer.clear();
                    referer.push_str("https://logmon.example");
                    referer
                        .push_str(&self.sections[(r.section as usize + 1) % self.sections.len()]);
                }
            }
            set_opt(
                &mut event.user_agent,
                AGENTS[self.client_agents[r.client as usize] as usize],
            );
            event.duration_us = Some(r.duration_us);
        } else {
            event.referer = None;
            event.user_agent = None;
            event.duration_us = None;
        }
    }
}

fn set(dst: &mut String, s: &str) {
    dst.clear();
    dst.push_str(s);
}

fn set_opt(dst: &mut Option<String>, s: &str) {
    match dst {
        Some(d) => set(d, s),
        None => *dst = Some(s.to_owned()),
    }
}

/// The mean rate at `offset` seconds after the start.
fn rate_at(spec: &TrafficSpec, offset: i64) -> f64 {
    let inside = |at: i64, duration: i64| offset >= at && offset < at.saturating_add(duration);
    if spec.gaps.iter().any(|g| inside(g.at, g.duration)) {
        return 0.0;
    }
    let rate = spec
        .bursts
        .iter()
        .rev()
        .find(|b| inside(b.at, b.duration))
        .map_or(spec.base_rate, |b| b.rate);
    if rate.is_finite() { rate.max(0.0) } else { 0.0 }
}

/// The log [`generate`] writes for `spec`, in memory: its lines (each with
/// its `\n`, the CSV header left out) and their events as the parser reads
/// them back, in file order. Realistic traffic for benchmarks.
pub fn generate_parsed(spec: &TrafficSpec) -> io::Result<(Vec<String>, Vec<Event>)> {
    let mut text = Vec::new();
    generate(spec, &mut text)?;
    let text =
        String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut parser = LineParser::new(spec.format);
    let mut event = Event::empty();
    let (mut lines, mut events) = (Vec::new(), Vec::new());
    for line in text.split_inclusive('\n') {
        match parser.parse_into(line.trim_end_matches('\n'), &mut event) {
            Ok(Parsed::Event) => {
                lines.push(line.to_owned());
                events.push(event.clone());
            }
            Ok(Parsed::Skipped) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
    Ok((lines, events))
}

/// Writes the log described by `spec` (CSV header first) to `out`; returns
/// the number of lines written, not counting the header. That is
/// `spec.lines`, unless no rate after some point is positive (then fewer).
pub fn generate(spec: &TrafficSpec, out: &mut impl io::Write) -> io::Result<u64> {
    const FLUSH_AT: usize = 1 << 16;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let site = Site::new(spec, &mut rng);
    let with_extras = matches!(spec.format, Format::Combined | Format::Json);
    // CSV (like the exercise) and CLF have whole seconds; JSON milliseconds.
    let sub_second = spec.format == Format::Json;
    let last_burst_end = spec
        .bursts
        .iter()
        .filter(|b| b.rate > 0.0)
        .map(|b| b.at.saturating_add(b.duration))
        .max();
    let window = i64::from(spec.disorder) * NANOS_PER_SEC;

    let mut buf = String::with_capacity(FLUSH_AT + 1024);
    if let Some(h) = header(spec.format) {
        buf.push_str(h);
        buf.push('\n');
    }
    let mut event = Event::empty();
    let mut pending = BinaryHeap::new();
    // Renders one request; the caller flushes `buf` to `out` when it is full.
    let mut emit = |r: &Request, buf: &mut String, out: &mut dyn io::Write| -> io::Result<()> {
        site.fill(r, with_extras, &mut event);
        render(spec.format, &event, buf);
        buf.push('\n');
        if buf.len() >= FLUSH_AT {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
        Ok(())
    };

    let mut made = 0u64;
    let mut seq = 0u64;
    let mut offset = 0i64;
    while made < spec.lines {
        let rate = rate_at(spec, offset);
        if rate <= 0.0 && spec.base_rate <= 0.0 && last_burst_end.is_none_or(|end| offset >= end) {
            break; // silence for ever after
        }
        let Some(second) = spec
            .start
            .checked_add(offset)
            .and_then(|s| s.checked_mul(NANOS_PER_SEC))
        else {
            break;
        };
        let n = poisson(&mut rng, rate).min(spec.lines - made);
        for _ in 0..n {
            // A moment within the second; the timestamp keeps it to the
            // millisecond (JSON) or drops it (whole-second formats).
            let moment = rng.random_range(0..NANOS_PER_SEC);
            let nanos = if sub_second {
                moment - moment % 1_000_000
            } else {
                0
            };
            let request = site.request(&mut rng, second + nanos);
            // Written in order of moment + a jitter of at most `disorder`
            // seconds, so nothing is written after an event more than
            // `disorder` seconds newer than itself.
            let jitter = if window > 0 {
                rng.random_range(0..=window)
            } else {
                0
            };
            pending.push(Pending {
                key: second.saturating_add(moment + jitter),
                seq,
                request,
            });
            seq += 1;
        }
        made += n;
        // Every later request has a key of at least the next second.
        let horizon = second.saturating_add(NANOS_PER_SEC);
        while pending.peek().is_some_and(|p: &Pending| p.key < horizon) {
            if let Some(p) = pending.pop() {
                emit(&p.request, &mut buf, &mut *out)?;
            }
        }
        offset += 1;
        if spec.pace {
            out.write_all(buf.as_bytes())?;
            buf.clear();
            out.flush()?;
            let due = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs((spec.start + offset).max(0) as u64);
            if let Ok(wait) = due.duration_since(std::time::SystemTime::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    while let Some(p) = pending.pop() {
        emit(&p.request, &mut buf, &mut *out)?;
    }
    out.write_all(buf.as_bytes())?;
    out.flush()?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use logmon_protocol::parse::{LineParser, Parsed};

    use super::*;

    fn run(spec: &TrafficSpec) -> String {
        let mut out = Vec::new();
        let n = generate(spec, &mut out).unwrap();
        assert_eq!(n, spec.lines);
        String::from_utf8(out).unwrap()
    }

    fn events(format: Format, text: &str) -> Vec<Event> {
        let mut parser = LineParser::new(format);
        text.lines()
            .enumerate()
            .filter_map(|(i, line)| match parser.parse(line) {
                Ok(e) => e,
                Err(e) => panic!("{format} line {}: {e}: {line}", i + 1),
            })
            .collect()
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            "300:180:25".parse::<Burst>(),
            Ok(Burst {
                at: 300,
                duration: 180,
                rate: 25.0
            })
        );
        assert_eq!(
            "900:300".parse::<Gap>(),
            Ok(Gap {
                at: 900,
                duration: 300
            })
        );
        assert!("300:180".parse::<Burst>().is_err());
        assert!("1:2:x".parse::<Burst>().is_err());
        assert!("1:-2".parse::<Gap>().is_err());
        assert!("1:2:3".parse::<Gap>().is_err());
    }

    #[test]
    fn deterministic_for_a_seed() {
        let spec = TrafficSpec {
            lines: 3000,
            ..TrafficSpec::default()
        };
        assert_eq!(run(&spec), run(&spec));
        assert_ne!(run(&spec), run(&TrafficSpec { seed: 2, ..spec }));
    }

    #[test]
    fn every_format_parses_with_exact_counts() {
        for format in Format::ALL {
            let spec = TrafficSpec {
                format,
                lines: 4000,
                ..TrafficSpec::default()
            };
            let text = run(&spec);
            let header = usize::from(format == Format::Csv);
            assert_eq!(text.lines().count(), 4000 + header, "{format}");
            let evs = events(format, &text);
            assert_eq!(evs.len(), 4000, "{format}");
            let with_extras = matches!(format, Format::Combined | Format::Json);
            assert_eq!(
                evs.iter().all(|e| e.user_agent.is_some()),
                with_extras,
                "{format}"
            );
        }
        let mut parser = LineParser::new(Format::Csv);
        assert_eq!(
            parser.parse_into(header(Format::Csv).unwrap(), &mut Event::empty()),
            Ok(Parsed::Skipped)
        );
    }

    #[test]
    fn generate_parsed_gives_the_lines_and_their_events() {
        for format in Format::ALL {
            let spec = TrafficSpec {
                format,
                lines: 500,
                ..TrafficSpec::default()
            };
            let (lines, evs) = generate_parsed(&spec).unwrap();
            let text = run(&spec);
            let header = usize::from(format == Format::Csv);
            let expected: String = text.split_inclusive('\n').skip(header).collect();
            assert_eq!(lines.concat(), expected, "{format}");
            assert_eq!(evs, events(format, &text), "{format}");
        }
    }

    #[test]
    fn disorder_is_bounded() {
        for disorder in [0, 1, 2, 5] {
            let spec = TrafficSpec {
                lines: 5000,
                disorder,
                base_rate: 20.0,
                ..TrafficSpec::default()
            };
            let evs = events(spec.format, &run(&spec));
            let mut max = i64::MIN;
            let mut out_of_order = 0;
            for e in &evs {
                if e.second() < max {
                    out_of_order += 1;
                    assert!(
                        max - e.second() <= i64::from(disorder),
                        "disorder {disorder}: {} after {max}",
                        e.second()
                    );
                }
                max = max.max(e.second());
            }
            if disorder == 0 {
                assert_eq!(out_of_order, 0);
            } else {
                assert!(out_of_order > 0, "disorder {disorder} never used");
            }
        }
    }

    #[test]
    fn gaps_are_silent_and_bursts_busy() {
        let spec = TrafficSpec {
            lines: 20_000,
            ..TrafficSpec::default()
        };
        let evs = events(spec.format, &run(&spec));
        let offsets: Vec<i64> = evs.iter().map(|e| e.second() - spec.start).collect();
        assert!(offsets.iter().all(|&o| o >= 0));
        assert!(
            !offsets.iter().any(|&o| (900..1200).contains(&o)),
            "events inside the gap"
        );
        assert!(
            offsets.iter().any(|&o| o >= 1200),
            "the log should go past the gap"
        );
        let in_burst = offsets.iter().filter(|&&o| (300..480).contains(&o)).count() as f64 / 180.0;
        let before = offsets.iter().filter(|&&o| (0..300).contains(&o)).count() as f64 / 300.0;
        assert!((22.0..28.0).contains(&in_burst), "burst rate {in_burst}");
        assert!((7.0..9.0).contains(&before), "base rate {before}");
        // Errors are about the asked share.
        let errors = evs.iter().filter(|e| e.status >= 500).count() as f64 / evs.len() as f64;
        assert!((0.01..0.03).contains(&errors), "error share {errors}");
    }

    #[test]
    fn stops_when_traffic_ends_for_ever() {
        let spec = TrafficSpec {
            base_rate: 0.0,
            bursts: vec![Burst {
                at: 0,
                duration: 10,
                rate: 5.0,
            }],
            ..TrafficSpec::default()
        };
        let mut out = Vec::new();
        let n = generate(&spec, &mut out).unwrap();
        assert!(n > 0 && n < 200, "{n}");
    }
}
