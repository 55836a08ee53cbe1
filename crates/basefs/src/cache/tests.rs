//! The layer cache: round trips, and files it must not trust (truncated, damaged, older,
//! another layer's).

use std::ffi::OsString;
use std::path::PathBuf;

use layerize_manifest::Digest;
use tar::EntryType;

use super::*;
use crate::test_tar::TarWriter;
use crate::{read_layer, Capture, CaptureSet};

/// A layer with every kind of record, flags, a root opaque whiteout and a captured file.
fn rich_layer() -> (Digest, LayerIndex) {
    let tar = TarWriter::new()
        .opaque("")
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=debian\n", 0o644)
        .file("etc/gone", b"", 0o644)
        .whiteout("etc/gone")
        .whiteout("var/old")
        .opaque("srv")
        .symlink("bin", "usr/bin")
        .hardlink("etc/os-release2", "etc/os-release")
        .special("dev/null", EntryType::Char, 1, 3)
        .file("snowman-\u{2603}", b"", 0o600)
        .finish();
    let diff_id = Digest::sha256(&tar);
    let capture = CaptureSet::new(&[Capture {
        path: "etc/os-release".into(),
        max_bytes: 100,
    }])
    .unwrap();
    let layer = read_layer(&tar[..], &diff_id, &capture).unwrap();
    assert!(layer.settled.hides_root);
    assert_eq!(layer.captured.len(), 1);
    (diff_id, layer)
}

#[test]
fn a_stored_layer_loads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(dir.path());
    let (diff_id, layer) = rich_layer();
    assert!(cache.load(&diff_id).is_none());
    cache.store(&diff_id, &layer).unwrap();
    let path = cache.path(&diff_id);
    assert_eq!(
        path,
        dir.path().join("basefs/v1/sha256").join(diff_id.hex())
    );
    let loaded = cache.load(&diff_id).unwrap();
    assert_eq!(loaded, layer);
    assert_eq!(loaded.settled.table.unused_arena_bytes(), 0);
    // Written again over itself, and nothing but the one file left in the directory.
    cache.store(&diff_id, &loaded).unwrap();
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, [OsString::from(diff_id.hex())]);
}

#[test]
fn a_read_only_cache_loads_but_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (diff_id, layer) = rich_layer();
    let read_only = LayerCache::new(dir.path()).read_only();
    read_only.store(&diff_id, &layer).unwrap();
    assert!(!dir.path().join("basefs").exists());
    LayerCache::new(dir.path()).store(&diff_id, &layer).unwrap();
    let path = read_only.path(&diff_id);
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(read_only.load(&diff_id).unwrap(), layer);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
}

#[test]
fn truncated_or_damaged_files_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(dir.path());
    let (diff_id, layer) = rich_layer();
    cache.store(&diff_id, &layer).unwrap();
    let path = cache.path(&diff_id);
    let good = std::fs::read(&path).unwrap();
    for len in (0..good.len()).step_by(7).chain([good.len() - 1]) {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(cache.load(&diff_id).is_none(), "truncated to {len}");
    }
    for at in (0..good.len()).step_by(5) {
        let mut damaged = good.clone();
        damaged[at] ^= 0x20;
        std::fs::write(&path, &damaged).unwrap();
        assert!(cache.load(&diff_id).is_none(), "byte {at} flipped");
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(cache.load(&diff_id).is_none(), "a byte appended");
    std::fs::write(&path, &good).unwrap();
    assert_eq!(cache.load(&diff_id).unwrap(), layer);
}

/// A well-formed file with a valid checksum is still refused when its version or diffID is not
/// the expected one, or its records break the order the merge relies on.
#[test]
fn other_versions_layers_and_disordered_records_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(dir.path());
    let (diff_id, layer) = rich_layer();
    let rewrite = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut body = Vec::new();
        encode(&mut body, &diff_id, &layer).unwrap();
        edit(&mut body);
        let checksum = Digest::sha256(&body);
        body.extend_from_slice(&hex_bytes(checksum.hex()));
        std::fs::create_dir_all(cache.path(&diff_id).parent().unwrap()).unwrap();
        std::fs::write(cache.path(&diff_id), body).unwrap();
        cache.load(&diff_id)
    };
    assert_eq!(rewrite(&|_| {}).unwrap(), layer);
    assert!(rewrite(&|body| body[16] = 0).is_none(), "version 0");
    assert!(rewrite(&|body| body[20] ^= 1).is_none(), "another diffID");
    let first_record = HEADER_BYTES as usize;
    let second_record = first_record + RECORD_BYTES as usize;
    assert!(
        rewrite(&|body| {
            let (first, rest) = body[first_record..].split_at_mut(RECORD_BYTES as usize);
            first.swap_with_slice(&mut rest[..RECORD_BYTES as usize]);
        })
        .is_none(),
        "records swapped"
    );
    assert!(
        rewrite(&|body| body[second_record + 38] = 9).is_none(),
        "unknown slot"
    );

    // The file of one layer renamed to another's name.
    let other = Digest::sha256(b"other");
    std::fs::copy(cache.path(&diff_id), cache.path(&other)).unwrap();
    assert!(cache.load(&other).is_none());
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_default_directory_follows_xdg_then_home() {
    let dir = |xdg: Option<&str>, home: Option<&str>| {
        cache_dir_from(xdg.map(OsString::from), home.map(OsString::from))
    };
    assert_eq!(
        dir(Some("/x/cache"), Some("/home/u")),
        Some(PathBuf::from("/x/cache/layerize"))
    );
    assert_eq!(
        dir(Some("relative"), Some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/layerize"))
    );
    assert_eq!(
        dir(None, Some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/layerize"))
    );
    assert_eq!(dir(None, None), None);
    assert_eq!(dir(Some(""), Some("")), None);
}
