//! Helpers for the layout's unit tests: layouts in a temporary directory, small images and
//! blobs put into them, a store that is not a layout, and views of what landed on disk.

use std::any::Any;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use layerize_manifest::Digest;
use serde_json::{json, Value};

use super::{OciLayout, INDEX_FILE};
use crate::store::{BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};

pub(super) const MANIFEST_TYPE: &str = layerize_manifest::media_type::OCI_MANIFEST;

/// A store that is not an `OciLayout` (as a remote registry is not), backed by one, so that
/// copies from it take the streaming path.
pub(super) struct Foreign(pub(super) OciLayout);

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

pub(super) fn layout_in(dir: &tempfile::TempDir, name: &str, tag: Option<&str>) -> OciLayout {
    OciLayout::create(dir.path().join(name), tag.map(str::to_owned)).expect("create layout")
}

pub(super) async fn put_bytes(layout: &OciLayout, bytes: &[u8]) -> (Digest, PutOutcome) {
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

pub(super) async fn read_all(store: &dyn Store, digest: &Digest) -> Vec<u8> {
    let mut stream = store.get_blob(digest).await.expect("get blob");
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
    }
    bytes
}

pub(super) fn chunks(parts: &[&[u8]]) -> BlobBody {
    let parts: Vec<Result<Bytes, StoreError>> = parts
        .iter()
        .map(|part| Ok(Bytes::copy_from_slice(part)))
        .collect();
    BlobBody::Stream(Box::pin(stream::iter(parts)))
}

/// A small OCI image manifest whose bytes differ with `marker`.
pub(super) fn manifest(config: &Digest, config_size: usize, marker: &str) -> Vec<u8> {
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

pub(super) async fn put_image(layout: &OciLayout, tag: &str) -> (Vec<u8>, Digest) {
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

pub(super) fn index_json(layout: &OciLayout) -> Value {
    serde_json::from_slice(&fs::read(layout.path().join(INDEX_FILE)).unwrap()).unwrap()
}

/// Everything under `blobs/` except finished blobs: leftovers of failed writes.
pub(super) fn leftovers(layout: &OciLayout) -> Vec<PathBuf> {
    let blobs = layout.path().join("blobs");
    fs::read_dir(&blobs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| *path != blobs.join("sha256"))
        .collect()
}

pub(super) fn blob_count(layout: &OciLayout) -> usize {
    fs::read_dir(layout.path().join("blobs/sha256"))
        .unwrap()
        .count()
}

pub(super) fn run(command: &mut Command) -> String {
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
