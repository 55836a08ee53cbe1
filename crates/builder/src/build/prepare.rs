//! Planning a build, before any blob moves: resolve the base and apply the config, read the
//! previous images (target tag, `--cache-from`), batch layer entries under the layer budget, make
//! and check every layer's file map against the base, work out the keys a cache could answer, and
//! decide for each layer whether it is reused (and from where) or built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{future, stream, StreamExt, TryStreamExt};
use layerize_basefs::FsIndex;
use layerize_manifest::{layer_media_type, layer_record, Image};
use tracing::info;

use crate::build::apt::{self, AptSpec};
use crate::build::base_index::{base_cache, debian_architecture, index_base, readable_layers};
use crate::build::budget;
use crate::build::layer_dirs::LayerDirs;
use crate::build::local_cache::LocalCache;
use crate::build::plan::{
    BuildReason, Candidate, Decision, Dropped, Layer, LayerSpec, Origin, PlanLine, PlannedLayer,
    Work,
};
use crate::build::previous::{read_previous, CacheImage, CacheSource, PreviousImage};
use crate::build::report::BaseIndexReport;
use crate::build::resolve::resolve;
use crate::build::script_plan::{empty_step_source, key_scripts, script_needs};
use crate::build::{BuildRequest, Endpoints};
use crate::layer::apt::{database_key, packages_key, DatabaseInputs};
use crate::layer::filemap::{file_identity, FileMap};
use crate::layer::key::{diff_id_of, layer_key};
use crate::layer::recipe::{self, Input};
use crate::layer::LayerOptions;
use crate::BuildError;

/// A build decided but not run: everything [`crate::build::execute`] needs, and the plan to show.
pub struct PlannedBuild {
    /// The base with the config edits and annotations applied, layers not appended yet.
    pub(crate) image: Image,
    pub base_layers: Vec<Layer>,
    pub layers: Vec<PlannedLayer>,
    pub dropped: Vec<Dropped>,
    /// The base's config `Env`, which script steps start from.
    pub(crate) base_env: Vec<String>,
    /// The base's filesystem index, when a layer needed it.
    pub(crate) base_fs: Option<Arc<FsIndex>>,
    /// The image at the target tag before this build.
    pub(crate) previous: Option<PreviousImage>,
    /// The `--cache-from` images that could be read.
    pub(crate) cache_images: Vec<PreviousImage>,
    pub base_index: Option<BaseIndexReport>,
    pub(crate) media_type: &'static str,
    pub(crate) options: Arc<LayerOptions>,
    pub(crate) created: String,
    pub(crate) jobs: usize,
    pub(crate) local: Option<LocalCache>,
    pub(crate) sandbox: layerize_sandbox::ModeChoice,
    pub(crate) step_root: layerize_sandbox::RootChoice,
    /// What the apt entries resolved to, when there were any.
    pub apt: Option<apt::plan::AptPlan>,
    /// Where fetched blobs are kept for script sandboxes (`None` for a dry run).
    pub(crate) cache_dir: Option<std::path::PathBuf>,
    /// The layer directories for steps' overlay roots, when they were made ahead.
    pub(crate) layer_dirs: Option<Arc<LayerDirs>>,
}

impl PlannedBuild {
    /// The plan, one line per layer (base layers first) and per dropped layer.
    pub fn lines(&self) -> impl Iterator<Item = PlanLine<'_>> {
        self.base_layers
            .iter()
            .map(PlanLine::Base)
            .chain(self.layers.iter().map(PlanLine::Layer))
            .chain(self.dropped.iter().map(PlanLine::Dropped))
    }
}

