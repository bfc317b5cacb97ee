//! The web dashboard end to end: the real collector (with a real InfluxDB),
//! fed by the real agent tailing a log that `generate --live` writes second
//! by second, opened in headless Chromium (Debian's, driven by
//! playwright-core: `tests/browser/dashboard.mjs`).
//!
//! These tests do not skip: without Node.js, Chromium or playwright-core they
//! fail saying what to install (`make test` installs them).

use logmon_tests::browser::{artifacts_dir, drive, is_png, require_browser};
use logmon_tests::harness::clf_time;
use logmon_tests::influx::InfluxServer;
use logmon_tests::live::{AGENT_TOKEN, LiveSite, http};
use serde_json::{Value, json};
use std::collections::HashMap;

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

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn float(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The page's own errors (uncaught exceptions, console errors, Content-
/// Security-Policy violations): none.
fn assert_no_page_errors(page: &Value) {
    let errors = page["errors"]
        .as_array()
        .expect("the errors the page logged");
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    let csp = page["csp"].as_array().expect("the CSP violations");
    assert!(csp.is_empty(), "the page broke its CSP: {csp:?}");
    assert_eq!(text(page, "error"), "", "the page shows an error banner");
}

/// The page's requests and bytes per second, (t, req/s, bytes/s), against the
/// same buckets of `api/series`: what arrived over the live stream, added to
/// what the page fetched, equals what is stored. Only the buckets the page
/// holds whole (all their seconds closed) are compared; the answer is the
/// bucket starts compared.
fn assert_totals_match_the_api(page: &Value, series: &Value) -> Vec<i64> {
    let column = |name: &str| series[name].as_array().expect("a series column").iter();
    let api: HashMap<i64, (f64, f64)> = column("t")
        .zip(column("total").zip(column("bytes")))
        .map(|(t, (v, b))| (int(t), (float(v), float(b))))
        .collect();
    let res = int(&page["resolution"]);
    let newest = int(&page["newest"]);
    let points = shown_points(page);
    let mut compared = Vec::new();
    for &(t, shown) in &points {
        if t + res - 1 > newest {
            continue; // still open on the page
        }
        if let Some(&stored) = api.get(&t) {
            assert_eq!(
                shown,
                stored,
                "(req/s, bytes/s) at {t}: the page shows {shown:?}, api/series {stored:?}; \
                 the page fetched up to {}, holds up to {}, its stream {}; around it the page \
                 {:?}, api/series {:?}",
                page["fetchedLast"],
                page["newest"],
                page["stream"],
                around(shown_points(page), t),
                around(api.iter().map(|(&t, &v)| (t, v)).collect(), t),
            );
            compared.push(t);
        }
    }
    assert!(!compared.is_empty(), "no bucket in common: {points:?}");
    compared
}

/// The page's (t, (req/s, bytes/s)).
fn shown_points(page: &Value) -> Vec<(i64, (f64, f64))> {
    page["totals"]
        .as_array()
        .expect("the page's totals")
        .iter()
        .map(|p| (int(&p[0]), (float(&p[1]), float(&p[2]))))
        .collect()
}

/// The points within 5 s of `t`, in order.
fn around(mut points: Vec<(i64, (f64, f64))>, t: i64) -> Vec<(i64, (f64, f64))> {
    points.retain(|p| (p.0 - t).abs() <= 5);
    points.sort_by_key(|p| p.0);
    points
}

/// Opens `path` of the site with `check` and its `extra` options until its
/// charts hold traffic and a 10-s block is shown (and whatever `extra` asks);
/// a screenshot goes to the test artifacts as `shot`. Checks what every
/// loaded page must show.
fn check_page(site: &LiveSite, path: &str, extra: &[&str], shot: &str) -> Value {
    let shot = artifacts_dir().join(shot);
    let _ = std::fs::remove_file(&shot);
    let url = format!("{}{path}", site.url());
    let screenshot = shot.to_str().expect("a UTF-8 path");
    let mut args = vec!["check", "--url", &url, "--screenshot", screenshot];
    args.extend(["--timeout", "60"]);
    args.extend(extra);
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

/// A site (lateness 0) fed with `TRAFFIC` or nothing, and what `dashboard.mjs
/// MODE` reports of its page, which must have logged no error.
fn drive_site(mode: &str, traffic: bool) -> (LiveSite, Value) {
    require_browser();
    let mut site = LiveSite::start(&strings(&["--lateness", "0"]));
    if traffic {
        site.feed_live("access", TRAFFIC);
    }
    let url = format!("{}/", site.url());
    let page = drive(&[mode, "--url", &url, "--timeout", "60"])
        .unwrap_or_else(|e| panic!("{e}\n--- collector\n{}", site.collector_log()));
    assert_no_page_errors(&page);
    (site, page)
}

/// The first `firing` transition of `rule` in `api/alerts`.
fn first_firing<'a>(alerts: &'a Value, rule: &str) -> &'a Value {
    alerts["history"]
        .as_array()
        .expect("the alert history")
        .iter()
        .rev()
        .find(|t| t["rule"] == rule && t["state"] == "firing")
        .unwrap_or_else(|| panic!("no firing transition of {rule}: {alerts}"))
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

    let page = check_page(&site, "/", &["--rule", "site-busy"], "dashboard.png");
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
    // The alert, prominently (a firing card, not a pending one) and in the
    // history; it is the transition api/alerts lists.
    let alert = &page["alert"];
    let card = &alert["card"];
    assert_eq!(
        (&card["rule"], &card["key"], &card["state"]),
        (&"site-busy".into(), &"".into(), &"firing".into()),
        "{alert}"
    );
    let listed = &alert["transition"];
    assert_eq!(
        (&listed["rule"], &listed["key"], &listed["state"]),
        (&"site-busy".into(), &"".into(), &"firing".into()),
        "{alert}"
    );
    assert!(text(&page, "historyText").contains("site-busy"), "{page}");
    println!(
        "site-busy fired at {} (event time): the page showed it {:.2} s after that second began, \
         {:+.2} s after api/alerts first listed it (polled every 50 ms, listed {:.2} s after the \
         second began); page loaded before: {}",
        listed["at"],
        float(&alert["shownAfterEventMs"]) / 1000.0,
        float(&alert["shownAfterListedMs"]) / 1000.0,
        float(&alert["listedAfterEventMs"]) / 1000.0,
        alert["pageLoadedFirst"],
    );
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
    assert_eq!(first_firing(&alerts, "site-busy")["at"], listed["at"]);
    assert_totals_match_the_api(&page, &site.json("/api/series?range=900"));

    // 6 h at 10-s buckets: the newest bucket the page fetched was partly
    // closed; the live seconds after the fetched `last` complete it.
    let page = check_page(
        &site,
        "/?range=21600",
        &["--live-seconds", "11"],
        "dashboard-6h.png",
    );
    assert_eq!(page["resolution"], 10, "{page}");
    let fetched_last = int(&page["fetchedLast"]);
    let compared = assert_totals_match_the_api(&page, &site.json("/api/series?range=21600"));
    let completed = fetched_last - fetched_last.rem_euclid(10);
    assert!(
        compared.contains(&completed),
        "the bucket {completed} of the fetched last second {fetched_last} was not compared: {compared:?}"
    );
}

