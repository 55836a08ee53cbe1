//! A token server for `docker-registry` (distribution 2.8) in token-auth mode.
//!
//! It owns a self-signed ES256 signing certificate (written as the registry's `rootcertbundle`),
//! the users and their passwords, a [`Policy`] of who may do what on which repositories, and an
//! HTTP endpoint on loopback that answers the Docker token protocol: `GET /token` with Basic or no
//! credentials, and `POST /token` with `grant_type=password` or `grant_type=refresh_token`
//! (identity tokens). Tokens are JWTs whose header carries the certificate as `x5c`, and whose
//! `access` claim is the intersection of what was asked for and what the policy allows.
//!
//! Tokens can be made to die early ([`TokenServer::with_early_expiry`]) for tests of expiry that
//! must not race the clock. Every token request is counted and every issued token is logged with
//! its requested and granted scopes, never with a password or a token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use regex::Regex;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;
use serde_json::json;

/// The `service` the registry must be configured with (the token's audience).
pub const SERVICE: &str = "layerize-test-registry";
/// The `issuer` the registry must be configured with.
pub const ISSUER: &str = "layerize-test-token-server";

/// distribution accepts a token until `exp` plus this leeway (registry/auth/token/token.go);
/// tokens are stamped this much earlier so the registry refuses them after their lifetime.
const REGISTRY_LEEWAY: Duration = Duration::from_secs(60);
/// The lifetime of every token as `expires_in` states it, and as the registry sees it unless
/// the token dies early.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Who may do what: grants of actions on repositories (glob patterns where `*` matches any
/// characters, `/` included) to named users, and repositories anyone may pull anonymously.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    grants: Vec<PolicyGrant>,
}

