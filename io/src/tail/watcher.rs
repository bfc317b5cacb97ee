//! One open log file and the line reader over it.
//!
//! Invariants: `read_pos` is always a line start (every byte before it went
//! out in a complete line); `scan_pos >= read_pos` is how far the file was
//! read, and the bytes in between are the unfinished current line, of which at
//! most `max_line_bytes` are kept. Memory per file is therefore bounded by the
//! line limit, whatever the file holds.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Instant;

use super::Line;
use super::fingerprint::{FileFingerprint, FileIdentity};

/// Which file a path names, independent of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

#[cfg(unix)]
pub(crate) fn file_id(meta: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

// Without inode numbers a file is found again by its path only, so a rename
// cannot be followed; the open handle still finishes the old file.
#[cfg(not(unix))]
pub(crate) fn file_id(_meta: &Metadata) -> Option<FileId> {
    None
}

/// How to choose the first offset once the file's head is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Found on disk: resume from a checkpoint if there is one; otherwise
    /// start at 0, or, with `skip_to`, after the last complete line that
    /// existed below that size when the tailer started.
    Found { skip_to: Option<u64> },
    /// The file was truncated under us: whatever it holds now is new.
    Truncated,
}

/// What one read produced.
#[derive(Debug, Default)]
pub(crate) struct ReadOutcome {
    pub(crate) bytes_read: u64,
    pub(crate) lines: Vec<Line>,
    pub(crate) truncated_lines: u64,
}

#[derive(Debug)]
pub(crate) struct FileWatcher {
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) id: Option<FileId>,
    /// The head's fingerprint: `None` until the head is complete; nothing is
    /// read before that.
    pub(crate) fingerprint: Option<FileFingerprint>,
    /// Which generation of that head this content is.
    pub(crate) generation: u32,
    /// The head's length when the file was identified by its complete lines
    /// alone (rotated away and idle before its head was complete).
    pub(crate) short_head: Option<usize>,
    pub(crate) origin: Origin,
    pub(crate) read_pos: u64,
    scan_pos: u64,
    line: Vec<u8>,
    line_overflow: bool,
    /// Everything before this offset was acknowledged (a line start).
    pub(crate) acked: u64,
    /// The file's size at the last look.
    pub(crate) size: u64,
    /// The path no longer leads to this file (rotated away or deleted).
    pub(crate) orphaned: bool,
    /// Marked during a rescan when some matching path leads here.
    pub(crate) seen: bool,
    /// Caught up and unchanged since this instant.
    pub(crate) idle_since: Option<Instant>,
    /// To be closed at the end of this poll (duplicate of a watched file).
    pub(crate) discard: bool,
    /// The last bytes before `read_pos` (the end of the last line read, its
    /// `\n` included; empty when unknown): if the file no longer holds them
    /// there, its content was replaced in place, even when it grew back past
    /// us with the same head.
    tail: Vec<u8>,
}

/// How many bytes before the read position are checked.
const TAIL_CHECK_BYTES: usize = 64;

impl FileWatcher {
    pub(crate) fn new(
        path: PathBuf,
        file: File,
        id: Option<FileId>,
        size: u64,
        origin: Origin,
    ) -> Self {
        Self {
            path,
            file,
            id,
            fingerprint: None,
            generation: 0,
            short_head: None,
            origin,
            read_pos: 0,
            scan_pos: 0,
            line: Vec::new(),
            line_overflow: false,
            acked: 0,
            size,
            orphaned: false,
            seen: true,
            idle_since: None,
            discard: false,
            tail: Vec::with_capacity(TAIL_CHECK_BYTES),
        }
    }

    /// The stream this file's content is, once its head is complete.
    pub(crate) fn identity(&self) -> Option<FileIdentity> {
        self.fingerprint.map(|head| FileIdentity {
            head,
            generation: self.generation,
        })
    }

