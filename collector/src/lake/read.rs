//! Reading the lake back in event time, for backtesting (`replay --lake`)
//! and exporting (`lake export`):
//! the partitions of a window hour by hour, and within an hour the rows of
//! all its files merged by time (each file is sorted by time; files of one
//! hour cover different bus ranges, so their times interleave). Only whole
//! files are read (names ending in `.parquet`). A file that cannot be read —
//! truncated, corrupted, not Parquet — is reported with its path and the
//! reason and skipped; the rest goes on.

use super::layout::{self, LakeFile, Partition};
use logmon_protocol::Event;
use logmon_protocol::event::NANOS_PER_SEC;
use parquet::basic::Type;
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};

/// Which columns are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// What the engine's seconds, and so the rules, see: time, method, path,
    /// client, status, bytes (a backtest).
    Engine,
    /// Every field of an [`Event`] (an export that renders log lines).
    Event,
}

/// The lake's events with `from <= second < to` (unix seconds; `None`:
/// unbounded), in time order (ties: file then row order).
#[derive(Debug)]
pub struct LakeEvents {
    projection: Projection,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    /// Hours not opened yet, oldest first.
    hours: VecDeque<Vec<LakeFile>>,
    /// The open hour's files, each with its next event.
    cursors: Vec<Option<Cursor>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    /// Files skipped and why, not yet taken by [`Self::take_problems`].
    problems: Vec<String>,
    /// Rows read (in the window or not).
    pub rows: u64,
    /// Files opened.
    pub files: u64,
}

/// One file, read a row group at a time through its column readers (no
/// per-row records: the values of each column come as one vector).
struct Cursor {
    path: PathBuf,
    reader: SerializedFileReader<std::fs::File>,
    columns: Columns,
    next_group: usize,
    /// The row group being read, as its columns' values.
    group: Group,
    /// The row of `group` that is next (valid while `< group.len()`).
    at: usize,
    /// The time of the previous group's last row, for the order check.
    last_time: i64,
}

/// One row group's values of the columns a backtest reads.
#[derive(Default)]
struct Group {
    time: Vec<i64>,
    method: Vec<ByteArray>,
    path: Vec<ByteArray>,
    client: Vec<ByteArray>,
    status: Vec<i32>,
    bytes: Vec<i64>,
    /// The rest of an event's fields, decoded only for [`Projection::Event`].
    rest: Option<Rest>,
}

/// A row group's values of the event fields a backtest does not need.
struct Rest {
    protocol: Vec<ByteArray>,
    user: Vec<ByteArray>,
    referer: Vec<Option<ByteArray>>,
    user_agent: Vec<Option<ByteArray>>,
    duration_us: Vec<Option<i64>>,
}

impl Group {
    fn len(&self) -> usize {
        self.time.len()
    }
}

/// Where the columns a backtest reads are in a file: what the engine's
/// seconds, and so the rules, see (time, method, path for the section — or
/// the stored section —, client, status, bytes). The others (host, agent,
/// stream, protocol, user, referer, user agent, duration, labels) are not
/// decoded at all.
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns {
    pub time: usize,
    pub section: usize,
    pub method: usize,
    pub path: usize,
    pub client: usize,
    pub status: usize,
    pub bytes: usize,
    /// protocol, user, referer, user_agent, duration_us, for
    /// [`Projection::Event`].
    pub rest: Option<[usize; 5]>,
}

impl Columns {
    /// The columns `projection` needs, each checked to be of the lake
    /// schema's physical type (the typed column readers panic on another).
    fn of(
        reader: &SerializedFileReader<std::fs::File>,
        projection: Projection,
    ) -> Result<Columns, String> {
        let schema = reader.metadata().file_metadata().schema_descr();
        let find = |name: &str, physical: Type| {
            let i = schema
                .columns()
                .iter()
                .position(|c| c.path().string() == name)
                .ok_or_else(|| format!("no `{name}` column"))?;
            match schema.column(i).physical_type() {
                t if t == physical => Ok(i),
                t => Err(format!("the `{name}` column is {t}, not {physical}")),
            }
        };
        Ok(Columns {
            time: find("time", Type::INT64)?,
            section: find("section", Type::BYTE_ARRAY)?,
            method: find("method", Type::BYTE_ARRAY)?,
            path: find("path", Type::BYTE_ARRAY)?,
            client: find("client", Type::BYTE_ARRAY)?,
            status: find("status", Type::INT32)?,
            bytes: find("bytes", Type::INT64)?,
            rest: match projection {
                Projection::Engine => None,
                Projection::Event => Some([
                    find("protocol", Type::BYTE_ARRAY)?,
                    find("user", Type::BYTE_ARRAY)?,
                    find("referer", Type::BYTE_ARRAY)?,
                    find("user_agent", Type::BYTE_ARRAY)?,
                    find("duration_us", Type::INT64)?,
                ]),
            },
        })
    }
}

