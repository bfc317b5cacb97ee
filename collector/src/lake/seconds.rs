//! A backtest's fast path: the lake's events of a window handed to the
//! engine a second at a time, each second tallied straight from the
//! columns, with no event per row.
//!
//! [`super::read::LakeEvents`] gives the same events one by one, merged by
//! time; the engine then spends, per event, a hash lookup of its section,
//! method and client and a count of its status. Here every row group's
//! string columns come as dictionary indices ([`super::strings`]), turned
//! into per-hour numbers (one lookup per distinct value per row group), so
//! a row costs a few array increments; the second's totals are built from
//! those counts once it is complete, one map entry per distinct value.
//!
//! Why this is exactly the per-event path: the files of an hour are each
//! sorted by time (checked as they are read; a file that is not is
//! reported and the rest of it skipped, on both paths), so the merged
//! events come second by second, and every event of a second arrives
//! before any of a later one. A second's aggregate does not depend on the
//! order of its events, and [`EventTimeEngine::observe_second`] does what
//! observing each of them in a row does. The section is the stored
//! `section` column, which the writer filled with [`Event::section`] of the
//! path, so the path itself is not read.
//!
//! [`Event::section`]: logmon_protocol::Event::section

use super::layout::LakeFile;
use super::read::{Columns, column, hours, open_file, skipped};
use super::strings::Strings;
use crate::engine::EventTimeEngine;
use crate::engine::seconds::{Closer, Observed, SecondStats, SectionAgg};
use logmon_protocol::event::NANOS_PER_SEC;
use parquet::data_type::{Int32Type, Int64Type};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// The lake's events with `from <= second < to` (unix seconds; `None`:
/// unbounded), a second at a time.
#[derive(Debug)]
pub struct LakeSeconds {
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    /// Hours not opened yet, oldest first.
    hours: VecDeque<Vec<LakeFile>>,
    /// The open hour's files that have rows left.
    cursors: Vec<Cursor>,
    /// The open hour's sections, methods and clients, numbered.
    sections: Names,
    methods: Names,
    clients: Names,
    /// The counts of the second being tallied.
    tally: Tally,
    /// Files skipped and why, not yet taken by [`Self::take_problems`].
    problems: Vec<String>,
    /// Rows read (in the window or not), as [`super::read::LakeEvents`]
    /// counts them.
    pub rows: u64,
    /// Files opened.
    pub files: u64,
}

/// Distinct strings of one column within an hour, numbered in the order
/// first seen. Per hour, so a long backtest holds only one hour's clients.
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    fn clear(&mut self) {
        self.ids.clear();
        self.names.clear();
    }

    /// The row group's indices into its dictionary `column` turned into
    /// this hour's numbers. A value that is not UTF-8 becomes
    /// `NOT_TEXT + i`, `i` its place in `errors`.
    fn number(
        &mut self,
        column: Strings,
        errors: &mut Vec<std::str::Utf8Error>,
    ) -> Result<Vec<u32>, String> {
        let mut numbers = Vec::with_capacity(column.values.len());
        for value in column.values {
            numbers.push(match value {
                Ok(name) => match self.ids.get(&name) {
                    Some(&id) => id,
                    None => {
                        let id = u32::try_from(self.names.len())
                            .ok()
                            .filter(|&id| id < NOT_TEXT)
                            .ok_or("too many distinct strings in an hour")?;
                        self.names.push(name.clone());
                        self.ids.insert(name, id);
                        id
                    }
                },
                Err(e) => {
                    errors.push(e);
                    NOT_TEXT.saturating_add(errors.len() as u32 - 1)
                }
            });
        }
        let mut ids = column.ids;
        for id in &mut ids {
            *id = numbers[*id as usize];
        }
        Ok(ids)
    }
}

/// Numbers from here up stand for a value that is not UTF-8 (see
/// [`Names::number`]); an hour's distinct values are numbered below.
const NOT_TEXT: u32 = 1 << 31;

/// One file, a row group at a time.
struct Cursor {
    path: PathBuf,
    reader: SerializedFileReader<std::fs::File>,
    columns: Columns,
    next_group: usize,
    group: Group,
    /// The next row of `group`.
    at: usize,
    /// The time of the previous group's last row, for the order check.
    last_time: i64,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("path", &self.path).finish()
    }
}

