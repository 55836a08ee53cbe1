//! The `Store` seam: the operations a build needs from wherever an image lives.

use std::any::Any;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use layerize_manifest::Digest;

/// Bytes of a blob as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// A manifest (or index) as read: the exact bytes, their media type and their digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What to write as a blob. Stores verify every body against the digest and size they are
/// given, except the digest of a [`BlobBody::Spooled`] file.
pub enum BlobBody {
    /// Small blobs already in memory (configs).
    Bytes(Bytes),
    /// A finished file on disk that this process did not write itself, or did not hash as it
    /// wrote it: verified like any other body.
    File(PathBuf),
    /// A file this process has just written and whose digest it computed from the very bytes
    /// it wrote (a built layer's spool file, hashed on its way out of the compressor). A store
    /// may take the digest on trust and check only the size, which spares re-reading and
    /// re-hashing the whole blob. Never for a file from elsewhere (another store, the user, a
    /// file another process may still write): that is [`BlobBody::File`].
    Spooled(PathBuf),
    /// Bytes streamed from elsewhere (a blob of another store), verified against the digest.
    Stream(BlobStream),
}

/// How a blob came to be present in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The store already held it (HEAD said so).
    Existed,
    /// Mounted from another repository of the same registry, or hard-linked on disk.
    Mounted,
    /// Bytes were sent.
    Uploaded { bytes: u64 },
}

impl PutOutcome {
    /// `Existed`, `Mounted` or `Uploaded`: the `outcome` field of log events.
    pub fn name(&self) -> &'static str {
        match self {
            PutOutcome::Existed => "Existed",
            PutOutcome::Mounted => "Mounted",
            PutOutcome::Uploaded { .. } => "Uploaded",
        }
    }

    /// The bytes sent to make the blob present (0 unless uploaded).
    pub fn bytes_sent(&self) -> u64 {
        match self {
            PutOutcome::Uploaded { bytes } => *bytes,
            PutOutcome::Existed | PutOutcome::Mounted => 0,
        }
    }
}

/// Errors of any store; each names the store and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {operation}: {message}")]
    Failed {
        store: String,
        operation: String,
        message: String,
    },
    #[error("{store}: {what} not found")]
    NotFound { store: String, what: String },
    #[error("{store}: digest mismatch for {expected}: got {actual}")]
    DigestMismatch {
        store: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{store}: {operation}: {source}")]
    Io {
        store: String,
        operation: String,
        #[source]
        source: std::io::Error,
    },
}

/// A home of blobs and manifests for one repository.
#[async_trait]
pub trait Store: Send + Sync {
    /// A human name for errors and logs (`oci:/path:tag`, `host/repo`).
    fn name(&self) -> String;

    /// For specialised transfers between stores of the same kind (hard links, mounts).
    fn as_any(&self) -> &dyn Any;

    /// Reads a manifest or index by tag or digest.
    async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, StoreError>;

    /// Streams a blob. Callers verify the digest as bytes pass.
    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, StoreError>;

    /// Whether the blob is present.
    async fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError>;

    /// Writes a blob whose digest and size are known.
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: BlobBody,
    ) -> Result<PutOutcome, StoreError>;

    /// Makes the blob present here, taking it from `source`: skip when present, mount or link when
    /// the two stores allow it, stream otherwise.
    async fn copy_blob_from(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
    ) -> Result<PutOutcome, StoreError>;

    /// A directory on the same file system as the store's blobs, where a layer can be spooled so
    /// that `put_blob(BlobBody::Spooled)` (or `File`) becomes a rename. `None`: any temporary
    /// directory.
    fn spool_dir(&self) -> Option<PathBuf> {
        None
    }

    /// HTTP requests made so far (0 for stores on disk).
    fn requests(&self) -> u64 {
        0
    }

    /// Writes a manifest and points `reference` (a tag) at it. Called last, after every blob.
    async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, StoreError>;
}

/// Reads a whole small blob (a config) into memory, refusing more than `max_bytes` and
/// verifying its digest.
pub async fn read_blob(
    store: &dyn Store,
    digest: &Digest,
    max_bytes: usize,
) -> Result<Vec<u8>, StoreError> {
    use futures_util::StreamExt;

    let mut stream = store.get_blob(digest).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if bytes.len() + chunk.len() > max_bytes {
            return Err(StoreError::Failed {
                store: store.name(),
                operation: format!("read blob {digest}"),
                message: format!("blob is larger than the {max_bytes}-byte limit for configs"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = Digest::sha256(&bytes);
    if &actual != digest {
        return Err(StoreError::DigestMismatch {
            store: store.name(),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}
