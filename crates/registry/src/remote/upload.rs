//! Blob upload sessions, from the POST (or a mount's 202) to the finalising PUT: a monolithic
//! PUT when the bytes can be read again, one streamed PATCH otherwise, chunks once the registry
//! refused a large PATCH; after a broken PATCH the upload resumes where the registry's `Range`
//! says it stopped. A `Range` that stays behind what was sent costs a try of the blob's budget,
//! one beyond it ends the upload: a registry cannot keep an upload going forever.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use layerize_manifest::Digest;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::client::{redirect_target, Call, RequestError};
use super::repository::RemoteRepository;
use super::retry::RetryBudget;
use super::transport::Payload;
use crate::{BlobStream, StoreError};

/// The PATCH size registries with a cap accept (GHCR refuses more than 4 MiB).
pub(crate) const CHUNK_CAP: u64 = 4 * 1024 * 1024;
/// How many recently sent bytes of a stream are kept to resend after a broken PATCH: twice a
/// capped chunk, more than socket buffers and a proxy swallow on a connection that then breaks.
/// Each concurrent copy holds this much, so it bounds a copy's memory at `--jobs` x 8 MiB; a
/// registry further behind than this makes the upload restart from its HEAD instead.
const REPLAY_WINDOW: u64 = 2 * CHUNK_CAP;
/// The largest chunk gathered in memory, whatever `OCI-Chunk-Min-Length` asks for.
const MAX_CHUNK: u64 = 64 * 1024 * 1024;

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// An upload session: where to send the next request, and the registry's minimum chunk.
pub(crate) struct Session {
    pub location: Url,
    /// `OCI-Chunk-Min-Length`: non-final chunks must be at least this long.
    pub min_chunk: u64,
}

