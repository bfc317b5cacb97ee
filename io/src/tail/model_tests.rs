//! The tailer against a model of the files: random appends (some finished
//! only after a poll), rotations by rename + create, copytruncates, deletions
//! of finished rotated files, polls with random budgets, partial
//! acknowledgements, rewinds and restarts from saved checkpoints.
//!
//! Property: after a final drain, every line of every identifiable file was
//! delivered, at its exact offset with its exact (possibly cut) text, and
//! once per (fingerprint, offset): re-deliveries after a rewind or restart
//! repeat the same lines, start exactly at the acknowledged offset, and batches
//! of one stream follow each other without gaps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Appends lines of these lengths (without `\n`); with `split`, the last
    /// line is written in two halves with a poll in between.
    Append {
        file: usize,
        lens: Vec<usize>,
        split: Option<u64>,
    },
    /// Renames the live file (to a name outside the glob with `hide`) and
    /// creates a new one.
    Rotate {
        file: usize,
        hide: bool,
    },
    CopyTruncate {
        file: usize,
    },
    DeleteRotated {
        pick: usize,
    },
    Poll {
        budget: u64,
    },
    /// Acknowledges the oldest `quarters`/4 of the unacknowledged batches.
    Ack {
        quarters: usize,
    },
    Rewind,
    Restart,
}

#[derive(Debug, Clone)]
struct Case {
    files: usize,
    fingerprint_bytes: usize,
    fingerprint_lines: usize,
    max_line_bytes: usize,
    read_chunk_bytes: usize,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..2usize, vec(6..300usize, 1..6), proptest::option::of(1..300u64))
            .prop_map(|(file, lens, split)| Op::Append { file, lens, split }),
        1 => (0..2usize, any::<bool>()).prop_map(|(file, hide)| Op::Rotate { file, hide }),
        1 => (0..2usize).prop_map(|file| Op::CopyTruncate { file }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteRotated { pick }),
        4 => (1..2000u64).prop_map(|budget| Op::Poll { budget }),
        2 => (0..=4usize).prop_map(|quarters| Op::Ack { quarters }),
        1 => Just(Op::Rewind),
        1 => Just(Op::Restart),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        1..=2usize,
        prop_oneof![Just(16usize), Just(64), Just(256)],
        0..=2usize,
        prop_oneof![Just(64usize), Just(200), Just(1000)],
        prop_oneof![Just(7usize), Just(64), Just(4096)],
        vec(op(), 1..40),
    )
        .prop_map(
            |(
                files,
                fingerprint_bytes,
                fingerprint_lines,
                max_line_bytes,
                read_chunk_bytes,
                ops,
            )| Case {
                files,
                fingerprint_bytes,
                fingerprint_lines,
                max_line_bytes,
                read_chunk_bytes,
                ops,
            },
        )
}

/// One file's content over its life: it moves on rotation, and on
/// copytruncate the content moves to the copy.
#[derive(Debug)]
struct Record {
    path: PathBuf,
    content: Vec<u8>,
    /// (offset, full text, length including `\n`).
    lines: Vec<(u64, String, u64)>,
    live: bool,
    deleted: bool,
    /// Renamed outside the glob: after a restart nothing finds it again, so
    /// whatever was unacknowledged then is lost (by design) from here on.
    hidden: bool,
    lost_from: Option<u64>,
    /// The scan count when the file was created: a file renamed out of the
    /// glob before any scan saw it was never known to the tailer.
    created_at_scan: u64,
}

struct Harness {
    dir: tempfile::TempDir,
    config: TailerConfig,
    fingerprinter: Fingerprinter,
    tailer: Option<Tailer>,
    records: Vec<Record>,
    live: Vec<Option<usize>>,
    renamed: usize,
    next_id: usize,
    /// Globs are expanded on every poll and at every start.
    scans: u64,
    delivered: Vec<ReadLines>,
    /// Indexes into `delivered` of batches not acknowledged yet.
    unacked: VecDeque<usize>,
    /// Lines of acknowledged batches: what reached the collector.
    shipped: BTreeSet<(FileFingerprint, u64)>,
    acked: HashMap<FileFingerprint, u64>,
    expected_next: HashMap<FileFingerprint, u64>,
}

