//! `hostile`: a parser that misbehaves on purpose, for the agent's sandbox
//! tests; built with the shipped parsers but never embedded.
//!
//! Calm, it makes an event of every line that does not start with `#`
//! (path: the line; user: `d` and how many `#` lines its stream has seen,
//! so tests see the directive replay; timestamp: 2024-03-01T00:00:00Z plus
//! the line's index in seconds); a line `bad` is malformed.
//!
//! `mode`: `spin` loops forever, `hog` allocates without bound, `trap`
//! panics, `ragged` answers columns of unequal length, `unordered` answers
//! line indices out of order, `far` names a line past the call's, `both`
//! makes its last event's line malformed too, `ancient` answers a timestamp
//! before 1970, `calm` behaves. `after`: calls answered calmly before
//! misbehaving.

use std::collections::HashMap;

use logmon_parser::{Event, Output, Params, Parser, ParserInfo, TextColumn, param};

#[derive(Debug, Default)]
pub struct Hostile {
    mode: String,
    after: u64,
    seen: u64,
    directives: HashMap<u64, u64>,
}

impl Parser for Hostile {
    fn describe() -> ParserInfo {
        ParserInfo {
            name: "hostile".into(),
            description: "Misbehaves on purpose (sandbox tests)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param(
                    "mode",
                    "spin | hog | trap | ragged | unordered | far | both | ancient | calm",
                    "calm",
                ),
                param("after", "calm calls before misbehaving", 0),
            ],
            directive_prefix: Some("#".into()),
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.mode = params.get("mode", "calm".to_owned())?;
        self.after = params.get("after", 0)?;
        Ok(())
    }

    fn parse(&mut self, stream: u64, lines: &TextColumn, out: &mut Output) {
        self.seen += 1;
        let hostile = self.seen > self.after;
        let n = lines.len();
        match self.mode.as_str() {
            "spin" if hostile => {
                let mut x = n as u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            }
            "hog" if hostile => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" if hostile => panic!("hostile parser trapping on call {}", self.seen),
            _ => {}
        }
        let directives = self.directives.entry(stream).or_default();
        let mut user = String::new();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with('#') {
                *directives += 1;
                continue;
            }
            if line == "bad" {
                out.malformed(i, "the line says bad");
                continue;
            }
            user.clear();
            user.push_str(&format!("d{directives}"));
            let timestamp = if hostile && self.mode == "ancient" {
                -1
            } else {
                (1_709_251_200 + i as i64) * 1_000_000_000
            };
            out.push(
                i,
                &Event {
                    timestamp,
                    user: &user,
                    path: line,
                    ..Event::default()
                },
            );
        }
        if !hostile {
            return;
        }
        let last = out.raw().line.last().copied();
        match self.mode.as_str() {
            "far" => out.malformed(n + 3, "nowhere"),
            "both" => {
                if let Some(line) = last {
                    out.malformed(line as usize, "an event too");
                }
            }
            "unordered" if last.is_some() => out.push(0, &Event::default()),
            "ragged" => out.raw().events.status.push(1),
            _ => {}
        }
    }

    fn forget(&mut self, stream: u64) {
        self.directives.remove(&stream);
    }
}

logmon_parser::export_parser!(Hostile);
