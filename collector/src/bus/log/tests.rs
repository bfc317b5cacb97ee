use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;
use tempfile::TempDir;

fn config(dir: &Path, segment_bytes: u64) -> LogConfig {
    LogConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        fsync: true,
    }
}

fn open(config: &LogConfig) -> (SegmentLog, Recovery) {
    SegmentLog::open(config.clone()).expect("log opens")
}

/// A payload that differs per offset, so misplaced reads show.
fn payload(offset: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (offset as usize * 31 + i * 7 + 1) as u8)
        .collect()
}

fn append_all(log: &mut SegmentLog, payloads: &[Vec<u8>]) -> Range<u64> {
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    log.append(&refs).expect("append succeeds")
}

fn read_all(log: &SegmentLog, from: u64) -> Vec<Vec<u8>> {
    let records = log
        .read(from, usize::MAX, usize::MAX)
        .expect("read succeeds");
    for (i, (offset, _)) in records.iter().enumerate() {
        assert_eq!(*offset, from + i as u64);
    }
    records.into_iter().map(|(_, p)| p).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn segment_bases(dir: &Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|p| parse_file_name(p.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect()
}

/// `count` records with lengths cycling through 1..=`max_len`, numbered from `first`.
fn payloads(first: u64, count: u64, max_len: usize) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|o| payload(o, 1 + (o as usize * 13) % max_len))
        .collect()
}

fn flip_byte(path: &Path, position: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[position as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn round_trips_across_segment_rolls() {
    let dir = TempDir::new().unwrap();
    let (mut log, recovery) = open(&config(dir.path(), 1000));
    assert_eq!(recovery.records, 0);
    assert_eq!(recovery.torn, None);
    let mut expected = Vec::new();
    for batch in 0..10 {
        let records = payloads(expected.len() as u64, 37, 300);
        let range = append_all(&mut log, &records);
        assert_eq!(range, batch * 37..(batch + 1) * 37);
        expected.extend(records);
    }
    assert_eq!(log.next_offset(), 370);
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());
    assert_eq!(segment_files(dir.path()).len(), log.segment_count());
    assert_eq!(read_all(&log, 0), expected);

    for from in 0..=370u64 {
        let got = log.read(from, 5, usize::MAX).unwrap();
        let want: Vec<(u64, Vec<u8>)> = (from..(from + 5).min(370))
            .map(|o| (o, expected[o as usize].clone()))
            .collect();
        assert_eq!(got, want, "reading 5 from {from}");
    }
    // The byte limit stops before the record that would cross it, but a first
    // record larger than the limit is still returned.
    let got = log.read(0, 100, 1).unwrap();
    assert_eq!(got, vec![(0, expected[0].clone())]);
    let limit = expected[3].len() + expected[4].len();
    let got = log.read(3, 100, limit).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(log.read(3, 0, usize::MAX).unwrap(), vec![]);
    assert_eq!(log.read(370, 10, usize::MAX).unwrap(), vec![]);
    assert!(matches!(
        log.read(371, 10, usize::MAX),
        Err(BusError::OffsetBeyondEnd {
            requested: 371,
            next: 370
        })
    ));
}

#[test]
fn segments_roll_once_they_reach_the_size_and_hold_contiguous_offsets() {
    let dir = TempDir::new().unwrap();
    // Header 24 + 3 records of 8 + 100: the third record takes it past 250.
    let (mut log, _) = open(&config(dir.path(), 250));
    append_all(
        &mut log,
        &payloads(0, 10, 1)
            .iter()
            .map(|_| vec![7u8; 100])
            .collect::<Vec<_>>(),
    );
    assert_eq!(segment_bases(dir.path()), vec![0, 3, 6, 9]);
    let sizes: Vec<u64> = segment_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    assert_eq!(sizes, vec![348, 348, 348, 132]);
}

#[test]
fn reopens_after_clean_close_with_identical_contents() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 4096);
    let expected = payloads(0, 500, 200);
    let (mut log, _) = open(&cfg);
    for chunk in expected.chunks(64) {
        append_all(&mut log, chunk);
    }
    let segments = log.segment_count();
    drop(log);

    let (mut log, recovery) = open(&cfg);
    assert_eq!(
        recovery,
        Recovery {
            segments,
            first_offset: 0,
            next_offset: 500,
            records: 500,
            torn: None
        }
    );
    assert_eq!(log.next_offset(), 500);
    assert_eq!(read_all(&log, 0), expected);
    assert_eq!(append_all(&mut log, &payloads(500, 1, 10)), 500..501);
    drop(log);
    let (log, recovery) = open(&cfg);
    assert_eq!(recovery.next_offset, 501);
    assert_eq!(read_all(&log, 499)[1], payloads(500, 1, 10)[0]);
}

