//! File maps: the in-memory description of one layer — files (from the host, inline bytes or an
//! existing tar), directories, symlinks, hardlinks and whiteouts — keyed by normalised
//! destination path, in the sorted order the tar is written in.
//!
//! Rules:
//! - Destinations are normalised lexically (`/a//./b/../c` -> `a/c`); one that climbs above the
//!   root is refused, and so is one whose parent is a symlink in the map (the tar would write
//!   through the link).
//! - Parent directories are created implicitly (0755, 0:0, the layer's mtime).
//! - A later add replaces an earlier entry at the same path. A directory replaced by a directory
//!   keeps its children; replaced by anything else, its children are dropped.
//! - File content is never loaded (except inline bytes): host files are read and tar members are
//!   re-read from their offsets when the layer is written.
//! - Host directories are walked when the layer is written, not when they are added, so memory
//!   does not grow with the number of files; the result is the one a walk at add time would give.
//!   A host file with several links can be a hardlink target only inside its own tree.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tar_import;

/// Ownership, permissions and time of one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`0o7777` range). `None`: 0644 for files, 0755 for directories, and the
    /// host's bits for host files.
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch; `None` uses the layer's mtime.
    pub mtime: Option<u64>,
}

/// Where the content of a regular file comes from.
#[derive(Clone, Debug)]
pub enum FileSource {
    /// A file on the host, read when the layer is written.
    Host(PathBuf),
    Inline(Vec<u8>),
}

/// Why an entry cannot be added to a file map.
#[derive(Debug, thiserror::Error)]
pub enum FileMapError {
    #[error("path escapes the image root: {0}")]
    EscapesRoot(String),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("the image root itself cannot be an entry of a layer")]
    RootEntry,
    #[error("/{path} has a symlink parent /{parent} inside the layer")]
    SymlinkParent { path: String, parent: String },
    #[error("/{path} needs /{parent} to be a directory, but it is a file in the layer")]
    ParentNotDirectory { path: String, parent: String },
    #[error("source file not found: {0}")]
    SourceNotFound(PathBuf),
    #[error("source is not a regular file: {0} (add directories with a directory mapping)")]
    SourceNotFile(PathBuf),
    #[error("{path}: unsupported file type ({kind}); only regular files, directories and symlinks can be added")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    #[error("{0}: file name is not valid UTF-8")]
    NonUtf8Name(PathBuf),
    #[error("hardlink /{path} points at /{target}, which is not a regular file in the layer")]
    HardlinkTarget { path: String, target: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tar {path}: {message}")]
    Tar { path: PathBuf, message: String },
}

/// The description of one layer. See the module documentation for the rules.
///
/// A host directory is not walked when it is added: it is kept as one [`HostTree`] and walked
/// while the layer is written, merged in path order with the other entries, so memory does not
/// grow with the number of files. Every add takes a sequence number; where sources meet at a
/// path, the result is the one the adds would give if each tree had been walked when added.
#[derive(Clone, Debug, Default)]
pub struct FileMap {
    /// Entries added one by one, keyed by normalised relative path (`etc/foo`); byte order puts
    /// every parent before its children.
    entries: BTreeMap<String, Explicit>,
    host_trees: Vec<HostTree>,
    /// Where later adds hide what host trees added before them (see [`Mask`]).
    masks: BTreeMap<String, Mask>,
    /// The sequence number of the last add.
    last_seq: u64,
}

/// One entry with its resolved permission bits.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub node: Node,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<u64>,
}

/// An entry added one by one (or a parent directory created for one).
#[derive(Clone, Debug)]
struct Explicit {
    entry: Entry,
    seq: u64,
    /// A parent directory created implicitly: any other entry at its path takes precedence.
    implicit: bool,
}

/// A host directory added at `dest` (`""`: the root, which is not an entry itself).
#[derive(Clone, Debug)]
struct HostTree {
    src: PathBuf,
    dest: String,
    seq: u64,
}

