//! End-to-end: `layerize build` against real `docker-registry` servers — open, htpasswd (Basic)
//! and token auth — checked with podman (pull + image mount), skopeo and an independent client
//! (`oci-client`) that re-derives every diffID; cross-repository mounts and streamed copies
//! between registries; repeat builds; clear errors that leave the target tag alone; no secret in
//! any log; `layerize login`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use support::app_image::{assert_podman_sees_the_app, mode_of, App, AppFiles};
use support::images::{self, Format, Image};
use support::layerize::{error_line, read_report};
use support::podman::PulledImage;
use support::registry::{Auth, Registry};
use support::token_server::{Policy, TokenServer};
use support::{scratch_dir, skopeo, tools};

const USER: &str = "alice";
/// Long and unusual enough that finding it in a log cannot be a coincidence.
const PASSWORD: &str = "Corr3ct-Horse-Battery-Staple-7f3a";
const BASE_CREDS_VAR: &str = "LAYERIZE_TEST_BASE_CREDS";
const TARGET_CREDS_VAR: &str = "LAYERIZE_TEST_TARGET_CREDS";

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How the registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Htpasswd,
    Token,
}

/// A registry (with its token server in token mode) and the credentials that work there.
struct Site {
    registry: Registry,
    tokens: Option<TokenServer>,
    creds: Option<String>,
}

impl Site {
    fn start(mode: Mode) -> Site {
        Site::with_password(mode, PASSWORD)
    }

    fn with_password(mode: Mode, password: &str) -> Site {
        let creds = Some(format!("{USER}:{password}"));
        match mode {
            Mode::Open => Site {
                registry: Registry::open(),
                tokens: None,
                creds: None,
            },
            Mode::Htpasswd => Site {
                registry: Registry::htpasswd(USER, password),
                tokens: None,
                creds,
            },
            Mode::Token => {
                let tokens =
                    TokenServer::start(&[(USER, password)], Policy::new().allow(USER, "*", &["*"]))
                        .expect("start the token server");
                Site {
                    registry: Registry::start(tokens.registry_auth()),
                    tokens: Some(tokens),
                    creds,
                }
            }
        }
    }

    /// `127.0.0.1:PORT/REPO:TAG`.
    fn reference(&self, repository_tag: &str) -> String {
        format!("{}/{repository_tag}", self.registry.host())
    }

    fn creds(&self) -> Option<&str> {
        self.creds.as_deref()
    }

    /// Pushes the busybox base (in `format`) with skopeo; returns its reference.
    fn push_base(&self, format: Format, repository_tag: &str) -> String {
        self.push_image(Image::Busybox, format, repository_tag)
    }

    fn push_image(&self, image: Image, format: Format, repository_tag: &str) -> String {
        images::push_with_creds(image, format, &self.registry, self.creds(), repository_tag);
        self.reference(repository_tag)
    }

    /// The manifest digest a tag points at, `None` when the tag does not exist.
    fn tag_digest(&self, reference: &str) -> Option<String> {
        skopeo::digest_if_exists(reference, self.creds())
    }
}

/// The app layer of this suite: 0600 assets and a few MiB of data, so the gzip stream has
/// several members.
const APP: App = App {
    greeting: "the registry",
    mode: "registry",
    asset_mode: 0o600,
    data: true,
    label: None,
};

/// One `layerize build` invocation: base, target, flags, per-side credentials from environment
/// variables (as CI would pass them) and a report file.
struct Build {
    command: Command,
    report: PathBuf,
    _scratch: tempfile::TempDir,
}

/// What a finished `layerize build` left: its exit status, output, and report if written.
struct Finished {
    output: Output,
    report: Option<Value>,
    report_text: String,
}

impl Finished {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The report of a successful run, its digest checked against stdout.
    fn report(&self) -> &Value {
        let report = self.report.as_ref().expect("a report was written");
        assert_eq!(self.stdout().trim(), report["digest"].as_str().unwrap());
        report
    }

    fn digest(&self) -> String {
        self.report()["digest"].as_str().unwrap().to_owned()
    }
}

impl Build {
    fn new(base: &str, target: &str) -> Build {
        let scratch = scratch_dir();
        let report = scratch.path().join("report.json");
        let mut command = support::layerize!();
        command
            .args(["build", "--base", base, "--target", target])
            .arg("--report")
            .arg(&report);
        Build {
            command,
            report,
            _scratch: scratch,
        }
    }

    fn base_creds(mut self, creds: Option<&str>) -> Build {
        if let Some(creds) = creds {
            self.command
                .env(BASE_CREDS_VAR, creds)
                .args(["--base-creds", &format!("env:{BASE_CREDS_VAR}")]);
        }
        self
    }