#[test]
fn cuts_a_torn_tail_at_every_byte_inside_the_last_record() {
    let original = TempDir::new().unwrap();
    let cfg = LogConfig {
        fsync: false,
        ..config(original.path(), 300)
    };
    let expected = payloads(0, 20, 90);
    let (mut log, _) = open(&cfg);
    for chunk in expected.chunks(3) {
        append_all(&mut log, chunk);
    }
    assert!(log.segment_count() >= 3);
    drop(log);
    let last_file = segment_files(original.path()).pop().unwrap();
    let name = last_file.file_name().unwrap().to_owned();
    let end = fs::metadata(&last_file).unwrap().len();
    let last_len = expected[19].len() as u64;
    let start = end - 8 - last_len;
    assert!(
        last_len > 4,
        "the last record must have a payload worth cutting"
    );

    for cut in start..end {
        let dir = TempDir::new().unwrap();
        copy_dir(original.path(), dir.path());
        let seg = dir.path().join(&name);
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let cfg = LogConfig {
            dir: dir.path().to_path_buf(),
            ..cfg.clone()
        };
        let (mut log, recovery) = open(&cfg);
        assert_eq!(recovery.next_offset, 19, "cut at {cut}");
        assert_eq!(recovery.torn_bytes(), cut - start, "cut at {cut}");
        if cut > start {
            let torn = recovery.torn.as_ref().unwrap();
            assert_eq!(torn.segment, seg);
            assert_eq!(torn.position, start);
            let want = if cut - start < 8 {
                Damage::PartialHeader
            } else {
                Damage::PartialPayload {
                    len: last_len as u32,
                }
            };
            assert_eq!(torn.damage, want, "cut at {cut}");
        }
        assert_eq!(fs::metadata(&seg).unwrap().len(), start);
        assert_eq!(read_all(&log, 0), expected[..19]);

        let fresh = b"after the tear".to_vec();
        assert_eq!(log.append(&[&fresh]).unwrap(), 19..20);
        drop(log);
        let (log, recovery) = open(&cfg);
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.next_offset, 20);
        let mut want = expected[..19].to_vec();
        want.push(fresh);
        assert_eq!(read_all(&log, 0), want);
    }
}

#[test]
fn truncates_a_crc_mismatch_in_the_last_record() {
    for (what, at_from_record_start) in [("crc field", 5), ("payload", 8 + 3)] {
        let dir = TempDir::new().unwrap();
        let cfg = config(dir.path(), 1 << 20);
        let expected = payloads(0, 10, 50);
        let (mut log, _) = open(&cfg);
        append_all(&mut log, &expected);
        drop(log);
        let seg = segment_files(dir.path()).pop().unwrap();
        let end = fs::metadata(&seg).unwrap().len();
        let start = end - 8 - expected[9].len() as u64;
        flip_byte(&seg, start + at_from_record_start);

        let (log, recovery) = open(&cfg);
        assert_eq!(recovery.next_offset, 9, "{what}");
        let torn = recovery.torn.unwrap();
        assert_eq!((torn.position, torn.bytes), (start, end - start), "{what}");
        assert!(matches!(torn.damage, Damage::CrcMismatch { .. }), "{what}");
        assert_eq!(read_all(&log, 0), expected[..9], "{what}");
    }
}

