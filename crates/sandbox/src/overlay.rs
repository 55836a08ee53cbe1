//! Overlay roots: a step's root as an overlayfs mount of layer directories made once and kept
//! (lower), over an empty upper directory that receives whatever the step writes, so that
//! nothing is extracted per step. The mounts live in a mount namespace of the one thread that
//! runs the step, and go with it: nothing is ever mounted in the host's namespace, and nothing
//! is left mounted if the process dies.
//!
//! Two mounts: the root itself, and a read-only overlay of the lower directories alone, which
//! shows the root as it was before the step for the diff (`crate::overlay_diff`).

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Which root a step gets: an overlay of layer directories (made once, kept between builds)
/// or the layers written into a fresh directory for each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RootChoice {
    /// An overlay where the namespaces mode is used and overlay mounts work, else written.
    #[default]
    Auto,
    /// An overlay, or an error that says why it cannot be.
    Overlay,
    /// Always written.
    Written,
}

impl std::str::FromStr for RootChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RootChoice::Auto),
            "overlay" => Ok(RootChoice::Overlay),
            "written" => Ok(RootChoice::Written),
            other => Err(format!(
                "unknown step root {other:?}: expected auto, overlay or written"
            )),
        }
    }
}

/// overlayfs stacks at most this many lower directories (the kernel's `OVL_MAX_STACK`, less
/// the empty one the lower view adds).
const MAX_LOWERS: usize = 499;

/// The directories of one overlay root, inside the root's temporary directory.
#[derive(Debug, Clone)]
pub(crate) struct Overlay {
    /// The temporary directory: the mount options name everything relative to it (`l/3`,
    /// `upper`), so that their length does not grow with the cache directory's path.
    dir: PathBuf,
    /// How many lower directories `l/0` (the image's first layer) to `l/<count-1>` link to.
    count: usize,
    pub upper: PathBuf,
    /// The root's mount point.
    pub merged: PathBuf,
    /// The lower directories alone, read-only: the root before the step.
    pub lower_view: PathBuf,
}

impl Overlay {
    /// Makes the directories and one short link per lower directory in `dir`.
    pub fn prepare(dir: &Path, lowers: Vec<PathBuf>) -> Result<Overlay, SandboxError> {
        if lowers.is_empty() || lowers.len() > MAX_LOWERS {
            return Err(SandboxError::Step(format!(
                "an overlay root stacks 1 to {MAX_LOWERS} layer directories, not {}",
                lowers.len()
            )));
        }
        let dir = dir
            .canonicalize()
            .map_err(|e| SandboxError::io("canonicalizing", dir, e))?;
        for name in ["upper", "work", "merged", "lower", "empty", "l"] {
            let path = dir.join(name);
            std::fs::create_dir(&path).map_err(|e| SandboxError::io("mkdir", &path, e))?;
        }
        for (number, lower) in lowers.iter().enumerate() {
            let lower = lower
                .canonicalize()
                .map_err(|e| SandboxError::io("finding the layer directory", lower, e))?;
            let link = dir.join("l").join(number.to_string());
            std::os::unix::fs::symlink(&lower, &link)
                .map_err(|e| SandboxError::io("linking a layer directory at", &link, e))?;
        }
        Ok(Overlay {
            count: lowers.len(),
            upper: dir.join("upper"),
            merged: dir.join("merged"),
            lower_view: dir.join("lower"),
            dir,
        })
    }