impl Session {
    /// A session from a 202 answer to a POST (a fresh upload or a mount that did not happen).
    pub fn from_response(request_url: &Url, response: &Response) -> Result<Session, RequestError> {
        Ok(Session {
            location: redirect_target(request_url, response.headers())?,
            min_chunk: response
                .headers()
                .get("oci-chunk-min-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        })
    }
}

/// Where the bytes of a blob come from.
pub(crate) enum UploadSource {
    Bytes(Bytes),
    File(PathBuf),
    Stream(Replay),
}

impl UploadSource {
    /// Whether the whole blob can be read again from any offset.
    fn rereadable(&self) -> bool {
        !matches!(self, UploadSource::Stream(_))
    }

    fn can_resend_from(&self, offset: u64) -> bool {
        match self {
            UploadSource::Stream(replay) => replay.can_resend_from(offset),
            _ => true,
        }
    }

    /// The bytes `offset..offset + len` as a request payload. `gather` collects a stream's bytes
    /// in memory first (chunks), so that the payload can be sent again.
    async fn payload(&self, offset: u64, len: u64, gather: bool) -> Result<Payload, UploadError> {
        Ok(match self {
            UploadSource::Bytes(bytes) => {
                Payload::Bytes(bytes.slice(offset as usize..(offset + len) as usize))
            }
            UploadSource::File(path) => Payload::File {
                path: path.clone(),
                offset,
                len,
            },
            UploadSource::Stream(replay) if gather => {
                let mut body = replay.body(offset, len);
                let mut gathered = BytesMut::with_capacity(len as usize);
                while let Some(chunk) = body.next().await {
                    match chunk {
                        Ok(chunk) => gathered.extend_from_slice(&chunk),
                        Err(_) => return Err(replay.failure()),
                    }
                }
                Payload::Bytes(gathered.freeze())
            }
            UploadSource::Stream(replay) => {
                Payload::once(reqwest::Body::wrap_stream(replay.body(offset, len)))
            }
        })
    }

    /// Confirms that a stream ends where the blob does. A request body stops polling once it
    /// sent `Content-Length` bytes, so the verifier's verdict (its last item) is read here,
    /// before the upload is finalised.
    async fn finish(&self) -> Result<(), UploadError> {
        let UploadSource::Stream(replay) = self else {
            return Ok(());
        };
        let end =
            futures_util::future::poll_fn(|cx| replay.lock().inner.as_mut().poll_next(cx)).await;
        match end {
            None => Ok(()),
            Some(Err(error)) => {
                replay.lock().failure = Some(error);
                Err(replay.failure())
            }
            Some(Ok(_)) => Err(UploadError::fatal(StoreError::Failed {
                store: "source".into(),
                operation: "read blob".into(),
                message: "the stream is longer than the blob's size".into(),
            })),
        }
    }

    /// The source's own failure (a read error, a digest mismatch) if it caused the request to
    /// fail, rather than the network.
    fn failure(&self) -> Option<UploadError> {
        match self {
            UploadSource::Stream(replay) if replay.failed() => Some(replay.failure()),
            _ => None,
        }
    }
}

/// A failed upload, and whether starting over (from the HEAD check) may succeed.
#[derive(Debug)]
pub(crate) struct UploadError {
    pub error: StoreError,
    pub restart: bool,
    /// How long the registry asked us to wait (`Retry-After`) before starting over.
    pub retry_after: Option<Duration>,
}

impl UploadError {
    fn fatal(error: StoreError) -> Self {
        UploadError {
            error,
            restart: false,
            retry_after: None,
        }
    }

    fn restartable(error: StoreError) -> Self {
        UploadError {
            error,
            restart: true,
            retry_after: None,
        }
    }
}

/// Sends `size` bytes of `source` through `session` and finalises it as `digest`. Each resume
/// after a broken PATCH takes a try from the blob's `budget`; once it is spent the upload fails
/// for good.
pub(crate) async fn upload(
    repo: &RemoteRepository,
    digest: &Digest,
    size: u64,
    source: &UploadSource,
    mut session: Session,
    budget: &mut RetryBudget,
) -> Result<(), UploadError> {
    let operation = format!("upload blob {digest}");
    let fail = |error: RequestError| {
        let store_error = repo.error(&operation, error.message);
        if error.transient {
            UploadError::restartable(store_error)
        } else {
            UploadError::fatal(store_error)
        }
    };
    let scopes = repo.push_scopes();
    let registry = repo.registry();

    if source.rereadable() && registry.patch_limit().is_none() {
        let payload = source.payload(0, size, false).await?;
        let call = Call::new(
            Method::PUT,
            finalising_url(&session.location, digest),
            &scopes,
        )
        .idempotent(false)
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, size.into())
        .payload(payload);
        let response = repo.send(call).await.map_err(fail)?;
        return match response.status() {
            StatusCode::CREATED => Ok(()),
            StatusCode::PAYLOAD_TOO_LARGE => {
                learn_patch_limit(repo, digest);
                Err(UploadError::restartable(repo.error(
                    &operation,
                    "the registry refused a monolithic upload (413)".into(),
                )))
            }
            _ => Err(restartable_status(repo, &operation, response).await),
        };
    }

    let mut offset = 0;
    while offset < size {
        let chunk = registry
            .patch_limit()
            .map(|limit| limit.max(session.min_chunk.min(MAX_CHUNK)));
        let len = chunk.map_or(size - offset, |chunk| chunk.min(size - offset));
        let sent_to = offset + len;
        let payload = source.payload(offset, len, chunk.is_some()).await?;
        let mut call = Call::new(Method::PATCH, session.location.clone(), &scopes)
            .idempotent(false)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_LENGTH, len.into())
            .payload(payload);
        if chunk.is_some() || offset > 0 {
            let range = format!("{offset}-{}", sent_to - 1);
            call = call.header(
                reqwest::header::CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("digits and a dash"),
            );
        }
        let outcome = repo.send(call).await;
        if let Some(failure) = source.failure() {
            return Err(failure);
        }
        let (broken, wait) = match outcome {
            Ok(response) if response.status() == StatusCode::ACCEPTED => {
                session.location = redirect_target(&session.location, response.headers())
                    .unwrap_or(session.location);
                let held = held_after_patch(response.headers(), sent_to).unwrap_or(sent_to);
                if held > sent_to {
                    return Err(UploadError::fatal(
                        repo.error(&operation, overclaimed(held, sent_to)),
                    ));
                }
                if held == sent_to {
                    offset = held;
                    continue;
                }
                (
                    format!("the registry kept {held} of the {sent_to} bytes sent"),
                    None,
                )
            }
            Ok(response)
                if len > CHUNK_CAP
                    && matches!(
                        response.status(),
                        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST
                    ) =>
            {
                learn_patch_limit(repo, digest);
                (
                    format!("PATCH of {len} bytes refused (HTTP {})", response.status()),
                    None,
                )
            }
            // A 401 here is a token that expired mid-upload (it is forgotten by now), a 416 a
            // registry that stored more or less of a broken PATCH than it said: carry on from
            // what the registry holds.
            Ok(response)
                if super::retry::is_retryable_status(response.status())
                    || response.status() == StatusCode::UNAUTHORIZED
                    || response.status() == StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                let wait = super::retry::retry_after(response.headers());
                (format!("HTTP {}", response.status()), wait)
            }
            Ok(response) => return Err(restartable_status(repo, &operation, response).await),
            Err(error) if error.transient => (error.message, None),
            Err(error) => return Err(fail(error)),
        };
        if !budget.next_try(wait).await {
            return Err(UploadError::fatal(
                repo.error(&operation, budget.gave_up(&broken)),
            ));
        }
        tracing::debug!(%digest, offset, reason = %broken, "upload interrupted; asking the registry how far it got");
        offset = resume_offset(repo, &mut session).await.map_err(fail)?;
        if offset > sent_to {
            return Err(UploadError::fatal(
                repo.error(&operation, overclaimed(offset, sent_to)),
            ));
        }
        if !source.can_resend_from(offset) {
            return Err(UploadError::restartable(repo.error(
                &operation,
                format!("{broken}; the registry kept {offset} bytes, and the stream cannot be rewound there"),
            )));
        }
    }

