//! A fault-injecting reverse proxy in front of a real registry.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every request to an upstream
//! registry, streaming bodies both ways, rewriting `Location` headers that point at the upstream
//! so they point at the proxy, and passing everything else (`WWW-Authenticate` included) through
//! unchanged. [`Fault`]s injected at start or at any time through the [`FaultHandle`] make it
//! answer like a misbehaving registry: 503s, 429 with `Retry-After`, a connection dropped in the
//! middle of an upload, blob GETs redirected (307) to a second listener on another host that
//! refuses any `Authorization` header (like S3), upload sessions moved to that host (the
//! `Location` of a new session points there, as registries that hand uploads to a storage
//! service do), GHCR's cap on PATCH sizes, and a 401 challenge as if a token had expired. Each
//! fault fires a set number of times or forever.
//!
//! Every request is logged ([`LoggedRequest`]) without secrets: no header values, no signed query
//! values. The proxy owns its tokio runtime on a thread of its own, so it serves sync and async
//! tests alike; it stops when dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::TcpListener as StdTcpListener;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Headers that belong to one connection, not to the message, and are never forwarded.
/// `expect` too: the proxy answers `100 Continue` itself and sends upstream the body at once.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// The query parameter carrying the redirect listener's "presigned" ticket (named like S3's).
const TICKET_PARAM: &str = "X-Amz-Signature";

/// What a fault does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answers 503 Service Unavailable without forwarding.
    ServiceUnavailable,
    /// Answers 429 Too Many Requests with `Retry-After: retry_after_secs` without forwarding.
    TooManyRequests { retry_after_secs: u32 },
    /// Applies to PATCH and PUT requests with a body: reads up to `after_bytes` of it, then
    /// drops the connection without an answer and without forwarding.
    ResetMidUpload { after_bytes: u64 },
    /// Applies to blob GETs: answers 307 to the same blob on the redirect listener.
    RedirectBlobGet,
    /// Applies to POSTs that start uploads: forwards them, and moves the session the registry
    /// answers (a 202's `Location`) to the redirect listener, which serves the rest of the
    /// upload like a storage service with presigned URLs: it refuses any `Authorization` and
    /// forwards to the registry with the POST's own.
    UploadElsewhere,
    /// Applies to PATCH requests: one whose body exceeds `max_bytes` is answered `status`
    /// without being forwarded (GHCR refuses PATCHes over 4 MiB); smaller ones pass.
    PatchCap { max_bytes: u64, status: u16 },
    /// Applies to requests carrying `Authorization`: answers 401 with the upstream's challenge
    /// (plus the request's scope and `error="invalid_token"`), as for a token that expired.
    Unauthorized,
}

/// A fault to inject: what it does, which requests it applies to, and how many times it fires.
#[derive(Clone, Debug)]
pub struct Fault {
    kind: FaultKind,
    method: Option<Method>,
    target: Option<Regex>,
    times: Option<u32>,
}