#[test]
fn a_garbage_length_or_zeroed_tail_is_torn_not_allocated() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let (mut log, _) = open(&cfg);
    append_all(&mut log, &payloads(0, 3, 20));
    drop(log);
    let seg = segment_files(dir.path()).pop().unwrap();
    let clean_len = fs::metadata(&seg).unwrap().len();

    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0xAB; 12]);
    fs::write(&seg, &bytes).unwrap();
    let (log, recovery) = open(&cfg);
    let torn = recovery.torn.unwrap();
    assert_eq!(torn.damage, Damage::Oversized { len: u32::MAX });
    assert_eq!((torn.position, torn.bytes), (clean_len, 16));
    assert_eq!(log.next_offset(), 3);
    drop(log);

    // A crash can leave a file longer than what was written, filled with zeros.
    let mut bytes = fs::read(&seg).unwrap();
    bytes.resize(bytes.len() + 4096, 0);
    fs::write(&seg, &bytes).unwrap();
    let (log, recovery) = open(&cfg);
    let torn = recovery.torn.unwrap();
    assert_eq!(torn.damage, Damage::ZeroLength);
    assert_eq!(torn.bytes, 4096);
    assert_eq!(log.next_offset(), 3);
}

#[test]
fn rewrites_the_torn_header_of_a_segment_created_just_before_a_crash() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let (mut log, _) = open(&cfg);
    append_all(&mut log, &payloads(0, 5, 20));
    drop(log);
    fs::write(dir.path().join(segment::file_name(5)), b"LMBUS").unwrap();

    let (mut log, recovery) = open(&cfg);
    assert_eq!(recovery.segments, 2);
    assert_eq!(recovery.next_offset, 5);
    let torn = recovery.torn.unwrap();
    assert_eq!((torn.damage, torn.bytes), (Damage::PartialSegmentHeader, 5));
    assert_eq!(append_all(&mut log, &payloads(5, 2, 20)), 5..7);
    drop(log);
    let (log, recovery) = open(&cfg);
    assert_eq!(recovery.torn, None);
    assert_eq!(read_all(&log, 0), payloads(0, 7, 20));
}

/// Three or more segments; returns the config and the expected records.
fn sealed_segments_fixture(dir: &Path) -> (LogConfig, Vec<Vec<u8>>) {
    let cfg = config(dir, 300);
    let expected: Vec<Vec<u8>> = (0..12).map(|o| payload(o, 50)).collect();
    let (mut log, _) = open(&cfg);
    append_all(&mut log, &expected);
    assert!(log.segment_count() >= 3);
    (cfg, expected)
}

