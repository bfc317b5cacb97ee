//! The agent → collector wire codec: the one place that knows the byte format
//! of a `POST /v1/batches` body.
//!
//! # Format (version 2)
//!
//! ```text
//! body    = zstd_frame( payload )            (one or more frames, checksummed)
//! payload = FORMAT_VERSION (1 byte) ++ bincode(WireBatch)
//! ```
//!
//! The version byte sits *inside* the compressed payload, so the outer body is
//! always a plain zstd frame (any tool can `zstd -d` it) and a receiver needs no
//! framing of its own. The cost is that a receiver must decompress before it
//! can tell a future version apart; decompression is capped (see [`Limits`]),
//! so that costs bounded work.
//!
//! `WireBatch` is private: it is [`Batch`] with a stable one-byte format code
//! (so reordering [`Format`]'s variants cannot change the bytes) and with each
//! event's timestamp stored as the (zigzag varint) difference from the previous
//! event's, which turns a 9-byte nanosecond timestamp into 1–5 bytes for a
//! log read in order. [`Batch`] itself always holds absolute timestamps.
//!
//! bincode 2 (standard config: little endian, varint integers) is an
//! implementation detail of this module and never appears in its API; bincode
//! is frozen upstream, and swapping it out must touch this file only (bumping
//! [`FORMAT_VERSION`]).
//!
//! # Resource bounds on decode
//!
//! [`decode`] never trusts a size the sender wrote:
//! - the body is refused above [`Limits::max_compressed`] before any work;
//! - decompression is streamed into a buffer that never grows past
//!   `max_decompressed + 1` bytes (the zstd frame header's content size is
//!   ignored), and the zstd window is capped at 8 MiB
//!   ([`encode`] clamps levels above 19 to 19 so that its frames fit);
//! - bincode runs with a byte limit (about twice `max_decompressed`) that
//!   every length prefix is checked against before it allocates.

use std::fmt;
use std::io::Read;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Event;
use crate::parse::Format;

/// The payload format this build writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 2;

/// The zstd level agents use unless configured otherwise.
pub const DEFAULT_LEVEL: i32 = 3;

/// Levels above this are clamped to it by [`encode`]: zstd's "ultra" levels
/// (20–22) use windows larger than [`decode`] accepts.
const MAX_LEVEL: i32 = 19;

/// log2 of the largest zstd window [`decode`] accepts (8 MiB). Levels up to 19
/// never use more.
const WINDOW_LOG_MAX: u32 = 23;

/// How many events [`decode`] preallocates room for, whatever the length
/// prefix claims; the vector grows as events actually decode.
const PREALLOC_EVENTS: usize = 4096;

const MIB: usize = 1 << 20;

/// Identity of a log stream: the file's fingerprint (a checksum of its first
/// bytes, which survives renames and detects truncation/replacement) and the
/// path it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId {
    pub fingerprint: u64,
    pub path: String,
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
    /// The agent's wall clock when the batch was cut (unix nanoseconds, UTC).
    pub sent_at: i64,
}

impl Batch {
    /// The batch's identity for deduplication: a batch sent twice (a retry
    /// after a lost acknowledgement) has the same key.
    pub fn key(&self) -> BatchKey {
        BatchKey {
            agent_id: self.agent_id.clone(),
            fingerprint: self.stream.fingerprint,
            path: self.stream.path.clone(),
            end: self.end,
        }
    }
}

/// (agent id, stream, end offset): identifies a [`Batch`] for deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchKey {
    pub agent_id: String,
    pub fingerprint: u64,
    pub path: String,
    pub end: u64,
}

/// Size limits [`decode`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body, in bytes as received.
    pub max_compressed: usize,
    /// Largest accepted payload after decompression, in bytes.
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
    #[error("unsupported wire format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    /// Not zstd, truncated, bad checksum, or not a valid batch (HTTP 400).
    /// [`encode`] also reports its (practically impossible) failures here.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// An empty body, or a zstd frame holding nothing (HTTP 400).
    #[error("empty batch body")]
    Empty,
}

