//! The fuzz targets' bodies (`fuzz/`, `make fuzz`), as plain functions so
//! that `make test` runs every committed corpus file through them without
//! a fuzzer (the test at the end of this file): what fuzzing found stays
//! fixed. A target panics on what must not happen; returning is a pass.
//!
//! Each target checks more than "does not crash": a property the code
//! promises (a parsed event renders and parses back as itself, `inspect`
//! agrees with `decode`, a printed config loads back, an answer stored in
//! the alert outbox reads back, no request gets a 500).

use logmon_collector::alerts::outbox::Outbox;
use logmon_collector::dashboard::{Dashboard, DashboardOptions, Hub};
use logmon_collector::engine::consumer::LiveCounters;
use logmon_collector::http::{Router, ServerConfig, server::serve_stream};
use logmon_collector::ingest::{self, IngestConfig, IngestState};
use logmon_collector::rules::{self, SandboxLimits, Transition, lifecycle::Lifecycle, wit};
use logmon_protocol::parse::{Dialect, LogTemplate};
use logmon_protocol::wire::{self, Batch, Limits, StreamId};
use logmon_protocol::{Event, Format, LineParser, render};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A target: its name (a directory under `fuzz/corpus/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `make fuzz` runs them.
pub const TARGETS: &[Target] = &[
    ("log_lines", log_lines),
    ("format_strings", format_strings),
    ("wire", wire_body),
    ("ingest_request", ingest_request),
    ("api_query", api_query),
    ("rule_answer", rule_answer),
    ("configs", configs),
];

/// Runs `name`'s body on `data`.
pub fn run(name: &str, data: &[u8]) {
    let (_, body) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    body(data);
}

/// CSV, CLF, Combined and JSON lines: every line through every parser. A
/// line that parses renders back in its format and parses again as the same
/// event (so the agent, `lake export` and the parsers agree).
pub fn log_lines(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let _ = logmon_protocol::parse::detect(lines.iter().copied());
    for format in Format::ALL {
        let mut parser = LineParser::new(format);
        for line in &lines {
            let Ok(Some(event)) = parser.parse(line) else {
                continue;
            };
            let render = |e: &Event| {
                let mut out = String::new();
                render::render(format, e, &mut out);
                out
            };
            round_trip(
                &event,
                render,
                |l| LineParser::new(format).parse(l),
                line,
                true,
            );
        }
    }
}

/// `event` (parsed from `line`) rendered and parsed again gives the same
/// event, but for its time, which may lose what the format cannot write (a
/// fraction of a second in CLF, more than 3 decimals in nginx's `$msec`);
/// and a second round trip is exact.
///
/// With `exact` false (a format string that cannot be read back without
/// guessing, see [`unambiguous`]) only parsing and rendering are run: what
/// such a format's lines read back as is a guess (`%l-%u` with a user `-`
/// is `--` or `---`).
fn round_trip(
    event: &Event,
    render: impl Fn(&Event) -> String,
    parse: impl Fn(&str) -> Result<Option<Event>, logmon_protocol::ParseError>,
    line: &str,
    exact: bool,
) {
    let again = render(event);
    let back = match parse(&again) {
        Ok(Some(back)) => back,
        _ if !exact => return,
        other => panic!("{line:?} parsed, rendered as {again:?}, which parses as {other:?}"),
    };
    if !exact {
        return;
    }
    let untimed = |e: &Event| Event {
        timestamp: 0,
        ..e.clone()
    };
    assert_eq!(
        untimed(&back),
        untimed(event),
        "{line:?} parsed, rendered as {again:?}, did not parse back the same"
    );
    assert!(
        back.timestamp <= event.timestamp && event.timestamp - back.timestamp < 1_000_000_000,
        "{line:?}: time {} rendered as {again:?} reads back as {}",
        event.timestamp,
        back.timestamp
    );
    let twice = render(&back);
    assert_eq!(
        parse(&twice),
        Ok(Some(back.clone())),
        "{line:?}: the second round trip (through {twice:?}) is not exact"
    );
}

/// nginx `log_format` and Apache `LogFormat` strings: the first line is the
/// format string (nginx if the input's first byte is even, else Apache),
/// the rest are lines to parse with it. A line that parses renders back
/// with the format string and parses again as the same event.
pub fn format_strings(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (source, lines) = text.split_once('\n').unwrap_or((&text, ""));
    let dialect = if mode % 2 == 0 {
        Dialect::Nginx
    } else {
        Dialect::Apache
    };
    let compiled = match dialect {
        Dialect::Nginx => LogTemplate::nginx(source),
        Dialect::Apache => LogTemplate::apache(source),
    };
    let Ok(template) = compiled else {
        return;
    };
    let template = Arc::new(template);
    let mut parser = LineParser::with_template(&template);
    for line in lines.split('\n') {
        let Ok(Some(event)) = parser.parse(line) else {
            continue;
        };
        let extras = parser.extras().cloned().unwrap_or_default();
        let render = |e: &Event| {
            let mut out = String::new();
            template.render(e, &extras, &mut out);
            out
        };
        let parse = |l: &str| LineParser::with_template(&template).parse(l);
        let exact = unambiguous(source, dialect);
        round_trip(&event, render, parse, &format!("{source:?}: {line}"), exact);
    }
}

/// Whether lines of format string `source` can be read back without
/// guessing: no variable twice, a literal between any two variables, and
/// every variable whose value may hold spaces (the request, its URI and
/// query, headers) between double quotes. The formats servers ship are; a string the
/// fuzzer makes up often is not (`%r` unquoted: a request rendered there
/// cannot be told from the fields after it).
fn unambiguous(source: &str, dialect: Dialect) -> bool {
    let bytes = source.as_bytes();
    let mut seen = std::collections::HashSet::new();
    let mut last_end = None;
    let mut i = 0;
    while i < bytes.len() {
        let (start, name, spaced) = match (dialect, bytes[i]) {
            (Dialect::Apache, b'%') => {
                let start = i;
                i += 1;
                // Modifiers: `<`, `>`, and status conditions (`%!200,304r`).
                while i < bytes.len() && matches!(bytes[i], b'<' | b'>' | b'!' | b',' | b'0'..=b'9')
                {
                    i += 1;
                }
                let mut name = String::new();
                if bytes.get(i) == Some(&b'{') {
                    let Some(close) = source[i..].find('}') else {
                        return false;
                    };
                    name.push_str(&source[i..i + close + 1]);
                    i += close + 1;
                }
                let Some(&letter) = bytes.get(i) else {
                    return false;
                };
                if letter == b'%' && name.is_empty() {
                    i += 1;
                    continue; // a literal `%`
                }
                name.push(char::from(letter));
                i += 1;
                let spaced = matches!(letter, b'r' | b'i' | b'U' | b'q');
                (start, name, spaced)
            }
            (Dialect::Nginx, b'$') => {
                let start = i;
                i += 1;
                let braced = bytes.get(i) == Some(&b'{');
                if braced {
                    i += 1;
                }
                let from = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let name = source[from..i].to_owned();
                if braced {
                    if bytes.get(i) != Some(&b'}') {
                        return false;
                    }
                    i += 1;
                }
                let spaced = name == "request"
                    || name.starts_with("http_")
                    || name.starts_with("request_")
                    || name == "uri"
                    || name == "args"
                    || name == "query_string";
                (start, name, spaced)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if !seen.insert(name) || last_end == Some(start) {
            return false;
        }
        if spaced && !(start > 0 && bytes[start - 1] == b'"' && bytes.get(i) == Some(&b'"')) {
            return false;
        }
        // What ends a variable must not be able to occur in its value
        // (`$msec.` reads `1520.000.` as far as the first `.`).
        if !matches!(bytes.get(i), None | Some(b' ' | b'"' | b']' | b'|' | b'\t')) {
            return false;
        }
        last_end = Some(i);
    }
    true
}

/// A request body as the collector receives it: `inspect` gives the same
/// answer as `decode` (the collector trusts it to refuse what `decode`
/// would), and a decoded batch encodes and decodes again as itself.
pub fn wire_body(data: &[u8]) {
    let limits = Limits {
        max_compressed: 1 << 20,
        max_decompressed: 4 << 20,
    };
    let decoded = wire::decode(data, &limits);
    let inspected = wire::inspect(data, &limits);
    match (&decoded, &inspected) {
        (Ok(batch), Ok(seen)) => {
            assert_eq!(seen.events, batch.events.len());
            let mut header = batch.clone();
            header.events.clear();
            assert_eq!(seen.batch, header, "inspect's header differs from decode's");
            let body = wire::encode(batch, 1).expect("a decoded batch encodes");
            let again = wire::decode(&body, &limits).expect("a re-encoded batch decodes");
            assert_eq!(&again, batch, "a batch encoded again decodes differently");
        }
        // The same error; but which of zstd's checks trips first on a
        // corrupt frame depends on the sizes of the buffers its reused
        // context grew to for earlier bodies, so zstd's own words may differ
        // (both are `Corrupt`: 400, counted as corrupt).
        (Err(a), Err(b)) => {
            let zstd = |e: &wire::WireError| e.to_string().starts_with("corrupt batch: zstd:");
            if !(zstd(a) && zstd(b)) {
                assert_eq!(a.to_string(), b.to_string());
            }
        }
        _ => panic!(
            "decode said {:?}, inspect said {:?}",
            decoded.map(|b| b.events.len()),
            inspected.map(|i| i.events)
        ),
    }
}

/// One in-process collector front (ingest, its status endpoints and the
/// dashboard over an empty hub), served over in-memory connections.
struct Front {
    runtime: tokio::runtime::Runtime,
    router: Arc<Router>,
    config: ServerConfig,
    _dir: tempfile::TempDir,
    /// Requests answered by this front; it is made anew now and then so that
    /// its bus does not grow without end.
    served: u64,
}

impl Front {
    fn new() -> Front {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (router, config) = runtime.block_on(async {
            let (log, _) =
                logmon_collector::bus::SegmentLog::open(logmon_collector::bus::LogConfig {
                    fsync: false,
                    ..logmon_collector::bus::LogConfig::new(dir.path().join("bus"))
                })
                .expect("the bus opens");
            let config = IngestConfig {
                tokens: vec!["fuzz-token".into()],
                body_timeout_secs: 1,
                ..IngestConfig::default()
            };
            let (bus, _) = logmon_collector::bus::LocalBus::with_log(log, config.limits)
                .expect("the bus opens");
            let state = IngestState::open(config, Arc::new(bus)).expect("ingest starts");
            let outbox = Outbox::open(&dir.path().join("outbox")).expect("the outbox opens");
            let dashboard = Dashboard::new(
                Hub::new(5),
                DashboardOptions::default(),
                Arc::new(LiveCounters::default()),
                outbox,
                None,
                5,
                tokio_util::sync::CancellationToken::new(),
            )
            .expect("the dashboard starts");
            let router = ingest::router(&state).mount(Arc::new(dashboard));
            let config = ServerConfig {
                header_timeout_secs: 1,
                ..ServerConfig::default()
            };
            (Arc::new(router), config)
        });
        Front {
            runtime,
            router,
            config,
            _dir: dir,
            served: 0,
        }
    }

    /// Sends `request` (raw bytes, then end of input) on a new connection
    /// and gives every byte of the answer.
    fn exchange(&mut self, request: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.served += 1;
        let (router, config) = (Arc::clone(&self.router), self.config.clone());
        self.runtime.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let serving = tokio::spawn(async move { serve_stream(server, router, &config).await });
            let request = request.to_vec();
            // No half close: hyper takes the end of input for a client gone.
            // The answer is read until the server closes, or until it says
            // nothing more for a moment (a connection kept alive), or 10 s.
            let exchange = async move {
                let _ = client.write_all(&request).await;
                let mut answer = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let quiet = if answer.is_empty() { 3_000 } else { 300 };
                    match tokio::time::timeout(Duration::from_millis(quiet), client.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                answer
            };
            let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("the collector answered within 10 s");
            let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
            answer
        })
    }
}

fn front() -> std::sync::MutexGuard<'static, Front> {
    static FRONT: OnceLock<Mutex<Front>> = OnceLock::new();
    let mut front = FRONT
        .get_or_init(|| Mutex::new(Front::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if front.served >= 20_000 {
        *front = Front::new();
    }
    front
}

/// The status codes of every response in `answer`; none is a 500 (a bad
/// request gets a 4xx; 503 is allowed: shutting down, backpressure).
fn statuses(answer: &[u8], request: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answer);
    let codes: Vec<u16> = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    for code in &codes {
        assert!(
            !(500..600).contains(code) || *code == 503,
            "answered {code} to {:?}:\n{text}",
            String::from_utf8_lossy(request)
        );
    }
    codes
}

/// Splits at the first `\0\0`: the headers, then the body.
fn head_and_body(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\0\0") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// `POST /v1/batches` through the real HTTP stack (hyper, the router,
/// ingest's handler, the bus): the input is header lines, `\0\0`, then the
/// body. A `Content-Length` is added unless the input gives one or a
/// `Transfer-Encoding`. Never a 500.
pub fn ingest_request(data: &[u8]) {
    let (head, body) = head_and_body(data);
    let mut request =
        b"POST /v1/batches HTTP/1.1\r\nhost: collector\r\nconnection: close\r\n".to_vec();
    let mut framed = false;
    for line in head.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        framed |= lower.starts_with(b"content-length") || lower.starts_with(b"transfer-encoding");
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    if !framed {
        request.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    let answer = front().exchange(&request);
    statuses(&answer, &request);
}

/// A `GET` of the dashboard and its API: the input's first line is the
/// request target (path and query), the rest are header lines. Never a 500;
/// every JSON answer is JSON. (`/api/stream` is an endless event stream: it
/// is left out here and tested in `collector/src/dashboard/tests.rs`.)
pub fn api_query(data: &[u8]) {
    let (target, headers) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(uri) = std::str::from_utf8(target)
        .unwrap_or("")
        .parse::<hyper::Uri>()
        && uri.path().trim_end_matches('/').ends_with("/api/stream")
    {
        return;
    }
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: collector\r\nconnection: close\r\n");
    for line in headers.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let answer = front().exchange(&request);
    let codes = statuses(&answer, &request);
    let text = String::from_utf8_lossy(&answer);
    if codes.len() == 1
        && text.contains("content-type: application/json")
        && let Some((_, body)) = text.split_once("\r\n\r\n")
    {
        let body = unchunk(body);
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "not JSON: {body:?} for {:?}",
            String::from_utf8_lossy(&request)
        );
    }
}

/// The body of an HTTP/1.1 chunked answer (or the text as it is).
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        let Some(chunk) = after.get(..n) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Reads fuzz input as a sequence of values.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn f64(&mut self) -> Option<f64> {
        let bytes: [u8; 8] = self.0.get(..8)?.try_into().ok()?;
        self.0 = &self.0[8..];
        Some(f64::from_le_bytes(bytes))
    }
    fn text(&mut self) -> Option<String> {
        let n = usize::from(self.byte()?);
        let n = n.min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(String::from_utf8_lossy(s).into_owned())
    }
}

/// A rule's answers, second after second, through the host's check and the
/// alert lifecycle into what is stored: the input gives the pending and
/// keep-firing times, then per second a count and that many alerts (key,
/// firing, value, message). Every transition must go into InfluxDB line
/// protocol as exactly one line that parses, into the alert outbox's JSON
/// and back as itself, and the lifecycle into an engine snapshot's JSON and
/// back as itself; a key's transitions alternate firing and resolved.
pub fn rule_answer(data: &[u8]) {
    let mut input = Bytes(data);
    let (Some(pending), Some(keep)) = (input.byte(), input.byte()) else {
        return;
    };
    let limits = SandboxLimits {
        max_alerts: 64,
        max_result_bytes: 4096,
        ..SandboxLimits::default()
    };
    let mut lifecycle = Lifecycle::new(u32::from(pending % 8), u32::from(keep % 8));
    let mut last: std::collections::HashMap<String, rules::AlertState> = Default::default();
    let mut at = 1_700_000_000i64;
    while let Some(n) = input.byte() {
        let mut alerts = Vec::new();
        for _ in 0..n % 80 {
            let (Some(key), Some(firing), Some(value), Some(message)) =
                (input.text(), input.byte(), input.f64(), input.text())
            else {
                break;
            };
            alerts.push(wit::Alert {
                key,
                firing: firing % 2 == 1,
                value,
                message,
            });
        }
        if rules::check_answer(&alerts, &limits).is_err() {
            assert!(
                alerts.len() > limits.max_alerts
                    || alerts
                        .iter()
                        .map(|a| a.key.len() + a.message.len())
                        .sum::<usize>()
                        > limits.max_result_bytes
            );
            continue;
        }
        let mut out: Vec<Transition> = Vec::new();
        rules::apply_answer("fuzz", &mut lifecycle, at, alerts, &mut out);
        for t in &out {
            stored_as_itself(t);
            if let Some(before) = last.insert(t.key.clone(), t.state) {
                assert_ne!(
                    before, t.state,
                    "two {:?} in a row for {:?}",
                    t.state, t.key
                );
            }
        }
        let saved = serde_json::to_string(&lifecycle.keys).expect("the lifecycle serializes");
        let back: std::collections::BTreeMap<String, rules::lifecycle::KeyState> =
            serde_json::from_str(&saved).expect("the lifecycle reads back");
        assert!(
            same_keys(&back, &lifecycle.keys),
            "snapshot changed the lifecycle: {saved}"
        );
        at += 1;
    }
}

/// Equality with NaN equal to NaN (a value a rule may answer).
fn same_keys(
    a: &std::collections::BTreeMap<String, rules::lifecycle::KeyState>,
    b: &std::collections::BTreeMap<String, rules::lifecycle::KeyState>,
) -> bool {
    let text = |m| format!("{m:?}");
    text(a) == text(b)
}

fn stored_as_itself(t: &Transition) {
    let mut lines = logmon_collector::influx::schema::Lines::new();
    logmon_collector::influx::schema::push_transition(&mut lines, t);
    let text = std::str::from_utf8(lines.as_bytes()).expect("line protocol is UTF-8");
    // The parser crate refuses a tab in a tag value; InfluxDB 1.6 takes it
    // and reads it back (checked by hand with influxd: `key=a<TAB>b` is
    // stored as "a\tb"), so tabs are not what is checked here.
    let text = text.replace('\t', "_");
    let text = text.as_str();
    let parsed: Vec<_> = influxdb_line_protocol::parse_lines(text).collect();
    assert_eq!(parsed.len(), 1, "{text:?} is not one line");
    let line = parsed[0]
        .as_ref()
        .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    assert_eq!(line.series.measurement.as_str(), "alerts");
    let json = serde_json::to_string(t).expect("a transition serializes");
    let back: Transition = serde_json::from_str(&json).expect("a transition reads back");
    assert_eq!(format!("{back:?}"), format!("{t:?}"), "outbox JSON {json}");
}

/// The agent's and the collector's TOML: whatever parses and validates
/// prints as TOML that parses again, and prints the same the second time
/// (`--print-config`'s output is a config file).
pub fn configs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(config) = logmon_agent::config::AgentConfig::from_toml(text, path) {
        let _ = config.validate();
    }
    if let Ok(config) = toml::from_str::<logmon_collector::config::CollectorConfig>(text) {
        let _ = config.validate();
        let printed = config.to_toml();
        let again: logmon_collector::config::CollectorConfig = toml::from_str(&printed)
            .unwrap_or_else(|e| panic!("printed config does not load: {e}\n{printed}"));
        assert_eq!(again.to_toml(), printed, "printing is not stable");
    }
}

/// Inputs to start each target's corpus from: real lines, bodies, requests
/// and config files (`make fuzz` writes them into `fuzz/corpus/<target>/`).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let sample_lines = [
        r#""10.0.0.2","-","apache",1549573860,"GET /api/user HTTP/1.0",200,1234"#,
        r#"127.0.0.1 - james [09/May/2018:16:00:39 +0000] "GET /report HTTP/1.0" 200 123"#,
        r#"1.2.3.4 - - [09/May/2018:16:00:41 +0000] "POST /api/user?id=1 HTTP/1.1" 503 12 "https://a.example/x" "curl/8.0" 0.004"#,
        r#"{"remote_addr":"::1","time_iso8601":"2018-05-09T16:00:42+00:00","request":"GET /a/b HTTP/2.0","status":404,"body_bytes_sent":0,"http_user_agent":"bot"}"#,
    ];
    match name {
        "log_lines" => sample_lines.iter().map(|l| l.as_bytes().to_vec()).collect(),
        "format_strings" => vec![
            b"\0$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_time\n1.2.3.4 - - [09/May/2018:16:00:41 +0000] \"GET /x HTTP/1.1\" 200 5 \"-\" \"curl\" 0.010".to_vec(),
            b"\x01%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D %v\n1.2.3.4 - - [09/May/2018:16:00:41 +0000] \"GET /x HTTP/1.1\" 200 5 \"-\" \"curl\" 1200 www".to_vec(),
            b"\0$host $msec $time_iso8601 $request $status $bytes_sent $upstream_response_time $custom\nh 1525881641.123 2018-05-09T16:00:41+00:00 GET /y HTTP/1.1 301 10 0.002 z".to_vec(),
        ],
        "wire" => vec![sample_body(0), sample_body(3)],
        "ingest_request" => {
            let mut with_token = b"authorization: Bearer fuzz-token\ncontent-type: application/octet-stream\n\0\0".to_vec();
            with_token.extend(sample_body(3));
            let mut no_token = b"content-type: application/octet-stream\n\0\0".to_vec();
            no_token.extend(sample_body(1));
            vec![with_token, no_token, b"transfer-encoding: chunked\nauthorization: Bearer fuzz-token\n\0\x005\r\nhello\r\n0\r\n\r\n".to_vec()]
        }
        "api_query" => [
            "/api/series?range=900",
            "/api/series?range=2592000&x=%zz",
            "/api/alerts?limit=10",
            "/api/alerts?limit=-1",
            "/api/overview\nif-none-match: *",
            "/api/agents\nauthorization: Bearer x",
            "/assets/app.js\nif-none-match: \"a\", *",
            "/dashboard?token=a%20b+c",
            "/health",
            "/metrics",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "rule_answer" => {
            let mut one = vec![1u8, 2, 2];
            for (key, firing, value, message) in
                [("", 1u8, 12.5f64, "high"), ("/api", 1, f64::NAN, "err\nrate")]
            {
                one.push(key.len() as u8);
                one.extend(key.as_bytes());
                one.push(firing);
                one.extend(value.to_le_bytes());
                one.push(message.len() as u8);
                one.extend(message.as_bytes());
            }
            one.extend([0, 0, 0, 0]);
            vec![one]
        }
        "configs" => vec![
            include_bytes!("../../collector/collector.example.toml").to_vec(),
            b"[[sources]]\ninclude = \"/var/log/nginx/*.log\"\nformat = { nginx = '$remote_addr [$time_local] \"$request\" $status $bytes_sent' }\n[[sources]]\ninclude = \"/x/*.log\"\nformat = \"combined\"\n".to_vec(),
            b"[http]\nlisten = \"127.0.0.1:8080\"\n[ingest]\ntokens = [\"a\"]\n[ingest.rate_limit]\nevents_per_sec = 10.0\n".to_vec(),
        ],
        _ => Vec::new(),
    }
}

/// A real batch body with `events` events.
fn sample_body(events: usize) -> Vec<u8> {
    let mut parser = LineParser::new(Format::Combined);
    let line = r#"1.2.3.4 - - [09/May/2018:16:00:41 +0000] "POST /api/user?id=1 HTTP/1.1" 503 12 "https://a.example/x" "curl/8.0""#;
    let event: Event = parser.parse(line).unwrap().unwrap();
    let batch = Batch {
        agent_id: "fuzz-agent".into(),
        host: "web-1".into(),
        stream: StreamId {
            fingerprint: 7,
            path: "/var/log/access.log".into(),
        },
        start: 0,
        end: 100 * (events as u64 + 1),
        format: Format::Combined,
        labels: vec![("dc".into(), "eu".into())],
        events: vec![event; events],
        malformed: 1,
        caught_up: events == 0,
        finished: false,
        sent_at: 1_525_881_641_000_000_000,
    };
    wire::encode(&batch, 1).unwrap()
}

/// `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` of the repo.
pub fn corpus_dirs(name: &str) -> [std::path::PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    [
        root.join("corpus").join(name),
        root.join("regressions").join(name),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed corpus and regression file, and every seed, through
    /// its target (no fuzzer needed). Prints how many ran per target.
    #[test]
    fn every_corpus_file_passes_its_target() {
        let mut total = 0;
        for (name, body) in TARGETS {
            let mut inputs = seeds(name);
            assert!(!inputs.is_empty(), "{name} has no seeds");
            if std::env::var_os("LOGMON_WRITE_FUZZ_SEEDS").is_some() {
                // How fuzz/corpus/ began: the seeds as files.
                let dir = &corpus_dirs(name)[0];
                std::fs::create_dir_all(dir).unwrap();
                for (i, seed) in inputs.iter().enumerate() {
                    std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
                }
            }
            for dir in corpus_dirs(name) {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
                }
            }
            for input in &inputs {
                body(input);
            }
            eprintln!("fuzz corpus: {name}: {} inputs", inputs.len());
            total += inputs.len();
        }
        assert!(total > TARGETS.len());
    }

    #[test]
    fn the_ingest_target_reaches_the_handler() {
        // The seed with the token is stored (200), the one without refused.
        let mut with_token = b"authorization: Bearer fuzz-token\n\0\0".to_vec();
        with_token.extend(sample_body(3));
        let (head, body) = head_and_body(&with_token);
        assert_eq!(body.len(), sample_body(3).len());
        assert!(head.starts_with(b"authorization"));
        let mut request = b"POST /v1/batches HTTP/1.1\r\nhost: c\r\nconnection: close\r\nauthorization: Bearer fuzz-token\r\n".to_vec();
        request.extend(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend(body);
        let answer = front().exchange(&request);
        assert_eq!(statuses(&answer, &request), vec![200]);
        let mut request = b"POST /v1/batches HTTP/1.1\r\nhost: c\r\nconnection: close\r\n".to_vec();
        request.extend(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend(body);
        assert_eq!(statuses(&front().exchange(&request), &request), vec![401]);
    }

    #[test]
    fn the_formats_servers_ship_are_read_back_exactly() {
        let nginx = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
        let apache = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D %v"#;
        assert!(unambiguous(nginx, Dialect::Nginx));
        assert!(unambiguous(apache, Dialect::Apache));
        assert!(
            !unambiguous(r#"%h %r %>s"#, Dialect::Apache),
            "an unquoted request"
        );
        assert!(!unambiguous(r#"%h "%r" "%r""#, Dialect::Apache), "twice");
        assert!(
            !unambiguous(r#"$remote_addr$status"#, Dialect::Nginx),
            "no literal between"
        );
    }

    #[test]
    fn a_header_block_over_hypers_cap_gets_431() {
        // hyper's default read buffer (about 400 KiB) caps the header
        // block; at most 100 headers.
        let mut request = b"GET /health HTTP/1.1\r\nhost: c\r\nconnection: close\r\n".to_vec();
        request.extend(format!("x-big: {}\r\n\r\n", "a".repeat(500 << 10)).as_bytes());
        assert_eq!(statuses(&front().exchange(&request), &request), vec![431]);
        let mut request = b"GET /health HTTP/1.1\r\nhost: c\r\nconnection: close\r\n".to_vec();
        for i in 0..120 {
            request.extend(format!("x-{i}: a\r\n").as_bytes());
        }
        request.extend(b"\r\n");
        assert_eq!(statuses(&front().exchange(&request), &request), vec![431]);
    }

    #[test]
    fn the_api_target_gets_json() {
        let request = b"GET /api/series?range=900 HTTP/1.1\r\nhost: c\r\nconnection: close\r\n\r\n";
        let answer = front().exchange(request);
        assert_eq!(statuses(&answer, request), vec![200]);
        let request = b"GET /api/series?range=7 HTTP/1.1\r\nhost: c\r\nconnection: close\r\n\r\n";
        assert_eq!(statuses(&front().exchange(request), request), vec![400]);
    }
}
