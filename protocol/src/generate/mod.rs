//! A deterministic generator of realistic HTTP access-log traffic, for demos,
//! load tests, benchmarks and tests (`logmon-collector generate`, behind the
//! `generate` feature).
//!
//! Per second of event time the number of visits is drawn from a Poisson
//! distribution around the rate in force (the base rate, a burst's rate, or
//! zero inside a gap); the [`Site`] says what a visit requests. Sections (or
//! pages) follow a Zipf-like popularity, clients too; methods, statuses, byte
//! counts (log-normal), user agents, referers and request times look like a
//! real site's. Events are written with bounded disorder: an event is never
//! written after one more than `disorder` seconds newer than it.
//!
//! The same [`TrafficSpec`] (seed included) always gives the same bytes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::event::{Event, NANOS_PER_SEC};
use crate::parse::{Format, LineParser, Parsed};
use crate::render::{header, render};
use random::poisson;

mod random;
mod sections;
mod shop;
#[cfg(test)]
mod tests;

/// What traffic to generate.
#[derive(Debug, Clone)]
pub struct TrafficSpec {
    /// Output log format.
    pub format: Format,
    /// How many lines to write (the CSV header not counted).
    pub lines: u64,
    /// Unix seconds of the first event.
    pub start: i64,
    /// Mean visits per second outside bursts (for [`Site::Sections`], a
    /// visit is one request).
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
    /// What the site looks like.
    pub site: Site,
}

/// The site whose traffic is generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Site {
    /// `sections` sections with a Zipf-like popularity, one request per
    /// visit, `error_rate` of 5xx (what `logmon-collector generate` writes).
    #[default]
    Sections,
    /// A busy online shop: pages with their assets, API clients, crawlers
    /// and health checks; a visit makes one to ten requests, and
    /// `sections` and `error_rate` do not apply.
    Shop,
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
            site: Site::Sections,
        }
    }
}

impl TrafficSpec {
    /// `lines` lines of the [`Site::Shop`] in the combined format, in
    /// order, at about 150 requests a second from 500 clients: realistic
    /// data for compression and parsing measurements.
    pub fn shop(lines: u64) -> Self {
        TrafficSpec {
            format: Format::Combined,
            lines,
            start: 1_719_800_000,
            base_rate: 60.0,
            bursts: Vec::new(),
            gaps: Vec::new(),
            disorder: 0,
            clients: 500,
            seed: 0x9e37_79b9_7f4a_7c15,
            site: Site::Shop,
            ..TrafficSpec::default()
        }
    }
}

/// A `Burst` or `Gap` that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

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

/// A site's traffic, one visit at a time. Every draw goes through `rng`, in
/// a fixed order, so that a seed fixes the log.
trait Model {
    /// A request, compact or whole, until it is written.
    type Request;

    /// The requests that come on their own in the second starting at
    /// `second` (unix nanoseconds), whatever the visits: health checks.
    /// Pushed with their time, within the second.
    fn background(
        &mut self,
        _rng: &mut StdRng,
        _second: i64,
        _out: &mut Vec<(i64, Self::Request)>,
    ) {
    }

    /// The requests of one visit arriving at `at` (unix nanoseconds), each
    /// with its time (`at` or later).
    fn visit(&mut self, rng: &mut StdRng, at: i64, out: &mut Vec<(i64, Self::Request)>);

    /// Writes `r` into the reusable `event`; its timestamp is set after.
    fn fill(&self, r: &Self::Request, event: &mut Event);
}

/// A request waiting in the disorder buffer, ordered by its write key.
#[derive(Debug)]
struct Pending<R> {
    key: i64,
    seq: u64,
    timestamp: i64,
    request: R,
}

impl<R> PartialEq for Pending<R> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<R> Eq for Pending<R> {}
impl<R> PartialOrd for Pending<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<R> Ord for Pending<R> {
    /// Reversed, so that `BinaryHeap` pops the smallest key first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.key, other.seq).cmp(&(self.key, self.seq))
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
    let mut rng = StdRng::seed_from_u64(spec.seed);
    match spec.site {
        Site::Sections => {
            let site = sections::SectionSite::new(spec, &mut rng);
            write_log(spec, site, rng, out)
        }
        Site::Shop => {
            let site = shop::ShopSite::new(spec.clients, &mut rng);
            write_log(spec, site, rng, out)
        }
    }
}

