//! `logmon-collector replay` against generated and hand-written logs, checked
//! against an independent brute-force evaluation of the `high-traffic` rule.

use logmon_protocol::Format;
use logmon_tests::{
    GenSpec, Model, ReplayArgs, ReplayRun, State, assert_matches_model, brute_force, event_seconds,
    generate, replay, replay_stdin, replay_within, sample_csv, utc,
};
use std::path::PathBuf;

const START: i64 = 1_549_573_860;

/// Generates a log, replays it, and checks the alerts against the model.
fn check_generated(
    spec: &GenSpec,
    args: &ReplayArgs,
) -> (ReplayRun, Model, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = generate(dir.path(), spec);
    let what = format!("{spec:?} {args:?}");
    let model = brute_force(
        &event_seconds(&file, spec.format),
        args.threshold,
        args.window,
        args.lateness,
    );
    assert_eq!(
        model.events, spec.lines,
        "{what}: the generator wrote fewer lines than asked"
    );
    assert_eq!(
        model.late, 0,
        "{what}: disorder below lateness must leave nothing late"
    );
    assert!(
        model.transitions.iter().any(|t| t.state == State::Firing),
        "{what}: the case never fires, so it tests nothing"
    );
    let run = replay(&file, args);
    let summary = run.summary();
    assert_eq!(summary.events, model.events, "{what}: events");
    assert_eq!(summary.malformed, 0, "{what}: malformed");
    assert_eq!(summary.late, 0, "{what}: late");
    assert_eq!(run.stats_hits(), model.events, "{what}: stats hits");
    assert_matches_model(&run, &model, &what);
    assert_eq!(
        summary.transitions as usize,
        run.alerts.len(),
        "{what}: summary.transitions"
    );
    (run, model, file, dir)
}

#[test]
fn sample_alerts_match_brute_force() {
    let Some(sample) = sample_csv() else {
        return;
    };
    let args = ReplayArgs::default();
    let model = brute_force(&event_seconds(&sample, Format::Csv), 10.0, 120, 5);
    assert!(
        model.transitions.iter().any(|t| t.state == State::Firing),
        "the sample should fire"
    );
    assert!(
        model.transitions.iter().any(|t| t.state == State::Resolved),
        "the sample should resolve"
    );
    let run = replay(&sample, &args);
    assert_matches_model(&run, &model, "public sample");
    let summary = run.summary();
    assert_eq!(summary.events, model.events + model.late);
    assert_eq!(summary.late, model.late);
    assert_eq!(summary.malformed, 0);
    assert_eq!(run.stats_hits(), model.events);
}

#[test]
fn csv_with_disorder_and_default_burst_and_gap_matches_brute_force() {
    let spec = GenSpec {
        format: Format::Csv,
        lines: 20_000,
        disorder: 3,
        seed: 11,
        ..GenSpec::default()
    };
    let args = ReplayArgs {
        lateness: 5,
        ..ReplayArgs::default()
    };
    let (_, model, ..) = check_generated(&spec, &args);
    assert!(
        model.transitions.iter().any(|t| t.state == State::Resolved),
        "{spec:?}: should resolve"
    );
}

#[test]
fn csv_other_seeds_with_disorder_match_brute_force() {
    for seed in [2, 3, 4] {
        let spec = GenSpec {
            format: Format::Csv,
            lines: 12_000,
            rate: 9.5,
            disorder: 4,
            seed,
            ..GenSpec::default()
        };
        check_generated(
            &spec,
            &ReplayArgs {
                lateness: 5,
                ..ReplayArgs::default()
            },
        );
    }
}

#[test]
fn clf_with_short_window_and_low_threshold_matches_brute_force() {
    let spec = GenSpec {
        format: Format::Clf,
        lines: 15_000,
        rate: 4.5,
        bursts: vec!["400:200:9".into(), "1200:60:20".into()],
        gaps: vec!["1800:120".into()],
        disorder: 3,
        seed: 7,
        ..GenSpec::default()
    };
    let args = ReplayArgs {
        threshold: 5.0,
        window: 30,
        lateness: 5,
        ..ReplayArgs::default()
    };
    let (_, model, ..) = check_generated(&spec, &args);
    assert!(
        model.transitions.len() >= 4,
        "{spec:?}: expected several transitions, got {:?}",
        model.states()
    );
}