/// Opens a lake file and finds its columns.
pub(super) fn open_file(
    path: &Path,
    projection: Projection,
) -> Result<(Columns, SerializedFileReader<std::fs::File>), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    Ok((Columns::of(&reader, projection)?, reader))
}

/// The report of a file skipped.
pub(super) fn skipped(path: &Path, reason: &str) -> String {
    format!(
        "{}: skipped, not a readable lake file: {reason}",
        path.display()
    )
}

/// The time of the last of a row group's rows `times`, after checking that
/// they are in order and none is before `previous` (the time of the file's
/// rows before them). Every reader of the lake relies on a file being
/// sorted by time (the writer sorts it and says so in its footer); one that
/// is not is treated as unreadable from that row group on.
pub(super) fn check_sorted(times: &[i64], previous: i64) -> Result<i64, String> {
    let mut last = previous;
    for &t in times {
        if t < last {
            return Err("rows not sorted by time".into());
        }
        last = t;
    }
    Ok(last)
}

/// The hours of `root`'s files that overlap the window (unix seconds),
/// oldest first, each with its files.
pub(super) fn hours(
    root: &Path,
    from: Option<i64>,
    to: Option<i64>,
) -> std::io::Result<VecDeque<Vec<LakeFile>>> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", root.display()),
        ));
    }
    let first = from.map(|s| Partition::of(s * NANOS_PER_SEC));
    let last = to.map(|s| Partition::of(s * NANOS_PER_SEC - 1));
    let mut hours: VecDeque<Vec<LakeFile>> = VecDeque::new();
    for file in layout::scan(root, false)?.files {
        if first.is_some_and(|f| file.partition < f) || last.is_some_and(|l| file.partition > l) {
            continue;
        }
        match hours.back_mut() {
            Some(hour) if hour[0].partition == file.partition => hour.push(file),
            _ => hours.push_back(vec![file]),
        }
    }
    Ok(hours)
}

/// Every value of column `i` of a row group of `n` rows.
pub(super) fn column<T: DataType>(
    group: &dyn RowGroupReader,
    i: usize,
    n: usize,
) -> Result<Vec<T::T>, String> {
    let mut reader =
        get_typed_column_reader::<T>(group.get_column_reader(i).map_err(|e| e.to_string())?);
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        let (records, _, _) = reader
            .read_records(n - values.len(), None, None, &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            break;
        }
    }
    if values.len() != n {
        return Err(format!(
            "column {i} has {} values for {n} rows",
            values.len()
        ));
    }
    Ok(values)
}

/// Every value of optional column `i` of a row group of `n` rows, `None`
/// where the row has none.
fn optional_column<T: DataType>(
    group: &dyn RowGroupReader,
    i: usize,
    n: usize,
) -> Result<Vec<Option<T::T>>, String> {
    let mut reader =
        get_typed_column_reader::<T>(group.get_column_reader(i).map_err(|e| e.to_string())?);
    let (mut values, mut defined) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while defined.len() < n {
        let (records, _, _) = reader
            .read_records(n - defined.len(), Some(&mut defined), None, &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            break;
        }
    }
    let present = defined.iter().filter(|&&d| d > 0).count();
    if defined.len() != n || present != values.len() {
        return Err(format!(
            "column {i} has {} levels and {} values for {n} rows ({present} defined)",
            defined.len(),
            values.len()
        ));
    }
    let mut values = values.into_iter();
    Ok(defined
        .iter()
        .map(|&d| if d > 0 { values.next() } else { None })
        .collect())
}

fn text_of(b: &ByteArray) -> Result<&str, String> {
    std::str::from_utf8(b.data()).map_err(|e| format!("a string column is not UTF-8: {e}"))
}

fn set_optional(to: &mut Option<String>, b: Option<&ByteArray>) -> Result<(), String> {
    match b {
        None => *to = None,
        Some(b) => {
            let text = text_of(b)?;
            match to {
                Some(s) => {
                    s.clear();
                    s.push_str(text);
                }
                None => *to = Some(text.to_owned()),
            }
        }
    }
    Ok(())
}

fn set_text(to: &mut String, b: &ByteArray) -> Result<(), String> {
    let text = text_of(b)?;
    to.clear();
    to.push_str(text);
    Ok(())
}

impl Cursor {
    /// Reads the next row group into `self.group`; false after the last.
    fn load(&mut self) -> Result<bool, String> {
        if self.next_group >= self.reader.num_row_groups() {
            return Ok(false);
        }
        let g = self.next_group;
        self.next_group += 1;
        let c = self.columns;
        let group = self.reader.get_row_group(g).map_err(|e| e.to_string())?;
        let n = usize::try_from(group.metadata().num_rows()).map_err(|e| e.to_string())?;
        let time = column::<Int64Type>(&*group, c.time, n)?;
        let last = check_sorted(&time, self.last_time)?;
        self.group = Group {
            time,
            method: column::<ByteArrayType>(&*group, c.method, n)?,
            path: column::<ByteArrayType>(&*group, c.path, n)?,
            client: column::<ByteArrayType>(&*group, c.client, n)?,
            status: column::<Int32Type>(&*group, c.status, n)?,
            bytes: column::<Int64Type>(&*group, c.bytes, n)?,
            rest: match c.rest {
                None => None,
                Some([protocol, user, referer, user_agent, duration_us]) => Some(Rest {
                    protocol: column::<ByteArrayType>(&*group, protocol, n)?,
                    user: column::<ByteArrayType>(&*group, user, n)?,
                    referer: optional_column::<ByteArrayType>(&*group, referer, n)?,
                    user_agent: optional_column::<ByteArrayType>(&*group, user_agent, n)?,
                    duration_us: optional_column::<Int64Type>(&*group, duration_us, n)?,
                }),
            },
        };
        self.last_time = last;
        self.at = 0;
        Ok(true)
    }

