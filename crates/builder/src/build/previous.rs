//! Images earlier builds pushed, read as caches: the image now at the target tag and every
//! `--cache-from` image. Each layer layerize built carries its record (name, key, batch members;
//! see `layerize_manifest::layer_record`), so these images map keys to blobs without any service
//! besides the registry.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use layerize_manifest::{
    empty_step_records, layer_records, Descriptor, Digest, LayerRecord, Platform,
};
use layerize_registry::{Store, StoreError};
use tracing::{info, warn};

use crate::build::resolve::resolve;
use crate::BuildError;

/// Where a reusable layer was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// The image the target tag pointed at before this build.
    Target,
    /// A `--cache-from` image, by the reference given.
    CacheFrom(String),
    /// This machine's cache directory.
    Local,
}

impl fmt::Display for CacheSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheSource::Target => f.write_str("target"),
            CacheSource::CacheFrom(reference) => f.write_str(reference),
            CacheSource::Local => f.write_str("local-cache"),
        }
    }
}

/// An image to take layers from: a store and the tag or digest in it.
#[derive(Clone)]
pub struct CacheImage {
    /// The reference as the user gave it, for the plan and the report.
    pub name: String,
    pub store: Arc<dyn Store>,
    pub reference: String,
}

/// One layer of a previous image.
#[derive(Clone, Debug)]
pub struct PreviousLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// `None` for layers layerize did not build (the base's).
    pub record: Option<LayerRecord>,
}

/// A previous image, resolved to the build's platform.
#[derive(Clone)]
pub struct PreviousImage {
    pub source: CacheSource,
    pub store: Arc<dyn Store>,
    /// The digest the reference named (its index, for a multi-platform image).
    pub tag_digest: Option<Digest>,
    pub layers: Vec<PreviousLayer>,
    /// Script steps recorded as having changed nothing (no layer).
    pub empty_steps: Vec<LayerRecord>,
}

impl PreviousImage {
    /// The blob digests its manifest lists: blobs a registry holds in its repository.
    pub fn digests(&self) -> HashSet<&Digest> {
        self.layers
            .iter()
            .map(|layer| &layer.descriptor.digest)
            .collect()
    }

    /// The layers layerize built, with their records.
    pub fn recorded(&self) -> impl Iterator<Item = (&PreviousLayer, &LayerRecord)> {
        self.layers
            .iter()
            .filter_map(|layer| layer.record.as_ref().map(|record| (layer, record)))
    }
}

/// Reads `image` as a cache, resolved to `platform`. A missing tag is no cache (the first build,
/// a branch not pushed yet); any other failure is logged and also gives no cache, because a
/// cache only saves work and must not fail a build the registry would take.
pub async fn read_previous(
    image: &CacheImage,
    platform: Option<&Platform>,
    source: CacheSource,
) -> Option<PreviousImage> {
    match resolve(image.store.as_ref(), &image.reference, platform).await {
        Ok(resolved) => {
            let records = layer_records(&resolved.image);
            let empty_steps = empty_step_records(&resolved.image);
            let layers: Vec<PreviousLayer> = resolved
                .image
                .layers()
                .into_iter()
                .zip(resolved.image.diff_ids())
                .zip(records)
                .map(|((descriptor, diff_id), record)| PreviousLayer {
                    descriptor,
                    diff_id,
                    record,
                })
                .collect();
            info!(
                phase = "plan",
                image = %image.name,
                source = %source,
                layers = layers.len(),
                recorded = layers.iter().filter(|layer| layer.record.is_some()).count(),
                "Read a previous image as a cache"
            );
            Some(PreviousImage {
                source,
                store: Arc::clone(&image.store),
                tag_digest: Some(resolved.reference_digest),
                layers,
                empty_steps,
            })
        }
        Err(BuildError::Store(StoreError::NotFound { .. })) => {
            info!(phase = "plan", image = %image.name, "No image there yet: nothing to reuse from it");
            None
        }
        Err(error) => {
            warn!(image = %image.name, %error, "cannot read the image as a cache; going on without it");
            None
        }
    }
}
