//! How well realistic logs compress, and the report of where the bytes go.

use super::*;
use crate::generate::{TrafficSpec, generate_parsed};
use crate::render::render;

/// `n` access-log lines of the generator's busy shop in the combined
/// format — with `$request_time` appended when `with_duration` — and their
/// events exactly as the agent parses them.
fn realistic_combined_log(n: usize, with_duration: bool) -> (String, Vec<Event>) {
    let (lines, events) = generate_parsed(&TrafficSpec::shop(n as u64)).unwrap();
    if with_duration {
        return (lines.concat(), events);
    }
    let mut raw = String::new();
    let mut parser = crate::LineParser::new(Format::Combined);
    let mut line = String::new();
    let events = events
        .into_iter()
        .map(|mut e| {
            e.duration_us = None;
            line.clear();
            render(Format::Combined, &e, &mut line);
            raw.push_str(&line);
            raw.push('\n');
            parser.parse(&line).unwrap().unwrap()
        })
        .collect();
    (raw, events)
}

/// Size of each part of the payload of `b`, for the report below.
fn section_sizes(b: &Batch) -> Vec<(&'static str, usize)> {
    let payload = payload(b);
    let mut r = Reader {
        bytes: &payload[1..],
        what: "",
    };
    r.str().unwrap();
    r.str().unwrap();
    r.u64().unwrap();
    r.str().unwrap();
    r.u64().unwrap();
    r.u64().unwrap();
    r.byte().unwrap();
    r.u64().unwrap();
    r.byte().unwrap();
    r.i64().unwrap();
    for _ in 0..r.u64().unwrap() * 2 {
        r.str().unwrap();
    }
    r.u64().unwrap();
    let names = std::iter::once("time")
        .chain(STRING_COLUMNS.map(|c| c))
        .chain(["status", "bytes", "duration"])
        .chain(STRING_COLUMNS.map(|c| c))
        .chain(STRING_COLUMNS.map(|c| c));
    let kinds = std::iter::repeat_n("", 1)
        .chain(std::iter::repeat_n(" codes", 7))
        .chain(std::iter::repeat_n("", 3))
        .chain(std::iter::repeat_n(" lengths", 7))
        .chain(std::iter::repeat_n(" text", 7));
    let mut sizes = Vec::new();
    for (name, kind) in names.zip(kinds) {
        let n = r.section("").unwrap().bytes.len();
        sizes.push((name, n));
        let _ = kind;
    }
    sizes
}

/// The target: the body is at least 10 times smaller than the
/// log text it carries, at the default level, for realistic combined logs
/// in agent-sized batches (1,000 lines).
#[test]
fn compresses_combined_logs_well() {
    const N: usize = 1000;
    let per = |n: usize| n as f64 / N as f64;
    for with_duration in [false, true] {
        let (raw, events) = realistic_combined_log(N * 4, with_duration);
        let lines: Vec<&str> = raw.lines().collect();
        let mut ratios = Vec::new();
        for (i, chunk) in events.chunks(N).enumerate() {
            let raw_len: usize = lines[i * N..(i + 1) * N].iter().map(|l| l.len() + 1).sum();
            let b = batch(chunk.to_vec());
            let body = encode(&b, DEFAULT_LEVEL).unwrap();
            assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
            ratios.push(raw_len as f64 / body.len() as f64);
            if i > 0 {
                continue;
            }
            let first = lines[..N].join("\n");
            eprintln!(
                "{N} combined lines{}: raw {raw_len} B ({:.1} B/line), zstd(raw text) {:.1} B/line",
                if with_duration { " + request time" } else { "" },
                per(raw_len),
                per(zstd(first.as_bytes()).len()),
            );
            eprintln!("first lines:\n  {}", lines[..3].join("\n  "));
            let payload = payload(&b).len();
            eprintln!(
                "payload {payload} B ({:.1} B/event); body {} B ({:.1} B/event), ratio {:.2}x",
                per(payload),
                body.len(),
                per(body.len()),
                raw_len as f64 / body.len() as f64
            );
            let sizes = section_sizes(&b);
            let line: Vec<String> = sizes.iter().map(|(n, s)| format!("{n} {s}")).collect();
            eprintln!("sections (B): {}", line.join(", "));
            for level in [1, 2, 3, 4, 5, 6, 9, 19] {
                let n = encode(&b, level).unwrap().len();
                eprintln!(
                    "  level {level}: {n} B ({:.1} B/event), ratio {:.2}x",
                    per(n),
                    raw_len as f64 / n as f64
                );
            }
        }
        eprintln!("ratio per batch: {ratios:.2?}");
        for ratio in ratios {
            assert!(ratio >= 10.0, "compression ratio {ratio:.2}x < 10x");
        }
    }
}

/// A body that fails part-way (output over the cap, a frame cut short, a
/// flipped byte) leaves nothing behind in the thread's reused decompression
/// context: the next bodies decode as they would on a fresh thread.
#[test]
fn a_failed_body_does_not_leak_into_the_next() {
    let (_, events) = realistic_combined_log(200, true);
    let good = encode(&super::batch(events.clone()), DEFAULT_LEVEL).unwrap();
    let fresh = |body: Vec<u8>| {
        std::thread::spawn(move || format!("{:?}", decode(&body, &Limits::default())))
            .join()
            .unwrap()
    };
    // Output capped mid-frame: the frame is left unfinished in the context.
    let small = Limits {
        max_decompressed: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&good, &small),
        Err(WireError::TooLarge { .. })
    ));
    assert_eq!(decode(&good, &Limits::default()).unwrap().events, events);
    for cut in [good.len() / 3, good.len() / 2, good.len() - 4] {
        let truncated = good[..cut].to_vec();
        // A frame that stops mid-way, then the same frame whole.
        assert!(decode(&truncated, &Limits::default()).is_err());
        assert_eq!(decode(&good, &Limits::default()).unwrap().events, events);
        // Two different broken bodies in a row fail as each does alone.
        let mut flipped = good.clone();
        flipped[cut] ^= 0x5a;
        assert!(decode(&truncated, &Limits::default()).is_err());
        assert_eq!(
            format!("{:?}", decode(&flipped, &Limits::default())),
            fresh(flipped.clone()),
            "cut at {cut}"
        );
    }
}
