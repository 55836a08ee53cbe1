//! `export-chain`: the layer chain as one JSON document for machines, in the spirit of the
//! seed's `layers_cache.json`: per layer its key, name, digests, parent, size, time and status,
//! with the image's manifest and config digests at the top.

use layerize_manifest::Digest;
use serde::Serialize;

use crate::chain::{ChainLayer, Origin};
use crate::InspectedImage;

/// The exported document.
#[derive(Clone, Debug, Serialize)]
pub struct ExportedChain {
    /// The image as named on the command line.
    pub image: String,
    /// The platform manifest's digest.
    pub digest: Digest,
    pub config_digest: Digest,
    pub media_type: String,
    pub layers: Vec<ExportedLayer>,
}

/// One layer, bottom first.
#[derive(Clone, Debug, Serialize)]
pub struct ExportedLayer {
    pub index: usize,
    pub key: Option<String>,
    pub name: String,
    pub digest: Digest,
    pub diff_id: Digest,
    /// The digest of the layer below; `None` for the bottom layer.
    pub parent: Option<Digest>,
    pub size: u64,
    /// The history entry's `created` time.
    pub created: Option<String>,
    pub status: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    pub media_type: String,
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

pub fn export(image: &InspectedImage, chain: Vec<ChainLayer>) -> ExportedChain {
    let mut parent: Option<Digest> = None;
    let layers = chain
        .into_iter()
        .map(|layer| ExportedLayer {
            index: layer.index,
            key: layer.key,
            name: layer.name,
            digest: layer.digest.clone(),
            diff_id: layer.diff_id,
            parent: parent.replace(layer.digest),
            size: layer.size,
            created: layer.created,
            status: layer.origin,
            reused_from: layer.reused_from,
            media_type: layer.media_type,
            created_by: layer.created_by,
            members: layer.members,
        })
        .collect();
    ExportedChain {
        image: image.name.clone(),
        digest: image.manifest_digest.clone(),
        config_digest: image.config_digest(),
        media_type: image.image.manifest_media_type().to_owned(),
        layers,
    }
}
