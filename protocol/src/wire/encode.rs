//! Writing a batch: the columnar payload, built event by event by
//! [`Encoder`], then compressed. [`encode`] is the encoder over a [`Batch`]'s
//! events and makes the same bytes.

use std::cell::RefCell;

use super::compress::compress;
use super::{Batch, FORMAT_VERSION, FORMAT_VERSION_UNLABELLED, WireError, format_code};
use crate::event::Event;

/// Encodes `batch` as a request body: zstd at `level` (see [`DEFAULT_LEVEL`];
/// levels above 19 are clamped to 19) of the version byte and the columnar
/// payload.
pub fn encode(batch: &Batch, level: i32) -> Result<Vec<u8>, WireError> {
    thread_local! {
        /// Kept between calls, so that its buffers are too.
        static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
    }
    let run = |encoder: &mut Encoder| {
        encoder.clear();
        for e in &batch.events {
            encoder.push(e);
        }
        encoder.finish(batch, level)
    };
    ENCODER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut encoder) => run(&mut encoder),
        Err(_) => run(&mut Encoder::new()),
    })
}

/// The uncompressed payload of `batch`: version byte, header, columns.
#[cfg(test)]
pub(super) fn payload(batch: &Batch) -> Vec<u8> {
    let mut encoder = Encoder::new();
    for e in &batch.events {
        encoder.push(e);
    }
    let mut out = Vec::new();
    encoder.write_payload(batch, &mut out);
    out
}

