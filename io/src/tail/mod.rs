//! The tailer: finds log files by glob, follows them across rotation and
//! truncation, and hands out complete lines with the byte range they cover.
//!
//! It is synchronous and poll-driven: `poll` reads at most a byte budget and
//! returns; the caller ships the batches and `ack`s them when the collector
//! has them. Invariants:
//! - a batch holds complete lines only and covers exactly `[start, end)`;
//! - checkpoints move only on acknowledgement, so the log files are the
//!   buffer: `rewind_to_acked` or a restart re-reads exactly the
//!   unacknowledged tail, at the same offsets;
//! - a file is closed only once it has left its path and was read to its end
//!   and acknowledged, so a rotated or deleted file is finished from its open
//!   handle;
//! - memory is bounded: a poll holds at most its budget of lines, and each
//!   file at most one unfinished line of `max_line_bytes`.

mod checkpoint;
mod config;
mod discover;
mod fingerprint;
mod watcher;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use checkpoint::{CHECKPOINT_FILE, Checkpoint, CheckpointError, Checkpoints};
pub use config::{StartAt, TailerConfig};
pub use fingerprint::{FileFingerprint, FileIdentity, Fingerprinter, fnv1a64};

use config::Patterns;
use discover::Discovery;
use watcher::{FileId, FileWatcher, Origin, file_id};

/// Errors building a tailer.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A glob pattern does not parse.
    #[error("invalid glob pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: glob::PatternError,
    },
    /// A setting is out of range.
    #[error("invalid tailer configuration: {0}")]
    Config(String),
}

/// One stream of lines: a file's content, known by its stream fingerprint
/// ([`FileIdentity::fingerprint`]: its head and generation). The path is where
/// the file was last seen; it changes when the file is rotated. The
/// agent's own form of [`logmon_protocol::wire::StreamId`] (into which it
/// converts), with the path as the OS gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// The file's identity.
    pub fingerprint: FileFingerprint,
    /// Where the file was when these lines were read.
    pub path: PathBuf,
}

impl From<&StreamId> for logmon_protocol::wire::StreamId {
    fn from(stream: &StreamId) -> Self {
        logmon_protocol::wire::StreamId {
            fingerprint: stream.fingerprint.get(),
            path: stream.path.display().to_string(),
        }
    }
}

/// One line, without its line terminator (`\n` or `\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where the line starts in the file.
    pub offset: u64,
    /// The line (invalid UTF-8 replaced), cut to `max_line_bytes`.
    pub text: String,
    /// Whether the line was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
}

/// Complete lines read from one stream in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLines {
    /// Where they come from.
    pub stream: StreamId,
    /// Offset of the first line.
    pub start: u64,
    /// Offset just after the last line's terminator: acknowledge this.
    pub end: u64,
    /// The lines, in file order, covering `[start, end)` exactly.
    pub lines: Vec<Line>,
    /// How many of them were cut to `max_line_bytes`.
    pub truncated: u64,
}

/// How far behind one watched file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLag {
    /// Where the file was last seen.
    pub path: PathBuf,
    /// Its stream fingerprint, once its head is complete.
    pub fingerprint: Option<FileFingerprint>,
    /// Its size at the last poll.
    pub size: u64,
    /// Start of the first line not delivered yet.
    pub read: u64,
    /// Start of the first line not acknowledged yet.
    pub acked: u64,
    /// `size - acked`: bytes not yet safely shipped.
    pub lag: u64,
}

/// Counters since the tailer was built, and the state of each watched file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Lines delivered (re-deliveries after a rewind count again).
    pub lines_read: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Lines cut to `max_line_bytes`.
    pub truncated_lines: u64,
    /// Files found shorter than the read position (copytruncate), restarted
    /// from their beginning.
    pub truncations: u64,
    /// Of those, the ones whose content started over with a head seen before
    /// (byte-identical first lines), read as a new generation.
    pub generations: u64,
    /// Times a watched file left its path (renamed or deleted).
    pub rotations: u64,
    /// Files skipped because another watched file has the same fingerprint
    /// (copies, or files with identical heads).
    pub duplicates: u64,
    /// I/O errors on individual files (the file is retried next poll).
    pub io_errors: u64,
    /// Files opened on a file-system event that no rescan had found (most
    /// are found by both; these would have been missed by the rescan alone
    /// had they left their name before it).
    pub found_by_events: u64,
    /// Whether file-system events are being watched (else the rescan alone
    /// finds files).
    pub file_events: bool,
    /// Open files, including rotated ones being finished.
    pub files_watched: usize,
    /// Per-file positions and lag.
    pub files: Vec<FileLag>,
}

