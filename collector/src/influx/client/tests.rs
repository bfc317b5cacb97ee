//! Request building and retry behaviour against an in-process fake InfluxDB
//! (a hyper server on port 0 that records requests and answers from a
//! script).

use super::*;
use crate::influx::config::V2Config;
use crate::influx::writer::Writer;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::Mutex;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    /// Gunzipped when `Content-Encoding: gzip`.
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Script = VecDeque<(u16, Vec<(&'static str, &'static str)>, &'static str)>;

struct Fake {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<Script>>,
}

impl Fake {
    /// Answers from `script` in order, then 204.
    async fn start(script: Script) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let (reqs, scr) = (requests.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (reqs, scr) = (reqs.clone(), scr.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (reqs, scr) = (reqs.clone(), scr.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let raw = body.collect().await?.to_bytes();
                            let gz = parts
                                .headers
                                .get(header::CONTENT_ENCODING)
                                .is_some_and(|v| v == "gzip");
                            let body = if gz {
                                let mut out = Vec::new();
                                flate2::read::GzDecoder::new(&raw[..])
                                    .read_to_end(&mut out)
                                    .unwrap();
                                out
                            } else {
                                raw.to_vec()
                            };
                            reqs.lock().unwrap().push(Recorded {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                query: parts.uri.query().unwrap_or("").to_owned(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                                    .collect(),
                                body,
                            });
                            let (status, headers, text) =
                                scr.lock().unwrap().pop_front().unwrap_or((204, vec![], ""));
                            let mut resp = hyper::Response::builder().status(status);
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, hyper::Error>(
                                resp.body(Full::new(Bytes::from_static(text.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fake {
            url,
            requests,
            script,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn fast(config: InfluxConfig) -> InfluxConfig {
    InfluxConfig {
        initial_backoff_ms: 1,
        max_backoff_ms: 20,
        ..config
    }
}

fn v2(url: &str) -> InfluxConfig {
    fast(InfluxConfig {
        url: url.into(),
        api: InfluxApi::V2(V2Config {
            org: "acme corp".into(),
            bucket: "logs/raw".into(),
            rollup_bucket: Some("rollups".into()),
            token: "tok3n==".into(),
        }),
        ..InfluxConfig::default()
    })
}

const LINES: &[u8] = b"m,t=a f=1i 1\nm,t=b f=2i 2\n";

#[tokio::test]
async fn v2_writes_go_to_the_v2_api_with_a_token_and_gzip() {
    let fake = Fake::start(Script::new()).await;
    let client = InfluxClient::new(v2(&format!("{}/prefix/", fake.url))).unwrap();
    assert_eq!(
        client.write(Tier::Hot, Bytes::from_static(LINES)).await,
        Ok(1)
    );
    client
        .write(Tier::Rollups, Bytes::from_static(b"r v=1i 1\n"))
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/prefix/api/v2/write");
    assert_eq!(r.query, "org=acme%20corp&bucket=logs%2Fraw&precision=ns");
    assert_eq!(r.header("authorization"), Some("Token tok3n=="));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("host").is_some_and(|h| fake.url.ends_with(h)));
    assert_eq!(r.body, LINES);
    assert_eq!(reqs[1].query, "org=acme%20corp&bucket=rollups&precision=ns");
    assert_eq!(reqs[1].body, b"r v=1i 1\n");
}

#[tokio::test]
async fn v1_writes_name_database_and_policy_and_may_skip_gzip() {
    let fake = Fake::start(Script::new()).await;
    let client = InfluxClient::new(fast(InfluxConfig {
        url: fake.url.clone(),
        gzip: false,
        api: InfluxApi::V1(V1Config {
            username: Some("ann".into()),
            password: Some("pw:1".into()),
            ..V1Config::default()
        }),
        ..InfluxConfig::default()
    }))
    .unwrap();
    client
        .write(Tier::Hot, Bytes::from_static(LINES))
        .await
        .unwrap();
    client
        .write(Tier::Rollups, Bytes::from_static(LINES))
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs[0].path, "/write");
    assert_eq!(reqs[0].query, "db=logmon&rp=logmon_hot&precision=ns");
    assert_eq!(reqs[1].query, "db=logmon&rp=logmon_rollups&precision=ns");
    assert_eq!(reqs[0].header("content-encoding"), None);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Basic {}", base64(b"ann:pw:1")).as_str())
    );
    assert_eq!(reqs[0].body, LINES);
}

#[tokio::test]
async fn overload_and_server_errors_are_retried_honouring_retry_after() {
    let fake = Fake::start(Script::from([
        (429, vec![("retry-after", "1")], r#"{"error":"slow down"}"#),
        (503, vec![], "unavailable"),
        (500, vec![], r#"{"error":"timeout"}"#),
    ]))
    .await;
    let client = InfluxClient::new(v2(&fake.url)).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        client.write(Tier::Hot, Bytes::from_static(LINES)).await,
        Ok(4)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|r| r.body == LINES));
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn retries_give_up_after_max_retries() {
    let fake = Fake::start(Script::from([
        (503, vec![], "a"),
        (503, vec![], "b"),
        (503, vec![], r#"{"message":"still down"}"#),
    ]))
    .await;
    let client = InfluxClient::new(InfluxConfig {
        max_retries: 2,
        ..v2(&fake.url)
    })
    .unwrap();
    assert_eq!(
        client.write(Tier::Hot, Bytes::from_static(LINES)).await,
        Err(WriteError::Exhausted {
            attempts: 3,
            last: "503 Service Unavailable: still down".into()
        })
    );
}

#[tokio::test]
async fn partial_writes_are_reported_and_not_retried() {
    let body = r#"{"error":"partial write: field type conflict: input field \"bytes\" on measurement \"http_requests\" is type string, already exists as type integer dropped=1"}"#;
    let fake = Fake::start(Script::from([(400, vec![], body)])).await;
    let client = InfluxClient::new(v2(&fake.url)).unwrap();
    let err = client
        .write(Tier::Hot, Bytes::from_static(LINES))
        .await
        .unwrap_err();
    assert!(!err.is_fatal());
    let WriteError::Partial(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("partial write: field type conflict"),
        "{message}"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(client.stats().partial_writes.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn auth_and_missing_database_are_fatal_at_once() {
    for (status, body) in [
        (
            401,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        ),
        (404, r#"{"error":"database not found: \"logmon\""}"#),
    ] {
        let fake = Fake::start(Script::from([(status, vec![], body)])).await;
        let client = InfluxClient::new(v2(&fake.url)).unwrap();
        let err = client
            .write(Tier::Hot, Bytes::from_static(LINES))
            .await
            .unwrap_err();
        assert!(err.is_fatal());
        assert!(
            matches!(err, WriteError::Rejected { status: s, .. } if s == status),
            "{err:?}"
        );
        assert_eq!(fake.requests().len(), 1);
    }
}

#[tokio::test]
async fn network_errors_are_retried_until_the_server_comes() {
    // Reserve a port, close it, and open it only after a while.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = InfluxClient::new(InfluxConfig {
        max_backoff_ms: 50,
        ..v2(&format!("http://{addr}"))
    })
    .unwrap();
    let write = tokio::spawn({
        let client = client.clone();
        async move { client.write(Tier::Hot, Bytes::from_static(LINES)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (mut stream, _) = listener.accept().await.unwrap();
    // A minimal HTTP/1.1 answer to whatever arrives.
    let mut buf = vec![0u8; 64 << 10];
    let mut seen = Vec::new();
    loop {
        use tokio::io::AsyncReadExt;
        let n = stream.read(&mut buf).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            if seen.len() >= end + 4 + len {
                break;
            }
        }
    }
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    let attempts = write.await.unwrap().unwrap();
    assert!(attempts > 1, "{attempts}");
}

#[tokio::test]
async fn writer_sends_every_batch_with_bounded_concurrency() {
    let fake = Fake::start(Script::from([(503, vec![], "once")])).await;
    let client = InfluxClient::new(InfluxConfig {
        batch_lines: 3,
        concurrency: 2,
        ..v2(&fake.url)
    })
    .unwrap();
    let mut body = Vec::new();
    for i in 0..10 {
        body.extend_from_slice(format!("m v={i}i {i}\n").as_bytes());
    }
    let report = Writer::new(client)
        .write(Tier::Hot, body.clone())
        .await
        .unwrap();
    assert_eq!((report.lines, report.batches, report.attempts), (10, 4, 5));
    assert!(report.partial.is_empty());
    let mut got: Vec<Vec<u8>> = fake.requests().into_iter().map(|r| r.body).collect();
    got.sort();
    got.dedup();
    let mut all: Vec<u8> = Vec::new();
    let mut lines: Vec<&[u8]> = got
        .iter()
        .flat_map(|b| b.split_inclusive(|&c| c == b'\n'))
        .collect();
    lines.sort();
    for l in lines {
        all.extend_from_slice(l);
    }
    let mut want: Vec<&[u8]> = body.split_inclusive(|&c| c == b'\n').collect();
    want.sort();
    assert_eq!(all, want.concat());
    assert!(fake.script.lock().unwrap().is_empty());
}

#[tokio::test]
async fn writer_reports_partial_batches_and_stops_on_fatal_ones() {
    let fake = Fake::start(Script::from([(
        400,
        vec![],
        r#"{"error":"partial write: x"}"#,
    )]))
    .await;
    let client = InfluxClient::new(InfluxConfig {
        batch_lines: 1,
        concurrency: 1,
        ..v2(&fake.url)
    })
    .unwrap();
    let writer = Writer::new(client);
    let report = writer
        .write(Tier::Hot, &b"a v=1i\nb v=2i\n"[..])
        .await
        .unwrap();
    assert_eq!(report.partial, ["partial write: x"]);
    assert_eq!(report.batches, 2);

    fake.script
        .lock()
        .unwrap()
        .push_back((403, vec![], r#"{"error":"forbidden"}"#));
    let err = writer
        .write(Tier::Hot, &b"a v=1i\nb v=2i\nc v=3i\n"[..])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        WriteError::Rejected {
            status: 403,
            message: "forbidden".into()
        }
    );
    assert_eq!(
        fake.requests().len(),
        3,
        "nothing sent after the fatal answer"
    );
}

#[tokio::test]
async fn ensure_schema_creates_what_is_missing_and_alters_what_differs() {
    let show = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["logmon_rollups","24h0m0s","24h0m0s",1,false]]}]}]}"#;
    let ok = r#"{"results":[{"statement_id":0}]}"#;
    let fake = Fake::start(Script::from([
        (200, vec![], ok),
        (200, vec![], show),
        (200, vec![], ok),
        (200, vec![], ok),
    ]))
    .await;
    let client = InfluxClient::new(fast(InfluxConfig {
        url: fake.url.clone(),
        ..InfluxConfig::default()
    }))
    .unwrap();
    let report = client.ensure_schema().await.unwrap();
    assert_eq!(
        report,
        SchemaReport {
            created: vec!["logmon_hot".into()],
            altered: vec!["logmon_rollups".into()],
        }
    );
    let queries: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/query"));
            String::from_utf8(r.body.clone()).unwrap()
        })
        .collect();
    assert_eq!(
        queries,
        [
            "q=CREATE%20DATABASE%20%22logmon%22",
            "q=SHOW%20RETENTION%20POLICIES%20ON%20%22logmon%22",
            "q=CREATE%20RETENTION%20POLICY%20%22logmon_hot%22%20ON%20%22logmon%22%20DURATION%2030d%20REPLICATION%201%20DEFAULT",
            "q=ALTER%20RETENTION%20POLICY%20%22logmon_rollups%22%20ON%20%22logmon%22%20DURATION%20400d",
        ]
    );
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let (i, m) = (Duration::from_millis(100), Duration::from_secs(10));
    assert_eq!(backoff(1, i, m, 1.0), Duration::from_millis(100));
    assert_eq!(backoff(1, i, m, 0.0), Duration::from_millis(50));
    assert_eq!(backoff(4, i, m, 1.0), Duration::from_millis(800));
    assert_eq!(backoff(40, i, m, 1.0), m);
    assert_eq!(backoff(40, i, m, 0.0), m / 2);
}

#[test]
fn config_errors_are_caught_early() {
    for url in ["ftp://x:8086", "x:8086", "http://x:8086/?a=b"] {
        assert!(
            matches!(
                InfluxClient::new(InfluxConfig {
                    url: url.into(),
                    ..InfluxConfig::default()
                }),
                Err(ConfigError::Url { .. })
            ),
            "{url}"
        );
    }
    let bad_retention = InfluxConfig {
        api: InfluxApi::V1(V1Config {
            retention: "thirty days".into(),
            ..V1Config::default()
        }),
        ..InfluxConfig::default()
    };
    assert!(InfluxClient::new(bad_retention).is_err());
    // https: a CA file that is not there is an error naming it; TLS
    // settings for an http:// URL are a mistake.
    let missing_ca = InfluxClient::new(InfluxConfig {
        url: "https://x:8086".into(),
        tls: super::super::config::InfluxTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..InfluxConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(missing_ca.contains("/nonexistent/ca.pem"), "{missing_ca}");
    assert!(
        InfluxClient::new(InfluxConfig {
            tls: super::super::config::InfluxTls {
                ca_file: Some("/etc/ssl/certs/ca-certificates.crt".into()),
                ..Default::default()
            },
            ..InfluxConfig::default()
        })
        .is_err()
    );
    assert_eq!(base64(b"ann:pw:1"), "YW5uOnB3OjE=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}

/// The collector's config file with `[influx.api.v2]` reaches the writer:
/// its writes go to `/api/v2/write` with the org, the buckets and the token
/// the file names (no InfluxDB 2.x server is available here; this fake
/// answers as one does).
#[tokio::test]
async fn v2_settings_in_the_config_file_reach_the_writer() {
    let fake = Fake::start(Script::new()).await;
    let text = format!(
        r#"
[ingest]
tokens = ["agent"]

[influx]
url = "{}"

[influx.api.v2]
org = "acme"
bucket = "raw"
rollup_bucket = "rolled"
token = "s3cret"
"#,
        fake.url
    );
    let config: crate::config::CollectorConfig = toml::from_str(&text).unwrap();
    let options = config.validate().unwrap();
    let client = InfluxClient::new(options.influx.expect("InfluxDB configured")).unwrap();
    let writer = Writer::new(client);
    writer
        .write(Tier::Hot, Bytes::from_static(LINES))
        .await
        .unwrap();
    writer
        .write(Tier::Rollups, Bytes::from_static(b"r v=1i 1\n"))
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/api/v2/write");
    assert_eq!(reqs[0].query, "org=acme&bucket=raw&precision=ns");
    assert_eq!(reqs[0].header("authorization"), Some("Token s3cret"));
    assert_eq!(reqs[0].body, LINES);
    assert_eq!(reqs[1].query, "org=acme&bucket=rolled&precision=ns");
}
