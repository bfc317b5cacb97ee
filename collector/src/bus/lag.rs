//! When records were appended, coarsely: enough to say how many seconds a
//! consumer is behind (the age of the oldest record it has not read).
//!
//! A mark `(offset, t)` says every record from `offset` on was appended at or
//! after `t`; marks are taken at most once a second, so an age is at most a
//! second too high. Records from before the process started are dated by
//! their segment files: a segment's records were appended after the previous
//! segment was last written, so those ages are too high by at most the time a
//! segment took to fill.

use super::log::SegmentLog;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// Marks kept at most; past it the oldest but one is dropped (ages of the
/// records it dated become older, never younger).
const MAX_MARKS: usize = 4096;
const MARK_EVERY_MS: i64 = 1000;

#[derive(Debug, Clone, Default)]
pub struct AppendTimes {
    /// Increasing in offset and time.
    marks: VecDeque<(u64, i64)>,
}

impl AppendTimes {
    /// Marks for the records `log` already holds, from its segment files.
    pub fn seed(log: &SegmentLog) -> AppendTimes {
        let mut times = AppendTimes::default();
        let mut previous: Option<i64> = None;
        for (base, written) in log.segment_times() {
            let t = previous.unwrap_or(written);
            previous = Some(written);
            if times.marks.back().is_none_or(|&(_, last)| t >= last) {
                times.marks.push_back((base, t));
            }
        }
        times
    }

    /// Records `range` were appended at `now_ms`.
    pub fn appended(&mut self, range: Range<u64>, now_ms: i64) {
        if range.is_empty() {
            return;
        }
        if self
            .marks
            .back()
            .is_some_and(|&(_, t)| now_ms - t < MARK_EVERY_MS)
        {
            return;
        }
        self.marks.push_back((range.start, now_ms));
        if self.marks.len() > MAX_MARKS {
            self.marks.remove(1);
        }
    }

    /// Forgets what dates only records below `offset` (read by everyone).
    pub fn forget_below(&mut self, offset: u64) {
        while self.marks.len() > 1 && self.marks[1].0 <= offset {
            self.marks.pop_front();
        }
    }

    /// How long ago record `offset` was appended, when it exists (`offset <
    /// next`); zero for a consumer at the end.
    pub fn age(&self, offset: u64, next: u64, now_ms: i64) -> Duration {
        if offset >= next {
            return Duration::ZERO;
        }
        let at = self.marks.partition_point(|&(o, _)| o <= offset);
        let t = match at {
            0 => self.marks.front().map_or(now_ms, |&(_, t)| t),
            i => self.marks[i - 1].1,
        };
        Duration::from_millis(now_ms.saturating_sub(t).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_come_from_the_mark_before_the_offset() {
        let mut times = AppendTimes::default();
        times.appended(0..10, 1_000);
        times.appended(10..20, 1_500); // within a second of the last mark
        times.appended(20..30, 3_000);
        assert_eq!(times.age(0, 30, 10_000), Duration::from_secs(9));
        assert_eq!(times.age(15, 30, 10_000), Duration::from_secs(9));
        assert_eq!(times.age(25, 30, 10_000), Duration::from_secs(7));
        assert_eq!(times.age(30, 30, 10_000), Duration::ZERO);
        times.forget_below(25);
        assert_eq!(times.marks, [(20, 3_000)]);
        assert_eq!(times.age(25, 30, 10_000), Duration::from_secs(7));
    }
}
