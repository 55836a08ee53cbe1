//! The root filesystem being assembled: a fresh temporary directory that layers are extracted
//! into and steps run in, removed on drop, plus the owners the image means for files whose
//! `chown` a normal user was not allowed to do. Or, as root where mounts are allowed, an
//! overlay of layer directories made once ([`Rootfs::overlay_in`], `crate::overlay`).

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Bound;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::layer::Whiteouts;
use crate::overlay::Overlay;
use crate::SandboxError;

/// Extracts one uncompressed layer tar alone into a new directory `dest` (made beside it, then
/// renamed into place, so that `dest` is complete or absent), its whiteouts and opaque markers
/// kept as overlayfs writes them: one of an overlay root's lower directories. Needs root (every
/// owner is set, whiteouts are device nodes). A `dest` that another build made first is kept,
/// and this one dropped. `tar` is read to its end before `dest` is put in place: a reader
/// that verifies what it gives says so only there (a failure then leaves no `dest`).
pub fn make_layer_dir(mut tar: impl Read, dest: &Path) -> Result<(), SandboxError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    // `.tmp` marks it as in progress for `layerize cache clean`.
    let mut rootfs = Rootfs::new_named_in(parent, ".tmp-layer-")?;
    crate::layer::apply(&mut rootfs, &mut tar, Whiteouts::Keep)?;
    std::io::copy(&mut tar, &mut std::io::sink())
        .map_err(|e| SandboxError::io("reading the rest of the layer for", dest, e))?;
    if let Some(path) = rootfs.intended_owners.keys().next() {
        return Err(SandboxError::Step(format!(
            "a layer directory needs root: the owner of {} could not be set",
            path.display()
        )));
    }
    match std::fs::rename(&rootfs.root, dest) {
        Ok(()) => Ok(()),
        // Made meanwhile by another build: the same layer, so theirs is as good.
        Err(_) if dest.is_dir() => Ok(()),
        Err(e) => Err(SandboxError::io("renaming a layer directory to", dest, e)),
    }
}

/// A root filesystem in a temporary directory of its own.
pub struct Rootfs {
    dir: tempfile::TempDir,
    /// `dir`'s path with every symlink resolved: chroot, pivot_root and the `/proc/PID/root`
    /// comparison need the real one.
    root: PathBuf,
    /// Owners the layers gave paths whose `lchown` was refused (the process is not root), by
    /// path relative to the root. The diff reports these for files a step did not re-own.
    /// Sorted, so that the paths under one are a range: a normal user's root has an entry for
    /// nearly every path, and each file a layer replaces forgets what was under it.
    pub(crate) intended_owners: BTreeMap<PathBuf, (u32, u32)>,
    /// Set for an overlay root: `root` is then its mount point, mounted only while a step runs.
    pub(crate) overlay: Option<Overlay>,
}

impl Rootfs {
    /// Makes an empty root in a new temporary directory under `parent`.
    pub fn new_in(parent: &Path) -> Result<Rootfs, SandboxError> {
        Rootfs::new_named_in(parent, "layerize-rootfs-")
    }

