//! A live site for the dashboard's test and bench: the real
//! `logmon-collector serve`, fed by the real `logmon-agent` tailing the
//! logs in its own directory, which `logmon-collector generate` writes (live,
//! second by second, or ahead of time) or the test itself appends to. Every
//! process is killed and every writer stopped on drop.

use crate::bench::{Running, free_port};
use crate::harness::{append_text, unix_now};
use crate::{agent_bin, collector_bin};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bearer token agents use.
pub const AGENT_TOKEN: &str = "agent-secret";

/// A collector, and the agent and generators feeding it.
#[derive(Debug)]
pub struct LiveSite {
    pub port: u16,
    /// Tells the line writers to stop (on drop, before anything else).
    stop_writers: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
    // Dropped in order: the feeders before the collector, the files last.
    feeders: Vec<Running>,
    agent: Option<Running>,
    _collector: Running,
    dir: tempfile::TempDir,
}

impl LiveSite {
    /// `serve` on a free port with its own data dir and `extra` flags; waits
    /// until `/health` answers.
    pub fn start(extra: &[String]) -> LiveSite {
        let dir = tempfile::Builder::new()
            .prefix("logmon-site-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("logs")).expect("the logs directory");
        let port = free_port();
        let collector = Command::new(collector_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", AGENT_TOKEN])
            .arg("--data-dir")
            .arg(dir.path().join("collector"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("collector.err")).expect("a log file"))
            .spawn()
            .expect("starting logmon-collector serve");
        let site = LiveSite {
            port,
            stop_writers: Arc::new(AtomicBool::new(false)),
            writers: Vec::new(),
            feeders: Vec::new(),
            agent: None,
            _collector: Running(collector),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/health", &[]).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the collector never became healthy:\n{}",
                site.collector_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        site
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// What the collector wrote on stderr so far.
    pub fn collector_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.err")).unwrap_or_default()
    }

    /// `generate --live --format combined ARGS… -o logs/NAME.log` in the
    /// background, and the agent if it is not running yet.
    pub fn feed_live(&mut self, name: &str, args: &[&str]) {
        let child = Command::new(collector_bin())
            .args(["generate", "--live", "--format", "combined"])
            .args(args)
            .arg("-o")
            .arg(self.logs_dir().join(format!("{name}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting logmon-collector generate --live");
        self.feeders.push(Running(child));
        self.start_agent();
    }

    /// `generate --format combined ARGS… -o logs/NAME.log`, written before
    /// the agent reads it; then the agent if it is not running yet.
    pub fn feed_file(&mut self, name: &str, args: &[&str]) -> PathBuf {
        let path = self.logs_dir().join(format!("{name}.log"));
        let out = Command::new(collector_bin())
            .args(["generate", "--format", "combined"])
            .args(args)
            .arg("-o")
            .arg(&path)
            .output()
            .expect("running logmon-collector generate");
        assert!(
            out.status.success(),
            "generate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.start_agent();
        path
    }

    /// Appends `line(second)` to `logs/NAME.log` now and then every 200 ms,
    /// stamped with the wall clock's current second, until the site is
    /// dropped; then the agent if it is not running yet. For lines no
    /// generator writes.
    pub fn feed_lines(&mut self, name: &str, line: impl Fn(i64) -> String + Send + 'static) {
        let path = self.logs_dir().join(format!("{name}.log"));
        let now = || unix_now().floor() as i64;
        append_text(&path, &line(now()));
        let stop = Arc::clone(&self.stop_writers);
        self.writers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                append_text(&path, &line(now()));
            }
        }));
        self.start_agent();
    }

    fn start_agent(&mut self) {
        if self.agent.is_some() {
            return;
        }
        // From the beginning of every file, not the end (the default, like
        // `tail -f`): lines written before the agent started count too.
        let config = self.dir.path().join("agent.toml");
        std::fs::write(&config, "[tail]\nstart_at = \"beginning\"\n").expect("the agent's config");
        let agent = Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(["--collector", &self.url(), "--token", AGENT_TOKEN])
            .arg("--file")
            .arg(format!("{}/*.log:combined", self.logs_dir().display()))
            .arg("--checkpoint-dir")
            .arg(self.dir.path().join("agent"))
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting logmon-agent");
        self.agent = Some(Running(agent));
    }

    /// `GET path` as JSON; panics unless the answer is 200 with JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, _, body) = http(self.port, "GET", path, &[]);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Polls `done` every 250 ms until it is true; panics with `what` after
    /// `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}\n--- collector\n{}",
                self.collector_log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LiveSite {
    fn drop(&mut self) {
        self.stop_writers.store(true, Ordering::Relaxed);
        for writer in self.writers.drain(..) {
            let _ = writer.join();
        }
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with an empty body: (status,
/// head, body); status 0 when nothing answered.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&reply[..i], &reply[i + 4..]),
        None => (&reply[..], &[][..]),
    };
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        let data = &rest[eol + 2..];
        if n == 0 || data.len() < n {
            break;
        }
        body.extend_from_slice(&data[..n]);
        rest = data[n..].strip_prefix(b"\r\n").unwrap_or(&data[n..]);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_joins_chunks_and_stops_at_the_last() {
        let body = b"4\r\n{\"a\"\r\n5;ext=1\r\n: 1}\n\r\n0\r\n\r\n";
        assert_eq!(dechunk(body), b"{\"a\": 1}\n");
        // A cut answer keeps what arrived whole.
        assert_eq!(dechunk(b"2\r\nok\r\n9\r\nshort"), b"ok");
    }
}
