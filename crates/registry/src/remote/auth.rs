//! Authorization for registry requests: which header a request needing some scopes carries
//! (none, Basic, or a Bearer token exchanged at the challenge's realm), and what to do after a 401.
//! A failed exchange falls back to Basic only when the token service turned the scheme or the
//! login down; a token service that is down or unreachable is an error of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::challenge::{BearerChallenge, Challenge};
use super::retry::{is_retryable_error, is_retryable_status};
use super::token::{Scopes, Secret, Token, TokenCache};
use super::transport::{read_capped, with_attempts, Http, SendError};
use super::RequestCounters;
use crate::credentials::Credential;

/// What we hold to prove who we are, with every secret wrapped so it cannot be logged.
#[derive(Debug, Clone)]
enum Login {
    Basic { username: String, password: Secret },
    IdentityToken { username: String, token: Secret },
    RegistryToken(Secret),
}

impl From<Credential> for Login {
    fn from(credential: Credential) -> Self {
        match credential {
            Credential::Basic { username, password } => Login::Basic {
                username,
                password: Secret::new(password),
            },
            Credential::IdentityToken { username, token } => Login::IdentityToken {
                username,
                token: Secret::new(token),
            },
            Credential::RegistryToken(token) => Login::RegistryToken(Secret::new(token)),
        }
    }
}

/// Token responses larger than this are refused: tokens are a few KiB (JWTs with many scopes).
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// Why no usable Authorization could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("token request to {realm} failed: {}", failure.message)]
    Exchange { realm: String, failure: Failure },
}

impl AuthError {
    /// Whether trying the whole operation again later may help (the token service was down).
    pub fn is_transient(&self) -> bool {
        match self {
            AuthError::Exchange { failure, .. } => failure.kind == FailureKind::Transient,
        }
    }

    /// Whether the token service turned the scheme or the login down, which is when Basic is
    /// worth a try.
    fn refused(&self) -> bool {
        match self {
            AuthError::Exchange { failure, .. } => failure.kind == FailureKind::Refused,
        }
    }
}

/// A failed token request.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// 401/403 (this login gets no token) or 404/405 (no token service here, or not this way).
    Refused,
    /// Connection failures, 408/429/5xx: retried already, and possibly better later.
    Transient,
    /// Anything else: a TLS failure, a 400, an answer that is no token.
    Broken,
}

impl Failure {
    fn broken(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            kind: FailureKind::Broken,
        }
    }

    fn from_send(error: SendError) -> Self {
        let kind = match &error {
            SendError::Transport { error, .. } if is_retryable_error(error) => {
                FailureKind::Transient
            }
            _ => FailureKind::Broken,
        };
        Failure {
            message: error.to_string(),
            kind,
        }
    }

    /// The failure a token endpoint's non-success status stands for, after `attempts` tries.
    fn from_status(status: StatusCode, attempts: u32) -> Self {
        let kind = match status.as_u16() {
            401 | 403 | 404 | 405 => FailureKind::Refused,
            _ if is_retryable_status(status) => FailureKind::Transient,
            _ => FailureKind::Broken,
        };
        let mut message = format!("HTTP {status}");
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            message.push_str(" (are the credentials right?)");
        }
        if kind == FailureKind::Transient {
            message = with_attempts(message, attempts);
        }
        Failure { message, kind }
    }
}

/// The `Authorization` header a request was sent with, remembered (in redacted form) so a 401
/// can tell what was refused.
#[derive(Clone)]
pub(crate) enum Sent {
    Nothing,
    Basic,
    /// A token, and when it was picked for the request (just before sending).
    Bearer(Secret, Instant),
}

impl Sent {
    pub fn header(&self, authenticator: &Authenticator) -> Option<HeaderValue> {
        match self {
            Sent::Nothing => None,
            Sent::Basic => authenticator.basic_header(),
            Sent::Bearer(token, _) => Some(secret_header(&format!("Bearer {}", token.expose()))),
        }
    }
}

/// Answers the challenges of one registry for every repository on it.
pub(crate) struct Authenticator {
    login: Option<Login>,
    /// The registry's last known challenge (from the ping, updated by later 401s), stripped of
    /// per-request parts; reused when a 401 comes without one.
    challenge: RwLock<Option<Challenge>>,
    tokens: TokenCache,
    /// Set once a Bearer exchange failed while we hold a password: send Basic from then on.
    basic_instead_of_bearer: AtomicBool,
    /// Why the last token exchange failed, to explain a 401 that follows.
    last_exchange_error: Mutex<Option<String>>,
    /// Whether the token service last answered 401/403: it turned the login down.
    token_service_refused: AtomicBool,
}

