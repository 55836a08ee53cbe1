//! Running the script steps a plan builds, before any blob moves: each in a fresh sandbox made of
//! the base's layers and the layers it needs, independent steps at once (bounded by the cores),
//! a step only after the steps it needs; its changes written as a layer into a spool file. A
//! failing step fails the build here, so nothing of it reaches the target.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_basefs::{decompressed, touch_if_present, FsIndex, TarDir};
use layerize_manifest::media_type::is_foreign_layer;
use layerize_manifest::{Digest, Platform};
use layerize_registry::Store;
use layerize_sandbox::{self as sandbox, ExitStatus, Mode, ModeChoice, RootChoice, Rootfs, Stream};
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, warn};

use crate::build::apt::plan::CONFIGURE_LAYER;
use crate::build::execute::log_built;
use crate::build::layer_dirs::{Identity, LayerDirs, Lease};
use crate::build::plan::{Decision, Layer, PlannedLayer, Work};
use crate::build::previous::{CacheSource, PreviousImage};
use crate::build::report::{StepReport, StepRun};
use crate::build::spool::write_spool;
use crate::build::Endpoints;
use crate::layer::changes::changes_file_map;
use crate::layer::tar_writer::write_tar;
use crate::layer::{LayerOptions, WrittenLayer};
use crate::BuildError;

/// Blobs fetched at once for the steps' roots.
const CONCURRENT_FETCHES: usize = 4;

/// How many of a failing step's last output lines its error shows.
const TAIL_LINES: usize = 20;

/// A step that ran: its layer (none when it changed nothing) and what to report.
pub(crate) struct RanStep {
    pub layer: Option<(WrittenLayer, tempfile::TempPath)>,
    pub report: StepReport,
    /// Its root, being removed while the build goes on; keep it until the build ends.
    pub root_removal: sandbox::Removal,
}

/// Everything running steps needs from the build.
pub(crate) struct ScriptRunner<'a> {
    pub endpoints: &'a Endpoints,
    pub base_layers: &'a [Layer],
    pub base_env: &'a [String],
    pub base_fs: Option<Arc<FsIndex>>,
    pub options: &'a Arc<LayerOptions>,
    pub cache_images: &'a [PreviousImage],
    pub sandbox: ModeChoice,
    /// The image's platform: its programs are what the steps run.
    pub platform: Option<Platform>,
    /// Where base and cached blobs are kept once fetched (the cache directory's `blobs/v1/`).
    pub cache_dir: Option<PathBuf>,
    /// Overlay roots or written ones.
    pub step_root: RootChoice,
    /// Layer directories made ahead (the base's, while it was indexed), to use for overlay
    /// roots.
    pub layer_dirs: Option<Arc<LayerDirs>>,
}

