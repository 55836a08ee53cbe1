//! Unit tests of file maps: precedence, masks, host trees, hardlinks, tar import.

use super::path::normalize;
use super::*;

/// `path kind mode uid:gid` for every entry, in map (= tar) order.
pub(super) fn listing(map: &FileMap) -> Vec<String> {
    map.entries()
        .map(|item| {
            let (path, entry) = item.unwrap();
            describe(&path, &entry)
        })
        .collect()
}

/// `path kind mode uid:gid` of one entry.
pub(super) fn describe(path: &str, entry: &Entry) -> String {
    let kind = match &entry.node {
        Node::File(_) => "file".to_owned(),
        Node::Dir => "dir".to_owned(),
        Node::Symlink(target) => format!("symlink->{target}"),
        Node::Hardlink(target) => format!("hardlink->{target}"),
        Node::Special { .. } => "special".to_owned(),
    };
    format!("{path} {kind} {:o} {}:{}", entry.mode, entry.uid, entry.gid)
}

fn inline(text: &str) -> FileSource {
    FileSource::Inline(text.as_bytes().to_vec())
}

#[test]
fn normalises_destinations_lexically() {
    for (input, expected) in [
        ("/etc/foo", "etc/foo"),
        ("etc/foo", "etc/foo"),
        ("//etc///foo/", "etc/foo"),
        ("./etc/./foo", "etc/foo"),
        ("a/../b", "b"),
        ("a/b/../../c", "c"),
        ("/", ""),
        (".", ""),
        ("a/..", ""),
    ] {
        assert_eq!(normalize(input).unwrap(), expected, "{input}");
    }
}

#[test]
fn refuses_paths_that_escape_the_root() {
    for input in ["../x", "/../x", "a/../../x", "./..", "a/b/../../../etc"] {
        let err = normalize(input).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("path escapes the image root: {input}")
        );
    }
    let mut map = FileMap::new();
    let err = map
        .add_file("../x", inline("x"), EntryMeta::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "path escapes the image root: ../x");
    assert!(map.is_empty());
}

#[test]
fn refuses_nul_bytes_and_the_root_itself() {
    let mut map = FileMap::new();
    assert!(matches!(
        map.add_file("a\0b", inline(""), EntryMeta::default()),
        Err(FileMapError::InvalidPath { .. })
    ));
    assert!(matches!(
        map.add_file("/", inline(""), EntryMeta::default()),
        Err(FileMapError::RootEntry)
    ));
    assert!(matches!(map.delete("/"), Err(FileMapError::RootEntry)));
}

#[test]
fn refuses_a_path_below_a_symlink_of_the_map() {
    let mut map = FileMap::new();
    map.add_symlink("/lnk", "/etc", EntryMeta::default())
        .unwrap();
    let err = map
        .add_file("/lnk/passwd", inline("x"), EntryMeta::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/lnk/passwd has a symlink parent /lnk inside the layer"
    );
    let err = map.add_dir("lnk/a/b", EntryMeta::default()).unwrap_err();
    assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
    assert_eq!(listing(&map).len(), 1);
}

#[test]
fn refuses_a_path_below_a_file_of_the_map() {
    let mut map = FileMap::new();
    map.add_file("/a", inline("x"), EntryMeta::default())
        .unwrap();
    let err = map
        .add_file("/a/b", inline("y"), EntryMeta::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/a/b needs /a to be a directory, but it is a file in the layer"
    );
}

#[test]
fn creates_parents_implicitly_and_keeps_sorted_order() {
    let mut map = FileMap::new();
    map.add_file("/usr/bin/b", inline("b"), EntryMeta::default())
        .unwrap();
    map.add_file("/etc/x", inline("x"), EntryMeta::default())
        .unwrap();
    map.add_file(
        "/usr/bin/a",
        inline("a"),
        EntryMeta {
            mode: Some(0o755),
            uid: 1000,
            gid: 100,
            ..EntryMeta::default()
        },
    )
    .unwrap();
    assert_eq!(
        listing(&map),
        [
            "etc dir 755 0:0",
            "etc/x file 644 0:0",
            "usr dir 755 0:0",
            "usr/bin dir 755 0:0",
            "usr/bin/a file 755 1000:100",
            "usr/bin/b file 644 0:0",
        ]
    );
    // An explicit directory takes over the implicit one and keeps its children.
    map.add_dir(
        "/usr",
        EntryMeta {
            mode: Some(0o700),
            ..EntryMeta::default()
        },
    )
    .unwrap();
    assert_eq!(listing(&map)[2], "usr dir 700 0:0");
    assert_eq!(listing(&map).len(), 6);
}

