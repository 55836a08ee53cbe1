//! Indexing images from a real OCI layout store: warm caches, late captures, hard links, and
//! blobs or cache files that must be refused.

use std::path::PathBuf;

use bytes::Bytes;
use layerize_manifest::media_type::{
    DOCKER_FOREIGN_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
};
use layerize_manifest::{Descriptor, Digest};
use layerize_registry::{BlobBody, OciLayout, Store};
use tempfile::TempDir;

use super::*;
use crate::test_tar::{gzip, zstd, TarWriter};
use crate::{LayerCache, LayerError, TarDir};

struct Fixture {
    dir: TempDir,
    layout: OciLayout,
    cache: LayerCache,
    layers: Vec<(Descriptor, Digest)>,
}

impl Fixture {
    /// A layout holding these layer tars, compressed as their media types say.
    async fn new(tars: &[(Vec<u8>, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path().join("layout"), None).unwrap();
        let mut layers = Vec::new();
        for (tar, media_type) in tars {
            let blob = match *media_type {
                OCI_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => gzip(tar),
                OCI_LAYER_ZSTD => zstd(tar),
                _ => tar.clone(),
            };
            let descriptor = Descriptor::new(*media_type, Digest::sha256(&blob), blob.len() as u64);
            let body = BlobBody::Bytes(Bytes::from(blob));
            layout
                .put_blob(&descriptor.digest, descriptor.size, body)
                .await
                .unwrap();
            layers.push((descriptor, Digest::sha256(tar)));
        }
        let cache = LayerCache::new(dir.path().join("cache"));
        Fixture {
            dir,
            layout,
            cache,
            layers,
        }
    }

    async fn index(&self, capture: &[(&str, u64)]) -> Result<BaseFs, BaseFsError> {
        let capture: Vec<Capture> = capture
            .iter()
            .map(|(path, max_bytes)| Capture {
                path: (*path).to_owned(),
                max_bytes: *max_bytes,
            })
            .collect();
        index_image(&self.layout, &self.layers, Some(&self.cache), &capture).await
    }

    fn blob_path(&self, layer: usize) -> PathBuf {
        let digest = &self.layers[layer].0.digest;
        self.dir
            .path()
            .join("layout/blobs/sha256")
            .join(digest.hex())
    }
}

fn stats(from_cache: usize, read: usize, bytes: u64) -> IndexStats {
    IndexStats {
        layers_from_cache: from_cache,
        layers_read: read,
        blob_bytes_read: bytes,
    }
}

/// Three layers: a base, an update with a whiteout and a new os-release, and a plain tar.
async fn three_layers() -> Fixture {
    let base = TarWriter::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"VERSION=11\n", 0o644)
        .file("etc/motd", b"hello\n", 0o644)
        .file("var/lib/dpkg/status", b"Package: base-files\n", 0o644)
        .finish();
    let update = TarWriter::new()
        .file("etc/os-release", b"VERSION=12\n", 0o644)
        .whiteout("etc/motd")
        .finish();
    Fixture::new(&[
        (base, OCI_LAYER_GZIP),
        (update, OCI_LAYER_ZSTD),
        (app_tar(), OCI_LAYER_TAR),
    ])
    .await
}

fn app_tar() -> Vec<u8> {
    TarWriter::new()
        .dir("srv", 0o750)
        .file("srv/app", b"#!/bin/sh\n", 0o755)
        .finish()
}

#[tokio::test]
async fn a_warm_cache_gives_the_same_index_and_files_without_reading_a_blob() {
    let fixture = three_layers().await;
    let asked = [("/etc/os-release", 100), ("var/lib/dpkg/status", 100)];
    let cold = fixture.index(&asked).await.unwrap();
    let blob_bytes = fixture.layers.iter().map(|(d, _)| d.size).sum();
    assert_eq!(cold.stats, stats(0, 3, blob_bytes));
    let paths: Vec<&str> = cold.index.iter().map(|entry| entry.path).collect();
    assert_eq!(
        paths,
        [
            "etc",
            "etc/os-release",
            "srv",
            "srv/app",
            "var",
            "var/lib",
            "var/lib/dpkg",
            "var/lib/dpkg/status"
        ]
    );
    assert_eq!(cold.files["etc/os-release"], b"VERSION=12\n");
    assert_eq!(cold.files["var/lib/dpkg/status"], b"Package: base-files\n");
    assert_eq!(cold.files.len(), 2);

    // Without the blobs, a warm cache is all there is.
    for layer in 0..3 {
        std::fs::remove_file(fixture.blob_path(layer)).unwrap();
    }
    let warm = fixture.index(&asked).await.unwrap();
    assert_eq!(warm.stats, stats(3, 0, 0));
    assert_eq!(warm.index, cold.index);
    assert_eq!(warm.files, cold.files);
}