#[derive(Debug, Default)]
struct Counters {
    lines_read: u64,
    bytes_read: u64,
    truncated_lines: u64,
    truncations: u64,
    generations: u64,
    rotations: u64,
    duplicates: u64,
    io_errors: u64,
    found_by_events: u64,
}

/// Follows the files matched by the configured globs; see the module docs.
#[derive(Debug)]
pub struct Tailer {
    config: TailerConfig,
    patterns: Patterns,
    fingerprinter: Fingerprinter,
    checkpoints: Checkpoints,
    watchers: Vec<FileWatcher>,
    discovery: Discovery,
    /// Delivered ends of streams (by stream fingerprint) whose file was
    /// truncated under us while batches were unacknowledged: if a copy of the
    /// old content turns up (copytruncate's copy), it resumes there instead
    /// of resending. Cleared by `rewind_to_acked`; entries go once
    /// acknowledged.
    read_ahead: HashMap<FileFingerprint, u64>,
    last_scan: Option<Instant>,
    /// Round-robin start, so one busy file cannot starve the others.
    next: usize,
    scratch: Vec<u8>,
    head_buf: Vec<u8>,
    counters: Counters,
    last_error: Option<String>,
}

impl Tailer {
    /// Validates `config`, then finds the files that exist now. Files with a
    /// checkpoint resume at their acknowledged offset, wherever they moved;
    /// other files found now start per `config.start_at`.
    pub fn new(config: TailerConfig, checkpoints: Checkpoints) -> Result<Self, TailError> {
        let patterns = config.validate()?;
        let discovery = Discovery::start(&patterns, config.file_events);
        let mut tailer = Self {
            discovery,
            fingerprinter: Fingerprinter::new(config.fingerprint_bytes, config.fingerprint_lines),
            scratch: vec![0; config.read_chunk_bytes],
            head_buf: Vec::with_capacity(config.fingerprint_bytes),
            config,
            patterns,
            checkpoints,
            watchers: Vec::new(),
            read_ahead: HashMap::new(),
            last_scan: None,
            next: 0,
            counters: Counters::default(),
            last_error: None,
        };
        tailer.scan(true);
        tailer.last_scan = Some(Instant::now());
        Ok(tailer)
    }

    /// Reads at most `budget_bytes` from the watched files (rediscovering
    /// files first when the rescan interval has passed) and returns the
    /// complete lines read, one batch per file that had any.
    pub fn poll(&mut self, budget_bytes: u64) -> Vec<ReadLines> {
        let now = Instant::now();
        let rescanned = self.discovery.overflowed()
            || self
                .last_scan
                .is_none_or(|at| now.duration_since(at) >= self.config.rescan_interval());
        if rescanned {
            self.scan(false);
            self.last_scan = Some(now);
        }
        self.adopt_discovered();
        let mut batches = Vec::new();
        let mut left = budget_bytes;
        let count = self.watchers.len();
        for k in 0..count {
            let i = (self.next + k) % count;
            let step = self
                .refresh(i, rescanned)
                .and_then(|()| self.read(i, &mut left, now));
            match step {
                Ok(Some(batch)) => batches.push(batch),
                Ok(None) => {}
                Err(e) => self.note_error(&self.watchers[i].path.clone(), &e),
            }
        }
        if count > 0 {
            self.next = (self.next + 1) % count;
        }
        self.close_finished(now);
        batches
    }

