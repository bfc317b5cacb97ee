//! `high-traffic`: the exercise's alert. At each second `t`, the average hits
//! per second over `t-window+1 ..= t` above `threshold` fires; below it
//! resolves; equal to it changes nothing. Silent seconds count as zero hits, so
//! a recovery during silence happens at the second it is due.

use logmon_rule::{Alert, Params, Rule, RuleInfo, Second, StateReader, StateWriter, Window};

const STATE_VERSION: u8 = 1;

#[derive(Debug)]
pub struct HighTraffic {
    threshold: f64,
    window: Window,
    /// When firing: the second it fired and the message it fired with.
    fired: Option<(i64, String)>,
}

impl Default for HighTraffic {
    fn default() -> Self {
        HighTraffic {
            threshold: 10.0,
            window: Window::new(120),
            fired: None,
        }
    }
}

impl Rule for HighTraffic {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "high-traffic".into(),
            description: "Average requests per second over a window above a threshold".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                logmon_rule::param("threshold", "requests per second that fire the alert", 10),
                logmon_rule::param(
                    "window",
                    "seconds averaged, ending at the evaluated second",
                    120,
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        let threshold: f64 = params.get("threshold", 10.0)?;
        let window: usize = params.get("window", 120)?;
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(format!(
                "threshold must be a non-negative number, got {threshold}"
            ));
        }
        if window == 0 || window > 86_400 {
            return Err(format!("window must be 1 ..= 86400 seconds, got {window}"));
        }
        *self = HighTraffic {
            threshold,
            window: Window::new(window),
            fired: None,
        };
        Ok(())
    }

    fn evaluate(&mut self, second: &Second) -> Vec<Alert> {
        self.window.push(second.hits);
        let value = self.window.mean();
        match &self.fired {
            None if value > self.threshold => {
                let message = format!(
                    "High traffic generated an alert - hits = {}, triggered at {}",
                    logmon_rule::decimal(value),
                    logmon_rule::when(second.time)
                );
                self.fired = Some((second.time, message.clone()));
                vec![Alert::firing("", value, message)]
            }
            Some(_) if value < self.threshold => {
                self.fired = None;
                let message = format!(
                    "High traffic alert recovered - hits = {}, recovered at {}",
                    logmon_rule::decimal(value),
                    logmon_rule::when(second.time)
                );
                vec![Alert::resolved("", value, message)]
            }
            Some((_, message)) => vec![Alert::firing("", value, message.clone())],
            None => Vec::new(),
        }
    }

    fn save(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        w.f64(self.threshold);
        self.window.save(&mut w);
        match &self.fired {
            Some((at, message)) => w.bool(true).i64(*at).str(message),
            None => w.bool(false),
        };
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state, STATE_VERSION)?;
        let _saved_threshold = r.f64()?;
        let window = Window::restore(&mut r, self.window.len())?;
        let fired = if r.bool()? {
            Some((r.i64()?, r.str()?))
        } else {
            None
        };
        r.end()?;
        self.window = window;
        self.fired = fired;
        Ok(())
    }
}

