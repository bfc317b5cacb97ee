//! Reading a batch: [`decode`] builds its events, [`inspect`] runs the same
//! checks without building them. Neither trusts a size the sender wrote: see
//! the module above for the bounds.

use super::compress::decompress_capped;
use super::{
    Batch, DECODED_PER_PAYLOAD_BYTE, FORMAT_VERSION, FORMAT_VERSION_UNLABELLED, Limits,
    STRING_COLUMNS, StreamId, WireError, format_from_code,
};
use crate::event::Event;

/// Decodes a request body made by [`encode`], within `limits`.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Batch, WireError> {
    read_body::<true>(body, limits).map(|(batch, _)| batch)
}

/// What [`inspect`] found in a valid body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Every field of the batch but its events: `batch.events` is empty.
    pub batch: Batch,
    /// How many events the body holds.
    pub events: usize,
}

/// Checks a request body as [`decode`] does, without making its events:
/// the same limits, the same checks of every section (dictionary codes in
/// range, UTF-8, varints, counts, trailing bytes), the same decoded-memory
/// budget, and so the same result — `Ok` exactly when [`decode`] would
/// succeed, and the same error otherwise. On success, gives the batch's
/// header fields and its number of events.
///
/// It costs the decompression and a pass over the columns, with no
/// allocation per event: the collector's ingest uses it to validate a body
/// it stores as received.
pub fn inspect(body: &[u8], limits: &Limits) -> Result<Inspected, WireError> {
    read_body::<false>(body, limits).map(|(batch, events)| Inspected { batch, events })
}

fn read_body<const BUILD: bool>(body: &[u8], limits: &Limits) -> Result<(Batch, usize), WireError> {
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
    if version != FORMAT_VERSION && version != FORMAT_VERSION_UNLABELLED {
        return Err(WireError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let budget = Budget {
        left: limits
            .max_decompressed
            .saturating_mul(DECODED_PER_PAYLOAD_BYTE),
        limit: limits.max_decompressed,
    };
    read_payload::<BUILD>(rest, budget, version == FORMAT_VERSION)
}

// --- payload: writing -----------------------------------------------------------

// --- payload: reading -----------------------------------------------------------

fn corrupt(message: String) -> WireError {
    WireError::Corrupt(message)
}

/// Memory the decoded batch may still take.
struct Budget {
    left: usize,
    /// `max_decompressed`, for the error.
    limit: usize,
}

impl Budget {
    fn take(&mut self, bytes: usize) -> Result<(), WireError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(WireError::TooLarge {
                what: "decompressed",
                limit: self.limit,
            }),
        }
    }
}

/// A cursor over one part of the payload; `what` names it in errors.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) what: &'static str,
}

impl<'a> Reader<'a> {
    fn empty(what: &'static str) -> Self {
        Reader { bytes: &[], what }
    }

    fn truncated(&self) -> WireError {
        corrupt(format!("{} ends early", self.what))
    }

    pub(super) fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        Ok(b)
    }

    /// A LEB128 varint of at most `bits` (64 or 65) bits.
    fn varint(&mut self, bits: u32) -> Result<u128, WireError> {
        let mut v = 0u128;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && u32::from(b) >> (bits - 63) != 0 {
                return Err(corrupt(format!(
                    "{}: varint overflows {bits} bits",
                    self.what
                )));
            }
            v |= u128::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    pub(super) fn u64(&mut self) -> Result<u64, WireError> {
        // Most values (dictionary codes, small numbers) take one byte.
        if let Some((&b, rest)) = self.bytes.split_first()
            && b < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(b));
        }
        self.varint(64).map(|v| v as u64)
    }

    pub(super) fn i64(&mut self) -> Result<i64, WireError> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// `None` from 0, `Some(v)` from `v + 1` (see [`put_opt_u64`]).
    fn opt_u64(&mut self) -> Result<Option<u64>, WireError> {
        if let Some((&b, rest)) = self.bytes.split_first()
            && b < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(b).checked_sub(1));
        }
        match self.varint(65)?.checked_sub(1) {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| corrupt(format!("{}: value overflows 64 bits", self.what))),
        }
    }

    /// A length read from the payload, no larger than what is left.
    fn len(&mut self) -> Result<usize, WireError> {
        let len = self.u64()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.bytes.len() => Ok(len),
            _ => Err(corrupt(format!(
                "{}: length {len} exceeds the {} bytes left",
                self.what,
                self.bytes.len()
            ))),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.bytes.len() {
            return Err(self.truncated());
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    pub(super) fn str(&mut self) -> Result<&'a str, WireError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| corrupt(format!("{}: {e}", self.what)))
    }

    fn string(&mut self) -> Result<String, WireError> {
        self.str().map(str::to_owned)
    }

    /// The next section, as a reader of its own named `what`.
    pub(super) fn section(&mut self, what: &'static str) -> Result<Reader<'a>, WireError> {
        let len = self.len()?;
        Ok(Reader {
            bytes: self.take(len)?,
            what,
        })
    }

    /// Fails unless every byte was read.
    fn finish(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{}: {} trailing bytes (column lengths disagree)",
                self.what,
                self.bytes.len()
            )))
        }
    }
}

