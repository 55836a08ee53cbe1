//! End-to-end (issue 9): apt packages as per-package layers on the real Debian bookworm minbase
//! (mmdebstrap, its sources pointing at deb.debian.org), pushed to a loopback registry and
//! checked in a chroot of what podman pulled and mounted.
//!
//! - `apt: [curl, git, vim, ca-certificates]`: the tools run, vim through the link its postinst
//!   made with update-alternatives, the CA bundle its postinst made exists, dpkg and apt see a
//!   consistent database (`dpkg -s`, `dpkg --audit`, `apt-get check`, `apt-get install -s wget`
//!   after an `apt-get update`), `/bin` is still the base's symlink; the report names each
//!   package's layer and what pulled it in.
//! - Incremental on the same tag: without git, every package layer is reused, git's and what only
//!   git pulled in are dropped, and only the dpkg-database and dpkg-configure layers are built;
//!   with wget added, only wget's new packages are built besides those two.
//! - The same packages from the same index give the same digests with a cold and a warm cache.
//! - `--apt-scripts skip` leaves the configure layer out and says whose scripts did not run;
//!   a `group:` entry is one layer, and `--apt` adds packages from the command line.
//! - On a slim base (debian-slim's dpkg path filters), a package's layer leaves out what dpkg
//!   there would not unpack, and dpkg still lists it; the same package on the full base is
//!   another layer.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::apt_builds::{
    apt, apt_group_layer, apt_layer, chroot_ok, chroot_sh, dropped_names, layers_of, package,
    package_names, packages, string_set,
};
use support::normal_user::{as_user, user_namespaces_for, Workspace, NOBODY};
use support::podman::PulledImage;
use support::scratch_dir;
use support::script_builds::{
    build_with, cache_args, files_layer, layer, layer_digests, own_layer_names, own_layers, step,
    DebianSite,
};

const DATABASE: &str = "dpkg-database";
const CONFIGURE: &str = "dpkg-configure";

/// `layerize build -c FILE ARGS... --report R`, which must succeed; returns the report.
fn build(file: &Path, args: &[&str]) -> Value {
    build_with(support::layerize!(), file, args)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
}

/// What each package of `apt.packages` resolved to: name, version, architecture, sha256, layer.
fn resolved(report: &Value) -> Vec<[String; 5]> {
    packages(report)
        .iter()
        .map(|package| {
            ["name", "version", "architecture", "sha256", "layer"]
                .map(|field| text(&package[field]).to_owned())
        })
        .collect()
}

/// The own layers whose status is `built`, by name.
fn built_layer_names(report: &Value) -> BTreeSet<String> {
    own_layers(report)
        .into_iter()
        .filter(|layer| layer["status"] == "built")
        .map(|layer| text(&layer["name"]).to_owned())
        .collect()
}

/// What every report of a build with apt packages and scripts says: each package has a
/// version, an architecture, a sha256 and a layer of the image; the requested ones are
/// `requested`; the package layers come first, then dpkg-database, then dpkg-configure (a
/// script step with a layer).
fn assert_apt_report(report: &Value, requested: &[&str]) {
    let names = own_layer_names(report);
    let package_layers: BTreeSet<String> = layers_of(report, &package_names(report));
    for package in packages(report) {
        let name = text(&package["name"]);
        assert!(!text(&package["version"]).is_empty(), "{package}");
        assert!(!text(&package["architecture"]).is_empty(), "{package}");
        let sha256 = text(&package["sha256"]);
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "{package}"
        );
        assert!(
            names.iter().any(|layer| *layer == package["layer"]),
            "package {name} is in layer {}, which the image does not have: {names:?}",
            package["layer"]
        );
        assert_eq!(
            package["requested"],
            requested.contains(&name),
            "requested in {package}"
        );
        assert!(
            ["built", "reused"].contains(&text(&package["status"])),
            "{package}"
        );
        assert!(package["pulled_by"].is_array(), "{package}");
    }
    for name in requested {
        package(report, name);
    }
    let split = names.len().saturating_sub(2);
    assert_eq!(
        names[split..],
        [DATABASE, CONFIGURE],
        "the last layers: {names:?}"
    );
    let head: BTreeSet<String> = names[..split].iter().cloned().collect();
    assert_eq!(head, package_layers, "the layers before {DATABASE}");
    assert_eq!(step(report, CONFIGURE)["layer"], true, "{report}");
    assert_eq!(
        layer(report, CONFIGURE)["key"],
        step(report, CONFIGURE)["key"]
    );
    assert_eq!(apt(report)["scripts"], "run");
}