impl ScriptRunner<'_> {
    /// Runs every script step of `layers` that is to be built; returns them by layer index.
    pub async fn run_all(
        &self,
        layers: &[PlannedLayer],
    ) -> Result<HashMap<usize, RanStep>, BuildError> {
        let to_run = steps_to_run(layers);
        if to_run.is_empty() {
            return Ok(HashMap::new());
        }
        // The configure layer of apt packages is a step too; it can be left out.
        let apt_hint = if to_run
            .iter()
            .any(|&index| layers[index].name == CONFIGURE_LAYER)
        {
            " (apt packages' maintainer scripts run as a step: --apt-scripts=skip, or `scripts: skip` in the build file's apt section, leaves them out)"
        } else {
            ""
        };
        if let Some(platform) = &self.platform {
            check_runnable(platform)
                .map_err(|error| BuildError::Invalid(format!("{error}{apt_hint}")))?;
        }
        let mode = sandbox::detect(self.sandbox).map_err(|error| {
            BuildError::Invalid(format!(
                "script steps need a sandbox, and none can be used here: {error}{apt_hint}"
            ))
        })?;
        info!(phase = "script", sandbox = %mode, steps = to_run.len(), "Running script steps");
        let blobs = BlobDir::new(self.cache_dir.as_deref())?;
        let base_blobs = self.fetch_base(&blobs).await?;
        let reused_blobs = self.fetch_reused_needs(layers, &to_run, &blobs).await?;

        // Levels: a step runs once every step it needs that is also run has finished.
        let mut level: HashMap<usize, usize> = HashMap::new();
        for &index in &to_run {
            let Work::Script { needs, .. } = &layers[index].work else {
                unreachable!("only script layers are run")
            };
            let depth = needs
                .iter()
                .filter_map(|needed| level.get(needed))
                .max()
                .map_or(0, |depth| depth + 1);
            level.insert(index, depth);
        }
        let levels = level.values().copied().max().unwrap_or(0);
        let parallel = std::thread::available_parallelism().map_or(1, usize::from);
        let root_parent = self.root_parent(to_run.len());
        info!(phase = "script", dir = %root_parent.display(), "Step roots are made here");
        let layer_dirs = self.layer_dirs(mode, &root_parent)?;
        let ran: Mutex<HashMap<usize, Arc<RanStep>>> = Mutex::new(HashMap::new());
        for depth in 0..=levels {
            let now: Vec<usize> = to_run
                .iter()
                .copied()
                .filter(|index| level[index] == depth)
                .collect();
            let results: Vec<(usize, RanStep)> = stream::iter(now)
                .map(|index| {
                    let sources = self.sources(layers, index, &base_blobs, &reused_blobs, &ran);
                    let layer = &layers[index];
                    let root_parent = root_parent.as_path();
                    let layer_dirs = layer_dirs.as_ref();
                    async move {
                        let step = self
                            .run_one(layer, sources, mode, root_parent, layer_dirs)
                            .await?;
                        Ok::<_, BuildError>((index, step))
                    }
                })
                .buffer_unordered(parallel)
                .try_collect()
                .await?;
            let mut ran = ran.lock().unwrap();
            for (index, step) in results {
                ran.insert(index, Arc::new(step));
            }
        }
        Ok(ran
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|(index, step)| {
                let step = Arc::into_inner(step).expect("no step holds another's result any more");
                (index, step)
            })
            .collect())
    }

    /// What the sandbox of layer `index` is made of, in order: the base's blobs, then each
    /// layer it needs (file layers re-streamed from their file maps: the same key, the same
    /// bytes as the layer this build makes or reuses).
    fn sources(
        &self,
        layers: &[PlannedLayer],
        index: usize,
        base_blobs: &[(Digest, PathBuf)],
        reused_blobs: &HashMap<usize, PathBuf>,
        ran: &Mutex<HashMap<usize, Arc<RanStep>>>,
    ) -> Vec<Source> {
        let Work::Script { needs, .. } = &layers[index].work else {
            unreachable!("only script layers are run")
        };
        let ran = ran.lock().unwrap();
        let mut sources: Vec<Source> = base_blobs
            .iter()
            .map(|(diff_id, blob)| Source {
                identity: Identity::diff_id(diff_id),
                content: Content::Blob(blob.clone()),
            })
            .collect();
        for &needed in needs {
            let layer = &layers[needed];
            let key =
                || Identity::key(layer.key.as_deref().expect("layers a step needs are keyed"));
            let source = match (&layer.work, &layer.decision) {
                (Work::Files { files, .. }, _) => Some((key(), Content::Files(files.clone()))),
                (Work::Apt(_), Decision::Reuse(_)) => reused_blobs
                    .get(&needed)
                    .cloned()
                    .map(|blob| (key(), Content::Blob(blob))),
                (Work::Apt(_), _) => unreachable!("apt layers to build are made first"),
                // A step's output is known by its diffID: its key does not decide its bytes.
                (Work::Script { .. }, Decision::Reuse(candidate)) => reused_blobs
                    .get(&needed)
                    .cloned()
                    .map(|blob| (Identity::diff_id(&candidate.diff_id), Content::Blob(blob))),
                (Work::Script { .. }, Decision::Empty(_)) => None,
                (Work::Script { .. }, Decision::Build(_)) => ran
                    .get(&needed)
                    .and_then(|step| step.layer.as_ref())
                    .map(|(written, spool)| {
                        (
                            Identity::diff_id(&written.diff_id),
                            Content::Blob(spool.to_path_buf()),
                        )
                    }),
            };
            sources.extend(source.map(|(identity, content)| Source { identity, content }));
        }
        sources
    }

    /// Runs one step on a blocking thread: assembles its root, runs it, writes its changes.
    async fn run_one(
        &self,
        planned: &PlannedLayer,
        sources: Vec<Source>,
        mode: Mode,
        root_parent: &Path,
        layer_dirs: Option<&Arc<LayerDirs>>,
    ) -> Result<RanStep, BuildError> {
        let Work::Script { step, .. } = &planned.work else {
            unreachable!("only script layers are run")
        };
        let name = planned.name.clone();
        let key = planned
            .key
            .clone()
            .expect("script keys are worked out while planning");
        let mut env: Vec<(String, String)> = Vec::new();
        // The base config's environment, or the PATH a step gets when it sets none.
        if self.base_env.is_empty() {
            set_env(&mut env, "PATH", sandbox::DEFAULT_PATH);
        }
        for entry in self.base_env {
            if let Some((variable, value)) = entry.split_once('=') {
                set_env(&mut env, variable, value);
            }
        }
        for (variable, value) in &step.env {
            set_env(&mut env, variable, value);
        }
        let sandbox_step = sandbox::Step {
            argv: step.argv(),
            env,
            workdir: step.workdir.clone().unwrap_or_else(|| "/".to_owned()),
            user: step.user.clone(),
            network: step.network,
        };
        let job = StepJob {
            name: name.clone(),
            step: sandbox_step,
            sources,
            mode,
            base_fs: self.base_fs.clone(),
            options: Arc::clone(self.options),
            spool_dir: self
                .endpoints
                .target
                .spool_dir()
                .unwrap_or_else(std::env::temp_dir),
            root_parent: root_parent.to_path_buf(),
            layer_dirs: layer_dirs.cloned(),
            root_choice: self.step_root,
        };
        let (layer, run, root_removal) = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|err| BuildError::Invalid(format!("script step thread failed: {err}")))??;
        Ok(RanStep {
            report: StepReport {
                name,
                key,
                status: crate::build::plan::Origin::Built,
                layer: layer.is_some(),
                run: Some(run),
            },
            layer,
            root_removal,
        })
    }

    /// Where the roots of `steps` steps are made: room for as many as run at once, each about
    /// the base's size unpacked (a gzip layer unpacks to about 3x its blob) plus what the step
    /// needs.
    fn root_parent(&self, steps: usize) -> PathBuf {
        let parallel = std::thread::available_parallelism().map_or(1, usize::from);
        let blob_bytes: u64 = self
            .base_layers
            .iter()
            .map(|layer| layer.descriptor.size)
            .sum();
        root_parent(
            self.cache_dir.as_deref(),
            4 * blob_bytes * parallel.min(steps) as u64,
        )
    }

    /// Where overlay roots' layer directories are, when steps get overlay roots: as asked,
    /// and where the namespaces mode is used and overlay mounts work (else their roots are
    /// written, or the build fails when overlay roots were asked for).
    fn layer_dirs(
        &self,
        mode: Mode,
        root_parent: &Path,
    ) -> Result<Option<Arc<LayerDirs>>, BuildError> {
        if self.step_root == RootChoice::Written {
            return Ok(None);
        }
        let dirs = if mode == Mode::Namespaces {
            let dirs = match &self.layer_dirs {
                Some(ahead) => Arc::clone(ahead),
                None => Arc::new(LayerDirs::new(self.cache_dir.as_deref())?),
            };
            sandbox::overlay_available(dirs.path(), root_parent).map(|()| dirs)
        } else {
            Err(format!("the {mode} sandbox mounts nothing"))
        };
        match dirs {
            Ok(dirs) => {
                info!(phase = "script", dir = %dirs.path().display(), "Step roots are overlays of layer directories kept here");
                Ok(Some(dirs))
            }
            Err(why) if self.step_root == RootChoice::Overlay => Err(BuildError::Invalid(format!(
                "overlay step roots were asked for (--step-root overlay), but {why}"
            ))),
            Err(why) => {
                info!(phase = "script", reason = %why, "Step roots are written: no overlay roots here");
                Ok(None)
            }
        }
    }

    /// The base's layer blobs on local disk, fetched once (kept in the cache directory), with
    /// their diffIDs.
    async fn fetch_base(&self, blobs: &BlobDir) -> Result<Vec<(Digest, PathBuf)>, BuildError> {
        let mut paths = Vec::new();
        for layer in self.base_layers {
            if is_foreign_layer(&layer.descriptor.media_type) {
                warn!(layer = %layer.name, "the base has a non-distributable layer; script steps run without its files");
                continue;
            }
            let tar = blobs
                .unpacked(self.endpoints.base.as_ref(), &layer.descriptor.digest)
                .await?;
            paths.push((layer.diff_id.clone(), tar));
        }
        Ok(paths)
    }

    /// The blobs of reused script layers that steps to run need, fetched from where they were
    /// found.
    async fn fetch_reused_needs(
        &self,
        layers: &[PlannedLayer],
        to_run: &[usize],
        blobs: &BlobDir,
    ) -> Result<HashMap<usize, PathBuf>, BuildError> {
        let mut wanted: BTreeSet<usize> = BTreeSet::new();
        for &index in to_run {
            if let Work::Script { needs, .. } = &layers[index].work {
                wanted.extend(needs.iter().copied().filter(|&needed| {
                    matches!(
                        (&layers[needed].work, &layers[needed].decision),
                        (Work::Script { .. } | Work::Apt(_), Decision::Reuse(_))
                    )
                }));
            }
        }
        // Several at once: a configure step needs every reused package layer.
        stream::iter(wanted)
            .map(|needed| async move {
                let Decision::Reuse(candidate) = &layers[needed].decision else {
                    unreachable!("only reused layers are fetched")
                };
                let store: &dyn Store = match &candidate.source {
                    CacheSource::Target | CacheSource::Local => self.endpoints.target.as_ref(),
                    CacheSource::CacheFrom(_) => self
                        .cache_images
                        .iter()
                        .find(|image| image.source == candidate.source)
                        .map(|image| image.store.as_ref())
                        .expect("candidates come from the cache images"),
                };
                Ok::<_, BuildError>((needed, blobs.fetch(store, &candidate.digest).await?))
            })
            .buffer_unordered(CONCURRENT_FETCHES)
            .try_collect()
            .await
    }
}

