//! The host with the shipped and hostile filters, built by `build.rs`.

use super::*;
use crate::filter::{FilterConfig, HOSTILE_PATH, OnError};
use std::sync::Arc;

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new().unwrap())
}

fn event(i: usize, path: &str, client: &str, status: u16) -> Event {
    Event {
        timestamp: i as i64 * 1_000_000_000,
        client: client.into(),
        method: "GET".into(),
        path: path.into(),
        protocol: "HTTP/1.1".into(),
        status,
        bytes: i as u64,
        user_agent: Some(
            if i.is_multiple_of(5) {
                "Googlebot/2.1"
            } else {
                "curl/8"
            }
            .into(),
        ),
        ..Event::default()
    }
}

fn events(n: usize) -> Vec<Event> {
    let paths = [
        "/healthz",
        "/api/user?token=s3",
        "/static/a.css",
        "/index.html",
    ];
    (0..n)
        .map(|i| {
            event(
                i,
                paths[i % 4],
                &format!("10.1.{}.{}", i % 3, i),
                200 + (i % 2) as u16 * 304,
            )
        })
        .collect()
}

/// The events kept, the offsets (100 × index) of those, and the stats.
fn run(chain: &mut Chain, mut evs: Vec<Event>) -> (Vec<Event>, Vec<u64>, ChainStats) {
    let mut keep = vec![false; 3];
    let stats = chain.run("access.log", &mut evs, &mut keep);
    assert_eq!(keep.len(), evs.len());
    chain.labels_into(&mut evs);
    let offsets = (0..evs.len() as u64)
        .filter(|&i| keep[i as usize])
        .map(|i| i * 100)
        .collect();
    let kept = evs
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(e, _)| e)
        .collect();
    (kept, offsets, stats)
}

#[test]
fn shipped_filters_change_exactly_what_they_say() {
    let rt = runtime();
    let configs = [
        FilterConfig::new(
            "drop",
            &[("path_prefix", "/healthz"), ("user_agent", "bot")],
        ),
        FilterConfig::new("redact-clients", &[("mode", "prefix")]),
        FilterConfig::new("redact-query", &[("names", "token")]),
        FilterConfig::new("label", &[("patterns", r"api=^/api/; static=\.css$")]),
    ];
    let mut chain = Chain::load(&rt, "web", &configs).unwrap();
    let input = events(40);
    let (out, offsets, stats) = run(&mut chain, input.clone());
    // The model: drop /healthz and bots, then truncate clients to /24,
    // redact the token, label by path.
    let mut want = Vec::new();
    let mut want_offsets = Vec::new();
    for (i, mut e) in input.into_iter().enumerate() {
        if e.path.starts_with("/healthz") || e.user_agent.as_deref().unwrap().contains("bot") {
            continue;
        }
        let parts: Vec<&str> = e.client.split('.').collect();
        e.client = format!("{}.{}.{}.0", parts[0], parts[1], parts[2]);
        e.path = e.path.replace("token=s3", "token=REDACTED");
        if e.path.starts_with("/api/") {
            e.labels.push(("route".into(), "api".into()));
        } else if e.path.ends_with(".css") {
            e.labels.push(("route".into(), "static".into()));
        }
        want.push(e);
        want_offsets.push(i as u64 * 100);
    }
    assert_eq!(out, want);
    assert_eq!(offsets, want_offsets);
    assert_eq!(
        stats,
        ChainStats {
            dropped: 40 - want.len() as u64,
            errors: 0
        }
    );
    let states: Vec<_> = chain.states().cloned().collect();
    assert_eq!(states[0].dropped, 40 - want.len() as u64);
    assert_eq!(states[1].events_in, want.len() as u64);
    assert!(states.iter().all(|s| s.calls == 1 && s.errors == 0));
}

#[test]
fn sample_keeps_one_in_n_across_batches() {
    let rt = runtime();
    let mut chain = Chain::load(
        &rt,
        "web",
        &[FilterConfig::new("sample", &[("one_in", "4")])],
    )
    .unwrap();
    let (a, _, _) = run(&mut chain, events(10));
    let (b, _, _) = run(&mut chain, events(10));
    let bytes = |v: &[Event]| v.iter().map(|e| e.bytes).collect::<Vec<_>>();
    assert_eq!(bytes(&a), vec![0, 4, 8]);
    assert_eq!(bytes(&b), vec![2, 6]);
}