/// Builds a batch body event by event, without keeping the events: each
/// [`push`](Encoder::push) adds one event to the columns and dictionaries,
/// and [`finish`](Encoder::finish) writes the header, compresses, and
/// empties the encoder for the next batch, keeping its buffers. The body is
/// byte for byte what [`encode`] makes of the same batch.
///
/// An agent parses each line into one reused [`Event`] and pushes it here,
/// so a line costs no allocation at all.
#[derive(Debug)]
pub struct Encoder {
    /// Every event's timestamp: the time section's scale is known only once
    /// the batch is complete.
    timestamps: Vec<i64>,
    strings: [StringColumnOut; 7],
    status: Vec<u8>,
    bytes: Vec<u8>,
    duration: Vec<u8>,
    /// Per-event label sets (version 3): a code per event (0: none), and
    /// the distinct sets in order of first use.
    label_codes: Vec<u8>,
    label_sets: Vec<u8>,
    label_index: std::collections::HashMap<Vec<u8>, u64, SeededHash>,
    label_scratch: Vec<u8>,
    /// Whether any event pushed has labels of its own.
    labelled: bool,
    /// Scratch for the time section and the uncompressed payload, kept
    /// between batches.
    time: Vec<u8>,
    payload: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        let seed = random_seed();
        Encoder {
            timestamps: Vec::new(),
            strings: std::array::from_fn(|_| StringColumnOut::new(seed)),
            status: Vec::new(),
            bytes: Vec::new(),
            duration: Vec::new(),
            label_codes: Vec::new(),
            label_sets: Vec::new(),
            label_index: std::collections::HashMap::with_hasher(SeededHash(seed)),
            label_scratch: Vec::new(),
            labelled: false,
            time: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The number of events pushed since the last [`finish`](Encoder::finish).
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether no event was pushed since the last [`finish`](Encoder::finish).
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Adds one event to the batch being built.
    pub fn push(&mut self, e: &Event) {
        self.push_fields(e);
        if e.labels.is_empty() {
            self.label_codes.push(0);
        } else {
            self.push_labels(e.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }

    /// Appends `e` with `labels` in place of its own (an edge filter's
    /// additions merged with them), as if they were its own: the bytes are
    /// those [`Encoder::push`] makes of the event with those labels.
    pub fn push_labelled(&mut self, e: &Event, labels: &[(&str, &str)]) {
        self.push_fields(e);
        if labels.is_empty() {
            self.label_codes.push(0);
        } else {
            self.push_labels(labels.iter().copied());
        }
    }

    /// The code of the label set `labels` in the batch being built (added
    /// when new), for [`Encoder::push_coded`]; valid until
    /// [`Encoder::finish`]. An empty set is code 0.
    pub fn label_code(&mut self, labels: &[(&str, &str)]) -> u64 {
        if labels.is_empty() {
            return 0;
        }
        self.code_of(labels.iter().copied())
    }

    /// Appends `e` with the label set of `code` (from
    /// [`Encoder::label_code`] since the last finish) in place of its own:
    /// for many events of one set, the set is written and looked up once.
    pub fn push_coded(&mut self, e: &Event, code: u64) {
        self.push_fields(e);
        put_u64(&mut self.label_codes, code);
    }

    fn push_fields(&mut self, e: &Event) {
        self.timestamps.push(e.timestamp);
        let [client, user, method, protocol, path, referer, user_agent] = &mut self.strings;
        client.push(Some(&e.client));
        user.push(Some(&e.user));
        method.push(Some(&e.method));
        protocol.push(Some(&e.protocol));
        path.push(Some(&e.path));
        referer.push(e.referer.as_deref());
        user_agent.push(e.user_agent.as_deref());
        put_u64(&mut self.status, u64::from(e.status));
        put_u64(&mut self.bytes, e.bytes);
        put_opt_u64(&mut self.duration, e.duration_us);
    }

    /// Appends the code of an event's label set.
    fn push_labels<'a>(&mut self, labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>) {
        let code = self.code_of(labels);
        put_u64(&mut self.label_codes, code);
    }

    /// The code of a (non-empty) label set, its set added when new.
    fn code_of<'a>(&mut self, labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> u64 {
        self.labelled = true;
        let set = &mut self.label_scratch;
        set.clear();
        put_u64(set, labels.len() as u64);
        for (key, value) in labels {
            put_str(set, key);
            put_str(set, value);
        }
        let next = self.label_index.len() as u64 + 1;
        match self.label_index.get(set.as_slice()) {
            Some(&code) => code,
            None => {
                self.label_sets.extend_from_slice(set);
                self.label_index.insert(set.clone(), next);
                next
            }
        }
    }

    /// The body of the batch made of `header`'s fields (its `events` are
    /// ignored) and the events pushed since the last call, compressed at
    /// `level` as [`encode`] does. Empties the encoder, keeping its buffers.
    pub fn finish(&mut self, header: &Batch, level: i32) -> Result<Vec<u8>, WireError> {
        let mut payload = std::mem::take(&mut self.payload);
        payload.clear();
        self.write_payload(header, &mut payload);
        let body = compress(&payload, level);
        self.payload = payload;
        body
    }

    /// Forgets the events pushed since the last [`finish`](Encoder::finish).
    pub fn clear(&mut self) {
        let seed = random_seed();
        self.timestamps.clear();
        for column in &mut self.strings {
            column.clear(seed);
        }
        self.status.clear();
        self.bytes.clear();
        self.duration.clear();
        self.label_codes.clear();
        self.label_sets.clear();
        self.label_index.clear();
        self.labelled = false;
    }

    /// Writes the payload into `out`, then [`clear`](Encoder::clear)s.
    fn write_payload(&mut self, batch: &Batch, out: &mut Vec<u8>) {
        let n = self.timestamps.len();
        let columns: usize = self
            .strings
            .iter()
            .map(|c| c.codes.len() + c.lengths.len() + c.text.len())
            .sum();
        out.reserve(
            256 + n * 2 + columns + self.status.len() + self.bytes.len() + self.duration.len(),
        );
        // Version 2 when no event has labels of its own, so that a
        // collector which reads only version 2 takes the batches of an
        // agent without filters or label-keeping formats.
        out.push(if self.labelled {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_UNLABELLED
        });
        put_str(out, &batch.agent_id);
        put_str(out, &batch.host);
        put_u64(out, batch.stream.fingerprint);
        put_str(out, &batch.stream.path);
        put_u64(out, batch.start);
        put_u64(out, batch.end);
        out.push(format_code(batch.format));
        put_u64(out, batch.malformed);
        out.push(u8::from(batch.caught_up) | (u8::from(batch.finished) << 1));
        put_i64(out, batch.sent_at);
        put_u64(out, batch.labels.len() as u64);
        for (key, value) in &batch.labels {
            put_str(out, key);
            put_str(out, value);
        }
        put_u64(out, n as u64);

        let scale = time_scale(&self.timestamps);
        let unit = 10i64.pow(scale);
        let time = &mut self.time;
        time.clear();
        time.push(scale as u8);
        let mut previous = 0i64;
        for &t in &self.timestamps {
            let scaled = t / unit;
            put_i64(time, scaled.wrapping_sub(previous));
            previous = scaled;
        }
        put_section(out, time);
        for column in &self.strings {
            put_section(out, &column.codes);
        }
        put_section(out, &self.status);
        put_section(out, &self.bytes);
        put_section(out, &self.duration);
        for column in &self.strings {
            put_section(out, &column.lengths);
        }
        for column in &self.strings {
            put_section(out, &column.text);
        }
        if self.labelled {
            put_section(out, &self.label_codes);
            put_section(out, &self.label_sets);
        }
        self.clear();
    }
}

/// The largest `k <= 9` such that 10^k divides every timestamp.
pub(super) fn time_scale(timestamps: &[i64]) -> u32 {
    let mut scale = 9;
    for &t in timestamps {
        while scale > 0 && t % 10i64.pow(scale) != 0 {
            scale -= 1;
        }
        if scale == 0 {
            break;
        }
    }
    scale
}

/// One string column being written: dictionary codes, and the dictionary.
///
/// The dictionary is a small open-addressing hash table of its own rather
/// than a `HashMap`: it keeps each entry's hash, so that a probe compares
/// strings only when the hashes match (string comparisons and SipHash took
/// half of encoding time). A value equal to the previous one (common in
/// method, protocol and user columns, and in runs of one client's requests)
/// is recognised by one comparison, without hashing.
#[derive(Debug)]
struct StringColumnOut {
    codes: Vec<u8>,
    lengths: Vec<u8>,
    /// The entries' text, concatenated: the text section itself.
    text: Vec<u8>,
    /// Where each entry lies in `text`, in code order (code = index + 1).
    entries: Vec<(usize, usize)>,
    /// (low half of the hash, code) of each entry, code 0 marking a free
    /// slot; linear probing from the high half of the hash, at most half
    /// full, length a power of two. 8 bytes a slot, to stay in cache.
    slots: Vec<(u32, u32)>,
    seed: u64,
    /// Code of the last value (0: none yet).
    last: u32,
}

impl StringColumnOut {
    fn new(seed: u64) -> Self {
        StringColumnOut {
            codes: Vec::new(),
            lengths: Vec::new(),
            text: Vec::new(),
            entries: Vec::new(),
            slots: Vec::new(),
            seed,
            last: 0,
        }
    }

