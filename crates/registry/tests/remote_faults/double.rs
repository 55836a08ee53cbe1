//! The registry double: a registry on a loopback port, speaking just enough of the
//! distribution API (blobs, uploads, mounts, manifests, Bearer tokens) and answering as
//! [`Faults`] say a misbehaving registry does, with a log of every request. It serves plain
//! HTTP, and TLS too on a listener of its own ([`Double::listen_tls`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use layerize_manifest::Digest;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub const USER: &str = "bob";
pub const PASSWORD: &str = "correct horse";
pub const REFRESH_TOKEN: &str = "refresh-7f3a";
/// The size of a [`HugeAnswer`]'s body: far more than a client may hold.
pub const HUGE_BODY: u64 = 4 << 30;

/// What the double does wrong, and how it authenticates.
#[derive(Default)]
pub struct Faults {
    /// Answer 503 to this many requests (token requests excluded).
    pub unavailable: usize,
    /// Answer 429 with `Retry-After: 1` to this many requests.
    pub throttled: usize,
    /// Refuse PATCH bodies larger than this with 413.
    pub patch_cap: Option<usize>,
    /// Refuse monolithic PUT bodies larger than this with 413.
    pub put_cap: Option<usize>,
    /// Drop the connection of the next PATCH or body-carrying PUT after this many body bytes.
    pub reset_after: Option<usize>,
    /// Drop the connection of every PATCH or body-carrying PUT after this many body bytes.
    pub reset_always_after: Option<usize>,
    /// Tokens grant `pull` only, whatever was asked for.
    pub grant_only_pull: bool,
    /// Redirect blob GETs to this base URL.
    pub redirect_blobs_to: Option<String>,
    /// Serve `GET /cdn/<digest>` and refuse any request carrying Authorization.
    pub cdn: bool,
    /// Require Bearer tokens issued by `/token` for these credentials.
    pub bearer: bool,
    /// A token stops working after this many uses (0: never).
    pub token_uses: usize,
    /// Manifest PUTs also need this scope (to provoke insufficient_scope).
    pub manifest_put_extra_scope: Option<String>,
    /// Answer mounts with 202 and an upload session.
    pub refuse_mounts: bool,
    /// Answer the OAuth2 POST to `/token` with 404 (only GET is offered).
    pub no_oauth_post: bool,
    /// Answer the next manifest PUT with 429 and `Retry-After` of this many seconds.
    pub throttle_manifest_put: Option<u64>,
    /// Revoke every token issued so far when that 429 is sent, whatever `expires_in` said, as if
    /// they had expired while the client waited (without racing the clock).
    pub revoke_tokens_when_throttling: bool,
    /// The token realm the challenges name (default: `/token` of the double itself).
    pub realm: Option<String>,
    /// Answer token requests with this status, this many times.
    pub token_status: Option<(u16, usize)>,
    /// The raw JSON of `expires_in` in token answers (default `300`).
    pub token_expires_in: Option<&'static str>,
    /// Answer one kind of request with a body of [`HUGE_BODY`] bytes.
    pub huge_answer: Option<HugeAnswer>,
    /// The `Range` header of every 202 to a PATCH, whatever the double holds.
    pub patch_range: Option<&'static str>,
    /// The `Range` header of every 204 to an upload's status check, whatever the double holds.
    pub status_range: Option<&'static str>,
    /// Take PATCH bodies and throw them away: an upload that never advances.
    pub discard_patches: bool,
    /// The `Content-Length` header of answers to GETs whose path contains the first string.
    pub content_length: Option<(&'static str, &'static str)>,
}

/// An answer with a body of [`HUGE_BODY`] bytes, streamed as fast as the client reads it, to
/// the requests with `method` whose path contains `path`.
#[derive(Clone, Copy)]
pub struct HugeAnswer {
    pub method: &'static str,
    pub path: &'static str,
    pub status: u16,
    /// Whether `Content-Length` says the size; else the body ends with the connection.
    pub declared: bool,
}