/// Host-tree entries added before sequence number `at` are hidden at the path and below it (a
/// deletion); those added before `below`, below it only (a non-directory added over it).
#[derive(Clone, Copy, Debug, Default)]
struct Mask {
    at: u64,
    below: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    File(Content),
    Dir,
    Symlink(String),
    /// A hardlink to the regular file at this (normalised) path in the map.
    Hardlink(String),
    /// A character device, block device or FIFO, only ever taken from an existing tar.
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

const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
const PERMISSION_BITS: u32 = 0o7777;

impl FileMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.host_trees.is_empty()
    }

    /// Adds a regular file. A host source must exist now; its permission bits are used unless
    /// `meta.mode` is set.
    pub fn add_file(
        &mut self,
        dest: &str,
        source: FileSource,
        meta: EntryMeta,
    ) -> Result<(), FileMapError> {
        let path = normalize(dest)?;
        let (content, default_mode) = match source {
            FileSource::Inline(bytes) => (Content::Inline(bytes.into()), FILE_MODE),
            FileSource::Host(src) => {
                let metadata =
                    std::fs::metadata(&src).map_err(|source| host_error(&src, source))?;
                if !metadata.is_file() {
                    return Err(FileMapError::SourceNotFile(src));
                }
                let mode = metadata.permissions().mode() & PERMISSION_BITS;
                (Content::Host(src), mode)
            }
        };
        self.insert(path, Node::File(content), meta, default_mode)
    }

    pub fn add_dir(&mut self, dest: &str, meta: EntryMeta) -> Result<(), FileMapError> {
        let path = normalize(dest)?;
        self.insert(path, Node::Dir, meta, DIR_MODE)
    }

    /// Adds a symlink; `target` is written verbatim (absolute targets resolve inside the image).
    pub fn add_symlink(
        &mut self,
        dest: &str,
        target: &str,
        meta: EntryMeta,
    ) -> Result<(), FileMapError> {
        let path = normalize(dest)?;
        check_no_nul(target)?;
        self.insert(path, Node::Symlink(target.to_owned()), meta, 0o777)
    }

    /// Adds a hardlink to `target`, which must already be a regular file (or a hardlink to one)
    /// in the map. The link shares the file's metadata, as hardlinks share an inode.
    pub fn add_hardlink(&mut self, dest: &str, target: &str) -> Result<(), FileMapError> {
        let path = normalize(dest)?;
        let target = normalize(target)?;
        let (file, entry) =
            self.resolve_hardlink(&target)?
                .ok_or_else(|| FileMapError::HardlinkTarget {
                    path: path.clone(),
                    target: target.clone(),
                })?;
        if file == path {
            return Err(FileMapError::HardlinkTarget { path, target });
        }
        let meta = EntryMeta {
            mode: Some(entry.mode),
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
        };
        self.insert(path, Node::Hardlink(file), meta, FILE_MODE)
    }

    /// Deletes `path` of the layers below: writes the whiteout `.wh.<name>` next to it, and drops
    /// whatever this map had at or under `path`.
    pub fn delete(&mut self, path: &str) -> Result<(), FileMapError> {
        let path = normalize(path)?;
        if path.is_empty() {
            return Err(FileMapError::RootEntry);
        }
        self.remove_children(&path);
        self.entries.remove(&path);
        if !self.host_trees.is_empty() {
            let seq = self.next_seq();
            self.masks.entry(path.clone()).or_default().at = seq;
        }
        let whiteout = match path.rsplit_once('/') {
            Some((parent, name)) => format!("{parent}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.insert_whiteout(whiteout)
    }

    /// Hides everything the layers below have under `dir` (an opaque whiteout
    /// `<dir>/.wh..wh..opq`); entries of this map under `dir` stay.
    pub fn make_opaque(&mut self, dir: &str) -> Result<(), FileMapError> {
        let dir = normalize(dir)?;
        let marker = if dir.is_empty() {
            ".wh..wh..opq".to_owned()
        } else {
            format!("{dir}/.wh..wh..opq")
        };
        self.insert_whiteout(marker)
    }

    /// Adds the tree under host directory `src` at `dest`, walked in sorted order when the layer
    /// is written: files, directories and symlinks (targets verbatim) keep their permission bits;
    /// ownership becomes 0:0 and times the layer's mtime; files hardlinked to each other (same
    /// device and inode) become tar hardlinks. Sockets and devices are refused then.
    pub fn add_host_dir(&mut self, src: &Path, dest: &str) -> Result<(), FileMapError> {
        let dest = normalize(dest)?;
        let metadata = std::fs::metadata(src).map_err(|source| host_error(src, source))?;
        if !metadata.is_dir() {
            return Err(not_a_directory(src));
        }
        self.check_parents(&dest)?;
        let seq = self.next_seq();
        self.add_implicit_parents(&dest, seq);
        self.host_trees.push(HostTree {
            src: src.to_owned(),
            dest,
            seq,
        });
        Ok(())
    }

    /// Adds the entries of an existing tar (plain, gzip or zstd, detected by magic bytes),
    /// normalised as host directories are: ownership 0:0, the layer's mtime, permission bits
    /// kept. Extended attributes are dropped. Compressed input is decompressed once into an
    /// unnamed temporary file; content is never held in memory.
    pub fn add_tar(&mut self, tar: &Path) -> Result<(), FileMapError> {
        for member in tar_import::members(tar)? {
            let tar_import::Member { path, node, mode } = member;
            let path = normalize(&path).map_err(|err| FileMapError::Tar {
                path: tar.to_owned(),
                message: err.to_string(),
            })?;
            if path.is_empty() {
                // `./` itself: the root is not an entry.
                continue;
            }
            let meta = EntryMeta {
                mode: Some(mode & PERMISSION_BITS),
                ..EntryMeta::default()
            };
            let node = match node {
                Node::Hardlink(target) => {
                    let target = normalize(&target).map_err(|err| FileMapError::Tar {
                        path: tar.to_owned(),
                        message: err.to_string(),
                    })?;
                    match self.resolve_hardlink(&target)? {
                        Some((file, _)) if file != path => Node::Hardlink(file),
                        _ => {
                            return Err(FileMapError::HardlinkTarget { path, target });
                        }
                    }
                }
                node => node,
            };
            self.insert(path, node, meta, FILE_MODE)?;
        }
        Ok(())
    }

    /// The entries in tar order, host trees walked as they come.
    pub(crate) fn entries(&self) -> Entries<'_> {
        Entries {
            map: self,
            explicit: self.entries.iter().peekable(),
            walks: self.host_trees.iter().map(HostWalk::new).collect(),
            started: false,
            shadows: Vec::new(),
        }
    }

    /// The entries added one by one, in tar order; host trees may hide some of them.
    pub(crate) fn explicit_entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, explicit)| (path.as_str(), &explicit.entry))
    }

    /// The entry added one by one at `path`, if host trees do not hide it.
    pub(crate) fn get(&self, path: &str) -> Result<Option<&Entry>, FileMapError> {
        Ok(match self.winner(path)? {
            Some(Winner::Explicit(entry)) => Some(entry),
            _ => None,
        })
    }

    fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// What a layer written now would have at `path`: the visible candidate with the highest
    /// sequence number, an implicit parent only when there is no other.
    fn winner(&self, path: &str) -> Result<Option<Winner<'_>>, FileMapError> {
        let mut best: Option<(Rank, Winner<'_>)> = None;
        if let Some(explicit) = self.entries.get(path) {
            if self.visible_now(path, explicit.seq)? {
                let rank = Rank {
                    seq: explicit.seq,
                    implicit: explicit.implicit,
                };
                best = Some((rank, Winner::Explicit(&explicit.entry)));
            }
        }
        for tree in &self.host_trees {
            if let HostLookup::Entry(src, metadata) = tree.lookup(path)? {
                let rank = Rank {
                    seq: tree.seq,
                    implicit: false,
                };
                if best.as_ref().is_none_or(|(best, _)| rank.outranks(best))
                    && self.visible_now(path, tree.seq)?
                {
                    best = Some((rank, Winner::Host(src, metadata)));
                }
            }
        }
        Ok(best.map(|(_, winner)| winner))
    }

    /// Whether an entry added at `seq` is still visible at `path`: no later deletion or
    /// non-directory hides it, neither one added one by one nor one of a later host tree.
    fn visible_now(&self, path: &str, seq: u64) -> Result<bool, FileMapError> {
        if self.masked(path, seq) {
            return Ok(false);
        }
        for tree in self.host_trees.iter().filter(|tree| tree.seq > seq) {
            if matches!(tree.lookup(path)?, HostLookup::BelowNonDir) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a deletion or a non-directory added one by one after `seq` hides `path`.
    fn masked(&self, path: &str, seq: u64) -> bool {
        if self.masks.is_empty() {
            return false;
        }
        self.masks.get(path).is_some_and(|mask| mask.at > seq)
            || ancestors(path).any(|parent| {
                self.masks
                    .get(parent)
                    .is_some_and(|mask| mask.at.max(mask.below) > seq)
            })
    }

    /// Follows a hardlink chain to the regular file it ends at. A file that a host tree provides
    /// first becomes an entry of its own, so that the link has a target in the map; one with
    /// several links is refused, as its other links are only known when the tree is walked.
    fn resolve_hardlink(&mut self, path: &str) -> Result<Option<(String, Entry)>, FileMapError> {
        let (src, metadata) = match self.winner(path)? {
            None => return Ok(None),
            Some(Winner::Explicit(entry)) => {
                return Ok(match &entry.node {
                    Node::File(_) => Some((path.to_owned(), entry.clone())),
                    Node::Hardlink(file) => self
                        .entries
                        .get(file)
                        .filter(|target| matches!(target.entry.node, Node::File(_)))
                        .map(|target| (file.clone(), target.entry.clone())),
                    _ => None,
                })
            }
            Some(Winner::Host(src, metadata)) => (src, metadata),
        };
        if !metadata.file_type().is_file() || metadata.nlink() > 1 {
            return Ok(None);
        }
        let node = Node::File(Content::Host(src));
        self.insert(path.to_owned(), node, mode_only(&metadata), FILE_MODE)?;
        Ok(self
            .entries
            .get(path)
            .map(|explicit| (path.to_owned(), explicit.entry.clone())))
    }

    fn insert_whiteout(&mut self, path: String) -> Result<(), FileMapError> {
        let content = Node::File(Content::Inline(Arc::from(&[][..])));
        self.insert(path, content, EntryMeta::default(), FILE_MODE)
    }

    /// Inserts `node` at the normalised `path` after checking and creating its parents.
    fn insert(
        &mut self,
        path: String,
        node: Node,
        meta: EntryMeta,
        default_mode: u32,
    ) -> Result<(), FileMapError> {
        if path.is_empty() {
            return Err(FileMapError::RootEntry);
        }
        self.check_parents(&path)?;
        let seq = self.next_seq();
        self.add_implicit_parents(&path, seq);
        if !matches!(node, Node::Dir) {
            self.remove_children(&path);
            if !self.host_trees.is_empty() {
                self.masks.entry(path.clone()).or_default().below = seq;
            }
        }
        let entry = Entry {
            node,
            mode: meta.mode.unwrap_or(default_mode) & PERMISSION_BITS,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
        };
        self.entries.insert(
            path,
            Explicit {
                entry,
                seq,
                implicit: false,
            },
        );
        Ok(())
    }

    /// Refuses a `path` whose parents in the layer are not all directories.
    fn check_parents(&self, path: &str) -> Result<(), FileMapError> {
        for parent in ancestors(path) {
            match self.winner(parent)?.map(|winner| winner.kind()) {
                None | Some(Kind::Dir) => {}
                Some(Kind::Symlink) => {
                    return Err(FileMapError::SymlinkParent {
                        path: path.to_owned(),
                        parent: parent.to_owned(),
                    })
                }
                Some(Kind::Other) => {
                    return Err(FileMapError::ParentNotDirectory {
                        path: path.to_owned(),
                        parent: parent.to_owned(),
                    })
                }
            }
        }
        Ok(())
    }

    fn add_implicit_parents(&mut self, path: &str, seq: u64) {
        for parent in ancestors(path) {
            if !self.entries.contains_key(parent) {
                let entry = Entry {
                    node: Node::Dir,
                    mode: DIR_MODE,
                    uid: 0,
                    gid: 0,
                    mtime: None,
                };
                let implicit = Explicit {
                    entry,
                    seq,
                    implicit: true,
                };
                self.entries.insert(parent.to_owned(), implicit);
            }
        }
    }

    fn remove_children(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let children: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(child, _)| child.starts_with(&prefix))
            .map(|(child, _)| child.clone())
            .collect();
        for child in children {
            self.entries.remove(&child);
        }
    }
}

