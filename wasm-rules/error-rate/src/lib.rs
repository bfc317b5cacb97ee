//! `error-rate`: per section, the share of 5xx responses over the last
//! `window` seconds. Above `threshold` with at least `min_requests` requests in
//! the window fires, keyed by section; at or below the threshold, or with too
//! few requests to judge, resolves.

use logmon_rule::{Alert, Params, Rule, RuleInfo, Second, StateReader, StateWriter, Window};
use std::collections::BTreeMap;

const STATE_VERSION: u8 = 1;

#[derive(Debug)]
struct SectionWindow {
    requests: Window,
    errors: Window,
    firing: bool,
}

#[derive(Debug)]
pub struct ErrorRate {
    threshold: f64,
    window: usize,
    min_requests: u64,
    sections: BTreeMap<String, SectionWindow>,
}

impl Default for ErrorRate {
    fn default() -> Self {
        ErrorRate {
            threshold: 0.1,
            window: 60,
            min_requests: 20,
            sections: BTreeMap::new(),
        }
    }
}

impl ErrorRate {
    fn message(&self, section: &str, firing: bool, share: f64, requests: u64, time: i64) -> String {
        let pct = share * 100.0;
        let when = logmon_rule::when(time);
        let window = self.window;
        if firing {
            format!(
                "High error rate on {section} - {pct:.1}% 5xx over {window} s, triggered at {when}"
            )
        } else if requests < self.min_requests {
            format!(
                "Error rate on {section} no longer judged - {requests} requests over {window} s (min {}), resolved at {when}",
                self.min_requests
            )
        } else {
            format!(
                "Error rate on {section} recovered - {pct:.1}% 5xx over {window} s, recovered at {when}"
            )
        }
    }
}

impl Rule for ErrorRate {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "error-rate".into(),
            description: "Share of 5xx responses per section over a window above a threshold"
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                logmon_rule::param("threshold", "share of 5xx responses (0..1) that fires", 0.1),
                logmon_rule::param(
                    "window",
                    "seconds looked back, ending at the evaluated second",
                    60,
                ),
                logmon_rule::param(
                    "min_requests",
                    "requests in the window needed to judge a section",
                    20,
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        let threshold: f64 = params.get("threshold", 0.1)?;
        let window: usize = params.get("window", 60)?;
        let min_requests: u64 = params.get("min_requests", 20)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!("threshold must be within 0 ..= 1, got {threshold}"));
        }
        if window == 0 || window > 86_400 {
            return Err(format!("window must be 1 ..= 86400 seconds, got {window}"));
        }
        *self = ErrorRate {
            threshold,
            window,
            min_requests: min_requests.max(1),
            sections: BTreeMap::new(),
        };
        Ok(())
    }

    fn evaluate(&mut self, second: &Second) -> Vec<Alert> {
        let window = self.window;
        for s in &second.sections {
            self.sections
                .entry(s.section.clone())
                .or_insert_with(|| SectionWindow {
                    requests: Window::new(window),
                    errors: Window::new(window),
                    firing: false,
                });
        }
        let mut alerts = Vec::new();
        let mut idle = Vec::new();
        for (name, w) in &mut self.sections {
            let (hits, errors) = second
                .sections
                .iter()
                .find(|s| &s.section == name)
                .map_or((0, 0), |s| (s.hits, s.statuses.server_error));
            w.requests.push(hits);
            w.errors.push(errors);
            let requests = w.requests.sum();
            let share = if requests == 0 {
                0.0
            } else {
                w.errors.sum() as f64 / requests as f64
            };
            let judged = requests >= self.min_requests;
            let was = w.firing;
            w.firing = judged && share > self.threshold;
            if w.firing || was {
                alerts.push((name.clone(), w.firing, share, requests));
            }
            if requests == 0 && !w.firing {
                idle.push(name.clone());
            }
        }
        for name in idle {
            self.sections.remove(&name);
        }
        alerts
            .into_iter()
            .map(|(name, firing, share, requests)| {
                let message = self.message(&name, firing, share, requests, second.time);
                Alert {
                    key: name,
                    firing,
                    value: share,
                    message,
                }
            })
            .collect()
    }

    fn save(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        w.u64(self.sections.len() as u64);
        for (name, s) in &self.sections {
            w.str(name).bool(s.firing);
            s.requests.save(&mut w);
            s.errors.save(&mut w);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state, STATE_VERSION)?;
        let n = r.u64()?;
        let mut sections = BTreeMap::new();
        for _ in 0..n {
            let name = r.str()?;
            let firing = r.bool()?;
            let requests = Window::restore(&mut r, self.window)?;
            let errors = Window::restore(&mut r, self.window)?;
            sections.insert(
                name,
                SectionWindow {
                    requests,
                    errors,
                    firing,
                },
            );
        }
        r.end()?;
        self.sections = sections;
        Ok(())
    }
}

