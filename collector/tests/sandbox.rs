//! Hostile rules are quarantined with a clear reason, and the other rules'
//! transitions are exactly what they are without them.

use logmon_collector::engine::SecondStats;
use logmon_collector::rules::shipped::HOSTILE_RULE_PATH;
use logmon_collector::rules::{
    AlertState, Quarantine, RuleRuntime, RuleSet, RuleSource, RuleSpec, SandboxLimits, Transition,
};
use std::time::Duration;

fn spec(source: RuleSource, params: &[(&str, &str)]) -> RuleSpec {
    RuleSpec::new(
        source,
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn high_traffic() -> RuleSpec {
    spec(
        RuleSource::Shipped("high-traffic".into()),
        &[("threshold", "2"), ("window", "5")],
    )
}

fn hostile(mode: &str) -> RuleSpec {
    spec(
        RuleSource::File(HOSTILE_RULE_PATH.into()),
        &[("mode", mode), ("after", "3")],
    )
}

/// Hits per second that make high-traffic (T=2, W=5) fire and resolve twice.
const HITS: [u64; 24] = [
    0, 5, 5, 5, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn limits() -> SandboxLimits {
    limits_with_deadline(Duration::from_millis(100))
}

fn limits_with_deadline(call_deadline: Duration) -> SandboxLimits {
    SandboxLimits {
        memory: 16 << 20,
        call_deadline,
        ..SandboxLimits::default()
    }
}

fn second(i: usize) -> SecondStats {
    SecondStats {
        time: 1_000 + i as i64,
        hits: HITS[i],
        ..SecondStats::default()
    }
}

fn run(specs: &[RuleSpec]) -> (Vec<Transition>, Vec<Quarantine>) {
    run_with(limits(), specs)
}

fn run_with(limits: SandboxLimits, specs: &[RuleSpec]) -> (Vec<Transition>, Vec<Quarantine>) {
    let mut rules = RuleSet::new(RuleRuntime::new(limits).unwrap());
    for s in specs {
        rules.add(s).unwrap();
    }
    let mut transitions = Vec::new();
    let mut quarantined = Vec::new();
    for i in 0..HITS.len() {
        rules.evaluate(&second(i), &mut transitions, &mut quarantined);
    }
    (transitions, quarantined)
}

#[test]
fn the_reference_run_fires_and_resolves_twice() {
    let (transitions, quarantined) = run(&[high_traffic()]);
    let got: Vec<(AlertState, i64)> = transitions.iter().map(|t| (t.state, t.at)).collect();
    // Window sums over 5 s against 10 (= 2 req/s): 15 at 1003 fires; 10 at
    // 1006 is not below; 5 at 1007 resolves; 12 at 1012 fires; 8 at 1016
    // resolves.
    assert_eq!(
        got,
        [
            (AlertState::Firing, 1003),
            (AlertState::Resolved, 1007),
            (AlertState::Firing, 1012),
            (AlertState::Resolved, 1016),
        ]
    );
    assert_eq!(transitions[0].value, 3.0);
    assert_eq!(transitions[1].value, 1.0);
    assert!(quarantined.is_empty());
}

fn check_quarantined(mode: &str, expect: &[&str]) {
    let (reference, _) = run(&[high_traffic()]);
    // Only the endless loop needs a short deadline; the others get a long
    // one, so a busy machine cannot turn their fault into a timeout.
    let deadline = if mode == "spin" {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(10)
    };
    let (transitions, quarantined) = run_with(
        limits_with_deadline(deadline),
        &[hostile(mode), high_traffic(), hostile("calm")],
    );
    assert_eq!(
        transitions, reference,
        "the other rules are undisturbed by `{mode}`"
    );
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let q = &quarantined[0];
    assert_eq!(q.rule, "hostile");
    assert_eq!(q.at, 1_003, "misbehaves on its 4th evaluation");
    for e in expect {
        assert!(
            q.reason.contains(e),
            "`{mode}` quarantined for `{}`, expected `{e}`",
            q.reason
        );
    }
}

#[test]
fn a_rule_that_loops_forever_is_quarantined() {
    check_quarantined("spin", &["`evaluate` overran its time budget"]);
}

#[test]
fn a_rule_that_allocates_without_bound_is_quarantined() {
    check_quarantined("hog", &["`evaluate` wanted", "over the cap of 16777216"]);
}

#[test]
fn a_rule_that_traps_is_quarantined() {
    check_quarantined("trap", &["`evaluate` trapped", "unreachable"]);
}

#[test]
fn a_rule_that_returns_an_enormous_result_is_quarantined() {
    check_quarantined(
        "flood",
        &[
            "`evaluate` returned 50000 alerts",
            "over the limit of 10000 alerts",
        ],
    );
}

#[test]
fn bad_rules_refuse_to_start_with_a_clear_error() {
    let mut rules = RuleSet::new(RuleRuntime::new(SandboxLimits::default()).unwrap());
    let err = rules
        .add(&spec(
            RuleSource::Shipped("high-traffic".into()),
            &[("treshold", "3")],
        ))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "high-traffic refused its configuration: unknown parameter `treshold` (known: threshold, window)"
    );
    let err = rules
        .add(&spec(
            RuleSource::File("/nonexistent/rule.wasm".into()),
            &[],
        ))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("reading /nonexistent/rule.wasm:"), "{err}");
    let err = rules
        .add(&spec(RuleSource::Shipped("nope".into()), &[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "no shipped rule named `nope` (shipped: high-traffic, error-rate, traffic-drop, client-flood)"
    );
    let not_wasm =
        std::env::temp_dir().join(format!("logmon-not-wasm-{}.wasm", std::process::id()));
    std::fs::write(&not_wasm, b"hello").unwrap();
    let err = rules
        .add(&spec(RuleSource::File(not_wasm.clone()), &[]))
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&not_wasm).unwrap();
    assert!(err.contains("is not a logmon rule component"), "{err}");
    assert!(rules.instances().is_empty());
}

#[test]
fn state_moves_between_instances_through_save_and_restore() {
    let mut a = RuleSet::new(RuleRuntime::new(limits()).unwrap());
    a.add(&high_traffic()).unwrap();
    let (mut t, mut q) = (Vec::new(), Vec::new());
    for i in 0..4 {
        a.evaluate(&second(i), &mut t, &mut q);
    }
    assert_eq!(t.len(), 1, "fired at 1003");
    let saved = a.save().unwrap();

    let mut b = RuleSet::new(RuleRuntime::new(limits()).unwrap());
    b.add(&high_traffic()).unwrap();
    b.restore(&saved).unwrap();
    assert_eq!(
        b.instances()[0].active().count(),
        1,
        "the firing key is restored"
    );
    // Both continue identically: resolve at 1007, fire at 1012, resolve at 1016.
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 4..HITS.len() {
        a.evaluate(&second(i), &mut ta, &mut q);
        b.evaluate(&second(i), &mut tb, &mut q);
    }
    assert_eq!(ta, tb);
    assert_eq!(tb.len(), 3);
    assert!(q.is_empty());
}

/// The host's lifecycle on a real rule: with `for` 3 s the first burst
/// (firing 1003–1006 by the rule's account) fires at 1006, the second
/// (1012–1015) at 1015; `keep_firing_for` 2 s delays each resolution by 2 s;
/// a pending key that stops before `for` never fires.
#[test]
fn for_and_keep_firing_for_shape_the_transitions() {
    let got = |spec: RuleSpec| -> Vec<(AlertState, i64)> {
        run(&[spec]).0.iter().map(|t| (t.state, t.at)).collect()
    };
    let mut pending = high_traffic();
    pending.pending_for = 3;
    assert_eq!(
        got(pending),
        [
            (AlertState::Firing, 1006),
            (AlertState::Resolved, 1007),
            (AlertState::Firing, 1015),
            (AlertState::Resolved, 1016),
        ]
    );
    let mut long = high_traffic();
    long.pending_for = 4;
    assert_eq!(got(long), [], "neither burst fires for 4 s");
    let mut kept = high_traffic();
    kept.keep_firing_for = 2;
    assert_eq!(
        got(kept),
        [
            (AlertState::Firing, 1003),
            (AlertState::Resolved, 1009),
            (AlertState::Firing, 1012),
            (AlertState::Resolved, 1018),
        ]
    );
    // The same from the command-line form.
    let parsed: RuleSpec = "high-traffic:threshold=2,window=5,for=3s,keep_firing_for=2"
        .parse()
        .unwrap();
    assert_eq!((parsed.pending_for, parsed.keep_firing_for), (3, 2));
    assert_eq!(parsed.params, high_traffic().params);
}
