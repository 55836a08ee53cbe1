//! What a step changed, as the entries of the layer it makes, and the rules for what is never
//! reported ([`DROPPED`]): files no image needs and that never reproduce.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Whether a path is new, different, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStatus {
    Added,
    Changed,
    Deleted,
}

/// What the layer entry for a changed path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A regular file; the caller reads its content from `host_path` (inside the rootfs) after
    /// the step returned.
    File {
        host_path: PathBuf,
        size: u64,
    },
    Dir,
    /// A directory that was removed and made again (or replaced a non-directory): the layer
    /// must mark it opaque; its contents follow as Added entries.
    OpaqueDir,
    Symlink {
        target: String,
    },
    /// Another `File` entry of the same [`Changes`] with the same inode (never an unchanged
    /// file: then this path is a `File` itself).
    Hardlink {
        target: String,
    },
    /// Becomes a whiteout. A deleted directory is one entry; its children are not listed.
    Deleted,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the root, normalised, no leading slash: `etc/motd`.
    pub path: String,
    pub kind: ChangeKind,
    pub status: ChangeStatus,
    /// Permission bits including setuid, setgid and sticky (`0o7777`); 0 for deletions.
    pub mode: u32,
    /// Owners as the image sees them (in a user namespace: the mapped ones).
    pub uid: u32,
    pub gid: u32,
    /// `security.capability` and `user.*` of files and directories.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Everything a step changed, sorted by path bytes (parents before children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub entries: Vec<Change>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn added(&self) -> usize {
        self.count(ChangeStatus::Added)
    }

    pub fn changed(&self) -> usize {
        self.count(ChangeStatus::Changed)
    }

    pub fn deleted(&self) -> usize {
        self.count(ChangeStatus::Deleted)
    }

    fn count(&self, status: ChangeStatus) -> usize {
        self.entries.iter().filter(|c| c.status == status).count()
    }
}

/// Which paths a [`DropRule`] matches (paths are relative: `var/log/dpkg.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropMatch {
    /// Strictly below this directory (the directory itself is kept).
    Under(&'static str),
    /// The file name ends with this.
    NameEndsWith(&'static str),
    /// Exactly this path.
    Exact(&'static str),
}

/// One rule of what a step's changes never include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRule {
    pub matches: DropMatch,
    /// Whether directories matching it are dropped too (else only non-directories are, so
    /// that the directory an image needs stays).
    pub directories_too: bool,
    pub why: &'static str,
}

const fn rule(matches: DropMatch, directories_too: bool, why: &'static str) -> DropRule {
    DropRule {
        matches,
        directories_too,
        why,
    }
}

const LOGS_AND_CACHES: &str = "logs and caches: rebuilt at run time, different on every build";
const BACKUP: &str = "backup copies tools keep of the previous version";

/// The drop rules, in the order docs/sandbox.md prints them.
pub const DROPPED: &[DropRule] = &[
    rule(
        DropMatch::Under("dev/"),
        true,
        "mount point: the sandbox's device nodes",
    ),
    rule(
        DropMatch::Under("proc/"),
        true,
        "mount point: the sandbox's /proc",
    ),
    rule(DropMatch::Under("sys/"), true, "mount point"),
    rule(DropMatch::Under("var/log/"), false, LOGS_AND_CACHES),
    rule(DropMatch::Under("var/cache/apt/"), false, LOGS_AND_CACHES),
    rule(
        DropMatch::Under("var/cache/ldconfig/"),
        false,
        LOGS_AND_CACHES,
    ),
    rule(DropMatch::Under("var/cache/man/"), false, LOGS_AND_CACHES),
    rule(DropMatch::Under("root/.cache/"), false, LOGS_AND_CACHES),
    rule(
        DropMatch::NameEndsWith("-old"),
        false,
        "dpkg's status-old, debconf's config.dat-old",
    ),
    rule(DropMatch::Exact("etc/passwd-"), false, BACKUP),
    rule(DropMatch::Exact("etc/group-"), false, BACKUP),
    rule(DropMatch::Exact("etc/shadow-"), false, BACKUP),
    rule(DropMatch::Exact("etc/gshadow-"), false, BACKUP),
    rule(DropMatch::Exact("etc/subuid-"), false, BACKUP),
    rule(DropMatch::Exact("etc/subgid-"), false, BACKUP),
];

/// Whether a change at `path` (relative bytes) is never reported.
pub(crate) fn is_dropped(path: &[u8], is_dir: bool) -> bool {
    DROPPED.iter().any(|rule| {
        (rule.directories_too || !is_dir)
            && match rule.matches {
                DropMatch::Under(dir) => path.starts_with(dir.as_bytes()),
                DropMatch::NameEndsWith(suffix) => {
                    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
                    name.ends_with(suffix.as_bytes())
                }
                DropMatch::Exact(exact) => path == exact.as_bytes(),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_rules() {
        assert!(is_dropped(b"dev/null", false));
        assert!(is_dropped(b"dev/pts", true));
        assert!(!is_dropped(b"dev", true));
        assert!(is_dropped(b"var/log/dpkg.log", false));
        assert!(!is_dropped(b"var/log/apt", true));
        assert!(!is_dropped(b"var/logx", false));
        assert!(is_dropped(b"var/lib/dpkg/status-old", false));
        assert!(!is_dropped(b"var/lib/dpkg/status", false));
        assert!(is_dropped(b"etc/passwd-", false));
        assert!(!is_dropped(b"etc/passwd", false));
        assert!(!is_dropped(b"usr/etc/passwd-", false));
        assert!(is_dropped(b"root/.cache/pip/x", false));
        assert!(!is_dropped(b"var/cache/debconf/x", false));
    }
}