#[test]
fn json_with_high_threshold_and_one_minute_window_matches_brute_force() {
    let spec = GenSpec {
        format: Format::Json,
        lines: 15_000,
        rate: 12.0,
        bursts: vec!["200:100:40".into(), "700:30:60".into()],
        gaps: vec!["500:50".into()],
        disorder: 4,
        seed: 3,
        ..GenSpec::default()
    };
    let args = ReplayArgs {
        threshold: 20.0,
        window: 60,
        lateness: 5,
        ..ReplayArgs::default()
    };
    let (_, model, ..) = check_generated(&spec, &args);
    assert!(
        model.transitions.iter().any(|t| t.state == State::Resolved),
        "{spec:?}: should resolve"
    );
}

#[test]
fn combined_format_matches_brute_force() {
    let spec = GenSpec {
        format: Format::Combined,
        lines: 12_000,
        disorder: 3,
        seed: 5,
        ..GenSpec::default()
    };
    check_generated(
        &spec,
        &ReplayArgs {
            input_format: "combined".into(),
            ..ReplayArgs::default()
        },
    );
}

#[test]
fn recovery_during_a_gap_is_reported_at_the_second_it_is_due() {
    // Steady 5 req/s, a 30 req/s burst for 150 s, then 400 s of silence.
    let spec = GenSpec {
        format: Format::Csv,
        lines: 8_000,
        rate: 5.0,
        bursts: vec!["200:150:30".into()],
        gaps: vec!["350:400".into()],
        steady: true,
        disorder: 3,
        seed: 21,
        ..GenSpec::default()
    };
    let args = ReplayArgs {
        lateness: 5,
        ..ReplayArgs::default()
    };
    let (run, model, ..) = check_generated(&spec, &args);
    let (gap_start, gap_end) = (START + 350, START + 750);
    assert!(
        model
            .hits
            .keys()
            .all(|&s| !(gap_start..gap_end).contains(&s)),
        "the generator wrote events inside the gap"
    );
    assert!(
        model.last.is_some_and(|l| l >= gap_end),
        "the log should go on after the gap"
    );
    assert_eq!(
        model.states().len(),
        2,
        "one fire in the burst, one resolve: {:?}",
        model.states()
    );
    let resolve = model.transitions[1];
    assert_eq!(resolve.state, State::Resolved);
    assert!(
        (gap_start..gap_end).contains(&resolve.at),
        "the brute-force resolve at {} should fall inside the gap {gap_start}..{gap_end}",
        resolve.at
    );
    assert_eq!(run.high_traffic()[1], (State::Resolved, resolve.at));
}

#[test]
fn average_equal_to_threshold_changes_nothing() {
    // W=2, T=2: 4 hits then 6 → avg 2 (nothing), 5 (fires); then 0 → 3, 4 → 2
    // (still firing), 0 → 2 (still), 3 → 1.5 (resolves).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("equal.csv");
    let mut text = String::from(
        "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n",
    );
    let hits = [(0, 4), (1, 6), (2, 0), (3, 4), (4, 0), (5, 3)];
    // Second 0 needs a window start: second -1 contributes zero.
    for (offset, n) in hits {
        for _ in 0..n {
            text.push_str(&format!(
                "\"10.0.0.1\",\"-\",\"apache\",{},\"GET /api/x HTTP/1.0\",200,100\n",
                START + offset
            ));
        }
    }
    std::fs::write(&file, text).unwrap();
    let args = ReplayArgs {
        threshold: 2.0,
        window: 2,
        ..ReplayArgs::default()
    };
    let model = brute_force(&event_seconds(&file, Format::Csv), 2.0, 2, 5);
    assert_eq!(
        model.states(),
        [(State::Firing, START + 1), (State::Resolved, START + 5)]
    );
    let run = replay(&file, &args);
    assert_matches_model(&run, &model, "equal averages");
}

