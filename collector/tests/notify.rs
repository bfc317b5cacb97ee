//! Notifiers against an in-process HTTP receiver that can be down: every
//! transition arrives once, in order, after an outage and across restarts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use logmon_collector::alerts::notify::{self, NotifySettings, Target, TargetCounters, TargetKind};
use logmon_collector::alerts::outbox::Outbox;
use logmon_collector::rules::{AlertState, Transition};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the receiver answers and what it got: (path, JSON body), and the
/// `Idempotency-Key` header of each.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = Arc::new(AtomicU16::new(200));
    let got = Arc::new(Mutex::new(Vec::new()));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let (s, g, k) = (Arc::clone(&status), Arc::clone(&got), Arc::clone(&keys));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (s, g, k) = (Arc::clone(&s), Arc::clone(&g), Arc::clone(&k));
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (s, g, k) = (Arc::clone(&s), Arc::clone(&g), Arc::clone(&k));
                        async move {
                            let path = req.uri().path().to_string();
                            let key = req
                                .headers()
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let code = s.load(Ordering::SeqCst);
                            if code == 200 {
                                let json = serde_json::from_slice(&body).unwrap();
                                g.lock().unwrap().push((path, json));
                                k.lock().unwrap().push(key);
                            }
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver {
        url,
        status,
        got,
        keys,
    }
}

impl Receiver {
    fn got(&self) -> Vec<(String, serde_json::Value)> {
        self.got.lock().unwrap().clone()
    }

    fn set(&self, status: StatusCode) {
        self.status.store(status.as_u16(), Ordering::SeqCst);
    }
}

fn t(rule: &str, key: &str, state: AlertState, at: i64) -> Transition {
    Transition {
        rule: rule.into(),
        key: key.into(),
        state,
        at,
        value: at as f64 / 10.0,
        message: format!("{rule} {key} {state:?} at {at}"),
    }
}

fn settings() -> NotifySettings {
    NotifySettings {
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(100),
        request_timeout: Duration::from_secs(2),
        resend_every: Duration::from_millis(300),
        ..NotifySettings::default()
    }
}

