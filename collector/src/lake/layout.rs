//! Where the lake's files live and what their names say.
//!
//! `ROOT/date=YYYY-MM-DD/hour=HH/events-FIRST-END.parquet`: the UTC hour of
//! the events inside, and the bus range `[FIRST, END)` of the records they
//! came from. Within one partition the ranges of its files never overlap and
//! grow with the bus, so the largest `END` of a partition says which records
//! it already holds: a writer that starts again skips their events for that
//! partition, and a file it writes again after a crash gets the same name.
//! A file is first written as `.events-FIRST-END.parquet.tmp` beside it and
//! renamed when complete (see [`crate::durable`]); a name that ends in
//! `.parquet` is always a whole file, and a temporary one left by a crash is
//! removed by the next [`scan`].

use logmon_protocol::event::NANOS_PER_SEC;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

const NANOS_PER_HOUR: i64 = 3600 * NANOS_PER_SEC;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// One UTC hour of events: hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub i64);

impl Partition {
    /// The hour an event at `timestamp` (ns since the epoch, UTC) falls in.
    pub fn of(timestamp: i64) -> Partition {
        Partition(timestamp.div_euclid(NANOS_PER_HOUR))
    }

    /// `date=YYYY-MM-DD/hour=HH`.
    pub fn relative_dir(&self) -> PathBuf {
        let (days, hour) = (self.0.div_euclid(24), self.0.rem_euclid(24));
        // Every i64 of nanoseconds is within the calendar `time` handles.
        let date = time::Date::from_julian_day((days + UNIX_EPOCH_JULIAN_DAY) as i32)
            .expect("a date within ±292 years of 1970");
        PathBuf::from(format!(
            "date={:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ))
        .join(format!("hour={hour:02}"))
    }

    /// The partition directory names `date` and `hour` stand for.
    pub fn parse(date: &str, hour: &str) -> Option<Partition> {
        let date = date.strip_prefix("date=")?;
        let hour: i64 = hour.strip_prefix("hour=")?.parse().ok()?;
        if !(0..24).contains(&hour) {
            return None;
        }
        let mut parts = date.splitn(3, '-');
        let year: i32 = parts.next()?.parse().ok()?;
        let month: u8 = parts.next()?.parse().ok()?;
        let day: u8 = parts.next()?.parse().ok()?;
        let date =
            time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
        let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
        Some(Partition(days * 24 + hour))
    }

    /// First nanosecond of the hour.
    pub fn start_ns(&self) -> i64 {
        self.0 * NANOS_PER_HOUR
    }
}

/// The bus records `[first, end)` a file's events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub first: u64,
    pub end: u64,
}

const PREFIX: &str = "events-";
const SUFFIX: &str = ".parquet";
const TEMP_SUFFIX: &str = ".parquet.tmp";

impl Range {
    /// `events-FIRST-END.parquet`, both zero-padded so names sort by range.
    pub fn file_name(&self) -> String {
        format!("{PREFIX}{:020}-{:020}{SUFFIX}", self.first, self.end)
    }

    /// The name the file has while it is written.
    pub fn temp_name(&self) -> String {
        format!(".{PREFIX}{:020}-{:020}{TEMP_SUFFIX}", self.first, self.end)
    }

