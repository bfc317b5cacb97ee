//! The last hour of closed seconds in memory, and the time grid that
//! `/api/series` answers on.
//!
//! [`SeriesRing`] holds one [`SecondPoint`] per second in a slot chosen by the
//! second itself (`t mod 3600`), so a second handed over twice (a replay)
//! overwrites its first copy instead of adding to it, and memory stays fixed
//! however long the collector runs. A point keeps the second's busiest
//! [`TOP_PER_SECOND`] sections only: a second may hold thousands.
//!
//! A [`Grid`] cuts a range ending at the newest closed second into buckets
//! aligned to multiples of the resolution; [`Sums`] adds seconds up per
//! bucket, and [`Sums::per_second`] turns them into per-second averages over
//! the seconds of each bucket that have closed. Readers take the points they
//! need as a [`Window`] of shared pointers (microseconds under the ring's
//! lock) and add them up after, so the engine never waits on a sum.

use crate::engine::SecondStats;
use std::collections::HashMap;
use std::sync::Arc;

/// Seconds held in memory: the last hour.
pub const MEMORY_SECONDS: i64 = 3600;
/// Sections kept per second.
pub const TOP_PER_SECOND: usize = 20;
/// Sections `/api/series` returns: the busiest over the range.
pub const TOP_PER_RANGE: usize = 10;

/// The four status classes the charts show, in this order.
pub const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// One closed second as the dashboard keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecondPoint {
    /// Unix seconds.
    pub t: i64,
    pub total: u64,
    pub bytes: u64,
    /// 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    /// The busiest sections, most hits first (ties by name), at most
    /// [`TOP_PER_SECOND`].
    pub sections: Vec<(Box<str>, u64)>,
}

impl SecondPoint {
    pub fn from_stats(s: &SecondStats) -> SecondPoint {
        let mut sections: Vec<(&str, u64)> =
            s.sections.iter().map(|(k, a)| (&**k, a.hits)).collect();
        let busiest = |a: &(&str, u64), b: &(&str, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        if sections.len() > TOP_PER_SECOND {
            sections.select_nth_unstable_by(TOP_PER_SECOND - 1, busiest);
            sections.truncate(TOP_PER_SECOND);
        }
        sections.sort_unstable_by(busiest);
        SecondPoint {
            t: s.time,
            total: s.hits,
            bytes: s.bytes,
            status: [
                s.statuses.success,
                s.statuses.redirection,
                s.statuses.client_error,
                s.statuses.server_error,
            ],
            sections: sections
                .into_iter()
                .map(|(name, hits)| (name.into(), hits))
                .collect(),
        }
    }

    /// The second's requests outside its listed sections.
    pub fn other(&self) -> u64 {
        let listed: u64 = self.sections.iter().map(|(_, n)| n).sum();
        self.total.saturating_sub(listed)
    }
}

/// The last [`MEMORY_SECONDS`] closed seconds, one slot per second.
#[derive(Debug)]
pub struct SeriesRing {
    slots: Vec<Option<Arc<SecondPoint>>>,
    /// The newest second held.
    newest: Option<i64>,
    /// The first second handed over since the collector started: memory
    /// holds every second from here (or from an hour ago) to `newest`.
    first: Option<i64>,
}

impl Default for SeriesRing {
    fn default() -> Self {
        SeriesRing::new()
    }
}

impl SeriesRing {
    pub fn new() -> SeriesRing {
        SeriesRing {
            slots: vec![None; MEMORY_SECONDS as usize],
            newest: None,
            first: None,
        }
    }

    fn slot(t: i64) -> usize {
        t.rem_euclid(MEMORY_SECONDS) as usize
    }

    /// Stores a closed second, replacing what its slot held: an older second
    /// an hour back, or this very second handed over before. A second more
    /// than an hour older than the newest is ignored.
    pub fn insert(&mut self, point: SecondPoint) {
        let t = point.t;
        if let Some(newest) = self.newest
            && t <= newest - MEMORY_SECONDS
        {
            return;
        }
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        self.slots[Self::slot(t)] = Some(Arc::new(point));
    }

    /// The point of second `t`, if memory holds it (silent seconds the
    /// engine closed are held as zero points).
    pub fn get(&self, t: i64) -> Option<&SecondPoint> {
        self.slots[Self::slot(t)].as_deref().filter(|p| p.t == t)
    }

    pub fn newest(&self) -> Option<i64> {
        self.newest
    }

