//! What a step changed in an overlay root, read off its upper directory: every path there was
//! written, copied up or whited out by the step (or by the sandbox's own preparation, which the
//! snapshot of the upper directory taken before the step tells apart). Each is compared with
//! the root as it was (the read-only lower view). That gives the written root's two-snapshot
//! [`Changes`] for the same step, except:
//!
//! - A non-directory of the same type is compared by mode, owner, size, mtime and symlink
//!   target, then by content and kept xattrs, never by inode or ctime (a copy-up changes the
//!   ctime): a path replaced or touched with nothing visible changed (the same bytes and mtime,
//!   a chmod to the same mode, another link count) is left out, where the written root records
//!   it. Stacked, both layers give the same files.
//! - Copy-up breaks hard links (`index=off`): a step that writes through one name of a lower
//!   link group changes only that name, in its own view and so in its layer, and a new link to
//!   a lower file is a copy; in a written root every name of the inode changes. The step ran
//!   on a different filesystem there, so the layers differ in what they hold.
//! - A directory the sandbox's preparation made (a missing workdir) is compared by mode and
//!   owner only.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::changes::is_dropped;
use crate::diff::{deleted, entry, has_ancestor_in, link_hardlinks, OwnerView};
use crate::overlay::{is_opaque, is_whiteout, Overlay};
use crate::snapshot::{self, Meta, Snapshot};
use crate::{sys, ChangeStatus, Changes, SandboxError};

/// Where a path's state before the step came from.
enum Before {
    /// The sandbox's preparation put it in the upper directory.
    Prepared(Meta),
    /// The layers had it.
    Lower(Meta),
}

impl Before {
    fn meta(&self) -> &Meta {
        match self {
            Before::Prepared(meta) | Before::Lower(meta) => meta,
        }
    }
}

/// The changes in `overlay`'s upper directory since `upper_before` was taken, leaving out
/// `excluded` paths and what [`crate::DROPPED`] drops. Owners are lstat's: overlay roots are
/// only made as root.
pub(crate) fn diff(
    overlay: &Overlay,
    upper_before: &Snapshot,
    excluded: &HashSet<Vec<u8>>,
) -> Result<Changes, SandboxError> {
    let after = snapshot::take(&overlay.upper)?;
    // Paths whose lower descendants need no entries: opaque, replaced or deleted.
    let mut covered: HashSet<&[u8]> = HashSet::new();
    let mut entries = Vec::new();
    for (path, now) in &after.entries {
        let whiteout = is_whiteout(now.file_type(), now.rdev);
        // A whiteout is a device node whatever it deletes: the drop rules go by what was there.
        if excluded.contains(path) || (!whiteout && is_dropped(path, now.is_dir())) {
            continue;
        }
        if has_ancestor_in(path, &covered) {
            if !whiteout {
                let added = ChangeStatus::Added;
                let host = &overlay.upper;
                entries.extend(entry(
                    host,
                    path,
                    None,
                    now,
                    added,
                    false,
                    &OwnerView::Host,
                )?);
            }
            continue;
        }
        let before = before(overlay, upper_before, path)?;
        if whiteout {
            if before
                .as_ref()
                .is_some_and(|old| !is_dropped(path, old.meta().is_dir()))
            {
                covered.insert(path);
                entries.push(deleted(path));
            }
            continue;
        }
        let status = match &before {
            None => ChangeStatus::Added,
            Some(old) => {
                let old_meta = old.meta();
                let host = overlay.upper.join(OsStr::from_bytes(path));
                let replaced =
                    old_meta.file_type() != now.file_type() || (now.is_dir() && is_opaque(&host));
                if replaced {
                    covered.insert(path);
                    ChangeStatus::Changed
                } else if differs(overlay, path, old, now)? {
                    ChangeStatus::Changed
                } else {
                    continue;
                }
            }
        };
        let replaced_dir = status == ChangeStatus::Changed && covered.contains(path.as_slice());
        let old = before.as_ref().map(Before::meta);
        let owners = OwnerView::Host;
        entries.extend(entry(
            &overlay.upper,
            path,
            old,
            now,
            status,
            replaced_dir,
            &owners,
        )?);
    }
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    link_hardlinks(&mut entries, &after);
    Ok(Changes { entries })
}

/// The state of `path` before the step: what the preparation put in the upper directory, else
/// what the layers have there, else nothing.
fn before(
    overlay: &Overlay,
    upper_before: &Snapshot,
    path: &[u8],
) -> Result<Option<Before>, SandboxError> {
    if let Some(meta) = upper_before.entries.get(path) {
        return Ok(Some(Before::Prepared(meta.clone())));
    }
    let lower = overlay.lower_view.join(OsStr::from_bytes(path));
    let meta = match std::fs::symlink_metadata(&lower) {
        Ok(meta) => meta,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(None)
        }
        Err(e) => return Err(SandboxError::io("lstat", &lower, e)),
    };
    Ok(Some(Before::Lower(Meta::of(&lower, &meta)?)))
}

/// Whether a path of the same type changed in a way a layer records: as the written root's
/// diff decides, but with the content (and kept xattrs) in place of the ctime a copy-up
/// changes. A directory's size and times change with its children, entries of their own.
fn differs(overlay: &Overlay, path: &[u8], old: &Before, now: &Meta) -> Result<bool, SandboxError> {
    let old_meta = old.meta();
    if old_meta.mode != now.mode || old_meta.uid != now.uid || old_meta.gid != now.gid {
        return Ok(true);
    }
    if now.is_dir() {
        return Ok(false);
    }
    if old_meta.size != now.size
        || old_meta.mtime_ns != now.mtime_ns
        || old_meta.symlink_target != now.symlink_target
    {
        return Ok(true);
    }
    let Before::Lower(_) = old else {
        // Made by the preparation and left alike: unchanged, as in the written root.
        return Ok(old_meta.ctime_ns != now.ctime_ns);
    };
    if now.file_type() != libc::S_IFREG {
        return Ok(false);
    }
    let upper = overlay.upper.join(OsStr::from_bytes(path));
    let lower = overlay.lower_view.join(OsStr::from_bytes(path));
    let xattrs = |path: &Path| {
        sys::kept_xattrs(path).map_err(|e| SandboxError::io("listing xattrs of", path, e))
    };
    if xattrs(&upper)? != xattrs(&lower)? {
        return Ok(true);
    }
    Ok(!same_content(&upper, &lower)?)
}

/// Whether two files of the same size hold the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool, SandboxError> {
    let open =
        |path: &Path| std::fs::File::open(path).map_err(|e| SandboxError::io("opening", path, e));
    let (mut a_file, mut b_file) = (open(a)?, open(b)?);
    let mut a_buffer = vec![0u8; 1 << 16];
    let mut b_buffer = vec![0u8; 1 << 16];
    loop {
        let n =
            read_full(&mut a_file, &mut a_buffer).map_err(|e| SandboxError::io("reading", a, e))?;
        let m =
            read_full(&mut b_file, &mut b_buffer).map_err(|e| SandboxError::io("reading", b, e))?;
        if n != m || a_buffer[..n] != b_buffer[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buffer` unless the file ends first; returns how much it read.
fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