impl Faults {
    /// Bearer tokens, and nothing wrong.
    pub fn bearer() -> Faults {
        Faults {
            bearer: true,
            ..Faults::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub content_range: Option<String>,
    pub body_len: usize,
}

#[derive(Default)]
pub struct State {
    pub faults: Faults,
    /// (repository, digest) -> bytes.
    pub blobs: HashMap<(String, String), Bytes>,
    /// upload id -> (repository, bytes so far).
    pub uploads: HashMap<String, (String, Vec<u8>)>,
    pub manifests: HashMap<(String, String), (String, Vec<u8>)>,
    /// token -> (scopes granted, uses left).
    pub tokens: HashMap<String, (Vec<String>, usize)>,
    pub log: Vec<Logged>,
    pub next_id: usize,
    /// Bytes of a [`HugeAnswer`] the client took before it hung up.
    pub huge_written: u64,
    /// Whether the [`HugeAnswer`] is over (the client hung up, or it was all sent).
    pub huge_finished: bool,
}

#[derive(Clone)]
pub struct Double {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// Instead of `body`, [`HUGE_BODY`] bytes (declared in `Content-Length` if `Some(true)`).
    huge: Option<bool>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            huge: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Replaces the header `name` with `value`, if there is one.
    fn replace_header(mut self, name: &str, value: Option<&str>) -> Self {
        if let Some(value) = value {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

impl Double {
    pub async fn start(faults: Faults) -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let double = Double {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                faults,
                ..State::default()
            })),
        };
        let server = double.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        double
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == method && l.path.contains(path_part))
            .count()
    }

    pub fn seed_blob(&self, repository: &str, bytes: Bytes) -> Digest {
        let digest = Digest::sha256(&bytes);
        self.state()
            .blobs
            .insert((repository.to_owned(), digest.to_string()), bytes);
        digest
    }

