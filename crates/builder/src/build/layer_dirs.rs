//! The layer directories overlay step roots stack: each layer a step needs, extracted once into
//! `<cache dir>/unpacked/v1/<name>` and kept for later builds (its mtime bumped on use, for
//! `layerize cache clean`), so that a rebuild's step root costs a mount instead of writing the
//! base and every package again. Without a cache directory they last for this build only.
//!
//! A directory is named by what identifies its layer's content: a base layer's diffID, or the
//! key of a layer the build makes or reuses (the same key, whether its tar comes from a file
//! map this time or from a reused blob the next).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::build::scripts::cache_or_temporary_dir;
use crate::BuildError;

/// Where layer directories are found and made.
pub(crate) struct LayerDirs {
    dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl LayerDirs {
    pub fn new(cache_dir: Option<&Path>) -> Result<LayerDirs, BuildError> {
        let in_cache = cache_dir.map(layer_dir_root);
        let (dir, temporary) = cache_or_temporary_dir(in_cache, "layer-dirs")?;
        Ok(LayerDirs {
            dir,
            _temporary: temporary,
        })
    }

    /// The directory all layer directories are in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The layer directory of `identity` if it was made before (its use recorded).
    pub fn find(&self, identity: &str) -> Option<PathBuf> {
        let dir = self.dir.join(dir_name(identity));
        if !dir.is_dir() {
            return None;
        }
        let _ = std::fs::File::open(&dir).and_then(|d| d.set_modified(SystemTime::now()));
        Some(dir)
    }

    /// Makes the layer directory of `identity` from its uncompressed `tar`.
    pub fn make(&self, identity: &str, tar: impl Read) -> Result<PathBuf, BuildError> {
        let dir = self.dir.join(dir_name(identity));
        layerize_sandbox::make_layer_dir(tar, &dir).map_err(|error| {
            BuildError::Invalid(format!(
                "making the layer directory {}: {error}",
                dir.display()
            ))
        })?;
        Ok(dir)
    }
}

/// What names a base layer's directory: its diffID.
pub(crate) fn base_layer_identity(diff_id: &layerize_manifest::Digest) -> String {
    format!("base layer {diff_id}")
}

/// What names the directory of a layer the build makes or reuses: its key.
pub(crate) fn layer_identity(key: &str) -> String {
    format!("layer {key}")
}

/// Where a cache directory keeps layer directories.
pub(crate) fn layer_dir_root(cache_dir: &Path) -> PathBuf {
    cache_dir.join("unpacked").join("v1")
}

/// A fixed-length name for `identity` (a key may be long and hold any character).
fn dir_name(identity: &str) -> String {
    let hash = Sha256::digest(identity.as_bytes());
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}
