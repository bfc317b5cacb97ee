//! Reading the lake back in event time, for backtesting (`replay --lake`):
//! the partitions of a window hour by hour, and within an hour the rows of
//! all its files merged by time (each file is sorted by time; files of one
//! hour cover different bus ranges, so their times interleave). Only whole
//! files are read (names ending in `.parquet`). A file that cannot be read —
//! truncated, corrupted, not Parquet — is reported with its path and the
//! reason and skipped; the rest goes on.

use super::layout::{self, LakeFile, Partition};
use logmon_protocol::Event;
use logmon_protocol::event::NANOS_PER_SEC;
use parquet::file::reader::SerializedFileReader;
use parquet::record::{Field, Row, reader::RowIter};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};

/// The lake's events with `from <= second < to` (unix seconds; `None`:
/// unbounded), in time order (ties: file then row order).
#[derive(Debug)]
pub struct LakeEvents {
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

struct Cursor {
    path: PathBuf,
    rows: RowIter<'static>,
    next: Option<Event>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("path", &self.path).finish()
    }
}

impl LakeEvents {
    /// The files of `root` whose hour overlaps the window.
    pub fn open(root: &Path, from: Option<i64>, to: Option<i64>) -> std::io::Result<LakeEvents> {
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
            if first.is_some_and(|f| file.partition < f) || last.is_some_and(|l| file.partition > l)
            {
                continue;
            }
            match hours.back_mut() {
                Some(hour) if hour[0].partition == file.partition => hour.push(file),
                _ => hours.push_back(vec![file]),
            }
        }
        Ok(LakeEvents {
            from_ns: from.map(|s| s * NANOS_PER_SEC),
            to_ns: to.map(|s| s * NANOS_PER_SEC),
            hours,
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
            let opened = std::fs::File::open(&file.path)
                .map_err(|e| e.to_string())
                .and_then(|f| SerializedFileReader::new(f).map_err(|e| e.to_string()));
            match opened {
                Ok(reader) => {
                    self.files += 1;
                    let mut cursor = Cursor {
                        path: file.path,
                        rows: reader.into_iter(),
                        next: None,
                    };
                    if self.advance(&mut cursor) {
                        let at = cursor.next.as_ref().map_or(0, |e| e.timestamp);
                        self.heap.push(Reverse((at, self.cursors.len())));
                    }
                    self.cursors.push(Some(cursor));
                }
                Err(reason) => self.skip(&file.path, &reason),
            }
        }
        true
    }

    /// Reads the cursor's next row; false at its end or when the file
    /// turned out bad (reported, and the rest of it skipped).
    fn advance(&mut self, cursor: &mut Cursor) -> bool {
        cursor.next = None;
        let Some(row) = cursor.rows.next() else {
            return false;
        };
        match row.map_err(|e| e.to_string()).and_then(|r| event(&r)) {
            Ok(event) => {
                self.rows += 1;
                cursor.next = Some(event);
                true
            }
            Err(reason) => {
                self.skip(&cursor.path, &reason);
                false
            }
        }
    }

    fn skip(&mut self, path: &Path, reason: &str) {
        self.problems.push(format!(
            "{}: skipped, not a readable lake file: {reason}",
            path.display()
        ));
    }
}

impl Iterator for LakeEvents {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                if self.next_hour() {
                    continue;
                }
                return None;
            };
            let mut cursor = self.cursors[i].take().expect("a cursor in the heap is in its slot");
            let event = cursor.next.take().expect("a cursor in the heap has an event");
            if self.advance(&mut cursor) {
                let at = cursor.next.as_ref().map_or(0, |e| e.timestamp);
                self.heap.push(Reverse((at, i)));
            }
            self.cursors[i] = Some(cursor);
            let t = event.timestamp;
            if self.from_ns.is_some_and(|f| t < f) || self.to_ns.is_some_and(|to| t >= to) {
                continue;
            }
            return Some(event);
        }
    }
}

/// One row of the lake's schema as an event.
fn event(row: &Row) -> Result<Event, String> {
    let mut e = Event::empty();
    let mut time = None;
    for (name, field) in row.get_column_iter() {
        match (name.as_str(), field) {
            ("time", Field::Long(v)) => time = Some(*v),
            ("method", Field::Str(s)) => e.method.clone_from(s),
            ("path", Field::Str(s)) => e.path.clone_from(s),
            ("protocol", Field::Str(s)) => e.protocol.clone_from(s),
            ("client", Field::Str(s)) => e.client.clone_from(s),
            ("user", Field::Str(s)) => e.user.clone_from(s),
            ("status", Field::UShort(v)) => e.status = *v,
            ("bytes", Field::ULong(v)) => e.bytes = *v,
            ("referer", Field::Str(s)) => e.referer = Some(s.clone()),
            ("user_agent", Field::Str(s)) => e.user_agent = Some(s.clone()),
            ("duration_us", Field::ULong(v)) => e.duration_us = Some(*v),
            (
                "method" | "path" | "protocol" | "client" | "user" | "status" | "bytes" | "time",
                other,
            ) => return Err(format!("column `{name}` holds {other:?}")),
            _ => {}
        }
    }
    e.timestamp = time.ok_or("no `time` column")?;
    Ok(e)
}