#[test]
fn later_adds_replace_earlier_ones() {
    let mut map = FileMap::new();
    map.add_file("/opt/app/x", inline("x"), EntryMeta::default())
        .unwrap();
    map.add_file("/opt/app/y", inline("y"), EntryMeta::default())
        .unwrap();
    map.add_symlink("/opt/app", "/srv/app", EntryMeta::default())
        .unwrap();
    assert_eq!(
        listing(&map),
        ["opt dir 755 0:0", "opt/app symlink->/srv/app 777 0:0"]
    );
    map.add_file("/opt/app", inline("now a file"), EntryMeta::default())
        .unwrap();
    assert_eq!(listing(&map), ["opt dir 755 0:0", "opt/app file 644 0:0"]);
}

#[test]
fn deletions_become_whiteouts() {
    let mut map = FileMap::new();
    map.add_file("/etc/keep", inline("k"), EntryMeta::default())
        .unwrap();
    map.add_file("/etc/gone/inner", inline("i"), EntryMeta::default())
        .unwrap();
    map.delete("/etc/gone").unwrap();
    map.delete("/toplevel").unwrap();
    map.make_opaque("/var/cache").unwrap();
    assert_eq!(
        listing(&map),
        [
            ".wh.toplevel file 644 0:0",
            "etc dir 755 0:0",
            "etc/.wh.gone file 644 0:0",
            "etc/keep file 644 0:0",
            "var dir 755 0:0",
            "var/cache dir 755 0:0",
            "var/cache/.wh..wh..opq file 644 0:0",
        ]
    );
}

#[test]
fn host_files_must_exist_and_keep_their_permission_bits() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let mut map = FileMap::new();
    let err = map
        .add_file(
            "/x",
            FileSource::Host(missing.clone()),
            EntryMeta::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("source file not found: {}", missing.display())
    );
    let err = map
        .add_file(
            "/x",
            FileSource::Host(dir.path().into()),
            EntryMeta::default(),
        )
        .unwrap_err();
    assert!(matches!(err, FileMapError::SourceNotFile(_)), "{err}");

    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    map.add_file(
        "/bin/run",
        FileSource::Host(script.clone()),
        EntryMeta::default(),
    )
    .unwrap();
    map.add_file(
        "/bin/run2",
        FileSource::Host(script),
        EntryMeta {
            mode: Some(0o600),
            ..EntryMeta::default()
        },
    )
    .unwrap();
    assert_eq!(
        listing(&map),
        [
            "bin dir 755 0:0",
            "bin/run file 750 0:0",
            "bin/run2 file 600 0:0"
        ]
    );
}