    /// Expands the globs now, whatever the rescan interval says.
    pub fn rescan(&mut self) {
        self.scan(false);
        self.last_scan = Some(Instant::now());
    }

    /// Records that everything in `stream` before `end` (the `end` of a
    /// delivered batch) reached the collector. Acknowledgements may arrive
    /// late and out of order; offsets only move forward.
    pub fn ack(&mut self, stream: &StreamId, end: u64) {
        let wall = SystemTime::now();
        let fingerprint = stream.fingerprint;
        let watcher = self
            .watchers
            .iter_mut()
            .find(|w| w.stream_fingerprint() == Some(fingerprint));
        let path = watcher
            .as_ref()
            .map_or(stream.path.as_path(), |w| w.path.as_path());
        self.checkpoints.advance(fingerprint, end, path, wall);
        if let Some(w) = watcher {
            w.acked = w.acked.max(end);
            // After a rewind, an acknowledgement of a batch sent before it
            // means those lines need not be read again.
            if w.acked > w.read_pos {
                w.seek_to(w.acked);
            }
        }
        if self.read_ahead.get(&fingerprint).is_some_and(|&r| r <= end) {
            self.read_ahead.remove(&fingerprint);
        }
    }

    /// Moves every file's read position back to its acknowledged offset, so
    /// unacknowledged lines are read again (call it after dropping batches
    /// that could not be shipped).
    pub fn rewind_to_acked(&mut self) {
        for w in &mut self.watchers {
            if w.fingerprint.is_some() {
                let acked = w.acked;
                w.seek_to(acked);
            }
        }
        self.read_ahead.clear();
    }

    /// The acknowledged offsets; save them with `Checkpoints::save`.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Counters and per-file lag.
    pub fn stats(&self) -> TailStats {
        let c = &self.counters;
        TailStats {
            lines_read: c.lines_read,
            bytes_read: c.bytes_read,
            truncated_lines: c.truncated_lines,
            truncations: c.truncations,
            generations: c.generations,
            rotations: c.rotations,
            duplicates: c.duplicates,
            io_errors: c.io_errors,
            found_by_events: c.found_by_events,
            file_events: self.discovery.active(),
            files_watched: self.watchers.len(),
            files: self
                .watchers
                .iter()
                .map(|w| FileLag {
                    path: w.path.clone(),
                    fingerprint: w.stream_fingerprint(),
                    size: w.size,
                    read: w.read_pos,
                    acked: w.acked,
                    lag: w.size.saturating_sub(w.acked),
                })
                .collect(),
        }
    }

    /// Reads the file of `stream` (a stream fingerprint, as in
    /// [`StreamId`]) at `offset` into `buf`, from its open handle and
    /// without moving its read position (`pread`): for what must look at a
    /// file's earlier lines, such as an edge parser's replay of the
    /// directives before where reading starts. `None` when no open file is
    /// that stream.
    pub fn read_at(
        &self,
        stream: FileFingerprint,
        offset: u64,
        buf: &mut [u8],
    ) -> Option<io::Result<usize>> {
        let w = self
            .watchers
            .iter()
            .find(|w| w.stream_fingerprint() == Some(stream))?;
        Some(read_at(w.file(), buf, offset))
    }

