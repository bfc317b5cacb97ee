//! Reading bus records back as batches, the same way in every consumer.
//!
//! Ingest stores a body only after [`wire::inspect`] accepted it, so a
//! record that does not decode means damage that the CRC missed, a record
//! from an incompatible build, or a bug. Such a record is skipped — never a
//! consumer's end, since the records after it are good — but never
//! silently: every consumer decodes with the bus's own limits (so all of them
//! skip exactly the same records and their counts reconcile), counts it, and
//! logs it with its offset and the decode error, at most once per
//! [`LOG_EVERY`] per consumer with the number left unlogged.

use logmon_protocol::wire::{self, Batch, Limits};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two log lines about undecodable records.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A consumer's decoder of bus records.
#[derive(Debug)]
pub struct RecordDecoder {
    consumer: &'static str,
    limits: Limits,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl RecordDecoder {
    pub fn new(consumer: &'static str, limits: Limits) -> RecordDecoder {
        RecordDecoder {
            consumer,
            limits,
            last_log: None,
            unlogged: 0,
        }
    }

    /// The batch in bus record `offset`, or `None` for an undecodable one,
    /// which is added to `undecodable` and logged (rate-limited).
    pub fn decode(&mut self, offset: u64, record: &[u8], undecodable: &AtomicU64) -> Option<Batch> {
        match wire::decode(record, &self.limits) {
            Ok(batch) => Some(batch),
            Err(e) => {
                undecodable.fetch_add(1, Ordering::Relaxed);
                self.unlogged += 1;
                let now = Instant::now();
                if self
                    .last_log
                    .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
                {
                    let more = self.unlogged - 1;
                    let also = if more > 0 {
                        format!(" ({more} more since the last report)")
                    } else {
                        String::new()
                    };
                    tracing::error!(
                        consumer = self.consumer,
                        offset,
                        error = %e,
                        "bus record {offset} is undecodable and skipped{also}"
                    );
                    self.last_log = Some(now);
                    self.unlogged = 0;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_record_is_counted_and_skipped() {
        let undecodable = AtomicU64::new(0);
        let mut decoder = RecordDecoder::new("influx", Limits::default());
        assert!(decoder.decode(7, b"not a batch", &undecodable).is_none());
        assert!(decoder.decode(8, b"", &undecodable).is_none());
        assert_eq!(undecodable.load(Ordering::Relaxed), 2);
        // The second one, within LOG_EVERY, waits for the next report.
        assert_eq!(decoder.unlogged, 1);
    }
}