    fn target_creds(mut self, creds: Option<&str>) -> Build {
        if let Some(creds) = creds {
            self.command
                .env(TARGET_CREDS_VAR, creds)
                .args(["--target-creds", &format!("env:{TARGET_CREDS_VAR}")]);
        }
        self
    }

    /// Both sides on `site`, with its credentials.
    fn creds_of(self, site: &Site) -> Build {
        self.base_creds(site.creds()).target_creds(site.creds())
    }

    fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Build {
        self.command.args(args);
        self
    }

    fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Build {
        self.command.env(key, value);
        self
    }

    /// Runs the build, whatever its outcome.
    fn finish(mut self) -> Finished {
        let output = tools::output(&mut self.command);
        self.collect(output)
    }

    fn collect(&self, output: Output) -> Finished {
        let report_text = std::fs::read_to_string(&self.report).unwrap_or_default();
        let report = (!report_text.is_empty()).then(|| read_report(&self.report));
        Finished {
            output,
            report,
            report_text,
        }
    }

    /// Runs the build, which must succeed.
    fn run(self) -> Finished {
        let finished = self.finish();
        assert!(
            finished.output.status.success(),
            "layerize failed ({}):\nstdout: {}\nstderr: {}",
            finished.output.status,
            finished.stdout(),
            finished.stderr()
        );
        finished
    }

    /// Runs the build, which must fail with exactly one `error:` line; returns that line.
    fn fail(self) -> String {
        let finished = self.finish();
        let stderr = finished.stderr();
        assert!(
            !finished.output.status.success(),
            "layerize succeeded but should have failed:\nstdout: {}\nstderr: {stderr}",
            finished.stdout()
        );
        assert_eq!(finished.output.status.code(), Some(1), "{stderr}");
        error_line(&stderr).to_owned()
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn as_u64(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a count"))
}

/// The raw manifest and config of `reference`, as skopeo reads them.
fn manifest_and_config(reference: &str, creds: Option<&str>) -> (Vec<u8>, Value, Value) {
    let raw = skopeo::inspect_raw(reference, creds);
    let manifest: Value = serde_json::from_slice(&raw).expect("manifest is JSON");
    let config = skopeo::inspect_config(reference, creds);
    (raw, manifest, config)
}

/// An independent client (oci-client) pulls `reference`: the manifest must hash to `digest`, and
/// each layer, downloaded and decompressed, must hash to its diffID in the config.
fn assert_independent_client_verifies_diff_ids(reference: &str, creds: Option<&str>, digest: &str) {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, RegistryOperation};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let image: oci_client::Reference = reference.parse().expect("oci-client parses it");
        let auth = match creds {
            Some(creds) => {
                let (user, password) = creds.split_once(':').unwrap();
                RegistryAuth::Basic(user.to_owned(), password.to_owned())
            }
            None => RegistryAuth::Anonymous,
        };
        client
            .auth(&image, &auth, RegistryOperation::Pull)
            .await
            .expect("oci-client authenticates");
        let (raw, served_digest) = client
            .pull_manifest_raw(&image, &auth, &[DOCKER_MANIFEST, OCI_MANIFEST])
            .await
            .expect("oci-client pulls the manifest");
        assert_eq!(served_digest, digest);
        assert_eq!(sha256_digest(&raw), digest);
        let manifest: Value = serde_json::from_slice(&raw).unwrap();

        let pull = |digest: String| {
            let (client, image) = (&client, &image);
            async move {
                let mut blob = Vec::new();
                client
                    .pull_blob(image, digest.as_str(), &mut blob)
                    .await
                    .unwrap_or_else(|e| panic!("oci-client pulls {digest}: {e}"));
                assert_eq!(sha256_digest(&blob), digest);
                blob
            }
        };
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
        let config: Value = serde_json::from_slice(&pull(config_digest).await).unwrap();
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), diff_ids.len());
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let blob = pull(layer["digest"].as_str().unwrap().to_owned()).await;
            assert_eq!(blob.len() as u64, as_u64(&layer["size"]));
            let media_type = layer["mediaType"].as_str().unwrap();
            assert_eq!(
                uncompressed_digest(media_type, &blob),
                diff_id.as_str().unwrap(),
                "diffID of {} ({media_type})",
                layer["digest"]
            );
        }
    });
}

/// sha256 of the tar inside a layer blob, decompressed as its media type says.
fn uncompressed_digest(media_type: &str, blob: &[u8]) -> String {
    let mut reader: Box<dyn Read + '_> = if media_type.ends_with("gzip") {
        // layerize writes multi-member gzip (one member per chunk): read every member.
        Box::new(flate2::read::MultiGzDecoder::new(blob))
    } else if media_type.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::new(blob).unwrap())
    } else {
        assert!(
            media_type.ends_with("tar"),
            "unknown layer type {media_type}"
        );
        Box::new(blob)
    };
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher).expect("decompress the layer");
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Access-log lines of cross-repository mounts into `repository` answered 201.
fn mounts_into(registry: &Registry, repository: &str, from: &str) -> Vec<String> {
    let post = format!("\"POST /v2/{repository}/blobs/uploads/?");
    let from_param = format!("from={}", from.replace('/', "%2F"));
    registry
        .access_log()
        .into_iter()
        .filter(|line| {
            line.contains(&post)
                && line.contains("mount=sha256")
                && (line.contains(&from_param) || line.contains(&format!("from={from}")))
                && line.contains(" HTTP/1.1\" 201 ")
        })
        .collect()
}

