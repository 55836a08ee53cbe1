//! `cache clean`: removing entries of the local cache directory that were not used (by mtime,
//! which readers bump) for a given age, then the least recently used ones until the entries
//! total at most a given size; then pruning the subdirectories that became empty.
//!
//! Entries are the regular files below the cache's versioned subdirs ([`entries`]). An entry
//! used between the scan and its removal (its mtime moved) is kept. A layer directory is removed
//! only under an exclusive `flock` taken without waiting: a build holds a shared one on every
//! layer directory its step roots stack, so one in use is kept. Temporary layer directories
//! left for a day (by a build or a clean that died) are removed too.

pub mod entries;
pub mod render;

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use entries::Entry;

/// What to remove.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Remove entries not used for at least this long.
    pub older_than: Option<Duration>,
    /// Then remove least recently used entries until the rest total at most this many bytes.
    pub max_size: Option<u64>,
}

/// Why an entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not used for the `older_than` age.
    Unused,
    /// Least recently used while the cache was over `max_size`.
    OverSize,
}

/// An entry chosen for removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub entry: Entry,
    pub reason: Reason,
}

/// The entries of a cache split into those to remove and those to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Oldest first.
    pub remove: Vec<Removal>,
    pub keep: Vec<Entry>,
}

/// What a clean did (or, in a dry run, would do).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub dry_run: bool,
    pub removed: Vec<Removal>,
    pub kept: Vec<Entry>,
    /// Chosen entries left in place because they were in use (a layer directory a build
    /// holds), or used or removed since the scan.
    pub spared: Vec<Entry>,
    /// Chosen entries that could not be removed, with why.
    pub failed: Vec<(Entry, String)>,
    pub pruned_dirs: usize,
    /// Temporary layer directories removed: left a day or more by a process that died.
    pub reaped_temporaries: usize,
}

/// How long a temporary layer directory may sit before it counts as abandoned: making or
/// removing one takes seconds.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

impl Outcome {
    pub fn freed_bytes(&self) -> u64 {
        self.removed.iter().map(|removal| removal.entry.size).sum()
    }

    pub fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|entry| entry.size).sum()
    }
}

/// Why the cache directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("reading the cache directory {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CleanError {
    fn read(path: &Path, source: io::Error) -> CleanError {
        CleanError::Read {
            path: path.to_owned(),
            source,
        }
    }
}

/// Splits `entries` by `policy` at time `now`: first every entry last used at least
/// `older_than` ago, then, oldest first, entries until the rest fit in `max_size`. Entries
/// used at the same time go in path order.
pub fn plan(mut entries: Vec<Entry>, policy: &Policy, now: SystemTime) -> Plan {
    entries.sort_by(|a, b| {
        a.modified
            .cmp(&b.modified)
            .then_with(|| a.path.cmp(&b.path))
    });
    let cutoff = policy
        .older_than
        .map(|age| now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH));
    let (unused, mut keep): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|entry| cutoff.is_some_and(|cutoff| entry.modified <= cutoff));
    let mut remove: Vec<Removal> = unused
        .into_iter()
        .map(|entry| Removal {
            entry,
            reason: Reason::Unused,
        })
        .collect();
    if let Some(max_size) = policy.max_size {
        let mut total: u64 = keep.iter().map(|entry| entry.size).sum();
        let mut over = 0;
        while total > max_size && over < keep.len() {
            total -= keep[over].size;
            over += 1;
        }
        remove.extend(keep.drain(..over).map(|entry| Removal {
            entry,
            reason: Reason::OverSize,
        }));
    }
    Plan { remove, keep }
}

/// Cleans the cache directory `dir` by `policy` at time `now`; with `dry_run`, only says what
/// it would remove.
pub fn clean(
    dir: &Path,
    policy: &Policy,
    now: SystemTime,
    dry_run: bool,
) -> Result<Outcome, CleanError> {
    let found = entries::find(dir)?;
    let plan = plan(found.entries, policy, now);
    let mut outcome = Outcome {
        dry_run,
        kept: plan.keep,
        ..Outcome::default()
    };
    if dry_run {
        outcome.removed = plan.remove;
        return Ok(outcome);
    }
    for removal in plan.remove {
        match remove_unchanged(&removal.entry) {
            Ok(true) => outcome.removed.push(removal),
            Ok(false) => {
                outcome.spared.push(removal.entry.clone());
                outcome.kept.push(removal.entry);
            }
            Err(error) => {
                outcome
                    .failed
                    .push((removal.entry.clone(), error.to_string()));
                outcome.kept.push(removal.entry);
            }
        }
    }
    let abandoned = now
        .checked_sub(ABANDONED_AFTER)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    outcome.reaped_temporaries = found
        .temporary_dirs
        .iter()
        .filter(|(dir, modified)| *modified <= abandoned && reap(dir).unwrap_or(false))
        .count();
    outcome.pruned_dirs = found
        .versioned_dirs
        .iter()
        .map(|dir| entries::prune_empty_dirs(dir))
        .sum();
    Ok(outcome)
}

/// Removes the entry unless it changed since the scan (used again: newer mtime; replaced; gone).
/// `Ok(false)`: left alone.
fn remove_unchanged(entry: &Entry) -> io::Result<bool> {
    let metadata = match std::fs::symlink_metadata(&entry.path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if !(metadata.is_file() || metadata.is_dir()) || metadata.modified()? != entry.modified {
        return Ok(false);
    }
    if metadata.is_dir() {
        return remove_whole_dir(entry);
    }
    match std::fs::remove_file(&entry.path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Removes a layer directory unless a build holds it or used it since the scan: renamed aside
/// first, under the lock, so that no build finds it half removed.
fn remove_whole_dir(entry: &Entry) -> io::Result<bool> {
    let Some(lock) = lock_unused(&entry.path)? else {
        return Ok(false);
    };
    let dir = &entry.path;
    // A build that used it between the scan and the lock bumped its mtime.
    if lock.metadata()?.modified()? != entry.modified {
        return Ok(false);
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let aside = dir.with_file_name(format!(".tmp-removing-{name}"));
    match std::fs::rename(dir, &aside) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    }
    std::fs::remove_dir_all(&aside)?;
    Ok(true)
}

/// Removes an abandoned temporary layer directory unless someone holds it.
fn reap(dir: &Path) -> io::Result<bool> {
    let Some(_lock) = lock_unused(dir)? else {
        return Ok(false);
    };
    std::fs::remove_dir_all(dir)?;
    Ok(true)
}

/// An exclusive lock on the directory `dir`, if nobody holds a lock on it and it is still the
/// directory at that path once locked; `None` otherwise (busy, gone or replaced).
fn lock_unused(dir: &Path) -> io::Result<Option<File>> {
    let handle = match File::open(dir) {
        Ok(handle) => handle,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    match handle.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(error)) => return Err(error),
    }
    let held = handle.metadata()?;
    match std::fs::symlink_metadata(dir) {
        Ok(now) if now.is_dir() && (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
            Ok(Some(handle))
        }
        Ok(_) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests;
