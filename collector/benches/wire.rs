//! Wire size: bytes an agent sends per event against the raw log bytes per
//! line, for realistic logs (`make bench`).
//!
//! `BENCH_WIRE_LINES` lines (100,000 by default) of generated Combined Log
//! Format traffic (referers, user agents, durations; the generator the
//! project ships) are parsed as the agent parses them and cut into batches
//! as the agent cuts them (1,000 events by default), each encoded with
//! `logmon_protocol::wire::encode` at the agent's default zstd level. The
//! baseline is the raw text itself; next to it, the same lines' text
//! compressed alone with zstd at the same level and batch size, which is what
//! a shipper of raw lines could send. CSV (the exercise's format) is shown
//! too. Sizes do not depend on the machine, so one run is enough.

mod common;

use logmon_protocol::generate::{TrafficSpec, generate_parsed};
use logmon_protocol::wire::{self, Batch, Limits, StreamId};
use logmon_protocol::{Event, Format};
use std::time::Instant;

/// The lines of a generated log (each with its `\n`) and their events.
fn traffic(format: Format, lines: u64) -> (Vec<String>, Vec<Event>) {
    generate_parsed(&TrafficSpec {
        format,
        lines,
        base_rate: 200.0,
        disorder: 1,
        seed: 11,
        ..TrafficSpec::default()
    })
    .expect("generating traffic")
}

/// A batch as the agent builds it for `events`, read from `[start, end)`.
fn batch(format: Format, events: &[Event], start: u64, end: u64) -> Batch {
    Batch {
        agent_id: "web-01.example.com".into(),
        host: "web-01.example.com".into(),
        stream: StreamId {
            fingerprint: 0x5eed_cafe_f00d_d00d,
            path: "/var/log/nginx/access.log".into(),
        },
        start,
        end,
        format,
        labels: Vec::new(),
        events: events.to_vec(),
        malformed: 0,
        caught_up: false,
        finished: false,
        sent_at: 1_719_800_000_000_000_000,
    }
}

/// Total wire bytes and encode time of `events` cut into batches of `size`.
fn wire_bytes(format: Format, lines: &[String], events: &[Event], size: usize) -> (u64, f64) {
    let mut total = 0u64;
    let mut offset = 0u64;
    let mut secs = 0.0;
    for (chunk, text) in events.chunks(size).zip(lines.chunks(size)) {
        let len: u64 = text.iter().map(|l| l.len() as u64).sum();
        let b = batch(format, chunk, offset, offset + len);
        offset += len;
        let started = Instant::now();
        let body = wire::encode(&b, wire::DEFAULT_LEVEL).expect("encoding a batch");
        secs += started.elapsed().as_secs_f64();
        total += body.len() as u64;
        // The collector reads back exactly what was sent.
        assert_eq!(
            wire::decode(&body, &Limits::default())
                .expect("decoding a batch")
                .events
                .len(),
            chunk.len()
        );
    }
    (total, secs)
}

/// Total bytes of the raw lines compressed with zstd, `size` lines a frame.
fn zstd_text_bytes(lines: &[String], size: usize) -> u64 {
    lines
        .chunks(size)
        .map(|c| {
            zstd::encode_all(c.concat().as_bytes(), wire::DEFAULT_LEVEL)
                .expect("zstd")
                .len() as u64
        })
        .sum()
}

fn main() {
    let n = common::env_number("BENCH_WIRE_LINES", 100_000);
    println!(
        "wire size: {n} generated lines per format, parsed as the agent does, zstd level {} (the agent's default); \"x smaller\" = raw bytes per line / bytes per event",
        wire::DEFAULT_LEVEL
    );
    println!();
    println!(
        "{:<44} | {:>12} | {:>9} | {:>11}",
        "what is sent", "bytes/event", "x smaller", "encode (us)"
    );
    println!("{:-<44}-+-{:->12}-+-{:->9}-+-{:->11}", "", "", "", "");
    for format in [Format::Combined, Format::Csv] {
        let (lines, events) = traffic(format, n);
        let count = events.len() as f64;
        let raw: u64 = lines.iter().map(|l| l.len() as u64).sum();
        let per_raw = raw as f64 / count;
        let row = |name: String, bytes: u64, encode: Option<f64>| {
            let per = bytes as f64 / count;
            println!(
                "{name:<44} | {per:>12.1} | {:>9.1} | {:>11}",
                per_raw / per,
                encode.map_or("-".into(), |s| format!("{:.1}", s * 1e6 / count * 1000.0))
            );
        };
        row(
            format!("{}: raw log text (baseline)", format.name()),
            raw,
            None,
        );
        row(
            format!("{}: zstd of the raw text, 1,000 lines", format.name()),
            zstd_text_bytes(&lines, 1000),
            None,
        );
        for size in [1000usize, 10_000] {
            let (bytes, secs) = wire_bytes(format, &lines, &events, size);
            row(
                format!(
                    "{}: wire body, {} events/batch",
                    format.name(),
                    if size == 1000 { "1,000" } else { "10,000" }
                ),
                bytes,
                Some(secs),
            );
        }
    }
    println!();
    println!(
        "target: wire bytes per event at least 10 times smaller than raw bytes per line. encode (us) = wire::encode time per 1,000 events"
    );
}