    fn new_named_in(parent: &Path, prefix: &str) -> Result<Rootfs, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| SandboxError::io("creating a temporary directory in", parent, e))?;
        let root = dir
            .path()
            .canonicalize()
            .map_err(|e| SandboxError::io("canonicalizing", dir.path(), e))?;
        // A chroot root must be searchable by any user a step switches to.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| SandboxError::io("chmod", &root, e))?;
        Ok(Rootfs {
            dir,
            root,
            intended_owners: BTreeMap::new(),
            overlay: None,
        })
    }

    /// A root that is an overlay of `lowers` (layer directories made by [`make_layer_dir`],
    /// the image's first layer first), with its upper directory in a new temporary directory
    /// under `parent`. Nothing is extracted: the step runs in the overlay, mounted in a mount
    /// namespace of its own, and what it changed is what the upper directory holds. Needs the
    /// namespaces mode ([`crate::overlay_available`] says whether mounting works here).
    pub fn overlay_in(parent: &Path, lowers: Vec<PathBuf>) -> Result<Rootfs, SandboxError> {
        let mut rootfs = Rootfs::new_in(parent)?;
        let overlay = Overlay::prepare(rootfs.dir.path(), lowers)?;
        rootfs.root = overlay.merged.clone();
        rootfs.overlay = Some(overlay);
        Ok(rootfs)
    }

    /// The root's directory on the host (canonical). For an overlay root, its mount point:
    /// empty but while a step runs.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the files a step changed are read after it ran (what [`crate::ChangeKind::File`]
    /// host paths are in): the root itself, or an overlay root's upper directory.
    pub fn changed_files_dir(&self) -> &Path {
        self.overlay.as_ref().map_or(&self.root, |o| &o.upper)
    }

    /// Extracts one uncompressed layer tar on top of what is there; see `crate::layer`. Not for
    /// an overlay root, whose layers are its directories.
    pub fn apply_layer(&mut self, tar: impl Read) -> Result<(), SandboxError> {
        if self.overlay.is_some() {
            return Err(SandboxError::Step(
                "an overlay root takes no extracted layers".into(),
            ));
        }
        crate::layer::apply(self, tar, Whiteouts::Apply)
    }

    /// Removes the root on another thread, so that a build goes on while a root of some
    /// hundred MB is unlinked; the returned handle waits for it when dropped, so that nothing
    /// outlives the process.
    pub fn remove_in_background(self) -> Removal {
        let thread = std::thread::Builder::new()
            .name("rootfs-removal".to_owned())
            .spawn(move || drop(self));
        match thread {
            Ok(thread) => Removal(Some(thread)),
            // No thread to spare: the root went with the closure that could not run.
            Err(_) => Removal(None),
        }
    }

    /// Forgets the intended owners of `rel` and everything below it (they were removed or
    /// replaced).
    pub(crate) fn forget_owners_under(&mut self, rel: &Path) {
        // Paths compare component by component, so `rel` and the paths below it come together,
        // `rel` first.
        let under: Vec<PathBuf> = self
            .intended_owners
            .range::<Path, _>((Bound::Included(rel), Bound::Unbounded))
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(rel))
            .cloned()
            .collect();
        for path in under {
            self.intended_owners.remove(&path);
        }
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        // TempDir's removal cannot enter a directory a step made read-only (as a normal user),
        // so open everything up first. As root this changes nothing that matters.
        make_tree_writable(self.dir.path());
    }
}

/// A root being removed on another thread; dropping this waits until it is gone.
#[must_use = "dropping it at once waits for the removal"]
pub struct Removal(Option<std::thread::JoinHandle<()>>);

impl Drop for Removal {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// Removes whatever is at `path` (not following a symlink there), a directory with everything
/// in it; a missing path is fine. Says whether there was something.
pub(crate) fn remove_any(path: &Path) -> Result<bool, SandboxError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SandboxError::io("lstat", path, e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path).or_else(|e| {
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            make_tree_writable(path);
            std::fs::remove_dir_all(path)
        })
    } else {
        std::fs::remove_file(path)
    };
    result
        .map(|()| true)
        .map_err(|e| SandboxError::io("removing", path, e))
}

/// Gives the owner rwx on every directory under (and including) `dir`, best effort: a
/// directory that cannot be changed is left for the removal to report.
pub(crate) fn make_tree_writable(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(children) = std::fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(child.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_the_owners_under_a_path_keeps_its_siblings_whatever_they_sort_like() {
        let mut rootfs = Rootfs::new_in(&std::env::temp_dir()).unwrap();
        let paths = [
            "a", "a/b", "a/b/c", "a/z", "a.txt", "a0", "ab", "b", "a/bc", "a/b.d",
        ];
        for (n, path) in paths.iter().enumerate() {
            rootfs
                .intended_owners
                .insert(PathBuf::from(path), (n as u32, 0));
        }
        let left = |rootfs: &Rootfs| -> Vec<String> {
            let paths = rootfs.intended_owners.keys();
            paths.map(|path| path.display().to_string()).collect()
        };
        rootfs.forget_owners_under(Path::new("a/b"));
        assert_eq!(
            left(&rootfs),
            ["a", "a/b.d", "a/bc", "a/z", "a.txt", "a0", "ab", "b"]
        );
        rootfs.forget_owners_under(Path::new("a"));
        assert_eq!(left(&rootfs), ["a.txt", "a0", "ab", "b"]);
        rootfs.forget_owners_under(Path::new("missing"));
        assert_eq!(rootfs.intended_owners.len(), 4);
    }
}
