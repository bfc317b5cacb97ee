//! Helpers for the end-to-end tests that run the live pipeline: waiting for
//! the collector, writing access-log lines stamped with chosen seconds, and a
//! webhook receiver that records what the notifiers send.

pub use crate::bench::{Running, free_port, http_get};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A port that is free now and that nothing else in the tests will take
/// meanwhile: below the kernel's ephemeral range, which `bind` to port 0 (what
/// [`free_port`] does for every server the tests start) and outgoing
/// connections draw from. For a server that starts long after its address
/// was handed out, such as a receiver that is down for a minute. Never the
/// same port twice in one process.
pub fn reserved_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    let start = std::process::id() as u16 % span;
    for i in 0..span {
        let candidate = 10_000 + (start + i) % span;
        if !handed_out.contains(&candidate)
            && std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok()
        {
            handed_out.push(candidate);
            return candidate;
        }
    }
    panic!("no free port below the ephemeral range ({low})");
}

/// Waits until the collector on `port` answers `GET /health` with 200.
pub fn wait_for_health(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_get(port, "/health").starts_with("HTTP/1.1 200") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the collector on port {port} never became healthy");
}

/// The wall clock, in unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A unix second as a CLF timestamp (UTC).
pub fn clf_time(second: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(second).unwrap();
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        t.day(),
        [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
        ][usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Appends `text` to `path`, creating it.
pub fn append_text(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// One alert transition as a webhook received it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Notified {
    pub rule: String,
    pub key: String,
    pub state: String,
    /// Event second, relative to the run's start.
    pub at: i64,
}

/// A webhook receiver: keeps the JSON body of every POST in arrival order,
/// answers 200 and closes the connection.
#[derive(Debug)]
pub struct WebhookSink {
    pub port: u16,
    got: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl WebhookSink {
    /// On a port of its own.
    pub fn start() -> WebhookSink {
        WebhookSink::start_on(0)
    }

    /// On `port` (0: any free one); for a receiver that comes up late, the
    /// notifier having been given its address before.
    pub fn start_on(port: u16) -> WebhookSink {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(json) = read_json_post(&stream) {
                    sink.lock().unwrap().push(json);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        });
        WebhookSink { port, got }
    }

    /// Every body received, in arrival order.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().clone()
    }

    /// Every transition received, in arrival order, event seconds relative
    /// to `t0`.
    pub fn transitions(&self, t0: i64) -> Vec<Notified> {
        self.received()
            .iter()
            .map(|v| Notified {
                rule: v["rule"].as_str().unwrap_or_default().to_owned(),
                key: v["key"].as_str().unwrap_or_default().to_owned(),
                state: v["state"].as_str().unwrap_or_default().to_owned(),
                at: v["at"].as_i64().unwrap_or_default() - t0,
            })
            .collect()
    }
}

/// The JSON body of one HTTP request read from `stream`.
fn read_json_post(stream: &std::net::TcpStream) -> Option<serde_json::Value> {
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    std::io::Read::read_exact(&mut reader, &mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// A small deterministic generator for the moments of faults (xorshift64*).
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi` seconds.
    pub fn seconds(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The seed of a test's random fault moments: `LOGMON_CHAOS_SEED` when set,
/// else the clock; printed with what it seeds, so a failing run can be
/// repeated.
pub fn chaos_seed(what: &str) -> u64 {
    let seed = std::env::var("LOGMON_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| unix_now().to_bits());
    eprintln!("{what} from seed {seed} (LOGMON_CHAOS_SEED={seed} repeats them)");
    seed
}
