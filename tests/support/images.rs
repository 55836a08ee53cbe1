//! Base images made with tools that are not ours, for layerize to build on.
//!
//! - [`Image::Busybox`]: a tiny rootfs around busybox-static (see [`busybox`] for what is in it
//!   and its config), tarred and brought in with `podman import --change ...`.
//! - [`Image::TwoPlatform`]: that rootfs imported as linux/amd64 and linux/arm64/v8 and joined
//!   with `podman manifest create/add`.
//! - [`Image::Debian`]: a real Debian bookworm minbase from `mmdebstrap`, using this machine's
//!   apt sources.
//! - [`empty_layout`]: an image without layers from `umoci new`, to build a whole root on.
//! - [`debian_rootfs_dir`]: not an image but the directory `mmdebstrap` makes, `/dev` nodes
//!   included, for `--dir`.
//!
//! Each comes as an OCI layout in OCI form (`skopeo copy` / `podman manifest push --format oci`)
//! and in Docker form (the same with `--format v2s2`: skopeo 1.9 writes Docker-typed manifests,
//! manifest lists and configs into `oci:` layouts, byte-identical to what it pushes to a registry).
//! The layouts are built once into `target/layerize-fixtures` (see [`crate::cached_fixture`]);
//! every test gets its own copy ([`layout`]) or pushes one into its registry ([`push`]).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use crate::podman::Podman;
use crate::registry::Registry;
use crate::{skopeo, tools};

/// The tag of every base in its layout.
pub const TAG: &str = "base";

/// Which base image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    Busybox,
    TwoPlatform,
    Debian,
}

/// Which manifest family: OCI (manifest / index) or Docker v2 schema 2 (manifest / manifest list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// What the busybox base holds, for assertions that base content and config survive.
pub mod busybox {
    /// Regular files with their modes (paths relative to the root).
    pub const FILES: [(&str, u32); 8] = [
        ("bin/busybox", 0o755),
        ("etc/passwd", 0o644),
        ("etc/group", 0o644),
        ("etc/os-release", 0o644),
        ("etc/shadow", 0o600),
        ("usr/share/base-data/a.txt", 0o644),
        ("usr/share/base-data/b.txt", 0o644),
        ("usr/share/base-data/nested/c.txt", 0o644),
    ];
    /// A file that tests delete on top of the base (`--delete`).
    pub const DELETABLE: &str = "etc/motd";
    /// A directory with files (and a subdirectory) that tests replace or delete.
    pub const DATA_DIR: &str = "usr/share/base-data";
    /// Symlinks and their targets: relative applet links and one absolute link.
    pub const SYMLINKS: [(&str, &str); 5] = [
        ("bin/sh", "busybox"),
        ("bin/cat", "busybox"),
        ("bin/ls", "busybox"),
        ("bin/env", "busybox"),
        ("usr/local/bin/bb", "/bin/busybox"),
    ];
    /// Config fields set at import.
    pub const ENV: [&str; 2] = [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "BASE_GREETING=hello-from-base",
    ];
    pub const CMD: [&str; 3] = ["/bin/sh", "-c", "cat /etc/motd"];
    pub const WORKDIR: &str = "/srv";
    pub const LABEL: (&str, &str) = ("org.example.base", "busybox");
    pub const EXPOSED_PORT: &str = "8080/tcp";
}

/// A private copy of a base OCI layout in its own temp dir.
pub struct OciLayout {
    dir: TempDir,
}

impl OciLayout {
    /// The layout directory (holding `oci-layout`, `index.json`, `blobs/`).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// `oci:DIR:base`, for `layerize --base` and skopeo/podman.
    pub fn reference(&self) -> String {
        format!("oci:{}:{TAG}", self.path().display())
    }

    /// `index.json`.
    pub fn index_json(&self) -> Value {
        read_json(&self.path().join("index.json"))
    }

    /// The blob `sha256:HEX`, as bytes.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest)).expect("read blob")
    }

    /// Where the blob `sha256:HEX` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest.split_once(':').expect("digest is ALGORITHM:HEX");
        self.path().join("blobs").join(algorithm).join(hex)
    }

    /// The descriptor that `index.json` tags `base`.
    pub fn tagged_descriptor(&self) -> Value {
        let index = self.index_json();
        let manifests = index["manifests"].as_array().expect("index.json manifests");
        manifests
            .iter()
            .find(|descriptor| {
                descriptor["annotations"]["org.opencontainers.image.ref.name"] == TAG
            })
            .cloned()
            .expect("index.json tags the base")
    }

    /// The tagged manifest or index, parsed.
    pub fn manifest(&self) -> Value {
        let digest = self.tagged_descriptor()["digest"].clone();
        serde_json::from_slice(&self.blob(digest.as_str().expect("digest string")))
            .expect("manifest is JSON")
    }
}