    /// The oldest second from which memory holds every second up to the
    /// newest; `None` while empty.
    pub fn held_from(&self) -> Option<i64> {
        Some(self.first?.max(self.newest? - MEMORY_SECONDS + 1))
    }

    /// The points memory holds for `grid`'s buckets `from..`.
    pub fn window(&self, grid: &Grid, from: usize) -> Window {
        let start = grid.bucket_start(from).max(grid.last - MEMORY_SECONDS + 1);
        Window(
            (start..=grid.last)
                .filter_map(|t| self.slots[Self::slot(t)].clone().filter(|p| p.t == t))
                .collect(),
        )
    }
}

/// Points taken from a [`SeriesRing`], in time order.
#[derive(Debug, Clone, Default)]
pub struct Window(Vec<Arc<SecondPoint>>);

impl Window {
    /// Requests per section, from the sections each second kept.
    pub fn section_totals(&self) -> HashMap<Box<str>, u64> {
        let mut totals: HashMap<Box<str>, u64> = HashMap::new();
        for p in &self.0 {
            for (name, n) in &p.sections {
                match totals.get_mut(name) {
                    Some(v) => *v += n,
                    None => {
                        totals.insert(name.clone(), *n);
                    }
                }
            }
        }
        totals
    }

    /// The sums per bucket of `grid`, with the series of the `sections`
    /// named.
    pub fn sums(&self, grid: &Grid, sections: &[Box<str>]) -> Sums {
        let mut sums = Sums::new(grid.len, sections);
        for p in &self.0 {
            let Some(i) = grid.index(p.t) else { continue };
            sums.total[i] += p.total;
            sums.bytes[i] += p.bytes;
            for (class, n) in sums.status.iter_mut().zip(p.status) {
                class[i] += n;
            }
            for (name, n) in &p.sections {
                if let Some(series) = sums.sections.get_mut(name) {
                    series[i] += n;
                }
            }
        }
        sums
    }
}

/// The buckets of one `/api/series` answer: `len` buckets of `res` seconds
/// from `start` (aligned to `res`), the last one holding `last`, the newest
/// closed second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub start: i64,
    pub res: i64,
    pub len: usize,
    pub last: i64,
}

impl Grid {
    /// `range` seconds ending with second `last`, in buckets of `res`.
    pub fn new(range: i64, res: i64, last: i64) -> Grid {
        let len = (range / res).max(1);
        let end_bucket = last - last.rem_euclid(res);
        Grid {
            start: end_bucket - (len - 1) * res,
            res,
            len: len as usize,
            last,
        }
    }

    pub fn bucket_start(&self, i: usize) -> i64 {
        self.start + i as i64 * self.res
    }

    /// The bucket of second `t`.
    pub fn index(&self, t: i64) -> Option<usize> {
        if t < self.start || t > self.last {
            return None;
        }
        Some(((t - self.start) / self.res) as usize)
    }

    /// The closed seconds of bucket `i`: `res`, fewer in the last bucket.
    pub fn seconds_in(&self, i: usize) -> i64 {
        (self.last - self.bucket_start(i) + 1).clamp(1, self.res)
    }

    /// The first bucket wholly at or after second `t` (`len` if none).
    pub fn first_bucket_from(&self, t: i64) -> usize {
        if t <= self.start {
            return 0;
        }
        let i = (t - self.start + self.res - 1) / self.res;
        (i as usize).min(self.len)
    }

    /// The bucket starts.
    pub fn times(&self) -> Vec<i64> {
        (0..self.len).map(|i| self.bucket_start(i)).collect()
    }
}

/// Per-bucket sums of some sections, by name.
pub type SectionBuckets = HashMap<Box<str>, Vec<u64>>;

/// Per-bucket sums of requests, bytes, status classes and some sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    pub total: Vec<u64>,
    pub bytes: Vec<u64>,
    pub status: [Vec<u64>; 4],
    pub sections: SectionBuckets,
}

impl Sums {
    pub fn new(len: usize, sections: &[Box<str>]) -> Sums {
        Sums {
            total: vec![0; len],
            bytes: vec![0; len],
            status: std::array::from_fn(|_| vec![0; len]),
            sections: sections.iter().map(|s| (s.clone(), vec![0; len])).collect(),
        }
    }