#[tokio::test]
async fn a_file_asked_for_later_reads_only_the_layer_that_has_it() {
    let fixture = three_layers().await;
    let first = fixture.index(&[]).await.unwrap();
    assert!(first.files.is_empty());

    let asked = [("etc/os-release", 100), ("srv/app", 100)];
    let second = fixture.index(&asked).await.unwrap();
    let second_layer = fixture.layers[1].0.size;
    let third_layer = fixture.layers[2].0.size;
    assert_eq!(second.stats, stats(3, 2, second_layer + third_layer));
    assert_eq!(second.files["etc/os-release"], b"VERSION=12\n");
    assert_eq!(second.files["srv/app"], b"#!/bin/sh\n");

    let third = fixture.index(&asked).await.unwrap();
    assert_eq!(third.stats, stats(3, 0, 0));
    assert_eq!(third.files, second.files);
    // What the earlier read captured is still there for callers asking less.
    let fourth = fixture.index(&asked[..1]).await.unwrap();
    assert_eq!(fourth.stats, stats(3, 0, 0));
}

#[tokio::test]
async fn a_directory_hint_keeps_its_small_files_so_asking_for_them_later_reads_no_layer() {
    let fixture = three_layers().await;
    let first = fixture.index(&[("etc/", 100), ("/srv/", 4)]).await.unwrap();
    assert!(first.files.is_empty(), "a hint is not an ask");
    // srv/app (10 bytes) was over its hint's limit: only its layer is read again.
    assert_late_asks(&fixture, stats(3, 1, fixture.layers[2].0.size)).await;
}

/// Asks for etc/os-release and srv/app of [`three_layers`] by name: their content, and how the
/// layers were read for them.
async fn assert_late_asks(fixture: &Fixture, read: IndexStats) {
    let asked = [("etc/os-release", 100), ("srv/app", 100)];
    let late = fixture.index(&asked).await.unwrap();
    assert_eq!(late.stats, read);
    assert_eq!(late.files["etc/os-release"], b"VERSION=12\n");
    assert_eq!(late.files["srv/app"], b"#!/bin/sh\n");
}

/// The fixture's cache, keeping the tars it reads; where.
fn keep_tars(fixture: &mut Fixture) -> TarDir {
    let tars = TarDir::new(fixture.dir.path().join("tars"));
    fixture.cache = fixture.cache.clone().keeping_tars(tars.clone());
    tars
}

#[tokio::test]
async fn a_cache_keeping_tars_keeps_each_verified_tar_and_reads_it_again_instead_of_the_blob() {
    let mut fixture = three_layers().await;
    let tars = keep_tars(&mut fixture);
    let first = fixture.index(&[]).await.unwrap();
    let blob_bytes = fixture.layers.iter().map(|(d, _)| d.size).sum();
    assert_eq!(first.stats, stats(0, 3, blob_bytes));
    for (descriptor, diff_id) in &fixture.layers {
        let tar = std::fs::read(tars.path(&descriptor.digest)).unwrap();
        assert_eq!(&Digest::sha256(&tar), diff_id, "the uncompressed stream");
    }

    // A late capture reads the kept tars: the blobs are not needed any more.
    for layer in 0..fixture.layers.len() {
        std::fs::remove_file(fixture.blob_path(layer)).unwrap();
    }
    assert_late_asks(&fixture, stats(3, 2, 0)).await;
}

#[tokio::test]
async fn a_tar_is_kept_only_once_verified_and_read_again_only_while_it_verifies() {
    let mut fixture = three_layers().await;
    let tars = keep_tars(&mut fixture);
    // A blob whose stream is not the diffID's: nothing of it is kept.
    let right = fixture.layers[2].1.clone();
    fixture.layers[2].1 = Digest::sha256(b"another stream");
    fixture.index(&[]).await.unwrap_err();
    assert!(!tars.path(&fixture.layers[2].0.digest).exists());

    // A kept tar changed since is not trusted: the blob is read instead, and kept again.
    fixture.layers[2].1 = right;
    fixture.index(&[]).await.unwrap();
    let kept = tars.path(&fixture.layers[1].0.digest);
    std::fs::write(&kept, app_tar()).unwrap();
    let late = fixture.index(&[("etc/os-release", 100)]).await.unwrap();
    assert_eq!(late.files["etc/os-release"], b"VERSION=12\n");
    assert_eq!(late.stats, stats(3, 1, fixture.layers[1].0.size));
    let tar = std::fs::read(&kept).unwrap();
    assert_eq!(Digest::sha256(&tar), fixture.layers[1].1);
}

