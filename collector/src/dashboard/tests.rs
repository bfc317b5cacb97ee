//! The dashboard's routes, answered in-process (no listener): paths and
//! prefix, token, parameters, the series from memory, headers, the event
//! stream and its cap; and on a real listener, streams next to agents'
//! connections.

use super::*;
use crate::engine::{SecondStats, SectionAgg};
use http_body_util::BodyExt;
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    hub: Arc<Hub>,
    live: Arc<LiveCounters>,
    outbox: Outbox,
    dashboard: Dashboard,
}

fn fixture(options: DashboardOptions) -> Fixture {
    fixture_with(options, MAX_STREAMS)
}

fn fixture_with(options: DashboardOptions, max_streams: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let hub = Hub::new(5);
    let live = Arc::new(LiveCounters::default());
    let dashboard = Dashboard::new(
        Arc::clone(&hub),
        options,
        Arc::clone(&live),
        outbox.clone(),
        None,
        5,
        CancellationToken::new(),
    )
    .unwrap()
    .with_max_streams(max_streams);
    Fixture {
        _dir: dir,
        hub,
        live,
        outbox,
        dashboard,
    }
}

fn get(uri: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut map = hyper::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    RequestHead {
        method: Method::GET,
        uri: uri.parse().unwrap(),
        headers: map,
        connection: None,
    }
}

