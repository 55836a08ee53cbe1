//! End-to-end: `layerize init` writes the commented example build file, which loads cleanly once
//! the sources it names exist, and never replaces an existing file without `--force`.

use std::path::Path;

use layerize_buildfile::{BuildFile, EXAMPLE};
use support::layerize::{run_err, run_ok};
use support::scratch_dir;

/// The sources the example names, made in `dir`.
fn make_example_sources(dir: &Path) {
    for sub in ["target/release", "static", "bin", "yq", "keys"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for file in [
        "target/release/app",
        "static/index.html",
        "vendor.tar.gz",
        "bin/jq",
        "yq/yq",
        "keys/internal.asc",
    ] {
        std::fs::write(dir.join(file), file).unwrap();
    }
}

#[test]
fn init_writes_an_example_that_loads() {
    let dir = scratch_dir();
    let mut init = support::layerize!();
    init.arg("init").current_dir(dir.path());
    run_ok(&mut init);
    let written = dir.path().join("layerize.yaml");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), EXAMPLE);

    make_example_sources(dir.path());
    let file = BuildFile::load(&written).unwrap();
    let names: Vec<&str> = file.layers().iter().map(|entry| entry.name()).collect();
    assert_eq!(
        names,
        [
            "base-tools",
            "net-tools",
            "app",
            "static",
            "vendor",
            "no-motd",
            "clean-cache",
            "tools",
            "app-config"
        ]
    );
    assert!(!file.config_edits().is_empty());
}

#[test]
fn init_refuses_to_overwrite_unless_forced() {
    let dir = scratch_dir();
    let path = dir.path().join("custom.yaml");
    std::fs::write(&path, "mine\n").unwrap();
    let path_arg = path.to_str().unwrap();

    let stderr = run_err(support::layerize!().args(["init", path_arg]));
    assert!(
        stderr.contains(&format!(
            "{path_arg} exists already; pass --force to replace it"
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n");

    run_ok(support::layerize!().args(["init", "--force", path_arg]));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), EXAMPLE);

    let missing_dir = dir.path().join("no/such/dir/layerize.yaml");
    let stderr = run_err(support::layerize!().args(["init", missing_dir.to_str().unwrap()]));
    assert!(stderr.contains("creating"), "{stderr}");
}
