//! The layout as a [`Store`]: manifests by tag or digest, blobs read and written, blobs of
//! another layout hard-linked (the layout's analogue of a cross-repository mount).

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, TryStreamExt};
use layerize_manifest::{Digest, ManifestKind};
use tokio_util::io::ReaderStream;

use super::blob_writer::{FileOrigin, Placed};
use super::{check_ref_name, OciLayout, INDEX_FILE, MAX_MANIFEST_SIZE, READ_CHUNK};
use crate::store::{BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};

impl OciLayout {
    /// Reads a manifest blob whole, refusing anything too large to be a manifest.
    async fn read_manifest_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let operation = format!("read manifest {digest}");
        let size = match tokio::fs::metadata(&path).await {
            Ok(metadata) => metadata.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    store: self.name.clone(),
                    what: format!("manifest {digest}"),
                })
            }
            Err(e) => return Err(self.io_error(operation, e)),
        };
        if size > MAX_MANIFEST_SIZE {
            return Err(self.failed(
                operation,
                format!("{size} bytes is too large for a manifest (limit {MAX_MANIFEST_SIZE})"),
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| self.io_error(operation, e))?;
        self.check_digest(digest, Digest::sha256(&bytes))?;
        Ok(bytes)
    }

    pub(super) fn file_stream(&self, file: tokio::fs::File, path: &Path) -> BlobStream {
        let store = self.name.clone();
        let operation = format!("read {}", path.display());
        Box::pin(
            ReaderStream::with_capacity(file, READ_CHUNK).map_err(move |source| StoreError::Io {
                store: store.clone(),
                operation: operation.clone(),
                source,
            }),
        )
    }
}

#[async_trait]
impl Store for OciLayout {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// `reference` is a tag, a digest, or `""` for the tag the layout was opened with (or its
    /// only image).
    async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, StoreError> {
        let index = self.read_index().await?;
        let (digest, descriptor) = match reference.parse::<Digest>() {
            Ok(digest) => {
                let descriptor = index
                    .manifests
                    .iter()
                    .find(|entry| entry.digest == digest.as_str());
                (digest, descriptor)
            }
            Err(_) => {
                let descriptor = self.select(&index, reference)?;
                let digest = descriptor
                    .digest
                    .parse::<Digest>()
                    .map_err(|e| self.failed(format!("read {INDEX_FILE}"), e.to_string()))?;
                (digest, Some(descriptor))
            }
        };
        let bytes = self.read_manifest_blob(&digest).await?;
        if let Some(descriptor) = descriptor {
            if descriptor.size != bytes.len() as u64 {
                return Err(self.failed(
                    format!("read manifest {digest}"),
                    format!(
                        "{INDEX_FILE} says {} bytes, the blob has {}",
                        descriptor.size,
                        bytes.len()
                    ),
                ));
            }
        }
        let media_type =
            manifest_media_type(&bytes, descriptor.and_then(|d| d.media_type.as_deref()))
                .map_err(|message| self.failed(format!("read manifest {digest}"), message))?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, StoreError> {
        let path = self.blob_path(digest);
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(self.file_stream(file, &path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                store: self.name.clone(),
                what: format!("blob {digest}"),
            }),
            Err(e) => Err(self.io_error(format!("read blob {digest}"), e)),
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(metadata) => Ok(metadata.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io_error(format!("look up blob {digest}"), e)),
        }
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: BlobBody,
    ) -> Result<PutOutcome, StoreError> {
        if self.has_blob(digest).await? {
            return Ok(PutOutcome::Existed);
        }
        let placed = match body {
            BlobBody::Bytes(bytes) => {
                let body = Box::pin(stream::once(async { Ok(bytes) }));
                self.write_verified(digest, size, body).await?
            }
            BlobBody::Stream(body) => self.write_verified(digest, size, body).await?,
            BlobBody::File(path) => {
                self.place_file(digest, size, &path, FileOrigin::HandedOver)
                    .await?
            }
            BlobBody::Spooled(path) => {
                self.place_file(digest, size, &path, FileOrigin::Spooled)
                    .await?
            }
        };
        // A built layer that is hard-linked in is still new content for this layout: it counts
        // as uploaded. Only blobs taken from another store count as mounted.
        Ok(match placed {
            Placed::AlreadyThere => PutOutcome::Existed,
            Placed::Linked | Placed::Written => PutOutcome::Uploaded { bytes: size },
        })
    }