#[test]
fn bad_configurations_and_components_do_not_start() {
    let rt = runtime();
    let e = Chain::load(&rt, "web", &[FilterConfig::new("drop", &[])]).unwrap_err();
    assert!(
        matches!(&e, FilterError::Config(_, m) if m.contains("no condition")),
        "{e}"
    );
    let e = Chain::load(&rt, "web", &[FilterConfig::new("nope", &[])]).unwrap_err();
    assert!(
        e.to_string().contains("no shipped filter named `nope`"),
        "{e}"
    );
    let e = Chain::load(&rt, "web", &[FilterConfig::new("drop", &[("bogus", "1")])]).unwrap_err();
    assert!(e.to_string().contains("unknown parameter `bogus`"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    let e = Chain::load(
        &rt,
        "web",
        &[FilterConfig::new(junk.to_str().unwrap(), &[])],
    )
    .unwrap_err();
    assert!(matches!(e, FilterError::Compile(..)), "{e}");
}

fn hostile(mode: &str, after: &str, on_error: OnError) -> FilterConfig {
    let mut c = FilterConfig::new(HOSTILE_PATH, &[("mode", mode), ("after", after)]);
    c.on_error = on_error;
    c.memory_mb = 16;
    c.deadline_ms = 50;
    c
}

/// Each misbehaviour fails the call; `pass` lets the batch through as the
/// filters before made it, `drop` drops it; the instance is made afresh,
/// so with `after = 1` every other batch is good again.
#[test]
fn hostile_filters_are_contained_by_policy() {
    let rt = runtime();
    for mode in ["spin", "hog", "trap", "short", "far", "column", "code"] {
        for on_error in [OnError::Pass, OnError::Drop] {
            let configs = [
                FilterConfig::new("drop", &[("path_prefix", "/healthz")]),
                hostile(mode, "1", on_error),
            ];
            let mut chain = Chain::load(&rt, "web", &configs).unwrap();
            let unhealthy = events(12)
                .into_iter()
                .filter(|e| e.path != "/healthz")
                .count();
            for round in 0..4 {
                let (out, offsets, stats) = run(&mut chain, events(12));
                let failed = round % 2 == 1;
                let want = if failed && on_error == OnError::Drop {
                    0
                } else {
                    unhealthy
                };
                assert_eq!(out.len(), want, "{mode} {on_error:?} round {round}");
                assert_eq!(offsets.len(), want);
                assert_eq!(stats.errors, u64::from(failed), "{mode} round {round}");
                assert_eq!(stats.dropped, 12 - want as u64);
            }
            let states: Vec<_> = chain.states().cloned().collect();
            assert_eq!(states[1].errors, 2, "{mode}");
        }
    }
}

#[test]
fn verdicts_are_checked_whole() {
    let ok = wit::Verdict {
        keep: vec![0xff, 0x03],
        columns: vec![],
        patches: vec![],
        label_columns: vec![],
        labels: vec![],
    };
    assert_eq!(check_verdict(&ok, 10), Ok(()));
    let mut past = ok.clone();
    past.keep[1] = 0x07;
    assert!(
        check_verdict(&past, 10)
            .unwrap_err()
            .contains("past event 10")
    );
    assert!(
        check_verdict(&ok, 17)
            .unwrap_err()
            .contains("keep has 2 bytes for 17 events")
    );
    let mut far = ok.clone();
    far.labels.push(wit::Label {
        index: 10,
        key: "a".into(),
        value: "b".into(),
    });
    assert!(
        check_verdict(&far, 10)
            .unwrap_err()
            .contains("label of event 10")
    );
    let column = |values: &[&str]| {
        let mut c = wit::TextColumn {
            data: Vec::new(),
            ends: Vec::new(),
        };
        for v in values {
            c.data.extend_from_slice(v.as_bytes());
            c.ends.push(c.data.len() as u32);
        }
        wit::ColumnPatch {
            field: wit::Field::Client,
            values: c,
        }
    };
    let mut good = ok.clone();
    good.columns.push(column(&["é"; 10]));
    assert_eq!(check_verdict(&good, 10), Ok(()));
    let mut short = ok.clone();
    short.columns.push(column(&["a"; 9]));
    assert!(
        check_verdict(&short, 10)
            .unwrap_err()
            .contains("Client column has 9 values for 10 events")
    );
    let mut split = ok.clone();
    split.columns.push(column(&["é"; 10]));
    split.columns[0].values.ends[0] = 1;
    assert!(
        check_verdict(&split, 10)
            .unwrap_err()
            .contains("splits a character at byte 1")
    );
    let mut long = ok.clone();
    long.columns.push(column(&["a"; 10]));
    long.columns[0].values.data.push(b'z');
    assert!(
        check_verdict(&long, 10)
            .unwrap_err()
            .contains("does not end where its data ends")
    );
    let labels = |codes: Vec<u32>| wit::LabelColumn {
        key: "route".into(),
        values: vec!["api".into()],
        codes,
    };
    let mut coded = ok.clone();
    coded
        .label_columns
        .push(labels(vec![0, 1, 1, 0, 0, 0, 0, 0, 0, 1]));
    assert_eq!(check_verdict(&coded, 10), Ok(()));
    coded.label_columns.push(labels(vec![2; 10]));
    assert!(
        check_verdict(&coded, 10)
            .unwrap_err()
            .contains("label column `route` has code 2 for 1 values")
    );
    let mut few = ok.clone();
    few.label_columns.push(labels(vec![1; 3]));
    assert!(
        check_verdict(&few, 10)
            .unwrap_err()
            .contains("has 3 codes for 10 events")
    );
    let mut big = ok;
    big.patches.push(wit::Patch {
        index: 0,
        field: wit::Field::Path,
        value: "x".repeat(MAX_VERDICT_BYTES + 10 * 1024 + 1),
    });
    assert!(
        check_verdict(&big, 10)
            .unwrap_err()
            .contains("bytes of patches and labels")
    );
}

/// The events the chain kept, encoded with the labels it added beside them
/// (`encode_kept`: codes reused per batch), make exactly the body those
/// events make with the labels written into them, including a label of a
/// format string replaced by a filter's of the same key.
#[test]
fn labels_kept_beside_the_events_encode_as_if_written_into_them() {
    let rt = runtime();
    let configs = [
        FilterConfig::new("drop", &[("path_prefix", "/healthz")]),
        FilterConfig::new(
            "label",
            &[
                ("patterns", r"api=^/api/; static=\.css$"),
                ("default", "page"),
            ],
        ),
        FilterConfig::new("label", &[("key", "tier"), ("patterns", r"gold=user")]),
    ];
    let mut chain = Chain::load(&rt, "web", &configs).unwrap();
    let mut evs = events(40);
    for (i, e) in evs.iter_mut().enumerate() {
        if i % 3 == 0 {
            e.labels = vec![("route".into(), "from-format".into())];
        }
    }
    let mut keep = Vec::new();
    chain.run("access.log", &mut evs, &mut keep);
    let header = wire::Batch {
        agent_id: "a".into(),
        host: "h".into(),
        stream: logmon_protocol::wire::StreamId {
            fingerprint: 1,
            path: "access.log".into(),
        },
        start: 0,
        end: 4000,
        format: logmon_protocol::Format::Combined,
        labels: Vec::new(),
        events: Vec::new(),
        malformed: 0,
        caught_up: false,
        finished: false,
        sent_at: 0,
    };
    let mut beside = wire::Encoder::new();
    chain.encode_kept(&evs, &keep, &mut beside);
    let body = beside.finish(&header, 1).unwrap();
    chain.labels_into(&mut evs);
    let mut written = wire::Encoder::new();
    let kept: Vec<Event> = evs
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(e, _)| e)
        .collect();
    for e in &kept {
        written.push(e);
    }
    assert_eq!(body, written.finish(&header, 1).unwrap());
    assert_eq!(kept.len(), 30);
    let decoded = wire::decode(&body, &wire::Limits::default()).unwrap();
    assert_eq!(decoded.events, kept);
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    // Event 1: both filters' labels.
    assert_eq!(
        kept[0].labels,
        vec![pair("route", "api"), pair("tier", "gold")]
    );
    // Event 3: the format's `route` gave way to the filter's.
    assert_eq!(kept[2].labels, vec![pair("route", "page")]);
}
