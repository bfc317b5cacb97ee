//! Engine snapshots: everything the live engine needs to resume exactly where
//! a snapshot left it — the bus offset of the next record, the per-stream
//! watermarks, the open seconds, the statistics interval in progress, each
//! rule's own saved state and firing keys, and the alert outbox's length.
//!
//! A snapshot is one JSON file written atomically (temp file, fsync, rename,
//! fsync of the directory) with a CRC of its body, so a crash during the write
//! leaves the previous snapshot in place, and a damaged file is refused rather
//! than half-restored. The engine commits its bus offset only after the
//! snapshot holding it is durable: every record before the committed offset is
//! covered by a snapshot, so the bus may delete it.

use crate::engine::SavedEngine;
use crate::rules::SavedRule;
use crate::stats::IntervalStats;
use crate::watermark::SavedWatermarks;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File name of the snapshot in the data directory.
pub const FILE: &str = "engine-snapshot.json";
const VERSION: u32 = 1;

/// The engine's state at a bus offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The next bus record to read.
    pub bus_offset: u64,
    /// The outbox length when the snapshot was taken.
    pub outbox_offset: u64,
    pub engine: SavedEngine,
    pub watermarks: SavedWatermarks,
    pub interval: Option<IntervalStats>,
    pub rules: Vec<SavedRule>,
    /// Wall clock when taken (unix milliseconds), for reports only.
    pub taken_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    version: u32,
    crc32: u32,
    /// The [`Snapshot`] as JSON text.
    body: String,
}

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("engine snapshot {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io {
        action,
        path,
        source,
    }
}

/// Write `snapshot` into `dir` atomically.
pub fn save(dir: &Path, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    write_json(dir, FILE, snapshot, pause_in_write())
}

/// Fault injection for the crash tests: with `LOGMON_FAULT_SNAPSHOT_PAUSE_MS`
/// set, every engine snapshot write stops this long halfway through the
/// temporary file (written and synced up to there), so a test can see the
/// temporary file and SIGKILL the collector in the middle of a write.
/// Read once; unset (always, outside tests) it costs nothing.
pub const PAUSE_ENV: &str = "LOGMON_FAULT_SNAPSHOT_PAUSE_MS";

fn pause_in_write() -> Option<std::time::Duration> {
    static PAUSE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        let ms: u64 = std::env::var(PAUSE_ENV).ok()?.parse().ok()?;
        eprintln!("logmon: fault injection: engine snapshot writes pause {ms} ms halfway");
        Some(std::time::Duration::from_millis(ms))
    })
}

/// The snapshot in `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    load_json(dir, FILE)
}

/// Write `value` as `dir/name` atomically (temp file, fsync, rename, fsync
/// of the directory), in a checksummed envelope.
pub fn save_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), SnapshotError> {
    write_json(dir, name, value, None)
}

fn write_json<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    pause: Option<std::time::Duration>,
) -> Result<(), SnapshotError> {
    let path = dir.join(name);
    let body = serde_json::to_string(value).map_err(|e| SnapshotError::Damaged {
        path: path.clone(),
        reason: format!("cannot encode: {e}"),
    })?;
    let envelope = Envelope {
        version: VERSION,
        crc32: crc32fast::hash(body.as_bytes()),
        body,
    };
    let bytes = serde_json::to_vec(&envelope).expect("the envelope serializes");
    let temp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&temp).map_err(io_err("creating", &temp))?;
        let mut rest = &bytes[..];
        if let Some(pause) = pause {
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            f.write_all(head).map_err(io_err("writing", &temp))?;
            f.sync_all().map_err(io_err("syncing", &temp))?;
            std::thread::sleep(pause);
            rest = tail;
        }
        f.write_all(rest).map_err(io_err("writing", &temp))?;
        f.sync_all().map_err(io_err("syncing", &temp))?;
    }
    fs::rename(&temp, &path).map_err(io_err("renaming to", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))?;
    Ok(())
}

/// The value [`save_json`] wrote as `dir/name`, if the file exists; a
/// damaged file is an error, never half-read.
pub fn load_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, SnapshotError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
    let damaged = |reason: String| SnapshotError::Damaged {
        path: path.clone(),
        reason,
    };
    let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if envelope.version != VERSION {
        return Err(damaged(format!(
            "version {} (this build reads {VERSION})",
            envelope.version
        )));
    }
    if crc32fast::hash(envelope.body.as_bytes()) != envelope.crc32 {
        return Err(damaged("checksum mismatch".into()));
    }
    serde_json::from_str(&envelope.body)
        .map(Some)
        .map_err(|e| damaged(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::SavedStream;

    fn snapshot() -> Snapshot {
        Snapshot {
            bus_offset: 42,
            outbox_offset: 3,
            engine: SavedEngine {
                lateness: 5,
                base: Some(100),
                newest: Some(104),
                ..SavedEngine::default()
            },
            watermarks: SavedWatermarks {
                streams: vec![SavedStream {
                    agent: "a".into(),
                    fingerprint: 7,
                    newest: Some(104),
                    caught_up: Some(103),
                    sent_at: 104_000_000_000,
                }],
                global: Some(99),
            },
            interval: None,
            rules: vec![SavedRule {
                name: "high-traffic".into(),
                state: vec![1, 2, 3],
                keys: [(
                    String::new(),
                    crate::rules::lifecycle::KeyState::Firing {
                        since: 100,
                        value: 12.25,
                        message: "High traffic".into(),
                        quiet: None,
                    },
                )]
                .into(),
            }],
            taken_at_ms: 1,
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), &snapshot()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(snapshot()));
        // A crash mid-write leaves a temp file: the last snapshot still loads.
        fs::write(
            dir.path().join(format!("{FILE}.tmp")),
            b"{\"version\":1,\"cr",
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(snapshot()));
        let mut next = snapshot();
        next.bus_offset = 43;
        save(dir.path(), &next).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(next));
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snapshot()).unwrap();
        let path = dir.path().join(FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(
            &path,
            text.replace("\\\"bus_offset\\\":42", "\\\"bus_offset\\\":41"),
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        fs::write(&path, b"not json").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(SnapshotError::Damaged { .. })
        ));
    }
}