#[tokio::test]
async fn a_hard_link_is_captured_with_its_target_content() {
    let tar = TarWriter::new()
        .file("usr/bin/perl5.36", b"perl binary", 0o755)
        .hardlink("usr/bin/perl", "usr/bin/perl5.36")
        .finish();
    let fixture = Fixture::new(&[(tar, OCI_LAYER_GZIP)]).await;
    let asked = [("usr/bin/perl", 100)];
    let cold = fixture.index(&asked).await.unwrap();
    assert_eq!(cold.files["usr/bin/perl"], b"perl binary");
    // The target was not asked for at first: the layer is read again for it, once.
    assert_eq!(cold.stats.layers_read, 2);
    let warm = fixture.index(&asked).await.unwrap();
    assert_eq!(warm.stats, stats(1, 0, 0));
    assert_eq!(warm.files, cold.files);
}

#[tokio::test]
async fn a_file_over_its_limit_is_an_error() {
    let fixture = three_layers().await;
    let error = fixture.index(&[("etc/os-release", 4)]).await.unwrap_err();
    assert!(
        matches!(&error, BaseFsError::CaptureTooLarge { path, size: 11, limit: 4 } if path == "etc/os-release"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_blob_with_another_diff_id_is_refused_and_not_cached() {
    let mut fixture = three_layers().await;
    fixture.layers[1].1 = Digest::sha256(b"what the config says");
    let error = fixture.index(&[]).await.unwrap_err();
    let layer = fixture.layers[1].0.digest.clone();
    match &error {
        BaseFsError::Layer {
            layer: named,
            source: LayerError::DiffIdMismatch { .. },
        } => assert_eq!(named, &layer),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains(layer.as_str()), "{error}");
    assert!(!fixture.cache.path(&fixture.layers[1].1).exists());
}

#[tokio::test]
async fn a_blob_that_is_not_the_one_named_is_refused() {
    // The right content compressed another way: the diffID matches, the size does not.
    let fixture = three_layers().await;
    std::fs::write(fixture.blob_path(2), gzip(&app_tar())).unwrap();
    let error = fixture.index(&[]).await.unwrap_err();
    let layer = fixture.layers[2].0.digest.clone();
    assert!(
        matches!(&error, BaseFsError::BlobSizeMismatch { layer: named, .. } if *named == layer),
        "{error:?}"
    );

    // Same size and content, another gzip header time: only the digest tells.
    let fixture = three_layers().await;
    let mut blob = std::fs::read(fixture.blob_path(0)).unwrap();
    blob[4] ^= 1;
    std::fs::write(fixture.blob_path(0), &blob).unwrap();
    let error = fixture.index(&[]).await.unwrap_err();
    assert!(
        matches!(error, BaseFsError::BlobDigestMismatch { .. }),
        "{error:?}"
    );

    // A plain tar changed in its trailing zero block: only the diffID tells.
    let tar = TarWriter::new().dir("etc", 0o755).finish();
    assert_eq!(tar.len(), 1536);
    let plain = Fixture::new(&[(tar.clone(), OCI_LAYER_TAR)]).await;
    let mut changed = tar;
    changed[1100] = 1;
    std::fs::write(plain.blob_path(0), &changed).unwrap();
    let error = plain.index(&[]).await.unwrap_err();
    assert!(
        matches!(
            error,
            BaseFsError::Layer {
                source: LayerError::DiffIdMismatch { .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_foreign_layer_is_refused_by_name_before_any_read() {
    let tar = TarWriter::new().file("Files/x", b"", 0o644).finish();
    let fixture = Fixture::new(&[(tar, DOCKER_FOREIGN_LAYER_GZIP)]).await;
    std::fs::remove_file(fixture.blob_path(0)).unwrap();
    let error = fixture.index(&[]).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, BaseFsError::ForeignLayer { .. }),
        "{error:?}"
    );
    assert!(
        message.contains(fixture.layers[0].0.digest.as_str()),
        "{message}"
    );
    assert!(message.contains("foreign"), "{message}");
}

#[tokio::test]
async fn a_damaged_cache_file_is_rebuilt() {
    let fixture = three_layers().await;
    fixture.index(&[]).await.unwrap();
    let cached = fixture.cache.path(&fixture.layers[0].1);
    let bytes = std::fs::read(&cached).unwrap();
    std::fs::write(&cached, &bytes[..bytes.len() - 10]).unwrap();
    let rebuilt = fixture.index(&[]).await.unwrap();
    assert_eq!(rebuilt.stats, stats(2, 1, fixture.layers[0].0.size));
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    assert_eq!(fixture.index(&[]).await.unwrap().stats, stats(3, 0, 0));
}

#[tokio::test]
async fn a_missing_blob_is_an_error_naming_the_layer() {
    let fixture = three_layers().await;
    std::fs::remove_file(fixture.blob_path(1)).unwrap();
    let error = fixture.index(&[]).await.unwrap_err();
    assert!(
        matches!(&error, BaseFsError::Store { layer, .. } if *layer == fixture.layers[1].0.digest)
    );
}
