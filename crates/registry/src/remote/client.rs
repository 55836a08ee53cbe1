//! The client of one registry host: finds its scheme and challenge (the `/v2/` ping), sends
//! authorized requests (re-authorizing once after a 401) and follows redirects. Authorization
//! goes only to the registry's own origin (and, from [`super::auth`], to its token realm): never
//! to an upload location, mount session or redirect target on another host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, Request, Response, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use super::auth::{Authenticator, Sent};
use super::challenge::Challenge;
use super::repository::RemoteRepository;
use super::token::Scopes;
use super::transport::{
    describe_transport_error, is_certificate_error, is_plain_http_answer, plain_http_allowed,
    with_attempts, Http, Payload, SendError,
};
use super::{RemoteOptions, RequestCounters};
use crate::credentials::Credential;
use crate::StoreError;

/// Redirect hops followed for one blob request (S3 and CDNs use one or two).
const MAX_REDIRECTS: usize = 5;

/// A client for one registry host, cheap to clone: clones share the connection pool, the
/// token cache and what the ping learned.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host[:port]` of the registry API.
    host: String,
    http: Http,
    auth: Authenticator,
    /// `scheme://host/`, known after the first successful ping.
    base: OnceCell<Url>,
    /// Largest PATCH the registry took, once it refused a bigger one (0: no limit seen).
    patch_limit: AtomicU64,
}

/// Why a request got no usable answer, and whether trying the whole operation again may help.
#[derive(Debug)]
pub(crate) struct RequestError {
    pub message: String,
    pub transient: bool,
}

impl RequestError {
    pub fn fatal(message: impl Into<String>) -> Self {
        RequestError {
            message: message.into(),
            transient: false,
        }
    }
}

