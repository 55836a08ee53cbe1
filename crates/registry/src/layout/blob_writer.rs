//! Writing blobs into a layout: streamed into a hidden temporary file in `blobs/` while hashed,
//! or hard-linked from a file, verified (size and sha256) and only then renamed to the blob's
//! name, so that a blob name never holds anything but its content. The one exception is a file
//! this process spooled and hashed as it wrote it ([`BlobBody::Spooled`](crate::BlobBody)): its
//! digest is taken on trust and only its size is checked. Every blob (and metadata file) is mode
//! 0644, as skopeo and umoci write them, whatever the umask or the mode of a file handed over.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use super::{OciLayout, READ_CHUNK, TEMP_PREFIX};
use crate::store::{BlobStream, StoreError};

/// The mode of blobs, `index.json` and `oci-layout`: readable by all, as other tools write them.
const FILE_MODE: u32 = 0o644;

/// How a blob came to be in place; callers turn it into the [`PutOutcome`] of their operation.
pub(super) enum Placed {
    Linked,
    Written,
    AlreadyThere,
}

/// Whose file a blob is placed from, which decides whether a hard link may change its mode and
/// whether its digest is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FileOrigin {
    /// A file handed over to become the blob: it is made 0644 when linked, and verified.
    HandedOver,
    /// A file handed over that this process wrote and hashed as it wrote it (a layer spooled by
    /// the builder, often 0600): made 0644 when linked; only its size is checked.
    Spooled,
    /// A blob of another layout, which is not ours to change: linked only when it is 0644
    /// already, copied otherwise; verified.
    OtherLayout,
}

impl OciLayout {
    /// `blobs/`, where temporary files go so that they are on the file system of the blobs
    /// they become; `blobs/sha256` is made if a layout lacks it.
    fn blobs_dir(&self) -> Result<PathBuf, StoreError> {
        let blobs = self.root.join("blobs");
        let sha256 = blobs.join("sha256");
        fs::create_dir_all(&sha256)
            .map_err(|e| self.io_error(format!("create {}", sha256.display()), e))?;
        Ok(blobs)
    }

    /// Writes a stream to a temporary file while hashing it, and moves it into place only when
    /// size and digest match.
    pub(super) async fn write_verified(
        &self,
        digest: &Digest,
        size: u64,
        mut body: BlobStream,
    ) -> Result<Placed, StoreError> {
        let operation = format!("write blob {digest}");
        let (file, temp_path) = temp_file_builder()
            .tempfile_in(self.blobs_dir()?)
            .map_err(|e| self.io_error(operation.clone(), e))?
            .into_parts();
        set_file_mode(&file).map_err(|e| self.io_error(operation.clone(), e))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if received > size {
                return Err(self.size_mismatch(digest, size, received));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| self.io_error(operation.clone(), e))?;
        }
        if received != size {
            return Err(self.size_mismatch(digest, size, received));
        }
        self.check_digest(digest, Digest::from_sha256_raw(hasher.finalize().into()))?;
        file.flush()
            .await
            .map_err(|e| self.io_error(operation.clone(), e))?;
        file.sync_all()
            .await
            .map_err(|e| self.io_error(operation, e))?;
        drop(file);
        self.commit(temp_path, digest, Placed::Written)
    }

    /// Places the file at `source` as a blob: hard-linked when the file system (and, for
    /// another layout's blob, its mode) allows, copied otherwise; verified either way (a
    /// linked spooled file by its size alone).
    pub(super) async fn place_file(
        &self,
        digest: &Digest,
        size: u64,
        source: &Path,
        origin: FileOrigin,
    ) -> Result<Placed, StoreError> {
        let read_error = |e| self.io_error(format!("read {}", source.display()), e);
        let mode = fs::metadata(source)
            .map_err(read_error)?
            .permissions()
            .mode()
            & 0o7777;
        let linked = match (origin, mode == FILE_MODE) {
            (FileOrigin::OtherLayout, false) => Err(io::Error::other(format!(
                "its mode is {mode:o}, not {FILE_MODE:o}"
            ))),
            _ => temp_file_builder()
                .make_in(self.blobs_dir()?, |temp| fs::hard_link(source, temp))
                .and_then(|linked| {
                    let temp_path = linked.into_temp_path();
                    // One inode: this changes the handed-over file too, as it becomes the blob.
                    fs::set_permissions(&temp_path, fs::Permissions::from_mode(FILE_MODE))?;
                    Ok(temp_path)
                }),
        };
        match linked {
            Ok(temp_path) if origin == FileOrigin::Spooled => {
                let actual_size = fs::metadata(&temp_path).map_err(read_error)?.len();
                if actual_size != size {
                    return Err(self.size_mismatch(digest, size, actual_size));
                }
                self.commit(temp_path, digest, Placed::Linked)
            }
            Ok(temp_path) => {
                let path = temp_path.to_path_buf();
                let (actual_size, actual_digest) =
                    tokio::task::spawn_blocking(move || hash_file(&path))
                        .await
                        .map_err(|e| self.failed(format!("hash {digest}"), e.to_string()))?
                        .map_err(|e| self.io_error(format!("read {}", source.display()), e))?;
                if actual_size != size {
                    return Err(self.size_mismatch(digest, size, actual_size));
                }
                self.check_digest(digest, actual_digest)?;
                self.commit(temp_path, digest, Placed::Linked)
            }
            Err(error) => {
                tracing::debug!(source = %source.display(), %error, "not linked; copying");
                let file = tokio::fs::File::open(source).await.map_err(read_error)?;
                self.write_verified(digest, size, self.file_stream(file, source))
                    .await
            }
        }
    }

    /// Moves a verified temporary file to the blob's name; losing a race to an identical
    /// writer is not an error.
    fn commit(
        &self,
        temp_path: TempPath,
        digest: &Digest,
        placed: Placed,
    ) -> Result<Placed, StoreError> {
        match temp_path.persist_noclobber(self.blob_path(digest)) {
            Ok(()) => Ok(placed),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(Placed::AlreadyThere),
            Err(e) => Err(self.io_error(format!("store blob {digest}"), e.error)),
        }
    }
}

