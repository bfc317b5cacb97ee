//! How `replay` (and later the live console) prints: readable text blocks or
//! one JSON object per line.

use crate::clock::utc;
use crate::engine::observer::{Observer, Summary};
use crate::engine::stats::StatsReport;
use crate::rules::{AlertState, Quarantine, Transition};
use serde::Serialize;
use std::io::{self, Write};

/// Output style.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    #[default]
    Text,
    Json,
}

/// Writes reports in one style.
#[derive(Debug)]
pub struct Printer<W: Write> {
    kind: OutputKind,
    out: W,
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Line<'a> {
    Stats(&'a StatsReport),
    Quiet { start: i64, end: i64 },
    Alert(&'a Transition),
    RuleQuarantined(&'a Quarantine),
    Summary(&'a Summary),
}

impl<W: Write> Printer<W> {
    pub fn new(kind: OutputKind, out: W) -> Printer<W> {
        Printer { kind, out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn json(&mut self, line: &Line<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }

    pub fn stats(&mut self, r: &StatsReport) -> io::Result<()> {
        if self.kind == OutputKind::Json {
            return self.json(&Line::Stats(r));
        }
        let o = &mut self.out;
        let end_clock = utc(r.end);
        writeln!(
            o,
            "── {} → {} ({}–{}) ──",
            utc(r.start),
            &end_clock[11..],
            r.start,
            r.end
        )?;
        let s = &r.statuses;
        writeln!(
            o,
            "  hits {} · {:.2} req/s · {} · 2xx {} · 3xx {} · 4xx {} · 5xx {}{}",
            r.hits,
            r.rate,
            human_bytes(r.bytes),
            s.success,
            s.redirection,
            s.client_error,
            s.server_error,
            if s.informational + s.other > 0 {
                format!(" · other {}", s.informational + s.other)
            } else {
                String::new()
            }
        )?;
        if !r.sections.is_empty() {
            write!(o, "  sections ")?;
            for sec in &r.sections {
                write!(
                    o,
                    "  {} {} ({:.1}%",
                    sec.section,
                    sec.hits,
                    sec.share * 100.0
                )?;
                if sec.error_rate > 0.0 {
                    write!(o, ", 5xx {:.1}%", sec.error_rate * 100.0)?;
                }
                write!(o, ")")?;
            }
            writeln!(o)?;
            write!(o, "  methods  ")?;
            for m in &r.methods {
                write!(o, "  {} {}", m.name, m.hits)?;
            }
            writeln!(o)?;
            write!(o, "  clients  ")?;
            for c in &r.clients {
                write!(o, "  {} {}", c.name, c.hits)?;
            }
            writeln!(o)?;
        }
        Ok(())
    }

    /// The statistics blocks `start..end` (unix seconds, end exclusive)
    /// had no traffic: one line for the run.
    pub fn quiet(&mut self, start: i64, end: i64) -> io::Result<()> {
        if self.kind == OutputKind::Json {
            return self.json(&Line::Quiet { start, end });
        }
        writeln!(
            self.out,
            "── no traffic from {} to {} ({}–{}) ──",
            utc(start),
            utc(end),
            start,
            end
        )
    }

    pub fn transition(&mut self, t: &Transition) -> io::Result<()> {
        if self.kind == OutputKind::Json {
            return self.json(&Line::Alert(t));
        }
        let tag = match t.state {
            AlertState::Firing => "ALERT",
            AlertState::Resolved => "RECOVERED",
        };
        if t.key.is_empty() {
            writeln!(self.out, "{tag} [{}] {}", t.rule, t.message)
        } else {
            writeln!(self.out, "{tag} [{} {}] {}", t.rule, t.key, t.message)
        }
    }

    pub fn quarantine(&mut self, q: &Quarantine) -> io::Result<()> {
        if self.kind == OutputKind::Json {
            return self.json(&Line::RuleQuarantined(q));
        }
        writeln!(
            self.out,
            "QUARANTINED [{}] at {} ({}): {}",
            q.rule,
            utc(q.at),
            q.at,
            q.reason
        )
    }

    pub fn summary(&mut self, s: &Summary) -> io::Result<()> {
        if self.kind == OutputKind::Json {
            return self.json(&Line::Summary(s));
        }
        writeln!(
            self.out,
            "── end: {} lines, {} events, {} malformed, {} late, {} seconds evaluated, {} alert transitions{}",
            s.lines,
            s.events,
            s.malformed,
            s.late,
            s.seconds,
            s.transitions,
            if s.quarantined > 0 {
                format!(", {} rules quarantined", s.quarantined)
            } else {
                String::new()
            }
        )
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Observer for Printer<W> {
    fn transition(&mut self, t: &Transition) -> io::Result<()> {
        Printer::transition(self, t)
    }

    fn quarantine(&mut self, q: &Quarantine) -> io::Result<()> {
        Printer::quarantine(self, q)
    }

    fn stats(&mut self, r: &StatsReport) -> io::Result<()> {
        Printer::stats(self, r)
    }

    fn quiet(&mut self, from: i64, to: i64) -> io::Result<()> {
        Printer::quiet(self, from, to)
    }

    /// Seconds print nothing of their own, silent runs neither.
    fn silence(&mut self, _from: i64, _to: i64) -> io::Result<()> {
        Ok(())
    }

    fn summary(&mut self, s: &Summary) -> io::Result<()> {
        Printer::summary(self, s)
    }

    fn flush(&mut self) -> io::Result<()> {
        Printer::flush(self)
    }
}
