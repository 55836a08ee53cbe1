//! One repository of a remote registry as a [`Store`]: manifests, blob reads, HEAD checks,
//! uploads, cross-repository mounts and streamed copies from other stores.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use layerize_manifest::Digest;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::client::{Call, Registry, RequestError};
use super::retry::RetryBudget;
use super::token::Scopes;
use super::transport::{read_capped, read_prefix, Payload};
use super::upload::{upload, Replay, Session, UploadError, UploadSource};
use super::verify::verified;
use super::{RemoteOptions, RequestCounters, RequestStats};
use crate::credentials::Credential;
use crate::reference::Reference;
use crate::{BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};

/// Registries refuse manifests over 4 MiB (distribution answers 400).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// How much of an error answer is read to summarise it; the rest is not read at all.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// In-memory blobs up to this size are uploaded without a HEAD first (see `put_blob`).
const SEND_WITHOUT_ASKING: usize = 1 << 20;

/// Every manifest kind layerize reads: with a Docker-only Accept, distribution answers 404 for
/// an OCI manifest.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A repository on a registry (`host/org/app`), as a [`Store`].
#[derive(Clone)]
pub struct RemoteRepository {
    registry: Registry,
    repository: String,
    counters: Arc<RequestCounters>,
    /// Whether this repository is written to: then even reads ask for a token with push rights,
    /// so that one token serves the whole build instead of a pull token first and a push token
    /// once the first blob moves.
    pushing: bool,
}

impl RemoteRepository {
    /// A store for the repository of `reference`, with its own client for the registry. Use
    /// [`Registry::repository`] to share one client (tokens, connections) between repositories.
    pub fn new(
        reference: &Reference,
        credential: Option<Credential>,
        options: &RemoteOptions,
    ) -> Result<Self, StoreError> {
        let registry = Registry::new(reference.api_host(), credential, options)?;
        Ok(Self::with_registry(registry, &reference.repository))
    }

    pub(crate) fn with_registry(registry: Registry, repository: &str) -> Self {
        RemoteRepository {
            registry,
            repository: repository.to_owned(),
            counters: Arc::default(),
            pushing: false,
        }
    }

    /// This repository as a push target (see the `pushing` field).
    pub fn for_push(mut self) -> Self {
        self.pushing = true;
        self
    }

    /// What this repository client has done so far.
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn pull_scopes(&self) -> Scopes {
        if self.pushing {
            return self.push_scopes();
        }
        Scopes::repository(&self.repository, &["pull"])
    }

    pub(crate) fn push_scopes(&self) -> Scopes {
        Scopes::repository(&self.repository, &["pull", "push"])
    }

    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response, RequestError> {
        self.registry.execute(call, &self.counters).await
    }

    /// `<base>/v2/<repository>/<path>`.
    async fn url(&self, path: &str) -> Result<Url, RequestError> {
        let base = self.registry.base(&self.counters).await?;
        base.join(&format!("v2/{}/{path}", self.repository))
            .map_err(|e| RequestError::fatal(format!("cannot build the URL for {path}: {e}")))
    }

    pub(crate) fn error(&self, operation: &str, message: String) -> StoreError {
        StoreError::Failed {
            store: self.name(),
            operation: operation.to_owned(),
            message,
        }
    }