impl Harness {
    fn new(case: &Case) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        fs::create_dir(dir.path().join("state")).unwrap();
        let mut config =
            TailerConfig::new(vec![dir.path().join("logs/*.log*").display().to_string()]);
        config.start_at = StartAt::Beginning;
        config.rescan_interval_ms = 0;
        config.rotate_wait_ms = 0;
        // The model knows what a rescan finds; events would race it. The
        // event path has tests of its own (tests.rs).
        config.file_events = false;
        config.fingerprint_bytes = case.fingerprint_bytes;
        config.fingerprint_lines = case.fingerprint_lines;
        config.max_line_bytes = case.max_line_bytes;
        config.read_chunk_bytes = case.read_chunk_bytes;
        let tailer = Tailer::new(config.clone(), Checkpoints::new()).unwrap();
        Self {
            fingerprinter: Fingerprinter::new(case.fingerprint_bytes, case.fingerprint_lines),
            dir,
            config,
            tailer: Some(tailer),
            records: Vec::new(),
            live: vec![None; case.files],
            renamed: 0,
            next_id: 0,
            scans: 1,
            delivered: Vec::new(),
            unacked: VecDeque::new(),
            shipped: BTreeSet::new(),
            acked: HashMap::new(),
            expected_next: HashMap::new(),
        }
    }

    fn tailer(&mut self) -> &mut Tailer {
        self.tailer.as_mut().unwrap()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    fn poll(&mut self, budget: u64) -> usize {
        let before = self.tailer().stats().bytes_read;
        self.scans += 1;
        let batches = self.tailer().poll(budget);
        let read = self.tailer().stats().bytes_read - before;
        assert!(read <= budget, "read {read} bytes on a budget of {budget}");
        let count = batches.len();
        for b in batches {
            let fingerprint = b.stream.fingerprint;
            let expected = self.expected_next.get(&fingerprint).copied().unwrap_or(0);
            assert_eq!(
                b.start, expected,
                "batch of {fingerprint} starts where the last ended (or at the ack)"
            );
            assert!(b.end > b.start && !b.lines.is_empty());
            self.expected_next.insert(fingerprint, b.end);
            self.unacked.push_back(self.delivered.len());
            self.delivered.push(b);
        }
        count
    }

    fn drain(&mut self, ack: bool) {
        let mut quiet = 0;
        while quiet < 2 {
            if self.poll(1 << 20) == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
            if ack {
                self.ack(self.unacked.len());
            }
        }
    }

    fn ack(&mut self, count: usize) {
        for _ in 0..count {
            let i = self.unacked.pop_front().unwrap();
            let (stream, end) = (self.delivered[i].stream.clone(), self.delivered[i].end);
            self.tailer().ack(&stream, end);
            let acked = self.acked.entry(stream.fingerprint).or_default();
            *acked = (*acked).max(end);
            let lines = self.delivered[i]
                .lines
                .iter()
                .map(|l| (stream.fingerprint, l.offset));
            self.shipped.extend(lines);
        }
    }

    fn write(&mut self, record: usize, bytes: &[u8]) {
        let path = &self.records[record].path;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(bytes).unwrap();
        self.records[record].content.extend_from_slice(bytes);
    }

    fn new_live(&mut self, file: usize) -> usize {
        let path = self.log_path(&format!("f{file}.log"));
        fs::File::create(&path).unwrap();
        self.records.push(Record {
            path,
            content: Vec::new(),
            lines: Vec::new(),
            live: true,
            deleted: false,
            hidden: false,
            lost_from: None,
            created_at_scan: self.scans,
        });
        self.live[file] = Some(self.records.len() - 1);
        self.records.len() - 1
    }

    /// Moves the live record of `file` to a fresh rotated name.
    fn retire(&mut self, record: usize, file: usize, hide: bool) -> PathBuf {
        self.renamed += 1;
        let name = if hide { "old" } else { "log" };
        let to = self.log_path(&format!("f{file}.{name}.{}", self.renamed));
        let rec = &mut self.records[record];
        rec.path = to.clone();
        rec.live = false;
        rec.hidden = hide;
        if hide && rec.created_at_scan == self.scans {
            rec.lost_from = Some(0);
        }
        to
    }

    fn apply(&mut self, op: &Op, files: usize) {
        match *op {
            Op::Append {
                file,
                ref lens,
                split,
            } => {
                let file = file % files;
                let record = match self.live[file] {
                    Some(r) => r,
                    None => self.new_live(file),
                };
                let mut bytes = Vec::new();
                for &len in lens {
                    let id = self.next_id;
                    self.next_id += 1;
                    let filler = char::from(b'a' + (id % 26) as u8);
                    let text = format!("{id:05}|{}", filler.to_string().repeat(len - 6));
                    let offset = (self.records[record].content.len() + bytes.len()) as u64;
                    self.records[record]
                        .lines
                        .push((offset, text.clone(), len as u64 + 1));
                    bytes.extend_from_slice(text.as_bytes());
                    bytes.push(b'\n');
                }
                match split {
                    Some(budget) => {
                        let last = lens.last().unwrap() + 1;
                        let cut = bytes.len() - last / 2;
                        self.write(record, &bytes[..cut]);
                        self.poll(budget);
                        self.write(record, &bytes[cut..]);
                    }
                    None => self.write(record, &bytes),
                }
            }
            Op::Rotate { file, hide } => {
                let file = file % files;
                if let Some(record) = self.live[file] {
                    let from = self.records[record].path.clone();
                    let to = self.retire(record, file, hide);
                    fs::rename(from, to).unwrap();
                    self.new_live(file);
                }
            }
            Op::CopyTruncate { file } => {
                let file = file % files;
                if let Some(record) = self.live[file] {
                    // Lines written after the last read would be lost by a
                    // real copytruncate; the model only truncates caught up.
                    self.drain(false);
                    let path = self.records[record].path.clone();
                    let copy = self.retire(record, file, false);
                    fs::copy(&path, copy).unwrap();
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                    self.records.push(Record {
                        path,
                        content: Vec::new(),
                        lines: Vec::new(),
                        live: true,
                        deleted: false,
                        hidden: false,
                        lost_from: None,
                        created_at_scan: self.scans,
                    });
                    self.live[file] = Some(self.records.len() - 1);
                }
            }
            Op::DeleteRotated { pick } => {
                // Only files whose every byte was acknowledged: deleting
                // anything else loses it across a restart, by design.
                let finished: Vec<usize> = (0..self.records.len())
                    .filter(|&r| {
                        let rec = &self.records[r];
                        !rec.live
                            && !rec.deleted
                            && self.fingerprinter.of_prefix(&rec.content).is_some_and(|f| {
                                self.acked.get(&f).copied().unwrap_or(0) == rec.content.len() as u64
                            })
                    })
                    .collect();
                if !finished.is_empty() {
                    let r = finished[pick % finished.len()];
                    fs::remove_file(&self.records[r].path).unwrap();
                    self.records[r].deleted = true;
                }
            }
            Op::Poll { budget } => {
                self.poll(budget);
            }
            Op::Ack { quarters } => {
                let count = (self.unacked.len() * quarters).div_ceil(4);
                self.ack(count);
            }
            Op::Rewind => {
                self.tailer().rewind_to_acked();
                self.unacked.clear();
                self.expected_next = self.acked.clone();
            }
            Op::Restart => {
                let state = self.dir.path().join("state");
                self.tailer().checkpoints().save(&state).unwrap();
                self.tailer = None;
                for rec in self.records.iter_mut().filter(|r| r.hidden) {
                    let acked = match self.fingerprinter.of_prefix(&rec.content) {
                        Some(f) => self.acked.get(&f).copied().unwrap_or(0),
                        None => 0,
                    };
                    rec.lost_from = Some(rec.lost_from.map_or(acked, |l| l.min(acked)));
                }
                let checkpoints = Checkpoints::load(&state).unwrap();
                self.tailer = Some(Tailer::new(self.config.clone(), checkpoints).unwrap());
                self.scans += 1;
                self.unacked.clear();
                self.expected_next = self.acked.clone();
            }
        }
    }

    fn check(&mut self) {
        self.drain(true);
        let max = self.config.max_line_bytes;
        // (fingerprint, offset) -> (text as delivered, length with `\n`).
        let mut expected = BTreeMap::new();
        let mut may_miss = BTreeSet::new();
        for rec in &self.records {
            // A rotated file whose head never completed may be read, known
            // by its complete lines (a short head); it need not be.
            let (fingerprint, short) = match self.fingerprinter.of_prefix(&rec.content) {
                Some(fingerprint) => (fingerprint, false),
                None if !rec.live => match self.fingerprinter.of_short_head(&rec.content) {
                    Some((fingerprint, _)) => (fingerprint, true),
                    None => continue,
                },
                None => continue,
            };
            for (offset, text, len) in &rec.lines {
                if short {
                    may_miss.insert((fingerprint, *offset));
                }
                let cut = text[..text.len().min(max)].to_owned();
                if rec.lost_from.is_some_and(|lost| *offset >= lost) {
                    may_miss.insert((fingerprint, *offset));
                }
                let previous =
                    expected.insert((fingerprint, *offset), (cut, *len, text.len() > max));
                assert!(previous.is_none(), "two files share {fingerprint}");
            }
        }
        for b in &self.delivered {
            let fingerprint = b.stream.fingerprint;
            let mut pos = b.start;
            for line in &b.lines {
                assert_eq!(line.offset, pos, "lines of a batch are contiguous");
                let (text, len, truncated) = expected
                    .get(&(fingerprint, line.offset))
                    .unwrap_or_else(|| {
                        panic!("{fingerprint}@{} is no line of any file", line.offset)
                    });
                assert_eq!(&line.text, text);
                assert_eq!(line.truncated, *truncated);
                pos += len;
            }
            assert_eq!(b.end, pos, "a batch ends after its last line");
            assert_eq!(
                b.truncated,
                b.lines.iter().filter(|l| l.truncated).count() as u64
            );
        }
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !self.shipped.contains(k) && !may_miss.contains(k))
            .collect();
        assert!(missing.is_empty(), "never acknowledged: {missing:?}");
        for lag in self.tailer().stats().files {
            if lag.fingerprint.is_some() {
                assert_eq!(lag.lag, 0, "{lag:?} is not fully acknowledged");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn delivers_every_line_once_across_rotation_truncation_and_restart(case in case()) {
        let mut harness = Harness::new(&case);
        for op in &case.ops {
            harness.apply(op, case.files);
        }
        harness.check();
    }
}
