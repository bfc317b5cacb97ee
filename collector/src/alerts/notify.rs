//! Notifiers: deliver alert transitions from the outbox to HTTP targets — a
//! generic JSON webhook, a Slack-compatible incoming webhook, and
//! Alertmanager's v2 API.
//!
//! Each target is an outbox consumer of its own (`notify:<name>`): it reads
//! transitions in order, delivers each until the target accepts it (2xx),
//! retrying with full-jitter exponential backoff, and commits its offset after
//! each delivery. A target that is down falls behind and catches up, in
//! order, once it is back; it never stalls evaluation (the engine only
//! appends to the outbox) nor the other targets. After a collector crash a
//! target receives again at most the one transition it was being sent.
//!
//! A target's 4xx other than 408/429 is permanent: the transition is reported
//! and skipped, so one malformed payload cannot block the queue forever.
//!
//! Alertmanager expects firing alerts to be re-sent while they last (it
//! resolves an alert it has not heard of for `resolve_timeout`), so its
//! notifier re-posts every active alert every `resend_every`, with `endsAt`
//! a few resend intervals ahead; a resolution is posted with `endsAt` = the
//! event time it resolved at. The active set is kept in a small state file
//! written with the offset, so a restart keeps re-sending.

use crate::alerts::outbox::{Outbox, OutboxError};
use crate::rules::{AlertState, Transition};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What kind of endpoint a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `POST` of one JSON object per transition.
    Webhook,
    /// Slack-compatible incoming webhook: `{"text": …}`.
    Slack,
    /// Alertmanager: `POST {url}/api/v2/alerts` with a list of alerts.
    Alertmanager,
}

/// One notification target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    pub url: String,
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `KIND=URL` or `NAME:KIND=URL`, e.g. `slack=https://hooks.slack.com/…`.
    fn from_str(s: &str) -> Result<Target, String> {
        let (head, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected KIND=URL or NAME:KIND=URL"))?;
        let (name, kind) = match head.split_once(':') {
            Some((name, kind)) => (name.to_string(), kind),
            None => (head.to_string(), head),
        };
        let kind = match kind {
            "webhook" => TargetKind::Webhook,
            "slack" => TargetKind::Slack,
            "alertmanager" => TargetKind::Alertmanager,
            other => {
                return Err(format!(
                    "{other:?}: the target kinds are webhook, slack and alertmanager"
                ));
            }
        };
        Target::new(name, kind, url)
    }
}

impl Target {
    /// A target, with its name and URL checked.
    pub fn new(name: String, kind: TargetKind, url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "{url:?}: a target is an http:// or https:// URL (https: the system's roots)"
            ));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(format!(
                "{name:?}: a target name is letters, digits, - and _"
            ));
        }
        Ok(Target {
            name,
            kind,
            url: url.to_string(),
        })
    }
}

/// Notifier settings shared by the targets.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    /// Alertmanager: how often active alerts are re-sent.
    pub resend_every: Duration,
    /// Where per-target state (Alertmanager's active set) is kept.
    pub state_dir: Option<PathBuf>,
    /// Rule instance → the only targets it notifies (absent: every target).
    pub routes: BTreeMap<String, Vec<String>>,
    /// Rule instance → severity label.
    pub severity: BTreeMap<String, String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            resend_every: Duration::from_secs(60),
            state_dir: None,
            routes: BTreeMap::new(),
            severity: BTreeMap::new(),
        }
    }
}

/// Counters of one target.
#[derive(Debug, Default)]
pub struct TargetCounters {
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub resent: AtomicU64,
}

/// The JSON a generic webhook receives. `id` names the transition (the same
/// for every delivery of it, also sent as the `Idempotency-Key` header):
/// delivery is at-least-once — a collector killed after the receiver took a
/// transition but before the notifier recorded it sends it again — so a
/// receiver that must act once de-duplicates on it.
pub fn webhook_payload(t: &Transition) -> serde_json::Value {
    json!({
        "id": transition_id(t),
        "rule": t.rule,
        "key": t.key,
        "state": t.state,
        "at": t.at,
        "at_rfc3339": rfc3339(t.at),
        "value": if t.value.is_finite() { json!(t.value) } else { serde_json::Value::Null },
        "message": t.message,
    })
}