/// In a chroot of the pulled image: curl, git (when `with_git`) and vim run, vim through the
/// alternatives link, the CA bundle is there, dpkg and apt find the database consistent, and
/// `/bin` is the base's symlink.
fn assert_tools_work(pulled: &PulledImage, with_git: bool) {
    let root = pulled.root();
    assert!(chroot_ok(root, "curl --version").starts_with("curl "));
    if with_git {
        assert!(chroot_ok(root, "git --version").starts_with("git version "));
    }
    assert!(chroot_ok(root, "vim --version").contains("VIM - Vi IMproved"));
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/vim")).unwrap(),
        Path::new("/etc/alternatives/vim"),
        "/usr/bin/vim is not update-alternatives' link"
    );
    assert_eq!(
        chroot_ok(root, "readlink -f /usr/bin/vim").trim(),
        "/usr/bin/vim.basic"
    );
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the CA bundle ca-certificates' postinst makes");
    assert!(bundle.contains("-----BEGIN CERTIFICATE-----"), "{bundle}");
    assert!(
        chroot_ok(root, "dpkg -s curl").contains("Status: install ok installed"),
        "dpkg -s curl"
    );
    let audit = chroot_sh(root, "dpkg --audit");
    assert!(
        audit.status.success() && audit.stdout.is_empty() && audit.stderr.is_empty(),
        "dpkg --audit: {}",
        support::tools::describe_output(&audit)
    );
    // The mount is read-only: apt warns that it cannot lock, and must find nothing broken.
    let check = chroot_sh(root, "apt-get check");
    assert!(
        check.status.success() && !String::from_utf8_lossy(&check.stderr).contains("E:"),
        "apt-get check: {}",
        support::tools::describe_output(&check)
    );
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
}

/// In a writable container of the pulled image: `apt-get update` and `apt-get install -s wget`
/// plan without errors (the base has no package lists, so apt needs the update first).
fn assert_apt_plans_wget(pulled: &PulledImage) {
    let root = pulled.writable_root();
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).expect("copy resolv.conf");
    let plan = chroot_sh(&root, "apt-get update -q && apt-get install -s wget");
    let stdout = String::from_utf8_lossy(&plan.stdout);
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(
        plan.status.success() && stdout.contains("Inst wget") && !stderr.contains("E:"),
        "apt-get install -s wget: {}",
        support::tools::describe_output(&plan)
    );
}

/// The GETs since `mark` of the blobs of the layers `report` gives `status` (`base`,
/// `reused`), sorted.
fn blob_reads(site: &DebianSite, mark: usize, report: &Value, status: &str) -> Vec<String> {
    let blobs: Vec<String> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|layer| layer["status"] == status)
        .map(|layer| format!("/blobs/{}", text(&layer["digest"])))
        .collect();
    assert!(!blobs.is_empty(), "no {status} layers");
    let mut reads: Vec<String> = site
        .requests_since(mark)
        .into_iter()
        .filter(|request| {
            request.method == "GET" && blobs.iter().any(|blob| request.target.ends_with(blob))
        })
        .map(|request| request.target)
        .collect();
    reads.sort();
    reads
}

