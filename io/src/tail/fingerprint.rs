//! File identity: a checksum of the head of a file.
//!
//! A log file is known by what it starts with, not by its path (rotation moves
//! paths around) nor by its inode alone (inodes are reused once a file is
//! gone). The *head* of a file is its first `bytes` bytes or, when they end
//! sooner, its first `lines` complete lines. Invariant: once a file's head is
//! complete, appending to the file never changes it, so the fingerprint of an
//! append-only file is stable for its whole life.
//!
//! Why not the first `bytes` bytes alone: a fresh file would stay unread until
//! it held `bytes` bytes, which on a quiet server can take minutes. Why not the
//! first line alone: every CSV log starts with the same header line, so all of
//! them would share one identity. Two lines (header + first record, or two
//! timestamped records) are unique in practice and arrive quickly.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a log file: FNV-1a (64 bit) of its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileFingerprint(u64);

impl FileFingerprint {
    /// Wraps a raw checksum.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The raw checksum.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FileFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

// Hex text rather than a JSON number: readers that parse numbers as doubles
// (jq, JavaScript) would silently round a 64-bit checksum.
impl Serialize for FileFingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileFingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16)
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("bad fingerprint {text:?}")))
    }
}

/// One stream of lines over a file's life: the fingerprint of its head, and
/// how many times content with that head started over (a copytruncated file
/// whose first lines came back byte-identical, or a file found shorter than
/// its checkpoint). Each generation is a stream of its own for the collector,
/// whose per-stream high-water mark would otherwise drop the new content as
/// already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileIdentity {
    /// The fingerprint of the file's head.
    pub head: FileFingerprint,
    /// 0 for the first content with this head, then 1, 2, …
    pub generation: u32,
}

impl FileIdentity {
    /// The first generation of `head`.
    pub const fn first(head: FileFingerprint) -> Self {
        Self {
            head,
            generation: 0,
        }
    }

    /// The stream's fingerprint on the wire and in the checkpoints: the head's
    /// for generation 0 (so checkpoints written before generations existed
    /// keep working), else a hash of the head and the generation.
    pub const fn fingerprint(self) -> FileFingerprint {
        if self.generation == 0 {
            return self.head;
        }
        let head = self.head.0.to_le_bytes();
        let generation = self.generation.to_le_bytes();
        let mut bytes = [0u8; 13];
        let mut i = 0;
        while i < 8 {
            bytes[i] = head[i];
            i += 1;
        }
        // A separator so no generation-0 head can collide by construction.
        bytes[8] = b'#';
        while i < 12 {
            bytes[i + 1] = generation[i - 8];
            i += 1;
        }
        FileFingerprint(fnv1a64(&bytes))
    }
}

/// FNV-1a, 64 bit (Fowler–Noll–Vo): tiny, dependency-free and good enough to
/// tell log heads apart; it is not meant to resist an adversary.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

/// Computes fingerprints with one head definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprinter {
    bytes: usize,
    lines: usize,
}

impl Fingerprinter {
    /// A head of at most `bytes` bytes, or the first `lines` complete lines
    /// when they end sooner (`lines == 0`: bytes only). `bytes` must be > 0.
    pub const fn new(bytes: usize, lines: usize) -> Self {
        assert!(bytes > 0, "a fingerprint needs at least one byte");
        Self { bytes, lines }
    }

    /// The most bytes a head can span.
    pub const fn max_head_bytes(&self) -> usize {
        self.bytes
    }

    /// The length of the head of a file that starts with `prefix`, or `None`
    /// while the head is incomplete (the file must grow first).
    pub fn head_len(&self, prefix: &[u8]) -> Option<usize> {
        let window = &prefix[..prefix.len().min(self.bytes)];
        if self.lines > 0 {
            let mut seen = 0;
            for (i, &b) in window.iter().enumerate() {
                if b == b'\n' {
                    seen += 1;
                    if seen == self.lines {
                        return Some(i + 1);
                    }
                }
            }
        }
        (window.len() == self.bytes).then_some(self.bytes)
    }

    /// The fingerprint of a file that starts with `prefix`, if its head is
    /// complete.
    pub fn of_prefix(&self, prefix: &[u8]) -> Option<FileFingerprint> {
        self.head_len(prefix)
            .map(|len| FileFingerprint(fnv1a64(&prefix[..len])))
    }

    /// The fingerprint of the complete lines of a file that starts with
    /// `prefix` and whose head is not complete (and will not be: it was
    /// rotated away and is idle), with their length; `None` when it has no
    /// complete line, or when its head is complete (use [`Self::of_prefix`]).
    pub fn of_short_head(&self, prefix: &[u8]) -> Option<(FileFingerprint, usize)> {
        if self.head_len(prefix).is_some() {
            return None;
        }
        let window = &prefix[..prefix.len().min(self.bytes)];
        let end = memchr::memrchr(b'\n', window)? + 1;
        Some((FileFingerprint(fnv1a64(&window[..end])), end))
    }