/// Checks a first build's report against what the registry serves for it.
fn assert_report_matches(
    report: &Value,
    target: &str,
    base_manifest: &Value,
    manifest: &Value,
    config: &Value,
) {
    assert_eq!(report["target"], target);
    let base_layers = base_manifest["layers"].as_array().unwrap();
    let layers = report["layers"].as_array().unwrap();
    let served = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), base_layers.len() + 1);
    assert_eq!(served.len(), layers.len());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    for (i, (layer, descriptor)) in layers.iter().zip(served).enumerate() {
        assert_eq!(layer["digest"], descriptor["digest"], "layer {i}");
        assert_eq!(layer["size"], descriptor["size"], "layer {i}");
        assert_eq!(layer["media_type"], descriptor["mediaType"], "layer {i}");
        assert_eq!(layer["diff_id"], diff_ids[i], "layer {i}");
        let expected = if i < base_layers.len() {
            assert_eq!(
                descriptor, &base_layers[i],
                "base layer {i} carried verbatim"
            );
            "base"
        } else {
            "built"
        };
        assert_eq!(layer["status"], expected, "layer {i}");
    }
}

/// `--log-format json` output: every line an event; the Layerize steps all present; one step-2
/// event per layer whose `outcome` (with `bytes` for uploads) says what the report says.
fn assert_json_events_match_report(stderr: &str, report: &Value) {
    let events: Vec<Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"))
        })
        .collect();
    let steps: Vec<u64> = events
        .iter()
        .filter(|event| event["phase"] == "build")
        .filter_map(|event| event["step"].as_u64())
        .collect();
    for step in [0, 6, 1, 2, 4, 5, 7, 8] {
        assert!(steps.contains(&step), "no step {step} in {steps:?}");
    }
    for layer in report["layers"].as_array().unwrap() {
        let present: Vec<&Value> = events
            .iter()
            .filter(|event| event["step"] == 2 && event["layer"] == layer["name"])
            .collect();
        assert_eq!(present.len(), 1, "step-2 events for {}", layer["name"]);
        let event = present[0];
        assert_eq!(event["digest"], layer["digest"]);
        if layer["status"] == "base" {
            assert_eq!(event["outcome"], "Mounted", "{event}");
        } else {
            assert_eq!(event["outcome"], "Uploaded", "{event}");
            assert_eq!(event["bytes"], layer["size"], "{event}");
        }
    }
}

/// Build and push in one auth mode, then check the result with podman, skopeo and oci-client.
fn build_push_and_check(mode: Mode, format: Format, extra: &[&str]) {
    let site = Site::start(mode);
    let base = site.push_base(format, "base/busybox:v1");
    let target = site.reference("team/app:v1");
    let files = AppFiles::new(APP);
    let built = Build::new(&base, &target)
        .creds_of(&site)
        .args(["--log-format", "json"])
        .args(files.build_args())
        .args(extra)
        .run();
    let report = built.report();
    let digest = built.digest();
    assert_json_events_match_report(&built.stderr(), report);

    let (_, base_manifest, _) = manifest_and_config(&base, site.creds());
    let (raw, manifest, config) = manifest_and_config(&target, site.creds());
    assert_eq!(sha256_digest(&raw), digest);
    assert_eq!(skopeo::inspect(&target, site.creds())["Digest"], digest);
    assert_report_matches(report, &target, &base_manifest, &manifest, &config);

    // A registry target keeps the base's manifest family: no conversion.
    let built_layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let compression_zstd = extra.contains(&"zstd");
    let (manifest_type, layer_type) = match format {
        Format::Docker => (DOCKER_MANIFEST, DOCKER_LAYER),
        Format::Oci if compression_zstd => (OCI_MANIFEST, OCI_ZSTD_LAYER),
        Format::Oci => (OCI_MANIFEST, OCI_GZIP_LAYER),
    };
    assert_eq!(report["manifest_media_type"], manifest_type);
    // The field is optional in OCI manifests: kept exactly as the base has it.
    assert_eq!(manifest.get("mediaType"), base_manifest.get("mediaType"));
    if format == Format::Docker {
        assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    }
    assert_eq!(
        manifest["config"]["mediaType"],
        base_manifest["config"]["mediaType"]
    );
    assert_eq!(built_layer["mediaType"], layer_type);

    // Same registry, other repository: base layers mounted; the new layer and config uploaded.
    let base_layer_count = base_manifest["layers"].as_array().unwrap().len() as u64;
    assert_eq!(as_u64(&report["blobs_mounted"]), base_layer_count);
    assert_eq!(as_u64(&report["blobs_uploaded"]), 2);
    assert_eq!(as_u64(&report["blobs_skipped"]), 0);
    assert_eq!(
        as_u64(&report["bytes_uploaded"]),
        as_u64(&built_layer["size"]) + as_u64(&manifest["config"]["size"])
    );
    assert!(as_u64(&report["requests"]) > 0);
    let mounts = mounts_into(&site.registry, "team/app", "base/busybox");
    assert_eq!(
        mounts.len() as u64,
        base_layer_count,
        "registry log:\n{}",
        site.registry.access_log().join("\n")
    );
    for layer in base_manifest["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(
            mounts.iter().any(|line| line.contains(hex)),
            "{hex} not mounted"
        );
    }

    assert_podman_sees_the_app(&APP, &target, site.creds());
    assert_independent_client_verifies_diff_ids(&target, site.creds(), &digest);
}