#[test]
fn refuses_to_open_with_a_crc_flip_in_a_sealed_segment() {
    let dir = TempDir::new().unwrap();
    let (cfg, _) = sealed_segments_fixture(dir.path());
    let middle = segment_files(dir.path())[1].clone();
    // First record of the segment: payload starts after the segment and record headers.
    flip_byte(&middle, segment::HEADER_LEN + 8 + 2);

    let err = SegmentLog::open(cfg.clone()).unwrap_err();
    match &err {
        BusError::Corrupt {
            path,
            position,
            damage: Damage::CrcMismatch { .. },
        } => {
            assert_eq!(path, &middle);
            assert_eq!(*position, segment::HEADER_LEN);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("corrupt"), "{message}");
    assert!(message.contains(&middle.display().to_string()), "{message}");
    // Nothing was repaired behind the operator's back.
    assert!(SegmentLog::open(cfg).is_err());
}

#[test]
fn refuses_to_open_with_a_short_or_missing_sealed_segment() {
    let dir = TempDir::new().unwrap();
    let (cfg, _) = sealed_segments_fixture(dir.path());
    let files = segment_files(dir.path());
    let len = fs::metadata(&files[1]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let err = SegmentLog::open(cfg.clone()).unwrap_err();
    assert!(
        matches!(&err, BusError::Corrupt { path, damage: Damage::PartialPayload { .. }, .. } if path == &files[1]),
        "{err:?}"
    );

    fs::remove_file(&files[1]).unwrap();
    let err = SegmentLog::open(cfg).unwrap_err();
    assert!(
        matches!(&err, BusError::Corrupt { damage: Damage::Gap { .. }, path, .. } if path == &files[2]),
        "{err:?}"
    );
}

#[test]
fn consumer_offsets_persist_across_reopen() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 500);
    let (mut log, _) = open(&cfg);
    append_all(&mut log, &payloads(0, 40, 30));
    assert_eq!(log.register("writer").unwrap(), 0);
    assert_eq!(log.register("engine").unwrap(), 0);
    log.commit("writer", 17).unwrap();
    log.commit("engine", 40).unwrap();
    assert_eq!(
        log.register("writer").unwrap(),
        17,
        "registering again keeps the offset"
    );
    assert!(matches!(
        log.commit("nobody", 1),
        Err(BusError::UnknownConsumer(name)) if name == "nobody"
    ));
    assert!(matches!(
        log.commit("writer", 41),
        Err(BusError::OffsetBeyondEnd {
            requested: 41,
            next: 40
        })
    ));
    assert!(matches!(
        log.register(""),
        Err(BusError::InvalidConsumerName(_))
    ));
    assert_eq!(log.committed("writer"), Some(17));
    drop(log);

    let (mut log, _) = open(&cfg);
    assert_eq!(log.committed("writer"), Some(17));
    assert_eq!(log.committed("engine"), Some(40));
    assert_eq!(log.committed("nobody"), None);
    log.commit("writer", 3).unwrap();
    assert!(log.unregister("engine").unwrap());
    drop(log);
    let (log, _) = open(&cfg);
    assert_eq!(log.committed("writer"), Some(3));
    assert_eq!(log.committed("engine"), None);
    assert!(!dir.path().join(offsets::TEMP_NAME).exists());
}

