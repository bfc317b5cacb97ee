//! Payloads written by hand, section by section, that break the layout on
//! purpose.

use super::*;

/// A payload written section by section, for tests that break the
/// layout on purpose. [`Sections::one_event`] is valid.
#[derive(Clone)]
struct Sections {
    n: u64,
    time: Vec<u8>,
    codes: [Vec<u8>; 7],
    status: Vec<u8>,
    bytes: Vec<u8>,
    duration: Vec<u8>,
    lengths: [Vec<u8>; 7],
    text: [Vec<u8>; 7],
}

impl Sections {
    /// One event whose string column `i` holds `s{i}`, without referer
    /// or user agent.
    fn one_event() -> Self {
        let mut time = vec![9];
        put_i64(&mut time, 1_700_000_000);
        let codes = std::array::from_fn(|i| vec![u8::from(i < 5)]);
        let lengths = std::array::from_fn(|i| if i < 5 { vec![2] } else { vec![] });
        let text = std::array::from_fn(|i| {
            if i < 5 {
                format!("s{i}").into_bytes()
            } else {
                vec![]
            }
        });
        let mut status = Vec::new();
        put_u64(&mut status, 200);
        let mut bytes = Vec::new();
        put_u64(&mut bytes, 512);
        Sections {
            n: 1,
            time,
            codes,
            status,
            bytes,
            duration: vec![0],
            lengths,
            text,
        }
    }

    fn payload(&self) -> Vec<u8> {
        // An empty batch ends with n = 0, the time section (1 byte:
        // scale 9) and 24 empty sections.
        let mut header = payload(&batch(Vec::new()));
        let mut tail = vec![0, 1, 9];
        tail.resize(27, 0);
        assert!(header.ends_with(&tail));
        header.truncate(header.len() - tail.len());
        put_u64(&mut header, self.n);
        let sections = std::iter::once(&self.time)
            .chain(&self.codes)
            .chain([&self.status, &self.bytes, &self.duration])
            .chain(&self.lengths)
            .chain(&self.text);
        for s in sections {
            put_section(&mut header, s);
        }
        header
    }

    fn decode(&self) -> Result<Batch, WireError> {
        decode_checked(&zstd(&self.payload()), &Limits::default())
    }
}

#[track_caller]
fn assert_corrupt(r: Result<Batch, WireError>, words: &str) {
    assert!(
        matches!(&r, Err(WireError::Corrupt(m)) if m.contains(words)),
        "expected Corrupt(..{words}..), got {r:?}"
    );
}

#[test]
fn hand_written_payload_decodes() {
    let b = Sections::one_event().decode().unwrap();
    assert_eq!(b.events.len(), 1);
    let e = &b.events[0];
    assert_eq!(e.timestamp, 1_700_000_000 * NANOS_PER_SEC);
    assert_eq!(
        (
            e.client.as_str(),
            e.user.as_str(),
            e.method.as_str(),
            e.protocol.as_str(),
            e.path.as_str()
        ),
        ("s0", "s1", "s2", "s3", "s4")
    );
    assert_eq!((e.status, e.bytes, e.duration_us), (200, 512, None));
    assert_eq!((&e.referer, &e.user_agent), (&None, &None));
}

/// An event count of 2^40 with no events behind it is corrupt, and is not
/// trusted for preallocation.
#[test]
fn huge_event_count_is_corrupt() {
    let mut s = Sections::one_event();
    s.n = 1 << 40;
    assert_corrupt(s.decode(), "events claimed");
    s.n = u64::MAX;
    assert_corrupt(s.decode(), "events claimed");
}

