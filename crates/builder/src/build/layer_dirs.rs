//! The layer directories overlay step roots stack: each layer a step needs, extracted once into
//! `<cache dir>/unpacked/v2/<name>` and kept for later builds (its mtime bumped on use, for
//! `layerize cache clean`), so that a rebuild's step root costs a mount instead of writing the
//! base and every package again. Without a cache directory they last for this build only.
//!
//! A directory is named by what identifies its layer's content ([`Identity`]): the diffID of a
//! blob, or the key of a layer whose key alone decides its bytes.
//!
//! A build holds a shared `flock` on every directory it uses ([`Lease`]) for as long as a step
//! root stacks it; `cache clean` takes an exclusive one without waiting and leaves a busy
//! directory alone. A directory being made by one thread is waited for by the others (the
//! base's is often started by the read that indexes the base, see `base_index`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use layerize_basefs::Follower;
use layerize_manifest::Digest;
use layerize_sandbox::{Mode, ModeChoice, RootChoice};
use sha2::{Digest as _, Sha256};

use crate::build::scripts::cache_or_temporary_dir;
use crate::BuildError;

/// What names a layer directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity(String);

impl Identity {
    /// A layer known by its diffID: a base layer, a step's output (built or reused).
    pub fn diff_id(diff_id: &Digest) -> Identity {
        Identity(format!("diffID {diff_id}"))
    }

    /// A layer whose key decides its bytes (a file map, a converted package), whether its tar
    /// comes from the file map this time or from a reused blob the next. Never a step's key:
    /// running a step twice need not give the same output.
    pub fn key(key: &str) -> Identity {
        Identity(format!("layer {key}"))
    }