#[test]
fn gc_deletes_only_segments_every_consumer_passed() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 250);
    let (mut log, _) = open(&cfg);
    let records: Vec<Vec<u8>> = (0..10).map(|o| payload(o, 100)).collect();
    append_all(&mut log, &records);
    assert_eq!(segment_bases(dir.path()), vec![0, 3, 6, 9]);
    assert_eq!(
        log.gc().unwrap(),
        0,
        "no consumers: nothing is known consumed"
    );

    log.register("writer").unwrap();
    log.register("engine").unwrap();
    assert_eq!(log.gc().unwrap(), 0);
    log.commit("writer", 7).unwrap();
    log.commit("engine", 4).unwrap();
    assert_eq!(log.gc().unwrap(), 1);
    assert_eq!(segment_bases(dir.path()), vec![3, 6, 9]);
    assert_eq!(log.first_offset(), 3);
    let err = log.read(2, 10, usize::MAX).unwrap_err();
    assert!(
        matches!(
            err,
            BusError::OffsetDeleted {
                requested: 2,
                first: 3
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "offset 2 was deleted; the oldest retained offset is 3"
    );
    assert!(matches!(
        log.commit("engine", 2),
        Err(BusError::OffsetDeleted { .. })
    ));
    assert_eq!(read_all(&log, 3), records[3..]);

    log.commit("engine", 10).unwrap();
    assert_eq!(log.gc().unwrap(), 1, "the writer at 7 still needs 6..9");
    assert_eq!(segment_bases(dir.path()), vec![6, 9]);
    log.commit("writer", 10).unwrap();
    assert_eq!(log.gc().unwrap(), 1, "the active segment stays");
    assert_eq!(segment_bases(dir.path()), vec![9]);
    assert_eq!(log.gc().unwrap(), 0);
    assert_eq!(log.register("replay").unwrap(), 9);

    assert_eq!(append_all(&mut log, &[payload(10, 100)]), 10..11);
    drop(log);
    let (log, recovery) = open(&cfg);
    assert_eq!(
        (
            recovery.first_offset,
            recovery.next_offset,
            recovery.records
        ),
        (9, 11, 2)
    );
    assert_eq!(
        read_all(&log, 9),
        vec![records[9].clone(), payload(10, 100)]
    );
}

#[test]
fn gc_keeps_everything_for_a_declared_consumer_still_at_offset_zero() {
    let dir = TempDir::new().unwrap();
    let config = config(dir.path(), 256);
    let (mut log, _) = open(&config);
    assert!(log.declare(&["engine", "influx"]).unwrap().is_empty());
    append_all(&mut log, &payloads(0, 200, 40));
    assert!(log.segment_count() > 3);
    // The engine read everything; the writer (its target down) nothing.
    log.commit("engine", 200).unwrap();
    let files = segment_files(dir.path());
    assert_eq!(log.gc().unwrap(), 0);
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(log.first_offset(), 0);
    assert_eq!(read_all(&log, 0), payloads(0, 200, 40));
    // Declared positions are durable: a restart keeps them.
    drop(log);
    let (mut log, _) = open(&config);
    assert_eq!(log.committed("influx"), Some(0));
    assert_eq!(log.gc().unwrap(), 0);
    log.commit("influx", 200).unwrap();
    assert_eq!(log.gc().unwrap(), files.len() - 1);
}

#[test]
fn declaring_reports_consumers_the_configuration_no_longer_names() {
    let dir = TempDir::new().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (mut log, _) = open(&config);
    log.declare(&["engine", "influx"]).unwrap();
    append_all(&mut log, &payloads(0, 10, 10));
    log.commit("engine", 10).unwrap();
    drop(log);
    let (mut log, _) = open(&config);
    // InfluxDB no longer configured: the writer's position is reported, kept.
    let stale = log.declare(&["engine"]).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].name.as_str(), stale[0].offset, stale[0].records),
        ("influx", 0, 10)
    );
    assert_eq!(stale[0].bytes, log.backlog_bytes());
    assert_eq!(log.committed("influx"), Some(0));
    assert!(log.unregister("influx").unwrap());
    assert!(log.declare(&["engine"]).unwrap().is_empty());
    // A new consumer starts at the oldest record retained.
    log.declare(&["engine", "lake"]).unwrap();
    assert_eq!(log.committed("lake"), Some(0));
    assert!(matches!(
        log.declare(&[""]),
        Err(BusError::InvalidConsumerName(_))
    ));
}

#[test]
fn backlog_bytes_decrease_as_consumers_commit() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 250);
    let (mut log, _) = open(&cfg);
    append_all(
        &mut log,
        &(0..10).map(|o| payload(o, 100)).collect::<Vec<_>>(),
    );
    let record = 108;
    assert_eq!(
        log.backlog_bytes(),
        10 * record,
        "no consumer: everything is backlog"
    );
    log.register("writer").unwrap();
    log.register("engine").unwrap();
    assert_eq!(log.backlog_bytes(), 10 * record);
    log.commit("writer", 5).unwrap();
    assert_eq!(
        log.backlog_bytes(),
        10 * record,
        "the engine has read nothing"
    );
    log.commit("engine", 4).unwrap();
    assert_eq!(log.backlog_bytes(), 6 * record);
    log.commit("engine", 9).unwrap();
    assert_eq!(log.backlog_bytes(), 5 * record);
    log.gc().unwrap();
    assert_eq!(
        log.backlog_bytes(),
        5 * record,
        "gc does not change the backlog"
    );
    log.commit("writer", 10).unwrap();
    assert_eq!(log.backlog_bytes(), record);
    append_all(&mut log, &[vec![1u8; 50]]);
    assert_eq!(log.backlog_bytes(), record + 58);
    drop(log);
    let (mut log, _) = open(&cfg);
    assert_eq!(log.backlog_bytes(), record + 58);
    log.commit("engine", 11).unwrap();
    assert_eq!(log.backlog_bytes(), 58);
    log.commit("writer", 11).unwrap();
    assert_eq!(log.backlog_bytes(), 0);
}

