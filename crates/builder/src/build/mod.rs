//! Running a build: resolve the base, make every layer of the plan present in the target (base
//! blobs copied or mounted, new layers built and uploaded, concurrently), write the config, verify
//! every blob, and only then write the manifest and move the tag.

pub mod plan;
pub mod report;
pub mod resolve;
use std::cmp::Reverse;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_basefs::{index_image, FsIndex, LayerCache};
use layerize_manifest::media_type::is_foreign_layer;
use layerize_manifest::{layer_media_type, ConfigEdit, Descriptor, History, Platform};
use layerize_registry::{BlobBody, PutOutcome, Store};
use tracing::{info, warn};

use crate::layer::filemap::FileMap;
use crate::layer::recipe;
use crate::layer::{write_layer, LayerOptions};
use crate::BuildError;
use plan::{Layer, LayerSpec, Origin, Plan, PreparedLayer, Step};
use report::{BaseIndexReport, LayerReport, Report};
use resolve::resolve;

/// Where the base comes from and where the result goes.
pub struct Endpoints {
    pub base: Arc<dyn Store>,
    /// The tag or digest of the base in `base`.
    pub base_reference: String,
    /// The base's full name for the `org.opencontainers.image.base.name` annotation, when it has
    /// one that others can pull (a registry reference).
    pub base_name: Option<String>,
    pub target: Arc<dyn Store>,
    /// The target as the user named it (`host/repo:tag`, `oci:DIR:TAG`), for the report.
    pub target_name: String,
    /// The tag to point at the result in `target`.
    pub target_reference: String,
    /// Whether the target only accepts OCI media types (an OCI layout): Docker bases are
    /// converted as `skopeo copy --format oci` does.
    pub target_needs_oci: bool,
}

/// What to build on top of the base.
pub struct BuildRequest {
    /// The platform asked for; `None` takes linux/amd64 from an index and any single-platform base.
    pub platform: Option<Platform>,
    pub layers: Vec<LayerSpec>,
    pub edits: Vec<ConfigEdit>,
    pub annotations: Vec<(String, String)>,
    pub layer_options: LayerOptions,
    /// The image's `created` time (RFC 3339), normally from `SOURCE_DATE_EPOCH`.
    pub created: String,
    /// How many blobs move at once.
    pub jobs: usize,
    /// Where the base filesystem index is cached per layer (`None`: not cached on disk).
    pub cache_dir: Option<PathBuf>,
}

/// Counts of what happened to blobs in the target.
#[derive(Default)]
struct Transfers {
    bytes_uploaded: u64,
    blobs_uploaded: u64,
    blobs_mounted: u64,
    blobs_skipped: u64,
}

impl Transfers {
    fn record(&mut self, outcome: PutOutcome) {
        match outcome {
            PutOutcome::Existed => self.blobs_skipped += 1,
            PutOutcome::Mounted => self.blobs_mounted += 1,
            PutOutcome::Uploaded { bytes } => {
                self.blobs_uploaded += 1;
                self.bytes_uploaded += bytes;
            }
        }
    }
}

