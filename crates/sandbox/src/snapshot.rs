//! A snapshot of a root's tree: one `lstat` per path (symlinks never followed, mount points
//! never entered), keyed by the path's bytes so that parents sort before their children.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// What the diff compares of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub dev: u64,
    pub ino: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub nlink: u64,
    /// The device number of a device node (an overlay whiteout is a character device 0:0).
    pub rdev: u64,
    pub symlink_target: Option<PathBuf>,
}

impl Meta {
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    /// The meta of `host` from its lstat `meta` (a symlink's target read).
    pub fn of(host: &Path, meta: &std::fs::Metadata) -> Result<Meta, SandboxError> {
        let symlink_target = if meta.file_type().is_symlink() {
            Some(std::fs::read_link(host).map_err(|e| SandboxError::io("readlink", host, e))?)
        } else {
            None
        };
        Ok(Meta {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            symlink_target,
        })
    }
}

/// Every path under a root (the root itself excluded), by relative path bytes.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub entries: BTreeMap<Vec<u8>, Meta>,
}

pub(crate) fn take(root: &Path) -> Result<Snapshot, SandboxError> {
    let root_meta =
        std::fs::symlink_metadata(root).map_err(|e| SandboxError::io("lstat", root, e))?;
    let root_dev = root_meta.dev();
    let mut entries = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let host_dir = root.join(&dir);
        let children =
            std::fs::read_dir(&host_dir).map_err(|e| SandboxError::io("readdir", &host_dir, e))?;
        for child in children {
            let child = child.map_err(|e| SandboxError::io("readdir", &host_dir, e))?;
            let rel = dir.join(child.file_name());
            let host = child.path();
            let meta = std::fs::symlink_metadata(&host)
                .map_err(|e| SandboxError::io("lstat", &host, e))?;
            if meta.dev() != root_dev {
                // Something is mounted here: it is not part of the root.
                continue;
            }
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            entries.insert(rel.as_os_str().as_bytes().to_vec(), Meta::of(&host, &meta)?);
        }
    }
    Ok(Snapshot { entries })
}
