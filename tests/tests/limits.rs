//! The collector's limits against a hostile or greedy client, end to end
//! with the real binaries, on loopback only, each test bounded: a rate
//! limit slows an agent without losing a line; a thousand idle
//! connections from one address and a slow-loris client do not keep a real
//! agent from delivering.

use logmon_protocol::Format;
use logmon_tests::bench::metric;
use logmon_tests::harness::{Running, free_port, http_get, wait_for_health};
use logmon_tests::{GenSpec, agent_bin, collector_bin, generate};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "limits-secret";

fn collector(dir: &Path, config: &str) -> (Running, u16, PathBuf) {
    let port = free_port();
    let file = dir.join("collector.toml");
    std::fs::write(&file, config).unwrap();
    let log = dir.join("collector.err");
    let c = Running(
        Command::new(collector_bin())
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", TOKEN])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting logmon-collector serve"),
    );
    wait_for_health(port);
    (c, port, log)
}

/// The agent shipping `lines` generated Combined lines from the start.
fn agent(dir: &Path, port: u16, lines: u64) -> (Running, PathBuf) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let generated = generate(
        dir,
        &GenSpec {
            format: Format::Combined,
            lines,
            start: logmon_tests::harness::unix_now() as i64 - 600,
            rate: 50.0,
            steady: true,
            seed: 11,
            ..GenSpec::default()
        },
    );
    std::fs::rename(generated, logs.join("access.log")).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "agent_id = \"greedy\"\nretry_max_ms = 2000\n[tail]\nstart_at = \"beginning\"\n",
    )
    .unwrap();
    let log = dir.join("agent.err");
    let a = Running(
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(["--collector", &format!("http://127.0.0.1:{port}")])
            .args(["--token", TOKEN, "--metrics-listen", ""])
            .arg("--file")
            .arg(format!("{}:combined", logs.join("access.log").display()))
            .arg("--checkpoint-dir")
            .arg(dir.join("checkpoints"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting logmon-agent"),
    );
    (a, log)
}

fn counter(port: u16, name: &str) -> u64 {
    metric(&http_get(port, "/metrics"), name).unwrap_or(0)
}

fn wait(what: &str, timeout: Duration, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ACCEPTED: &str = "logmon_ingest_events_accepted_total";

/// 1,000 events a second with a one-second bucket, 5,000 lines read at
/// once: the collector answers 429 with `Retry-After`, the agent waits and
/// sends again, and every line is accepted exactly once.
#[test]
fn an_agent_over_its_rate_limit_is_slowed_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, port, c_log) = collector(
        dir.path(),
        "[ingest.rate_limit]\nevents_per_sec = 1000.0\nburst_secs = 1.0\n",
    );
    let started = Instant::now();
    let (_a, a_log) = agent(dir.path(), port, 5_000);
    wait("every line", Duration::from_secs(60), &a_log, || {
        counter(port, ACCEPTED) >= 5_000
    });
    eprintln!(
        "5,000 lines at 1,000 events/s: accepted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(counter(port, ACCEPTED), 5_000);
    let limited = counter(
        port,
        r#"logmon_ingest_batches_rejected_total{reason="rate_limited"}"#,
    );
    assert!(limited >= 1, "{}", http_get(port, "/metrics"));
    let agent_log = std::fs::read_to_string(&a_log).unwrap();
    assert!(
        agent_log.contains("429 Too Many Requests")
            && agent_log.contains("agent `greedy` is over its rate limit"),
        "{agent_log}"
    );
    assert!(
        !std::fs::read_to_string(&c_log).unwrap().contains("ERROR"),
        "the collector logged an error"
    );
}

/// A connection to the collector from `from` (a loopback address of its
/// own, so the collector counts it apart from the agent's 127.0.0.1).
fn connect_from(from: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let stream = socket
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let stream = stream.into_std().unwrap();
        // tokio's sockets are non-blocking; this one is read with timeouts.
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// 1,000 connections from 127.0.0.2 that never send a byte, and a client
/// on 127.0.0.3 that sends a request's headers a byte every 300 ms: the
/// collector keeps 100 of the idle ones (`max_connections_per_client`) and
/// closes the others at once, closes the slow client once its header
/// timeout (15 s) passes, and the real agent on 127.0.0.1 delivers every
/// line meanwhile. The kept idle ones are closed too once the header
/// timeout passes without a request.
#[test]
fn idle_connections_and_a_slow_loris_do_not_stop_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, port, c_log) = collector(
        dir.path(),
        "[http]\nmax_connections = 1100\nmax_connections_per_client = 100\nheader_timeout_secs = 15\n",
    );
    let idle: Vec<TcpStream> = (0..1_000)
        .map(|_| connect_from("127.0.0.2", port))
        .collect();
    wait(
        "900 connections refused",
        Duration::from_secs(20),
        &c_log,
        || counter(port, "logmon_http_connections_refused_total") >= 900,
    );
    assert_eq!(
        counter(port, "logmon_http_connections_refused_total"),
        900,
        "exactly the connections past the 100th"
    );

    let slow = std::thread::spawn(move || {
        let mut s = connect_from("127.0.0.3", port);
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let started = Instant::now();
        let request = b"POST /v1/batches HTTP/1.1\r\nHost: collector\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for byte in request.iter().cycle().take(200) {
            if s.write_all(&[*byte]).is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                // Closed, or answered (408) and then closed.
                Ok(_) => return Some(started.elapsed()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    });

    let (_a, a_log) = agent(dir.path(), port, 2_000);
    wait(
        "the agent's 2,000 lines",
        Duration::from_secs(60),
        &a_log,
        || counter(port, ACCEPTED) >= 2_000,
    );
    assert_eq!(counter(port, ACCEPTED), 2_000);
    let closed = slow.join().unwrap();
    let closed = closed.expect("the slow client was closed before it sent 200 bytes (60 s)");
    eprintln!(
        "the slow client was closed after {:.1} s",
        closed.as_secs_f64()
    );
    // The 100 kept idle connections sent no request within the header
    // timeout (15 s): each was closed by then (the 900 others at once).
    let mut idle = idle;
    let still_open = idle
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .filter(|open| *open)
        .count();
    assert_eq!(
        still_open, 0,
        "idle connections left open past the header timeout"
    );
}

/// A client that sends a batch's headers and then trickles its body is
/// answered 408 once `body_timeout_secs` (2 s here) passes, and counted.
#[test]
fn a_body_that_trickles_in_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, port, _log) = collector(dir.path(), "[ingest]\nbody_timeout_secs = 2\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if !answer.is_empty() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the body did not arrive within 2 s"),
        "{answer}"
    );
    assert_eq!(
        counter(
            port,
            r#"logmon_ingest_batches_rejected_total{reason="body_timeout"}"#
        ),
        1
    );
}
