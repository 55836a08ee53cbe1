//! End-to-end: images that layerize builds run in the two runtimes most users have, Debian's
//! containerd (`ctr run`) and Docker (`docker run --network none`), each started by the test on
//! private sockets and dirs. On a Docker v2 and an OCI busybox base, gzip layers, and zstd where
//! the runtime reads it (containerd does; Docker from 23.0, and an older one must refuse it).
//!
//! The entrypoint is a script in the new layer that prints what shows the runtime applied the
//! whole image: the cmd it was given, an inherited and a new environment variable, the inherited
//! working directory, a base file the layer deletes gone, and the digest of a 3 MiB file, which
//! layerize's gzip writes as several members.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::app_image::data_text;
use support::containerd::Containerd;
use support::docker::Docker;
use support::images::{self, busybox, Format, Image};
use support::layerize::run_ok;
use support::registry::Registry;
use support::{scratch_dir, skopeo};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
}

/// An image layerize built on the busybox base, in a registry of its own, and what its
/// entrypoint must print.
struct BuiltImage {
    reference: String,
    expected_output: String,
    _registry: Registry,
}

impl BuiltImage {
    /// Builds on the busybox base in `format` with the app layer compressed as `compression`;
    /// `name` goes into the output, so each test's image is its own.
    fn build(format: Format, compression: Compression, name: &str) -> BuiltImage {
        let registry = Registry::open();
        images::push(Image::Busybox, format, &registry, "base/busybox:v1");
        let base = format!("{}/base/busybox:v1", registry.host());
        let reference = format!("{}/app/{name}:v1", registry.host());

        let files = scratch_dir();
        let probe = files.path().join("probe.sh");
        std::fs::write(&probe, PROBE_SCRIPT).unwrap();
        let data = files.path().join("data.txt");
        std::fs::write(&data, data_text()).unwrap();
        let compression_flag = match compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        };
        run_ok(
            support::layerize!()
                .args(["build", "--base", &base, "--target", &reference])
                .arg("--file")
                .arg(format!("{}:/usr/local/bin/probe:755", probe.display()))
                .arg("--file")
                .arg(format!("{}:/opt/data/data.txt", data.display()))
                .args(["--delete", &format!("/{}", busybox::DELETABLE)])
                .args(["--env", &format!("PROBE_NAME={name}")])
                .args(["--entrypoint", r#"["/usr/local/bin/probe"]"#])
                .args(["--cmd", &format!(r#"["from", "{name}"]"#)])
                .args(["--compression", compression_flag]),
        );
        assert_media_types(&reference, format, compression);

        let base_greeting = busybox::ENV
            .iter()
            .find_map(|env| env.strip_prefix("BASE_GREETING="))
            .expect("the base sets BASE_GREETING");
        let expected_output = format!(
            "args: from {name}\nenv: {base_greeting} {name}\nworkdir: {workdir}\n\
             {deleted}: deleted\n{digest}  /opt/data/data.txt\n",
            workdir = busybox::WORKDIR,
            deleted = busybox::DELETABLE,
            digest = hex::encode(Sha256::digest(data_text())),
        );
        BuiltImage {
            reference,
            expected_output,
            _registry: registry,
        }
    }
}

/// The entrypoint: each line shows one part of the image that the runtime must have applied.
const PROBE_SCRIPT: &str = r#"#!/bin/sh
echo "args: $*"
echo "env: $BASE_GREETING $PROBE_NAME"
echo "workdir: $(pwd)"
if [ -e /etc/motd ]; then echo "etc/motd: present"; else echo "etc/motd: deleted"; fi
busybox sha256sum /opt/data/data.txt
"#;

/// The pushed image keeps the base's family (seen in the config's media type: an OCI manifest
/// need not name its own) and the app layer has the asked compression, so each test runs the
/// kind of image it names.
fn assert_media_types(reference: &str, format: Format, compression: Compression) {
    let manifest: Value = serde_json::from_slice(&skopeo::inspect_raw(reference, None)).unwrap();
    let app_layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let (config_type, layer_type) = match (format, compression) {
        (Format::Docker, Compression::Gzip) => (DOCKER_CONFIG, DOCKER_GZIP_LAYER),
        (Format::Oci, Compression::Gzip) => (OCI_CONFIG, OCI_GZIP_LAYER),
        (Format::Oci, Compression::Zstd) => (OCI_CONFIG, OCI_ZSTD_LAYER),
        (Format::Docker, Compression::Zstd) => panic!("zstd layers need an OCI manifest"),
    };
    assert_eq!(manifest["config"]["mediaType"], config_type, "{manifest}");
    assert_eq!(app_layer["mediaType"], layer_type, "{manifest}");
}

fn assert_containerd_runs(format: Format, compression: Compression, name: &str) {
    let image = BuiltImage::build(format, compression, name);
    let containerd = Containerd::start();
    containerd.pull(&image.reference);
    assert_eq!(containerd.run(&image.reference), image.expected_output);
}

fn assert_docker_runs(format: Format, compression: Compression, name: &str) {
    let image = BuiltImage::build(format, compression, name);
    let docker = Docker::start();
    docker.pull(&image.reference);
    assert_eq!(docker.run(&image.reference), image.expected_output);
}

#[test]
fn ctr_runs_an_image_built_on_a_docker_v2_base() {
    assert_containerd_runs(Format::Docker, Compression::Gzip, "ctr-docker-gzip");
}

#[test]
fn ctr_runs_an_image_built_on_an_oci_base() {
    assert_containerd_runs(Format::Oci, Compression::Gzip, "ctr-oci-gzip");
}

#[test]
fn ctr_runs_a_zstd_layer_on_an_oci_base() {
    assert_containerd_runs(Format::Oci, Compression::Zstd, "ctr-oci-zstd");
}

#[test]
fn docker_runs_an_image_built_on_a_docker_v2_base() {
    assert_docker_runs(Format::Docker, Compression::Gzip, "docker-docker-gzip");
}

#[test]
fn docker_runs_an_image_built_on_an_oci_base() {
    assert_docker_runs(Format::Oci, Compression::Gzip, "docker-oci-gzip");
}

/// What docs/ says of zstd and Docker, checked against the Docker that is installed.
#[test]
fn docker_runs_a_zstd_layer_from_23_0_and_refuses_it_before() {
    let image = BuiltImage::build(Format::Oci, Compression::Zstd, "docker-oci-zstd");
    let docker = Docker::start();
    if docker.reads_zstd() {
        docker.pull(&image.reference);
        assert_eq!(docker.run(&image.reference), image.expected_output);
    } else {
        let pull = docker.try_pull(&image.reference);
        let stderr = String::from_utf8_lossy(&pull.stderr);
        assert!(
            !pull.status.success(),
            "Docker {:?} pulled a zstd layer",
            docker.version()
        );
        // Docker 20.10 hands the zstd bytes to its tar reader as they are.
        assert!(
            stderr.contains("failed to register layer"),
            "Docker {:?}: {stderr}",
            docker.version()
        );
    }
}