impl Authenticator {
    pub fn new(credential: Option<Credential>) -> Self {
        Authenticator {
            login: credential.map(Login::from),
            challenge: RwLock::new(None),
            tokens: TokenCache::default(),
            basic_instead_of_bearer: AtomicBool::new(false),
            last_exchange_error: Mutex::new(None),
            token_service_refused: AtomicBool::new(false),
        }
    }

    pub fn has_login(&self) -> bool {
        self.login.is_some()
    }

    /// Remembers the registry's challenge (from the ping or a 401).
    pub fn learn(&self, challenge: Challenge) {
        let general = match challenge {
            Challenge::Basic => Challenge::Basic,
            Challenge::Bearer(bearer) => Challenge::Bearer(BearerChallenge {
                scopes: Vec::new(),
                error: None,
                ..bearer
            }),
        };
        *self.challenge.write().expect("challenge lock poisoned") = Some(general);
    }

    /// Whether the token service's last answer turned our login down (401/403), rather than
    /// failing in some other way.
    pub fn token_service_refused(&self) -> bool {
        self.token_service_refused.load(Ordering::Relaxed)
    }

    pub fn last_exchange_error(&self) -> Option<String> {
        self.last_exchange_error
            .lock()
            .expect("exchange error lock poisoned")
            .clone()
    }

    /// Explains an `insufficient_scope` answer to a token we hold: the token service took the
    /// login (it issued the token) but the token lacks a scope the registry asked for. Tokens may
    /// be opaque, so what is missing is read from the challenge's scopes (`needed`); pushing
    /// needs pull too, and a token that lacks either reads as "no push". `None` without a login.
    pub fn insufficient_scope_hint(&self, needed: &[String]) -> Option<String> {
        let who = match self.login.as_ref()? {
            Login::Basic { username, .. } | Login::IdentityToken { username, .. }
                if !username.is_empty() =>
            {
                format!("the credentials for {username} are valid but the token")
            }
            Login::Basic { .. } | Login::IdentityToken { .. } => {
                "the credentials are valid but the token".to_owned()
            }
            Login::RegistryToken(_) => "the registry token".to_owned(),
        };
        let lacking: Vec<String> = needed
            .iter()
            .flat_map(|scope| scope.split_whitespace())
            .filter_map(|scope| {
                let (resource, actions) = scope.rsplit_once(':')?;
                let name = resource.strip_prefix("repository:").unwrap_or(resource);
                let actions: Vec<&str> = actions.split(',').collect();
                let action = if actions.contains(&"push") {
                    "push".to_owned()
                } else {
                    actions.join(",")
                };
                Some(format!("{action} on {name}"))
            })
            .collect();
        Some(if lacking.is_empty() {
            format!("{who} does not grant what the registry asks for (insufficient_scope)")
        } else {
            format!("{who} grants no {}", lacking.join(", no "))
        })
    }

    /// What to send for a request needing `scopes`.
    pub async fn authorize(
        &self,
        http: &Http,
        scopes: &Scopes,
        counters: &RequestCounters,
    ) -> Result<Sent, AuthError> {
        if let Some(Login::RegistryToken(token)) = &self.login {
            return Ok(Sent::Bearer(token.clone(), Instant::now()));
        }
        let challenge = self
            .challenge
            .read()
            .expect("challenge lock poisoned")
            .clone();
        match challenge {
            None => Ok(Sent::Nothing),
            Some(Challenge::Basic) => Ok(self.basic_or_nothing()),
            Some(Challenge::Bearer(_)) if self.basic_instead_of_bearer.load(Ordering::Relaxed) => {
                Ok(self.basic_or_nothing())
            }
            Some(Challenge::Bearer(bearer)) => {
                let exchanged = self
                    .tokens
                    .get_or_exchange(scopes, self.exchange(http, &bearer, scopes, counters))
                    .await;
                match exchanged {
                    Ok(token) => Ok(Sent::Bearer(token.value, Instant::now())),
                    Err(error) => {
                        *self
                            .last_exchange_error
                            .lock()
                            .expect("exchange error lock poisoned") = Some(error.to_string());
                        if error.refused() && matches!(self.login, Some(Login::Basic { .. })) {
                            tracing::warn!(%error, "the token service refused; trying Basic authentication instead");
                            self.basic_instead_of_bearer.store(true, Ordering::Relaxed);
                            Ok(self.basic_or_nothing())
                        } else {
                            Err(error)
                        }
                    }
                }
            }
        }
    }