/// One string column being read: codes, and the dictionary read so far.
struct StringColumnIn<'a> {
    codes: Reader<'a>,
    lengths: Reader<'a>,
    text: Reader<'a>,
    entries: Vec<&'a str>,
    required: bool,
}

impl<'a> StringColumnIn<'a> {
    fn next(&mut self) -> Result<Option<&'a str>, WireError> {
        let code = self.codes.u64()?;
        let Some(index) = code.checked_sub(1) else {
            if self.required {
                return Err(corrupt(format!("{}: missing value", self.codes.what)));
            }
            return Ok(None);
        };
        if let Some(&s) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
        {
            return Ok(Some(s));
        }
        if index != self.entries.len() as u64 {
            return Err(corrupt(format!(
                "{}: dictionary code {code} out of range ({} entries)",
                self.codes.what,
                self.entries.len()
            )));
        }
        let len = self.lengths.u64()?;
        let bytes = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.text.bytes.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "{}: dictionary entry of {len} bytes exceeds the {} bytes left",
                    self.codes.what,
                    self.text.bytes.len()
                ))
            })
            .and_then(|len| self.text.take(len))?;
        let s =
            std::str::from_utf8(bytes).map_err(|e| corrupt(format!("{}: {e}", self.codes.what)))?;
        self.entries.push(s);
        Ok(Some(s))
    }

    fn finish(&self) -> Result<(), WireError> {
        self.codes.finish()?;
        self.lengths.finish()?;
        self.text.finish()
    }
}

/// The per-event label sets of a version 3 payload being read.
struct LabelSetsIn<'a> {
    codes: Reader<'a>,
    sets: Reader<'a>,
    entries: Vec<Vec<(&'a str, &'a str)>>,
}

impl<'a> LabelSetsIn<'a> {
    /// The next event's label set (empty for code 0).
    fn next(&mut self) -> Result<&[(&'a str, &'a str)], WireError> {
        let code = self.codes.u64()?;
        let Some(index) = code.checked_sub(1) else {
            return Ok(&[]);
        };
        let known = self.entries.len() as u64;
        if index > known {
            return Err(corrupt(format!(
                "label codes: code {code} out of range ({known} sets)"
            )));
        }
        if index == known {
            let count = self.sets.u64()?;
            // No preallocation: each label takes at least two bytes.
            let mut set = Vec::new();
            for _ in 0..count {
                set.push((self.sets.str()?, self.sets.str()?));
            }
            if set.is_empty() {
                return Err(corrupt("label sets: an empty set".to_owned()));
            }
            self.entries.push(set);
        }
        Ok(&self.entries[index as usize])
    }
}

/// What a label set costs in memory once copied into an event.
fn set_size(set: &[(&str, &str)]) -> usize {
    set.iter()
        .map(|(k, v)| k.len() + v.len() + std::mem::size_of::<(String, String)>())
        .sum()
}

/// Copies a string out of a dictionary, within the budget.
fn owned(s: &str, budget: &mut Budget) -> Result<String, WireError> {
    budget.take(s.len())?;
    Ok(s.to_owned())
}