#[test]
fn refuses_empty_and_oversized_records_without_writing_anything() {
    let dir = TempDir::new().unwrap();
    let (mut log, _) = open(&config(dir.path(), 1 << 20));
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        log.append(&[b"ok", &big]),
        Err(BusError::RecordTooLarge { index: 1, .. })
    ));
    assert!(matches!(
        log.append(&[b"ok", b""]),
        Err(BusError::EmptyRecord { index: 1 })
    ));
    assert_eq!(log.next_offset(), 0);
    assert_eq!(log.append(&[]).unwrap(), 0..0);
    assert_eq!(log.append(&[b"ok"]).unwrap(), 0..1);
}

#[test]
fn the_log_can_move_between_threads_and_be_shared_behind_a_mutex() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SegmentLog>();
    send_sync::<std::sync::Mutex<SegmentLog>>();
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let (log, _) = open(&cfg);
    assert!(matches!(
        SegmentLog::open(cfg.clone()),
        Err(BusError::Locked { .. })
    ));
    drop(log);
    open(&cfg);
}

#[test]
fn refuses_committed_offsets_beyond_the_log() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let (mut log, _) = open(&cfg);
    append_all(&mut log, &payloads(0, 5, 10));
    log.register("writer").unwrap();
    log.commit("writer", 5).unwrap();
    drop(log);
    for file in segment_files(dir.path()) {
        fs::remove_file(file).unwrap();
    }
    let err = SegmentLog::open(cfg).unwrap_err();
    assert!(
        matches!(
            &err,
            BusError::ConsumerOutsideLog {
                offset: 5,
                next: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Read {
        from: u64,
        max_records: usize,
        max_bytes: usize,
    },
    Register(usize),
    Commit {
        consumer: usize,
        offset: u64,
    },
    Gc,
    Reopen,
}

const CONSUMERS: [&str; 3] = ["writer", "engine", "replay"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(1usize..120, 0..8).prop_map(Op::Append),
        3 => (0u64..80, 0usize..12, 0usize..600).prop_map(|(from, max_records, max_bytes)| Op::Read {
            from,
            max_records,
            max_bytes
        }),
        1 => (0..CONSUMERS.len()).prop_map(Op::Register),
        3 => (0..CONSUMERS.len(), 0u64..80).prop_map(|(consumer, offset)| Op::Commit { consumer, offset }),
        2 => Just(Op::Gc),
        1 => Just(Op::Reopen),
    ]
}

/// The log as a plain vector, plus what the consumers committed.
#[derive(Debug, Default)]
struct Model {
    records: Vec<Vec<u8>>,
    first: u64,
    consumers: BTreeMap<&'static str, u64>,
}

impl Model {
    fn next(&self) -> u64 {
        self.records.len() as u64
    }

    fn check_offset(&self, offset: u64) -> Result<(), (u64, u64)> {
        if offset < self.first || offset > self.next() {
            Err((self.first, self.next()))
        } else {
            Ok(())
        }
    }

    fn read(&self, from: u64, max_records: usize, max_bytes: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for offset in from..self.next() {
            let record = &self.records[offset as usize];
            if out.len() == max_records || (!out.is_empty() && bytes + record.len() > max_bytes) {
                break;
            }
            bytes += record.len();
            out.push((offset, record.clone()));
        }
        out
    }

    fn backlog(&self) -> u64 {
        let from = self.consumers.values().copied().min().unwrap_or(self.first);
        self.records[from as usize..]
            .iter()
            .map(|r| 8 + r.len() as u64)
            .sum()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_vector_of_records(ops in prop::collection::vec(op(), 1..60)) {
        let dir = TempDir::new().unwrap();
        let cfg = LogConfig { fsync: false, ..config(dir.path(), 300) };
        let (mut log, _) = open(&cfg);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(lens) => {
                    let records: Vec<Vec<u8>> = lens
                        .iter()
                        .enumerate()
                        .map(|(i, &len)| payload(model.next() + i as u64, len))
                        .collect();
                    let range = append_all(&mut log, &records);
                    prop_assert_eq!(range, model.next()..model.next() + records.len() as u64);
                    model.records.extend(records);
                }
                Op::Read { from, max_records, max_bytes } => {
                    let got = log.read(from, max_records, max_bytes);
                    match model.check_offset(from) {
                        Ok(()) => prop_assert_eq!(got.unwrap(), model.read(from, max_records, max_bytes)),
                        Err(_) if from < model.first => {
                            let deleted = matches!(got, Err(BusError::OffsetDeleted { requested, first }) if requested == from && first == model.first);
                            prop_assert!(deleted, "expected OffsetDeleted, got {:?}", got);
                        }
                        Err(_) => {
                            let beyond = matches!(got, Err(BusError::OffsetBeyondEnd { .. }));
                            prop_assert!(beyond, "expected OffsetBeyondEnd, got {:?}", got);
                        }
                    }
                }
                Op::Register(c) => {
                    let name = CONSUMERS[c];
                    let at = *model.consumers.entry(name).or_insert(model.first);
                    prop_assert_eq!(log.register(name).unwrap(), at);
                }
                Op::Commit { consumer, offset } => {
                    let name = CONSUMERS[consumer];
                    let result = log.commit(name, offset);
                    if !model.consumers.contains_key(name) {
                        let unknown = matches!(result, Err(BusError::UnknownConsumer(_)));
                        prop_assert!(unknown, "expected UnknownConsumer, got {:?}", result);
                    } else if model.check_offset(offset).is_ok() {
                        result.unwrap();
                        model.consumers.insert(name, offset);
                    } else {
                        prop_assert!(result.is_err());
                    }
                }
                Op::Gc => {
                    let deleted = log.gc().unwrap();
                    let first = log.first_offset();
                    prop_assert!(first >= model.first);
                    match model.consumers.values().copied().min() {
                        None => prop_assert_eq!(deleted, 0),
                        Some(slowest) => {
                            prop_assert!(first <= slowest, "deleted records a consumer still needs");
                            // Maximal: the oldest retained segment is still needed, or is the active one.
                            let bases = segment_bases(dir.path());
                            prop_assert_eq!(bases[0], first);
                            prop_assert!(bases.len() == 1 || bases[1] > slowest);
                        }
                    }
                    prop_assert_eq!(deleted == 0, first == model.first);
                    model.first = first;
                }
                Op::Reopen => {
                    drop(log);
                    let (reopened, recovery) = open(&cfg);
                    log = reopened;
                    prop_assert_eq!(recovery.torn, None);
                    prop_assert_eq!(recovery.first_offset, model.first);
                    prop_assert_eq!(recovery.next_offset, model.next());
                    for name in CONSUMERS {
                        prop_assert_eq!(log.committed(name), model.consumers.get(name).copied());
                    }
                }
            }
            prop_assert_eq!(log.next_offset(), model.next());
            prop_assert_eq!(log.first_offset(), model.first);
            prop_assert_eq!(log.backlog_bytes(), model.backlog());
            prop_assert_eq!(segment_files(dir.path()).len(), log.segment_count());
        }
        prop_assert_eq!(read_all(&log, model.first), model.records[model.first as usize..].to_vec());
    }
}