/// Precedence where entries meet at a path: the later add, an implicit parent last.
#[derive(Clone, Copy, Debug)]
struct Rank {
    seq: u64,
    implicit: bool,
}

impl Rank {
    fn outranks(&self, other: &Rank) -> bool {
        match (self.implicit, other.implicit) {
            (false, true) => true,
            (true, false) => false,
            _ => self.seq > other.seq,
        }
    }
}

/// The entry at a path while the map is being built.
enum Winner<'a> {
    Explicit(&'a Entry),
    /// An entry of a host tree: its host path and metadata.
    Host(PathBuf, std::fs::Metadata),
}

enum Kind {
    Dir,
    Symlink,
    Other,
}

impl Winner<'_> {
    fn kind(&self) -> Kind {
        match self {
            Winner::Explicit(entry) => match entry.node {
                Node::Dir => Kind::Dir,
                Node::Symlink(_) => Kind::Symlink,
                _ => Kind::Other,
            },
            Winner::Host(_, metadata) if metadata.is_dir() => Kind::Dir,
            Winner::Host(_, metadata) if metadata.is_symlink() => Kind::Symlink,
            Winner::Host(..) => Kind::Other,
        }
    }
}

/// What a host tree has at a layer path, looked up without walking the tree.
enum HostLookup {
    Absent,
    Entry(PathBuf, std::fs::Metadata),
    /// The tree has a non-directory at a parent of the path, which hides what earlier adds put
    /// below it.
    BelowNonDir,
}