/// The script layers of `layers` to run, by index.
fn steps_to_run(layers: &[PlannedLayer]) -> Vec<usize> {
    (0..layers.len())
        .filter(|&index| {
            layers[index].script().is_some() && matches!(layers[index].decision, Decision::Build(_))
        })
        .collect()
}

/// Where step roots are made: in memory (`/dev/shm`) when it has room for them, because a
/// root is written whole for every step and a disk makes that the slowest part of a step;
/// else beside the cache's blobs, else the temp dir.
fn root_parent(cache_dir: Option<&Path>, needed: u64) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if free_bytes(shm).is_some_and(|free| free > needed.saturating_mul(2)) {
        return shm.to_owned();
    }
    cache_dir.map_or_else(std::env::temp_dir, |dir| dir.join("sandbox"))
}

/// The bytes an unprivileged process may still write on the file system of `dir`, if it is a
/// writable directory.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid C string and `stats` a writable statvfs.
    let writable = unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if !writable || unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Refuses an image whose programs this machine cannot run (another architecture with no
/// qemu-user handler registered with binfmt_misc), before any step starts.
fn check_runnable(platform: &Platform) -> Result<(), BuildError> {
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    if platform.os != "linux" {
        return Err(BuildError::Invalid(format!(
            "script steps run the image's own programs, and a {} image cannot run on Linux",
            platform.os
        )));
    }
    if platform.architecture == host {
        return Ok(());
    }
    let qemu = match platform.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    let handler = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu}"));
    if handler.exists() {
        return Ok(());
    }
    Err(BuildError::Invalid(format!(
        "script steps run the image's own programs: this linux/{} image cannot run on this {host} machine without a qemu-user handler ({} is not registered; e.g. apt-get install qemu-user-static binfmt-support)",
        platform.architecture,
        handler.display()
    )))
}

