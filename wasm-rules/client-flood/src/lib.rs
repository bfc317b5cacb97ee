//! `client-flood`: one client sending more than `limit` requests over the last
//! `window` seconds (`t-window+1 ..= t`) fires, keyed by client; at or below
//! `limit` resolves. Each client fires and resolves on its own.
//!
//! The rule sees what the interface gives it: each second's busiest clients
//! (at most 16, `top-clients` in `rule.wit`). A client's requests in seconds
//! where it was not among them are not counted, so the rule catches a client
//! that dominates the traffic (a flood), not one of many equally busy ones.
//! Memory is bounded by that too: at most 16 entries per second of the window
//! (`window` is at most 300 s, so at most 4,800 clients are ever held).

use logmon_rule::{Alert, KeyedWindow, Params, Rule, RuleInfo, Second, StateReader, StateWriter};
use std::collections::BTreeMap;

const STATE_VERSION: u8 = 1;

/// Clients taken from each second, busiest first: all the interface sends.
pub const CLIENTS_PER_SECOND: usize = 16;
/// Longest window, seconds: keeps the clients held (and the keys one
/// evaluation can return) within the host's limits.
pub const MAX_WINDOW: usize = 300;

#[derive(Debug)]
pub struct ClientFlood {
    limit: u64,
    /// Requests per client over the window.
    counts: KeyedWindow,
    /// Firing clients and the message each fired with.
    firing: BTreeMap<String, String>,
}

impl Default for ClientFlood {
    fn default() -> Self {
        ClientFlood {
            limit: 600,
            counts: KeyedWindow::new(60),
            firing: BTreeMap::new(),
        }
    }
}

impl ClientFlood {
    fn message(&self, client: &str, firing: bool, requests: u64, time: i64) -> String {
        let (limit, window, when) = (self.limit, self.counts.len(), logmon_rule::when(time));
        if firing {
            format!(
                "Client flood from {client} - {requests} requests over {window} s (limit {limit}), triggered at {when}"
            )
        } else {
            format!(
                "Client flood from {client} recovered - {requests} requests over {window} s (limit {limit}), recovered at {when}"
            )
        }
    }
}

impl Rule for ClientFlood {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "client-flood".into(),
            description: "One client above a number of requests over a window, keyed by client; counts each second's 16 busiest clients (all the host reports)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                logmon_rule::param(
                    "limit",
                    "requests by one client over the window that fire (more than this)",
                    600,
                ),
                logmon_rule::param(
                    "window",
                    "seconds counted, ending at the evaluated second (at most 300)",
                    60,
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        let limit: u64 = params.get("limit", 600)?;
        let window: usize = params.get("window", 60)?;
        if limit == 0 {
            return Err("limit must be at least 1 request".to_owned());
        }
        if window == 0 || window > MAX_WINDOW {
            return Err(format!(
                "window must be 1 ..= {MAX_WINDOW} seconds, got {window}"
            ));
        }
        *self = ClientFlood {
            limit,
            counts: KeyedWindow::new(window),
            firing: BTreeMap::new(),
        };
        Ok(())
    }

    fn evaluate(&mut self, second: &Second) -> Vec<Alert> {
        self.counts.push(
            second
                .top_clients
                .iter()
                .take(CLIENTS_PER_SECOND)
                .map(|c| (c.client.as_str(), c.hits)),
        );
        let mut alerts = Vec::new();
        let mut resolved = Vec::new();
        for (client, message) in &self.firing {
            let requests = self.counts.get(client);
            if requests > self.limit {
                alerts.push(Alert::firing(client, requests as f64, message));
            } else {
                resolved.push((client.clone(), requests));
            }
        }
        for (client, requests) in resolved {
            self.firing.remove(&client);
            let message = self.message(&client, false, requests, second.time);
            alerts.push(Alert::resolved(client, requests as f64, message));
        }
        let fired: Vec<(String, u64)> = self
            .counts
            .iter()
            .filter(|&(client, requests)| {
                requests > self.limit && !self.firing.contains_key(client)
            })
            .map(|(client, requests)| (client.to_owned(), requests))
            .collect();
        for (client, requests) in fired {
            let message = self.message(&client, true, requests, second.time);
            self.firing.insert(client.clone(), message.clone());
            alerts.push(Alert::firing(client, requests as f64, message));
        }
        alerts.sort_by(|a, b| a.key.cmp(&b.key));
        alerts
    }

    fn save(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        self.counts.save(&mut w);
        w.u64(self.firing.len() as u64);
        for (client, message) in &self.firing {
            w.str(client).str(message);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state, STATE_VERSION)?;
        let counts = KeyedWindow::restore(&mut r, self.counts.len())?;
        let n = r.u64()?;
        let mut firing = BTreeMap::new();
        for _ in 0..n {
            let client = r.str()?;
            let message = r.str()?;
            firing.insert(client, message);
        }
        r.end()?;
        self.counts = counts;
        self.firing = firing;
        Ok(())
    }
}

