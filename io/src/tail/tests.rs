//! Behaviour of the tailer on real files in a temporary directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

const BIG: u64 = 1 << 20;

struct Logs {
    dir: tempfile::TempDir,
}

impl Logs {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn append(&self, name: &str, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// Every default except: all `*.log`, from the beginning, a rescan on
    /// every poll, finished files closed at once.
    fn config(&self) -> TailerConfig {
        let mut config = TailerConfig::new(vec![self.path("*.log").display().to_string()]);
        config.start_at = StartAt::Beginning;
        config.rescan_interval_ms = 0;
        config.rotate_wait_ms = 0;
        config
    }

    /// Cuts the file to nothing in place, as copytruncate does.
    fn truncate(&self, name: &str) {
        OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    fn state_dir(&self) -> PathBuf {
        let dir = self.path("state");
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Polls until a poll returns nothing.
fn drain(tailer: &mut Tailer) -> Vec<ReadLines> {
    let mut all = Vec::new();
    loop {
        let batches = tailer.poll(BIG);
        if batches.is_empty() {
            return all;
        }
        all.extend(batches);
    }
}

fn texts(batches: &[ReadLines]) -> Vec<&str> {
    batches
        .iter()
        .flat_map(|b| &b.lines)
        .map(|l| l.text.as_str())
        .collect()
}

fn ack_all(tailer: &mut Tailer, batches: &[ReadLines]) {
    for b in batches {
        tailer.ack(&b.stream, b.end);
    }
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

#[test]
fn partial_line_is_held_until_its_newline() {
    let logs = Logs::new();
    logs.append("a.log", "first line\nsecond line\nthird");
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();

    let batches = tailer.poll(BIG);
    assert_eq!(texts(&batches), ["first line", "second line"]);
    assert_eq!((batches[0].start, batches[0].end), (0, 23));
    assert_eq!(batches[0].lines[1].offset, 11);
    assert!(tailer.poll(BIG).is_empty(), "the partial line stays unread");

    logs.append("a.log", " part\r\n");
    let batches = tailer.poll(BIG);
    assert_eq!(texts(&batches), ["third part"]);
    assert_eq!((batches[0].start, batches[0].end), (23, 35));
}

#[test]
fn a_file_waits_until_its_head_is_complete() {
    let logs = Logs::new();
    logs.append("a.log", "one\n");
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    assert!(
        tailer.poll(BIG).is_empty(),
        "one short line is no identity yet"
    );
    assert_eq!(tailer.stats().files[0].fingerprint, None);
    logs.append("a.log", "two\n");
    assert_eq!(texts(&tailer.poll(BIG)), ["one", "two"]);
}

#[test]
fn long_line_is_cut_counted_and_the_next_line_is_intact() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.max_line_bytes = 10;
    config.read_chunk_bytes = 4;
    logs.append("a.log", &format!("short\n{}\nnext\n", "x".repeat(25)));
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();

    let batches = drain(&mut tailer);
    assert_eq!(texts(&batches), ["short", "xxxxxxxxxx", "next"]);
    let all: Vec<_> = batches.iter().flat_map(|b| &b.lines).collect();
    assert_eq!(
        all.iter()
            .map(|l| (l.offset, l.truncated))
            .collect::<Vec<_>>(),
        [(0, false), (6, true), (32, false)]
    );
    assert_eq!(batches.iter().map(|b| b.truncated).sum::<u64>(), 1);
    assert_eq!(batches.last().unwrap().end, 37);
    assert_eq!(tailer.stats().truncated_lines, 1);
}

#[test]
fn rotation_by_rename_delivers_the_old_file_then_the_new_one() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=3));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let first = tailer.poll(BIG);
    assert_eq!(texts(&first), ["line 1", "line 2", "line 3"]);
    let old = first[0].stream.fingerprint;

    // The writer keeps its handle on the old file across the rename.
    let mut writer = OpenOptions::new()
        .append(true)
        .open(logs.path("a.log"))
        .unwrap();
    writer.write_all(lines(4..=5).as_bytes()).unwrap();
    fs::rename(logs.path("a.log"), logs.path("a.log.1")).unwrap();
    writer.write_all(b"late line\n").unwrap();
    logs.append("a.log", &lines(6..=8));

    let batches = drain(&mut tailer);
    let (from_old, from_new): (Vec<_>, Vec<_>) = batches
        .into_iter()
        .partition(|b| b.stream.fingerprint == old);
    assert_eq!(texts(&from_old), ["line 4", "line 5", "late line"]);
    assert_eq!(from_old[0].start, first[0].end);
    assert_eq!(texts(&from_new), ["line 6", "line 7", "line 8"]);
    assert_eq!(from_new[0].start, 0);
    assert_eq!(from_new[0].stream.path, logs.path("a.log"));
    assert_eq!(tailer.stats().rotations, 1);

    // The old file stays open until everything in it is acknowledged.
    assert_eq!(tailer.stats().files_watched, 2);
    ack_all(&mut tailer, &first);
    ack_all(&mut tailer, &from_old);
    assert!(tailer.poll(BIG).is_empty());
    assert_eq!(tailer.stats().files_watched, 1);
}

#[test]
fn a_rotated_file_that_still_matches_is_followed_not_reread() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.include = vec![logs.path("a.log*").display().to_string()];
    logs.append("a.log", &lines(1..=3));
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    assert_eq!(texts(&tailer.poll(BIG)), ["line 1", "line 2", "line 3"]);

