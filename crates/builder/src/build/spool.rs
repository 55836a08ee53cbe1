//! Where the layers a build writes are spooled before their upload, and what is kept of them
//! afterwards: a layer a script step needs (an apt package layer under the configure step, a
//! file layer a step names) is spooled in the cache directory's blob dir and left there once
//! uploaded, so that the next run of that step finds its blob on disk instead of fetching it
//! back from the target. Any other spool goes once its upload is done.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_manifest::Digest;

use crate::build::execute::log_built;
use crate::build::plan::{Decision, PlannedLayer, Work};
use crate::build::scripts::blob_dir;
use crate::layer::filemap::FileMap;
use crate::layer::{write_layer, LayerOptions, WrittenLayer};
use crate::BuildError;

/// A layer written to a spool file.
pub(crate) type Spooled = (WrittenLayer, tempfile::TempPath);

pub(crate) struct Spools {
    /// The target's own spool dir (a layout renames spools into itself), else the temp dir.
    default: PathBuf,
    /// The cache's blob dir, when there is a cache and the target has no spool dir of its own.
    kept: Option<PathBuf>,
    /// The layers (by name) that script steps of the plan need.
    needed: HashSet<String>,
}

impl Spools {
    pub fn new(
        target_dir: Option<PathBuf>,
        cache_dir: Option<&Path>,
        layers: &[PlannedLayer],
    ) -> Spools {
        let needed = layers
            .iter()
            .filter_map(|layer| match &layer.work {
                Work::Script { needs, .. } => Some(needs),
                _ => None,
            })
            .flatten()
            .map(|&needed| layers[needed].name.clone())
            .collect();
        let kept = match (&target_dir, cache_dir) {
            (None, Some(cache_dir)) => Some(blob_dir(cache_dir)),
            _ => None,
        };
        Spools {
            default: target_dir.unwrap_or_else(std::env::temp_dir),
            kept,
            needed,
        }
    }

    /// Where the layer `name` is spooled, and whether it is kept there after its upload.
    fn kept_dir(&self, name: &str) -> Option<&Path> {
        self.kept.as_deref().filter(|_| self.needed.contains(name))
    }

    /// Writes every file layer the plan builds, `jobs` at once and the largest first (so the
    /// longest does not start last; their gzip members share the compression pool); returns
    /// them by layer index.
    pub async fn write_file_layers(
        &self,
        layers: &[PlannedLayer],
        options: &Arc<LayerOptions>,
        jobs: usize,
    ) -> Result<HashMap<usize, Spooled>, BuildError> {
        let mut to_write: Vec<(usize, String, FileMap)> = layers
            .iter()
            .enumerate()
            .filter_map(|(index, layer)| match (&layer.work, &layer.decision) {
                (Work::Files { files, .. }, Decision::Build(_)) => {
                    Some((index, layer.name.clone(), files.clone()))
                }
                _ => None,
            })
            .collect();
        to_write.sort_by_key(|(_, _, files)| std::cmp::Reverse(files.known_content_bytes()));
        stream::iter(to_write)
            .map(|(index, name, files)| async move {
                let spooled = self.write(name, files, Arc::clone(options)).await?;
                Ok::<_, BuildError>((index, spooled))
            })
            .buffer_unordered(jobs)
            .try_collect()
            .await
    }

    /// Writes the layer `name` into a new spool file, on a blocking thread.
    pub async fn write(
        &self,
        name: String,
        files: FileMap,
        options: Arc<LayerOptions>,
    ) -> Result<Spooled, BuildError> {
        let dir = self.kept_dir(&name).unwrap_or(&self.default).to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
            let spool = tempfile::Builder::new()
                .prefix(".layerize-spool-")
                .tempfile_in(&dir)
                .map_err(|source| BuildError::Io {
                    context: format!("creating a spool file in {}", dir.display()),
                    source,
                })?;
            let out = std::io::BufWriter::with_capacity(1 << 20, spool.as_file());
            let written = write_layer(&files, &options, out)?;
            log_built(&name, &written);
            Ok::<_, BuildError>((written, spool.into_temp_path()))
        })
        .await
        .map_err(|err| BuildError::Invalid(format!("layer builder thread failed: {err}")))?
    }

    /// The layer `name` is in the target: its spool is kept as the blob `digest` of the cache
    /// when a step needs it, else removed.
    pub fn done(&self, name: &str, digest: &Digest, spool: tempfile::TempPath) {
        let Some(dir) = self.kept_dir(name) else {
            return;
        };
        let path = dir.join(digest.hex());
        // A blob kept already is the same bytes; a failed rename costs the next step a fetch.
        if !layerize_basefs::mark_used(&path) {
            let _ = spool.persist(&path);
        }
    }
}