/// Plans a build. Reads the base, the previous images and the inputs; writes nothing but the
/// base filesystem index to the local cache, and not even that for a dry run.
pub async fn plan(
    endpoints: &Endpoints,
    request: BuildRequest,
) -> Result<PlannedBuild, BuildError> {
    let BuildRequest {
        platform,
        layers: specs,
        edits,
        annotations,
        layer_options,
        created,
        jobs,
        cache_dir,
        max_layers,
        dry_run,
        sandbox,
        step_root,
        apt,
    } = request;
    info!(
        phase = "build",
        step = 0,
        base_image = %endpoints.base.name(),
        target_image = %endpoints.target.name(),
        layers = specs.len(),
        "Start image building process"
    );
    check_names(&specs)?;
    let base = resolve(
        endpoints.base.as_ref(),
        &endpoints.base_reference,
        platform.as_ref(),
    )
    .await?;
    let mut image = base.image;
    let base_manifest = base.manifest_digest.clone();
    let base_env = image.env();
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
    let media_type = layer_media_type(image.family(), layer_options.compression.kind())?;
    // Config edits and annotations touch neither the layers nor the history that appending
    // changes, so they are applied (and checked) now, before any blob moves.
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
            members: Vec::new(),
            created_by: String::new(),
            descriptor,
            diff_id,
            origin: Origin::Base,
            reused_from: None,
        })
        .collect();

    let platform = platform.or_else(|| image.platform());
    let target_image = CacheImage {
        name: endpoints.target_name.clone(),
        store: Arc::clone(&endpoints.target),
        reference: endpoints.target_reference.clone(),
    };
    let (previous, cache_images) = future::join(
        read_previous(&target_image, platform.as_ref(), CacheSource::Target),
        future::join_all(endpoints.cache_from.iter().map(|image| {
            read_previous(
                image,
                platform.as_ref(),
                CacheSource::CacheFrom(image.name.clone()),
            )
        })),
    )
    .await;
    let cache_images: Vec<PreviousImage> = cache_images.into_iter().flatten().collect();

    // The base layers that can be read and their index cache, found once: for the index, then
    // for apt, which reads files of the same layers.
    let needs_index = specs
        .iter()
        .any(|spec| !spec.inputs.is_empty() || spec.script.is_some() || spec.apt.is_some());
    let readable = if needs_index {
        readable_layers(&base_layers)
    } else {
        Vec::new()
    };
    // Steps unpack the base's layers into their roots: the read that indexes a layer keeps its
    // tar for them.
    let runs_steps = specs.iter().any(|spec| {
        spec.script.is_some() || (spec.apt.is_some() && apt.scripts == apt::AptScripts::Run)
    });
    // Steps' overlay roots stack the base's layer directories: each is made while the read
    // that indexes its layer goes on (a core is idle then), not after.
    let layer_dirs = if runs_steps && !dry_run {
        LayerDirs::ahead_of_steps(cache_dir.as_deref(), sandbox, step_root)?
    } else {
        None
    };
    let follower = layer_dirs.as_ref().map(LayerDirs::follower);
    let cache = base_cache(cache_dir.as_deref(), dry_run, runs_steps, follower);
    let has_apt = specs.iter().any(|spec| spec.apt.is_some());
    let (base_fs, base_index) = if needs_index {
        // apt's files of the base, read along (a warm cache has them from then on).
        let capture = if has_apt {
            apt::plan::expected_base_files()
        } else {
            Vec::new()
        };
        let (index, report) =
            index_base(endpoints.base.as_ref(), &readable, cache.as_ref(), &capture).await?;
        (Some(Arc::new(index)), Some(report))
    } else {
        (None, None)
    };
    let (specs, apt_plan) = match &base_fs {
        Some(index) if has_apt => {
            let architecture = debian_architecture(platform.as_ref())?;
            apt::plan::expand(
                specs,
                &apt,
                apt::plan::AptBase {
                    store: endpoints.base.as_ref(),
                    layers: &readable,
                    cache: cache.as_ref(),
                    index,
                    architecture,
                },
                cache_dir.as_deref(),
            )
            .await?
        }
        _ => (specs, None),
    };
    check_names(&specs)?;

    let specs = budget::apply(
        specs,
        max_layers,
        base_layers.len(),
        previous.iter().chain(&cache_images),
    )?;

    let needs = script_needs(&specs)?;

    let local = cache_dir.as_deref().map(LocalCache::new);
    let may_hit = previous
        .iter()
        .chain(&cache_images)
        .any(|image| image.recorded().next().is_some())
        || local.as_ref().is_some_and(LocalCache::has_layers);
    let options = Arc::new(layer_options);
    let local = Arc::new(local);
    let mut layers =
        prepare_layers(specs, &needs, base_fs.clone(), &options, &local, may_hit).await?;
    let local = Arc::into_inner(local).expect("the preparing tasks have ended");
    key_scripts(&mut layers, &base_manifest, &options);

    let candidates = candidates(previous.iter().chain(&cache_images));
    // Local-cache hits each cost a HEAD in the target: asked for all layers at once.
    let found = future::try_join_all(layers.iter().map(|layer| async {
        let Some(key) = &layer.key else {
            return Ok(None);
        };
        match candidates.get(key.as_str()) {
            Some(candidate) => Ok(Some(candidate.clone())),
            None => confirmed_local(endpoints, local.as_ref(), key).await,
        }
    }))
    .await?;
    for (layer, found) in layers.iter_mut().zip(found) {
        if let Some(candidate) = found {
            layer.decision = Decision::Reuse(candidate);
        } else if let (Some(key), Some(_)) = (&layer.key, layer.script()) {
            if let Some(source) =
                empty_step_source(key, previous.iter().chain(&cache_images), local.as_ref())
            {
                layer.decision = Decision::Empty(source);
            }
        }
    }
    let dropped = dropped(previous.as_ref(), &layers);
    for line in layers
        .iter()
        .map(PlanLine::Layer)
        .chain(dropped.iter().map(PlanLine::Dropped))
    {
        info!(phase = "plan", "{line}");
    }
    Ok(PlannedBuild {
        image,
        base_layers,
        layers,
        dropped,
        base_env,
        base_fs,
        previous,
        cache_images,
        base_index,
        media_type,
        options,
        created,
        jobs: jobs.max(1),
        local,
        sandbox,
        step_root,
        apt: apt_plan,
        cache_dir: cache_dir.filter(|_| !dry_run),
        layer_dirs,
    })
}

