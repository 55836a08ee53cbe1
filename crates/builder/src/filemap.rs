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

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
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
#[derive(Clone, Debug, Default)]
pub struct FileMap {
    /// Normalised relative path (`etc/foo`) -> entry; byte order puts every parent before its
    /// children.
    entries: BTreeMap<String, Entry>,
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
        self.entries.is_empty()
    }

    /// The number of entries, implicit parent directories and whiteouts included.
    pub fn len(&self) -> usize {
        self.entries.len()
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
            self.resolve_hardlink(&target)
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
        self.remove_tree(&path);
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

    /// Adds the tree under host directory `src` at `dest`, walked in sorted order: files,
    /// directories and symlinks (targets verbatim) keep their permission bits; ownership becomes
    /// 0:0 and times the layer's mtime; files hardlinked to each other (same device and inode)
    /// become tar hardlinks. Sockets and devices are refused.
    pub fn add_host_dir(&mut self, src: &Path, dest: &str) -> Result<(), FileMapError> {
        let dest = normalize(dest)?;
        let metadata = std::fs::metadata(src).map_err(|source| host_error(src, source))?;
        if !metadata.is_dir() {
            return Err(FileMapError::Io {
                path: src.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        if !dest.is_empty() {
            self.insert(dest.clone(), Node::Dir, mode_only(&metadata), DIR_MODE)?;
        }
        let mut inodes = HashMap::new();
        self.walk_host_dir(src, &dest, &mut inodes)
    }

    fn walk_host_dir(
        &mut self,
        dir: &Path,
        dest: &str,
        inodes: &mut HashMap<(u64, u64), String>,
    ) -> Result<(), FileMapError> {
        let io_error = |source| FileMapError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut children = std::fs::read_dir(dir)
            .map_err(io_error)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_error)?;
        children.sort();
        for name in children {
            let src = dir.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| FileMapError::NonUtf8Name(src.clone()))?;
            let path = join(dest, name);
            let metadata = std::fs::symlink_metadata(&src).map_err(|source| FileMapError::Io {
                path: src.clone(),
                source,
            })?;
            let meta = mode_only(&metadata);
            let file_type = metadata.file_type();
            if file_type.is_dir() {
                self.insert(path.clone(), Node::Dir, meta, DIR_MODE)?;
                self.walk_host_dir(&src, &path, inodes)?;
            } else if file_type.is_symlink() {
                let target = std::fs::read_link(&src).map_err(|source| FileMapError::Io {
                    path: src.clone(),
                    source,
                })?;
                let target = target
                    .to_str()
                    .ok_or_else(|| FileMapError::NonUtf8Name(src.clone()))?;
                self.insert(path, Node::Symlink(target.to_owned()), meta, 0o777)?;
            } else if file_type.is_file() {
                if metadata.nlink() > 1 {
                    let inode = (metadata.dev(), metadata.ino());
                    if let Some(first) = inodes.get(&inode) {
                        self.insert(path, Node::Hardlink(first.clone()), meta, FILE_MODE)?;
                        continue;
                    }
                    inodes.insert(inode, path.clone());
                }
                self.insert(path, Node::File(Content::Host(src)), meta, FILE_MODE)?;
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
            }
        }
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
                    match self.resolve_hardlink(&target) {
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

    /// The entries in tar order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Follows a hardlink chain to the regular file it ends at.
    fn resolve_hardlink(&self, path: &str) -> Option<(String, &Entry)> {
        let entry = self.entries.get(path)?;
        match &entry.node {
            Node::File(_) => Some((path.to_owned(), entry)),
            Node::Hardlink(file) => {
                let target = self.entries.get(file)?;
                matches!(target.node, Node::File(_)).then(|| (file.clone(), target))
            }
            _ => None,
        }
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
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(index, _)| &path[..index])
            .collect();
        for parent in &parents {
            match self.entries.get(*parent).map(|entry| &entry.node) {
                None | Some(Node::Dir) => {}
                Some(Node::Symlink(_)) => {
                    return Err(FileMapError::SymlinkParent {
                        path: path.clone(),
                        parent: parent.to_string(),
                    })
                }
                Some(_) => {
                    return Err(FileMapError::ParentNotDirectory {
                        path: path.clone(),
                        parent: parent.to_string(),
                    })
                }
            }
        }
        for parent in parents {
            if !self.entries.contains_key(parent) {
                self.entries.insert(
                    parent.to_owned(),
                    Entry {
                        node: Node::Dir,
                        mode: DIR_MODE,
                        uid: 0,
                        gid: 0,
                        mtime: None,
                    },
                );
            }
        }
        if !matches!(node, Node::Dir) {
            self.remove_children(&path);
        }
        let entry = Entry {
            node,
            mode: meta.mode.unwrap_or(default_mode) & PERMISSION_BITS,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
        };
        self.entries.insert(path, entry);
        Ok(())
    }

    fn remove_tree(&mut self, path: &str) {
        self.entries.remove(path);
        self.remove_children(path);
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
            .map(|(path, entry)| {
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
        assert_eq!(map.len(), 1);
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
        assert_eq!(map.len(), 6);
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
    fn host_dirs_with_sockets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let err = FileMap::new().add_host_dir(dir.path(), "/x").unwrap_err();
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
