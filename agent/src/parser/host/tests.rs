//! The host with the shipped `w3c` parser and the hostile one, built by
//! `build.rs`, on real files read by a real tailer.

use super::*;
use crate::parser::{HOSTILE_PATH, ParserConfig};
use crate::tail::{Checkpoints, StartAt, TailerConfig};
use std::io::Write;

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new().unwrap())
}

/// A tailer of `text` written to a file in `dir`, and everything it reads.
fn tail(dir: &tempfile::TempDir, text: &str) -> (Tailer, ReadLines) {
    let path = dir.path().join("u_ex240301.log");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let mut config = TailerConfig::for_file(&path);
    config.start_at = StartAt::Beginning;
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    let mut polled = tailer.poll(u64::MAX);
    assert_eq!(polled.len(), 1);
    (tailer, polled.remove(0))
}

/// The lines of `all` from line `from` on, as a poll that started there.
fn from_line(all: &ReadLines, from: usize) -> ReadLines {
    ReadLines {
        stream: all.stream.clone(),
        start: all.lines[from].offset,
        end: all.end,
        lines: all.lines[from..].to_vec(),
        truncated: 0,
    }
}

/// Lines `a..b` of `all`, as one poll.
fn lines_between(all: &ReadLines, a: usize, b: usize) -> ReadLines {
    ReadLines {
        stream: all.stream.clone(),
        start: all.lines[a].offset,
        end: all.lines.get(b).map_or(all.end, |l| l.offset),
        lines: all.lines[a..b].to_vec(),
        truncated: 0,
    }
}

/// What a call made of each line: `Ok(Some(event))`, `Ok(None)` (skipped)
/// or `Err(reason)`.
fn outcomes(
    parser: &mut SourceParser,
    tailer: &Tailer,
    lines: &ReadLines,
) -> Vec<Result<Option<Event>, String>> {
    let out = parser.parse(tailer, lines);
    (0..lines.lines.len())
        .map(|i| {
            let mut e = Event::empty();
            match out.take(i, &mut e) {
                Ok(Parsed::Event) => Ok(Some(e)),
                Ok(Parsed::Skipped) => Ok(None),
                Err(why) => Err(why.reason().to_owned()),
            }
        })
        .collect()
}

fn events(outcomes: &[Result<Option<Event>, String>]) -> Vec<Event> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().cloned().flatten())
        .collect()
}

const IIS: &str = "\
#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2024-03-01 00:00:00
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
2024-03-01 00:00:01 10.0.0.5 GET /default.htm - 80 - 192.168.1.20 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 15
2024-03-01 00:00:02 10.0.0.5 POST /api/orders id=7 443 alice 192.168.1.21 curl/8.5.0 https://shop.example/cart 201 0 0 230
this line has too few fields
#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2024-03-01 00:10:00
#Fields: date time cs-method cs-uri-stem cs-uri-query sc-status sc-bytes cs-version time-taken
2024-03-01 00:10:01 GET /b q=1 500 1234 HTTP/1.1 7\r
2024-03-01 00:10:02 HEAD /c - 304 0 HTTP/2 -
";

/// 2024-03-01T00:00:00Z in nanoseconds.
const MARCH_1: i64 = 1_709_251_200 * 1_000_000_000;

fn iis_events() -> Vec<Event> {
    let at = |s: i64| MARCH_1 + s * 1_000_000_000;
    vec![
        Event {
            timestamp: at(1),
            client: "192.168.1.20".into(),
            method: "GET".into(),
            path: "/default.htm".into(),
            status: 200,
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0)".into()),
            duration_us: Some(15_000),
            ..Event::default()
        },
        Event {
            timestamp: at(2),
            client: "192.168.1.21".into(),
            user: "alice".into(),
            method: "POST".into(),
            path: "/api/orders?id=7".into(),
            status: 201,
            referer: Some("https://shop.example/cart".into()),
            user_agent: Some("curl/8.5.0".into()),
            duration_us: Some(230_000),
            ..Event::default()
        },
        Event {
            timestamp: at(601),
            method: "GET".into(),
            path: "/b?q=1".into(),
            protocol: "HTTP/1.1".into(),
            status: 500,
            bytes: 1234,
            duration_us: Some(7_000),
            ..Event::default()
        },
        Event {
            timestamp: at(602),
            method: "HEAD".into(),
            path: "/c".into(),
            protocol: "HTTP/2".into(),
            status: 304,
            ..Event::default()
        },
    ]
}

