//! The base filesystem a file map lands on, as `COPY` sees it: destinations resolved through the
//! base's symlinks, parent directories carrying the base's own metadata, directories that must
//! not silently become files (or the reverse), and host trees split where one of their
//! directories meets a base symlink.
//!
//! The base is seen through the layer's own deletions: whatever a whiteout of an earlier add
//! hides (the path and below it; below an opaque directory) is absent from the base for the
//! adds after it. So `--delete /x` before an add that replaces `/x` says the replacement is
//! meant, and the same add before the deletion is an error.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerize_basefs::{Entry as BaseEntry, FsIndex, Kind as BaseKind, ResolveError, Resolver};

use super::entry::{Entry, Node, SpecialKind, Xattrs, DIR_MODE, PERMISSION_BITS};
use super::host_modes::HostModes;
use super::host_tree::HostTree;
use super::path::{ancestors, normalize};
use super::{FileMap, FileMapError};

/// The base filesystem; its `Debug` gives the size, not the paths.
#[derive(Clone, Default)]
pub(super) struct Base(pub(super) Arc<FsIndex>);

impl std::fmt::Debug for Base {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "FsIndex({} paths)", self.0.len())
    }
}

/// What the layer's own whiteouts hide of the base: each path with the sequence number of the
/// add that first hid it.
#[derive(Clone, Debug, Default)]
pub(super) struct Hidden {
    /// The paths of whiteouts `.wh.<name>`: hidden with everything below them.
    deleted: BTreeMap<String, u64>,
    /// The directories of opaque whiteouts: everything below them hidden.
    opaque: BTreeMap<String, u64>,
}

/// Whether the last component of a destination is followed when it is a base symlink.
#[derive(Clone, Copy, Debug)]
pub(super) enum Follow {
    /// Files, symlinks, hardlinks, whiteouts: a base symlink at the path is replaced.
    Parents,
    /// Directories: a base symlink to a directory at the path leads to that directory.
    All,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// A directory of a host tree that lands on a base symlink, written at the link's target.
struct Split {
    link: String,
    src: PathBuf,
    dest: String,
}

impl FileMap {
    /// An empty file map for a layer that lands on `base`: every destination is resolved
    /// through the base's symlinks and checked against what the base has there (see the module
    /// documentation of [`super`]).
    pub fn on_base(base: Arc<FsIndex>) -> Self {
        FileMap {
            base: Base(base),
            ..FileMap::default()
        }
    }

    /// Where `dest` lands: normalised, refused below a symlink of the layer, then resolved
    /// through the base as the next add sees it.
    pub(super) fn destination(&self, dest: &str, follow: Follow) -> Result<String, FileMapError> {
        let path = normalize(dest)?;
        if self.base.0.is_empty() || path.is_empty() {
            return Ok(path);
        }
        // The layer's own symlinks are never followed, even where the base has something else.
        self.check_parents(&path)?;
        Ok(self.resolve_in_base(&path, follow, self.last_seq + 1)?)
    }

    /// Resolves the normalised `path` through the base as an add with sequence number `seq`
    /// sees it.
    fn resolve_in_base(
        &self,
        path: &str,
        follow: Follow,
        seq: u64,
    ) -> Result<String, ResolveError> {
        let resolver = Resolver::new(|path: &str| self.base_entry(path, seq));
        let resolved = match follow {
            Follow::Parents => resolver.resolve_parents(path),
            Follow::All => resolver.resolve(path),
        }?;
        Ok(resolved.path)
    }

    /// What the base has at `path` for an add with sequence number `seq`: nothing where an
    /// earlier add of the layer deleted it.
    fn base_entry(&self, path: &str, seq: u64) -> Option<BaseEntry<'_>> {
        if self.hidden_from(path, seq) {
            return None;
        }
        self.base.0.get(path)
    }

