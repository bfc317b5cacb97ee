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
use crate::engine::stats::IntervalStats;
use crate::engine::watermark::SavedWatermarks;
use crate::rules::SavedRule;
use serde::{Deserialize, Serialize};
use std::fs::{self};
use std::io;
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
    write_json(dir, FILE, snapshot, crate::faults::snapshot_pause())
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
    let options = crate::durable::Options {
        fsync: true,
        pause_halfway: pause,
    };
    crate::durable::replace(&path, &temp, &bytes, options).map_err(|e| SnapshotError::Io {
        action: e.action,
        path: e.path,
        source: e.source,
    })
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
    use crate::engine::watermark::SavedStream;

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
