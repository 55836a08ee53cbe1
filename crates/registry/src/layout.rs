//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) as a
//! [`Store`]: read what skopeo, umoci or podman wrote, and write layouts they accept.
//!
//! Blobs are written to a temporary file inside `blobs/`, verified (size and sha256) and then
//! renamed into place, so a blob name never holds anything but its content; `index.json` is
//! replaced the same way. Blobs of another layout are hard-linked (copied only across file
//! systems), never re-compressed.

use std::any::Any;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_manifest::media_type::OCI_INDEX;
use layerize_manifest::{Digest, ManifestKind};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::reference::ImageRef;
use crate::store::{BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};

/// The annotation of an `index.json` entry that carries its tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";
/// Registries refuse larger manifests, so anything bigger that a tag points at is not one.
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
const READ_CHUNK: usize = 256 << 10;
const TEMP_PREFIX: &str = ".tmp-";

/// An OCI image layout directory, optionally narrowed to one tag (`oci:DIR:TAG`).
pub struct OciLayout {
    root: PathBuf,
    tag: Option<String>,
    name: String,
    /// Serialises read-modify-write cycles of `index.json` within this process.
    index_lock: tokio::sync::Mutex<()>,
}

/// The fields of `index.json` that reading needs; writing edits the JSON value instead, so
/// that entries and fields of other tools survive.
#[derive(Deserialize)]
struct IndexView {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    /// Kept as text: other tools' entries may use digest algorithms layerize does not read.
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }
}

/// How a blob came to be in place; callers turn it into the [`PutOutcome`] of their operation.
enum Placed {
    Linked,
    Written,
    AlreadyThere,
}

impl OciLayout {
    /// Opens an existing layout. `tag`, if given, is the image that `get_manifest("")` and
    /// `put_manifest("")` mean; without it `get_manifest("")` takes the layout's only image.
    pub fn open(path: impl Into<PathBuf>, tag: Option<String>) -> Result<Self, StoreError> {
        let layout = Self::new(path.into(), tag)?;
        layout.validate()?;
        Ok(layout)
    }

    /// Opens the layout at `path`, first making one there if the directory is missing or empty.
    pub fn create(path: impl Into<PathBuf>, tag: Option<String>) -> Result<Self, StoreError> {
        let layout = Self::new(path.into(), tag)?;
        if !layout.root.join(LAYOUT_FILE).exists() {
            layout.initialise()?;
        }
        layout.validate()?;
        Ok(layout)
    }

