//! The watched rules directory: components added, replaced and removed while
//! seconds are evaluated.

use logmon_collector::engine::SecondStats;
use logmon_collector::rules::reload::RulesDir;
use logmon_collector::rules::shipped::{ERROR_RATE, HIGH_TRAFFIC};
use logmon_collector::rules::{AlertState, RuleRuntime, RuleSet, SandboxLimits, Transition};
use std::path::Path;

fn second(time: i64, hits: u64) -> SecondStats {
    SecondStats {
        time,
        hits,
        ..SecondStats::default()
    }
}

fn evaluate(rules: &mut RuleSet, from: i64, hits: &[u64]) -> Vec<(String, AlertState, i64)> {
    let mut out: Vec<Transition> = Vec::new();
    let mut quarantined = Vec::new();
    for (i, &h) in hits.iter().enumerate() {
        rules.evaluate(&second(from + i as i64, h), &mut out, &mut quarantined);
    }
    assert!(quarantined.is_empty(), "{quarantined:?}");
    out.into_iter().map(|t| (t.rule, t.state, t.at)).collect()
}

/// Writes `bytes` as `path`, making sure the file looks changed.
fn write(path: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    loop {
        std::fs::write(path, bytes).unwrap();
        let after = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if after != before {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn added_replaced_and_removed_components_take_effect_at_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = RuleSet::new(RuleRuntime::new(SandboxLimits::default()).unwrap());
    let mut watched = RulesDir::new(dir.path());
    assert!(watched.poll(&mut rules).is_empty());

    // Added: runs with its defaults (high-traffic: 10 req/s over 120 s).
    write(&dir.path().join("busy.wasm"), HIGH_TRAFFIC);
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("rule busy started from"), "{log:?}");
    assert_eq!(
        evaluate(&mut rules, 1_000, &[2_000]),
        vec![("busy".to_string(), AlertState::Firing, 1_000)]
    );
    assert!(watched.poll(&mut rules).is_empty(), "nothing changed");

    // Replaced by the same rule: it takes the old state, so it neither fires
    // again nor forgets the burst in its window.
    write(&dir.path().join("busy.wasm"), HIGH_TRAFFIC);
    assert_eq!(
        watched.poll(&mut rules),
        vec!["rule busy replaced; its state carried over".to_string()]
    );
    assert_eq!(evaluate(&mut rules, 1_001, &[0; 10]), vec![]);

    // Replaced by another rule: the old state is refused, it starts fresh.
    write(&dir.path().join("busy.wasm"), ERROR_RATE);
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("rule busy replaced; busy: saved state refused"),
        "{log:?}"
    );
    assert!(log[0].ends_with("starting fresh"), "{log:?}");
    // The alert high-traffic raised still stands; error-rate does not
    // report it, so it resolves at the next second (and only once).
    assert_eq!(
        evaluate(&mut rules, 1_011, &[0, 0]),
        vec![("busy".to_string(), AlertState::Resolved, 1_011)]
    );

    // A broken file: reported, nothing else disturbed.
    write(&dir.path().join("broken.wasm"), b"not a component");
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("rule from"), "{log:?}");
    assert_eq!(rules.instances().len(), 1);

    // Removed.
    std::fs::remove_file(dir.path().join("busy.wasm")).unwrap();
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("rule busy stopped"), "{log:?}");
    assert!(rules.instances().is_empty());
}