/// One row group's columns, the strings as the hour's numbers.
#[derive(Default)]
struct Group {
    time: Vec<i64>,
    section: Vec<u32>,
    method: Vec<u32>,
    client: Vec<u32>,
    status: Vec<i32>,
    bytes: Vec<i64>,
    /// Why the values numbered from [`NOT_TEXT`] down are not text.
    not_text: Vec<std::str::Utf8Error>,
}

/// The counts of one second, indexed by the hour's numbers (status codes by
/// themselves), with the indices counted so far so that only those are
/// visited and reset.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    sections: Vec<SectionAgg>,
    methods: Vec<u64>,
    clients: Vec<u64>,
    statuses: Vec<u64>,
    touched_sections: Vec<u32>,
    touched_methods: Vec<u32>,
    touched_clients: Vec<u32>,
    touched_statuses: Vec<u16>,
}

/// One more at `i` of `counts`, noting `i` the first time.
fn count<T: Copy>(counts: &mut [u64], touched: &mut Vec<T>, i: usize, key: T) {
    if counts[i] == 0 {
        touched.push(key);
    }
    counts[i] += 1;
}

impl Tally {
    /// Room for every number of the hour so far.
    fn fit(&mut self, sections: usize, methods: usize, clients: usize) {
        if self.sections.len() < sections {
            self.sections.resize_with(sections, SectionAgg::default);
        }
        if self.methods.len() < methods {
            self.methods.resize(methods, 0);
        }
        if self.clients.len() < clients {
            self.clients.resize(clients, 0);
        }
        if self.statuses.is_empty() {
            self.statuses.resize(usize::from(u16::MAX) + 1, 0);
        }
    }

    /// Back to no count, the counts unused.
    fn discard(&mut self) {
        for &i in &self.touched_sections {
            self.sections[i as usize] = SectionAgg::default();
        }
        for &i in &self.touched_methods {
            self.methods[i as usize] = 0;
        }
        for &i in &self.touched_clients {
            self.clients[i as usize] = 0;
        }
        for &status in &self.touched_statuses {
            self.statuses[usize::from(status)] = 0;
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.touched_sections.clear();
        self.touched_methods.clear();
        self.touched_clients.clear();
        self.touched_statuses.clear();
        self.events = 0;
    }

    /// The counts into the second `s`, and reset.
    fn drain_into(&mut self, s: &mut SecondStats, names: [&Names; 3]) {
        let [sections, methods, clients] = names;
        for &i in &self.touched_sections {
            let agg = std::mem::take(&mut self.sections[i as usize]);
            s.add_section(&sections.names[i as usize], &agg);
        }
        for &i in &self.touched_methods {
            s.add_method(
                &methods.names[i as usize],
                std::mem::take(&mut self.methods[i as usize]),
            );
        }
        for &i in &self.touched_clients {
            s.add_client(
                &clients.names[i as usize],
                std::mem::take(&mut self.clients[i as usize]),
            );
        }
        for &status in &self.touched_statuses {
            s.add_status(
                status,
                std::mem::take(&mut self.statuses[usize::from(status)]),
            );
        }
        self.clear();
    }
}

impl LakeSeconds {
    /// The files of `root` whose hour overlaps the window.
    pub fn open(root: &Path, from: Option<i64>, to: Option<i64>) -> std::io::Result<LakeSeconds> {
        Ok(LakeSeconds {
            from_ns: from.map(|s| s * NANOS_PER_SEC),
            to_ns: to.map(|s| s * NANOS_PER_SEC),
            hours: hours(root, from, to)?,
            cursors: Vec::new(),
            sections: Names::default(),
            methods: Names::default(),
            clients: Names::default(),
            tally: Tally::default(),
            problems: Vec::new(),
            rows: 0,
            files: 0,
        })
    }

    /// Files skipped since the last call, each with its path and reason.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// The next second of the window that has events, tallied and handed
    /// to `engine` (which may close seconds to `closed` first); false at
    /// the end.
    pub fn next_second(&mut self, engine: &mut EventTimeEngine, closed: &mut impl Closer) -> bool {
        loop {
            self.skip_outside();
            let Some(first) = self.cursors.iter().map(|c| c.group.time[c.at]).min() else {
                if self.next_hour() {
                    continue;
                }
                return false;
            };
            let second = first.div_euclid(NANOS_PER_SEC);
            let end = (second + 1).saturating_mul(NANOS_PER_SEC);
            let mut i = 0;
            while i < self.cursors.len() {
                if self.tally_until(i, end) {
                    i += 1;
                } else {
                    self.cursors.swap_remove(i);
                }
            }
            if self.tally.events == 0 {
                // Only rows that cannot be events (their files reported).
                continue;
            }
            let (tally, names) = (
                &mut self.tally,
                [&self.sections, &self.methods, &self.clients],
            );
            let observed =
                engine.observe_second(second, tally.events, closed, |s| tally.drain_into(s, names));
            if observed == Observed::Late {
                // Not in a backtest's sorted input, but as the engine says.
                tally.discard();
            }
            return true;
        }
    }

