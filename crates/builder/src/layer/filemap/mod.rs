//! File maps: the in-memory description of one layer — files (from the host, inline bytes or an
//! existing tar), directories, symlinks, hardlinks and whiteouts — keyed by normalised
//! destination path, in the sorted order the tar is written in.
//!
//! Rules:
//! - Destinations are normalised lexically (`/a//./b/../c` -> `a/c`); one that climbs above the
//!   root is refused, and so is one whose parent is a symlink in the map (the tar would write
//!   through the link).
//! - On a base ([`FileMap::on_base`]), destinations are then resolved as `COPY` resolves them
//!   (see [`base`]): symlinks of the base among the parents are followed (`/bin/x` lands at
//!   `usr/bin/x` when `bin -> usr/bin`), and so is the last component of a directory
//!   destination (a directory, a host tree's root, an opaque directory, a tar's directory);
//!   a file, symlink or deletion at a base symlink replaces or deletes the link itself. A
//!   directory of the base cannot become a non-directory (or the reverse) unless an earlier add
//!   deleted it or made it or a parent opaque. A host tree's directory that lands on a base
//!   symlink is written at the link's target.
//! - Parent directories are created implicitly: with the base's mode, owner and mtime where the
//!   base has them, else 0755, 0:0, the layer's mtime.
//! - A later add replaces an earlier entry at the same path. A directory replaced by a directory
//!   keeps its children; replaced by anything else, its children are dropped.
//! - File content is never loaded (except inline bytes): host files are read and tar members are
//!   re-read from their offsets when the layer is written.
//! - Host directories are walked when the layer is written, not when they are added, so memory
//!   does not grow with the number of files; the result is the one a walk at add time would give.
//!   A host file with several links can be a hardlink target only inside its own tree.

mod base;
#[cfg(test)]
pub(crate) mod base_tests;
mod entries;
mod entry;
mod fingerprint;
mod host_modes;
#[cfg(test)]
mod host_modes_tests;
mod host_tree;
mod path;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::layer::tar_import;

use base::{Base, Follow, Hidden};
use entries::Entries;
pub(crate) use entry::{Content, Entry, Node, SpecialKind};
pub use entry::{EntryMeta, FileSource, Xattrs};
use entry::{DIR_MODE, FILE_MODE, PERMISSION_BITS};
pub use fingerprint::{file_identity, Fingerprint};
pub use host_modes::HostModes;
use host_tree::{host_error, mode_only, not_a_directory, HostLookup, HostTree, HostWalk, Skipped};
use path::{ancestors, check_no_nul};

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
    #[error("{path}: unsupported file type ({kind})")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    #[error("{0}: a host directory cannot hold whiteout names (`.wh.*`), which would delete base files; use --delete or --opaque")]
    HostWhiteout(PathBuf),
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
    /// A destination that cannot be resolved through the base's symlinks.
    #[error("{0} (in the base image)")]
    Resolve(#[from] layerize_basefs::ResolveError),
    #[error("/{path} is a {base} in the base image but a {layer} in this layer; delete it first (--delete /{path}) to replace it")]
    BaseConflict {
        path: String,
        base: &'static str,
        layer: &'static str,
    },
    #[error("/{path} would be written twice by one host directory, once through the base's symlink /{link} (from {src})")]
    HostTreeCollision {
        path: String,
        src: PathBuf,
        link: String,
    },
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
    /// The filesystem the layer lands on (empty: none).
    base: Base,
    /// What the layer's whiteouts hide of the base.
    hidden: Hidden,
    /// Whether a walk has already logged what it skips (sockets): a layer hashed for its key and
    /// then built is walked twice, and says so once.
    skips_reported: Arc<AtomicBool>,
}

/// An entry added one by one (or a parent directory created for one).
#[derive(Clone, Debug)]
struct Explicit {
    entry: Entry,
    seq: u64,
    /// A parent directory created implicitly: any other entry at its path takes precedence.
    implicit: bool,
}

/// Host-tree entries added before sequence number `at` are hidden at the path and below it (a
/// deletion); those added before `below`, below it only (a non-directory added over it).
#[derive(Clone, Copy, Debug, Default)]
struct Mask {
    at: u64,
    below: u64,
}