logmon_rule::export_rule!(HighTraffic);

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(threshold: &str, window: &str) -> HighTraffic {
        let mut r = HighTraffic::default();
        let params = Params::new(vec![
            ("threshold".into(), threshold.into()),
            ("window".into(), window.into()),
        ]);
        r.configure(&params).unwrap();
        r
    }

    fn second(time: i64, hits: u64) -> Second {
        Second {
            hits,
            ..Second::empty(time)
        }
    }

    fn firing(alerts: &[Alert]) -> bool {
        alerts.iter().any(|a| a.firing)
    }

    #[test]
    fn fires_once_then_resolves_once() {
        // window 4 s, threshold 2 req/s: the window sum must pass 8.
        let mut r = rule("2", "4");
        let hits = [3, 3, 2, 0, 9, 1, 1, 1, 0, 0, 0, 0];
        let mut states = Vec::new();
        for (i, h) in hits.into_iter().enumerate() {
            states.push(firing(&r.evaluate(&second(100 + i as i64, h))));
        }
        // sums: 3,6,8,8,14,12,11,12,3,2,1,0 → means .75,1.5,2,2,3.5,3,2.75,3,.75…
        assert_eq!(
            states,
            [
                false, false, false, false, true, true, true, true, false, false, false, false
            ]
        );
    }

    #[test]
    fn the_fired_message_keeps_the_exercise_wording() {
        let mut r = rule("1", "2");
        let alerts = r.evaluate(&second(1_549_573_860, 5));
        assert_eq!(
            alerts,
            vec![Alert::firing(
                "",
                2.5,
                "High traffic generated an alert - hits = 2.5, triggered at 2019-02-07 21:11:00 UTC (1549573860)"
            )]
        );
        // Still firing: the same message, the current value.
        let alerts = r.evaluate(&second(1_549_573_861, 1));
        assert_eq!(alerts[0].value, 3.0);
        assert!(
            alerts[0]
                .message
                .ends_with("triggered at 2019-02-07 21:11:00 UTC (1549573860)")
        );
    }

    #[test]
    fn equal_to_threshold_changes_nothing() {
        let mut r = rule("2", "2");
        assert!(!firing(&r.evaluate(&second(0, 4))), "mean 2 is not above 2");
        assert!(firing(&r.evaluate(&second(1, 6))), "mean 5 fires");
        assert!(firing(&r.evaluate(&second(2, 0))), "mean 3 still above");
        assert!(firing(&r.evaluate(&second(3, 4))), "mean 2 is not below 2");
        assert!(firing(&r.evaluate(&second(4, 0))), "mean 2 still not below");
        let resolved = r.evaluate(&second(5, 1));
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing, "mean 0.5 resolves");
        assert!(r.evaluate(&second(6, 1)).is_empty(), "no duplicate resolve");
    }

    #[test]
    fn resolves_during_silence_at_the_due_second() {
        let mut r = rule("10", "120");
        // 12 req/s from second 0: the window sum passes 1200 at second 100.
        for t in 0..120 {
            let a = r.evaluate(&second(t, 12));
            assert_eq!(firing(&a), t >= 100, "second {t}");
            let fired_now = a
                .first()
                .is_some_and(|a| a.message.contains("triggered at"));
            assert!(fired_now == (t >= 100), "second {t}");
        }
        // Then silence: at 119 + k the sum is 12 (120 - k), below 1200 once
        // k > 20, i.e. at second 140, inside the silence.
        for t in 120..200 {
            let a = r.evaluate(&Second::empty(t));
            assert_eq!(firing(&a), t < 140, "second {t}");
            if t == 140 {
                assert_eq!(
                    a,
                    vec![Alert::resolved(
                        "",
                        9.9,
                        "High traffic alert recovered - hits = 9.9, recovered at 1970-01-01 00:02:20 UTC (140)"
                    )]
                );
            }
            if t > 140 {
                assert!(a.is_empty(), "no duplicate resolve at {t}");
            }
        }
    }

    #[test]
    fn state_survives_save_and_restore() {
        let mut a = rule("1", "3");
        let mut b = rule("1", "3");
        for t in 0..3 {
            a.evaluate(&second(t, 2));
        }
        b.restore(&a.save()).unwrap();
        for t in 3..8 {
            assert_eq!(a.evaluate(&second(t, 0)), b.evaluate(&second(t, 0)));
        }
        let mut c = rule("1", "5");
        assert!(
            c.restore(&a.save()).is_err(),
            "a different window starts fresh"
        );
    }

    #[test]
    fn refuses_bad_parameters() {
        let mut r = HighTraffic::default();
        let bad = Params::new(vec![("window".into(), "0".into())]);
        assert!(r.configure(&bad).is_err());
        let bad = Params::new(vec![("threshold".into(), "lots".into())]);
        assert!(r.configure(&bad).is_err());
    }
}