fn start(target: &Target, outbox: &Outbox, settings: NotifySettings) -> CancellationToken {
    let stop = CancellationToken::new();
    // As `serve` does at start, before anything reaches the outbox.
    outbox
        .declare(&[notify::consumer(target).as_str()])
        .unwrap();
    let (target, outbox, s) = (target.clone(), outbox.clone(), stop.clone());
    tokio::spawn(async move {
        notify::run(
            target,
            outbox,
            settings,
            Arc::new(TargetCounters::default()),
            s,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    });
    stop
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_target_that_was_down_gets_everything_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    let rx = receiver().await;
    let target: Target = format!("hook:webhook={}/alerts", rx.url).parse().unwrap();
    assert_eq!(target.kind, TargetKind::Webhook);
    rx.set(StatusCode::SERVICE_UNAVAILABLE);
    let sent: Vec<Transition> = (0..6)
        .map(|i| {
            let state = if i % 2 == 0 {
                AlertState::Firing
            } else {
                AlertState::Resolved
            };
            t("high-traffic", "", state, 100 + i)
        })
        .collect();
    outbox.append(&sent[..3]).unwrap();
    let stop = start(&target, &outbox, settings());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.got().is_empty(), "down: nothing accepted");
    outbox.append(&sent[3..4]).unwrap();
    rx.set(StatusCode::OK);
    wait_until("four transitions", || rx.got().len() >= 4).await;

    // Restarted: what was delivered is not sent again.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    outbox.append(&sent[4..]).unwrap();
    let stop = start(&target, &outbox, settings());
    wait_until("six transitions", || rx.got().len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();

    let got = rx.got();
    let expected: Vec<(String, serde_json::Value)> = sent
        .iter()
        .map(|t| ("/alerts".to_string(), notify::webhook_payload(t)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got[1].1["state"], "resolved");
    assert_eq!(got[1].1["at_rfc3339"], "1970-01-01T00:01:41Z");
    // Each transition has its own id, sent as the Idempotency-Key header too.
    let ids: Vec<Option<String>> = got
        .iter()
        .map(|(_, body)| body["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(*rx.keys.lock().unwrap(), ids);
    let distinct: std::collections::BTreeSet<_> = ids.iter().flatten().collect();
    assert_eq!(distinct.len(), 6, "{ids:?}");
}

#[tokio::test]
async fn a_refused_payload_is_skipped_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    let rx = receiver().await;
    let target: Target = format!("slack={}/hook", rx.url).parse().unwrap();
    rx.set(StatusCode::BAD_REQUEST);
    outbox
        .append(&[t("error-rate", "/api", AlertState::Firing, 5)])
        .unwrap();
    let stop = start(&target, &outbox, settings());
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.set(StatusCode::OK);
    outbox
        .append(&[t("error-rate", "/api", AlertState::Resolved, 9)])
        .unwrap();
    wait_until("the resolution", || !rx.got().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    assert_eq!(
        rx.got(),
        vec![(
            "/hook".to_string(),
            serde_json::json!({
                "text": ":white_check_mark: RECOVERED [error-rate /api] error-rate /api Resolved at 9"
            })
        )]
    );
}

#[tokio::test]
async fn alertmanager_gets_firing_alerts_again_until_they_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    let rx = receiver().await;
    let target: Target = format!("alertmanager={}", rx.url).parse().unwrap();
    let started = 1_800_000_000;
    outbox
        .append(&[t("client-flood", "10.0.0.9", AlertState::Firing, started)])
        .unwrap();
    let stop = start(&target, &outbox, settings());
    wait_until("a re-send", || rx.got().len() >= 3).await;
    outbox
        .append(&[t(
            "client-flood",
            "10.0.0.9",
            AlertState::Resolved,
            started + 60,
        )])
        .unwrap();
    wait_until("the resolution", || {
        rx.got()
            .iter()
            .any(|(_, b)| b[0]["endsAt"] == "2027-01-15T08:01:00Z")
    })
    .await;
    let settled = rx.got().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.cancel();
    let got = rx.got();
    assert_eq!(got.len(), settled, "nothing re-sent once resolved");
    for (path, body) in &got {
        assert_eq!(path, "/api/v2/alerts");
        let alert = &body[0];
        assert_eq!(alert["labels"]["alertname"], "client-flood");
        assert_eq!(alert["labels"]["key"], "10.0.0.9");
        assert_eq!(alert["startsAt"], "2027-01-15T08:00:00Z");
    }
    let last = &got.last().unwrap().1[0];
    assert_eq!(last["endsAt"], "2027-01-15T08:01:00Z");
    assert_eq!(
        last["annotations"]["summary"],
        "client-flood 10.0.0.9 Resolved at 1800000060"
    );
}

#[tokio::test]
async fn routes_and_severity_decide_what_a_target_gets() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    let rx = receiver().await;
    let target: Target = format!("ops:webhook={}/ops", rx.url).parse().unwrap();
    let mut s = settings();
    s.routes.insert("elsewhere".into(), vec!["chat".into()]);
    s.routes.insert("mine".into(), vec!["ops".into()]);
    s.severity.insert("mine".into(), "page".into());
    outbox
        .append(&[
            t("elsewhere", "", AlertState::Firing, 1),
            t("mine", "", AlertState::Firing, 2),
            t("anyone", "", AlertState::Firing, 3),
        ])
        .unwrap();
    let stop = start(&target, &outbox, s);
    wait_until("two", || rx.got().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let got: Vec<(String, String)> = rx
        .got()
        .iter()
        .map(|(_, b)| {
            (
                b["rule"].as_str().unwrap().to_owned(),
                b["severity"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("mine".to_string(), "page".to_string()),
            ("anyone".to_string(), "-".to_string())
        ]
    );
}

#[test]
fn targets_parse_or_say_why_not() {
    let t: Target = "ops:alertmanager=http://am:9093".parse().unwrap();
    assert_eq!(
        (t.name.as_str(), t.kind, t.url.as_str()),
        ("ops", TargetKind::Alertmanager, "http://am:9093")
    );
    let t: Target = "slack=https://hooks.slack.com/services/T/B/X"
        .parse()
        .unwrap();
    assert_eq!(t.url, "https://hooks.slack.com/services/T/B/X");
    for (bad, why) in [
        ("http://x", "expected KIND=URL"),
        ("pager=http://x", "the target kinds are"),
        ("webhook=ftp://x", "a target is an http:// or https:// URL"),
        ("a b:webhook=http://x", "a target name is"),
    ] {
        let err = bad.parse::<Target>().unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}
