//! Checking blob bytes as they pass: a stream adapter that hashes, counts, and turns a wrong
//! size or digest into an error at the end instead of handing on bad bytes silently.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

use crate::{BlobStream, StoreError};

/// Wraps `inner` so that it fails unless exactly `size` bytes (when known) hashing to `digest`
/// pass. A mismatch is reported as the stream's last item, so a consumer uploading the bytes
/// aborts before it finalises anything.
pub(crate) fn verified(
    inner: BlobStream,
    digest: Digest,
    size: Option<u64>,
    store: String,
) -> BlobStream {
    Box::pin(Verified {
        inner,
        digest,
        size,
        store,
        hasher: Some(Sha256::new()),
        seen: 0,
    })
}

struct Verified {
    inner: BlobStream,
    digest: Digest,
    size: Option<u64>,
    store: String,
    /// `None` once the outcome was reported.
    hasher: Option<Sha256>,
    seen: u64,
}

impl Verified {
    fn size_error(&self) -> StoreError {
        StoreError::Failed {
            store: self.store.clone(),
            operation: format!("read blob {}", self.digest),
            message: format!(
                "expected {} bytes, got {}{}",
                self.size.unwrap_or_default(),
                if self.seen > self.size.unwrap_or_default() {
                    "more than "
                } else {
                    ""
                },
                self.seen
            ),
        }
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(None);
        };
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                hasher.update(&chunk);
                this.seen += chunk.len() as u64;
                if this.size.is_some_and(|size| this.seen > size) {
                    this.hasher = None;
                    return Poll::Ready(Some(Err(this.size_error())));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                let hasher = this.hasher.take().expect("checked above");
                if this.size.is_some_and(|size| this.seen != size) {
                    return Poll::Ready(Some(Err(this.size_error())));
                }
                let actual = Digest::from_sha256_raw(hasher.finalize().into());
                if actual != this.digest {
                    return Poll::Ready(Some(Err(StoreError::DigestMismatch {
                        store: this.store.clone(),
                        expected: this.digest.clone(),
                        actual,
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        let items: Vec<Result<Bytes, StoreError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn drain(stream: BlobStream) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn passes_the_right_bytes_through() {
        let digest = Digest::sha256(b"hello world");
        let out = drain(verified(
            chunks(&[b"hello ", b"world"]),
            digest,
            Some(11),
            "s".into(),
        ))
        .await
        .unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn a_wrong_digest_fails_at_the_end() {
        let digest = Digest::sha256(b"hello world");
        let error = drain(verified(
            chunks(&[b"hello ", b"there"]),
            digest,
            None,
            "s".into(),
        ))
        .await
        .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn short_and_long_bodies_fail() {
        let digest = Digest::sha256(b"hello world");
        let short = drain(verified(
            chunks(&[b"hello"]),
            digest.clone(),
            Some(11),
            "s".into(),
        ))
        .await
        .unwrap_err();
        assert!(
            short.to_string().contains("expected 11 bytes, got 5"),
            "{short}"
        );
        let long = drain(verified(
            chunks(&[b"hello world", b"!"]),
            digest,
            Some(11),
            "s".into(),
        ))
        .await
        .unwrap_err();
        assert!(long.to_string().contains("more than 12"), "{long}");
    }
}