    /// The directory of the layout.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn new(root: PathBuf, tag: Option<String>) -> Result<Self, StoreError> {
        let name = ImageRef::Layout {
            path: root.clone(),
            tag: tag.clone(),
        }
        .to_string();
        let layout = OciLayout {
            root,
            tag,
            name,
            index_lock: tokio::sync::Mutex::new(()),
        };
        if let Some(tag) = &layout.tag {
            check_ref_name(tag).map_err(|message| layout.failed("open", message))?;
        }
        Ok(layout)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let root = &self.root;
        if root.exists() {
            let mut entries = fs::read_dir(root)
                .map_err(|e| self.io_error(format!("read {}", root.display()), e))?;
            if entries.next().is_some() {
                return Err(self.failed(
                    "create",
                    format!(
                        "{} is neither empty nor an OCI image layout (no {LAYOUT_FILE} file); \
                         refusing to write into it",
                        root.display()
                    ),
                ));
            }
        }
        fs::create_dir_all(root.join("blobs").join("sha256"))
            .map_err(|e| self.io_error(format!("create {}/blobs/sha256", root.display()), e))?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [],
        });
        let version = json!({ "imageLayoutVersion": LAYOUT_VERSION });
        // oci-layout last: the directory only claims to be a layout once index.json exists.
        for (file, value) in [(INDEX_FILE, index), (LAYOUT_FILE, version)] {
            write_atomically(root, file, &value.to_string().into_bytes())
                .map_err(|e| self.io_error(format!("write {file}"), e))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), StoreError> {
        let root = &self.root;
        if !root.is_dir() {
            return Err(self.failed(
                "open",
                format!("{} does not exist or is not a directory", root.display()),
            ));
        }
        let version = match fs::read(root.join(LAYOUT_FILE)) {
            Ok(version) => version,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.failed(
                    "open",
                    format!(
                        "not an OCI image layout: {} (no {LAYOUT_FILE} file)",
                        root.display()
                    ),
                ))
            }
            Err(e) => return Err(self.io_error(format!("read {LAYOUT_FILE}"), e)),
        };
        let version: Option<String> = serde_json::from_slice::<Value>(&version)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
        if !version.as_deref().is_some_and(|v| v.starts_with("1.")) {
            return Err(self.failed(
                "open",
                format!(
                    "not an OCI image layout: {} ({LAYOUT_FILE} does not say \
                     {{\"imageLayoutVersion\":\"1.0.0\"}})",
                    root.display()
                ),
            ));
        }
        let index = fs::read(root.join(INDEX_FILE))
            .map_err(|e| self.io_error(format!("read {INDEX_FILE}"), e))?;
        self.parse_index(&index)?;
        Ok(())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    fn parse_index(&self, bytes: &[u8]) -> Result<IndexView, StoreError> {
        let index: IndexView = serde_json::from_slice(bytes)
            .map_err(|e| self.failed(format!("read {INDEX_FILE}"), format!("invalid JSON: {e}")))?;
        if index.schema_version != 2 {
            return Err(self.failed(
                format!("read {INDEX_FILE}"),
                format!("schemaVersion is {}, expected 2", index.schema_version),
            ));
        }
        Ok(index)
    }

    async fn read_index(&self) -> Result<IndexView, StoreError> {
        let bytes = tokio::fs::read(self.root.join(INDEX_FILE))
            .await
            .map_err(|e| self.io_error(format!("read {INDEX_FILE}"), e))?;
        self.parse_index(&bytes)
    }

    /// The `index.json` entry a tag names; `""` means the layout's tag, or else its only image.
    fn select<'a>(
        &self,
        index: &'a IndexView,
        reference: &str,
    ) -> Result<&'a Descriptor, StoreError> {
        let tag = match reference {
            "" => self.tag.as_deref(),
            tag => Some(tag),
        };
        match (tag, index.manifests.as_slice()) {
            (Some(tag), manifests) => manifests
                .iter()
                .find(|entry| entry.ref_name() == Some(tag))
                .ok_or_else(|| StoreError::NotFound {
                    store: self.name.clone(),
                    what: format!("tag {tag:?} ({})", describe_images(manifests)),
                }),
            (None, [only]) => Ok(only),
            (None, []) => Err(StoreError::NotFound {
                store: self.name.clone(),
                what: "image (the layout holds no images)".to_owned(),
            }),
            (None, manifests) => Err(self.failed(
                "get manifest",
                format!(
                    "the layout holds {} images ({}); name one with oci:{}:TAG",
                    manifests.len(),
                    describe_images(manifests),
                    self.root.display()
                ),
            )),
        }
    }

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

    fn file_stream(&self, file: tokio::fs::File, path: &Path) -> BlobStream {
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
    async fn write_verified(
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

    /// Places the file at `source` as a blob: hard-linked when the file system allows, copied
    /// otherwise; verified either way.
    async fn place_file(
        &self,
        digest: &Digest,
        size: u64,
        source: &Path,
    ) -> Result<Placed, StoreError> {
        let linked =
            temp_file_builder().make_in(self.blobs_dir()?, |temp| fs::hard_link(source, temp));
        match linked {
            Ok(linked) => {
                let temp_path = linked.into_temp_path();
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
                tracing::debug!(source = %source.display(), %error, "hard link failed, copying");
                let file = tokio::fs::File::open(source)
                    .await
                    .map_err(|e| self.io_error(format!("read {}", source.display()), e))?;
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

    /// Points `tag` (or, untagged, an entry of its own) at a manifest, keeping every other
    /// entry and field of `index.json`.
    async fn add_to_index(
        &self,
        tag: Option<&str>,
        media_type: &str,
        digest: &Digest,
        size: usize,
    ) -> Result<(), StoreError> {
        let _guard = self.index_lock.lock().await;
        let operation = format!("update {INDEX_FILE}");
        let bytes = tokio::fs::read(self.root.join(INDEX_FILE))
            .await
            .map_err(|e| self.io_error(operation.clone(), e))?;
        self.parse_index(&bytes)?;
        let mut index: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.failed(operation.clone(), e.to_string()))?;
        let object = index
            .as_object_mut()
            .ok_or_else(|| self.failed(operation.clone(), "index.json is not a JSON object"))?;
        object
            .entry("mediaType")
            .or_insert_with(|| json!(OCI_INDEX));
        let manifests = object
            .entry("manifests")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(|| self.failed(operation.clone(), "manifests is not an array"))?;
        manifests.retain(|entry| {
            let entry_tag = entry
                .get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(Value::as_str);
            match tag {
                Some(tag) => entry_tag != Some(tag),
                None => {
                    entry_tag.is_some()
                        || entry.get("digest").and_then(Value::as_str) != Some(digest.as_str())
                }
            }
        });
        let mut descriptor = json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
        });
        if let Some(tag) = tag {
            descriptor["annotations"] = json!({ REF_NAME_ANNOTATION: tag });
        }
        manifests.push(descriptor);

        let root = self.root.clone();
        let bytes = serde_json::to_vec(&index).expect("a JSON value serialises");
        tokio::task::spawn_blocking(move || write_atomically(&root, INDEX_FILE, &bytes))
            .await
            .map_err(|e| self.failed(operation.clone(), e.to_string()))?
            .map_err(|e| self.io_error(operation, e))
    }

    fn check_digest(&self, expected: &Digest, actual: Digest) -> Result<(), StoreError> {
        if *expected == actual {
            Ok(())
        } else {
            Err(StoreError::DigestMismatch {
                store: self.name.clone(),
                expected: expected.clone(),
                actual,
            })
        }
    }

    fn size_mismatch(&self, digest: &Digest, expected: u64, received: u64) -> StoreError {
        self.failed(
            format!("write blob {digest}"),
            format!("size mismatch: expected {expected} bytes, received {received}"),
        )
    }

    fn failed(&self, operation: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            operation: operation.into(),
            message: message.into(),
        }
    }

    fn io_error(&self, operation: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            operation: operation.into(),
            source,
        }
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
            BlobBody::File(path) => self.place_file(digest, size, &path).await?,
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
                self.place_file(digest, size, &layout.blob_path(digest))
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

/// Checks a tag against the OCI grammar of `org.opencontainers.image.ref.name`: components of
/// letters and digits joined by one of `-._:@+` or `--`, separated by `/`.
pub(crate) fn check_ref_name(name: &str) -> Result<(), String> {
    let valid = name.split('/').all(|component| {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let mut separators = component.split(alnum).filter(|run| !run.is_empty());
        component.starts_with(alnum)
            && component.ends_with(alnum)
            && separators.all(|run| run == "--" || (run.len() == 1 && "-._:@+".contains(run)))
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "layout tag {name:?} must be letters and digits joined by one of - . _ : @ + or --"
        ))
    }
}