/// Reads the payload after the version byte. With `BUILD`, the events are
/// made and returned in the batch; without, the batch comes back with no
/// events, and every check (and every charge to the budget) is the same.
/// Returns the number of events too.
fn read_payload<const BUILD: bool>(
    payload: &[u8],
    mut budget: Budget,
    labelled: bool,
) -> Result<(Batch, usize), WireError> {
    let mut r = Reader {
        bytes: payload,
        what: "batch header",
    };
    let agent_id = r.string()?;
    let host = r.string()?;
    let fingerprint = r.u64()?;
    let path = r.string()?;
    let start = r.u64()?;
    let end = r.u64()?;
    let format = format_from_code(r.byte()?)?;
    let malformed = r.u64()?;
    let flags = r.byte()?;
    if flags > 0b11 {
        return Err(corrupt(format!(
            "caught_up flags byte is {flags:#04x}: unknown bits set"
        )));
    }
    let (caught_up, finished) = (flags & 1 != 0, flags & 2 != 0);
    let sent_at = r.i64()?;
    let label_count = r.u64()?;
    // No preallocation: every label takes at least two bytes, so the loop
    // stops at the end of the payload whatever the count claims.
    let mut labels = Vec::new();
    for _ in 0..label_count {
        labels.push((r.string()?, r.string()?));
    }
    let n = r.u64()?;

    let mut time = r.section("time section")?;
    let mut codes = STRING_COLUMNS.map(Reader::empty);
    for c in &mut codes {
        *c = r.section(c.what)?;
    }
    let mut status = r.section("status section")?;
    let mut bytes = r.section("bytes section")?;
    let mut duration = r.section("duration section")?;
    let mut lengths = STRING_COLUMNS.map(Reader::empty);
    for c in &mut lengths {
        *c = r.section(c.what)?;
    }
    let mut texts = STRING_COLUMNS.map(Reader::empty);
    for c in &mut texts {
        *c = r.section(c.what)?;
    }
    let mut label_sets = LabelSetsIn {
        codes: Reader::empty("label codes"),
        sets: Reader::empty("label sets"),
        entries: Vec::new(),
    };
    if labelled {
        label_sets.codes = r.section("label codes")?;
        label_sets.sets = r.section("label sets")?;
    }
    if !r.bytes.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after the batch",
            r.bytes.len()
        )));
    }
    let mut required = [true, true, true, true, true, false, false].into_iter();
    let mut strings = codes.map(|codes| StringColumnIn {
        codes,
        lengths: Reader::empty(""),
        text: Reader::empty(""),
        entries: Vec::new(),
        required: required.next().unwrap_or(false),
    });
    for ((column, lengths), text) in strings.iter_mut().zip(lengths).zip(texts) {
        column.lengths = lengths;
        column.text = text;
    }
    let scale = time.byte()?;
    if scale > 9 {
        return Err(corrupt(format!("time scale 10^{scale} above 10^9")));
    }
    let unit = 10i64.pow(u32::from(scale));
    // Each event takes at least one byte of the time section: the count
    // cannot claim more events than the payload holds.
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= time.bytes.len())
        .ok_or_else(|| {
            corrupt(format!(
                "{n} events claimed, but the time section holds at most {}",
                time.bytes.len()
            ))
        })?;
    budget.take(n.saturating_mul(std::mem::size_of::<Event>()))?;
    let mut events = Vec::with_capacity(if BUILD { n } else { 0 });
    let mut scaled = 0i64;
    for _ in 0..n {
        scaled = scaled.wrapping_add(time.i64()?);
        let timestamp = scaled
            .checked_mul(unit)
            .ok_or_else(|| corrupt("timestamp overflows 64 bits".to_owned()))?;
        if !BUILD {
            for column in strings.iter_mut() {
                if let Some(s) = column.next()? {
                    budget.take(s.len())?;
                }
            }
            u16::try_from(status.u64()?)
                .map_err(|_| corrupt("status overflows 16 bits".to_owned()))?;
            bytes.u64()?;
            duration.opt_u64()?;
            if labelled {
                let set = label_sets.next()?;
                budget.take(set_size(set))?;
            }
            continue;
        }
        let [
            client,
            user,
            method,
            protocol,
            path_column,
            referer,
            user_agent,
        ] = &mut strings;
        let client = owned(client.next()?.unwrap_or_default(), &mut budget)?;
        let user = owned(user.next()?.unwrap_or_default(), &mut budget)?;
        let method = owned(method.next()?.unwrap_or_default(), &mut budget)?;
        let protocol = owned(protocol.next()?.unwrap_or_default(), &mut budget)?;
        let path = owned(path_column.next()?.unwrap_or_default(), &mut budget)?;
        let referer = match referer.next()? {
            Some(s) => Some(owned(s, &mut budget)?),
            None => None,
        };
        let user_agent = match user_agent.next()? {
            Some(s) => Some(owned(s, &mut budget)?),
            None => None,
        };
        let status = u16::try_from(status.u64()?)
            .map_err(|_| corrupt("status overflows 16 bits".to_owned()))?;
        let labels = if labelled {
            let set = label_sets.next()?;
            budget.take(set_size(set))?;
            set.iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        events.push(Event {
            timestamp,
            client,
            user,
            method,
            path,
            protocol,
            status,
            bytes: bytes.u64()?,
            referer,
            user_agent,
            duration_us: duration.opt_u64()?,
            labels,
        });
    }
    time.finish()?;
    for column in &strings {
        column.finish()?;
    }
    status.finish()?;
    bytes.finish()?;
    duration.finish()?;
    label_sets.codes.finish()?;
    label_sets.sets.finish()?;

    let batch = Batch {
        agent_id,
        host,
        stream: StreamId { fingerprint, path },
        start,
        end,
        format,
        labels,
        events,
        malformed,
        caught_up,
        finished,
        sent_at,
    };
    Ok((batch, n))
}
