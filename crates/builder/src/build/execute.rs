//! Running a planned build: make every layer present in the target (base blobs skipped when the
//! target's previous image lists them, copied or mounted otherwise; reused layers confirmed or
//! mounted from their cache image; the rest built and uploaded as they finish, concurrently),
//! append the layers with their records, write the config, and only then write the manifest and
//! move the tag — unless the tag already points at exactly this image.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_manifest::media_type::is_foreign_layer;
use layerize_manifest::{Descriptor, Digest, History, LayerRecord};
use layerize_registry::{BlobBody, PutOutcome, Store};
use tracing::{info, warn};

use crate::build::apt::make::make_apt_layers;
use crate::build::local_cache::CachedLayer;
use crate::build::plan::{Candidate, Decision, Layer, Origin, PlannedLayer, Work};
use crate::build::prepare::PlannedBuild;
use crate::build::previous::{CacheSource, PreviousImage};
use crate::build::report::{AptPackageReport, AptReport, LayerReport, Report, StepReport};
use crate::build::scripts::{RanStep, ScriptRunner};
use crate::build::spool::{SpoolTask, Spools};
use crate::build::Endpoints;
use crate::layer::filemap::Fingerprint;
use crate::layer::key::layer_key;
use crate::layer::{LayerOptions, WrittenLayer};
use crate::BuildError;

/// How long after its last change a host file must have been left alone before a fingerprint
/// covering it is remembered (timestamps are coarser than writes can be frequent).
const SETTLE_TIME: Duration = Duration::from_secs(2);

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

/// What to do for one layer of the result.
enum Step {
    FromBase(Layer),
    Make(PlannedLayer),
    /// A script step's changes, written to a spool file before any blob moved: upload it.
    Spooled(PlannedLayer, WrittenLayer, tempfile::TempPath),
    /// A file layer being written while the steps ran: upload it once written.
    Spooling(PlannedLayer, SpoolTask),
}

/// A layer made present, with what the local cache should learn from it.
struct Done {
    layer: Layer,
    outcome: PutOutcome,
    fingerprint: Option<Fingerprint>,
}

