//! Extracting one uncompressed layer tar into a [`Rootfs`]: entry by entry, streaming, with OCI
//! whiteouts, every path resolved inside the root, and the metadata (owner, mode, mtime,
//! kept xattrs) the process is allowed to set. The same extraction makes an overlay root's
//! layer directory, where the whiteouts stay as overlayfs writes them instead of removing.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::rootfs::remove_any;
use crate::scoped::{entry_path, resolve};
use crate::{sys, Rootfs, SandboxError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const COPY_BUFFER: usize = 1 << 20;
/// The xattr overlayfs marks an opaque directory with (the value is `y`).
pub(crate) const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// What a layer's whiteouts do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whiteouts {
    /// Remove what the layers below put there (a root the layers are extracted into in turn).
    Apply,
    /// Become overlayfs whiteouts in a directory of this layer alone: a `0:0` character device
    /// for a removed path, the `trusted.overlay.opaque` xattr on an opaque directory.
    Keep,
}

/// What one layer wrote, so that its opaque markers spare it whatever the entry order.
struct LayerState {
    whiteouts: Whiteouts,
    /// Resolved paths of this layer's entries and all their ancestors.
    written: HashSet<PathBuf>,
    /// Directories (resolved) this layer marks opaque; emptied of lower content at the end.
    opaque: Vec<PathBuf>,
    /// Paths (resolved) this layer's whiteouts name. A whiteout hides only what the layers below
    /// have there (OCI: the layer's own entry at that path stays, in whichever order the two
    /// come), so what each does is settled at the end, once it is known whether the layer
    /// writes the path itself.
    whited_out: Vec<PathBuf>,
    buffer: Vec<u8>,
    /// Directories as named by entries, resolved, each known to exist as a directory: resolving
    /// a parent again costs an lstat per component, for nearly every entry. Only removing
    /// something can change what a path resolves to (a new entry at a free path is not on the
    /// way to any path resolved before), so every removal clears it.
    resolved_dirs: HashMap<PathBuf, PathBuf>,
}

pub(crate) fn apply(
    rootfs: &mut Rootfs,
    tar: impl Read,
    whiteouts: Whiteouts,
) -> Result<(), SandboxError> {
    let mut archive = tar::Archive::new(tar);
    let mut state = LayerState {
        whiteouts,
        written: HashSet::new(),
        opaque: Vec::new(),
        whited_out: Vec::new(),
        buffer: vec![0; COPY_BUFFER],
        resolved_dirs: HashMap::new(),
    };
    for entry in archive.entries().map_err(SandboxError::Tar)? {
        let mut entry = entry.map_err(SandboxError::Tar)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = entry_path(&raw).map_err(|reason| SandboxError::entry(&name, reason))?;
        apply_entry(rootfs, &mut state, &mut entry, &name, &rel).map_err(|e| match e {
            SandboxError::Entry { .. } => e,
            other => SandboxError::entry(name, other.to_string()),
        })?;
    }
    let root = rootfs.path().to_path_buf();
    for dir in std::mem::take(&mut state.opaque) {
        match whiteouts {
            Whiteouts::Apply => clear_opaque(rootfs, &root, &dir, &state.written)?,
            Whiteouts::Keep => mark_opaque(&root.join(dir))?,
        }
    }
    for target in std::mem::take(&mut state.whited_out) {
        let host = root.join(&target);
        // The layer's own entry at a path it whites out is new there: a directory of it shows
        // nothing of the lower layers' directory, as an opaque one does.
        let own = state.written.contains(&target);
        let own_dir = own && std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
        match whiteouts {
            Whiteouts::Apply if own_dir => clear_opaque(rootfs, &root, &target, &state.written)?,
            Whiteouts::Keep if own_dir => mark_opaque(&host)?,
            Whiteouts::Keep if !own => make_whiteout(&host)?,
            // Removed when it was read, or replaced by the layer's own file.
            Whiteouts::Apply | Whiteouts::Keep => {}
        }
    }
    Ok(())
}

/// An overlayfs whiteout (a `0:0` character device) at `host`, its missing parents made.
fn make_whiteout(host: &Path) -> Result<(), SandboxError> {
    if let Some(parent) = host.parent() {
        create_missing_dirs(parent)
            .map_err(|e| SandboxError::io("creating directory", parent, e))?;
    }
    remove_any(host)?;
    sys::mknod(host, libc::S_IFCHR, 0)
        .map_err(|e| SandboxError::io("mknod (an overlay whiteout)", host, e))
}