#[test]
fn stats_hits_sum_to_parsed_lines() {
    for (format, every) in [(Format::Csv, 10), (Format::Json, 7)] {
        let spec = GenSpec {
            format,
            lines: 10_000,
            disorder: 3,
            seed: 9,
            ..GenSpec::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let file = generate(dir.path(), &spec);
        let text = std::fs::read_to_string(&file).unwrap();
        let data_lines = text.lines().count() as u64 - u64::from(format == Format::Csv);
        assert_eq!(data_lines, spec.lines);
        let args = ReplayArgs {
            stats_every: every,
            ..ReplayArgs::default()
        };
        let run = replay(&file, &args);
        let summary = run.summary();
        assert_eq!(summary.late, 0);
        assert_eq!(summary.malformed, 0);
        assert_eq!(summary.events, data_lines, "{format}");
        assert_eq!(run.stats_hits(), data_lines, "{format}: sum of stats hits");
        assert!(!run.stats.is_empty());
        let every = i64::from(every);
        for s in &run.stats {
            assert_eq!(
                s.start.rem_euclid(every),
                0,
                "{format}: unaligned interval {s:?}"
            );
            assert_eq!(s.end - s.start, every, "{format}: interval length {s:?}");
        }
        for pair in run.stats.windows(2) {
            assert_eq!(
                pair[0].end, pair[1].start,
                "{format}: intervals not contiguous: {pair:?}"
            );
        }
        // The intervals cover every event second, from the first to the last.
        let model = brute_force(&event_seconds(&file, format), 10.0, 120, 5);
        let (first, last) = (model.first.unwrap(), model.last.unwrap());
        assert!(
            run.stats[0].start <= first && first < run.stats[0].end,
            "{format}: first interval"
        );
        let tail = run.stats.last().unwrap();
        assert!(
            tail.start <= last && last < tail.end,
            "{format}: last interval"
        );
        // And each interval's hits are the events of its seconds.
        for s in &run.stats {
            let expected: u64 = (s.start..s.end)
                .map(|t| model.hits.get(&t).copied().unwrap_or(0))
                .sum();
            assert_eq!(s.hits, expected, "{format}: hits of {s:?}");
        }
    }
}

fn csv_line(second: i64) -> String {
    format!("\"10.0.0.2\",\"-\",\"apache\",{second},\"GET /api/user HTTP/1.0\",200,1234")
}

const CSV_HEADER: &str =
    "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"";

#[test]
fn late_events_are_counted_not_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("late.csv");
    let mut lines = vec![CSV_HEADER.to_owned()];
    for offset in 0..=20 {
        lines.push(csv_line(START + offset));
        lines.push(csv_line(START + offset));
    }
    // 15 s behind the newest (START + 20) with a lateness of 5: late.
    lines.push(csv_line(START + 5));
    // 4 s behind: on time.
    lines.push(csv_line(START + 16));
    lines.push(csv_line(START + 21));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let events = (lines.len() - 1) as u64;

    let args = ReplayArgs {
        threshold: 1.0,
        window: 4,
        lateness: 5,
        ..ReplayArgs::default()
    };
    let run = replay(&file, &args);
    let summary = run.summary();
    assert_eq!(summary.events, events);
    assert_eq!(summary.late, 1);
    assert_eq!(summary.malformed, 0);
    assert_eq!(run.stats_hits(), events - 1);
    let model = brute_force(&event_seconds(&file, Format::Csv), 1.0, 4, 5);
    assert_eq!(model.late, 1);
    let interval = run
        .stats
        .iter()
        .find(|s| s.start <= START + 5 && START + 5 < s.end)
        .unwrap();
    let on_time: u64 = (interval.start..interval.end)
        .map(|t| model.hits.get(&t).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        interval.hits, on_time,
        "the late event must not be aggregated into {interval:?}"
    );
    assert_matches_model(&run, &model, "late events");
}

#[test]
fn malformed_lines_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("malformed.csv");
    let mut lines = vec![CSV_HEADER.to_owned()];
    let mut bad = Vec::new();
    for i in 0..60 {
        match i {
            4 | 25 | 26 | 50 => {
                lines.push(
                    match i {
                        4 => "this is not an access log line",
                        25 => "\"10.0.0.2\",\"-\",\"apache\",yesterday,\"GET /api/user HTTP/1.0\",200,1234",
                        26 => "\"10.0.0.2\",\"-\",\"apache\",1549573900",
                        _ => "\"10.0.0.2\",\"-\",\"apache\",1549573900,\"GET /api/user HTTP/1.0\",OK,1234",
                    }
                    .to_owned(),
                );
                bad.push(lines.len());
            }
            _ => lines.push(csv_line(START + i / 3)),
        }
    }
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let good = (lines.len() - 1 - bad.len()) as u64;

    let run = replay(&file, &ReplayArgs::default());
    let summary = run.summary();
    assert_eq!(summary.lines, lines.len() as u64);
    assert_eq!(summary.malformed, bad.len() as u64);
    assert_eq!(summary.events, good);
    assert_eq!(summary.skipped, 1, "the header");
    assert_eq!(run.stats_hits(), good);
    let reports: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("malformed line skipped"))
        .collect();
    assert_eq!(reports.len(), bad.len(), "stderr: {}", run.stderr);
    let name = file.display().to_string();
    for (report, line_no) in reports.iter().zip(&bad) {
        let prefix = format!("{name}:{line_no}: malformed line skipped: ");
        assert!(
            report.starts_with(&prefix),
            "expected `{prefix}…`, got `{report}`"
        );
        assert!(report.len() > prefix.len(), "no reason given: {report}");
    }
}