    fn request_error(&self, operation: &str) -> impl Fn(RequestError) -> StoreError + '_ {
        let operation = operation.to_owned();
        move |error| self.error(&operation, error.message)
    }

    /// An error for an unexpected status, with the registry's own error code and message.
    pub(crate) async fn status_error(&self, operation: &str, response: Response) -> StoreError {
        self.error(operation, self.status_message(response).await)
    }

    /// What went wrong in an unexpected status, without naming the repository (for errors that
    /// are named once by the operation they are part of).
    async fn status_message(&self, response: Response) -> String {
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_prefix(response, MAX_ERROR_BODY).await;
        let mut message = format!("HTTP {status}");
        if let Some(details) = registry_errors(&body) {
            message.push_str(": ");
            message.push_str(&details);
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                message.push_str("; ");
                message.push_str(&self.registry.unauthorized_hint(&headers));
            }
            StatusCode::FORBIDDEN => {
                message.push_str("; the credentials lack access to this repository")
            }
            _ => {}
        }
        message
    }

    /// A 404, with the registry's reason when it gave one (an unknown repository reads
    /// differently from an unknown tag).
    async fn not_found(&self, what: String, response: Response) -> StoreError {
        let body = read_prefix(response, MAX_ERROR_BODY).await;
        StoreError::NotFound {
            store: self.name(),
            what: match registry_errors(&body) {
                Some(reason) => format!("{what} ({reason})"),
                None => what,
            },
        }
    }

    /// HEAD on a blob: whether it is present.
    async fn head_blob(&self, digest: &Digest, scopes: &Scopes) -> Result<bool, StoreError> {
        let operation = format!("check blob {digest}");
        let url = self
            .url(&format!("blobs/{digest}"))
            .await
            .map_err(self.request_error(&operation))?;
        let response = self
            .send(Call::new(Method::HEAD, url, scopes))
            .await
            .map_err(self.request_error(&operation))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&operation, response).await),
        }
    }

    /// `POST .../blobs/uploads/`: a fresh upload session.
    async fn start_upload(&self) -> Result<Session, RequestError> {
        let scopes = self.push_scopes();
        let url = self.url("blobs/uploads/").await?;
        let call = Call::new(Method::POST, url.clone(), &scopes)
            .idempotent(true)
            .header(CONTENT_LENGTH, 0.into());
        let response = self.send(call).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(RequestError::fatal(format!(
                "start upload: {}",
                self.status_message(response).await
            )));
        }
        Session::from_response(&url, &response)
    }

    /// Tries a cross-repository mount. `Ok(None)`: mounted. `Ok(Some(session))`: the registry
    /// offered an upload session instead (202) or refused the mount (401/403: fresh session).
    async fn mount(&self, digest: &Digest, from: &str) -> Result<Option<Session>, RequestError> {
        let scopes = self
            .push_scopes()
            .union(&Scopes::repository(from, &["pull"]));
        let mut url = self.url("blobs/uploads/").await?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let call = Call::new(Method::POST, url.clone(), &scopes)
            .idempotent(true)
            .header(CONTENT_LENGTH, 0.into());
        let response = self.send(call).await?;
        match response.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => {
                tracing::debug!(%digest, from, "mount not done; uploading in the offered session");
                Session::from_response(&url, &response).map(Some)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::debug!(%digest, from, status = response.status().as_u16(), "mount refused; uploading");
                self.start_upload().await.map(Some)
            }
            _ => Err(RequestError::fatal(self.status_message(response).await)),
        }
    }

    /// Uploads a blob, starting over from the HEAD check when an attempt fails in a way that
    /// a new attempt may not (`reopen` gives the bytes again; `None`: they cannot be re-read).
    /// Restarts and the resumes within [`upload`] share one [`RetryBudget`].
    async fn upload_with_restarts<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        first: UploadSource,
        mut session: Option<Session>,
        mut reopen: Option<F>,
    ) -> Result<PutOutcome, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<UploadSource, StoreError>>,
    {
        let operation = format!("upload blob {digest}");
        let mut source = first;
        let mut budget = RetryBudget::new(self.registry.retry_policy());
        loop {
            let session_now = match session.take() {
                Some(session) => session,
                None => self
                    .start_upload()
                    .await
                    .map_err(self.request_error(&operation))?,
            };
            match upload(self, digest, size, &source, session_now, &mut budget).await {
                Ok(()) => {
                    self.counters.count_upload(size);
                    tracing::debug!(repository = %self.repository, %digest, size, "blob uploaded");
                    return Ok(PutOutcome::Uploaded { bytes: size });
                }
                Err(UploadError {
                    error,
                    restart,
                    retry_after,
                }) => {
                    let Some(reopen) = reopen.as_mut().filter(|_| restart) else {
                        return Err(error);
                    };
                    if !budget.next_try(retry_after).await {
                        return Err(gave_up(error, &budget));
                    }
                    tracing::warn!(%digest, %error, try = budget.tries(), "blob upload failed; starting over");
                    if self.head_blob(digest, &self.push_scopes()).await? {
                        self.counters.count_skip();
                        return Ok(PutOutcome::Existed);
                    }
                    source = reopen().await?;
                }
            }
        }
    }

    async fn stream_copy(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
        session: Option<Session>,
    ) -> Result<PutOutcome, StoreError> {
        let open = || async {
            let stream = source.get_blob(digest).await?;
            Ok(UploadSource::Stream(Replay::new(verified(
                stream,
                digest.clone(),
                Some(size),
                source.name(),
            ))))
        };
        let first = open().await?;
        self.upload_with_restarts(digest, size, first, session, Some(open))
            .await
    }
}