    /// The range a complete file's name carries.
    pub fn parse(name: &str) -> Option<Range> {
        let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (first, end) = middle.split_once('-')?;
        let range = Range {
            first: first.parse().ok()?,
            end: end.parse().ok()?,
        };
        (range.first < range.end).then_some(range)
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with(&format!(".{PREFIX}")) && name.ends_with(TEMP_SUFFIX)
}

/// One complete file of the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    pub partition: Partition,
    pub range: Range,
    pub path: PathBuf,
    pub bytes: u64,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every complete file, by partition then range.
    pub files: Vec<LakeFile>,
    /// Temporary files a crash left, removed.
    pub removed_temps: Vec<PathBuf>,
}

impl Scan {
    /// Per partition, the end of the last range it holds: records before it
    /// are in its files already.
    pub fn covered(&self) -> HashMap<Partition, u64> {
        let mut covered = HashMap::new();
        for f in &self.files {
            let end = covered.entry(f.partition).or_insert(0);
            *end = f.range.end.max(*end);
        }
        covered
    }
}

fn entries(dir: &Path) -> io::Result<Vec<(String, PathBuf, std::fs::FileType)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path(), entry.file_type()?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every partition directory under `root`, in time order.
pub fn partitions(root: &Path) -> io::Result<Vec<(Partition, PathBuf)>> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for (date, date_path, kind) in entries(root)? {
        if !kind.is_dir() || !date.starts_with("date=") {
            continue;
        }
        for (hour, path, kind) in entries(&date_path)? {
            if let (true, Some(p)) = (kind.is_dir(), Partition::parse(&date, &hour)) {
                out.push((p, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Lists the lake's complete files; removes the temporary ones when
/// `clean` (at a writer's start, when no other writer runs).
pub fn scan(root: &Path, clean: bool) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for (partition, dir) in partitions(root)? {
        for (name, path, kind) in entries(&dir)? {
            if !kind.is_file() {
                continue;
            }
            if let Some(range) = Range::parse(&name) {
                let bytes = std::fs::metadata(&path)?.len();
                scan.files.push(LakeFile {
                    partition,
                    range,
                    path,
                    bytes,
                });
            } else if clean && is_temp(&name) {
                std::fs::remove_file(&path)?;
                scan.removed_temps.push(path);
            }
        }
    }
    Ok(scan)
}

/// Deletes the partitions whose hour ended more than `keep_hours` before
/// the hour `now` (and date directories left empty); how many went.
pub fn expire(root: &Path, now: Partition, keep_hours: i64) -> io::Result<usize> {
    let mut removed = 0;
    for (partition, dir) in partitions(root)? {
        if partition.0 + 1 + keep_hours > now.0 {
            continue;
        }
        std::fs::remove_dir_all(&dir)?;
        removed += 1;
        if let Some(date_dir) = dir.parent()
            && std::fs::read_dir(date_dir)?.next().is_none()
        {
            std::fs::remove_dir(date_dir)?;
        }
    }
    if removed > 0 {
        crate::durable::sync_dir(root)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_utc_hours_named_by_date_and_hour() {
        // 2019-02-07 21:11:00 UTC.
        let t = 1_549_573_860 * NANOS_PER_SEC;
        let p = Partition::of(t);
        assert_eq!(
            p.relative_dir(),
            Path::new("date=2019-02-07").join("hour=21")
        );
        assert_eq!(Partition::parse("date=2019-02-07", "hour=21"), Some(p));
        assert!(p.start_ns() <= t && t < p.start_ns() + NANOS_PER_HOUR);
        // The last nanosecond of an hour and the first of the next.
        assert_eq!(Partition::of(p.start_ns() - 1).0, p.0 - 1);
        // Before the epoch, hours floor.
        assert_eq!(
            Partition::of(-1).relative_dir(),
            Path::new("date=1969-12-31").join("hour=23")
        );
        assert_eq!(
            Partition::parse("date=1969-12-31", "hour=23"),
            Some(Partition(-1))
        );
        for bad in [
            ("date=2019-02-30", "hour=01"),
            ("date=2019-02-07", "hour=24"),
            ("2019-02-07", "hour=01"),
            ("date=2019-02-07", "h=01"),
        ] {
            assert_eq!(Partition::parse(bad.0, bad.1), None, "{bad:?}");
        }
    }

    #[test]
    fn file_names_carry_their_bus_range_and_sort_by_it() {
        let r = Range { first: 7, end: 130 };
        assert_eq!(
            r.file_name(),
            "events-00000000000000000007-00000000000000000130.parquet"
        );
        assert_eq!(Range::parse(&r.file_name()), Some(r));
        assert!(is_temp(&r.temp_name()));
        assert_eq!(Range::parse(&r.temp_name()), None);
        let later = Range {
            first: 130,
            end: 1_000,
        };
        assert!(r.file_name() < later.file_name());
        for bad in [
            "events-5-5.parquet",
            "events-9-3.parquet",
            "events-1.parquet",
            "other-1-2.parquet",
            "events-1-2.parquet.tmp",
        ] {
            assert_eq!(Range::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn scan_lists_files_and_removes_only_temporary_ones() {
        let root = tempfile::tempdir().unwrap();
        let p = Partition(430_000);
        let dir = root.path().join(p.relative_dir());
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (Range { first: 0, end: 10 }, Range { first: 10, end: 25 });
        std::fs::write(dir.join(a.file_name()), b"a").unwrap();
        std::fs::write(dir.join(b.file_name()), b"bb").unwrap();
        std::fs::write(dir.join(Range { first: 25, end: 40 }.temp_name()), b"half").unwrap();
        std::fs::write(dir.join("notes.txt"), b"kept").unwrap();
        let looked = scan(root.path(), false).unwrap();
        assert_eq!(looked.files.len(), 2);
        assert!(looked.removed_temps.is_empty());
        let cleaned = scan(root.path(), true).unwrap();
        assert_eq!(cleaned.removed_temps.len(), 1);
        assert_eq!(cleaned.covered()[&p], 25);
        assert_eq!(cleaned.files[1].bytes, 2);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| !is_temp(n)));
    }

    #[test]
    fn expire_deletes_whole_partitions_older_than_kept() {
        let root = tempfile::tempdir().unwrap();
        let now = Partition(24 * 20_000 + 5);
        for p in [now.0 - 30, now.0 - 25, now.0 - 24, now.0] {
            let dir = root.path().join(Partition(p).relative_dir());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(Range { first: 0, end: 1 }.file_name()), b"x").unwrap();
        }
        // Keep 24 hours: the partition that ended 24 hours before `now`
        // started goes, the one after stays.
        assert_eq!(expire(root.path(), now, 24).unwrap(), 2);
        let left: Vec<Partition> = partitions(root.path())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(left, [Partition(now.0 - 24), now]);
        assert_eq!(expire(root.path(), now, 24).unwrap(), 0);
    }
}