    /// Takes buckets `range` from `other` (same grid).
    pub fn take_buckets(&mut self, other: &Sums, range: std::ops::Range<usize>) {
        let copy = |to: &mut Vec<u64>, from: &Vec<u64>| {
            to[range.clone()].copy_from_slice(&from[range.clone()]);
        };
        copy(&mut self.total, &other.total);
        copy(&mut self.bytes, &other.bytes);
        for (to, from) in self.status.iter_mut().zip(&other.status) {
            copy(to, from);
        }
        for (name, to) in &mut self.sections {
            if let Some(from) = other.sections.get(name) {
                copy(to, from);
            }
        }
    }

    /// The `/api/series` JSON: per-second averages over each bucket's closed
    /// seconds; `sections` in the order given.
    pub fn per_second(&self, grid: &Grid, sections: &[Box<str>]) -> serde_json::Value {
        let rate = |v: &[u64]| -> Vec<serde_json::Value> {
            v.iter()
                .enumerate()
                .map(|(i, &n)| per_second(n, grid.seconds_in(i)))
                .collect()
        };
        let mut status = serde_json::Map::new();
        for (name, v) in STATUS_CLASSES.iter().zip(&self.status) {
            status.insert((*name).into(), rate(v).into());
        }
        let mut named = serde_json::Map::new();
        for name in sections {
            if let Some(v) = self.sections.get(name) {
                named.insert(name.to_string(), rate(v).into());
            }
        }
        let other: Vec<u64> = (0..grid.len)
            .map(|i| {
                let listed: u64 = self.sections.values().map(|v| v[i]).sum();
                self.total[i].saturating_sub(listed)
            })
            .collect();
        serde_json::json!({
            "t": grid.times(),
            "total": rate(&self.total),
            "bytes": rate(&self.bytes),
            "status": status,
            "sections": named,
            "other": rate(&other),
        })
    }
}

/// `n` over `seconds`: an integer when it is one.
fn per_second(n: u64, seconds: i64) -> serde_json::Value {
    if n.is_multiple_of(seconds as u64) {
        (n / seconds as u64).into()
    } else {
        (n as f64 / seconds as f64).into()
    }
}

