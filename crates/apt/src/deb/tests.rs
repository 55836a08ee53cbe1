//! `.deb`s made here byte by byte (ar + tar), for what `dpkg-deb --build` would never make:
//! entries escaping the root, hard links out of the package, odd member orders.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use super::*;
use crate::path_filter::PathFilters;

/// One tar member, written with raw names so that hostile names survive.
enum Member<'a> {
    Dir(&'a str),
    File(&'a str, u32, &'a [u8]),
    HardLink(&'a str, &'a str),
    Symlink(&'a str, &'a str),
}

fn tar_of(members: &[Member<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        let mut header = tar::Header::new_gnu();
        let (name, kind, mode, data, link): (&str, _, u32, &[u8], &str) = match member {
            Member::Dir(name) => (name, tar::EntryType::Directory, 0o755, b"", ""),
            Member::File(name, mode, data) => (name, tar::EntryType::Regular, *mode, data, ""),
            Member::HardLink(name, target) => (name, tar::EntryType::Link, 0o644, b"", target),
            Member::Symlink(name, target) => (name, tar::EntryType::Symlink, 0o777, b"", target),
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root").unwrap();
        header.set_groupname("root").unwrap();
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

const CONTROL: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Test <t@example.org>\nDescription: a test\n long text\n";

fn control_tar(extra: &[Member<'_>]) -> Vec<u8> {
    let mut members = vec![
        Member::Dir("./"),
        Member::File("./control", 0o644, CONTROL.as_bytes()),
    ];
    members.extend(extra.iter().map(|member| match member {
        Member::File(name, mode, data) => Member::File(name, *mode, data),
        _ => unreachable!("control.tar test members are files"),
    }));
    tar_of(&members)
}

fn deb_with(members: &[(&str, Vec<u8>)]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut ar = ar::Builder::new(Vec::new());
    for (name, data) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        ar.append(&header, &data[..]).unwrap();
    }
    file.write_all(&ar.into_inner().unwrap()).unwrap();
    file
}

fn deb(control: Vec<u8>, data: Vec<u8>) -> tempfile::NamedTempFile {
    deb_with(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control),
        ("data.tar", data),
    ])
}

fn merged_usr() -> UsrMerge {
    UsrMerge {
        links: [("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")]
            .into_iter()
            .map(|(link, target)| (link.to_owned(), target.to_owned()))
            .collect(),
    }
}

/// A layer entry as the tests look at it.
#[derive(Debug, PartialEq)]
struct LayerEntry {
    kind: tar::EntryType,
    mode: u32,
    link: Option<String>,
    content: Vec<u8>,
}

fn layer_entries(layer: &[u8]) -> BTreeMap<String, LayerEntry> {
    let mut archive = tar::Archive::new(layer);
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let header = entry.header();
        let link = entry
            .link_name_bytes()
            .map(|link| String::from_utf8(link.into_owned()).unwrap());
        let previous = entries.insert(
            path.clone(),
            LayerEntry {
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                link,
                content,
            },
        );
        assert!(previous.is_none(), "{path} twice in the layer");
    }
    entries
}

fn convert_to_layer(
    deb: &tempfile::NamedTempFile,
    usr: &UsrMerge,
) -> Result<(Converted, BTreeMap<String, LayerEntry>), DebError> {
    convert_filtered(deb, usr, &PathFilters::default())
}