logmon_rule::export_rule!(ClientFlood);

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_rule::ClientCount;

    const A: &str = "10.0.0.66";
    const B: &str = "10.0.0.77";

    fn rule(limit: &str, window: &str) -> ClientFlood {
        let mut r = ClientFlood::default();
        r.configure(&Params::new(vec![
            ("limit".into(), limit.into()),
            ("window".into(), window.into()),
        ]))
        .unwrap();
        r
    }

    fn second(time: i64, clients: &[(&str, u64)]) -> Second {
        let mut s = Second::empty(time);
        for &(client, hits) in clients {
            s.hits += hits;
            s.top_clients.push(ClientCount {
                client: client.into(),
                hits,
            });
        }
        s
    }

    /// (key, firing) of each alert.
    fn states(alerts: &[Alert]) -> Vec<(&str, bool)> {
        alerts.iter().map(|a| (a.key.as_str(), a.firing)).collect()
    }

    #[test]
    fn each_client_fires_and_resolves_on_its_own() {
        // Limit 10 requests over 3 s.
        let mut r = rule("10", "3");
        let a = r.evaluate(&second(0, &[(A, 4)]));
        assert!(a.is_empty());
        let a = r.evaluate(&second(1, &[(B, 5), (A, 4)]));
        assert!(a.is_empty());
        // A: 4+4+3 = 11 fires; B: 5+5 = 10 is exactly the limit, not above.
        let a = r.evaluate(&second(2, &[(B, 5), (A, 3)]));
        assert_eq!(states(&a), [(A, true)]);
        assert_eq!(a[0].value, 11.0);
        // A: 4+3+3 = 10, exactly the limit, resolves; B: 5+5+1 = 11 fires.
        let a = r.evaluate(&second(3, &[(A, 3), (B, 1)]));
        assert_eq!(states(&a), [(A, false), (B, true)]);
        assert_eq!((a[0].value, a[1].value), (10.0, 11.0));
        // A: 6, no second resolve; B: 5+1+5 = 11, still firing, same message.
        let b_fired = a[1].message.clone();
        let a = r.evaluate(&second(4, &[(B, 5)]));
        assert_eq!(a, vec![Alert::firing(B, 11.0, b_fired)]);
        // Silence: B: 1+5 = 6 resolves at the second it is due.
        let a = r.evaluate(&Second::empty(5));
        assert_eq!(states(&a), [(B, false)]);
        for t in 6..10 {
            assert!(r.evaluate(&Second::empty(t)).is_empty(), "second {t}");
        }
        assert!(r.counts.is_empty() && r.firing.is_empty(), "all forgotten");
    }

    #[test]
    fn messages_carry_the_count_and_the_time() {
        let mut r = rule("10", "3");
        let a = r.evaluate(&second(1_549_573_860, &[(A, 12)]));
        assert_eq!(
            a,
            vec![Alert::firing(
                A,
                12.0,
                "Client flood from 10.0.0.66 - 12 requests over 3 s (limit 10), triggered at 2019-02-07 21:11:00 UTC (1549573860)"
            )]
        );
        r.evaluate(&Second::empty(1_549_573_861));
        r.evaluate(&Second::empty(1_549_573_862));
        let a = r.evaluate(&Second::empty(1_549_573_863));
        assert_eq!(
            a,
            vec![Alert::resolved(
                A,
                0.0,
                "Client flood from 10.0.0.66 recovered - 0 requests over 3 s (limit 10), recovered at 2019-02-07 21:11:03 UTC (1549573863)"
            )]
        );
    }

    #[test]
    fn defaults_are_600_requests_a_minute() {
        let mut r = ClientFlood::default();
        r.configure(&Params::default()).unwrap();
        for t in 0..59 {
            assert!(r.evaluate(&second(t, &[(A, 10), (B, 2)])).is_empty());
        }
        // 600 in the minute is the limit; one more fires.
        assert!(r.evaluate(&second(59, &[(A, 10)])).is_empty());
        assert_eq!(states(&r.evaluate(&second(60, &[(A, 11)]))), [(A, true)]);
    }

    #[test]
    fn memory_and_answers_are_bounded_by_the_busiest_clients_of_each_second() {
        // The worst case: every second, new clients (long IPv6 names), all
        // far above the limit, more than the 16 the host would list.
        let mut r = rule("1", &MAX_WINDOW.to_string());
        let mut largest = 0;
        for t in 0..(MAX_WINDOW as i64 + 20) {
            let names: Vec<String> = (0..40)
                .map(|i| format!("2001:0db8:85a3:0000:0000:8a2e:{t:04x}:{i:04x}"))
                .collect();
            let clients: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1_000_000)).collect();
            let a = r.evaluate(&second(1_549_573_860 + t, &clients));
            assert!(r.counts.keys() <= CLIENTS_PER_SECOND * MAX_WINDOW);
            let bytes: usize = a.iter().map(|a| a.key.len() + a.message.len()).sum();
            largest = largest.max(bytes);
            assert!(a.len() <= CLIENTS_PER_SECOND * (MAX_WINDOW + 1));
        }
        assert_eq!(r.counts.keys(), CLIENTS_PER_SECOND * MAX_WINDOW);
        assert_eq!(r.firing.len(), CLIENTS_PER_SECOND * MAX_WINDOW);
        // Within the host's caps on one answer: 10,000 alerts, 1 MiB.
        assert!(largest < 1 << 20, "{largest} bytes in one answer");
        // Silence forgets them all.
        for t in 0..MAX_WINDOW as i64 {
            r.evaluate(&Second::empty(1_549_580_000 + t));
        }
        assert!(r.counts.is_empty() && r.firing.is_empty());
        // Only the first 16 of a second are counted.
        let mut r = rule("10", "3");
        let names: Vec<String> = (0..40).map(|i| format!("10.1.0.{i}")).collect();
        let clients: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 11)).collect();
        let a = r.evaluate(&second(0, &clients));
        assert_eq!(a.len(), CLIENTS_PER_SECOND, "only the first 16 are counted");
    }

    #[test]
    fn state_survives_save_and_restore() {
        let seconds = [
            second(0, &[(A, 4)]),
            second(1, &[(B, 5), (A, 4)]),
            second(2, &[(B, 5), (A, 3)]),
            second(3, &[(A, 3), (B, 1)]),
            second(4, &[(B, 5)]),
            Second::empty(5),
            Second::empty(6),
        ];
        for cut in [1, 3, 4] {
            let mut a = rule("10", "3");
            let mut b = rule("10", "3");
            for s in &seconds[..cut] {
                a.evaluate(s);
            }
            b.restore(&a.save()).unwrap();
            for s in &seconds[cut..] {
                assert_eq!(a.evaluate(s), b.evaluate(s), "cut {cut}, second {}", s.time);
            }
        }
        let a = rule("10", "3");
        assert!(
            rule("10", "4").restore(&a.save()).is_err(),
            "another window"
        );
        assert!(rule("10", "3").restore(&[]).is_err());
        let mut full = rule("10", "3");
        full.evaluate(&seconds[2]);
        let blob = full.save();
        assert!(rule("10", "3").restore(&blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn refuses_bad_parameters() {
        for (name, value) in [
            ("limit", "0"),
            ("limit", "-1"),
            ("limit", "lots"),
            ("window", "0"),
            ("window", "301"),
        ] {
            let mut r = ClientFlood::default();
            let p = Params::new(vec![(name.into(), value.into())]);
            assert!(r.configure(&p).is_err(), "{name}={value} accepted");
        }
    }
}