/// The `n` busiest of `totals`, most first, ties by name.
pub fn busiest(totals: &HashMap<Box<str>, u64>, n: usize) -> Vec<Box<str>> {
    let mut v: Vec<(&Box<str>, u64)> = totals.iter().map(|(k, &v)| (k, v)).collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().take(n).map(|(k, _)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SectionAgg;

    fn point(t: i64, total: u64, sections: &[(&str, u64)]) -> SecondPoint {
        SecondPoint {
            t,
            total,
            bytes: total * 100,
            status: [total, 0, 0, 0],
            sections: sections.iter().map(|(s, n)| ((*s).into(), *n)).collect(),
        }
    }

    #[test]
    fn a_second_handed_over_again_overwrites_its_first_copy() {
        let mut ring = SeriesRing::new();
        for t in 1000..1010 {
            ring.insert(point(t, 5, &[("/a", 5)]));
        }
        // A replay after a restart hands 1005..1010 over again.
        for t in 1005..1012 {
            ring.insert(point(t, 7, &[("/a", 7)]));
        }
        let grid = Grid::new(900, 1, 1011);
        let sums = ring.window(&grid, 0).sums(&grid, &["/a".into()]);
        let tail = &sums.total[grid.len - 13..];
        assert_eq!(tail, &[0, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7]);
        assert_eq!(sums.total.iter().sum::<u64>(), 5 * 5 + 7 * 7);
        assert_eq!(ring.held_from(), Some(1000));
        assert_eq!(ring.newest(), Some(1011));
    }

    #[test]
    fn memory_holds_the_last_hour_only() {
        let mut ring = SeriesRing::new();
        for t in 0..5000 {
            ring.insert(point(t, 1, &[]));
        }
        assert_eq!(ring.held_from(), Some(5000 - 3600));
        assert!(ring.get(1399).is_none());
        assert_eq!(ring.get(1400).map(|p| p.t), Some(1400));
        // Too old to hold: ignored, the newer second in its slot stays.
        ring.insert(point(1000, 9, &[]));
        assert_eq!(ring.get(4600).map(|p| p.total), Some(1));
        assert!(ring.get(1000).is_none());
    }

    #[test]
    fn each_second_keeps_its_twenty_busiest_sections() {
        let mut s = SecondStats {
            time: 42,
            ..SecondStats::default()
        };
        for i in 0..30u64 {
            let hits = 100 - i;
            s.sections.insert(
                format!("/s{i:02}").into(),
                SectionAgg {
                    hits,
                    ..SectionAgg::default()
                },
            );
            s.hits += hits;
        }
        // A tie at the cut: "/s19" (81) and "/t" (81); the name decides.
        s.sections.insert(
            "/t".into(),
            SectionAgg {
                hits: 81,
                ..SectionAgg::default()
            },
        );
        s.hits += 81;
        let p = SecondPoint::from_stats(&s);
        assert_eq!(p.sections.len(), TOP_PER_SECOND);
        let names: Vec<&str> = p.sections.iter().map(|(n, _)| &**n).collect();
        let want: Vec<String> = (0..20).map(|i| format!("/s{i:02}")).collect();
        assert_eq!(names, want);
        assert_eq!(p.sections[0], ("/s00".into(), 100));
        assert_eq!(p.sections[19], ("/s19".into(), 81));
        let listed: u64 = (0..20).map(|i| 100 - i).sum();
        assert_eq!(p.other(), s.hits - listed);
        assert_eq!(p.total, s.hits);
    }

    #[test]
    fn grid_aligns_buckets_to_the_resolution() {
        let g = Grid::new(21600, 10, 100_007);
        assert_eq!(g.len, 2160);
        assert_eq!(g.start, 100_000 - 2159 * 10);
        assert_eq!(g.bucket_start(g.len - 1), 100_000);
        assert_eq!(g.seconds_in(g.len - 1), 8, "100000..=100007 closed");
        assert_eq!(g.seconds_in(0), 10);
        assert_eq!(g.index(100_007), Some(2159));
        assert_eq!(g.index(100_008), None);
        assert_eq!(g.index(g.start - 1), None);
        assert_eq!(g.first_bucket_from(g.start), 0);
        assert_eq!(g.first_bucket_from(g.start + 1), 1);
        assert_eq!(g.first_bucket_from(100_001), g.len);
        let g = Grid::new(900, 1, 5000);
        assert_eq!((g.start, g.len, g.seconds_in(899)), (4101, 900, 1));
    }

    #[test]
    fn coarse_buckets_are_per_second_averages_of_their_closed_seconds() {
        let mut ring = SeriesRing::new();
        // 600..=1234: 3 req/s, two sections; 1000..=1009 also 2 more on /b.
        for t in 600..=1234 {
            let extra = if (1000..1010).contains(&t) { 2 } else { 0 };
            ring.insert(point(t, 3 + extra, &[("/a", 2), ("/b", 1 + extra)]));
        }
        let grid = Grid::new(86400, 60, 1234);
        let window = ring.window(&grid, 0);
        let totals = window.section_totals();
        let top = busiest(&totals, TOP_PER_RANGE);
        assert_eq!(top, vec![Box::<str>::from("/a"), "/b".into()]);
        assert_eq!(totals["/a"], 2 * 635);
        assert_eq!(totals["/b"], 635 + 20);
        let sums = window.sums(&grid, &top);
        let json = sums.per_second(&grid, &top);
        let n = grid.len;
        let total = json["total"].as_array().unwrap();
        // Buckets: ..., 960..1019 (with the extra), 1020..1079, ...,
        // 1200..1259 holding 1200..=1234 (35 closed seconds).
        assert_eq!(grid.bucket_start(n - 1), 1200);
        assert_eq!(total[n - 1], serde_json::json!(3));
        assert_eq!(total[n - 5], serde_json::json!((3 * 60 + 20) as f64 / 60.0));
        assert_eq!(grid.bucket_start(n - 5), 960);
        // 600 is a bucket start: the first bucket with data is whole.
        assert_eq!(total[n - 11], serde_json::json!(3));
        assert_eq!(total[n - 12], serde_json::json!(0));
        assert_eq!(json["sections"]["/a"][n - 1], serde_json::json!(2));
        assert_eq!(
            json["sections"]["/b"][n - 5],
            serde_json::json!(80.0 / 60.0)
        );
        assert_eq!(json["other"][n - 1], serde_json::json!(0));
        assert_eq!(json["status"]["2xx"][n - 1], serde_json::json!(3));
        assert_eq!(json["bytes"][n - 1], serde_json::json!(300));
        assert_eq!(json["t"].as_array().unwrap().len(), 1440);
    }

    #[test]
    fn busiest_breaks_ties_by_name() {
        let totals: HashMap<Box<str>, u64> = [("/b", 5), ("/a", 5), ("/c", 9), ("/d", 1)]
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect();
        let top: Vec<String> = busiest(&totals, 3).iter().map(|s| s.to_string()).collect();
        assert_eq!(top, ["/c", "/a", "/b"]);
    }
}
