//! Unit tests of file maps on a base: destinations resolved through the base's symlinks, parent
//! metadata from the base, conflicts with the base's directories, host trees split at base
//! symlinks, tar members.

use std::os::unix::fs::PermissionsExt;

use layerize_basefs::{FsIndex, Kind as BaseKind, OwnedEntry};

use super::tests::describe;
use super::*;

/// The mtime of every directory of [`debian_base`]: `BASE_MTIME + n`, n its line in the list.
pub(crate) const BASE_MTIME: u64 = 1_690_000_000;

/// A Debian bookworm-like base: merged /usr, /tmp 1777, setgid /usr/local and /var/mail with
/// their groups, alternatives, library links, and some broken links.
pub(crate) fn debian_base() -> FsIndex {
    let dirs = [
        ("etc", 0o755, 0),
        ("etc/alternatives", 0o755, 0),
        ("opt", 0o755, 0),
        ("srv", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("usr", 0o755, 0),
        ("usr/bin", 0o755, 0),
        ("usr/lib", 0o755, 0),
        ("usr/lib/x86_64-linux-gnu", 0o755, 0),
        ("usr/lib64", 0o755, 0),
        ("usr/local", 0o2775, 50),
        ("usr/sbin", 0o755, 0),
        ("var", 0o755, 0),
        ("var/mail", 0o2775, 8),
    ];
    let links = [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
        ("usr/bin/sh", "dash"),
        ("usr/bin/editor", "/etc/alternatives/editor"),
        ("etc/alternatives/editor", "/usr/bin/vim.basic"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2.3"),
        ("srv/loop", "loop"),
        ("srv/up", "../../x"),
        ("srv/data", "/opt/data"),
    ];
    let files = [
        "etc/passwd",
        "usr/bin/dash",
        "usr/bin/vim.basic",
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "usr/lib/x86_64-linux-gnu/libbar.so.1",
    ];
    let entry = |path: &str, kind, mode, gid, mtime, link: &str| OwnedEntry {
        path: path.to_owned(),
        kind,
        mode,
        uid: 0,
        gid,
        mtime,
        size: 0,
        link: link.to_owned(),
    };
    let dirs = dirs
        .iter()
        .zip(1..)
        .map(|((path, mode, gid), n)| entry(path, BaseKind::Dir, *mode, *gid, BASE_MTIME + n, ""));
    let links = links
        .iter()
        .map(|(path, target)| entry(path, BaseKind::Symlink, 0o777, 0, 1, target));
    let files = files
        .iter()
        .map(|path| entry(path, BaseKind::File, 0o644, 0, 1, ""));
    FsIndex::from_entries(dirs.chain(links).chain(files))
}

fn on_debian() -> FileMap {
    FileMap::on_base(Arc::new(debian_base()))
}

/// `path kind mode uid:gid mtime` for every entry (`-`: the layer's mtime), in tar order.
fn lines(map: &FileMap) -> Vec<String> {
    map.entries()
        .map(|item| {
            let (path, entry) = item.unwrap();
            let mtime = entry
                .mtime
                .map_or("-".to_owned(), |mtime| mtime.to_string());
            format!("{} {mtime}", describe(&path, &entry))
        })
        .collect()
}

fn inline(text: &str) -> FileSource {
    FileSource::Inline(text.as_bytes().to_vec())
}

fn file(map: &mut FileMap, dest: &str) -> Result<(), FileMapError> {
    map.add_file(dest, inline(dest), EntryMeta::default())
}

/// A host tree of these files (and their directories, 0700 unless listed in `dirs`).
fn tree(files: &[&str], dirs: &[(&str, u32)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for path in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    for path in walk_dirs(dir.path()) {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for (path, mode) in dirs {
        let path = dir.path().join(path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dirs.extend(walk_dirs(&path));
        }
    }
    dirs
}

#[test]
fn files_land_through_base_symlinks_under_the_base_parents() {
    let mut map = on_debian();
    let meta = EntryMeta {
        mode: Some(0o755),
        ..EntryMeta::default()
    };
    map.add_file("/bin/app", inline("app"), meta).unwrap();
    file(&mut map, "/tmp/x").unwrap();
    file(&mut map, "/usr/local/bin/tool").unwrap();
    assert_eq!(
        lines(&map),
        [
            "tmp dir 1777 0:0 1690000005",
            "tmp/x file 644 0:0 -",
            "usr dir 755 0:0 1690000006",
            "usr/bin dir 755 0:0 1690000007",
            "usr/bin/app file 755 0:0 -",
            "usr/local dir 2775 0:50 1690000011",
            // New to the image: 0755 root, the layer's mtime.
            "usr/local/bin dir 755 0:0 -",
            "usr/local/bin/tool file 644 0:0 -",
        ]
    );
    // Hardlink targets resolve too; a file at a base symlink replaces the link.
    map.add_hardlink("/sbin/app", "/bin/app").unwrap();
    file(&mut map, "/usr/bin/editor").unwrap();
    let listed = lines(&map);
    assert!(listed.contains(&"usr/sbin/app hardlink->usr/bin/app 755 0:0 -".to_owned()));
    assert!(listed.contains(&"usr/bin/editor file 644 0:0 -".to_owned()));
    assert!(!listed
        .iter()
        .any(|line| line.starts_with("bin") || line.contains("vim")));
}

#[test]
fn deletions_land_through_base_symlinks_and_delete_links_themselves() {
    let mut map = on_debian();
    map.delete("/lib/x86_64-linux-gnu/libfoo.so.1").unwrap();
    map.delete("/bin").unwrap();
    assert_eq!(
        lines(&map),
        [
            ".wh.bin file 644 0:0 -",
            "usr dir 755 0:0 1690000006",
            "usr/lib dir 755 0:0 1690000008",
            "usr/lib/x86_64-linux-gnu dir 755 0:0 1690000009",
            "usr/lib/x86_64-linux-gnu/.wh.libfoo.so.1 file 644 0:0 -",
        ]
    );
    // With /bin deleted, the layer's /bin is a directory of its own.
    file(&mut map, "/bin/x").unwrap();
    assert!(lines(&map).contains(&"bin dir 755 0:0 -".to_owned()));
    assert!(lines(&map).contains(&"bin/x file 644 0:0 -".to_owned()));
}

#[test]
fn directory_destinations_follow_base_symlinks() {
    let mut map = on_debian();
    map.add_dir("/lib64", EntryMeta::default()).unwrap();
    map.make_opaque("/lib").unwrap();
    // A dangling link leads where its target would be.
    map.add_dir("/srv/data", EntryMeta::default()).unwrap();
    assert_eq!(
        lines(&map),
        [
            "opt dir 755 0:0 1690000003",
            "opt/data dir 755 0:0 -",
            "usr dir 755 0:0 1690000006",
            "usr/lib dir 755 0:0 1690000008",
            "usr/lib/.wh..wh..opq file 644 0:0 -",
            "usr/lib64 dir 755 0:0 -",
        ]
    );
}

#[test]
fn deleted_base_directories_come_back_new() {
    let mut map = on_debian();
    file(&mut map, "/var/mail/kept").unwrap();
    map.delete("/usr/local").unwrap();
    file(&mut map, "/usr/local/bin/tool").unwrap();
    let listed = lines(&map);
    assert!(listed.contains(&"var/mail dir 2775 0:8 1690000014".to_owned()));
    assert!(listed.contains(&"usr/.wh.local file 644 0:0 -".to_owned()));
    assert!(listed.contains(&"usr/local dir 755 0:0 -".to_owned()));
}

#[test]
fn base_directories_and_non_directories_do_not_replace_each_other_silently() {
    let mut map = on_debian();
    let err = file(&mut map, "/etc").unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc is a directory in the base image but a file in this layer; \
         delete it first (--delete /etc) to replace it"
    );
    let err = map
        .add_dir("/etc/passwd", EntryMeta::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/passwd is a file in the base image but a directory in this layer; \
         delete it first (--delete /etc/passwd) to replace it"
    );
    let err = map
        .add_symlink("/usr/local", "/opt", EntryMeta::default())
        .unwrap_err();
    assert!(matches!(err, FileMapError::BaseConflict { .. }), "{err}");
    let err = map.make_opaque("/etc/passwd").unwrap_err();
    assert!(matches!(err, FileMapError::BaseConflict { .. }), "{err}");
    let err = file(&mut map, "/etc/passwd/x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "resolving /etc/passwd/x: /etc/passwd is not a directory (in the base image)"
    );
    assert!(map.is_empty());

    // Deleted first, or below an opaque directory: meant.
    map.delete("/etc/passwd").unwrap();
    file(&mut map, "/etc/passwd/x").unwrap();
    map.make_opaque("/usr/lib").unwrap();
    file(&mut map, "/usr/lib/x86_64-linux-gnu").unwrap();
    map.delete("/var").unwrap();
    file(&mut map, "/var").unwrap();
    // A base symlink is replaced by anything but a directory.
    map.add_symlink("/sbin", "usr/local/sbin", EntryMeta::default())
        .unwrap();
    assert_eq!(
        lines(&map),
        [
            ".wh.var file 644 0:0 -",
            "etc dir 755 0:0 1690000001",
            "etc/.wh.passwd file 644 0:0 -",
            "etc/passwd dir 755 0:0 -",
            "etc/passwd/x file 644 0:0 -",
            "sbin symlink->usr/local/sbin 777 0:0 -",
            "usr dir 755 0:0 1690000006",
            "usr/lib dir 755 0:0 1690000008",
            "usr/lib/.wh..wh..opq file 644 0:0 -",
            "usr/lib/x86_64-linux-gnu file 644 0:0 -",
            "var file 644 0:0 -",
        ]
    );
    // Deleted afterwards is too late: the add already failed.
    let mut late = on_debian();
    assert!(file(&mut late, "/etc").is_err());
    // Made opaque first, the directory itself may go too.
    late.make_opaque("/etc").unwrap();
    file(&mut late, "/etc").unwrap();
    assert_eq!(lines(&late), ["etc file 644 0:0 -"]);
}

#[test]
fn loops_and_escapes_in_the_base_are_errors_where_they_are_followed() {
    let mut map = on_debian();
    let err = file(&mut map, "/srv/loop/x").unwrap_err();
    assert!(
        matches!(
            err,
            FileMapError::Resolve(layerize_basefs::ResolveError::Loop { .. })
        ),
        "{err}"
    );
    assert!(map.add_dir("/srv/loop", EntryMeta::default()).is_err());
    let err = map.delete("/srv/up/x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "resolving /srv/up/x: the symlink /srv/up -> ../../x points above the image root \
         (in the base image)"
    );
    // The links themselves can be replaced.
    file(&mut map, "/srv/loop").unwrap();
    file(&mut map, "/srv/up").unwrap();
    assert_eq!(lines(&map).len(), 3);
}

#[test]
fn symlinks_of_the_layer_are_still_refused_as_parents() {
    let mut map = on_debian();
    map.add_symlink("/bin", "/opt", EntryMeta::default())
        .unwrap();
    let err = file(&mut map, "/bin/x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "/bin/x has a symlink parent /bin inside the layer"
    );
}

#[test]
fn host_tree_directories_at_base_symlinks_land_at_their_targets() {
    let rootfs = tree(
        &["bin/app", "bin/sub/inner", "etc/app.conf"],
        &[("etc", 0o750)],
    );
    let mut map = on_debian();
    map.add_host_dir(rootfs.path(), "/").unwrap();
    map.validate().unwrap();
    assert_eq!(
        lines(&map),
        [
            "etc dir 750 0:0 -",
            "etc/app.conf file 644 0:0 -",
            "usr dir 755 0:0 1690000006",
            // The directory reached through the link keeps the base's metadata, as a root.
            "usr/bin dir 755 0:0 1690000007",
            "usr/bin/app file 644 0:0 -",
            "usr/bin/sub dir 700 0:0 -",
            "usr/bin/sub/inner file 644 0:0 -",
        ]
    );
    // Lookups see the tree where it lands.
    let err = file(&mut map, "/usr/bin/app/x").unwrap_err();
    assert!(
        matches!(err, FileMapError::ParentNotDirectory { .. }),
        "{err}"
    );
    map.delete("/bin/sub/inner").unwrap();
    assert!(!lines(&map).contains(&"usr/bin/sub/inner file 644 0:0 -".to_owned()));
}

#[test]
fn host_trees_merge_with_what_their_link_targets_hold() {
    let rootfs = tree(
        &[
            "bin/app",
            "usr/bin/other",
            "lib64/ld.so",
            "sbin",
            "usr/sbin/x",
        ],
        &[("usr", 0o755), ("usr/bin", 0o711)],
    );
    let mut map = on_debian();
    map.add_host_dir(rootfs.path(), "/").unwrap();
    map.validate().unwrap();
    assert_eq!(
        lines(&map),
        [
            // A file at a base symlink replaces the link; nothing is written through it.
            "sbin file 644 0:0 -",
            "usr dir 755 0:0 -",
            // The tree's own directory wins over the one reached through /bin.
            "usr/bin dir 711 0:0 -",
            "usr/bin/app file 644 0:0 -",
            "usr/bin/other file 644 0:0 -",
            "usr/lib64 dir 755 0:0 1690000010",
            "usr/lib64/ld.so file 644 0:0 -",
            "usr/sbin dir 700 0:0 -",
            "usr/sbin/x file 644 0:0 -",
        ]
    );
    // The same path twice in one tree is refused.
    let both = tree(&["bin/dash", "usr/bin/dash"], &[]);
    let mut map = on_debian();
    map.add_host_dir(both.path(), "/").unwrap();
    let err = map.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "/usr/bin/dash would be written twice by one host directory, \
             once through the base's symlink /bin (from {})",
            both.path().join("bin").display()
        )
    );
}

#[test]
fn host_tree_roots_keep_the_base_directory() {
    let dir = tree(&["tool"], &[]);
    let mut map = on_debian();
    map.add_host_dir(dir.path(), "/tmp").unwrap();
    map.add_host_dir(dir.path(), "/bin").unwrap();
    map.add_host_dir(dir.path(), "/opt/new").unwrap();
    assert_eq!(
        lines(&map),
        [
            "opt dir 755 0:0 1690000003",
            // New to the image: the source directory's mode, as without a base.
            "opt/new dir 700 0:0 -",
            "opt/new/tool file 644 0:0 -",
            "tmp dir 1777 0:0 1690000005",
            "tmp/tool file 644 0:0 -",
            "usr dir 755 0:0 1690000006",
            "usr/bin dir 755 0:0 1690000007",
            "usr/bin/tool file 644 0:0 -",
        ]
    );
}

#[test]
fn host_trees_over_base_directories_are_checked_before_writing() {
    let files_over_dirs = tree(&["etc", "usr/lib/x86_64-linux-gnu/libbar.so.1/x"], &[]);
    let mut map = on_debian();
    map.add_host_dir(files_over_dirs.path(), "/").unwrap();
    let err = map.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc is a directory in the base image but a file in this layer; \
         delete it first (--delete /etc) to replace it"
    );
    // Deleted first: meant. The directory over a base file is next.
    let mut map = on_debian();
    map.delete("/etc").unwrap();
    map.add_host_dir(files_over_dirs.path(), "/").unwrap();
    let err = map.validate().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/usr/lib/x86_64-linux-gnu/libbar.so.1 is a file in the base image"),
        "{err}"
    );
    let mut map = on_debian();
    map.delete("/etc").unwrap();
    map.delete("/lib/x86_64-linux-gnu/libbar.so.1").unwrap();
    map.add_host_dir(files_over_dirs.path(), "/").unwrap();
    map.validate().unwrap();
    // A tree whose directory meets a looping or escaping base link fails when added.
    for (path, expected) in [("srv/loop/x", "symlinks followed"), ("srv/up/x", "above")] {
        let bad = tree(&[path], &[]);
        let err = on_debian().add_host_dir(bad.path(), "/").unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    // A host tree at a base file, or whose link leads to one.
    let dir = tree(&["x"], &[]);
    let err = on_debian()
        .add_host_dir(dir.path(), "/etc/passwd")
        .unwrap_err();
    assert!(matches!(err, FileMapError::BaseConflict { .. }), "{err}");
    let editor = tree(&["usr/bin/editor/x"], &[]);
    let err = on_debian().add_host_dir(editor.path(), "/").unwrap_err();
    assert!(
        err.to_string().starts_with("/usr/bin/vim.basic is a file"),
        "{err}"
    );
}