/// Runs `planned` and returns the report. The target's tag moves only when everything
/// succeeded.
pub async fn execute(endpoints: &Endpoints, planned: PlannedBuild) -> Result<Report, BuildError> {
    let PlannedBuild {
        mut image,
        base_layers,
        mut layers,
        dropped,
        previous,
        cache_images,
        base_index,
        media_type,
        options,
        created,
        jobs,
        local,
        sandbox,
        step_root,
        cache_dir,
        base_env,
        base_fs,
        apt,
        layer_dirs,
    } = planned;
    let family = image.family();
    // Blobs a manifest in the target repository lists are held by it: no HEAD needed.
    let present: HashSet<Digest> = previous
        .as_ref()
        .map(|previous| previous.digests().into_iter().cloned().collect())
        .unwrap_or_default();
    // Before the apt layers become file layers: which of them steps need is told by their work.
    let spools = Spools::new(endpoints.target.spool_dir(), cache_dir.as_deref(), &layers);
    // apt layers are made first (fetched, verified, converted), then script steps run: either
    // failing must leave the target as it was.
    let made_apt = make_apt_layers(
        &mut layers,
        cache_dir.as_deref(),
        base_fs.as_deref(),
        &options,
    )
    .await?;
    let runner = ScriptRunner {
        endpoints,
        base_layers: &base_layers,
        base_env: &base_env,
        base_fs,
        options: &options,
        cache_images: &cache_images,
        sandbox,
        platform: image.platform(),
        cache_dir,
        step_root,
        layer_dirs,
    };
    // Making a step's root and running it leave cores idle, so the file layers to build are
    // written meanwhile into spool files; each is uploaded once every step has succeeded and it
    // is written (the blobs written by then are all on disk at once). Without steps they are
    // written during the transfers instead, `jobs` at a time, each uploaded as soon as it is
    // done. A failing step fails the build at once: writes not started yet never start, one
    // under way is thrown away when it ends.
    let spool_ahead = layers
        .iter()
        .any(|layer| layer.script().is_some() && matches!(layer.decision, Decision::Build(_)));
    let mut spooling = if spool_ahead {
        spools.start_file_layers(&layers, &options, jobs)
    } else {
        HashMap::new()
    };
    let mut ran = runner.run_all(&layers).await?;
    let base_count = base_layers.len();
    let mut steps_report: Vec<StepReport> = Vec::new();
    // Steps that add no layer, by their place in the plan, for the history.
    let mut empty_steps: Vec<(usize, History)> = Vec::new();
    let mut made: Vec<(usize, Step)> = Vec::new();
    // The steps' roots go while layers are written and pushed; dropped last, this waits.
    let mut root_removals: Vec<layerize_sandbox::Removal> = Vec::new();
    for (index, planned) in layers.into_iter().enumerate() {
        let position = base_count + index;
        let Some(_) = planned.script() else {
            let step = match spooling.remove(&index) {
                Some(task) => Step::Spooling(planned, task),
                None => Step::Make(planned),
            };
            made.push((position, step));
            continue;
        };
        let key = planned.key.clone().expect("script layers are keyed");
        match (&planned.decision, ran.remove(&index)) {
            (
                Decision::Build(_),
                Some(RanStep {
                    layer,
                    report,
                    root_removal,
                }),
            ) => {
                root_removals.push(root_removal);
                steps_report.push(report);
                match layer {
                    Some((written, spool)) => {
                        made.push((position, Step::Spooled(planned, written, spool)))
                    }
                    None => empty_steps.push((position, empty_history(&planned, &key))),
                }
            }
            (Decision::Empty(_), _) => {
                steps_report.push(StepReport {
                    name: planned.name.clone(),
                    key: key.clone(),
                    status: Origin::Reused,
                    layer: false,
                    run: None,
                });
                empty_steps.push((position, empty_history(&planned, &key)));
            }
            (Decision::Reuse(_), _) => {
                steps_report.push(StepReport {
                    name: planned.name.clone(),
                    key,
                    status: Origin::Reused,
                    layer: true,
                    run: None,
                });
                made.push((position, Step::Make(planned)));
            }
            (Decision::Build(_), None) => unreachable!("every script to build has run"),
        }
    }
    let transfers = Mutex::new(Transfers::default());
    // Steps run concurrently (bounded by `jobs`), each starting as soon as a slot frees up: layers
    // to make first (they need the CPU; those still being written in the order their writes
    // started, so that no slot waits on a write queued behind others), then base blobs largest
    // first, so the longest transfer never starts last. Results are put back in the plan's order
    // afterwards.
    let mut steps: Vec<(usize, Step)> = base_layers
        .into_iter()
        .map(Step::FromBase)
        .enumerate()
        .chain(made)
        .collect();
    steps.sort_by_key(|(_, step)| match step {
        Step::Make(_) | Step::Spooled(..) => (0, Reverse(0), 0),
        Step::Spooling(_, task) => (0, Reverse(0), task.order + 1),
        Step::FromBase(layer) => (1, Reverse(layer.descriptor.size), 0),
    });
    let context = StepContext {
        endpoints,
        spools: &spools,
        options: &options,
        media_type,
        present: &present,
        cache_images: &cache_images,
    };
    let mut results: Vec<(usize, Done)> = stream::iter(steps)
        .map(|(index, step)| {
            let context = &context;
            let transfers = &transfers;
            async move {
                let done = context.run(step).await?;
                transfers.lock().unwrap().record(done.outcome);
                info!(
                    phase = "build",
                    step = 2,
                    layer = %done.layer.name,
                    digest = %done.layer.descriptor.digest,
                    size = done.layer.descriptor.size,
                    status = ?done.layer.origin,
                    outcome = done.outcome.name(),
                    bytes = done.outcome.bytes_sent(),
                    "Layer present in target"
                );
                Ok::<_, BuildError>((index, done))
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    results.sort_by_key(|(index, _)| *index);

    let mut empty_steps = empty_steps.into_iter().peekable();
    for (position, done) in results
        .iter()
        .filter(|done| done.1.layer.origin != Origin::Base)
    {
        while let Some((_, history)) = empty_steps.next_if(|(at, _)| at < position) {
            image.append_history(history)?;
        }
        let layer = &done.layer;
        let record = LayerRecord {
            name: layer.name.clone(),
            key: layer.key.clone().expect("layers layerize makes have keys"),
            members: layer.members.clone(),
        };
        let mut descriptor = layer.descriptor.clone();
        record.annotate(&mut descriptor, family);
        let history = History {
            created_by: layer.created_by.clone(),
            comment: Some(record.to_comment()),
            empty_layer: false,
        };
        image.append_layer(&descriptor, &layer.diff_id, history)?;
    }
    for (_, history) in empty_steps {
        image.append_history(history)?;
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
    let unchanged = previous
        .as_ref()
        .is_some_and(|previous| previous.tag_digest.as_ref() == Some(&finished.manifest.digest));
    let digest = if unchanged {
        // The tag already points at this very manifest, whose config and layers the registry
        // holds: writing them again would change nothing.
        info!(
            phase = "build",
            step = 8,
            digest = %finished.manifest.digest,
            "The target tag already points at this image; nothing to write"
        );
        finished.manifest.digest.clone()
    } else {
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
        // Every blob the manifest references was confirmed present by the target in this run
        // (listed by its current manifest, HEAD 200, mount 201, upload 201, or a verified write
        // on disk); any failure returned above, so the tag moves only over a complete image.
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
        digest
    };

    let results: Vec<Done> = results.into_iter().map(|(_, done)| done).collect();
    if let Some(local) = &local {
        let now = SystemTime::now();
        for done in &results {
            let layer = &done.layer;
            let Some(key) = &layer.key else { continue };
            local.record_layer(&CachedLayer {
                key: key.clone(),
                digest: layer.descriptor.digest.clone(),
                size: layer.descriptor.size,
                diff_id: layer.diff_id.clone(),
                name: layer.name.clone(),
            });
            if let Some(fingerprint) = &done.fingerprint {
                if fingerprint.is_settled(now, SETTLE_TIME) {
                    local.record_diff_id(&fingerprint.digest, &layer.diff_id);
                }
            }
        }
        for step in steps_report.iter().filter(|step| !step.layer) {
            local.record_empty_step(&step.key, &step.name);
        }
    }
    let transfers = transfers.into_inner().unwrap();
    Ok(Report {
        target: endpoints.target_name.clone(),
        digest,
        manifest_media_type: finished.manifest.media_type,
        layers: results
            .iter()
            .map(|done| LayerReport::from(&done.layer))
            .collect(),
        dropped,
        steps: steps_report,
        bytes_uploaded: transfers.bytes_uploaded,
        blobs_uploaded: transfers.blobs_uploaded,
        blobs_mounted: transfers.blobs_mounted,
        blobs_skipped: transfers.blobs_skipped,
        requests: endpoints.base.requests()
            + endpoints.target.requests()
            + cache_images
                .iter()
                .map(|image| image.store.requests())
                .sum::<u64>(),
        base_index,
        apt: apt.map(|plan| apt_report(plan, &results, &made_apt.scripts)),
    })
}

/// What every step shares.
struct StepContext<'a> {
    endpoints: &'a Endpoints,
    spools: &'a Spools,
    options: &'a Arc<LayerOptions>,
    media_type: &'static str,
    present: &'a HashSet<Digest>,
    cache_images: &'a [PreviousImage],
}

impl StepContext<'_> {
    async fn run(&self, step: Step) -> Result<Done, BuildError> {
        match step {
            Step::FromBase(layer) => {
                // Foreign (non-distributable) layers live at their descriptor's `urls`;
                // registries are not meant to hold them, so they are never copied.
                let outcome = if is_foreign_layer(&layer.descriptor.media_type)
                    || self.present.contains(&layer.descriptor.digest)
                {
                    PutOutcome::Existed
                } else {
                    self.endpoints
                        .target
                        .copy_blob_from(
                            self.endpoints.base.as_ref(),
                            &layer.descriptor.digest,
                            layer.descriptor.size,
                        )
                        .await?
                };
                Ok(Done {
                    layer,
                    outcome,
                    fingerprint: None,
                })
            }
            Step::Spooled(planned, written, spool) => self.upload(planned, written, spool).await,
            Step::Spooling(planned, task) => {
                let (written, spool) = task.written().await?;
                self.upload(planned, written, spool).await
            }
            Step::Make(planned) => {
                let candidate = match &planned.decision {
                    Decision::Reuse(candidate) => Some(candidate.clone()),
                    Decision::Build(_) | Decision::Empty(_) => None,
                };
                if let Some(candidate) = candidate {
                    match self.make_present(&candidate).await {
                        Ok(outcome) => return Ok(self.reused(planned, candidate, outcome)),
                        // Script steps ran before any blob moved; running one now could fail
                        // half-way through the transfers.
                        Err(error) if planned.script().is_some() => {
                            return Err(BuildError::Invalid(format!(
                                "{}: cannot take its cached layer from {}: {error}; build again without that cache",
                                planned.name, candidate.source
                            )))
                        }
                        Err(error) => warn!(
                            layer = %planned.name,
                            source = %candidate.source,
                            %error,
                            "cannot take the cached layer; building it"
                        ),
                    }
                }
                self.build(planned).await
            }
        }
    }

    /// Makes a cached blob present in the target: the target's own and the local cache's were
    /// confirmed while planning; a `--cache-from` image's is mounted or copied now.
    async fn make_present(&self, candidate: &Candidate) -> Result<PutOutcome, BuildError> {
        match &candidate.source {
            CacheSource::Target | CacheSource::Local => Ok(PutOutcome::Existed),
            CacheSource::CacheFrom(_) => {
                let image = self
                    .cache_images
                    .iter()
                    .find(|image| image.source == candidate.source)
                    .expect("candidates come from the cache images");
                Ok(self
                    .endpoints
                    .target
                    .copy_blob_from(image.store.as_ref(), &candidate.digest, candidate.size)
                    .await?)
            }
        }
    }

    fn reused(&self, planned: PlannedLayer, candidate: Candidate, outcome: PutOutcome) -> Done {
        Done {
            layer: Layer {
                name: planned.name,
                key: planned.key,
                members: planned.members,
                created_by: planned.created_by,
                // The key fixes the codec, so the blob is the same whichever family the cached
                // image was; the media type is the target's.
                descriptor: Descriptor::new(self.media_type, candidate.digest, candidate.size),
                diff_id: candidate.diff_id,
                origin: Origin::Reused,
                reused_from: Some(candidate.source),
            },
            outcome,
            fingerprint: match planned.work {
                Work::Files { fingerprint, .. } => Some(fingerprint),
                Work::Script { .. } | Work::Apt(_) => None,
            },
        }
    }

    /// Builds one file layer into a spool file on a blocking thread, then puts it into the
    /// target.
    async fn build(&self, mut planned: PlannedLayer) -> Result<Done, BuildError> {
        let Work::Files { files, .. } = &mut planned.work else {
            unreachable!("script and apt layers are made before the transfers start")
        };
        let files = std::mem::take(files);
        let (written, spool) = self
            .spools
            .write(&planned.name, files, Arc::clone(self.options))
            .await?;
        self.upload(planned, written, spool).await
    }

    /// Puts a layer this run wrote to `spool` into the target; a file layer's diffID is checked
    /// against the one planned (its key was made from it).
    async fn upload(
        &self,
        planned: PlannedLayer,
        written: WrittenLayer,
        spool: tempfile::TempPath,
    ) -> Result<Done, BuildError> {
        let PlannedLayer {
            name,
            created_by,
            members,
            work,
            key,
            decision: _,
        } = planned;
        let fingerprint = match work {
            Work::Files {
                diff_id: Some(expected),
                ..
            } if expected != written.diff_id => {
                return Err(BuildError::Invalid(format!(
                    "{name}: its files changed while the build ran (diffID {expected} when planned, {} when built); run the build again",
                    written.diff_id
                )));
            }
            Work::Files { fingerprint, .. } => {
                log_built(&name, &written);
                Some(fingerprint)
            }
            // A step's layer was logged when its step made it.
            Work::Script { .. } | Work::Apt(_) => None,
        };
        let target = self.endpoints.target.as_ref();
        let outcome = put_layer(target, &written.digest, written.size, &spool).await?;
        self.spools.done(&name, &written.digest, spool);
        let key = key.unwrap_or_else(|| layer_key(&written.diff_id, self.options));
        Ok(Done {
            layer: self.built_layer(name, Some(key), members, created_by, written),
            outcome,
            fingerprint,
        })
    }

    /// A layer this run wrote, as the result lists it.
    fn built_layer(
        &self,
        name: String,
        key: Option<String>,
        members: Vec<String>,
        created_by: String,
        written: WrittenLayer,
    ) -> Layer {
        Layer {
            name,
            key,
            members,
            created_by,
            descriptor: Descriptor::new(self.media_type, written.digest, written.size),
            diff_id: written.diff_id,
            origin: Origin::Built,
            reused_from: None,
        }
    }
}

/// The report of the apt packages: each with the layer that holds it in the result.
fn apt_report(
    plan: crate::build::apt::plan::AptPlan,
    results: &[Done],
    scripts: &HashMap<String, Vec<String>>,
) -> AptReport {
    let has_scripts = |deb: &crate::build::apt::DebPackage| {
        scripts.get(&deb.package.deb.sha256).is_some_and(|scripts| {
            scripts
                .iter()
                .any(|name| layerize_apt::deb::MAINTAINER_SCRIPTS.contains(&name.as_str()))
        })
    };
    let with_scripts: Vec<String> = plan
        .packages
        .iter()
        .filter(|deb| has_scripts(deb))
        .map(|deb| deb.package.name.clone())
        .collect();
    let skipped = plan.scripts == crate::build::apt::AptScripts::Skip;
    // The first result that holds each package, by dpkg name.
    let mut holders: HashMap<String, &Done> = HashMap::new();
    for done in results {
        for name in layerize_manifest::layer_record::packages(&done.layer.name, &done.layer.members)
        {
            holders.entry(name).or_insert(done);
        }
    }
    AptReport {
        sources: plan.sources,
        packages: plan
            .packages
            .iter()
            .map(|deb| {
                let holder = holders.get(&deb.package.dpkg_name());
                AptPackageReport {
                    name: deb.package.name.clone(),
                    version: deb.package.version.clone(),
                    architecture: deb.package.architecture.clone(),
                    layer: holder.map_or_else(String::new, |done| done.layer.name.clone()),
                    status: holder.map_or(Origin::Built, |done| done.layer.origin),
                    requested: deb.requested,
                    pulled_by: deb.pulled_by.clone(),
                    upgrades: deb.upgrades.clone(),
                    sha256: deb.package.deb.sha256.clone(),
                }
            })
            .collect(),
        scripts: if skipped { "skip" } else { "run" },
        scripts_skipped: if skipped {
            with_scripts.clone()
        } else {
            Vec::new()
        },
        with_scripts,
    }
}

/// Puts a spooled layer into the target; a rename into a layout leaves nothing behind, otherwise
/// dropping the spool path afterwards removes the file.
async fn put_layer(
    target: &dyn Store,
    digest: &Digest,
    size: u64,
    spool: &tempfile::TempPath,
) -> Result<PutOutcome, BuildError> {
    Ok(target
        .put_blob(digest, size, BlobBody::Spooled(spool.to_path_buf()))
        .await?)
}

/// The history entry of a script step that changed nothing: no layer, but its record, so that
/// a cache knows the outcome without running it.
fn empty_history(planned: &PlannedLayer, key: &str) -> History {
    let record = LayerRecord {
        name: planned.name.clone(),
        key: key.to_owned(),
        members: Vec::new(),
    };
    History {
        created_by: planned.created_by.clone(),
        comment: Some(record.to_comment()),
        empty_layer: true,
    }
}

/// Logs a layer just written to its spool file.
pub(crate) fn log_built(name: &str, written: &crate::layer::WrittenLayer) {
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
}
