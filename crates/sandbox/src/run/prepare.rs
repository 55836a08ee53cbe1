//! Setting the root up for a step before the snapshot: the workdir, the `/dev` nodes (made, or
//! bind targets), the `/proc` mount point, and the host's resolv.conf and hosts for a step
//! with network. What this puts there is not the step's doing, so it is never in the changes.

use std::collections::HashSet;
use std::fs::DirBuilder;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::child::Bind;
use super::Step;
use crate::rootfs::remove_any;
use crate::scoped::resolve;
use crate::sys::{cpath, mknod};
use crate::{Mode, SandboxError};

/// The minimal /dev: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const HOST_NETWORK_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

/// What [`prepare`] did that the run and the diff need to know.
#[derive(Default)]
pub(crate) struct Prepared {
    /// The workdir as an absolute path inside the root.
    pub workdir: PathBuf,
    /// Host files bind-mounted in the namespaced modes.
    pub binds: Vec<Bind>,
    /// Paths (relative bytes) the diff must leave out.
    pub excluded: HashSet<Vec<u8>>,
    /// Files copied in for the step, removed after it (host paths).
    pub remove_after: Vec<PathBuf>,
}

pub(crate) fn prepare(root: &Path, step: &Step, mode: Mode) -> Result<Prepared, SandboxError> {
    if !step.workdir.starts_with('/') {
        return Err(SandboxError::Step(format!(
            "workdir {:?} is not an absolute path",
            step.workdir
        )));
    }
    let mut prepared = Prepared {
        workdir: Path::new("/").join(resolve(root, Path::new(&step.workdir), true)?),
        ..Prepared::default()
    };
    make_dirs(root, &prepared.workdir, 0o755)?;
    let dev = make_dirs(root, Path::new("dev"), 0o755)?;
    let namespaced = mode != Mode::Chroot;
    for (name, major, minor) in DEVICES {
        let host = root.join(&dev).join(name);
        if namespaced {
            let target = bind_target(&host)?;
            prepared.binds.push(Bind {
                source: cpath(&Path::new("/dev").join(name)).expect("no NUL"),
                target,
                read_only: false,
            });
        } else {
            make_device(&host, major, minor)?;
        }
    }
    if namespaced {
        // The proc mount goes exactly on `proc`: a symlink there would be followed on the host.
        let proc = root.join("proc");
        if !std::fs::symlink_metadata(&proc).is_ok_and(|m| m.is_dir()) {
            remove_any(&proc)?;
            make_dirs(root, Path::new("proc"), 0o555)?;
        }
    }
    if step.network {
        for rel in HOST_NETWORK_FILES {
            host_network_file(root, rel, namespaced, &mut prepared)?;
        }
    }
    Ok(prepared)
}

/// Creates `rel` (resolved inside the root) and its missing parents with `mode`, owned by the
/// process; returns the resolved relative path.
fn make_dirs(root: &Path, rel: &Path, mode: u32) -> Result<PathBuf, SandboxError> {
    let resolved = resolve(root, rel, true)?;
    let host = root.join(&resolved);
    if !host.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&host)
            .map_err(|e| SandboxError::io("creating directory", &host, e))?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SandboxError::io("chmod", &host, e))?;
    }
    Ok(resolved)
}

/// Makes a device node unless one is there; skipped when mknod is not permitted.
fn make_device(host: &Path, major: u32, minor: u32) -> Result<(), SandboxError> {
    if std::fs::symlink_metadata(host).is_ok_and(|m| m.file_type().is_char_device()) {
        return Ok(());
    }
    remove_any(host)?;
    match mknod(host, libc::S_IFCHR | 0o666, libc::makedev(major, minor)) {
        Ok(()) => std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| SandboxError::io("chmod", host, e)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            tracing::debug!(path = %host.display(), "/dev node not made: mknod is not permitted");
            Ok(())
        }
        Err(e) => Err(SandboxError::io("mknod", host, e)),
    }
}

/// A regular file (or an existing device node) at `host` to bind-mount onto. Anything else
/// there — a symlink above all, which the mount would follow on the host — is replaced.
fn bind_target(host: &Path) -> Result<std::ffi::CString, SandboxError> {
    let usable = std::fs::symlink_metadata(host)
        .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_char_device());
    if !usable {
        remove_any(host)?;
        std::fs::File::create(host).map_err(|e| SandboxError::io("creating", host, e))?;
    }
    cpath(host).map_err(|e| SandboxError::io("bind target", host, e))
}

/// Makes the host's `rel` (resolv.conf, hosts) visible to a step with network: bind-mounted
/// read-only over the rootfs's own in the namespaced modes; copied in, if the rootfs has none,
/// in chroot mode.
fn host_network_file(
    root: &Path,
    rel: &str,
    namespaced: bool,
    prepared: &mut Prepared,
) -> Result<(), SandboxError> {
    let source = Path::new("/").join(rel);
    if !source.is_file() {
        return Ok(());
    }
    let parent = resolve(root, Path::new("etc"), true)?;
    if !root.join(&parent).is_dir() {
        return Ok(());
    }
    let name = Path::new(rel).file_name().expect("a file name");
    let resolved = parent.join(name);
    let host = root.join(&resolved);
    let exists = std::fs::symlink_metadata(&host).is_ok();
    if namespaced {
        if exists && !std::fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_file()) {
            tracing::debug!(path = %host.display(), "not a regular file: host file not bound over it");
            return Ok(());
        }
        if !exists {
            std::fs::File::create(&host).map_err(|e| SandboxError::io("creating", &host, e))?;
            prepared.remove_after.push(host.clone());
        }
        prepared.binds.push(Bind {
            source: cpath(&source).expect("no NUL"),
            target: cpath(&host).map_err(|e| SandboxError::io("bind target", &host, e))?,
            read_only: true,
        });
    } else if !exists {
        std::fs::copy(&source, &host).map_err(|e| SandboxError::io("copying into", &host, e))?;
        prepared.remove_after.push(host.clone());
    }
    prepared
        .excluded
        .insert(resolved.as_os_str().as_bytes().to_vec());
    Ok(())
}
