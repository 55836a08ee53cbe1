//! Comparing two snapshots of one root into [`Changes`]: added, changed and deleted paths,
//! opaque directories, hardlink groups, owners as the image sees them, and the drop rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::changes::is_dropped;
use crate::snapshot::{Meta, Snapshot};
use crate::{sys, Change, ChangeKind, ChangeStatus, Changes, SandboxError};

/// How lstat owners translate to the image's owners.
pub(crate) enum OwnerView<'a> {
    /// The process ran as real root: lstat is the truth.
    Host,
    /// A user namespace mapped uid/gid 0 to these host ids; `intended` holds the owners the
    /// layers meant where chown was refused.
    Mapped {
        uid: u32,
        gid: u32,
        intended: &'a BTreeMap<PathBuf, (u32, u32)>,
    },
}

impl OwnerView<'_> {
    fn owner(&self, path: &[u8], before: Option<&Meta>, now: &Meta) -> (u32, u32) {
        match self {
            OwnerView::Host => (now.uid, now.gid),
            OwnerView::Mapped { uid, gid, intended } => {
                let untouched = before.is_some_and(|old| {
                    old.ino == now.ino && old.uid == now.uid && old.gid == now.gid
                });
                if untouched {
                    if let Some(owner) = intended.get(Path::new(OsStr::from_bytes(path))) {
                        return *owner;
                    }
                }
                let map = |id: u32, host: u32| if id == host { 0 } else { id };
                (map(now.uid, *uid), map(now.gid, *gid))
            }
        }
    }
}

/// The changes from `before` to `after` of the tree at `root`, leaving out `excluded` paths
/// (files the sandbox itself put there) and what [`crate::DROPPED`] drops.
pub(crate) fn diff(
    root: &Path,
    before: &Snapshot,
    after: &Snapshot,
    owners: &OwnerView<'_>,
    excluded: &HashSet<Vec<u8>>,
) -> Result<Changes, SandboxError> {
    // Paths whose old descendants need no whiteouts: they are covered by an opaque directory,
    // a replaced directory or a deleted ancestor.
    let mut covered: HashSet<&[u8]> = HashSet::new();
    let mut entries = Vec::new();
    for (path, now) in &after.entries {
        if excluded.contains(path) || is_dropped(path, now.is_dir()) {
            continue;
        }
        let old = before.entries.get(path);
        let status = match old {
            _ if has_ancestor_in(path, &covered) => ChangeStatus::Added,
            None => ChangeStatus::Added,
            Some(old) if old.ino != now.ino || old.file_type() != now.file_type() => {
                covered.insert(path);
                ChangeStatus::Changed
            }
            Some(old) if differs(old, now) => ChangeStatus::Changed,
            Some(_) => continue,
        };
        let replaced_dir = status == ChangeStatus::Changed && covered.contains(path.as_slice());
        entries.extend(entry(root, path, old, now, status, replaced_dir, owners)?);
    }
    for (path, old) in &before.entries {
        if after.entries.contains_key(path)
            || excluded.contains(path)
            || is_dropped(path, old.is_dir())
            || has_ancestor_in(path, &covered)
        {
            continue;
        }
        covered.insert(path);
        entries.push(deleted(path));
    }
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    link_hardlinks(&mut entries, after);
    Ok(Changes { entries })
}

/// Whether the same inode of the same type changed in a way a layer records. A directory's
/// size and times change with its children, which are entries of their own.
fn differs(old: &Meta, now: &Meta) -> bool {
    if old.mode != now.mode || old.uid != now.uid || old.gid != now.gid {
        return true;
    }
    !now.is_dir()
        && (old.size != now.size
            || old.mtime_ns != now.mtime_ns
            || old.ctime_ns != now.ctime_ns
            || old.symlink_target != now.symlink_target)
}

pub(crate) fn has_ancestor_in(path: &[u8], set: &HashSet<&[u8]>) -> bool {
    !set.is_empty()
        && path
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'/' && set.contains(&path[..i]))
}

pub(crate) fn entry(
    root: &Path,
    path: &[u8],
    old: Option<&Meta>,
    now: &Meta,
    status: ChangeStatus,
    replaced: bool,
    owners: &OwnerView<'_>,
) -> Result<Option<Change>, SandboxError> {
    let host_path = root.join(OsStr::from_bytes(path));
    let kind = match now.file_type() {
        libc::S_IFDIR if replaced => ChangeKind::OpaqueDir,
        libc::S_IFDIR => ChangeKind::Dir,
        libc::S_IFLNK => ChangeKind::Symlink {
            target: now
                .symlink_target
                .as_deref()
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        libc::S_IFREG => ChangeKind::File {
            host_path: host_path.clone(),
            size: now.size,
        },
        // Device nodes, fifos and sockets a step leaves are runtime leftovers, not content.
        _ => {
            tracing::warn!(path = %host_path.display(), "not in the layer: a device node, fifo or socket");
            return Ok(None);
        }
    };
    let xattrs = if now.file_type() == libc::S_IFLNK {
        BTreeMap::new()
    } else {
        sys::kept_xattrs(&host_path)
            .map_err(|e| SandboxError::io("listing xattrs of", &host_path, e))?
    };
    let (uid, gid) = owners.owner(path, old, now);
    Ok(Some(Change {
        path: text(path),
        kind,
        status,
        mode: now.mode & 0o7777,
        uid,
        gid,
        xattrs,
    }))
}

/// Turns every File after the first of one inode into a Hardlink to the first.
pub(crate) fn link_hardlinks(entries: &mut [Change], after: &Snapshot) {
    let mut first_by_inode: HashMap<(u64, u64), String> = HashMap::new();
    for change in entries.iter_mut() {
        if !matches!(change.kind, ChangeKind::File { .. }) {
            continue;
        }
        let Some(meta) = after.entries.get(change.path.as_bytes()) else {
            continue;
        };
        if meta.nlink < 2 {
            continue;
        }
        match first_by_inode.get(&(meta.dev, meta.ino)) {
            Some(first) => {
                change.kind = ChangeKind::Hardlink {
                    target: first.clone(),
                }
            }
            None => {
                first_by_inode.insert((meta.dev, meta.ino), change.path.clone());
            }
        }
    }
}

/// The entry of a deleted path (a whiteout in the layer).
pub(crate) fn deleted(path: &[u8]) -> Change {
    Change {
        path: text(path),
        kind: ChangeKind::Deleted,
        status: ChangeStatus::Deleted,
        mode: 0,
        uid: 0,
        gid: 0,
        xattrs: BTreeMap::new(),
    }
}

pub(crate) fn text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