    /// After a 401 to a request sent with `sent`: forgets what was refused, learns the new
    /// challenge, and says with which scopes to try once more (`None`: retrying cannot help).
    pub fn refused(
        &self,
        sent: &Sent,
        challenge: Option<Challenge>,
        scopes: &Scopes,
    ) -> Option<Scopes> {
        if let Sent::Bearer(_, picked_at) = sent {
            // Not only this token: any obtained before it was sent may be cut short alike.
            self.tokens.forget_obtained_before(*picked_at);
        }
        let had_challenge = self
            .challenge
            .read()
            .expect("challenge lock poisoned")
            .is_some();
        let mut retry_scopes = scopes.clone();
        match &challenge {
            Some(Challenge::Bearer(bearer)) => {
                if bearer.error.as_deref() == Some("insufficient_scope") {
                    for scope in &bearer.scopes {
                        retry_scopes.add_str(scope);
                    }
                }
            }
            Some(Challenge::Basic) => {
                // Harbor answers Basic to a request that carried a Bearer token: switch.
                if matches!(sent, Sent::Basic) || !matches!(self.login, Some(Login::Basic { .. })) {
                    return None;
                }
            }
            None if had_challenge => {}
            None => return None,
        }
        if let Some(challenge) = challenge {
            self.learn(challenge);
        }
        match sent {
            Sent::Nothing if had_challenge && self.login.is_none() => None,
            Sent::Basic => None,
            _ => Some(retry_scopes),
        }
    }

    fn basic_or_nothing(&self) -> Sent {
        match self.login {
            Some(Login::Basic { .. }) => Sent::Basic,
            _ => Sent::Nothing,
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        match &self.login {
            Some(Login::Basic { username, password }) => Some(basic_header(username, password)),
            _ => None,
        }
    }

    /// Exchanges our login (or nothing) for a token granting `scopes`.
    async fn exchange(
        &self,
        http: &Http,
        bearer: &BearerChallenge,
        scopes: &Scopes,
        counters: &RequestCounters,
    ) -> Result<Token, AuthError> {
        let requested_at = Instant::now();
        let fail = |failure: Failure| AuthError::Exchange {
            realm: bearer.realm.clone(),
            failure,
        };
        let realm = Url::parse(&bearer.realm)
            .map_err(|e| fail(Failure::broken(format!("invalid realm: {e}"))))?;
        if !http.allows(&realm) {
            return Err(fail(Failure::broken(
                "refusing to send credentials to a token service over plain HTTP (only loopback \
                 hosts and hosts named with --insecure-registry may use it)",
            )));
        }
        if let Some(Login::IdentityToken { username, token }) = &self.login {
            match self
                .refresh_token_grant(http, &realm, bearer, scopes, token, counters)
                .await
                .map_err(fail)?
            {
                Some(response) => return response.into_token(requested_at).map_err(fail),
                None => {
                    tracing::debug!("refresh_token grant not supported (404); using GET");
                    let header = basic_header(username, token);
                    return self
                        .token_get(http, &realm, bearer, scopes, Some(header), counters)
                        .await
                        .and_then(|r| r.into_token(requested_at))
                        .map_err(fail);
                }
            }
        }
        let header = self.basic_header();
        self.token_get(http, &realm, bearer, scopes, header, counters)
            .await
            .and_then(|r| r.into_token(requested_at))
            .map_err(fail)
    }

    async fn token_get(
        &self,
        http: &Http,
        realm: &Url,
        bearer: &BearerChallenge,
        scopes: &Scopes,
        authorization: Option<HeaderValue>,
        counters: &RequestCounters,
    ) -> Result<TokenResponse, Failure> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &bearer.service {
                query.append_pair("service", service);
            }
            for scope in scopes.to_strings() {
                query.append_pair("scope", &scope);
            }
        }
        let response = http
            .send_simple(counters, || {
                let mut request = reqwest::Request::new(Method::GET, url.clone());
                if let Some(header) = &authorization {
                    request.headers_mut().insert(AUTHORIZATION, header.clone());
                }
                request
            })
            .await
            .map_err(Failure::from_send)?;
        self.note_token_answer(response.status());
        TokenResponse::read(response, http.retry_policy().attempts).await
    }

    fn note_token_answer(&self, status: StatusCode) {
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        self.token_service_refused.store(refused, Ordering::Relaxed);
    }

    /// The OAuth2 `refresh_token` grant; `Ok(None)` when the endpoint does not offer it (404).
    async fn refresh_token_grant(
        &self,
        http: &Http,
        realm: &Url,
        bearer: &BearerChallenge,
        scopes: &Scopes,
        refresh_token: &Secret,
        counters: &RequestCounters,
    ) -> Result<Option<TokenResponse>, Failure> {
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "layerize")
                .append_pair("scope", &scopes.to_strings().join(" "))
                .append_pair("refresh_token", refresh_token.expose());
            if let Some(service) = &bearer.service {
                form.append_pair("service", service);
            }
            bytes::Bytes::from(form.finish())
        };
        let response = http
            .send_simple(counters, || {
                let mut request = reqwest::Request::new(Method::POST, realm.clone());
                request.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                *request.body_mut() = Some(body.clone().into());
                request
            })
            .await
            .map_err(Failure::from_send)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.note_token_answer(response.status());
        TokenResponse::read(response, http.retry_policy().attempts)
            .await
            .map(Some)
    }
}