    /// The time of the next row.
    fn time(&self) -> i64 {
        self.group.time[self.at]
    }

    /// The next row into `e`, reusing its strings.
    fn fill(&self, e: &mut Event) -> Result<(), String> {
        let (g, i) = (&self.group, self.at);
        e.timestamp = g.time[i];
        set_text(&mut e.method, &g.method[i])?;
        set_text(&mut e.path, &g.path[i])?;
        set_text(&mut e.client, &g.client[i])?;
        e.status = u16::try_from(g.status[i]).map_err(|e| e.to_string())?;
        e.bytes = g.bytes[i] as u64;
        if let Some(r) = &g.rest {
            set_text(&mut e.protocol, &r.protocol[i])?;
            set_text(&mut e.user, &r.user[i])?;
            set_optional(&mut e.referer, r.referer[i].as_ref())?;
            set_optional(&mut e.user_agent, r.user_agent[i].as_ref())?;
            e.duration_us = r.duration_us[i].map(|d| d as u64);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("path", &self.path).finish()
    }
}

impl LakeEvents {
    /// The files of `root` whose hour overlaps the window, read for
    /// `projection`.
    pub fn open(
        root: &Path,
        from: Option<i64>,
        to: Option<i64>,
        projection: Projection,
    ) -> std::io::Result<LakeEvents> {
        Ok(LakeEvents {
            projection,
            from_ns: from.map(|s| s * NANOS_PER_SEC),
            to_ns: to.map(|s| s * NANOS_PER_SEC),
            hours: hours(root, from, to)?,
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
            problems: Vec::new(),
            rows: 0,
            files: 0,
        })
    }

    /// Files skipped since the last call, each with its path and reason.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// Opens the next hour's files; false when there is none.
    fn next_hour(&mut self) -> bool {
        let Some(files) = self.hours.pop_front() else {
            return false;
        };
        self.cursors.clear();
        self.heap.clear();
        for file in files {
            match open_file(&file.path, self.projection) {
                Ok((columns, reader)) => {
                    self.files += 1;
                    let mut cursor = Cursor {
                        path: file.path,
                        reader,
                        columns,
                        next_group: 0,
                        group: Group::default(),
                        at: 0,
                        last_time: i64::MIN,
                    };
                    if self.ready(&mut cursor) {
                        self.heap.push(Reverse((cursor.time(), self.cursors.len())));
                    }
                    self.cursors.push(Some(cursor));
                }
                Err(reason) => self.skip(&file.path, &reason),
            }
        }
        true
    }

    /// Whether the cursor has a row at `at`, loading row groups as needed;
    /// false at its end or when the file turned out bad (reported, and the
    /// rest of it skipped).
    fn ready(&mut self, cursor: &mut Cursor) -> bool {
        while cursor.at >= cursor.group.len() {
            match cursor.load() {
                Ok(true) => {}
                Ok(false) => return false,
                Err(reason) => {
                    self.skip(&cursor.path, &reason);
                    return false;
                }
            }
        }
        true
    }

    fn skip(&mut self, path: &Path, reason: &str) {
        self.problems.push(skipped(path, reason));
    }
}

impl LakeEvents {
    /// The next event of the window into `e` (its strings reused); false
    /// at the end.
    pub fn next_into(&mut self, e: &mut Event) -> bool {
        loop {
            let Some(Reverse((t, i))) = self.heap.pop() else {
                if self.next_hour() {
                    continue;
                }
                return false;
            };
            let mut cursor = self.cursors[i]
                .take()
                .expect("a cursor in the heap is in its slot");
            let in_window =
                !(self.from_ns.is_some_and(|f| t < f) || self.to_ns.is_some_and(|to| t >= to));
            let filled = if in_window { cursor.fill(e) } else { Ok(()) };
            self.rows += 1;
            cursor.at += 1;
            let ok = filled.is_ok();
            match filled {
                Ok(()) => {
                    if self.ready(&mut cursor) {
                        self.heap.push(Reverse((cursor.time(), i)));
                    }
                }
                // A row that cannot be an event: the rest of its file is
                // skipped, as a file that cannot be read is.
                Err(reason) => self.skip(&cursor.path, &reason),
            }
            self.cursors[i] = Some(cursor);
            if in_window && ok {
                return true;
            }
        }
    }
}