#[test]
fn host_dirs_are_walked_with_links_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("b/sub")).unwrap();
    std::fs::write(root.join("b/sub/file"), "data").unwrap();
    std::fs::write(root.join("a"), "a").unwrap();
    std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(root.join("b/sub/file"), root.join("0-link")).unwrap();
    std::os::unix::fs::symlink("../escapes/verbatim", root.join("b/lnk")).unwrap();
    std::fs::set_permissions(root.join("b"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();

    let mut map = FileMap::new();
    map.add_host_dir(root, "/srv/data").unwrap();
    let listed = listing(&map);
    assert_eq!(
        listed,
        [
            "srv dir 755 0:0",
            "srv/data dir 750 0:0",
            "srv/data/0-link file 644 0:0",
            "srv/data/a file 4755 0:0",
            "srv/data/b dir 700 0:0",
            "srv/data/b/lnk symlink->../escapes/verbatim 777 0:0",
            "srv/data/b/sub dir 755 0:0",
            "srv/data/b/sub/file hardlink->srv/data/0-link 644 0:0",
        ]
    );
}

#[test]
fn host_dirs_are_walked_in_the_byte_order_of_whole_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["a/x", "a/x.d/y", "b"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for file in ["a.txt", "a-b", "a/x-1", "a/x/z", "a0"] {
        std::fs::write(root.join(file), file).unwrap();
    }
    let mut map = FileMap::new();
    map.add_host_dir(root, "/").unwrap();
    let paths: Vec<String> = listing(&map)
        .iter()
        .map(|line| line.split(' ').next().unwrap().to_owned())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(
        paths,
        ["a", "a-b", "a.txt", "a/x", "a/x-1", "a/x.d", "a/x.d/y", "a/x/z", "a0", "b"]
    );
}

/// A host tree with `etc/` (0750) holding `conf` and `conf.d/a`, and `bin/` (0700) holding
/// `tool` and the symlink `sh`.
fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("etc/conf"), "c").unwrap();
    std::fs::write(root.join("etc/conf.d/a"), "a").unwrap();
    std::fs::write(root.join("bin/tool"), "t").unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/sh")).unwrap();
    for (path, mode) in [("etc", 0o750), ("bin", 0o700), ("", 0o755)] {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

#[test]
fn host_trees_merge_with_other_adds_in_add_order() {
    let tree = sample_tree();
    let mut map = FileMap::new();
    // Before the tree: replaced by it, or kept beside it.
    map.add_file("/etc/conf", inline("early"), EntryMeta::default())
        .unwrap();
    map.add_file("/etc/conf.d/b", inline("b"), EntryMeta::default())
        .unwrap();
    map.add_file("/bin/tool/inner", inline("i"), EntryMeta::default())
        .unwrap();
    map.add_host_dir(tree.path(), "/").unwrap();
    // After the tree: replaces its entries, deletes some, adds below its directories.
    map.add_symlink("/etc/conf.d", "/elsewhere", EntryMeta::default())
        .unwrap();
    map.delete("/bin/sh").unwrap();
    map.add_file("/bin/new", inline("n"), EntryMeta::default())
        .unwrap();
    assert_eq!(
        listing(&map),
        [
            "bin dir 700 0:0",
            "bin/.wh.sh file 644 0:0",
            "bin/new file 644 0:0",
            "bin/tool file 644 0:0",
            "etc dir 750 0:0",
            "etc/conf file 644 0:0",
            "etc/conf.d symlink->/elsewhere 777 0:0",
        ]
    );
    let (_, conf) = map
        .entries()
        .map(Result::unwrap)
        .find(|(path, _)| path == "etc/conf")
        .unwrap();
    assert!(matches!(conf.node, Node::File(Content::Host(_))));

    // Parents are checked against the tree when an entry is added.
    let err = map
        .add_file("/bin/tool/x", inline("x"), EntryMeta::default())
        .unwrap_err();
    assert!(
        matches!(err, FileMapError::ParentNotDirectory { .. }),
        "{err}"
    );
    let err = map
        .add_file("/etc/conf.d/x", inline("x"), EntryMeta::default())
        .unwrap_err();
    assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
    let mut other = FileMap::new();
    other.add_host_dir(tree.path(), "/").unwrap();
    let err = other
        .add_file("/bin/sh/x", inline("x"), EntryMeta::default())
        .unwrap_err();
    assert!(matches!(err, FileMapError::SymlinkParent { .. }), "{err}");
    // A deleted directory of the tree can come back with implicit parents only.
    other.delete("/etc").unwrap();
    other
        .add_file("/etc/conf.d/new", inline("x"), EntryMeta::default())
        .unwrap();
    assert_eq!(
        listing(&other),
        [
            ".wh.etc file 644 0:0",
            "bin dir 700 0:0",
            "bin/sh symlink->tool 777 0:0",
            "bin/tool file 644 0:0",
            "etc dir 755 0:0",
            "etc/conf.d dir 755 0:0",
            "etc/conf.d/new file 644 0:0",
        ]
    );
}

#[test]
fn later_host_trees_replace_earlier_ones() {
    let first = sample_tree();
    let second = tempfile::tempdir().unwrap();
    std::fs::create_dir(second.path().join("etc")).unwrap();
    std::fs::write(second.path().join("etc/conf.d"), "now a file").unwrap();
    std::fs::write(second.path().join("bin"), "now a file").unwrap();
    std::fs::set_permissions(
        second.path().join("etc"),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    let mut map = FileMap::new();
    map.add_host_dir(first.path(), "/").unwrap();
    map.add_host_dir(second.path(), "/").unwrap();
    // An implicit parent never overrides a tree's directory.
    map.add_file("/etc/extra", inline("x"), EntryMeta::default())
        .unwrap();
    assert_eq!(
        listing(&map),
        [
            "bin file 644 0:0",
            "etc dir 711 0:0",
            "etc/conf file 644 0:0",
            "etc/conf.d file 644 0:0",
            "etc/extra file 644 0:0",
        ]
    );
    // The tree's root directory at its destination, and links to its files.
    let mut nested = FileMap::new();
    nested.add_host_dir(first.path(), "/opt/app").unwrap();
    nested
        .add_hardlink("/opt/link", "/opt/app/etc/conf")
        .unwrap();
    assert_eq!(
        listing(&nested)[..3],
        [
            "opt dir 755 0:0",
            "opt/app dir 755 0:0",
            "opt/app/bin dir 700 0:0",
        ]
    );
    assert!(listing(&nested).contains(&"opt/link hardlink->opt/app/etc/conf 644 0:0".into()));
}

#[test]
fn hardlinks_need_a_regular_file_target() {
    let mut map = FileMap::new();
    map.add_file("/bin/busybox", inline("bb"), EntryMeta::default())
        .unwrap();
    map.add_hardlink("/bin/sh", "/bin/busybox").unwrap();
    // A link to a link points at the file itself.
    map.add_hardlink("/bin/ash", "bin/sh").unwrap();
    map.add_dir("/d", EntryMeta::default()).unwrap();
    for (dest, target) in [
        ("/x", "/d"),
        ("/y", "/missing"),
        ("/bin/busybox", "/bin/sh"),
    ] {
        let err = map.add_hardlink(dest, target).unwrap_err();
        assert!(matches!(err, FileMapError::HardlinkTarget { .. }), "{err}");
    }
    assert_eq!(
        listing(&map),
        [
            "bin dir 755 0:0",
            "bin/ash hardlink->bin/busybox 644 0:0",
            "bin/busybox file 644 0:0",
            "bin/sh hardlink->bin/busybox 644 0:0",
            "d dir 755 0:0",
        ]
    );
}