    /// Counts the rows of cursor `i` before time `end` (all in the window:
    /// see [`Self::skip_outside`]) into the tally. False when the cursor has
    /// no row left or turned out bad (reported).
    fn tally_until(&mut self, i: usize, end: i64) -> bool {
        loop {
            let c = &mut self.cursors[i];
            let g = &c.group;
            let t = &mut self.tally;
            let mut at = c.at;
            let mut bad = None;
            while at < g.time.len() && g.time[at] < end {
                let (section, method, client) = (g.section[at], g.method[at], g.client[at]);
                if section.max(method).max(client) >= NOT_TEXT {
                    // As `LakeEvents` fills an event: the first value that
                    // is not text, in its order, ends the file.
                    let n = [method, client, section]
                        .into_iter()
                        .find(|&n| n >= NOT_TEXT)
                        .unwrap_or(NOT_TEXT);
                    bad = Some(format!(
                        "a string column is not UTF-8: {}",
                        g.not_text[(n - NOT_TEXT) as usize]
                    ));
                    break;
                }
                let status = match u16::try_from(g.status[at]) {
                    Ok(status) => status,
                    Err(e) => {
                        bad = Some(e.to_string());
                        break;
                    }
                };
                let bytes = g.bytes[at] as u64;
                let agg = &mut t.sections[section as usize];
                if agg.hits == 0 {
                    t.touched_sections.push(section);
                }
                agg.hits += 1;
                agg.bytes += bytes;
                agg.statuses.count(status, 1);
                count(
                    &mut t.methods,
                    &mut t.touched_methods,
                    method as usize,
                    method,
                );
                count(
                    &mut t.clients,
                    &mut t.touched_clients,
                    client as usize,
                    client,
                );
                count(
                    &mut t.statuses,
                    &mut t.touched_statuses,
                    usize::from(status),
                    status,
                );
                t.events += 1;
                at += 1;
            }
            self.rows += (at - c.at) as u64;
            c.at = at;
            if let Some(reason) = bad {
                // The bad row was read, as `LakeEvents` counts it.
                self.rows += 1;
                let path = c.path.clone();
                self.skip(&path, &reason);
                return false;
            }
            if c.at < c.group.time.len() {
                return true;
            }
            if !self.load(i) {
                return false;
            }
        }
    }

    /// Passes over the rows outside the window at the head of each cursor
    /// (read and counted, as `LakeEvents` reads them), dropping the
    /// cursors that end.
    fn skip_outside(&mut self) {
        let (from, to) = (self.from_ns, self.to_ns);
        let outside = |t: i64| from.is_some_and(|f| t < f) || to.is_some_and(|to| t >= to);
        let mut i = 0;
        while i < self.cursors.len() {
            let mut alive = true;
            loop {
                let c = &mut self.cursors[i];
                let skipped = c.group.time[c.at..]
                    .iter()
                    .take_while(|&&t| outside(t))
                    .count();
                c.at += skipped;
                self.rows += skipped as u64;
                if c.at < c.group.time.len() {
                    break;
                }
                if !self.load(i) {
                    alive = false;
                    break;
                }
            }
            if alive {
                i += 1;
            } else {
                self.cursors.swap_remove(i);
            }
        }
    }

    /// Opens the next hour's files (the ones with rows); false when there
    /// is none.
    fn next_hour(&mut self) -> bool {
        let Some(files) = self.hours.pop_front() else {
            return false;
        };
        self.cursors.clear();
        self.sections.clear();
        self.methods.clear();
        self.clients.clear();
        for file in files {
            match open_file(&file.path, super::read::Projection::Engine) {
                Ok((columns, reader)) => {
                    self.files += 1;
                    self.cursors.push(Cursor {
                        path: file.path,
                        reader,
                        columns,
                        next_group: 0,
                        group: Group::default(),
                        at: 0,
                        last_time: i64::MIN,
                    });
                    let i = self.cursors.len() - 1;
                    if !self.load(i) {
                        self.cursors.pop();
                    }
                }
                Err(reason) => self.skip(&file.path, &reason),
            }
        }
        true
    }