    fs::rename(logs.path("a.log"), logs.path("a.log.1")).unwrap();
    logs.append("a.log.1", "line 4\n");
    logs.append("a.log", &lines(5..=6));
    let batches = drain(&mut tailer);
    assert_eq!(texts(&batches), ["line 4", "line 5", "line 6"]);
    assert_eq!(batches[0].stream.path, logs.path("a.log.1"));
    assert_eq!(tailer.stats().rotations, 1);
    assert_eq!(tailer.stats().files_watched, 2);
}

#[test]
fn copytruncate_restarts_at_zero() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=3));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let before = tailer.poll(BIG);
    assert_eq!(texts(&before), ["line 1", "line 2", "line 3"]);

    fs::copy(logs.path("a.log"), logs.path("a.copy")).unwrap();
    logs.truncate("a.log");
    logs.append("a.log", &lines(4..=5));

    let after = drain(&mut tailer);
    assert_eq!(texts(&after), ["line 4", "line 5"]);
    assert_eq!(after[0].start, 0);
    assert_ne!(after[0].stream.fingerprint, before[0].stream.fingerprint);
    assert_eq!(tailer.stats().truncations, 1);
}

/// logrotate's copytruncate of a file whose first lines come back
/// byte-identical (a fixed header, the same first request): the new content
/// is a new generation, a stream of its own, and the copy finishes the old one.
#[test]
fn copytruncate_with_an_identical_start_is_a_new_generation() {
    let logs = Logs::new();
    let header = "#Version: 1.0\n#Fields: date time cs-uri-stem\n";
    logs.append("a.log", &format!("{header}{}", lines(1..=3)));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let before = tailer.poll(BIG);
    assert_eq!(texts(&before).len(), 5);
    ack_all(&mut tailer, &before[..]);
    // Written after the last poll: only the copy has it.
    logs.append("a.log", "line 4\n");

    fs::copy(logs.path("a.log"), logs.path("a.log.1")).unwrap();
    logs.truncate("a.log");
    logs.append("a.log", &format!("{header}{}", lines(5..=6)));
    let mut config = logs.config();
    config
        .include
        .push(logs.path("*.log.1").display().to_string());
    let mut tailer = Tailer::new(config, tailer.checkpoints().clone()).unwrap();

    let after = drain(&mut tailer);
    let mut by_stream: HashMap<FileFingerprint, Vec<&str>> = HashMap::new();
    for b in &after {
        by_stream
            .entry(b.stream.fingerprint)
            .or_default()
            .extend(b.lines.iter().map(|l| l.text.as_str()));
    }
    let old = before[0].stream.fingerprint;
    assert_eq!(by_stream.len(), 2, "{by_stream:?}");
    assert_eq!(
        by_stream[&old],
        ["line 4"],
        "the copy resumes the old stream"
    );
    let (new, new_lines) = by_stream.iter().find(|(f, _)| **f != old).unwrap();
    assert_eq!(
        new_lines,
        &[
            "#Version: 1.0",
            "#Fields: date time cs-uri-stem",
            "line 5",
            "line 6"
        ]
    );
    let first = after.iter().find(|b| b.stream.fingerprint == *new).unwrap();
    assert_eq!(first.start, 0);
    let generation = tailer.checkpoints().get(*new).map(|c| c.identity).unwrap();
    assert_eq!(generation.generation, 1);
    assert_eq!(generation.head, old);
    assert_eq!(tailer.stats().generations, 1);
}

