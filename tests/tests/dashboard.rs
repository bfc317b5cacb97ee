//! The web dashboard end to end: the real collector (with a real InfluxDB),
//! fed by the real agent tailing a log that `generate --live` writes second
//! by second, opened in headless Chromium (Debian's, driven by
//! playwright-core: `tests/browser/dashboard.mjs`).
//!
//! These tests do not skip: without Node.js, Chromium or playwright-core they
//! fail saying what to install (`make test` installs them).

use logmon_tests::browser::{artifacts_dir, drive, is_png, require_browser};
use logmon_tests::influx::InfluxServer;
use logmon_tests::live::{AGENT_TOKEN, LiveSite, http};
use serde_json::Value;

/// 40 requests/s of Combined lines, no disorder.
const TRAFFIC: &[&str] = &[
    "--rate",
    "40",
    "--steady",
    "--disorder",
    "0",
    "--sections",
    "6",
    "--lines",
    "100000000",
    "--seed",
    "5",
];

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn text<'a>(page: &'a Value, field: &str) -> &'a str {
    page[field]
        .as_str()
        .unwrap_or_else(|| panic!("no `{field}` in {page}"))
}

fn count(page: &Value, field: &str) -> u64 {
    page[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{field}` in {page}"))
}

/// The page's own errors (uncaught exceptions, console errors): none.
fn assert_no_page_errors(page: &Value) {
    let errors = page["errors"]
        .as_array()
        .expect("the errors the page logged");
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    assert_eq!(text(page, "error"), "", "the page shows an error banner");
}

/// The page's total requests per second, (t, value), against the same seconds
/// of `api/series`: what arrived over the live stream equals what is stored.
fn assert_totals_match_the_api(page: &Value, series: &Value) {
    let api: std::collections::HashMap<i64, f64> = series["t"]
        .as_array()
        .expect("series t")
        .iter()
        .zip(series["total"].as_array().expect("series total"))
        .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
        .collect();
    let shown = page["totals"].as_array().expect("the page's totals");
    let mut compared = 0;
    for point in shown {
        let (t, v) = (point[0].as_i64().unwrap(), point[1].as_f64().unwrap());
        if let Some(&stored) = api.get(&t) {
            assert_eq!(
                v, stored,
                "req/s at {t}: the page shows {v}, api/series {stored}"
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "no second in common: {shown:?}");
}

/// Opens `path` of the site until its charts hold traffic, a 10-s block
/// is shown and, with `rule`, that rule's alert fires; a screenshot goes to
/// the test artifacts as `shot`. Checks what every loaded page must show.
fn check_page(site: &LiveSite, path: &str, rule: Option<&str>, shot: &str) -> Value {
    let shot = artifacts_dir().join(shot);
    let _ = std::fs::remove_file(&shot);
    let url = format!("{}{path}", site.url());
    let screenshot = shot.to_str().expect("a UTF-8 path");
    let mut args = vec!["check", "--url", &url, "--screenshot", screenshot];
    args.extend(["--timeout", "60"]);
    if let Some(rule) = rule {
        args.extend(["--rule", rule]);
    }
    let page =
        drive(&args).unwrap_or_else(|e| panic!("{e}\n--- collector\n{}", site.collector_log()));
    assert!(is_png(&shot), "{} is not a PNG", shot.display());
    assert_no_page_errors(&page);
    assert_eq!(text(&page, "conn"), "live", "the live stream is connected");
    assert!(
        count(&page, "nonZero") > 0,
        "no traffic in the chart: {page}"
    );
    page
}

#[test]
fn charts_fill_and_a_traffic_alert_shows_firing() {
    require_browser();
    let influx = InfluxServer::start();
    let mut site = LiveSite::start(&strings(&[
        "--influx-url",
        &influx.url(),
        "--lateness",
        "0",
        // The default high-traffic instance stays quiet; `site-busy` fires
        // once 5 s of 40 req/s have closed.
        "--threshold",
        "100000",
        "--rule",
        "high-traffic:threshold=20,window=5,name=site-busy",
    ]));
    site.feed_live("access", TRAFFIC);

    let page = check_page(&site, "/", Some("site-busy"), "dashboard.png");
    // Charts: data points in every chart.
    assert!(count(&page, "points") > 0, "{page}");
    assert!(count(&page, "statusPoints") > 0, "{page}");
    assert!(count(&page, "bytesPoints") > 0, "{page}");
    // total + the busiest sections (10 at most).
    let lines = count(&page, "series");
    assert!(
        (2..=11).contains(&lines),
        "{lines} lines in the requests chart"
    );
    // The alert, prominently and in the history.
    let active = text(&page, "activeText");
    assert!(
        active.contains("site-busy") && active.contains("firing"),
        "{active}"
    );
    assert!(text(&page, "historyText").contains("site-busy"), "{page}");
    // Rules (both instances), the agent's file, the stats block.
    let rules = text(&page, "rulesText");
    assert!(
        rules.contains("site-busy") && rules.contains("high-traffic"),
        "{rules}"
    );
    assert!(text(&page, "agentsText").contains("access.log"), "{page}");
    assert!(text(&page, "statsText").contains("hits"), "{page}");
    // What the API says fires is what the page showed.
    let alerts = site.json("/api/alerts");
    let firing: Vec<&str> = alerts["active"]
        .as_array()
        .expect("active alerts")
        .iter()
        .filter_map(|a| a["rule"].as_str())
        .collect();
    assert_eq!(firing, ["site-busy"], "{alerts}");
    assert_totals_match_the_api(&page, &site.json("/api/series?range=900"));
}

#[test]
fn dashboard_token_guards_the_api_under_a_path_prefix() {
    require_browser();
    const TOKEN: &str = "dash-secret";
    let mut site = LiveSite::start(&strings(&[
        "--dashboard-token",
        TOKEN,
        "--dashboard-prefix",
        "/logmon",
        "--lateness",
        "0",
    ]));
    site.feed_live("access", TRAFFIC);
    let port = site.port;

    // The page and its assets are public.
    let (status, head, body) = http(port, "GET", "/logmon/", &[]);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(body.contains("assets/app.js"), "{body}");
    for asset in ["app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"] {
        let (status, head, _) = http(port, "GET", &format!("/logmon/assets/{asset}"), &[]);
        assert_eq!(status, 200, "{asset}: {head}");
    }

    // Every API route needs the dashboard token; the agents' token is not it.
    let bearer = |t: &str| format!("Bearer {t}");
    for path in [
        "/api/series",
        "/api/stats",
        "/api/alerts",
        "/api/rules",
        "/api/agents",
        "/api/overview",
        "/api/stream",
    ] {
        let full = format!("/logmon{path}");
        for (what, headers, query) in [
            ("no token", vec![], ""),
            (
                "a wrong token",
                vec![("Authorization", bearer("wrong"))],
                "",
            ),
            (
                "the agents' token",
                vec![("Authorization", bearer(AGENT_TOKEN))],
                "",
            ),
            ("a wrong ?token=", vec![], "?token=wrong"),
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = http(port, "GET", &format!("{full}{query}"), &headers);
            assert_eq!(status, 401, "GET {full} with {what}: {body}");
            let error: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {full} with {what}: not JSON ({e}): {body}"));
            assert!(error["error"].is_string(), "{body}");
        }
    }
    let (status, _, body) = http(
        port,
        "GET",
        &format!("/logmon/api/rules?token={TOKEN}"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let auth = bearer(TOKEN);
    let (status, _, body) = http(
        port,
        "GET",
        "/logmon/api/overview",
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 200, "{body}");
    // And the dashboard token does not let anyone ingest.
    let (status, _, body) = http(port, "POST", "/v1/batches", &[("Authorization", &auth)]);
    assert_eq!(status, 401, "ingest with the dashboard token: {body}");

    // Without the token in its URL the page says its requests were refused …
    let page = drive(&[
        "unauthorized",
        "--url",
        &format!("{}/logmon/", site.url()),
        "--timeout",
        "30",
    ])
    .unwrap_or_else(|e| panic!("{e}\n--- collector\n{}", site.collector_log()));
    assert!(text(&page, "error").contains("401"), "{page}");
    assert_eq!(count(&page, "points"), 0, "{page}");

    // … and with `?token=` it works: live charts, under the prefix.
    let path = format!("/logmon/?token={TOKEN}");
    let page = check_page(&site, &path, None, "dashboard-token.png");
    assert!(text(&page, "agentsText").contains("access.log"), "{page}");
}