#[test]
fn the_shipped_w3c_parser_reads_iis_lines_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (tailer, all) = tail(&dir, IIS);
    let mut parser =
        SourceParser::load(&runtime(), "iis", &ParserConfig::new("w3c", &[]), 65536).unwrap();
    assert_eq!(parser.info().unwrap().2, Some("#"));
    let out = outcomes(&mut parser, &tailer, &all);
    assert_eq!(events(&out), iis_events());
    assert_eq!(
        out[6],
        Err("expected 15 fields (per #Fields), found 6".to_owned())
    );
    assert!(out[..4].iter().all(|o| *o == Ok(None)), "directives skip");
    let s = parser.state();
    assert_eq!(
        (s.calls, s.lines, s.events, s.malformed, s.errors, s.replays),
        (1, 13, 4, 1, 0, 0)
    );
}

#[test]
fn reading_from_an_offset_replays_the_directives_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (tailer, all) = tail(&dir, IIS);
    let runtime = runtime();
    let config = ParserConfig::new("w3c", &[]);
    // A restart from a checkpoint in each block: a fresh instance, lines
    // from the middle of the file.
    for (from, expect) in [(5, 1..4), (11, 2..4), (12, 3..4)] {
        let mut parser = SourceParser::load(&runtime, "iis", &config, 65536).unwrap();
        let lines = from_line(&all, from);
        let out = outcomes(&mut parser, &tailer, &lines);
        assert_eq!(
            events(&out),
            iis_events()[expect.clone()],
            "from line {from}"
        );
        let s = parser.state();
        assert_eq!((s.replays, s.errors), (1, 0), "from line {from}");
        assert_eq!(s.replay_bytes, lines.start);
    }
    // The same instance, lines out of step (a rewind): forgotten and
    // replayed again, so the answer is the same.
    let mut parser = SourceParser::load(&runtime, "iis", &config, 65536).unwrap();
    assert_eq!(events(&outcomes(&mut parser, &tailer, &all)), iis_events());
    let again = outcomes(&mut parser, &tailer, &from_line(&all, 5));
    assert_eq!(events(&again), iis_events()[1..]);
    assert_eq!(parser.state().replays, 1);
    assert_eq!(parser.state().replay_lines, 4);
}

fn hostile(mode: &str, after: u64) -> SourceParser {
    let config = ParserConfig::new(
        HOSTILE_PATH,
        &[("mode", mode), ("after", &after.to_string())],
    );
    let mut config = config;
    config.deadline_ms = 50;
    config.memory_mb = 16;
    SourceParser::load(&runtime(), "web", &config, 65536).unwrap()
}

const CALM: &str = "#a\n/one\n#b\n/two\nbad\n/three\n";

#[test]
fn a_calm_hostile_parser_shows_the_replay_count() {
    let dir = tempfile::tempdir().unwrap();
    let (tailer, all) = tail(&dir, CALM);
    let mut parser = hostile("calm", 0);
    let out = outcomes(&mut parser, &tailer, &from_line(&all, 3));
    let users: Vec<_> = events(&out).into_iter().map(|e| e.user).collect();
    // Both directives before line 3 were replayed, none twice.
    assert_eq!(users, ["d2", "d2"]);
    assert_eq!(out[1], Err("the line says bad".to_owned()));
}

#[test]
fn failures_are_contained_and_the_instance_made_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (tailer, all) = tail(&dir, CALM);
    let cases = [
        ("trap", "`parse` trapped"),
        ("spin", "`parse` overran its 50 ms deadline"),
        ("hog", "over the cap of 16777216"),
        (
            "far",
            "malformed answer: a malformed line 6 in a call of 3 lines",
        ),
        (
            "both",
            "malformed answer: line 2 is both an event and malformed",
        ),
        (
            "unordered",
            "malformed answer: event lines not increasing (0 after Some(2))",
        ),
        (
            "ragged",
            "malformed answer: 2 events by `line`, 3 in `status`",
        ),
        (
            "ancient",
            "malformed answer: timestamp -1 ns is not between 1970 and 2200",
        ),
    ];
    for (mode, reason) in cases {
        // Calm for the first call, hostile for the second, which goes on
        // where the first ended (no replay in between).
        let mut parser = hostile(mode, 1);
        let first = outcomes(&mut parser, &tailer, &lines_between(&all, 0, 3));
        assert_eq!(events(&first).len(), 1, "{mode}");
        let second = outcomes(&mut parser, &tailer, &lines_between(&all, 3, 6));
        for o in &second {
            let why = o.as_ref().unwrap_err();
            assert!(
                why.starts_with("parser `") && why.contains(reason),
                "{mode}: {why}"
            );
        }
        let s = parser.state();
        assert_eq!(
            (s.calls, s.errors, s.malformed, s.replays),
            (2, 1, 3, 0),
            "{mode}"
        );
    }
}

