//! Unit tests of the entry kinds beyond files, directories and links, in written layers: devices
//! and FIFOs of host trees, sockets, whiteout names in host trees and in tars, and extended
//! attributes from tars. Device nodes need root, as the test suite runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::filemap::{EntryMeta, FileMap, FileMapError, FileSource};
use super::tests::{build, decompress, members, options};
use super::{write_layer, Compression, LayerError};

fn run(command: &mut Command) {
    let status = command.status().expect("start a coreutils tool");
    assert!(status.success(), "{command:?} failed: {status}");
}

fn mknod(path: &Path, kind: &str, major: u32, minor: u32, mode: u32) {
    run(Command::new("mknod")
        .arg("-m")
        .arg(format!("{mode:o}"))
        .arg(path)
        .arg(kind)
        .arg(major.to_string())
        .arg(minor.to_string()));
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The members of the layer `map` makes.
fn layer_members(map: &FileMap) -> Vec<String> {
    let (_, blob) = build(map, &options(Compression::default(), 1));
    members(&decompress(&blob))
}

/// A `dev/` like the one debootstrap and mmdebstrap make, with a block device whose numbers need
/// more than the 8 bits of the old `dev_t` encoding, and a FIFO.
fn device_tree() -> tempfile::TempDir {
    let tree = tempfile::tempdir().unwrap();
    let dev = tree.path().join("dev");
    mkdir(&dev);
    mknod(&dev.join("null"), "c", 1, 3, 0o666);
    mknod(&dev.join("console"), "c", 5, 1, 0o600);
    mknod(&dev.join("nvme0n1p1"), "b", 259, 1_000_000, 0o660);
    run(Command::new("mkfifo")
        .args(["-m", "640"])
        .arg(dev.join("initctl")));
    tree
}

#[test]
fn host_trees_carry_devices_and_fifos_with_their_numbers() {
    let tree = device_tree();
    let mut map = FileMap::new();
    map.add_host_dir(tree.path(), "/").unwrap();
    assert_eq!(
        layer_members(&map),
        [
            "dev/ Directory 755 0:0 1700000000",
            "dev/console Char 600 0:0 1700000000 5:1",
            "dev/initctl Fifo 640 0:0 1700000000",
            "dev/null Char 666 0:0 1700000000 1:3",
            "dev/nvme0n1p1 Block 660 0:0 1700000000 259:1000000",
        ]
    );
}

#[test]
fn a_host_tree_and_gnu_tars_archive_of_it_make_the_same_layer() {
    let tree = device_tree();
    std::fs::write(tree.path().join("dev/.keep"), "").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut from_dir = FileMap::new();
    from_dir.add_host_dir(tree.path(), "/").unwrap();
    let (from_dir, _) = build(&from_dir, &options(Compression::default(), 1));
    // POSIX format: GNU tar adds PAX time records, which are not kept either.
    for format in ["gnu", "posix"] {
        let archive = scratch.path().join(format!("{format}.tar"));
        run(Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-C")
            .arg(tree.path())
            .arg("-cf")
            .arg(&archive)
            .arg("."));
        let mut from_tar = FileMap::new();
        from_tar.add_tar(&archive).unwrap();
        let (from_tar, _) = build(&from_tar, &options(Compression::default(), 1));
        assert_eq!(from_tar, from_dir, "{format}");
    }
}

#[test]
fn sockets_in_host_trees_are_skipped() {
    let tree = tempfile::tempdir().unwrap();
    mkdir(&tree.path().join("run"));
    let _socket = std::os::unix::net::UnixListener::bind(tree.path().join("run/app.sock")).unwrap();
    std::fs::write(tree.path().join("run/app.pid"), "1\n").unwrap();
    let mut map = FileMap::new();
    map.add_host_dir(tree.path(), "/").unwrap();
    // Not in the layer even as a parent: what the socket would have hidden can be added.
    map.add_file(
        "/run/app.sock/x",
        FileSource::Inline(b"x".to_vec()),
        EntryMeta::default(),
    )
    .unwrap();
    let mut listed = layer_members(&map);
    listed.retain(|line| !line.starts_with("run/app.pid"));
    assert_eq!(
        listed,
        [
            "run/ Directory 755 0:0 1700000000",
            "run/app.sock/ Directory 755 0:0 1700000000",
            "run/app.sock/x Regular 644 0:0 1700000000 \"x\"",
        ]
    );
    let mut only_the_tree = FileMap::new();
    only_the_tree.add_host_dir(tree.path(), "/").unwrap();
    assert_eq!(
        layer_members(&only_the_tree),
        [
            "run/ Directory 755 0:0 1700000000",
            "run/app.pid Regular 644 0:0 1700000000 \"1\\n\"",
        ]
    );
}

#[test]
fn whiteout_names_in_host_trees_are_refused() {
    // A file in the tree, and the path named in the error: a directory so named is refused too.
    for (file, named) in [
        ("etc/.wh.passwd", "etc/.wh.passwd"),
        ("var/cache/.wh..wh..opq", "var/cache/.wh..wh..opq"),
        ("usr/.wh.lib/x", "usr/.wh.lib"),
    ] {
        let tree = tempfile::tempdir().unwrap();
        let host = tree.path().join(file);
        mkdir(host.parent().unwrap());
        std::fs::write(&host, "").unwrap();
        let mut map = FileMap::new();
        map.add_host_dir(tree.path(), "/").unwrap();
        let err = write_layer(&map, &options(Compression::default(), 1), Vec::new()).unwrap_err();
        let refused = tree.path().join(named);
        assert!(
            matches!(&err, LayerError::Files(FileMapError::HostWhiteout(path)) if *path == refused),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: a host directory cannot hold whiteout names (`.wh.*`), which would delete \
                 base files; use --delete or --opaque",
                refused.display()
            )
        );
    }
}

