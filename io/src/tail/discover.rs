//! Discovery by file-system events, beside the glob rescan.
//!
//! A rescan every second misses a file that is created and renamed away (or
//! renamed on again) between two rescans: its lines are never read. On Linux
//! a thread watches, with inotify, the directories the include globs can match
//! and opens a matching file the moment its name appears (created or renamed
//! into place). When the file left that name before it could be opened, the
//! rename's pair of events (same cookie) tells where it went, and it is opened
//! there. The tailer then holds a handle, and a file it holds is finished from
//! that handle wherever its name goes.
//!
//! Only name events are asked for (`IN_CREATE`, `IN_MOVED_FROM`,
//! `IN_MOVED_TO`): not `IN_MODIFY`, which a web server's every write would
//! raise. That is why this uses the `inotify` crate and not `notify`, whose
//! Linux backend subscribes every watched directory to modify, open, close
//! and attribute events as well.
//!
//! The rescan stays the fallback: other platforms, a directory that appears
//! later (watched from the next rescan), a full event queue (`IN_Q_OVERFLOW`
//! asks for a rescan at once), or no inotify at all (the error is reported and
//! the rescan carries on alone).

use std::fs::File;
use std::path::PathBuf;

/// A file the event thread opened at `path`.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Whether `path` matches the globs (else it is where the file went after
    /// leaving a matching name).
    pub(crate) matching: bool,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::Discovery;

