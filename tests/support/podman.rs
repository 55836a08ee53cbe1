//! podman as an independent consumer of what layerize writes: each [`Podman`] is a private
//! container store (its own root, runroot and tmpdir under a temp dir) so parallel tests never
//! share image names, IDs or locks; [`PulledImage`] pulls a reference into one, mounts it with
//! `podman image mount` and lets tests read files, run binaries with `chroot` and inspect the config
//! (or gives a writable root of a created container, for commands that write).
//! Mounts are undone when these go out of scope, on a panic too.
//!
//! `podman run` does not work on these machines (crun cannot set rlimits), which is why images are
//! checked through the mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::tools;

/// A private podman container store, removed (with any mounts it holds) on drop.
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        tools::require("podman");
        Podman {
            dir: crate::scratch_dir(),
        }
    }

    /// `podman` with the global flags that select this store.
    pub fn command(&self) -> Command {
        let mut command = tools::command("podman");
        command
            .arg("--root")
            .arg(self.graph_root())
            .arg("--runroot")
            .arg(self.run_root())
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"))
            .args(["--storage-driver", STORAGE_DRIVER]);
        command
    }

    /// This store as a skopeo transport prefix: `containers-storage:[overlay@ROOT+RUNROOT]`.
    pub fn storage_transport(&self) -> String {
        format!(
            "containers-storage:[{STORAGE_DRIVER}@{}+{}]",
            self.graph_root().display(),
            self.run_root().display()
        )
    }

    /// The directory holding the whole store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn graph_root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run_root(&self) -> PathBuf {
        self.dir.path().join("runroot")
    }
}

impl Default for Podman {
    fn default() -> Podman {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The overlay driver leaves a bind mount of its home behind; `system reset` removes it
        // together with the images and their mounts, so the temp dir can be deleted.
        let _ = self.command().args(["system", "reset", "--force"]).output();
        // Should podman have failed, detach what it left rather than let the temp dir's removal
        // walk into a mounted image. Deepest first: a mount may sit inside another.
        let mut left: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|point| point.starts_with(self.dir.path()))
            .collect();
        left.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
        for point in left {
            eprintln!("podman left {} mounted; detaching it", point.display());
            detach_mount(&point);
        }
    }
}

const STORAGE_DRIVER: &str = "overlay";

/// An image pulled into its own [`Podman`] store and mounted read-only.
pub struct PulledImage {
    id: String,
    root: PathBuf,
    podman: Podman,
}

impl PulledImage {
    /// Pulls `reference` — `oci:DIR:TAG` or a loopback registry reference such as
    /// `127.0.0.1:PORT/repo:tag` (plain HTTP) — with optional `user:password` credentials, then
    /// mounts it.
    pub fn pull(reference: &str, creds: Option<&str>) -> PulledImage {
        let podman = Podman::new();
        let mut pull = podman.command();
        pull.args(["pull", "--quiet"]);
        if !reference.starts_with("oci:") {
            pull.arg("--tls-verify=false");
        }
        if let Some(creds) = creds {
            pull.arg("--creds").arg(creds);
        }
        let id = tools::run(pull.arg(reference)).trim().to_owned();
        let root = tools::run(podman.command().args(["image", "mount", &id]));
        PulledImage {
            root: PathBuf::from(root.trim()),
            id,
            podman,
        }
    }

    /// The image ID (the config digest without `sha256:`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The mounted root filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the private store the image was pulled into.
    pub fn store_dir(&self) -> &Path {
        self.podman.dir()
    }

    /// `podman image inspect` of the image: the first (only) element of its JSON array.
    pub fn inspect(&self) -> Value {
        let text = tools::run(self.podman.command().args(["image", "inspect", &self.id]));
        let mut all: Value =
            serde_json::from_str(&text).expect("podman image inspect printed JSON");
        all[0].take()
    }

    /// A writable root of the image: a container made with `podman create` (never started:
    /// `podman run` does not work here) and mounted with `podman mount`, for commands that
    /// write, such as `apt-get update`. Each call makes another container; the store's reset
    /// on drop removes them.
    pub fn writable_root(&self) -> PathBuf {
        let container = tools::run(self.podman.command().args(["create", &self.id]));
        let root = tools::run(self.podman.command().args(["mount", container.trim()]));
        PathBuf::from(root.trim())
    }

    /// Runs `args` inside the mounted root with `chroot` and returns stdout; panics on failure.
    pub fn chroot_run(&self, args: &[&str]) -> String {
        tools::run(tools::command("chroot").arg(&self.root).args(args))
    }
}

impl Drop for PulledImage {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["image", "unmount", &self.id])
            .output();
    }
}

/// `umount -l`: detaches the mount at `point` now; the kernel cleans it up once unused.
fn detach_mount(point: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(point.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        eprintln!(
            "cannot detach {}: {}",
            point.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Every mount point this process sees (`/proc/self/mountinfo`), for checking that none is left.
pub fn mount_points() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\OOO` octal escapes.
fn unescape_mount_point(escaped: &str) -> String {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let octal = tail.get(..3).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (first, octal) {
            (b'\\', Some(byte)) => {
                bytes.push(byte);
                rest = &tail[3..];
            }
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