/// PAX records as `(key, value)`.
type Records<'a> = &'a [(&'a str, &'a [u8])];

/// A tar of `(name, content)` regular files (empty content: a whiteout) and `name/` directories,
/// each with its PAX records.
fn tar_with(members: &[(&str, &[u8], Records<'_>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content, records) in members {
        if !records.is_empty() {
            builder
                .append_pax_extensions(records.iter().copied())
                .unwrap();
        }
        let mut header = tar::Header::new_ustar();
        let entry_type = if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        };
        header.set_entry_type(entry_type);
        header.set_mode(if name.ends_with('/') { 0o755 } else { 0o644 });
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, name, *content).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn whiteouts_in_tars_stay_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("whiteouts.tar");
    let tar = tar_with(&[
        ("etc/.wh.passwd", b"", &[]),
        ("var/cache/.wh..wh..opq", b"", &[]),
    ]);
    std::fs::write(&archive, tar).unwrap();
    let mut from_tar = FileMap::new();
    from_tar.add_tar(&archive).unwrap();
    assert_eq!(
        layer_members(&from_tar),
        [
            "etc/ Directory 755 0:0 1700000000",
            "etc/.wh.passwd Regular 644 0:0 1700000000",
            "var/ Directory 755 0:0 1700000000",
            "var/cache/ Directory 755 0:0 1700000000",
            "var/cache/.wh..wh..opq Regular 644 0:0 1700000000",
        ]
    );
    // The very bytes of layerize's own deletion and opaque directory.
    let mut own = FileMap::new();
    own.delete("/etc/passwd").unwrap();
    own.make_opaque("/var/cache").unwrap();
    let layer = |map: &FileMap| build(map, &options(Compression::default(), 1)).0;
    assert_eq!(layer(&from_tar), layer(&own));
}

/// A file capability as `setcap cap_dac_override,cap_fowner+ep` writes it (`vfs_cap_data`
/// revision 2): binary, with NUL bytes and a newline.
const CAPABILITY: &[u8] =
    b"\x01\x00\x00\x02\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

#[test]
fn tar_xattrs_are_kept_as_sorted_pax_records() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("xattrs.tar");
    let tar = tar_with(&[
        (
            "usr/bin/ping",
            b"ELF",
            &[
                ("mtime", b"1796144419.415145298"),
                ("SCHILY.xattr.user.comment", b"a=b\n\0c"),
                ("SCHILY.xattr.security.capability", CAPABILITY),
            ],
        ),
        ("usr/share/", b"", &[("SCHILY.xattr.user.dir", b"1")]),
        ("usr/share/plain", b"p", &[("atime", b"1")]),
    ]);
    std::fs::write(&archive, tar).unwrap();
    let mut map = FileMap::new();
    map.add_tar(&archive).unwrap();
    let (written, blob) = build(&map, &options(Compression::default(), 1));
    let layer = decompress(&blob);
    assert_eq!(
        members(&layer),
        [
            "usr/ Directory 755 0:0 1700000000",
            "usr/bin/ Directory 755 0:0 1700000000",
            "usr/bin/ping Regular 644 0:0 1700000000 \"ELF\"",
            "usr/share/ Directory 755 0:0 1700000000",
            "usr/share/plain Regular 644 0:0 1700000000 \"p\"",
        ]
    );
    // The extended headers of `usr/bin/ping` and `usr/share/`: only the attributes, sorted by
    // name, each record counting its own bytes.
    let mut raw = tar::Archive::new(&layer[..]);
    let pax: Vec<Vec<u8>> = raw
        .entries()
        .unwrap()
        .raw(true)
        .filter_map(|entry| {
            let mut entry = entry.unwrap();
            (entry.header().entry_type() == tar::EntryType::XHeader).then(|| {
                let mut records = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut records).unwrap();
                records
            })
        })
        .collect();
    let mut ping = b"57 SCHILY.xattr.security.capability=".to_vec();
    ping.extend_from_slice(CAPABILITY);
    ping.extend_from_slice(b"\n36 SCHILY.xattr.user.comment=a=b\n\0c\n");
    assert_eq!(pax, [ping, b"27 SCHILY.xattr.user.dir=1\n".to_vec()]);

    // Reading the layer back gives the same layer.
    let again = dir.path().join("again.tar");
    std::fs::write(&again, &layer).unwrap();
    let mut reread = FileMap::new();
    reread.add_tar(&again).unwrap();
    assert_eq!(
        build(&reread, &options(Compression::default(), 1)).0,
        written
    );
}

#[test]
fn a_tar_xattr_without_a_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bad.tar");
    let tar = tar_with(&[("f", b"x", &[("SCHILY.xattr.", b"v")])]);
    std::fs::write(&archive, tar).unwrap();
    let err = FileMap::new().add_tar(&archive).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tar {}: f: PAX record \"SCHILY.xattr.\" names no extended attribute",
            archive.display()
        )
    );
}

#[test]
fn a_pax_size_the_tar_crate_misses_is_an_error_not_a_misread() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("sized.tar");
    // The `tar` crate stops reading records at the newline value and takes the header's size.
    let records: Records<'_> = &[("SCHILY.xattr.user.nl", b"\n"), ("size", b"5")];
    std::fs::write(&archive, tar_with(&[("f", b"abc", records)])).unwrap();
    let err = FileMap::new().add_tar(&archive).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tar {}: f: its PAX size 5 is not the 3 bytes read",
            archive.display()
        )
    );
}