#[test]
fn dictionary_code_out_of_range_is_corrupt() {
    let mut s = Sections::one_event();
    s.codes[4] = vec![2]; // entry 1 before entry 0
    assert_corrupt(s.decode(), "out of range");
    s.codes[4] = Vec::new();
    put_u64(&mut s.codes[4], u64::MAX);
    assert_corrupt(s.decode(), "out of range");
    // Two events: the second uses an entry that was never introduced.
    let mut s = Sections::one_event();
    s.n = 2;
    put_i64(&mut s.time, 0);
    for c in &mut s.codes[..5] {
        c.push(1);
    }
    s.codes[5] = vec![0, 0];
    s.codes[6] = vec![0, 3];
    s.status.extend_from_slice(&s.status.clone());
    s.bytes.extend_from_slice(&s.bytes.clone());
    s.duration.push(0);
    s.codes[6] = vec![0, 0];
    assert_eq!(s.decode().unwrap().events.len(), 2, "valid as built");
    s.codes[6] = vec![0, 2];
    assert_corrupt(s.decode(), "out of range");
}

#[test]
fn missing_required_string_is_corrupt() {
    for column in 0..5 {
        let mut s = Sections::one_event();
        s.codes[column] = vec![0];
        s.lengths[column].clear();
        s.text[column].clear();
        assert_corrupt(s.decode(), "missing value");
    }
}

#[test]
fn column_lengths_disagreeing_is_corrupt() {
    // A column with a value too many.
    let mut s = Sections::one_event();
    put_u64(&mut s.status, 404);
    assert_corrupt(s.decode(), "column lengths disagree");
    let mut s = Sections::one_event();
    s.codes[1].push(1);
    assert_corrupt(s.decode(), "column lengths disagree");
    let mut s = Sections::one_event();
    s.duration.push(0);
    assert_corrupt(s.decode(), "column lengths disagree");
    // A column with a value too few.
    let mut s = Sections::one_event();
    s.bytes.clear();
    assert_corrupt(s.decode(), "ends early");
    let mut s = Sections::one_event();
    s.codes[6].clear();
    assert_corrupt(s.decode(), "ends early");
    // More events claimed than the columns hold.
    let mut s = Sections::one_event();
    s.n = 2;
    put_i64(&mut s.time, 1);
    assert_corrupt(s.decode(), "ends early");
    // A dictionary entry nobody uses, or text beyond the entries.
    let mut s = Sections::one_event();
    s.lengths[3].push(1);
    s.text[3].push(b'x');
    assert_corrupt(s.decode(), "column lengths disagree");
    let mut s = Sections::one_event();
    s.text[0].push(b'x');
    assert_corrupt(s.decode(), "column lengths disagree");
    // An entry longer than the text section.
    let mut s = Sections::one_event();
    s.lengths[2] = vec![3];
    assert_corrupt(s.decode(), "exceeds");
    let mut s = Sections::one_event();
    s.lengths[2].clear();
    put_u64(&mut s.lengths[2], u64::MAX);
    assert_corrupt(s.decode(), "exceeds");
    // A section longer than the payload.
    let mut s = Sections::one_event();
    let mut payload = s.payload();
    payload.truncate(payload.len() - 3); // into the path text
    assert_corrupt(
        decode_checked(&zstd(&payload), &Limits::default()),
        "exceeds",
    );
    s.text[4].clear();
    assert_corrupt(s.decode(), "exceeds");
}

#[test]
fn invalid_values_are_corrupt() {
    let mut s = Sections::one_event();
    s.text[0] = vec![0xff, 0xfe];
    assert_corrupt(s.decode(), "utf-8");
    let mut s = Sections::one_event();
    s.time[0] = 10;
    assert_corrupt(s.decode(), "time scale");
    let mut s = Sections::one_event();
    s.time.truncate(1);
    put_i64(&mut s.time, i64::MAX / 1000);
    assert_corrupt(s.decode(), "overflows");
    let mut s = Sections::one_event();
    s.status.clear();
    put_u64(&mut s.status, 65_536);
    assert_corrupt(s.decode(), "status");
    let mut s = Sections::one_event();
    s.bytes = vec![0xff; 10];
    s.bytes.push(0);
    assert_corrupt(s.decode(), "overflows");
    let mut s = Sections::one_event();
    s.duration = vec![0xff; 9];
    s.duration.push(0x04); // 2^65 and up
    assert_corrupt(s.decode(), "overflows");
    s.duration = vec![0x80; 9];
    s.duration.push(0x03); // 3 * 2^63 - 1
    assert_corrupt(s.decode(), "overflows");
    s.duration = vec![0x80; 9];
    s.duration.push(0x02); // 2^64 - 1
    assert_eq!(
        s.decode().unwrap().events[0].duration_us,
        Some(u64::MAX),
        "the largest duration"
    );
}