/// A tar of `(name, type, mode, link)` members, each file with its name as content.
fn tar_of(members: &[(&str, tar::EntryType, u32, &str)]) -> tempfile::NamedTempFile {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, entry_type, mode, link) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*entry_type);
        header.set_mode(*mode);
        let content = if entry_type.is_file() {
            name.as_bytes()
        } else {
            b""
        };
        header.set_size(content.len() as u64);
        if link.is_empty() {
            builder.append_data(&mut header, name, content).unwrap();
        } else {
            builder.append_link(&mut header, name, link).unwrap();
        }
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), builder.into_inner().unwrap()).unwrap();
    file
}

#[test]
fn tar_members_are_resolved_like_other_adds() {
    use tar::EntryType::{Directory, Link, Regular};
    let tar = tar_of(&[
        ("./bin/", Directory, 0o700, ""),
        ("./bin/tool", Regular, 0o755, ""),
        ("./lib/.wh.libgone", Regular, 0o644, ""),
        ("./sbin/tool2", Link, 0o755, "./bin/tool"),
        ("./usr/bin/editor", Regular, 0o644, ""),
    ]);
    let mut map = on_debian();
    map.add_tar(tar.path()).unwrap();
    assert_eq!(
        lines(&map),
        [
            "usr dir 755 0:0 1690000006",
            // The tar's own directory entry, written where the link leads.
            "usr/bin dir 700 0:0 -",
            "usr/bin/editor file 644 0:0 -",
            "usr/bin/tool file 755 0:0 -",
            "usr/lib dir 755 0:0 1690000008",
            "usr/lib/.wh.libgone file 644 0:0 -",
            "usr/sbin dir 755 0:0 1690000012",
            "usr/sbin/tool2 hardlink->usr/bin/tool 755 0:0 -",
        ]
    );
    // A tar's whiteout counts as a deletion for the members after it.
    let replaced = tar_of(&[
        ("etc/.wh.alternatives", Regular, 0o644, ""),
        ("etc/alternatives", Regular, 0o644, ""),
    ]);
    on_debian().add_tar(replaced.path()).unwrap();
    let bad = tar_of(&[("etc", Regular, 0o644, "")]);
    let err = on_debian().add_tar(bad.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tar {}: /etc is a directory in the base image but a file in this layer; \
             delete it first (--delete /etc) to replace it",
            bad.path().display()
        )
    );
}