/// Encodes `batch` as a request body: zstd at `level` (see [`DEFAULT_LEVEL`];
/// levels above 19 are clamped to 19) of the version byte and the bincode
/// payload.
pub fn encode(batch: &Batch, level: i32) -> Result<Vec<u8>, WireError> {
    let payload = payload(&WireBatch {
        agent_id: batch.agent_id.as_str(),
        host: batch.host.as_str(),
        fingerprint: batch.stream.fingerprint,
        path: batch.stream.path.as_str(),
        start: batch.start,
        end: batch.end,
        format: format_code(batch.format),
        malformed: batch.malformed,
        caught_up: batch.caught_up,
        sent_at: batch.sent_at,
        labels: batch.labels.as_slice(),
        events: EventsOut(&batch.events),
    })?;
    compress(&payload, level)
}

/// Decodes a request body made by [`encode`], within `limits`.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Batch, WireError> {
    if body.is_empty() {
        return Err(WireError::Empty);
    }
    if body.len() > limits.max_compressed {
        return Err(WireError::TooLarge {
            what: "compressed",
            limit: limits.max_compressed,
        });
    }
    let payload = decompress_capped(body, limits.max_decompressed)?;
    let (&version, rest) = payload.split_first().ok_or(WireError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(WireError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    // bincode's limit is a const generic; pick a budget of about twice the
    // decompressed limit (varints claim their in-memory width, 8 bytes for a
    // 1-byte length, so decoded claims run above the payload size).
    let max = limits.max_decompressed;
    let decoded = if max <= 16 * MIB {
        from_bincode::<{ 32 * MIB }>(rest, max)
    } else if max <= 64 * MIB {
        from_bincode::<{ 128 * MIB }>(rest, max)
    } else if max <= 256 * MIB {
        from_bincode::<{ 512 * MIB }>(rest, max)
    } else {
        from_bincode::<{ 2048 * MIB }>(rest, max)
    }?;
    let format = format_from_code(decoded.format)?;
    Ok(Batch {
        agent_id: decoded.agent_id,
        host: decoded.host,
        stream: StreamId {
            fingerprint: decoded.fingerprint,
            path: decoded.path,
        },
        start: decoded.start,
        end: decoded.end,
        format,
        labels: decoded.labels,
        events: decoded.events.0,
        malformed: decoded.malformed,
        caught_up: decoded.caught_up,
        sent_at: decoded.sent_at,
    })
}

/// Version 2 payload after the version byte (version 1 had no `caught_up`
/// and `sent_at`). Field order is the byte format:
/// never reorder, only add fields with a new [`FORMAT_VERSION`].
///
/// Generic so that one definition serves both directions: encoding borrows
/// from a [`Batch`] (`S = &str`, `L = &[(String, String)]`, `E = EventsOut`),
/// decoding owns (`S = String`, `L = Vec<(String, String)>`, `E = EventsIn`).
#[derive(Serialize, Deserialize)]
struct WireBatch<S, L, E> {
    agent_id: S,
    host: S,
    fingerprint: u64,
    path: S,
    start: u64,
    end: u64,
    format: u8,
    malformed: u64,
    caught_up: bool,
    sent_at: i64,
    labels: L,
    events: E,
}

/// One event on the wire: [`Event`] with its timestamp as the difference from
/// the previous event's (the first event's from 0), wrapping on overflow.
#[derive(Serialize, Deserialize)]
struct WireEvent<S> {
    timestamp_delta: i64,
    client: S,
    user: S,
    method: S,
    path: S,
    protocol: S,
    status: u16,
    bytes: u64,
    referer: Option<S>,
    user_agent: Option<S>,
    duration_us: Option<u64>,
}

/// Serializes events as a sequence of [`WireEvent`]s, delta-encoding
/// timestamps on the fly.
struct EventsOut<'a>(&'a [Event]);

