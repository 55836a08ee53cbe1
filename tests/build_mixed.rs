//! End-to-end: mixed base and target kinds — a multi-platform base in a registry built into an OCI
//! layout, that layout pushed on to a registry, and bases named by digest (whose manifest layerize
//! checks against the digest itself).

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::images::{self, Format, Image};
use support::layerize::{error_line, read_report, run_err, run_ok};
use support::podman::PulledImage;
use support::registry::Registry;
use support::{scratch_dir, skopeo, tools};

/// A small host file to add, so every build makes one layer.
fn note_file(dir: &std::path::Path) -> String {
    let path = dir.join("note.txt");
    std::fs::write(&path, "built across stores\n").unwrap();
    format!("{}:/etc/note.txt:644", path.display())
}

fn build(base: &str, target: &str, extra: &[&str]) -> Value {
    let scratch = scratch_dir();
    let report = scratch.path().join("report.json");
    let mut build = support::layerize!();
    build
        .args(["build", "--base", base, "--target", target])
        .args(["--file", &note_file(scratch.path())])
        .args(extra)
        .arg("--report")
        .arg(&report);
    run_ok(&mut build);
    read_report(&report)
}

#[test]
fn registry_index_to_layout_to_registry() {
    let registry = Registry::open();
    let list_digest = images::push(
        Image::TwoPlatform,
        Format::Docker,
        &registry,
        "base/multi:v1",
    );
    let base = format!("{}/base/multi:v1", registry.host());

    // registry (Docker manifest list) -> OCI layout, arm64 chosen, converted to OCI media types.
    let out = scratch_dir();
    let layout = format!("oci:{}:app", out.path().join("layout").display());
    let report = build(&base, &layout, &["--platform", "linux/arm64"]);
    assert_eq!(
        report["manifest_media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let inspected = skopeo::inspect(&layout, None);
    assert_eq!(inspected["Architecture"], "arm64");
    assert_eq!(inspected["Digest"], report["digest"]);
    let raw: Value = serde_json::from_slice(&skopeo::inspect_raw(&layout, None)).unwrap();
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.name"],
        base.as_str(),
        "a registry base is named in the annotations"
    );

    // OCI layout -> registry, with one more layer on top.
    let pushed = format!("{}/team/app:arm64", registry.host());
    let report = build(&layout, &pushed, &[]);
    let image = PulledImage::pull(&pushed, None);
    assert_eq!(
        std::fs::read_to_string(image.root().join("etc/note.txt")).unwrap(),
        "built across stores\n"
    );
    assert_eq!(image.inspect()["Architecture"], "arm64");
    assert_eq!(skopeo::inspect(&pushed, None)["Digest"], report["digest"]);
    let pushed_raw: Value = serde_json::from_slice(&skopeo::inspect_raw(&pushed, None)).unwrap();
    assert_eq!(
        pushed_raw["annotations"]["org.opencontainers.image.base.digest"], inspected["Digest"],
        "the layout base is recorded by digest"
    );
    assert!(
        pushed_raw["annotations"]
            .get("org.opencontainers.image.base.name")
            .is_none(),
        "the grandparent's name must not be inherited: {}",
        pushed_raw["annotations"]
    );

    // The base named by the list's digest resolves like the tag did.
    let by_digest = format!("{}/base/multi@{list_digest}", registry.host());
    let out_by_digest = scratch_dir();
    let layout_by_digest = format!("oci:{}:app", out_by_digest.path().join("layout").display());
    build(
        &by_digest,
        &layout_by_digest,
        &["--platform", "linux/arm64"],
    );
    let raw_by_digest: Value =
        serde_json::from_slice(&skopeo::inspect_raw(&layout_by_digest, None)).unwrap();
    assert_eq!(
        raw_by_digest["layers"], raw["layers"],
        "tag and digest of the same base give the same layers"
    );
    let base_digest = "org.opencontainers.image.base.digest";
    assert_eq!(
        raw_by_digest["annotations"][base_digest],
        raw["annotations"][base_digest]
    );
    assert_eq!(
        raw_by_digest["annotations"]["org.opencontainers.image.base.name"],
        by_digest.as_str()
    );
}

/// A layout target for a build that must fail: its error line.
fn build_fails(base: &str) -> String {
    let out = scratch_dir();
    let mut build = support::layerize!();
    build.args([
        "build",
        "--base",
        base,
        "--target",
        &format!("oci:{}:app", out.path().join("layout").display()),
    ]);
    error_line(&run_err(&mut build)).to_owned()
}

#[test]
fn a_base_manifest_that_does_not_match_its_digest_is_refused() {
    let registry = Registry::open();
    let digest = images::push(Image::Busybox, Format::Oci, &registry, "base/bb:v1");
    let base = format!("{}/base/bb@{digest}", registry.host());
    // The filesystem driver serves a manifest as stored: a trailing newline keeps it valid JSON
    // with the same content, but the bytes served for the digest no longer hash to it.
    let hex = digest.trim_start_matches("sha256:");
    let stored = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes.push(b'\n');
    std::fs::write(&stored, &bytes).unwrap();
    let url = format!("{}/v2/base/bb/manifests/{digest}", registry.url());
    let served = tools::run_bytes(tools::command("curl").args([
        "-sSf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &url,
    ]));
    assert_eq!(served, bytes, "the registry serves the changed bytes");

    // Only layerize's own check of what it got can fail this build.
    let line = build_fails(&base);
    let served_digest = format!("sha256:{}", hex::encode(Sha256::digest(&served)));
    for part in [
        registry.host().as_str(),
        "digest mismatch",
        &digest,
        &served_digest,
    ] {
        assert!(line.contains(part), "{line:?} does not name {part:?}");
    }
}

#[test]
fn a_base_digest_the_registry_lacks_is_not_found() {
    let registry = Registry::open();
    images::push(Image::Busybox, Format::Oci, &registry, "base/bb:v1");
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let line = build_fails(&format!("{}/base/bb@{wrong}", registry.host()));
    assert!(line.contains(wrong) && line.contains("not found"), "{line}");
}

#[test]
fn a_small_append_in_the_base_repository_takes_few_requests_and_an_unchanged_one_writes_nothing() {
    let registry = Registry::open();
    images::push(Image::Busybox, Format::Oci, &registry, "team/app:base");
    let base = format!("{}/team/app:base", registry.host());
    let target = format!("{}/team/app:v1", registry.host());
    // A machine that never built this layer: its local cache knows nothing.
    let cache = scratch_dir();
    let cache_dir = cache.path().to_str().unwrap();
    let report = build(&base, &target, &["--cache-dir", cache_dir]);
    let base_layers = report["layers"].as_array().unwrap().len() - 1;
    assert_eq!(report["blobs_skipped"], base_layers as u64, "{report}");
    assert_eq!(report["blobs_mounted"], 0);
    assert_eq!(report["blobs_uploaded"], 2, "the new layer and the config");
    // Ten requests, and one more to read the base layer for the base index (an empty cache).
    assert_eq!(report["base_index"]["layers_read"], 1, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests <= 11, "{requests} requests: {report}");
    let image = PulledImage::pull(&target, None);
    assert!(image.root().join("etc/note.txt").is_file());
    assert!(image.root().join("bin/busybox").is_file());

    // The same build again: the image at the tag is this one, so nothing is written at all.
    let writes_before = writes(&registry);
    let again = build(&base, &target, &["--cache-dir", cache_dir]);
    assert_eq!(again["digest"], report["digest"]);
    assert_eq!(again["blobs_uploaded"], 0, "{again}");
    assert_eq!(again["layers"][1]["status"], "reused", "{again}");
    assert_eq!(again["layers"][1]["reused_from"], "target", "{again}");
    assert_eq!(
        writes(&registry),
        writes_before,
        "an unchanged rebuild writes nothing"
    );
    let requests = again["requests"].as_u64().unwrap();
    assert!(requests <= 6, "{requests} requests: {again}");
}

/// Requests that change the registry (uploads, manifests), from its access log.
fn writes(registry: &Registry) -> usize {
    registry
        .access_log()
        .iter()
        .filter(|line| {
            ["\"PUT ", "\"POST ", "\"PATCH ", "\"DELETE "]
                .iter()
                .any(|m| line.contains(m))
        })
        .count()
}