impl Fault {
    /// A fault of `kind` on every request it applies to, forever (see [`Fault::times`]).
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            method: None,
            target: None,
            times: None,
        }
    }

    /// 503 on every request (narrow it with [`Fault::matching`], count it with [`Fault::times`]).
    pub fn service_unavailable() -> Self {
        Self::new(FaultKind::ServiceUnavailable)
    }

    /// 429 with `Retry-After: 1`.
    pub fn too_many_requests() -> Self {
        Self::new(FaultKind::TooManyRequests {
            retry_after_secs: 1,
        })
    }

    /// Drops the connection after 64 KiB (or the whole body, if smaller) of an upload.
    pub fn reset_mid_upload() -> Self {
        Self::new(FaultKind::ResetMidUpload {
            after_bytes: 64 * 1024,
        })
    }

    /// 307 for every blob GET, to the same blob on [`FaultProxy::redirect_url`].
    pub fn redirect_blob_gets() -> Self {
        Self::new(FaultKind::RedirectBlobGet)
    }

    /// Every new upload session moved to [`FaultProxy::redirect_url`] (see
    /// [`FaultKind::UploadElsewhere`]).
    pub fn upload_elsewhere() -> Self {
        Self::new(FaultKind::UploadElsewhere)
    }

    /// GHCR's limit: PATCH bodies over 4 MiB are answered 413.
    pub fn patch_cap_4mib() -> Self {
        Self::new(FaultKind::PatchCap {
            max_bytes: 4 * 1024 * 1024,
            status: 413,
        })
    }

    /// 401 for requests that carry a token; the challenge comes from the upstream's `GET /v2/`,
    /// so an open upstream yields a 401 without one.
    pub fn expired_token() -> Self {
        Self::new(FaultKind::Unauthorized)
    }

    /// Fires on the next `n` requests it applies to, then never again.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Applies only to requests with this method (`*` for any) whose target (path and query)
    /// contains a match of `target_regex`.
    pub fn matching(mut self, method: &str, target_regex: &str) -> Self {
        self.method = (method != "*")
            .then(|| Method::from_bytes(method.as_bytes()).expect("a valid HTTP method in a test"));
        self.target = Some(Regex::new(target_regex).expect("a valid regex in a test"));
        self
    }

    fn applies_to(&self, method: &Method, target: &str, headers: &HeaderMap) -> bool {
        let inherent = match self.kind {
            FaultKind::ServiceUnavailable | FaultKind::TooManyRequests { .. } => true,
            FaultKind::ResetMidUpload { .. } => {
                (method == Method::PATCH || method == Method::PUT) && has_body(headers)
            }
            FaultKind::RedirectBlobGet => method == Method::GET && blob_path().is_match(target),
            FaultKind::UploadElsewhere => method == Method::POST && is_upload_target(target),
            FaultKind::PatchCap { .. } => method == Method::PATCH,
            FaultKind::Unauthorized => headers.contains_key(header::AUTHORIZATION),
        };
        inherent
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.target.as_ref().is_none_or(|r| r.is_match(target))
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH);
    length.is_none_or(|v| v.as_bytes() != b"0")
        && (length.is_some() || headers.contains_key(header::TRANSFER_ENCODING))
}

fn is_upload_target(target: &str) -> bool {
    target
        .split('?')
        .next()
        .unwrap_or(target)
        .contains("/blobs/uploads/")
}

fn blob_path() -> &'static Regex {
    static BLOB: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    BLOB.get_or_init(|| Regex::new(r"^/v2/.+/blobs/[a-z0-9]+:[a-f0-9]+(\?|$)").unwrap())
}

/// Which of the proxy's listeners received a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The proxy itself ([`FaultProxy::url`]).
    Proxy,
    /// The "other host" that redirected blob GETs and moved uploads go to
    /// ([`FaultProxy::redirect_url`]).
    Redirect,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub listener: Listener,
    pub method: String,
    pub path: String,
    /// Query parameters; values of signed or stateful ones (`_state`, signatures) redacted.
    pub query: Vec<(String, String)>,
    /// The status the client got; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Whether the request carried an `Authorization` header (its value is never kept).
    pub authorization: bool,
    /// The fault that answered instead of the upstream, if any.
    pub fault: Option<FaultKind>,
    /// When the request's head arrived, to measure how long a client waited between requests.
    pub received: Instant,
}

impl LoggedRequest {
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A blob upload's data request: a PATCH, or a PUT to an upload session with a body.
    pub fn is_blob_upload_data(&self) -> bool {
        self.path.contains("/blobs/uploads/")
            && (self.method == "PATCH" || (self.method == "PUT" && self.bytes_in > 0))
    }

    /// A cross-repository mount attempt (`POST .../blobs/uploads/?mount=...`).
    pub fn is_mount(&self) -> bool {
        self.method == "POST" && self.query_param("mount").is_some()
    }
}

/// Changes the faults of a running proxy and reads its request log; cheap to clone and usable
/// from any thread.
#[derive(Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

struct Shared {
    faults: Mutex<Vec<ActiveFault>>,
    log: Mutex<Vec<LoggedRequest>>,
    next_id: AtomicU64,
}

struct ActiveFault {
    id: u64,
    fault: Fault,
    /// `None`: forever.
    remaining: Option<u32>,
}

impl FaultHandle {
    /// Adds a fault after those already there; the first applicable fault with firings left
    /// answers a request.
    pub fn inject(&self, fault: Fault) {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        self.shared.faults.lock().unwrap().push(ActiveFault {
            id,
            remaining: fault.times,
            fault,
        });
    }

    /// Removes every fault: from now on the proxy forwards everything.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Firings left over all faults that do not fire forever.
    pub fn pending_firings(&self) -> u32 {
        let faults = self.shared.faults.lock().unwrap();
        faults.iter().filter_map(|f| f.remaining).sum()
    }

