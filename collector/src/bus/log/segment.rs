//! One segment file: a versioned header, then length- and CRC-framed records.
//!
//! ```text
//! header  = magic "LMBUSSEG" | version u32 LE | base offset u64 LE | crc32 of the 20 bytes before u32 LE
//! record  = len u32 LE | crc32(payload) u32 LE | payload (len bytes, 1..=MAX_RECORD_BYTES)
//! ```
//!
//! Invariant: a [`Segment`]'s `count`, `len` and `index` describe exactly the
//! bytes `0..len` of its file, and every record in them passed its CRC when it
//! was scanned or written. A length of 0 is never written, so a tail of zeros
//! (a file extended by a crash but never filled) reads as damage, not as
//! records.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest payload one record may hold; larger lengths read from disk are damage.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub(super) const MAGIC: [u8; 8] = *b"LMBUSSEG";
pub(super) const VERSION: u32 = 1;
pub(super) const HEADER_LEN: u64 = 24;
pub(super) const RECORD_HEADER_LEN: u64 = 8;
/// One sparse-index entry per this many records.
pub(super) const INDEX_EVERY: u64 = 64;
/// Read size when scanning whole segments at open.
pub(super) const SCAN_CHUNK: usize = 1 << 20;
/// Read size for consumer reads and offset lookups.
pub(super) const READ_CHUNK: usize = 64 << 10;

/// What is wrong with the bytes at some position of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("the segment header is cut short")]
    PartialSegmentHeader,
    #[error("bad magic: not a logmon bus segment")]
    BadMagic,
    #[error("unsupported segment version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("the segment header fails its checksum")]
    HeaderChecksum,
    #[error("the header says base offset {header}, the file name says {name}")]
    BaseMismatch { name: u64, header: u64 },
    #[error("the segment should start at offset {expected} but starts at {found}")]
    Gap { expected: u64, found: u64 },
    #[error("a record header is cut short")]
    PartialHeader,
    #[error("a record announces length 0")]
    ZeroLength,
    #[error("a record announces {len} bytes, over the limit of {MAX_RECORD_BYTES}")]
    Oversized { len: u32 },
    #[error("a record's payload is cut short ({len} bytes announced)")]
    PartialPayload { len: u32 },
    #[error("a record's payload has CRC {computed:#010x}, its header says {stored:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

pub(super) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header(h: &[u8]) -> Result<u64, Damage> {
    if h[..8] != MAGIC {
        return Err(Damage::BadMagic);
    }
    let stored = u32::from_le_bytes(h[20..24].try_into().expect("4 bytes"));
    if crc32fast::hash(&h[..20]) != stored {
        return Err(Damage::HeaderChecksum);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(Damage::UnsupportedVersion(version));
    }
    Ok(u64::from_le_bytes(h[12..20].try_into().expect("8 bytes")))
}

/// Appends one record's framing and payload to `out`.
pub(super) fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("checked against MAX_RECORD_BYTES");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, pos)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, pos) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes a directory entry change (create, rename, delete) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::durable::sync_dir(dir)
}

/// What the next bytes of a segment hold.
pub(super) enum Frame {
    /// The valid end of the segment.
    End,
    /// A record header whose payload lies wholly before the end.
    Record {
        len: u32,
        crc: u32,
    },
    Damaged(Damage),
}

/// A positional (`pread`) reader over `pos..limit` of a segment, buffering in
/// chunks so that walking many small records costs few system calls. It never
/// moves the file cursor, so readers can share `&File`.
pub(super) struct RecordReader<'f> {
    file: &'f File,
    limit: u64,
    buf: Vec<u8>,
    buf_start: u64,
    head: usize,
    chunk: usize,
}

impl<'f> RecordReader<'f> {
    pub(super) fn new(file: &'f File, pos: u64, limit: u64, chunk: usize) -> Self {
        Self {
            file,
            limit,
            buf: Vec::new(),
            buf_start: pos,
            head: 0,
            chunk,
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.buf_start + self.head as u64
    }

    /// Makes `n` bytes available at the cursor, or says the limit comes first.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        let available = self.buf.len() - self.head;
        if available >= n {
            return Ok(true);
        }
        let pos = self.position();
        if pos + n as u64 > self.limit {
            return Ok(false);
        }
        self.buf.drain(..self.head);
        self.buf_start = pos;
        self.head = 0;
        let have = self.buf.len();
        let remaining = usize::try_from(self.limit - pos).unwrap_or(usize::MAX);
        let want = n.max(self.chunk).min(remaining);
        self.buf.resize(want, 0);
        read_exact_at(self.file, &mut self.buf[have..], pos + have as u64)?;
        Ok(true)
    }

    pub(super) fn frame(&mut self) -> io::Result<Frame> {
        let pos = self.position();
        if pos == self.limit {
            return Ok(Frame::End);
        }
        if !self.fill(RECORD_HEADER_LEN as usize)? {
            return Ok(Frame::Damaged(Damage::PartialHeader));
        }
        let h = &self.buf[self.head..self.head + RECORD_HEADER_LEN as usize];
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
        if len == 0 {
            return Ok(Frame::Damaged(Damage::ZeroLength));
        }
        if len as usize > MAX_RECORD_BYTES {
            return Ok(Frame::Damaged(Damage::Oversized { len }));
        }
        if pos + RECORD_HEADER_LEN + u64::from(len) > self.limit {
            return Ok(Frame::Damaged(Damage::PartialPayload { len }));
        }
        self.head += RECORD_HEADER_LEN as usize;
        Ok(Frame::Record { len, crc })
    }