    /// Reads cursor `i`'s next row group that has rows; false after its
    /// last, or when the file turned out bad (reported).
    fn load(&mut self, i: usize) -> bool {
        loop {
            let c = &mut self.cursors[i];
            if c.next_group >= c.reader.num_row_groups() {
                return false;
            }
            let loaded = Self::read_group(
                c,
                [&mut self.sections, &mut self.methods, &mut self.clients],
            );
            match loaded {
                Ok(()) if c.group.time.is_empty() => {}
                Ok(()) => {
                    self.tally.fit(
                        self.sections.names.len(),
                        self.methods.names.len(),
                        self.clients.names.len(),
                    );
                    return true;
                }
                Err(reason) => {
                    let path = c.path.clone();
                    self.skip(&path, &reason);
                    return false;
                }
            }
        }
    }

    /// The cursor's next row group into `c.group`, its strings numbered.
    fn read_group(c: &mut Cursor, names: [&mut Names; 3]) -> Result<(), String> {
        let [sections, methods, clients] = names;
        let g = c.next_group;
        c.next_group += 1;
        let k = c.columns;
        let group = c.reader.get_row_group(g).map_err(|e| e.to_string())?;
        let n = usize::try_from(group.metadata().num_rows()).map_err(|e| e.to_string())?;
        let time = column::<Int64Type>(&*group, k.time, n)?;
        let last = super::read::check_sorted(&time, c.last_time)?;
        let section = Strings::read(&*group, k.section, n)?;
        let method = Strings::read(&*group, k.method, n)?;
        let client = Strings::read(&*group, k.client, n)?;
        let status = column::<Int32Type>(&*group, k.status, n)?;
        let bytes = column::<Int64Type>(&*group, k.bytes, n)?;
        let mut not_text = Vec::new();
        c.group = Group {
            time,
            section: sections.number(section, &mut not_text)?,
            method: methods.number(method, &mut not_text)?,
            client: clients.number(client, &mut not_text)?,
            status,
            bytes,
            not_text,
        };
        c.last_time = last;
        c.at = 0;
        Ok(())
    }