/// A fresh copy of `image` in `format` as an OCI layout, tagged [`TAG`].
pub fn layout(image: Image, format: Format) -> OciLayout {
    let dir = crate::scratch_dir();
    crate::copy_tree(&cached_layout(image, format), &dir.path().join("layout"));
    OciLayout { dir }
}

/// A fresh layout holding an image without layers (`umoci new`), tagged [`TAG`].
pub fn empty_layout() -> OciLayout {
    let dir = crate::scratch_dir();
    let layout = OciLayout { dir };
    tools::run(
        tools::command("umoci")
            .args(["init", "--layout"])
            .arg(layout.path()),
    );
    tools::run(
        tools::command("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:{TAG}", layout.path().display())),
    );
    layout
}

/// A Debian bookworm minbase root filesystem directory, as `mmdebstrap` makes it when run as
/// root: with `/dev/null`, `/dev/console` and the other device nodes. Cached like the layouts;
/// read it, do not change it.
pub fn debian_rootfs_dir() -> PathBuf {
    let fixture = crate::cached_fixture("debian-bookworm-rootfs-v1", |fixture| {
        tools::run(
            tools::command("mmdebstrap")
                .args(["--quiet", "--variant=minbase", "bookworm"])
                .arg(fixture.join("rootfs"))
                .arg(host_debian_sources()),
        );
    });
    fixture.join("rootfs")
}

/// The busybox base in OCI form.
pub fn oci_base_layout() -> OciLayout {
    layout(Image::Busybox, Format::Oci)
}

/// The busybox base in Docker v2s2 form (Docker manifest and config media types).
pub fn docker_base_layout() -> OciLayout {
    layout(Image::Busybox, Format::Docker)
}

/// Pushes `image` in `format` to `registry` as `repository_tag` (`repo:tag`) with
/// `skopeo copy --all`, using the registry's credentials; returns the pushed manifest digest.
pub fn push(image: Image, format: Format, registry: &Registry, repository_tag: &str) -> String {
    let creds = registry.creds();
    push_with_creds(image, format, registry, creds.as_deref(), repository_tag)
}

/// [`push`] with explicit `user:password` credentials, e.g. for a token-auth registry, whose
/// users live in its token server.
pub fn push_with_creds(
    image: Image,
    format: Format,
    registry: &Registry,
    creds: Option<&str>,
    repository_tag: &str,
) -> String {
    // skopeo reads only OCI-typed layouts, so the Docker form is made on the way.
    let source = format!("oci:{}:{TAG}", cached_layout(image, Format::Oci).display());
    let scratch = crate::scratch_dir();
    let digest_file = scratch.path().join("digest");
    let digest_file_arg = digest_file.to_str().expect("UTF-8 temp path");
    let mut args = vec!["--all", "--digestfile", digest_file_arg];
    if format == Format::Docker {
        args.extend(["--format", "v2s2"]);
    }
    let destination = format!("docker://{}/{repository_tag}", registry.host());
    skopeo::copy(&source, &destination, creds, &args);
    std::fs::read_to_string(digest_file).expect("read pushed digest")
}

/// The cached layout for `image` in `format`. The fixture names carry a version: bump it when a
/// recipe below changes, so caches made by the old recipe are not used.
fn cached_layout(image: Image, format: Format) -> PathBuf {
    let fixture = match image {
        Image::Busybox | Image::TwoPlatform => {
            crate::cached_fixture("busybox-v1", build_busybox_fixture)
        }
        Image::Debian => crate::cached_fixture("debian-bookworm-v1", build_debian_fixture),
    };
    let name = match (image, format) {
        (Image::Busybox | Image::Debian, Format::Oci) => "oci",
        (Image::Busybox | Image::Debian, Format::Docker) => "docker",
        (Image::TwoPlatform, Format::Oci) => "index-oci",
        (Image::TwoPlatform, Format::Docker) => "index-docker",
    };
    fixture.join(name)
}

