//! `traffic-drop`: an outage detector. At each second `t`, the average hits
//! per second over the recent `window` (`t-window+1 ..= t`) is compared with
//! the trailing average over the `baseline` seconds just before it
//! (`t-window-baseline+1 ..= t-window`, so the drop itself does not drag the
//! baseline down). Below `fraction` of the baseline fires, provided the
//! baseline is at least `min_baseline` req/s (an idle site never alerts).
//! While firing, the baseline stays the one the alert fired against, so a long
//! outage keeps firing until traffic comes back; above `fraction` of that
//! baseline resolves; equal to it changes nothing. Silent seconds count as
//! zero hits, so a total outage fires.

use logmon_rule::{
    Alert, Params, Rule, RuleInfo, Second, StateReader, StateWriter, Window, decimal,
};

const STATE_VERSION: u8 = 1;

#[derive(Debug)]
pub struct TrafficDrop {
    fraction: f64,
    min_baseline: f64,
    /// The last `window` seconds.
    recent: Window,
    /// The `baseline` seconds before them: what leaves `recent`.
    before: Window,
    /// When firing: the baseline it fired against and the message it fired with.
    fired: Option<(f64, String)>,
}

impl Default for TrafficDrop {
    fn default() -> Self {
        TrafficDrop {
            fraction: 0.5,
            min_baseline: 1.0,
            recent: Window::new(60),
            before: Window::new(600),
            fired: None,
        }
    }
}

fn seconds(params: &Params, name: &str, default: usize) -> Result<usize, String> {
    let value: usize = params.get(name, default)?;
    if value == 0 || value > 86_400 {
        return Err(format!("{name} must be 1 ..= 86400 seconds, got {value}"));
    }
    Ok(value)
}

impl TrafficDrop {
    fn message(&self, firing: bool, rate: f64, baseline: f64, time: i64) -> String {
        let pct = decimal(self.fraction * 100.0);
        let (rate, baseline, when) = (decimal(rate), decimal(baseline), logmon_rule::when(time));
        if firing {
            format!(
                "Traffic drop generated an alert - hits = {rate} req/s, below {pct}% of the trailing {baseline} req/s, triggered at {when}"
            )
        } else {
            format!(
                "Traffic drop alert recovered - hits = {rate} req/s, above {pct}% of the trailing {baseline} req/s, recovered at {when}"
            )
        }
    }
}

impl Rule for TrafficDrop {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "traffic-drop".into(),
            description: "Average requests per second over a window below a fraction of the trailing average before it (an outage detector)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                logmon_rule::param(
                    "window",
                    "seconds of the recent average, ending at the evaluated second",
                    60,
                ),
                logmon_rule::param(
                    "baseline",
                    "seconds of the trailing average, just before the recent window",
                    600,
                ),
                logmon_rule::param(
                    "fraction",
                    "share of the trailing average (0 < f <= 1) the recent one must fall below",
                    0.5,
                ),
                logmon_rule::param(
                    "min_baseline",
                    "trailing requests per second below which the rule stays quiet",
                    1,
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        let window = seconds(params, "window", 60)?;
        let baseline = seconds(params, "baseline", 600)?;
        let fraction: f64 = params.get("fraction", 0.5)?;
        let min_baseline: f64 = params.get("min_baseline", 1.0)?;
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(format!(
                "fraction must be within 0 < f <= 1, got {fraction}"
            ));
        }
        if !min_baseline.is_finite() || min_baseline < 0.0 {
            return Err(format!(
                "min_baseline must be a non-negative number, got {min_baseline}"
            ));
        }
        *self = TrafficDrop {
            fraction,
            min_baseline,
            recent: Window::new(window),
            before: Window::new(baseline),
            fired: None,
        };
        Ok(())
    }

    fn evaluate(&mut self, second: &Second) -> Vec<Alert> {
        self.before.push(self.recent.push(second.hits));
        let rate = self.recent.mean();
        match &self.fired {
            None => {
                let baseline = self.before.mean();
                if baseline >= self.min_baseline && rate < self.fraction * baseline {
                    let message = self.message(true, rate, baseline, second.time);
                    self.fired = Some((baseline, message.clone()));
                    vec![Alert::firing("", rate, message)]
                } else {
                    Vec::new()
                }
            }
            Some((baseline, _)) if rate > self.fraction * baseline => {
                let message = self.message(false, rate, *baseline, second.time);
                self.fired = None;
                vec![Alert::resolved("", rate, message)]
            }
            Some((_, message)) => vec![Alert::firing("", rate, message.clone())],
        }
    }

    fn save(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        self.recent.save(&mut w);
        self.before.save(&mut w);
        match &self.fired {
            Some((baseline, message)) => w.bool(true).f64(*baseline).str(message),
            None => w.bool(false),
        };
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state, STATE_VERSION)?;
        let recent = Window::restore(&mut r, self.recent.len())?;
        let before = Window::restore(&mut r, self.before.len())?;
        let fired = if r.bool()? {
            Some((r.f64()?, r.str()?))
        } else {
            None
        };
        r.end()?;
        self.recent = recent;
        self.before = before;
        self.fired = fired;
        Ok(())
    }
}