/// A stable 64-bit FNV-1a digest of (rule, key, state, event time), in hex.
pub fn transition_id(t: &Transition) -> String {
    let state = match t.state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        t.rule.as_bytes(),
        t.key.as_bytes(),
        state.as_bytes(),
        &t.at.to_le_bytes(),
    ] {
        for &b in part.iter().chain(&[0x1f]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn slack_payload(t: &Transition) -> serde_json::Value {
    let tag = match t.state {
        AlertState::Firing => ":rotating_light: ALERT",
        AlertState::Resolved => ":white_check_mark: RECOVERED",
    };
    let key = if t.key.is_empty() {
        String::new()
    } else {
        format!(" {}", t.key)
    };
    json!({ "text": format!("{tag} [{}{key}] {}", t.rule, t.message) })
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An Alertmanager alert for a transition; `ends_at` is when it resolves
/// (firing: a little ahead, refreshed by re-sending).
fn alertmanager_alert(
    t: &Transition,
    severity: &str,
    starts_at: i64,
    ends_at: i64,
) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(t.rule));
    if !t.key.is_empty() {
        labels.insert("key".into(), json!(t.key));
    }
    if !severity.is_empty() {
        labels.insert("severity".into(), json!(severity));
    }
    labels.insert("source".into(), json!("logmon"));
    json!({
        "labels": labels,
        "annotations": {
            "summary": t.message,
            "value": if t.value.is_finite() { t.value.to_string() } else { String::new() },
        },
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at),
    })
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AmState {
    /// (rule, key) → (the firing transition, its start).
    active: BTreeMap<String, (Transition, i64)>,
}

fn am_key(t: &Transition) -> String {
    format!("{}\u{1f}{}", t.rule, t.key)
}

/// How one delivery ended.
enum Sent {
    Accepted,
    /// Not worth retrying (4xx other than 408/429).
    Refused(String),
}

struct Sender {
    http: crate::http::client::HttpsClient,
    settings: NotifySettings,
}

impl Sender {
    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<Sent, String> {
        let mut req = Request::builder().method(Method::POST).uri(url);
        if let Some(id) = body.get("id").and_then(|v| v.as_str())
            && let Ok(id) = HeaderValue::from_str(id)
        {
            req = req.header("idempotency-key", id);
        }
        let req = req
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(header::USER_AGENT, HeaderValue::from_static("logmon"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.http.request(req).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let text = Limited::new(response.into_body(), 4096)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            Ok::<_, String>((status, text))
        };
        match tokio::time::timeout(self.settings.request_timeout, exchange).await {
            Err(_) => Err(format!(
                "no answer within {:?}",
                self.settings.request_timeout
            )),
            Ok(Err(e)) => Err(e),
            Ok(Ok((status, _))) if status.is_success() => Ok(Sent::Accepted),
            Ok(Ok((status, text)))
                if status.is_client_error() && status != 408 && status != 429 =>
            {
                Ok(Sent::Refused(format!("{status}: {}", text.trim())))
            }
            Ok(Ok((status, text))) => Err(format!("{status}: {}", text.trim())),
        }
    }

    /// Post until accepted or refused; `None` when `shutdown` came first.
    async fn deliver(
        &self,
        target: &Target,
        url: &str,
        body: &serde_json::Value,
        counters: &TargetCounters,
        shutdown: &CancellationToken,
    ) -> Option<Sent> {
        let mut attempt = 0u32;
        loop {
            match self.post(url, body).await {
                Ok(sent) => return Some(sent),
                Err(reason) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    let cap = self
                        .settings
                        .retry_min
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(self.settings.retry_max);
                    let delay = cap.mul_f64(rand::random::<f64>());
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(
                            target = %target.name,
                            url,
                            reason = %reason,
                            retry_in = ?delay,
                            "notification not delivered; retrying"
                        );
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// The consumer name of a target in the outbox.
pub fn consumer(target: &Target) -> String {
    format!("notify:{}", target.name)
}

/// Deliver the outbox to `target` until `shutdown` (at once), or until it
/// has delivered everything there is once `drain` is cancelled.
pub async fn run(
    target: Target,
    outbox: Outbox,
    settings: NotifySettings,
    counters: Arc<TargetCounters>,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<(), OutboxError> {
    let name = consumer(&target);
    let mut offset = {
        let (outbox, name) = (outbox.clone(), name.clone());
        tokio::task::spawn_blocking(move || outbox.position(&name))
            .await
            .expect("the register task does not panic")?
    };
    let state_file = format!("notify-{}.json", target.name);
    let state_dir = settings
        .state_dir
        .clone()
        .filter(|_| target.kind == TargetKind::Alertmanager);
    let mut am = match &state_dir {
        Some(dir) => crate::engine::snapshot::load_json::<AmState>(dir, &state_file)
            .unwrap_or_else(|e| {
                tracing::warn!(
                    target = %target.name,
                    error = %e,
                    "notifier state unreadable; starting with no active alerts"
                );
                None
            })
            .unwrap_or_default(),
        None => AmState::default(),
    };
    let sender = Sender {
        http: crate::http::client::default_client(),
        settings: settings.clone(),
    };
    let am_url = format!("{}/api/v2/alerts", target.url.trim_end_matches('/'));
    let resend = settings.resend_every;
    let ahead = |now: i64| now + 3 * resend.as_secs().max(1) as i64;
    let mut last_resend = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        let batch = {
            let outbox = outbox.clone();
            tokio::task::spawn_blocking(move || outbox.read(offset, 100))
                .await
                .expect("the read task does not panic")?
        };
        for (at, t) in &batch {
            let routed_elsewhere = settings
                .routes
                .get(&t.rule)
                .is_some_and(|only| !only.contains(&target.name));
            if routed_elsewhere {
                offset = at + 1;
                continue;
            }
            let severity = settings.severity.get(&t.rule).map_or("", String::as_str);
            let (url, body) = match target.kind {
                TargetKind::Webhook => {
                    let mut body = webhook_payload(t);
                    if !severity.is_empty() {
                        body["severity"] = json!(severity);
                    }
                    (target.url.as_str(), body)
                }
                TargetKind::Slack => (target.url.as_str(), slack_payload(t)),
                TargetKind::Alertmanager => {
                    let key = am_key(t);
                    let body = match t.state {
                        AlertState::Firing => {
                            am.active.insert(key, (t.clone(), t.at));
                            alertmanager_alert(
                                t,
                                severity,
                                t.at,
                                ahead(crate::clock::now_seconds()),
                            )
                        }
                        AlertState::Resolved => {
                            let started = am.active.remove(&key).map_or(t.at, |(_, s)| s);
                            alertmanager_alert(t, severity, started, t.at)
                        }
                    };
                    (am_url.as_str(), json!([body]))
                }
            };
            match sender
                .deliver(&target, url, &body, &counters, &shutdown)
                .await
            {
                None => return Ok(()),
                Some(Sent::Accepted) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Some(Sent::Refused(reason)) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        target = %target.name,
                        url,
                        rule = %t.rule,
                        key = %t.key,
                        state = ?t.state,
                        reason = %reason,
                        "the receiver refused a transition; skipped"
                    );
                }
            }
            offset = at + 1;
            if let Some(dir) = &state_dir
                && let Err(e) = crate::engine::snapshot::save_json(dir, &state_file, &am)
            {
                tracing::error!(target = %target.name, error = %e, "saving the notifier's state");
            }
            let (outbox, name) = (outbox.clone(), name.clone());
            tokio::task::spawn_blocking(move || outbox.commit(&name, offset))
                .await
                .expect("the commit task does not panic")?;
        }
        if target.kind == TargetKind::Alertmanager
            && !am.active.is_empty()
            && last_resend.elapsed() >= resend
        {
            let alerts: Vec<_> = am
                .active
                .values()
                .map(|(t, started)| {
                    let severity = settings.severity.get(&t.rule).map_or("", String::as_str);
                    alertmanager_alert(t, severity, *started, ahead(crate::clock::now_seconds()))
                })
                .collect();
            if let Some(Sent::Accepted) = sender
                .deliver(&target, &am_url, &json!(alerts), &counters, &shutdown)
                .await
            {
                counters
                    .resent
                    .fetch_add(alerts.len() as u64, Ordering::Relaxed);
            }
            last_resend = tokio::time::Instant::now();
        }
        if batch.is_empty() {
            if drain.is_cancelled() {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = drain.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
    Ok(())
}