#[test]
fn a_parser_made_afresh_replays_before_its_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let (tailer, all) = tail(&dir, CALM);
    // `after = 2`: two calm calls, then a trap on the third (the replay of
    // the third poll); the fourth poll, on a fresh instance (calm again for
    // its first two calls), replays the directives before its lines.
    let mut parser = hostile("trap", 2);
    let first = outcomes(&mut parser, &tailer, &from_line(&all, 0));
    assert_eq!(events(&first).len(), 3);
    // The same lines again (a rewind to 0): forgotten, no replay needed.
    let again = outcomes(&mut parser, &tailer, &from_line(&all, 0));
    assert_eq!(events(&again)[2].user, "d2");
    let failed = outcomes(&mut parser, &tailer, &from_line(&all, 3));
    assert!(failed.iter().all(Result::is_err));
    let fresh = outcomes(&mut parser, &tailer, &from_line(&all, 3));
    let users: Vec<_> = events(&fresh).into_iter().map(|e| e.user).collect();
    assert_eq!(users, ["d2", "d2"]);
    let s = parser.state();
    assert_eq!((s.errors, s.replays), (1, 2));
}

#[test]
fn unknown_parsers_and_bad_parameters_stop_the_start() {
    let runtime = runtime();
    let e = SourceParser::load(&runtime, "s", &ParserConfig::new("iis", &[]), 100).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("no shipped parser named `iis` (shipped: w3c)"),
        "{e}"
    );
    let e = SourceParser::load(
        &runtime,
        "s",
        &ParserConfig::new("w3c", &[("plus", "1")]),
        100,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "parser w3c refused its configuration: unknown parameter `plus` (known: plus_as_space)"
    );
    let filter = concat!(env!("OUT_DIR"), "/filter_hostile.wasm");
    let e = SourceParser::load(&runtime, "s", &ParserConfig::new(filter, &[]), 100).unwrap_err();
    assert!(
        e.to_string().contains("is not a logmon parser component"),
        "{e}"
    );
}

/// An answer of `m` events (lines 0..m), every text "x".
fn answer(m: usize) -> wit::Parsed {
    let column = || wit::TextColumn {
        data: vec![b'x'; m],
        ends: (1..=m as u32).collect(),
    };
    wit::Parsed {
        events: wit::Events {
            timestamp: vec![MARCH_1; m],
            client: column(),
            user: column(),
            method: column(),
            path: column(),
            protocol: column(),
            status: vec![200; m],
            bytes: vec![0; m],
            referer: column(),
            user_agent: column(),
            duration_us: vec![-1; m],
        },
        line: (0..m as u32).collect(),
        malformed: Vec::new(),
    }
}

#[test]
fn answers_are_checked_whole() {
    let reason = |p: wit::Parsed| check_parsed(p, 4, 100).map(|_| ()).unwrap_err();
    assert!(check_parsed(answer(3), 4, 100).is_ok());
    let mut p = answer(2);
    p.events.path.data = vec![b'/', 0xff];
    assert_eq!(reason(p), "malformed answer: `path` is not UTF-8");
    let mut p = answer(2);
    p.events.user.data = "é".as_bytes().to_vec();
    assert_eq!(
        reason(p),
        "malformed answer: `user` ends at 1, inside or past its text"
    );
    let mut p = answer(2);
    p.events.client.data.push(b'y');
    assert_eq!(
        reason(p),
        "malformed answer: `client` has text past its last value"
    );
    let mut p = answer(1);
    p.events.duration_us[0] = -7;
    assert_eq!(reason(p), "malformed answer: duration -7 µs");
    let mut p = answer(1);
    p.events.timestamp[0] = MAX_TIMESTAMP;
    assert!(reason(p).contains("is not between 1970 and 2200"));
    let mut p = answer(1);
    p.events.path.data = vec![b'x'; 2 << 20];
    p.events.path.ends = vec![2 << 20];
    assert!(reason(p).contains("bytes of text for 100 bytes of lines"));
    let mut p = answer(0);
    p.malformed = vec![
        wit::MalformedLine {
            line: 2,
            reason: "a".into(),
        },
        wit::MalformedLine {
            line: 2,
            reason: "b".into(),
        },
    ];
    assert_eq!(
        reason(p),
        "malformed answer: malformed lines not increasing (2 after Some(2))"
    );
}