logmon_rule::export_rule!(TrafficDrop);

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(params: &[(&str, &str)]) -> TrafficDrop {
        let mut r = TrafficDrop::default();
        let params = params
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        r.configure(&Params::new(params)).unwrap();
        r
    }

    /// Window 2 s, baseline the 4 s before it, half of it, at least 1 req/s.
    fn small() -> TrafficDrop {
        rule(&[
            ("window", "2"),
            ("baseline", "4"),
            ("fraction", "0.5"),
            ("min_baseline", "1"),
        ])
    }

    fn second(time: i64, hits: u64) -> Second {
        Second {
            hits,
            ..Second::empty(time)
        }
    }

    /// Per second: `None` when the rule says nothing, else whether it fires.
    fn run(r: &mut TrafficDrop, start: i64, hits: &[u64]) -> Vec<Option<bool>> {
        hits.iter()
            .enumerate()
            .map(|(i, &h)| {
                let a = r.evaluate(&second(start + i as i64, h));
                assert!(a.len() <= 1, "one alert key at most: {a:?}");
                a.first().map(|a| a.firing)
            })
            .collect()
    }

    #[test]
    fn fires_once_then_resolves_once_with_boundaries() {
        let mut r = small();
        let states = run(&mut r, 0, &[4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4]);
        // t6: recent (4, 0) = 2 req/s, exactly half of the baseline 4: nothing.
        // t7: recent 0 fires. t10: recent (0, 4) = 2, exactly half of the
        // baseline it fired against: still firing. t11: 4 resolves, once.
        let (n, f, r_) = (None, Some(true), Some(false));
        assert_eq!(states, [n, n, n, n, n, n, n, f, f, f, f, r_, n, n]);
    }

    #[test]
    fn messages_carry_the_value_and_the_time() {
        let mut r = small();
        run(&mut r, 1_549_573_860, &[4, 4, 4, 4, 4, 4, 1]);
        let fired = r.evaluate(&second(1_549_573_867, 0));
        assert_eq!(
            fired,
            vec![Alert::firing(
                "",
                0.5,
                "Traffic drop generated an alert - hits = 0.5 req/s, below 50% of the trailing 4 req/s, triggered at 2019-02-07 21:11:07 UTC (1549573867)"
            )]
        );
        // Still firing: the fired message, the current value.
        let still = r.evaluate(&second(1_549_573_868, 1));
        assert_eq!(
            still,
            vec![Alert::firing("", 0.5, fired[0].message.clone())]
        );
        let resolved = r.evaluate(&second(1_549_573_869, 5));
        assert_eq!(
            resolved,
            vec![Alert::resolved(
                "",
                3.0,
                "Traffic drop alert recovered - hits = 3 req/s, above 50% of the trailing 4 req/s, recovered at 2019-02-07 21:11:09 UTC (1549573869)"
            )]
        );
    }

    #[test]
    fn a_total_outage_fires_and_keeps_firing_through_silence() {
        let mut r = rule(&[]);
        // Defaults: 60 s against the 600 s before, half, at least 1 req/s.
        for t in 0..660 {
            assert!(r.evaluate(&second(t, 10)).is_empty(), "steady at {t}");
        }
        // Silence from 660: the recent sum is 10 × (60 − k) after k silent
        // seconds; exactly 300 (half of 10 req/s) at k = 30 changes nothing,
        // k = 31 (second 690) fires.
        for t in 660..690 {
            assert!(r.evaluate(&Second::empty(t)).is_empty(), "second {t}");
        }
        let fired = r.evaluate(&Second::empty(690));
        assert_eq!(fired.len(), 1);
        assert!(fired[0].firing);
        assert!(fired[0].message.contains("of the trailing 10 req/s"));
        // Long after the baseline window itself went silent, still firing:
        // the alert keeps the baseline it fired against.
        for t in 691..3000 {
            let a = r.evaluate(&Second::empty(t));
            let rate = if t < 720 { (719 - t) as f64 / 6.0 } else { 0.0 };
            assert_eq!(a, vec![Alert::firing("", rate, fired[0].message.clone())]);
        }
        // Traffic is back: 6 req/s passes half of 10 once the recent sum
        // exceeds 300, i.e. after 51 seconds.
        for t in 3000..3050 {
            assert!(r.evaluate(&second(t, 6))[0].firing, "second {t}");
        }
        let back = r.evaluate(&second(3050, 6));
        assert_eq!(back.len(), 1);
        assert!(!back[0].firing);
        assert_eq!(back[0].value, 5.1);
        assert!(r.evaluate(&second(3051, 6)).is_empty());
    }

    #[test]
    fn min_baseline_keeps_an_idle_site_quiet() {
        // Baseline exactly 1 req/s is judged; 1.01 is not.
        let hits = [1, 1, 1, 1, 1, 1, 0, 0, 0];
        let mut r = small();
        assert_eq!(run(&mut r, 0, &hits)[7], Some(true), "baseline 1 fires");
        let mut r = rule(&[("window", "2"), ("baseline", "4"), ("min_baseline", "1.01")]);
        assert!(run(&mut r, 0, &hits).iter().all(Option::is_none));
        // A site at 0.5 req/s that goes silent never alerts with the default.
        let mut r = rule(&[]);
        for t in 0..2000 {
            let hits = if t < 1000 { (t % 2) as u64 } else { 0 };
            assert!(r.evaluate(&second(t, hits)).is_empty(), "second {t}");
        }
    }

    #[test]
    fn warming_up_never_fires() {
        // Before `window + baseline` seconds, the baseline counts the seconds
        // before the first as silent: it is underestimated, never the recent.
        let mut r = rule(&[("window", "2"), ("baseline", "4"), ("min_baseline", "0")]);
        assert!(
            run(&mut r, 0, &[9, 3, 3, 3, 3, 3])
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn state_survives_save_and_restore() {
        let hits = [4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4];
        for cut in [3, 8] {
            let mut a = small();
            let mut b = small();
            run(&mut a, 0, &hits[..cut]);
            b.restore(&a.save()).unwrap();
            for (i, &h) in hits.iter().enumerate().skip(cut) {
                let s = second(i as i64, h);
                assert_eq!(a.evaluate(&s), b.evaluate(&s), "cut {cut}, second {i}");
            }
        }
        let a = small();
        let mut other = rule(&[("window", "3"), ("baseline", "4")]);
        assert!(
            other.restore(&a.save()).is_err(),
            "another window starts fresh"
        );
        let mut same = small();
        assert!(same.restore(&[]).is_err());
        assert!(same.restore(&a.save()[..10]).is_err(), "truncated");
        assert!(same.restore(&a.save()).is_ok());
    }

    #[test]
    fn refuses_bad_parameters() {
        for (name, value) in [
            ("fraction", "0"),
            ("fraction", "1.5"),
            ("fraction", "NaN"),
            ("fraction", "half"),
            ("window", "0"),
            ("window", "86401"),
            ("baseline", "0"),
            ("baseline", "-5"),
            ("min_baseline", "-1"),
            ("min_baseline", "inf"),
        ] {
            let mut r = TrafficDrop::default();
            let p = Params::new(vec![(name.into(), value.into())]);
            assert!(r.configure(&p).is_err(), "{name}={value} accepted");
        }
        let mut r = TrafficDrop::default();
        let ok = Params::new(vec![("fraction".into(), "1".into())]);
        assert!(r.configure(&ok).is_ok());
    }
}
