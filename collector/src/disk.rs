//! The data directory's free space: a full disk is a state, not a crash.
//!
//! Below the floor (`[bus] min_free_mib`; by default 1 GiB or 5 % of the
//! filesystem, whichever is smaller) ingest answers 503 `disk_full` with
//! `Retry-After` and `/health` answers 503 naming the disk, so the space
//! under the floor stays for what must still be written: consumers'
//! committed positions, the engine's snapshots, the dedup table that `gc`
//! persists before it deletes. When space comes back — a consumer caught
//! up and `gc` ran, or an operator freed some — batches are taken again.

use crate::http::status::{Health, HealthSource, Level, MetricsSource};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// How often the free space is measured again at most.
const MEASURE_EVERY_MS: i64 = 250;

/// The floor `serve` uses when the configuration sets none.
pub fn default_floor(dir: &Path) -> u64 {
    let total = space(dir).map_or(0, |s| s.total);
    (total / 20).min(1 << 30)
}

#[derive(Debug, Clone, Copy)]
struct Space {
    free: u64,
    total: u64,
}

fn space(dir: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(Space {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

/// See the module documentation.
#[derive(Debug)]
pub struct DiskWatch {
    dir: PathBuf,
    floor: u64,
    free: AtomicU64,
    measured_ms: AtomicI64,
    refusals: AtomicU64,
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
}

impl DiskWatch {
    pub fn new(dir: &Path, floor: u64) -> DiskWatch {
        let watch = DiskWatch {
            dir: dir.to_path_buf(),
            floor,
            free: AtomicU64::new(u64::MAX),
            measured_ms: AtomicI64::new(i64::MIN),
            refusals: AtomicU64::new(0),
        };
        watch.measure();
        watch
    }

    fn measure(&self) -> u64 {
        let now = crate::clock::now_ms();
        let last = self.measured_ms.load(Relaxed);
        if now.saturating_sub(last) < MEASURE_EVERY_MS {
            return self.free.load(Relaxed);
        }
        self.measured_ms.store(now, Relaxed);
        // A failed measurement is not a full disk: keep the last one.
        if let Ok(s) = space(&self.dir) {
            self.free.store(s.free, Relaxed);
        }
        self.free.load(Relaxed)
    }

    /// Free bytes in the data directory's filesystem (measured at most every
    /// 250 ms).
    pub fn free(&self) -> u64 {
        self.measure()
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Why `bytes` more may not be written now, if they may not.
    pub fn refuse(&self, bytes: u64) -> Option<String> {
        let free = self.measure();
        if free >= self.floor.saturating_add(bytes) {
            return None;
        }
        self.refusals.fetch_add(1, Relaxed);
        Some(self.reason(free))
    }

    fn reason(&self, free: u64) -> String {
        format!(
            "the data directory {} has {} free, under its floor of {}: batches are refused (503) until space returns",
            self.dir.display(),
            mib(free),
            mib(self.floor)
        )
    }
}

impl HealthSource for DiskWatch {
    fn health(&self) -> Health {
        let free = self.measure();
        if free >= self.floor {
            return Health::ok();
        }
        let mut details = serde_json::Map::new();
        details.insert("disk_free_bytes".into(), free.into());
        details.insert("disk_floor_bytes".into(), self.floor.into());
        Health {
            level: Level::Down,
            status: "disk_full",
            reasons: vec![self.reason(free)],
            details,
        }
    }
}

impl MetricsSource for DiskWatch {
    fn render(&self, out: &mut String) {
        use logmon_protocol::prometheus::{Kind, Text};
        let mut text = Text::new();
        text.single(
            "logmon_disk_free_bytes",
            Kind::Gauge,
            "Free bytes in the data directory's filesystem.",
            self.measure(),
        );
        text.single(
            "logmon_disk_floor_bytes",
            Kind::Gauge,
            "Free space under which batches are refused.",
            self.floor,
        );
        text.single(
            "logmon_disk_full_refusals_total",
            Kind::Counter,
            "Batches refused because the data directory was under its floor.",
            self.refusals.load(Relaxed),
        );
        out.push_str(text.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = DiskWatch::new(dir.path(), 0);
        assert_eq!(roomy.refuse(1), None);
        assert_eq!(roomy.health(), Health::ok());
        let full = DiskWatch::new(dir.path(), u64::MAX / 2);
        let why = full.refuse(10).unwrap();
        assert!(why.contains("under its floor"), "{why}");
        assert_eq!(full.health().status, "disk_full");
        assert_eq!(full.health().level, Level::Down);
        let mut metrics = String::new();
        full.render(&mut metrics);
        assert!(
            metrics.contains("logmon_disk_full_refusals_total 1\n"),
            "{metrics}"
        );
    }
}
