//! The crate's one atomic durable write: a file is replaced by writing a
//! temporary file beside it, syncing it, renaming it over the old one and
//! syncing the directory, so a crash at any moment leaves the old content or
//! the new one, whole, and a successful return means the new one survives a
//! machine crash. Everything that keeps small state on disk — consumer
//! offsets, the dedup table, snapshots, notifier state, the rule cache —
//! writes through here.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A step of [`replace`] that failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct WriteError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// How [`replace`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Sync the file and the directory. Without it a machine crash may lose
    /// the write (a process crash never does); for tests and benches.
    pub fsync: bool,
    /// Fault injection: stop this long halfway through the temporary file,
    /// written and synced up to there.
    pub pause_halfway: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: true,
            pause_halfway: None,
        }
    }
}

/// Replaces `path` with `bytes`, through the temporary file `temp` (in the
/// same directory).
pub fn replace(path: &Path, temp: &Path, bytes: &[u8], options: Options) -> Result<(), WriteError> {
    let fail = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    {
        let mut file = File::create(temp).map_err(fail("creating", temp))?;
        let mut rest = bytes;
        if let Some(pause) = options.pause_halfway {
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            file.write_all(head).map_err(fail("writing", temp))?;
            file.sync_all().map_err(fail("syncing", temp))?;
            std::thread::sleep(pause);
            rest = tail;
        }
        file.write_all(rest).map_err(fail("writing", temp))?;
        if options.fsync {
            file.sync_all().map_err(fail("syncing", temp))?;
        }
    }
    std::fs::rename(temp, path).map_err(fail("renaming to", path))?;
    if options.fsync
        && let Some(dir) = path.parent()
    {
        sync_dir(dir).map_err(fail("syncing", dir))?;
    }
    Ok(())
}

/// Makes the directory's entries (a create, rename or delete) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, temp) = (
            dir.path().join("state.json"),
            dir.path().join("state.json.tmp"),
        );
        replace(&path, &temp, b"one", Options::default()).unwrap();
        replace(&path, &temp, b"two, longer", Options::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert!(!temp.exists());
        let err = replace(
            &dir.path().join("missing/state.json"),
            &dir.path().join("missing/state.json.tmp"),
            b"x",
            Options::default(),
        )
        .unwrap_err();
        assert_eq!(err.action, "creating");
    }
}
