//! Opening the image a reference names for reading: tag or digest -> (index -> platform) ->
//! manifest and config, resolved exactly as a build resolves its base.

use layerize_builder::build::resolve::resolve;
use layerize_manifest::{Digest, Image, Platform};
use layerize_registry::Store;

use crate::InspectError;

/// One platform's image, read.
pub struct InspectedImage {
    /// The reference as the user wrote it (`host/repo:tag`, `oci:DIR:TAG`), for output.
    pub name: String,
    /// The digest of the platform's manifest (not of an index that led to it).
    pub manifest_digest: Digest,
    pub image: Image,
}

impl InspectedImage {
    /// Reads `reference` (a tag or digest) from `store`, selecting `platform` (default
    /// linux/amd64) from an index. `name` is how errors and output call the image.
    pub async fn open(
        store: &dyn Store,
        reference: &str,
        name: &str,
        platform: Option<&Platform>,
    ) -> Result<InspectedImage, InspectError> {
        let resolved = resolve(store, reference, platform)
            .await
            .map_err(|error| InspectError::Open(Box::new(error)))?;
        Ok(InspectedImage {
            name: name.to_owned(),
            manifest_digest: resolved.manifest_digest,
            image: resolved.image,
        })
    }

    pub fn config_digest(&self) -> Digest {
        self.image.config_descriptor().digest
    }
}