    /// A fixed-length name (a key may be long and hold any character).
    fn dir_name(&self) -> String {
        let hash = Sha256::digest(self.0.as_bytes());
        hash.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A layer directory in use: `cache clean` leaves it alone while this is held.
pub(crate) struct Lease {
    path: PathBuf,
    _lock: File,
}

impl Lease {
    /// A shared lock on the directory `path`, if it is there (and still there once locked:
    /// a clean may have renamed it aside meanwhile).
    fn take(path: &Path) -> Option<Lease> {
        let dir = File::open(path).ok()?;
        dir.lock_shared().ok()?;
        let held = dir.metadata().ok()?;
        let now = std::fs::symlink_metadata(path).ok()?;
        if !now.is_dir() || (now.dev(), now.ino()) != (held.dev(), held.ino()) {
            return None;
        }
        let _ = dir.set_modified(SystemTime::now());
        Some(Lease {
            path: path.to_owned(),
            _lock: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A directory one thread is making, that others wait for.
#[derive(Default)]
struct Making {
    /// Set when the maker is done: whether it made the directory.
    done: Mutex<Option<bool>>,
    finished: Condvar,
}

/// Where layer directories are found and made.
pub(crate) struct LayerDirs {
    dir: PathBuf,
    making: Mutex<HashMap<Identity, Arc<Making>>>,
    _temporary: Option<tempfile::TempDir>,
}

/// What [`LayerDirs::begin`] found.
enum Begun {
    Made(Lease),
    /// Another thread is making it: wait for this.
    Waiting(Arc<Making>),
    /// This thread makes it, and must call [`LayerDirs::end`].
    Mine,
}

impl LayerDirs {
    pub fn new(cache_dir: Option<&Path>) -> Result<LayerDirs, BuildError> {
        let in_cache = cache_dir.map(layer_dir_root);
        let (dir, temporary) = cache_or_temporary_dir(in_cache, "layer-dirs")?;
        Ok(LayerDirs {
            dir,
            making: Mutex::new(HashMap::new()),
            _temporary: temporary,
        })
    }

    /// The layer directories of a build whose steps will stack overlay roots (the namespaces
    /// sandbox, overlay roots not refused, a cache directory to keep them in), made before the
    /// base is indexed so that the read indexing a base layer can make its directory
    /// meanwhile ([`LayerDirs::follower`]). `None` where steps will not get overlay roots; the
    /// script runner still checks that overlays mount before it uses these.
    pub fn ahead_of_steps(
        cache_dir: Option<&Path>,
        sandbox: ModeChoice,
        step_root: RootChoice,
    ) -> Result<Option<Arc<LayerDirs>>, BuildError> {
        let overlays = step_root != RootChoice::Written
            && matches!(layerize_sandbox::detect(sandbox), Ok(Mode::Namespaces));
        match cache_dir {
            Some(cache_dir) if overlays => Ok(Some(Arc::new(LayerDirs::new(Some(cache_dir))?))),
            _ => Ok(None),
        }
    }

    /// Makes the directory of each base layer whose tar the base's index keeps, as it is read.
    pub fn follower(self: &Arc<Self>) -> Follower {
        let dirs = Arc::clone(self);
        Arc::new(move |diff_id, tar| dirs.make_in_background(Identity::diff_id(diff_id), tar))
    }

    /// The directory all layer directories are in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The layer directory of `identity`, made from the uncompressed tar `tar` gives unless it
    /// was made before (or is being made: then waited for, and made here if that failed).
    pub fn get(
        &self,
        identity: &Identity,
        tar: impl FnOnce(
            &mut dyn FnMut(&mut dyn Read) -> Result<(), BuildError>,
        ) -> Result<(), BuildError>,
    ) -> Result<Lease, BuildError> {
        let mut tar = Some(tar);
        loop {
            match self.begin(identity) {
                Begun::Made(lease) => return Ok(lease),
                Begun::Waiting(making) => {
                    let mut done = making.done.lock().unwrap();
                    while done.is_none() {
                        done = making.finished.wait(done).unwrap();
                    }
                }
                Begun::Mine => {
                    let Some(tar) = tar.take() else {
                        return Err(BuildError::Invalid(format!(
                            "the layer directory of {identity} was removed as soon as it was made (a `layerize cache clean` meanwhile?)"
                        )));
                    };
                    let made = tar(&mut |reader| self.make(identity, reader));
                    self.end(identity, made.is_ok());
                    made?;
                }
            }
        }
    }

    /// Starts making the directory of `identity` from `tar` on a thread of its own, unless it
    /// is there or being made; a thread that wants it meanwhile waits for it. A failure is
    /// only logged: whoever needs the directory makes it again.
    pub fn make_in_background(
        self: &Arc<Self>,
        identity: Identity,
        tar: impl Read + Send + 'static,
    ) {
        if !matches!(self.begin(&identity), Begun::Mine) {
            return;
        }
        let dirs = Arc::clone(self);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let made = dirs.make(&identity, tar);
            if let Err(error) = &made {
                tracing::debug!(layer = %identity, %error, "a layer directory made ahead failed");
            } else {
                let seconds = started.elapsed().as_secs_f64();
                tracing::debug!(layer = %identity, seconds, "Made a layer directory ahead");
            }
            dirs.end(&identity, made.is_ok());
        });
    }

    fn begin(&self, identity: &Identity) -> Begun {
        let mut making = self.making.lock().unwrap();
        if let Some(underway) = making.get(identity) {
            return Begun::Waiting(Arc::clone(underway));
        }
        if let Some(lease) = Lease::take(&self.dir.join(identity.dir_name())) {
            return Begun::Made(lease);
        }
        making.insert(identity.clone(), Arc::default());
        Begun::Mine
    }

    fn end(&self, identity: &Identity, made: bool) {
        let underway = self
            .making
            .lock()
            .unwrap()
            .remove(identity)
            .expect("only a directory begun is ended");
        *underway.done.lock().unwrap() = Some(made);
        underway.finished.notify_all();
    }

    /// Makes the layer directory of `identity` from its uncompressed `tar`.
    fn make(&self, identity: &Identity, tar: impl Read) -> Result<(), BuildError> {
        let dir = self.dir.join(identity.dir_name());
        layerize_sandbox::make_layer_dir(tar, &dir).map_err(|error| {
            BuildError::Invalid(format!(
                "making the layer directory {}: {error}",
                dir.display()
            ))
        })
    }
}

/// Where a cache directory keeps layer directories. The version changes with what extraction
/// puts in one: v2 since a layer's whiteout of a path the layer also writes leaves the layer's
/// own directory opaque (v1 showed the lower layers' content through it).
pub(crate) fn layer_dir_root(cache_dir: &Path) -> PathBuf {
    cache_dir.join("unpacked").join("v2")
}

#[cfg(test)]
mod tests;
