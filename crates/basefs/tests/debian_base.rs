//! The base index of a real Debian bookworm minbase (mmdebstrap, imported by podman) against
//! the same image unpacked by umoci: the same paths, types, modes, owners, sizes, times and
//! symlink targets; and a second build on the same base reads no blob.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use layerize_basefs::{index_image, Capture, FsIndex, Kind, LayerCache};
use layerize_manifest::{Descriptor, Digest, Image};
use layerize_registry::{read_blob, OciLayout, Store};
use support::images::{layout, Format, Image as BaseImage, TAG};
use support::tools;

/// What both sides can say about a path.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Regular files only.
    size: u64,
    /// Regular files only: directories' times move as their children are unpacked.
    mtime: i64,
    link: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_of_debian_bookworm_matches_its_unpacked_rootfs() {
    let base = layout(BaseImage::Debian, Format::Oci);
    let store = OciLayout::open(base.path(), Some(TAG.to_owned())).unwrap();
    let layers = layers_of(&store).await;
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(cache_dir.path());
    let capture = [
        Capture {
            path: "/usr/lib/os-release".into(),
            max_bytes: 64 << 10,
        },
        Capture {
            path: "/var/lib/dpkg/status".into(),
            max_bytes: 16 << 20,
        },
    ];
    let cold = index_image(&store, &layers, Some(&cache), &capture)
        .await
        .unwrap();
    assert_eq!(cold.stats.layers_read, layers.len());
    assert_eq!(cold.stats.layers_from_cache, 0);

    let bundle = support::scratch_dir();
    let image = format!("{}:{TAG}", base.path().display());
    let unpacked = bundle.path().join("bundle");
    tools::run(
        tools::command("umoci")
            .args(["unpack", "--image", &image])
            .arg(&unpacked),
    );
    let rootfs = unpacked.join("rootfs");

    let expected = walk(&rootfs);
    let actual = seen_in_index(&cold.index);
    assert!(expected.len() > 4000, "a minbase has thousands of paths");
    let missing: Vec<&String> = expected
        .keys()
        .filter(|p| !actual.contains_key(*p))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    let differing: Vec<_> = expected
        .iter()
        .filter(|(path, seen)| actual[*path] != **seen)
        .map(|(path, seen)| format!("{path}: unpacked {seen:?}, indexed {:?}", actual[path]))
        .take(10)
        .collect();
    assert!(differing.is_empty(), "{differing:#?}");

    let bin = cold.index.get("bin").unwrap();
    assert_eq!((bin.kind, bin.link), (Kind::Symlink, "usr/bin"));
    let tmp = cold.index.get("tmp").unwrap();
    assert_eq!((tmp.kind, tmp.mode), (Kind::Dir, 0o1777));
    assert_eq!(cold.index.get("usr/bin/sh").unwrap().kind, Kind::Symlink);
    assert_eq!(
        cold.index.get("dev/null").map(|entry| entry.kind),
        expected.get("dev/null").map(|seen| seen.kind)
    );
    for path in ["usr/lib/os-release", "var/lib/dpkg/status"] {
        let on_disk = std::fs::read(rootfs.join(path)).unwrap();
        assert_eq!(cold.files[path], on_disk, "{path}");
    }
    assert!(String::from_utf8_lossy(&cold.files["usr/lib/os-release"]).contains("bookworm"));

    let warm = index_image(&store, &layers, Some(&cache), &capture)
        .await
        .unwrap();
    assert_eq!(warm.stats.layers_read, 0);
    assert_eq!(warm.stats.blob_bytes_read, 0);
    assert_eq!(warm.stats.layers_from_cache, layers.len());
    assert_eq!(warm.index, cold.index);
    assert_eq!(warm.files, cold.files);
}

/// The tagged image's layer descriptors and diffIDs, base first.
async fn layers_of(store: &OciLayout) -> Vec<(Descriptor, Digest)> {
    let manifest = store.get_manifest(TAG).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let config_digest: Digest = json["config"]["digest"].as_str().unwrap().parse().unwrap();
    let config = read_blob(store, &config_digest, 1 << 20).await.unwrap();
    let image = Image::from_json(&manifest.bytes, &config).unwrap();
    image.layers().into_iter().zip(image.diff_ids()).collect()
}

fn walk(root: &Path) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                pending.push(path.clone());
                Kind::Dir
            } else if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_file() {
                Kind::File
            } else if file_type.is_char_device() {
                Kind::Char
            } else if file_type.is_block_device() {
                Kind::Block
            } else if file_type.is_fifo() {
                Kind::Fifo
            } else {
                panic!("{}: unexpected file type {file_type:?}", path.display());
            };
            let link = if kind == Kind::Symlink {
                std::fs::read_link(&path)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            } else {
                String::new()
            };
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let is_file = kind == Kind::File;
            seen.insert(
                relative,
                Seen {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: if is_file { meta.len() } else { 0 },
                    mtime: if is_file { meta.mtime() } else { 0 },
                    link,
                },
            );
        }
    }
    seen
}

/// The index as an unpacked tree shows it: a hard link is the file it shares an inode with.
fn seen_in_index(index: &FsIndex) -> BTreeMap<String, Seen> {
    index
        .iter()
        .map(|entry| {
            let file = match entry.kind {
                Kind::Hardlink => index.get(entry.link).expect("hard link target"),
                _ => entry,
            };
            let is_file = file.kind == Kind::File;
            let seen = Seen {
                kind: file.kind,
                mode: file.mode,
                uid: file.uid,
                gid: file.gid,
                size: file.size,
                mtime: if is_file { file.mtime as i64 } else { 0 },
                link: if file.kind == Kind::Symlink {
                    file.link.to_owned()
                } else {
                    String::new()
                },
            };
            (entry.path.to_owned(), seen)
        })
        .collect()
}