/// Runs one build and returns its report. The target's tag moves only when everything succeeded.
pub async fn build(endpoints: &Endpoints, request: BuildRequest) -> Result<Report, BuildError> {
    let BuildRequest {
        platform,
        layers,
        edits,
        annotations,
        layer_options,
        created,
        jobs,
        cache_dir,
    } = request;
    info!(
        phase = "build",
        step = 0,
        base_image = %endpoints.base.name(),
        target_image = %endpoints.target.name(),
        layers = layers.len(),
        "Start image building process"
    );

    let base = resolve(
        endpoints.base.as_ref(),
        &endpoints.base_reference,
        platform.as_ref(),
    )
    .await?;
    let mut image = base.image;
    info!(
        phase = "build",
        step = 6,
        media_type = %image.manifest_media_type(),
        manifest_digest = %base.manifest_digest,
        layers = image.layers().len(),
        "Obtained base image manifest"
    );
    if endpoints.target_needs_oci {
        image.to_oci()?;
    }
    let family = image.family();
    let media_type = layer_media_type(family, layer_options.compression.kind())?;
    // Every input is checked before any blob moves: config edits and annotations are applied
    // now (they touch neither the layers nor the history that appending changes), layer inputs
    // are checked as file maps below.
    for edit in &edits {
        image.apply(edit)?;
    }
    image.set_base_annotations(endpoints.base_name.as_deref(), &base.manifest_digest);
    for (key, value) in &annotations {
        image.set_annotation(key, value)?;
    }
    let base_layers: Vec<Layer> = image
        .layers()
        .into_iter()
        .zip(image.diff_ids())
        .enumerate()
        .map(|(index, (descriptor, diff_id))| Layer {
            name: format!("base[{index}]"),
            key: None,
            created_by: String::new(),
            descriptor,
            diff_id,
            origin: Origin::Base,
        })
        .collect();
    let (base_fs, base_index) = if layers.iter().any(|spec| !spec.inputs.is_empty()) {
        let (index, report) =
            index_base(endpoints.base.as_ref(), &base_layers, cache_dir.as_deref()).await?;
        (Some(Arc::new(index)), Some(report))
    } else {
        (None, None)
    };
    let layers = prepare_layers(layers, base_fs.as_ref())?;

    let plan = Plan::new(base_layers, layers);

    let transfers = std::sync::Mutex::new(Transfers::default());
    let jobs = jobs.max(1);
    let layer_options = Arc::new(layer_options);
    // Steps run concurrently (bounded by `jobs`), each starting as soon as a slot frees up: layers
    // to build first (they need the CPU), then base blobs largest first, so the longest transfer
    // never starts last. Results are put back in the plan's order afterwards.
    let mut steps: Vec<(usize, Step)> = plan.steps.into_iter().enumerate().collect();
    steps.sort_by_key(|(_, step)| match step {
        Step::Build(_) => (0, Reverse(0)),
        Step::FromBase(layer) => (1, Reverse(layer.descriptor.size)),
    });
    let mut results: Vec<(usize, Layer)> = stream::iter(steps)
        .map(|(index, step)| {
            let layer_options = Arc::clone(&layer_options);
            let transfers = &transfers;
            async move {
                let (layer, outcome) = match step {
                    // Foreign (non-distributable) layers live at their descriptor's `urls`;
                    // registries are not meant to hold them, so they are never copied.
                    Step::FromBase(layer) if is_foreign_layer(&layer.descriptor.media_type) => {
                        (*layer, PutOutcome::Existed)
                    }
                    Step::FromBase(layer) => {
                        let outcome = endpoints
                            .target
                            .copy_blob_from(
                                endpoints.base.as_ref(),
                                &layer.descriptor.digest,
                                layer.descriptor.size,
                            )
                            .await?;
                        (*layer, outcome)
                    }
                    Step::Build(prepared) => {
                        build_layer(
                            endpoints.target.as_ref(),
                            prepared,
                            layer_options,
                            media_type,
                        )
                        .await?
                    }
                };
                transfers.lock().unwrap().record(outcome);
                info!(
                    phase = "build",
                    step = 2,
                    layer = %layer.name,
                    digest = %layer.descriptor.digest,
                    size = layer.descriptor.size,
                    outcome = outcome.name(),
                    bytes = outcome.bytes_sent(),
                    "Layer present in target"
                );
                Ok::<_, BuildError>((index, layer))
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    results.sort_by_key(|(index, _)| *index);
    let results: Vec<Layer> = results.into_iter().map(|(_, layer)| layer).collect();

    for layer in results.iter().filter(|layer| layer.origin != Origin::Base) {
        let history = History {
            created_by: layer.created_by.clone(),
            comment: None,
            empty_layer: false,
        };
        image.append_layer(&layer.descriptor, &layer.diff_id, history)?;
    }
    // After the appends: it also dates the history entries they added.
    image.set_created(&created);
    info!(
        phase = "build",
        step = 4,
        diff_ids = image.diff_ids().len(),
        "Updated base image config, added new layer diffIDs"
    );

    let finished = image.finish();
    let config_outcome = endpoints
        .target
        .put_blob(
            &finished.config.digest,
            finished.config.size,
            BlobBody::Bytes(finished.config_bytes.clone().into()),
        )
        .await?;
    transfers.lock().unwrap().record(config_outcome);
    info!(
        phase = "build",
        step = 5,
        config_digest = %finished.config.digest,
        "Uploaded updated config"
    );

    // Every blob the manifest references was confirmed present by the target in this run (HEAD
    // 200, mount 201, upload 201, or a verified write on disk); any failure returned above, so
    // the tag below moves only over a complete image, without a second round of HEADs.
    info!(
        phase = "build",
        step = 7,
        updated_manifest_size = finished.manifest.size,
        "Updated manifest, pointing to new config and layers"
    );
    let digest = endpoints
        .target
        .put_manifest(
            &endpoints.target_reference,
            &finished.manifest_bytes,
            &finished.manifest.media_type,
        )
        .await?;
    info!(
        phase = "build",
        step = 8,
        target = %endpoints.target.name(),
        digest = %digest,
        "Uploaded updated manifest to target"
    );

    let transfers = transfers.into_inner().unwrap();
    Ok(Report {
        target: endpoints.target_name.clone(),
        digest,
        manifest_media_type: finished.manifest.media_type,
        layers: results.iter().map(LayerReport::from).collect(),
        bytes_uploaded: transfers.bytes_uploaded,
        blobs_uploaded: transfers.blobs_uploaded,
        blobs_mounted: transfers.blobs_mounted,
        blobs_skipped: transfers.blobs_skipped,
        requests: endpoints.base.requests() + endpoints.target.requests(),
        base_index,
    })
}

/// The filesystem of the base, from the on-disk cache where it has the layers, else read from
/// their blobs once. Foreign (non-distributable) layers cannot be read from the store: their
/// paths are left out, with a warning.
async fn index_base(
    store: &dyn Store,
    base_layers: &[Layer],
    cache_dir: Option<&std::path::Path>,
) -> Result<(FsIndex, BaseIndexReport), BuildError> {
    let readable: Vec<_> = base_layers
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
        .collect();
    let cache = cache_dir.map(LayerCache::new);
    let base_fs = index_image(store, &readable, cache.as_ref(), &[]).await?;
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

/// Applies each layer's inputs to a file map over the base and walks it once without reading
/// file contents, so that a missing source, a bad tree or a conflict with the base fails the
/// build before anything is transferred. Every layer resolves against the base alone, never
/// against the other layers of the build, so that a layer does not depend on its neighbours.
fn prepare_layers(
    layers: Vec<LayerSpec>,
    base: Option<&Arc<FsIndex>>,
) -> Result<Vec<PreparedLayer>, BuildError> {
    layers
        .into_iter()
        .map(|spec| {
            let input_error = |error| BuildError::Input {
                layer: spec.name.clone(),
                error: Box::new(error),
            };
            let mut files = match base {
                Some(base) => FileMap::on_base(Arc::clone(base)),
                None => FileMap::new(),
            };
            recipe::apply(&spec.inputs, &mut files).map_err(input_error)?;
            files.validate().map_err(|error| BuildError::Files {
                layer: spec.name.clone(),
                error: Box::new(error),
            })?;
            Ok(PreparedLayer {
                name: spec.name,
                created_by: spec.created_by,
                files,
            })
        })
        .collect()
}

/// Builds one layer into a spool file on a blocking thread, then puts it into the target.
async fn build_layer(
    target: &dyn Store,
    prepared: PreparedLayer,
    options: Arc<LayerOptions>,
    media_type: &'static str,
) -> Result<(Layer, PutOutcome), BuildError> {
    let spool_dir = target.spool_dir().unwrap_or_else(std::env::temp_dir);
    let PreparedLayer {
        name,
        created_by,
        files,
    } = prepared;
    let (written, spool) = tokio::task::spawn_blocking(move || {
        let spool = tempfile::Builder::new()
            .prefix(".layerize-spool-")
            .tempfile_in(&spool_dir)
            .map_err(|source| BuildError::Io {
                context: format!("creating a spool file in {}", spool_dir.display()),
                source,
            })?;
        let out = std::io::BufWriter::with_capacity(1 << 20, spool.as_file());
        let written = write_layer(&files, &options, out)?;
        Ok::<_, BuildError>((written, spool.into_temp_path()))
    })
    .await
    .map_err(|err| BuildError::Invalid(format!("layer builder thread failed: {err}")))??;
    info!(
        phase = "build",
        step = 1,
        layer = %name,
        diff_id = %written.diff_id,
        digest = %written.digest,
        compressed_size = written.size,
        uncompressed_size = written.uncompressed_size,
        "Built layer"
    );
    let outcome = target
        .put_blob(
            &written.digest,
            written.size,
            BlobBody::Spooled(spool.to_path_buf()),
        )
        .await?;
    // A rename into the store leaves nothing behind; otherwise this removes the spool file.
    drop(spool);
    let layer = Layer {
        name,
        key: None,
        created_by,
        descriptor: Descriptor::new(media_type, written.digest, written.size),
        diff_id: written.diff_id,
        origin: Origin::Built,
    };
    Ok((layer, outcome))
}
