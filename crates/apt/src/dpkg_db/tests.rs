use super::*;

const BASE: &str = "\
Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Provides: libz1
Depends: libc6 (>= 2.14)
Breaks: libxml2 (<< 2.7.6.dfsg-2), texlive-binaries (<< 2009-12)
Conflicts: zlib1 (<= 1:1.0.4-7)
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.  This package includes the shared library.
Homepage: http://zlib.net/
X-Local-Field: kept as it was

Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 340
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u1
Replaces: base
Provides: base
Conffiles:
 /etc/debian_version 0c8d94d2cd9ce4e2f1e2b4e8ea2e6bb2
 /etc/host.conf 4eb63731c9f5e30903ac4fc07a7fe3d6
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system.

";

fn control(text: &str) -> Paragraph {
    control::parse(text).unwrap().remove(0)
}

fn new_package(text: &str, state: State, auto_installed: bool) -> NewPackage {
    NewPackage {
        control: control(text),
        conffiles: Vec::new(),
        state,
        auto_installed,
    }
}

const HELLO: &str = "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nMaintainer: Santiago Vila <sanvila@debian.org>\nInstalled-Size: 280\nDepends: libc6 (>= 2.34)\nConflicts: hello-traditional\nBreaks: hello-debhelper (<< 2.9)\nReplaces: hello-debhelper (<< 2.9), hello-traditional\nSection: devel\nPriority: optional\nHomepage: https://www.gnu.org/software/hello/\nDescription: example package based on GNU hello\n The GNU hello program produces a familiar, friendly greeting.\n";

#[test]
fn new_entries_are_written_in_dpkg_s_field_order_and_sorted_by_name() {
    let mut hello = new_package(HELLO, State::Installed, false);
    hello.conffiles = vec![(
        "/etc/hello.conf".into(),
        "d41d8cd98f00b204e9800998ecf8427e".into(),
    )];
    let status = status(BASE, &[hello]).unwrap();
    let hello_entry = "\
Package: hello
Status: install ok installed
Priority: optional
Section: devel
Installed-Size: 280
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Version: 2.10-3
Replaces: hello-debhelper (<< 2.9), hello-traditional
Depends: libc6 (>= 2.34)
Breaks: hello-debhelper (<< 2.9)
Conflicts: hello-traditional
Conffiles:
 /etc/hello.conf d41d8cd98f00b204e9800998ecf8427e
Description: example package based on GNU hello
 The GNU hello program produces a familiar, friendly greeting.
Homepage: https://www.gnu.org/software/hello/

";
    let base = control::parse(BASE).unwrap();
    let expected = format!("{}\n{hello_entry}{}\n", base[1], base[0]);
    assert_eq!(status, expected);
    assert!(status.contains("X-Local-Field: kept as it was\n"));
}

#[test]
fn an_upgrade_replaces_the_base_entry() {
    let upgrade = new_package(
        "Package: zlib1g\nVersion: 1:1.3.dfsg-3\nArchitecture: amd64\nMulti-Arch: same\nMaintainer: M <m@example.org>\nDescription: compression library\n",
        State::Installed,
        true,
    );
    let status = status(BASE, &[upgrade]).unwrap();
    let entries = control::parse(&status).unwrap();
    let zlib: Vec<_> = entries
        .iter()
        .filter(|entry| entry.get("Package") == Some("zlib1g"))
        .collect();
    assert_eq!(zlib.len(), 1);
    assert_eq!(zlib[0].get("Version"), Some("1:1.3.dfsg-3"));
    assert_eq!(zlib[0].get("Homepage"), None);
    // Another architecture of a Multi-Arch: same package is another instance.
    let i386 = new_package(
        "Package: zlib1g\nVersion: 1:1.2.13.dfsg-1\nArchitecture: i386\nMulti-Arch: same\nMaintainer: M <m@example.org>\nDescription: compression library\n",
        State::Installed,
        true,
    );
    let entries = control::parse(&super::status(BASE, &[i386]).unwrap()).unwrap();
    let architectures: Vec<_> = entries
        .iter()
        .filter(|entry| entry.get("Package") == Some("zlib1g"))
        .map(|entry| entry.get("Architecture").unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "i386"]);
}