fn convert_filtered(
    deb: &tempfile::NamedTempFile,
    usr: &UsrMerge,
    filters: &PathFilters,
) -> Result<(Converted, BTreeMap<String, LayerEntry>), DebError> {
    let mut layer = Vec::new();
    let converted = convert(deb.path(), "hello", usr, filters, &mut layer)?;
    Ok((converted, layer_entries(&layer)))
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

#[test]
fn merged_usr_paths_move_into_usr_and_the_list_keeps_the_package_s_own() {
    let data = tar_of(&[
        Member::Dir("./"),
        Member::Dir("./bin/"),
        Member::File("./bin/hello", 0o755, b"#!/bin/sh\n"),
        Member::HardLink("./bin/hi", "./bin/hello"),
        Member::Symlink("./bin/hey", "hello"),
        Member::Dir("./lib/"),
        Member::Dir("./lib/hello/"),
        Member::File("./lib/hello/data", 0o600, b"data"),
        Member::Dir("./usr/"),
        Member::Dir("./usr/share/"),
        Member::File("./usr/share/hello.txt", 0o644, b"text"),
    ]);
    let md5sums = b"0123456789abcdef0123456789abcdef  bin/hello\n";
    let control = control_tar(&[
        Member::File("./md5sums", 0o644, md5sums),
        Member::File("./postinst", 0o755, b"#!/bin/sh\nexit 0\n"),
        Member::File("./triggers", 0o644, b"interest-noawait /usr/share/hello\n"),
    ]);
    let deb = deb(control, data);
    let (converted, layer) = convert_to_layer(&deb, &merged_usr()).unwrap();

    assert_eq!(
        converted.paths,
        [
            "/.",
            "/bin",
            "/bin/hello",
            "/bin/hi",
            "/bin/hey",
            "/lib",
            "/lib/hello",
            "/lib/hello/data",
            "/usr",
            "/usr/share",
            "/usr/share/hello.txt"
        ]
    );
    assert_eq!(converted.scripts, ["postinst", "triggers"]);
    assert_eq!(converted.control.get("Package"), Some("hello"));
    assert!(converted.conffiles.is_empty());

    assert!(!layer.keys().any(|path| path == "bin" || path == "lib"));
    assert!(!layer.keys().any(|path| path == "./" || path.is_empty()));
    assert_eq!(layer["usr/bin/hello"].content, b"#!/bin/sh\n");
    assert_eq!(layer["usr/bin/hello"].mode, 0o755);
    assert_eq!(layer["usr/bin/hi"].kind, tar::EntryType::Link);
    assert_eq!(layer["usr/bin/hi"].link.as_deref(), Some("usr/bin/hello"));
    assert_eq!(layer["usr/bin/hey"].kind, tar::EntryType::Symlink);
    assert_eq!(layer["usr/bin/hey"].link.as_deref(), Some("hello"));
    assert_eq!(layer["usr/lib/hello"].kind, tar::EntryType::Directory);
    assert_eq!(layer["usr/lib/hello/data"].mode, 0o600);
    assert_eq!(layer["usr/share/hello.txt"].content, b"text");

    let info = |suffix: &str| &layer[&format!("var/lib/dpkg/info/hello.{suffix}")];
    assert_eq!(
        String::from_utf8(info("list").content.clone()).unwrap(),
        converted.paths.join("\n") + "\n"
    );
    assert_eq!(info("md5sums").content, md5sums);
    assert_eq!(info("postinst").mode, 0o755);
    assert_eq!(info("triggers").mode, 0o644);
    assert!(!layer.contains_key("var/lib/dpkg/info/hello.control"));
    assert_eq!(
        layer["var/lib/dpkg/status.d"].kind,
        tar::EntryType::Directory
    );
    assert_eq!(
        String::from_utf8(layer["var/lib/dpkg/status.d/hello"].content.clone()).unwrap(),
        CONTROL
    );
    assert_eq!(
        layer["var/lib/dpkg/status.d/hello.md5sums"].content,
        md5sums
    );

    assert_eq!(read_facts(deb.path(), &merged_usr()).unwrap(), converted);
}

#[test]
fn without_a_usr_merge_paths_stay_where_the_package_has_them() {
    let data = tar_of(&[
        Member::Dir("./"),
        Member::Dir("./bin/"),
        Member::File("./bin/hello", 0o755, b"x"),
    ]);
    let (_, layer) = convert_to_layer(&deb(control_tar(&[]), data), &UsrMerge::default()).unwrap();
    assert!(layer.contains_key("bin"));
    assert!(layer.contains_key("bin/hello"));
}

#[test]
fn conffiles_are_hashed_and_missing_md5sums_are_made_as_dpkg_makes_them() {
    let data = tar_of(&[
        Member::Dir("./"),
        Member::Dir("./etc/"),
        Member::File("./etc/hello.conf", 0o644, b"greeting=hi\n"),
        Member::Dir("./usr/"),
        Member::File("./usr/hello", 0o755, b"binary"),
        Member::HardLink("./usr/hello2", "./usr/hello"),
    ]);
    let control = control_tar(&[Member::File(
        "./conffiles",
        0o644,
        b"/etc/hello.conf\nremove-on-upgrade /etc/old.conf\n",
    )]);
    let (converted, layer) = convert_to_layer(&deb(control, data), &merged_usr()).unwrap();
    assert_eq!(
        converted.conffiles,
        [("/etc/hello.conf".to_owned(), md5_hex(b"greeting=hi\n"))]
    );
    let made = format!(
        "{hash}  usr/hello\n{hash}  usr/hello2\n",
        hash = md5_hex(b"binary")
    );
    assert_eq!(
        layer["var/lib/dpkg/info/hello.md5sums"].content,
        made.as_bytes()
    );
    assert_eq!(
        layer["var/lib/dpkg/info/hello.conffiles"].content,
        b"/etc/hello.conf\nremove-on-upgrade /etc/old.conf\n"
    );
}

/// debian-slim's filters: what dpkg there would not unpack is not in the layer, but stays in
/// the `.list` and the facts; a kept file's directories stay; a filtered conffile keeps its hash.
#[test]
fn paths_the_base_s_dpkg_filters_leave_out_are_listed_but_not_in_the_layer() {
    let data = tar_of(&[
        Member::Dir("./"),
        Member::Dir("./etc/"),
        Member::File("./etc/hello.conf", 0o644, b"greeting=hi\n"),
        Member::Dir("./usr/"),
        Member::Dir("./usr/bin/"),
        Member::File("./usr/bin/hello", 0o755, b"binary"),
        Member::Dir("./usr/share/"),
        Member::Dir("./usr/share/doc/"),
        Member::Dir("./usr/share/doc/hello/"),
        Member::File("./usr/share/doc/hello/README", 0o644, b"readme"),
        Member::File("./usr/share/doc/hello/copyright", 0o644, b"(c)"),
        Member::Symlink("./usr/share/doc/hello-data", "hello"),
        Member::Dir("./usr/share/man/"),
        Member::Dir("./usr/share/man/man1/"),
        Member::File("./usr/share/man/man1/hello.1.gz", 0o644, b"man"),
        Member::Symlink("./usr/share/man/man1/hi.1.gz", "hello.1.gz"),
    ]);
    let control = control_tar(&[Member::File("./conffiles", 0o644, b"/etc/hello.conf\n")]);
    let filters = PathFilters::from_config([
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n\
         path-exclude /usr/share/man/*\npath-exclude /etc/hello.conf\n",
    ]);
    let deb = deb(control, data);
    let (converted, layer) = convert_filtered(&deb, &merged_usr(), &filters).unwrap();
    let (unfiltered, _) = convert_to_layer(&deb, &merged_usr()).unwrap();
    assert_eq!(
        converted, unfiltered,
        "the facts do not depend on the filters"
    );
    assert!(converted
        .paths
        .contains(&"/usr/share/man/man1/hello.1.gz".to_owned()));
    assert_eq!(
        converted.conffiles,
        [("/etc/hello.conf".to_owned(), md5_hex(b"greeting=hi\n"))]
    );
    for gone in [
        "etc/hello.conf",
        "usr/share/doc/hello/README",
        "usr/share/man/man1",
        "usr/share/man/man1/hello.1.gz",
        "usr/share/man/man1/hi.1.gz",
    ] {
        assert!(!layer.contains_key(gone), "{gone} is in the layer");
    }
    for kept in [
        "usr/bin/hello",
        // `/usr/share/man/*` does not match the directory itself.
        "usr/share/man",
        "usr/share/doc",
        "usr/share/doc/hello",
        "usr/share/doc/hello/copyright",
        "usr/share/doc/hello-data",
    ] {
        assert!(layer.contains_key(kept), "{kept} is not in the layer");
    }
    assert_eq!(
        String::from_utf8(layer["var/lib/dpkg/info/hello.list"].content.clone()).unwrap(),
        converted.paths.join("\n") + "\n"
    );
}

#[test]
fn a_hard_link_to_a_file_the_filters_leave_out_is_refused_saying_so() {
    let data = tar_of(&[
        Member::Dir("./"),
        Member::Dir("./usr/"),
        Member::File("./usr/doc-file", 0o644, b"x"),
        Member::HardLink("./usr/kept", "./usr/doc-file"),
    ]);
    let filters = PathFilters::from_config(["path-exclude /usr/doc-*\n"]);
    let err = convert_filtered(&deb(control_tar(&[]), data), &merged_usr(), &filters)
        .unwrap_err()
        .to_string();
    assert!(err.contains("./usr/kept"), "{err}");
    assert!(err.contains("path filters"), "{err}");
}

#[test]
fn a_conffile_the_package_does_not_ship_is_an_error() {
    let data = tar_of(&[Member::Dir("./")]);
    let control = control_tar(&[Member::File("./conffiles", 0o644, b"/etc/absent\n")]);
    let error = convert_to_layer(&deb(control, data), &merged_usr()).unwrap_err();
    assert!(error.to_string().contains("/etc/absent"), "{error}");
}

fn refused_entry(data: Vec<u8>) -> (String, String) {
    let deb = deb(control_tar(&[]), data);
    let mut layer = Vec::new();
    match convert(
        deb.path(),
        "hello",
        &merged_usr(),
        &PathFilters::default(),
        &mut layer,
    ) {
        Err(DebError::UnsafeEntry { entry, problem, .. }) => (entry, problem),
        other => panic!("expected a refused entry, got {other:?}"),
    }
}

#[test]
fn entries_escaping_the_root_are_refused_by_name() {
    let (entry, problem) = refused_entry(tar_of(&[
        Member::Dir("./"),
        Member::File("../etc/x", 0o644, b"x"),
    ]));
    assert_eq!(entry, "../etc/x");
    assert!(problem.contains("above the root"), "{problem}");

    let (entry, problem) = refused_entry(tar_of(&[
        Member::Dir("./"),
        Member::File("./usr/../../etc/x", 0o644, b"x"),
    ]));
    assert_eq!(entry, "./usr/../../etc/x");
    assert!(problem.contains("above the root"), "{problem}");

    let (entry, problem) = refused_entry(tar_of(&[Member::File("/etc/x", 0o644, b"x")]));
    assert_eq!(entry, "/etc/x");
    assert!(problem.contains("absolute"), "{problem}");
}

#[test]
fn hard_links_out_of_the_package_are_refused_by_name() {
    let (entry, problem) = refused_entry(tar_of(&[
        Member::Dir("./"),
        Member::HardLink("./etc/shadow-copy", "/etc/shadow"),
    ]));
    assert_eq!(entry, "./etc/shadow-copy");
    assert!(
        problem.contains("\"/etc/shadow\" is an absolute path"),
        "{problem}"
    );

    let (entry, problem) = refused_entry(tar_of(&[
        Member::Dir("./"),
        Member::HardLink("./x", "../../etc/shadow"),
    ]));
    assert_eq!(entry, "./x");
    assert!(problem.contains("above the root"), "{problem}");

    // A base file, not one of the package's: a layer cannot link to a lower layer's file.
    let (entry, problem) = refused_entry(tar_of(&[
        Member::Dir("./"),
        Member::HardLink("./x", "./etc/passwd"),
    ]));
    assert_eq!(entry, "./x");
    assert!(
        problem.contains("not a file earlier in this package"),
        "{problem}"
    );
}

#[test]
fn entries_replacing_a_usr_merge_link_are_refused() {
    let (entry, problem) = refused_entry(tar_of(&[Member::Symlink("./bin", "usr/sbin")]));
    assert_eq!(entry, "./bin");
    assert!(problem.contains("usr-merge symlink"), "{problem}");
}

#[test]
fn a_package_shipping_the_base_s_own_usr_merge_link_leaves_it_to_the_base() {
    let data = tar_of(&[Member::Dir("./"), Member::Symlink("./bin", "usr/bin")]);
    let (converted, layer) = convert_to_layer(&deb(control_tar(&[]), data), &merged_usr()).unwrap();
    assert_eq!(converted.paths, ["/.", "/bin"]);
    assert!(!layer.keys().any(|path| path.starts_with("bin")));
}

/// An ar archive's members (name, bytes) and the words its error must have.
type MalformedCase<'a> = (Vec<(&'a str, Vec<u8>)>, &'a str);

#[test]
fn malformed_debs_say_what_is_wrong() {
    let control = control_tar(&[]);
    let data = tar_of(&[Member::Dir("./")]);
    let cases: Vec<MalformedCase> = vec![
        (
            vec![("debian-binary", b"3.0\n".to_vec())],
            "only format 2.x",
        ),
        (
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("data.tar", data.clone()),
            ],
            "found member \"data.tar\" where control.tar belongs",
        ),
        (
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control.clone()),
            ],
            "no data.tar member",
        ),
        (
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                (
                    "control.tar",
                    tar_of(&[Member::File("./md5sums", 0o644, b"")]),
                ),
                ("data.tar", data.clone()),
            ],
            "no control file",
        ),
        (
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control.clone()),
                ("data.tar.bz2", data.clone()),
            ],
            "compressed with bz2",
        ),
    ];
    for (members, expected) in cases {
        let deb = deb_with(&members);
        let error = read_facts(deb.path(), &merged_usr())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert!(error.contains(&deb.path().display().to_string()), "{error}");
    }
    let not_ar = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_ar.path(), b"just text").unwrap();
    let error = read_facts(not_ar.path(), &merged_usr()).unwrap_err();
    assert!(matches!(error, DebError::Malformed { .. }), "{error}");
}

#[test]
fn members_named_with_an_underscore_are_skipped_as_dpkg_does() {
    let deb = deb_with(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("_gpgorigin", b"signature".to_vec()),
        ("control.tar", control_tar(&[])),
        ("data.tar", tar_of(&[Member::Dir("./")])),
    ]);
    assert_eq!(read_facts(deb.path(), &merged_usr()).unwrap().paths, ["/."]);
}

#[test]
fn an_unusable_dpkg_name_is_refused() {
    let deb = deb(control_tar(&[]), tar_of(&[Member::Dir("./")]));
    let error = convert(
        deb.path(),
        "../x",
        &merged_usr(),
        &PathFilters::default(),
        Vec::new(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("\"../x\""), "{error}");
}