    /// Every request so far, in the order their answers (or drops) were decided.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// The first applicable fault with firings left. Its firing is taken at once, except for a
    /// PATCH cap, which only fires once the body turns out to be too big ([`Self::take_firing`]).
    fn select(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> Option<(u64, FaultKind)> {
        let mut faults = self.shared.faults.lock().unwrap();
        let active = faults
            .iter_mut()
            .find(|f| f.remaining != Some(0) && f.fault.applies_to(method, target, headers))?;
        if !matches!(active.fault.kind, FaultKind::PatchCap { .. }) {
            active.remaining = active.remaining.map(|n| n - 1);
        }
        Some((active.id, active.fault.kind))
    }

    /// Takes one firing of fault `id`; false when it has none left (or was cleared).
    fn take_firing(&self, id: u64) -> bool {
        let mut faults = self.shared.faults.lock().unwrap();
        match faults.iter_mut().find(|f| f.id == id) {
            Some(ActiveFault {
                remaining: Some(n), ..
            }) if *n > 0 => {
                *n -= 1;
                true
            }
            Some(ActiveFault {
                remaining: None, ..
            }) => true,
            _ => false,
        }
    }
}

/// A running proxy; dereferences to its [`FaultHandle`]. Stops when dropped.
pub struct FaultProxy {
    url: String,
    redirect_url: String,
    handle: FaultHandle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:5000`) with `faults` in place.
    pub fn start(upstream: &str, faults: Vec<Fault>) -> Result<Self> {
        let upstream = upstream.trim_end_matches('/').to_owned();
        upstream
            .parse::<Uri>()
            .with_context(|| format!("upstream URL {upstream}"))?;
        let proxy_listener = StdTcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let (redirect_listener, redirect_host) = bind_other_host()?;
        let url = format!("http://{}", proxy_listener.local_addr()?);
        let redirect_url = format!(
            "http://{redirect_host}:{}",
            redirect_listener.local_addr()?.port()
        );
        for listener in [&proxy_listener, &redirect_listener] {
            listener.set_nonblocking(true)?;
        }

        let handle = FaultHandle {
            shared: Arc::new(Shared {
                faults: Mutex::new(Vec::new()),
                log: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        };
        for fault in faults {
            handle.inject(fault);
        }
        let proxy = Arc::new(Proxy {
            upstream,
            url: url.clone(),
            redirect_url: redirect_url.clone(),
            handle: handle.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            tickets: Mutex::new(HashMap::new()),
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let (shutdown, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let serve = async {
                        let proxy_side = TcpListener::from_std(proxy_listener)?;
                        let redirect_side = TcpListener::from_std(redirect_listener)?;
                        tokio::join!(
                            serve(proxy_side, proxy.clone(), Listener::Proxy),
                            serve(redirect_side, proxy, Listener::Redirect)
                        );
                        std::io::Result::Ok(())
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            url,
            redirect_url,
            handle,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Base URL of the proxy, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of the proxy, for image references.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Base URL of the redirect listener, on another host name than the proxy.
    pub fn redirect_url(&self) -> &str {
        &self.redirect_url
    }

    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }
}

impl Deref for FaultProxy {
    type Target = FaultHandle;

    fn deref(&self) -> &FaultHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listener for the redirect target on a loopback address other than 127.0.0.1, so its URL
/// names another host; `localhost` (also 127.0.0.1) where 127.0.0.2 cannot be bound.
fn bind_other_host() -> Result<(StdTcpListener, &'static str)> {
    match StdTcpListener::bind("127.0.0.2:0") {
        Ok(listener) => Ok((listener, "127.0.0.2")),
        Err(_) => Ok((
            StdTcpListener::bind("127.0.0.1:0").context("binding the redirect listener")?,
            "localhost",
        )),
    }
}

async fn serve(listener: TcpListener, proxy: Arc<Proxy>, side: Listener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or the like: let other connections finish first.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| proxy.clone().handle(side, request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The connection was dropped on purpose ([`FaultKind::ResetMidUpload`]).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

struct Proxy {
    upstream: String,
    url: String,
    redirect_url: String,
    handle: FaultHandle,
    client: Client<HttpConnector, ProxyBody>,
    /// Redirect tickets and the `Authorization` of the GET that was redirected, which the
    /// redirect listener uses upstream the way S3 trusts a presigned URL.
    tickets: Mutex<HashMap<String, Option<HeaderValue>>>,
}

impl Proxy {
    async fn handle(
        self: Arc<Self>,
        side: Listener,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Dropped> {
        let received = Instant::now();
        let method = request.method().clone();
        let target = target_of(request.uri());
        let authorization = request.headers().contains_key(header::AUTHORIZATION);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let request = count_body(request, bytes_in.clone());

        let (outcome, fault) = match side {
            Listener::Proxy => self.proxy(request, &method, &target).await,
            Listener::Redirect => (Ok(self.serve_redirected(request, &target).await), None),
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        self.handle.shared.log.lock().unwrap().push(LoggedRequest {
            listener: side,
            method: method.to_string(),
            path: path.to_owned(),
            query: redacted_query(query),
            status: outcome.as_ref().ok().map(|r| r.status().as_u16()),
            bytes_in: bytes_in.load(Ordering::SeqCst),
            authorization,
            fault,
            received,
        });
        outcome
    }

    async fn proxy(
        &self,
        request: Request<ProxyBody>,
        method: &Method,
        target: &str,
    ) -> (Result<Response<ProxyBody>, Dropped>, Option<FaultKind>) {
        let Some((id, kind)) = self.handle.select(method, target, request.headers()) else {
            return (Ok(self.forward(request).await), None);
        };
        let answer = match kind {
            FaultKind::ServiceUnavailable => {
                drain(request.into_body()).await;
                Ok(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                ))
            }
            FaultKind::TooManyRequests { retry_after_secs } => {
                drain(request.into_body()).await;
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                Ok(response)
            }
            FaultKind::ResetMidUpload { after_bytes } => {
                read_up_to(request.into_body(), after_bytes).await;
                Err(Dropped)
            }
            FaultKind::RedirectBlobGet => {
                let authorization = request.headers().get(header::AUTHORIZATION).cloned();
                drain(request.into_body()).await;
                Ok(self.redirect(authorization, target))
            }
            FaultKind::UploadElsewhere => {
                let ticket = self.ticket(request.headers().get(header::AUTHORIZATION).cloned());
                let response = self.forward(request).await;
                Ok(self.move_session(response, &ticket))
            }
            FaultKind::PatchCap { max_bytes, status } => {
                let (parts, body) = request.into_parts();
                let (prefix, rest) = read_prefix(body, max_bytes + 1).await;
                if prefix.len() as u64 <= max_bytes || !self.handle.take_firing(id) {
                    let body = prefix_then(prefix, rest);
                    return (
                        Ok(self.forward(Request::from_parts(parts, body)).await),
                        None,
                    );
                }
                if let Some(rest) = rest {
                    drain(rest).await;
                }
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::PAYLOAD_TOO_LARGE);
                Ok(error_response(status, "SIZE_INVALID"))
            }
            FaultKind::Unauthorized => {
                drain(request.into_body()).await;
                Ok(self.expired_token_challenge(method, target).await)
            }
        };
        (answer, Some(kind))
    }

    async fn forward(&self, request: Request<ProxyBody>) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let target = target_of(&parts.uri);
        parts.uri = match format!("{}{target}", self.upstream).parse() {
            Ok(uri) => uri,
            Err(_) => return error_response(StatusCode::BAD_REQUEST, "BAD_TARGET"),
        };
        // The client sets Host from the upstream URI; the registry then writes upstream
        // Locations, which are rewritten on the way back.
        parts.headers.remove(header::HOST);
        strip_hop_by_hop(&mut parts.headers);
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                self.rewrite_location(&mut parts.headers);
                Response::from_parts(parts, body.boxed_unsync())
            }
            Err(_) => error_response(StatusCode::BAD_GATEWAY, "UPSTREAM_UNREACHABLE"),
        }
    }

    fn rewrite_location(&self, headers: &mut HeaderMap) {
        let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
            return;
        };
        if let Some(rest) = location.strip_prefix(&self.upstream) {
            let rewritten = format!("{}{rest}", self.url);
            if let Ok(value) = HeaderValue::from_str(&rewritten) {
                headers.insert(header::LOCATION, value);
            }
        }
    }

    /// A fresh "presigned" ticket that lets the redirect listener act with `authorization`.
    fn ticket(&self, authorization: Option<HeaderValue>) -> String {
        let ticket = format!(
            "{:016x}",
            self.handle.shared.next_id.fetch_add(1, Ordering::SeqCst)
        );
        self.tickets
            .lock()
            .unwrap()
            .insert(ticket.clone(), authorization);
        ticket
    }

    /// Points the `Location` of an upload answer (already rewritten to the proxy) at the
    /// redirect listener, with `ticket` added to its query.
    fn move_session(&self, mut response: Response<ProxyBody>, ticket: &str) -> Response<ProxyBody> {
        let headers = response.headers_mut();
        let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
            return response;
        };
        let Some(rest) = location.strip_prefix(&self.url) else {
            return response;
        };
        let separator = if rest.contains('?') { '&' } else { '?' };
        let moved = format!(
            "{}{rest}{separator}{TICKET_PARAM}={ticket}",
            self.redirect_url
        );
        if let Ok(value) = HeaderValue::from_str(&moved) {
            headers.insert(header::LOCATION, value);
        }
        response
    }

    fn redirect(&self, authorization: Option<HeaderValue>, target: &str) -> Response<ProxyBody> {
        let ticket = self.ticket(authorization);
        let path = target.split('?').next().unwrap_or(target);
        let mut response = empty_response(StatusCode::TEMPORARY_REDIRECT);
        let location = format!("{}{path}?{TICKET_PARAM}={ticket}", self.redirect_url);
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("a URL is a valid header value"),
        );
        response
    }

    /// The redirect listener: like S3, 400 for any request with an `Authorization` header, 403
    /// without a valid ticket; otherwise the blob from upstream, or the upload request forwarded
    /// (its query kept but for the ticket) with the session it answers kept here.
    async fn serve_redirected(
        &self,
        request: Request<ProxyBody>,
        target: &str,
    ) -> Response<ProxyBody> {
        if request.headers().contains_key(header::AUTHORIZATION) {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
                 Signature query string parameter or the Authorization header should be specified",
            );
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let ticket = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == TICKET_PARAM)
            .map(|(_, v)| v.into_owned());
        let authorization = ticket
            .as_ref()
            .and_then(|t| self.tickets.lock().unwrap().get(t).cloned());
        let (Some(ticket), Some(authorization)) = (ticket, authorization) else {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
        };
        let upload = is_upload_target(path);
        let forwarded = match upload {
            true => {
                let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .filter(|(k, _)| k != TICKET_PARAM)
                    .collect();
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(kept)
                    .finish();
                format!("{path}?{query}")
            }
            false => path.to_owned(),
        };
        let (mut parts, body) = request.into_parts();
        parts.uri = forwarded.parse().expect("a request target parses as a URI");
        if let Some(value) = authorization {
            parts.headers.insert(header::AUTHORIZATION, value);
        }
        let response = self.forward(Request::from_parts(parts, body)).await;
        match upload {
            true => self.move_session(response, &ticket),
            false => response,
        }
    }

    /// 401 with the upstream's own challenge, narrowed to this request's repository scope.
    async fn expired_token_challenge(&self, method: &Method, target: &str) -> Response<ProxyBody> {
        let ping = Request::get(format!("{}/v2/", self.upstream))
            .body(empty_body())
            .expect("a valid ping request");
        let challenge = match self.client.request(ping).await {
            Ok(response) => response.headers().get(header::WWW_AUTHENTICATE).cloned(),
            Err(_) => None,
        };
        let mut response = error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        if let Some(challenge) = challenge.as_ref().and_then(|c| c.to_str().ok()) {
            let mut challenge = challenge.to_owned();
            if let Some(name) = repository_of(target) {
                let actions = if method == Method::GET || method == Method::HEAD {
                    "pull"
                } else {
                    "pull,push"
                };
                challenge.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
            }
            challenge.push_str(",error=\"invalid_token\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

fn target_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned())
}

fn repository_of(target: &str) -> Option<&str> {
    static NAME: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| Regex::new(r"^/v2/(.+?)/(blobs|manifests|tags)/").unwrap());
    name.captures(target).map(|c| c.get(1).unwrap().as_str())
}

fn redacted_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let secret = k.starts_with('_')
                || k.to_ascii_lowercase().contains("signature")
                || k.to_ascii_lowercase().contains("token");
            let v = if secret { "<redacted>".into() } else { v };
            (k.into_owned(), v.into_owned())
        })
        .collect()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The request with its body counted into `bytes_in` as it is read.
fn count_body(request: Request<Incoming>, bytes_in: Arc<AtomicU64>) -> Request<ProxyBody> {
    request.map(|body| {
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                bytes_in.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
            frame
        })
        .boxed_unsync()
    })
}

/// Reads and discards the rest of a body, so the client sees the answer rather than a reset.
async fn drain(mut body: ProxyBody) {
    while let Some(Ok(_)) = body.frame().await {}
}

async fn read_up_to(mut body: ProxyBody, limit: u64) {
    let mut read = 0u64;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
}

/// Reads at least `limit` bytes of `body` (or all of it); returns them and the unread rest.
async fn read_prefix(mut body: ProxyBody, limit: u64) -> (Bytes, Option<ProxyBody>) {
    let mut prefix = BytesMut::new();
    while (prefix.len() as u64) < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    prefix.extend_from_slice(data);
                }
            }
            _ => return (prefix.freeze(), None),
        }
    }
    (prefix.freeze(), Some(body))
}

fn prefix_then(prefix: Bytes, rest: Option<ProxyBody>) -> ProxyBody {
    let first = stream::once(async move { Ok(Frame::data(prefix)) });
    match rest {
        None => StreamBody::new(first).boxed_unsync(),
        Some(rest) => StreamBody::new(first.chain(BodyStream::new(rest))).boxed_unsync(),
    }
}

fn empty_body() -> ProxyBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = status;
    response
}

/// A distribution-style JSON error answer.
fn error_response(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "errors": [{ "code": code, "message": "injected by the test fault proxy" }]
    });
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_only_to_the_requests_they_are_about() {
        let mut upload = HeaderMap::new();
        upload.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let mut finish = HeaderMap::new();
        finish.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let blob = "/v2/org/app/blobs/sha256:0123abcd";
        let reset = Fault::reset_mid_upload();
        assert!(reset.applies_to(&Method::PATCH, "/v2/a/blobs/uploads/x", &upload));
        assert!(!reset.applies_to(&Method::PUT, "/v2/a/blobs/uploads/x?digest=d", &finish));
        let elsewhere = Fault::upload_elsewhere();
        assert!(elsewhere.applies_to(&Method::POST, "/v2/a/blobs/uploads/", &finish));
        assert!(elsewhere.applies_to(&Method::POST, "/v2/a/blobs/uploads/?mount=d", &finish));
        assert!(!elsewhere.applies_to(&Method::PATCH, "/v2/a/blobs/uploads/x", &upload));
        assert!(!elsewhere.applies_to(&Method::POST, "/v2/a/manifests/t", &finish));
        let redirect = Fault::redirect_blob_gets();
        assert!(redirect.applies_to(&Method::GET, blob, &HeaderMap::new()));
        assert!(!redirect.applies_to(&Method::HEAD, blob, &HeaderMap::new()));
        assert!(!redirect.applies_to(&Method::GET, "/v2/a/manifests/t", &HeaderMap::new()));
        let manifests = Fault::service_unavailable().matching("PUT", "/manifests/");
        assert!(manifests.applies_to(&Method::PUT, "/v2/a/manifests/t", &HeaderMap::new()));
        assert!(!manifests.applies_to(&Method::GET, "/v2/a/manifests/t", &HeaderMap::new()));
        assert!(!Fault::expired_token().applies_to(&Method::GET, blob, &HeaderMap::new()));
    }

    #[test]
    fn query_values_that_sign_or_carry_state_are_redacted() {
        let query = redacted_query("_state=abc&digest=sha256%3A12&X-Amz-Signature=s&mount=m");
        assert_eq!(
            query,
            [
                ("_state".to_owned(), "<redacted>".to_owned()),
                ("digest".to_owned(), "sha256:12".to_owned()),
                ("X-Amz-Signature".to_owned(), "<redacted>".to_owned()),
                ("mount".to_owned(), "m".to_owned()),
            ]
        );
    }

    #[test]
    fn repository_names_come_from_the_api_path() {
        assert_eq!(repository_of("/v2/org/app/blobs/uploads/"), Some("org/app"));
        assert_eq!(repository_of("/v2/app/manifests/latest"), Some("app"));
        assert_eq!(repository_of("/v2/"), None);
    }
}