    async fn copy_blob_from(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
    ) -> Result<PutOutcome, StoreError> {
        if self.has_blob(digest).await? {
            return Ok(PutOutcome::Existed);
        }
        let placed = match source.as_any().downcast_ref::<OciLayout>() {
            Some(layout) => {
                if !layout.has_blob(digest).await? {
                    return Err(StoreError::NotFound {
                        store: layout.name(),
                        what: format!("blob {digest}"),
                    });
                }
                self.place_file(
                    digest,
                    size,
                    &layout.blob_path(digest),
                    FileOrigin::OtherLayout,
                )
                .await?
            }
            None => {
                let body = source.get_blob(digest).await?;
                self.write_verified(digest, size, body).await?
            }
        };
        // A hard link is the layout's analogue of a cross-repository mount.
        Ok(match placed {
            Placed::AlreadyThere => PutOutcome::Existed,
            Placed::Linked => PutOutcome::Mounted,
            Placed::Written => PutOutcome::Uploaded { bytes: size },
        })
    }

    /// Layers spooled into `blobs/` are hard-linked into place instead of copied.
    fn spool_dir(&self) -> Option<PathBuf> {
        Some(self.root.join("blobs"))
    }

    /// `reference` is a tag (`""` for the layout's own tag, or an untagged entry when it has
    /// none) or a digest, which stores the manifest without an `index.json` entry (the
    /// children of an image index).
    async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, StoreError> {
        let digest = Digest::sha256(bytes);
        let operation = format!("put manifest {digest}");
        let declared = manifest_media_type(bytes, Some(media_type))
            .map_err(|message| self.failed(operation.clone(), message))?;
        if declared != media_type {
            return Err(self.failed(
                operation,
                format!("the manifest declares mediaType {declared:?} but is being written as {media_type:?}"),
            ));
        }
        // None: stored by digest only; Some(None): an untagged entry; Some(Some(tag)): tagged.
        let entry: Option<Option<&str>> = match reference.parse::<Digest>() {
            Ok(requested) => {
                self.check_digest(&requested, digest.clone())?;
                None
            }
            Err(_) if reference.is_empty() => Some(self.tag.as_deref()),
            Err(_) => Some(Some(reference)),
        };
        if let Some(Some(tag)) = entry {
            check_ref_name(tag).map_err(|message| self.failed(operation.clone(), message))?;
        }
        let body = BlobBody::Bytes(Bytes::copy_from_slice(bytes));
        self.put_blob(&digest, bytes.len() as u64, body).await?;
        if let Some(tag) = entry {
            self.add_to_index(tag, media_type, &digest, bytes.len())
                .await?;
        }
        Ok(digest)
    }
}