    /// Reads and checks the payload of the record whose frame was just read.
    pub(super) fn payload(&mut self, len: u32, crc: u32) -> io::Result<Result<&[u8], Damage>> {
        let len = len as usize;
        if !self.fill(len)? {
            return Ok(Err(Damage::PartialPayload { len: len as u32 }));
        }
        let payload = &self.buf[self.head..self.head + len];
        self.head += len;
        let computed = crc32fast::hash(payload);
        if computed != crc {
            return Ok(Err(Damage::CrcMismatch {
                stored: crc,
                computed,
            }));
        }
        Ok(Ok(payload))
    }

    /// Steps over the payload of the record whose frame was just read.
    pub(super) fn skip(&mut self, len: u32) {
        let len = len as usize;
        if len <= self.buf.len() - self.head {
            self.head += len;
        } else {
            self.buf_start = self.position() + len as u64;
            self.buf.clear();
            self.head = 0;
        }
    }
}

/// An open segment and what is known about its valid contents.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) base: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) count: u64,
    /// Valid bytes, header included.
    pub(super) len: u64,
    /// Byte position of record `base + i * INDEX_EVERY`.
    pub(super) index: Vec<u64>,
    /// Record bytes (framing included) in all segments before this one since
    /// the log was opened, so that byte distances span segments.
    pub(super) start_bytes: u64,
}

/// The outcome of scanning a segment: `len` is where the valid records end.
pub(super) struct Scan {
    pub(super) segment: Segment,
    pub(super) file_len: u64,
    pub(super) damage: Option<(u64, Damage)>,
}

impl Segment {
    /// Creates an empty segment and makes its header and directory entry durable.
    pub(super) fn create(dir: &Path, base: u64, start_bytes: u64, fsync: bool) -> io::Result<Self> {
        let path = dir.join(file_name(base));
        let mut file = File::options()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(&encode_header(base))?;
        if fsync {
            file.sync_data()?;
            sync_dir(dir)?;
        }
        Ok(Self {
            base,
            path,
            file,
            count: 0,
            len: HEADER_LEN,
            index: Vec::new(),
            start_bytes,
        })
    }

    /// Opens a segment and checks every record in it. Damage is reported, not
    /// repaired: the caller decides whether it is a torn tail or corruption.
    pub(super) fn scan(
        path: PathBuf,
        base: u64,
        start_bytes: u64,
        writable: bool,
    ) -> io::Result<Scan> {
        let file = File::options().read(true).append(writable).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut segment = Self {
            base,
            path,
            file,
            count: 0,
            len: 0,
            index: Vec::new(),
            start_bytes,
        };
        if file_len < HEADER_LEN {
            let damage = Some((0, Damage::PartialSegmentHeader));
            return Ok(Scan {
                segment,
                file_len,
                damage,
            });
        }
        let mut header = [0u8; HEADER_LEN as usize];
        read_exact_at(&segment.file, &mut header, 0)?;
        match decode_header(&header) {
            Ok(found) if found == base => {}
            Ok(found) => {
                let damage = Damage::BaseMismatch {
                    name: base,
                    header: found,
                };
                return Ok(Scan {
                    segment,
                    file_len,
                    damage: Some((0, damage)),
                });
            }
            Err(damage) => {
                return Ok(Scan {
                    segment,
                    file_len,
                    damage: Some((0, damage)),
                });
            }
        }
        segment.len = HEADER_LEN;
        let mut reader = RecordReader::new(&segment.file, HEADER_LEN, file_len, SCAN_CHUNK);
        let mut damage = None;
        loop {
            let at = reader.position();
            match reader.frame()? {
                Frame::End => break,
                Frame::Damaged(d) => {
                    damage = Some((at, d));
                    break;
                }
                Frame::Record { len, crc } => {
                    if let Err(d) = reader.payload(len, crc)? {
                        damage = Some((at, d));
                        break;
                    }
                    if segment.count.is_multiple_of(INDEX_EVERY) {
                        segment.index.push(at);
                    }
                    segment.count += 1;
                }
            }
        }
        segment.len = reader.position().min(damage.map_or(u64::MAX, |(at, _)| at));
        Ok(Scan {
            segment,
            file_len,
            damage,
        })
    }

    /// Drops everything after the valid records (rewriting the header if it
    /// was torn) so that appends continue from a clean end.
    pub(super) fn truncate_to_valid(&mut self, fsync: bool) -> io::Result<()> {
        if self.len < HEADER_LEN {
            self.file.set_len(0)?;
            self.file.write_all(&encode_header(self.base))?;
            self.len = HEADER_LEN;
        } else {
            self.file.set_len(self.len)?;
        }
        if fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    pub(super) fn end_offset(&self) -> u64 {
        self.base + self.count
    }

    pub(super) fn end_bytes(&self) -> u64 {
        self.start_bytes + (self.len - HEADER_LEN)
    }

    /// Accounts for a record of `payload_len` bytes written at `self.len`.
    pub(super) fn note_record(&mut self, payload_len: usize) {
        if self.count.is_multiple_of(INDEX_EVERY) {
            self.index.push(self.len);
        }
        self.count += 1;
        self.len += RECORD_HEADER_LEN + payload_len as u64;
    }

    /// The nearest indexed record at or before `offset`, and its byte position.
    pub(super) fn seek_hint(&self, offset: u64) -> (u64, u64) {
        debug_assert!(offset >= self.base && offset < self.end_offset());
        let slot = ((offset - self.base) / INDEX_EVERY) as usize;
        (self.base + slot as u64 * INDEX_EVERY, self.index[slot])
    }

    pub(super) fn reader(&self, pos: u64, chunk: usize) -> RecordReader<'_> {
        RecordReader::new(&self.file, pos, self.len, chunk)
    }
}