fn apply_entry<R: Read>(
    rootfs: &mut Rootfs,
    state: &mut LayerState,
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    rel: &Path,
) -> Result<(), SandboxError> {
    let root = rootfs.path().to_path_buf();
    let Some(file_name) = rel.file_name() else {
        // The root itself ("./"): only its metadata can change.
        if entry.header().entry_type() == EntryType::Directory {
            set_metadata(rootfs, Node::Path(&root), Path::new(""), entry)?;
        }
        return Ok(());
    };
    let named_parent = rel.parent().unwrap_or(Path::new(""));
    let kind = entry.header().entry_type();
    let cached = state.resolved_dirs.get(named_parent).cloned();
    let hit = cached.is_some();
    let parent = match cached {
        Some(parent) => parent,
        None => resolve(&root, named_parent, true)?,
    };
    if file_name == OPAQUE_MARKER {
        state.opaque.push(parent);
        return Ok(());
    }
    if let Some(hidden) = file_name
        .as_bytes()
        .strip_prefix(WHITEOUT_PREFIX.as_bytes())
    {
        // `.wh.` + `..` would remove the root's parent, `.wh.` + `.` or nothing the directory.
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(SandboxError::entry(
                name,
                "a whiteout of no file, `.` or `..`",
            ));
        }
        let target = parent.join(OsStr::from_bytes(hidden));
        // Extracting in turn, what the lower layers have goes now, unless this layer has
        // already written the path; a layer directory gets its whiteout at the end.
        if state.whiteouts == Whiteouts::Apply
            && !state.written.contains(&target)
            && remove_any(&root.join(&target))?
        {
            state.resolved_dirs.clear();
            rootfs.forget_owners_under(&target);
        }
        state.whited_out.push(target);
        return Ok(());
    }

    let resolved = parent.join(file_name);
    let host = root.join(&resolved);
    let host_parent = root.join(&parent);
    if !hit {
        create_missing_dirs(&host_parent)
            .map_err(|e| SandboxError::io("creating directory", &host_parent, e))?;
        state
            .resolved_dirs
            .insert(named_parent.to_path_buf(), parent.clone());
    }
    // In a layer directory (made empty) only this layer's own entries can be on disk: a path
    // it has not written holds nothing to replace, which saves an lstat per entry.
    let may_exist = state.whiteouts == Whiteouts::Apply || state.written.contains(&resolved);
    let mut ancestor = Some(resolved.as_path());
    while let Some(path) = ancestor.filter(|p| !p.as_os_str().is_empty()) {
        if !state.written.insert(path.to_path_buf()) {
            break;
        }
        ancestor = path.parent();
    }

    if kind == EntryType::Directory {
        match may_exist.then(|| std::fs::symlink_metadata(&host)) {
            Some(Ok(meta)) if meta.is_dir() => {}
            Some(Ok(_)) => {
                remove_any(&host)?;
                state.resolved_dirs.clear();
                make_dir(&host)?;
            }
            Some(Err(_)) | None => make_dir(&host)?,
        }
        // Now a directory: what its entries are under.
        state
            .resolved_dirs
            .insert(rel.to_path_buf(), resolved.clone());
        return set_metadata(rootfs, Node::Path(&host), &resolved, entry);
    }

    // Any non-directory replaces whatever is at its path.
    if may_exist && remove_any(&host)? {
        // It may have been a directory or a symlink that later paths resolve through.
        state.resolved_dirs.clear();
        rootfs.forget_owners_under(&resolved);
    }
    match kind {
        EntryType::Regular | EntryType::Continuous => {
            let file = write_file(&host, entry, &mut state.buffer)?;
            set_metadata(rootfs, Node::File(&host, &file), &resolved, entry)
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| SandboxError::entry(name, "symlink without a target"))?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), &host)
                .map_err(|e| SandboxError::io("symlink", &host, e))?;
            set_metadata(rootfs, Node::Symlink(&host), &resolved, entry)
        }
        EntryType::Link => {
            let raw = entry
                .link_name_bytes()
                .ok_or_else(|| SandboxError::entry(name, "hardlink without a target"))?;
            let target_rel = entry_path(&raw)
                .map_err(|reason| SandboxError::entry(name, format!("hardlink target {reason}")))?;
            let target = resolve(&root, &target_rel, false)?;
            std::fs::hard_link(root.join(&target), &host).map_err(|e| {
                SandboxError::entry(
                    name,
                    format!("hardlink to {}: {e}", String::from_utf8_lossy(&raw)),
                )
            })?;
            // A hardlink shares its target's inode, so also the owner the image means for it.
            if let Some(owner) = rootfs.intended_owners.get(&target).copied() {
                rootfs.intended_owners.insert(resolved, owner);
            }
            Ok(())
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let header = entry.header();
            let file_type = match kind {
                EntryType::Char => libc::S_IFCHR,
                EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            match sys::mknod(&host, file_type | 0o600, libc::makedev(major, minor)) {
                Ok(()) => set_metadata(rootfs, Node::Path(&host), &resolved, entry),
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    tracing::debug!(entry = name, "device node skipped: mknod is not permitted");
                    Ok(())
                }
                Err(e) => Err(SandboxError::io("mknod", &host, e)),
            }
        }
        other => {
            tracing::debug!(entry = name, kind = ?other, "tar entry type not extracted");
            Ok(())
        }
    }
}

fn make_dir(host: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir(host).map_err(|e| SandboxError::io("mkdir", host, e))
}

