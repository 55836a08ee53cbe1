//! The ledger on layers read from real tars.

use layerize_basefs::{read_layer, CaptureSet, LayerIndex};
use layerize_manifest::Digest;
use tar::{EntryType, Header};

use super::*;

/// A tar of these members: `path` with content (a file), `path/` (a directory), `path -> target`
/// (a symlink), or a name with `.wh.` as written.
fn layer(members: &[(&str, &[u8])]) -> LayerIndex {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in members {
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        if let Some(dir) = path.strip_suffix('/') {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, dir, &[][..]).unwrap();
        } else if let Some((link, target)) = path.split_once(" -> ") {
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, link, target).unwrap();
        } else {
            header.set_entry_type(EntryType::Regular);
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, path, *content).unwrap();
        }
    }
    let tar = builder.into_inner().unwrap();
    read_layer(&tar[..], &Digest::sha256(&tar), &CaptureSet::default()).unwrap()
}

fn waste(layers: &[LayerIndex]) -> Waste {
    let mut ledger = Ledger::new();
    for (position, index) in layers.iter().enumerate() {
        ledger.apply(position, index);
    }
    ledger.finish()
}

fn lost(path: &str, size: u64, fate: Fate, by_layer: usize) -> LostCopy {
    LostCopy {
        path: path.to_owned(),
        size,
        fate,
        by_layer,
    }
}

#[test]
fn an_overwritten_file_wastes_every_copy_but_the_survivor() {
    let waste = waste(&[
        layer(&[("etc/", b""), ("etc/app.conf", b"1234567890")]),
        layer(&[("etc/app.conf", b"12345")]),
        layer(&[("etc/app.conf", b"123")]),
    ]);
    assert_eq!(
        waste.lost,
        [
            vec![lost("etc/app.conf", 10, Fate::Overwritten, 1)],
            vec![lost("etc/app.conf", 5, Fate::Overwritten, 2)],
            vec![],
        ]
    );
    assert_eq!(waste.wasted_bytes(), 15);
    assert_eq!(
        waste.paths,
        [PathWaste {
            path: "etc/app.conf".into(),
            copies: 3,
            wasted_bytes: 15,
            surviving_layer: Some(2),
        }]
    );
}

#[test]
fn a_path_deleted_in_the_end_wastes_all_its_copies() {
    let waste = waste(&[
        layer(&[("motd", b"hello")]),
        layer(&[("motd", b"hello again")]),
        layer(&[(".wh.motd", b"")]),
    ]);
    assert_eq!(waste.wasted_bytes(), 16);
    assert_eq!(waste.lost[0], [lost("motd", 5, Fate::Overwritten, 1)]);
    assert_eq!(waste.lost[1], [lost("motd", 11, Fate::Deleted, 2)]);
    assert_eq!(waste.paths[0].copies, 2);
    assert_eq!(waste.paths[0].surviving_layer, None);
}

#[test]
fn whiteouts_of_directories_and_opaque_dirs_lose_everything_below() {
    let waste = waste(&[
        layer(&[
            ("data/a", b"aa"),
            ("data/sub/b", b"bbb"),
            ("data-keep", b"k"),
            ("srv/x", b"xxxx"),
            ("srv/y", b"y"),
        ]),
        layer(&[
            (".wh.data", b""),
            ("srv/", b""),
            ("srv/.wh..wh..opq", b""),
            ("srv/y", b"new"),
        ]),
    ]);
    assert_eq!(
        waste.lost[0],
        [
            lost("data/a", 2, Fate::Deleted, 1),
            lost("data/sub/b", 3, Fate::Deleted, 1),
            lost("srv/x", 4, Fate::Hidden, 1),
            lost("srv/y", 1, Fate::Hidden, 1),
        ]
    );
    assert_eq!(waste.wasted_bytes(), 10);
    let survivor = waste
        .paths
        .iter()
        .find(|path| path.path == "srv/y")
        .unwrap();
    assert_eq!((survivor.copies, survivor.surviving_layer), (2, Some(1)));
}

#[test]
fn replacing_a_directory_or_a_file_on_the_way_loses_what_it_held() {
    let waste = waste(&[
        layer(&[("opt/tool/bin", b"12345678"), ("lib", b"file")]),
        // A symlink where a directory was hides its subtree; a file under a path that was a
        // file turns that file into a directory.
        layer(&[("opt/tool -> /usr", b""), ("lib/x.so", b"so")]),
        // A root opaque whiteout hides everything below.
        layer(&[(".wh..wh..opq", b""), ("new", b"n")]),
    ]);
    assert_eq!(
        waste.lost[0],
        [
            lost("lib", 4, Fate::Overwritten, 1),
            lost("opt/tool/bin", 8, Fate::Hidden, 1),
        ]
    );
    assert_eq!(waste.lost[1], [lost("lib/x.so", 2, Fate::Hidden, 2)]);
    assert!(waste.lost[2].is_empty());
    assert_eq!(waste.wasted_bytes(), 14);
}

#[test]
fn files_only_added_waste_nothing() {
    let waste = waste(&[
        layer(&[("a", b"1"), ("dir/", b""), ("dir/b", b"22")]),
        layer(&[("dir/", b""), ("dir/c", b"333")]),
    ]);
    assert_eq!(waste.wasted_bytes(), 0);
    assert!(waste.paths.is_empty());
}
