//! End-to-end: `layerize build` from OCI-layout bases made by podman/skopeo to OCI-layout
//! targets, checked with skopeo, umoci and podman (pull + image mount).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::app_image::{assert_podman_sees_the_app, App, AppFiles};
use support::images::{self, busybox, Format, Image};
use support::layerize::{built_layers, error_line, read_report, run_err, run_ok};
use support::podman::PulledImage;
use support::{scratch_dir, tools};

/// The app layer of this suite, labelled.
const APP: App = App {
    greeting: "layerize",
    mode: "test",
    asset_mode: 0o644,
    data: false,
    label: Some(("org.example.app", "demo")),
};

fn target_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.join("out").display())
}

/// Runs a build of `base` into the `app` tag of the layout in `out`, with `extra` arguments,
/// that must fail; returns its stderr.
fn build_err(base: &str, out: &Path, extra: &[&str]) -> String {
    let mut build = support::layerize!();
    build
        .args(["build", "--base", base, "--target", &target_ref(out, "app")])
        .args(extra);
    run_err(&mut build)
}

/// Runs a build of the app files on `base`, returning the report.
fn build_app(base: &str, target: &str, files: &AppFiles, extra: &[&str]) -> Value {
    let scratch = scratch_dir();
    let report = scratch.path().join("report.json");
    let mut build = support::layerize!();
    build
        .args(["build", "--base", base, "--target", target])
        .args(files.build_args())
        .args(extra)
        .arg("--report")
        .arg(&report);
    let output = run_ok(&mut build);
    let report = read_report(&report);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim(), report["digest"].as_str().unwrap());
    report
}

fn skopeo_inspect(reference: &str, raw: bool) -> Value {
    let mut inspect = tools::command("skopeo");
    inspect.arg("inspect");
    if raw {
        inspect.arg("--raw");
    }
    serde_json::from_str(&tools::run(inspect.arg(reference))).expect("skopeo printed JSON")
}

fn umoci_unpack_reads(layout_dir: &Path, tag: &str) {
    let bundle = scratch_dir();
    let bundle_dir = bundle.path().join("bundle");
    tools::run(
        tools::command("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout_dir.display()))
            .arg(&bundle_dir),
    );
    let rootfs = bundle_dir.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/www/index.html")).unwrap(),
        "<h1>layerize</h1>\n"
    );
    assert!(!rootfs.join(busybox::DELETABLE).exists());
}

