//! The solver on the real Debian bookworm main index and the dpkg status of a bookworm minbase
//! (made by mmdebstrap): `curl git vim ca-certificates` resolves to a set whose dependencies
//! all hold, that leaves the base alone, and that is exactly what `apt-get install -s` plans on
//! the same index and the same status.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use layerize_apt::control;
use layerize_apt::package::{ArchivePackage, DebLocation, MultiArch, Origin};
use layerize_apt::relation::{parse_relations, Alternatives};
use layerize_apt::resolve::{installed_from_status, resolve, Installed, Options, Request};
use layerize_apt::version::Version;
use layerize_test_support::{images, tools};

const MIRROR: &str = "http://deb.debian.org/debian";
const REQUESTS: [&str; 4] = ["curl", "git", "vim", "ca-certificates"];

fn download_packages_index() -> Vec<u8> {
    let url = format!("{MIRROR}/dists/bookworm/main/binary-amd64/Packages.xz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let compressed = runtime.block_on(async {
        let response = reqwest::get(&url)
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        response.bytes().await.unwrap()
    });
    let mut text = Vec::new();
    liblzma::read::XzDecoder::new(&compressed[..])
        .read_to_end(&mut text)
        .unwrap();
    text
}

fn archive_packages(index: &str) -> Vec<ArchivePackage> {
    control::parse(index)
        .unwrap()
        .into_iter()
        .map(|paragraph| {
            let field = |name: &str| paragraph.get(name).unwrap().to_owned();
            ArchivePackage {
                name: field("Package"),
                version: field("Version"),
                architecture: field("Architecture"),
                multi_arch: MultiArch::of(&paragraph),
                deb: DebLocation {
                    url: format!("{MIRROR}/{}", field("Filename")),
                    size: field("Size").parse().unwrap(),
                    sha256: field("SHA256"),
                },
                origin: Origin {
                    uri: MIRROR.into(),
                    suite: "bookworm".into(),
                    component: "main".into(),
                },
                paragraph,
            }
        })
        .collect()
}

/// `name` -> version of everything present after the install: the base, then the chosen.
fn after_install<'a>(
    installed: &'a [Installed],
    chosen: &[&'a ArchivePackage],
) -> BTreeMap<&'a str, (&'a str, &'a control::Paragraph)> {
    let mut present = BTreeMap::new();
    for package in installed {
        present.insert(
            package.name.as_str(),
            (package.version.as_str(), &package.paragraph),
        );
    }
    for package in chosen {
        present.insert(
            package.name.as_str(),
            (package.version.as_str(), &package.paragraph),
        );
    }
    present
}

/// Whether the group holds among `present`, by a real package or a Provides.
fn holds(group: &Alternatives, present: &BTreeMap<&str, (&str, &control::Paragraph)>) -> bool {
    group.iter().any(|relation| {
        let real = present
            .get(relation.name.as_str())
            .is_some_and(|(version, _)| relation.admits(&version.parse::<Version>().unwrap()));
        let provided = present.values().any(|(_, paragraph)| {
            let provides = parse_relations(paragraph.get("Provides").unwrap_or_default()).unwrap();
            provides.iter().flatten().any(|provide| {
                provide.name == relation.name
                    && match (&relation.constraint, &provide.constraint) {
                        (None, _) => true,
                        (Some((op, bound)), Some((_, version))) => op.admits(version, bound),
                        (Some(_), None) => false,
                    }
            })
        });
        real || provided
    })
}