#[test]
fn apt_packages_build_on_bookworm_and_rebuild_only_the_database() {
    let site = DebianSite::new();
    let project = scratch_dir();
    let cache = scratch_dir();
    let target = site.reference("tools:1");
    let write = |packages: &[&str]| {
        site.write_build_file(project.path(), &target, &[apt_layer("tools", packages)])
    };

    // The first build: every package resolved, downloaded and built, the scripts run.
    let requested = ["curl", "git", "vim", "ca-certificates"];
    let mark = site.log_mark();
    let first = build(&write(&requested), &cache_args(&cache));
    assert_apt_report(&first, &requested);
    // Each base blob is fetched once on a cold cache: the read that indexes it keeps its tar,
    // which the apt files are read from and the configure step's root is made of.
    let base_reads = blob_reads(&site, mark, &first, "base");
    let mut distinct = base_reads.clone();
    distinct.dedup();
    assert!(!base_reads.is_empty());
    assert_eq!(base_reads, distinct, "base blobs read more than once");
    for layer in own_layers(&first) {
        assert_eq!(layer["status"], "built", "{layer}");
    }
    for package in packages(&first) {
        assert_eq!(package["status"], "built", "{package}");
    }
    let curl = package(&first, "curl");
    assert_eq!(curl["layer"], "curl", "{curl}");
    let libcurl = package(&first, "libcurl4");
    assert_eq!(libcurl["requested"], false, "{libcurl}");
    assert!(
        string_set(&libcurl["pulled_by"]).contains("curl"),
        "{libcurl}"
    );
    // libcurl4 is Multi-Arch: same, so its layer is named with its architecture.
    assert_eq!(
        libcurl["layer"],
        format!("libcurl4:{}", text(&libcurl["architecture"])),
        "{libcurl}"
    );
    let with_scripts = string_set(&apt(&first)["with_scripts"]);
    assert!(
        with_scripts.is_superset(&set(&["ca-certificates", "vim"])),
        "with_scripts: {with_scripts:?}"
    );
    assert_eq!(step(&first, CONFIGURE)["status"], "built");
    {
        let pulled = PulledImage::pull(&target, None);
        assert_tools_work(&pulled, true);
        assert_apt_plans_wget(&pulled);
    }

    // git removed: what only git pulled in goes with it, every other package layer is reused,
    // and only the database and the configure layer are made again.
    let only_git: BTreeSet<String> = packages(&first)
        .iter()
        .filter(|package| {
            package["name"] == "git"
                || (package["requested"] == false
                    && string_set(&package["pulled_by"]) == set(&["git"]))
        })
        .map(|package| text(&package["name"]).to_owned())
        .collect();
    assert!(
        only_git.len() >= 2 && only_git.contains("git-man"),
        "git pulls in git-man, and more: {only_git:?}"
    );
    let without_git = ["curl", "vim", "ca-certificates"];
    let mark = site.log_mark();
    let second = build(&write(&without_git), &cache_args(&cache));
    assert_apt_report(&second, &without_git);
    // A warm rebuild reads no base blob: the base's index and apt files are in the cache
    // directory, and the configure step's root is made from the tars kept there; nor the
    // reused package layers' blobs, which the first build kept there for that step.
    for status in ["base", "reused"] {
        assert_eq!(
            blob_reads(&site, mark, &second, status),
            Vec::<String>::new(),
            "{status} blobs read again"
        );
    }
    let kept: BTreeSet<String> = package_names(&first)
        .difference(&only_git)
        .cloned()
        .collect();
    assert_eq!(package_names(&second), kept);
    for package in packages(&second) {
        assert_eq!(package["status"], "reused", "{package}");
    }
    assert_eq!(built_layer_names(&second), set(&[DATABASE, CONFIGURE]));
    for name in without_git {
        assert_eq!(
            layer(&second, name)["digest"],
            layer(&first, name)["digest"],
            "{name}"
        );
        assert_eq!(layer(&second, name)["key"], layer(&first, name)["key"]);
    }
    let mut gone = layers_of(&first, &only_git);
    gone.extend(set(&[DATABASE, CONFIGURE]));
    assert_eq!(dropped_names(&second), gone, "{}", second["dropped"]);
    assert_ne!(
        layer(&second, DATABASE)["key"],
        layer(&first, DATABASE)["key"]
    );
    assert_ne!(
        layer(&second, CONFIGURE)["key"],
        layer(&first, CONFIGURE)["key"]
    );

    // wget added: its packages that no earlier build had are built, the rest reused.
    let with_wget = ["curl", "vim", "ca-certificates", "wget"];
    let third = build(&write(&with_wget), &cache_args(&cache));
    assert_apt_report(&third, &with_wget);
    let before: BTreeSet<String> = package_names(&first)
        .union(&package_names(&second))
        .cloned()
        .collect();
    let new: BTreeSet<String> = package_names(&third).difference(&before).cloned().collect();
    assert!(new.contains("wget"), "{new:?}");
    for package in packages(&third) {
        let expected = if new.contains(text(&package["name"])) {
            "built"
        } else {
            "reused"
        };
        assert_eq!(package["status"], expected, "{package}");
    }
    let mut built = layers_of(&third, &new);
    built.extend(set(&[DATABASE, CONFIGURE]));
    assert_eq!(built_layer_names(&third), built);
    {
        let pulled = PulledImage::pull(&target, None);
        assert_tools_work(&pulled, false);
        let root = pulled.root();
        assert!(chroot_ok(root, "wget --version").starts_with("GNU Wget"));
        assert!(
            !chroot_sh(root, "command -v git").status.success(),
            "git is still on PATH"
        );
        let git = chroot_sh(root, "dpkg -s git");
        assert!(
            !git.status.success() && String::from_utf8_lossy(&git.stderr).contains("not installed"),
            "dpkg -s git: {}",
            support::tools::describe_output(&git)
        );
    }
}

