//! Properties: any batch round trips, a reused encoder matches `encode`,
//! `inspect` agrees with `decode`, and no body makes either panic.

use proptest::prelude::*;

use super::*;

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
        // Mostly none; a few sets drawn from a small alphabet so that
        // sets repeat (dictionary codes reused).
        prop_oneof![
            3 => Just(Vec::new()),
            1 => proptest::collection::vec(("[ab]{0,2}", "[xy]{0,2}"), 1..3),
        ],
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
                labels,
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
                labels,
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
            |(agent_id, host, fingerprint, path, start, end, format, labels, events, malformed)| {
                Batch {
                    agent_id,
                    host,
                    stream: StreamId { fingerprint, path },
                    start,
                    end,
                    format,
                    labels,
                    caught_up: malformed % 2 == 0,
                    finished: malformed % 3 == 0,
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
        prop_assert_eq!(decode_checked(&body, &Limits::default()).unwrap(), b);
    }

    /// An `Encoder` reused across batches makes the bodies `encode`
    /// makes, byte for byte.
    #[test]
    fn reused_encoder_matches_encode(
        batches in proptest::collection::vec(arb_batch(), 1..4),
        level in 1i32..=4,
    ) {
        let mut encoder = Encoder::new();
        for b in &batches {
            for e in &b.events {
                encoder.push(e);
            }
            prop_assert_eq!(encoder.len(), b.events.len());
            let body = encoder.finish(b, level).unwrap();
            prop_assert!(encoder.is_empty());
            prop_assert_eq!(&body, &encode(b, level).unwrap());
            prop_assert_eq!(&decode(&body, &Limits::default()).unwrap(), b);
        }
    }

    /// Tight limits: `inspect` and `decode` refuse the same bodies for
    /// the same reason (the decoded-memory budget included).
    #[test]
    fn inspect_agrees_under_tight_limits(
        b in arb_batch(),
        max_decompressed in 1usize..2048,
    ) {
        let body = encode(&b, 3).unwrap();
        let limits = Limits { max_compressed: body.len(), max_decompressed };
        let _ = decode_checked(&body, &limits);
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

    /// Values drawn from a few, so that dictionary entries are reused,
    /// in runs and out of order, next to missing and empty values.
    #[test]
    fn repetitive_batches_round_trip(
        picks in proptest::collection::vec((0usize..4, 0usize..4, 0usize..4, any::<i64>()), 0..300),
        level in 1i32..=4,
    ) {
        let few = ["", "a", "GET", "Mozilla/5.0 (X11; Linux x86_64)"];
        let events: Vec<Event> = picks
            .iter()
            .map(|&(x, y, z, t)| Event {
                timestamp: t.rem_euclid(4) * NANOS_PER_SEC,
                client: few[x].to_owned(),
                user: few[y].to_owned(),
                method: few[z].to_owned(),
                path: few[(x + y) % 4].to_owned(),
                protocol: few[(y + z) % 4].to_owned(),
                status: [200, 304, 404, 500][z],
                bytes: (t as u64) % 3,
                referer: (x != 0).then(|| few[y].to_owned()),
                user_agent: (z != 3).then(|| few[x].to_owned()),
                duration_us: (y != 0).then_some(t as u64 % 1000), labels: Vec::new(),
            })
            .collect();
        let b = batch(events);
        let body = encode(&b, level).unwrap();
        prop_assert_eq!(decode(&body, &Limits::default()).unwrap(), b);
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_checked(&body, &Limits::default());
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
        let _ = decode_checked(&zstd(&payload), &Limits::default());
    }
}