/// The media type of a manifest: its own `mediaType`, else the descriptor's, else its shape.
fn manifest_media_type(bytes: &[u8], descriptor_type: Option<&str>) -> Result<String, String> {
    ManifestKind::detect(bytes, descriptor_type)
        .map(|kind| kind.media_type().to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::process::Command;

    use serde_json::{json, Value};

    use super::super::test_support::*;
    use super::super::REF_NAME_ANNOTATION;
    use super::*;
    use layerize_manifest::media_type::OCI_INDEX;

    #[tokio::test]
    async fn create_put_get_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "out", Some("v1"));
        assert_eq!(
            fs::read_to_string(dir.path().join("out/oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );

        let layer = vec![7u8; 600 << 10];
        let layer_digest = Digest::sha256(&layer);
        let outcome = layout
            .put_blob(
                &layer_digest,
                layer.len() as u64,
                chunks_body(&layer, 100 << 10),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            PutOutcome::Uploaded {
                bytes: layer.len() as u64
            }
        );
        assert!(layout.has_blob(&layer_digest).await.unwrap());
        assert_eq!(read_all(&layout, &layer_digest).await, layer);
        let (_, again) = put_bytes(&layout, &layer).await;
        assert_eq!(again, PutOutcome::Existed);

        let (bytes, digest) = put_image(&layout, "").await;
        assert_eq!(digest, Digest::sha256(&bytes));
        for reference in ["", "v1", digest.as_str()] {
            let fetched = layout.get_manifest(reference).await.unwrap();
            assert_eq!(fetched.bytes, bytes, "{reference:?}");
            assert_eq!(fetched.digest, digest);
            assert_eq!(fetched.media_type, MANIFEST_TYPE);
        }

        let index = index_json(&layout);
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        assert_eq!(
            index["manifests"],
            json!([{
                "mediaType": MANIFEST_TYPE,
                "digest": digest,
                "size": bytes.len(),
                "annotations": { REF_NAME_ANNOTATION: "v1" },
            }])
        );
        assert_eq!(
            layout.name(),
            format!("oci:{}:v1", dir.path().join("out").display())
        );

        // Reopening the same directory with create keeps what is there.
        let reopened = layout_in(&dir, "out", None);
        assert_eq!(reopened.get_manifest("").await.unwrap().bytes, bytes);
    }

    fn chunks_body(bytes: &[u8], chunk: usize) -> BlobBody {
        chunks(&bytes.chunks(chunk).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn manifests_by_digest_are_stored_without_an_entry_and_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let child = manifest(&Digest::sha256(b"{}"), 2, "child");
        let digest = Digest::sha256(&child);
        let stored = layout
            .put_manifest(digest.as_str(), &child, MANIFEST_TYPE)
            .await
            .unwrap();
        assert_eq!(stored, digest);
        assert_eq!(index_json(&layout)["manifests"], json!([]));
        assert_eq!(
            layout.get_manifest(digest.as_str()).await.unwrap().bytes,
            child
        );

        let wrong = Digest::sha256(b"something else");
        let error = layout
            .put_manifest(wrong.as_str(), &child, MANIFEST_TYPE)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );

        let error = layout
            .put_manifest(
                "t",
                &child,
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("declares mediaType"), "{error}");

        // Without a mediaType field the descriptor, then the shape, decides.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        layout.put_manifest("bare", bare, OCI_INDEX).await.unwrap();
        let fetched = layout.get_manifest("bare").await.unwrap();
        assert_eq!(fetched.media_type, OCI_INDEX);

        fs::write(layout.blob_path(&digest), b"{\"tampered\":true}").unwrap();
        let error = layout.get_manifest(digest.as_str()).await.unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn reads_layouts_written_by_umoci_and_skopeo_and_writes_ones_they_read() {
        let dir = tempfile::tempdir().unwrap();
        let umoci_dir = dir.path().join("umoci");
        let image = |dir: &Path, tag: &str| format!("{}:{tag}", dir.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&umoci_dir));
        run(Command::new("umoci").args(["new", "--image", &image(&umoci_dir, "t")]));
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/hello"), "hello\n").unwrap();
        run(Command::new("umoci")
            .args(["insert", "--rootless", "--image", &image(&umoci_dir, "t")])
            .arg(rootfs.join("etc"))
            .arg("/etc"));
        let skopeo_dir = dir.path().join("skopeo");
        run(Command::new("skopeo").args([
            "copy",
            &format!("oci:{}", image(&umoci_dir, "t")),
            &format!("oci:{}", image(&skopeo_dir, "s")),
        ]));

        for (path, tag) in [(&umoci_dir, "t"), (&skopeo_dir, "s")] {
            let layout = OciLayout::open(path, Some(tag.to_owned())).unwrap();
            let fetched = layout.get_manifest("").await.unwrap();
            assert_eq!(fetched.media_type, MANIFEST_TYPE);
            let manifest: Value = serde_json::from_slice(&fetched.bytes).unwrap();
            let layers = manifest["layers"].as_array().unwrap();
            assert_eq!(layers.len(), 1);
            for descriptor in std::iter::once(&manifest["config"]).chain(layers) {
                let digest: Digest = descriptor["digest"].as_str().unwrap().parse().unwrap();
                let bytes = read_all(&layout, &digest).await;
                assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
                assert_eq!(Digest::sha256(&bytes), digest);
            }
        }

        // Copy the image into layouts of ours under a new tag: skopeo's blobs (0644) are
        // linked, umoci's (0600) copied, so that ours are 0644 without changing theirs.
        let target = layout_in(&dir, "ours", Some("copied"));
        let copied = layout_in(&dir, "copied", None);
        let mut linked_image = None;
        for (source, tag, layout, linked) in [
            (&skopeo_dir, "s", &target, true),
            (&umoci_dir, "t", &copied, false),
        ] {
            let source = OciLayout::open(source, Some(tag.into())).unwrap();
            let manifest = source.get_manifest("").await.unwrap();
            let parsed: Value = serde_json::from_slice(&manifest.bytes).unwrap();
            let descriptors =
                std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().unwrap());
            for descriptor in descriptors {
                let digest: Digest = descriptor["digest"].as_str().unwrap().parse().unwrap();
                let size = descriptor["size"].as_u64().unwrap();
                let outcome = layout.copy_blob_from(&source, &digest, size).await.unwrap();
                let expected = match linked {
                    true => PutOutcome::Mounted,
                    false => PutOutcome::Uploaded { bytes: size },
                };
                assert_eq!(outcome, expected, "{}", source.name());
            }
            if linked {
                linked_image = Some(manifest);
            }
        }
        let fetched = linked_image.unwrap();
        let digest = target
            .put_manifest("", &fetched.bytes, &fetched.media_type)
            .await
            .unwrap();
        assert_eq!(digest, fetched.digest);

        let ours = image(target.path(), "copied");
        let inspected: Value = serde_json::from_str(&run(
            Command::new("skopeo").args(["inspect", &format!("oci:{ours}")])
        ))
        .unwrap();
        assert_eq!(inspected["Digest"], json!(digest));
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
        let stat = run(Command::new("umoci").args(["stat", "--json", "--image", &ours]));
        assert!(stat.contains("history"), "{stat}");
        // skopeo re-reads and verifies every blob when copying out of our layout.
        run(Command::new("skopeo").args([
            "copy",
            &format!("oci:{ours}"),
            &format!("oci:{}", image(&dir.path().join("again"), "x")),
        ]));
    }
}