impl FileMap {
    /// An empty file map for a layer on an empty base: destinations are taken as they are.
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
        self.add_file_with_modes(dest, source, meta, HostModes::Keep)
    }

    /// Adds a regular file. A host source must exist now; unless `meta.mode` is set, its
    /// permission bits are taken as `modes` says.
    pub fn add_file_with_modes(
        &mut self,
        dest: &str,
        source: FileSource,
        meta: EntryMeta,
        modes: HostModes,
    ) -> Result<(), FileMapError> {
        let path = self.destination(dest, Follow::Parents)?;
        let (content, default_mode) = match source {
            FileSource::Inline(bytes) => (Content::Inline(bytes.into()), FILE_MODE),
            FileSource::Host(src) => {
                let metadata =
                    std::fs::metadata(&src).map_err(|source| host_error(&src, source))?;
                if !metadata.is_file() {
                    return Err(FileMapError::SourceNotFile(src));
                }
                let mode = modes.regular_file(metadata.permissions().mode());
                (Content::Host(src), mode)
            }
        };
        self.insert(path, Node::File(content), meta, default_mode)
    }

    /// Adds a directory with exactly `meta` (also where the base has one).
    pub fn add_dir(&mut self, dest: &str, meta: EntryMeta) -> Result<(), FileMapError> {
        let path = self.destination(dest, Follow::All)?;
        self.insert(path, Node::Dir, meta, DIR_MODE)
    }

    /// Adds a symlink; `target` is written verbatim (absolute targets resolve inside the image).
    pub fn add_symlink(
        &mut self,
        dest: &str,
        target: &str,
        meta: EntryMeta,
    ) -> Result<(), FileMapError> {
        let path = self.destination(dest, Follow::Parents)?;
        check_no_nul(target)?;
        self.insert(path, Node::Symlink(target.to_owned()), meta, 0o777)
    }

    /// Adds a hardlink to `target`, which must already be a regular file (or a hardlink to one)
    /// in the map. The link shares the file's metadata, as hardlinks share an inode.
    pub fn add_hardlink(&mut self, dest: &str, target: &str) -> Result<(), FileMapError> {
        let path = self.destination(dest, Follow::Parents)?;
        let target = self.destination(target, Follow::Parents)?;
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
            xattrs: entry.xattrs.clone(),
        };
        self.insert(path, Node::Hardlink(file), meta, FILE_MODE)
    }

    /// Deletes `path` of the layers below: writes the whiteout `.wh.<name>` next to it, and drops
    /// whatever this map had at or under `path`.
    pub fn delete(&mut self, path: &str) -> Result<(), FileMapError> {
        let path = self.destination(path, Follow::Parents)?;
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
        let dir = self.destination(dir, Follow::All)?;
        let marker = if dir.is_empty() {
            ".wh..wh..opq".to_owned()
        } else {
            self.check_base(&dir, &Node::Dir, self.last_seq + 1)?;
            format!("{dir}/.wh..wh..opq")
        };
        self.insert_whiteout(marker)
    }

    /// Adds the tree under host directory `src` at `dest`, walked in sorted order when the layer
    /// is written: files, directories, symlinks (targets verbatim), devices and FIFOs keep their
    /// permission bits; ownership becomes 0:0 and times the layer's mtime; host extended
    /// attributes are not taken; files hardlinked to each other (same device and inode) become
    /// tar hardlinks. Sockets are skipped with a warning; a `.wh.*` name is refused then.
    ///
    /// On a base, the tree's root directory takes the base's metadata where the base has that
    /// directory (the source directory's mode is incidental); everything below it keeps the
    /// host's permission bits. A directory of the tree at a base symlink (`bin/` of a root
    /// filesystem on a base with `bin -> usr/bin`) is written at the link's target, merged with
    /// what the tree has there.
    pub fn add_host_dir(&mut self, src: &Path, dest: &str) -> Result<(), FileMapError> {
        self.add_host_dir_with_modes(src, dest, HostModes::Keep)
    }

    /// [`FileMap::add_host_dir`] with the permission bits below the tree's root (and of the root
    /// where the base does not have it) taken as `modes` says.
    pub fn add_host_dir_with_modes(
        &mut self,
        src: &Path,
        dest: &str,
        modes: HostModes,
    ) -> Result<(), FileMapError> {
        let dest = self.destination(dest, Follow::All)?;
        let metadata = std::fs::metadata(src).map_err(|source| host_error(src, source))?;
        if !metadata.is_dir() {
            return Err(not_a_directory(src));
        }
        let seq = self.next_seq();
        self.add_host_trees(src, dest, seq, modes)
    }

    /// Adds the entries of an existing tar (plain, gzip or zstd, detected by magic bytes),
    /// normalised as host directories are: ownership 0:0, the layer's mtime, permission bits
    /// kept. Extended attributes (PAX `SCHILY.xattr.*`) are kept; `.wh.*` members stay whiteouts.
    /// Compressed input is decompressed once into an unnamed temporary file; content is never
    /// held in memory.
    pub fn add_tar(&mut self, tar: &Path) -> Result<(), FileMapError> {
        self.add_tar_members(tar, false)
    }

    /// Adds the entries of a tar as [`FileMap::add_tar`] does, but keeping each member's numeric
    /// owner: for tars whose owners are part of what they mean (a `.deb`'s files).
    pub fn add_tar_keeping_owners(&mut self, tar: &Path) -> Result<(), FileMapError> {
        self.add_tar_members(tar, true)
    }

    fn add_tar_members(&mut self, tar: &Path, keep_owners: bool) -> Result<(), FileMapError> {
        let in_tar = |err: FileMapError| FileMapError::Tar {
            path: tar.to_owned(),
            message: err.to_string(),
        };
        for member in tar_import::members(tar)? {
            let tar_import::Member {
                path,
                node,
                mode,
                uid,
                gid,
                xattrs,
            } = member;
            let follow = match node {
                Node::Dir => Follow::All,
                _ => Follow::Parents,
            };
            let path = self.destination(&path, follow).map_err(in_tar)?;
            if path.is_empty() {
                // `./` itself: the root is not an entry.
                continue;
            }
            let (uid, gid) = if keep_owners { (uid, gid) } else { (0, 0) };
            let meta = EntryMeta {
                mode: Some(mode & PERMISSION_BITS),
                uid,
                gid,
                xattrs,
                ..EntryMeta::default()
            };
            let node = match node {
                Node::Hardlink(target) => {
                    let target = self.destination(&target, Follow::Parents).map_err(in_tar)?;
                    match self.resolve_hardlink(&target)? {
                        Some((file, _)) if file != path => Node::Hardlink(file),
                        _ => {
                            return Err(FileMapError::HardlinkTarget { path, target });
                        }
                    }
                }
                node => node,
            };
            self.insert(path, node, meta, FILE_MODE).map_err(in_tar)?;
        }
        Ok(())
    }

    /// The entries in tar order, host trees walked as they come; what a walk skips (sockets) is
    /// logged by the first such walk.
    pub(crate) fn entries(&self) -> Entries<'_> {
        if self.skips_reported.swap(true, Ordering::Relaxed) {
            self.walk(Skipped::Quiet)
        } else {
            self.walk(Skipped::Warn)
        }
    }

    fn walk(&self, skipped: Skipped) -> Entries<'_> {
        Entries {
            map: self,
            explicit: self.entries.iter().peekable(),
            walks: self
                .host_trees
                .iter()
                .map(|tree| HostWalk::new(tree, skipped))
                .collect(),
            started: false,
            shadows: Vec::new(),
        }
    }

    /// The bytes of file content known without reading the host (inline files and tar
    /// members; host files and trees count nothing): a cheap measure of how long writing the
    /// layer takes, to start the longest first.
    pub(crate) fn known_content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|explicit| match &explicit.entry.node {
                Node::File(Content::Inline(bytes)) => bytes.len() as u64,
                Node::File(Content::TarMember { size, .. }) => *size,
                _ => 0,
            })
            .sum()
    }

    /// The entries added one by one, in tar order; host trees may hide some of them.
    pub(crate) fn explicit_entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, explicit)| (path.as_str(), &explicit.entry))
    }

    /// Checks the whole map, host trees walked, without reading any file's content: what writing
    /// the layer would refuse (a host entry over a base directory, an unsupported file type, a
    /// name that is not UTF-8, ...) is found before anything is written.
    /// What the walk skips is logged when the layer is written, not here, so it is said once.
    pub fn validate(&self) -> Result<(), FileMapError> {
        self.walk(Skipped::Quiet)
            .try_for_each(|entry| entry.map(drop))
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
                    best = Some((rank, Winner::Host(src, metadata, tree.modes)));
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
        let (src, metadata, modes) = match self.winner(path)? {
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
            Some(Winner::Host(src, metadata, modes)) => (src, metadata, modes),
        };
        if !metadata.file_type().is_file() || metadata.nlink() > 1 {
            return Ok(None);
        }
        let node = Node::File(Content::Host(src));
        let meta = mode_only(&metadata, modes);
        self.insert(path.to_owned(), node, meta, FILE_MODE)?;
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
        self.check_base(&path, &node, self.last_seq + 1)?;
        let seq = self.next_seq();
        self.add_implicit_parents(&path, seq);
        self.record_whiteout(&path, seq);
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
            xattrs: meta.xattrs,
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
                let entry = self.implicit_dir(parent, seq);
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
    /// An entry of a host tree: its host path and metadata, and how the tree takes modes.
    Host(PathBuf, std::fs::Metadata, HostModes),
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
            Winner::Host(_, metadata, _) if metadata.is_dir() => Kind::Dir,
            Winner::Host(_, metadata, _) if metadata.is_symlink() => Kind::Symlink,
            Winner::Host(..) => Kind::Other,
        }
    }
}
