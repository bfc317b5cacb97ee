//! The dashboard's routes, answered in-process (no listener): paths and
//! prefix, token, parameters, the series from memory.

use super::*;
use crate::engine::{SecondStats, SectionAgg};
use http_body_util::BodyExt;

struct Fixture {
    _dir: tempfile::TempDir,
    hub: Arc<Hub>,
    live: Arc<LiveCounters>,
    outbox: Outbox,
    dashboard: Dashboard,
}

fn fixture(options: DashboardOptions) -> Fixture {
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
    .unwrap();
    Fixture {
        _dir: dir,
        hub,
        live,
        outbox,
        dashboard,
    }
}

fn get(uri: &str, headers: &[(&str, &str)]) -> ApiRequest {
    let mut map = hyper::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    ApiRequest {
        method: Method::GET,
        uri: uri.parse().unwrap(),
        headers: map,
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
    async fn answer(&self, request: ApiRequest) -> Option<Answer> {
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
    let post = ApiRequest {
        method: Method::POST,
        ..get("/api/stats?token=t0ken", &[])
    };
    let a = f.answer(post).await.unwrap();
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers[header::ALLOW], "GET");
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
    *f.live.rules.lock().unwrap() = json!([
        {"name": "high-traffic", "active": [{"key": "", "value": 10.0, "message": "m6"}]}
    ]);
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