logmon_rule::export_rule!(ErrorRate);

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_rule::{SectionStats, StatusClasses};

    fn rule(threshold: &str, window: &str, min: &str) -> ErrorRate {
        let mut r = ErrorRate::default();
        r.configure(&Params::new(vec![
            ("threshold".into(), threshold.into()),
            ("window".into(), window.into()),
            ("min_requests".into(), min.into()),
        ]))
        .unwrap();
        r
    }

    fn second(time: i64, sections: &[(&str, u64, u64)]) -> Second {
        let mut s = Second::empty(time);
        for &(name, hits, errors) in sections {
            s.hits += hits;
            s.sections.push(SectionStats {
                section: name.into(),
                hits,
                bytes: 0,
                statuses: StatusClasses {
                    success: hits - errors,
                    server_error: errors,
                    ..StatusClasses::ZERO
                },
            });
        }
        s
    }

    fn firing_keys(alerts: &[Alert]) -> Vec<&str> {
        alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| a.key.as_str())
            .collect()
    }

    #[test]
    fn fires_per_section_and_resolves_once() {
        let mut r = rule("0.25", "2", "4");
        // /api: 1 of 4 errors (25 %, not above) then 2 of 4 → window 3/8 = 37.5 % fires.
        let a = r.evaluate(&second(0, &[("/api", 4, 1), ("/web", 4, 0)]));
        assert!(firing_keys(&a).is_empty());
        let a = r.evaluate(&second(1, &[("/api", 4, 2), ("/web", 4, 0)]));
        assert_eq!(firing_keys(&a), ["/api"]);
        assert_eq!(a[0].value, 0.375);
        // Still firing: no second fire is possible, the key just stays in the set.
        let a = r.evaluate(&second(2, &[("/api", 4, 2), ("/web", 4, 0)]));
        assert_eq!(firing_keys(&a), ["/api"]);
        // Errors stop: window (4,2)+(4,0) = 25 % resolves, reported once.
        let a = r.evaluate(&second(3, &[("/api", 4, 0)]));
        assert_eq!(a.len(), 1);
        assert!(!a[0].firing);
        assert!(
            a[0].message
                .starts_with("Error rate on /api recovered - 25.0% 5xx")
        );
        let a = r.evaluate(&second(4, &[("/api", 4, 0)]));
        assert!(a.is_empty(), "no duplicate resolve");
    }

    #[test]
    fn too_few_requests_never_fire() {
        let mut r = rule("0.1", "10", "20");
        for t in 0..10 {
            let a = r.evaluate(&second(t, &[("/rare", 1, 1)]));
            assert!(firing_keys(&a).is_empty(), "10 requests are below min 20");
        }
    }

    #[test]
    fn resolves_during_silence() {
        let mut r = rule("0.1", "3", "2");
        let a = r.evaluate(&second(0, &[("/api", 10, 5)]));
        assert_eq!(firing_keys(&a), ["/api"]);
        // Silence: the window still holds second 0 for two more seconds.
        assert_eq!(firing_keys(&r.evaluate(&Second::empty(1))), ["/api"]);
        assert_eq!(firing_keys(&r.evaluate(&Second::empty(2))), ["/api"]);
        let a = r.evaluate(&Second::empty(3));
        assert_eq!(a.len(), 1);
        assert!(
            !a[0].firing,
            "resolved at second 3, when the errors left the window"
        );
        assert_eq!(
            a[0].message,
            "Error rate on /api no longer judged - 0 requests over 3 s (min 2), resolved at 1970-01-01 00:00:03 UTC (3)"
        );
        assert!(r.evaluate(&Second::empty(4)).is_empty());
        assert!(r.sections.is_empty(), "idle sections are forgotten");
    }

    #[test]
    fn state_survives_save_and_restore() {
        let mut a = rule("0.1", "5", "2");
        let mut b = rule("0.1", "5", "2");
        a.evaluate(&second(0, &[("/api", 10, 5), ("/x", 3, 0)]));
        b.restore(&a.save()).unwrap();
        for t in 1..8 {
            let s = second(t, &[("/x", 3, 1)]);
            assert_eq!(a.evaluate(&s), b.evaluate(&s));
        }
    }
}