    /// Reads the head of `file` (moving its cursor) and fingerprints it.
    /// `buf` is scratch space, reused between calls.
    pub fn of_file(&self, file: &File, buf: &mut Vec<u8>) -> io::Result<Option<FileFingerprint>> {
        self.read_head(file, buf, self.bytes)?;
        Ok(self.of_prefix(buf))
    }

    /// Fingerprints the first `len` bytes of `file` as a short head (see
    /// [`Self::of_short_head`]); `None` if it is shorter than that now.
    pub fn of_file_short(
        &self,
        file: &File,
        buf: &mut Vec<u8>,
        len: usize,
    ) -> io::Result<Option<FileFingerprint>> {
        self.read_head(file, buf, len)?;
        Ok((buf.len() == len).then(|| FileFingerprint(fnv1a64(buf))))
    }

    /// Reads up to `len` bytes from the start of `file` into `buf`.
    fn read_head(&self, file: &File, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        buf.clear();
        buf.resize(len, 0);
        let mut reader = file;
        reader.seek(SeekFrom::Start(0))?;
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn head_is_bytes_when_lines_are_long() {
        let fp = Fingerprinter::new(8, 2);
        assert_eq!(fp.head_len(b"0123456"), None);
        assert_eq!(fp.head_len(b"01234567"), Some(8));
        assert_eq!(fp.head_len(b"0123456789\n"), Some(8));
    }

    #[test]
    fn head_is_lines_when_they_end_sooner() {
        let fp = Fingerprinter::new(256, 2);
        assert_eq!(fp.head_len(b"ab\n"), None, "one line is not enough");
        assert_eq!(fp.head_len(b"ab\ncd"), None, "the second line is partial");
        assert_eq!(fp.head_len(b"ab\ncd\n"), Some(6));
        assert_eq!(fp.head_len(b"ab\ncd\nef\n"), Some(6));
    }

    #[test]
    fn bytes_only_when_lines_is_zero() {
        let fp = Fingerprinter::new(4, 0);
        assert_eq!(fp.head_len(b"a\nb\n"), Some(4));
        assert_eq!(fp.head_len(b"a\nb"), None);
    }

    #[test]
    fn appending_never_changes_the_fingerprint() {
        let fp = Fingerprinter::new(16, 2);
        let first = fp.of_prefix(b"line one\nline two\n").unwrap();
        assert_eq!(
            fp.of_prefix(b"line one\nline two\nline three\n"),
            Some(first)
        );
        let other = fp.of_prefix(b"line one\nline 2\n").unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn csv_files_with_the_same_header_differ() {
        let fp = Fingerprinter::new(256, 2);
        let a = fp.of_prefix(b"client,date\n\"1.2.3.4\",1\n").unwrap();
        let b = fp.of_prefix(b"client,date\n\"1.2.3.4\",2\n").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn fingerprints_a_file_once_its_head_is_complete() {
        let mut file = tempfile::tempfile().unwrap();
        let fp = Fingerprinter::new(10, 0);
        let mut buf = Vec::new();
        file.write_all(b"12345").unwrap();
        assert_eq!(fp.of_file(&file, &mut buf).unwrap(), None);
        file.write_all(b"67890abc").unwrap();
        assert_eq!(
            fp.of_file(&file, &mut buf).unwrap(),
            Some(FileFingerprint(fnv1a64(b"1234567890")))
        );
    }

    #[test]
    fn a_short_head_is_the_complete_lines_of_an_incomplete_head() {
        let fp = Fingerprinter::new(256, 2);
        assert_eq!(
            fp.of_short_head(b"one line\npartial"),
            Some((FileFingerprint(fnv1a64(b"one line\n")), 9))
        );
        assert_eq!(fp.of_short_head(b"no line yet"), None);
        assert_eq!(fp.of_short_head(b"a\nb\n"), None, "the head is complete");
        let bytes_only = Fingerprinter::new(8, 0);
        assert_eq!(
            bytes_only.of_short_head(b"ab\ncd\n"),
            Some((FileFingerprint(fnv1a64(b"ab\ncd\n")), 6))
        );
    }

    #[test]
    fn generations_are_distinct_streams() {
        let head = FileFingerprint::from_u64(0x1234);
        let first = FileIdentity::first(head);
        assert_eq!(
            first.fingerprint(),
            head,
            "generation 0 keeps old checkpoints valid"
        );
        let second = FileIdentity {
            head,
            generation: 1,
        };
        let third = FileIdentity {
            head,
            generation: 2,
        };
        assert_ne!(second.fingerprint(), head);
        assert_ne!(second.fingerprint(), third.fingerprint());
        assert_eq!(second.fingerprint(), second.fingerprint());
    }

    #[test]
    fn serializes_as_hex_text() {
        let f = FileFingerprint::from_u64(0xab);
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, "\"00000000000000ab\"");
        assert_eq!(serde_json::from_str::<FileFingerprint>(&json).unwrap(), f);
    }
}
