//! The layer chain of an image: for each layer, in manifest order, its name and key from the
//! layerize record, its digests and size, where it came from and its history entry.
//!
//! Where a layer came from: with a build report of this very image, what the report says; without
//! one, `built` for layers that carry a layerize record and `base` for the others (a record
//! cannot tell whether its build made the layer or reused it).

use layerize_manifest::{layer_records, Digest};
use serde::{Deserialize, Serialize};

use crate::{BuildReport, InspectError, InspectedImage};

/// Where a layer of an image came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Not built by layerize: the base image's.
    Base,
    /// Made by the build that wrote the image.
    Built,
    /// Taken from a cache by that build.
    Reused,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Base => "base",
            Origin::Built => "built",
            Origin::Reused => "reused",
        }
    }
}

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainLayer {
    /// Position in the manifest, from 0 (the bottom layer).
    pub index: usize,
    /// The recorded name, else the build report's, else `base[INDEX]`.
    pub name: String,
    /// The recorded layer key (`sha256:...`); `None` for layers without a record.
    pub key: Option<String>,
    /// The packages of a batch layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    pub digest: Digest,
    pub diff_id: Digest,
    /// Bytes of the blob as the manifest lists it.
    pub size: u64,
    pub media_type: String,
    pub origin: Origin,
    /// For a reused layer, where the build took it from (only with a report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// The history entry's `created_by`; `None` when the history has no entry for the layer.
    pub created_by: Option<String>,
    /// The history entry's `created` time.
    pub created: Option<String>,
}

/// The layers of `image`, bottom first; `report`, when given, must be the report of the build
/// that wrote this image.
pub fn layer_chain(
    image: &InspectedImage,
    report: Option<&BuildReport>,
) -> Result<Vec<ChainLayer>, InspectError> {
    let reported = report.map(|report| report.layers_of(image)).transpose()?;
    let manifest = &image.image;
    let layers = manifest.layers();
    let diff_ids = manifest.diff_ids();
    let records = layer_records(manifest);
    let histories = manifest.layer_histories();
    let created = manifest.layer_created_times();
    let chain = layers
        .into_iter()
        .zip(diff_ids)
        .zip(records.into_iter().zip(histories.into_iter().zip(created)))
        .enumerate()
        .map(
            |(index, ((descriptor, diff_id), (record, (history, created))))| {
                let reported = reported.map(|layers| &layers[index]);
                let origin = match (reported, &record) {
                    (Some(reported), _) => reported.status,
                    (None, Some(_)) => Origin::Built,
                    (None, None) => Origin::Base,
                };
                let name = match (&record, reported) {
                    (Some(record), _) => record.name.clone(),
                    (None, Some(reported)) => reported.name.clone(),
                    (None, None) => format!("base[{index}]"),
                };
                let (key, members) = match record {
                    Some(record) => (Some(record.key), record.members),
                    None => (None, Vec::new()),
                };
                ChainLayer {
                    index,
                    name,
                    key,
                    members,
                    digest: descriptor.digest,
                    diff_id,
                    size: descriptor.size,
                    media_type: descriptor.media_type,
                    origin,
                    reused_from: reported.and_then(|layer| layer.reused_from.clone()),
                    created_by: history.map(|history| history.created_by),
                    created,
                }
            },
        )
        .collect();
    Ok(chain)
}
