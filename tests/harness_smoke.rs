//! Quick checks that the test support library itself works: base layouts made by other tools,
//! podman pulling and mounting them, registries in open and htpasswd mode accepting pushes, and
//! the two-platform index. If these fail, every end-to-end test would fail for the wrong reason.

use std::os::unix::fs::PermissionsExt;

use support::images::{self, busybox, Format, Image};
use support::podman::PulledImage;
use support::registry::Registry;
use support::{skopeo, tools};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn busybox_oci_layout_pulls_and_mounts_in_podman() {
    let layout = images::oci_base_layout();
    assert_eq!(layout.tagged_descriptor()["mediaType"], OCI_MANIFEST);

    let image = PulledImage::pull(&layout.reference(), None);
    for (path, mode) in busybox::FILES {
        let meta = std::fs::symlink_metadata(image.root().join(path)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
    }
    for (link, target) in busybox::SYMLINKS {
        let read = std::fs::read_link(image.root().join(link)).unwrap();
        assert_eq!(read.to_str(), Some(target), "{link}");
    }
    assert!(image.root().join(busybox::DELETABLE).is_file());
    assert_eq!(
        image.chroot_run(&["/bin/cat", "/etc/motd"]),
        "etc/motd from the base\n"
    );

    let config = &image.inspect()["Config"];
    assert_eq!(config["Env"], serde_json::json!(busybox::ENV));
    assert_eq!(config["Cmd"], serde_json::json!(busybox::CMD));
    assert_eq!(config["WorkingDir"], busybox::WORKDIR);
    assert_eq!(config["Labels"][busybox::LABEL.0], busybox::LABEL.1);
}

#[test]
fn busybox_docker_layout_has_docker_media_types_and_skopeos_bytes() {
    let docker = images::docker_base_layout();
    assert_eq!(docker.tagged_descriptor()["mediaType"], DOCKER_MANIFEST);
    let manifest = docker.manifest();
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    // Same config and layer blobs as the OCI form: only the manifest's family differs.
    let oci = images::oci_base_layout().manifest();
    assert_eq!(manifest["config"]["digest"], oci["config"]["digest"]);
    assert_eq!(manifest["layers"][0]["digest"], oci["layers"][0]["digest"]);
}

#[test]
fn busybox_layout_unpacks_with_umoci() {
    let layout = images::oci_base_layout();
    let unpacked = skopeo::Unpacked::new(&layout.path(), images::TAG);
    assert!(unpacked.rootfs().join("bin/busybox").is_file());
}

#[test]
fn two_platform_index_layouts_list_amd64_and_arm64() {
    for (format, index_type) in [
        (Format::Oci, "application/vnd.oci.image.index.v1+json"),
        (
            Format::Docker,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    ] {
        let layout = images::layout(Image::TwoPlatform, format);
        let index = layout.manifest();
        assert_eq!(index["mediaType"], index_type);
        let platforms: Vec<_> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let platform = &entry["platform"];
                let variant = platform["variant"].as_str().map(|v| format!("/{v}"));
                format!(
                    "{}/{}{}",
                    platform["os"].as_str().unwrap(),
                    platform["architecture"].as_str().unwrap(),
                    variant.unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"], "{format:?}");
    }
}

#[test]
fn open_registry_takes_pushes_and_serves_them_to_podman() {
    let registry = Registry::open();
    let digest = images::push(Image::Busybox, Format::Docker, &registry, "base/busybox:v1");
    let reference = format!("{}/base/busybox:v1", registry.host());
    assert_eq!(skopeo::inspect(&reference, None)["Digest"], digest);
    let raw: serde_json::Value =
        serde_json::from_slice(&skopeo::inspect_raw(&reference, None)).unwrap();
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST);

    let image = PulledImage::pull(&reference, None);
    assert!(image.root().join("bin/busybox").is_file());
    assert!(registry
        .log_text()
        .contains("PUT /v2/base/busybox/manifests/v1"));

    let index_digest = images::push(Image::TwoPlatform, Format::Oci, &registry, "multi:v1");
    let index_ref = format!("{}/multi:v1", registry.host());
    let index: serde_json::Value =
        serde_json::from_slice(&skopeo::inspect_raw(&index_ref, None)).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert!(index_digest.starts_with("sha256:"));
}

#[test]
fn htpasswd_registry_requires_its_password() {
    let registry = Registry::htpasswd("tester", "s3cret-pass");
    images::push(Image::Busybox, Format::Oci, &registry, "app:v1");
    let reference = format!("{}/app:v1", registry.host());

    let inspected = skopeo::inspect(&reference, registry.creds().as_deref());
    assert_eq!(inspected["Architecture"], "amd64");

    let anonymous = tools::output(
        tools::command("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    );
    assert!(
        !anonymous.status.success(),
        "anonymous inspect must be refused"
    );
    let wrong = tools::output(
        tools::command("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds", "tester:wrong"])
            .arg(format!("docker://{reference}")),
    );
    assert!(!wrong.status.success(), "wrong password must be refused");

    let image = PulledImage::pull(&reference, registry.creds().as_deref());
    assert!(image.root().join("bin/busybox").is_file());
}

#[test]
fn missing_tool_fails_with_the_install_hint() {
    let panic = std::panic::catch_unwind(|| tools::require("layerize-no-such-tool")).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("required tool layerize-no-such-tool missing")
            && message.contains("run scripts/install-deps"),
        "{message}"
    );
}