    /// The fingerprint the stream goes by on the wire and in checkpoints.
    pub(crate) fn stream_fingerprint(&self) -> Option<FileFingerprint> {
        self.identity().map(FileIdentity::fingerprint)
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// How far the file was read, including an unfinished line.
    pub(crate) fn scan_pos(&self) -> u64 {
        self.scan_pos
    }

    /// Whether every complete line was delivered and acknowledged.
    pub(crate) fn fully_acked(&self) -> bool {
        self.acked >= self.read_pos
    }

    /// Moves the read position to `offset` (a line start), forgetting any
    /// unfinished line.
    pub(crate) fn seek_to(&mut self, offset: u64) {
        self.read_pos = offset;
        self.scan_pos = offset;
        self.line.clear();
        self.line_overflow = false;
        self.idle_since = None;
        self.tail.clear();
    }

    /// Whether the bytes before the read position are still the ones read
    /// there (`true` when there is nothing to compare).
    pub(crate) fn tail_unchanged(&self, buf: &mut [u8]) -> io::Result<bool> {
        let len = self.tail.len();
        if len == 0 || self.read_pos < len as u64 || buf.len() < len {
            return Ok(true);
        }
        let mut reader = &self.file;
        reader.seek(SeekFrom::Start(self.read_pos - len as u64))?;
        let got = &mut buf[..len];
        match reader.read_exact(got) {
            Ok(()) => Ok(*got == *self.tail),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remembers the file's bytes before the read position from a chunk
    /// just read, if a line ended in it (`chunk` ends at `scan_pos`).
    fn remember_tail(&mut self, chunk: &[u8]) {
        if let Some(end) = memchr::memrchr(b'\n', chunk) {
            let start = (end + 1).saturating_sub(TAIL_CHECK_BYTES);
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[start..=end]);
        }
    }

    /// Forgets the file's identity and position after a truncation.
    pub(crate) fn restart_after_truncation(&mut self, size: u64) {
        self.fingerprint = None;
        self.generation = 0;
        self.short_head = None;
        self.origin = Origin::Truncated;
        self.acked = 0;
        self.size = size;
        self.seek_to(0);
    }

    /// The end of the last complete line below `limit`: where "start at the
    /// end" begins without cutting a line in half. Reads backwards.
    pub(crate) fn last_line_end(&self, limit: u64, buf: &mut [u8]) -> io::Result<u64> {
        let mut reader = &self.file;
        let mut end = limit;
        while end > 0 {
            let len = (buf.len() as u64).min(end);
            let start = end - len;
            reader.seek(SeekFrom::Start(start))?;
            // `len` fits: it is at most `buf.len()`.
            let chunk = &mut buf[..len as usize];
            reader.read_exact(chunk)?;
            if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
                return Ok(start + i as u64 + 1);
            }
            end = start;
        }
        Ok(0)
    }

    /// Reads at most `budget` bytes from the scan position and returns the
    /// complete lines found. `scratch` sets the size of one read.
    pub(crate) fn read_lines(
        &mut self,
        budget: u64,
        max_line_bytes: usize,
        scratch: &mut [u8],
    ) -> io::Result<ReadOutcome> {
        let mut out = ReadOutcome::default();
        (&self.file).seek(SeekFrom::Start(self.scan_pos))?;
        while out.bytes_read < budget {
            let want = (budget - out.bytes_read).min(scratch.len() as u64) as usize;
            let n = match (&self.file).read(&mut scratch[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.bytes_read += n as u64;
            self.remember_tail(&scratch[..n]);
            let mut rest = &scratch[..n];
            while let Some(i) = memchr::memchr(b'\n', rest) {
                self.scan_pos += i as u64 + 1;
                let line = if self.line.is_empty() && i <= max_line_bytes {
                    // The whole line is in this chunk: straight to its text.
                    self.finish_line_from(&rest[..i], false)
                } else {
                    self.keep(&rest[..i], max_line_bytes);
                    let line = std::mem::take(&mut self.line);
                    let done = self.finish_line_from(&line, self.line_overflow);
                    self.line = line;
                    self.line.clear();
                    done
                };
                if line.truncated {
                    out.truncated_lines += 1;
                }
                out.lines.push(line);
                rest = &rest[i + 1..];
            }
            self.keep(rest, max_line_bytes);
            self.scan_pos += rest.len() as u64;
        }
        Ok(out)
    }

    /// Appends part of the current line, up to the line limit.
    fn keep(&mut self, bytes: &[u8], max_line_bytes: usize) {
        let room = max_line_bytes.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.line.extend_from_slice(&bytes[..room]);
            self.line_overflow = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Closes the current line, `bytes` (cut to the limit when
    /// `truncated`), which ended just before `scan_pos`.
    fn finish_line_from(&mut self, mut bytes: &[u8], truncated: bool) -> Line {
        if !truncated && let Some(stripped) = bytes.strip_suffix(b"\r") {
            bytes = stripped;
        }
        let line = Line {
            offset: self.read_pos,
            text: text_of(bytes, truncated),
            truncated,
        };
        self.line_overflow = false;
        self.read_pos = self.scan_pos;
        line
    }
}

/// Decodes a line; a cut made by truncation may split a UTF-8 sequence, and
/// that incomplete tail is dropped rather than shown as garbage.
fn text_of(bytes: &[u8], truncated: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) if truncated && e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn watcher(content: &[u8]) -> FileWatcher {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        FileWatcher::new(
            PathBuf::from("t"),
            file,
            None,
            content.len() as u64,
            Origin::Found { skip_to: None },
        )
    }

    fn texts(out: &ReadOutcome) -> Vec<(u64, &str)> {
        out.lines
            .iter()
            .map(|l| (l.offset, l.text.as_str()))
            .collect()
    }

    #[test]
    fn reads_complete_lines_across_small_reads() {
        let mut w = watcher(b"one\ntwo\r\nthree");
        let mut scratch = [0u8; 3];
        let out = w.read_lines(100, 64, &mut scratch).unwrap();
        assert_eq!(texts(&out), [(0, "one"), (4, "two")]);
        assert_eq!(out.bytes_read, 14);
        assert_eq!((w.read_pos, w.scan_pos), (9, 14));
    }

    #[test]
    fn budget_limits_bytes_read() {
        let mut w = watcher(b"aaaa\nbbbb\n");
        let mut scratch = [0u8; 64];
        let out = w.read_lines(7, 64, &mut scratch).unwrap();
        assert_eq!(out.bytes_read, 7);
        assert_eq!(texts(&out), [(0, "aaaa")]);
        let out = w.read_lines(7, 64, &mut scratch).unwrap();
        assert_eq!(out.bytes_read, 3);
        assert_eq!(texts(&out), [(5, "bbbb")]);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut w = watcher("héllo\n".as_bytes());
        let mut scratch = [0u8; 64];
        let out = w.read_lines(100, 2, &mut scratch).unwrap();
        assert_eq!(texts(&out), [(0, "h")]);
        assert_eq!(out.truncated_lines, 1);
    }

    #[test]
    fn finds_the_last_line_end() {
        let w = watcher(b"abc\ndef\nghi");
        let mut buf = [0u8; 2];
        assert_eq!(w.last_line_end(11, &mut buf).unwrap(), 8);
        assert_eq!(w.last_line_end(7, &mut buf).unwrap(), 4);
        assert_eq!(w.last_line_end(3, &mut buf).unwrap(), 0);
    }
}