impl Serialize for EventsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        let mut previous = 0i64;
        for e in self.0 {
            seq.serialize_element(&WireEvent {
                timestamp_delta: e.timestamp.wrapping_sub(previous),
                client: e.client.as_str(),
                user: e.user.as_str(),
                method: e.method.as_str(),
                path: e.path.as_str(),
                protocol: e.protocol.as_str(),
                status: e.status,
                bytes: e.bytes,
                referer: e.referer.as_deref(),
                user_agent: e.user_agent.as_deref(),
                duration_us: e.duration_us,
            })?;
            previous = e.timestamp;
        }
        seq.end()
    }
}

/// Deserializes a sequence of [`WireEvent`]s back into events with absolute
/// timestamps, without trusting the sequence's length for preallocation.
struct EventsIn(Vec<Event>);

impl<'de> Deserialize<'de> for EventsIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EventsVisitor;

        impl<'de> Visitor<'de> for EventsVisitor {
            type Value = EventsIn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of events")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventsIn, A::Error> {
                let hint = seq.size_hint().unwrap_or(0).min(PREALLOC_EVENTS);
                let mut events = Vec::with_capacity(hint);
                let mut timestamp = 0i64;
                while let Some(w) = seq.next_element::<WireEvent<String>>()? {
                    timestamp = timestamp.wrapping_add(w.timestamp_delta);
                    events.push(Event {
                        timestamp,
                        client: w.client,
                        user: w.user,
                        method: w.method,
                        path: w.path,
                        protocol: w.protocol,
                        status: w.status,
                        bytes: w.bytes,
                        referer: w.referer,
                        user_agent: w.user_agent,
                        duration_us: w.duration_us,
                    });
                }
                Ok(EventsIn(events))
            }
        }

        deserializer.deserialize_seq(EventsVisitor)
    }
}

type OwnedWireBatch = WireBatch<String, Vec<(String, String)>, EventsIn>;

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

/// The uncompressed payload: version byte, then bincode of `wire`.
fn payload<T: Serialize>(wire: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(wire, &mut out, bincode::config::standard())
        .map_err(|e| WireError::Corrupt(format!("encoding batch: {e}")))?;
    Ok(out)
}

fn compress(payload: &[u8], level: i32) -> Result<Vec<u8>, WireError> {
    let fail = |e: std::io::Error| WireError::Corrupt(format!("compressing batch: {e}"));
    let mut compressor = zstd::bulk::Compressor::new(level.min(MAX_LEVEL)).map_err(fail)?;
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .map_err(fail)?;
    compressor.compress(payload).map_err(fail)
}

/// Decompresses `body` (one or more zstd frames), refusing more than `max`
/// bytes of output. The output buffer never grows past `max + 1` bytes, the
/// frame header's declared size is never used to allocate, and the zstd
/// window is capped at [`WINDOW_LOG_MAX`].
fn decompress_capped(body: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    let corrupt = |e: &dyn fmt::Display| WireError::Corrupt(format!("zstd: {e}"));
    let mut context = zstd::zstd_safe::DCtx::try_create()
        .ok_or_else(|| corrupt(&"cannot allocate a decompression context"))?;
    context
        .set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))
        .map_err(|code| corrupt(&zstd::zstd_safe::get_error_name(code)))?;
    let cap = max.saturating_add(1);
    let mut reader = zstd::stream::read::Decoder::with_context(body, &mut context)
        .take(u64::try_from(cap).unwrap_or(u64::MAX));

    // Grow geometrically from a guess based on the body size, never past `cap`.
    let mut out: Vec<u8> = Vec::with_capacity(body.len().saturating_mul(4).max(4096).min(cap));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                break;
            }
            let grow = out.capacity().min(cap - out.len());
            out.reserve_exact(grow);
        }
        let filled = out.len();
        let room = out.capacity().min(cap);
        out.resize(room, 0);
        match reader.read(&mut out[filled..]) {
            Ok(0) => {
                out.truncate(filled);
                break;
            }
            Ok(n) => out.truncate(filled + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(filled),
            Err(e) => return Err(corrupt(&e)),
        }
    }
    if out.len() > max {
        return Err(WireError::TooLarge {
            what: "decompressed",
            limit: max,
        });
    }
    Ok(out)
}