/// Writes `oci`, `docker`, `index-oci` and `index-docker` layouts into `fixture`.
fn build_busybox_fixture(fixture: &Path) {
    let scratch = crate::scratch_dir();
    let tar = scratch.path().join("rootfs.tar");
    write_busybox_rootfs(&scratch.path().join("rootfs"));
    tar_directory(&scratch.path().join("rootfs"), &tar);

    let podman = Podman::new();
    let changes = busybox_changes();
    let amd64 = "localhost/layerize-fixture/busybox:amd64";
    let arm64 = "localhost/layerize-fixture/busybox:arm64";
    podman_import(&podman, &tar, amd64, &changes, &["--arch", "amd64"]);
    podman_import(
        &podman,
        &tar,
        arm64,
        &changes,
        &["--arch", "arm64", "--variant", "v8"],
    );
    layouts_from_storage(&podman, amd64, fixture);

    let list = "localhost/layerize-fixture/busybox-list:base";
    tools::run(podman.command().args(["manifest", "create", list]));
    for image in [amd64, arm64] {
        let instance = format!("containers-storage:{image}");
        tools::run(podman.command().args(["manifest", "add", list, &instance]));
    }
    let index = format!("oci:{}:{TAG}", fixture.join("index-oci").display());
    tools::run(
        podman
            .command()
            .args(["manifest", "push", "--quiet", "--all"])
            .args(["--format", "oci", list, &index]),
    );
    let docker_index = format!("oci:{}:{TAG}", fixture.join("index-docker").display());
    skopeo::copy(&index, &docker_index, None, &["--all", "--format", "v2s2"]);
}

/// Writes `oci` and `docker` layouts of Debian bookworm minbase into `fixture`.
fn build_debian_fixture(fixture: &Path) {
    let scratch = crate::scratch_dir();
    let tar = scratch.path().join("rootfs.tar");
    tools::run(
        tools::command("mmdebstrap")
            .args(["--quiet", "--variant=minbase", "--format=tar", "bookworm"])
            .arg(&tar)
            .arg(host_debian_sources()),
    );
    let podman = Podman::new();
    let reference = "localhost/layerize-fixture/debian:bookworm";
    let changes = ["CMD [\"/bin/bash\"]".to_owned()];
    podman_import(&podman, &tar, reference, &changes, &[]);
    layouts_from_storage(&podman, reference, fixture);
}

/// Copies `reference` from `podman`'s store into `fixture/oci` and `fixture/docker`.
fn layouts_from_storage(podman: &Podman, reference: &str, fixture: &Path) {
    let source = format!("{}{reference}", podman.storage_transport());
    for (name, format) in [("oci", "oci"), ("docker", "v2s2")] {
        let destination = format!("oci:{}:{TAG}", fixture.join(name).display());
        skopeo::copy(&source, &destination, None, &["--format", format]);
    }
}

fn podman_import(podman: &Podman, tar: &Path, reference: &str, changes: &[String], extra: &[&str]) {
    let mut command = podman.command();
    command.args(["import", "--quiet"]).args(extra);
    for change in changes {
        command.arg("--change").arg(change);
    }
    tools::run(command.arg(tar).arg(reference));
}

fn busybox_changes() -> Vec<String> {
    let cmd = serde_json::to_string(&busybox::CMD).expect("CMD as JSON");
    let (label_key, label_value) = busybox::LABEL;
    let mut changes: Vec<String> = busybox::ENV
        .iter()
        .map(|env| format!("ENV {env}"))
        .collect();
    changes.extend([
        format!("CMD {cmd}"),
        format!("WORKDIR {}", busybox::WORKDIR),
        format!("LABEL {label_key}={label_value}"),
        format!("EXPOSE {}", busybox::EXPOSED_PORT),
    ]);
    changes
}

fn write_busybox_rootfs(root: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};

    let busybox = tools::require("busybox");
    let contents = |path: &str| -> Vec<u8> {
        match path {
            "bin/busybox" => std::fs::read(&busybox).expect("read busybox"),
            "etc/passwd" => b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".to_vec(),
            "etc/group" => b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
            "etc/os-release" => b"ID=layerize-test\nNAME=\"layerize test base\"\nVERSION_ID=1\n".to_vec(),
            "etc/shadow" => b"root:*:19000:0:99999:7:::\n".to_vec(),
            other => format!("{other} from the base\n").into_bytes(),
        }
    };
    let files = busybox::FILES
        .into_iter()
        .chain([(busybox::DELETABLE, 0o644)]);
    for (path, mode) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(&file, contents(path)).expect("write base file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    for (link, target) in busybox::SYMLINKS {
        let link = root.join(link);
        std::fs::create_dir_all(link.parent().expect("link has a parent")).expect("mkdir");
        symlink(target, link).expect("symlink");
    }
    for (dir, mode) in [("tmp", 0o1777), ("root", 0o700), ("srv", 0o755)] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
}

/// A root-owned, name-sorted tar of `dir`'s contents, as `podman import` takes it.
fn tar_directory(dir: &Path, tar: &Path) {
    tools::run(
        tools::command("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-cf",
            ])
            .arg(tar)
            .arg("-C")
            .arg(dir)
            .arg("."),
    );
}

/// This machine's apt sources for Debian, which mmdebstrap pastes into the new system.
fn host_debian_sources() -> PathBuf {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if deb822.exists() {
        deb822.to_owned()
    } else {
        PathBuf::from("/etc/apt/sources.list")
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}