#[test]
fn stdin_input_works() {
    let spec = GenSpec {
        format: Format::Clf,
        lines: 8_000,
        disorder: 2,
        seed: 4,
        ..GenSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), &spec);
    for json in [true, false] {
        let args = ReplayArgs {
            json,
            ..ReplayArgs::default()
        };
        let from_file = replay(&file, &args);
        let from_stdin = replay_stdin(&file, &args);
        assert!(!from_file.stdout.is_empty());
        assert_eq!(from_stdin.stdout, from_file.stdout, "json={json}");
    }
}

fn parse_hits(message: &str, prefix: &str, suffix: &str) -> f64 {
    let rest = message
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("`{message}` should start with `{prefix}`"));
    let end = rest
        .find(suffix)
        .unwrap_or_else(|| panic!("`{message}` should contain `{suffix}`"));
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("hits in `{message}`: {e}"))
}

#[test]
fn text_output_keeps_the_exercise_wording() {
    let spec = GenSpec {
        format: Format::Csv,
        lines: 10_000,
        disorder: 2,
        seed: 1,
        ..GenSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), &spec);
    let model = brute_force(&event_seconds(&file, Format::Csv), 10.0, 120, 5);
    assert!(
        model.transitions.len() >= 2,
        "the case should fire and resolve: {:?}",
        model.states()
    );
    let text = replay(
        &file,
        &ReplayArgs {
            json: false,
            ..ReplayArgs::default()
        },
    )
    .stdout;
    let json = replay(&file, &ReplayArgs::default());
    assert_matches_model(&json, &model, "text case");

    let fired: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("High traffic generated an alert - hits = "))
        .collect();
    let recovered: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("High traffic alert recovered"))
        .collect();
    let expected_fired: Vec<_> = model
        .transitions
        .iter()
        .filter(|t| t.state == State::Firing)
        .collect();
    let expected_recovered: Vec<_> = model
        .transitions
        .iter()
        .filter(|t| t.state == State::Resolved)
        .collect();
    assert_eq!(fired.len(), expected_fired.len(), "{text}");
    assert_eq!(recovered.len(), expected_recovered.len(), "{text}");
    for (line, t) in fired.iter().zip(&expected_fired) {
        let message = &line[line.find("High traffic").unwrap()..];
        let hits = parse_hits(
            message,
            "High traffic generated an alert - hits = ",
            ", triggered at ",
        );
        assert!(
            (hits - t.value).abs() < 0.006,
            "`{line}`: hits {hits}, brute force {}",
            t.value
        );
        assert!(
            line.contains(&format!("triggered at {}", utc(t.at))),
            "`{line}` should say when: {}",
            utc(t.at)
        );
    }
    for (line, t) in recovered.iter().zip(&expected_recovered) {
        let message = &line[line.find("High traffic").unwrap()..];
        let hits = parse_hits(
            message,
            "High traffic alert recovered - hits = ",
            ", recovered at ",
        );
        assert!(
            (hits - t.value).abs() < 0.006,
            "`{line}`: hits {hits}, brute force {}",
            t.value
        );
        assert!(
            line.contains(&format!("recovered at {}", utc(t.at))),
            "`{line}` should say when: {}",
            utc(t.at)
        );
    }
    // The messages are the JSON ones, in the same order.
    let text_alerts: Vec<&str> = fired.iter().chain(&recovered).copied().collect();
    for a in &json.alerts {
        assert!(
            text_alerts.iter().any(|l| l.ends_with(&a.message)),
            "no text line for `{}`",
            a.message
        );
    }

    // One stats block header per interval, naming its bounds.
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("── ") && l.contains(" → "))
        .collect();
    assert_eq!(headers.len(), json.stats.len(), "stats block headers");
    for (h, s) in headers.iter().zip(&json.stats) {
        assert!(
            h.contains(&format!("({}–{})", s.start, s.end)),
            "`{h}` should name {}–{}",
            s.start,
            s.end
        );
        assert!(
            h.contains(&utc(s.start)),
            "`{h}` should start with {}",
            utc(s.start)
        );
    }
    // Each block says its hits.
    let hits_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("hits "))
        .collect();
    assert_eq!(hits_lines.len(), json.stats.len());
    for (l, s) in hits_lines.iter().zip(&json.stats) {
        assert!(
            l.trim_start().starts_with(&format!("hits {} ", s.hits)),
            "`{l}` should say {} hits",
            s.hits
        );
    }
}

/// 2100-01-01 00:00:00 UTC.
const YEAR_2100: i64 = 4_102_444_800;

