//! A real `influxd` (1.x) for tests: its own data, meta and WAL directories
//! in a temporary directory, HTTP and RPC on free ports, every other service
//! off. It can be stopped and started again on the same directories and
//! port (outage tests), and is killed on drop.
//!
//! Talks to it with a few lines of blocking HTTP/1.0 over `std::net`, so
//! the checks do not depend on the client under test.

use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) `influxd`.
#[derive(Debug)]
pub struct InfluxServer {
    dir: TempDir,
    bin: PathBuf,
    http_port: u16,
    child: Option<Child>,
    /// Whether the retention service deletes expired shards.
    retention: bool,
    /// HTTPS: the server's certificate and key, and the CA to trust.
    https: Option<(crate::pki::Issued, PathBuf)>,
}

/// The `influxd` binary: `$INFLUXD_BIN`, else the first on `PATH`.
pub fn influxd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("INFLUXD_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("influxd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no influxd found: install influxdb: apt-get install -y influxdb")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

impl InfluxServer {
    /// Starts a fresh server and waits until `/ping` answers.
    pub fn start() -> InfluxServer {
        InfluxServer::start_with(false)
    }

    /// [`start`](Self::start), with the retention service on and checking
    /// every second (off otherwise: nothing a test writes is deleted).
    pub fn start_enforcing_retention() -> InfluxServer {
        InfluxServer::start_with(true)
    }

    /// [`start`](Self::start), serving HTTPS with `server`'s certificate,
    /// which `ca` issued (for `localhost`); the harness's own queries go
    /// over TLS too.
    pub fn start_https(server: &crate::pki::Issued, ca: &Path) -> InfluxServer {
        InfluxServer::start_inner(false, Some((server.clone(), ca.to_owned())))
    }

    fn start_with(retention: bool) -> InfluxServer {
        InfluxServer::start_inner(retention, None)
    }

    fn start_inner(retention: bool, https: Option<(crate::pki::Issued, PathBuf)>) -> InfluxServer {
        let dir = tempfile::Builder::new()
            .prefix("logmon-influxd-")
            .tempdir()
            .expect("a temporary directory");
        let mut server = InfluxServer {
            dir,
            bin: influxd_bin(),
            http_port: 0,
            child: None,
            retention,
            https,
        };
        // A port picked free may be taken by a parallel test before influxd
        // binds it: try again with others.
        let mut last = String::new();
        for _ in 0..3 {
            server.http_port = free_port();
            let rpc_port = free_port();
            server.write_config(rpc_port);
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("influxd did not start: {last}");
    }

    /// A server that is not running yet, on ports below the ephemeral range
    /// (see [`crate::harness::reserved_port`]) so that nothing takes them
    /// meanwhile: for a collector that starts before its InfluxDB.
    /// [`restart`](Self::restart) starts it.
    pub fn reserve() -> InfluxServer {
        let dir = tempfile::Builder::new()
            .prefix("logmon-influxd-")
            .tempdir()
            .expect("a temporary directory");
        let http_port = crate::harness::reserved_port();
        let rpc_port = crate::harness::reserved_port();
        let server = InfluxServer {
            dir,
            bin: influxd_bin(),
            http_port,
            child: None,
            retention: false,
            https: None,
        };
        server.write_config(rpc_port);
        server
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` when it serves
    /// HTTPS.
    pub fn url(&self) -> String {
        match &self.https {
            None => format!("http://127.0.0.1:{}", self.http_port),
            Some(_) => format!("https://localhost:{}", self.http_port),
        }
    }

    pub fn port(&self) -> u16 {
        self.http_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("influxdb.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("influxd.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn write_config(&self, rpc_port: u16) {
        let d = self.dir.path().display();
        let https = match &self.https {
            None => "https-enabled = false".to_owned(),
            Some((server, _)) => format!(
                "https-enabled = true\n  https-certificate = {:?}\n  https-private-key = {:?}",
                server.cert, server.key
            ),
        };
        let config = format!(
            r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = {retention}
  check-interval = "1s"

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-body-size = 25000000
  {https}

[logging]
  format = "logfmt"
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"#,
            http = self.http_port,
            retention = self.retention,
        );
        std::fs::write(self.config_path(), config).expect("writing influxdb.conf");
    }

    /// Spawns influxd on the existing config and waits for `/ping`.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "influxd is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the influxd log");
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("-config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((204, _)) = self.http("GET", "/ping", b"") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "influxd exited with {status}; log:\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "influxd not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same directories and port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("influxd did not restart: {e}");
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs InfluxQL with `GET /query?q=` and returns the JSON; panics on an
    /// HTTP error or a statement error.
    pub fn query(&self, q: &str) -> Value {
        self.query_db("", q)
    }

    /// [`InfluxServer::query`] with `db=` set.
    pub fn query_db(&self, db: &str, q: &str) -> Value {
        let mut target = format!("/query?q={}", encode(q));
        if !db.is_empty() {
            target.push_str(&format!("&db={}", encode(db)));
        }
        let (status, body) = self
            .http("GET", &target, b"")
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {q}: {status} not JSON ({e}): {body}"));
        assert_eq!(status, 200, "query {q}: {body}");
        if let Some(e) = json.pointer("/results/0/error") {
            panic!("query {q}: {e}");
        }
        json
    }

    /// The single number a query like `SELECT count(x) ...` returns (0 when
    /// there is no series).
    pub fn scalar(&self, q: &str) -> i64 {
        let json = self.query(q);
        match json.pointer("/results/0/series/0/values/0/1") {
            None => 0,
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .unwrap_or_else(|| panic!("query {q}: not a number: {json}")),
        }
    }

    /// Rows (`values`) of the first series of a query.
    pub fn rows(&self, q: &str) -> Vec<Vec<Value>> {
        let json = self.query(q);
        json.pointer("/results/0/series/0/values")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Posts line protocol to `/write?db=&rp=&precision=ns` as a plain,
    /// uncompressed request; returns the status and body.
    pub fn write(&self, db: &str, rp: &str, lines: &[u8]) -> (u16, String) {
        let target = format!("/write?db={}&rp={}&precision=ns", encode(db), encode(rp));
        self.http("POST", &target, lines)
            .unwrap_or_else(|e| panic!("write: {e}"))
    }

    /// One HTTP/1.0 exchange (the server closes the connection after it, so
    /// the body is whatever arrives before EOF).
    fn http(&self, method: &str, target: &str, body: &[u8]) -> Result<(u16, String), String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.http_port))
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut stream: Box<dyn ReadWrite> = match &self.https {
            None => Box::new(tcp),
            Some((_, ca)) => Box::new(crate::pki::tls_stream(tcp, ca, None)?),
        };
        let head = format!(
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
            self.http_port,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            // TLS closed without close_notify after the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP header in {answer:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((status, body.to_owned()))
    }
}

/// A plain or TLS stream.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Drop for InfluxServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A row's `time` column (RFC 3339, as InfluxDB answers) in unix seconds.
pub fn unix_seconds(time: &Value) -> i64 {
    let text = time
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {time}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {text}: {e}"))
        .unix_timestamp()
}
