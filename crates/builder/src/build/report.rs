//! The build report: what was produced and, for each layer, whether it came from the base, was
//! built or was reused. Written as JSON by `--report`.

use layerize_manifest::Digest;
use serde::Serialize;

use crate::build::plan::{Dropped, Layer, Origin};

/// The outcome of one build.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target as written (`oci:DIR:TAG`, `host/repo:tag`).
    pub target: String,
    /// The digest of the manifest written.
    pub digest: Digest,
    pub manifest_media_type: String,
    pub layers: Vec<LayerReport>,
    /// Layers the image at the target tag had before that this build no longer has.
    pub dropped: Vec<Dropped>,
    /// Every script step, in the build's order: run, or its outcome taken from a cache.
    pub steps: Vec<StepReport>,
    /// Bytes sent to the target (layer and config blobs).
    pub bytes_uploaded: u64,
    pub blobs_uploaded: u64,
    /// Blobs made present without sending bytes: cross-repository mounts, hard links.
    pub blobs_mounted: u64,
    /// Blobs the target already held.
    pub blobs_skipped: u64,
    /// HTTP requests made to registries (0 for layouts on disk).
    pub requests: u64,
    /// How the base's filesystem index was obtained; absent when no layer needed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_index: Option<BaseIndexReport>,
    /// The apt packages, when the build has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apt: Option<AptReport>,
}

/// What the apt entries of a build became.
#[derive(Debug, Clone, Serialize)]
pub struct AptReport {
    /// The sources read, as `URI SUITE`.
    pub sources: Vec<String>,
    /// Every package added (new or upgraded), in layer order.
    pub packages: Vec<AptPackageReport>,
    /// `run` (the configure layer ran them) or `skip`.
    pub scripts: &'static str,
    /// The packages that have maintainer scripts, where known (a package whose layer was reused
    /// from another machine's build is known once this machine has seen its `.deb`).
    pub with_scripts: Vec<String>,
    /// With `scripts: skip`: the packages whose maintainer scripts did not run.
    pub scripts_skipped: Vec<String>,
}

/// One package an apt entry added.
#[derive(Debug, Clone, Serialize)]
pub struct AptPackageReport {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The layer holding it.
    pub layer: String,
    /// Whether that layer was built or reused.
    pub status: Origin,
    /// Named by the build (else pulled in as a dependency).
    pub requested: bool,
    /// The requested packages that pulled it in.
    pub pulled_by: Vec<String>,
    /// The base's version it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<String>,
    /// The `.deb`'s sha256.
    pub sha256: String,
}

/// Where the base filesystem index came from.
#[derive(Debug, Clone, Serialize)]
pub struct BaseIndexReport {
    /// Paths in the base's filesystem.
    pub paths: usize,
    /// Base layers whose index came from the on-disk cache.
    pub layers_from_cache: usize,
    /// Base layer blobs read to index them.
    pub layers_read: usize,
    /// Compressed bytes of base blobs read for the index.
    pub blob_bytes_read: u64,
}

/// One script step of the build.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub key: String,
    /// `built` when it ran, `reused` when a cache had its outcome.
    pub status: Origin,
    /// Whether it added a layer (a step that changes nothing adds none).
    pub layer: bool,
    /// How it ran, when it did.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub run: Option<StepRun>,
}

/// How a step that ran went.
#[derive(Debug, Clone, Serialize)]
pub struct StepRun {
    /// The sandbox used: `chroot`, `namespaces` or `userns`.
    pub mode: String,
    /// The step's root: `overlay` (layer directories kept between builds, mounted) or
    /// `written` (the layers extracted into a fresh directory).
    pub root: String,
    pub exit_code: i32,
    /// How long the commands ran (assembling the root not included).
    pub seconds: f64,
    /// Paths it added, changed and deleted.
    pub added: usize,
    pub changed: usize,
    pub deleted: usize,
    /// Whether the step was cut off from the network.
    pub network_isolated: bool,
}

/// One layer of the result.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    pub status: Origin,
    /// The layer's key (absent for base layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The packages of a batch layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// For a reused layer: `target`, `local-cache`, or the `--cache-from` reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
}

impl From<&Layer> for LayerReport {
    fn from(layer: &Layer) -> Self {
        LayerReport {
            name: layer.name.clone(),
            digest: layer.descriptor.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.descriptor.size,
            media_type: layer.descriptor.media_type.clone(),
            status: layer.origin,
            key: layer.key.clone(),
            members: layer.members.clone(),
            reused_from: layer.reused_from.as_ref().map(ToString::to_string),
        }
    }
}
