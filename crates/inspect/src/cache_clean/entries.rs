//! Finding the entries of a cache directory: the regular files below its versioned subdirs
//! (`basefs/v1/...`, `layers/v1/...`), found without following symlinks, temporary files of
//! writers in progress (`.tmp*`) left out; below `unpacked/vN/`, each layer directory is one
//! entry (removing some of its files would corrupt it), and a `.tmp*` directory there is a
//! directory being made or removed (or left so by a process that died). Everything else is not
//! an entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache_clean::CleanError;

/// One cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub size: u64,
    /// Its mtime: readers bump it on use, so it is the time of the last use.
    pub modified: SystemTime,
}

/// What a cache directory holds.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub entries: Vec<Entry>,
    /// The versioned subdirs (`DIR/NAME/vN`) whose emptied subdirectories may be pruned (not
    /// `unpacked/vN`).
    pub versioned_dirs: Vec<PathBuf>,
    /// The `.tmp*` directories below `unpacked/vN`, with their own mtimes: a layer directory
    /// being made or removed, or abandoned halfway by a process that died.
    pub temporary_dirs: Vec<(PathBuf, SystemTime)>,
}

/// The entries of the cache directory `dir`; an absent directory has none.
pub fn find(dir: &Path) -> Result<Found, CleanError> {
    let mut found = Found::default();
    let components = match fs::read_dir(dir) {
        Ok(components) => components,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(CleanError::read(dir, error)),
    };
    for component in components {
        let component = component.map_err(|error| CleanError::read(dir, error))?;
        if !is_real_dir(&component, dir)? {
            continue;
        }
        let component_dir = component.path();
        for version in
            fs::read_dir(&component_dir).map_err(|e| CleanError::read(&component_dir, e))?
        {
            let version = version.map_err(|error| CleanError::read(&component_dir, error))?;
            if is_version_name(&version.file_name().to_string_lossy())
                && is_real_dir(&version, &component_dir)?
            {
                let versioned = version.path();
                if component.file_name() == WHOLE_DIRS {
                    // Not pruned either: a layer's empty directories are part of it.
                    whole_dirs(&versioned, &mut found)?;
                } else {
                    walk(&versioned, &mut found.entries)?;
                    found.versioned_dirs.push(versioned);
                }
            }
        }
    }
    found.versioned_dirs.sort();
    Ok(found)
}

/// The cache component whose entries are directories: step roots' layer directories.
const WHOLE_DIRS: &str = "unpacked";

/// Each directory in `dir` as one entry: the size of all its files, its own mtime (bumped on
/// use). Directories being made or removed (`.tmp*`) are not entries but temporaries.
fn whole_dirs(dir: &Path, found: &mut Found) -> Result<(), CleanError> {
    for child in fs::read_dir(dir).map_err(|error| CleanError::read(dir, error))? {
        let child = child.map_err(|error| CleanError::read(dir, error))?;
        let kind = child
            .file_type()
            .map_err(|error| CleanError::read(dir, error))?;
        if !kind.is_dir() {
            continue;
        }
        let path = child.path();
        let modified = match fs::symlink_metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(CleanError::read(&path, error)),
        };
        if child.file_name().to_string_lossy().starts_with(".tmp") {
            found.temporary_dirs.push((path, modified));
            continue;
        }
        let mut files = Vec::new();
        walk(&path, &mut files)?;
        found.entries.push(Entry {
            size: files.iter().map(|file| file.size).sum(),
            path,
            modified,
        });
    }
    Ok(())
}

/// `v` and digits: `v1`, `v12`.
fn is_version_name(name: &str) -> bool {
    name.strip_prefix('v')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// A directory, not a symlink to one.
fn is_real_dir(entry: &fs::DirEntry, parent: &Path) -> Result<bool, CleanError> {
    entry
        .file_type()
        .map(|kind| kind.is_dir())
        .map_err(|error| CleanError::read(parent, error))
}

fn walk(dir: &Path, entries: &mut Vec<Entry>) -> Result<(), CleanError> {
    for child in fs::read_dir(dir).map_err(|error| CleanError::read(dir, error))? {
        let child = child.map_err(|error| CleanError::read(dir, error))?;
        // The type of the directory entry itself: a symlink is never followed.
        let kind = child
            .file_type()
            .map_err(|error| CleanError::read(dir, error))?;
        let path = child.path();
        if kind.is_dir() {
            walk(&path, entries)?;
        } else if kind.is_file() && !child.file_name().to_string_lossy().starts_with(".tmp") {
            let metadata = match fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                // Removed since it was listed (another clean, a writer replacing it).
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(CleanError::read(&path, error)),
            };
            let modified = metadata
                .modified()
                .map_err(|error| CleanError::read(&path, error))?;
            entries.push(Entry {
                path,
                size: metadata.len(),
                modified,
            });
        }
    }
    Ok(())
}

/// Removes the empty directories below `versioned` (not `versioned` itself), deepest first;
/// returns how many. A directory that is not empty, or no longer is, stays.
pub fn prune_empty_dirs(versioned: &Path) -> usize {
    let Ok(children) = fs::read_dir(versioned) else {
        return 0;
    };
    let mut pruned = 0;
    for child in children.flatten() {
        if child.file_type().is_ok_and(|kind| kind.is_dir()) {
            let path = child.path();
            pruned += prune_empty_dirs(&path);
            // `remove_dir` refuses a directory that is not empty, so a writer's new file wins.
            if fs::remove_dir(&path).is_ok() {
                pruned += 1;
            }
        }
    }
    pruned
}