/// Writes a new file at `host` with what `from` gives, and returns it still open: its metadata
/// is set through it, without looking its path up again.
fn write_file<R: Read>(host: &Path, from: &mut R, buffer: &mut [u8]) -> Result<File, SandboxError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(host)
        .map_err(|e| SandboxError::io("creating", host, e))?;
    loop {
        let n = match from.read(buffer) {
            Ok(0) => return Ok(file),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SandboxError::Tar(e)),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| SandboxError::io("writing", host, e))?;
    }
}

/// What an entry's metadata is set on.
#[derive(Clone, Copy)]
enum Node<'a> {
    /// A regular file just written, still open.
    File(&'a Path, &'a File),
    /// A symlink itself: no mode, no xattrs.
    Symlink(&'a Path),
    /// Anything else (a directory, a device, a fifo), by its path.
    Path(&'a Path),
}

impl<'a> Node<'a> {
    /// Where it is on the host.
    fn host(self) -> &'a Path {
        match self {
            Node::File(host, _) | Node::Symlink(host) | Node::Path(host) => host,
        }
    }
}

/// Owner first (chown clears setuid bits and file capabilities), then mode, mtime, xattrs.
fn set_metadata<R: Read>(
    rootfs: &mut Rootfs,
    node: Node<'_>,
    rel: &Path,
    entry: &mut tar::Entry<'_, R>,
) -> Result<(), SandboxError> {
    let header = entry.header();
    let uid = header.uid().map_err(SandboxError::Tar)? as u32;
    let gid = header.gid().map_err(SandboxError::Tar)? as u32;
    let mode = header.mode().map_err(SandboxError::Tar)? & 0o7777;
    let mtime = header.mtime().map_err(SandboxError::Tar)?;
    let is_dir = header.entry_type() == EntryType::Directory;
    let host = node.host();
    let chowned = match node {
        Node::File(_, file) => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
        Node::Symlink(_) | Node::Path(_) => sys::lchown(host, uid, gid),
    };
    match chowned {
        Ok(()) => {
            rootfs.intended_owners.remove(rel);
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            rootfs.intended_owners.insert(rel.to_path_buf(), (uid, gid));
        }
        Err(e) => return Err(SandboxError::io("lchown", host, e)),
    }
    let permissions = std::fs::Permissions::from_mode(mode);
    match node {
        Node::File(_, file) => file.set_permissions(permissions),
        Node::Path(_) => std::fs::set_permissions(host, permissions),
        Node::Symlink(_) => Ok(()),
    }
    .map_err(|e| SandboxError::io("chmod", host, e))?;
    if !is_dir {
        match node {
            Node::File(_, file) => sys::set_file_mtime(file, mtime as i64),
            Node::Symlink(_) | Node::Path(_) => sys::set_mtime(host, mtime as i64),
        }
        .map_err(|e| SandboxError::io("utimensat", host, e))?;
    }
    if matches!(node, Node::Symlink(_)) {
        return Ok(());
    }
    let Some(extensions) = entry.pax_extensions().map_err(SandboxError::Tar)? else {
        return Ok(());
    };
    for extension in extensions {
        let extension = extension.map_err(SandboxError::Tar)?;
        let Some(name) = extension
            .key()
            .ok()
            .and_then(|k| k.strip_prefix("SCHILY.xattr."))
        else {
            continue;
        };
        if !sys::xattr_is_kept(name) {
            continue;
        }
        if let Err(e) = sys::lsetxattr(host, name, extension.value_bytes()) {
            tracing::debug!(path = %host.display(), xattr = name, error = %e, "xattr not settable");
        }
    }
    Ok(())
}

/// Makes `dir` and its missing parents, each `0755` whatever the umask: a layer that leaves a
/// parent out gets what container runtimes give it (containerd and podman make it `0755`),
/// not something that depends on the umask of the build.
fn create_missing_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_missing_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Marks `dir` (made if this layer has only the marker) opaque the way overlayfs does.
fn mark_opaque(dir: &Path) -> Result<(), SandboxError> {
    create_missing_dirs(dir).map_err(|e| SandboxError::io("creating directory", dir, e))?;
    sys::lsetxattr(dir, OVERLAY_OPAQUE, b"y")
        .map_err(|e| SandboxError::io("setting trusted.overlay.opaque on", dir, e))
}

/// Empties the opaque directory `dir` of everything this layer did not write, descending into
/// the directories it did write (their lower content is hidden too).
fn clear_opaque(
    rootfs: &mut Rootfs,
    root: &Path,
    dir: &Path,
    written: &HashSet<PathBuf>,
) -> Result<(), SandboxError> {
    let host = root.join(dir);
    if !std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let children = std::fs::read_dir(&host).map_err(|e| SandboxError::io("readdir", &host, e))?;
    for child in children {
        let child = child.map_err(|e| SandboxError::io("readdir", &host, e))?;
        let rel = dir.join(child.file_name());
        if !written.contains(&rel) {
            remove_any(&child.path())?;
            rootfs.forget_owners_under(&rel);
        } else if child.file_type().is_ok_and(|t| t.is_dir()) {
            clear_opaque(rootfs, root, &rel, written)?;
        }
    }
    Ok(())
}