/// Appends 1,000,000 records of 200 bytes in batches of 1,000 (one fsync per
/// batch) and compares with `write_all` + `sync_data` of the same bytes and
/// the same number of syncs. Run with
/// `cargo test -p logmon-collector --lib bus::tests::append_throughput -- --ignored --nocapture`
/// (add `--release` for figures that mean something).
#[test]
#[ignore = "benchmark; writes ~420 MB"]
fn append_throughput() {
    const RECORDS: usize = 1_000_000;
    const BATCH: usize = 1_000;
    const LEN: usize = 200;
    let records: Vec<Vec<u8>> = (0..BATCH as u64).map(|o| payload(o, LEN)).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let mut frame = Vec::new();
    for r in &records {
        encode_record(&mut frame, r);
    }
    let batches = RECORDS / BATCH;

    let run_bus = |fsync: bool| {
        let dir = TempDir::new_in(std::env::temp_dir()).unwrap();
        let cfg = LogConfig {
            fsync,
            ..LogConfig::new(dir.path())
        };
        let (mut log, _) = SegmentLog::open(cfg).unwrap();
        let started = Instant::now();
        for _ in 0..batches {
            log.append(&refs).unwrap();
        }
        let elapsed = started.elapsed();
        assert_eq!(log.next_offset(), RECORDS as u64);
        elapsed
    };
    let run_plain = |fsync: bool| {
        let dir = TempDir::new_in(std::env::temp_dir()).unwrap();
        let mut file = File::create(dir.path().join("plain")).unwrap();
        let started = Instant::now();
        for _ in 0..batches {
            file.write_all(&frame).unwrap();
            if fsync {
                file.sync_data().unwrap();
            }
        }
        started.elapsed()
    };

    println!(
        "{RECORDS} records x {LEN} B in batches of {BATCH}, temp dir {}, median of 3 interleaved runs",
        std::env::temp_dir().display()
    );
    println!(
        "{:<28} {:>9} {:>14} {:>9} {:>8}",
        "", "seconds", "records/s", "MB/s", "ratio"
    );
    let median = |mut runs: Vec<std::time::Duration>| {
        runs.sort();
        runs[runs.len() / 2]
    };
    for fsync in [true, false] {
        let (mut plain, mut bus) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            plain.push(run_plain(fsync));
            bus.push(run_bus(fsync));
        }
        let (plain, bus) = (median(plain), median(bus));
        let mb = (RECORDS * (LEN + 8)) as f64 / 1e6;
        for (name, t) in [("plain write_all", plain), ("segment log append", bus)] {
            let secs = t.as_secs_f64();
            println!(
                "{:<28} {:>9.3} {:>14.0} {:>9.1} {:>8.2}",
                format!("{name}{}", if fsync { " +fsync" } else { "" }),
                secs,
                RECORDS as f64 / secs,
                mb / secs,
                secs / plain.as_secs_f64()
            );
        }
    }
}