    fn skip(&mut self, path: &Path, reason: &str) {
        self.problems.push(skipped(path, reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::encode::tests::source;
    use crate::lake::encode::{Row, encode};
    use crate::lake::layout::{Partition, Range};
    use crate::lake::read::LakeEvents;
    use logmon_protocol::Event;

    /// What an engine handed on, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Close {
        Second(Box<SecondStats>),
        Silence(i64, i64),
    }

    #[derive(Default)]
    struct Record(Vec<Close>);

    impl Closer for Record {
        fn second(&mut self, s: &SecondStats) {
            self.0.push(Close::Second(Box::new(s.clone())));
        }

        fn silence(&mut self, from: i64, to: i64) {
            self.0.push(Close::Silence(from, to));
        }
    }

    /// A lake under `root`: `files` files in each of the hours `hours`
    /// (hours since 2026-01-01), their times interleaved, bursts and quiet
    /// seconds within, rows of several sections, methods, clients and
    /// statuses; row groups of 7 rows, so that they end within seconds.
    fn lake(root: &Path, hours: &[i64], files: u64) {
        let base = 1_767_225_600; // 2026-01-01T00:00:00Z
        let src = source("web-1", &[("env", "prod")]);
        let mut seed = 42u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut bus = 0;
        for &hour in hours {
            let start = (base + hour * 3600) * NANOS_PER_SEC;
            let mut by_file: Vec<Vec<Row>> = (0..files).map(|_| Vec::new()).collect();
            let mut t = start;
            while t < start + 3600 * NANOS_PER_SEC {
                let file = next(files) as usize;
                let path = [
                    "/api/user",
                    "/api/x?y=/z",
                    "/report",
                    "/",
                    "*",
                    "/pages/a/b",
                ][next(6) as usize];
                let mut row = crate::lake::encode::tests::row(&src, t, path);
                row.event.method = ["GET", "POST", "PUT"][next(3) as usize].into();
                row.event.client = format!("10.0.0.{}", next(40));
                row.event.status = [200, 200, 404, 503, 302, 101, 99, 700][next(8) as usize];
                row.event.bytes = next(5000);
                by_file[file].push(row);
                // Mostly dense, now and then a quiet stretch.
                t += match next(50) {
                    0 => 40 * NANOS_PER_SEC,
                    1 => 0,
                    _ => next(NANOS_PER_SEC as u64 / 3) as i64,
                };
            }
            for mut rows in by_file {
                let range = Range {
                    first: bus,
                    end: bus + 1,
                };
                bus += 1;
                let bytes = encode(&mut rows, range, 7).unwrap();
                let dir = root.join(Partition::of(start).relative_dir());
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(range.file_name()), bytes).unwrap();
            }
        }
    }

    /// The per-event path: (what closed, counters, rows, problems).
    fn by_events(
        root: &Path,
        from: Option<i64>,
        to: Option<i64>,
        lateness: u32,
    ) -> (
        Vec<Close>,
        crate::engine::seconds::EngineCounters,
        u64,
        Vec<String>,
    ) {
        let mut events =
            LakeEvents::open(root, from, to, super::super::read::Projection::Engine).unwrap();
        let mut engine = EventTimeEngine::new(lateness);
        let mut closed = Record::default();
        let mut event = Event::empty();
        while events.next_into(&mut event) {
            engine.observe(&event, &mut closed);
        }
        engine.finish(&mut closed);
        (
            closed.0,
            engine.counters(),
            events.rows,
            events.take_problems(),
        )
    }

    /// The fast path, the same.
    fn by_seconds(
        root: &Path,
        from: Option<i64>,
        to: Option<i64>,
        lateness: u32,
    ) -> (
        Vec<Close>,
        crate::engine::seconds::EngineCounters,
        u64,
        Vec<String>,
    ) {
        let mut seconds = LakeSeconds::open(root, from, to).unwrap();
        let mut engine = EventTimeEngine::new(lateness);
        let mut closed = Record::default();
        let mut problems = Vec::new();
        while seconds.next_second(&mut engine, &mut closed) {
            problems.extend(seconds.take_problems());
        }
        problems.extend(seconds.take_problems());
        engine.finish(&mut closed);
        (closed.0, engine.counters(), seconds.rows, problems)
    }

    #[test]
    fn seconds_from_the_columns_are_those_of_the_events() {
        let dir = tempfile::tempdir().unwrap();
        // Three files an hour; hours 2 and 4-5 missing (silences of over
        // an hour, and the quiet stretches within the hours).
        lake(dir.path(), &[0, 1, 3, 6], 3);
        let hour0 = 1_767_225_600;
        for (from, to, lateness) in [
            (None, None, 5),
            (None, None, 0),
            (Some(hour0 + 1800), Some(hour0 + 3 * 3600 + 61), 2),
        ] {
            let events = by_events(dir.path(), from, to, lateness);
            let seconds = by_seconds(dir.path(), from, to, lateness);
            assert!(events.1.accepted > 5_000, "{:?}", events.1);
            assert!(events.0.iter().any(|c| matches!(c, Close::Silence(..))));
            assert_eq!(events.1, seconds.1, "counters, window {from:?}..{to:?}");
            assert_eq!(events.2, seconds.2, "rows");
            assert_eq!(events.3, seconds.3, "problems");
            assert_eq!(events.0.len(), seconds.0.len());
            for (e, s) in events.0.iter().zip(&seconds.0) {
                assert_eq!(e, s);
            }
        }
    }

    #[test]
    fn an_unreadable_file_is_skipped_by_both_paths_alike() {
        let dir = tempfile::tempdir().unwrap();
        lake(dir.path(), &[0], 2);
        let hour = dir
            .path()
            .join(Partition::of(1_767_225_600 * NANOS_PER_SEC).relative_dir());
        std::fs::write(
            hour.join(Range { first: 7, end: 8 }.file_name()),
            b"not parquet",
        )
        .unwrap();
        // A file cut short: its footer is gone.
        let whole = std::fs::read(hour.join(Range { first: 0, end: 1 }.file_name())).unwrap();
        std::fs::write(
            hour.join(Range { first: 9, end: 10 }.file_name()),
            &whole[..whole.len() / 2],
        )
        .unwrap();
        let events = by_events(dir.path(), None, None, 5);
        let seconds = by_seconds(dir.path(), None, None, 5);
        assert_eq!(events.3.len(), 2, "{:?}", events.3);
        assert_eq!(events, seconds);
    }
}