/// Layer entry and package names must be unique: they are how images record what a layer holds,
/// which the budget's batching goes by.
fn check_names(specs: &[LayerSpec]) -> Result<(), BuildError> {
    let mut seen = HashSet::new();
    for name in specs.iter().flat_map(LayerSpec::packages) {
        if !seen.insert(name.clone()) {
            return Err(BuildError::Invalid(format!(
                "two layers are named {name:?}; layer and package names must be unique"
            )));
        }
    }
    Ok(())
}

/// Makes each layer's file map over the base and walks it without reading file contents
/// (its fingerprint), so that a missing source, a bad tree or a conflict with the base fails the
/// build before anything is transferred. Every layer resolves against the base alone, never
/// against the other layers of the build, so that a layer does not depend on its neighbours.
/// When a cache could have a layer, its diffID (hence its key) is found now: from the local
/// cache when its fingerprint is known, else by hashing its tar without compressing it.
async fn prepare_layers(
    specs: Vec<LayerSpec>,
    needs: &[Vec<usize>],
    base: Option<Arc<FsIndex>>,
    options: &Arc<LayerOptions>,
    local: &Arc<Option<LocalCache>>,
    may_hit: bool,
) -> Result<Vec<PlannedLayer>, BuildError> {
    let parallel = std::thread::available_parallelism().map_or(1, usize::from);
    let needed: HashSet<usize> = needs.iter().flatten().copied().collect();
    stream::iter(specs.into_iter().zip(needs.iter().cloned()).enumerate())
        .map(|(index, (spec, needs))| {
            let base = base.clone();
            let options = Arc::clone(options);
            let local = Arc::clone(local);
            // A layer a script needs is keyed even when no cache could have it: the script's
            // key covers its key.
            let keyed = may_hit || needed.contains(&index);
            async move {
                tokio::task::spawn_blocking(move || {
                    prepare_layer(
                        spec,
                        needs,
                        base,
                        &options,
                        local.as_ref().as_ref(),
                        keyed,
                        may_hit,
                    )
                })
                .await
                .map_err(|err| {
                    BuildError::Invalid(format!("layer planning thread failed: {err}"))
                })?
            }
        })
        .buffered(parallel)
        .try_collect()
        .await
}

fn prepare_layer(
    spec: LayerSpec,
    needs: Vec<usize>,
    base: Option<Arc<FsIndex>>,
    options: &LayerOptions,
    local: Option<&LocalCache>,
    keyed: bool,
    may_hit: bool,
) -> Result<PlannedLayer, BuildError> {
    let reason = if may_hit {
        BuildReason::NewKey
    } else {
        BuildReason::NoCache
    };
    if let Some(apt) = spec.apt {
        let key = apt_key(&apt, options);
        return Ok(PlannedLayer {
            name: spec.name,
            created_by: spec.created_by,
            members: spec.members,
            work: Work::Apt(apt),
            key: Some(key),
            decision: Decision::Build(reason),
        });
    }
    if let Some(step) = spec.script {
        return Ok(PlannedLayer {
            name: spec.name,
            created_by: spec.created_by,
            members: spec.members,
            work: Work::Script { step, needs },
            // Worked out once the layers it needs have theirs (`key_scripts`).
            key: None,
            decision: Decision::Build(reason),
        });
    }
    let mut files = match base {
        Some(base) => FileMap::on_base(base),
        None => FileMap::new(),
    };
    recipe::apply(&spec.inputs, &mut files).map_err(|error| BuildError::Input {
        layer: spec.name.clone(),
        error: Box::new(error),
    })?;
    let files_error = |error| BuildError::Files {
        layer: spec.name.clone(),
        error: Box::new(error),
    };
    let fingerprint = files
        .fingerprint(options.mtime, &tar_identities(&spec.inputs))
        .map_err(files_error)?;
    let known = local.and_then(|local| local.diff_id(&fingerprint.digest));
    let diff_id = match known {
        Some(diff_id) => Some(diff_id),
        None if keyed => Some(diff_id_of(&files, options)?.0),
        None => None,
    };
    let key = diff_id.as_ref().map(|diff_id| layer_key(diff_id, options));
    Ok(PlannedLayer {
        name: spec.name,
        created_by: spec.created_by,
        members: spec.members,
        work: Work::Files {
            files,
            fingerprint,
            diff_id,
        },
        key,
        decision: Decision::Build(reason),
    })
}