    /// Serves the same registry over TLS with `tls` on a port of its own. A plain-HTTP request
    /// there is answered 400, as Go's servers (distribution's among them) do.
    pub async fn listen_tls(&self, tls: tokio_rustls::TlsAcceptor) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (server, tls) = (server.clone(), tls.clone());
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    if stream.peek(&mut first).await.unwrap_or(0) == 0 {
                        return;
                    }
                    // 0x16 opens a TLS handshake record.
                    if first[0] != 0x16 {
                        return refuse_plain_http(stream).await;
                    }
                    if let Ok(stream) = tls.accept(stream).await {
                        server.serve(stream).await;
                    }
                });
            }
        });
        addr
    }

    /// One request per connection (`Connection: close`), enough for reqwest.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (target, String::new()),
        };
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let request = Request {
            method,
            path,
            query,
            headers,
        };
        let length: usize = request
            .headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);

        // Faults decided before the body is read.
        let early = self.early_reply(&request, length);
        let body = match early {
            Some(Err(keep)) => {
                // Take `keep` bytes into the upload, then drop the connection.
                let mut body = vec![0; keep];
                let _ = stream.read_exact(&mut body).await;
                self.append_to_upload(&request.path, &body);
                self.record(&request, keep);
                return;
            }
            Some(Ok(reply)) => {
                self.record(&request, 0);
                return self.write_reply(stream.into_inner(), reply).await;
            }
            None => {
                let mut body = vec![0; length];
                if stream.read_exact(&mut body).await.is_err() {
                    return;
                }
                body
            }
        };
        self.record(&request, body.len());
        let mut reply = self.handle(&request, body);
        if let Some((path, length)) = self.state().faults.content_length {
            if request.method == "GET" && request.path.contains(path) {
                reply = reply.replace_header("Content-Length", Some(length));
            }
        }
        self.write_reply(stream.into_inner(), reply).await;
    }

    fn record(&self, request: &Request, body_len: usize) {
        self.state().log.push(Logged {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            authorization: request.headers.get("authorization").cloned(),
            content_range: request.headers.get("content-range").cloned(),
            body_len,
        });
    }

    /// A reply (or `Err(bytes to keep)` for a connection reset) before reading the body.
    fn early_reply(&self, request: &Request, length: usize) -> Option<Result<Reply, usize>> {
        let mut state = self.state();
        let faults = &mut state.faults;
        if let Some(huge) = faults.huge_answer {
            if request.method == huge.method && request.path.contains(huge.path) {
                let mut reply = Reply::new(huge.status);
                reply.huge = Some(huge.declared);
                return Some(Ok(reply));
            }
        }
        if request.path == "/token" {
            return None;
        }
        if faults.cdn && request.headers.contains_key("authorization") {
            return Some(Ok(Reply::new(400).body("only one auth mechanism allowed")));
        }
        if faults.unavailable > 0 {
            faults.unavailable -= 1;
            return Some(Ok(Reply::new(503)));
        }
        if request.method == "PUT" && request.path.contains("/manifests/") {
            if let Some(seconds) = faults.throttle_manifest_put.take() {
                if faults.revoke_tokens_when_throttling {
                    state.tokens.clear();
                }
                return Some(Ok(
                    Reply::new(429).header("Retry-After", seconds.to_string())
                ));
            }
        }
        if faults.throttled > 0 {
            faults.throttled -= 1;
            return Some(Ok(Reply::new(429).header("Retry-After", "1")));
        }
        if let Some(denied) = self.authorize(&mut state, request) {
            return Some(Ok(denied));
        }
        let faults = &mut state.faults;
        let is_upload = request.path.contains("/blobs/uploads/") && length > 0;
        if is_upload
            && request.method == "PATCH"
            && faults.patch_cap.is_some_and(|cap| length > cap)
        {
            return Some(Ok(Reply::new(413)));
        }
        if is_upload && request.method == "PUT" && faults.put_cap.is_some_and(|cap| length > cap) {
            return Some(Ok(Reply::new(413)));
        }
        if is_upload && matches!(request.method.as_str(), "PATCH" | "PUT") {
            if let Some(keep) = faults.reset_after.take().or(faults.reset_always_after) {
                return Some(Err(keep.min(length)));
            }
        }
        None
    }

    /// `None` when the request may proceed, else the 401 to answer.
    fn authorize(&self, state: &mut State, request: &Request) -> Option<Reply> {
        if !state.faults.bearer || state.faults.cdn {
            return None;
        }
        let realm =
            (state.faults.realm.clone()).unwrap_or_else(|| format!("http://{}/token", self.addr));
        let challenge = |extra: &str| {
            Reply::new(401).header(
                "WWW-Authenticate",
                format!(r#"Bearer realm="{realm}",service="double"{extra}"#),
            )
        };
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let needed = needed_scopes(request, &state.faults);
        let Some(token) = token else {
            return Some(challenge(""));
        };
        let uses = state.faults.token_uses;
        let Some((granted, left)) = state.tokens.get_mut(&token) else {
            return Some(challenge(r#",error="invalid_token""#));
        };
        if uses > 0 {
            if *left == 0 {
                return Some(challenge(r#",error="invalid_token""#));
            }
            *left -= 1;
        }
        let covered = needed.iter().all(|need| {
            let (resource, actions) = need.rsplit_once(':').unwrap();
            granted.iter().any(|grant| {
                let (g_resource, g_actions) = grant.rsplit_once(':').unwrap();
                g_resource == resource
                    && actions
                        .split(',')
                        .all(|a| g_actions.split(',').any(|g| g == a))
            })
        });
        if covered {
            None
        } else {
            Some(challenge(&format!(
                r#",scope="{}",error="insufficient_scope""#,
                needed.join(" ")
            )))
        }
    }

    fn append_to_upload(&self, path: &str, bytes: &[u8]) {
        let id = path.rsplit('/').next().unwrap_or_default().to_owned();
        if let Some((_, data)) = self.state().uploads.get_mut(&id) {
            data.extend_from_slice(bytes);
        }
    }

    fn handle(&self, request: &Request, body: Vec<u8>) -> Reply {
        if request.path == "/token" {
            return self.token(request, &body);
        }
        if request.path == "/v2/" {
            return Reply::new(200);
        }
        if let Some(digest) = request.path.strip_prefix("/cdn/") {
            let state = self.state();
            return match state.blobs.iter().find(|((_, d), _)| d == digest) {
                Some((_, bytes)) => Reply::new(200).body(bytes.clone()),
                None => Reply::new(404),
            };
        }
        let rest = request.path.strip_prefix("/v2/").unwrap_or_default();
        if let Some((repository, id)) = rest.split_once("/blobs/uploads/") {
            return self.upload(request, repository, id, body);
        }
        if let Some((repository, digest)) = rest.split_once("/blobs/") {
            let state = self.state();
            let Some(bytes) = state.blobs.get(&(repository.to_owned(), digest.to_owned())) else {
                return Reply::new(404);
            };
            if request.method == "GET" {
                if let Some(cdn) = &state.faults.redirect_blobs_to {
                    return Reply::new(307).header("Location", format!("{cdn}/cdn/{digest}"));
                }
            }
            let reply = Reply::new(200).header("Docker-Content-Digest", digest);
            return if request.method == "HEAD" {
                reply.header("Content-Length", bytes.len().to_string())
            } else {
                reply.body(bytes.clone())
            };
        }
        if let Some((repository, reference)) = rest.split_once("/manifests/") {
            let key = (repository.to_owned(), reference.to_owned());
            let mut state = self.state();
            if request.method == "PUT" {
                let media_type = request
                    .headers
                    .get("content-type")
                    .cloned()
                    .unwrap_or_default();
                let digest = Digest::sha256(&body);
                state
                    .manifests
                    .insert(key, (media_type.clone(), body.clone()));
                state.manifests.insert(
                    (repository.to_owned(), digest.to_string()),
                    (media_type, body),
                );
                return Reply::new(201).header("Docker-Content-Digest", digest.to_string());
            }
            return match state.manifests.get(&key) {
                Some((media_type, bytes)) => Reply::new(200)
                    .header("Content-Type", media_type.clone())
                    .body(bytes.clone()),
                None => Reply::new(404),
            };
        }
        Reply::new(404)
    }

    /// Issues tokens: GET with Basic credentials (the password or the refresh token), or the
    /// OAuth2 POST with `grant_type=refresh_token`.
    fn token(&self, request: &Request, body: &[u8]) -> Reply {
        if let Some((status, times)) = &mut self.state().faults.token_status {
            if *times > 0 {
                *times -= 1;
                return Reply::new(*status);
            }
        }
        let basic = |secret: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"))
            )
        };
        let (query, authorized) = if request.method == "POST" {
            if self.state().faults.no_oauth_post {
                return Reply::new(404);
            }
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            let authorized = form.get("grant_type").map(String::as_str) == Some("refresh_token")
                && form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN);
            // The POST carries its scopes space-separated in one parameter.
            let scopes: Vec<String> = form
                .get("scope")
                .map(|s| {
                    s.split(' ')
                        .map(|scope| format!("scope={}", scope.replace(':', "%3A")))
                        .collect()
                })
                .unwrap_or_default();
            (scopes.join("&"), authorized)
        } else {
            let header = request.headers.get("authorization");
            let authorized =
                header == Some(&basic(PASSWORD)) || header == Some(&basic(REFRESH_TOKEN));
            (request.query.clone(), authorized)
        };
        if !authorized {
            return Reply::new(401);
        }
        let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == "scope")
            .map(|(_, value)| value.into_owned())
            .collect();
        let mut state = self.state();
        let scopes = if state.faults.grant_only_pull {
            let pull_only = |scope: &String| {
                let (resource, _) = scope.rsplit_once(':')?;
                Some(format!("{resource}:pull"))
            };
            scopes.iter().filter_map(pull_only).collect()
        } else {
            scopes
        };
        state.next_id += 1;
        let token = format!("token-{}", state.next_id);
        let uses = state.faults.token_uses;
        let expires_in = state.faults.token_expires_in.unwrap_or("300");
        state.tokens.insert(token.clone(), (scopes, uses));
        Reply::new(200).body(format!(
            r#"{{"access_token":"{token}","expires_in":{expires_in}}}"#
        ))
    }

    fn upload(&self, request: &Request, repository: &str, id: &str, body: Vec<u8>) -> Reply {
        let mut state = self.state();
        let (patch_range, status_range) = (state.faults.patch_range, state.faults.status_range);
        let discard = state.faults.discard_patches;
        let query: HashMap<String, String> = url::form_urlencoded::parse(request.query.as_bytes())
            .into_owned()
            .collect();
        let session = |data: &[u8]| {
            let end = if data.is_empty() { 0 } else { data.len() - 1 };
            Reply::new(202)
                .header(
                    "Location",
                    format!("/v2/{repository}/blobs/uploads/{id}?_state=n{}", data.len()),
                )
                .header("Range", format!("0-{end}"))
                .header("Docker-Upload-UUID", id)
        };
        match request.method.as_str() {
            "POST" => {
                if let (Some(digest), Some(from)) = (query.get("mount"), query.get("from")) {
                    let source = state.blobs.get(&(from.clone(), digest.clone())).cloned();
                    if let (Some(bytes), false) = (source, state.faults.refuse_mounts) {
                        state
                            .blobs
                            .insert((repository.to_owned(), digest.clone()), bytes);
                        return Reply::new(201);
                    }
                }
                state.next_id += 1;
                let id = format!("u{}", state.next_id);
                state
                    .uploads
                    .insert(id.clone(), (repository.to_owned(), Vec::new()));
                Reply::new(202)
                    .header(
                        "Location",
                        format!("/v2/{repository}/blobs/uploads/{id}?_state=fresh"),
                    )
                    .header("Range", "0-0")
            }
            "GET" => match state.uploads.get(id) {
                Some((_, data)) => {
                    let mut reply = session(data).replace_header("Range", status_range);
                    reply.status = 204;
                    reply
                }
                None => Reply::new(404),
            },
            "PATCH" => {
                let Some((_, data)) = state.uploads.get_mut(id) else {
                    return Reply::new(404);
                };
                if let Some(range) = request.headers.get("content-range") {
                    let start: usize = range.split('-').next().unwrap().parse().unwrap();
                    if start != data.len() {
                        return Reply::new(416);
                    }
                }
                if !discard {
                    data.extend_from_slice(&body);
                }
                session(data).replace_header("Range", patch_range)
            }
            "PUT" => {
                let Some((_, mut data)) = state.uploads.remove(id) else {
                    return Reply::new(404);
                };
                data.extend_from_slice(&body);
                let digest = Digest::sha256(&data);
                if query.get("digest") != Some(&digest.to_string()) {
                    return Reply::new(400).body(r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#);
                }
                state.blobs.insert(
                    (repository.to_owned(), digest.to_string()),
                    Bytes::from(data),
                );
                Reply::new(201).header("Docker-Content-Digest", digest.to_string())
            }
            _ => Reply::new(405),
        }
    }
}

/// The scopes a request needs, as the double checks them.
fn needed_scopes(request: &Request, faults: &Faults) -> Vec<String> {
    let Some(rest) = request.path.strip_prefix("/v2/") else {
        return Vec::new();
    };
    let Some(repository) = ["/blobs/", "/manifests/"]
        .iter()
        .find_map(|marker| rest.split_once(marker).map(|(repo, _)| repo))
    else {
        return Vec::new();
    };
    let actions = if matches!(request.method.as_str(), "GET" | "HEAD") {
        "pull"
    } else {
        "pull,push"
    };
    let mut needed = vec![format!("repository:{repository}:{actions}")];
    if let Some(from) = url::form_urlencoded::parse(request.query.as_bytes())
        .find(|(key, _)| key == "from")
        .map(|(_, value)| value.into_owned())
    {
        needed.push(format!("repository:{from}:pull"));
    }
    if request.method == "PUT" && rest.contains("/manifests/") {
        needed.extend(faults.manifest_put_extra_scope.clone());
    }
    needed
}

/// Answers a plain-HTTP request to a TLS port, once its head is read (closing a connection
/// with unread bytes would reset it, hiding the answer).
async fn refuse_plain_http(stream: tokio::net::TcpStream) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    while stream.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
        line.clear();
    }
    let answer = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 48\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    let _ = stream.get_mut().write_all(answer.as_bytes()).await;
    let _ = stream.get_mut().shutdown().await;
}

