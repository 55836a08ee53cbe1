//! End-to-end (issue 9): `layerize build`'s apt input — `--apt` and the `--apt-*` flags, and an
//! `apt` entry of a build file — is checked before any image is opened: a malformed package,
//! source or key stops the build with one error line naming the flag (or the file's line and
//! column), and nothing is written. The flags are listed in `layerize build --help`.

use std::path::Path;

use support::layerize::{error_line, run_err, run_ok};
use support::scratch_dir;

#[test]
fn build_help_lists_the_apt_flags() {
    let output = run_ok(support::layerize!().args(["build", "--help"]));
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--apt <PKG>",
        "--apt-scripts <run|skip>",
        "--apt-recommends",
        "--apt-source <LINE>",
        "--apt-key <FILE>",
        "--apt-replace-sources",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// Runs `layerize build ARGS` onto a layout target in `dir`, which must fail before the base
/// (a layout that does not exist) is opened; returns the error line after checking that no
/// target was written.
fn refused(dir: &Path, args: &[&str]) -> String {
    let target = dir.join("out");
    let base = dir.join("no-such-base");
    let stderr = run_err(
        support::layerize!()
            .arg("build")
            .arg("--base")
            .arg(format!("oci:{}", base.display()))
            .arg("--target")
            .arg(format!("oci:{}:1", target.display()))
            .args(args)
            .current_dir(dir),
    );
    assert!(!target.exists(), "{args:?} wrote {}", target.display());
    let error = error_line(&stderr).to_owned();
    assert!(
        !error.contains("no-such-base"),
        "{args:?}: the base was opened: {error}"
    );
    error
}

#[test]
fn malformed_apt_flags_stop_the_build_before_the_base_is_opened() {
    let dir = scratch_dir();
    for (args, says) in [
        (
            &["--apt", "curl", "--apt", "Vim"][..],
            "error: --apt Vim: invalid apt package \"Vim\": a Debian package name is",
        ),
        (
            &[
                "--apt",
                "curl",
                "--apt-source",
                "deb http://deb.debian.org/debian bookworm",
            ],
            "error: --apt-source deb http://deb.debian.org/debian bookworm: invalid apt source",
        ),
        (
            &["--apt", "curl", "--apt-key", "missing.asc"],
            "error: --apt-key missing.asc: No such file or directory",
        ),
    ] {
        let error = refused(dir.path(), args);
        assert!(error.starts_with(says), "{args:?}: {error}");
    }

    let output = support::layerize!()
        .args(["build", "--apt", "curl", "--apt-scripts", "never"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a bad --apt-scripts is bad usage"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[possible values: run, skip]"), "{stderr}");
}

#[test]
fn a_malformed_apt_entry_stops_the_build_at_its_line() {
    let dir = scratch_dir();
    let file = dir.path().join("layerize.yaml");
    std::fs::write(
        &file,
        "apt: {scripts: skip}\nlayers:\n  - name: tools\n    apt: [curl, \"git=latest\"]\n",
    )
    .unwrap();
    let error = refused(dir.path(), &["-c", file.to_str().unwrap()]);
    assert!(
        error.contains("layerize.yaml:4:17: invalid apt package \"git=latest\": a version after '=' starts with a digit"),
        "{error}"
    );
}