#[test]
fn a_write_that_fails_part_way_is_undone_and_the_next_append_works() {
    let dir = TempDir::new().unwrap();
    // Small segments, so the failing batch also starts a new one.
    let cfg = config(dir.path(), 256);
    let (mut log, _) = open(&cfg);
    let first = payloads(0, 10, 40);
    append_all(&mut log, &first);
    let (segments, files) = (log.segment_count(), segment_files(dir.path()));
    // Two writes fail half-way: the batch (which rolls a segment) is
    // refused, then the same batch again.
    log.fail_next_writes(2);
    let batch = payloads(10, 20, 40);
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    for _ in 0..2 {
        let e = log.append(&refs).unwrap_err();
        assert!(e.to_string().contains("No space left on device"), "{e}");
        assert_eq!(log.next_offset(), 10);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(segment_files(dir.path()), files);
        assert_eq!(read_all(&log, 0), first);
    }
    // Space is back: the same batch goes in after the first records.
    assert_eq!(append_all(&mut log, &batch), 10..30);
    let mut all = first.clone();
    all.extend(batch);
    assert_eq!(read_all(&log, 0), all);
    drop(log);
    let (log, recovery) = open(&cfg);
    assert!(recovery.torn.is_none(), "nothing torn was left");
    assert_eq!(read_all(&log, 0), all);
}
