//! The base's filesystem as planning reads it: its readable layers, the on-disk cache of their
//! indexes, the index itself, and the Debian name of the platform's architecture.

use std::path::Path;

use layerize_basefs::{index_image, Capture, Follower, FsIndex, LayerCache, TarDir};
use layerize_manifest::media_type::is_foreign_layer;
use layerize_manifest::{Descriptor, Digest, Platform};
use tracing::{info, warn};

use crate::build::plan::Layer;
use crate::build::report::BaseIndexReport;
use crate::build::scripts::blob_dir;
use crate::BuildError;

/// The filesystem of the base, from the on-disk cache where it has the layers, else read from
/// their blobs once, keeping the content of the `capture` files for the cache. Foreign
/// (non-distributable) layers cannot be read from the store: their paths are left out, with a
/// warning.
pub(crate) async fn index_base(
    store: &dyn layerize_registry::Store,
    readable: &[(Descriptor, Digest)],
    cache: Option<&LayerCache>,
    capture: &[Capture],
) -> Result<(FsIndex, BaseIndexReport), BuildError> {
    let base_fs = index_image(store, readable, cache, capture).await?;
    let report = BaseIndexReport {
        paths: base_fs.index.len(),
        layers_from_cache: base_fs.stats.layers_from_cache,
        layers_read: base_fs.stats.layers_read,
        blob_bytes_read: base_fs.stats.blob_bytes_read,
    };
    info!(
        phase = "build",
        step = 6,
        paths = report.paths,
        layers_from_cache = report.layers_from_cache,
        layers_read = report.layers_read,
        blob_bytes_read = report.blob_bytes_read,
        "Indexed the base filesystem"
    );
    Ok((base_fs.index, report))
}

/// The base layers whose blobs the store has (a foreign, non-distributable layer lives at a URL
/// of its own), with a warning for each one left out.
pub(crate) fn readable_layers(base_layers: &[Layer]) -> Vec<(Descriptor, Digest)> {
    base_layers
        .iter()
        .filter(|layer| {
            let foreign = is_foreign_layer(&layer.descriptor.media_type);
            if foreign {
                warn!(
                    layer = %layer.name,
                    digest = %layer.descriptor.digest,
                    "the base has a non-distributable layer; destinations are not resolved against its files"
                );
            }
            !foreign
        })
        .map(|layer| (layer.descriptor.clone(), layer.diff_id.clone()))
        .collect()
}

/// The on-disk cache of base layer indexes (read-only for a dry run), keeping the tars of the
/// layers it reads where script steps look for them when `for_steps`, each handed to
/// `follower` as it is written.
pub(crate) fn base_cache(
    cache_dir: Option<&Path>,
    dry_run: bool,
    for_steps: bool,
    follower: Option<Follower>,
) -> Option<LayerCache> {
    let cache_dir = cache_dir?;
    let cache = LayerCache::new(cache_dir);
    Some(match (dry_run, for_steps) {
        (true, _) => cache.read_only(),
        (false, true) => {
            let tars = TarDir::new(blob_dir(cache_dir));
            cache.keeping_tars(match follower {
                Some(follower) => tars.followed_by(follower),
                None => tars,
            })
        }
        (false, false) => cache,
    })
}

/// Debian's name for a platform's architecture (linux/amd64 when none is known).
pub(crate) fn debian_architecture(platform: Option<&Platform>) -> Result<String, BuildError> {
    let Some(platform) = platform else {
        return Ok("amd64".to_owned());
    };
    let name = match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("amd64", _) => "amd64",
        ("arm64", _) => "arm64",
        ("arm", Some("v5" | "v6")) => "armel",
        ("arm", _) => "armhf",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64el",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64el",
        ("loong64", _) => "loong64",
        (other, _) => {
            return Err(BuildError::Apt(format!(
                "the platform's architecture {other:?} has no Debian name that layerize knows"
            )))
        }
    };
    Ok(name.to_owned())
}