/// An apt layer's key, from the index alone (see [`crate::layer::apt`]).
fn apt_key(spec: &AptSpec, options: &LayerOptions) -> String {
    match spec {
        AptSpec::Packages(layer) => {
            let names: Vec<String> = layer
                .debs
                .iter()
                .map(|deb| deb.package.dpkg_name())
                .collect();
            let debs: Vec<(&str, &str)> = names
                .iter()
                .zip(&layer.debs)
                .map(|(name, deb)| (name.as_str(), deb.package.deb.sha256.as_str()))
                .collect();
            packages_key(
                &debs,
                layerize_apt::deb::CONVERSION_FORMAT,
                &layer.usr.links,
                &layer.filters.key_lines(),
                options,
            )
        }
        AptSpec::Database(database) => {
            let names: Vec<String> = database
                .packages
                .iter()
                .map(|deb| deb.package.dpkg_name())
                .collect();
            database_key(
                &DatabaseInputs {
                    base_status: &database.base_status,
                    base_extended_states: database.base_extended_states.as_deref(),
                    packages: names
                        .iter()
                        .zip(&database.packages)
                        .map(|(name, deb)| {
                            (
                                name.as_str(),
                                deb.package.deb.sha256.as_str(),
                                deb.requested,
                            )
                        })
                        .collect(),
                    configure: database.configure,
                    old_lists: &database.old_lists,
                    usr_links: &database.usr.links,
                },
                options,
            )
        }
        AptSpec::Request(_) => unreachable!("requests are expanded while planning"),
    }
}

/// The identity on disk of the tar inputs, which a file map holds only as (spooled) copies: what
/// a fingerprint needs to notice that a tar changed.
fn tar_identities(inputs: &[Input]) -> Vec<u8> {
    let mut seed = Vec::new();
    for input in inputs {
        if let Input::Tar(path) = input {
            seed.extend_from_slice(path.as_os_str().as_encoded_bytes());
            seed.push(0);
            if let Ok(metadata) = std::fs::metadata(path) {
                seed.extend_from_slice(&file_identity(&metadata));
            }
        }
    }
    seed
}

/// Every key the previous images recorded, the first image (the target's) winning.
fn candidates<'a>(images: impl Iterator<Item = &'a PreviousImage>) -> HashMap<&'a str, Candidate> {
    let mut found = HashMap::new();
    for image in images {
        for (layer, record) in image.recorded() {
            found
                .entry(record.key.as_str())
                .or_insert_with(|| Candidate {
                    digest: layer.descriptor.digest.clone(),
                    size: layer.descriptor.size,
                    diff_id: layer.diff_id.clone(),
                    source: image.source.clone(),
                });
        }
    }
    found
}

/// The local cache's blob for `key`, when the target repository confirms it holds it.
async fn confirmed_local(
    endpoints: &Endpoints,
    local: Option<&LocalCache>,
    key: &str,
) -> Result<Option<Candidate>, BuildError> {
    let Some(cached) = local.and_then(|local| local.layer(key)) else {
        return Ok(None);
    };
    if !endpoints.target.has_blob(&cached.digest).await? {
        info!(phase = "plan", key, digest = %cached.digest, "the local cache knows the layer, but the target does not hold its blob");
        return Ok(None);
    }
    Ok(Some(Candidate {
        digest: cached.digest,
        size: cached.size,
        diff_id: cached.diff_id,
        source: CacheSource::Local,
    }))
}

/// The layers of the previous image at the target tag whose keys this build does not have.
fn dropped(previous: Option<&PreviousImage>, layers: &[PlannedLayer]) -> Vec<Dropped> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let keys: HashSet<&str> = layers
        .iter()
        .filter_map(|layer| layer.key.as_deref())
        .collect();
    let packages: HashSet<String> = layers
        .iter()
        .flat_map(|layer| layer_record::packages(&layer.name, &layer.members))
        .collect();
    previous
        .recorded()
        .filter(|(_, record)| !keys.contains(record.key.as_str()))
        .map(|(_, record)| {
            let gone: Vec<String> = record
                .packages()
                .into_iter()
                .filter(|name| !packages.contains(name))
                .collect();
            let reason = if gone.len() == record.packages().len() {
                "not in the build any more".to_owned()
            } else if !gone.is_empty() {
                format!("its batch lost {}", gone.join(", "))
            } else if record.members.is_empty() {
                "its inputs changed".to_owned()
            } else {
                "a package in its batch changed, or the batch was regrouped".to_owned()
            };
            Dropped {
                name: record.name.clone(),
                key: record.key.clone(),
                reason,
            }
        })
        .collect()
}