#[derive(Clone, Debug)]
struct PolicyGrant {
    /// `None`: anyone, anonymous included.
    user: Option<String>,
    repository: Regex,
    actions: Vec<String>,
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `user` do `actions` (`pull`, `push`, `delete`, or `*` for all) on repositories
    /// matching `repository_glob`.
    pub fn allow(mut self, user: &str, repository_glob: &str, actions: &[&str]) -> Self {
        self.grants.push(PolicyGrant {
            user: Some(user.to_owned()),
            repository: glob_regex(repository_glob),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// Lets anyone, anonymous included, pull repositories matching `repository_glob`.
    pub fn public(mut self, repository_glob: &str) -> Self {
        self.grants.push(PolicyGrant {
            user: None,
            repository: glob_regex(repository_glob),
            actions: vec!["pull".to_owned()],
        });
        self
    }

    /// The requested actions on `repository` that `user` (`None` = anonymous) may do.
    fn permitted(&self, user: Option<&str>, repository: &str, requested: &[String]) -> Vec<String> {
        let allowed: Vec<&String> = self
            .grants
            .iter()
            .filter(|g| g.user.is_none() || g.user.as_deref() == user)
            .filter(|g| g.repository.is_match(repository))
            .flat_map(|g| &g.actions)
            .collect();
        requested
            .iter()
            .filter(|action| allowed.iter().any(|a| *a == "*" || a == action))
            .cloned()
            .collect()
    }
}

fn glob_regex(glob: &str) -> Regex {
    let pattern = format!("^{}$", regex::escape(glob).replace(r"\*", ".*"));
    Regex::new(&pattern).expect("an escaped glob is a valid regex")
}

/// How a token request proved who it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    Anonymous,
    /// `GET /token` with `Authorization: Basic`.
    Basic,
    /// `POST /token` with `grant_type=password`.
    Password,
    /// `POST /token` with `grant_type=refresh_token` (an identity token).
    RefreshToken,
}

/// One `access` claim entry: actions granted on a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// A token the server issued: for whom, how, what was asked for and what was granted.
#[derive(Clone, Debug)]
pub struct Issued {
    /// `None` for anonymous tokens.
    pub subject: Option<String>,
    pub grant: GrantKind,
    /// The `scope` strings as requested, e.g. `repository:app:pull,push`.
    pub requested: Vec<String>,
    pub granted: Vec<Access>,
    /// Whether a refresh token (identity token) came with it.
    pub refresh_token_issued: bool,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    realm: String,
    root_cert_bundle: PathBuf,
    state: Arc<State>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct State {
    signer: Signer,
    users: HashMap<String, String>,
    policy: Policy,
    early_expiry: Mutex<Option<EarlyExpiry>>,
    /// Identity (refresh) tokens and the user each stands for.
    refresh_tokens: Mutex<HashMap<String, String>>,
    requests: AtomicU64,
    issued: Mutex<Vec<Issued>>,
    /// Every access and refresh token handed out, kept apart from `issued` so that its Debug
    /// output never holds a secret.
    secrets: Mutex<Vec<String>>,
}

impl TokenServer {
    /// Starts a token server on a free loopback port for `users` (name, password) under `policy`.
    pub fn start(users: &[(&str, &str)], policy: Policy) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the token server's directory")?;
        let signer = Signer::generate()?;
        let root_cert_bundle = dir.path().join("root-cert-bundle.pem");
        std::fs::write(&root_cert_bundle, &signer.cert_pem)
            .with_context(|| format!("writing {}", root_cert_bundle.display()))?;

        let http = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("starting the token server: {e}"))?;
        let port = http
            .server_addr()
            .to_ip()
            .context("token server listens on an IP address")?
            .port();
        let http = Arc::new(http);
        let state = Arc::new(State {
            signer,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            policy,
            early_expiry: Mutex::new(None),
            refresh_tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            issued: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        });
        let thread = {
            let (http, state) = (http.clone(), state.clone());
            std::thread::Builder::new()
                .name("token-server".into())
                .spawn(move || {
                    for request in http.incoming_requests() {
                        state.handle(request);
                    }
                })?
        };
        Ok(Self {
            realm: format!("http://127.0.0.1:{port}/token"),
            root_cert_bundle,
            state,
            http,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// Makes the registry refuse each token issued while `dying()` holds once `lifetime` has
    /// passed since it was issued (at once for zero), although its `expires_in` still promises
    /// the default 300 s, as for a token revoked early. Tokens issued once `dying()` no longer
    /// holds live the default lifetime.
    ///
    /// Tests of expiry stay free of races with the clock this way: the test decides which tokens
    /// die, and a slow run only makes a lifetime more surely exceeded, never a live token stale.
    pub fn with_early_expiry(
        self,
        lifetime: Duration,
        dying: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        *self.state.early_expiry.lock().unwrap() = Some(EarlyExpiry {
            lifetime,
            dying: Box::new(dying),
        });
        self
    }

    /// Accepts `token` as an identity token of `user` in `grant_type=refresh_token` requests.
    pub fn with_identity_token(self, user: &str, token: &str) -> Self {
        self.state
            .refresh_tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), user.to_owned());
        self
    }

    /// The URL to configure as the registry's `realm`.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The `service` to configure in the registry (also the tokens' audience).
    pub fn service(&self) -> &str {
        SERVICE
    }

    /// The `issuer` to configure in the registry.
    pub fn issuer(&self) -> &str {
        ISSUER
    }

    /// PEM file with the certificate that signs the tokens: the registry's `rootcertbundle`.
    pub fn root_cert_bundle(&self) -> &Path {
        &self.root_cert_bundle
    }

    /// The registry configuration that trusts this server's tokens.
    pub fn registry_auth(&self) -> crate::registry::Auth {
        crate::registry::Auth::Token {
            realm: self.realm.clone(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            root_cert_bundle: self.root_cert_bundle.clone(),
        }
    }

    /// How many HTTP requests the server has answered, failures included.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every token issued so far, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().unwrap().clone()
    }

    /// The access and refresh tokens issued so far, for tests that check no log holds one.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.state.secrets.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which tokens die before their stated lifetime, and when.
struct EarlyExpiry {
    lifetime: Duration,
    dying: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Form or query parameters of a token request.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(encoded: &str) -> Self {
        Params(
            form_urlencoded::parse(encoded.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Scopes: repeated `scope` parameters, each possibly holding several space-separated ones.
    fn scopes(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Why a token request was refused: HTTP status and an OAuth-style error code.
struct Refusal(u16, &'static str);

impl State {
    fn handle(&self, mut request: tiny_http::Request) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let (path, query) = match request.url().split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (request.url().to_owned(), String::new()),
        };
        let outcome = match (request.method(), path.as_str()) {
            (tiny_http::Method::Get, "/token") => {
                let basic = header(&request, "Authorization").and_then(|v| parse_basic(&v));
                self.get_token(&Params::parse(&query), basic)
            }
            (tiny_http::Method::Post, "/token") => {
                let mut body = String::new();
                match request.as_reader().read_to_string(&mut body) {
                    Ok(_) => self.post_token(&Params::parse(&body)),
                    Err(_) => Err(Refusal(400, "invalid_request")),
                }
            }
            _ => Err(Refusal(404, "not_found")),
        };
        let (status, body) = match outcome {
            Ok(body) => (200, body),
            Err(Refusal(status, code)) => (status, json!({ "error": code, "details": code })),
        };
        let response = tiny_http::Response::from_string(body.to_string())
            .with_status_code(status)
            .with_header(
                tiny_http::Header::from_bytes("Content-Type", "application/json")
                    .expect("static header is valid"),
            );
        let _ = request.respond(response);
    }

    fn get_token(
        &self,
        params: &Params,
        basic: Option<(String, String)>,
    ) -> Result<serde_json::Value, Refusal> {
        let (user, grant) = match basic {
            Some((user, password)) => {
                (Some(self.authenticate(&user, &password)?), GrantKind::Basic)
            }
            None => (None, GrantKind::Anonymous),
        };
        let offline = params.get("offline_token") == Some("true");
        self.issue(params, user, grant, offline)
    }

    fn post_token(&self, params: &Params) -> Result<serde_json::Value, Refusal> {
        match params.get("grant_type") {
            Some("password") => {
                let user = params.get("username").unwrap_or_default();
                let password = params.get("password").unwrap_or_default();
                let user = self.authenticate(user, password)?;
                let offline = params.get("access_type") == Some("offline");
                self.issue(params, Some(user), GrantKind::Password, offline)
            }
            Some("refresh_token") => {
                let presented = params.get("refresh_token").unwrap_or_default();
                let user = self.refresh_tokens.lock().unwrap().get(presented).cloned();
                let user = user.ok_or(Refusal(401, "invalid_grant"))?;
                self.issue(params, Some(user), GrantKind::RefreshToken, false)
                    .map(|mut body| {
                        body["refresh_token"] = presented.into();
                        body
                    })
            }
            _ => Err(Refusal(400, "unsupported_grant_type")),
        }
    }

    fn authenticate(&self, user: &str, password: &str) -> Result<String, Refusal> {
        match self.users.get(user) {
            Some(expected) if expected == password => Ok(user.to_owned()),
            _ => Err(Refusal(401, "invalid_credentials")),
        }
    }

    fn issue(
        &self,
        params: &Params,
        user: Option<String>,
        grant: GrantKind,
        with_refresh_token: bool,
    ) -> Result<serde_json::Value, Refusal> {
        if params.get("service").is_some_and(|s| s != SERVICE) {
            return Err(Refusal(400, "invalid_service"));
        }
        let requested = params.scopes();
        let granted = self.grant(user.as_deref(), &requested);
        let lifetime = match &*self.early_expiry.lock().unwrap() {
            Some(early) if (early.dying)() => early.lifetime,
            _ => DEFAULT_LIFETIME,
        };
        let token = self
            .signer
            .token(user.as_deref().unwrap_or_default(), &granted, lifetime)
            .map_err(|_| Refusal(500, "signing_failed"))?;
        let issued_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| Refusal(500, "clock"))?;
        self.secrets.lock().unwrap().push(token.clone());
        let mut body = json!({
            "token": token,
            "access_token": token,
            "expires_in": DEFAULT_LIFETIME.as_secs(),
            "issued_at": issued_at,
        });
        let refresh_token = match (&user, with_refresh_token) {
            (Some(user), true) => {
                let refresh = random_hex(16).map_err(|_| Refusal(500, "random"))?;
                self.refresh_tokens
                    .lock()
                    .unwrap()
                    .insert(refresh.clone(), user.clone());
                self.secrets.lock().unwrap().push(refresh.clone());
                body["refresh_token"] = refresh.into();
                true
            }
            _ => false,
        };
        self.issued.lock().unwrap().push(Issued {
            subject: user,
            grant,
            requested,
            granted,
            refresh_token_issued: refresh_token,
        });
        Ok(body)
    }

    /// Intersects each requested `repository:NAME:ACTIONS` scope with the policy; other scope
    /// types (e.g. `registry:catalog:*`) and anything unparsable are granted nothing.
    fn grant(&self, user: Option<&str>, requested: &[String]) -> Vec<Access> {
        let mut granted: Vec<Access> = Vec::new();
        for scope in requested {
            let Some(("repository", rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
            let permitted = self.policy.permitted(user, name, &actions);
            if permitted.is_empty() {
                continue;
            }
            match granted.iter_mut().find(|a| a.name == name) {
                Some(access) => {
                    for action in permitted {
                        if !access.actions.contains(&action) {
                            access.actions.push(action);
                        }
                    }
                }
                None => granted.push(Access {
                    kind: "repository".to_owned(),
                    name: name.to_owned(),
                    actions: permitted,
                }),
            }
        }
        granted
    }
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_owned())
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn random_hex(len: usize) -> Result<String> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The ES256 key and its self-signed certificate; the certificate is both the `x5c` of every
/// token and the whole root bundle (distribution accepts a leaf that is itself a root).
struct Signer {
    key: EcdsaKeyPair,
    cert_der_base64: String,
    cert_pem: String,
    rng: SystemRandom,
}

impl Signer {
    fn generate() -> Result<Self> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec![ISSUER.to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key_pair)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .map_err(|e| anyhow::anyhow!("loading the generated signing key: {e}"))?;
        Ok(Self {
            key,
            cert_der_base64: STANDARD.encode(cert.der()),
            cert_pem: cert.pem(),
            rng,
        })
    }

    /// A compact JWS the registry accepts for less than `lifetime` from now (not at all for
    /// zero): `exp` counts whole seconds, so it is rounded down.
    fn token(&self, subject: &str, access: &[Access], lifetime: Duration) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_base64] });
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": (now + lifetime.as_secs()) as i64 - REGISTRY_LEEWAY.as_secs() as i64 - 1,
            "nbf": now,
            "iat": now,
            "jti": random_hex(16)?,
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing a token"))?;
        if signature.as_ref().len() != 64 {
            bail!("ES256 signatures are 64 bytes (r || s)");
        }
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_grants_the_intersection_of_requested_and_allowed_actions() {
        let policy = Policy::new()
            .allow("alice", "org/*", &["pull", "push"])
            .allow("bob", "org/app", &["pull"])
            .public("public/*");
        let pull_push = ["pull".to_owned(), "push".to_owned()];
        assert_eq!(
            policy.permitted(Some("alice"), "org/deep/app", &pull_push),
            pull_push
        );
        assert_eq!(
            policy.permitted(Some("bob"), "org/app", &pull_push),
            ["pull"]
        );
        assert!(policy
            .permitted(Some("bob"), "org/other", &pull_push)
            .is_empty());
        assert_eq!(policy.permitted(None, "public/base", &pull_push), ["pull"]);
        assert!(policy.permitted(None, "org/app", &pull_push).is_empty());
    }

    #[test]
    fn basic_header_parses_and_other_schemes_are_ignored() {
        let value = format!("Basic {}", STANDARD.encode("u:p:q"));
        assert_eq!(parse_basic(&value), Some(("u".into(), "p:q".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
    }
}