/// What `apt-get install -s` plans on the same index and status: `name` -> version.
fn apt_get_plan(index: &[u8], status: &Path) -> BTreeMap<String, String> {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("Packages"), index).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(index))
    };
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: test\nLabel: test\nSuite: bookworm\nCodename: bookworm\nArchitectures: amd64\nSHA256:\n {digest} {} Packages\n",
            index.len()
        ),
    )
    .unwrap();
    for dir in [
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "state/lists/partial",
        "cache/archives/partial",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::fs::write(
        root.path().join("etc/apt/sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .unwrap();
    let options = [
        format!("Dir::Etc={}", root.path().join("etc/apt").display()),
        format!("Dir::State={}", root.path().join("state").display()),
        format!("Dir::Cache={}", root.path().join("cache").display()),
        format!("Dir::State::status={}", status.display()),
        "APT::Architecture=amd64".into(),
        "APT::Architectures=amd64".into(),
        "APT::Install-Recommends=false".into(),
        "Debug::NoLocking=true".into(),
    ];
    let apt_get = |args: &[&str]| {
        let mut command = tools::command("apt-get");
        command.env("APT_CONFIG", root.path().join("etc/apt/apt.conf"));
        for option in &options {
            command.args(["-o", option]);
        }
        command.args(args);
        tools::run(&mut command)
    };
    std::fs::write(root.path().join("etc/apt/apt.conf"), "").unwrap();
    apt_get(&["update", "-q"]);
    let mut install = vec!["install", "-s", "-q"];
    install.extend(REQUESTS);
    let plan = apt_get(&install);
    plan.lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .map(|rest| {
            let name = rest.split_whitespace().next().unwrap().to_owned();
            let version = rest
                .split_once('(')
                .and_then(|(_, after)| after.split_whitespace().next())
                .unwrap()
                .to_owned();
            (name, version)
        })
        .collect()
}

#[test]
fn curl_git_vim_and_ca_certificates_on_a_bookworm_minbase() {
    let status_path = images::debian_rootfs_dir().join("var/lib/dpkg/status");
    let status = std::fs::read_to_string(&status_path).unwrap();
    let installed = installed_from_status(&status).unwrap();
    assert!(
        installed.iter().any(|p| p.name == "dpkg"),
        "a minbase has dpkg"
    );

    let index = download_packages_index();
    let available = archive_packages(std::str::from_utf8(&index).unwrap());
    assert!(
        available.len() > 50_000,
        "bookworm main has tens of thousands of packages"
    );

    let requests: Vec<Request> = REQUESTS.iter().map(|name| name.parse().unwrap()).collect();
    let options = Options {
        architecture: "amd64".into(),
        foreign_architectures: vec![],
        recommends: false,
    };
    let resolution = resolve(&requests, &available, &installed, &options).unwrap();
    let chosen: Vec<&ArchivePackage> = resolution
        .packages
        .iter()
        .map(|chosen| &available[chosen.index])
        .collect();

    // The requests are in it, marked requested, each pulled in by itself.
    for name in REQUESTS {
        let at = chosen
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the resolution"));
        assert!(resolution.packages[at].requested, "{name}");
        assert!(
            resolution.packages[at].pulled_by.contains(&name.to_owned()),
            "{name}"
        );
    }
    // Everything else was pulled in by some request, and is not requested itself.
    for (package, chosen) in chosen.iter().zip(&resolution.packages) {
        assert!(
            !chosen.pulled_by.is_empty(),
            "{} is pulled in by nothing",
            package.name
        );
        assert_eq!(chosen.requested, REQUESTS.contains(&package.name.as_str()));
    }

    // Nothing the base has is chosen unless it is an upgrade.
    for (package, chosen) in chosen.iter().zip(&resolution.packages) {
        if let Some(base) = installed.iter().find(|b| b.name == package.name) {
            assert_eq!(chosen.upgrades.as_deref(), Some(base.version.as_str()));
            assert!(
                package.version.parse::<Version>().unwrap()
                    > base.version.parse::<Version>().unwrap(),
                "{} is not an upgrade",
                package.name
            );
        } else {
            assert!(chosen.upgrades.is_none(), "{}", package.name);
        }
    }

    // Every dependency of every chosen package holds after the install, and nothing conflicts.
    let present = after_install(&installed, &chosen);
    for package in &chosen {
        for field in ["Pre-Depends", "Depends"] {
            for group in parse_relations(package.paragraph.get(field).unwrap_or_default()).unwrap()
            {
                assert!(
                    holds(&group, &present),
                    "{} {field}: {group:?} does not hold",
                    package.name
                );
            }
        }
    }
    for (name, (_, paragraph)) in &present {
        for field in ["Conflicts", "Breaks"] {
            for group in parse_relations(paragraph.get(field).unwrap_or_default()).unwrap() {
                let others: BTreeMap<&str, (&str, &control::Paragraph)> = present
                    .iter()
                    .filter(|(other, _)| *other != name)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                for relation in group {
                    assert!(
                        !holds(&vec![relation.clone()], &others),
                        "{name} {field}: {relation} is present"
                    );
                }
            }
        }
    }

    // And it is what apt-get plans.
    let ours: BTreeMap<String, String> = chosen
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    let apt = apt_get_plan(&index, &status_path);
    let only_ours: BTreeSet<_> = ours
        .iter()
        .filter(|(k, v)| apt.get(*k) != Some(v))
        .collect();
    let only_apt: BTreeSet<_> = apt
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .collect();
    assert!(
        only_ours.is_empty() && only_apt.is_empty(),
        "layerize and apt-get differ: only layerize {only_ours:?}, only apt-get {only_apt:?}"
    );
}
