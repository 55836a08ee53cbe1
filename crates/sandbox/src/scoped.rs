//! Paths inside the root: normalising tar entry names and resolving symlinks *scoped* to the
//! root (absolute targets are root-relative, `..` never climbs above the root), so that nothing
//! a layer or a step put there can make the host write outside it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::SandboxError;

/// How many symlinks one resolution may follow before it is called a loop (the kernel's own
/// limit, `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Normalises a tar entry name to a relative path: a leading `/`, `./` and `.` components are
/// dropped; a `..` component is refused (an entry must name its place, not climb to it). The
/// root itself is the empty path.
pub(crate) fn entry_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok(path)
}

/// Resolves `rel` inside `root` and returns the resolved path relative to `root` (no symlink in
/// any existing component but, unless `follow_final`, the last). Missing components are kept
/// as they are, so the result names where a new entry goes.
pub(crate) fn resolve(
    root: &Path,
    rel: &Path,
    follow_final: bool,
) -> Result<PathBuf, SandboxError> {
    let fail = |reason: String| SandboxError::Resolve {
        path: rel.display().to_string(),
        reason,
    };
    let mut done = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(rel).collect();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            done.pop();
            continue;
        }
        let last = pending.is_empty();
        let candidate = root.join(&done).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && (follow_final || !last) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(fail(format!("more than {MAX_SYMLINKS} symlinks (a loop?)")));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| fail(format!("readlink {}: {e}", candidate.display())))?;
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for (i, c) in components(&target).enumerate() {
                    pending.insert(i, c);
                }
            }
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(fail(format!(
                    "{} is not a directory",
                    done.join(&part).display()
                )));
            }
            Ok(_) => done.push(part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => done.push(part),
            Err(e) => return Err(fail(format!("lstat {}: {e}", candidate.display()))),
        }
    }
    Ok(done)
}

/// The components of `path` as resolution sees them: names and `..`; the root and `.` vanish.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn entry_names_are_normalised_and_dotdot_refused() {
        assert_eq!(entry_path(b"./etc//motd").unwrap(), Path::new("etc/motd"));
        assert_eq!(entry_path(b"/usr/bin/").unwrap(), Path::new("usr/bin"));
        assert_eq!(entry_path(b"./").unwrap(), Path::new(""));
        assert!(entry_path(b"../x").is_err());
        assert!(entry_path(b"a/../../x").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/", r.join("up")).unwrap();
        symlink("../../../../..", r.join("usr/dots")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib/", r.join("abs")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();

        assert_eq!(
            resolve(r, Path::new("up/etc/x"), false).unwrap(),
            Path::new("etc/x")
        );
        assert_eq!(
            resolve(r, Path::new("usr/dots/tmp/x"), false).unwrap(),
            Path::new("tmp/x")
        );
        assert_eq!(
            resolve(r, Path::new("lib/x"), false).unwrap(),
            Path::new("usr/lib/x")
        );
        assert_eq!(
            resolve(r, Path::new("abs/../x"), false).unwrap(),
            Path::new("usr/x")
        );
        // The final component is not followed unless asked for.
        assert_eq!(
            resolve(r, Path::new("lib"), false).unwrap(),
            Path::new("lib")
        );
        assert_eq!(
            resolve(r, Path::new("lib"), true).unwrap(),
            Path::new("usr/lib")
        );
        let err = resolve(r, Path::new("loop1/x"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 40 symlinks"), "{err}");
    }
}
