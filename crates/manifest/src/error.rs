//! Everything that can be wrong with a manifest, index, config or edit.

use crate::Digest;

/// Why a manifest, index, config, platform or edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid {what} JSON: {source}")]
    InvalidJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "Docker schema 1 manifests are not supported (deprecated since 2017); \
         re-push the image with a current docker, podman or skopeo to get schema 2"
    )]
    Schema1,

    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),

    #[error(
        "cannot tell what this manifest is: it has no mediaType, and neither `manifests` \
         (an index) nor `config` and `layers` (an image manifest)"
    )]
    UnrecognisedManifest,

    #[error("expected an image index or manifest list, got {0}")]
    NotAnIndex(&'static str),

    #[error("expected a single-platform image manifest, got {0}; select a platform first")]
    NotAManifest(&'static str),

    #[error("malformed image: {0}")]
    Malformed(String),

    #[error(
        "malformed image: the manifest lists {layers} layers but the config's rootfs.diff_ids \
         has {diff_ids}"
    )]
    LayerCountMismatch { layers: usize, diff_ids: usize },

    #[error("config does not match the manifest: manifest says {expected}, config bytes hash to {actual}")]
    ConfigDigestMismatch { expected: Digest, actual: Digest },

    #[error("invalid platform {value:?}: {reason}")]
    InvalidPlatform { value: String, reason: &'static str },

    #[error("no manifest for platform {wanted} in index; available: {available}")]
    NoMatchingPlatform { wanted: String, available: String },

    #[error("zstd layers need an OCI manifest")]
    ZstdNeedsOci,

    #[error("annotations need an OCI manifest (use an oci: target or --format oci)")]
    AnnotationsNeedOci,

    #[error("layer media type {media_type:?} does not belong in a {family} manifest")]
    LayerFamilyMismatch {
        media_type: String,
        family: crate::Family,
    },

    #[error("cannot convert layer media type {0:?} to OCI")]
    UnconvertibleLayer(String),

    #[error("invalid config edit: {0}")]
    InvalidEdit(String),

    #[error("invalid history entry: {0}")]
    InvalidHistory(&'static str),
}
