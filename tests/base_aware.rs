//! End-to-end: layers land on a real Debian bookworm base (mmdebstrap minbase, merged /usr)
//! without breaking it. `--file app:/bin/app` goes through the base's `bin -> usr/bin` link,
//! `/tmp` keeps its 1777 mode, `--delete /lib/...` whites out the file under `usr/lib`, and the
//! image still starts; podman (registry target) and umoci (layout target) see the same. A second
//! build on the same base reads no base blob: its index comes from the cache.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use support::images::{self, Format, Image};
use support::layerize::{read_report, run_ok};
use support::podman::PulledImage;
use support::registry::Registry;
use support::{scratch_dir, tools};

/// A base file no shell needs, deleted by the build, and a neighbour that must survive.
const DELETED: &str = "lib/x86_64-linux-gnu/libmemusage.so";
const NEIGHBOUR: &str = "lib/x86_64-linux-gnu/libc.so.6";
const APP_SCRIPT: &str = "#!/bin/sh\necho app ran on $(cat /etc/debian_version)\n";

/// The host files of the build and the flags that add them.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new(app_script: &str) -> Inputs {
        let dir = scratch_dir();
        let write = |name: &str, contents: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("app", app_script, 0o755);
        write("x", "x\n", 0o644);
        write("y", "y\n", 0o600);
        Inputs { dir }
    }

    fn args(&self) -> Vec<String> {
        let host = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--file".into(),
            format!("{}:/bin/app", host("app")),
            "--file".into(),
            format!("{}:/tmp/x", host("x")),
            "--file".into(),
            format!("{}:/usr/lib/y", host("y")),
            "--delete".into(),
            format!("/{DELETED}"),
        ]
    }
}

/// Runs `layerize build` of the inputs on `base` into `target`, caching the base index in
/// `cache`; returns the report.
fn build(base: &str, target: &str, inputs: &Inputs, cache: &Path) -> Value {
    let scratch = scratch_dir();
    let report = scratch.path().join("report.json");
    let mut command = support::layerize!();
    command
        .args(["build", "--base", base, "--target", target, "--cache-dir"])
        .arg(cache)
        .args(inputs.args())
        .arg("--entrypoint")
        .arg(r#"["/bin/app"]"#)
        .arg("--report")
        .arg(&report);
    run_ok(&mut command);
    read_report(&report)
}

/// What every consumer must see in the root filesystem `root` of the result.
fn assert_base_intact(root: &Path) {
    let bin = std::fs::symlink_metadata(root.join("bin")).unwrap();
    assert!(bin.file_type().is_symlink(), "/bin is no longer a symlink");
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert!(std::fs::symlink_metadata(root.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
    let app = root.join("usr/bin/app");
    assert_eq!(std::fs::read_to_string(&app).unwrap(), APP_SCRIPT);
    assert_eq!(
        std::fs::metadata(&app).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert!(root.join("usr/bin/sh").exists(), "/bin/sh is gone");
    let tmp = std::fs::symlink_metadata(root.join("tmp")).unwrap();
    assert!(tmp.is_dir());
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777, "/tmp lost 1777");
    assert_eq!(std::fs::read_to_string(root.join("tmp/x")).unwrap(), "x\n");
    let y = root.join("usr/lib/y");
    assert_eq!(std::fs::read_to_string(&y).unwrap(), "y\n");
    assert_eq!(
        std::fs::metadata(&y).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert!(
        std::fs::symlink_metadata(root.join("usr").join(DELETED)).is_err(),
        "/{DELETED} was not deleted"
    );
    assert!(
        root.join("usr").join(NEIGHBOUR).exists(),
        "a neighbour of the deleted file is gone"
    );
}

/// The layers of a report with status `base`.
fn base_layer_digests(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|layer| layer["status"] == "base")
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn files_land_through_the_debian_base_symlinks_in_a_registry() {
    let registry = Registry::open();
    images::push(
        Image::Debian,
        Format::Oci,
        &registry,
        "debian/base:bookworm",
    );
    let base = format!("{}/debian/base:bookworm", registry.host());
    let original = PulledImage::pull(&base, None);
    assert!(
        original.root().join("usr").join(DELETED).is_file(),
        "the fixture lacks /{DELETED}; pick another file to delete"
    );
    drop(original);

    let cache = scratch_dir();
    let target = format!("{}/debian/app:1", registry.host());
    let inputs = Inputs::new(APP_SCRIPT);
    let report = build(&base, &target, &inputs, cache.path());
    let index = &report["base_index"];
    assert!(index["layers_read"].as_u64().unwrap() >= 1, "{index}");
    assert!(index["paths"].as_u64().unwrap() > 1000, "{index}");

    let pulled = PulledImage::pull(&target, None);
    assert_base_intact(pulled.root());
    assert_eq!(pulled.chroot_run(&["/bin/sh", "-c", "true"]), "");
    let ran = pulled.chroot_run(&["/bin/app"]);
    assert!(ran.starts_with("app ran on 12."), "{ran}");
    drop(pulled);

    // A second build on the same base with another app: the index comes from the cache and no
    // base layer blob is read (the target repository gets them by mount or already has them).
    let log_before = registry.access_log().len();
    let second = Inputs::new("#!/bin/sh\necho second\n");
    let report = build(
        &base,
        &format!("{}/debian/app:2", registry.host()),
        &second,
        cache.path(),
    );
    let index = &report["base_index"];
    assert_eq!(index["layers_read"], 0, "{index}");
    assert_eq!(
        index["layers_from_cache"].as_u64().unwrap() as usize,
        base_layer_digests(&report).len()
    );
    let gets: Vec<String> = registry.access_log()[log_before..]
        .iter()
        .filter(|line| {
            line.contains("\"GET ")
                && base_layer_digests(&report)
                    .iter()
                    .any(|digest| line.contains(&format!("/blobs/{digest}")))
        })
        .cloned()
        .collect();
    assert!(gets.is_empty(), "base blobs were read: {gets:#?}");
}

#[test]
fn files_land_through_the_debian_base_symlinks_in_a_layout() {
    let base = images::layout(Image::Debian, Format::Docker);
    let out = scratch_dir();
    let layout = out.path().join("out");
    let cache = scratch_dir();
    let inputs = Inputs::new(APP_SCRIPT);
    build(
        &base.reference(),
        &format!("oci:{}:app", layout.display()),
        &inputs,
        cache.path(),
    );

    let bundle = out.path().join("bundle");
    tools::run(
        tools::command("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:app", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_base_intact(&rootfs);
    let ran = tools::run(tools::command("chroot").arg(&rootfs).arg("/bin/app"));
    assert!(ran.starts_with("app ran on 12."), "{ran}");

    let pulled = PulledImage::pull(&format!("oci:{}:app", layout.display()), None);
    assert_base_intact(pulled.root());
}
