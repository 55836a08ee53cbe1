//! Errors of reading a layer and of indexing an image, each naming the layer and member.

use std::io;

use layerize_manifest::Digest;
use layerize_registry::StoreError;

use crate::path::PathError;
use crate::table::TableError;

/// Why one layer blob could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Decompression failed, the tar is malformed or truncated, or the bytes did not arrive.
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    #[error("tar member {path:?}: {source}")]
    Member {
        path: String,
        #[source]
        source: MemberError,
    },
    /// The uncompressed stream is not what the image config promises: the blob was replaced
    /// or damaged, and nothing read from it is kept or cached.
    #[error("uncompressed content has diffID {actual}, but the image config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("more than {max} tar members", max = u32::MAX - 1)]
    TooManyMembers,
}

/// What is wrong with one tar member.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("link target: {0}")]
    LinkTarget(PathError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("header: {0}")]
    Header(#[source] io::Error),
    #[error("{field} {value} does not fit in 32 bits")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("whiteout names no file")]
    EmptyWhiteout,
    #[error("hard link to the root directory")]
    HardlinkToRoot,
}

/// Why indexing a stack of layers failed.
#[derive(Debug, thiserror::Error)]
pub enum BaseFsError {
    #[error(
        "layer {layer} is a foreign (non-distributable) layer ({media_type}): its blob is \
         not in the registry, so its files cannot be indexed"
    )]
    ForeignLayer { layer: Digest, media_type: String },
    #[error("layer {layer}: {source}")]
    Store {
        layer: Digest,
        #[source]
        source: StoreError,
    },
    #[error("layer {layer}: {source}")]
    Layer {
        layer: Digest,
        #[source]
        source: LayerError,
    },
    #[error("layer {layer}: the blob's digest is {actual}")]
    BlobDigestMismatch { layer: Digest, actual: Digest },
    #[error("layer {layer}: the blob is {actual} bytes, the manifest says {expected}")]
    BlobSizeMismatch {
        layer: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("layer {layer}: the blob is longer than the manifest's {expected} bytes")]
    BlobTooLong { layer: Digest, expected: u64 },
    #[error("file to capture: {0}")]
    CapturePath(#[source] PathError),
    #[error("captured file /{path} is {size} bytes, over its limit of {limit}")]
    CaptureTooLarge { path: String, size: u64, limit: u64 },
    #[error("merging base layers: {0}")]
    Merge(#[source] TableError),
    #[error("indexing task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}
