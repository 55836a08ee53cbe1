//! podman as an independent consumer of what layerize writes: each [`Podman`] is a private
//! container store (its own root, runroot and tmpdir under a temp dir) so parallel tests never
//! share image names, IDs or locks; [`PulledImage`] pulls a reference into one, mounts it with
//! `podman image mount` and lets tests read files, run binaries with `chroot` and inspect the config.
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
        // together with the images, so the temp dir can be deleted.
        let _ = self.command().args(["system", "reset", "--force"]).output();
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

    /// `podman image inspect` of the image: the first (only) element of its JSON array.
    pub fn inspect(&self) -> Value {
        let text = tools::run(self.podman.command().args(["image", "inspect", &self.id]));
        let mut all: Value =
            serde_json::from_str(&text).expect("podman image inspect printed JSON");
        all[0].take()
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
