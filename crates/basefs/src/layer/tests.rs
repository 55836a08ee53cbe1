//! Reading single layers from synthetic tars: member kinds, names, whiteouts, compression,
//! the diffID check and captures.

use layerize_manifest::Digest;
use tar::EntryType;

use crate::test_tar::{gzip, layer, listing, stack, zstd, TarWriter};
use crate::{merge, read_layer, Capture, CaptureSet, Kind, LayerError, MemberError, PathError};

fn captures(paths: &[(&str, u64)]) -> CaptureSet {
    let captures: Vec<Capture> = paths
        .iter()
        .map(|(path, max_bytes)| Capture {
            path: (*path).to_owned(),
            max_bytes: *max_bytes,
        })
        .collect();
    CaptureSet::new(&captures).unwrap()
}

fn read(tar: &[u8]) -> Result<crate::LayerIndex, LayerError> {
    read_layer(tar, &Digest::sha256(tar), &CaptureSet::default())
}

#[test]
fn records_every_kind_with_its_metadata() {
    let mut tar = TarWriter::new();
    tar.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0\n", 0o644);
    tar.uid = 1000;
    tar.gid = 100;
    tar.mtime = 1_234_567_890;
    tar.dir("tmp", 0o1777)
        .file("usr/bin/su", b"#!", 0o4755)
        .symlink("bin", "usr/bin")
        .hardlink("usr/bin/su2", "./usr/bin/su")
        .special("dev/null", EntryType::Char, 1, 3)
        .special("dev/sda", EntryType::Block, 8, 0)
        .special("run/initctl", EntryType::Fifo, 0, 0);
    let index = merge([layer(&tar.finish())]).unwrap();
    assert_eq!(
        listing(&index),
        [
            "bin Symlink 777 1000:100 -> usr/bin",
            "dev Dir 755 0:0",
            "dev/null Char 666 1000:100",
            "dev/sda Block 666 1000:100",
            "etc Dir 755 0:0",
            "etc/passwd File 644 0:0",
            "run Dir 755 0:0",
            "run/initctl Fifo 666 1000:100",
            "tmp Dir 1777 1000:100",
            "usr Dir 755 0:0",
            "usr/bin Dir 755 0:0",
            "usr/bin/su File 4755 1000:100",
            "usr/bin/su2 Hardlink 644 1000:100 -> usr/bin/su",
        ]
    );
    let passwd = index.get("etc/passwd").unwrap();
    assert_eq!((passwd.size, passwd.mtime), (11, 1_700_000_000));
    assert_eq!(index.get("tmp").unwrap().mtime, 1_234_567_890);
    assert_eq!(index.get("bin").unwrap().size, 0);
    // Implicit parents: 0755 root, time zero.
    assert_eq!(index.get("usr").unwrap().mtime, 0);
}

#[test]
fn normalises_member_names_and_refuses_escapes() {
    let mut tar = TarWriter::new();
    tar.raw_name(b"./a//b")
        .raw_name(b"/abs/x")
        .raw_name(b"c/./d/../e");
    tar.raw_name(b"./").raw_name(b"olddir/");
    let index = merge([layer(&tar.finish())]).unwrap();
    let paths: Vec<&str> = index.iter().map(|entry| entry.path).collect();
    assert_eq!(paths, ["a", "a/b", "abs", "abs/x", "c", "c/e", "olddir"]);
    assert_eq!(index.get("olddir").unwrap().kind, Kind::Dir);

    let escape = TarWriter::new().raw_name(b"a/../../etc/passwd").finish();
    let error = read(&escape).unwrap_err();
    assert!(
        matches!(
            &error,
            LayerError::Member { path, source: MemberError::Path(PathError::EscapesRoot { .. }) }
                if path == "a/../../etc/passwd"
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("leaves the root"), "{error}");

    let hardlink_escape = TarWriter::new()
        .file("a", b"", 0o644)
        .hardlink("b", "../a")
        .finish();
    let error = read(&hardlink_escape).unwrap_err();
    assert!(error.to_string().contains("link target"), "{error}");
}

#[test]
fn reads_gnu_long_names_and_pax_records() {
    let long_dir = "d".repeat(150);
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    let long_target = format!("/{}", "t".repeat(200));
    let mut tar = TarWriter::new();
    tar.file(&long_file, b"x", 0o600)
        .symlink("short", &long_target)
        .pax(&[
            ("path", "pax/named/file"),
            ("uid", "70000"),
            ("mtime", "1700000123.25"),
        ])
        .file("ignored-name", b"pax", 0o640)
        .pax(&[("linkpath", "pax-target")])
        .symlink("pax-link", "ignored-target");
    let index = merge([layer(&tar.finish())]).unwrap();
    assert_eq!(index.get(&long_file).unwrap().size, 1);
    assert_eq!(index.get("short").unwrap().link, long_target);
    let pax = index.get("pax/named/file").unwrap();
    assert_eq!(
        (pax.uid, pax.mtime, pax.mode),
        (70000, 1_700_000_123, 0o640)
    );
    assert!(index.get("ignored-name").is_none());
    assert_eq!(index.get("pax-link").unwrap().link, "pax-target");
}

#[test]
fn reads_empty_numeric_fields_as_zero_and_refuses_garbage() {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::Directory);
    header.set_path("usr").unwrap();
    header.set_mode(0o755);
    header.set_size(0);
    header.set_cksum();
    let tar = TarWriter::new().raw(&header, b"").finish();
    let index = merge([layer(&tar)]).unwrap();
    let usr = index.get("usr").unwrap();
    assert_eq!((usr.uid, usr.gid, usr.mtime, usr.mode), (0, 0, 0, 0o755));

    header.as_old_mut().uid.copy_from_slice(b"12x4567\0");
    header.set_cksum();
    let tar = TarWriter::new().raw(&header, b"").finish();
    let error = read(&tar).unwrap_err();
    assert!(
        matches!(&error, LayerError::Member { path, source: MemberError::Header(_) } if path == "usr"),
        "{error:?}"
    );
}