#[test]
fn open_registry_docker_base_keeps_docker_manifest() {
    build_push_and_check(Mode::Open, Format::Docker, &[]);
}

#[test]
fn open_registry_oci_base_with_zstd_layer() {
    build_push_and_check(Mode::Open, Format::Oci, &["--compression", "zstd"]);
}

#[test]
fn htpasswd_registry_oci_base() {
    build_push_and_check(Mode::Htpasswd, Format::Oci, &[]);
}

#[test]
fn token_registry_docker_base() {
    build_push_and_check(Mode::Token, Format::Docker, &[]);
}

#[test]
fn a_second_identical_build_uploads_no_blob_and_gives_the_same_digest() {
    let site = Site::start(Mode::Htpasswd);
    let base = site.push_base(Format::Oci, "base:v1");
    let target = site.reference("app:v1");
    let files = AppFiles::new(APP);
    let build = || {
        Build::new(&base, &target)
            .creds_of(&site)
            .args(files.build_args())
            .run()
    };
    let first = build();
    let log_before = site.registry.access_log().len();
    let second = build();
    assert_eq!(second.digest(), first.digest());
    let (first, second) = (first.report(), second.report());
    let first_layers = first["layers"].as_array().unwrap();
    let second_layers = second["layers"].as_array().unwrap();
    assert_eq!(first_layers.len(), second_layers.len());
    for (was, now) in first_layers.iter().zip(second_layers) {
        for field in ["name", "digest", "diff_id", "size", "media_type", "key"] {
            assert_eq!(now[field], was[field], "{field}: {now}");
        }
        match was["status"].as_str().unwrap() {
            "base" => assert_eq!(now["status"], "base"),
            "built" => {
                assert_eq!(now["status"], "reused", "{now}");
                assert_eq!(now["reused_from"], "target", "{now}");
            }
            other => panic!("a first build reused a layer ({other}): {was}"),
        }
    }
    assert_eq!(as_u64(&second["blobs_uploaded"]), 0);
    assert_eq!(as_u64(&second["bytes_uploaded"]), 0);
    assert_eq!(as_u64(&second["blobs_mounted"]), 0);
    let layers = second_layers.len() as u64;
    assert_eq!(
        as_u64(&second["blobs_skipped"]),
        layers,
        "every layer, listed by the manifest at the tag"
    );
    assert!(as_u64(&second["requests"]) < as_u64(&first["requests"]));

    // The image at the tag is the one this build makes: the registry saw reads only — no blob
    // upload, no HEAD for blobs its manifest lists, no manifest written.
    let log = site.registry.access_log();
    let second_run = &log[log_before..];
    for line in second_run {
        assert!(
            line.contains("\"GET ") || line.contains("\"HEAD /v2/ "),
            "a write or a blob check in the repeat build: {line}"
        );
    }
    assert_eq!(
        site.tag_digest(&target),
        Some(first["digest"].as_str().unwrap().to_owned())
    );
}

/// `File system outputs` of `/usr/bin/time -v`, in bytes (it counts 512-byte blocks).
fn file_system_output_bytes(time_report: &str) -> u64 {
    let line = time_report
        .lines()
        .find_map(|line| line.trim().strip_prefix("File system outputs: "))
        .unwrap_or_else(|| panic!("no file system outputs in:\n{time_report}"));
    line.trim().parse::<u64>().unwrap() * 512
}

