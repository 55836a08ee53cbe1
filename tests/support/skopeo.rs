//! skopeo and umoci as independent readers and copiers of images: `skopeo inspect` (raw bytes
//! and the parsed summary), `skopeo copy` between layouts and loopback registries, and
//! `umoci unpack`, which verifies every layer's diffID while it unpacks.
//!
//! References are `oci:DIR:TAG`, `docker://HOST/REPO:TAG`, or a bare `127.0.0.1:PORT/repo:tag`
//! which is taken as `docker://`. Registries are loopback, so TLS verification is off.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use crate::tools;

/// The exact manifest (or index) bytes that `reference` serves, as `skopeo inspect --raw` prints
/// them; hash them to get the digest.
pub fn inspect_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let mut command = inspect_command(creds);
    tools::run_bytes(command.arg("--raw").arg(transport(reference)))
}

/// The exact config blob bytes of the image `reference` names (`skopeo inspect --config --raw`).
pub fn inspect_config_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let mut command = inspect_command(creds);
    tools::run_bytes(
        command
            .args(["--config", "--raw"])
            .arg(transport(reference)),
    )
}

/// `skopeo inspect` of `reference`: Digest, Labels, Env, Layers, Architecture...
pub fn inspect(reference: &str, creds: Option<&str>) -> Value {
    let mut command = inspect_command(creds);
    parse(&tools::run(command.arg(transport(reference))))
}

/// The image config that `reference` resolves to (`skopeo inspect --config`).
pub fn inspect_config(reference: &str, creds: Option<&str>) -> Value {
    let mut command = inspect_command(creds);
    parse(&tools::run(
        command.arg("--config").arg(transport(reference)),
    ))
}

/// `skopeo copy` from `source` to `destination` with `extra_args` (e.g. `--all`,
/// `--format v2s2`); `creds` are used for whichever side is a registry.
pub fn copy(source: &str, destination: &str, creds: Option<&str>, extra_args: &[&str]) {
    let mut command = tools::command("skopeo");
    command.args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        for (side, reference) in [("--src-creds", source), ("--dest-creds", destination)] {
            if is_registry(reference) {
                command.arg(side).arg(creds);
            }
        }
    }
    tools::run(
        command
            .args(extra_args)
            .arg(transport(source))
            .arg(transport(destination)),
    );
}

/// A runtime bundle made by `umoci unpack`; the temp dir goes away on drop.
pub struct Unpacked {
    bundle: TempDir,
}

impl Unpacked {
    /// Unpacks `TAG` of the OCI layout at `layout` (umoci fails when a layer's diffID does not
    /// match its content).
    pub fn new(layout: &Path, tag: &str) -> Unpacked {
        let bundle = crate::scratch_dir();
        let image = format!("{}:{tag}", layout.display());
        tools::run(
            tools::command("umoci")
                .args(["unpack", "--image", &image])
                .arg(bundle.path().join("bundle")),
        );
        Unpacked { bundle }
    }

    /// The unpacked root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.path().join("bundle/rootfs")
    }
}

fn inspect_command(creds: Option<&str>) -> std::process::Command {
    let mut command = tools::command("skopeo");
    command.args(["inspect", "--tls-verify=false"]);
    if let Some(creds) = creds {
        command.arg("--creds").arg(creds);
    }
    command
}

/// Adds `docker://` to a bare registry reference.
fn transport(reference: &str) -> String {
    if is_registry(reference) && !reference.starts_with("docker://") {
        format!("docker://{reference}")
    } else {
        reference.to_owned()
    }
}

fn is_registry(reference: &str) -> bool {
    let transports = [
        "oci:",
        "dir:",
        "containers-storage:",
        "oci-archive:",
        "docker-archive:",
    ];
    !transports
        .iter()
        .any(|prefix| reference.starts_with(prefix))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("skopeo printed JSON")
}

/// The digest that `reference` (a registry reference) resolves to, or `None` when skopeo cannot
/// find it (unknown repository or tag): for checking that a failed push left a tag alone.
pub fn digest_if_exists(reference: &str, creds: Option<&str>) -> Option<String> {
    let mut command = inspect_command(creds);
    let output = tools::output(command.arg(transport(reference)));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("manifest unknown") || stderr.contains("name unknown"),
            "skopeo inspect {reference} failed for another reason than a missing image: {stderr}"
        );
        return None;
    }
    let inspected = parse(&String::from_utf8_lossy(&output.stdout));
    Some(inspected["Digest"].as_str().expect("Digest").to_owned())
}