/// One request to send through [`Registry::execute`].
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub scopes: &'a Scopes,
    pub headers: HeaderMap,
    pub payload: Payload,
    /// Whether sending it twice does no harm (retries on failures and 5xx).
    pub idempotent: bool,
    /// Blob GETs and HEADs: follow 3xx, dropping Authorization on a hop to another origin.
    pub follow_redirects: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: Url, scopes: &'a Scopes) -> Self {
        let idempotent = method == Method::GET || method == Method::HEAD;
        let follow_redirects = idempotent;
        Call {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            payload: Payload::Empty,
            idempotent,
            follow_redirects,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

impl Registry {
    /// A client for the registry API at `host` (`host[:port]`, e.g. `registry-1.docker.io`).
    pub fn new(
        host: &str,
        credential: Option<Credential>,
        options: &RemoteOptions,
    ) -> Result<Self, StoreError> {
        if let Some((_, rest)) = host.rsplit_once('@') {
            // `user:pass@host` would make the URL carry the credentials: say so, hiding them.
            return Err(StoreError::Failed {
                store: format!("<credentials>@{rest}"),
                operation: "set up client".into(),
                message: "credentials do not belong in a registry host: use layerize login \
                          or --base-creds/--target-creds"
                    .into(),
            });
        }
        Url::parse(&format!("https://{host}/")).map_err(|e| StoreError::Failed {
            store: host.to_owned(),
            operation: "set up client".into(),
            message: format!("invalid registry host: {e}"),
        })?;
        let http = Http::new(options).map_err(|message| StoreError::Failed {
            store: host.to_owned(),
            operation: "set up client".into(),
            message,
        })?;
        Ok(Registry {
            inner: Arc::new(Inner {
                host: host.to_owned(),
                http,
                auth: Authenticator::new(credential),
                base: OnceCell::new(),
                patch_limit: AtomicU64::new(0),
            }),
        })
    }

    /// `host[:port]` of the registry API.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// A store for one repository of this registry, sharing this client.
    pub fn repository(&self, name: &str) -> RemoteRepository {
        RemoteRepository::with_registry(self.clone(), name)
    }

    pub(crate) fn retry_policy(&self) -> &super::RetryPolicy {
        self.inner.http.retry_policy()
    }

    pub(crate) fn patch_limit(&self) -> Option<u64> {
        match self.inner.patch_limit.load(Ordering::Relaxed) {
            0 => None,
            limit => Some(limit),
        }
    }

    pub(crate) fn learn_patch_limit(&self, limit: u64) {
        self.inner.patch_limit.store(limit, Ordering::Relaxed);
    }

    /// `scheme://host/` of the API, pinging `/v2/` the first time.
    pub(crate) async fn base(&self, counters: &RequestCounters) -> Result<&Url, RequestError> {
        self.inner
            .base
            .get_or_try_init(|| self.ping(counters))
            .await
    }

    /// Refuses URLs (redirects, upload locations) that would need plain HTTP where not allowed.
    pub(crate) fn check_scheme(&self, url: &Url) -> Result<(), RequestError> {
        if self.inner.http.allows(url) {
            return Ok(());
        }
        Err(RequestError::fatal(format!(
            "refusing to follow the registry to {}://{}: plain HTTP is used only for loopback hosts and hosts named with --insecure-registry",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )))
    }

    /// Finds the scheme (https; plain HTTP first for loopback, as fallback for insecure hosts)
    /// and the registry's challenge.
    async fn ping(&self, counters: &RequestCounters) -> Result<Url, RequestError> {
        let host = &self.inner.host;
        let plain = Url::parse(&format!("http://{host}/"))
            .map_err(|e| RequestError::fatal(format!("invalid registry host {host:?}: {e}")))?;
        let secure = Url::parse(&format!("https://{host}/")).expect("valid once http parsed");
        let loopback = plain_http_allowed(&plain, &[]);
        let insecure = self.inner.http.allows(&plain);
        let candidates: Vec<Url> = if loopback {
            vec![plain, secure]
        } else if insecure {
            vec![secure, plain]
        } else {
            vec![secure]
        };
        for (i, base) in candidates.iter().enumerate() {
            let more = i + 1 < candidates.len();
            let url = base.join("v2/").expect("static path");
            let outcome = self
                .inner
                .http
                .send_simple(counters, || Request::new(Method::GET, url.clone()))
                .await;
            match outcome {
                Ok(response) => match response.status() {
                    StatusCode::OK => return Ok(base.clone()),
                    StatusCode::UNAUTHORIZED => {
                        let challenge = Challenge::from_headers(response.headers()).ok_or_else(|| {
                            RequestError::fatal(format!(
                                "{url} answers 401 without an authentication challenge layerize understands (Basic or Bearer)"
                            ))
                        })?;
                        self.inner.auth.learn(challenge);
                        return Ok(base.clone());
                    }
                    // A TLS server answering plain HTTP says 400 ("HTTP request to an HTTPS server").
                    StatusCode::BAD_REQUEST if more => {
                        tracing::debug!(%url, "HTTP 400 to plain HTTP; trying TLS");
                    }
                    status if super::retry::is_retryable_status(status) => {
                        return Err(RequestError {
                            message: format!(
                                "{url} answers HTTP {status} (gave up after {} attempts)",
                                self.retry_policy().attempts
                            ),
                            transient: true,
                        })
                    }
                    status => {
                        return Err(RequestError::fatal(format!(
                            "{url} answers HTTP {status}: is this an OCI registry (no /v2/ API)?"
                        )))
                    }
                },
                // Only a failed TLS attempt falls back to plain HTTP; a refused connection
                // is refused on either scheme.
                Err(SendError::Transport { error, .. }) if more && base.scheme() == "https" => {
                    let error = describe_transport_error(&error);
                    tracing::debug!(%url, %error, "TLS failed; trying plain HTTP (insecure host)");
                }
                Err(SendError::Transport { error, attempts }) => {
                    return Err(self.transport_error(&error, attempts))
                }
                Err(SendError::Body(error)) => return Err(RequestError::fatal(error.to_string())),
            }
        }
        unreachable!("the last candidate always returns")
    }

    /// Explains a failure to reach the registry after `attempts` tries.
    fn transport_error(&self, error: &reqwest::Error, attempts: u32) -> RequestError {
        let host = &self.inner.host;
        let detail = describe_transport_error(error);
        if is_plain_http_answer(error) {
            return RequestError::fatal(format!(
                "TLS handshake with {host} failed: is it a plain-HTTP registry? Plain HTTP is used only for loopback hosts and hosts named with --insecure-registry ({detail})"
            ));
        }
        if is_certificate_error(error) {
            return RequestError::fatal(format!(
                "TLS certificate of {host} is not trusted: pass its CA with --ca-cert FILE ({detail})"
            ));
        }
        RequestError {
            message: with_attempts(detail, attempts),
            transient: super::retry::is_retryable_error(error),
        }
    }

    /// Sends `call` with the Authorization its scopes need; after a 401, re-authorizes once
    /// (fresh token, the challenge's scopes added) and sends again if the body allows.
    pub(crate) async fn execute(
        &self,
        call: Call<'_>,
        counters: &RequestCounters,
    ) -> Result<Response, RequestError> {
        let origin = self.base(counters).await?.origin();
        self.check_scheme(&call.url)?;
        // An upload location or mount session may be on another host (a storage service the
        // registry hands uploads to): it gets no credentials of ours, and no 401 from it
        // teaches us a challenge.
        let ours = call.url.origin() == origin;
        if !ours {
            tracing::debug!(
                host = call.url.host_str().unwrap_or_default(),
                "request to another host than the registry: sent without Authorization"
            );
        }
        let auth = &self.inner.auth;
        let mut scopes = call.scopes.clone();
        let mut may_reauthorize = ours;
        loop {
            let sent = match ours {
                true => auth
                    .authorize(&self.inner.http, &scopes, counters)
                    .await
                    .map_err(|error| RequestError {
                        message: error.to_string(),
                        transient: error.is_transient(),
                    })?,
                false => Sent::Nothing,
            };
            let authorization = sent.header(auth);
            let make = || {
                call.payload.body().map(|body| {
                    body.map(|body| {
                        let mut request = Request::new(call.method.clone(), call.url.clone());
                        *request.headers_mut() = call.headers.clone();
                        if let Some(value) = &authorization {
                            request.headers_mut().insert(AUTHORIZATION, value.clone());
                        }
                        *request.body_mut() = body;
                        request
                    })
                })
            };
            let response = self
                .inner
                .http
                .send(counters, call.idempotent, make)
                .await
                .map_err(|error| match error {
                    SendError::Transport { error, attempts } => {
                        self.transport_error(&error, attempts)
                    }
                    SendError::Body(error) => {
                        RequestError::fatal(format!("cannot read the body to send: {error}"))
                    }
                })?;
            if response.status() == StatusCode::UNAUTHORIZED && may_reauthorize {
                may_reauthorize = false;
                let challenge = Challenge::from_headers(response.headers());
                if let Some(wider) = auth.refused(&sent, challenge, &scopes) {
                    if call.payload.can_replay() {
                        scopes = wider;
                        continue;
                    }
                }
            }
            if call.follow_redirects && response.status().is_redirection() {
                return self
                    .follow_redirects(&call, response, authorization, counters)
                    .await;
            }
            return Ok(response);
        }
    }

    async fn follow_redirects(
        &self,
        call: &Call<'_>,
        mut response: Response,
        authorization: Option<HeaderValue>,
        counters: &RequestCounters,
    ) -> Result<Response, RequestError> {
        let origin = self.base(counters).await?.origin();
        let mut url = call.url.clone();
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok(response);
            }
            url = redirect_target(&url, response.headers())?;
            self.check_scheme(&url)?;
            // Our credentials are for the registry only: S3 and CDNs refuse (or log) them.
            let keep_auth = url.origin() == origin;
            tracing::debug!(
                host = url.host_str().unwrap_or_default(),
                keep_auth,
                "following redirect"
            );
            let method = call.method.clone();
            response = self
                .inner
                .http
                .send_simple(counters, || {
                    let mut request = Request::new(method.clone(), url.clone());
                    if let (true, Some(value)) = (keep_auth, &authorization) {
                        request.headers_mut().insert(AUTHORIZATION, value.clone());
                    }
                    request
                })
                .await
                .map_err(|error| match error {
                    SendError::Transport { error, attempts } => RequestError {
                        message: with_attempts(
                            format!(
                                "redirected to {}: {}",
                                url.host_str().unwrap_or_default(),
                                describe_transport_error(&error)
                            ),
                            attempts,
                        ),
                        transient: super::retry::is_retryable_error(&error),
                    },
                    SendError::Body(error) => RequestError::fatal(error.to_string()),
                })?;
        }
        Err(RequestError::fatal(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Checks our credentials the way `docker login` does: `GET /v2/` with Basic, or with a
    /// token exchanged for no scope at all. Other failures (no registry there, TLS, a token
    /// service that is down) are errors.
    pub async fn check_login(&self) -> Result<LoginCheck, StoreError> {
        let counters = RequestCounters::default();
        let fail = |message: String| StoreError::Failed {
            store: self.host().to_owned(),
            operation: "log in".into(),
            message,
        };
        let url = self
            .base(&counters)
            .await
            .map_err(|error| fail(error.message))?
            .join("v2/")
            .expect("static path");
        let no_scope = Scopes::default();
        let response = self
            .execute(Call::new(Method::GET, url, &no_scope), &counters)
            .await
            .map_err(|error| fail(error.message))?;
        let auth = &self.inner.auth;
        match response.status() {
            StatusCode::OK => Ok(LoginCheck::Accepted),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => match auth.last_exchange_error() {
                Some(exchange) if !auth.token_service_refused() => Err(fail(exchange)),
                _ => Ok(LoginCheck::Refused),
            },
            status => Err(fail(format!("GET /v2/ answered HTTP {status}"))),
        }
    }

    /// Why the registry may have refused a request: a note for 401 errors, read with the
    /// response's headers (its challenge).
    pub(crate) fn unauthorized_hint(&self, headers: &HeaderMap) -> String {
        let auth = &self.inner.auth;
        if let Some(exchange) = auth.last_exchange_error() {
            return format!("authentication failed ({exchange})");
        }
        if let Some(Challenge::Bearer(bearer)) = Challenge::from_headers(headers) {
            if bearer.error.as_deref() == Some("insufficient_scope") {
                if let Some(hint) = auth.insufficient_scope_hint(&bearer.scopes) {
                    return hint;
                }
            }
        }
        if auth.has_login() {
            return "the registry refused the credentials".into();
        }
        format!(
            "authentication required: no credentials found for {} (layerize login or docker login, or --base-creds/--target-creds)",
            self.inner.host
        )
    }
}

/// What a registry said to our credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCheck {
    Accepted,
    /// Turned down: wrong username or password (or token).
    Refused,
}

/// Resolves a `Location` header (absolute or relative) against the URL it answered.
pub(crate) fn redirect_target(current: &Url, headers: &HeaderMap) -> Result<Url, RequestError> {
    let location = headers
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| RequestError::fatal("the registry answered without a Location header"))?;
    current
        .join(location)
        .map_err(|e| RequestError::fatal(format!("the registry sent an invalid Location: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(current: &str, value: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, value.parse().unwrap());
        redirect_target(&Url::parse(current).unwrap(), &headers)
            .unwrap()
            .to_string()
    }

    #[test]
    fn locations_resolve_against_the_request_url() {
        let post = "http://127.0.0.1:5000/v2/app/blobs/uploads/";
        assert_eq!(
            location(post, "/v2/app/blobs/uploads/abc?_state=xyz"),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/abc?_state=xyz"
        );
        assert_eq!(
            location(post, "abc"),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/abc"
        );
        assert_eq!(
            location(post, "https://uploads.example/session/1?sig=a%2Fb"),
            "https://uploads.example/session/1?sig=a%2Fb"
        );
    }

    #[test]
    fn a_401_without_credentials_suggests_both_logins() {
        let registry = Registry::new("127.0.0.1:5000", None, &RemoteOptions::default()).unwrap();
        let hint = registry.unauthorized_hint(&HeaderMap::new());
        assert_eq!(
            hint,
            "authentication required: no credentials found for 127.0.0.1:5000 (layerize login or docker login, or --base-creds/--target-creds)"
        );
    }

    #[test]
    fn a_host_with_credentials_is_refused_without_showing_them() {
        let error = Registry::new("user:s3cret@ghcr.io", None, &RemoteOptions::default())
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.starts_with("<credentials>@ghcr.io: set up client: credentials"),
            "{message}"
        );
        assert!(!format!("{message} {error:?}").contains("s3cret"));
    }

    #[test]
    fn a_missing_location_is_an_error() {
        let current = Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        assert!(redirect_target(&current, &HeaderMap::new()).is_err());
    }
}
