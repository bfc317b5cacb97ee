//! The generator's tests: specs, determinism, every format, disorder,
//! gaps and bursts, and the shop's variety.

use super::*;

fn run(spec: &TrafficSpec) -> String {
    let mut out = Vec::new();
    let n = generate(spec, &mut out).unwrap();
    assert_eq!(n, spec.lines);
    String::from_utf8(out).unwrap()
}

fn events(format: Format, text: &str) -> Vec<Event> {
    let mut parser = LineParser::new(format);
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| match parser.parse(line) {
            Ok(e) => e,
            Err(e) => panic!("{format} line {}: {e}: {line}", i + 1),
        })
        .collect()
}

#[test]
fn parses_specs() {
    assert_eq!(
        "300:180:25".parse::<Burst>(),
        Ok(Burst {
            at: 300,
            duration: 180,
            rate: 25.0
        })
    );
    assert_eq!(
        "900:300".parse::<Gap>(),
        Ok(Gap {
            at: 900,
            duration: 300
        })
    );
    assert!("300:180".parse::<Burst>().is_err());
    assert!("1:2:x".parse::<Burst>().is_err());
    assert!("1:-2".parse::<Gap>().is_err());
    assert!("1:2:3".parse::<Gap>().is_err());
}

#[test]
fn deterministic_for_a_seed() {
    let spec = TrafficSpec {
        lines: 3000,
        ..TrafficSpec::default()
    };
    assert_eq!(run(&spec), run(&spec));
    assert_ne!(run(&spec), run(&TrafficSpec { seed: 2, ..spec }));
}

#[test]
fn every_format_parses_with_exact_counts() {
    for format in Format::ALL {
        let spec = TrafficSpec {
            format,
            lines: 4000,
            ..TrafficSpec::default()
        };
        let text = run(&spec);
        let header = usize::from(format == Format::Csv);
        assert_eq!(text.lines().count(), 4000 + header, "{format}");
        let evs = events(format, &text);
        assert_eq!(evs.len(), 4000, "{format}");
        let with_extras = matches!(format, Format::Combined | Format::Json);
        assert_eq!(
            evs.iter().all(|e| e.user_agent.is_some()),
            with_extras,
            "{format}"
        );
    }
    let mut parser = LineParser::new(Format::Csv);
    assert_eq!(
        parser.parse_into(header(Format::Csv).unwrap(), &mut Event::empty()),
        Ok(Parsed::Skipped)
    );
}

#[test]
fn generate_parsed_gives_the_lines_and_their_events() {
    for format in Format::ALL {
        let spec = TrafficSpec {
            format,
            lines: 500,
            ..TrafficSpec::default()
        };
        let (lines, evs) = generate_parsed(&spec).unwrap();
        let text = run(&spec);
        let header = usize::from(format == Format::Csv);
        let expected: String = text.split_inclusive('\n').skip(header).collect();
        assert_eq!(lines.concat(), expected, "{format}");
        assert_eq!(evs, events(format, &text), "{format}");
    }
}

#[test]
fn disorder_is_bounded() {
    for disorder in [0, 1, 2, 5] {
        let spec = TrafficSpec {
            lines: 5000,
            disorder,
            base_rate: 20.0,
            ..TrafficSpec::default()
        };
        let evs = events(spec.format, &run(&spec));
        let mut max = i64::MIN;
        let mut out_of_order = 0;
        for e in &evs {
            if e.second() < max {
                out_of_order += 1;
                assert!(
                    max - e.second() <= i64::from(disorder),
                    "disorder {disorder}: {} after {max}",
                    e.second()
                );
            }
            max = max.max(e.second());
        }
        if disorder == 0 {
            assert_eq!(out_of_order, 0);
        } else {
            assert!(out_of_order > 0, "disorder {disorder} never used");
        }
    }
}

#[test]
fn gaps_are_silent_and_bursts_busy() {
    let spec = TrafficSpec {
        lines: 20_000,
        ..TrafficSpec::default()
    };
    let evs = events(spec.format, &run(&spec));
    let offsets: Vec<i64> = evs.iter().map(|e| e.second() - spec.start).collect();
    assert!(offsets.iter().all(|&o| o >= 0));
    assert!(
        !offsets.iter().any(|&o| (900..1200).contains(&o)),
        "events inside the gap"
    );
    assert!(
        offsets.iter().any(|&o| o >= 1200),
        "the log should go past the gap"
    );
    let in_burst = offsets.iter().filter(|&&o| (300..480).contains(&o)).count() as f64 / 180.0;
    let before = offsets.iter().filter(|&&o| (0..300).contains(&o)).count() as f64 / 300.0;
    assert!((22.0..28.0).contains(&in_burst), "burst rate {in_burst}");
    assert!((7.0..9.0).contains(&before), "base rate {before}");
    // Errors are about the asked share.
    let errors = evs.iter().filter(|e| e.status >= 500).count() as f64 / evs.len() as f64;
    assert!((0.01..0.03).contains(&errors), "error share {errors}");
}

#[test]
fn stops_when_traffic_ends_for_ever() {
    let spec = TrafficSpec {
        base_rate: 0.0,
        bursts: vec![Burst {
            at: 0,
            duration: 10,
            rate: 5.0,
        }],
        ..TrafficSpec::default()
    };
    let mut out = Vec::new();
    let n = generate(&spec, &mut out).unwrap();
    assert!(n > 0 && n < 200, "{n}");
}

/// The shop's data is what it claims to be: in order, many requests per
/// second, and varied.
#[test]
fn realistic_log_is_varied() {
    let (lines, events) = generate_parsed(&TrafficSpec::shop(1000)).unwrap();
    let raw = lines.concat();
    assert_eq!(events.len(), 1000);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let seconds = (events[999].second() - events[0].second() + 1) as usize;
    assert!((3..=15).contains(&seconds), "{seconds} s");
    let distinct = |f: fn(&Event) -> String| {
        events
            .iter()
            .map(f)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let clients = distinct(|e| e.client.clone());
    let paths = distinct(|e| e.path.clone());
    let agents = distinct(|e| format!("{:?}", e.user_agent));
    let referers = distinct(|e| format!("{:?}", e.referer));
    let statuses = distinct(|e| e.status.to_string());
    let sizes = distinct(|e| e.bytes.to_string());
    eprintln!(
        "{} B/line over {seconds} s; distinct: {clients} clients, {paths} paths, \
         {agents} user agents, {referers} referers, {statuses} statuses, {sizes} sizes",
        raw.len() / 1000
    );
    assert!(clients > 100 && paths > 300 && agents > 40 && referers > 50);
    assert!(statuses >= 8 && sizes > 400);
}