/// The media type of a manifest: its own `mediaType`, else the descriptor's, else its shape.
fn manifest_media_type(bytes: &[u8], descriptor_type: Option<&str>) -> Result<String, String> {
    ManifestKind::detect(bytes, descriptor_type)
        .map(|kind| kind.media_type().to_owned())
        .map_err(|e| e.to_string())
}

/// `tags: a, b, 1 untagged`, for errors that must say what the layout does hold.
fn describe_images(manifests: &[Descriptor]) -> String {
    if manifests.is_empty() {
        return "the layout holds no images".to_owned();
    }
    let tags: Vec<&str> = manifests.iter().filter_map(Descriptor::ref_name).collect();
    let mut text = if tags.is_empty() {
        "no tags".to_owned()
    } else {
        format!("tags: {}", tags.join(", "))
    };
    let untagged = manifests.len() - tags.len();
    if untagged > 0 {
        text.push_str(&format!(", {untagged} untagged"));
    }
    text
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

/// Temporary files that become blobs or metadata: hidden, and readable by all as skopeo's are.
fn temp_file_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o644));
    builder
}

/// Replaces `dir/name` with `bytes` so that readers see the old or the new file, never half.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_file_builder().tempfile_in(dir)?;
    io::Write::write_all(&mut temp, bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    use super::*;

    const MANIFEST_TYPE: &str = layerize_manifest::media_type::OCI_MANIFEST;

    /// A store that is not an `OciLayout` (as a remote registry is not), backed by one, so that
    /// copies from it take the streaming path.
    struct Foreign(OciLayout);

    #[async_trait]
    impl Store for Foreign {
        fn name(&self) -> String {
            format!("foreign {}", self.0.name())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, StoreError> {
            self.0.get_manifest(reference).await
        }
        async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, StoreError> {
            self.0.get_blob(digest).await
        }
        async fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
            self.0.has_blob(digest).await
        }
        async fn put_blob(
            &self,
            digest: &Digest,
            size: u64,
            body: BlobBody,
        ) -> Result<PutOutcome, StoreError> {
            self.0.put_blob(digest, size, body).await
        }
        async fn copy_blob_from(
            &self,
            source: &dyn Store,
            digest: &Digest,
            size: u64,
        ) -> Result<PutOutcome, StoreError> {
            self.0.copy_blob_from(source, digest, size).await
        }
        async fn put_manifest(
            &self,
            reference: &str,
            bytes: &[u8],
            media_type: &str,
        ) -> Result<Digest, StoreError> {
            self.0.put_manifest(reference, bytes, media_type).await
        }
    }

    fn layout_in(dir: &tempfile::TempDir, name: &str, tag: Option<&str>) -> OciLayout {
        OciLayout::create(dir.path().join(name), tag.map(str::to_owned)).expect("create layout")
    }

    async fn put_bytes(layout: &OciLayout, bytes: &[u8]) -> (Digest, PutOutcome) {
        let digest = Digest::sha256(bytes);
        let outcome = layout
            .put_blob(
                &digest,
                bytes.len() as u64,
                BlobBody::Bytes(Bytes::copy_from_slice(bytes)),
            )
            .await
            .expect("put blob");
        (digest, outcome)
    }

    async fn read_all(store: &dyn Store, digest: &Digest) -> Vec<u8> {
        let mut stream = store.get_blob(digest).await.expect("get blob");
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("chunk"));
        }
        bytes
    }

    fn chunks(parts: &[&[u8]]) -> BlobBody {
        let parts: Vec<Result<Bytes, StoreError>> = parts
            .iter()
            .map(|part| Ok(Bytes::copy_from_slice(part)))
            .collect();
        BlobBody::Stream(Box::pin(stream::iter(parts)))
    }

    /// A small OCI image manifest whose bytes differ with `marker`.
    fn manifest(config: &Digest, config_size: usize, marker: &str) -> Vec<u8> {
        json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": config_size,
            },
            "layers": [],
            "annotations": { "marker": marker },
        })
        .to_string()
        .into_bytes()
    }

    async fn put_image(layout: &OciLayout, tag: &str) -> (Vec<u8>, Digest) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (config_digest, _) = put_bytes(layout, config).await;
        let bytes = manifest(&config_digest, config.len(), tag);
        let digest = layout
            .put_manifest(tag, &bytes, MANIFEST_TYPE)
            .await
            .expect("put manifest");
        (bytes, digest)
    }

    fn index_json(layout: &OciLayout) -> Value {
        serde_json::from_slice(&fs::read(layout.path().join(INDEX_FILE)).unwrap()).unwrap()
    }

    /// Everything under `blobs/` except finished blobs: leftovers of failed writes.
    fn leftovers(layout: &OciLayout) -> Vec<PathBuf> {
        let blobs = layout.path().join("blobs");
        fs::read_dir(&blobs)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| *path != blobs.join("sha256"))
            .collect()
    }

    fn blob_count(layout: &OciLayout) -> usize {
        fs::read_dir(layout.path().join("blobs/sha256"))
            .unwrap()
            .count()
    }

    fn run(command: &mut Command) -> String {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?} (is it installed?): {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

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
    async fn tags_select_entries_and_missing_tags_list_the_present_ones() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let (a, _) = put_image(&layout, "a").await;
        let (b, _) = put_image(&layout, "b").await;
        assert_eq!(layout.get_manifest("a").await.unwrap().bytes, a);
        assert_eq!(layout.get_manifest("b").await.unwrap().bytes, b);
        let tagged = OciLayout::open(layout.path(), Some("b".into())).unwrap();
        assert_eq!(tagged.get_manifest("").await.unwrap().bytes, b);

        let error = layout.get_manifest("c").await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "oci:{}: tag \"c\" (tags: a, b) not found",
                layout.path().display()
            )
        );
    }

    #[tokio::test]
    async fn untagged_open_needs_exactly_one_image() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let error = layout.get_manifest("").await.unwrap_err();
        assert!(
            error.to_string().contains("the layout holds no images"),
            "{error}"
        );

        let (a, _) = put_image(&layout, "a").await;
        assert_eq!(layout.get_manifest("").await.unwrap().bytes, a);

        put_image(&layout, "b").await;
        // An untagged entry, as skopeo writes for `oci:DIR` without a tag.
        let config = b"{}";
        put_bytes(&layout, config).await;
        let untagged = manifest(&Digest::sha256(config), 2, "untagged");
        layout
            .put_manifest("", &untagged, MANIFEST_TYPE)
            .await
            .unwrap();
        let error = layout.get_manifest("").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{0}: get manifest: the layout holds 3 images (tags: a, b, 1 untagged); \
                 name one with {0}:TAG",
                layout.name()
            )
        );
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

    #[tokio::test]
    async fn put_manifest_keeps_foreign_entries_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let foreign_entries = json!([
            {
                "mediaType": OCI_INDEX,
                "digest": Digest::sha256(b"multi"),
                "size": 5,
                "annotations": { REF_NAME_ANNOTATION: "multi", "vendor.key": "kept" },
            },
            {
                "mediaType": MANIFEST_TYPE,
                "digest": Digest::sha256(b"arm"),
                "size": 3,
                "platform": { "architecture": "arm64", "os": "linux" },
            },
            {
                "mediaType": MANIFEST_TYPE,
                "digest": format!("sha512:{}", "ab".repeat(64)),
                "size": 4,
                "annotations": { REF_NAME_ANNOTATION: "sha512" },
            },
        ]);
        let foreign_index = json!({
            "schemaVersion": 2,
            "manifests": foreign_entries.clone(),
            "annotations": { "org.example": "top-level" },
        });
        fs::write(layout.path().join(INDEX_FILE), foreign_index.to_string()).unwrap();

        put_image(&layout, "t").await;
        let (_, digest) = put_image(&layout, "t").await;
        // Same tag again with other bytes: the entry moves, nothing else changes.
        let config = b"{}";
        put_bytes(&layout, config).await;
        let other = manifest(&Digest::sha256(config), 2, "other");
        let other_digest = layout
            .put_manifest("t", &other, MANIFEST_TYPE)
            .await
            .unwrap();
        assert_ne!(other_digest, digest);
        assert!(layout.has_blob(&digest).await.unwrap(), "old blob kept");

        let index = index_json(&layout);
        assert_eq!(index["annotations"], json!({ "org.example": "top-level" }));
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 4);
        assert_eq!(manifests[..3], foreign_entries.as_array().unwrap()[..]);
        assert_eq!(manifests[3]["digest"], json!(other_digest));
        assert_eq!(
            layout.get_manifest("t").await.unwrap().bytes,
            other,
            "the tag points at the newest manifest"
        );
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
        let root_files: Vec<_> = fs::read_dir(layout.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(TEMP_PREFIX))
            .collect();
        assert_eq!(root_files, Vec::<String>::new());
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

    #[test]
    fn open_and_create_refuse_what_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = OciLayout::open(&missing, None).err().unwrap();
        assert!(error.to_string().contains("does not exist"), "{error}");

        let plain = dir.path().join("plain");
        fs::create_dir(&plain).unwrap();
        fs::write(plain.join("notes.txt"), "mine").unwrap();
        let error = OciLayout::open(&plain, None).err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "oci:{0}: open: not an OCI image layout: {0} (no oci-layout file)",
                plain.display()
            )
        );
        let error = OciLayout::create(&plain, None).err().unwrap();
        assert!(error.to_string().contains("refusing to write"), "{error}");
        assert!(!plain.join(LAYOUT_FILE).exists());

        let bad_tag = OciLayout::create(dir.path().join("new"), Some("a b".into()))
            .err()
            .unwrap();
        assert!(
            bad_tag.to_string().contains("layout tag \"a b\""),
            "{bad_tag}"
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

        // Copy the umoci image into a layout of ours under a new tag: blobs are linked.
        let source = OciLayout::open(&umoci_dir, Some("t".into())).unwrap();
        let target = layout_in(&dir, "ours", Some("copied"));
        let fetched = source.get_manifest("").await.unwrap();
        let manifest: Value = serde_json::from_slice(&fetched.bytes).unwrap();
        let descriptors =
            std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap());
        for descriptor in descriptors {
            let digest: Digest = descriptor["digest"].as_str().unwrap().parse().unwrap();
            let size = descriptor["size"].as_u64().unwrap();
            let outcome = target.copy_blob_from(&source, &digest, size).await.unwrap();
            assert_eq!(outcome, PutOutcome::Mounted);
        }
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