    fn clear(&mut self, seed: u64) {
        self.codes.clear();
        self.lengths.clear();
        self.text.clear();
        self.entries.clear();
        self.slots.fill((0, 0));
        self.seed = seed;
        self.last = 0;
    }

    fn entry(&self, code: u32) -> &[u8] {
        let (start, len) = self.entries[code as usize - 1];
        &self.text[start..start + len]
    }

    fn push(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            self.codes.push(0);
            return;
        };
        let value = value.as_bytes();
        let code = if self.last != 0 && self.entry(self.last) == value {
            self.last
        } else {
            let code = self.code(value);
            self.last = code;
            code
        };
        put_u64(&mut self.codes, u64::from(code));
    }

    /// The code of `value`, adding it to the dictionary if it is new.
    fn code(&mut self, value: &[u8]) -> u32 {
        if self.entries.len() * 2 >= self.slots.len() {
            self.grow();
        }
        let hash = hash_str(value, self.seed);
        let mask = self.slots.len() - 1;
        let mut i = (hash >> 32) as usize & mask;
        loop {
            let (slot_hash, code) = self.slots[i];
            if code == 0 {
                self.entries.push((self.text.len(), value.len()));
                // A batch holds far fewer than 2^32 events (encoding one
                // that large would need hundreds of GiB).
                let code = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.slots[i] = (hash as u32, code);
                put_u64(&mut self.lengths, value.len() as u64);
                self.text.extend_from_slice(value);
                return code;
            }
            if slot_hash == hash as u32 && self.entry(code) == value {
                return code;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        self.slots.clear();
        self.slots.resize(size, (0, 0));
        for code in 1..=self.entries.len() as u32 {
            let hash = hash_str(self.entry(code), self.seed);
            let mut i = (hash >> 32) as usize & (size - 1);
            while self.slots[i].1 != 0 {
                i = (i + 1) & (size - 1);
            }
            self.slots[i] = (hash as u32, code);
        }
    }
}

/// A per-batch random seed for [`hash_str`], so that strings in a log cannot
/// be chosen to collide.
/// [`hash_str`] as a map's hasher (the label sets of a batch: one look-up
/// per labelled event, where SipHash cost more than the rest of the push).
#[derive(Debug, Clone, Copy)]
struct SeededHash(u64);

impl std::hash::BuildHasher for SeededHash {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

#[derive(Debug)]
struct SeededHasher(u64);

impl std::hash::Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_str(bytes, self.0);
    }
}

fn random_seed() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
}

const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x1319_8a2e_0370_7344;
const K3: u64 = 0xa409_3822_299f_31d0;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A fast keyed string hash in the style of foldhash: 16 bytes per folded
/// 64×64→128-bit multiply, short strings read with overlapping loads.
fn hash_str(s: &[u8], seed: u64) -> u64 {
    let read8 = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let read4 = |at: usize| {
        u64::from(u32::from_le_bytes(
            s[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    let len = s.len();
    let mut state = seed ^ len as u64;
    let (a, b) = if len > 16 {
        let mut at = 0;
        while at + 16 < len {
            state = folded_multiply(read8(at) ^ state ^ K1, read8(at + 8) ^ seed ^ K2);
            at += 16;
        }
        (read8(len - 16), read8(len - 8))
    } else if len >= 8 {
        (read8(0), read8(len - 8))
    } else if len >= 4 {
        (read4(0), read4(len - 4))
    } else if len > 0 {
        (
            u64::from(s[0]),
            u64::from(s[len / 2]) << 8 | u64::from(s[len - 1]),
        )
    } else {
        (0, 0)
    };
    state = folded_multiply(a ^ state ^ K1, b ^ seed ^ K2);
    folded_multiply(state, seed ^ K3)
}

pub(super) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// `None` as 0, `Some(v)` as the 65-bit `v + 1`.
fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    let Some(v) = v else {
        out.push(0);
        return;
    };
    let mut v = u128::from(v) + 1;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_section(out: &mut Vec<u8>, section: &[u8]) {
    put_u64(out, section.len() as u64);
    out.extend_from_slice(section);
}