    /// Whether a whiteout added before `seq` hides `path` of the base.
    fn hidden_from(&self, path: &str, seq: u64) -> bool {
        let before =
            |map: &BTreeMap<String, u64>, path: &str| map.get(path).is_some_and(|at| *at < seq);
        if self.hidden.deleted.is_empty() && self.hidden.opaque.is_empty() {
            return false;
        }
        before(&self.hidden.deleted, path)
            || ancestors(path).any(|parent| {
                before(&self.hidden.deleted, parent) || before(&self.hidden.opaque, parent)
            })
    }

    /// Notes what a whiteout at `path` added with sequence number `seq` hides of the base.
    pub(super) fn record_whiteout(&mut self, path: &str, seq: u64) {
        if self.base.0.is_empty() {
            return;
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let (map, hidden) = if name == OPAQUE_WHITEOUT {
            (&mut self.hidden.opaque, dir.to_owned())
        } else if let Some(name) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = match dir {
                "" => name.to_owned(),
                dir => format!("{dir}/{name}"),
            };
            (&mut self.hidden.deleted, hidden)
        } else {
            return;
        };
        map.entry(hidden).or_insert(seq);
    }

    /// Refuses `node` at `path` (added with sequence number `seq`) where the base has a
    /// directory and `node` is none, or the reverse — unless an earlier add deleted the base's
    /// entry or made it or a parent opaque.
    pub(super) fn check_base(&self, path: &str, node: &Node, seq: u64) -> Result<(), FileMapError> {
        let Some(base) = self.base_entry(path, seq) else {
            return Ok(());
        };
        let layer_is_dir = matches!(node, Node::Dir);
        if (base.kind == BaseKind::Dir) == layer_is_dir
            || self.hidden.opaque.get(path).is_some_and(|at| *at < seq)
        {
            return Ok(());
        }
        Err(FileMapError::BaseConflict {
            path: path.to_owned(),
            base: base_kind_name(base.kind),
            layer: layer_kind_name(node),
        })
    }

    /// The directory entry of `path` created implicitly by an add with sequence number `seq`:
    /// the base's mode, owner and mtime where the base has the directory, else 0755 root with
    /// the layer's mtime.
    pub(super) fn implicit_dir(&self, path: &str, seq: u64) -> Entry {
        match self.base_entry(path, seq) {
            Some(base) if base.kind == BaseKind::Dir => base_dir(base),
            _ => Entry {
                node: Node::Dir,
                mode: DIR_MODE,
                uid: 0,
                gid: 0,
                mtime: None,
                xattrs: Xattrs::new(),
            },
        }
    }

    /// Adds the host tree `src` at the resolved `dest` with sequence number `seq`, and each of
    /// its directories that meets a base symlink as a tree of its own at the link's target.
    /// Everything is checked before anything is added.
    pub(super) fn add_host_trees(
        &mut self,
        src: &Path,
        dest: String,
        seq: u64,
        modes: HostModes,
    ) -> Result<(), FileMapError> {
        let mut trees = Vec::new();
        self.plan_host_trees(src.to_owned(), dest, seq, None, modes, &mut trees)?;
        for tree in trees {
            self.add_implicit_parents(&tree.dest, seq);
            self.host_trees.push(tree);
        }
        Ok(())
    }

    fn plan_host_trees(
        &self,
        src: PathBuf,
        dest: String,
        seq: u64,
        via: Option<String>,
        modes: HostModes,
        trees: &mut Vec<HostTree>,
    ) -> Result<(), FileMapError> {
        self.check_parents(&dest)?;
        let mut root = None;
        if !dest.is_empty() {
            self.check_base(&dest, &Node::Dir, seq)?;
            // The tree's root is the destination directory itself: where the base has it, its
            // mode, owner and mtime stay (`--dir x:/tmp` keeps /tmp 1777); the source
            // directory's own mode is only used for a directory new to the image.
            root = self
                .base_entry(&dest, seq)
                .filter(|base| base.kind == BaseKind::Dir)
                .map(base_dir);
        }
        let splits = self.splits(&src, &dest, seq)?;
        trees.push(HostTree {
            src,
            dest,
            seq,
            skip: splits.iter().map(|split| split.link.clone()).collect(),
            root,
            via,
            modes,
        });
        for split in splits {
            let via = Some(split.link);
            self.plan_host_trees(split.src, split.dest, seq, via, modes, trees)?;
        }
        Ok(())
    }

