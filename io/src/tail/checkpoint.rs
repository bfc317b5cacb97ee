//! Acknowledged read positions, one per file fingerprint, persisted as JSON.
//!
//! Only offsets the caller acknowledged are stored, never how far the tailer
//! has read ahead, so after a crash the agent re-reads (and resends) at most
//! the unacknowledged tail. The file is replaced atomically: write a temporary
//! file, fsync it, rename it over the old one, fsync the directory. A crash at
//! any point leaves either the old or the new checkpoints, never a torn file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fingerprint::{FileFingerprint, FileIdentity};

/// The checkpoint file's name inside the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
const TEMP_FILE: &str = "checkpoints.json.tmp";
const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing the checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file or its directory could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid checkpoint JSON.
    #[error("checkpoint file {path} is not valid: {source}")]
    Decode {
        /// The checkpoint file.
        path: PathBuf,
        /// What the decoder found.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by an incompatible version.
    #[error("checkpoint file {path} has format version {found}, expected {FORMAT_VERSION}")]
    Version {
        /// The checkpoint file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
}

/// The acknowledged position in one stream (a generation of a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which file content this is: its head and generation.
    pub identity: FileIdentity,
    /// Every byte before this offset was acknowledged (it is a line start).
    pub offset: u64,
    /// The last path the file was seen at (informational: identity is the
    /// fingerprint).
    pub path: PathBuf,
    /// When a file with this fingerprint was last seen, in seconds since the
    /// Unix epoch; drives expiry.
    pub last_seen_unix: u64,
}

/// Acknowledged offsets by stream fingerprint ([`FileIdentity::fingerprint`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    entries: BTreeMap<FileFingerprint, Checkpoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    checkpoints: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    fingerprint: FileFingerprint,
    /// Written only for generations above 0, whose fingerprint is not the
    /// head's: files from before generations existed read unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<FileFingerprint>,
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u32,
    offset: u64,
    path: PathBuf,
    last_seen_unix: u64,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
const fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Checkpoints {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads `dir/checkpoints.json`; a missing file means no checkpoints.
    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let file: CheckpointFile =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Decode {
                path: path.clone(),
                source,
            })?;
        if file.version != FORMAT_VERSION {
            return Err(CheckpointError::Version {
                path,
                found: file.version,
            });
        }
        let entries = file
            .checkpoints
            .into_iter()
            .map(|e| {
                let checkpoint = Checkpoint {
                    identity: FileIdentity {
                        head: e.head.unwrap_or(e.fingerprint),
                        generation: e.generation,
                    },
                    offset: e.offset,
                    path: e.path,
                    last_seen_unix: e.last_seen_unix,
                };
                (e.fingerprint, checkpoint)
            })
            .collect();
        Ok(Self { entries })
    }

    /// Writes `dir/checkpoints.json` atomically (temp file, fsync, rename,
    /// fsync of the directory).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let file = CheckpointFile {
            version: FORMAT_VERSION,
            checkpoints: self
                .entries
                .iter()
                .map(|(fingerprint, c)| Entry {
                    fingerprint: *fingerprint,
                    head: (c.identity.generation > 0).then_some(c.identity.head),
                    generation: c.identity.generation,
                    offset: c.offset,
                    path: c.path.clone(),
                    last_seen_unix: c.last_seen_unix,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("checkpoints always serialize");
        let temp = dir.join(TEMP_FILE);
        let target = dir.join(CHECKPOINT_FILE);
        {
            let mut out = File::create(&temp).map_err(io_error(&temp))?;
            out.write_all(&json).map_err(io_error(&temp))?;
            out.sync_all().map_err(io_error(&temp))?;
        }
        fs::rename(&temp, &target).map_err(io_error(&target))?;
        sync_dir(dir).map_err(io_error(dir))
    }

    /// The checkpoint of `fingerprint`, if any.
    pub fn get(&self, fingerprint: FileFingerprint) -> Option<&Checkpoint> {
        self.entries.get(&fingerprint)
    }

    /// Records that everything of `identity` before `offset` was
    /// acknowledged, creating its checkpoint if there is none. Offsets only
    /// move forward: a late, smaller acknowledgement changes nothing.
    pub fn acknowledge(
        &mut self,
        identity: FileIdentity,
        offset: u64,
        path: &Path,
        now: SystemTime,
    ) {
        let now = unix_seconds(now);
        let entry = self
            .entries
            .entry(identity.fingerprint())
            .or_insert_with(|| Checkpoint {
                identity,
                offset,
                path: path.to_path_buf(),
                last_seen_unix: now,
            });
        entry.offset = entry.offset.max(offset);
        path.clone_into(&mut entry.path);
        entry.last_seen_unix = entry.last_seen_unix.max(now);
    }

    /// Like [`Checkpoints::acknowledge`] for a stream known by its
    /// fingerprint only: moves an existing checkpoint, creates none.
    pub fn advance(
        &mut self,
        fingerprint: FileFingerprint,
        offset: u64,
        path: &Path,
        now: SystemTime,
    ) {
        if let Some(entry) = self.entries.get_mut(&fingerprint) {
            entry.offset = entry.offset.max(offset);
            path.clone_into(&mut entry.path);
            entry.last_seen_unix = entry.last_seen_unix.max(unix_seconds(now));
        }
    }

    /// The checkpoints of every generation of `head`.
    pub fn generations(&self, head: FileFingerprint) -> impl Iterator<Item = &Checkpoint> {
        self.entries
            .values()
            .filter(move |c| c.identity.head == head)
    }

    /// Notes that a file with `fingerprint` still exists at `path`, keeping its
    /// checkpoint from expiring.
    pub fn touch(&mut self, fingerprint: FileFingerprint, path: &Path, now: SystemTime) {
        if let Some(entry) = self.entries.get_mut(&fingerprint) {
            if entry.path != path {
                path.clone_into(&mut entry.path);
            }
            entry.last_seen_unix = entry.last_seen_unix.max(unix_seconds(now));
        }
    }

    /// Drops checkpoints whose file was not seen for `max_age`; returns how
    /// many were dropped. A file that comes back later is treated as new.
    pub fn expire(&mut self, now: SystemTime, max_age: Duration) -> usize {
        let cutoff = unix_seconds(now).saturating_sub(max_age.as_secs());
        let before = self.entries.len();
        self.entries.retain(|_, c| c.last_seen_unix >= cutoff);
        before - self.entries.len()
    }

    /// How many files have a checkpoint.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no file has a checkpoint.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All checkpoints, by fingerprint.
    pub fn iter(&self) -> impl Iterator<Item = (FileFingerprint, &Checkpoint)> {
        self.entries.iter().map(|(f, c)| (*f, c))
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Directories cannot be opened for syncing elsewhere; the rename is the best
// these platforms offer.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u64) -> FileFingerprint {
        FileFingerprint::from_u64(n)
    }

    fn first(n: u64) -> FileIdentity {
        FileIdentity::first(fp(n))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Checkpoints::load(dir.path()).unwrap().is_empty(),
            "missing file = empty"
        );

        let mut checkpoints = Checkpoints::new();
        checkpoints.acknowledge(first(1), 120, Path::new("/var/log/a.log"), at(1000));
        checkpoints.acknowledge(first(u64::MAX), 7, Path::new("/var/log/b.log"), at(2000));
        checkpoints.save(dir.path()).unwrap();

        assert_eq!(Checkpoints::load(dir.path()).unwrap(), checkpoints);
        assert!(
            !dir.path().join(TEMP_FILE).exists(),
            "the temp file was renamed"
        );

        // A second save replaces the first completely.
        checkpoints.acknowledge(first(1), 300, Path::new("/var/log/a.log.1"), at(1001));
        checkpoints.save(dir.path()).unwrap();
        let loaded = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(loaded.get(fp(1)).unwrap().offset, 300);
        assert_eq!(
            loaded.get(fp(1)).unwrap().path,
            Path::new("/var/log/a.log.1")
        );
        assert_eq!(loaded.len(), 2);
    }

    #[test]
    fn a_leftover_temp_file_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoints = Checkpoints::new();
        checkpoints.acknowledge(first(9), 10, Path::new("a"), at(5));
        checkpoints.save(dir.path()).unwrap();
        // A crash between writing the temp file and renaming it.
        fs::write(dir.path().join(TEMP_FILE), b"{\"torn").unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap(), checkpoints);
        checkpoints.save(dir.path()).unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap(), checkpoints);
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), b"not json").unwrap();
        assert!(matches!(
            Checkpoints::load(dir.path()),
            Err(CheckpointError::Decode { .. })
        ));
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            br#"{"version":2,"checkpoints":[]}"#,
        )
        .unwrap();
        assert!(matches!(
            Checkpoints::load(dir.path()),
            Err(CheckpointError::Version { found: 2, .. })
        ));
    }

    #[test]
    fn acknowledgements_only_move_forward() {
        let mut checkpoints = Checkpoints::new();
        checkpoints.acknowledge(first(1), 50, Path::new("a"), at(1));
        checkpoints.acknowledge(first(1), 20, Path::new("a"), at(2));
        assert_eq!(checkpoints.get(fp(1)).unwrap().offset, 50);
        checkpoints.advance(fp(1), 60, Path::new("b"), at(3));
        assert_eq!(checkpoints.get(fp(1)).unwrap().offset, 60);
        checkpoints.advance(fp(7), 60, Path::new("b"), at(3));
        assert!(checkpoints.get(fp(7)).is_none(), "advance creates nothing");
    }

    #[test]
    fn generations_round_trip_and_old_files_read_as_generation_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoints = Checkpoints::new();
        let second = FileIdentity {
            head: fp(5),
            generation: 1,
        };
        checkpoints.acknowledge(first(5), 900, Path::new("a.log.1"), at(10));
        checkpoints.acknowledge(second, 40, Path::new("a.log"), at(10));
        checkpoints.save(dir.path()).unwrap();
        let loaded = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(loaded, checkpoints);
        let mut generations: Vec<_> = loaded
            .generations(fp(5))
            .map(|c| (c.identity.generation, c.offset))
            .collect();
        generations.sort_unstable();
        assert_eq!(generations, [(0, 900), (1, 40)]);
        assert_eq!(loaded.get(second.fingerprint()).unwrap().offset, 40);

        // A file written before generations existed.
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            br#"{"version":1,"checkpoints":[{"fingerprint":"00000000000000ab","offset":3,"path":"x","last_seen_unix":1}]}"#,
        )
        .unwrap();
        let old = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(old.get(fp(0xab)).unwrap().identity, first(0xab));
    }

    #[test]
    fn expires_files_not_seen_for_long() {
        let mut checkpoints = Checkpoints::new();
        checkpoints.acknowledge(first(1), 1, Path::new("old"), at(100));
        checkpoints.acknowledge(first(2), 1, Path::new("seen"), at(100));
        checkpoints.touch(fp(2), Path::new("seen"), at(1000));
        assert_eq!(checkpoints.expire(at(1050), Duration::from_secs(500)), 1);
        assert!(checkpoints.get(fp(1)).is_none());
        assert!(checkpoints.get(fp(2)).is_some());
    }
}
