//! Docker as a runtime of what layerize pushes: Debian's `dockerd` (docker.io) started by the test
//! on a private socket, data root, exec root and pidfile, with no iptables and no bridge (so it
//! touches no host network state), driven with the `docker` client: [`Docker::pull`] from a
//! loopback registry and [`Docker::run`] of the image with `--network none`.
//!
//! Like Debian's `docker.service` (`--containerd=/run/containerd/containerd.sock`), dockerd runs on
//! a containerd of its own: a [`Containerd`] of the test, whose namespaces it joins to see the
//! same mounts (the containerd dockerd would start itself keeps state in `/opt/containerd`).
//! Images are stored with the `overlay2` driver, or `vfs` (copies) where an overlay does not
//! mount, e.g. when the temp dir is itself on overlayfs.

use std::path::Path;
use std::process::{Command, Output};

use crate::containerd::Containerd;
use crate::daemon::{self, Daemon};
use crate::tools;

/// A running `dockerd` of one test, stopped and cleaned up on drop.
pub struct Docker {
    /// Declared before the containerd it runs on, so that dockerd stops first.
    daemon: Daemon,
    _containerd: Containerd,
    version: (u32, u32),
}

impl Docker {
    pub fn start() -> Docker {
        tools::require("docker");
        tools::require("runc");
        let version = dockerd_version();
        let containerd = Containerd::start();
        let dir = crate::scratch_dir();
        let root = dir.path();
        let storage_driver = if daemon::overlay_mounts_in(root) {
            "overlay2"
        } else {
            "vfs"
        };
        // Its own config file, so a host /etc/docker/daemon.json does not leak in.
        let config = root.join("daemon.json");
        std::fs::write(&config, daemon_json(root, version)).expect("write daemon.json");
        let mut command = tools::command("dockerd");
        command
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket(root).display()))
            .arg("--containerd")
            .arg(containerd.socket())
            .args(["--storage-driver", storage_driver])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            // Docker's default already; said here because the tests' registries speak plain
            // HTTP on loopback ports chosen at run time.
            .args(["--insecure-registry", "127.0.0.0/8"]);
        let mut docker = Docker {
            daemon: Daemon::start_beside(containerd.daemon(), "dockerd", &command, dir),
            _containerd: containerd,
            version,
        };
        let mut ping = docker.client();
        ping.args(["version", "--format", "{{.Server.Version}}"]);
        docker
            .daemon
            .wait_until_ready(|| daemon::output_with_hang_guard(&mut ping).status.success());
        docker
    }

    /// `(major, minor)` of this dockerd, e.g. `(20, 10)`.
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// Whether this dockerd unpacks zstd layers: Docker 23.0 and later do.
    pub fn reads_zstd(&self) -> bool {
        self.version >= (23, 0)
    }

    /// `docker pull` of a loopback registry reference; panics when it fails.
    pub fn pull(&self, reference: &str) {
        self.daemon
            .run_client(self.client().args(["pull", "--quiet", reference]));
    }

    /// `docker pull` whatever its outcome, for pulls that must fail.
    pub fn try_pull(&self, reference: &str) -> Output {
        daemon::output_with_hang_guard(self.client().args(["pull", "--quiet", reference]))
    }

    /// `docker run --rm --network none` of a pulled image; returns what it printed on stdout.
    /// Panics when it fails.
    pub fn run(&self, reference: &str) -> String {
        self.daemon.run_client(
            self.client()
                .args(["run", "--rm", "--network", "none", "--pull", "never"])
                .arg(reference),
        )
    }

    /// The `docker` client talking to this daemon only, with a config dir of its own (no
    /// credentials or contexts from the developer's `~/.docker`).
    fn client(&self) -> Command {
        let root = self.daemon.dir();
        let mut command = tools::command("docker");
        command
            .env("DOCKER_CONFIG", root.join("client"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_HOST")
            .arg("--host")
            .arg(format!("unix://{}", socket(root).display()));
        command
    }
}

fn socket(root: &Path) -> std::path::PathBuf {
    root.join("docker.sock")
}

/// Docker before 23.0 writes a trust key to `/etc/docker/key.json` unless told another path.
fn daemon_json(root: &Path, version: (u32, u32)) -> String {
    let mut config = serde_json::Map::new();
    if version < (23, 0) {
        let key = root.join("key.json").display().to_string();
        config.insert("deprecated-key-path".into(), key.into());
    }
    serde_json::Value::Object(config).to_string()
}

/// `(major, minor)` from `dockerd --version`: `Docker version 20.10.24+dfsg1, build 5d6db84`.
fn dockerd_version() -> (u32, u32) {
    let text = tools::run(tools::command("dockerd").arg("--version"));
    let parse = || {
        let number = text
            .strip_prefix("Docker version ")?
            .split([',', '+', '-'])
            .next()?;
        let mut parts = number.split('.').map(|part| part.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    };
    parse().unwrap_or_else(|| panic!("unexpected `dockerd --version`: {text}"))
}