/// A header value holding a secret: marked sensitive so HTTP tooling never prints it.
fn secret_header(value: &str) -> HeaderValue {
    let mut header = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

fn basic_header(username: &str, password: &Secret) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    secret_header(&format!("Basic {encoded}"))
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON: a token service's idea of a number is not to be trusted (see [`lifetime`]).
    expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// Reads a token answer (of at most [`MAX_TOKEN_RESPONSE`] bytes) after `attempts` tries.
    async fn read(response: reqwest::Response, attempts: u32) -> Result<TokenResponse, Failure> {
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::from_status(status, attempts));
        }
        let body = read_capped(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| Failure::broken(e.describe("the token response", MAX_TOKEN_RESPONSE)))?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::broken(format!("unreadable token response: {e}")))
    }

    fn into_token(self, requested_at: Instant) -> Result<Token, Failure> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::broken("the token response holds no token"))?;
        Ok(Token::new(
            Secret::new(value),
            self.expires_in.as_ref().and_then(lifetime),
            requested_at,
        ))
    }
}

/// Seconds of an `expires_in` value: a negative number means none left, a fraction or a number
/// beyond `u64` is cut to what fits, and anything else counts as absent.
fn lifetime(expires_in: &serde_json::Value) -> Option<u64> {
    let number = expires_in.as_number()?;
    if let Some(seconds) = number.as_u64() {
        return Some(seconds);
    }
    if number.as_i64().is_some() {
        return Some(0);
    }
    // `as` saturates: NaN gives 0, 1e30 gives u64::MAX.
    number.as_f64().map(|seconds| seconds.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(error: Option<&str>, scopes: &[&str]) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: "https://auth/token".into(),
            service: Some("registry".into()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            error: error.map(str::to_owned),
        })
    }

    fn basic_login() -> Option<Credential> {
        Some(Credential::Basic {
            username: "u".into(),
            password: "p".into(),
        })
    }

    #[test]
    fn insufficient_scope_retries_with_the_challenge_scopes_added() {
        let auth = Authenticator::new(basic_login());
        auth.learn(bearer(None, &[]));
        let wanted = Scopes::repository("app", &["pull", "push"]);
        let retry = auth.refused(
            &Sent::Bearer(Secret::new("t"), Instant::now()),
            Some(bearer(
                Some("insufficient_scope"),
                &["repository:base:pull repository:app:pull,push"],
            )),
            &wanted,
        );
        assert_eq!(
            retry.unwrap().to_strings(),
            ["repository:app:pull,push", "repository:base:pull"]
        );
    }

    #[test]
    fn a_401_without_challenge_reuses_the_ping_challenge() {
        let auth = Authenticator::new(basic_login());
        auth.learn(bearer(Some("ignored"), &["repository:x:pull"]));
        let wanted = Scopes::repository("app", &["pull"]);
        let retry = auth.refused(
            &Sent::Bearer(Secret::new("expired"), Instant::now()),
            None,
            &wanted,
        );
        assert_eq!(retry, Some(wanted));
        assert_eq!(
            *auth.challenge.read().unwrap(),
            Some(bearer(None, &[])),
            "per-request parts are not remembered"
        );
    }

    #[test]
    fn refused_basic_credentials_are_final() {
        let auth = Authenticator::new(basic_login());
        auth.learn(Challenge::Basic);
        let wanted = Scopes::repository("app", &["pull"]);
        assert_eq!(
            auth.refused(&Sent::Basic, Some(Challenge::Basic), &wanted),
            None
        );
    }

    #[test]
    fn anonymous_requests_are_not_retried_once_the_challenge_is_known() {
        let auth = Authenticator::new(None);
        auth.learn(Challenge::Basic);
        let wanted = Scopes::repository("app", &["pull"]);
        assert_eq!(
            auth.refused(&Sent::Nothing, Some(Challenge::Basic), &wanted),
            None
        );
    }

    #[test]
    fn a_401_after_an_open_ping_teaches_the_challenge() {
        let auth = Authenticator::new(basic_login());
        let wanted = Scopes::repository("app", &["pull", "push"]);
        assert_eq!(
            auth.refused(&Sent::Nothing, Some(bearer(None, &[])), &wanted),
            Some(wanted)
        );
        assert!(auth.challenge.read().unwrap().is_some());
    }

    #[test]
    fn insufficient_scope_is_explained_from_the_challenge_scopes() {
        let auth = Authenticator::new(basic_login());
        assert_eq!(
            auth.insufficient_scope_hint(&["repository:host:5000/app:pull,push".into()])
                .unwrap(),
            "the credentials for u are valid but the token grants no push on host:5000/app"
        );
        assert_eq!(
            auth.insufficient_scope_hint(&["repository:base:pull".into()])
                .unwrap(),
            "the credentials for u are valid but the token grants no pull on base"
        );
        let token = Authenticator::new(Some(Credential::RegistryToken("t".into())));
        assert_eq!(
            token
                .insufficient_scope_hint(&["repository:app:pull,push".into()])
                .unwrap(),
            "the registry token grants no push on app"
        );
        assert_eq!(Authenticator::new(None).insufficient_scope_hint(&[]), None);
    }

    #[test]
    fn token_responses_accept_token_or_access_token() {
        let start = Instant::now();
        let read = |json: &str| {
            serde_json::from_str::<TokenResponse>(json)
                .unwrap()
                .into_token(start)
                .map(|t| t.value.expose().to_owned())
        };
        assert_eq!(read(r#"{"token":"a"}"#).unwrap(), "a");
        assert_eq!(
            read(r#"{"access_token":"b","expires_in":300}"#).unwrap(),
            "b"
        );
        assert_eq!(read(r#"{"token":"","access_token":"c"}"#).unwrap(), "c");
        assert!(read(r#"{"expires_in":300}"#).is_err());
    }

    #[test]
    fn hostile_lifetimes_are_read_without_overflow() {
        let start = Instant::now();
        for (expires_in, seconds) in [
            ("300", Some(300)),
            ("18446744073709551615", Some(u64::MAX)),
            ("1e30", Some(u64::MAX)),
            ("299.9", Some(299)),
            ("-1", Some(0)),
            ("-1e30", Some(0)),
            ("\"300\"", None),
            ("null", None),
        ] {
            let json = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
            let response: TokenResponse = serde_json::from_str(&json).unwrap();
            assert_eq!(
                response.expires_in.as_ref().and_then(lifetime),
                seconds,
                "{expires_in}"
            );
            let token = response.into_token(start).unwrap();
            assert_eq!(token.value.expose(), "t");
        }
    }

    #[test]
    fn only_a_refusing_token_service_lets_basic_be_tried() {
        for code in [401, 403, 404, 405] {
            let failure = Failure::from_status(StatusCode::from_u16(code).unwrap(), 5);
            assert_eq!(failure.kind, FailureKind::Refused, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            let failure = Failure::from_status(StatusCode::from_u16(code).unwrap(), 5);
            assert_eq!(failure.kind, FailureKind::Transient, "{code}");
            assert!(
                failure.message.ends_with("(gave up after 5 attempts)"),
                "{}",
                failure.message
            );
        }
        for code in [400, 501] {
            let failure = Failure::from_status(StatusCode::from_u16(code).unwrap(), 5);
            assert_eq!(failure.kind, FailureKind::Broken, "{code}");
        }
    }

    #[test]
    fn basic_header_is_sensitive_and_well_formed() {
        let header = basic_header("user", &Secret::new("pass"));
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "Basic dXNlcjpwYXNz");
    }
}