    /// Runs `work` on a new thread whose mount namespace (its own) has both mounts, and
    /// returns what it returned. Processes `work` starts see the mounts too.
    pub fn with_mounted<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T, SandboxError> + Send,
    ) -> Result<T, SandboxError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.mount()?;
                    let result = work();
                    // The namespace, and so the mounts, end with this thread anyway; unmounting
                    // first lets the removal of the root start at once.
                    for mount_point in [&self.merged, &self.lower_view] {
                        if let Ok(path) = crate::sys::cpath(mount_point) {
                            // SAFETY: a valid path; a failure leaves the mount to the namespace's end.
                            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                        }
                    }
                    result
                })
                .join()
                .unwrap_or_else(|_| Err(SandboxError::Step("the step's thread panicked".into())))
        })
    }

    /// Enters a mount namespace of this thread's own (unsharing CLONE_NEWNS also unshares its
    /// working directory from the process's other threads) and mounts the lower view and the
    /// root. Mount propagation is cut first so that nothing reaches the host's namespace.
    fn mount(&self) -> Result<(), SandboxError> {
        let setup = |what: &str| SandboxError::OverlayMount {
            what: what.to_owned(),
            source: io::Error::last_os_error(),
        };
        // SAFETY: unshare affects this thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
            return Err(setup("unshare(CLONE_NEWNS) for the overlay root"));
        }
        // SAFETY: plain mount(2) with valid C strings.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            return Err(setup(
                "mount(\"/\", MS_REC|MS_PRIVATE) for the overlay root",
            ));
        }
        let dir = crate::sys::cpath(&self.dir)
            .map_err(|e| SandboxError::io("preparing the path", &self.dir, e))?;
        // SAFETY: a valid C string; the working directory is this thread's alone now.
        if unsafe { libc::chdir(dir.as_ptr()) } < 0 {
            return Err(setup("chdir into the overlay root's directory"));
        }
        let lowers = (0..self.count)
            .rev()
            .map(|number| format!("l/{number}"))
            .collect::<Vec<_>>()
            .join(":");
        // The empty directory: an overlay without an upper needs two lower directories.
        mount_overlay(
            c"lower",
            &format!("lowerdir={lowers}:empty"),
            libc::MS_RDONLY,
        )
        .map_err(|()| setup("mounting the overlay of the layer directories"))?;
        // No renames of lower directories (redirect_dir=off: rename(2) gets EXDEV, and `mv`
        // copies instead) and every copy-up with its data (metacopy=off): the upper directory
        // alone then holds every changed file.
        let options = format!(
            "lowerdir={lowers},upperdir=upper,workdir=work,redirect_dir=off,metacopy=off,index=off,xino=off"
        );
        mount_overlay(c"merged", &options, 0).map_err(|()| setup("mounting the overlay root"))
    }
}

/// mount(2) of an overlay at `target` (relative to the working directory); errno is kept.
fn mount_overlay(target: &std::ffi::CStr, options: &str, flags: libc::c_ulong) -> Result<(), ()> {
    let options = CString::new(options).map_err(|_| ())?;
    // SAFETY: valid C strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            options.as_ptr().cast(),
        )
    };
    if rc < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// Whether overlay roots work for this process with layer directories made under
/// `layers_parent` and roots under `roots_parent`: as root, a two-layer overlay with a whiteout
/// is made and mounted, and the whiteout must hide the lower file. The error says what failed.
pub fn overlay_available(layers_parent: &Path, roots_parent: &Path) -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("overlay roots need root".into());
    }
    let probe = || -> Result<(), SandboxError> {
        let temporary_in = |parent: &Path| {
            std::fs::create_dir_all(parent).map_err(|e| SandboxError::io("mkdir", parent, e))?;
            tempfile::Builder::new()
                .prefix("layerize-overlay-probe-")
                .tempdir_in(parent)
                .map_err(|e| SandboxError::io("creating a directory in", parent, e))
        };
        let layers = temporary_in(layers_parent)?;
        let bottom = layers.path().join("bottom");
        let hidden = bottom.join("hidden");
        std::fs::create_dir(&bottom).map_err(|e| SandboxError::io("mkdir", &bottom, e))?;
        std::fs::write(&hidden, b"x").map_err(|e| SandboxError::io("writing", &hidden, e))?;
        let top = layers.path().join("top");
        std::fs::create_dir(&top).map_err(|e| SandboxError::io("mkdir", &top, e))?;
        let whiteout = top.join("hidden");
        crate::sys::mknod(&whiteout, libc::S_IFCHR, 0)
            .map_err(|e| SandboxError::io("mknod (an overlay whiteout)", &whiteout, e))?;
        let roots = temporary_in(roots_parent)?;
        let rootfs = crate::Rootfs::overlay_in(roots.path(), vec![bottom, top])?;
        let overlay = rootfs.overlay.as_ref().expect("an overlay root");
        let seen = overlay.merged.join("hidden");
        if overlay.with_mounted(|| Ok(std::fs::symlink_metadata(&seen).is_ok()))? {
            return Err(SandboxError::Step(
                "the overlay's whiteout did not hide the lower file".into(),
            ));
        }
        Ok(())
    };
    probe().map_err(|e| e.to_string())
}

/// Whether a path of this type and device number is an overlay whiteout: a character device numbered 0:0.
pub(crate) fn is_whiteout(file_type: u32, rdev: u64) -> bool {
    file_type == libc::S_IFCHR && rdev == 0
}

/// Whether the directory `path` is marked opaque (it hides what the layers below have there).
pub(crate) fn is_opaque(path: &Path) -> bool {
    let Ok(c) = crate::sys::cpath(path) else {
        return false;
    };
    let name = CString::new(crate::layer::OVERLAY_OPAQUE).expect("no NUL");
    let mut value = [0u8; 1];
    crate::sys::lgetxattr(&c, &name, &mut value).is_ok_and(|n| n == 1) && value[0] == b'y'
}