/// Sets `variable` in `env`, replacing an earlier value in place.
fn set_env(env: &mut Vec<(String, String)>, variable: &str, value: &str) {
    match env.iter_mut().find(|(name, _)| name == variable) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((variable.to_owned(), value.to_owned())),
    }
}

/// One layer of a step's sandbox.
struct Source {
    /// What names its layer directory.
    identity: Identity,
    content: Content,
}

/// Where a layer's tar comes from.
enum Content {
    /// A layer blob on disk (any compression).
    Blob(PathBuf),
    /// A file layer of this build, streamed as its tar.
    Files(crate::layer::filemap::FileMap),
}

/// A step with everything it needs, to run on a blocking thread.
struct StepJob {
    name: String,
    step: sandbox::Step,
    sources: Vec<Source>,
    mode: Mode,
    base_fs: Option<Arc<FsIndex>>,
    options: Arc<LayerOptions>,
    spool_dir: PathBuf,
    /// Where the step's root filesystem is made (a fresh directory, removed afterwards).
    root_parent: PathBuf,
    /// Set when steps get overlay roots.
    layer_dirs: Option<Arc<LayerDirs>>,
    root_choice: RootChoice,
}

type StepLayer = Option<(WrittenLayer, tempfile::TempPath)>;

impl StepJob {
    fn run(self) -> Result<(StepLayer, StepRun, sandbox::Removal), BuildError> {
        let name = &self.name;
        let sandbox_error =
            |error: sandbox::SandboxError| BuildError::Invalid(format!("step {name:?}: {error}"));
        let assembling = Instant::now();
        std::fs::create_dir_all(&self.root_parent).map_err(|source| BuildError::Io {
            context: format!("creating {}", self.root_parent.display()),
            source,
        })?;
        // The leases are held until the step's layer is written: its lower directories stay
        // put meanwhile.
        let (overlay, mut leases) = match &self.layer_dirs {
            Some(dirs) => match self.overlay_root(dirs) {
                Ok((rootfs, leases)) => (Some(rootfs), leases),
                Err(error) if self.root_choice == RootChoice::Overlay => return Err(error),
                Err(error) => {
                    warn!(step = %name, %error, "no overlay root for this step: its root is written instead");
                    (None, Vec::new())
                }
            },
            None => (None, Vec::new()),
        };
        let mut root_kind = if overlay.is_some() {
            "overlay"
        } else {
            "written"
        };
        let mut rootfs = match overlay {
            Some(rootfs) => rootfs,
            None => self.written_root()?,
        };
        info!(phase = "script", step = %name, root = root_kind, seconds = assembling.elapsed().as_secs_f64(), "Assembled the step's root filesystem");
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut on_output = |output: sandbox::Output<'_>| {
            let stream = match output.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            info!(phase = "script", step = %name, stream, line = output.line, "[{name}] {}", output.line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(output.line.to_owned());
        };
        let ran = match sandbox::run(&mut rootfs, &self.step, self.mode, &mut on_output) {
            // Nothing of the step ran: under `auto` it runs in a written root instead, as when
            // the overlay could not be made (the probe mounted two other layer directories).
            Err(error @ sandbox::SandboxError::OverlayMount { .. })
                if self.root_choice == RootChoice::Auto =>
            {
                warn!(step = %name, %error, "the overlay root did not mount: the step runs in a written root instead");
                leases.clear();
                rootfs = self.written_root()?;
                root_kind = "written";
                sandbox::run(&mut rootfs, &self.step, self.mode, &mut on_output)
            }
            ran => ran,
        };
        let (outcome, changes) = ran.map_err(sandbox_error)?;
        let exit_code = match outcome.status {
            ExitStatus::Code(0) => 0,
            ExitStatus::Code(code) => {
                return Err(BuildError::StepFailed {
                    step: name.clone(),
                    status: format!("exit code {code}"),
                    tail: tail.into(),
                })
            }
            ExitStatus::Signal(signal) => {
                return Err(BuildError::StepFailed {
                    step: name.clone(),
                    status: format!("signal {signal}"),
                    tail: tail.into(),
                })
            }
        };
        if !outcome.network_isolated && !self.step.network {
            warn!(step = %name, sandbox = %outcome.mode, "the step could reach the network: the {} sandbox cannot isolate it", outcome.mode);
        }
        let run = StepRun {
            mode: outcome.mode.to_string(),
            root: root_kind.to_owned(),
            exit_code,
            seconds: outcome.duration.as_secs_f64(),
            added: changes.added(),
            changed: changes.changed(),
            deleted: changes.deleted(),
            network_isolated: outcome.network_isolated,
        };
        info!(
            phase = "script",
            step = %name,
            sandbox = %outcome.mode,
            seconds = run.seconds,
            added = run.added,
            changed = run.changed,
            deleted = run.deleted,
            "Step finished"
        );
        if changes.is_empty() {
            info!(phase = "script", step = %name, "The step changed nothing: it adds no layer");
            return Ok((None, run, rootfs.remove_in_background()));
        }
        let mapped_owner = (outcome.mode == Mode::UserNamespace)
            // SAFETY: geteuid and getegid cannot fail.
            .then(|| unsafe { (libc::geteuid(), libc::getegid()) });
        let files = changes_file_map(
            &changes,
            rootfs.changed_files_dir(),
            self.base_fs.clone(),
            mapped_owner,
        )
        .map_err(|error| BuildError::Files {
            layer: name.clone(),
            error: Box::new(error),
        })?;
        let spooled = write_spool(&files, &self.options, &self.spool_dir)?;
        log_built(name, &spooled.0);
        Ok((Some(spooled), run, rootfs.remove_in_background()))
    }