/// The same while the tailer runs: the truncation is seen, then the copy.
#[test]
fn copytruncate_with_an_identical_start_while_running() {
    let logs = Logs::new();
    let mut config = logs.config();
    config
        .include
        .push(logs.path("*.log.1").display().to_string());
    logs.append("a.log", &lines(1..=3));
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    let before = tailer.poll(BIG);
    ack_all(&mut tailer, &before);

    fs::copy(logs.path("a.log"), logs.path("a.copy")).unwrap();
    logs.truncate("a.log");
    logs.append("a.log", &lines(1..=2));
    let second = drain(&mut tailer);
    assert_eq!(texts(&second), ["line 1", "line 2"]);
    assert_ne!(second[0].stream.fingerprint, before[0].stream.fingerprint);
    ack_all(&mut tailer, &second);
    // The copy shows up under a watched name: nothing of it is new.
    fs::rename(logs.path("a.copy"), logs.path("a.log.1")).unwrap();
    logs.append("a.log", "line 3\n");
    let third = drain(&mut tailer);
    assert_eq!(texts(&third), ["line 3"]);
    assert_eq!(third[0].stream.fingerprint, second[0].stream.fingerprint);
    assert_eq!(tailer.stats().generations, 1);
    assert_eq!(tailer.stats().duplicates, 0);

    // A third time: generation 2.
    logs.truncate("a.log");
    logs.append("a.log", &lines(1..=2));
    let fourth = drain(&mut tailer);
    assert_eq!(texts(&fourth), ["line 1", "line 2"]);
    let streams: BTreeSet<_> = [&before, &second, &fourth]
        .iter()
        .map(|b| b[0].stream.fingerprint)
        .collect();
    assert_eq!(streams.len(), 3);
    assert_eq!(tailer.stats().generations, 2);
}

/// Truncated and written past the old size with the same first lines before
/// the tailer looked again: neither the size nor the head shows it; the end
/// of the last line read, no longer where it was, does.
#[test]
fn copytruncate_with_an_identical_start_that_grew_back_past_us_is_caught() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=3));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let before = tailer.poll(BIG);
    assert_eq!(texts(&before), ["line 1", "line 2", "line 3"]);
    logs.truncate("a.log");
    logs.append(
        "a.log",
        &format!("{}a longer third line\nline 4\n", lines(1..=2)),
    );
    let after = drain(&mut tailer);
    assert_eq!(
        texts(&after),
        ["line 1", "line 2", "a longer third line", "line 4"]
    );
    assert_eq!(after[0].start, 0);
    assert_ne!(after[0].stream.fingerprint, before[0].stream.fingerprint);
    assert_eq!(
        (tailer.stats().truncations, tailer.stats().generations),
        (1, 1)
    );
}

#[test]
fn copytruncate_is_caught_even_when_the_file_grew_back() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=2));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    assert_eq!(texts(&tailer.poll(BIG)), ["line 1", "line 2"]);

    logs.truncate("a.log");
    logs.append("a.log", "a longer line 3\na longer line 4\n");
    let after = drain(&mut tailer);
    assert_eq!(texts(&after), ["a longer line 3", "a longer line 4"]);
    assert_eq!(after[0].start, 0);
    assert_eq!(tailer.stats().truncations, 1);
}

#[test]
fn deleted_file_is_finished_from_its_open_handle() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=2));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let first = tailer.poll(BIG);
    logs.append("a.log", &lines(3..=4));
    fs::remove_file(logs.path("a.log")).unwrap();

    let rest = drain(&mut tailer);
    assert_eq!(texts(&rest), ["line 3", "line 4"]);
    assert_eq!(tailer.stats().files_watched, 1, "kept until acknowledged");
    ack_all(&mut tailer, &first);
    ack_all(&mut tailer, &rest);
    assert!(tailer.poll(BIG).is_empty());
    assert_eq!(tailer.stats().files_watched, 0);
}

#[test]
fn resumes_after_restart_with_exactly_the_unacknowledged_tail() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=9));
    let state = logs.state_dir();
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    // "line N\n" is 7 bytes: 15 bytes = two lines and a piece of the third.
    let first = tailer.poll(15);
    let second = tailer.poll(15);
    let third = tailer.poll(BIG);
    assert_eq!(texts(&first), ["line 1", "line 2"]);
    assert_eq!(texts(&second), ["line 3", "line 4"]);
    assert_eq!(
        texts(&third),
        ["line 5", "line 6", "line 7", "line 8", "line 9"]
    );
    ack_all(&mut tailer, &first);
    ack_all(&mut tailer, &second);
    tailer.checkpoints().save(&state).unwrap();
    drop(tailer);

    // After the restart `start_at = end` would skip a new file, but this
    // one has a checkpoint.
    let mut config = logs.config();
    config.start_at = StartAt::End;
    let mut tailer = Tailer::new(config, Checkpoints::load(&state).unwrap()).unwrap();
    let again = drain(&mut tailer);
    assert_eq!(again, third, "the same stream, range and lines");
    let lag = &tailer.stats().files[0];
    assert_eq!((lag.size, lag.acked, lag.lag), (63, 28, 35));
}