fn check_result(base: &images::OciLayout) {
    let files = AppFiles::new(APP);
    let out = scratch_dir();
    let target = target_ref(out.path(), "app");
    let report = build_app(&base.reference(), &target, &files, &[]);

    assert_eq!(
        report["manifest_media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = report["layers"].as_array().unwrap();
    let base_layers = base.manifest()["layers"].as_array().unwrap().len();
    assert_eq!(layers.len(), base_layers + 1);
    assert!(layers[..base_layers]
        .iter()
        .all(|layer| layer["status"] == "base"));
    let built = layers.last().unwrap();
    assert_eq!(built["status"], "built");
    assert_eq!(
        built["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    for field in ["name", "digest", "diff_id", "size"] {
        assert!(!built[field].is_null(), "report layer lacks {field}");
    }

    let inspected = skopeo_inspect(&target, false);
    assert_eq!(inspected["Digest"], report["digest"]);
    let raw = skopeo_inspect(&target, true);
    assert_eq!(raw["layers"].as_array().unwrap().len(), base_layers + 1);
    assert_eq!(raw["layers"][base_layers]["digest"], built["digest"]);

    umoci_unpack_reads(&out.path().join("out"), "app");
    assert_podman_sees_the_app(&APP, &target, None);
}

#[test]
fn oci_base_to_layout_is_read_by_skopeo_umoci_and_podman() {
    check_result(&images::oci_base_layout());
}

#[test]
fn docker_base_is_converted_to_oci_in_the_layout() {
    let base = images::docker_base_layout();
    assert_eq!(
        base.manifest()["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    check_result(&base);
}

#[test]
fn base_config_fields_layerize_does_not_touch_survive_unchanged() {
    let base = images::oci_base_layout();
    let base_config: Value = {
        let manifest = base.manifest();
        serde_json::from_slice(&base.blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()
    };
    let out = scratch_dir();
    let target = target_ref(out.path(), "app");
    build_app(&base.reference(), &target, &AppFiles::new(APP), &[]);
    let config: Value = serde_json::from_str(&tools::run(
        tools::command("skopeo").args(["inspect", "--config", &target]),
    ))
    .unwrap();
    for (key, value) in base_config.as_object().unwrap() {
        match key.as_str() {
            "config" | "rootfs" | "history" | "created" => {}
            _ => assert_eq!(&config[key], value, "top-level config field {key} changed"),
        }
    }
    for (key, value) in base_config["config"].as_object().unwrap() {
        match key.as_str() {
            "Env" | "Entrypoint" | "Labels" => {}
            _ => assert_eq!(&config["config"][key], value, "config.{key} changed"),
        }
    }
    let base_diff_ids = base_config["rootfs"]["diff_ids"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(&diff_ids[..base_diff_ids.len()], &base_diff_ids[..]);
    let history = config["history"].as_array().unwrap();
    let created_by = history.last().unwrap()["created_by"].as_str().unwrap();
    assert!(created_by.starts_with("layerize build"), "{created_by}");
}

#[test]
fn platform_is_selected_from_a_two_platform_index() {
    let base = images::layout(Image::TwoPlatform, Format::Oci);
    let files = AppFiles::new(APP);
    for (platform, architecture) in [
        ("linux/amd64", "amd64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/aarch64", "arm64"),
    ] {
        let out = scratch_dir();
        let target = target_ref(out.path(), "app");
        build_app(
            &base.reference(),
            &target,
            &files,
            &["--platform", platform],
        );
        let inspected = skopeo_inspect(&target, false);
        assert_eq!(inspected["Architecture"], architecture, "{platform}");
    }

    let target = ExistingTarget::new(&base, &["--platform", "linux/amd64"]);
    let stderr = build_err(
        &base.reference(),
        target.dir(),
        &["--platform", "linux/s390x"],
    );
    assert!(stderr.contains("linux/s390x"), "{stderr}");
    assert!(
        stderr.contains("linux/arm64"),
        "the error lists what is available: {stderr}"
    );
    target.assert_unchanged();
}

/// A target layout in which an earlier build tagged `app`, and the files it held then: a failed
/// build must leave it exactly so, tag and blobs. (Checking a layout that no build ever created
/// would pass whatever layerize did.)
struct ExistingTarget {
    dir: tempfile::TempDir,
    files: Vec<(PathBuf, String)>,
}

impl ExistingTarget {
    /// Builds the app on `base` (with `extra` flags) into the `app` tag of a fresh layout.
    fn new(base: &images::OciLayout, extra: &[&str]) -> ExistingTarget {
        let dir = scratch_dir();
        let target = target_ref(dir.path(), "app");
        build_app(&base.reference(), &target, &AppFiles::new(APP), extra);
        let layout = dir.path().join("out");
        assert!(tag_exists(&layout, "app"));
        ExistingTarget {
            files: files_and_digests(&layout),
            dir,
        }
    }

    /// The directory to pass to [`build_err`] and [`target_ref`].
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn assert_unchanged(&self) {
        assert_eq!(
            files_and_digests(&self.dir().join("out")),
            self.files,
            "a failed build changed the target layout"
        );
    }
}

/// Every file below `dir`, relative to it and with the SHA-256 of its bytes, in name order.
fn files_and_digests(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                files.push((path.strip_prefix(dir).unwrap().to_owned(), digest));
            }
        }
    }
    files.sort();
    files
}

fn tag_exists(layout: &Path, tag: &str) -> bool {
    let Ok(bytes) = std::fs::read(layout.join("index.json")) else {
        return false;
    };
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == tag)
}

#[test]
fn same_inputs_give_the_same_digest_for_any_thread_count() {
    let base = images::oci_base_layout();
    let files = AppFiles::new(APP);
    let digests: Vec<String> = ["1", "2", "4"]
        .iter()
        .map(|threads| {
            let out = scratch_dir();
            let report = build_app(
                &base.reference(),
                &target_ref(out.path(), "app"),
                &files,
                &["--threads", threads],
            );
            report["digest"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[1], digests[2]);

    // SOURCE_DATE_EPOCH moves mtimes and `created`, hence the digest.
    let out = scratch_dir();
    let target = target_ref(out.path(), "app");
    let mut build = support::layerize!();
    build
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--base", &base.reference(), "--target", &target])
        .args(files.build_args());
    let digest = String::from_utf8(run_ok(&mut build).stdout).unwrap();
    assert_ne!(digest.trim(), digests[0]);
    let config: Value = serde_json::from_str(&tools::run(
        tools::command("skopeo").args(["inspect", "--config", &target]),
    ))
    .unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn layer_per_flag_makes_one_layer_per_flag_and_tar_input_is_normalised() {
    let base = images::oci_base_layout();
    let files = AppFiles::new(APP);
    let tar_dir = scratch_dir();
    let tar_with_mtime = |mtime: &str, name: &str| {
        let tar = tar_dir.path().join(name);
        tools::run(tools::command("tar").args([
            "--mtime",
            mtime,
            "--owner=1234",
            "--group=1234",
            "-C",
            &files.path("site"),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ]));
        tar
    };
    let old = tar_with_mtime("2001-01-01", "old.tar");
    let new = tar_with_mtime("2021-01-01", "new.tar");
    let mut diff_ids = Vec::new();
    for tar in [&old, &new] {
        let out = scratch_dir();
        let report_path = out.path().join("report.json");
        run_ok(support::layerize!().args([
            "build",
            "--base",
            &base.reference(),
            "--target",
            &target_ref(out.path(), "app"),
            "--layer-per-flag",
            "--tar",
            tar.to_str().unwrap(),
            "--file",
            &format!("{}:/etc/app/settings.conf", files.path("settings.conf")),
            "--delete",
            "/etc/motd",
            "--report",
            report_path.to_str().unwrap(),
        ]));
        let report = read_report(&report_path);
        let built = built_layers(&report);
        assert_eq!(built.len(), 3, "one layer per flag");
        diff_ids.push(built[0]["diff_id"].clone());
        let image = PulledImage::pull(&target_ref(out.path(), "app"), None);
        let index = image.root().join("index.html");
        assert_eq!(
            std::fs::read_to_string(&index).unwrap(),
            "<h1>layerize</h1>\n"
        );
        let meta = std::fs::metadata(&index).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mtime()), (0, 0, 0));
        assert!(!image.root().join("etc/motd").exists());
    }
    assert_eq!(
        diff_ids[0], diff_ids[1],
        "tar mtimes and owners must not leak into the layer"
    );
}

#[test]
fn zstd_layers_are_written_with_the_oci_zstd_media_type() {
    let base = images::oci_base_layout();
    let out = scratch_dir();
    let target = target_ref(out.path(), "app");
    let report = build_app(
        &base.reference(),
        &target,
        &AppFiles::new(APP),
        &["--compression", "zstd"],
    );
    let built = report["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        built["media_type"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_podman_sees_the_app(&APP, &target, None);
}

/// Runs a build into a target layout that already holds the tag, which must fail; checks its
/// message and that the layout is left as it was.
fn assert_build_fails(args: &[&str], expected: &[&str]) {
    let base = images::oci_base_layout();
    let target = ExistingTarget::new(&base, &[]);
    let stderr = build_err(&base.reference(), target.dir(), args);
    for needle in expected {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    target.assert_unchanged();
}

#[test]
fn a_path_escaping_the_root_is_refused() {
    let files = AppFiles::new(APP);
    assert_build_fails(
        &[
            "--file",
            &format!("{}:../../etc/evil", files.path("settings.conf")),
        ],
        &["escapes"],
    );
}

#[test]
fn a_missing_source_file_is_a_clear_error() {
    assert_build_fails(
        &["--file", "/nonexistent/layerize/app:/usr/local/bin/app"],
        &["/nonexistent/layerize/app", "not found"],
    );
}

/// The failure is one `error:` line naming what went wrong.
fn assert_one_error_line(stderr: &str, expected: &[&str]) {
    let line = error_line(stderr);
    for needle in expected {
        assert!(line.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

#[test]
fn a_malformed_base_is_a_clear_error() {
    let base = images::oci_base_layout();
    let manifest_digest = base.tagged_descriptor()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(
        base.blob_path(&manifest_digest),
        b"{\"not\": \"a manifest\"",
    )
    .unwrap();
    let out = scratch_dir();
    let stderr = build_err(&base.reference(), out.path(), &[]);
    assert_one_error_line(&stderr, &[&manifest_digest, "digest mismatch"]);

    std::fs::write(base.path().join("index.json"), b"not json").unwrap();
    let stderr = build_err(&base.reference(), out.path(), &[]);
    assert_one_error_line(&stderr, &["index.json"]);

    let missing = scratch_dir();
    let stderr = build_err(
        &format!("oci:{}:base", missing.path().display()),
        out.path(),
        &[],
    );
    assert!(stderr.contains("not an OCI image layout"), "{stderr}");
}

#[test]
fn bad_flags_are_clear_errors() {
    assert_build_fails(
        &["--platform", "linux/s390x"],
        &["linux/s390x", "linux/amd64"],
    );
    assert_build_fails(
        &["--entrypoint", "/bin/app"],
        &["--entrypoint", "JSON array"],
    );
    assert_build_fails(&["--env", "NOVALUE"], &["--env", "KEY=VALUE"]);
}

#[test]
fn json_logs_carry_phase_step_and_message() {
    let base = images::oci_base_layout();
    let out = scratch_dir();
    let files = AppFiles::new(APP);
    let mut build = support::layerize!();
    build
        .args(["--log-format", "json", "build", "--base", &base.reference()])
        .args(["--target", &target_ref(out.path(), "app")])
        .args(files.build_args());
    let output = run_ok(&mut build);
    let events: Vec<Value> = String::from_utf8(output.stderr)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .collect();
    let steps: Vec<u64> = events
        .iter()
        .filter(|event| event["phase"] == "build")
        .map(|event| {
            assert!(event["message"].is_string(), "{event}");
            event["step"].as_u64().unwrap()
        })
        .collect();
    for step in [0, 1, 2, 4, 5, 6, 7, 8] {
        assert!(steps.contains(&step), "no step {step} in {steps:?}");
    }
    let built = events.iter().find(|event| event["step"] == 1).unwrap();
    assert!(built["diff_id"].as_str().unwrap().starts_with("sha256:"));
    assert!(built["compressed_size"].as_u64().unwrap() > 0);
}