impl HostTree {
    fn lookup(&self, path: &str) -> Result<HostLookup, FileMapError> {
        let rel = if self.dest.is_empty() {
            path
        } else if path == self.dest {
            let metadata = std::fs::metadata(&self.src).map_err(|source| FileMapError::Io {
                path: self.src.clone(),
                source,
            })?;
            return Ok(HostLookup::Entry(self.src.clone(), metadata));
        } else {
            match path
                .strip_prefix(self.dest.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(rel) => rel,
                None => return Ok(HostLookup::Absent),
            }
        };
        // Component by component, so that a symlink inside the tree is never followed.
        let mut host = self.src.clone();
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            host.push(part);
            let metadata = match std::fs::symlink_metadata(&host) {
                Ok(metadata) => metadata,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(HostLookup::Absent),
                Err(source) => return Err(FileMapError::Io { path: host, source }),
            };
            if parts.peek().is_none() {
                return Ok(HostLookup::Entry(host, metadata));
            }
            if !metadata.is_dir() {
                return Ok(HostLookup::BelowNonDir);
            }
        }
        Ok(HostLookup::Absent)
    }
}

/// The entries of a file map in tar order: the entries added one by one merged with the walks of
/// the host trees. Where several have a path, the one with the highest [`Rank`] that no later
/// add hides is written.
pub(crate) struct Entries<'a> {
    map: &'a FileMap,
    explicit: std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Explicit>>,
    walks: Vec<HostWalk<'a>>,
    /// Whether the walks have read ahead their first entries.
    started: bool,
    /// `(path/, seq)` of each non-directory of a host tree whose path may still have entries of
    /// earlier adds below it, which it hides.
    shadows: Vec<(String, u64)>,
}

impl Iterator for Entries<'_> {
    type Item = Result<(String, Entry), FileMapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}

impl Entries<'_> {
    fn advance(&mut self) -> Result<Option<(String, Entry)>, FileMapError> {
        if !self.started {
            self.started = true;
            for walk in &mut self.walks {
                walk.next = walk.advance()?;
            }
        }
        loop {
            let mut next = self.explicit.peek().map(|(path, _)| path.as_str());
            for walk in &self.walks {
                if let Some(item) = &walk.next {
                    if next.is_none_or(|next| item.path.as_str() < next) {
                        next = Some(&item.path);
                    }
                }
            }
            let Some(path) = next.map(str::to_owned) else {
                return Ok(None);
            };
            self.shadows
                .retain(|(prefix, _)| path < *prefix || path.starts_with(prefix.as_str()));

            let visible = |shadows: &[(String, u64)], seq: u64| {
                !self.map.masked(&path, seq)
                    && !shadows
                        .iter()
                        .any(|(prefix, shadow)| *shadow > seq && path.starts_with(prefix.as_str()))
            };
            let mut best: Option<Candidate> = None;
            if let Some((_, explicit)) = self.explicit.next_if(|(next, _)| **next == path) {
                if visible(&self.shadows, explicit.seq) {
                    let rank = Rank {
                        seq: explicit.seq,
                        implicit: explicit.implicit,
                    };
                    best = Some(Candidate {
                        rank,
                        entry: explicit.entry.clone(),
                        linked: None,
                    });
                }
            }
            for (index, walk) in self.walks.iter_mut().enumerate() {
                if walk.next.as_ref().is_none_or(|item| item.path != path) {
                    continue;
                }
                let item = walk.next.take().expect("checked above");
                walk.next = walk.advance()?;
                let is_dir = matches!(item.entry.node, Node::Dir);
                let rank = Rank {
                    seq: walk.tree.seq,
                    implicit: false,
                };
                if best.as_ref().is_none_or(|best| rank.outranks(&best.rank))
                    && visible(&self.shadows, rank.seq)
                {
                    best = Some(Candidate {
                        rank,
                        entry: item.entry,
                        linked: item.inode.map(|inode| (index, inode)),
                    });
                }
                if !is_dir {
                    self.shadows.push((format!("{path}/"), rank.seq));
                }
            }
            let Some(Candidate {
                mut entry, linked, ..
            }) = best
            else {
                continue;
            };
            if let Some((index, inode)) = linked {
                match self.walks[index].inodes.entry(inode) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        entry.node = Node::Hardlink(first.get().clone())
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(path.clone());
                    }
                }
            }
            return Ok(Some((path, entry)));
        }
    }
}