#[test]
fn base_on_another_registry_is_streamed_across_without_touching_disk() {
    let source = Site::with_password(Mode::Htpasswd, "source-registry-password-1");
    let destination = Site::start(Mode::Token);
    let base = source.push_image(Image::Debian, Format::Oci, "debian:bookworm");
    let target = destination.reference("team/app:v1");
    let (_, base_manifest, _) = manifest_and_config(&base, source.creds());
    let base_layers = base_manifest["layers"].as_array().unwrap();
    let base_bytes: u64 = base_layers.iter().map(|layer| as_u64(&layer["size"])).sum();
    assert!(
        base_bytes > 10 << 20,
        "the Debian base is {base_bytes} bytes"
    );

    let tmpdir = scratch_dir();
    let scratch = scratch_dir();
    let time_report = scratch.path().join("time.txt");
    let files = AppFiles::new(APP);
    let build = Build::new(&base, &target)
        .base_creds(source.creds())
        .target_creds(destination.creds())
        .args(files.build_args())
        .env("TMPDIR", tmpdir.path());
    // Measure the build's own writes with /usr/bin/time, which reports them from getrusage.
    let mut timed = tools::command("time");
    timed
        .args(["-v", "-o"])
        .arg(&time_report)
        .arg(build.command.get_program())
        .args(build.command.get_args());
    for (key, value) in build.command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    let output = tools::output(&mut timed);
    let built = build.collect(output);
    assert!(
        built.output.status.success(),
        "layerize failed: {}",
        built.stderr()
    );
    let report = built.report();

    // The only file layerize may write is a spool of its own small layer, never a base blob.
    let written = file_system_output_bytes(&std::fs::read_to_string(&time_report).unwrap());
    let built_size = as_u64(&report["layers"].as_array().unwrap().last().unwrap()["size"]);
    assert!(
        written <= built_size + (1 << 20) && written < base_bytes / 20,
        "layerize wrote {written} bytes to disk while copying a {base_bytes}-byte base \
         and building a {built_size}-byte layer"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmpdir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "files left in TMPDIR: {leftovers:?}");

    let (_, manifest, config) = manifest_and_config(&target, destination.creds());
    assert_report_matches(report, &target, &base_manifest, &manifest, &config);
    let built_layer = manifest["layers"].as_array().unwrap().last().unwrap();
    assert_eq!(as_u64(&report["blobs_mounted"]), 0);
    assert_eq!(
        as_u64(&report["blobs_uploaded"]),
        base_layers.len() as u64 + 2
    );
    assert_eq!(
        as_u64(&report["bytes_uploaded"]),
        base_bytes + as_u64(&built_layer["size"]) + as_u64(&manifest["config"]["size"])
    );
    // The destination registry verified each streamed blob's digest when the upload completed;
    // an independent client re-checks digests and diffIDs.
    assert!(mounts_into(&destination.registry, "team/app", "debian").is_empty());
    assert_independent_client_verifies_diff_ids(&target, destination.creds(), &built.digest());
    let image = PulledImage::pull(&target, destination.creds());
    assert!(image.root().join("etc/debian_version").is_file());
    assert_eq!(
        image.chroot_run(&["/usr/local/bin/hello"]),
        "hello from the registry\n"
    );
}

#[test]
fn wrong_password_is_a_clear_error_and_leaves_the_tag_alone() {
    let wrong = format!("{USER}:not-the-password");
    for mode in [Mode::Htpasswd, Mode::Token] {
        let site = Site::start(mode);
        let base = site.push_base(Format::Oci, "base:v1");
        let target = site.reference("app:v1");
        let previous = Build::new(&base, &target).creds_of(&site).run().digest();
        let files = AppFiles::new(APP);

        // The base is readable, the push is refused.
        let error = Build::new(&base, &target)
            .base_creds(site.creds())
            .target_creds(Some(&wrong))
            .args(files.build_args())
            .fail();
        assert!(
            error.contains(&format!("{}/app", site.registry.host())),
            "{error}"
        );
        assert!(
            error.contains("401") && error.contains("credentials"),
            "{error}"
        );
        assert_eq!(site.tag_digest(&target), Some(previous.clone()));

        let error = Build::new(&base, &target)
            .base_creds(Some(&wrong))
            .target_creds(Some(&wrong))
            .args(files.build_args())
            .fail();
        assert!(
            error.contains(&format!("{}/base", site.registry.host())),
            "{error}"
        );
        assert!(
            error.contains("401") && error.contains("credentials"),
            "{error}"
        );
        assert_eq!(site.tag_digest(&target), Some(previous));
    }
}

#[test]
fn unknown_repository_and_unknown_tag_are_clear_errors() {
    let site = Site::start(Mode::Open);
    let existing_base = site.push_base(Format::Oci, "base:v1");
    let target = site.reference("app:v1");
    // The tag exists, so that its staying in place means something.
    let previous = Build::new(&existing_base, &target).run().digest();
    for (base, names) in [
        (site.reference("no/such-repo:v1"), "no/such-repo"),
        (site.reference("base:no-such-tag"), "no-such-tag"),
    ] {
        let error = Build::new(&base, &target).fail();
        assert!(
            error.contains(names) && error.contains("not found"),
            "{error}"
        );
        assert!(error.contains(&site.registry.host()), "{error}");
        assert_eq!(site.tag_digest(&target), Some(previous.clone()));
    }
}

