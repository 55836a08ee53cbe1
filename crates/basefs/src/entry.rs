//! One path of an image filesystem: its type, permission bits, ownership, time, size and link
//! target.

/// The type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A hard link; [`Entry::link`] is the path of the file it shares an inode with.
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// A borrowed view of one entry of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Normalised, relative to the root (`etc/passwd`).
    pub path: &'a str,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` range).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Bytes of a regular file's content; 0 for everything else.
    pub size: u64,
    /// A symlink's target as written, or a hardlink's target path; `""` for other kinds.
    pub link: &'a str,
}

/// An entry that owns its strings, for building an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub size: u64,
    pub link: String,
}

impl OwnedEntry {
    pub fn as_entry(&self) -> Entry<'_> {
        Entry {
            path: &self.path,
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            size: self.size,
            link: &self.link,
        }
    }
}

impl Entry<'_> {
    pub fn to_owned_entry(&self) -> OwnedEntry {
        OwnedEntry {
            path: self.path.to_owned(),
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            size: self.size,
            link: self.link.to_owned(),
        }
    }
}
