//! HTTP under the registry client: the reqwest clients with layerize's TLS rules (certificates
//! verified, except for the hosts named with `--insecure-registry`), retries of idempotent
//! requests, request logging and counting, the bodies a request can be replayed with, and reading
//! answers with a size cap.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::{Request, Response, StatusCode};
use tokio::io::AsyncReadExt;
use url::{Host, Url};

use super::retry::{is_retryable_error, is_retryable_status, retry_after, RetryPolicy};
use super::{RemoteOptions, RequestCounters};

/// What a request carries, in a form that can be sent again on a retry when possible.
pub(crate) enum Payload {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a file from `offset`, reopened for each attempt.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// A stream that can be sent only once.
    Once(Mutex<Option<reqwest::Body>>),
}

impl Payload {
    pub fn once(body: reqwest::Body) -> Self {
        Payload::Once(Mutex::new(Some(body)))
    }

    /// A body for the next attempt; `None` when this payload cannot be sent again.
    pub fn body(&self) -> Option<Result<Option<reqwest::Body>, std::io::Error>> {
        match self {
            Payload::Empty => Some(Ok(None)),
            Payload::Bytes(bytes) => Some(Ok(Some(bytes.clone().into()))),
            Payload::File { path, offset, len } => Some(file_body(path, *offset, *len).map(Some)),
            Payload::Once(body) => body
                .lock()
                .expect("payload lock poisoned")
                .take()
                .map(|body| Ok(Some(body))),
        }
    }

    /// Whether a second attempt can send the same bytes.
    pub fn can_replay(&self) -> bool {
        !matches!(self, Payload::Once(_))
    }
}

fn file_body(path: &PathBuf, offset: u64, len: u64) -> Result<reqwest::Body, std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let reader = tokio::fs::File::from_std(file).take(len);
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024),
    ))
}

/// Whether plain HTTP may be spoken to the host of `url`: loopback hosts (127.0.0.0/8,
/// `localhost`, `::1`) and hosts the user named as insecure.
pub(crate) fn plain_http_allowed(url: &Url, insecure_hosts: &[String]) -> bool {
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback || named_insecure(url, insecure_hosts)
}

/// Whether the user named the host of `url` as insecure (`host` or `host:port`).
fn named_insecure(url: &Url, insecure_hosts: &[String]) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host_port = match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    insecure_hosts
        .iter()
        .any(|named| named.eq_ignore_ascii_case(host) || named.eq_ignore_ascii_case(&host_port))
}

/// The reqwest clients (connection pools) and the retry policy for one registry.
pub(crate) struct Http {
    /// Verifies every certificate: for every host not named as insecure, whatever pointed
    /// there (the registry itself, its token realm, a redirect, an upload location).
    verified: reqwest::Client,
    /// Accepts any certificate; only ever used for URLs on a host named as insecure.
    unverified: Option<reqwest::Client>,
    retry: RetryPolicy,
    insecure_hosts: Vec<String>,
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The last transport failure, after `attempts` tries.
    Transport {
        error: reqwest::Error,
        attempts: u32,
    },
    /// The body could not be (re)made: a file that cannot be read.
    Body(std::io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport { error, attempts } => {
                f.write_str(&with_attempts(describe_transport_error(error), *attempts))
            }
            SendError::Body(error) => write!(f, "cannot read the body to send: {error}"),
        }
    }
}

impl Http {
    pub fn new(options: &RemoteOptions) -> Result<Self, String> {
        let mut certificates = Vec::new();
        for path in &options.ca_certs {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read CA certificate {}: {e}", path.display()))?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
            if bundle.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            certificates.extend(bundle);
        }
        let client = |accept_invalid_certs: bool| {
            let mut builder = reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(options.jobs.max(1) * 2)
                .read_timeout(Duration::from_secs(300))
                .tls_danger_accept_invalid_certs(accept_invalid_certs);
            if !certificates.is_empty() {
                builder = builder.tls_certs_merge(certificates.clone());
            }
            builder
                .build()
                .map_err(|e| format!("cannot set up the HTTP client: {e}"))
        };
        let unverified = match options.insecure_hosts.is_empty() {
            true => None,
            false => Some(client(true)?),
        };
        Ok(Http {
            verified: client(false)?,
            unverified,
            retry: options.retry.clone(),
            insecure_hosts: options.insecure_hosts.clone(),
        })
    }