/// A hidden tab gets no animation frames while the live stream goes on: the
/// seconds waiting for one never pass a range's worth (900 at 15 min), past
/// it they are dropped, and the series is fetched again when the tab is seen.
#[test]
fn a_hidden_tab_holds_a_range_of_seconds_at_most_and_refetches_when_seen() {
    let (site, page) = drive_site("hidden", true);
    let hidden = &page["hidden"];
    let cap = count(hidden, "cap");
    assert_eq!(cap, 900, "15 min at 1 s: {hidden}");
    // The range's worth waited; the next second dropped them all.
    assert_eq!(count(hidden, "max"), cap, "{hidden}");
    assert_eq!(count(hidden, "pendingAfter"), 0, "{hidden}");
    assert_eq!(hidden["stale"], true, "{hidden}");
    assert_eq!(count(hidden, "pendingLater"), 0, "{hidden}");
    // Shown again: what the collector holds, extended live; none of the
    // seconds that were dropped.
    assert_totals_match_the_api(&page, &site.json("/api/series?range=900"));
    let legend = page["legend"].as_array().expect("the legend");
    assert!(!legend.contains(&"/synthetic".into()), "{legend:?}");
    assert!(legend.len() > 2, "{legend:?}");
}

/// The stream sends every closed second; one that skips some (the stream
/// opened after the series was answered, say) makes the page fetch the
/// series again rather than show the missing seconds as silent.
#[test]
fn a_second_missing_from_the_stream_refetches_the_series() {
    let (site, page) = drive_site("gap", true);
    let gap = &page["gap"];
    assert!(count(gap, "seriesRefetched") >= 1, "{gap}");
    // The seconds the page holds are the collector's, none of the one that
    // came after the gap (12,345 req/s).
    assert!(
        shown_points(&page).iter().all(|p| p.1.0 != 12345.0),
        "{page}"
    );
    assert_totals_match_the_api(&page, &site.json("/api/series?range=900"));
}

