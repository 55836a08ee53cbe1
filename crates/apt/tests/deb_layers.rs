//! Real bookworm `.deb`s (downloaded with apt-get, the versions this machine has installed) and
//! `.deb`s built with `dpkg-deb --build`, converted to layers and checked against dpkg's own
//! tools: `dpkg-deb` for what a package holds, the machine's own dpkg status for the entries
//! `status` writes, and `dpkg --audit` / `dpkg --verify` over a root made from the layers.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use layerize_apt::control::{self, Paragraph};
use layerize_apt::deb::{self, Converted, UsrMerge};
use layerize_apt::dpkg_db::{self, NewPackage, State};
use layerize_apt::package::{dpkg_name, MultiArch};
use support::tools::{command, run, run_bytes};

/// Small packages every bookworm system has: a `/bin` path (dash), a Multi-Arch: same library
/// (libzstd1), conffiles with debconf scripts (libpam-runtime), an `Architecture: all` one
/// (sensible-utils).
const PACKAGES: [&str; 4] = ["dash", "libzstd1", "libpam-runtime", "sensible-utils"];

fn bookworm_usr_merge() -> UsrMerge {
    UsrMerge {
        links: ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]
            .into_iter()
            .map(|link| (link.to_owned(), format!("usr/{link}")))
            .collect(),
    }
}

fn installed_version(package: &str) -> String {
    run(command("dpkg-query").args(["-W", "-f=${Version}", package]))
}

fn candidate_version(package: &str) -> String {
    let policy = run(command("apt-cache").args(["policy", package]));
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate: "))
        .unwrap_or_else(|| panic!("apt-cache policy {package} names no candidate:\n{policy}"))
        .to_owned()
}

/// The `.deb`s of [`PACKAGES`] at the versions the archive offers now (apt's candidates),
/// downloaded once per version set.
fn real_debs() -> Vec<PathBuf> {
    let wanted: Vec<String> = PACKAGES
        .iter()
        .map(|package| format!("{package}={}", candidate_version(package)))
        .collect();
    let key: String = wanted
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = support::cached_fixture(&format!("apt-debs-{key}"), |dir| {
        run(command("apt-get")
            .arg("download")
            .args(&wanted)
            .current_dir(dir));
    });
    PACKAGES
        .iter()
        .map(|package| {
            let found = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .find(|path| {
                    path.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{package}_"))
                });
            found.unwrap_or_else(|| panic!("apt-get download gave no {package} .deb"))
        })
        .collect()
}

/// A layer entry, for comparing with the `.deb`'s own tar.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    owner: Option<String>,
    link: Option<String>,
    content: Vec<u8>,
}

fn entries_of(tar: impl Read) -> Vec<(String, Entry)> {
    let mut archive = tar::Archive::new(tar);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let header = entry.header();
        let owner = header
            .username()
            .unwrap()
            .map(|user| format!("{user}:{}", header.groupname().unwrap().unwrap_or_default()));
        let link = entry
            .link_name_bytes()
            .map(|link| String::from_utf8(link.into_owned()).unwrap());
        entries.push((
            path,
            Entry {
                kind: header.entry_type().as_byte(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                owner,
                link,
                content,
            },
        ));
    }
    entries
}

struct Converting {
    converted: Converted,
    layer: Vec<u8>,
    dpkg_name: String,
}

fn convert(deb: &Path, usr: &UsrMerge) -> Converting {
    let facts = deb::read_facts(deb, usr).unwrap();
    let multi_arch = MultiArch::of(&facts.control);
    let name = dpkg_name(
        facts.control.get("Package").unwrap(),
        facts.control.get("Architecture").unwrap(),
        multi_arch,
    );
    let mut layer = Vec::new();
    let converted = deb::convert(deb, &name, usr, &Default::default(), &mut layer).unwrap();
    assert_eq!(converted, facts, "read_facts and convert agree");
    Converting {
        converted,
        layer,
        dpkg_name: name,
    }
}

