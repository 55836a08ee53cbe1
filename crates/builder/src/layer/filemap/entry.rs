//! The entry model of a file map: what one path of a layer is (file, directory, link, device,
//! whiteout as an empty file) with its permission bits, ownership, time and extended attributes,
//! and where a file's bytes come from.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// Extended attributes by full name (`security.capability`), values as raw bytes; sorted by name,
/// the order they are written in.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// Ownership, permissions, time and extended attributes of one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`0o7777` range). `None`: 0644 for files, 0755 for directories, and the
    /// host's bits for host files.
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch; `None` uses the layer's mtime.
    pub mtime: Option<u64>,
    pub xattrs: Xattrs,
}

/// Where the content of a regular file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// A file on the host, read when the layer is written.
    Host(PathBuf),
    Inline(Vec<u8>),
}

/// One entry with its resolved permission bits.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub node: Node,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<u64>,
    pub xattrs: Xattrs,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    File(Content),
    Dir,
    Symlink(String),
    /// A hardlink to the regular file at this (normalised) path in the map.
    Hardlink(String),
    /// A character device, block device or FIFO (whose numbers are 0), from a host tree or a tar.
    Special {
        kind: SpecialKind,
        major: u32,
        minor: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpecialKind {
    Char,
    Block,
    Fifo,
}

#[derive(Clone, Debug)]
pub(crate) enum Content {
    Host(PathBuf),
    Inline(Arc<[u8]>),
    /// `size` bytes at `offset` in an uncompressed tar (the input itself or a spooled copy).
    TarMember {
        archive: Arc<File>,
        offset: u64,
        size: u64,
    },
}

pub(crate) const DIR_MODE: u32 = 0o755;
pub(crate) const FILE_MODE: u32 = 0o644;
pub(crate) const PERMISSION_BITS: u32 = 0o7777;