    /// The directories of the host tree `src` at `dest` that land on a symlink of the base
    /// (`bin/` of a root filesystem on a base with `bin -> usr/bin`), outermost only: each is
    /// written at the link's target instead, which is resolved now.
    fn splits(&self, src: &Path, dest: &str, seq: u64) -> Result<Vec<Split>, FileMapError> {
        let mut probe = HostProbe {
            src,
            dirs: HashMap::new(),
        };
        let mut splits: Vec<Split> = Vec::new();
        for link in self.base.0.under(dest) {
            if link.kind != BaseKind::Symlink
                || splits
                    .last()
                    .is_some_and(|split| is_below(link.path, &split.link))
                || self.hidden_from(link.path, seq)
            {
                continue;
            }
            let rel = if dest.is_empty() {
                link.path
            } else {
                &link.path[dest.len() + 1..]
            };
            if !probe.is_real_dir(rel)? {
                continue;
            }
            splits.push(Split {
                link: link.path.to_owned(),
                src: src.join(rel),
                dest: self.resolve_in_base(link.path, Follow::All, seq)?,
            });
        }
        Ok(splits)
    }
}

/// Looks paths of a host tree up without following the host's symlinks, each directory once.
struct HostProbe<'a> {
    src: &'a Path,
    /// Whether each path looked up (relative to `src`) is a real directory.
    dirs: HashMap<String, bool>,
}

impl HostProbe<'_> {
    /// Whether `rel` and all its parents are directories, not symlinks to them, on the host.
    fn is_real_dir(&mut self, rel: &str) -> Result<bool, FileMapError> {
        let ends = rel.match_indices('/').map(|(end, _)| end);
        for end in ends.chain([rel.len()]) {
            let prefix = &rel[..end];
            let is_dir = match self.dirs.get(prefix) {
                Some(is_dir) => *is_dir,
                None => {
                    let path = self.src.join(prefix);
                    let is_dir = match std::fs::symlink_metadata(&path) {
                        Ok(metadata) => metadata.is_dir(),
                        Err(err)
                            if matches!(
                                err.kind(),
                                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                            ) =>
                        {
                            false
                        }
                        Err(source) => return Err(FileMapError::Io { path, source }),
                    };
                    self.dirs.insert(prefix.to_owned(), is_dir);
                    is_dir
                }
            };
            if !is_dir {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The entry of a directory the base has, with the base's metadata.
fn base_dir(base: BaseEntry<'_>) -> Entry {
    Entry {
        node: Node::Dir,
        mode: base.mode & PERMISSION_BITS,
        uid: base.uid,
        gid: base.gid,
        mtime: Some(base.mtime),
        // The index keeps no extended attributes; base directories rarely have any.
        xattrs: Xattrs::new(),
    }
}

fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

fn base_kind_name(kind: BaseKind) -> &'static str {
    match kind {
        BaseKind::File | BaseKind::Hardlink => "file",
        BaseKind::Dir => "directory",
        BaseKind::Symlink => "symlink",
        BaseKind::Char => "character device",
        BaseKind::Block => "block device",
        BaseKind::Fifo => "fifo",
    }
}

fn layer_kind_name(node: &Node) -> &'static str {
    match node {
        Node::File(_) => "file",
        Node::Dir => "directory",
        Node::Symlink(_) => "symlink",
        Node::Hardlink(_) => "hard link",
        Node::Special { kind, .. } => match kind {
            SpecialKind::Char => "character device",
            SpecialKind::Block => "block device",
            SpecialKind::Fifo => "fifo",
        },
    }
}
