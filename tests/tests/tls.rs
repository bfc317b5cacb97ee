//! TLS end to end, with certificates made in the test (rcgen): the real
//! agent ships to the real `logmon-collector serve` over HTTPS, with and
//! without client certificates, and every way a handshake must fail fails,
//! with the reason on both sides.

use logmon_protocol::Format;
use logmon_tests::bench::metric;
use logmon_tests::harness::{Running, free_port};
use logmon_tests::pki::{Ca, Issued, der, https_get};
use logmon_tests::{GenSpec, agent_bin, collector_bin, generate};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "tls-secret";

/// A collector on `port` serving TLS with `args` (certificate flags) and
/// `config` (more of its TOML file), its stderr in `dir/NAME.err`.
struct Collector {
    port: u16,
    log: PathBuf,
    _process: Running,
}

impl Collector {
    fn start(dir: &Path, name: &str, args: &[&str], config: &str) -> Collector {
        let port = free_port();
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        let log = dir.join(format!("{name}.err"));
        let process = Running(
            Command::new(collector_bin())
                .arg("serve")
                .arg("--config")
                .arg(&file)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--token", TOKEN])
                .arg("--data-dir")
                .arg(dir.join(format!("{name}-data")))
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting logmon-collector serve"),
        );
        // Listening: a TCP connection is taken (TLS may not work yet).
        wait("the collector to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Collector {
            port,
            log,
            _process: process,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A metric over HTTPS (`client` when the collector requires one).
    fn metric(&self, ca: &Path, client: Option<&Issued>, name: &str) -> u64 {
        let answer = https_get(self.port, "/metrics", ca, client).expect("GET /metrics");
        metric(&answer.text, name).unwrap_or(0)
    }
}

/// An agent shipping `dir/logs/NAME.log` to `url` as `agent_id`, with the
/// `[tls]` table `tls`; its stderr in `dir/NAME-agent.err`.
fn agent(dir: &Path, name: &str, url: &str, agent_id: &str, tls: &str) -> (Running, PathBuf) {
    agent_with_token(dir, name, url, agent_id, tls, TOKEN)
}

/// [`agent`] with the bearer token `token`.
fn agent_with_token(
    dir: &Path,
    name: &str,
    url: &str,
    agent_id: &str,
    tls: &str,
    token: &str,
) -> (Running, PathBuf) {
    let config = dir.join(format!("{name}-agent.toml"));
    std::fs::write(
        &config,
        format!(
            "agent_id = \"{agent_id}\"\ncollector_urls = [\"{url}\"]\nretry_max_ms = 500\n\
             [tail]\nstart_at = \"beginning\"\n[tls]\n{tls}"
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}-agent.err"));
    let process = Running(
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(["--token", token, "--metrics-listen", ""])
            .arg("--file")
            .arg(format!(
                "{}:combined",
                dir.join("logs").join(format!("{name}.log")).display()
            ))
            .arg("--checkpoint-dir")
            .arg(dir.join(format!("{name}-checkpoints")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting logmon-agent"),
    );
    (process, log)
}

/// A log of `lines` Combined lines at `dir/logs/NAME.log`.
fn log(dir: &Path, name: &str, lines: u64, seed: u64) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let generated = generate(
        dir,
        &GenSpec {
            format: Format::Combined,
            lines,
            start: logmon_tests::harness::unix_now() as i64 - 600,
            rate: 20.0,
            steady: true,
            seed,
            ..GenSpec::default()
        },
    );
    std::fs::rename(generated, logs.join(format!("{name}.log"))).unwrap();
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` (a process's stderr) contains `needle`.
fn wait_for_text(what: &str, path: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(path).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({needle:?}) in {}:\n{}",
            path.display(),
            text(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ACCEPTED: &str = "logmon_ingest_events_accepted_total";
const FORBIDDEN: &str = r#"logmon_ingest_batches_rejected_total{reason="forbidden"}"#;
const FAILED: &str = "logmon_http_tls_handshake_failures_total";

/// Client certificates optional (`--tls-client-ca`): the agent with its
/// own certificate ships every line; one whose certificate is for another
/// agent gets 403 and nothing of its log is stored; an agent trusting
/// another CA, and one that reaches the collector by a name its
/// certificate is not for, are refused by their own checks, and the
/// collector counts and logs the failed handshakes.
#[test]
fn agents_ship_over_tls_and_an_agent_writes_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "logmon-test-ca");
    let other_ca = Ca::new(d, "another-ca");
    let server = ca.issue(d, "collector", &["localhost"]);
    let agent_a = ca.issue(d, "agent-a", &["agent-a"]);
    let c = Collector::start(
        d,
        "c1",
        &[
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
            "--tls-client-ca",
            ca.cert.to_str().unwrap(),
        ],
        "",
    );
    let url = format!("https://localhost:{}", c.port);
    let a_tls = format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        ca.cert, agent_a.cert, agent_a.key
    );

    log(d, "a", 500, 1);
    let (a, a_log) = agent(d, "a", &url, "agent-a", &a_tls);
    wait("agent-a's 500 lines", Duration::from_secs(30), || {
        c.metric(&ca.cert, None, ACCEPTED) == 500
    });
    drop(a);
    assert!(
        c.log().contains("collector listening on https://"),
        "{}",
        c.log()
    );
    assert!(!text(&a_log).contains("WARN"), "{}", text(&a_log));

    // agent-a's certificate, agent-b's name in the batches: 403, nothing stored.
    log(d, "b", 50, 2);
    let (b, b_log) = agent(d, "b", &url, "agent-b", &a_tls);
    wait_for_text("agent-b's refusal", &b_log, "403 Forbidden");
    assert!(
        text(&b_log).contains("not for agent `agent-b`"),
        "{}",
        text(&b_log)
    );
    drop(b);
    assert!(c.metric(&ca.cert, None, FORBIDDEN) >= 1);
    assert_eq!(
        c.metric(&ca.cert, None, ACCEPTED),
        500,
        "nothing of agent-b stored"
    );

    // Trusting another CA: the agent refuses the collector's certificate.
    log(d, "wrong-ca", 10, 3);
    let wrong_ca = format!("ca_file = {:?}\n", other_ca.cert);
    let (w, w_log) = agent(d, "wrong-ca", &url, "wrong-ca", &wrong_ca);
    wait_for_text("the unknown issuer", &w_log, "UnknownIssuer");
    drop(w);
    // By a name the certificate is not for (it names localhost only).
    log(d, "by-ip", 10, 4);
    let by_ip = format!("https://127.0.0.1:{}", c.port);
    let (i, i_log) = agent(d, "by-ip", &by_ip, "by-ip", &a_tls);
    wait_for_text(
        "the name mismatch",
        &i_log,
        "certificate not valid for name \"127.0.0.1\"",
    );
    drop(i);
    assert!(c.metric(&ca.cert, None, FAILED) >= 2);
    wait_for_text(
        "the collector's report",
        &c.log,
        "TLS handshake failed: received fatal alert",
    );
    assert_eq!(c.metric(&ca.cert, None, ACCEPTED), 500);
    // A plain-HTTP client gets no answer from a TLS listener.
    assert!(
        logmon_tests::harness::http_get(c.port, "/health")
            .lines()
            .next()
            .is_none_or(|l| !l.starts_with("HTTP/1.1 200")),
    );
}

/// Client certificates required, and the collector's certificate expired
/// at start: the agent refuses it; the certificate is replaced on disk,
/// and without a restart new connections get the new one and the agent
/// ships every line. An agent without a client certificate is refused by
/// the collector, which says why.
#[test]
fn an_expired_certificate_replaced_on_disk_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "logmon-test-ca");
    let now = time::OffsetDateTime::now_utc();
    let server = ca.issue_valid(
        d,
        "collector",
        &["localhost"],
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let agent_x = ca.issue(d, "agent-x", &["agent-x"]);
    let c = Collector::start(
        d,
        "c2",
        &[
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
            "--tls-client-ca",
            ca.cert.to_str().unwrap(),
            "--require-client-cert",
        ],
        "[http.tls]\ncert = \"unused\"\nkey = \"unused\"\nreload_secs = 1\n",
    );
    let url = format!("https://localhost:{}", c.port);
    log(d, "x", 300, 5);
    let tls = format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        ca.cert, agent_x.cert, agent_x.key
    );
    let (x, x_log) = agent(d, "x", &url, "agent-x", &tls);
    wait_for_text(
        "the agent to refuse the expired certificate",
        &x_log,
        "invalid peer certificate: certificate expired",
    );
    let refused = https_get(c.port, "/health", &ca.cert, Some(&agent_x)).unwrap_err();
    assert!(refused.contains("certificate expired"), "{refused}");
    wait_for_text(
        "the collector's report",
        &c.log,
        "TLS handshake failed: received fatal alert: CertificateExpired",
    );

    // Renewed on disk (written beside and renamed, as certbot does).
    let renewed = ca.issue(d, "collector", &["localhost"]);
    let want = der(&renewed.cert);
    wait(
        "the new certificate to be served",
        Duration::from_secs(20),
        || {
            https_get(c.port, "/health", &ca.cert, Some(&agent_x))
                .is_ok_and(|a| a.server_cert == want && a.text.starts_with("HTTP/1.1 200"))
        },
    );
    wait_for_text("the reload's log line", &c.log, "TLS certificate reloaded");
    wait("agent-x's 300 lines", Duration::from_secs(30), || {
        c.metric(&ca.cert, Some(&agent_x), ACCEPTED) == 300
    });
    drop(x);
    assert_eq!(
        c.metric(&ca.cert, Some(&agent_x), "logmon_http_tls_reloads_total"),
        1
    );

    // No client certificate where one is required.
    let refused = https_get(c.port, "/health", &ca.cert, None).unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");
    log(d, "anon", 10, 6);
    let anon = format!("ca_file = {:?}\n", ca.cert);
    let (n, n_log) = agent(d, "anon", &url, "anon", &anon);
    wait_for_text("the agent's refusal", &n_log, "CertificateRequired");
    drop(n);
    assert_eq!(c.metric(&ca.cert, Some(&agent_x), ACCEPTED), 300);
}

/// The collector at start: a missing key file or a client CA without TLS
/// is an error naming it, and the process exits 1.
#[test]
fn bad_tls_settings_stop_the_collector_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "logmon-test-ca");
    let server = ca.issue(d, "collector", &["localhost"]);
    let missing = d.join("missing.key");
    let run = |args: &[&str]| {
        let out = Command::new(collector_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .arg("--data-dir")
            .arg(d.join("data"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "--tls-cert",
        server.cert.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("reading the private key {}", missing.display())),
        "{err}"
    );
    let (code, err) = run(&["--tls-client-ca", ca.cert.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("need TLS"), "{err}");
}

/// The collector writes to an InfluxDB that serves HTTPS, checking its
/// certificate against `[influx.tls] ca_file`: every line is stored; a
/// collector trusting another CA stores nothing and logs why.
#[test]
fn the_collector_writes_to_influxdb_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "logmon-test-ca");
    let other_ca = Ca::new(d, "another-ca");
    let influx_cert = ca.issue(d, "influxdb", &["localhost"]);
    let influx = logmon_tests::influx::InfluxServer::start_https(&influx_cert, &ca.cert);
    assert!(influx.url().starts_with("https://localhost:"));
    let config = |ca: &Path| {
        format!(
            "[influx]\nurl = \"{}\"\n[influx.tls]\nca_file = {ca:?}\n[influx.api.v1]\ndatabase = \"tls\"\n",
            influx.url()
        )
    };
    let good = Collector::start(d, "good", &[], &config(&ca.cert));
    log(d, "good", 300, 7);
    let (a, a_log) = agent(
        d,
        "good",
        &format!("http://127.0.0.1:{}", good.port),
        "agent-good",
        "",
    );
    let count =
        || influx.scalar(r#"SELECT count("bytes") FROM "tls"."logmon_hot"."http_requests""#);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < 300 {
        assert!(
            Instant::now() < deadline,
            "InfluxDB over https holds {} of 300:\n{}\n{}",
            count(),
            good.log(),
            text(&a_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(), 300);
    drop(a);

    let bad = Collector::start(d, "bad", &[], &config(&other_ca.cert));
    log(d, "bad", 10, 8);
    let (b, _) = agent(
        d,
        "bad",
        &format!("http://127.0.0.1:{}", bad.port),
        "agent-bad",
        "",
    );
    wait_for_text(
        "the writer's report",
        &bad.log,
        "invalid peer certificate: UnknownIssuer",
    );
    drop(b);
    drop(bad);
    drop(good);
    assert_eq!(
        count(),
        300,
        "nothing from the collector that does not trust it"
    );
}

/// Ingest token files are read again when they change (checked every 5 s):
/// a token added to the file lets the agent that holds it in without a
/// restart, and one removed is refused from then on.
#[test]
fn a_token_added_to_or_removed_from_a_token_file_works_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = d.join("tokens");
    let write_tokens = |text: &str| {
        let temp = d.join("tokens.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &tokens).unwrap();
    };
    write_tokens("# agents\nold-token\n");
    let c = Collector::start(
        d,
        "c",
        &[],
        &format!("[ingest]\ntoken_files = [{tokens:?}]\n"),
    );
    let url = format!("http://127.0.0.1:{}", c.port);
    let accepted = || {
        metric(
            &logmon_tests::harness::http_get(c.port, "/metrics"),
            ACCEPTED,
        )
        .unwrap_or(0)
    };
    log(d, "new", 100, 9);
    let (a, a_log) = agent_with_token(d, "new", &url, "agent-new", "", "new-token");
    wait_for_text(
        "the refused token",
        &a_log,
        "refused the token (401 Unauthorized)",
    );
    assert_eq!(accepted(), 0);

    write_tokens("# agents\nold-token\nnew-token\n");
    wait("the new token's 100 lines", Duration::from_secs(30), || {
        accepted() == 100
    });
    wait_for_text(
        "the reload's log line",
        &c.log,
        "ingest tokens reloaded from the token files tokens=3",
    );
    drop(a);

    // Retired: refused from the next change on.
    write_tokens("old-token\n");
    wait_for_text(
        "the second reload",
        &c.log,
        "ingest tokens reloaded from the token files tokens=2",
    );
    log(d, "late", 10, 10);
    let (b, b_log) = agent_with_token(d, "late", &url, "agent-late", "", "new-token");
    wait_for_text(
        "the retired token refused",
        &b_log,
        "refused the token (401 Unauthorized)",
    );
    drop(b);
    assert_eq!(accepted(), 100);
}
