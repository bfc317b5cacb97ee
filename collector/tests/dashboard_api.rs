//! The dashboard's API and event stream from the real `logmon-collector
//! serve`, fed batches over HTTP as an agent sends them: exact series from
//! memory and (after a restart, memory empty) from a real InfluxDB's
//! rollups, the SSE events, the token, the path prefix, bad parameters;
//! `HEAD`, the security headers, refusals with their reasons, and the cap
//! on event streams.
//!
//! Event time is made deterministic: the agent's batches hold time back
//! (`--silent-after 3600`), so the watermark is exactly the stream's newest
//! second (a heartbeat) minus the lateness, whatever the wall clock does.
//! The events are stamped a few minutes ahead of the wall clock (within
//! `max_future`): before the first batch the wall clock drives time, and
//! seconds it already closed would make them late.

use logmon_protocol::event::Event;
use logmon_protocol::parse::Format;
use logmon_protocol::wire::{self, Batch, StreamId};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INGEST_TOKEN: &str = "ingest-s3cret";
const DASHBOARD_TOKEN: &str = "look-only";
const NS: i64 = 1_000_000_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wall() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `check` every 50 ms until it returns something, for at most 60 s.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Whether `GET /health` answers 200. Any I/O error means "not up yet": a
/// fresh-clone `make test` once saw a connection reset here while the
/// collector started, where `request` would have panicked.
fn health_ok(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(raw.starts_with(b"HTTP/1.1 200"))
    };
    probe().unwrap_or(false)
}

/// One request on its own connection (`Connection: close`).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], b"")
}

/// `GET path?token=…` (or `&token=…`): JSON, answered 200.
fn api(port: u16, path: &str) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let reply = get(port, &format!("{path}{sep}token={DASHBOARD_TOKEN}"));
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