/// Decodes the bincode part of a payload with a budget of `LIMIT` claimed
/// bytes (bincode checks each length prefix against it before allocating).
/// The whole slice must be one value: trailing bytes are corruption.
fn from_bincode<const LIMIT: usize>(
    bytes: &[u8],
    max_decompressed: usize,
) -> Result<OwnedWireBatch, WireError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (wire, used): (OwnedWireBatch, usize) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| match e {
            bincode::error::DecodeError::LimitExceeded => WireError::TooLarge {
                what: "decompressed",
                limit: max_decompressed,
            },
            e => WireError::Corrupt(e.to_string()),
        })?;
    if used != bytes.len() {
        return Err(WireError::Corrupt(format!(
            "{} trailing bytes after the batch",
            bytes.len() - used
        )));
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use proptest::prelude::*;

    use super::*;
    use crate::event::NANOS_PER_SEC;
    use crate::render::render;

    fn event(i: i64) -> Event {
        Event {
            timestamp: 1_549_573_860 * NANOS_PER_SEC + i * 250_000_000,
            client: format!("10.0.0.{}", i % 7),
            user: if i % 3 == 0 {
                "alice".into()
            } else {
                String::new()
            },
            method: "GET".into(),
            path: format!("/api/user/{i}"),
            protocol: "HTTP/1.1".into(),
            status: 200,
            bytes: 1234 + i as u64,
            referer: (i % 2 == 0).then(|| "https://example.com/".into()),
            user_agent: Some("curl/8.5.0".into()),
            duration_us: (i % 4 != 0).then_some(1500),
        }
    }

    fn batch(events: Vec<Event>) -> Batch {
        Batch {
            agent_id: "agent-1".into(),
            host: "web-01".into(),
            stream: StreamId {
                fingerprint: 0xdead_beef_cafe_f00d,
                path: "/var/log/nginx/access.log".into(),
            },
            start: 4096,
            end: 8192,
            format: Format::Combined,
            labels: vec![("env".into(), "prod".into()), ("dc".into(), "eu-1".into())],
            events,
            malformed: 3,
            caught_up: false,
            sent_at: 1_549_573_900 * NANOS_PER_SEC,
        }
    }

    /// A payload as `encode` would build it, without compression, for tests
    /// that tamper with it.
    fn raw_payload(b: &Batch) -> Vec<u8> {
        let body = encode(b, DEFAULT_LEVEL).unwrap();
        zstd::stream::decode_all(body.as_slice()).unwrap()
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(bytes, 3).unwrap()
    }

    #[test]
    fn round_trips() {
        let b = batch((0..50).map(event).collect());
        let body = encode(&b, DEFAULT_LEVEL).unwrap();
        assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
        // Empty event list and every format.
        for format in Format::ALL {
            let mut b = batch(Vec::new());
            b.format = format;
            let body = encode(&b, 1).unwrap();
            assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
        }
    }

    #[test]
    fn round_trips_extreme_timestamps() {
        let mut events: Vec<Event> = (0..4).map(event).collect();
        events[0].timestamp = i64::MAX;
        events[1].timestamp = i64::MIN;
        events[2].timestamp = 0;
        events[3].timestamp = -1;
        let b = batch(events);
        let body = encode(&b, DEFAULT_LEVEL).unwrap();
        assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
    }

    #[test]
    fn ultra_levels_are_clamped_and_still_decode() {
        let b = batch((0..200).map(event).collect());
        for level in [-5, 0, 19, 22] {
            let body = encode(&b, level).unwrap();
            assert_eq!(
                decode(&body, &Limits::default()).unwrap(),
                b,
                "level {level}"
            );
        }
    }

    #[test]
    fn key_identifies_agent_stream_and_end() {
        let b = batch(vec![event(1)]);
        let k = b.key();
        assert_eq!(
            k,
            BatchKey {
                agent_id: "agent-1".into(),
                fingerprint: 0xdead_beef_cafe_f00d,
                path: "/var/log/nginx/access.log".into(),
                end: 8192,
            }
        );
        let mut retry = b.clone();
        retry.events.clear();
        assert_eq!(retry.key(), k);
        let mut next = b;
        next.end += 1;
        assert_ne!(next.key(), k);
    }

    #[test]
    fn empty_body_is_empty() {
        assert!(matches!(
            decode(b"", &Limits::default()),
            Err(WireError::Empty)
        ));
        // A valid zstd frame with nothing in it has no version byte either.
        assert!(matches!(
            decode(&zstd(b""), &Limits::default()),
            Err(WireError::Empty)
        ));
    }

    #[test]
    fn garbage_is_corrupt() {
        let r = decode(b"this is not a zstd frame at all", &Limits::default());
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn truncated_zstd_is_corrupt() {
        let body = encode(&batch((0..100).map(event).collect()), DEFAULT_LEVEL).unwrap();
        for cut in [1, 4, body.len() / 2, body.len() - 4, body.len() - 1] {
            let r = decode(&body[..cut], &Limits::default());
            assert!(
                matches!(r, Err(WireError::Corrupt(_))),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn flipped_bit_is_corrupt() {
        let mut body = encode(&batch((0..100).map(event).collect()), DEFAULT_LEVEL).unwrap();
        let i = body.len() / 2;
        body[i] ^= 0x10;
        let r = decode(&body, &Limits::default());
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn trailing_zstd_garbage_is_corrupt() {
        let mut body = encode(&batch(vec![event(1)]), DEFAULT_LEVEL).unwrap();
        body.extend_from_slice(b"junk");
        let r = decode(&body, &Limits::default());
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn trailing_bytes_after_the_batch_are_corrupt() {
        let mut payload = raw_payload(&batch(vec![event(1)]));
        payload.push(0);
        let r = decode(&zstd(&payload), &Limits::default());
        assert!(
            matches!(&r, Err(WireError::Corrupt(m)) if m.contains("trailing")),
            "{r:?}"
        );
    }

    #[test]
    fn truncated_payload_is_corrupt() {
        let payload = raw_payload(&batch(vec![event(1), event(2)]));
        let r = decode(&zstd(&payload[..payload.len() - 3]), &Limits::default());
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn future_version_is_unsupported() {
        let mut payload = raw_payload(&batch(vec![event(1)]));
        payload[0] = 3;
        let r = decode(&zstd(&payload), &Limits::default());
        assert!(
            matches!(
                r,
                Err(WireError::UnsupportedVersion {
                    found: 3,
                    supported: 2
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn unknown_format_code_is_corrupt() {
        let mut b = batch(Vec::new());
        b.format = Format::Json;
        let mut payload = raw_payload(&b);
        // The first 0x03 byte: every earlier byte is ASCII text, a length or a
        // fingerprint/offset byte, none of which is 3 for this batch.
        let at = payload
            .iter()
            .position(|&x| x == format_code(Format::Json))
            .unwrap();
        payload[at] = 9;
        let r = decode(&zstd(&payload), &Limits::default());
        assert!(
            matches!(&r, Err(WireError::Corrupt(m)) if m.contains("format")),
            "{r:?}"
        );
    }

    #[test]
    fn over_compressed_limit_is_too_large() {
        let body = encode(&batch((0..10).map(event).collect()), DEFAULT_LEVEL).unwrap();
        let at = Limits {
            max_compressed: body.len(),
            ..Limits::default()
        };
        assert!(decode(&body, &at).is_ok());
        let under = Limits {
            max_compressed: body.len() - 1,
            ..Limits::default()
        };
        let r = decode(&body, &under);
        assert!(
            matches!(r, Err(WireError::TooLarge { what: "compressed", limit }) if limit == body.len() - 1),
            "{r:?}"
        );
    }

    #[test]
    fn decompressed_limit_is_exact() {
        let b = batch((0..100).map(event).collect());
        let payload = raw_payload(&b);
        let body = encode(&b, DEFAULT_LEVEL).unwrap();
        let at = Limits {
            max_decompressed: payload.len(),
            ..Limits::default()
        };
        assert_eq!(decode(&body, &at).unwrap(), b);
        let under = Limits {
            max_decompressed: payload.len() - 1,
            ..Limits::default()
        };
        let r = decode(&body, &under);
        assert!(
            matches!(
                r,
                Err(WireError::TooLarge {
                    what: "decompressed",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    /// 1 GiB of zeros in one frame whose header declares the 1 GiB content
    /// size: refused once the cap is passed, without allocating the gigabyte.
    #[test]
    fn zstd_bomb_is_too_large() {
        const GIB: u64 = 1 << 30;
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.set_pledged_src_size(Some(GIB)).unwrap();
        let chunk = vec![0u8; MIB];
        for _ in 0..GIB / MIB as u64 {
            encoder.write_all(&chunk).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        eprintln!("zstd bomb: 1 GiB of zeros in {} bytes", bomb.len());
        assert!(bomb.len() < Limits::default().max_compressed);
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&bomb).unwrap(),
            Some(GIB),
            "the frame header declares the full size"
        );

        let r = decode(&bomb, &Limits::default());
        assert!(
            matches!(r, Err(WireError::TooLarge { what: "decompressed", limit }) if limit == 64 * MIB),
            "{r:?}"
        );

        // Backstop for the structural guarantee: the process never came near
        // holding the gigabyte.
        #[cfg(target_os = "linux")]
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let peak_kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            eprintln!("peak RSS after the bomb: {} MiB", peak_kib / 1024);
            assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
        }
    }

    /// Many small frames back to back decompress as one stream: the cap holds
    /// across frames too.
    #[test]
    fn concatenated_frame_bomb_is_too_large() {
        let frame = zstd(&vec![0u8; MIB]);
        let bomb: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 80)
            .collect();
        let r = decode(&bomb, &Limits::default());
        assert!(
            matches!(
                r,
                Err(WireError::TooLarge {
                    what: "decompressed",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    /// A frame declaring a window larger than 8 MiB is refused rather than
    /// making the decoder allocate it.
    #[test]
    fn huge_window_is_refused() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        // Enough input that the window is not shrunk to the source size.
        let data: Vec<u8> = (0..40 * MIB as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let body = c.compress(&data).unwrap();
        let limits = Limits {
            max_compressed: usize::MAX,
            max_decompressed: usize::MAX,
        };
        let r = decode(&body, &limits);
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    /// A length prefix claiming a terabyte-long string is refused by the
    /// bincode limit before anything is allocated.
    #[test]
    fn huge_length_prefix_is_refused() {
        // version, then agent_id's length as a varint u64 (0xfd + 8 LE bytes).
        let mut payload = vec![FORMAT_VERSION, 0xfd];
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        payload.extend_from_slice(b"abc");
        let r = decode(&zstd(&payload), &Limits::default());
        assert!(
            matches!(
                r,
                Err(WireError::TooLarge {
                    what: "decompressed",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    /// An event count of 2^40 with no events behind it is corrupt, and is not
    /// trusted for preallocation.
    #[test]
    fn huge_event_count_is_corrupt() {
        let b = batch(Vec::new());
        let mut payload = raw_payload(&b);
        assert_eq!(payload.pop(), Some(0), "events length is the last byte");
        payload.push(0xfd);
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let r = decode(&zstd(&payload), &Limits::default());
        assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
    }

    /// Deterministic xorshift, enough for realistic-looking test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    /// Events as a busy web server logs them: a handful of clients, sections
    /// and user agents, varied ids and sizes, whole-second timestamps that
    /// only increase.
    fn realistic_events(n: usize) -> Vec<Event> {
        const CLIENTS: &[&str] = &[
            "10.0.3.17",
            "10.0.3.18",
            "192.168.1.44",
            "172.16.0.9",
            "203.0.113.77",
            "198.51.100.23",
            "2001:db8::1f",
            "10.0.9.250",
        ];
        const USERS: &[&str] = &["", "", "", "", "alice", "bob", "svc-report"];
        const UAS: &[&str] = &[
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
            "curl/8.5.0",
            "Prometheus/2.53.0",
            "python-requests/2.32.3",
        ];
        const REFERERS: &[&str] = &[
            "https://www.example.com/",
            "https://www.example.com/pages/home",
            "https://www.google.com/",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut second = 1_719_800_000i64;
        (0..n)
            .map(|_| {
                second += rng.below(3) as i64;
                let id = rng.below(5000);
                let path = match rng.below(10) {
                    0..=3 => format!("/api/user/{id}"),
                    4 => format!("/api/orders/{id}?expand=items"),
                    5 => format!("/report/{}", rng.below(40)),
                    6 | 7 => format!(
                        "/static/{}",
                        rng.pick(&["app.js", "app.css", "logo.svg", "vendor.js"])
                    ),
                    8 => "/health".to_owned(),
                    _ => format!("/pages/{}", rng.pick(&["home", "about", "pricing", "docs"])),
                };
                let method = if rng.below(8) == 0 { "POST" } else { "GET" };
                let status = match rng.below(20) {
                    0 => 404,
                    1 => 500,
                    2 | 3 => 304,
                    4 => 201,
                    _ => 200,
                };
                Event {
                    timestamp: second * NANOS_PER_SEC,
                    client: rng.pick(CLIENTS).to_owned(),
                    user: rng.pick(USERS).to_owned(),
                    method: method.to_owned(),
                    path,
                    protocol: if rng.below(4) == 0 {
                        "HTTP/2.0"
                    } else {
                        "HTTP/1.1"
                    }
                    .to_owned(),
                    status,
                    bytes: if status == 304 {
                        0
                    } else {
                        200 + rng.below(60_000)
                    },
                    referer: (rng.below(3) != 0).then(|| rng.pick(REFERERS).to_owned()),
                    user_agent: Some(rng.pick(UAS).to_owned()),
                    duration_us: Some(100 + rng.below(900_000)),
                }
            })
            .collect()
    }

    /// Encoded size of `b` with absolute timestamps instead of deltas, to
    /// measure what the delta transform buys.
    fn encoded_absolute(b: &Batch) -> (usize, usize) {
        let events: Vec<WireEvent<&str>> = b
            .events
            .iter()
            .map(|e| WireEvent {
                timestamp_delta: e.timestamp,
                client: e.client.as_str(),
                user: e.user.as_str(),
                method: e.method.as_str(),
                path: e.path.as_str(),
                protocol: e.protocol.as_str(),
                status: e.status,
                bytes: e.bytes,
                referer: e.referer.as_deref(),
                user_agent: e.user_agent.as_deref(),
                duration_us: e.duration_us,
            })
            .collect();
        let payload = payload(&WireBatch {
            agent_id: b.agent_id.as_str(),
            host: b.host.as_str(),
            fingerprint: b.stream.fingerprint,
            path: b.stream.path.as_str(),
            start: b.start,
            end: b.end,
            format: format_code(b.format),
            malformed: b.malformed,
            caught_up: b.caught_up,
            sent_at: b.sent_at,
            labels: b.labels.as_slice(),
            events,
        })
        .unwrap();
        (
            payload.len(),
            compress(&payload, DEFAULT_LEVEL).unwrap().len(),
        )
    }

    #[test]
    fn compresses_combined_logs_well() {
        const N: usize = 1000;
        let events = realistic_events(N);
        let mut raw = String::new();
        for e in &events {
            render(Format::Combined, e, &mut raw);
            raw.push('\n');
        }
        let b = batch(events);
        let body = encode(&b, DEFAULT_LEVEL).unwrap();
        assert_eq!(decode(&body, &Limits::default()).unwrap(), b);

        let per = |n: usize| n as f64 / N as f64;
        let ratio = raw.len() as f64 / body.len() as f64;
        let delta_payload = raw_payload(&b).len();
        let (abs_payload, abs_body) = encoded_absolute(&b);
        let raw_zstd = zstd(raw.as_bytes()).len();
        eprintln!(
            "{N} combined lines: raw {} B ({:.1} B/line); zstd(raw text) {} B ({:.1} B/line)",
            raw.len(),
            per(raw.len()),
            raw_zstd,
            per(raw_zstd)
        );
        eprintln!(
            "wire, delta timestamps: bincode {} B ({:.1} B/event), body {} B ({:.1} B/event), ratio {ratio:.1}x",
            delta_payload,
            per(delta_payload),
            body.len(),
            per(body.len())
        );
        eprintln!(
            "wire, absolute timestamps: bincode {} B ({:.1} B/event), body {} B ({:.1} B/event), ratio {:.1}x",
            abs_payload,
            per(abs_payload),
            abs_body,
            per(abs_body),
            raw.len() as f64 / abs_body as f64
        );
        for level in [1, 9, 19] {
            let n = encode(&b, level).unwrap().len();
            eprintln!(
                "level {level}: {n} B ({:.1} B/event), ratio {:.1}x",
                per(n),
                raw.len() as f64 / n as f64
            );
        }
        assert!(ratio >= 5.0, "compression ratio {ratio:.2}x < 5x");
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<i64>(),
            ".{0,16}",
            ".{0,8}",
            "[A-Z]{0,7}",
            ".{0,32}",
            "(HTTP/[0-9.]{1,3})?",
            any::<u16>(),
            any::<u64>(),
            proptest::option::of(".{0,24}"),
            proptest::option::of(".{0,24}"),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(
                    timestamp,
                    client,
                    user,
                    method,
                    path,
                    protocol,
                    status,
                    bytes,
                    referer,
                    user_agent,
                    duration_us,
                )| Event {
                    timestamp,
                    client,
                    user,
                    method,
                    path,
                    protocol,
                    status,
                    bytes,
                    referer,
                    user_agent,
                    duration_us,
                },
            )
    }

    fn arb_batch() -> impl Strategy<Value = Batch> {
        (
            ".{0,12}",
            ".{0,12}",
            any::<u64>(),
            ".{0,40}",
            any::<u64>(),
            any::<u64>(),
            proptest::sample::select(Format::ALL.to_vec()),
            proptest::collection::vec((".{0,8}", ".{0,8}"), 0..4),
            proptest::collection::vec(arb_event(), 0..40),
            any::<u64>(),
        )
            .prop_map(
                |(
                    agent_id,
                    host,
                    fingerprint,
                    path,
                    start,
                    end,
                    format,
                    labels,
                    events,
                    malformed,
                )| {
                    Batch {
                        agent_id,
                        host,
                        stream: StreamId { fingerprint, path },
                        start,
                        end,
                        format,
                        labels,
                        caught_up: malformed % 2 == 0,
                        sent_at: start as i64,
                        events,
                        malformed,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_batch_round_trips(b in arb_batch(), level in -3i32..=22) {
            let body = encode(&b, level).unwrap();
            prop_assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
        }

        #[test]
        fn in_order_events_round_trip(
            start in any::<i64>(),
            steps in proptest::collection::vec(0i64..5_000_000_000, 0..100),
        ) {
            let mut t = start;
            let events: Vec<Event> = steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    t = t.wrapping_add(*step);
                    Event { timestamp: t, ..event(i as i64) }
                })
                .collect();
            let b = batch(events);
            let body = encode(&b, DEFAULT_LEVEL).unwrap();
            prop_assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body, &Limits::default());
        }

        #[test]
        fn mangled_payloads_never_panic(
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut payload = raw_payload(&batch((0..3).map(event).collect()));
            let i = flip.index(payload.len());
            payload[i] ^= 1 << bit;
            payload.truncate(cut.index(payload.len()) + 1);
            let _ = decode(&zstd(&payload), &Limits::default());
        }
    }
}
