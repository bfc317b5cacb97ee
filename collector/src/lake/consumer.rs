//! The lake writer as a bus consumer (`lake`): reads stored batches, keeps
//! their events per UTC hour in memory, writes a partition's rows as one
//! Parquet file when it holds [`LakeConfig::file_rows`] rows (or all open
//! partitions together do: then the largest), or [`LakeConfig::flush_after`]
//! after its first row came, and commits the bus position only after the
//! file is renamed into place and synced.
//!
//! The committed position is the first record of the oldest partition still
//! in memory: a restart reads again everything not yet in a file. A record
//! whose events went partly into a file already (another partition was
//! written, this one was not) is read again whole; the events of a
//! partition whose files already cover that record (the largest range end
//! there, see [`crate::lake::layout`]) are skipped, so nothing is written
//! twice. The size rule depends only on the bus's records, so a file lost
//! to a crash before its rename is written again under the same name.
//!
//! A failure (a local I/O error: disk full, permissions) ends the run with
//! the error; the supervisor shows it in `/health` and starts the writer
//! again after a backoff, from the committed position.

use super::LakeConfig;
use super::encode::{Row, Source, encode};
use super::layout::{self, Partition, Range};
use crate::bus::records::RecordDecoder;
use crate::bus::{BusError, EventBus};
use crate::http::status::MetricsSource;
use logmon_protocol::wire::Batch;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The lake writer's consumer name in the bus.
pub const CONSUMER: &str = "lake";

/// How often partitions past their retention are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);
/// Wait between reads when the bus has nothing new.
const IDLE: Duration = Duration::from_millis(200);