/// The same packages from the same index: a cold build (empty cache dir), a warm one (the same
/// cache dir, another repository), a second cold one in a written root, and a cold one as a
/// normal user (the userns sandbox: a written root where no `chown` works, the image's owners
/// kept aside) give the same image.
#[test]
fn a_cold_and_a_warm_cache_give_the_same_digests() {
    let site = DebianSite::new();
    let project = scratch_dir();
    let requested = ["curl", "ca-certificates"];
    let file = site.write_build_file(
        project.path(),
        &site.reference("same:cold"),
        &[apt_layer("tools", &requested)],
    );
    let (cache, other_cache) = (scratch_dir(), scratch_dir());
    let cold = build(&file, &cache_args(&cache));
    assert_apt_report(&cold, &requested);

    let warm_target = site.reference("same/warm:1");
    let mut args = cache_args(&cache);
    args.extend(["--target", &warm_target]);
    let warm = build(&file, &args);
    assert_eq!(layer_digests(&warm), layer_digests(&cold));
    assert_eq!(warm["digest"], cold["digest"]);
    // Not asserted: reuse. The local cache knows the layers, but a new repository does not
    // hold their blobs, so layerize makes them again (from the cached .debs).
    // The cold build again, its configure step in a root written for it instead of an overlay
    // of layer directories: the same configure layer.
    let cold_target = site.reference("same/cold:1");
    let mut args = cache_args(&other_cache);
    args.extend(["--target", &cold_target, "--step-root", "written"]);
    let cold_again = build(&file, &args);
    for package in packages(&cold_again) {
        assert_eq!(package["status"], "built", "{package}");
    }
    let roots = |report: &Value| -> Vec<String> {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["root"].as_str().unwrap_or("none").to_owned())
            .collect()
    };
    // Root on a VM: the namespaces sandbox, so overlays where not asked otherwise.
    assert_eq!(roots(&cold), ["overlay"]);
    assert_eq!(roots(&warm), ["overlay"]);
    assert_eq!(roots(&cold_again), ["written"]);

    for report in [&warm, &cold_again] {
        assert_eq!(resolved(report), resolved(&cold), "the same packages");
        assert_eq!(layer_digests(report), layer_digests(&cold));
        assert_eq!(report["digest"], cold["digest"]);
    }

    if user_namespaces_for("the normal user's build") {
        let workspace = Workspace::new(NOBODY);
        let file = site.write_build_file(
            workspace.path(),
            &site.reference("same/user:1"),
            &[apt_layer("tools", &requested)],
        );
        let command = workspace.build_command(support::layerize!(), &file, &[]);
        let output = as_user(&command, NOBODY).output().expect("start layerize");
        assert!(
            output.status.success(),
            "the build as uid {NOBODY} failed: {}",
            support::tools::describe_output(&output)
        );
        let user = support::layerize::read_report(&workspace.report());
        let configure = step(&user, CONFIGURE);
        assert_eq!(configure["mode"], "userns", "{configure}");
        assert_eq!(configure["root"], "written", "{configure}");
        assert_eq!(resolved(&user), resolved(&cold), "the same packages");
        assert_eq!(layer_digests(&user), layer_digests(&cold));
        assert_eq!(user["digest"], cold["digest"]);
    }
}

/// `--apt-scripts skip`: no configure step or layer, the report lists ca-certificates among the
/// packages whose scripts did not run, dpkg sees it installed, and its postinst's CA bundle is
/// absent. Also: a `group:` entry is one layer for curl and what only curl pulls in, named by
/// the entry, and `--apt` adds a package from the command line.
#[test]
fn skipped_scripts_leave_no_configure_layer_and_a_group_is_one_layer() {
    let site = DebianSite::new();
    let project = scratch_dir();
    let cache = scratch_dir();
    let target = site.reference("skip:1");
    let file = site.write_build_file(
        project.path(),
        &target,
        &[apt_group_layer("web", &["curl"])],
    );
    let mut args = cache_args(&cache);
    args.extend(["--apt", "ca-certificates", "--apt-scripts", "skip"]);
    let report = build(&file, &args);

    let names = own_layer_names(&report);
    assert!(!names.iter().any(|name| name == CONFIGURE), "{names:?}");
    assert_eq!(
        names.last().map(String::as_str),
        Some(DATABASE),
        "{names:?}"
    );
    assert!(
        report["steps"]
            .as_array()
            .is_none_or(|steps| steps.iter().all(|step| step["name"] != CONFIGURE)),
        "{}",
        report["steps"]
    );
    assert_eq!(apt(&report)["scripts"], "skip");
    let skipped = string_set(&apt(&report)["scripts_skipped"]);
    assert!(skipped.contains("ca-certificates"), "{skipped:?}");

    for name in ["curl", "libcurl4"] {
        assert_eq!(package(&report, name)["layer"], "web", "{name}");
    }
    let ca = package(&report, "ca-certificates");
    assert_eq!(ca["requested"], true, "{ca}");
    assert_ne!(ca["layer"], "web", "{ca}");
    assert_eq!(layer(&report, "web")["status"], "built");

    let pulled = PulledImage::pull(&target, None);
    let root = pulled.root();
    for name in ["ca-certificates", "curl"] {
        assert!(
            chroot_ok(root, &format!("dpkg -s {name}")).contains("Status: install ok installed"),
            "dpkg -s {name}"
        );
    }
    assert!(chroot_ok(root, "curl --version").starts_with("curl "));
    assert!(
        std::fs::symlink_metadata(root.join("etc/ssl/certs/ca-certificates.crt")).is_err(),
        "the CA bundle is there though ca-certificates' postinst did not run"
    );
    assert!(
        root.join("usr/share/ca-certificates/mozilla").is_dir(),
        "ca-certificates' files are missing"
    );
}