#[test]
fn an_unpacked_upgrade_remembers_the_configured_version() {
    let upgrade = new_package(
        "Package: base-files\nEssential: yes\nVersion: 12.4+deb12u2\nArchitecture: amd64\nMaintainer: M <m@example.org>\nDescription: base\n",
        State::Unpacked,
        false,
    );
    let status = status(BASE, &[upgrade]).unwrap();
    assert!(
        status.contains("Package: base-files\nEssential: yes\nStatus: install ok unpacked\nMaintainer: M <m@example.org>\nArchitecture: amd64\nVersion: 12.4+deb12u2\nConfig-Version: 12.4+deb12u1\n"),
        "{status}"
    );
    let fresh = new_package(HELLO, State::Unpacked, false);
    let status = super::status("", &[fresh]).unwrap();
    assert!(status.contains("Status: install ok unpacked\n"));
    assert!(!status.contains("Config-Version"));
}

#[test]
fn fields_status_does_not_keep_are_dropped() {
    let stanza = format!("{HELLO}Essential: no\nStatus: purge ok not-installed\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: 1\nMD5sum: 0\n");
    let status = status("", &[new_package(&stanza, State::Installed, false)]).unwrap();
    for absent in [
        "Essential",
        "Filename",
        "\nSize:",
        "MD5sum",
        "not-installed",
    ] {
        assert!(!status.contains(absent), "{absent} in {status}");
    }
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let hello = new_package(HELLO, State::Installed, false);
    let error = status(BASE, &[hello.clone(), hello]).unwrap_err();
    assert!(matches!(error, DpkgDbError::Duplicate { ref package, .. } if package == "hello"));
    let nameless = new_package("Package: x\nArchitecture: all\n", State::Installed, false);
    let error = status("", &[nameless]).unwrap_err();
    assert!(error.to_string().contains("no Version"), "{error}");
    let error = status("Package: a\n continuation\nbroken line\n", &[]).unwrap_err();
    assert!(error.to_string().contains("line 3"), "{error}");
}

#[test]
fn the_same_input_gives_the_same_bytes_whatever_its_order() {
    let a = new_package(HELLO, State::Installed, false);
    let b = new_package(
        "Package: aaa\nVersion: 1\nArchitecture: all\nMaintainer: M <m@example.org>\nDescription: a\n",
        State::Installed,
        true,
    );
    assert_eq!(
        status(BASE, &[a.clone(), b.clone()]).unwrap(),
        status(BASE, &[b.clone(), a.clone()]).unwrap()
    );
    assert_eq!(
        extended_states(None, &[a.clone(), b.clone()]).unwrap(),
        extended_states(None, &[b, a]).unwrap()
    );
}

#[test]
fn extended_states_mark_auto_installed_packages_and_keep_the_base_s() {
    let base = "Package: dpkg\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: hello\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: zlib1g\nArchitecture: amd64\nAuto-Installed: 1\n";
    let requested = new_package(HELLO, State::Installed, false);
    let pulled_in = new_package(
        "Package: libfoo1\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\n",
        State::Installed,
        true,
    );
    let written = extended_states(Some(base), &[requested.clone(), pulled_in.clone()]).unwrap();
    assert_eq!(
        written,
        "Package: dpkg\nArchitecture: amd64\nAuto-Installed: 1\n\n\
         Package: libfoo1\nArchitecture: amd64\nAuto-Installed: 1\n\n\
         Package: zlib1g\nArchitecture: amd64\nAuto-Installed: 1\n\n"
    );
    // Read back, written again: the same bytes.
    assert_eq!(
        extended_states(Some(&written), &[requested, pulled_in]).unwrap(),
        written
    );
    assert_eq!(extended_states(None, &[]).unwrap(), "");
}

#[test]
fn vanished_paths_are_what_the_new_version_no_longer_ships_after_the_usr_merge() {
    let usr = UsrMerge {
        links: [("bin", "usr/bin"), ("lib", "usr/lib")]
            .into_iter()
            .map(|(link, target)| (link.to_owned(), target.to_owned()))
            .collect(),
    };
    let old_list = "/.\n/bin\n/bin/tool\n/bin/old-tool\n/lib\n/lib/libold.so.1\n/usr\n/usr/share\n/usr/share/doc/tool/changelog.gz\n";
    let new_paths: Vec<String> = ["/.", "/usr", "/usr/bin", "/usr/bin/tool", "/usr/share"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(
        vanished_paths(old_list, &new_paths, &usr),
        [
            "usr/bin/old-tool",
            "usr/lib/libold.so.1",
            "usr/share/doc/tool/changelog.gz"
        ]
    );
    assert!(
        vanished_paths(old_list, &new_paths, &UsrMerge::default()).contains(&"bin/tool".to_owned())
    );
}
