//! Unit tests of host modes in file maps: normalised trees and files are the same whatever the
//! umask that made them, explicit modes and base directories still win, and the flags' `Keep`
//! takes the host's bits.

use std::os::unix::fs::PermissionsExt;

use super::base_tests::debian_base;
use super::tests::listing;
use super::*;
use crate::layer::recipe::{apply, Input};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The same tree as a checkout would leave it under a umask: `bin/tool` executable,
/// `etc/conf` (hardlinked as `etc/conf2`) not, `etc/setuid` set-uid, `bin/sh -> tool`.
/// `dir_mode` and `file_mode` are what the umask gives directories and plain files.
fn checkout(dir_mode: u32, file_mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("bin/tool"), "tool").unwrap();
    std::fs::write(root.join("etc/conf"), "conf").unwrap();
    std::fs::hard_link(root.join("etc/conf"), root.join("etc/conf2")).unwrap();
    std::fs::write(root.join("etc/setuid"), "suid").unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/sh")).unwrap();
    chmod(&root.join("bin/tool"), dir_mode);
    chmod(&root.join("etc/conf"), file_mode);
    chmod(&root.join("etc/setuid"), 0o4000 | dir_mode);
    for sub in ["bin", "etc", ""] {
        chmod(&root.join(sub), dir_mode);
    }
    dir
}

fn tree_listing(tree: &tempfile::TempDir, modes: HostModes) -> Vec<String> {
    let mut map = FileMap::new();
    map.add_host_dir_with_modes(tree.path(), "/opt/app", modes)
        .unwrap();
    listing(&map)
}

#[test]
fn normalised_host_trees_do_not_depend_on_the_umask() {
    let umask_022 = checkout(0o755, 0o644);
    let umask_002 = checkout(0o775, 0o664);
    let umask_077 = checkout(0o700, 0o600);
    let expected = [
        "opt dir 755 0:0",
        "opt/app dir 755 0:0",
        "opt/app/bin dir 755 0:0",
        "opt/app/bin/sh symlink->tool 777 0:0",
        "opt/app/bin/tool file 755 0:0",
        "opt/app/etc dir 755 0:0",
        "opt/app/etc/conf file 644 0:0",
        "opt/app/etc/conf2 hardlink->opt/app/etc/conf 644 0:0",
        "opt/app/etc/setuid file 755 0:0",
    ];
    for tree in [&umask_022, &umask_002, &umask_077] {
        assert_eq!(tree_listing(tree, HostModes::Normalise), expected);
    }
    // What the flags do: the host's bits, so the umask shows.
    let kept = tree_listing(&umask_002, HostModes::Keep);
    assert!(kept.contains(&"opt/app/etc/conf file 664 0:0".to_owned()));
    assert!(kept.contains(&"opt/app/etc/setuid file 4775 0:0".to_owned()));
    assert_ne!(kept, tree_listing(&umask_022, HostModes::Keep));
}

#[test]
fn normalised_host_files_keep_an_explicit_mode() {
    let tree = checkout(0o775, 0o664);
    let conf = FileSource::Host(tree.path().join("etc/conf"));
    let tool = FileSource::Host(tree.path().join("bin/tool"));
    let setuid = FileSource::Host(tree.path().join("etc/setuid"));
    let explicit = EntryMeta {
        mode: Some(0o4711),
        ..EntryMeta::default()
    };
    let mut map = FileMap::new();
    for (dest, source, meta, modes) in [
        ("/n/conf", &conf, EntryMeta::default(), HostModes::Normalise),
        ("/n/tool", &tool, EntryMeta::default(), HostModes::Normalise),
        (
            "/n/setuid",
            &setuid,
            EntryMeta::default(),
            HostModes::Normalise,
        ),
        ("/n/explicit", &setuid, explicit, HostModes::Normalise),
        ("/k/conf", &conf, EntryMeta::default(), HostModes::Keep),
    ] {
        map.add_file_with_modes(dest, source.clone(), meta, modes)
            .unwrap();
    }
    // `add_file` is `Keep`.
    map.add_file("/k/setuid", setuid, EntryMeta::default())
        .unwrap();
    assert_eq!(
        listing(&map),
        [
            "k dir 755 0:0",
            "k/conf file 664 0:0",
            "k/setuid file 4775 0:0",
            "n dir 755 0:0",
            "n/conf file 644 0:0",
            "n/explicit file 4711 0:0",
            "n/setuid file 755 0:0",
            "n/tool file 755 0:0",
        ]
    );
}

#[test]
fn links_to_files_of_a_normalised_tree_get_the_normalised_mode() {
    let tree = checkout(0o775, 0o664);
    let mut map = FileMap::new();
    map.add_host_dir_with_modes(tree.path(), "/opt/app", HostModes::Normalise)
        .unwrap();
    map.add_hardlink("/opt/tool-link", "/opt/app/bin/tool")
        .unwrap();
    let listed = listing(&map);
    assert!(listed.contains(&"opt/app/bin/tool file 755 0:0".to_owned()));
    assert!(listed.contains(&"opt/tool-link hardlink->opt/app/bin/tool 755 0:0".to_owned()));
}

#[test]
fn normalised_tree_roots_keep_the_base_directory() {
    let tree = checkout(0o700, 0o600);
    let mut map = FileMap::on_base(Arc::new(debian_base()));
    map.add_host_dir_with_modes(tree.path(), "/tmp", HostModes::Normalise)
        .unwrap();
    map.add_host_dir_with_modes(tree.path(), "/opt/new", HostModes::Normalise)
        .unwrap();
    let listed = listing(&map);
    assert!(
        listed.contains(&"tmp dir 1777 0:0".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.contains(&"opt/new dir 755 0:0".to_owned()),
        "{listed:?}"
    );
    assert!(listed.contains(&"tmp/etc/conf file 644 0:0".to_owned()));
}

#[test]
fn inputs_carry_their_host_modes_into_the_map() {
    let tree = checkout(0o775, 0o664);
    let inputs = [
        Input::Dir {
            source: tree.path().to_owned(),
            dest: "/normalised".into(),
            modes: HostModes::Normalise,
        },
        Input::File {
            source: FileSource::Host(tree.path().join("etc/conf")),
            dest: "/kept".into(),
            meta: EntryMeta::default(),
            modes: HostModes::Keep,
        },
        Input::File {
            source: FileSource::Host(tree.path().join("etc/conf")),
            dest: "/file".into(),
            meta: EntryMeta::default(),
            modes: HostModes::Normalise,
        },
    ];
    let mut map = FileMap::new();
    apply(&inputs, &mut map).unwrap();
    let listed = listing(&map);
    for line in [
        "file file 644 0:0",
        "kept file 664 0:0",
        "normalised dir 755 0:0",
        "normalised/etc/conf file 644 0:0",
    ] {
        assert!(listed.contains(&line.to_owned()), "{line}: {listed:?}");
    }
}