/// The filters of Debian's slim images (debuerreotype): documentation but its copyright files,
/// man pages and locales are not unpacked.
const SLIM_FILTERS: &str = "# This is the \"slim\" variant of the Debian base image.
path-exclude /usr/share/doc/*
# we need to keep copyright files for legal reasons
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
";

/// On a slim base, curl's layer has what `dpkg --unpack` there writes: its copyright file but
/// not its changelogs or man page, which `dpkg -L` still lists; `dpkg --audit` is clean. The
/// same curl on the full base, from the same cache dir, is not that layer reused.
#[test]
fn on_a_slim_base_package_layers_leave_out_what_its_dpkg_excludes() {
    let site = DebianSite::new();
    let slim_dir = scratch_dir();
    std::fs::write(slim_dir.path().join("docker"), SLIM_FILTERS).unwrap();
    let slim_base = site.reference("base/debian:bookworm-slim");
    let slim_file = site.write_build_file(
        slim_dir.path(),
        &slim_base,
        &[files_layer(
            "slim",
            &["{src: docker, dest: /etc/dpkg/dpkg.cfg.d/docker, mode: \"0644\"}"],
        )],
    );
    build(&slim_file, &[]);

    let project = scratch_dir();
    let cache = scratch_dir();
    let target = site.reference("slim-tools:1");
    let yaml = format!(
        "image: {{base: \"{slim_base}\", target: \"{target}\"}}\nlayers:\n{}",
        apt_layer("tools", &["curl"])
    );
    let file = project.path().join("layerize.yaml");
    std::fs::write(&file, yaml).unwrap();
    let slim = build(&file, &cache_args(&cache));
    let curl_layer = text(&package(&slim, "curl")["layer"]).to_owned();
    {
        let pulled = PulledImage::pull(&target, None);
        let root = pulled.root();
        assert!(chroot_ok(root, "curl --version").starts_with("curl "));
        assert!(root.join("usr/share/doc/curl/copyright").is_file());
        for gone in [
            "usr/share/doc/curl/changelog.Debian.gz",
            "usr/share/man/man1/curl.1.gz",
        ] {
            assert!(
                std::fs::symlink_metadata(root.join(gone)).is_err(),
                "/{gone} is in the slim image"
            );
        }
        // Not filtered: unpacked as on any base.
        assert!(root
            .join("usr/share/zsh/vendor-completions/_curl")
            .is_file());
        let listed = chroot_ok(root, "dpkg -L curl");
        assert!(
            listed
                .lines()
                .any(|line| line == "/usr/share/man/man1/curl.1.gz"),
            "dpkg -L curl: {listed}"
        );
        let audit = chroot_sh(root, "dpkg --audit");
        assert!(
            audit.status.success() && audit.stdout.is_empty(),
            "dpkg --audit: {}",
            support::tools::describe_output(&audit)
        );
    }

    let full = site.write_build_file(
        project.path(),
        &site.reference("full-tools:1"),
        &[apt_layer("tools", &["curl"])],
    );
    let full = build(&full, &cache_args(&cache));
    let curl = package(&full, "curl");
    assert_eq!(
        curl["sha256"],
        package(&slim, "curl")["sha256"],
        "the same .deb"
    );
    let full_layer = layer(&full, text(&curl["layer"]));
    assert_eq!(full_layer["status"], "built", "{full_layer}");
    assert_ne!(full_layer["digest"], layer(&slim, &curl_layer)["digest"]);
    let pulled = PulledImage::pull(&site.reference("full-tools:1"), None);
    assert!(pulled.root().join("usr/share/man/man1/curl.1.gz").is_file());
}