#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::Discovery;

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{BTreeSet, HashMap};
    use std::ffi::OsStr;
    use std::fs::File;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::sync::{Arc, Mutex, PoisonError};

    use inotify::{EventMask, Inotify, WatchMask, Watches};

    use super::super::config::Patterns;
    use super::Opened;

    /// How long the thread waits for events before it looks at `stop`.
    const WAKE_MS: i64 = 200;
    /// Renames away from a matching name whose other half has not come yet;
    /// past this many (their `MOVED_TO` went to an unwatched directory) the
    /// oldest are forgotten.
    const MAX_PENDING_MOVES: usize = 1024;

    type Dirs = Arc<Mutex<HashMap<i32, PathBuf>>>;

    #[derive(Debug, Default)]
    struct Shared {
        stop: AtomicBool,
        overflowed: AtomicBool,
        error: Mutex<Option<String>>,
    }

    impl Shared {
        fn report(&self, error: String) {
            *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        }
    }

    /// The inotify thread and what the tailer needs to talk to it.
    #[derive(Debug)]
    pub(crate) struct Discovery {
        watches: Option<Watches>,
        dirs: Dirs,
        watched: BTreeSet<PathBuf>,
        opened: Option<Receiver<Opened>>,
        shared: Arc<Shared>,
    }

    impl Discovery {
        /// Starts the thread; `enabled = false` (or no inotify) gives a
        /// discovery that finds nothing, and the rescan alone.
        pub(crate) fn start(patterns: &Patterns, enabled: bool) -> Self {
            let shared = Arc::new(Shared::default());
            let dirs = Dirs::default();
            let mut discovery = Self {
                watches: None,
                dirs: Arc::clone(&dirs),
                watched: BTreeSet::new(),
                opened: None,
                shared: Arc::clone(&shared),
            };
            if !enabled {
                return discovery;
            }
            let inotify = match Inotify::init() {
                Ok(inotify) => inotify,
                Err(e) => {
                    shared.report(format!(
                        "inotify unavailable ({e}): new files are found by the rescan only"
                    ));
                    return discovery;
                }
            };
            let (tx, rx) = channel();
            discovery.watches = Some(inotify.watches());
            let patterns = patterns.clone();
            let spawned = std::thread::Builder::new()
                .name("logmon-inotify".into())
                .spawn(move || run(inotify, &dirs, &patterns, &tx, &shared));
            match spawned {
                Ok(_detached) => discovery.opened = Some(rx),
                Err(e) => {
                    discovery.watches = None;
                    discovery.shared.report(format!(
                        "no inotify thread ({e}): new files are found by the rescan only"
                    ));
                }
            }
            discovery
        }

        /// Whether events are being watched for.
        pub(crate) fn active(&self) -> bool {
            self.opened.is_some()
        }

        /// Watches the directories the globs can match now (called on every
        /// rescan: directories come and go). Returns errors to report.
        pub(crate) fn watch(&mut self, patterns: &Patterns) -> Vec<(PathBuf, io::Error)> {
            let Some(watches) = self.watches.as_mut() else {
                return Vec::new();
            };
            let mut errors = Vec::new();
            let mut now = BTreeSet::new();
            for pattern in &patterns.include {
                now.extend(directories(pattern.as_str()));
            }
            let mask = WatchMask::CREATE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::ONLYDIR;
            let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            for dir in &now {
                // Adding a watch that exists returns the same descriptor; a
                // directory deleted and made again needs the new one.
                match watches.add(dir, mask) {
                    Ok(wd) => {
                        dirs.insert(wd.get_watch_descriptor_id(), dir.clone());
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) if !self.watched.contains(dir) => errors.push((dir.clone(), e)),
                    Err(_) => {}
                }
            }
            drop(dirs);
            self.watched = now;
            errors
        }

        /// The files opened since the last call.
        pub(crate) fn take(&mut self) -> Vec<Opened> {
            self.opened
                .as_ref()
                .map_or_else(Vec::new, |rx| rx.try_iter().collect())
        }

        /// Whether events were lost (the kernel's queue overflowed) since
        /// the last call: then the directories must be rescanned now.
        pub(crate) fn overflowed(&self) -> bool {
            self.shared.overflowed.swap(false, Ordering::Relaxed)
        }

        /// The last error met by the thread, once.
        pub(crate) fn take_error(&self) -> Option<String> {
            self.shared
                .error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        }
    }

    impl Drop for Discovery {
        fn drop(&mut self) {
            // The thread wakes within `WAKE_MS`, sees `stop` and ends (with
            // it the inotify descriptor); nothing waits for that.
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }

    /// The directories a glob's files can be in: its directory part, expanded
    /// when it has wildcards of its own.
    fn directories(pattern: &str) -> Vec<PathBuf> {
        let path = Path::new(pattern);
        let Some(parent) = path.parent() else {
            return Vec::new();
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let text = parent.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            return vec![parent.to_path_buf()];
        }
        glob::glob(&text).map_or_else(
            |_| Vec::new(),
            |entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|p| p.is_dir())
                    .collect()
            },
        )
    }

    fn matches(patterns: &Patterns, path: &Path) -> bool {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        patterns
            .include
            .iter()
            .any(|p| p.matches_path_with(path, options))
            && !patterns.exclude.iter().any(|p| p.matches_path(path))
    }

    fn run(
        mut inotify: Inotify,
        dirs: &Dirs,
        patterns: &Patterns,
        tx: &Sender<Opened>,
        shared: &Shared,
    ) {
        use std::os::fd::AsFd;

        let mut buffer = vec![0u8; 64 * 1024];
        // Cookie of a rename away from a matching name → that name.
        let mut moved_away: HashMap<u32, PathBuf> = HashMap::new();
        let wake = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: WAKE_MS * 1_000_000,
        };
        while !shared.stop.load(Ordering::Relaxed) {
            let polled = {
                let fd = inotify.as_fd();
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                rustix::event::poll(&mut fds, Some(&wake))
            };
            match polled {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    shared.report(format!(
                        "inotify: {e}; new files are found by the rescan only"
                    ));
                    return;
                }
            }
            let events = match inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    shared.report(format!(
                        "inotify: {e}; new files are found by the rescan only"
                    ));
                    return;
                }
            };
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    shared.overflowed.store(true, Ordering::Relaxed);
                    continue;
                }
                let id = event.wd.get_watch_descriptor_id();
                if event.mask.contains(EventMask::IGNORED) {
                    dirs.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    continue;
                }
                if event.mask.contains(EventMask::ISDIR) {
                    continue;
                }
                let Some(path) = joined(dirs, id, event.name) else {
                    continue;
                };
                let matching = matches(patterns, &path);
                if event.mask.contains(EventMask::MOVED_FROM) {
                    if matching {
                        if moved_away.len() >= MAX_PENDING_MOVES {
                            moved_away.clear();
                        }
                        moved_away.insert(event.cookie, path);
                    }
                    continue;
                }
                let left_a_match = event.mask.contains(EventMask::MOVED_TO)
                    && moved_away.remove(&event.cookie).is_some();
                if !(matching || left_a_match) {
                    continue;
                }
                match File::open(&path) {
                    Ok(file) => {
                        if tx
                            .send(Opened {
                                path,
                                file,
                                matching,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Gone already: if it was renamed, the rename's events
                    // follow and say where to.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => shared.report(format!("{}: {e}", path.display())),
                }
            }
        }
    }

    fn joined(dirs: &Dirs, id: i32, name: Option<&OsStr>) -> Option<PathBuf> {
        let name = name?;
        let dirs = dirs.lock().unwrap_or_else(PoisonError::into_inner);
        dirs.get(&id).map(|dir| dir.join(name))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn watches_the_directory_part_of_each_glob() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("a/logs")).unwrap();
            std::fs::create_dir_all(dir.path().join("b/logs")).unwrap();
            std::fs::write(dir.path().join("c"), b"not a directory").unwrap();
            let base = dir.path().display().to_string();
            assert_eq!(
                directories(&format!("{base}/a/logs/*.log")),
                [dir.path().join("a/logs")]
            );
            assert_eq!(
                directories(&format!("{base}/*/logs/access.log")),
                [dir.path().join("a/logs"), dir.path().join("b/logs")]
            );
            // Wildcards in the file name only: the directory itself.
            assert_eq!(
                directories(&format!("{base}/?")),
                [dir.path().to_path_buf()]
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod fallback {
    use std::io;
    use std::path::PathBuf;

    use super::super::config::Patterns;
    use super::Opened;

    /// No file-system events on this platform: the rescan finds files.
    #[derive(Debug)]
    pub(crate) struct Discovery;

    impl Discovery {
        pub(crate) fn start(_patterns: &Patterns, _enabled: bool) -> Self {
            Self
        }

        pub(crate) fn active(&self) -> bool {
            false
        }

        pub(crate) fn watch(&mut self, _patterns: &Patterns) -> Vec<(PathBuf, io::Error)> {
            Vec::new()
        }

        pub(crate) fn take(&mut self) -> Vec<Opened> {
            Vec::new()
        }

        pub(crate) fn overflowed(&self) -> bool {
            false
        }

        pub(crate) fn take_error(&self) -> Option<String> {
            None
        }
    }
}