/// A name other than `localhost` that resolves to a loopback address: layerize treats it as a
/// remote host (TLS only), while the connection still reaches the test registry on 127.0.0.1.
fn loopback_alias() -> String {
    use std::net::ToSocketAddrs;
    let resolves_to_loopback = |name: &str| {
        (name, 80)
            .to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.all(|addr| addr.ip().is_loopback()))
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let names_in_hosts = hosts
        .lines()
        .filter(|line| line.starts_with("127."))
        .flat_map(|line| line.split_whitespace().skip(1))
        .map(str::to_owned);
    std::iter::once(hostname.trim().to_owned())
        .chain(names_in_hosts)
        .find(|name| {
            !name.is_empty()
                && !name.eq_ignore_ascii_case("localhost")
                && !name.starts_with('#')
                && resolves_to_loopback(name)
        })
        .expect("the TLS tests need a name besides localhost resolving to 127.0.0.0/8 (the hostname in /etc/hosts)")
}

#[test]
fn plain_http_to_a_non_loopback_name_needs_insecure_registry() {
    let site = Site::start(Mode::Open);
    site.push_base(Format::Oci, "base:v1");
    let alias = format!(
        "{}:{}",
        loopback_alias(),
        site.registry.host().rsplit_once(':').unwrap().1
    );
    let base = format!("{alias}/base:v1");
    let target = format!("{alias}/app:v1");
    let loopback_target = site.reference("app:v1");
    // The tag exists, so that its staying in place means something.
    let previous = Build::new(&site.reference("base:v1"), &loopback_target)
        .run()
        .digest();

    // Not loopback by name: TLS is spoken to a plain-HTTP port.
    let error = Build::new(&base, &target).fail();
    assert!(error.contains("TLS"), "{error}");
    assert!(error.contains(&alias), "{error}");
    assert!(error.contains("--insecure-registry"), "{error}");
    assert_eq!(site.tag_digest(&loopback_target), Some(previous.clone()));

    // Plain HTTP to the target only when named.
    let error = Build::new(&site.reference("base:v1"), &target).fail();
    assert!(
        error.contains(&alias) && error.contains("--insecure-registry"),
        "{error}"
    );
    assert_eq!(site.tag_digest(&loopback_target), Some(previous.clone()));

    let built = Build::new(&base, &target)
        .args(["--insecure-registry", &alias])
        .run();
    assert_ne!(
        built.digest(),
        previous,
        "the base's name is in the annotations"
    );
    assert_eq!(site.tag_digest(&loopback_target), Some(built.digest()));

    // A token service on a non-loopback name over plain HTTP is refused too, even though the
    // registry itself is on loopback: the password would cross the network in clear.
    let tokens =
        TokenServer::start(&[(USER, PASSWORD)], Policy::new().allow(USER, "*", &["*"])).unwrap();
    let Auth::Token {
        realm,
        service,
        issuer,
        root_cert_bundle,
    } = tokens.registry_auth()
    else {
        unreachable!("a token server configures token auth")
    };
    let realm = realm.replace("127.0.0.1", &loopback_alias());
    let registry = Registry::start(Auth::Token {
        realm: realm.clone(),
        service,
        issuer,
        root_cert_bundle,
    });
    let base = format!("{}/base:v1", registry.host());
    let error = Build::new(&base, &format!("{}/app:v1", registry.host()))
        .base_creds(Some(&format!("{USER}:{PASSWORD}")))
        .fail();
    assert!(error.contains(&realm), "{error}");
    assert!(error.contains("plain HTTP"), "{error}");
    assert_eq!(tokens.requests(), 0, "the password was sent to {realm}");
}

/// Everything a build printed or wrote: stdout, stderr and the report.
fn everything(finished: &Finished) -> String {
    format!(
        "{}\n{}\n{}",
        finished.stdout(),
        finished.stderr(),
        finished.report_text
    )
}

fn basic_auth_value(creds: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(creds)
}