/// A transition that arrives over the stream while older answers of
/// api/alerts and api/rules are on their way (a refetch after `reset`, the
/// rules poll) stays in the history and on its card.
#[test]
fn a_transition_received_during_a_refetch_stays_shown() {
    let (_site, page) = drive_site("race", false);
    let shown = &page["shown"];
    assert_eq!(
        shown["history"],
        json!(["late-answer k1 firing"]),
        "{shown}"
    );
    assert_eq!(shown["active"], json!(["late-answer k1"]), "{shown}");
    assert_eq!(shown["cards"], json!(["late-answer"]), "{shown}");
    let rows = shown["historyRows"].as_array().expect("history rows");
    assert_eq!(rows.len(), 1, "{shown}");
    assert!(
        rows[0].as_str().is_some_and(|r| r.contains("late-answer")),
        "{shown}"
    );
}

/// Sections, clients and alert keys come from log lines anyone can send:
/// the page shows them as text, and markup in them never runs.
#[test]
fn markup_in_log_lines_is_shown_as_text() {
    require_browser();
    const PATH: &str = "/<img src=x onerror=window.__xss=1>";
    const CLIENT: &str = "<img/src/onerror=window.__xss=2><script>window.__xss=3</script>";
    const USER_AGENT: &str = "<script>window.__xss=4</script>";
    let mut site = LiveSite::start(&strings(&[
        "--lateness",
        "0",
        // Keyed by the client and by the section, both firing at once.
        "--rule",
        "client-flood:limit=2,window=5,name=flood",
        "--rule",
        "error-rate:threshold=0.1,window=5,min_requests=1,name=errors",
    ]));
    site.feed_lines("hostile", |second| {
        format!(
            "{CLIENT} - - [{}] \"GET {PATH} HTTP/1.1\" 500 512 \"-\" \"{USER_AGENT}\"\n",
            clf_time(second)
        )
    });

    let shot = artifacts_dir().join("dashboard-untrusted.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("{}/", site.url());
    let page = drive(&[
        "untrusted",
        "--url",
        &url,
        "--section",
        PATH,
        "--client",
        CLIENT,
        "--screenshot",
        shot.to_str().expect("a UTF-8 path"),
        "--timeout",
        "60",
    ])
    .unwrap_or_else(|e| panic!("{e}\n--- collector\n{}", site.collector_log()));
    assert!(is_png(&shot), "{} is not a PNG", shot.display());
    assert_no_page_errors(&page);

    assert_eq!(
        page["xss"],
        Value::Null,
        "markup from a log line ran: {page}"
    );
    assert_eq!(
        count(&page, "injected"),
        0,
        "markup from a log line is in the DOM: {page}"
    );
    // The statistics block: the section and the client, as text.
    let cells = &page["statsCells"];
    for literal in [PATH, CLIENT] {
        assert!(
            cells.as_array().expect("cells").contains(&literal.into()),
            "{literal} is not a cell of the statistics block: {cells}"
        );
        let escaped = literal
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            text(&page, "statsHtml").contains(&escaped),
            "{escaped} is not in the statistics block's HTML: {}",
            text(&page, "statsHtml")
        );
    }
    // The alert cards keyed by them, the history and the chart's legend.
    let cards: Vec<(&str, &str)> = page["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .filter(|c| c["state"] == "firing")
        .map(|c| (c["rule"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    assert!(cards.contains(&("errors", PATH)), "{cards:?}");
    assert!(cards.contains(&("flood", CLIENT)), "{cards:?}");
    let history = &page["historyKeys"];
    assert!(
        history.as_array().expect("keys").contains(&PATH.into())
            && history.as_array().expect("keys").contains(&CLIENT.into()),
        "{history}"
    );
    let legend = &page["legend"];
    assert!(
        legend.as_array().expect("legend").contains(&PATH.into()),
        "{legend}"
    );
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
    let page = check_page(&site, &path, &[], "dashboard-token.png");
    assert!(text(&page, "agentsText").contains("access.log"), "{page}");
}