fn head(uri: &str) -> RequestHead {
    RequestHead {
        method: Method::HEAD,
        ..get(uri, &[])
    }
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Fixture {
    async fn answer(&self, request: RequestHead) -> Option<Answer> {
        let response = self.dashboard.handle(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, uri: &str) -> Answer {
        self.answer(get(uri, &[])).await.expect("a dashboard route")
    }

    fn second(&self, t: i64, sections: &[(&str, u64)]) {
        let mut s = SecondStats {
            time: t,
            ..SecondStats::default()
        };
        for (name, hits) in sections {
            s.hits += hits;
            s.bytes += hits * 10;
            s.statuses.count(200, *hits);
            s.sections.insert(
                (*name).into(),
                SectionAgg {
                    hits: *hits,
                    ..SectionAgg::default()
                },
            );
        }
        self.hub.second(&s);
    }
}

#[test]
fn query_parameters_are_percent_decoded() {
    let q = Some("range=900&token=a%2Bb%3D%3D&x&token=second&sp=a+b&bad=%zz%4");
    assert_eq!(query_param(q, "range").as_deref(), Some("900"));
    assert_eq!(query_param(q, "token").as_deref(), Some("a+b=="));
    assert_eq!(query_param(q, "x").as_deref(), Some(""));
    assert_eq!(query_param(q, "sp").as_deref(), Some("a b"));
    assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
    assert_eq!(query_param(q, "nope"), None);
    assert_eq!(query_param(None, "range"), None);
}

#[test]
fn prefixes_are_plain_paths() {
    let parse = DashboardOptions::parse_prefix;
    assert_eq!(parse("/logmon"), Ok(Some("/logmon".into())));
    assert_eq!(parse("/a/b/"), Ok(Some("/a/b".into())));
    assert_eq!(parse("/"), Ok(None));
    assert!(parse("logmon").is_err());
    assert!(parse("/a?b").is_err());
    assert!(parse("/a//b").is_err());
}

#[tokio::test]
async fn the_page_and_assets_are_served_under_the_root_and_the_prefix() {
    let f = fixture(DashboardOptions {
        token: Some("t0ken".into()),
        prefix: Some("/logmon".into()),
    });
    let index = assets::find("index.html").unwrap();
    for path in ["/", "/dashboard", "/logmon/", "/logmon/dashboard"] {
        let a = f.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.body, index.bytes, "{path}");
        assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-cache");
    }
    // The prefix itself redirects, so the page's relative URLs resolve under it.
    let a = f.get("/logmon?token=x").await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(a.headers[header::LOCATION], "/logmon/?token=x");
    // Revalidation.
    let etag = f.get("/logmon/assets/index.html").await.headers[header::ETAG].clone();
    let a = f
        .answer(get("/", &[("if-none-match", etag.to_str().unwrap())]))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert!(a.body.is_empty());
    let a = f.get("/assets/missing.js").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"], "not_found");
    // Not the dashboard's: the ingest listener answers 404 itself.
    for path in ["/logmonx/", "/other", "/logmon/metrics", "/dashboard/"] {
        assert!(f.answer(get(path, &[])).await.is_none(), "{path}");
    }
}

#[tokio::test]
async fn the_api_needs_the_dashboard_token_when_one_is_set() {
    let f = fixture(DashboardOptions {
        token: Some("t0ken".into()),
        prefix: Some("/logmon".into()),
    });
    for (uri, headers, status) in [
        ("/api/stats", vec![], StatusCode::UNAUTHORIZED),
        ("/api/stats?token=wrong", vec![], StatusCode::UNAUTHORIZED),
        (
            "/api/stats",
            vec![("authorization", "Bearer wrong")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/stats",
            vec![("authorization", "t0ken")],
            StatusCode::UNAUTHORIZED,
        ),
        ("/api/stats?token=t0ken", vec![], StatusCode::OK),
        ("/logmon/api/stats?token=t0ken", vec![], StatusCode::OK),
        (
            "/api/stats",
            vec![("authorization", "bearer t0ken")],
            StatusCode::OK,
        ),
        ("/api/nope?token=t0ken", vec![], StatusCode::NOT_FOUND),
        ("/api/nope", vec![], StatusCode::UNAUTHORIZED),
    ] {
        let a = f.answer(get(uri, &headers)).await.unwrap();
        assert_eq!(a.status, status, "{uri} {headers:?}");
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(a.json()["error"], "unauthorized");
            assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    let a = f.get("/api/stats?token=t0ken").await;
    assert_eq!(a.json(), serde_json::Value::Null, "no block yet");
    let post = RequestHead {
        method: Method::POST,
        ..get("/api/stats?token=t0ken", &[])
    };
    let a = f.answer(post).await.unwrap();
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers[header::ALLOW], "GET, HEAD");
    assert_eq!(
        a.json(),
        json!({"error": "method_not_allowed", "reason": "the dashboard is read-only"})
    );
}

#[tokio::test]
async fn series_come_from_memory_with_the_busiest_sections() {
    let f = fixture(DashboardOptions::default());
    for t in 10_000..10_100 {
        f.second(t, &[("/api", 3), ("/blog", 1)]);
    }
    f.second(10_100, &[("/api", 1), ("/shop", 7)]);
    let a = f.get("/api/series").await;
    assert_eq!(a.status, StatusCode::OK);
    let s = a.json();
    assert_eq!(s["range"], 900);
    assert_eq!(s["resolution"], 1);
    assert_eq!(s["source"], "memory");
    assert_eq!(s["last"], 10_100);
    let t = s["t"].as_array().unwrap();
    assert_eq!(t.len(), 900);
    assert_eq!(
        (t[0].clone(), t[899].clone()),
        (json!(9_201), json!(10_100))
    );
    let total = s["total"].as_array().unwrap();
    assert_eq!(total[798], json!(0), "before memory: zero-filled");
    assert_eq!(total[799], json!(4));
    assert_eq!(total[899], json!(8));
    assert_eq!(s["bytes"][899], json!(80));
    assert_eq!(s["status"]["2xx"][899], json!(8));
    assert_eq!(s["status"]["5xx"][899], json!(0));
    let names: Vec<&String> = s["sections"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["/api", "/blog", "/shop"]);
    assert_eq!(s["sections"]["/api"][899], json!(1));
    assert_eq!(s["sections"]["/shop"][899], json!(7));
    assert_eq!(s["sections"]["/blog"][898], json!(1));
    assert_eq!(s["other"][899], json!(0));

    // A long range without InfluxDB: what memory has, in 60-s buckets.
    let s = f.get("/api/series?range=86400").await.json();
    assert_eq!(
        (s["resolution"].clone(), s["source"].clone()),
        (json!(60), json!("memory"))
    );
    let total = s["total"].as_array().unwrap();
    assert_eq!(total.len(), 1440);
    // Buckets 9960.., 10020.., 10080..(10080..=10100 closed: 21 s).
    assert_eq!(total[1439], json!((20 * 4 + 8) as f64 / 21.0));
    assert_eq!(total[1438], json!(4));
    // 9960..=10019: memory holds 10000..=10019.
    assert_eq!(total[1437], json!(80.0 / 60.0));

    for bad in ["range=60", "range=abc", "range=", "range=900.0"] {
        let a = f.get(&format!("/api/series?{bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.json()["error"], "bad_range");
    }
}

#[tokio::test]
async fn series_before_the_first_closed_second_follow_the_watermark() {
    let f = fixture(DashboardOptions::default());
    f.live.watermark.store(50_000, Ordering::Relaxed);
    let s = f.get("/api/series?range=3600").await.json();
    assert_eq!(s["last"], 49_999);
    assert_eq!(s["t"][3599], 49_999);
    assert_eq!(
        s["total"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| **v != json!(0))
            .count(),
        0
    );
    assert_eq!(s["sections"], json!({}));
}

#[tokio::test]
async fn overview_agents_and_alerts() {
    let f = fixture(DashboardOptions::default());
    f.live.watermark.store(1_000, Ordering::Relaxed);
    f.live.events.store(42, Ordering::Relaxed);
    f.live.late.store(2, Ordering::Relaxed);
    let o = f.get("/api/overview").await.json();
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["watermark"], 1_000);
    assert_eq!(o["lateness"], 5);
    assert_eq!(o["events_total"], 42);
    assert_eq!(o["late_total"], 2);
    assert_eq!(
        o["engine_lag_seconds"].as_i64().unwrap(),
        o["now"].as_i64().unwrap() - 1_000
    );
    f.hub.batch(&BatchSeen {
        agent: "web-1",
        host: "h",
        fingerprint: 7,
        path: "/var/log/access.log",
        sent_at: 995_000_000_000,
        caught_up: true,
        finished: false,
        events: 0,
        newest: None,
    });
    let a = f.get("/api/agents").await.json();
    assert_eq!(a[0]["agent"], "web-1");
    assert_eq!(a[0]["streams"][0]["watermark"], 990);
    let alerts = f.get("/api/alerts?limit=10").await.json();
    assert_eq!(alerts, json!({ "active": [], "history": [] }));
    let transitions: Vec<crate::rules::Transition> = (0..7)
        .map(|i| crate::rules::Transition {
            rule: "high-traffic".into(),
            key: String::new(),
            state: if i % 2 == 0 {
                crate::rules::AlertState::Firing
            } else {
                crate::rules::AlertState::Resolved
            },
            at: 1_000 + i,
            value: 10.0,
            message: format!("m{i}"),
        })
        .collect();
    f.outbox.append(&transitions).unwrap();
    *f.live.rules.lock().unwrap() = vec![firing_rule("high-traffic", "m6")];
    let alerts = f.get("/api/alerts?limit=3").await.json();
    let history: Vec<(&str, i64)> = alerts["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["message"].as_str().unwrap(), h["at"].as_i64().unwrap()))
        .collect();
    assert_eq!(history, [("m6", 1_006), ("m5", 1_005), ("m4", 1_004)]);
    assert_eq!(
        alerts["active"],
        json!([{"rule": "high-traffic", "key": "", "value": 10.0, "message": "m6"}])
    );
    let all = f.get("/api/alerts?limit=99999").await.json();
    assert_eq!(all["history"].as_array().unwrap().len(), 7);
    assert_eq!(all["history"][0]["at_rfc3339"], "1970-01-01T00:16:46Z");
    let a = f.get("/api/alerts?limit=ten").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[test]
fn serve_flags_check_the_token_and_the_prefix() {
    use clap::Parser as _;
    let options = |extra: &[&str]| {
        let mut args = vec!["logmon-collector", "serve", "--token", "ingest"];
        args.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        serve.options().map(|o| o.dashboard)
    };
    assert_eq!(options(&[]).unwrap(), DashboardOptions::default());
    assert_eq!(
        options(&[
            "--dashboard-token",
            "look",
            "--dashboard-prefix",
            "/logmon/"
        ])
        .unwrap(),
        DashboardOptions {
            token: Some("look".into()),
            prefix: Some("/logmon".into()),
        }
    );
    let refused = |extra: &[&str]| options(extra).unwrap_err().to_string();
    assert_eq!(
        refused(&["--dashboard-token", "ingest"]),
        "--dashboard-token must differ from the ingest tokens"
    );
    assert_eq!(
        refused(&["--dashboard-prefix", "logmon"]),
        "--dashboard-prefix `logmon` must start with `/`"
    );
}

/// The response to `request`, its body left unread (an event stream never
/// ends).
async fn open(f: &Fixture, request: RequestHead) -> Response<ResponseBody> {
    f.dashboard
        .handle(request)
        .await
        .expect("a dashboard route")
}

/// The next frame of a streamed body, as text.
async fn next_frame(body: &mut ResponseBody) -> String {
    let frame = body.frame().await.expect("a frame").unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_the_page_its_policy() {
    let f = fixture(DashboardOptions {
        token: Some("t0ken".into()),
        prefix: Some("/logmon".into()),
    });
    let post = RequestHead {
        method: Method::POST,
        ..get("/api/stats", &[])
    };
    let stream = open(&f, get("/api/stream?token=t0ken", &[])).await;
    let mut answers = vec![(
        "stream".to_owned(),
        stream.status(),
        stream.headers().clone(),
    )];
    for (what, request) in [
        ("page", get("/", &[])),
        ("page under the prefix", get("/logmon/dashboard", &[])),
        ("page as an asset", get("/assets/index.html", &[])),
        ("page revalidated", {
            let etag = assets::find("index.html").unwrap().etag;
            get("/", &[("if-none-match", etag)])
        }),
        ("missing asset", get("/assets/nope.js", &[])),
        ("api", get("/api/stats?token=t0ken", &[])),
        ("unauthorized", get("/api/stats", &[])),
        ("unknown api", get("/api/nope?token=t0ken", &[])),
        ("bad parameter", get("/api/series?range=1&token=t0ken", &[])),
        ("post", post),
        ("head", head("/api/rules?token=t0ken")),
        ("redirect", get("/logmon", &[])),
    ] {
        let a = f.answer(request).await.unwrap();
        answers.push((what.to_owned(), a.status, a.headers));
    }
    let statuses: Vec<(&str, u16)> = answers
        .iter()
        .map(|(what, status, _)| (what.as_str(), status.as_u16()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("stream", 200),
            ("page", 200),
            ("page under the prefix", 200),
            ("page as an asset", 200),
            ("page revalidated", 304),
            ("missing asset", 404),
            ("api", 200),
            ("unauthorized", 401),
            ("unknown api", 404),
            ("bad parameter", 400),
            ("post", 405),
            ("head", 200),
            ("redirect", 308),
        ]
    );
    for (what, _, headers) in &answers {
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{what}");
        let csp = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .map(|v| v.to_str().unwrap());
        if what.starts_with("page") {
            assert_eq!(
                csp,
                Some(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; \
                     img-src 'self' data:; connect-src 'self'"
                ),
                "{what}"
            );
        } else {
            assert_eq!(csp, None, "{what}");
        }
        let cache = headers[header::CACHE_CONTROL].to_str().unwrap();
        let want = if what.starts_with("page") || what == "stream" {
            "no-cache"
        } else {
            "no-store"
        };
        assert_eq!(cache, want, "{what}");
    }
}

#[tokio::test]
async fn every_asset_is_revalidated_with_its_etag() {
    let f = fixture(DashboardOptions::default());
    for (name, _, bytes) in assets::ASSETS {
        let a = f.get(&format!("/assets/{name}")).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        assert_eq!(a.body, *bytes, "{name}");
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-cache", "{name}");
        let etag = a.headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, assets::find(name).unwrap().etag, "{name}");
        let again = f
            .answer(get(&format!("/assets/{name}"), &[("if-none-match", &etag)]))
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{name}");
        assert!(again.body.is_empty(), "{name}");
        assert_eq!(again.headers[header::ETAG], etag.as_str(), "{name}");
    }
}

#[tokio::test]
async fn head_on_the_api_answers_the_headers_of_get() {
    let f = fixture(DashboardOptions::default());
    let get_rules = f.get("/api/rules").await;
    let head_rules = f.answer(head("/api/rules")).await.unwrap();
    assert_eq!(head_rules.status, StatusCode::OK);
    assert_eq!(head_rules.headers, get_rules.headers);
    assert_eq!(head_rules.headers[header::CONTENT_TYPE], "application/json");
    // hyper leaves the body out on the wire; in-process it is GET's.
    assert_eq!(head_rules.body, get_rules.body);

    // HEAD of the stream: its headers, an empty body, and no stream
    // opened: the one stream allowed is still there for GET.
    let f = fixture_with(DashboardOptions::default(), 1);
    let a = f.answer(head("/api/stream")).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(a.body.is_empty());
    let stream = open(&f, get("/api/stream", &[])).await;
    assert_eq!(stream.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_stream_says_hello_first_then_what_the_engine_closes() {
    let f = fixture(DashboardOptions::default());
    let mut body = open(&f, get("/api/stream", &[])).await.into_body();
    assert_eq!(
        next_frame(&mut body).await,
        "event: hello\ndata: {\"last\":null,\"watermark\":null}\n\n"
    );
    f.second(100, &[("/api", 2)]);
    f.live.watermark.store(106, Ordering::Relaxed);
    let mut second = open(&f, get("/api/stream", &[])).await.into_body();
    assert_eq!(
        next_frame(&mut second).await,
        "event: hello\ndata: {\"last\":100,\"watermark\":106}\n\n"
    );
    f.second(101, &[]);
    let want = "event: second\ndata: {\"bytes\":0,\"other\":0,\"sections\":{},\
                \"status\":{\"2xx\":0,\"3xx\":0,\"4xx\":0,\"5xx\":0},\"t\":101,\"total\":0}\n\n";
    // The first stream saw 100 and 101, the second only 101.
    assert!(next_frame(&mut body).await.contains("\"t\":100,"));
    assert_eq!(next_frame(&mut body).await, want);
    assert_eq!(next_frame(&mut second).await, want);
}

#[tokio::test]
async fn streams_past_the_cap_are_answered_503() {
    let f = fixture(DashboardOptions::default());
    let mut open_streams = Vec::new();
    for _ in 0..MAX_STREAMS {
        let r = open(&f, get("/api/stream", &[])).await;
        assert_eq!(r.status(), StatusCode::OK);
        open_streams.push(r.into_body());
    }
    let a = f.get("/api/stream").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        a.json(),
        json!({"error": "too_many_streams",
               "reason": "256 event streams are open, the most there can be"})
    );
    // Other routes are unaffected.
    assert_eq!(f.get("/api/stats").await.status, StatusCode::OK);
    // A client goes: its place is free once its task noticed.
    drop(open_streams.pop());
    let mut reopened = None;
    for _ in 0..1000 {
        let r = open(&f, get("/api/stream", &[])).await;
        if r.status() == StatusCode::OK {
            reopened = Some(r);
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut body = reopened.expect("a place after a client went").into_body();
    assert!(next_frame(&mut body).await.starts_with("event: hello\n"));
    assert_eq!(
        f.get("/api/stream").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A client connection speaking HTTP/1.1 by hand, on a real listener.
struct Client {
    tcp: tokio::net::TcpStream,
    read: Vec<u8>,
}

impl Client {
    /// Connects and sends `GET path` (kept alive). Every read below fails
    /// the test after a minute instead of hanging it: a connection the
    /// listener does not take is never answered.
    async fn get(addr: std::net::SocketAddr, path: &str) -> Client {
        use tokio::io::AsyncWriteExt as _;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        Client {
            tcp,
            read: Vec::new(),
        }
    }

    /// Reads until what was received contains `text`.
    async fn until(&mut self, text: &str) -> String {
        use tokio::io::AsyncReadExt as _;
        let wait = async {
            while !String::from_utf8_lossy(&self.read).contains(text) {
                let mut chunk = [0u8; 4096];
                let n = self.tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed before {text:?}: {:?}", self.text());
                self.read.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no {text:?} (received {:?})", self.text()));
        self.text()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.read).into_owned()
    }
}

#[tokio::test]
async fn open_streams_never_take_the_places_agents_connect_with() {
    use crate::bus::{LocalBus, LogConfig, SegmentLog};
    use crate::http::ServerConfig;
    use crate::ingest::{self, IngestConfig, IngestState};
    let f = fixture_with(DashboardOptions::default(), 2);
    let (log, _) = SegmentLog::open(LogConfig {
        fsync: false,
        ..LogConfig::new(f._dir.path().join("bus"))
    })
    .unwrap();
    let config = IngestConfig {
        tokens: vec!["agent-token".into()],
        ..IngestConfig::default()
    };
    let (bus, _) = LocalBus::with_log(log, config.limits).unwrap();
    let state = IngestState::open(config, Arc::new(bus)).unwrap();
    let Fixture {
        dashboard, _dir, ..
    } = f;
    let router = ingest::router(&state).mount(Arc::new(dashboard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server_config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let server = tokio::spawn(crate::http::server::run(
        listener,
        Arc::new(router),
        server_config,
        None,
        state.metrics().connections(),
        Arc::default(),
        shutdown.clone(),
    ));

    // Two dashboards, each on its own connection, as browsers open them.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut s = Client::get(addr, "/api/stream").await;
        s.until("event: hello\n").await;
        streams.push(s);
    }
    // Both places are still free: two agents connect at once and stay.
    let mut agents = Vec::new();
    for _ in 0..2 {
        let mut a = Client::get(addr, "/health").await;
        let answer = a.until("{\"status\":\"ok\"}").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        agents.push(a);
    }
    assert_eq!(state.metrics().active_connections(), 4);
    // A third stream, once an agent left a place: past the streams' cap.
    drop(agents.pop());
    let mut third = Client::get(addr, "/api/stream").await;
    let answer = third.until("the most there can be\"}").await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");

    // Everyone goes: every place is free again, none leaked.
    drop((streams, agents, third));
    let mut again = Vec::new();
    for _ in 0..2 {
        let mut a = Client::get(addr, "/health").await;
        a.until("{\"status\":\"ok\"}").await;
        again.push(a);
    }
    drop(again);
    shutdown.cancel();
    server.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || state.close().unwrap())
        .await
        .unwrap();
}

/// A rule instance's status with one key firing.
fn firing_rule(name: &str, message: &str) -> crate::rules::RuleStatus {
    use crate::rules::*;
    RuleStatus {
        name: name.into(),
        rule: name.into(),
        description: String::new(),
        version: "0".into(),
        params: Default::default(),
        defaults: Default::default(),
        health: HealthStatus {
            evaluations: 0,
            busy_us: 0.0,
            mean_us: 0.0,
            max_us: 0.0,
            quarantined: None,
        },
        component: ComponentStatus {
            kind: ComponentKind::Rust,
            bytes: 0,
            sha256: "".into(),
            compiled: Compiled::Memory,
        },
        start: StartStatus {
            load_us: 0.0,
            instantiate_us: 0.0,
        },
        memory: MemoryStatus {
            bytes: 0,
            peak_bytes: 0,
            cap_bytes: 0,
        },
        pending_for: 0,
        keep_firing_for: 0,
        pending: Vec::new(),
        active: vec![ActiveKey {
            key: String::new(),
            value: Some(10.0),
            message: message.into(),
        }],
    }
}