#[test]
fn the_same_base_and_adds_give_the_same_entries() {
    let rootfs = tree(&["bin/app", "etc/app.conf", "lib64/ld.so"], &[]);
    let build = |map: &mut FileMap| {
        map.add_host_dir(rootfs.path(), "/").unwrap();
        file(map, "/tmp/x").unwrap();
        map.delete("/lib/x86_64-linux-gnu/libfoo.so.1").unwrap();
        lines(map)
    };
    let first = build(&mut on_debian());
    assert_eq!(first, build(&mut on_debian()));
    // Without the base the same adds are another layer.
    assert_ne!(first, build(&mut FileMap::new()));
}

#[test]
fn hardlinks_of_a_host_tree_hold_across_base_symlinks() {
    let rootfs = tree(&["opt/tool"], &[]);
    std::fs::create_dir(rootfs.path().join("bin")).unwrap();
    std::fs::hard_link(
        rootfs.path().join("opt/tool"),
        rootfs.path().join("bin/tool"),
    )
    .unwrap();
    let mut map = on_debian();
    map.add_host_dir(rootfs.path(), "/").unwrap();
    let listed = lines(&map);
    assert!(
        listed.contains(&"opt/tool file 644 0:0 -".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.contains(&"usr/bin/tool hardlink->opt/tool 644 0:0 -".to_owned()),
        "{listed:?}"
    );
}
