//! containerd as a runtime of what layerize pushes: Debian's `containerd` started by the test in
//! namespaces of its own ([`crate::daemon`]) on a private socket, root and state dir (a generated
//! `config.toml` under a temp dir, the CRI plugin off), driven with `ctr`: [`Containerd::pull`] from a loopback registry over plain HTTP and
//! [`Containerd::run`] of the image's entrypoint in a container without network.
//!
//! Images are unpacked with the `overlayfs` snapshotter, or `native` (copies) where an overlay
//! does not mount, e.g. when the temp dir is itself on overlayfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::daemon::{self, Daemon};
use crate::tools;

/// The containerd namespace of the tests' images and containers.
const NAMESPACE: &str = "layerize-tests";

/// A running `containerd` of one test, stopped and cleaned up on drop.
pub struct Containerd {
    daemon: Daemon,
    /// `overlayfs` or `native`.
    snapshotter: &'static str,
    runs: AtomicU32,
}

impl Containerd {
    pub fn start() -> Containerd {
        tools::require("ctr");
        tools::require("runc");
        tools::require("containerd-shim-runc-v2");
        let dir = crate::scratch_dir();
        let root = dir.path();
        let snapshotter = if daemon::overlay_mounts_in(root) {
            "overlayfs"
        } else {
            "native"
        };
        let config = root.join("config.toml");
        std::fs::write(&config, config_toml(root)).expect("write containerd config");
        let mut command = tools::command("containerd");
        command.arg("--config").arg(&config);
        let mut containerd = Containerd {
            daemon: Daemon::start("containerd", &command, dir),
            snapshotter,
            runs: AtomicU32::new(0),
        };
        let mut version = containerd.ctr();
        version.arg("version");
        containerd.daemon.wait_until_ready(|| {
            daemon::output_with_hang_guard(&mut version)
                .status
                .success()
        });
        containerd
    }

    /// `ctr image pull` of a loopback registry reference (plain HTTP), unpacked for running.
    pub fn pull(&self, reference: &str) {
        self.daemon.run_client(
            self.ctr()
                .args([
                    "image",
                    "pull",
                    "--plain-http",
                    "--snapshotter",
                    self.snapshotter,
                ])
                .arg(reference),
        );
    }

    /// `ctr run --rm` of a pulled image: its entrypoint and cmd in a new network namespace with
    /// no interface up; returns what it printed on stdout. Panics when it fails.
    pub fn run(&self, reference: &str) -> String {
        let id = format!("run-{}", self.runs.fetch_add(1, Ordering::Relaxed));
        let dir = self.daemon.dir();
        self.daemon.run_client(
            self.ctr()
                .args(["run", "--rm", "--snapshotter", self.snapshotter])
                // ctr makes the container's stdio fifos itself, by default in the host's
                // /run/containerd (it runs outside the daemon's private /run).
                .arg("--fifo-dir")
                .arg(dir.join("fifo"))
                .arg(reference)
                .arg(id),
        )
    }

    /// The socket of containerd's API, e.g. for `dockerd --containerd`.
    pub fn socket(&self) -> PathBuf {
        self.daemon.dir().join("containerd.sock")
    }

    /// The daemon, whose namespaces a client daemon such as dockerd joins.
    pub(crate) fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// `ctr` talking to this daemon, in the tests' containerd namespace.
    fn ctr(&self) -> Command {
        let mut command = tools::command("ctr");
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE]);
        command
    }
}

/// Everything containerd writes goes below `dir`: content, snapshots and metadata (`root`),
/// sockets and task bundles (`state`), and the `opt` plugin's dir (default `/opt/containerd`).
fn config_toml(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
# Kubernetes' CRI is not used by ctr and would look for CNI configuration on the host.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
    )
}