#[test]
fn a_renamed_file_resumes_after_restart_by_fingerprint() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=4));
    let state = logs.state_dir();
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let first = tailer.poll(BIG);
    tailer.ack(&first[0].stream, first[0].lines[2].offset);
    tailer.checkpoints().save(&state).unwrap();
    drop(tailer);

    fs::rename(logs.path("a.log"), logs.path("b.log")).unwrap();
    let mut tailer = Tailer::new(logs.config(), Checkpoints::load(&state).unwrap()).unwrap();
    let again = drain(&mut tailer);
    assert_eq!(texts(&again), ["line 3", "line 4"]);
    assert_eq!(again[0].stream.fingerprint, first[0].stream.fingerprint);
    assert_eq!(again[0].stream.path, logs.path("b.log"));
}

#[test]
fn start_at_end_skips_existing_content_but_not_checkpointed_files() {
    let logs = Logs::new();
    let state = logs.state_dir();
    logs.append("known.log", &lines(1..=3));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let known = tailer.poll(BIG);
    tailer.ack(&known[0].stream, known[0].lines[1].offset);
    tailer.checkpoints().save(&state).unwrap();
    drop(tailer);

    logs.append("fresh.log", "old 1\nold 2\nold 3 unfinished");
    let mut config = logs.config();
    config.start_at = StartAt::End;
    let mut tailer = Tailer::new(config, Checkpoints::load(&state).unwrap()).unwrap();
    logs.append("fresh.log", "\nnew 4\n");
    logs.append("known.log", "line 4\n");
    logs.append("later.log", "later 1\nlater 2\n");
    tailer.rescan();

    let batches = drain(&mut tailer);
    let of = |name: &str| {
        texts(
            &batches
                .iter()
                .filter(|b| b.stream.path == logs.path(name))
                .cloned()
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    assert_eq!(of("known.log"), ["line 2", "line 3", "line 4"]);
    // The unfinished line existed at startup but ended after: it is kept.
    assert_eq!(of("fresh.log"), ["old 3 unfinished", "new 4"]);
    assert_eq!(
        of("later.log"),
        ["later 1", "later 2"],
        "created after startup"
    );
}

#[test]
fn discovers_a_file_created_later_after_a_rescan() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.rescan_interval_ms = 3_600_000;
    // The rescan alone (events have their own tests below).
    config.file_events = false;
    config.exclude = vec![logs.path("skip*").display().to_string()];
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    assert!(tailer.poll(BIG).is_empty());

    logs.append("a.log", &lines(1..=2));
    logs.append("skip.log", &lines(1..=2));
    assert!(tailer.poll(BIG).is_empty(), "no rescan within the interval");
    tailer.rescan();
    let batches = tailer.poll(BIG);
    assert_eq!(texts(&batches), ["line 1", "line 2"]);
    assert_eq!(batches[0].stream.path, logs.path("a.log"));
    assert_eq!(tailer.stats().files_watched, 1);
}

#[test]
fn rewind_rereads_exactly_what_was_not_acknowledged() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=4));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let first = tailer.poll(14);
    let rest = tailer.poll(BIG);
    ack_all(&mut tailer, &first);

    tailer.rewind_to_acked();
    assert_eq!(tailer.poll(BIG), rest);
    assert!(tailer.poll(BIG).is_empty());

    // A late acknowledgement of a batch sent before a rewind skips it.
    tailer.rewind_to_acked();
    ack_all(&mut tailer, &rest);
    assert!(tailer.poll(BIG).is_empty());
    assert_eq!(tailer.stats().files[0].lag, 0);
}

#[test]
fn a_poll_reads_no_more_than_its_budget() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=50));
    logs.append("b.log", &lines(1..=50).replace("line", "b"));
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    let mut delivered = 0;
    for _ in 0..100 {
        let before = tailer.stats().bytes_read;
        delivered += texts(&tailer.poll(10)).len();
        assert!(tailer.stats().bytes_read - before <= 10);
    }
    assert_eq!(delivered, 100);
    assert!(tailer.poll(0).is_empty());
}

#[test]
fn a_copy_with_the_same_head_is_not_read_twice() {
    let logs = Logs::new();
    logs.append("a.log", &lines(1..=2));
    fs::copy(logs.path("a.log"), logs.path("b.log")).unwrap();
    let mut tailer = Tailer::new(logs.config(), Checkpoints::new()).unwrap();
    assert_eq!(texts(&drain(&mut tailer)), ["line 1", "line 2"]);
    assert!(tailer.stats().duplicates >= 1);
}