/// A running `logmon-collector serve`, killed on drop.
struct Collector {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Collector {
    fn start(data: &Path, extra: &[&str]) -> Collector {
        let port = free_port();
        let log = data.with_extension(format!("{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_logmon-collector"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .args(["--token", INGEST_TOKEN])
            .args(["--silent-after", "3600", "--quiet-after", "3600"])
            .args(["--threshold", "1", "--window", "5"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the collector");
        let c = Collector {
            child: Some(child),
            port,
            log,
        };
        wait_for("the collector's /health", || health_ok(port).then_some(()));
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn post(&self, batch: &Batch) -> Reply {
        let body = wire::encode(batch, wire::DEFAULT_LEVEL).unwrap();
        let auth = format!("Bearer {INGEST_TOKEN}");
        request(
            self.port,
            "POST",
            "/v1/batches",
            &[("Authorization", &auth)],
            &body,
        )
    }

    /// SIGTERM, and wait: the engine writes its snapshot on the way out.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "{exit}: {}", self.log());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The traffic: second `base + i` (i < 30) has `i % 3 + 1` requests: the
/// first to `/api` (200, 100 bytes), the second to `/blog` (404, 50 bytes),
/// the third to `/api` (500, 10 bytes).
fn traffic(base: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..30 {
        for j in 0..(i % 3 + 1) {
            let (path, status, bytes) = [
                ("/api/users", 200, 100),
                ("/blog/post", 404, 50),
                ("/api/items", 500, 10),
            ][j as usize];
            events.push(Event {
                timestamp: (base + i) * NS + j * 1_000_000,
                client: "10.0.0.1".into(),
                method: "GET".into(),
                path: path.into(),
                status,
                bytes,
                ..Event::default()
            });
        }
    }
    events
}

/// What `second` events and the 1-s series must say of `base + i`.
fn expected_second(base: i64, i: i64) -> Value {
    let c = if i < 30 { i % 3 + 1 } else { 0 };
    let mut sections = serde_json::Map::new();
    if c >= 1 {
        sections.insert("/api".into(), json!(if c >= 3 { 2 } else { 1 }));
    }
    if c >= 2 {
        sections.insert("/blog".into(), json!(1));
    }
    let bytes = [0, 100, 150, 160][c as usize];
    json!({
        "t": base + i,
        "total": c,
        "bytes": bytes,
        "status": {"2xx": c.min(1), "3xx": 0, "4xx": i64::from(c >= 2), "5xx": i64::from(c >= 3)},
        "sections": sections,
        "other": 0,
    })
}

fn batch(base: i64, start: u64, end: u64, events: Vec<Event>, sent_at: i64) -> Batch {
    Batch {
        agent_id: "agent-1".into(),
        host: "web-1".into(),
        stream: StreamId {
            fingerprint: 0xfeed,
            path: "/var/log/nginx/access.log".into(),
        },
        start,
        end,
        format: Format::Combined,
        labels: vec![],
        caught_up: events.is_empty(),
        events,
        malformed: 0,
        finished: false,
        sent_at: (base + sent_at) * NS,
    }
}

/// A second a few minutes ahead of the wall clock, a multiple of 60.
fn base_second() -> i64 {
    (wall() / 60 + 4) * 60
}

/// The traffic, then a heartbeat at `base + 40`: seconds up to `base + 34`
/// close.
fn feed(c: &Collector, base: i64) {
    let r = c.post(&batch(base, 0, 3000, traffic(base), 30));
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.post(&batch(base, 3000, 3000, vec![], 40));
    assert_eq!(r.status, 200, "{r:?}");
}

/// The Server-Sent Events of `GET path` (HTTP/1.0: the body is the stream).
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(port: u16, path: &str) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(s);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        assert!(head[0].starts_with("HTTP/1.0 200"), "{head:?}");
        assert!(
            head.iter()
                .any(|h| h.eq_ignore_ascii_case("content-type: text/event-stream")),
            "{head:?}"
        );
        Events { reader }
    }

    /// The next event: (name, data); comments are skipped.
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("an event in time");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !name.is_empty() {
                    return (name, serde_json::from_str(&data).unwrap());
                }
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }
}

#[test]
fn series_stream_and_access_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &dir.path().join("data"),
        &[
            "--dashboard-token",
            DASHBOARD_TOKEN,
            "--dashboard-prefix",
            "/logmon/",
        ],
    );
    let port = c.port;
    let mut events = Events::open(port, &format!("/api/stream?token={DASHBOARD_TOKEN}"));
    let (name, hello) = events.next();
    assert_eq!(name, "hello");
    assert!(hello.get("watermark").is_some(), "{hello}");

    let base = base_second();
    feed(&c, base);

    // Every closed second, each completed block and each transition, in
    // the order the engine produced them.
    let mut seconds = std::collections::BTreeMap::new();
    let mut blocks = Vec::new();
    let mut alerts = Vec::new();
    loop {
        let (name, data) = events.next();
        match name.as_str() {
            "second" => {
                let t = data["t"].as_i64().unwrap();
                seconds.insert(t, data);
                if t == base + 34 {
                    break;
                }
            }
            "stats" => blocks.push(data),
            "alert" => alerts.push(data),
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    // Before the traffic: silent seconds (how many depends on whether the
    // engine's first tick came before the first batch).
    for (t, data) in seconds.range(..base) {
        assert_eq!(data["total"], 0, "second {t}");
    }
    for i in 0..35 {
        let got = seconds.get(&(base + i)).unwrap_or_else(|| {
            panic!(
                "no second base+{i}; got {:?}",
                seconds.keys().map(|t| t - base).collect::<Vec<_>>()
            )
        });
        assert_eq!(*got, expected_second(base, i), "second base+{i}");
    }
    let ours: Vec<(i64, i64, u64)> = blocks
        .iter()
        .filter(|b| b["start"].as_i64().unwrap() >= base)
        .map(|b| {
            assert_eq!(b["kind"], "stats");
            (
                b["start"].as_i64().unwrap() - base,
                b["end"].as_i64().unwrap() - base,
                b["hits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, [(0, 10, 19), (10, 20, 20), (20, 30, 21)]);
    // high-traffic over 5 s above 1 req/s: 6/5 at base+2, 3/5 at base+33.
    let transitions: Vec<(&str, i64, f64)> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a["rule"], "high-traffic");
            (
                a["state"].as_str().unwrap(),
                a["at"].as_i64().unwrap() - base,
                a["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(transitions, [("firing", 2, 1.2), ("resolved", 33, 0.6)]);

    // The series: the same seconds, from memory.
    let s = api(port, "/api/series?range=900");
    assert_eq!(
        (&s["range"], &s["resolution"], &s["source"], &s["last"]),
        (&json!(900), &json!(1), &json!("memory"), &json!(base + 34))
    );
    let t: Vec<i64> = s["t"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(t, (base + 34 - 899..=base + 34).collect::<Vec<_>>());
    for i in 0..35 {
        let at = (899 - 34 + i) as usize;
        let want = expected_second(base, i);
        assert_eq!(s["total"][at], want["total"], "base+{i}");
        assert_eq!(s["bytes"][at], want["bytes"], "base+{i}");
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            assert_eq!(s["status"][class][at], want["status"][class]);
        }
        let api_hits = want["sections"].get("/api").cloned().unwrap_or(json!(0));
        let blog_hits = want["sections"].get("/blog").cloned().unwrap_or(json!(0));
        assert_eq!(s["sections"]["/api"][at], api_hits, "base+{i}");
        assert_eq!(s["sections"]["/blog"][at], blog_hits, "base+{i}");
    }
    assert_eq!(s["sections"].as_object().unwrap().len(), 2);
    let total: f64 = s["total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(total, 60.0);

    // 6 h: 10-s buckets of per-second averages; the last one (base+30..)
    // has 5 closed seconds, all silent.
    let s = api(port, "/api/series?range=21600");
    assert_eq!(
        (&s["resolution"], &s["source"]),
        (&json!(10), &json!("memory"))
    );
    let total = s["total"].as_array().unwrap();
    assert_eq!(total.len(), 2160);
    assert_eq!(s["t"][2159], base + 30);
    assert_eq!(
        &total[2155..],
        &[json!(0), json!(1.9), json!(2), json!(2.1), json!(0)]
    );
    assert_eq!(s["sections"]["/api"][2156], json!(1.3));
    assert_eq!(s["sections"]["/blog"][2158], json!(0.7));

    // The latest block, the agent, the overview, the alerts.
    let stats = api(port, "/api/stats");
    assert_eq!(
        (&stats["start"], &stats["hits"]),
        (&json!(base + 20), &json!(21))
    );
    assert_eq!(stats["sections"][0]["section"], "/api");
    let agents = api(port, "/api/agents");
    assert_eq!(
        agents,
        json!([{"agent": "agent-1", "host": "web-1", "last_seen": base + 40, "streams": [
            {"stream": "000000000000feed", "file": "/var/log/nginx/access.log",
             "watermark": base + 35, "lag_seconds": 0, "skew_seconds": 0, "caught_up": true,
             "finished": false, "events": 60}
        ]}])
    );
    let overview = api(port, "/api/overview");
    assert_eq!(
        (
            &overview["watermark"],
            &overview["events_total"],
            &overview["late_total"],
            &overview["lateness"]
        ),
        (&json!(base + 35), &json!(60), &json!(0), &json!(5))
    );
    // The rules' view follows closed seconds at most ten times a second.
    let alerts = wait_for("the alert resolved in the rules' view", || {
        let alerts = api(port, "/api/alerts?limit=1");
        (alerts["active"] == json!([])).then_some(alerts)
    });
    let history = alerts["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (&history[0]["state"], &history[0]["at"]),
        (&json!("resolved"), &json!(base + 33))
    );
    assert_eq!(
        api(port, "/api/alerts")["history"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(api(port, "/api/rules")[0]["name"], "high-traffic");

    // Access: the API needs the dashboard token, and only it; ingest needs
    // the ingest token, and only it.
    for (path, auth) in [
        ("/api/series", None),
        ("/api/stream", None),
        ("/api/series?token=wrong", None),
        ("/api/series", Some(format!("Bearer {INGEST_TOKEN}"))),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = request(port, "GET", path, &headers, b"");
        assert_eq!(r.status, 401, "{path} {auth:?}");
        assert_eq!(r.json()["error"], "unauthorized");
    }
    let bearer = format!("Bearer {DASHBOARD_TOKEN}");
    let r = request(
        port,
        "GET",
        "/api/stats",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = request(
        port,
        "POST",
        "/v1/batches",
        &[("Authorization", &bearer)],
        &wire::encode(&batch(base, 3000, 3000, vec![], 41), 1).unwrap(),
    );
    assert_eq!(r.status, 401, "the dashboard token never ingests");

    // Bad parameters.
    for path in [
        "/api/series?range=60",
        "/api/series?range=1h",
        "/api/alerts?limit=-1",
    ] {
        let r = get(port, &format!("{path}&token={DASHBOARD_TOKEN}"));
        assert_eq!(r.status, 400, "{path}");
        assert!(r.json()["error"].is_string());
    }
    let r = get(port, &format!("/api/nothing?token={DASHBOARD_TOKEN}"));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );

    // The prefix: the same answers under /logmon, the page public there.
    let direct = api(port, "/api/series?range=900");
    let prefixed = api(port, "/logmon/api/series?range=900");
    assert_eq!(direct, prefixed);
    let r = get(port, "/logmon");
    assert_eq!((r.status, r.header("location")), (308, Some("/logmon/")));
    for path in ["/", "/dashboard", "/logmon/", "/logmon/dashboard"] {
        let r = get(port, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(String::from_utf8_lossy(&r.body).contains("<html"), "{path}");
    }
    let r = get(port, "/logmon/assets/index.html");
    assert_eq!(r.status, 200);
    assert_eq!(get(port, "/logmon/assets/none.js").status, 404);
    assert_eq!(
        get(port, "/logmon/metrics").status,
        404,
        "only the dashboard is prefixed"
    );
}

/// A real `influxd` 1.x on free ports in a temporary directory, killed on
/// drop.
struct Influx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Influx {
    fn start() -> Influx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [logging]\n  level = \"warn\"\n",
            rpc = free_port()
        );
        let path = dir.path().join("influxdb.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(std::env::var("INFLUXD_BIN").unwrap_or("influxd".into()))
            .arg("run")
            .arg("-config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd (Debian's influxdb package; scripts/setup.sh installs it)");
        let influx = Influx {
            child,
            port,
            _dir: dir,
        };
        wait_for("influxd's /ping", || {
            let up =
                TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/ping").status == 204;
            up.then_some(())
        });
        influx
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn after_a_restart_the_series_come_from_the_influxdb_rollups() {
    let influx = Influx::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}", influx.port);
    let flags = [
        "--influx-url",
        url.as_str(),
        "--dashboard-token",
        DASHBOARD_TOKEN,
    ];
    let c = Collector::start(&data, &flags);
    let base = base_second();
    feed(&c, base);
    // Every request written, rollups with them.
    wait_for("the InfluxDB writer", || {
        let metrics = String::from_utf8(get(c.port, "/metrics").body).unwrap();
        metrics
            .lines()
            .any(|l| l == "logmon_influx_points_total 60")
            .then_some(())
    });
    let port = c.port;
    wait_for("the engine's watermark", || {
        (api(port, "/api/overview")["watermark"] == json!(base + 35)).then_some(())
    });
    // Memory holds the seconds since the engine's first; InfluxDB the rest.
    let before = api(port, "/api/series?range=900");
    assert_eq!(before["last"], base + 34);
    assert_eq!(before["source"], "influxdb");
    c.stop();

    // Restarted, memory holds nothing: every bucket comes from InfluxDB.
    let c = Collector::start(&data, &flags);
    let port = c.port;
    wait_for("the restored watermark", || {
        (api(port, "/api/overview")["watermark"] == json!(base + 35)).then_some(())
    });
    let after = api(port, "/api/series?range=900");
    assert_eq!(after["source"], "influxdb", "{}", c.log());
    assert_eq!(after["warnings"], Value::Null);
    for key in [
        "t",
        "total",
        "bytes",
        "status",
        "sections",
        "other",
        "last",
        "resolution",
    ] {
        assert!(after[key] == before[key], "{key} differs");
    }

    let s = api(port, "/api/series?range=21600");
    assert_eq!(
        (&s["resolution"], &s["source"]),
        (&json!(10), &json!("influxdb"))
    );
    let total = s["total"].as_array().unwrap();
    assert_eq!(
        &total[2155..],
        &[json!(0), json!(1.9), json!(2), json!(2.1), json!(0)]
    );
    let errors = s["status"]["5xx"].as_array().unwrap();
    assert_eq!(&errors[2156..2159], &[json!(0.3), json!(0.3), json!(0.4)]);
    let bytes = s["bytes"].as_array().unwrap();
    assert_eq!(&bytes[2156..2159], &[json!(133), json!(138), json!(139)]);
    assert_eq!(s["sections"]["/api"][2156], json!(1.3));
    assert_eq!(s["sections"]["/blog"][2158], json!(0.7));

    // 24 h: one 60-s bucket holds base..=base+34, 35 closed seconds.
    let s = api(port, "/api/series?range=86400");
    assert_eq!(
        (&s["resolution"], &s["source"]),
        (&json!(60), &json!("influxdb"))
    );
    assert_eq!(s["t"][1439], base);
    assert_eq!(s["total"][1439], json!(60.0 / 35.0));
    assert_eq!(s["sections"]["/api"][1439], json!(40.0 / 35.0));
    assert_eq!(s["sections"]["/blog"][1439], json!(20.0 / 35.0));
    assert_eq!(s["total"][1438], json!(0));

    // 7 days at 10 minutes and 30 days at an hour, from the rollups alone:
    // the last bucket holds the traffic over the seconds of it that closed.
    for (range, res, len) in [(604_800, 600, 1008), (2_592_000, 3600, 720)] {
        let s = api(port, &format!("/api/series?range={range}"));
        assert_eq!(
            (&s["resolution"], &s["source"], &s["warnings"]),
            (&json!(res), &json!("influxdb"), &Value::Null),
            "{range}"
        );
        let t = s["t"].as_array().unwrap();
        assert_eq!(t.len(), len, "{range}");
        let start = base - base.rem_euclid(res);
        assert_eq!(t[len - 1], start, "{range}");
        let closed = (base + 35 - start) as f64;
        // serde_json reads floats to within an ulp (without its
        // float_roundtrip feature): the values are n / closed exactly as
        // written, compared to the ulp.
        let near = |v: &Value, want: f64| {
            let got = v.as_f64().unwrap();
            assert!(
                (got - want).abs() <= want * f64::EPSILON,
                "{range}: {got} vs {want}"
            );
        };
        near(&s["total"][len - 1], 60.0 / closed);
        near(&s["sections"]["/api"][len - 1], 40.0 / closed);
        near(&s["sections"]["/blog"][len - 1], 20.0 / closed);
        assert_eq!(s["total"][len - 2], json!(0), "{range}");
    }
    c.stop();
}

#[test]
fn head_security_headers_refusals_and_the_stream_cap_on_the_real_listener() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &dir.path().join("data"),
        &["--dashboard-token", DASHBOARD_TOKEN],
    );
    let port = c.port;
    let token = format!("token={DASHBOARD_TOKEN}");

    // HEAD of an API route: GET's headers, no body.
    let got = get(port, &format!("/api/agents?{token}"));
    assert_eq!((got.status, got.body.as_slice()), (200, b"[]".as_slice()));
    let head = request(port, "HEAD", &format!("/api/agents?{token}"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(head.header("content-length"), Some("2"));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert!(head.body.is_empty(), "{head:?}");
    let head = request(port, "HEAD", &format!("/api/stream?{token}"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(head.body.is_empty(), "{head:?}");

    // Security headers on the page, an asset, the API and a refusal; the
    // policy on the page only.
    for path in [
        "/",
        "/assets/index.html",
        &format!("/api/agents?{token}"),
        "/api/agents",
    ] {
        let r = get(port, path);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        let csp = (path == "/" || path == "/assets/index.html").then_some(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'",
        );
        assert_eq!(r.header("content-security-policy"), csp, "{path}");
    }

    // Refusals say why, from ingest and from the dashboard.
    for (method, path, status, allow, body) in [
        (
            "GET",
            "/nothing",
            404,
            None,
            json!({"error": "not_found", "reason": "no route for GET /nothing"}),
        ),
        (
            "GET",
            "/v1/batches",
            405,
            Some("POST"),
            json!({"error": "method_not_allowed", "reason": "/v1/batches takes POST"}),
        ),
        (
            "POST",
            "/health",
            405,
            Some("GET"),
            json!({"error": "method_not_allowed", "reason": "/health takes GET"}),
        ),
        (
            "POST",
            "/api/stats",
            405,
            Some("GET, HEAD"),
            json!({"error": "method_not_allowed", "reason": "the dashboard is read-only"}),
        ),
    ] {
        let r = request(port, method, path, &[], b"");
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(r.header("allow"), allow, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), body, "{method} {path}");
    }

    // 256 event streams, each on its own connection: the next is refused,
    // and agents' requests are still answered (streams do not take their
    // places).
    let path = format!("/api/stream?{token}");
    let streams: Vec<Events> = (0..256).map(|_| Events::open(port, &path)).collect();
    let refused = get(port, &path);
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.json(),
        json!({"error": "too_many_streams",
               "reason": "256 event streams are open, the most there can be"})
    );
    assert_eq!(get(port, "/health").status, 200);
    drop(streams);
    c.stop();
}
