//! End-to-end: `layerize layers --tree/--analyze`, `export-chain` and `cache clean`, on images
//! layerize built with plain flags — in an OCI layout and pushed to a real `docker-registry` —
//! and on images whose history comments and layer annotations carry layer records (crafted from
//! a built image with `layerize_manifest`'s types, and copied to the registry by skopeo in OCI
//! and Docker v2 form).

// The test's crate root sits in tests/, beside the other suites; its parts live in tests/inspect/.
#[path = "inspect/cache_clean.rs"]
mod cache_clean;
#[path = "inspect/recorded.rs"]
mod recorded;

use std::io::Read;
use std::path::{Path, PathBuf};

use layerize_manifest::Digest;
use serde_json::{json, Value};
use support::images;
use support::layerize::{error_line, read_report, run_err, run_ok};
use support::registry::Registry;
use support::scratch_dir;
use tempfile::TempDir;

/// The base's `etc/motd`, which the last layer deletes (see `support::images`' busybox rootfs).
const BASE_MOTD: &str = "etc/motd from the base\n";
const BIG: usize = 1000;
const GONE: usize = 77;
const SMALL: usize = 300;
/// The layers the build adds on the one-layer busybox base, in order (`--layer-per-flag`).
const BUILT: usize = 5;

/// Distinct, poorly compressible content of `len` bytes.
fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// The input files and base layout of this suite's build, and a scratch directory for its
/// outputs: the layout `out` (the build's tag `plain`), reports, caches.
struct Inputs {
    dir: TempDir,
    base: images::OciLayout,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = scratch_dir();
        for (name, len, seed) in [("big", BIG, 1), ("gone", GONE, 2), ("small", SMALL, 3)] {
            std::fs::write(dir.path().join(name), content(len, seed)).unwrap();
        }
        Inputs {
            dir,
            base: images::oci_base_layout(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }

    /// A file of the scratch directory.
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The output layout.
    fn layout(&self) -> PathBuf {
        self.file("out")
    }

    /// `oci:…/out:TAG`.
    fn layout_ref(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.layout().display())
    }

    /// Builds onto `target`: /srv/app.conf written (1000 B), /srv/gone.txt written (77 B),
    /// /srv/app.conf overwritten (300 B), /srv/gone.txt deleted, the base's /etc/motd deleted,
    /// one layer each. Returns the report.
    fn build(&self, target: &str, report: &Path, extra: &[&str]) -> Value {
        let mut build = support::layerize!();
        build
            .args([
                "build",
                "--base",
                &self.base.reference(),
                "--target",
                target,
            ])
            .arg("--file")
            .arg(format!("{}:/srv/app.conf", self.path("big")))
            .arg("--file")
            .arg(format!("{}:/srv/gone.txt", self.path("gone")))
            .arg("--file")
            .arg(format!("{}:/srv/app.conf", self.path("small")))
            .args(["--delete", "/srv/gone.txt", "--delete", "/etc/motd"])
            .arg("--layer-per-flag")
            .arg("--report")
            .arg(report)
            .args(extra);
        run_ok(&mut build);
        read_report(report)
    }
}

/// `layers --analyze REF --json --report REPORT`.
fn analyze_json(reference: &str, report: &Path) -> Value {
    let report = report.display().to_string();
    layerize_json(&[
        "layers",
        "--analyze",
        reference,
        "--json",
        "--report",
        &report,
    ])
}

/// Runs `layerize ARGS`, which must succeed, and parses its stdout as JSON.
fn layerize_json(args: &[&str]) -> Value {
    let output = run_ok(support::layerize!().args(args));
    serde_json::from_slice(&output.stdout).expect("layerize printed JSON")
}

fn layerize_text(args: &[&str]) -> String {
    String::from_utf8(run_ok(support::layerize!().args(args)).stdout).unwrap()
}

/// The tagged manifest of a layout, parsed, with its digest.
fn layout_manifest(layout: &Path, tag: &str) -> (Value, String) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{tag} in {}", layout.display()));
    let digest = descriptor["digest"].as_str().unwrap().to_owned();
    (
        serde_json::from_slice(&blob(layout, &digest)).unwrap(),
        digest,
    )
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap();
    std::fs::read(layout.join("blobs").join(algorithm).join(hex)).unwrap()
}

