//! Blob helpers shared by the remote store's integration tests: deterministic incompressible
//! bytes, a chunked stream of them, and reading a blob back whole.

use bytes::Bytes;
use futures_util::StreamExt;
use layerize_manifest::Digest;
use layerize_registry::{BlobStream, Store, StoreError};

/// Deterministic pseudo-random bytes (incompressible, so sizes mean something).
pub fn blob(len: usize, seed: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    Bytes::from(bytes)
}

/// `bytes` as a stream of `chunk`-sized pieces (the last one shorter).
pub fn stream_of(bytes: Bytes, chunk: usize) -> BlobStream {
    let chunks: Vec<Result<Bytes, StoreError>> = (0..bytes.len())
        .step_by(chunk)
        .map(|start| Ok(bytes.slice(start..(start + chunk).min(bytes.len()))))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// The whole blob `digest` as `store` serves it.
pub async fn read_all(store: &dyn Store, digest: &Digest) -> Vec<u8> {
    let mut stream = store.get_blob(digest).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}