    /// A fresh root with every source extracted into it in turn.
    fn written_root(&self) -> Result<Rootfs, BuildError> {
        let name = &self.name;
        let sandbox_error =
            |error: sandbox::SandboxError| BuildError::Invalid(format!("step {name:?}: {error}"));
        let mut rootfs = Rootfs::new_in(&self.root_parent).map_err(sandbox_error)?;
        for source in &self.sources {
            with_tar(&source.content, self.options.mtime, |tar| {
                rootfs.apply_layer(tar).map_err(sandbox_error)
            })?;
        }
        Ok(rootfs)
    }

    /// An overlay of the sources' layer directories, the missing ones made first, several at
    /// once (the base's, the largest, first: the sources come in image order), with the leases
    /// that keep `cache clean` off them while the root is in use.
    fn overlay_root(&self, dirs: &LayerDirs) -> Result<(Rootfs, Vec<Lease>), BuildError> {
        let next = AtomicUsize::new(0);
        let found: Mutex<Vec<Option<Result<Lease, BuildError>>>> =
            Mutex::new(self.sources.iter().map(|_| None).collect());
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(self.sources.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(source) = self.sources.get(index) else {
                        break;
                    };
                    let started = Instant::now();
                    let lease = dirs.get(&source.identity, |make| {
                        with_tar(&source.content, self.options.mtime, |tar| make(tar))
                    });
                    let seconds = started.elapsed().as_secs_f64();
                    debug!(layer = %source.identity, seconds, "Layer directory ready");
                    found.lock().unwrap()[index] = Some(lease);
                });
            }
        });
        let leases = found
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|lease| lease.expect("every source was taken by a worker"))
            .collect::<Result<Vec<_>, _>>()?;
        let name = &self.name;
        let lowers = leases.iter().map(|lease| lease.path().to_owned()).collect();
        let rootfs = Rootfs::overlay_in(&self.root_parent, lowers)
            .map_err(|error| BuildError::Invalid(format!("step {name:?}: {error}")))?;
        Ok((rootfs, leases))
    }
}

