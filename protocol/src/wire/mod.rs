//! The agent → collector wire codec: the one place that knows the byte format
//! of a `POST /v1/batches` body.
//!
//! # Format (version 3; version 2 is the same without the label sections)
//!
//! ```text
//! body    = zstd_frame( payload )            (one or more frames, checksummed)
//! payload = FORMAT_VERSION (1 byte) ++ header ++ n ++ section × 25
//! ```
//!
//! The version byte sits *inside* the compressed payload, so the outer body is
//! always a plain zstd frame (any tool can `zstd -d` it) and a receiver needs no
//! framing of its own. The cost is that a receiver must decompress before it
//! can tell a future version apart; decompression is capped (see [`Limits`]),
//! so that costs bounded work.
//!
//! ## Payload
//!
//! The payload is hand-written and **columnar**: rather than one record per
//! event, it holds every event's timestamp, then every event's client, and so
//! on, so that zstd sees like next to like. Repeated strings are written once.
//! At zstd level 3 this took 1,000-line batches of combined logs from
//! 9.0× to 13.5× smaller than the log text (the data of the old test), and
//! from 12.4× to 16.2× (the more realistic data of
//! `compresses_combined_logs_well`), with encoding as fast as before and
//! decoding faster. The default level is now 1 ([`DEFAULT_LEVEL`]): bodies
//! 3–4 % larger (16.0× instead of 16.6× on that data), for about a third
//! less encoding time. The DESIGN's
//! `zstd(bincode(Batch))` described version 1; bincode (frozen upstream) is
//! no longer used, which the DESIGN's "keep it behind that module" allows.
//!
//! Integers are LEB128 varints (`uN`), signed ones zigzag-encoded first
//! (`iN`); a string is `u64 length ++ UTF-8 bytes`; a section is
//! `u64 length ++ bytes`.
//!
//! ```text
//! header  = agent_id:str host:str fingerprint:u64 path:str start:u64 end:u64
//!           format:byte (0 csv, 1 clf, 2 combined, 3 json) malformed:u64
//!           flags:byte (bit 0 caught_up, bit 1 finished; others 0) sent_at:i64
//!           label_count:u64 (key:str value:str) × label_count
//! n       = u64                                  the number of events
//! sections, in this order, each holding exactly n values:
//!   time        scale:byte (0..=9), then n × i64: the difference between
//!               timestamp / 10^scale and the previous event's (the first
//!               event's from 0), wrapping; scale is the largest power of ten
//!               dividing every timestamp, so whole seconds cost ~1 byte
//!   7 × codes   one per string column, in the order client, user, method,
//!               protocol, path, referer, user_agent: n × u64 dictionary codes
//!   status      n × u64
//!   bytes       n × u64
//!   duration    n × u65: 0 for none, else microseconds + 1
//!   7 × lengths then 7 × text: each string column's dictionary, same order:
//!               the byte lengths of its entries, then their concatenated text
//!   (version 3 only:)
//!   label codes n × u64: 0 for an event without labels of its own, else a
//!               code into the label sets, as a string column's codes
//!   label sets  the distinct sets in order of first use, each
//!               `count:u64 (key:str value:str) × count`
//! ```
//!
//! An encoder writes version 2 when no event of the batch has labels of its
//! own (`Event::labels`), version 3 otherwise; a decoder reads both.
//!
//! A string column's dictionary holds its distinct values in order of first
//! use. Code 0 is "none" (a missing referer or user agent; refused in the
//! other columns), code `k` is entry `k - 1`, and the code one past the last
//! entry so far introduces the next entry. Dictionaries are per batch, so a
//! batch decodes on its own.
//!
//! # Encoding and checking without events
//!
//! [`Encoder`] builds a body one event at a time (an agent parses each line
//! into one reused [`Event`] and pushes it), keeping its buffers from batch
//! to batch; [`encode`] is that encoder over a [`Batch`]'s events, with the
//! same bytes. [`inspect`] runs every check of [`decode`] (and so accepts
//! and refuses exactly the same bodies, with the same errors) without
//! building the events, and returns the header and the event count: what
//! the collector's ingest needs before it stores a body as received. Each
//! thread keeps one zstd compression and one decompression context.
//!
//! # Resource bounds on decode
//!
//! [`decode`] (and [`inspect`]) never trusts a size the sender wrote:
//! - the body is refused above [`Limits::max_compressed`] before any work;
//! - decompression is streamed into a buffer that never grows past
//!   `max_decompressed + 1` bytes (the zstd frame header's content size is
//!   ignored), and the zstd window is capped at 8 MiB
//!   ([`encode`] clamps levels above 19 to 19 so that its frames fit);
//! - every length is checked against the bytes actually left in the payload
//!   before anything is read or allocated, and the event count against the
//!   size of the time section (each event takes at least one byte there);
//! - columns are read in step, straight into the events, with no per-column
//!   buffers;
//! - the decoded batch (event structs plus every string copied out of a
//!   dictionary) may take at most [`DECODED_PER_PAYLOAD_BYTE`] ×
//!   `max_decompressed` bytes of memory, so a short dictionary entry used by
//!   many events cannot expand without bound. Each allocation is checked
//!   before it is made.
//!
//! # Layout
//!
//! This module holds the format's types and constants; [`encode`](fn@encode)
//! and [`Encoder`] live in `encode.rs`, [`decode`](fn@decode) and
//! [`inspect`](fn@inspect) in `decode.rs`, the bounded zstd calls in
//! `compress.rs`.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::parse::Format;

