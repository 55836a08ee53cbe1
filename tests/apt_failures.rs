//! End-to-end (issue 9): apt layers from a signed local repository (made by the test with
//! dpkg-deb, apt-ftparchive and a throwaway gpg key, served on loopback) in place of the base's
//! sources, on the Debian bookworm minbase in a loopback registry.
//!
//! - Refusals: an unknown package, a version the archive does not have, a package that conflicts
//!   with one of the base, a `.deb` whose SHA256 is not the index's, a Release whose signature
//!   does not verify, a Release past its `Valid-Until`, a `data.tar` with `../` paths. Each fails
//!   the build with an error that says what is wrong, and the registry saw no write: no blob,
//!   no mount, no manifest, no tag. Each build asks for a good package too, so that there is
//!   something that could have been pushed.
//! - An upgrade: a package that needs a newer version of a base package (`hostname`) upgrades
//!   it; dpkg sees the new version, and a file only the old version had is gone from the image
//!   (a whiteout under `/usr`, since the base's `/bin` is a symlink that stays one).

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::apt_builds::{apt_layer, apt_section, chroot_ok, package, write_build_file_with};
use support::apt_repo::{AptRepo, AptRepoBuilder, DebSpec};
use support::layerize::{run_err, run_with_report};
use support::podman::PulledImage;
use support::script_builds::DebianSite;
use support::{scratch_dir, skopeo};

/// A package any build may ask for besides the bad one.
fn good() -> DebSpec {
    DebSpec::new("layerize-good", "1.0").file(
        "usr/share/layerize-good/readme",
        b"a good package\n",
        0o644,
    )
}

fn with_good() -> AptRepoBuilder {
    AptRepo::builder().package(good())
}

/// The build file on `site` with `packages` from `repo` only (`replace_sources: true`), its key
/// given in the build file.
fn write_file(
    site: &DebianSite,
    dir: &Path,
    target: &str,
    repo: &AptRepo,
    packages: &[&str],
) -> std::path::PathBuf {
    // Sources of a build, keys included, must be inside the build file's directory.
    let key = dir.join("archive-key.gpg");
    std::fs::copy(repo.public_key_path(), &key).expect("copy the repository's key");
    let source = repo
        .sources_line(key.to_str().expect("UTF-8 key path"))
        .trim()
        .to_owned();
    let section = apt_section(&[source], &[key], &["replace_sources: true"]);
    write_build_file_with(site, dir, target, &section, &[apt_layer("pkgs", packages)])
}

/// Builds `packages` from `repo`, which must fail with an error holding every one of
/// `keywords` (case-insensitive); the registry must have seen no write and the target no tag.
fn assert_refused(repo: AptRepo, packages: &[&str], keywords: &[&str]) {
    let site = DebianSite::new();
    let project = scratch_dir();
    let cache = scratch_dir();
    let target = site.reference("refused:1");
    let file = write_file(&site, project.path(), &target, &repo, packages);
    let mark = site.log_mark();
    let mut command = support::layerize!();
    command
        .arg("build")
        .arg("-c")
        .arg(&file)
        .arg("--cache-dir")
        .arg(cache.path());
    let stderr = run_err(&mut command);
    let error = stderr.to_lowercase();
    for keyword in keywords {
        assert!(
            error.contains(&keyword.to_lowercase()),
            "the error does not say {keyword:?}:\n{stderr}"
        );
    }
    let writes: Vec<_> = site
        .requests_since(mark)
        .into_iter()
        .filter(|request| request.is_write())
        .collect();
    assert!(
        writes.is_empty(),
        "a refused build wrote to the registry: {writes:#?}\n{stderr}"
    );
    assert_eq!(skopeo::digest_if_exists(&target, None), None, "{stderr}");
}

#[test]
fn an_unknown_package_is_refused() {
    assert_refused(
        with_good().build(),
        &["layerize-good", "no-such-package"],
        &["no package", "no-such-package"],
    );
}

#[test]
fn a_version_the_archive_does_not_have_is_refused() {
    assert_refused(
        with_good().build(),
        &["layerize-good=9.9"],
        &["layerize-good=9.9", "no such version", "1.0"],
    );
}

/// `mawk` is in the minbase (Priority: required); layerize does not remove base packages.
#[test]
fn a_package_that_conflicts_with_the_base_is_refused() {
    let conflicting = DebSpec::new("layerize-no-mawk", "1.0")
        .control("Conflicts", "mawk")
        .file("usr/share/layerize-no-mawk/readme", b"no mawk\n", 0o644);
    assert_refused(
        with_good().package(conflicting).build(),
        &["layerize-good", "layerize-no-mawk"],
        &["layerize-no-mawk", "conflicts", "mawk", "base"],
    );
}