/// The length of a gzip layer blob's tar stream, decompressed here independently.
fn tar_len(layout: &Path, digest: &str) -> u64 {
    let compressed = blob(layout, digest);
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .read_to_end(&mut tar)
        .unwrap();
    tar.len() as u64
}

fn lost(path: &str, size: usize, fate: &str, by_layer: usize) -> Value {
    json!({"path": path, "size": size, "fate": fate, "by_layer": by_layer})
}

/// The analysis of the suite's image: wasted bytes exactly the overwritten and deleted copies.
fn assert_analysis(analysis: &Value, layout: &Path, manifest: &Value) {
    let layers = analysis["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1 + BUILT);
    let motd = BASE_MOTD.len();
    assert_eq!(
        analysis["totals"]["wasted_bytes"],
        BIG + GONE + motd,
        "{analysis:#}"
    );
    assert_eq!(
        layers[0]["lost"],
        json!([lost("etc/motd", motd, "deleted", 5)])
    );
    assert_eq!(
        layers[1]["lost"],
        json!([lost("srv/app.conf", BIG, "overwritten", 3)])
    );
    assert_eq!(
        layers[2]["lost"],
        json!([lost("srv/gone.txt", GONE, "deleted", 4)])
    );
    for layer in &layers[3..] {
        assert_eq!(layer["lost"], json!([]), "{layer}");
        assert_eq!(layer["wasted_bytes"], 0);
    }
    assert_eq!(layers[1]["wasted_bytes"], BIG);
    assert_eq!(
        (layers[1]["files"].clone(), layers[1]["file_bytes"].clone()),
        (json!(1), json!(BIG))
    );
    assert_eq!(layers[4]["whiteouts"], 1);
    assert_eq!(
        analysis["paths"][0],
        json!({"path": "srv/app.conf", "copies": 2, "wasted_bytes": BIG, "surviving_layer": 3})
    );
    assert_eq!(analysis["paths"].as_array().unwrap().len(), 3);
    let mut compressed = 0;
    for (layer, descriptor) in layers.iter().zip(manifest["layers"].as_array().unwrap()) {
        let digest = descriptor["digest"].as_str().unwrap();
        assert_eq!(layer["digest"], digest);
        assert_eq!(layer["compressed_bytes"], descriptor["size"]);
        assert_eq!(layer["uncompressed_bytes"], tar_len(layout, digest));
        compressed += descriptor["size"].as_u64().unwrap();
    }
    assert_eq!(analysis["totals"]["compressed_bytes"], compressed);
}

#[test]
fn analyze_counts_overwritten_and_deleted_copies_on_a_layout_and_a_registry() {
    let inputs = Inputs::new();
    let (layout, layout_ref) = (inputs.layout(), inputs.layout_ref("plain"));
    let layout_report = inputs.file("layout-report.json");
    inputs.build(&layout_ref, &layout_report, &[]);
    let (manifest, _) = layout_manifest(&layout, "plain");

    let analysis = analyze_json(&layout_ref, &layout_report);
    assert_analysis(&analysis, &layout, &manifest);
    assert_eq!(
        analysis["cache_hit_rate"],
        json!({"reused": 0, "built": BUILT, "rate": 0.0})
    );
    let text = layerize_text(&["layers", "--analyze", &layout_ref]);
    assert!(text.contains("overwritten by layer 3"), "{text}");
    assert!(text.contains("/srv/gone.txt"), "{text}");
    assert!(text.contains("wasted: 1.1 KiB"), "{text}");

    // The same build pushed to a registry: the same layers, read back over HTTP.
    let registry = Registry::open();
    let remote = format!("{}/inspect/app:1", registry.host());
    let remote_report = inputs.file("remote-report.json");
    inputs.build(&remote, &remote_report, &[]);
    let remote_analysis = analyze_json(&remote, &remote_report);
    assert_analysis(&remote_analysis, &layout, &manifest);
    assert_eq!(remote_analysis["cache_hit_rate"]["built"], BUILT);
}

#[test]
fn tree_lists_base_layers_as_base_and_takes_origins_from_the_build_report() {
    let inputs = Inputs::new();
    let (layout, layout_ref) = (inputs.layout(), inputs.layout_ref("plain"));
    let report_path = inputs.file("report.json");
    let report = inputs.build(&layout_ref, &report_path, &[]);
    let (manifest, digest) = layout_manifest(&layout, "plain");

    // By the image alone: the base's layer has no record, the built ones have theirs.
    let tree = layerize_json(&["layers", "--tree", &layout_ref, "--json"]);
    assert_eq!(tree["digest"], digest);
    let layers = tree["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1 + BUILT);
    assert_eq!(
        (&layers[0]["origin"], &layers[0]["name"], &layers[0]["key"]),
        (&json!("base"), &json!("base[0]"), &Value::Null)
    );
    for (index, layer) in layers.iter().enumerate() {
        assert_eq!(layer["index"], index);
        assert_eq!(layer["digest"], manifest["layers"][index]["digest"]);
        assert_eq!(layer["size"], manifest["layers"][index]["size"]);
    }
    for (layer, reported) in layers[1..]
        .iter()
        .zip(&report["layers"].as_array().unwrap()[1..])
    {
        assert_eq!(layer["origin"], "built", "{layer}");
        assert_eq!(layer["name"], reported["name"]);
        assert_eq!(layer["key"], reported["key"]);
        assert!(
            layer["key"].as_str().unwrap().starts_with("sha256:"),
            "{layer}"
        );
    }
    assert!(
        layers[1]["created_by"]
            .as_str()
            .unwrap()
            .contains("/srv/app.conf"),
        "{}",
        layers[1]
    );

    // The same build again reuses every layer: its report says so, and from where.
    let again_path = inputs.file("again.json");
    let again = inputs.build(&layout_ref, &again_path, &[]);
    assert_eq!(
        again["digest"], digest,
        "the same inputs give the same image"
    );
    let again_arg = again_path.display().to_string();
    let tree = layerize_json(&[
        "layers",
        "--tree",
        &layout_ref,
        "--json",
        "--report",
        &again_arg,
    ]);
    let origins: Vec<(&Value, &Value)> = tree["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| (&layer["origin"], &layer["reused_from"]))
        .collect();
    let reported: Vec<(&Value, &Value)> = again["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| (&layer["status"], &layer["reused_from"]))
        .collect();
    assert_eq!(origins, reported);
    assert!(
        origins[1..].iter().all(|(origin, _)| *origin == "reused"),
        "{origins:?}"
    );
    let analysis = analyze_json(&layout_ref, &again_path);
    assert_eq!(
        analysis["cache_hit_rate"],
        json!({"reused": BUILT, "built": 0, "rate": 1.0})
    );
    let text = layerize_text(&["layers", "--tree", &layout_ref, "--report", &again_arg]);
    let first = text.lines().nth(2).unwrap();
    assert!(
        first.contains("base[0]") && first.contains("base"),
        "{text}"
    );
    assert!(text.lines().nth(3).unwrap().contains("reused ("), "{text}");

    // A report of another image is refused rather than applied to the wrong layers.
    let mut other = report.clone();
    other["digest"] = json!(Digest::sha256(b"another manifest"));
    let other_path = inputs.file("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let stderr = run_err(
        support::layerize!()
            .args(["layers", "--tree", &layout_ref])
            .arg("--report")
            .arg(&other_path),
    );
    let error = error_line(&stderr);
    assert!(
        error.contains("other.json") && error.contains("it describes the image"),
        "{error}"
    );
}

#[test]
fn inspecting_commands_refuse_unclear_requests() {
    let stderr =
        run_err(support::layerize!().args(["cache", "clean", "--cache-dir", "/nonexistent"]));
    assert!(
        error_line(&stderr).contains("--older-than AGE and/or --max-size SIZE"),
        "{stderr}"
    );
    let stderr = run_err(support::layerize!().args(["cache", "clean", "--older-than", "7"]));
    assert!(
        stderr.contains("expected a whole number and a unit"),
        "{stderr}"
    );
    let stderr = run_err(support::layerize!().args(["cache", "clean", "--max-size", "2XB"]));
    assert!(stderr.contains("binary: 1K = 1024 bytes"), "{stderr}");
    let stderr = run_err(support::layerize!().args(["layers", "oci:/nonexistent"]));
    assert!(
        stderr.contains("--tree") && stderr.contains("--analyze"),
        "{stderr}"
    );
    let stderr =
        run_err(support::layerize!().args(["layers", "--tree", "oci:/nonexistent/layout"]));
    assert!(
        error_line(&stderr).contains("/nonexistent/layout"),
        "{stderr}"
    );
}