/// Calls `use_tar` with the uncompressed tar of `content`.
fn with_tar<T>(
    content: &Content,
    mtime: u64,
    use_tar: impl FnOnce(&mut dyn Read) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    match content {
        Content::Blob(path) => {
            let file = File::open(path).map_err(|source| BuildError::Io {
                context: format!("reading layer blob {}", path.display()),
                source,
            })?;
            let mut tar =
                decompressed(BufReader::with_capacity(1 << 20, file)).map_err(|source| {
                    BuildError::Io {
                        context: format!("decompressing layer blob {}", path.display()),
                        source,
                    }
                })?;
            use_tar(&mut tar)
        }
        Content::Files(files) => with_file_map_tar(files, mtime, use_tar),
    }
}

/// Calls `use_tar` with a file map's tar, written on another thread through a pipe so that it
/// is never held whole.
fn with_file_map_tar<T>(
    files: &crate::layer::filemap::FileMap,
    mtime: u64,
    use_tar: impl FnOnce(&mut dyn Read) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    let (reader, writer) = std::io::pipe()
        .map_err(|error| BuildError::Layer(crate::layer::LayerError::Write(error)))?;
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || {
            let mut writer = BufWriter::with_capacity(1 << 20, writer);
            write_tar(files, mtime, &mut writer)?;
            writer.flush().map_err(crate::layer::LayerError::Write)?;
            Ok::<_, crate::layer::LayerError>(())
        });
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let used = use_tar(&mut reader);
        // The reader may stop early on an error: unblock the writer before waiting for it.
        drop(reader);
        let written = writing.join().expect("the tar writer does not panic");
        // A writer error explains a reader error (a cut stream), so it goes first.
        written.map_err(BuildError::Layer)?;
        used
    })
}