#[test]
fn a_line_dated_2100_after_the_sample_changes_no_transition_and_is_passed_over() {
    let Some(sample) = sample_csv() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample-2100.csv");
    let mut text = std::fs::read_to_string(&sample).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\"10.0.0.9\",\"-\",\"apache\",{YEAR_2100},\"GET /api/far HTTP/1.0\",200,100\n"
    ));
    std::fs::write(&file, text).unwrap();
    let limit = std::time::Duration::from_secs(120);
    let alone = replay(&sample, &ReplayArgs::default());
    let run = replay_within(&file, &ReplayArgs::default(), limit);
    assert_eq!(run.alerts, alone.alerts, "the sample's transitions");
    assert_eq!(run.high_traffic().len(), 4, "{:?}", run.high_traffic());
    let (a, b) = (alone.summary(), run.summary());
    assert_eq!(b.events, a.events + 1);
    assert_eq!(b.transitions, a.transitions);
    // Every second up to the line's closed (as the every-second
    // evaluation would), the empty blocks told as one quiet run up to the
    // block the watermark (the line's second minus the lateness) stopped
    // in; that block is told when it completes, empty, then the line's.
    let last_block = alone.stats.last().unwrap();
    assert_eq!(run.quiet, vec![(last_block.end, YEAR_2100 - 10)]);
    let block = |start: i64, hits: u64| logmon_tests::StatsLine {
        start,
        end: start + 10,
        hits,
    };
    assert_eq!(
        run.stats[alone.stats.len()..],
        [block(YEAR_2100 - 10, 0), block(YEAR_2100, 1)]
    );
    let last = *event_seconds(&sample, Format::Csv).iter().max().unwrap();
    assert_eq!(b.seconds, a.seconds + (YEAR_2100 - last) as u64, "{b:?}");
    // The text form says it in one line.
    let text = replay_within(
        &file,
        &ReplayArgs {
            json: false,
            ..ReplayArgs::default()
        },
        limit,
    );
    let quiet: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with("── no traffic from "))
        .collect();
    assert_eq!(
        quiet,
        [format!(
            "── no traffic from {} to 2099-12-31 23:59:50 UTC ({}–{}) ──",
            utc(last_block.end),
            last_block.end,
            YEAR_2100 - 10
        )]
    );
}

#[test]
fn gaps_of_an_hour_and_of_three_days_give_the_brute_force_transitions() {
    // A burst before each gap, so an alert fires and recovers inside it.
    let hour = 3600;
    let days = 3 * 86_400;
    let spec = GenSpec {
        format: Format::Csv,
        lines: 14_000,
        rate: 5.0,
        bursts: vec!["200:150:30".into(), format!("{}:150:30", 400 + hour + 100)],
        gaps: vec![
            format!("400:{hour}"),
            format!("{}:{days}", 400 + hour + 300),
        ],
        steady: true,
        disorder: 3,
        seed: 33,
        ..GenSpec::default()
    };
    let (run, model, ..) = check_generated(&spec, &ReplayArgs::default());
    let states: Vec<State> = model.transitions.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            State::Firing,
            State::Resolved,
            State::Firing,
            State::Resolved
        ],
        "{:?}",
        model.transitions
    );
    let gaps = [
        (START + 400, START + 400 + hour),
        (START + 700 + hour, START + 700 + hour + days),
    ];
    assert!(
        model.last.is_some_and(|l| l >= gaps[1].1),
        "the log should go on after the second gap"
    );
    for (i, t) in model.transitions.iter().enumerate().skip(1).step_by(2) {
        let (from, to) = gaps[i / 2];
        assert!(
            (from..to).contains(&t.at),
            "resolve {t:?} inside {from}..{to}"
        );
    }
    // The three days' whole empty blocks are one quiet run inside the gap,
    // passed over. The hour's silent run, once the lateness is taken off,
    // is just under `QUIET_AFTER` (an hour): evaluated second by second.
    assert_eq!(run.quiet.len(), 1, "{:?}", run.quiet);
    let (start, end) = run.quiet[0];
    let (from, to) = gaps[1];
    assert!(
        from <= start && end <= to && end - start >= days - 60,
        "{start}..{end} in {from}..{to}"
    );
}

#[test]
fn replay_into_a_reader_that_stops_reading_ends_quietly() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = generate(
        dir.path(),
        &GenSpec {
            lines: 200_000,
            ..GenSpec::default()
        },
    );
    // `replay FILE | head -n 1`.
    let mut child = std::process::Command::new(logmon_tests::collector_bin())
        .arg("replay")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running replay");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a first line");
    assert!(!first.is_empty());
    let out = child.wait_with_output().expect("waiting for replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(stderr, "");
}
