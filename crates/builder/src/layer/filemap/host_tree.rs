//! Host directory trees of a file map: looking a layer path up in a tree without walking it, and
//! walking a tree in tar order with one directory listing per level in memory. A tree gives
//! files, directories, symlinks, devices and FIFOs; sockets are skipped (as GNU tar does) and
//! whiteout names refused.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entry::{Content, Entry, EntryMeta, Node, SpecialKind, Xattrs};
use super::host_modes::HostModes;
use super::path::join;
use super::FileMapError;

/// A host directory added at `dest` (`""`: the root, which is not an entry itself).
#[derive(Clone, Debug)]
pub(super) struct HostTree {
    pub(super) src: PathBuf,
    pub(super) dest: String,
    pub(super) seq: u64,
    /// Layer paths of directories of the tree that are written elsewhere, as trees of their own
    /// (where they meet a base symlink); sorted.
    pub(super) skip: Vec<String>,
    /// The root directory's entry when it is not the host's (the base's directory).
    pub(super) root: Option<Entry>,
    /// The base symlink this tree is a directory of another tree written through.
    pub(super) via: Option<String>,
    /// How the tree's permission bits are taken.
    pub(super) modes: HostModes,
}

/// What a host tree has at a layer path, looked up without walking the tree.
pub(super) enum HostLookup {
    Absent,
    Entry(PathBuf, std::fs::Metadata),
    /// The tree has a non-directory at a parent of the path, which hides what earlier adds put
    /// below it.
    BelowNonDir,
}

impl HostTree {
    /// Whether `path` is at or below one of the directories written elsewhere.
    fn skips(&self, path: &str) -> bool {
        self.skip.iter().any(|skip| {
            path.strip_prefix(skip.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub(super) fn lookup(&self, path: &str) -> Result<HostLookup, FileMapError> {
        if self.skips(path) {
            return Ok(HostLookup::Absent);
        }
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
            if metadata.file_type().is_socket() {
                // Not written by the walk either.
                return Ok(HostLookup::Absent);
            }
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

/// Device and inode number.
pub(super) type Inode = (u64, u64);

/// The walk of one host tree in tar order, one directory listing per level held at a time.
pub(super) struct HostWalk<'a> {
    pub(super) tree: &'a HostTree,
    skipped: Skipped,
    /// The next entry, read ahead so that walks can be merged.
    pub(super) next: Option<HostItem>,
    /// Whether the tree's root has been listed.
    pub(super) started: bool,
    /// The directories being listed, outermost first.
    pub(super) frames: Vec<Frame>,
    /// The first path in tar order of each file with several links, which the others link to.
    pub(super) inodes: HashMap<Inode, String>,
}

pub(super) struct HostItem {
    pub(super) path: String,
    pub(super) entry: Entry,
    /// Device and inode of a regular file with several links.
    pub(super) inode: Option<Inode>,
}

/// One directory's children in tar order: each child's own entry at its name, and for a
/// subdirectory its contents at `name/` — so `a.txt` (`.` < `/`) comes between `a` and `a/x`,
/// as in the byte order of whole paths.
pub(super) struct Frame {
    pub(super) dir: PathBuf,
    pub(super) dest: String,
    pub(super) children: std::vec::IntoIter<Child>,
}

pub(super) struct Child {
    /// The name, followed by `/` for a subdirectory's contents.
    pub(super) key: Vec<u8>,
    pub(super) contents: bool,
}

/// Whether a walk logs the host entries it skips (sockets): the walk that writes the layer does,
/// a checking walk before it does not, so each is said once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Skipped {
    Warn,
    Quiet,
}

impl<'a> HostWalk<'a> {
    pub(super) fn new(tree: &'a HostTree, skipped: Skipped) -> Self {
        HostWalk {
            tree,
            skipped,
            next: None,
            started: false,
            frames: Vec::new(),
            inodes: HashMap::new(),
        }
    }

    pub(super) fn advance(&mut self) -> Result<Option<HostItem>, FileMapError> {
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
                let entry = match &tree.root {
                    Some(root) => root.clone(),
                    None => host_entry(Node::Dir, &metadata, tree.modes),
                };
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
            if name.starts_with(WHITEOUT_PREFIX) {
                return Err(FileMapError::HostWhiteout(src));
            }
            let path = join(&frame.dest, name);
            if self.tree.skips(&path) {
                continue;
            }
            if child.contents {
                self.frames.push(Frame::read(src, path)?);
                continue;
            }
            if let Some(item) = host_item(src, path, self.skipped, self.tree.modes)? {
                return Ok(Some(item));
            }
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

/// Names that extractors of OCI layers read as deletions of the layers below.
const WHITEOUT_PREFIX: &str = ".wh.";

/// The entry of the host file `src` at `path`: only its type, permission bits (taken as `modes`
/// says), link target and device numbers are kept. `None` for a socket, which a tar cannot carry.
pub(super) fn host_item(
    src: PathBuf,
    path: String,
    skipped: Skipped,
    modes: HostModes,
) -> Result<Option<HostItem>, FileMapError> {
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
    } else if file_type.is_socket() {
        if skipped == Skipped::Warn {
            tracing::warn!(path = %src.display(), "socket ignored: a layer cannot hold sockets");
        }
        return Ok(None);
    } else {
        let kind = if file_type.is_char_device() {
            SpecialKind::Char
        } else if file_type.is_block_device() {
            SpecialKind::Block
        } else if file_type.is_fifo() {
            SpecialKind::Fifo
        } else {
            let kind = "unknown";
            return Err(FileMapError::UnsupportedFileType { path: src, kind });
        };
        let device = metadata.rdev();
        Node::Special {
            kind,
            major: libc::major(device),
            minor: libc::minor(device),
        }
    };
    let entry = host_entry(node, &metadata, modes);
    Ok(Some(HostItem { path, entry, inode }))
}

/// Host metadata reduced to what a layer keeps: the permission bits, taken as `modes` says.
pub(super) fn host_entry(node: Node, metadata: &std::fs::Metadata, modes: HostModes) -> Entry {
    Entry {
        mode: modes.mode(&node, metadata.permissions().mode()),
        node,
        uid: 0,
        gid: 0,
        mtime: None,
        // Host xattrs depend on the machine (SELinux labels, overlayfs markers), not the tree.
        xattrs: Xattrs::new(),
    }
}

pub(super) fn not_a_directory(path: &Path) -> FileMapError {
    FileMapError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
    }
}

/// The metadata of a host regular file reduced to what a layer keeps: the permission bits, taken
/// as `modes` says.
pub(super) fn mode_only(metadata: &std::fs::Metadata, modes: HostModes) -> EntryMeta {
    EntryMeta {
        mode: Some(modes.regular_file(metadata.permissions().mode())),
        ..EntryMeta::default()
    }
}

pub(super) fn host_error(path: &Path, source: io::Error) -> FileMapError {
    if source.kind() == io::ErrorKind::NotFound {
        FileMapError::SourceNotFound(path.to_owned())
    } else {
        FileMapError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