#[test]
fn instance_files_run_a_component_with_parameters_and_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = RuleSet::new(RuleRuntime::new(SandboxLimits::default()).unwrap());
    let mut watched = RulesDir::new(dir.path());

    // A shipped rule with its parameters and `for`; named after the file.
    let spiky = dir.path().join("spiky.toml");
    write(
        &spiky,
        b"component = \"high-traffic\"\nparams = { threshold = 5, window = 1 }\nfor = \"1s\"\n",
    );
    assert_eq!(
        watched.poll(&mut rules),
        vec![format!("rule spiky started from {}", spiky.display())]
    );
    let instance = &rules.instances()[0];
    assert_eq!(
        (instance.name.as_str(), instance.lifecycle.pending_for),
        ("spiky", 1)
    );
    // Pending one second, then firing: `for` applies.
    assert_eq!(
        evaluate(&mut rules, 2_000, &[6, 6, 6, 0]),
        vec![
            ("spiky".to_string(), AlertState::Firing, 2_001),
            ("spiky".to_string(), AlertState::Resolved, 2_003)
        ]
    );

    // A component by a path relative to the directory, under another name.
    std::fs::create_dir(dir.path().join("components")).unwrap();
    let component = dir.path().join("components/busy.wasm");
    write(&component, HIGH_TRAFFIC);
    write(
        &dir.path().join("site.toml"),
        b"component = \"components/busy.wasm\"\nname = \"site-busy\"\nparams = { threshold = 100 }\n",
    );
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("rule site-busy started from"), "{log:?}");
    // The component replaced under the instance file: the instance reloads,
    // here with a component that refuses the instance's parameters, so the
    // old one keeps running.
    write(&component, ERROR_RATE);
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("rule site-busy: the new ")
            && log[0].ends_with(
                "refused its configuration: threshold must be within 0 ..= 1, got 100); \
                 the old one keeps running"
            ),
        "{log:?}"
    );

    // Severity and routing belong to the configuration file; a typo is named;
    // the running instances carry on.
    write(
        &dir.path().join("paged.toml"),
        b"component = \"high-traffic\"\nseverity = \"page\"\n",
    );
    write(
        &dir.path().join("typo.toml"),
        b"component = \"high-traffic\"\nparms = {}\n",
    );
    let log = watched.poll(&mut rules);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].contains("paged.toml: `severity` and `notify`"),
        "{log:?}"
    );
    assert!(
        log[1].contains("typo.toml: ") && log[1].contains("parms"),
        "{log:?}"
    );
    assert_eq!(rules.instances().len(), 2);

    // Parameters changed: replaced in place, state carried over.
    write(
        &spiky,
        b"component = \"high-traffic\"\nparams = { threshold = 7, window = 1 }\n",
    );
    assert_eq!(
        watched.poll(&mut rules),
        vec!["rule spiky replaced; its state carried over".to_string()]
    );
    std::fs::remove_file(&spiky).unwrap();
    assert_eq!(
        watched.poll(&mut rules),
        vec![format!(
            "rule spiky stopped: {} was removed",
            spiky.display()
        )]
    );
    assert_eq!(rules.instances().len(), 1);
}

#[test]
fn a_removed_rule_resolves_what_it_had_firing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = RuleSet::new(RuleRuntime::new(SandboxLimits::default()).unwrap());
    let mut watched = RulesDir::new(dir.path());
    write(
        &dir.path().join("spiky.toml"),
        b"component = \"high-traffic\"\nparams = { threshold = 5, window = 1 }\n",
    );
    write(
        &dir.path().join("calm.toml"),
        b"component = \"high-traffic\"\nparams = { threshold = 500, window = 1 }\n",
    );
    assert_eq!(watched.poll(&mut rules).len(), 2);
    assert_eq!(
        evaluate(&mut rules, 3_000, &[9]),
        vec![("spiky".to_string(), AlertState::Firing, 3_000)]
    );
    std::fs::remove_file(dir.path().join("spiky.toml")).unwrap();
    assert_eq!(watched.poll(&mut rules).len(), 1);
    let mut out: Vec<Transition> = Vec::new();
    rules.evaluate(&second(3_001, 9), &mut out, &mut Vec::new());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        (
            out[0].rule.as_str(),
            out[0].key.as_str(),
            out[0].state,
            out[0].at
        ),
        ("spiky", "", AlertState::Resolved, 3_001)
    );
    assert_eq!(
        out[0].message,
        "Rule spiky was removed; its alert is resolved"
    );
    assert_eq!(evaluate(&mut rules, 3_002, &[9, 9]), vec![]);
}