    /// The client for `url`: one that skips certificate checks only for a host named as
    /// insecure, so that naming a registry never relaxes TLS towards its token service, a CDN
    /// it redirects to or an upload location elsewhere.
    fn client_for(&self, url: &Url) -> &reqwest::Client {
        match &self.unverified {
            Some(unverified) if named_insecure(url, &self.insecure_hosts) => unverified,
            _ => &self.verified,
        }
    }

    /// Whether `url` may be requested: https, or plain HTTP where allowed.
    pub fn allows(&self, url: &Url) -> bool {
        match url.scheme() {
            "https" => true,
            "http" => plain_http_allowed(url, &self.insecure_hosts),
            _ => false,
        }
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Sends a request made by `make` (called once per attempt; `None` when the body cannot be
    /// sent again), retrying transport failures and 408/429/5xx when `idempotent`. After the
    /// last attempt the last response, whatever its status, is returned.
    pub async fn send(
        &self,
        counters: &RequestCounters,
        idempotent: bool,
        mut make: impl FnMut() -> Option<Result<Request, std::io::Error>>,
    ) -> Result<Response, SendError> {
        let mut attempt = 1;
        let mut request = match make() {
            Some(request) => request.map_err(SendError::Body)?,
            None => return Err(SendError::Body(std::io::ErrorKind::UnexpectedEof.into())),
        };
        loop {
            let (method, url) = (request.method().clone(), request.url().clone());
            let mut retry_anyway = false;
            counters.count_request();
            let outcome = self.client_for(&url).execute(request).await;
            let retry_after = match &outcome {
                Ok(response) => {
                    tracing::debug!(%method, host = url.host_str().unwrap_or_default(), path = url.path(), status = response.status().as_u16(), "registry request");
                    if !is_retryable_status(response.status()) {
                        return outcome.map_err(|error| SendError::Transport {
                            error,
                            attempts: attempt,
                        });
                    }
                    // A 429 refused the request unprocessed: safe to send again, whatever it is.
                    retry_anyway = response.status() == StatusCode::TOO_MANY_REQUESTS;
                    retry_after(response.headers())
                }
                Err(error) => {
                    tracing::debug!(%method, host = url.host_str().unwrap_or_default(), path = url.path(), error = %describe_transport_error(error), "registry request failed");
                    if !is_retryable_error(error) {
                        return outcome.map_err(|error| SendError::Transport {
                            error,
                            attempts: attempt,
                        });
                    }
                    None
                }
            };
            if !(idempotent || retry_anyway) || attempt >= self.retry.attempts {
                return outcome.map_err(|error| SendError::Transport {
                    error,
                    attempts: attempt,
                });
            }
            let Some(next) = make() else {
                return outcome.map_err(|error| SendError::Transport {
                    error,
                    attempts: attempt,
                });
            };
            let delay = self.retry.delay(attempt, retry_after);
            tracing::debug!(%method, path = url.path(), attempt, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
            request = next.map_err(SendError::Body)?;
            attempt += 1;
        }
    }

    /// [`Http::send`] for requests whose body is cheap to rebuild (pings, token requests).
    pub async fn send_simple(
        &self,
        counters: &RequestCounters,
        make: impl Fn() -> Request,
    ) -> Result<Response, SendError> {
        self.send(counters, true, || Some(Ok(make()))).await
    }
}

/// Why an answer's body was not read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is (or says it is) larger than the cap.
    TooLarge,
    Transport(reqwest::Error),
}

impl BodyError {
    /// Says what was being read: "the manifest is larger than 4 MiB", or the transport error.
    pub fn describe(&self, what: &str, limit: usize) -> String {
        match self {
            BodyError::TooLarge => format!("{what} is larger than {}", describe_size(limit)),
            BodyError::Transport(error) => {
                format!("reading {what}: {}", describe_transport_error(error))
            }
        }
    }
}

/// The body of `response`, at most `limit` bytes: a larger declared `Content-Length` is refused
/// before reading, and reading stops as soon as more arrives, so an answer that never ends
/// costs no more memory than the cap.
pub(crate) async fn read_capped(response: Response, limit: usize) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Up to the first `limit` bytes of the body of `response`, for error answers that are read
/// only to be summarised: the rest, and a body that breaks off, are dropped.
pub(crate) async fn read_prefix(response: Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    body.freeze()
}

/// `4 MiB`, `64 KiB`, `100 bytes`.
fn describe_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `message`, saying how many tries it took when there were several.
pub(crate) fn with_attempts(message: String, attempts: u32) -> String {
    if attempts > 1 {
        format!("{message} (gave up after {attempts} attempts)")
    } else {
        message
    }
}

/// A transport error with its causes (reqwest's own message alone is "error sending request").
pub(crate) fn describe_transport_error(error: &reqwest::Error) -> String {
    // reqwest appends the URL, which for uploads carries the registry's session state.
    let text = error.to_string();
    let mut message = match text.split_once(" for url (") {
        Some((kind, _)) => kind.to_owned(),
        None => text,
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Whether a TLS handshake failed because the other side answered in plain HTTP.
pub(crate) fn is_plain_http_answer(error: &reqwest::Error) -> bool {
    let text = describe_transport_error(error);
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// Whether a TLS handshake failed on the server's certificate.
pub(crate) fn is_certificate_error(error: &reqwest::Error) -> bool {
    describe_transport_error(error).contains("certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_named_hosts() {
        let allowed = |url: &str, insecure: &[&str]| {
            let insecure: Vec<String> = insecure.iter().map(|s| s.to_string()).collect();
            plain_http_allowed(&Url::parse(url).unwrap(), &insecure)
        };
        assert!(allowed("http://127.0.0.1:5000/v2/", &[]));
        assert!(allowed("http://127.3.2.1/v2/", &[]));
        assert!(allowed("http://localhost:5000/v2/", &[]));
        assert!(allowed("http://[::1]:5000/v2/", &[]));
        assert!(!allowed("http://10.0.0.1:5000/v2/", &[]));
        assert!(!allowed("http://registry.lan/v2/", &["other.lan"]));
        assert!(allowed("http://registry.lan:5000/v2/", &["registry.lan"]));
        assert!(allowed(
            "http://registry.lan:5000/v2/",
            &["registry.lan:5000"]
        ));
        assert!(!allowed(
            "http://registry.lan:5001/v2/",
            &["registry.lan:5000"]
        ));
    }

    #[test]
    fn only_named_hosts_get_the_client_that_skips_certificate_checks() {
        let options = RemoteOptions {
            insecure_hosts: vec!["registry.lan:5000".into()],
            ..RemoteOptions::default()
        };
        let http = Http::new(&options).unwrap();
        let unverified = http.unverified.as_ref().unwrap();
        let client = |url: &str| http.client_for(&Url::parse(url).unwrap()) as *const _;
        assert_eq!(
            client("https://registry.lan:5000/v2/"),
            unverified as *const _
        );
        for other in [
            "https://registry.lan/token",
            "https://registry.lan:5001/v2/",
            "https://auth.registry.lan:5000/token",
            "https://cdn.example/blob",
        ] {
            assert_eq!(client(other), &http.verified as *const _, "{other}");
        }
        let strict = Http::new(&RemoteOptions::default()).unwrap();
        assert!(strict.unverified.is_none());
    }

    #[test]
    fn sizes_are_described_in_round_units() {
        assert_eq!(describe_size(4 << 20), "4 MiB");
        assert_eq!(describe_size(64 << 10), "64 KiB");
        assert_eq!(describe_size(1000), "1000 bytes");
    }

    #[test]
    fn file_payloads_are_replayable_and_streams_are_not() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"0123456789").unwrap();
        let payload = Payload::File {
            path: file.path().to_owned(),
            offset: 2,
            len: 5,
        };
        assert!(payload.body().unwrap().is_ok());
        assert!(payload.body().unwrap().is_ok());
        let once = Payload::once(reqwest::Body::from("x"));
        assert!(once.body().is_some());
        assert!(once.body().is_none());
    }
}