mod compress;
mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{Inspected, decode, inspect};
pub use encode::{Encoder, encode};

/// The payload format this build writes when an event has labels of its
/// own; it reads this and [`FORMAT_VERSION_UNLABELLED`].
pub const FORMAT_VERSION: u8 = 3;

/// Version 2: version 3 without the label sections, written when no event
/// of the batch has labels (so collectors of before version 3 read it).
pub const FORMAT_VERSION_UNLABELLED: u8 = 2;

/// The zstd level agents use unless configured otherwise. Level 1 rather
/// than zstd's usual 3: on the columnar payload, 3 makes bodies only 3–4 %
/// smaller, and compressing was the largest single cost of the agent.
pub const DEFAULT_LEVEL: i32 = 1;

/// The decoded batch may take this many bytes of memory per byte of
/// [`Limits::max_decompressed`]. A real batch takes a few times its payload
/// (strings are stored once, events hold copies); the cap keeps a hostile one
/// at the order that version 1's smallest possible events already allowed
/// (about 200 bytes of [`Event`] per 11 payload bytes).
const DECODED_PER_PAYLOAD_BYTE: usize = 16;

const MIB: usize = 1 << 20;

/// A log stream as its agent names it: the file's fingerprint (a checksum of
/// its first bytes, which survives renames and detects
/// truncation/replacement) and the path it was read from. The path is a
/// label, not part of the identity: a rotated file keeps its fingerprint
/// under a new path (see [`StreamKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId {
    pub fingerprint: u64,
    pub path: String,
}

/// A stream's identity across agents: one agent's file, by its fingerprint.
/// Deduplication and high-water marks (with the end offset: a batch is
/// identified by (agent id, stream, end)) and event-time watermarks key by
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub agent_id: String,
    pub fingerprint: u64,
}

/// What an agent sends in one request: the events parsed from the byte range
/// `[start, end)` of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub agent_id: String,
    pub host: String,
    pub stream: StreamId,
    /// First byte of the stream this batch covers.
    pub start: u64,
    /// One past the last byte of the stream this batch covers.
    pub end: u64,
    /// The log format the events were parsed from.
    pub format: Format,
    pub labels: Vec<(String, String)>,
    pub events: Vec<Event>,
    /// Lines in the range that did not parse (counted at the agent).
    pub malformed: u64,
    /// The agent had read the stream to its end when it cut this batch: no
    /// older line is waiting behind it. With no events this is a heartbeat,
    /// which lets the collector's event time advance while a server is quiet.
    pub caught_up: bool,
    /// The agent closed the stream (rotated away or deleted, read to its end
    /// and acknowledged): nothing more of it will come, so it no longer
    /// holds the collector's event time back. Sent as an empty batch.
    pub finished: bool,
    /// The agent's wall clock when the batch was cut (unix nanoseconds, UTC).
    pub sent_at: i64,
}

impl Batch {
    /// The identity of the stream this batch belongs to.
    pub fn stream_key(&self) -> StreamKey {
        StreamKey {
            agent_id: self.agent_id.clone(),
            fingerprint: self.stream.fingerprint,
        }
    }
}

/// Size limits [`decode`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body, in bytes as received.
    pub max_compressed: usize,
    /// Largest accepted payload after decompression, in bytes. The decoded
    /// batch may take at most 16 times this in memory.
    pub max_decompressed: usize,
}

impl Default for Limits {
    /// 8 MiB compressed, 64 MiB decompressed.
    fn default() -> Self {
        Limits {
            max_compressed: 8 * MIB,
            max_decompressed: 64 * MIB,
        }
    }
}

/// Why a body could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Over a size limit (HTTP 413). `what` is `"compressed"` (the body) or
    /// `"decompressed"` (the payload, or the memory decoding it would take).
    #[error("batch too large: {what} size exceeds {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// The payload has a format version this build does not read (HTTP 400).
    #[error("unsupported wire format version {found} (this build reads versions 2 to {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    /// Not zstd, truncated, bad checksum, or not a valid batch (HTTP 400).
    /// [`encode`] also reports its (practically impossible) failures here.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// An empty body, or a zstd frame holding nothing (HTTP 400).
    #[error("empty batch body")]
    Empty,
}

/// The string columns, in section order.
const STRING_COLUMNS: [&str; 7] = [
    "client",
    "user",
    "method",
    "protocol",
    "path",
    "referer",
    "user_agent",
];

/// The stable one-byte code of a format on the wire.
fn format_code(format: Format) -> u8 {
    match format {
        Format::Csv => 0,
        Format::Clf => 1,
        Format::Combined => 2,
        Format::Json => 3,
    }
}

fn format_from_code(code: u8) -> Result<Format, WireError> {
    match code {
        0 => Ok(Format::Csv),
        1 => Ok(Format::Clf),
        2 => Ok(Format::Combined),
        3 => Ok(Format::Json),
        _ => Err(WireError::Corrupt(format!(
            "unknown log format code {code}"
        ))),
    }
}