#[test]
fn bad_header_flag_is_corrupt() {
    let mut b = batch(Vec::new());
    let not_caught_up = payload(&b);
    b.caught_up = true;
    let mut caught_up = payload(&b);
    // The one byte that differs.
    let at = (0..caught_up.len())
        .find(|&i| caught_up[i] != not_caught_up[i])
        .unwrap();
    assert_eq!((caught_up[at], not_caught_up[at]), (1, 0));
    caught_up[at] = 4;
    assert_corrupt(
        decode_checked(&zstd(&caught_up), &Limits::default()),
        "caught_up",
    );
}

/// One 64 KiB user agent that every one of 60,000 events uses would
/// decode to 4 GB; the decoded-memory budget refuses it early.
#[test]
fn dictionary_bomb_is_too_large() {
    const N: usize = 60_000;
    let mut s = Sections::one_event();
    s.n = N as u64;
    s.time = vec![9];
    s.time.resize(1 + N, 0);
    for c in &mut s.codes[..5] {
        c.resize(N, 1);
    }
    s.codes[5] = vec![0; N];
    s.codes[6] = vec![1; N];
    s.lengths[6] = Vec::new();
    put_u64(&mut s.lengths[6], 64 * 1024);
    s.text[6] = vec![b'x'; 64 * 1024];
    s.status = [200, 1].repeat(N);
    s.bytes = vec![0; N];
    s.duration = vec![0; N];
    let payload = s.payload();
    let limits = Limits {
        max_compressed: MIB,
        max_decompressed: MIB,
    };
    assert!(payload.len() < MIB);
    let r = decode_checked(&zstd(&payload), &limits);
    assert!(
        matches!(r, Err(WireError::TooLarge { what: "decompressed", limit }) if limit == MIB),
        "{r:?}"
    );
    // With fewer events, the same dictionary is fine.
    s.n = 100;
    s.time.truncate(101);
    for c in &mut s.codes {
        c.truncate(100);
    }
    s.status.truncate(200);
    s.bytes.truncate(100);
    s.duration.truncate(100);
    let b = decode(&zstd(&s.payload()), &limits).unwrap();
    assert_eq!(b.events[99].user_agent.as_ref().unwrap().len(), 64 * 1024);
}

#[test]
fn time_scale_is_the_largest_common_power_of_ten() {
    let at = |ts: &[i64]| {
        let events: Vec<Event> = ts
            .iter()
            .map(|&timestamp| Event {
                timestamp,
                ..Event::default()
            })
            .collect();
        time_scale(&events.iter().map(|e| e.timestamp).collect::<Vec<_>>())
    };
    assert_eq!(at(&[]), 9);
    assert_eq!(at(&[0]), 9);
    assert_eq!(at(&[3 * NANOS_PER_SEC, -7 * NANOS_PER_SEC]), 9);
    assert_eq!(at(&[NANOS_PER_SEC, 1_500_000_000]), 8);
    assert_eq!(at(&[1_000, 2_000_000]), 3);
    assert_eq!(at(&[NANOS_PER_SEC, 1]), 0);
    assert_eq!(at(&[i64::MIN]), 0);
    assert_eq!(at(&[i64::MAX]), 0);
}