#[test]
fn expired_checkpoints_are_dropped_on_rescan() {
    let logs = Logs::new();
    let mut checkpoints = Checkpoints::new();
    let gone = FileFingerprint::from_u64(42);
    checkpoints.acknowledge(
        FileIdentity::first(gone),
        10,
        Path::new("/gone.log"),
        std::time::UNIX_EPOCH,
    );
    let mut config = logs.config();
    config.checkpoint_ttl_secs = 3600;
    let tailer = Tailer::new(config, checkpoints).unwrap();
    assert!(tailer.checkpoints().get(gone).is_none());
}

/// Polls until `want` lines came or five seconds passed.
fn poll_for(tailer: &mut Tailer, want: usize) -> Vec<ReadLines> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut all = Vec::new();
    while all.iter().map(|b: &ReadLines| b.lines.len()).sum::<usize>() < want
        && std::time::Instant::now() < deadline
    {
        all.extend(tailer.poll(BIG));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    all
}

/// Files that have a matching name for no time at all: created, written and
/// renamed out of the glob at once, a hundred times, with no rescan after
/// the first. Every line is read, from the handle opened on the event (or,
/// when the rename won the race, at the name it went to).
#[cfg(target_os = "linux")]
#[test]
fn files_renamed_away_before_any_rescan_are_read_from_their_events() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.rescan_interval_ms = 3_600_000;
    config.rotate_wait_ms = 3_600_000;
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    assert!(tailer.stats().file_events);
    for i in 0..100 {
        logs.append("f.log", &format!("file {i} first\nfile {i} second\n"));
        fs::rename(logs.path("f.log"), logs.path(&format!("f.log.{i}"))).unwrap();
    }
    let batches = poll_for(&mut tailer, 200);
    let mut got: Vec<&str> = texts(&batches);
    got.sort_unstable();
    let mut want: Vec<String> = (0..100)
        .flat_map(|i| [format!("file {i} first"), format!("file {i} second")])
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let stats = tailer.stats();
    assert_eq!(stats.found_by_events, 100);
    assert_eq!(stats.files_watched, 100, "each finished from its handle");
    assert!(
        stats
            .files
            .iter()
            .all(|f| f.path.extension() != Some("log".as_ref())),
        "each is known by the name it went to"
    );
}

/// Without events, the same files are missed: what the rescan alone gives.
#[test]
fn without_events_a_file_renamed_away_between_rescans_is_missed() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.rescan_interval_ms = 3_600_000;
    config.file_events = false;
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    logs.append("f.log", "first\nsecond\n");
    fs::rename(logs.path("f.log"), logs.path("f.log.1")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(drain(&mut tailer).is_empty());
    assert!(!tailer.stats().file_events);
}

/// A file created in a directory that did not exist at startup is found by
/// the rescan (which also starts watching the directory), then by events.
#[cfg(target_os = "linux")]
#[test]
fn directories_that_appear_later_are_watched_from_the_next_rescan() {
    let logs = Logs::new();
    let mut config = TailerConfig::new(vec![logs.path("later/*.log").display().to_string()]);
    config.start_at = StartAt::Beginning;
    config.rescan_interval_ms = 3_600_000;
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    fs::create_dir(logs.path("later")).unwrap();
    tailer.rescan();
    logs.append("later/x.log", "one\ntwo\n");
    fs::rename(logs.path("later/x.log"), logs.path("later/x.old")).unwrap();
    assert_eq!(texts(&poll_for(&mut tailer, 2)), ["one", "two"]);
}

/// A file renamed out of the globs before its head (two lines) was complete
/// is known by the lines it has, and read; lines the server still appends
/// to it come too, under the same stream.
#[test]
fn a_one_line_file_rotated_away_is_read() {
    let logs = Logs::new();
    let mut config = logs.config();
    config.rotate_wait_ms = 3_600_000;
    let mut tailer = Tailer::new(config, Checkpoints::new()).unwrap();
    logs.append("a.log", "only line\n");
    assert!(
        drain(&mut tailer).is_empty(),
        "a live file waits for its head"
    );
    fs::rename(logs.path("a.log"), logs.path("a.old")).unwrap();
    let first = drain(&mut tailer);
    assert_eq!(texts(&first), ["only line"]);
    logs.append("a.old", "written after the rotation\n");
    let second = drain(&mut tailer);
    assert_eq!(texts(&second), ["written after the rotation"]);
    assert_eq!(second[0].stream.fingerprint, first[0].stream.fingerprint);
    assert_eq!(second[0].start, first[0].end);
}