    source.finish().await?;
    let call = Call::new(
        Method::PUT,
        finalising_url(&session.location, digest),
        &scopes,
    )
    .idempotent(true)
    .header(CONTENT_LENGTH, 0.into());
    let response = repo.send(call).await.map_err(fail)?;
    if response.status() == StatusCode::CREATED {
        Ok(())
    } else {
        Err(restartable_status(repo, &operation, response).await)
    }
}

fn learn_patch_limit(repo: &RemoteRepository, digest: &Digest) {
    tracing::info!(registry = repo.registry().host(), %digest, "the registry refuses large uploads; sending {CHUNK_CAP}-byte chunks");
    repo.registry().learn_patch_limit(CHUNK_CAP);
}

/// A status error; a 5xx or a lost session (404, 416) is worth starting over for.
async fn restartable_status(
    repo: &RemoteRepository,
    operation: &str,
    response: Response,
) -> UploadError {
    let status = response.status();
    let retry_after = super::retry::retry_after(response.headers());
    UploadError {
        restart: super::retry::is_retryable_status(status)
            || matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE
            ),
        retry_after,
        error: repo.status_error(operation, response).await,
    }
}

/// The session URL with `digest=` added (keeping the registry's own query parameters).
pub(crate) fn finalising_url(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// How many bytes the registry holds, from `Range: 0-<last>` (`bytes=` prefix tolerated).
/// distribution says `0-0` for a fresh session that holds nothing. A last byte of 2^64-1
/// claims more than any upload sends: it saturates rather than wrapping to 0.
pub(crate) fn received(headers: &HeaderMap) -> Option<u64> {
    let range = headers.get(RANGE)?.to_str().ok()?.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if end == 0 { 0 } else { end.saturating_add(1) })
}

/// What the `Range` of a 202 to a PATCH says the registry holds once `sent` bytes are in:
/// `0-0` is read as the one byte of a one-byte upload, and as nothing otherwise.
fn held_after_patch(headers: &HeaderMap, sent: u64) -> Option<u64> {
    match received(headers) {
        Some(0) if sent == 1 => Some(1),
        held => held,
    }
}

fn overclaimed(held: u64, sent: u64) -> String {
    format!(
        "the registry says it holds {held} bytes of the upload, but only {sent} were sent \
         (its Range header is wrong)"
    )
}

/// Asks the registry how much of the session it holds (`GET <location>` -> 204 + Range).
async fn resume_offset(
    repo: &RemoteRepository,
    session: &mut Session,
) -> Result<u64, RequestError> {
    let scopes = repo.push_scopes();
    let mut call = Call::new(Method::GET, session.location.clone(), &scopes);
    call.follow_redirects = false;
    let response = repo.send(call).await?;
    if response.status() != StatusCode::NO_CONTENT {
        return Err(RequestError {
            message: format!(
                "the upload session is gone (status check answered HTTP {})",
                response.status()
            ),
            transient: true,
        });
    }
    if let Ok(location) = redirect_target(&session.location, response.headers()) {
        session.location = location;
    }
    Ok(received(response.headers()).unwrap_or(0))
}

/// A stream whose last [`REPLAY_WINDOW`] bytes handed out are kept, so that bytes a broken
/// request took but the registry never stored can be sent again.
#[derive(Clone)]
pub(crate) struct Replay {
    state: Arc<Mutex<ReplayState>>,
}

struct ReplayState {
    inner: BlobStream,
    window: VecDeque<Bytes>,
    /// Offset of the first byte in `window`.
    window_start: u64,
    /// Offset just past the last byte taken from `inner`.
    taken: u64,
    /// Why the source failed, reported in place of the transport error it caused.
    failure: Option<StoreError>,
}