    /// The last I/O error met on a file, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn note_error(&mut self, path: &Path, error: &io::Error) {
        self.counters.io_errors += 1;
        self.last_error = Some(format!("{}: {error}", path.display()));
    }

    fn excluded(&self, path: &Path) -> bool {
        self.patterns.exclude.iter().any(|p| p.matches_path(path))
    }

    /// Takes over the files the event thread opened, unless one is watched
    /// already (the rescan found it too, or it is a watched file renamed).
    fn adopt_discovered(&mut self) {
        if let Some(error) = self.discovery.take_error() {
            self.counters.io_errors += 1;
            self.last_error = Some(error);
        }
        for opened in self.discovery.take() {
            let meta = match opened.file.metadata() {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                Err(e) => {
                    self.note_error(&opened.path, &e);
                    continue;
                }
            };
            let id = file_id(&meta);
            let known = self.watchers.iter_mut().find(|w| match (id, w.id) {
                (Some(a), Some(b)) => a == b,
                _ => w.path == opened.path,
            });
            if let Some(w) = known {
                // A watched file renamed out of the globs: it is rotated
                // now, known by its new name, and to be finished.
                if !opened.matching && w.path != opened.path {
                    w.path = opened.path;
                    if !w.orphaned {
                        w.orphaned = true;
                        w.idle_since = None;
                        if w.fingerprint.is_some() {
                            self.counters.rotations += 1;
                        }
                    }
                }
                continue;
            }
            let mut watcher = FileWatcher::new(
                opened.path,
                opened.file,
                id,
                meta.len(),
                Origin::Found { skip_to: None },
            );
            // Opened where it went after leaving a matching name: finish it.
            watcher.orphaned = !opened.matching;
            self.counters.found_by_events += 1;
            self.watchers.push(watcher);
        }
    }

    /// Expands the globs: follows watched files to their new paths, marks
    /// files that left every matching path as orphaned, opens new files.
    fn scan(&mut self, startup: bool) {
        let wall = SystemTime::now();
        // Watch first: a file created after the glob is then caught by an
        // event rather than missed until the next rescan.
        for (dir, e) in self.discovery.watch(&self.patterns) {
            self.note_error(&dir, &e);
        }
        let mut paths = BTreeSet::new();
        let mut errors = Vec::new();
        for pattern in &self.patterns.include {
            let entries = match glob::glob(pattern.as_str()) {
                Ok(entries) => entries,
                Err(e) => unreachable!("pattern {pattern} was validated: {e}"),
            };
            for entry in entries {
                match entry {
                    Ok(path) if !self.excluded(&path) => {
                        paths.insert(path);
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        for e in errors {
            self.note_error(e.path(), e.error());
        }
        for w in &mut self.watchers {
            w.seen = false;
        }
        for path in paths {
            let meta = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                // Gone between the glob and the stat: the next scan decides.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.note_error(&path, &e);
                    continue;
                }
            };
            if self.follow(&path, file_id(&meta)) {
                continue;
            }
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.note_error(&path, &e);
                    continue;
                }
            };
            // The handle's own metadata: the path may have been replaced
            // between the stat and the open.
            let meta = match file.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    self.note_error(&path, &e);
                    continue;
                }
            };
            let id = file_id(&meta);
            if self.follow(&path, id) {
                continue;
            }
            let skip_to = (startup && self.config.start_at == StartAt::End).then_some(meta.len());
            self.watchers.push(FileWatcher::new(
                path,
                file,
                id,
                meta.len(),
                Origin::Found { skip_to },
            ));
        }
        for w in &mut self.watchers {
            if !w.seen && !w.orphaned {
                w.orphaned = true;
                w.idle_since = None;
                if w.fingerprint.is_some() {
                    self.counters.rotations += 1;
                }
            }
            if let Some(fingerprint) = w.stream_fingerprint() {
                self.checkpoints.touch(fingerprint, &w.path, wall);
            }
        }
        self.checkpoints.expire(wall, self.config.checkpoint_ttl());
    }

    /// If a watched file is the one at `path`, notes that it is there now.
    fn follow(&mut self, path: &Path, id: Option<FileId>) -> bool {
        let same = |w: &FileWatcher| match (id, w.id) {
            (Some(a), Some(b)) => a == b,
            _ => w.path == path,
        };
        let Some(w) = self.watchers.iter_mut().find(|w| same(w)) else {
            return false;
        };
        // A second path to a file already seen (a hard link) changes nothing.
        if !w.seen {
            w.seen = true;
            w.orphaned = false;
            if w.path != path {
                path.clone_into(&mut w.path);
                if w.fingerprint.is_some() {
                    self.counters.rotations += 1;
                }
            }
        }
        true
    }

    /// Looks at file `i` again: size, truncation, identity.
    fn refresh(&mut self, i: usize, rescanned: bool) -> io::Result<()> {
        let w = &mut self.watchers[i];
        if w.discard {
            return Ok(());
        }
        let size = w.file().metadata()?.len();
        let changed = size != w.size;
        if changed {
            w.idle_since = None;
        }
        if let Some(fingerprint) = w.fingerprint {
            // A shorter file, or a different head, means the content was
            // replaced in place (copytruncate). Checking the head also catches
            // a truncated file that grew back past our position.
            // And when the head came back identical, the end of the last
            // line read is no longer where it was.
            let head = match w.short_head {
                None => self.fingerprinter.of_file(w.file(), &mut self.head_buf),
                Some(len) => self
                    .fingerprinter
                    .of_file_short(w.file(), &mut self.head_buf, len),
            };
            let truncated = size < w.scan_pos()
                || ((changed || rescanned)
                    && (head? != Some(fingerprint) || !w.tail_unchanged(&mut self.scratch)?));
            if truncated {
                self.counters.truncations += 1;
                if w.read_pos > w.acked
                    && let Some(stream) = w.stream_fingerprint()
                {
                    let end = self.read_ahead.entry(stream).or_default();
                    *end = (*end).max(w.read_pos);
                }
                w.restart_after_truncation(size);
            }
        }
        w.size = size;
        if w.fingerprint.is_none() {
            self.identify(i)?;
        }
        Ok(())
    }

    /// Fingerprints file `i` if its head is complete, picks which stream
    /// (generation) its content is, and where to start.
    fn identify(&mut self, i: usize) -> io::Result<()> {
        let mut short_head = None;
        let head = match self
            .fingerprinter
            .of_file(self.watchers[i].file(), &mut self.head_buf)?
        {
            Some(head) => head,
            None => {
                // A file that left its name may never complete its head:
                // it is known by the complete lines it has (their length is
                // kept, so lines the server still appends to it change
                // nothing), or a one-line file rotated away would never be
                // read.
                match self.watchers[i]
                    .orphaned
                    .then(|| self.fingerprinter.of_short_head(&self.head_buf))
                    .flatten()
                {
                    Some((head, len)) => {
                        short_head = Some(len);
                        head
                    }
                    None => return Ok(()),
                }
            }
        };
        // Generations of this head that other open files are.
        let owned: Vec<u32> = self
            .watchers
            .iter()
            .enumerate()
            .filter(|&(j, other)| j != i && other.fingerprint == Some(head))
            .map(|(_, other)| other.generation)
            .collect();
        let wall = SystemTime::now();
        let w = &self.watchers[i];
        let size = w.size;
        let resume = match w.origin {
            Origin::Truncated => None,
            Origin::Found { .. } => self.resumable(head, &owned, &w.path),
        };
        let (generation, acked, start) = match (w.origin, resume) {
            (Origin::Truncated, _) => {
                // New content. Its head may have been seen before (a
                // copytruncated file whose first lines came back identical):
                // then it is a new generation, or the collector would take its
                // lines for the old ones.
                self.started_over(head, &owned)
            }
            (Origin::Found { .. }, Some((generation, offset))) if offset <= size => {
                let stream = FileIdentity { head, generation }.fingerprint();
                let ahead = self.read_ahead.remove(&stream).unwrap_or(0);
                let start = if ahead <= size {
                    ahead.max(offset)
                } else {
                    // The copy is shorter than what we delivered: lines
                    // written between copy and truncate exist nowhere now.
                    w.last_line_end(size, &mut self.scratch)?.max(offset)
                };
                (generation, offset, start)
            }
            (Origin::Found { .. }, Some(_)) => {
                // Shorter than its checkpoint: truncated while we were away.
                self.counters.truncations += 1;
                self.started_over(head, &owned)
            }
            (Origin::Found { .. }, None) if !owned.is_empty() => {
                // Every known generation of this head is open already: a copy.
                self.counters.duplicates += 1;
                self.watchers[i].discard = true;
                return Ok(());
            }
            (Origin::Found { skip_to }, None) => {
                let start = match skip_to {
                    Some(limit) => w.last_line_end(limit.min(size), &mut self.scratch)?,
                    None => 0,
                };
                (0, start, start)
            }
        };
        let identity = FileIdentity { head, generation };
        let w = &mut self.watchers[i];
        // Known from now on, so a restart neither skips its new lines nor
        // re-reads what `start_at = end` skipped.
        self.checkpoints.acknowledge(identity, acked, &w.path, wall);
        w.fingerprint = Some(head);
        w.short_head = short_head;
        w.generation = generation;
        w.acked = acked;
        w.seek_to(start);
        Ok(())
    }

    /// The generation of `head` a file found at `path` resumes, with its
    /// acknowledged offset: one no other open file is, preferring the one
    /// last seen at this path, then the newest.
    fn resumable(&self, head: FileFingerprint, owned: &[u32], path: &Path) -> Option<(u32, u64)> {
        self.checkpoints
            .generations(head)
            .filter(|c| !owned.contains(&c.identity.generation))
            .max_by_key(|c| (c.path == path, c.identity.generation))
            .map(|c| (c.identity.generation, c.offset))
    }

    /// Content that starts over from byte 0: a new generation if its head
    /// was seen before. Returns (generation, acknowledged, start).
    fn started_over(&mut self, head: FileFingerprint, owned: &[u32]) -> (u32, u64, u64) {
        let generation = self.next_generation(head, owned);
        if generation > 0 {
            self.counters.generations += 1;
        }
        (generation, 0, 0)
    }

    /// The first generation of `head` neither checkpointed nor open.
    fn next_generation(&self, head: FileFingerprint, owned: &[u32]) -> u32 {
        let known = self
            .checkpoints
            .generations(head)
            .map(|c| c.identity.generation);
        known
            .chain(owned.iter().copied())
            .max()
            .map_or(0, |newest| newest + 1)
    }

    /// Reads file `i` within the remaining budget.
    fn read(&mut self, i: usize, left: &mut u64, now: Instant) -> io::Result<Option<ReadLines>> {
        let w = &mut self.watchers[i];
        let Some(fingerprint) = w.fingerprint.filter(|_| !w.discard) else {
            if w.idle_since.is_none() {
                w.idle_since = Some(now);
            }
            return Ok(None);
        };
        let fingerprint = FileIdentity {
            head: fingerprint,
            generation: w.generation,
        }
        .fingerprint();
        let mut batch = None;
        if *left > 0 && w.scan_pos() < w.size {
            let start = w.read_pos;
            let out = w.read_lines(*left, self.config.max_line_bytes, &mut self.scratch)?;
            *left -= out.bytes_read;
            w.size = w.size.max(w.scan_pos());
            let c = &mut self.counters;
            c.bytes_read += out.bytes_read;
            c.lines_read += out.lines.len() as u64;
            c.truncated_lines += out.truncated_lines;
            if !out.lines.is_empty() {
                batch = Some(ReadLines {
                    stream: StreamId {
                        fingerprint,
                        path: w.path.clone(),
                    },
                    start,
                    end: w.read_pos,
                    lines: out.lines,
                    truncated: out.truncated_lines,
                });
            }
        }
        if w.scan_pos() >= w.size && w.idle_since.is_none() {
            w.idle_since = Some(now);
        }
        Ok(batch)
    }

    /// Closes duplicates, and orphaned files that are finished: read to the
    /// end, acknowledged, and unchanged for `rotate_wait`.
    fn close_finished(&mut self, now: Instant) {
        let wait = self.config.rotate_wait();
        self.watchers.retain(|w| {
            if w.discard {
                return false;
            }
            if !w.orphaned {
                return true;
            }
            let idle = w
                .idle_since
                .is_some_and(|at| now.duration_since(at) >= wait);
            let finished = match w.fingerprint {
                Some(_) => w.scan_pos() >= w.size && w.fully_acked(),
                // Never identified: there is nothing to finish.
                None => true,
            };
            !(idle && finished)
        });
    }
}

/// `pread`: reads at `offset` without moving the handle's position.
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// `pread` where there is none: seek, then read (the tailer seeks before
/// each of its own reads, so moving the position is harmless).
#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read(buf)
}