fn hash_file(path: &Path) -> io::Result<(u64, Digest)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; READ_CHUNK];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((size, Digest::from_sha256_raw(hasher.finalize().into())))
}

/// Temporary files that become blobs or metadata: hidden, and never more open than
/// [`FILE_MODE`] (the umask may take more away; [`set_file_mode`] puts it back).
fn temp_file_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(FILE_MODE));
    builder
}

/// Gives an open file [`FILE_MODE`], whatever the umask took away when it was created.
fn set_file_mode(file: &fs::File) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// Replaces `dir/name` with `bytes` so that readers see the old or the new file, never half.
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_file_builder().tempfile_in(dir)?;
    set_file_mode(temp.as_file())?;
    io::Write::write_all(&mut temp, bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use bytes::Bytes;
    use futures_util::stream;

    use super::super::test_support::*;
    use super::*;
    use crate::store::{BlobBody, PutOutcome, Store};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn blobs_are_readable_by_all_whatever_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let (streamed, _) = put_bytes(&layout, b"streamed bytes").await;
        assert_eq!(mode(&layout.blob_path(&streamed)), FILE_MODE);
        put_image(&layout, "t").await;
        for file in [super::super::INDEX_FILE, super::super::LAYOUT_FILE] {
            assert_eq!(mode(&layout.path().join(file)), FILE_MODE, "{file}");
        }

        // A layer spooled as the builder spools one: a temporary file, 0600.
        let spooled = tempfile::Builder::new()
            .tempfile_in(layout.spool_dir().unwrap())
            .unwrap()
            .into_temp_path();
        fs::write(&spooled, b"a spooled layer").unwrap();
        assert_eq!(mode(&spooled), 0o600);
        let digest = Digest::sha256(b"a spooled layer");
        layout
            .put_blob(&digest, 15, BlobBody::File(spooled.to_path_buf()))
            .await
            .unwrap();
        let blob = layout.blob_path(&digest);
        assert_eq!(mode(&blob), FILE_MODE);
        assert_eq!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(&spooled).unwrap().ino(),
            "still linked, not copied"
        );

        // Another layout's 0600 blob is copied, and left as it was.
        let source = layout_in(&dir, "source", None);
        let (private, _) = put_bytes(&source, b"a private blob").await;
        fs::set_permissions(
            source.blob_path(&private),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let outcome = layout.copy_blob_from(&source, &private, 14).await.unwrap();
        assert_eq!(outcome, PutOutcome::Uploaded { bytes: 14 });
        assert_eq!(mode(&layout.blob_path(&private)), FILE_MODE);
        assert_eq!(mode(&source.blob_path(&private)), 0o600);
        drop(spooled);
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn bad_streams_are_refused_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let content = b"the real content";
        let digest = Digest::sha256(content);

        let wrong = layout
            .put_blob(&digest, 16, chunks(&[b"the fake", b" content"]))
            .await
            .unwrap_err();
        match wrong {
            StoreError::DigestMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, digest);
                assert_eq!(actual, Digest::sha256(b"the fake content"));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }

        let short = layout
            .put_blob(&digest, 17, chunks(&[content]))
            .await
            .unwrap_err();
        assert!(
            short.to_string().contains("expected 17 bytes, received 16"),
            "{short}"
        );
        let long = layout
            .put_blob(&digest, 10, chunks(&[b"12345", b"678901"]))
            .await
            .unwrap_err();
        assert!(
            long.to_string().contains("expected 10 bytes, received 11"),
            "{long}"
        );
        let failing: BlobStream = Box::pin(stream::iter(vec![
            Ok(Bytes::from_static(b"the real")),
            Err(layout.failed("upstream", "connection reset")),
        ]));
        let broken = layout
            .put_blob(&digest, 16, BlobBody::Stream(failing))
            .await
            .unwrap_err();
        assert!(broken.to_string().contains("connection reset"), "{broken}");

        assert!(!layout.has_blob(&digest).await.unwrap());
        assert_eq!(blob_count(&layout), 0);
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn blobs_of_another_layout_are_hard_linked() {
        let dir = tempfile::tempdir().unwrap();
        let source = layout_in(&dir, "source", None);
        let target = layout_in(&dir, "target", None);
        let content = vec![42u8; 100_000];
        let (digest, _) = put_bytes(&source, &content).await;
        let size = content.len() as u64;

        let outcome = target.copy_blob_from(&source, &digest, size).await.unwrap();
        assert_eq!(outcome, PutOutcome::Mounted);
        let inode = |layout: &OciLayout| fs::metadata(layout.blob_path(&digest)).unwrap().ino();
        assert_eq!(inode(&source), inode(&target));
        assert_eq!(read_all(&target, &digest).await, content);
        assert_eq!(
            target.copy_blob_from(&source, &digest, size).await.unwrap(),
            PutOutcome::Existed
        );

        // A spooled file is linked too, and stays where the caller put it.
        let spooled = target.spool_dir().unwrap().join("spooled-layer");
        let layer = b"a built layer".to_vec();
        fs::write(&spooled, &layer).unwrap();
        let layer_digest = Digest::sha256(&layer);
        let outcome = target
            .put_blob(
                &layer_digest,
                layer.len() as u64,
                BlobBody::File(spooled.clone()),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Uploaded { bytes: 13 });
        assert_eq!(
            fs::metadata(&spooled).unwrap().ino(),
            fs::metadata(target.blob_path(&layer_digest)).unwrap().ino()
        );
    }

    #[tokio::test]
    async fn spooled_files_are_checked_by_size_and_handed_over_files_by_digest_too() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let spool = |content: &[u8]| {
            let spooled = tempfile::Builder::new()
                .tempfile_in(layout.spool_dir().unwrap())
                .unwrap()
                .into_temp_path();
            fs::write(&spooled, content).unwrap();
            spooled
        };
        let content = b"the bytes the builder wrote";
        let digest = Digest::sha256(content);
        let size = content.len() as u64;

        // A handed-over file is re-hashed: other bytes under the same size are refused.
        let tampered = spool(b"the bytes somebody changed");
        let error = layout
            .put_blob(&digest, 26, BlobBody::File(tampered.to_path_buf()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );
        // A spooled one is not (its writer hashed it), but its size still has to match.
        let spooled = spool(content);
        let error = layout
            .put_blob(&digest, size + 1, BlobBody::Spooled(spooled.to_path_buf()))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("expected {} bytes, received {size}", size + 1)),
            "{error}"
        );
        assert_eq!(blob_count(&layout), 0);

        let outcome = layout
            .put_blob(&digest, size, BlobBody::Spooled(spooled.to_path_buf()))
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Uploaded { bytes: size });
        let blob = layout.blob_path(&digest);
        assert_eq!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(&spooled).unwrap().ino()
        );
        assert_eq!(mode(&blob), FILE_MODE);
        assert_eq!(read_all(&layout, &digest).await, content);
        drop((tampered, spooled));
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn corrupt_source_blobs_are_detected_on_link_and_on_stream() {
        let dir = tempfile::tempdir().unwrap();
        let source = layout_in(&dir, "source", None);
        let content = b"original bytes".to_vec();
        let (digest, _) = put_bytes(&source, &content).await;
        fs::write(source.blob_path(&digest), b"tampered bytes").unwrap();

        let linked = layout_in(&dir, "linked", None);
        let error = linked
            .copy_blob_from(&source, &digest, content.len() as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );

        let streamed = layout_in(&dir, "streamed", None);
        let foreign = Foreign(OciLayout::open(source.path(), None).unwrap());
        let error = streamed
            .copy_blob_from(&foreign, &digest, content.len() as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );

        for layout in [&linked, &streamed] {
            assert_eq!(blob_count(layout), 0);
            assert_eq!(leftovers(layout), Vec::<PathBuf>::new());
        }
    }

    #[tokio::test]
    async fn blobs_of_other_stores_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let source = layout_in(&dir, "source", None);
        let target = layout_in(&dir, "target", None);
        let content = vec![1u8; 700_000];
        let (digest, _) = put_bytes(&source, &content).await;
        let foreign = Foreign(OciLayout::open(source.path(), None).unwrap());

        let outcome = target
            .copy_blob_from(&foreign, &digest, content.len() as u64)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Uploaded { bytes: 700_000 });
        assert_ne!(
            fs::metadata(source.blob_path(&digest)).unwrap().ino(),
            fs::metadata(target.blob_path(&digest)).unwrap().ino()
        );
        assert_eq!(read_all(&target, &digest).await, content);

        let missing = Digest::sha256(b"missing");
        let error = target
            .copy_blob_from(&source, &missing, 7)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}: blob {missing} not found", source.name())
        );
    }
}
