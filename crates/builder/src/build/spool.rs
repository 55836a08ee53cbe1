//! Where the layers a build writes are spooled before their upload, and what is kept of them
//! afterwards. A step's root takes a reused apt package layer from its blob on disk (fetching it
//! from the target otherwise), so an apt layer that a step needs is spooled in the cache
//! directory's blob dir and left there, under its digest, once uploaded: the next run of the
//! configure step finds it. Every other spool is removed once its upload is done (file layers
//! are re-streamed from their file maps for a step; a step's own layer is spooled by the step).

use std::collections::{HashMap, HashSet};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerize_manifest::Digest;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::build::plan::{Decision, PlannedLayer, Work};
use crate::build::scripts::blob_dir;
use crate::layer::filemap::FileMap;
use crate::layer::{write_layer, LayerOptions, WrittenLayer};
use crate::BuildError;

/// A layer written to a spool file.
pub(crate) type Spooled = (WrittenLayer, tempfile::TempPath);

/// Where a build's file layers are spooled, and which spools stay as cache blobs.
pub(crate) struct Spools {
    /// The target's own spool dir (a layout renames spools into itself), else the temp dir.
    spool_dir: PathBuf,
    /// The cache's blob dir, when there is a cache and the target has no spool dir of its own.
    blob_dir: Option<PathBuf>,
    /// The apt layers (by name) that script steps of the plan need.
    kept: HashSet<String>,
}

impl Spools {
    /// For `layers` as planned, before their apt layers are made into file layers.
    pub fn new(
        target_dir: Option<PathBuf>,
        cache_dir: Option<&Path>,
        layers: &[PlannedLayer],
    ) -> Spools {
        let kept = layers
            .iter()
            .filter_map(|layer| match &layer.work {
                Work::Script { needs, .. } => Some(needs),
                _ => None,
            })
            .flatten()
            .filter(|&&needed| matches!(layers[needed].work, Work::Apt(_)))
            .map(|&needed| layers[needed].name.clone())
            .collect();
        let blob_dir = match (&target_dir, cache_dir) {
            (None, Some(cache_dir)) => Some(blob_dir(cache_dir)),
            _ => None,
        };
        Spools {
            spool_dir: target_dir.unwrap_or_else(std::env::temp_dir),
            blob_dir,
            kept,
        }
    }

    /// The cache's blob dir when the layer `name` is spooled there to stay.
    fn blob_dir_for(&self, name: &str) -> Option<&Path> {
        self.blob_dir
            .as_deref()
            .filter(|_| self.kept.contains(name))
    }

    /// Where the layer `name` is spooled.
    fn dir_for(&self, name: &str) -> PathBuf {
        self.blob_dir_for(name)
            .unwrap_or(&self.spool_dir)
            .to_owned()
    }

    /// Starts writing every file layer the plan builds, `jobs` at once and the largest first
    /// (so the longest does not start last; their gzip members share the compression pool);
    /// returns them by layer index, each to be awaited when its upload may start. The file maps
    /// are cloned: the steps read them at the same time.
    pub fn start_file_layers(
        &self,
        layers: &[PlannedLayer],
        options: &Arc<LayerOptions>,
        jobs: usize,
    ) -> HashMap<usize, SpoolTask> {
        let mut to_write: Vec<(usize, &str, FileMap)> = layers
            .iter()
            .enumerate()
            .filter_map(|(index, layer)| match (&layer.work, &layer.decision) {
                (Work::Files { files, .. }, Decision::Build(_)) => {
                    Some((index, layer.name.as_str(), files.clone()))
                }
                _ => None,
            })
            .collect();
        to_write.sort_by_key(|(_, _, files)| std::cmp::Reverse(files.known_content_bytes()));
        // A fair semaphore: the writes start in about this order (tasks start as the scheduler
        // polls them).
        let slots = Arc::new(Semaphore::new(jobs.clamp(1, Semaphore::MAX_PERMITS)));
        to_write
            .into_iter()
            .enumerate()
            .map(|(order, (index, name, files))| {
                let dir = self.dir_for(name);
                let (slots, options) = (Arc::clone(&slots), Arc::clone(options));
                let handle = tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await.expect("never closed");
                    write_spool_aside(files, options, dir).await
                });
                (index, SpoolTask { handle, order })
            })
            .collect()
    }

    /// Writes the layer `name` into a new spool file, on a blocking thread.
    pub async fn write(
        &self,
        name: &str,
        files: FileMap,
        options: Arc<LayerOptions>,
    ) -> Result<Spooled, BuildError> {
        write_spool_aside(files, options, self.dir_for(name)).await
    }

    /// The layer `name` is in the target: its spool stays as the cache's blob `digest` when a
    /// step needs it, else it is removed.
    pub fn done(&self, name: &str, digest: &Digest, spool: tempfile::TempPath) {
        let Some(dir) = self.blob_dir_for(name) else {
            return;
        };
        let path = dir.join(digest.hex());
        // A blob there already has the same bytes. A layout target took the spool itself.
        if !layerize_basefs::touch_if_present(&path) {
            if let Err(error) = spool.persist(&path) {
                debug!(layer = %name, %error, "the layer's blob is not kept for its step");
            }
        }
    }
}

/// A layer being written to its spool file. Dropped unfinished (the build failed), it stops:
/// a write not started never starts, one under way is thrown away when it ends.
pub(crate) struct SpoolTask {
    handle: tokio::task::JoinHandle<Result<Spooled, BuildError>>,
    /// Its place in the order the writes start in: uploads waiting for them go in that order.
    pub order: usize,
}

impl SpoolTask {
    /// The spooled layer, once written.
    pub async fn written(mut self) -> Result<Spooled, BuildError> {
        (&mut self.handle)
            .await
            .map_err(|err| BuildError::Invalid(format!("layer writing task failed: {err}")))?
    }
}

impl Drop for SpoolTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// [`write_spool`] on a blocking thread.
async fn write_spool_aside(
    files: FileMap,
    options: Arc<LayerOptions>,
    dir: PathBuf,
) -> Result<Spooled, BuildError> {
    tokio::task::spawn_blocking(move || write_spool(&files, &options, &dir))
        .await
        .map_err(|err| BuildError::Invalid(format!("layer builder thread failed: {err}")))?
}

/// Writes `files` as a layer into a new spool file in `dir` (created if missing).
pub(crate) fn write_spool(
    files: &FileMap,
    options: &LayerOptions,
    dir: &Path,
) -> Result<Spooled, BuildError> {
    let io_error = |source| BuildError::Io {
        context: format!("creating a spool file in {}", dir.display()),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let spool = tempfile::Builder::new()
        .prefix(".layerize-spool-")
        .tempfile_in(dir)
        .map_err(io_error)?;
    let written = write_layer(
        files,
        options,
        BufWriter::with_capacity(1 << 20, spool.as_file()),
    )?;
    Ok((written, spool.into_temp_path()))
}
