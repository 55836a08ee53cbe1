//! Resolving a base image in a store: tag or digest -> (index -> platform) -> manifest + config.

use layerize_manifest::{select_manifest, Descriptor, Digest, Image, ManifestKind, Platform};
use layerize_registry::{read_blob, Store};

use crate::BuildError;

/// Configs larger than this are refused: real ones are a few KiB, and the config is held in memory.
const MAX_CONFIG_BYTES: usize = 8 << 20;

/// A base image resolved to one platform.
pub struct ResolvedImage {
    /// The digest of the platform's manifest (not of the index that led to it).
    pub manifest_digest: Digest,
    /// The digest of what the reference itself names (the index, for a multi-platform image).
    pub reference_digest: Digest,
    pub image: Image,
}

/// Reads `reference` (a tag or digest) from `store`, selecting `platform` (default linux/amd64)
/// from an index. A single-platform base is checked against `platform` only when one was asked
/// for, as crane and buildah take such a base whatever it is built for.
pub async fn resolve(
    store: &dyn Store,
    reference: &str,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, BuildError> {
    let mut fetched = store.get_manifest(reference).await?;
    let reference_digest = fetched.digest.clone();
    let kind = ManifestKind::detect(&fetched.bytes, Some(&fetched.media_type))?;
    if matches!(kind, ManifestKind::DockerList | ManifestKind::OciIndex) {
        let chosen = select_manifest(&fetched.bytes, &platform.cloned().unwrap_or_default())?;
        fetched = store.get_manifest(chosen.digest.as_str()).await?;
        let kind = ManifestKind::detect(&fetched.bytes, Some(&fetched.media_type))?;
        if matches!(kind, ManifestKind::DockerList | ManifestKind::OciIndex) {
            return Err(BuildError::Invalid(format!(
                "{}: the index entry for {} is itself an index; nested indexes are not supported",
                store.name(),
                chosen.digest
            )));
        }
    }
    let config_digest = config_digest_of(&fetched.bytes)?;
    let config = read_blob(store, &config_digest, MAX_CONFIG_BYTES).await?;
    let image = Image::from_json(&fetched.bytes, &config)?;
    if let (Some(wanted), Some(actual)) = (platform, image.platform()) {
        if !wanted.matches(&actual) {
            return Err(BuildError::Invalid(format!(
                "{}: the base is a single-platform image for {actual}; platform {wanted} is not available",
                store.name()
            )));
        }
    }
    Ok(ResolvedImage {
        manifest_digest: fetched.digest,
        reference_digest,
        image,
    })
}

/// The config digest a single-image manifest points at, read before the config is fetched.
fn config_digest_of(manifest: &[u8]) -> Result<Digest, BuildError> {
    #[derive(serde::Deserialize)]
    struct ConfigField {
        config: Descriptor,
    }
    serde_json::from_slice::<ConfigField>(manifest)
        .map(|field| field.config.digest)
        .map_err(|err| BuildError::Invalid(format!("malformed base manifest: {err}")))
}