/// `./usr/bin/` -> `/usr/bin`, `./` -> `/.`, as dpkg's `.list` has them.
fn list_path(tar_name: &str) -> String {
    let trimmed = tar_name.trim_start_matches('.').trim_end_matches('/');
    if trimmed.is_empty() {
        "/.".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Where the layer has a package path on a merged-/usr base (`./bin/dash` -> `usr/bin/dash`).
fn merged(tar_name: &str, usr: &UsrMerge) -> String {
    let path = tar_name.trim_start_matches("./").trim_end_matches('/');
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    match usr.links.get(first.trim_end_matches('/')) {
        Some(target) if !rest.is_empty() => format!("{target}/{rest}"),
        _ => path.to_owned(),
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

#[test]
fn real_debs_become_layers_holding_what_dpkg_deb_says_they_hold() {
    let usr = bookworm_usr_merge();
    for deb in real_debs() {
        let Converting {
            converted,
            layer,
            dpkg_name,
        } = convert(&deb, &usr);
        let name = converted.control.get("Package").unwrap().to_owned();
        let layer: BTreeMap<String, Entry> = entries_of(&layer[..]).into_iter().collect();

        // The package's files, as dpkg-deb unpacks them, are in the layer under /usr.
        let fsys = run_bytes(command("dpkg-deb").arg("--fsys-tarfile").arg(&deb));
        let package_entries = entries_of(&fsys[..]);
        let expected_list: Vec<String> = package_entries
            .iter()
            .map(|(path, _)| list_path(path))
            .collect();
        assert_eq!(converted.paths, expected_list, "{name}: .list paths");
        for (path, mut entry) in package_entries {
            let at = merged(&path, &usr);
            if at.is_empty() || usr.links.contains_key(at.trim_end_matches('/')) {
                assert!(!layer.contains_key(&at), "{name}: {path} kept at {at:?}");
                continue;
            }
            if entry.kind == b'1' {
                entry.link = entry.link.map(|target| merged(&target, &usr));
            }
            assert_eq!(layer.get(&at), Some(&entry), "{name}: {path} at {at}");
        }
        for link in usr.links.keys() {
            assert!(
                !layer
                    .keys()
                    .any(|path| path == link || path.starts_with(&format!("{link}/"))),
                "{name}: an entry under /{link}"
            );
        }

        // Its control members are its dpkg info files; its control file its status.d entry.
        let control_dir = tempfile::tempdir().unwrap();
        run(command("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(control_dir.path()));
        let mut members = Vec::new();
        for member in std::fs::read_dir(control_dir.path()).unwrap() {
            let member = member.unwrap().file_name().into_string().unwrap();
            let content = std::fs::read(control_dir.path().join(&member)).unwrap();
            if member == "control" {
                let status_d = &layer[&format!("var/lib/dpkg/status.d/{name}")];
                assert_eq!(status_d.content, content, "{name}: status.d entry");
                continue;
            }
            let info = &layer[&format!("var/lib/dpkg/info/{dpkg_name}.{member}")];
            assert_eq!(info.content, content, "{name}: info/{member}");
            let script =
                ["preinst", "postinst", "prerm", "postrm", "config"].contains(&member.as_str());
            assert_eq!(
                info.mode,
                if script { 0o755 } else { 0o644 },
                "{name}: {member} mode"
            );
            assert_eq!((info.uid, info.gid), (0, 0));
            members.push(member);
        }
        assert!(
            members.contains(&"md5sums".to_owned()),
            "{name} has md5sums"
        );
        let list = &layer[&format!("var/lib/dpkg/info/{dpkg_name}.list")];
        assert_eq!(
            String::from_utf8(list.content.clone()).unwrap(),
            expected_list.join("\n") + "\n"
        );
        let mut scripts: Vec<String> = members
            .into_iter()
            .filter(|member| {
                [
                    "preinst", "postinst", "prerm", "postrm", "config", "triggers",
                ]
                .contains(&member.as_str())
            })
            .collect();
        scripts.sort();
        assert_eq!(converted.scripts, scripts, "{name}: scripts");

        // Conffile hashes are of the content the package ships.
        let unpacked = tempfile::tempdir().unwrap();
        run(command("dpkg-deb").arg("-x").arg(&deb).arg(unpacked.path()));
        for (conffile, md5) in &converted.conffiles {
            let content = std::fs::read(unpacked.path().join(&conffile[1..])).unwrap();
            assert_eq!(*md5, md5_hex(&content), "{name}: {conffile}");
        }
    }
}

#[test]
fn the_real_debs_cover_what_the_conversion_must_handle() {
    let usr = bookworm_usr_merge();
    let converted: BTreeMap<String, Converting> = real_debs()
        .iter()
        .map(|deb| {
            let converting = convert(deb, &usr);
            (
                converting
                    .converted
                    .control
                    .get("Package")
                    .unwrap()
                    .to_owned(),
                converting,
            )
        })
        .collect();
    let dash = &converted["dash"];
    assert!(dash.converted.paths.contains(&"/bin/dash".to_owned()));
    assert!(entries_of(&dash.layer[..])
        .iter()
        .any(|(path, _)| path == "usr/bin/dash"));
    assert!(dash.converted.scripts.contains(&"postinst".to_owned()));
    assert_eq!(converted["libzstd1"].dpkg_name, "libzstd1:amd64");
    let pam = &converted["libpam-runtime"].converted;
    let conffiles: Vec<&str> = pam
        .conffiles
        .iter()
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(conffiles, ["/etc/pam.conf", "/etc/pam.d/other"]);
    assert!(pam.scripts.contains(&"postinst".to_owned()));
}

/// This machine's own status entry for `package`, as dpkg wrote it.
fn host_status_entry(package: &str) -> Paragraph {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    control::parse(&status)
        .unwrap()
        .into_iter()
        .find(|entry| entry.get("Package") == Some(package))
        .unwrap_or_else(|| panic!("{package} is not in /var/lib/dpkg/status"))
}

fn new_packages(usr: &UsrMerge) -> Vec<(Converting, NewPackage)> {
    real_debs()
        .iter()
        .map(|deb| {
            let converting = convert(deb, usr);
            let package = NewPackage {
                control: converting.converted.control.clone(),
                conffiles: converting.converted.conffiles.clone(),
                state: State::Installed,
                auto_installed: true,
            };
            (converting, package)
        })
        .collect()
}

#[test]
fn status_entries_are_what_dpkg_itself_wrote_for_the_same_packages() {
    let mut compared = Vec::new();
    for (_, package) in new_packages(&bookworm_usr_merge()) {
        let name = package.control.get("Package").unwrap().to_owned();
        // Only where this machine has the very version installed (dash's is bookworm's only).
        if package.control.get("Version") != Some(installed_version(&name).as_str()) {
            continue;
        }
        compared.push(name.clone());
        let written = dpkg_db::status("", std::slice::from_ref(&package)).unwrap();
        assert_eq!(
            written,
            format!("{}\n", host_status_entry(&name)),
            "{name}: status entry"
        );
    }
    assert!(
        compared.contains(&"dash".to_owned()),
        "compared {compared:?}"
    );
}

/// Extracts `layer` into `root` with GNU tar, as a container runtime stacks it.
fn extract(layer: &[u8], root: &Path) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), layer).unwrap();
    run(command("tar")
        .args([
            "--extract",
            "--same-owner",
            "--preserve-permissions",
            "--file",
        ])
        .arg(file.path())
        .arg("--directory")
        .arg(root));
}

#[test]
fn dpkg_audits_and_verifies_a_root_made_of_the_layers_and_the_status() {
    let usr = bookworm_usr_merge();
    let root = tempfile::tempdir().unwrap();
    for (link, target) in &usr.links {
        std::fs::create_dir_all(root.path().join(target)).unwrap();
        std::os::unix::fs::symlink(target, root.path().join(link)).unwrap();
    }
    let admin = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::create_dir_all(admin.join("info")).unwrap();
    // As every multiarch dpkg has it: info files of Multi-Arch: same packages are `name:arch.*`.
    std::fs::write(admin.join("info/format"), "1\n").unwrap();
    let mut packages = Vec::new();
    for (converting, package) in new_packages(&usr) {
        extract(&converting.layer, root.path());
        packages.push(package);
    }
    std::fs::write(
        admin.join("status"),
        dpkg_db::status("", &packages).unwrap(),
    )
    .unwrap();

    let root_arg = format!("--root={}", root.path().display());
    let audit = run(command("dpkg").args([&root_arg, "--audit"]));
    assert_eq!(audit, "", "dpkg --audit");
    let verify = run(command("dpkg").args([&root_arg, "--verify"]));
    assert_eq!(
        verify, "",
        "dpkg --verify: every file's md5 as md5sums and Conffiles say"
    );
    let listed = run(command("dpkg").args([&root_arg, "--list"]));
    for package in PACKAGES {
        assert!(
            listed
                .lines()
                .any(|line| line.starts_with(&format!("ii  {package}"))),
            "{package} not installed in\n{listed}"
        );
    }

    // Left unpacked, they are what --audit reports.
    for package in &mut packages {
        package.state = State::Unpacked;
    }
    std::fs::write(
        admin.join("status"),
        dpkg_db::status("", &packages).unwrap(),
    )
    .unwrap();
    let audit = run(command("dpkg").args([&root_arg, "--audit"]));
    assert!(
        audit.contains("dash"),
        "dpkg --audit of unpacked packages:\n{audit}"
    );
}

#[test]
fn data_tars_in_every_compression_dpkg_deb_makes_read_the_same() {
    let tree = tempfile::tempdir().unwrap();
    let package = tree.path().join("pkg");
    std::fs::create_dir_all(package.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(package.join("bin")).unwrap();
    std::fs::create_dir_all(package.join("etc")).unwrap();
    std::fs::write(
        package.join("DEBIAN/control"),
        "Package: tiny\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: tiny\n",
    )
    .unwrap();
    std::fs::write(package.join("DEBIAN/conffiles"), "/etc/tiny.conf\n").unwrap();
    std::fs::write(package.join("bin/tiny"), "#!/bin/sh\necho tiny\n").unwrap();
    std::fs::write(package.join("etc/tiny.conf"), "size=1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        package.join("bin/tiny"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let usr = bookworm_usr_merge();
    let mut layers = Vec::new();
    for compression in ["gzip", "xz", "zstd", "none"] {
        let deb = tree.path().join(format!("tiny-{compression}.deb"));
        run(command("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
            .arg(&package)
            .arg(&deb));
        let converting = convert(&deb, &usr);
        assert_eq!(
            converting.converted.paths,
            ["/.", "/bin", "/bin/tiny", "/etc", "/etc/tiny.conf"],
            "{compression}"
        );
        assert_eq!(
            converting.converted.conffiles,
            [("/etc/tiny.conf".to_owned(), md5_hex(b"size=1\n"))]
        );
        let entries = entries_of(&converting.layer[..]);
        let tiny = entries
            .iter()
            .find(|(path, _)| path == "usr/bin/tiny")
            .unwrap();
        assert_eq!(tiny.1.mode, 0o755);
        assert_eq!(tiny.1.owner.as_deref(), Some("root:root"));
        layers.push((compression, entries));
    }
    let (_, first) = &layers[0];
    for (compression, entries) in &layers[1..] {
        assert_eq!(entries, first, "{compression} and gzip give the same layer");
    }
}
