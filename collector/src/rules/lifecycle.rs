//! The alert lifecycle the host applies to what a rule reports, per key:
//! inactive → pending → firing → resolved (→ inactive).
//!
//! Each closed second the rule reports the keys firing now. A key that starts
//! firing is *pending*; once it has fired for `pending_for` seconds of event
//! time it *fires* (a `firing` transition at that second). A pending key that
//! stops firing goes back to inactive without a transition. A firing key that
//! stops stays firing for `keep_firing_for` more seconds (it fires again
//! without a transition if the rule reports it in that time), then
//! *resolves* (a `resolved` transition at that second, with the rule's
//! recovery value and message from when it stopped). With both durations 0,
//! a transition happens at the very second the rule's report changes.
//!
//! The state is part of the engine snapshot, so a restart neither forgets a
//! pending key nor re-fires a firing one.

use super::{AlertState, Transition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where one alert key is in its lifecycle (inactive keys are absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum KeyState {
    /// Firing according to the rule since `since`, not yet for long enough.
    Pending {
        since: i64,
        #[serde(with = "super::float")]
        value: f64,
        message: String,
    },
    /// Firing. `quiet` holds the second the rule stopped reporting it and
    /// the recovery value and message, while `keep_firing_for` runs.
    Firing {
        since: i64,
        #[serde(with = "super::float")]
        value: f64,
        message: String,
        #[serde(with = "super::float::quiet")]
        quiet: Option<(i64, f64, String)>,
    },
}

/// The lifecycle of every key of one rule instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub pending_for: i64,
    pub keep_firing_for: i64,
    pub keys: BTreeMap<String, KeyState>,
}

impl Lifecycle {
    pub fn new(pending_for: u32, keep_firing_for: u32) -> Lifecycle {
        Lifecycle {
            pending_for: i64::from(pending_for),
            keep_firing_for: i64::from(keep_firing_for),
            keys: BTreeMap::new(),
        }
    }

    /// The keys firing now (not pending), with their latest value and message.
    pub fn firing(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        self.keys.iter().filter_map(|(k, s)| match s {
            KeyState::Firing { value, message, .. } => Some((k.as_str(), *value, message.as_str())),
            KeyState::Pending { .. } => None,
        })
    }

    /// Second `at`: the rule reports `firing` (key → value, message); for
    /// keys that stopped, `recovery(key)` gives the value and message to
    /// resolve with. Transitions of `rule` are appended to `out`.
    /// No key is pending or counting down to its recovery: while the rule
    /// answers the same, no transition is due.
    pub fn settled(&self) -> bool {
        self.keys
            .values()
            .all(|k| matches!(k, KeyState::Firing { quiet: None, .. }))
    }

    pub fn step(
        &mut self,
        rule: &str,
        at: i64,
        firing: &BTreeMap<String, (f64, String)>,
        mut recovery: impl FnMut(&str, f64) -> (f64, String),
        out: &mut Vec<Transition>,
    ) {
        let transition = |key: &str, state, value, message: &str| Transition {
            rule: rule.to_owned(),
            key: key.to_owned(),
            state,
            at,
            value,
            message: message.to_owned(),
        };
        // Keys the rule no longer reports.
        let mut gone = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            if firing.contains_key(key) {
                continue;
            }
            match state {
                KeyState::Pending { .. } => gone.push(key.clone()),
                KeyState::Firing { quiet, value, .. } => {
                    let last = *value;
                    let (since, value, message) = match quiet {
                        Some(q) => q.clone(),
                        None => {
                            let (value, message) = recovery(key, last);
                            *quiet = Some((at, value, message.clone()));
                            (at, value, message)
                        }
                    };
                    if at - since >= self.keep_firing_for {
                        out.push(transition(key, AlertState::Resolved, value, &message));
                        gone.push(key.clone());
                    }
                }
            }
        }
        for key in gone {
            self.keys.remove(&key);
        }
        // Keys the rule reports.
        for (key, (value, message)) in firing {
            let state = self.keys.entry(key.clone()).or_insert(KeyState::Pending {
                since: at,
                value: *value,
                message: message.clone(),
            });
            match state {
                KeyState::Pending { since, .. } => {
                    if at - *since >= self.pending_for {
                        out.push(transition(key, AlertState::Firing, *value, message));
                        *state = KeyState::Firing {
                            since: at,
                            value: *value,
                            message: message.clone(),
                            quiet: None,
                        };
                    } else {
                        let since = *since;
                        *state = KeyState::Pending {
                            since,
                            value: *value,
                            message: message.clone(),
                        };
                    }
                }
                KeyState::Firing {
                    value: v,
                    message: m,
                    quiet,
                    ..
                } => {
                    *v = *value;
                    m.clone_from(message);
                    *quiet = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `reports` (per second from 100: whether key "k" fires) and
    /// returns (state, second) of the transitions.
    fn run(pending_for: u32, keep: u32, reports: &[bool]) -> Vec<(AlertState, i64)> {
        let mut life = Lifecycle::new(pending_for, keep);
        let mut out = Vec::new();
        for (i, &on) in reports.iter().enumerate() {
            let at = 100 + i as i64;
            let mut firing = BTreeMap::new();
            if on {
                firing.insert("k".to_string(), (at as f64, format!("fired {at}")));
            }
            life.step(
                "r",
                at,
                &firing,
                |_, _| (0.5, format!("quiet {at}")),
                &mut out,
            );
        }
        out.iter().map(|t| (t.state, t.at)).collect()
    }

    use AlertState::{Firing, Resolved};

    #[test]
    fn without_durations_transitions_follow_the_rule() {
        let r = [false, true, true, false, false, true, false];
        assert_eq!(
            run(0, 0, &r),
            vec![
                (Firing, 101),
                (Resolved, 103),
                (Firing, 105),
                (Resolved, 106)
            ]
        );
    }

    #[test]
    fn pending_keys_fire_after_pending_for_and_short_blips_never_do() {
        let r = [true, true, false, true, true, true, true, false];
        // Blip at 100–101 (2 s < 3 s): nothing. From 103: fires at 106.
        assert_eq!(run(3, 0, &r), vec![(Firing, 106), (Resolved, 107)]);
    }

    #[test]
    fn keep_firing_for_bridges_gaps_and_delays_the_resolution() {
        let r = [true, false, true, false, false, false, false];
        // Quiet at 101, back at 102 (no transition); quiet from 103: resolved
        // 2 s later, at 105, with the recovery message of 103.
        let mut life = Lifecycle::new(0, 2);
        let mut out = Vec::new();
        for (i, &on) in r.iter().enumerate() {
            let at = 100 + i as i64;
            let mut firing = BTreeMap::new();
            if on {
                firing.insert("k".to_string(), (1.0, "on".to_string()));
            }
            life.step(
                "r",
                at,
                &firing,
                |_, _| (0.25, format!("quiet {at}")),
                &mut out,
            );
        }
        let got: Vec<_> = out
            .iter()
            .map(|t| (t.state, t.at, t.message.as_str()))
            .collect();
        assert_eq!(got, vec![(Firing, 100, "on"), (Resolved, 105, "quiet 103")]);
        assert_eq!(out[1].value, 0.25);
        assert!(life.keys.is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut life = Lifecycle::new(5, 5);
        let mut out = Vec::new();
        let mut firing = BTreeMap::new();
        firing.insert("a".to_string(), (1.0, "m".to_string()));
        life.step("r", 1, &firing, |_, _| (0.0, String::new()), &mut out);
        let json = serde_json::to_string(&life.keys).unwrap();
        let back: BTreeMap<String, KeyState> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, life.keys);
    }
}