/// A DOCKER_CONFIG directory whose config.json holds `auth` for `host`.
fn docker_config_with_auth(host: &str, creds: &str) -> tempfile::TempDir {
    let dir = scratch_dir();
    let config = json!({ "auths": { host: { "auth": basic_auth_value(creds) } } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn no_log_holds_a_password_token_or_auth_value() {
    const WRONG_PASSWORD: &str = "Wr0ng-Pa55word-Never-Valid-91c2";
    let wrong = format!("{USER}:{WRONG_PASSWORD}");
    let files = AppFiles::new(APP);
    let mut outputs = Vec::new();
    let mut token_secrets = Vec::new();
    for mode in [Mode::Htpasswd, Mode::Token] {
        let site = Site::start(mode);
        let base = site.push_base(Format::Oci, "base:v1");
        let docker_config = docker_config_with_auth(&site.registry.host(), site.creds().unwrap());
        for (format, level) in [("text", "debug"), ("json", "debug"), ("text", "trace")] {
            let target = site.reference(&format!("app:{format}-{level}"));
            let logging = ["--log-level", level, "--log-format", format];
            let with_flags = Build::new(&base, &target)
                .creds_of(&site)
                .args(logging)
                .args(files.build_args())
                .run();
            outputs.push((
                format!("{mode:?} {format} --*-creds"),
                everything(&with_flags),
            ));

            let with_config = Build::new(&base, &target)
                .env("DOCKER_CONFIG", docker_config.path())
                .args(logging)
                .args(files.build_args())
                .args(["--env", "FROM_CONFIG_JSON=1"])
                .run();
            assert_ne!(with_config.digest(), with_flags.digest());
            outputs.push((
                format!("{mode:?} {format} config.json"),
                everything(&with_config),
            ));

            let refused = Build::new(&base, &target)
                .base_creds(site.creds())
                .target_creds(Some(&wrong))
                .args(logging)
                .args(["--env", "REFUSED=1"])
                .finish();
            assert!(!refused.output.status.success(), "{}", refused.stderr());
            error_line(&refused.stderr());
            outputs.push((
                format!("{mode:?} {format} wrong password"),
                everything(&refused),
            ));
            assert_eq!(site.tag_digest(&target), Some(with_config.digest()));
        }
        if let Some(tokens) = &site.tokens {
            token_secrets.extend(tokens.issued_secrets());
        }
    }
    assert!(
        token_secrets.len() >= 4,
        "the token builds were issued tokens"
    );

    let mut secrets = vec![
        PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        basic_auth_value(&format!("{USER}:{PASSWORD}")),
        basic_auth_value(&wrong),
    ];
    for token in token_secrets {
        // A JWT's signature alone, or its header and claims alone, would be a leak too.
        if let Some((signed, signature)) = token.rsplit_once('.') {
            secrets.push(signed.to_owned());
            secrets.push(signature.to_owned());
        }
        secrets.push(token);
    }
    for (what, output) in &outputs {
        let debug_marker = if what.contains(" json ") {
            "\"level\":\"DEBUG\""
        } else if what.contains(" trace ") {
            " TRACE "
        } else {
            " DEBUG "
        };
        assert!(
            output.contains(debug_marker),
            "{what}: no debug logs in:\n{output}"
        );
        for secret in &secrets {
            assert!(
                !output.contains(secret.as_str()),
                "{what} leaks {secret}:\n{output}"
            );
        }
    }
}

#[test]
fn login_writes_docker_config_and_a_build_without_creds_flags_uses_it() {
    let site = Site::start(Mode::Token);
    let base = site.push_base(Format::Docker, "base:v1");
    let target = site.reference("app:v1");
    let home = scratch_dir();
    let docker_config = home.path().join("docker");
    std::fs::create_dir(&docker_config).unwrap();
    let config_path = docker_config.join("config.json");
    let other = json!({ "auth": basic_auth_value("bob:elsewhere") });
    std::fs::write(
        &config_path,
        json!({ "auths": { "registry.example": other }, "psFormat": "table" }).to_string(),
    )
    .unwrap();

    // Without credentials the registry refuses.
    let error = Build::new(&base, &target)
        .env("DOCKER_CONFIG", &docker_config)
        .fail();
    assert!(
        error.contains("401") && error.contains("no credentials"),
        "{error}"
    );

    let mut login = support::layerize!();
    login
        .env("DOCKER_CONFIG", &docker_config)
        .args([
            "login",
            &site.registry.host(),
            "-u",
            USER,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().expect("start layerize login");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(!printed.contains(PASSWORD), "{printed}");

    assert_eq!(mode_of(&config_path), 0o600);
    let config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(
        config["auths"][site.registry.host()]["auth"],
        basic_auth_value(&format!("{USER}:{PASSWORD}"))
    );
    assert_eq!(config["auths"]["registry.example"], other);
    assert_eq!(config["psFormat"], "table");

    let built = Build::new(&base, &target)
        .env("DOCKER_CONFIG", &docker_config)
        .run();
    assert_eq!(site.tag_digest(&target), Some(built.digest()));
    let granted_to_alice = site
        .tokens
        .as_ref()
        .unwrap()
        .issued()
        .iter()
        .any(|issued| issued.subject.as_deref() == Some(USER));
    assert!(granted_to_alice, "the build authenticated as {USER}");
}

/// `layerize login HOST -u alice --password-stdin` with `password` on stdin.
fn layerize_login(docker_config: &std::path::Path, host: &str, password: &str) -> Output {
    let mut child = support::layerize!()
        .env("DOCKER_CONFIG", docker_config)
        .args(["login", host, "-u", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start layerize login");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_checks_the_password_with_the_registry_before_saving_it() {
    for mode in [Mode::Htpasswd, Mode::Token] {
        let site = Site::start(mode);
        let host = site.registry.host();
        let home = scratch_dir();
        let docker_config = home.path().join("docker");
        let config_path = docker_config.join("config.json");

        let refused = layerize_login(&docker_config, &host, "not-the-password");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{mode:?}: {stderr}");
        assert_eq!(
            error_line(&stderr),
            format!("error: login to {host} failed: wrong username or password"),
            "{mode:?}"
        );
        assert!(!stderr.contains("not-the-password"), "{stderr}");
        assert!(!config_path.exists(), "{mode:?}: nothing is written");

        let accepted = layerize_login(&docker_config, &host, PASSWORD);
        let stderr = String::from_utf8_lossy(&accepted.stderr);
        assert!(accepted.status.success(), "{mode:?}: {stderr}");
        let config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        assert_eq!(
            config["auths"][&host]["auth"],
            basic_auth_value(&format!("{USER}:{PASSWORD}")),
            "{mode:?}"
        );
    }
}

#[test]
fn a_target_named_by_digest_is_refused_before_anything_is_pushed() {
    let site = Site::start(Mode::Open);
    let base = site.push_base(Format::Oci, "base:v1");
    let base_digest = site.tag_digest(&base).unwrap();
    let files = AppFiles::new(APP);
    for target in [
        site.reference(&format!("app@{base_digest}")),
        site.reference(&format!("app:v1@{base_digest}")),
    ] {
        let error = Build::new(&base, &target).args(files.build_args()).fail();
        assert!(
            error.contains("--target") && error.contains("digest") && error.contains("tag"),
            "{error}"
        );
    }
    let touched_app: Vec<String> = site
        .registry
        .access_log()
        .into_iter()
        .filter(|line| line.contains(" /v2/app/"))
        .collect();
    assert!(touched_app.is_empty(), "{touched_app:?}");
    assert_eq!(site.tag_digest(&site.reference("app:v1")), None);
}

#[test]
fn a_base_blob_corrupted_at_the_source_fails_the_streamed_copy() {
    let source = Site::start(Mode::Open);
    let destination = Site::start(Mode::Open);
    let base = source.push_base(Format::Oci, "base:v1");
    let target = destination.reference("app:v1");
    let (_, base_manifest, _) = manifest_and_config(&base, None);
    let layer = base_manifest["layers"][0]["digest"].as_str().unwrap();
    let hex = layer.trim_start_matches("sha256:");
    // The filesystem driver serves blob data as stored: flip bytes, keep the size.
    let data = source
        .registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&data, bytes).unwrap();

    let error = Build::new(&base, &target)
        .args(AppFiles::new(APP).build_args())
        .fail();
    assert!(error.contains(layer), "{error}");
    assert!(error.contains("digest mismatch"), "{error}");
    assert!(error.contains(&source.registry.host()), "{error}");
    assert_eq!(destination.tag_digest(&target), None);
    // layerize caught it as the bytes passed: the destination never committed the blob.
    let committed: Vec<String> = destination
        .registry
        .access_log()
        .into_iter()
        .filter(|line| line.contains(hex) && line.contains("\"PUT ") && line.contains("\" 201 "))
        .collect();
    assert!(committed.is_empty(), "{committed:?}");
}

#[test]
fn a_token_without_push_rights_is_a_clear_error_and_leaves_the_tag_alone() {
    const READER: (&str, &str) = ("reader", "Reader-0nly-Pa55word-5d1e");
    let tokens = TokenServer::start(
        &[(USER, PASSWORD), READER],
        Policy::new()
            .allow(USER, "*", &["*"])
            .allow(READER.0, "*", &["pull"]),
    )
    .unwrap();
    let site = Site {
        registry: Registry::start(tokens.registry_auth()),
        tokens: Some(tokens),
        creds: Some(format!("{USER}:{PASSWORD}")),
    };
    let base = site.push_base(Format::Oci, "base:v1");
    let target = site.reference("app:v1");
    let previous = Build::new(&base, &target).creds_of(&site).run().digest();

    // New content, so blobs must be uploaded before the manifest.
    let reader = format!("{}:{}", READER.0, READER.1);
    let error = Build::new(&base, &target)
        .base_creds(Some(&reader))
        .target_creds(Some(&reader))
        .args(AppFiles::new(APP).build_args())
        .fail();
    assert!(
        error.contains(&format!("{}/app", site.registry.host())),
        "{error}"
    );
    assert!(error.contains("push"), "{error}");
    assert_eq!(site.tag_digest(&target), Some(previous));
}