/// One of the entries at a path while host trees are walked.
struct Candidate {
    rank: Rank,
    entry: Entry,
    /// The walk and the inode of a host file with several links.
    linked: Option<(usize, Inode)>,
}

/// Device and inode number.
type Inode = (u64, u64);

/// The walk of one host tree in tar order, one directory listing per level held at a time.
struct HostWalk<'a> {
    tree: &'a HostTree,
    /// The next entry, read ahead so that walks can be merged.
    next: Option<HostItem>,
    /// Whether the tree's root has been listed.
    started: bool,
    /// The directories being listed, outermost first.
    frames: Vec<Frame>,
    /// The first path in tar order of each file with several links, which the others link to.
    inodes: HashMap<Inode, String>,
}

struct HostItem {
    path: String,
    entry: Entry,
    /// Device and inode of a regular file with several links.
    inode: Option<Inode>,
}

/// One directory's children in tar order: each child's own entry at its name, and for a
/// subdirectory its contents at `name/` — so `a.txt` (`.` < `/`) comes between `a` and `a/x`,
/// as in the byte order of whole paths.
struct Frame {
    dir: PathBuf,
    dest: String,
    children: std::vec::IntoIter<Child>,
}

struct Child {
    /// The name, followed by `/` for a subdirectory's contents.
    key: Vec<u8>,
    contents: bool,
}

impl<'a> HostWalk<'a> {
    fn new(tree: &'a HostTree) -> Self {
        HostWalk {
            tree,
            next: None,
            started: false,
            frames: Vec::new(),
            inodes: HashMap::new(),
        }
    }

    fn advance(&mut self) -> Result<Option<HostItem>, FileMapError> {
        if !self.started {
            self.started = true;
            let tree = self.tree;
            self.frames
                .push(Frame::read(tree.src.clone(), tree.dest.clone())?);
            if !tree.dest.is_empty() {
                let metadata =
                    std::fs::metadata(&tree.src).map_err(|source| host_error(&tree.src, source))?;
                if !metadata.is_dir() {
                    return Err(not_a_directory(&tree.src));
                }
                let entry = host_entry(Node::Dir, &metadata);
                let path = tree.dest.clone();
                return Ok(Some(HostItem {
                    path,
                    entry,
                    inode: None,
                }));
            }
        }
        while let Some(frame) = self.frames.last_mut() {
            let Some(child) = frame.children.next() else {
                self.frames.pop();
                continue;
            };
            let name_bytes = &child.key[..child.key.len() - usize::from(child.contents)];
            let src = frame.dir.join(OsStr::from_bytes(name_bytes));
            let name = std::str::from_utf8(name_bytes)
                .map_err(|_| FileMapError::NonUtf8Name(src.clone()))?;
            let path = join(&frame.dest, name);
            if child.contents {
                self.frames.push(Frame::read(src, path)?);
                continue;
            }
            return host_item(src, path).map(Some);
        }
        Ok(None)
    }
}

impl Frame {
    fn read(dir: PathBuf, dest: String) -> Result<Frame, FileMapError> {
        let io_error = |source| FileMapError::Io {
            path: dir.clone(),
            source,
        };
        let mut children = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let key = entry.file_name().into_vec();
            if entry.file_type().map_err(io_error)?.is_dir() {
                let mut contents = key.clone();
                contents.push(b'/');
                children.push(Child {
                    key: contents,
                    contents: true,
                });
            }
            children.push(Child {
                key,
                contents: false,
            });
        }
        children.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(Frame {
            dir,
            dest,
            children: children.into_iter(),
        })
    }
}

/// The entry of the host file `src` at `path`: only its type, permission bits and link target
/// are kept.
fn host_item(src: PathBuf, path: String) -> Result<HostItem, FileMapError> {
    let io_error = |source| FileMapError::Io {
        path: src.clone(),
        source,
    };
    let metadata = std::fs::symlink_metadata(&src).map_err(io_error)?;
    let file_type = metadata.file_type();
    let mut inode = None;
    let node = if file_type.is_dir() {
        Node::Dir
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(&src).map_err(io_error)?;
        let target = target
            .to_str()
            .ok_or_else(|| FileMapError::NonUtf8Name(src.clone()))?;
        Node::Symlink(target.to_owned())
    } else if file_type.is_file() {
        if metadata.nlink() > 1 {
            inode = Some((metadata.dev(), metadata.ino()));
        }
        Node::File(Content::Host(src))
    } else {
        let kind = if file_type.is_socket() {
            "socket"
        } else if file_type.is_fifo() {
            "fifo"
        } else if file_type.is_char_device() {
            "character device"
        } else if file_type.is_block_device() {
            "block device"
        } else {
            "unknown"
        };
        return Err(FileMapError::UnsupportedFileType { path: src, kind });
    };
    let entry = host_entry(node, &metadata);
    Ok(HostItem { path, entry, inode })
}