/// [`generate`] with the site drawn: the seconds, their visits, the
/// disorder buffer and the rendering, whatever the site.
fn write_log<M: Model>(
    spec: &TrafficSpec,
    mut site: M,
    mut rng: StdRng,
    out: &mut impl io::Write,
) -> io::Result<u64> {
    let last_burst_end = spec
        .bursts
        .iter()
        .filter(|b| b.rate > 0.0)
        .map(|b| b.at.saturating_add(b.duration))
        .max();

    let mut buf = String::with_capacity(Lines::FLUSH_AT + 1024);
    if let Some(h) = header(spec.format) {
        buf.push_str(h);
        buf.push('\n');
    }
    let mut lines = Lines {
        format: spec.format,
        with_extras: matches!(spec.format, Format::Combined | Format::Json),
        event: Event::empty(),
        buf,
    };
    let mut queue = Queue {
        window: i64::from(spec.disorder) * NANOS_PER_SEC,
        // CSV (like the exercise) and CLF have whole seconds; JSON milliseconds.
        precision: if spec.format == Format::Json {
            1_000_000
        } else {
            NANOS_PER_SEC
        },
        pending: BinaryHeap::new(),
        seq: 0,
    };

    let mut made = 0u64;
    let mut offset = 0i64;
    let mut requests = Vec::new();
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
        let visits = poisson(&mut rng, rate).min(spec.lines - made);
        if rate > 0.0 {
            site.background(&mut rng, second, &mut requests);
            made += queue.push(&mut rng, &mut requests, spec.lines - made);
        }
        for _ in 0..visits {
            if made >= spec.lines {
                break;
            }
            // A moment within the second; the timestamp keeps it to the
            // millisecond (JSON) or drops it (whole-second formats).
            let moment = rng.random_range(0..NANOS_PER_SEC);
            site.visit(&mut rng, second.saturating_add(moment), &mut requests);
            made += queue.push(&mut rng, &mut requests, spec.lines - made);
        }
        // Every later request has a key of at least the next second.
        let horizon = second.saturating_add(NANOS_PER_SEC);
        while let Some(p) = queue.pop_before(horizon) {
            lines.write(&site, &p, out)?;
        }
        offset += 1;
        if spec.pace {
            lines.flush(out)?;
            let due = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs((spec.start + offset).max(0) as u64);
            if let Ok(wait) = due.duration_since(std::time::SystemTime::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    while let Some(p) = queue.pending.pop() {
        lines.write(&site, &p, out)?;
    }
    lines.flush(out)?;
    Ok(made)
}

/// The disorder buffer: requests wait here, ordered by their time plus a
/// jitter of at most `window`, until no later request can come before them.
#[derive(Debug)]
struct Queue<R> {
    window: i64,
    /// Timestamps are cut to a multiple of this (nanoseconds).
    precision: i64,
    pending: BinaryHeap<Pending<R>>,
    seq: u64,
}

impl<R> Queue<R> {
    /// Queues at most `room` of `requests` (the rest are dropped), drawing
    /// each one's jitter in order; returns how many were queued.
    fn push(&mut self, rng: &mut StdRng, requests: &mut Vec<(i64, R)>, room: u64) -> u64 {
        requests.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        let queued = requests.len() as u64;
        for (at, request) in requests.drain(..) {
            // Written in order of time + a jitter of at most `disorder`
            // seconds, so nothing is written after an event more than
            // `disorder` seconds newer than itself.
            let jitter = if self.window > 0 {
                rng.random_range(0..=self.window)
            } else {
                0
            };
            self.pending.push(Pending {
                key: at.saturating_add(jitter),
                seq: self.seq,
                timestamp: at - at.rem_euclid(self.precision),
                request,
            });
            self.seq += 1;
        }
        queued
    }

    /// The next request to write, if its key is before `horizon`.
    fn pop_before(&mut self, horizon: i64) -> Option<Pending<R>> {
        if self.pending.peek().is_some_and(|p| p.key < horizon) {
            self.pending.pop()
        } else {
            None
        }
    }
}

/// Renders requests into lines, and writes them out in large pieces.
#[derive(Debug)]
struct Lines {
    format: Format,
    /// Whether the format shows referer, user agent and request time.
    with_extras: bool,
    /// Reused for every request.
    event: Event,
    buf: String,
}

impl Lines {
    const FLUSH_AT: usize = 1 << 16;

    fn write<M: Model>(
        &mut self,
        site: &M,
        p: &Pending<M::Request>,
        out: &mut impl io::Write,
    ) -> io::Result<()> {
        let event = &mut self.event;
        site.fill(&p.request, event);
        event.timestamp = p.timestamp;
        if !self.with_extras {
            event.referer = None;
            event.user_agent = None;
            event.duration_us = None;
        }
        render(self.format, event, &mut self.buf);
        self.buf.push('\n');
        if self.buf.len() >= Self::FLUSH_AT {
            out.write_all(self.buf.as_bytes())?;
            self.buf.clear();
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut impl io::Write) -> io::Result<()> {
        out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        out.flush()
    }
}
