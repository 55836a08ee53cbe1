//! Running a build, asynchronously, in two steps: [`plan`] decides (the base, the previous images,
//! the layer budget, every layer's file map checked and keyed, reuse or build for each) without
//! writing anything; [`execute`] moves blobs, writes the config and moves the tag last.

pub mod apt;
mod base_index;
pub mod budget;
mod execute;
mod layer_dirs;
pub mod local_cache;
pub mod plan;
mod prepare;
pub mod previous;
pub mod report;
pub mod resolve;
mod script_plan;
mod scripts;
mod spool;

use std::path::PathBuf;
use std::sync::Arc;

use layerize_manifest::{ConfigEdit, Platform};
use layerize_registry::Store;

use crate::layer::LayerOptions;
use crate::BuildError;
pub use execute::execute;
use plan::LayerSpec;
pub use prepare::{plan, PlannedBuild};
use previous::CacheImage;
use report::Report;

/// Where the base comes from, where the result goes, and which images to reuse layers from.
pub struct Endpoints {
    pub base: Arc<dyn Store>,
    /// The tag or digest of the base in `base`.
    pub base_reference: String,
    /// The base's full name for the `org.opencontainers.image.base.name` annotation, when it has
    /// one that others can pull (a registry reference).
    pub base_name: Option<String>,
    pub target: Arc<dyn Store>,
    /// The target as the user named it (`host/repo:tag`, `oci:DIR:TAG`), for the report.
    pub target_name: String,
    /// The tag to point at the result in `target`.
    pub target_reference: String,
    /// Whether the target only accepts OCI media types (an OCI layout): Docker bases are
    /// converted as `skopeo copy --format oci` does.
    pub target_needs_oci: bool,
    /// `--cache-from` images, in the order given; the image at the target tag is always read
    /// first.
    pub cache_from: Vec<CacheImage>,
}

/// What to build on top of the base.
pub struct BuildRequest {
    /// The platform asked for; `None` takes linux/amd64 from an index and any single-platform base.
    pub platform: Option<Platform>,
    /// The layer entries, in the order the image lists them.
    pub layers: Vec<LayerSpec>,
    pub edits: Vec<ConfigEdit>,
    pub annotations: Vec<(String, String)>,
    pub layer_options: LayerOptions,
    /// The image's `created` time (RFC 3339), normally from `SOURCE_DATE_EPOCH`.
    pub created: String,
    /// How many blobs move at once.
    pub jobs: usize,
    /// The local cache: base filesystem indexes and layer keys (`None`: nothing cached on disk).
    pub cache_dir: Option<PathBuf>,
    /// The most layers the image may have, base included (default
    /// [`budget::DEFAULT_MAX_LAYERS`], at most [`budget::HARD_LIMIT`]); entries beyond it are
    /// batched.
    pub max_layers: Option<usize>,
    /// Only plan: caches are read but never written (see [`plan`]).
    pub dry_run: bool,
    /// Which sandbox script steps run in.
    pub sandbox: layerize_sandbox::ModeChoice,
    /// Overlay step roots where they work, or always written ones.
    pub step_root: layerize_sandbox::RootChoice,
    /// Settings for the apt entries.
    pub apt: apt::AptOptions,
}

/// Plans and runs one build and returns its report. The target's tag moves only when everything
/// succeeded.
pub async fn build(endpoints: &Endpoints, request: BuildRequest) -> Result<Report, BuildError> {
    let planned = plan(endpoints, request).await?;
    execute(endpoints, planned).await
}
