//! The filesystem a stack of image layers makes, as an index: for every path its type, mode,
//! owner, mtime, size and link target, with whiteouts and opaque whiteouts applied in layer
//! order. Layers that land on a base resolve their destinations against it ([`resolve`]); the
//! apt and analysis features read the base's files through it.
//!
//! Paths are normalised and relative to the root (`usr/bin/sh`); the root itself (`""`) is not
//! an entry. Entries are kept in byte order of their paths, so every directory comes before its
//! children and a directory's descendants are the range of paths starting with `dir/`.
//!
//! Building one: [`read_layer`] reads one layer blob into a [`LayerIndex`], [`merge`] stacks
//! them; [`index_image`] does both for an image in a [`layerize_registry::Store`], with a
//! [`LayerCache`] on disk so that a later build on the same base reads no base blob.
//! [`read_image_layer`] reads one layer of an image for tools that look at layers one by one
//! ([`LayerIndex::changes`]).

mod blob_reader;
mod cache;
mod entry;
mod error;
mod hashing;
mod image;
mod index;
mod kept_tar;
mod layer;
mod merge;
mod path;
mod resolve;
mod table;
#[cfg(test)]
mod test_tar;

pub use cache::{default_cache_dir, touch_if_present, LayerCache};
pub use entry::{Entry, Kind, OwnedEntry};
pub use error::{BaseFsError, LayerError, MemberError};
pub use image::{index_image, read_image_layer, BaseFs, IndexStats, ReadLayer};
pub use index::FsIndex;
pub use kept_tar::{Follower, GrowingTar, TarDir};
pub use layer::decompress::decompressed;
pub use layer::{read_layer, Capture, CaptureSet, Change, LayerIndex, PathChange};
pub use merge::merge;
pub use path::{normalise, PathError};
pub use resolve::{ResolveError, Resolved, Resolver, MAX_SYMLINK_EXPANSIONS};
pub use table::TableError;
