//! Thin safe wrappers over the libc calls std does not offer (lchown, mknod, xattrs without
//! following symlinks, utimensat), each returning the OS error so callers can name the path.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The extended attributes a layer carries: file capabilities and the `user.` namespace (the
/// others are either the host's business, like SELinux labels, or not settable here).
pub(crate) fn xattr_is_kept(name: &str) -> bool {
    name == "security.capability" || name.starts_with("user.")
}

pub(crate) fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) })
}

pub(crate) fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: as above.
    check(unsafe { libc::mknod(c.as_ptr(), mode, dev) })
}

/// atime and mtime both `secs`, as utimensat and futimens take them.
fn both_times(secs: i64) -> [libc::timespec; 2] {
    let time = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    [time, time]
}

/// Sets atime and mtime of `path` itself (a symlink is not followed).
pub(crate) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let c = cpath(path)?;
    let times = both_times(secs);
    // SAFETY: `times` holds the two timespecs utimensat reads.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Sets atime and mtime of the open file `file`.
pub(crate) fn set_file_mtime(file: &std::fs::File, secs: i64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let times = both_times(secs);
    // SAFETY: `file` is open for the duration of the call; `times` holds the two timespecs
    // futimens reads.
    check(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) })
}

pub(crate) fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    // SAFETY: valid strings and a buffer of `value.len()` bytes.
    check(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// The kept extended attributes (see [`xattr_is_kept`]) of `path` itself. A filesystem without
/// xattr support has none.
pub(crate) fn kept_xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let c = cpath(path)?;
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the buffer is `names.len()` bytes long.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(out),
            _ => return Err(err),
        }
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(text) = std::str::from_utf8(name) else {
            continue;
        };
        if !xattr_is_kept(text) {
            continue;
        }
        let cname = CString::new(name).expect("split on NUL");
        let mut value = vec![0u8; 256];
        loop {
            match lgetxattr(&c, &cname, &mut value) {
                Ok(n) => {
                    value.truncate(n);
                    break;
                }
                Err(err) if err.raw_os_error() == Some(libc::ERANGE) => {
                    value.resize(value.len() * 16, 0)
                }
                Err(err) => return Err(err),
            }
        }
        out.insert(text.to_string(), value);
    }
    Ok(out)
}

/// Reads the xattr `name` of `path` itself into `value`; returns its length.
pub(crate) fn lgetxattr(path: &CString, name: &CString, value: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid strings and a buffer of `value.len()` bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