impl Double {
    async fn write_reply<S: AsyncWrite + Unpin>(&self, mut stream: S, reply: Reply) {
        let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
        let mut has_length = false;
        for (name, value) in &reply.headers {
            has_length |= name.eq_ignore_ascii_case("content-length");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match reply.huge {
            Some(true) => head.push_str(&format!("Content-Length: {HUGE_BODY}\r\n")),
            Some(false) => {}
            None if has_length => {}
            None => head.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        match reply.huge {
            Some(_) => self.write_huge_body(&mut stream).await,
            None => {
                let _ = stream.write_all(&reply.body).await;
            }
        }
        let _ = stream.shutdown().await;
    }

    /// Writes [`HUGE_BODY`] bytes that read like the start of a JSON document that goes on and
    /// on, counting what the client takes until it hangs up.
    async fn write_huge_body<S: AsyncWrite + Unpin>(&self, stream: &mut S) {
        let opening = br#"{"token":""#;
        let filler = vec![b'a'; 64 * 1024];
        let mut written = 0u64;
        let mut chunk: &[u8] = opening;
        while written < HUGE_BODY {
            let len = chunk.len().min((HUGE_BODY - written) as usize);
            if stream.write_all(&chunk[..len]).await.is_err() {
                break;
            }
            written += len as u64;
            self.state().huge_written = written;
            chunk = &filler;
        }
        self.state().huge_finished = true;
    }
}
