//! The codec's tests: round trips, refusals and limits here; hand-written
//! payloads, compression of realistic logs and properties in the files
//! beside this one.

use std::io::Write as _;

use super::decode::Reader;
use super::encode::{payload, put_i64, put_section, put_u64, time_scale};
use super::*;
use crate::event::NANOS_PER_SEC;

mod compression;
mod payload;
mod props;

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
        labels: Vec::new(),
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
        finished: false,
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

/// `decode(body)`, after checking that `inspect(body)` agrees with it:
/// the same header and event count, or the same error.
#[track_caller]
fn decode_checked(body: &[u8], limits: &Limits) -> Result<Batch, WireError> {
    let decoded = decode(body, limits);
    let inspected = inspect(body, limits);
    match (&decoded, &inspected) {
        (Ok(b), Ok(i)) => {
            assert_eq!(i.events, b.events.len());
            assert_eq!(
                i.batch,
                Batch {
                    events: Vec::new(),
                    ..b.clone()
                }
            );
        }
        (Err(d), Err(i)) => assert_eq!(format!("{d:?}"), format!("{i:?}")),
        _ => panic!("decode gave {decoded:?} but inspect gave {inspected:?}"),
    }
    decoded
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

/// Events with labels of their own make a version 3 body (sets written
/// once, code 0 for events without); without any, the body is version 2,
/// byte for byte what an encoder of before version 3 wrote.
#[test]
fn labels_of_events_round_trip_in_version_3_only() {
    let mut events: Vec<Event> = (0..6).map(event).collect();
    let api = vec![("kind".to_owned(), "api".to_owned())];
    events[1].labels = api.clone();
    events[4].labels = api;
    events[5].labels = vec![
        ("kind".to_owned(), "static".to_owned()),
        ("team".to_owned(), "".to_owned()),
    ];
    let b = batch(events);
    assert_eq!(raw_payload(&b)[0], 3);
    let body = encode(&b, DEFAULT_LEVEL).unwrap();
    assert_eq!(decode_checked(&body, &Limits::default()).unwrap(), b);

    let plain = batch((0..6).map(event).collect());
    let payload = raw_payload(&plain);
    assert_eq!(payload[0], 2);
    assert_eq!(
        decode_checked(&zstd(&payload), &Limits::default()).unwrap(),
        plain
    );
}

/// An event's labels given beside it (`push_labelled`) or as a set's code
/// (`push_coded`) make the bytes its own labels make through `push`.
#[test]
fn labels_given_beside_the_event_encode_as_its_own() {
    let mut own: Vec<Event> = (0..6).map(event).collect();
    let api = vec![("kind".to_owned(), "api".to_owned())];
    own[1].labels = api.clone();
    own[4].labels = api;
    own[5].labels = vec![("kind".to_owned(), "static".to_owned())];
    let header = batch(Vec::new());
    let mut by_push = Encoder::new();
    for e in &own {
        by_push.push(e);
    }
    let want = by_push.finish(&header, DEFAULT_LEVEL).unwrap();
    let bare: Vec<Event> = (0..6).map(event).collect();
    let mut beside = Encoder::new();
    let mut coded = Encoder::new();
    let api_code = coded.label_code(&[("kind", "api")]);
    let static_code = coded.label_code(&[("kind", "static")]);
    assert_eq!((api_code, static_code, coded.label_code(&[])), (1, 2, 0));
    for (i, e) in bare.iter().enumerate() {
        let (labels, code): (&[(&str, &str)], u64) = match i {
            1 | 4 => (&[("kind", "api")], api_code),
            5 => (&[("kind", "static")], static_code),
            _ => (&[], 0),
        };
        beside.push_labelled(e, labels);
        coded.push_coded(e, code);
    }
    assert_eq!(beside.finish(&header, DEFAULT_LEVEL).unwrap(), want);
    assert_eq!(coded.finish(&header, DEFAULT_LEVEL).unwrap(), want);
    let decoded = decode_checked(&want, &Limits::default()).unwrap();
    assert_eq!(decoded.events, own);
}

/// A label code past the sets known so far, or an empty set, is corrupt.
#[test]
fn bad_label_codes_are_corrupt() {
    let mut b = batch(vec![event(1)]);
    b.events[0].labels = vec![("a".to_owned(), "b".to_owned())];
    let payload = raw_payload(&b);
    // The payload ends with the label codes section (one code, 1) and the
    // sets section (count 1, "a", "b"): 1, 1, then 5 bytes.
    let n = payload.len();
    assert_eq!(&payload[n - 8..], &[1, 1, 5, 1, 1, b'a', 1, b'b']);
    let mut wrong = payload.clone();
    wrong[n - 7] = 2;
    let r = decode_checked(&zstd(&wrong), &Limits::default());
    assert!(
        matches!(&r, Err(WireError::Corrupt(m)) if m.contains("code 2 out of range")),
        "{r:?}"
    );
    let mut empty = payload[..n - 6].to_vec();
    empty.extend_from_slice(&[1, 0]);
    let r = decode_checked(&zstd(&empty), &Limits::default());
    assert!(
        matches!(&r, Err(WireError::Corrupt(m)) if m.contains("an empty set")),
        "{r:?}"
    );
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

/// A batch's stream is (agent id, fingerprint): the path it was read from
/// is not part of it, so a renamed file stays the same stream.
#[test]
fn stream_key_is_agent_and_fingerprint() {
    let b = batch(vec![event(1)]);
    let key = StreamKey {
        agent_id: "agent-1".into(),
        fingerprint: 0xdead_beef_cafe_f00d,
    };
    assert_eq!(b.stream_key(), key);
    let mut rotated = b.clone();
    rotated.stream.path.push_str(".1");
    assert_eq!(rotated.stream_key(), key);
    let mut other = b;
    other.agent_id = "agent-2".into();
    assert_ne!(other.stream_key(), key);
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
    let r = decode_checked(b"this is not a zstd frame at all", &Limits::default());
    assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
}

#[test]
fn truncated_zstd_is_corrupt() {
    let body = encode(&batch((0..100).map(event).collect()), DEFAULT_LEVEL).unwrap();
    for cut in [1, 4, body.len() / 2, body.len() - 4, body.len() - 1] {
        let r = decode_checked(&body[..cut], &Limits::default());
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
    let r = decode_checked(&body, &Limits::default());
    assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
}

#[test]
fn trailing_zstd_garbage_is_corrupt() {
    let mut body = encode(&batch(vec![event(1)]), DEFAULT_LEVEL).unwrap();
    body.extend_from_slice(b"junk");
    let r = decode_checked(&body, &Limits::default());
    assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
}

#[test]
fn trailing_bytes_after_the_batch_are_corrupt() {
    let mut payload = raw_payload(&batch(vec![event(1)]));
    payload.push(0);
    let r = decode_checked(&zstd(&payload), &Limits::default());
    assert!(
        matches!(&r, Err(WireError::Corrupt(m)) if m.contains("trailing")),
        "{r:?}"
    );
}

#[test]
fn truncated_payload_is_corrupt() {
    let payload = raw_payload(&batch(vec![event(1), event(2)]));
    let r = decode_checked(&zstd(&payload[..payload.len() - 3]), &Limits::default());
    assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
}

#[test]
fn future_version_is_unsupported() {
    let mut payload = raw_payload(&batch(vec![event(1)]));
    payload[0] = 4;
    let r = decode_checked(&zstd(&payload), &Limits::default());
    assert!(
        matches!(
            r,
            Err(WireError::UnsupportedVersion {
                found: 4,
                supported: 3
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
    let r = decode_checked(&zstd(&payload), &Limits::default());
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
    let r = decode_checked(&body, &under);
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
    let r = decode_checked(&body, &under);
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

    let r = decode_checked(&bomb, &Limits::default());
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
    let r = decode_checked(&bomb, &Limits::default());
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
    let r = decode_checked(&body, &limits);
    assert!(matches!(r, Err(WireError::Corrupt(_))), "{r:?}");
}

/// A length prefix claiming a terabyte-long string is refused before
/// anything is allocated: it exceeds what is left of the payload.
#[test]
fn huge_length_prefix_is_refused() {
    // version, then agent_id's length as a varint.
    let mut payload = vec![FORMAT_VERSION];
    put_u64(&mut payload, 1 << 40);
    payload.extend_from_slice(b"abc");
    let r = decode_checked(&zstd(&payload), &Limits::default());
    assert!(
        matches!(&r, Err(WireError::Corrupt(m)) if m.contains("exceeds")),
        "{r:?}"
    );
}