#[test]
fn the_same_layer_reads_alike_plain_gzip_and_zstd() {
    let tar = TarWriter::new()
        .dir("a", 0o700)
        .file("a/b", &[7; 70_000], 0o644)
        .symlink("c", "a/b")
        .finish();
    let diff_id = Digest::sha256(&tar);
    let plain = read_layer(&tar[..], &diff_id, &CaptureSet::default()).unwrap();
    for blob in [gzip(&tar), zstd(&tar)] {
        let layer = read_layer(&blob[..], &diff_id, &CaptureSet::default()).unwrap();
        assert_eq!(layer, plain);
    }
    assert_eq!(plain.len(), 3);
}

#[test]
fn refuses_a_layer_whose_diff_id_differs() {
    let tar = TarWriter::new().file("a", b"x", 0o644).finish();
    let expected = Digest::sha256(b"another layer");
    let error = read_layer(&gzip(&tar)[..], &expected, &CaptureSet::default()).unwrap_err();
    match error {
        LayerError::DiffIdMismatch {
            expected: said,
            actual,
        } => {
            assert_eq!(said, expected);
            assert_eq!(actual, Digest::sha256(&tar));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_truncated_and_corrupt_blobs() {
    let tar = TarWriter::new().file("a", &[1; 4000], 0o644).finish();
    let diff_id = Digest::sha256(&tar);
    let blob = gzip(&tar);
    let truncated = &blob[..blob.len() / 2];
    assert!(matches!(
        read_layer(truncated, &diff_id, &CaptureSet::default()),
        Err(LayerError::Read(_))
    ));
    let cut_tar = &tar[..1000];
    assert!(read_layer(cut_tar, &diff_id, &CaptureSet::default()).is_err());
}

#[test]
fn a_later_member_at_the_same_path_wins() {
    let tar = TarWriter::new()
        .file("a", b"first", 0o644)
        .symlink("a", "elsewhere")
        .dir("d", 0o700)
        .dir("d", 0o750)
        .finish();
    let index = merge([layer(&tar)]).unwrap();
    assert_eq!(
        listing(&index),
        ["a Symlink 777 0:0 -> elsewhere", "d Dir 750 0:0"]
    );
}

#[test]
fn whiteouts_and_opaque_whiteouts_apply_to_lower_layers() {
    let base = TarWriter::new()
        .dir("etc", 0o755)
        .file("etc/keep", b"", 0o644)
        .file("etc/gone", b"", 0o644)
        .dir("srv/data", 0o755)
        .file("srv/data/old", b"", 0o644)
        .dir("opt/tree", 0o711)
        .file("opt/tree/deep/file", b"", 0o644)
        .finish();
    let upper = TarWriter::new()
        .whiteout("etc/gone")
        .whiteout("etc/never-there")
        .dir("srv/data", 0o700)
        .opaque("srv/data")
        .file("srv/data/new", b"", 0o644)
        .whiteout("opt/tree")
        .finish();
    assert_eq!(
        listing(&stack(&[base, upper])),
        [
            "etc Dir 755 0:0",
            "etc/keep File 644 0:0",
            "opt Dir 755 0:0",
            "srv Dir 755 0:0",
            "srv/data Dir 700 0:0",
            "srv/data/new File 644 0:0",
        ]
    );
}

#[test]
fn an_opaque_whiteout_without_its_directory_keeps_the_lower_one() {
    let base = TarWriter::new()
        .dir("tmp", 0o1777)
        .file("tmp/old", b"", 0o644)
        .finish();
    let upper = TarWriter::new()
        .file("tmp/-early", b"", 0o644)
        .opaque("tmp")
        .file("tmp/new", b"", 0o644)
        .finish();
    assert_eq!(
        listing(&stack(&[base.clone(), upper])),
        [
            "tmp Dir 1777 0:0",
            "tmp/-early File 644 0:0",
            "tmp/new File 644 0:0",
        ]
    );
    let everything = TarWriter::new()
        .opaque("")
        .file("only", b"", 0o644)
        .finish();
    assert_eq!(listing(&stack(&[base, everything])), ["only File 644 0:0"]);
}

#[test]
fn a_file_replacing_a_directory_hides_its_children() {
    let base = TarWriter::new()
        .dir("usr/lib", 0o755)
        .file("usr/lib/a", b"", 0o644)
        .dir("usr/share", 0o755)
        .file("usr/share/b", b"", 0o644)
        .finish();
    let upper = TarWriter::new()
        .file("usr/lib", b"now a file", 0o600)
        .dir("usr/share", 0o700)
        .finish();
    assert_eq!(
        listing(&stack(&[base, upper])),
        [
            "usr Dir 755 0:0",
            "usr/lib File 600 0:0",
            "usr/share Dir 700 0:0",
            "usr/share/b File 644 0:0",
        ]
    );
}

#[test]
fn a_path_under_a_lower_symlink_or_file_gets_an_implicit_directory() {
    let base = TarWriter::new()
        .dir("usr/bin", 0o755)
        .file("usr/bin/sh", b"", 0o755)
        .symlink("bin", "usr/bin")
        .file("etc", b"", 0o644)
        .finish();
    let upper = TarWriter::new()
        .file("bin/x", b"", 0o755)
        .file("etc/y", b"", 0o644)
        .finish();
    assert_eq!(
        listing(&stack(&[base, upper])),
        [
            "bin Dir 755 0:0",
            "bin/x File 755 0:0",
            "etc Dir 755 0:0",
            "etc/y File 644 0:0",
            "usr Dir 755 0:0",
            "usr/bin Dir 755 0:0",
            "usr/bin/sh File 755 0:0",
        ]
    );
}

#[test]
fn skips_aufs_bookkeeping_and_refuses_empty_whiteouts() {
    let tar = TarWriter::new()
        .dir(".wh..wh.plnk", 0o700)
        .file(".wh..wh.aufs", b"", 0o644)
        .file("a", b"", 0o644)
        .finish();
    let index = merge([layer(&tar)]).unwrap();
    assert_eq!(listing(&index), ["a File 644 0:0"]);

    let empty = TarWriter::new().file("dir/.wh.", b"", 0o644).finish();
    let error = read(&empty).unwrap_err();
    assert!(
        error.to_string().contains("whiteout names no file"),
        "{error}"
    );
}

#[test]
fn captures_asked_files_within_their_limit() {
    let tar = TarWriter::new()
        .file("etc/os-release", b"old", 0o644)
        .file("etc/os-release", b"ID=debian\n", 0o644)
        .file("var/lib/dpkg/status", &[b's'; 100], 0o644)
        .file("etc/replaced", b"content", 0o644)
        .symlink("etc/replaced", "elsewhere")
        .file("etc/not-asked", b"x", 0o644)
        .finish();
    let asked = captures(&[
        ("/etc/os-release", 64),
        ("var/lib/dpkg/status", 99),
        ("etc/replaced", 64),
        ("etc/absent", 64),
    ]);
    let layer = read_layer(&tar[..], &Digest::sha256(&tar), &asked).unwrap();
    assert_eq!(layer.captured("etc/os-release"), Some(&b"ID=debian\n"[..]));
    assert_eq!(
        layer.captured("var/lib/dpkg/status"),
        None,
        "over its limit"
    );
    assert_eq!(layer.captured("etc/replaced"), None, "no longer a file");
    assert_eq!(layer.captured("etc/not-asked"), None);
    assert_eq!(layer.captured.len(), 1);
}

#[test]
fn changes_list_entries_whiteouts_and_opaque_dirs_in_tree_order() {
    use crate::{Change, PathChange};

    let mut tar = TarWriter::new();
    tar.file("etc/app.conf", b"12345", 0o644)
        .whiteout("etc/motd")
        .opaque("srv")
        .dir("var", 0o755)
        .opaque("var")
        .symlink("bin", "usr/bin");
    let tar = tar.finish();
    let index = layer(&tar);
    let changes: Vec<PathChange<'_>> = index.changes().collect();
    let change = |path, change, size, hides_lower| PathChange {
        path,
        change,
        size,
        hides_lower,
    };
    assert_eq!(
        changes,
        [
            change("bin", Change::Put(Kind::Symlink), 0, true),
            change("etc/app.conf", Change::Put(Kind::File), 5, true),
            change("etc/motd", Change::Whiteout, 0, true),
            change("srv", Change::Opaque, 0, true),
            change("var", Change::Put(Kind::Dir), 0, true),
        ]
    );
    assert!(!index.hides_root());

    let mut tar = TarWriter::new();
    let root_opaque = layer(&tar.opaque("").finish());
    assert!(root_opaque.hides_root());
    assert_eq!(root_opaque.changes().count(), 0);
}
