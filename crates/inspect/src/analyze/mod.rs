//! `layers --analyze`: per layer its compressed and uncompressed size and the files later
//! layers overwrite, delete or hide, the wasted bytes per layer, per path and in all, and with a
//! build report that build's cache hit rate.
//!
//! Each layer blob is streamed once through [`layerize_basefs::read_image_layer`] (tar headers
//! read, bodies skipped, any compression), a couple at a time and applied in order to the
//! [`waste::Ledger`]: memory follows the number of paths, never their bytes.

pub mod render;
pub mod waste;

use futures_util::{stream, StreamExt};
use layerize_basefs::{read_image_layer, Change, Kind, LayerIndex};
use layerize_manifest::media_type::is_foreign_layer;
use layerize_manifest::Digest;
use layerize_registry::Store;
use serde::Serialize;

use crate::build_report::HitRate;
use crate::chain::{layer_chain, Origin};
use crate::{BuildReport, InspectError, InspectedImage};
use waste::{Ledger, LostCopy, PathWaste};

/// Layers read at once: the next blob downloads while the ledger takes the one before.
const CONCURRENT_LAYERS: usize = 2;

/// What `--analyze` found.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub image: String,
    pub digest: Digest,
    pub layers: Vec<LayerAnalysis>,
    pub totals: Totals,
    /// Every path with wasted bytes, most wasted first.
    pub paths: Vec<PathWaste>,
    /// Only with a build report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_hit_rate: Option<HitRate>,
}

/// One layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerAnalysis {
    pub index: usize,
    pub name: String,
    pub origin: Origin,
    pub digest: Digest,
    /// The blob's size.
    pub compressed_bytes: u64,
    /// The tar stream's size; `None` for a non-distributable layer, whose blob is not in the
    /// store and is not read (its files count nowhere).
    pub uncompressed_bytes: Option<u64>,
    /// Regular files the layer has, and their bytes.
    pub files: u64,
    pub file_bytes: u64,
    pub whiteouts: u64,
    /// Directories whose lower contents the layer hides (opaque whiteouts, the root included).
    pub opaque_dirs: u64,
    /// Bytes of this layer's files that later layers overwrite, delete or hide.
    pub wasted_bytes: u64,
    /// Those files, in the order they were lost.
    pub lost: Vec<LostCopy>,
}

/// Sums over all layers.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub compressed_bytes: u64,
    /// Over the layers that were read.
    pub uncompressed_bytes: u64,
    pub file_bytes: u64,
    pub wasted_bytes: u64,
    /// Non-distributable layers that were not read.
    pub unread_layers: usize,
}

/// What one layer's own table holds.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    tar_bytes: u64,
    files: u64,
    file_bytes: u64,
    whiteouts: u64,
    opaque_dirs: u64,
}

/// Analyzes `image`, whose blobs are in `store`; `report`, when given, must be the report of
/// the build that wrote the image.
pub async fn analyze(
    store: &dyn Store,
    image: &InspectedImage,
    report: Option<&BuildReport>,
) -> Result<Analysis, InspectError> {
    let chain = layer_chain(image, report)?;
    let descriptors = image.image.layers();
    let diff_ids = image.image.diff_ids();
    let mut reads = stream::iter(descriptors.iter().zip(&diff_ids).enumerate())
        .map(|(index, (descriptor, diff_id))| async move {
            if is_foreign_layer(&descriptor.media_type) {
                return Ok(None);
            }
            read_image_layer(store, descriptor, diff_id)
                .await
                .map(Some)
                .map_err(|error| InspectError::Layer {
                    image: image.name.clone(),
                    index,
                    error: Box::new(error),
                })
        })
        .buffered(CONCURRENT_LAYERS);

    let mut ledger = Ledger::new();
    let mut counts: Vec<Option<Counts>> = Vec::with_capacity(descriptors.len());
    while let Some(read) = reads.next().await {
        let index = counts.len();
        counts.push(read?.map(|read| {
            ledger.apply(index, &read.layer);
            Counts {
                tar_bytes: read.tar_bytes,
                ..counts_of(&read.layer)
            }
        }));
    }
    let waste = ledger.finish();
    let mut lost = waste.lost.into_iter();

    let layers: Vec<LayerAnalysis> = chain
        .into_iter()
        .zip(counts)
        .map(|(layer, counts)| {
            let lost = lost.next().unwrap_or_default();
            let own = counts.unwrap_or_default();
            LayerAnalysis {
                index: layer.index,
                name: layer.name,
                origin: layer.origin,
                digest: layer.digest,
                compressed_bytes: layer.size,
                uncompressed_bytes: counts.map(|counts| counts.tar_bytes),
                files: own.files,
                file_bytes: own.file_bytes,
                whiteouts: own.whiteouts,
                opaque_dirs: own.opaque_dirs,
                wasted_bytes: lost.iter().map(|copy| copy.size).sum(),
                lost,
            }
        })
        .collect();
    let totals = Totals {
        compressed_bytes: layers.iter().map(|layer| layer.compressed_bytes).sum(),
        uncompressed_bytes: layers.iter().filter_map(|l| l.uncompressed_bytes).sum(),
        file_bytes: layers.iter().map(|layer| layer.file_bytes).sum(),
        wasted_bytes: layers.iter().map(|layer| layer.wasted_bytes).sum(),
        unread_layers: layers
            .iter()
            .filter(|layer| layer.uncompressed_bytes.is_none())
            .count(),
    };
    Ok(Analysis {
        image: image.name.clone(),
        digest: image.manifest_digest.clone(),
        layers,
        totals,
        paths: waste.paths,
        cache_hit_rate: report.map(BuildReport::hit_rate),
    })
}

fn counts_of(layer: &LayerIndex) -> Counts {
    let mut counts = Counts {
        opaque_dirs: u64::from(layer.hides_root()),
        ..Counts::default()
    };
    for change in layer.changes() {
        match change.change {
            Change::Put(Kind::File) => {
                counts.files += 1;
                counts.file_bytes += change.size;
            }
            Change::Put(Kind::Dir) if change.hides_lower => counts.opaque_dirs += 1,
            Change::Opaque => counts.opaque_dirs += 1,
            Change::Whiteout => counts.whiteouts += 1,
            Change::Put(_) => {}
        }
    }
    counts
}