#[test]
fn a_deb_whose_sha256_is_not_the_index_s_is_refused() {
    let tampered = DebSpec::new("layerize-tampered", "1.0").file(
        "usr/share/layerize-tampered/readme",
        b"altered after indexing\n",
        0o644,
    );
    assert_refused(
        with_good()
            .package(tampered)
            .tamper_deb("layerize-tampered")
            .build(),
        &["layerize-good", "layerize-tampered"],
        &["layerize-tampered", "sha256", "does not match"],
    );
}

#[test]
fn a_release_with_a_bad_signature_is_refused() {
    assert_refused(
        with_good().corrupt_signature().build(),
        &["layerize-good"],
        &["signature", "not valid"],
    );
}

#[test]
fn an_expired_release_is_refused() {
    let yesterday = SystemTime::now() - Duration::from_secs(24 * 60 * 60);
    assert_refused(
        with_good().valid_until(yesterday).build(),
        &["layerize-good"],
        &["expired", "valid-until"],
    );
}

#[test]
fn a_data_tar_with_dotdot_paths_is_refused() {
    let escape = DebSpec::new("layerize-escape", "1.0");
    let entries = vec![
        (
            "./usr/share/layerize-escape/readme".to_owned(),
            b"inside\n".to_vec(),
        ),
        (
            "./../../etc/layerize-escaped".to_owned(),
            b"outside\n".to_vec(),
        ),
    ];
    assert_refused(
        with_good().raw_deb(escape, entries).build(),
        &["layerize-good", "layerize-escape"],
        &["layerize-escape", "refused", ".."],
    );
}

/// The base's `hostname` (3.23+nmu1, with `/bin/hostname`, `/bin/dnsdomainname` and man pages)
/// upgraded to 3.99, which ships only `/bin/hostname` and its copyright, because
/// `layerize-needs-hostname` depends on `hostname (>= 3.99)`.
#[test]
fn a_package_that_needs_a_newer_base_package_upgrades_it() {
    let hostname = DebSpec::new("hostname", "3.99")
        .arch("amd64")
        .file(
            "bin/hostname",
            b"#!/bin/sh\necho layerized-hostname\n",
            0o755,
        )
        .file(
            "usr/share/doc/hostname/copyright",
            b"a test build of hostname\n",
            0o644,
        );
    let needs = DebSpec::new("layerize-needs-hostname", "1.0")
        .depends("hostname (>= 3.99)")
        .file(
            "usr/share/layerize-needs-hostname/readme",
            b"needs a newer hostname\n",
            0o644,
        );
    let repo = AptRepo::builder().package(hostname).package(needs).build();
    let site = DebianSite::new();
    let project = scratch_dir();
    let cache = scratch_dir();
    let target = site.reference("upgrade:1");
    let file = write_file(
        &site,
        project.path(),
        &target,
        &repo,
        &["layerize-needs-hostname"],
    );
    let mut command = support::layerize!();
    command
        .arg("build")
        .arg("-c")
        .arg(&file)
        .arg("--cache-dir")
        .arg(cache.path());
    let report: Value = run_with_report(&mut command).report;

    let upgraded = package(&report, "hostname");
    assert_eq!(upgraded["version"], "3.99", "{upgraded}");
    assert_eq!(upgraded["upgrades"], "3.23+nmu1", "{upgraded}");
    assert_eq!(upgraded["requested"], false, "{upgraded}");
    let pulled_by = upgraded["pulled_by"].as_array().expect("pulled_by");
    assert!(
        pulled_by
            .iter()
            .any(|name| name == "layerize-needs-hostname"),
        "{upgraded}"
    );

    let pulled = PulledImage::pull(&target, None);
    let root = pulled.root();
    let status = chroot_ok(root, "dpkg -s hostname");
    assert!(
        status.contains("Version: 3.99") && status.contains("Status: install ok installed"),
        "{status}"
    );
    assert_eq!(chroot_ok(root, "hostname"), "layerized-hostname\n");
    for old_only in [
        "usr/bin/dnsdomainname",
        "usr/share/man/man1/hostname.1.gz",
        "usr/share/doc/hostname/changelog.gz",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(old_only)).is_err(),
            "/{old_only}, which only the old hostname had, is still there"
        );
    }
    assert!(root
        .join("usr/share/layerize-needs-hostname/readme")
        .is_file());
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let list = std::fs::read_to_string(root.join("var/lib/dpkg/info/hostname.list"))
        .expect("hostname's .list");
    assert!(list.lines().any(|line| line == "/bin/hostname"), "{list}");
    assert!(!list.contains("dnsdomainname"), "{list}");
}
