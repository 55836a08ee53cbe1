//! The filesystem a stack of image layers makes, as an index: for every path its type, mode,
//! owner, mtime, size and link target, with whiteouts and opaque whiteouts applied in layer
//! order. Layers that land on a base resolve their destinations against it ([`resolve`]); the
//! apt and analysis features read the base's files through it.
//!
//! Paths are normalised and relative to the root (`usr/bin/sh`); the root itself (`""`) is not
//! an entry. Entries are kept in byte order of their paths, so every directory comes before its
//! children and a directory's descendants are the range of paths starting with `dir/`.

mod entry;
mod index;
mod resolve;

pub use entry::{Entry, Kind, OwnedEntry};
pub use index::FsIndex;
pub use resolve::{ResolveError, Resolved, Resolver, MAX_SYMLINK_EXPANSIONS};