/// Host metadata reduced to what a layer keeps: the permission bits.
fn host_entry(node: Node, metadata: &std::fs::Metadata) -> Entry {
    Entry {
        node,
        mode: metadata.permissions().mode() & PERMISSION_BITS,
        uid: 0,
        gid: 0,
        mtime: None,
    }
}

/// The parents of a normalised path, outermost first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(index, _)| &path[..index])
}

fn not_a_directory(path: &Path) -> FileMapError {
    FileMapError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
    }
}

/// Normalises a destination lexically to a relative path without `.`, `..`, empty or trailing
/// components; `""` is the root.
pub(crate) fn normalize(dest: &str) -> Result<String, FileMapError> {
    check_no_nul(dest)?;
    let mut parts: Vec<&str> = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(FileMapError::EscapesRoot(dest.to_owned()));
                }
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn check_no_nul(text: &str) -> Result<(), FileMapError> {
    if text.contains('\0') {
        return Err(FileMapError::InvalidPath {
            path: text.to_owned(),
            reason: "contains a NUL byte",
        });
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Host metadata reduced to what a layer keeps: the permission bits.
fn mode_only(metadata: &std::fs::Metadata) -> EntryMeta {
    EntryMeta {
        mode: Some(metadata.permissions().mode() & PERMISSION_BITS),
        ..EntryMeta::default()
    }
}

fn host_error(path: &Path, source: io::Error) -> FileMapError {
    if source.kind() == io::ErrorKind::NotFound {
        FileMapError::SourceNotFound(path.to_owned())
    } else {
        FileMapError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path kind mode uid:gid` for every entry, in map (= tar) order.
    fn listing(map: &FileMap) -> Vec<String> {
        map.entries()
            .map(|item| {
                let (path, entry) = item.unwrap();
                let kind = match &entry.node {
                    Node::File(_) => "file".to_owned(),
                    Node::Dir => "dir".to_owned(),
                    Node::Symlink(target) => format!("symlink->{target}"),
                    Node::Hardlink(target) => format!("hardlink->{target}"),
                    Node::Special { .. } => "special".to_owned(),
                };
                format!("{path} {kind} {:o} {}:{}", entry.mode, entry.uid, entry.gid)
            })
            .collect()
    }

    fn inline(text: &str) -> FileSource {
        FileSource::Inline(text.as_bytes().to_vec())
    }

    #[test]
    fn normalises_destinations_lexically() {
        for (input, expected) in [
            ("/etc/foo", "etc/foo"),
            ("etc/foo", "etc/foo"),
            ("//etc///foo/", "etc/foo"),
            ("./etc/./foo", "etc/foo"),
            ("a/../b", "b"),
            ("a/b/../../c", "c"),
            ("/", ""),
            (".", ""),
            ("a/..", ""),
        ] {
            assert_eq!(normalize(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn refuses_paths_that_escape_the_root() {
        for input in ["../x", "/../x", "a/../../x", "./..", "a/b/../../../etc"] {
            let err = normalize(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("path escapes the image root: {input}")
            );
        }
        let mut map = FileMap::new();
        let err = map
            .add_file("../x", inline("x"), EntryMeta::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "path escapes the image root: ../x");
        assert!(map.is_empty());
    }

    #[test]
    fn refuses_nul_bytes_and_the_root_itself() {
        let mut map = FileMap::new();
        assert!(matches!(
            map.add_file("a\0b", inline(""), EntryMeta::default()),
            Err(FileMapError::InvalidPath { .. })
        ));
        assert!(matches!(
            map.add_file("/", inline(""), EntryMeta::default()),
            Err(FileMapError::RootEntry)
        ));
        assert!(matches!(map.delete("/"), Err(FileMapError::RootEntry)));
    }

    #[test]
    fn refuses_a_path_below_a_symlink_of_the_map() {
        let mut map = FileMap::new();
        map.add_symlink("/lnk", "/etc", EntryMeta::default())
            .unwrap();
        let err = map
            .add_file("/lnk/passwd", inline("x"), EntryMeta::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/lnk/passwd has a symlink parent /lnk inside the layer"
        );
        let err = map.add_dir("lnk/a/b", EntryMeta::default()).unwrap_err();
        assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
        assert_eq!(listing(&map).len(), 1);
    }

    #[test]
    fn refuses_a_path_below_a_file_of_the_map() {
        let mut map = FileMap::new();
        map.add_file("/a", inline("x"), EntryMeta::default())
            .unwrap();
        let err = map
            .add_file("/a/b", inline("y"), EntryMeta::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/a/b needs /a to be a directory, but it is a file in the layer"
        );
    }

    #[test]
    fn creates_parents_implicitly_and_keeps_sorted_order() {
        let mut map = FileMap::new();
        map.add_file("/usr/bin/b", inline("b"), EntryMeta::default())
            .unwrap();
        map.add_file("/etc/x", inline("x"), EntryMeta::default())
            .unwrap();
        map.add_file(
            "/usr/bin/a",
            inline("a"),
            EntryMeta {
                mode: Some(0o755),
                uid: 1000,
                gid: 100,
                mtime: None,
            },
        )
        .unwrap();
        assert_eq!(
            listing(&map),
            [
                "etc dir 755 0:0",
                "etc/x file 644 0:0",
                "usr dir 755 0:0",
                "usr/bin dir 755 0:0",
                "usr/bin/a file 755 1000:100",
                "usr/bin/b file 644 0:0",
            ]
        );
        // An explicit directory takes over the implicit one and keeps its children.
        map.add_dir(
            "/usr",
            EntryMeta {
                mode: Some(0o700),
                ..EntryMeta::default()
            },
        )
        .unwrap();
        assert_eq!(listing(&map)[2], "usr dir 700 0:0");
        assert_eq!(listing(&map).len(), 6);
    }

    #[test]
    fn later_adds_replace_earlier_ones() {
        let mut map = FileMap::new();
        map.add_file("/opt/app/x", inline("x"), EntryMeta::default())
            .unwrap();
        map.add_file("/opt/app/y", inline("y"), EntryMeta::default())
            .unwrap();
        map.add_symlink("/opt/app", "/srv/app", EntryMeta::default())
            .unwrap();
        assert_eq!(
            listing(&map),
            ["opt dir 755 0:0", "opt/app symlink->/srv/app 777 0:0"]
        );
        map.add_file("/opt/app", inline("now a file"), EntryMeta::default())
            .unwrap();
        assert_eq!(listing(&map), ["opt dir 755 0:0", "opt/app file 644 0:0"]);
    }

    #[test]
    fn deletions_become_whiteouts() {
        let mut map = FileMap::new();
        map.add_file("/etc/keep", inline("k"), EntryMeta::default())
            .unwrap();
        map.add_file("/etc/gone/inner", inline("i"), EntryMeta::default())
            .unwrap();
        map.delete("/etc/gone").unwrap();
        map.delete("/toplevel").unwrap();
        map.make_opaque("/var/cache").unwrap();
        assert_eq!(
            listing(&map),
            [
                ".wh.toplevel file 644 0:0",
                "etc dir 755 0:0",
                "etc/.wh.gone file 644 0:0",
                "etc/keep file 644 0:0",
                "var dir 755 0:0",
                "var/cache dir 755 0:0",
                "var/cache/.wh..wh..opq file 644 0:0",
            ]
        );
    }

    #[test]
    fn host_files_must_exist_and_keep_their_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let mut map = FileMap::new();
        let err = map
            .add_file(
                "/x",
                FileSource::Host(missing.clone()),
                EntryMeta::default(),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("source file not found: {}", missing.display())
        );
        let err = map
            .add_file(
                "/x",
                FileSource::Host(dir.path().into()),
                EntryMeta::default(),
            )
            .unwrap_err();
        assert!(matches!(err, FileMapError::SourceNotFile(_)), "{err}");

        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        map.add_file(
            "/bin/run",
            FileSource::Host(script.clone()),
            EntryMeta::default(),
        )
        .unwrap();
        map.add_file(
            "/bin/run2",
            FileSource::Host(script),
            EntryMeta {
                mode: Some(0o600),
                ..EntryMeta::default()
            },
        )
        .unwrap();
        assert_eq!(
            listing(&map),
            [
                "bin dir 755 0:0",
                "bin/run file 750 0:0",
                "bin/run2 file 600 0:0"
            ]
        );
    }

    #[test]
    fn host_dirs_are_walked_with_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/sub")).unwrap();
        std::fs::write(root.join("b/sub/file"), "data").unwrap();
        std::fs::write(root.join("a"), "a").unwrap();
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(root.join("b/sub/file"), root.join("0-link")).unwrap();
        std::os::unix::fs::symlink("../escapes/verbatim", root.join("b/lnk")).unwrap();
        std::fs::set_permissions(root.join("b"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();

        let mut map = FileMap::new();
        map.add_host_dir(root, "/srv/data").unwrap();
        let listed = listing(&map);
        assert_eq!(
            listed,
            [
                "srv dir 755 0:0",
                "srv/data dir 750 0:0",
                "srv/data/0-link file 644 0:0",
                "srv/data/a file 4755 0:0",
                "srv/data/b dir 700 0:0",
                "srv/data/b/lnk symlink->../escapes/verbatim 777 0:0",
                "srv/data/b/sub dir 755 0:0",
                "srv/data/b/sub/file hardlink->srv/data/0-link 644 0:0",
            ]
        );
    }

    #[test]
    fn host_dirs_are_walked_in_the_byte_order_of_whole_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["a/x", "a/x.d/y", "b"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for file in ["a.txt", "a-b", "a/x-1", "a/x/z", "a0"] {
            std::fs::write(root.join(file), file).unwrap();
        }
        let mut map = FileMap::new();
        map.add_host_dir(root, "/").unwrap();
        let paths: Vec<String> = listing(&map)
            .iter()
            .map(|line| line.split(' ').next().unwrap().to_owned())
            .collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(
            paths,
            ["a", "a-b", "a.txt", "a/x", "a/x-1", "a/x.d", "a/x.d/y", "a/x/z", "a0", "b"]
        );
    }

    /// A host tree with `etc/` (0750) holding `conf` and `conf.d/a`, and `bin/` (0700) holding
    /// `tool` and the symlink `sh`.
    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("etc/conf"), "c").unwrap();
        std::fs::write(root.join("etc/conf.d/a"), "a").unwrap();
        std::fs::write(root.join("bin/tool"), "t").unwrap();
        std::os::unix::fs::symlink("tool", root.join("bin/sh")).unwrap();
        for (path, mode) in [("etc", 0o750), ("bin", 0o700), ("", 0o755)] {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        dir
    }

    #[test]
    fn host_trees_merge_with_other_adds_in_add_order() {
        let tree = sample_tree();
        let mut map = FileMap::new();
        // Before the tree: replaced by it, or kept beside it.
        map.add_file("/etc/conf", inline("early"), EntryMeta::default())
            .unwrap();
        map.add_file("/etc/conf.d/b", inline("b"), EntryMeta::default())
            .unwrap();
        map.add_file("/bin/tool/inner", inline("i"), EntryMeta::default())
            .unwrap();
        map.add_host_dir(tree.path(), "/").unwrap();
        // After the tree: replaces its entries, deletes some, adds below its directories.
        map.add_symlink("/etc/conf.d", "/elsewhere", EntryMeta::default())
            .unwrap();
        map.delete("/bin/sh").unwrap();
        map.add_file("/bin/new", inline("n"), EntryMeta::default())
            .unwrap();
        assert_eq!(
            listing(&map),
            [
                "bin dir 700 0:0",
                "bin/.wh.sh file 644 0:0",
                "bin/new file 644 0:0",
                "bin/tool file 644 0:0",
                "etc dir 750 0:0",
                "etc/conf file 644 0:0",
                "etc/conf.d symlink->/elsewhere 777 0:0",
            ]
        );
        let (_, conf) = map
            .entries()
            .map(Result::unwrap)
            .find(|(path, _)| path == "etc/conf")
            .unwrap();
        assert!(matches!(conf.node, Node::File(Content::Host(_))));

        // Parents are checked against the tree when an entry is added.
        let err = map
            .add_file("/bin/tool/x", inline("x"), EntryMeta::default())
            .unwrap_err();
        assert!(
            matches!(err, FileMapError::ParentNotDirectory { .. }),
            "{err}"
        );
        let err = map
            .add_file("/etc/conf.d/x", inline("x"), EntryMeta::default())
            .unwrap_err();
        assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
        let mut other = FileMap::new();
        other.add_host_dir(tree.path(), "/").unwrap();
        let err = other
            .add_file("/bin/sh/x", inline("x"), EntryMeta::default())
            .unwrap_err();
        assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
        // A deleted directory of the tree can come back with implicit parents only.
        other.delete("/etc").unwrap();
        other
            .add_file("/etc/conf.d/new", inline("x"), EntryMeta::default())
            .unwrap();
        assert_eq!(
            listing(&other),
            [
                ".wh.etc file 644 0:0",
                "bin dir 700 0:0",
                "bin/sh symlink->tool 777 0:0",
                "bin/tool file 644 0:0",
                "etc dir 755 0:0",
                "etc/conf.d dir 755 0:0",
                "etc/conf.d/new file 644 0:0",
            ]
        );
    }

    #[test]
    fn later_host_trees_replace_earlier_ones() {
        let first = sample_tree();
        let second = tempfile::tempdir().unwrap();
        std::fs::create_dir(second.path().join("etc")).unwrap();
        std::fs::write(second.path().join("etc/conf.d"), "now a file").unwrap();
        std::fs::write(second.path().join("bin"), "now a file").unwrap();
        std::fs::set_permissions(
            second.path().join("etc"),
            std::fs::Permissions::from_mode(0o711),
        )
        .unwrap();
        let mut map = FileMap::new();
        map.add_host_dir(first.path(), "/").unwrap();
        map.add_host_dir(second.path(), "/").unwrap();
        // An implicit parent never overrides a tree's directory.
        map.add_file("/etc/extra", inline("x"), EntryMeta::default())
            .unwrap();
        assert_eq!(
            listing(&map),
            [
                "bin file 644 0:0",
                "etc dir 711 0:0",
                "etc/conf file 644 0:0",
                "etc/conf.d file 644 0:0",
                "etc/extra file 644 0:0",
            ]
        );
        // The tree's root directory at its destination, and links to its files.
        let mut nested = FileMap::new();
        nested.add_host_dir(first.path(), "/opt/app").unwrap();
        nested
            .add_hardlink("/opt/link", "/opt/app/etc/conf")
            .unwrap();
        assert_eq!(
            listing(&nested)[..3],
            [
                "opt dir 755 0:0",
                "opt/app dir 755 0:0",
                "opt/app/bin dir 700 0:0",
            ]
        );
        assert!(listing(&nested).contains(&"opt/link hardlink->opt/app/etc/conf 644 0:0".into()));
    }

    #[test]
    fn host_dirs_with_sockets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let mut map = FileMap::new();
        map.add_host_dir(dir.path(), "/x").unwrap();
        let err = map.entries().find_map(Result::err).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: unsupported file type (socket); only regular files, directories and symlinks can be added",
                dir.path().join("sock").display()
            )
        );
    }

    #[test]
    fn hardlinks_need_a_regular_file_target() {
        let mut map = FileMap::new();
        map.add_file("/bin/busybox", inline("bb"), EntryMeta::default())
            .unwrap();
        map.add_hardlink("/bin/sh", "/bin/busybox").unwrap();
        // A link to a link points at the file itself.
        map.add_hardlink("/bin/ash", "bin/sh").unwrap();
        map.add_dir("/d", EntryMeta::default()).unwrap();
        for (dest, target) in [
            ("/x", "/d"),
            ("/y", "/missing"),
            ("/bin/busybox", "/bin/sh"),
        ] {
            let err = map.add_hardlink(dest, target).unwrap_err();
            assert!(matches!(err, FileMapError::HardlinkTarget { .. }), "{err}");
        }
        assert_eq!(
            listing(&map),
            [
                "bin dir 755 0:0",
                "bin/ash hardlink->bin/busybox 644 0:0",
                "bin/busybox file 644 0:0",
                "bin/sh hardlink->bin/busybox 644 0:0",
                "d dir 755 0:0",
            ]
        );
    }
}