impl Replay {
    pub fn new(inner: BlobStream) -> Self {
        Replay {
            state: Arc::new(Mutex::new(ReplayState {
                inner,
                window: VecDeque::new(),
                window_start: 0,
                taken: 0,
                failure: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        self.state.lock().expect("replay lock poisoned")
    }

    fn can_resend_from(&self, offset: u64) -> bool {
        let state = self.lock();
        state.failure.is_none() && state.window_start <= offset && offset <= state.taken
    }

    fn failed(&self) -> bool {
        self.lock().failure.is_some()
    }

    fn failure(&self) -> UploadError {
        let error = self.lock().failure.take();
        match error {
            Some(error @ StoreError::DigestMismatch { .. }) => UploadError::fatal(error),
            Some(error) => UploadError::restartable(error),
            None => unreachable!("failure() is called after the source failed"),
        }
    }

    /// Bytes `offset..offset + len`, from the window first and then from the source.
    fn body(&self, offset: u64, len: u64) -> ReplayBody {
        ReplayBody {
            replay: self.clone(),
            position: offset,
            end: offset + len,
        }
    }
}

struct ReplayBody {
    replay: Replay,
    position: u64,
    end: u64,
}

impl Stream for ReplayBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.position >= this.end {
            return Poll::Ready(None);
        }
        let mut state = this.replay.lock();
        if this.position < state.window_start {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "the bytes to resend are no longer held",
            ))));
        }
        if this.position < state.taken {
            let mut chunk_start = state.window_start;
            for chunk in &state.window {
                let chunk_end = chunk_start + chunk.len() as u64;
                if this.position < chunk_end {
                    let from = (this.position - chunk_start) as usize;
                    let to = (this.end.min(chunk_end) - chunk_start) as usize;
                    this.position += (to - from) as u64;
                    return Poll::Ready(Some(Ok(chunk.slice(from..to))));
                }
                chunk_start = chunk_end;
            }
            unreachable!("position lies within the window");
        }
        match state.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let chunk_start = state.taken;
                state.taken += chunk.len() as u64;
                state.window.push_back(chunk.clone());
                while state.taken - state.window_start > REPLAY_WINDOW && state.window.len() > 1 {
                    let dropped = state.window.pop_front().expect("len > 1");
                    state.window_start += dropped.len() as u64;
                }
                let to = (this.end.min(state.taken) - chunk_start) as usize;
                this.position = chunk_start + to as u64;
                Poll::Ready(Some(Ok(chunk.slice(..to))))
            }
            Poll::Ready(Some(Err(error))) => {
                let message = error.to_string();
                state.failure = Some(error);
                Poll::Ready(Some(Err(std::io::Error::other(message))))
            }
            Poll::Ready(None) => {
                state.failure.get_or_insert_with(|| StoreError::Failed {
                    store: "source".into(),
                    operation: "read blob".into(),
                    message: format!(
                        "the stream ended after {} of {} bytes",
                        this.position, this.end
                    ),
                });
                Poll::Ready(Some(Err(std::io::Error::other(
                    "the source stream ended early",
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(parts: Vec<&'static [u8]>) -> BlobStream {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    async fn collect(body: ReplayBody) -> Vec<u8> {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[test]
    fn range_headers() {
        let range = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RANGE, value.parse().unwrap());
            received(&headers)
        };
        assert_eq!(range("0-1023"), Some(1024));
        assert_eq!(range("bytes=0-99"), Some(100));
        assert_eq!(range("0-0"), Some(0));
        assert_eq!(range("0-18446744073709551615"), Some(u64::MAX));
        assert_eq!(range("0-18446744073709551616"), None);
        assert_eq!(range("0--1"), None);
        assert_eq!(range("5-10"), None);
        assert_eq!(range("junk"), None);
        assert_eq!(received(&HeaderMap::new()), None);
    }

    #[test]
    fn the_digest_is_added_to_the_newest_location_with_its_query_kept() {
        let digest = Digest::sha256(b"");
        let location =
            Url::parse("http://127.0.0.1:5000/v2/app/blobs/uploads/u1?_state=a%2Bb%3D").unwrap();
        let url = finalising_url(&location, &digest);
        assert_eq!(
            url.as_str(),
            format!(
                "http://127.0.0.1:5000/v2/app/blobs/uploads/u1?_state=a%2Bb%3D&digest=sha256%3A{}",
                digest.hex()
            )
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("_state".into(), "a+b=".into()));
        assert_eq!(pairs[1], ("digest".into(), digest.to_string()));
    }

    #[tokio::test]
    async fn replay_serves_chunks_and_resends_from_the_window() {
        let replay = Replay::new(stream_of(vec![b"hello ", b"wide ", b"world"]));
        assert_eq!(collect(replay.body(0, 8)).await, b"hello wi");
        // The registry kept only 3 bytes: resend from there.
        assert!(replay.can_resend_from(3));
        assert_eq!(collect(replay.body(3, 13)).await, b"lo wide world");
        assert!(!replay.can_resend_from(17));
    }

    #[tokio::test]
    async fn a_source_that_ends_early_is_a_restartable_failure() {
        let replay = Replay::new(stream_of(vec![b"abc"]));
        let mut body = replay.body(0, 10);
        assert_eq!(
            body.next().await.unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert!(body.next().await.unwrap().is_err());
        assert!(replay.failed());
        assert!(replay.failure().restart);
    }
}