/// `in_cache` made if missing (kept for later builds), or without a cache directory a temporary
/// directory for this build's `what` (removed with the returned handle).
pub(crate) fn cache_or_temporary_dir(
    in_cache: Option<PathBuf>,
    what: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>), BuildError> {
    let io_error = |context: String| move |source| BuildError::Io { context, source };
    if let Some(dir) = in_cache {
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        return Ok((dir, None));
    }
    let temporary = tempfile::Builder::new()
        .prefix(&format!("layerize-{what}-"))
        .tempdir()
        .map_err(io_error(format!("creating a directory for {what}")))?;
    Ok((temporary.path().to_owned(), Some(temporary)))
}

/// Where the cache directory keeps blobs and their unpacked tars.
pub(crate) fn blob_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("blobs").join("v1")
}

/// Blobs fetched to local disk by digest: in the cache directory's `blobs/v1/<hex>` (kept for
/// later builds, their mtime bumped on use for `layerize cache clean`), or a temporary directory
/// for this build only.
struct BlobDir {
    dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl BlobDir {
    fn new(cache_dir: Option<&Path>) -> Result<BlobDir, BuildError> {
        let (dir, temporary) = cache_or_temporary_dir(cache_dir.map(blob_dir), "blobs")?;
        Ok(BlobDir {
            dir,
            _temporary: temporary,
        })
    }

    /// The uncompressed tar of the blob `digest` of `store` (`<hex>.tar` beside the blob), made
    /// once: every step's root starts with the base's layers, and unpacking them again for each
    /// step cost a third of assembling a root. The read that indexed the base may have kept it
    /// already, and then the blob is not fetched at all.
    async fn unpacked(&self, store: &dyn Store, digest: &Digest) -> Result<PathBuf, BuildError> {
        let tar = TarDir::new(&self.dir).path(digest);
        if touch_if_present(&tar) {
            return Ok(tar);
        }
        let blob = self.fetch(store, digest).await?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let io_error = |context: String| move |source| BuildError::Io { context, source };
            let input =
                File::open(&blob).map_err(io_error(format!("reading {}", blob.display())))?;
            let mut plain = decompressed(BufReader::with_capacity(1 << 20, input))
                .map_err(io_error(format!("decompressing {}", blob.display())))?;
            let out = tempfile::Builder::new()
                .prefix(".tmp-unpack-")
                .tempfile_in(&dir)
                .map_err(io_error(format!("creating a file in {}", dir.display())))?;
            let mut writer = BufWriter::with_capacity(1 << 20, out.as_file());
            std::io::copy(&mut plain, &mut writer)
                .and_then(|_| writer.flush())
                .map_err(io_error(format!("unpacking {}", blob.display())))?;
            drop(writer);
            out.persist(&tar).map_err(|error| BuildError::Io {
                context: format!("keeping {}", tar.display()),
                source: error.error,
            })?;
            Ok(tar)
        })
        .await
        .map_err(|err| BuildError::Invalid(format!("unpacking thread failed: {err}")))?
    }

    /// The blob on disk, fetched from `store` unless already there; its digest verified.
    async fn fetch(&self, store: &dyn Store, digest: &Digest) -> Result<PathBuf, BuildError> {
        let path = self.dir.join(digest.hex());
        if touch_if_present(&path) {
            return Ok(path);
        }
        let io_error = |context: String| move |source| BuildError::Io { context, source };
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-fetch-")
            .tempfile_in(&self.dir)
            .map_err(io_error(format!(
                "creating a file in {}",
                self.dir.display()
            )))?;
        let mut hasher = Sha256::new();
        let mut stream = store.get_blob(digest).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(io_error(format!("writing blob {digest}")))?;
        }
        let got = Digest::from_sha256_raw(hasher.finalize().into());
        if got != *digest {
            return Err(BuildError::Invalid(format!(
                "blob {digest} from {} has digest {got}",
                store.name()
            )));
        }
        file.persist(&path).map_err(|error| BuildError::Io {
            context: format!("keeping blob {}", path.display()),
            source: error.error,
        })?;
        Ok(path)
    }
}