/// `error` with the number of tries that led to it, once they are all spent.
fn gave_up(error: StoreError, budget: &RetryBudget) -> StoreError {
    match error {
        StoreError::Failed {
            store,
            operation,
            message,
        } => StoreError::Failed {
            store,
            operation,
            message: budget.gave_up(&message),
        },
        error => error,
    }
}

/// The `errors` of a registry's JSON error body, as `CODE: message (detail)`.
fn registry_errors(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let described: Vec<String> = body
        .errors
        .into_iter()
        .map(|entry| {
            let mut text = [entry.code, entry.message]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            match entry.detail {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(detail)) => text.push_str(&format!(" ({detail})")),
                Some(serde_json::Value::Object(fields)) => {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|(key, value)| match value {
                            serde_json::Value::String(value) => format!("{key}: {value}"),
                            value => format!("{key}: {value}"),
                        })
                        .collect();
                    text.push_str(&format!(" ({})", fields.join(", ")));
                }
                Some(detail) => text.push_str(&format!(" ({detail})")),
            }
            text
        })
        .collect();
    (!described.is_empty()).then(|| described.join("; "))
}

/// The media type of a manifest: the `Content-Type` unless generic, else its `mediaType` field.
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    let declared = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .filter(|value| {
            !value.is_empty() && *value != "application/json" && *value != "text/plain"
        });
    if let Some(declared) = declared {
        return Some(declared.to_owned());
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

fn size_in_mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[async_trait]
impl Store for RemoteRepository {
    fn name(&self) -> String {
        format!("{}/{}", self.registry.host(), self.repository)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn requests(&self) -> u64 {
        self.stats().requests
    }

    async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, StoreError> {
        let operation = format!("get manifest {reference}");
        let scopes = self.pull_scopes();
        let url = self
            .url(&format!("manifests/{reference}"))
            .await
            .map_err(self.request_error(&operation))?;
        let call = Call::new(Method::GET, url, &scopes)
            .header(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self
            .send(call)
            .await
            .map_err(self.request_error(&operation))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(self
                    .not_found(format!("manifest {reference}"), response)
                    .await)
            }
            _ => return Err(self.status_error(&operation, response).await),
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_capped(response, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| self.error(&operation, e.describe("the manifest", MAX_MANIFEST_BYTES)))?
            .to_vec();
        let digest = Digest::sha256(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != digest {
                return Err(StoreError::DigestMismatch {
                    store: self.name(),
                    expected,
                    actual: digest,
                });
            }
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes).ok_or_else(|| {
            self.error(
                &operation,
                "the manifest has neither a Content-Type nor a mediaType".into(),
            )
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, StoreError> {
        let operation = format!("get blob {digest}");
        let scopes = self.pull_scopes();
        let url = self
            .url(&format!("blobs/{digest}"))
            .await
            .map_err(self.request_error(&operation))?;
        let response = self
            .send(Call::new(Method::GET, url, &scopes))
            .await
            .map_err(self.request_error(&operation))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(self.not_found(format!("blob {digest}"), response).await)
            }
            _ => return Err(self.status_error(&operation, response).await),
        }
        let size = response.content_length();
        let name = self.name();
        let stream = response
            .bytes_stream()
            .map_err(move |error| StoreError::Failed {
                store: name.clone(),
                operation: operation.clone(),
                message: super::transport::describe_transport_error(&error),
            });
        Ok(verified(
            Box::pin(stream),
            digest.clone(),
            size,
            self.name(),
        ))
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.head_blob(digest, &self.pull_scopes()).await
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: BlobBody,
    ) -> Result<PutOutcome, StoreError> {
        // A small blob in memory (a config) is sent without asking first: the upload costs two
        // requests whether or not the registry has it, asking first costs one more when it does
        // not, which is the usual case for a config a build has just made.
        let small = matches!(&body, BlobBody::Bytes(bytes) if bytes.len() <= SEND_WITHOUT_ASKING);
        if !small && self.head_blob(digest, &self.push_scopes()).await? {
            self.counters.count_skip();
            return Ok(PutOutcome::Existed);
        }
        let operation = format!("upload blob {digest}");
        let no_reopen: Option<fn() -> std::future::Ready<Result<UploadSource, StoreError>>> = None;
        match body {
            BlobBody::Bytes(bytes) => {
                if bytes.len() as u64 != size || Digest::sha256(&bytes) != *digest {
                    return Err(self.error(
                        &operation,
                        format!(
                            "the {} bytes given do not match the blob's size {size} and digest",
                            bytes.len()
                        ),
                    ));
                }
                let source = || std::future::ready(Ok(UploadSource::Bytes(bytes.clone())));
                self.upload_with_restarts(
                    digest,
                    size,
                    UploadSource::Bytes(bytes.clone()),
                    None,
                    Some(source),
                )
                .await
            }
            // The registry verifies the digest of what it receives, whoever made the file.
            BlobBody::File(path) | BlobBody::Spooled(path) => {
                let length = std::fs::metadata(&path)
                    .map_err(|source| StoreError::Io {
                        store: self.name(),
                        operation: format!("{operation} from {}", path.display()),
                        source,
                    })?
                    .len();
                if length != size {
                    return Err(self.error(
                        &operation,
                        format!("{} holds {length} bytes, expected {size}", path.display()),
                    ));
                }
                let source = || std::future::ready(Ok(UploadSource::File(path.clone())));
                self.upload_with_restarts(
                    digest,
                    size,
                    UploadSource::File(path.clone()),
                    None,
                    Some(source),
                )
                .await
            }
            BlobBody::Stream(stream) => {
                let stream = verified(stream, digest.clone(), Some(size), self.name());
                self.upload_with_restarts(
                    digest,
                    size,
                    UploadSource::Stream(Replay::new(stream)),
                    None,
                    no_reopen,
                )
                .await
            }
        }
    }

    async fn copy_blob_from(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
    ) -> Result<PutOutcome, StoreError> {
        let same_registry = source
            .as_any()
            .downcast_ref::<RemoteRepository>()
            .filter(|remote| remote.registry.host() == self.registry.host());
        // A blob of a manifest read from this very repository is held here: the registry
        // refuses manifests whose blobs it lacks, so no request is needed to know it.
        if same_registry.is_some_and(|remote| remote.repository == self.repository) {
            self.counters.count_skip();
            return Ok(PutOutcome::Existed);
        }
        if self.head_blob(digest, &self.push_scopes()).await? {
            self.counters.count_skip();
            return Ok(PutOutcome::Existed);
        }
        let mountable = same_registry;
        let session = match mountable {
            Some(remote) => {
                let operation = format!("mount blob {digest} from {}", remote.repository);
                match self
                    .mount(digest, &remote.repository)
                    .await
                    .map_err(self.request_error(&operation))?
                {
                    None => {
                        self.counters.count_mount();
                        tracing::debug!(repository = %self.repository, %digest, from = %remote.repository, "blob mounted");
                        return Ok(PutOutcome::Mounted);
                    }
                    Some(session) => Some(session),
                }
            }
            None => None,
        };
        self.stream_copy(source, digest, size, session).await
    }

    async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, StoreError> {
        let operation = format!("put manifest {reference}");
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(self.error(
                &operation,
                format!(
                    "manifest is {}; registries accept at most 4 MiB",
                    size_in_mib(bytes.len())
                ),
            ));
        }
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|_| self.error(&operation, format!("invalid media type {media_type:?}")))?;
        let scopes = self.push_scopes();
        let url = self
            .url(&format!("manifests/{reference}"))
            .await
            .map_err(self.request_error(&operation))?;
        let call = Call::new(Method::PUT, url, &scopes)
            .idempotent(true)
            .header(CONTENT_TYPE, content_type)
            .payload(Payload::Bytes(bytes::Bytes::copy_from_slice(bytes)));
        let response = self
            .send(call)
            .await
            .map_err(self.request_error(&operation))?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(&operation, response).await);
        }
        let digest = Digest::sha256(bytes);
        let answered = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if let Some(answered) = answered.filter(|answered| *answered != digest.as_str()) {
            tracing::warn!(%digest, answered, "the registry reports another digest for the manifest it stored");
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_are_summarised() {
        let body = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:abc"}]}"#;
        assert_eq!(
            registry_errors(body).unwrap(),
            "MANIFEST_BLOB_UNKNOWN: blob unknown to registry (sha256:abc)"
        );
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v2"}}]}"#;
        assert_eq!(
            registry_errors(body).unwrap(),
            "MANIFEST_UNKNOWN: manifest unknown (Tag: v2)"
        );
        assert_eq!(registry_errors(b"<html>"), None);
        assert_eq!(registry_errors(br#"{"errors":[]}"#), None);
    }

    #[test]
    fn manifest_media_type_prefers_specific_content_types() {
        let oci = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                oci
            )
            .unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), oci).unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(manifest_media_type(None, b"{}"), None);
    }

    #[test]
    fn sizes_are_shown_in_mib() {
        assert_eq!(size_in_mib(5 * 1024 * 1024 + 100 * 1024), "5.1 MiB");
    }
}