/// Why the lake writer stopped. The cause is part of the message (not a
/// separate source), so that the supervisor's report says it once.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("encoding a Parquet file for {path}: {error}")]
    Encode {
        path: PathBuf,
        error: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Write(#[from] crate::durable::WriteError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LakeError {
    let path = path.to_path_buf();
    move |error| LakeError::Io {
        action,
        path,
        error,
    }
}

/// Counters of the lake writer (`/metrics`).
#[derive(Debug, Default)]
pub struct LakeCounters {
    /// Bus records with events read.
    pub batches: AtomicU64,
    /// Rows in files written.
    pub rows: AtomicU64,
    pub files: AtomicU64,
    /// Bytes of the files written.
    pub bytes: AtomicU64,
    /// Events read again after a restart that a file already held.
    pub skipped_rows: AtomicU64,
    /// Runs that ended with an error (each started again by the supervisor).
    pub failures: AtomicU64,
    pub undecodable: AtomicU64,
    /// Temporary files of interrupted writes removed at a start.
    pub temps_removed: AtomicU64,
    /// Partitions deleted past their retention.
    pub expired_partitions: AtomicU64,
    /// Rows in memory, waiting for their file.
    pub buffered_rows: AtomicU64,
    /// The committed position: every event before it is in a file.
    pub offset: AtomicU64,
}

impl MetricsSource for LakeCounters {
    fn render(&self, out: &mut String) {
        use logmon_protocol::prometheus::{Kind, Text};
        let mut text = Text::new();
        let families: [(&str, Kind, &str, &AtomicU64); 11] = [
            (
                "logmon_lake_batches_total",
                Kind::Counter,
                "Bus records with events the lake writer read.",
                &self.batches,
            ),
            (
                "logmon_lake_rows_total",
                Kind::Counter,
                "Rows written to lake files.",
                &self.rows,
            ),
            (
                "logmon_lake_files_total",
                Kind::Counter,
                "Lake files written (renamed into place).",
                &self.files,
            ),
            (
                "logmon_lake_bytes_total",
                Kind::Counter,
                "Bytes of the lake files written.",
                &self.bytes,
            ),
            (
                "logmon_lake_skipped_rows_total",
                Kind::Counter,
                "Events read again after a restart that a lake file already held.",
                &self.skipped_rows,
            ),
            (
                "logmon_lake_failures_total",
                Kind::Counter,
                "Lake writer runs that failed (started again after a backoff).",
                &self.failures,
            ),
            (
                "logmon_lake_undecodable_total",
                Kind::Counter,
                "Bus records the lake writer could not decode (skipped, like the engine's).",
                &self.undecodable,
            ),
            (
                "logmon_lake_temp_files_removed_total",
                Kind::Counter,
                "Temporary files of interrupted lake writes removed at a start.",
                &self.temps_removed,
            ),
            (
                "logmon_lake_expired_partitions_total",
                Kind::Counter,
                "Hour partitions deleted past the lake's retention.",
                &self.expired_partitions,
            ),
            (
                "logmon_lake_buffered_rows",
                Kind::Gauge,
                "Rows in memory waiting for their lake file.",
                &self.buffered_rows,
            ),
            (
                "logmon_lake_bus_offset",
                Kind::Gauge,
                "The lake writer's committed bus position (every event before it is in a file).",
                &self.offset,
            ),
        ];
        for (name, kind, help, value) in families {
            text.single(name, kind, help, value.load(Ordering::Relaxed));
        }
        out.push_str(text.as_str());
    }
}

/// The rows of one partition waiting for their file.
#[derive(Debug)]
struct Open {
    /// The first bus record with rows here, and one past the last.
    range: Range,
    rows: Vec<Row>,
    opened: Instant,
}

/// The lake writer's state between bus records (see the module docs).
#[derive(Debug)]
pub struct LakeWriter {
    config: LakeConfig,
    /// Per partition, the end of the last range its files hold.
    covered: HashMap<Partition, u64>,
    open: BTreeMap<Partition, Open>,
    buffered: usize,
    /// The next bus record to read.
    next: u64,
    counters: Arc<LakeCounters>,
}

impl LakeWriter {
    /// A writer that reads from bus record `from` (the committed position);
    /// removes what interrupted writes left and learns what the files hold.
    pub fn open(
        config: LakeConfig,
        from: u64,
        counters: Arc<LakeCounters>,
    ) -> Result<LakeWriter, LakeError> {
        std::fs::create_dir_all(&config.dir).map_err(io("creating", &config.dir))?;
        let scan = layout::scan(&config.dir, true).map_err(io("scanning", &config.dir))?;
        for temp in &scan.removed_temps {
            tracing::warn!(
                file = %temp.display(),
                "removed a lake file an interrupted write left; its rows are written again"
            );
        }
        counters
            .temps_removed
            .fetch_add(scan.removed_temps.len() as u64, Ordering::Relaxed);
        counters.offset.store(from, Ordering::Relaxed);
        Ok(LakeWriter {
            covered: scan.covered(),
            config,
            open: BTreeMap::new(),
            buffered: 0,
            next: from,
            counters,
        })
    }

    /// The next bus record to read.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Where a restart would have to read from: the first record of the
    /// oldest partition in memory, or the next record.
    pub fn position(&self) -> u64 {
        self.open
            .values()
            .map(|o| o.range.first)
            .min()
            .unwrap_or(self.next)
            .min(self.next)
    }

    /// Rows in memory.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes bus record `offset` (`None`: it did not decode): its events go
    /// to their partitions, except those a file already holds.
    pub fn add(&mut self, offset: u64, batch: Option<Batch>) {
        debug_assert!(offset >= self.next, "records are read in order");
        self.next = offset + 1;
        let Some(batch) = batch else { return };
        if batch.events.is_empty() {
            return;
        }
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        let source = Arc::new(Source {
            host: batch.host,
            agent: batch.agent_id,
            stream: batch.stream.path,
            fingerprint: batch.stream.fingerprint,
            labels: batch.labels,
        });
        let mut skipped = 0;
        for event in batch.events {
            let partition = Partition::of(event.timestamp);
            if self
                .covered
                .get(&partition)
                .is_some_and(|&end| offset < end)
            {
                skipped += 1;
                continue;
            }
            let open = self.open.entry(partition).or_insert_with(|| Open {
                range: Range {
                    first: offset,
                    end: offset + 1,
                },
                rows: Vec::new(),
                opened: Instant::now(),
            });
            open.range.end = offset + 1;
            open.rows.push(Row {
                source: Arc::clone(&source),
                event,
            });
            self.buffered += 1;
        }
        self.counters
            .skipped_rows
            .fetch_add(skipped, Ordering::Relaxed);
        self.counters
            .buffered_rows
            .store(self.buffered as u64, Ordering::Relaxed);
    }

    /// The partition to write now by the size rule: while the rows in
    /// memory reach `file_rows`, the partition with the most (the earliest
    /// of equals).
    pub fn oversized(&self) -> Option<Partition> {
        if self.buffered < self.config.file_rows {
            return None;
        }
        self.open
            .iter()
            .max_by(|a, b| a.1.rows.len().cmp(&b.1.rows.len()).then(b.0.cmp(a.0)))
            .map(|(p, _)| *p)
    }

    /// The partitions whose first row came `flush_after` ago or more.
    pub fn stale(&self, now: Instant) -> Vec<Partition> {
        self.open
            .iter()
            .filter(|(_, o)| now.duration_since(o.opened) >= self.config.flush_after)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Writes `partition`'s rows as one file, renamed into place and
    /// synced; its path.
    pub fn flush(&mut self, partition: Partition) -> Result<Option<PathBuf>, LakeError> {
        let Some(mut open) = self.open.remove(&partition) else {
            return Ok(None);
        };
        let dir = self.config.dir.join(partition.relative_dir());
        let path = dir.join(open.range.file_name());
        let bytes =
            encode(&mut open.rows, open.range, self.config.row_group_rows).map_err(|error| {
                LakeError::Encode {
                    path: path.clone(),
                    error,
                }
            })?;
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            if self.config.fsync {
                // The new directories' entries, so that a machine crash
                // keeps the file once its position is committed.
                for d in [dir.parent(), Some(self.config.dir.as_path())]
                    .into_iter()
                    .flatten()
                {
                    crate::durable::sync_dir(d).map_err(io("syncing", d))?;
                }
            }
        }
        crate::durable::replace(
            &path,
            &dir.join(open.range.temp_name()),
            &bytes,
            crate::durable::Options {
                fsync: self.config.fsync,
                pause_halfway: crate::faults::lake_pause(),
            },
        )?;
        self.covered.insert(partition, open.range.end);
        self.buffered -= open.rows.len();
        let c = &self.counters;
        c.rows.fetch_add(open.rows.len() as u64, Ordering::Relaxed);
        c.files.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        c.buffered_rows
            .store(self.buffered as u64, Ordering::Relaxed);
        tracing::debug!(file = %path.display(), rows = open.rows.len(), bytes = bytes.len(), "lake file written");
        Ok(Some(path))
    }

    /// Writes every partition in memory.
    pub fn flush_all(&mut self) -> Result<(), LakeError> {
        let partitions: Vec<Partition> = self.open.keys().copied().collect();
        for p in partitions {
            self.flush(p)?;
        }
        Ok(())
    }

    /// Deletes the partitions past the retention, as of the wall clock
    /// `now_ns`; how many went.
    pub fn expire(&mut self, now_ns: i64) -> Result<usize, LakeError> {
        let Some(days) = self.config.retention_days else {
            return Ok(0);
        };
        let removed = layout::expire(
            &self.config.dir,
            Partition::of(now_ns),
            i64::from(days) * 24,
        )
        .map_err(io("expiring partitions in", &self.config.dir))?;
        self.counters
            .expired_partitions
            .fetch_add(removed as u64, Ordering::Relaxed);
        if removed > 0 {
            tracing::info!(
                partitions = removed,
                days,
                "deleted lake partitions past the retention"
            );
        }
        Ok(removed)
    }
}

/// Consume the bus into the lake until `shutdown` (at once: what is in
/// memory is read again at the next start), or until everything there is
/// is in files once `drain` is cancelled.
pub async fn run(
    bus: Arc<dyn EventBus>,
    config: LakeConfig,
    counters: Arc<LakeCounters>,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> anyhow::Result<()> {
    let result = {
        let (bus, counters) = (Arc::clone(&bus), Arc::clone(&counters));
        tokio::task::spawn_blocking(move || consume(&*bus, config, &counters, &shutdown, &drain))
            .await?
    };
    if let Err(e) = &result {
        counters.failures.fetch_add(1, Ordering::Relaxed);
        bus.report_problem(CONSUMER, Some(format!("lake writer failed: {e}")));
    }
    Ok(result?)
}

fn commit(
    bus: &dyn EventBus,
    writer: &LakeWriter,
    counters: &LakeCounters,
    committed: &mut u64,
) -> Result<(), LakeError> {
    let position = writer.position();
    if position > *committed {
        bus.commit(CONSUMER, position)?;
        *committed = position;
        counters.offset.store(position, Ordering::Relaxed);
    }
    Ok(())
}

fn consume(
    bus: &dyn EventBus,
    config: LakeConfig,
    counters: &Arc<LakeCounters>,
    shutdown: &CancellationToken,
    drain: &CancellationToken,
) -> Result<(), LakeError> {
    // Declared at start, before ingest accepted anything: gc keeps every
    // record this consumer has not committed.
    let mut committed = bus.position(CONSUMER)?;
    let mut writer = LakeWriter::open(config, committed, Arc::clone(counters))?;
    let mut decoder = RecordDecoder::new(CONSUMER, bus.limits());
    let mut expired_at: Option<Instant> = None;
    let mut problem = true;
    while !shutdown.is_cancelled() {
        if expired_at.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY) {
            writer.expire(crate::clock::now_ms() * 1_000_000)?;
            expired_at = Some(Instant::now());
        }
        let records = bus.read(writer.next_offset(), 64, 32 << 20)?;
        let caught_up = records.is_empty();
        for (at, record) in &records {
            let batch = decoder.decode(*at, record, &counters.undecodable);
            writer.add(*at, batch);
            while let Some(p) = writer.oversized() {
                writer.flush(p)?;
            }
        }
        for p in writer.stale(Instant::now()) {
            writer.flush(p)?;
        }
        if caught_up && drain.is_cancelled() {
            writer.flush_all()?;
        }
        commit(bus, &writer, counters, &mut committed)?;
        if problem && (writer.buffered() == 0 || counters.files.load(Ordering::Relaxed) > 0) {
            // Whatever stopped an earlier run no longer does.
            bus.report_problem(CONSUMER, None);
            problem = false;
        }
        if caught_up {
            if drain.is_cancelled() {
                break;
            }
            std::thread::sleep(IDLE);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::encode::tests::read_back;
    use super::*;
    use logmon_protocol::wire::StreamId;
    use logmon_protocol::{Event, Format};

    const HOUR: i64 = 3600 * 1_000_000_000;
    /// 2019-02-07 21:00:00 UTC.
    const T0: i64 = 1_549_573_200 * 1_000_000_000;

    fn config(dir: &std::path::Path, file_rows: usize) -> LakeConfig {
        LakeConfig {
            file_rows,
            row_group_rows: 4,
            flush_after: Duration::from_secs(3600),
            fsync: false,
            ..LakeConfig::new(dir.to_path_buf())
        }
    }

    /// Bus record `n`: three events, the last one in the next hour when
    /// `straddle`.
    fn batch(n: u64, straddle: bool) -> Batch {
        let event = |i: u64, t: i64| Event {
            timestamp: t,
            path: format!("/r{n}/e{i}"),
            method: "GET".into(),
            status: 200,
            ..Event::default()
        };
        let base = T0 + n as i64 * 1_000_000_000;
        Batch {
            agent_id: "agent".into(),
            host: "web-1".into(),
            stream: StreamId {
                fingerprint: 9,
                path: "/var/log/a.log".into(),
            },
            start: n * 100,
            end: (n + 1) * 100,
            format: Format::Combined,
            labels: vec![("env".into(), "test".into())],
            events: vec![
                event(0, base + 2),
                event(1, base + 1),
                event(2, if straddle { base + HOUR } else { base + 3 }),
            ],
            malformed: 0,
            caught_up: false,
            finished: false,
            sent_at: 0,
        }
    }

    /// Every (partition dir, file name) of the lake, and all rows' paths.
    fn lake(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
        let scan = layout::scan(dir, false).unwrap();
        let names = scan
            .files
            .iter()
            .map(|f| {
                format!(
                    "{}/{}",
                    f.partition.relative_dir().display(),
                    f.range.file_name()
                )
            })
            .collect();
        let mut paths: Vec<String> = scan
            .files
            .iter()
            .flat_map(|f| read_back(std::fs::read(&f.path).unwrap()))
            .map(|r| r.1)
            .collect();
        paths.sort();
        (names, paths)
    }

    /// The sorted paths of records `records` made by [`batch`], each
    /// straddling an hour when `straddle` says so.
    fn paths_of(records: std::ops::Range<u64>, straddle: impl Fn(u64) -> bool) -> Vec<String> {
        let mut paths: Vec<String> = records
            .flat_map(|n| batch(n, straddle(n)).events)
            .map(|e| e.path)
            .collect();
        paths.sort();
        paths
    }

    /// A local bus in `dir` with the lake writer declared.
    fn local_bus(dir: &std::path::Path) -> crate::bus::LocalBus {
        let log = crate::bus::LogConfig {
            fsync: false,
            ..crate::bus::LogConfig::new(dir.join("bus"))
        };
        let (bus, ..) = crate::bus::LocalBus::open(log, Default::default()).unwrap();
        bus.declare(&[CONSUMER]).unwrap();
        bus
    }

    #[test]
    fn files_cover_the_ranges_of_their_records_and_the_position_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(config(dir.path(), 8), 0, Arc::default()).unwrap();
        for n in 0..3 {
            w.add(n, Some(batch(n, true)));
        }
        // 6 rows in hour 21 (records 0..3), 3 in hour 22: 9 ≥ 8, so hour 21
        // goes; hour 22 still holds record 0, the position stays there.
        assert_eq!(w.oversized(), Some(Partition::of(T0)));
        let file = w.flush(Partition::of(T0)).unwrap().unwrap();
        assert!(file.ends_with(
            "date=2019-02-07/hour=21/events-00000000000000000000-00000000000000000003.parquet"
        ));
        assert_eq!(w.oversized(), None);
        assert_eq!(w.position(), 0);
        w.add(3, None);
        w.flush_all().unwrap();
        assert_eq!(w.position(), 4);
        let (names, paths) = lake(dir.path());
        assert_eq!(
            names,
            [
                "date=2019-02-07/hour=21/events-00000000000000000000-00000000000000000003.parquet",
                "date=2019-02-07/hour=22/events-00000000000000000000-00000000000000000003.parquet",
            ]
        );
        assert_eq!(paths, paths_of(0..3, |_| true));
        // Sorted by time within the file.
        let rows = read_back(std::fs::read(&file).unwrap());
        assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(rows[0].3, "env=test");
    }

    #[test]
    fn a_crash_between_write_and_rename_leaves_a_temp_file_the_restart_removes_and_writes_again() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(LakeCounters::default());
        let (before, temp) = {
            let mut w = LakeWriter::open(config(dir.path(), 6), 0, Arc::clone(&counters)).unwrap();
            w.add(0, Some(batch(0, false)));
            w.add(1, Some(batch(1, false)));
            let p = w.oversized().unwrap();
            let path = w.flush(p).unwrap().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            // What a crash halfway through the write leaves: half a
            // temporary file, nothing under the final name.
            let range = Range::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
            let temp = path.with_file_name(range.temp_name());
            std::fs::write(&temp, &bytes[..bytes.len() / 2]).unwrap();
            std::fs::remove_file(&path).unwrap();
            (bytes, temp)
        };
        assert_eq!(lake(dir.path()).0.len(), 0, "no half file is visible");
        // The restart, from the position that was never committed.
        let mut w = LakeWriter::open(config(dir.path(), 6), 0, Arc::clone(&counters)).unwrap();
        assert!(!temp.exists());
        assert_eq!(counters.temps_removed.load(Ordering::Relaxed), 1);
        w.add(0, Some(batch(0, false)));
        w.add(1, Some(batch(1, false)));
        let path = w.flush(w.oversized().unwrap()).unwrap().unwrap();
        // The same name and the same bytes.
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(lake(dir.path()).1, paths_of(0..2, |_| false));
    }

    #[test]
    fn a_restart_after_a_rename_before_the_commit_writes_no_row_twice() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(LakeCounters::default());
        let committed = {
            let mut w = LakeWriter::open(config(dir.path(), 8), 0, Arc::clone(&counters)).unwrap();
            for n in 0..5 {
                w.add(n, Some(batch(n, true)));
                while let Some(p) = w.oversized() {
                    w.flush(p).unwrap();
                }
            }
            // Hour 21 is in files; hour 22 still holds record 3 on.
            w.position()
        };
        assert!(committed > 0);
        let mut w = LakeWriter::open(config(dir.path(), 8), committed, counters.clone()).unwrap();
        for n in committed..8 {
            w.add(n, Some(batch(n, true)));
            while let Some(p) = w.oversized() {
                w.flush(p).unwrap();
            }
        }
        w.flush_all().unwrap();
        assert!(counters.skipped_rows.load(Ordering::Relaxed) > 0);
        assert_eq!(lake(dir.path()).1, paths_of(0..8, |_| true));
        assert_eq!(w.position(), 8);
    }

    #[test]
    fn the_size_rule_gives_the_same_files_whatever_the_restarts() {
        // Straight through, and with a restart from the committed position
        // after every record: the same file names.
        let straight = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(config(straight.path(), 7), 0, Arc::default()).unwrap();
        for n in 0..12 {
            w.add(n, Some(batch(n, n % 3 == 0)));
            while let Some(p) = w.oversized() {
                w.flush(p).unwrap();
            }
        }
        w.flush_all().unwrap();
        let restarted = tempfile::tempdir().unwrap();
        let mut position = 0;
        for n in 0..12 {
            let mut w =
                LakeWriter::open(config(restarted.path(), 7), position, Arc::default()).unwrap();
            for m in position..=n {
                w.add(m, Some(batch(m, m % 3 == 0)));
                while let Some(p) = w.oversized() {
                    w.flush(p).unwrap();
                }
            }
            if n == 11 {
                w.flush_all().unwrap();
            }
            position = w.position();
        }
        assert_eq!(lake(straight.path()), lake(restarted.path()));
        assert_eq!(lake(straight.path()).1, paths_of(0..12, |n| n % 3 == 0));
    }

    #[test]
    fn retention_deletes_partitions_older_than_its_days_and_nothing_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(LakeCounters::default());
        let mut w = LakeWriter::open(config(dir.path(), 100), 0, Arc::clone(&counters)).unwrap();
        for n in 0..2 {
            w.add(n, Some(batch(n, true)));
        }
        w.flush_all().unwrap();
        assert_eq!(layout::partitions(dir.path()).unwrap().len(), 2);
        // Without retention, nothing goes however old.
        assert_eq!(w.expire(T0 + 400 * 24 * HOUR).unwrap(), 0);
        let mut w = LakeWriter::open(
            LakeConfig {
                retention_days: Some(1),
                ..config(dir.path(), 100)
            },
            2,
            Arc::clone(&counters),
        )
        .unwrap();
        // A day after hour 21 ended, hour 21 goes and hour 22 stays.
        assert_eq!(w.expire(T0 + 25 * HOUR).unwrap(), 1);
        let left = layout::partitions(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, Partition::of(T0 + HOUR));
        assert_eq!(counters.expired_partitions.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_io_error_ends_the_run_reported_and_the_next_run_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(local_bus(dir.path()));
        // A file where the lake's directory should be.
        let lake = dir.path().join("lake");
        std::fs::write(&lake, b"in the way").unwrap();
        let counters = Arc::new(LakeCounters::default());
        let drain = CancellationToken::new();
        drain.cancel();
        let run_once = || {
            run(
                Arc::clone(&bus),
                config(&lake, 10),
                Arc::clone(&counters),
                CancellationToken::new(),
                drain.clone(),
            )
        };
        let err = run_once().await.unwrap_err().to_string();
        assert!(err.contains("creating") && err.contains("lake"), "{err}");
        assert_eq!(counters.failures.load(Ordering::Relaxed), 1);
        let status = |bus: &Arc<dyn EventBus>| {
            bus.consumers()
                .into_iter()
                .find(|c| c.name == CONSUMER)
                .unwrap()
        };
        let problem = status(&bus).problem.unwrap();
        assert!(
            problem.starts_with("lake writer failed: creating"),
            "{problem}"
        );
        // Space for the lake again: the next run (the supervisor's restart)
        // goes on and says the problem is over.
        std::fs::remove_file(&lake).unwrap();
        run_once().await.unwrap();
        assert_eq!(status(&bus).problem, None);
        assert!(lake.is_dir());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_consumer_writes_every_event_of_the_bus_and_commits_after_the_files() {
        use crate::bus::{Append, StreamKey};
        let dir = tempfile::tempdir().unwrap();
        let bus = local_bus(dir.path());
        let stream = StreamKey {
            agent_id: "agent".into(),
            fingerprint: 9,
        };
        for n in 0..20 {
            let b = batch(n, n % 4 == 0);
            let body = logmon_protocol::wire::encode(&b, 1).unwrap();
            bus.append(&[Append {
                body: &body,
                stream: &stream,
                start: b.start,
                end: b.end,
                after: None,
            }])
            .unwrap();
        }
        let bus: Arc<dyn EventBus> = Arc::new(bus);
        let counters = Arc::new(LakeCounters::default());
        let (shutdown, drain) = (CancellationToken::new(), CancellationToken::new());
        drain.cancel();
        run(
            Arc::clone(&bus),
            config(&dir.path().join("lake"), 10),
            Arc::clone(&counters),
            shutdown,
            drain,
        )
        .await
        .unwrap();
        assert_eq!(
            lake(&dir.path().join("lake")).1,
            paths_of(0..20, |n| n % 4 == 0)
        );
        assert_eq!(bus.position(CONSUMER).unwrap(), 20);
        assert_eq!(counters.rows.load(Ordering::Relaxed), 60);
        let mut metrics = String::new();
        counters.render(&mut metrics);
        assert!(metrics.contains("logmon_lake_rows_total 60\n"), "{metrics}");
        assert!(metrics.contains("logmon_lake_bus_offset 20\n"), "{metrics}");
    }
}
