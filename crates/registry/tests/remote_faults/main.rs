//! The remote store against an in-test registry double (`double`) that injects what a real
//! registry does only sometimes: Bearer token exchanges and expiry, insufficient_scope, 503s,
//! 429 with Retry-After, a connection reset mid-upload, a PATCH size cap, redirects to a host
//! that refuses Authorization, and a mount answered with an upload session. The `hardening`
//! tests answer like a hostile or broken one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use layerize_manifest::Digest;
use layerize_registry::credentials::Credential;
use layerize_registry::remote::{Registry, RemoteOptions, RemoteRepository, RetryPolicy};
use layerize_registry::{BlobBody, PutOutcome, Store, StoreError};
use tokio::net::TcpListener;

use common::{blob, read_all, stream_of};
use double::{Double, Faults, Logged, PASSWORD, REFRESH_TOKEN, USER};

#[path = "../common/mod.rs"]
mod common;
mod double;
mod hardening;

fn options() -> RemoteOptions {
    RemoteOptions {
        retry: RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        },
        ..RemoteOptions::default()
    }
}

/// The refresh token a `docker login` to an OAuth2 registry leaves behind.
fn identity_token() -> Credential {
    Credential::IdentityToken {
        username: USER.into(),
        token: REFRESH_TOKEN.into(),
    }
}

fn login() -> Option<Credential> {
    Some(Credential::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    })
}

fn stored(double: &Double, repository: &str, digest: &Digest) -> Option<Bytes> {
    double
        .state()
        .blobs
        .get(&(repository.to_owned(), digest.to_string()))
        .cloned()
}

/// A double with `faults`, and an anonymous client of it.
async fn start_anonymous(faults: Faults) -> (Double, Registry) {
    let double = Double::start(faults).await;
    let registry = Registry::new(&double.host(), None, &options()).unwrap();
    (double, registry)
}

/// Pushes `bytes` as `body` to `app` (the double's `app` repository) and checks that the double
/// stores them as sent.
async fn put_to_app(
    double: &Double,
    app: &RemoteRepository,
    bytes: &Bytes,
    body: BlobBody,
) -> PutOutcome {
    let digest = Digest::sha256(bytes);
    let outcome = app
        .put_blob(&digest, bytes.len() as u64, body)
        .await
        .unwrap();
    assert_eq!(stored(double, "app", &digest).unwrap(), *bytes);
    outcome
}

/// [`put_to_app`] from a file holding `bytes`.
async fn put_file_to_app(double: &Double, app: &RemoteRepository, bytes: &Bytes) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    put_to_app(double, app, bytes, BlobBody::File(file.path().to_owned())).await;
}

/// [`put_to_app`] streamed in `chunk`-sized pieces, which must all have been uploaded.
async fn stream_to_app(double: &Double, app: &RemoteRepository, bytes: &Bytes, chunk: usize) {
    let body = BlobBody::Stream(stream_of(bytes.clone(), chunk));
    let outcome = put_to_app(double, app, bytes, body).await;
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: bytes.len() as u64
        }
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_bearer_token_and_mounts_ask_for_pull_on_the_source() {
    let double = Double::start(Faults::bearer()).await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("org/app");
    let blobs: Vec<Bytes> = (0..6).map(|i| blob(50_000, i)).collect();
    let uploads = blobs.iter().map(|bytes| {
        let (app, bytes) = (app.clone(), bytes.clone());
        tokio::spawn(async move {
            let digest = Digest::sha256(&bytes);
            app.put_blob(&digest, bytes.len() as u64, BlobBody::Bytes(bytes))
                .await
        })
    });
    for outcome in futures_util::future::join_all(uploads).await {
        assert!(matches!(
            outcome.unwrap().unwrap(),
            PutOutcome::Uploaded { .. }
        ));
    }
    assert_eq!(double.count("GET", "/token"), 1, "{:#?}", double.log());

    let base_blob = double.seed_blob("library/base", blob(10_000, 99));
    let base = registry.repository("library/base");
    let outcome = app.copy_blob_from(&base, &base_blob, 10_000).await.unwrap();
    assert_eq!(outcome, PutOutcome::Mounted);
    let token_requests: Vec<Logged> = double
        .log()
        .into_iter()
        .filter(|l| l.path == "/token")
        .collect();
    assert_eq!(token_requests.len(), 2);
    let scopes: Vec<String> = url::form_urlencoded::parse(token_requests[1].query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        scopes,
        [
            "repository:library/base:pull",
            "repository:org/app:pull,push"
        ]
    );
    // No request to the registry ever went without a token after the ping.
    assert!(double
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/v2/") && l.path != "/v2/")
        .all(|l| l
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))));
}

#[tokio::test]
async fn insufficient_scope_is_answered_with_one_wider_token() {
    let double = Double::start(Faults {
        manifest_put_extra_scope: Some("repository:extra:pull".into()),
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("app");
    let manifest = br#"{"schemaVersion":2}"#;
    let digest = app
        .put_manifest("v1", manifest, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    assert_eq!(digest, Digest::sha256(manifest));
    let puts = double.count("PUT", "/manifests/");
    assert_eq!(puts, 2, "refused once, then accepted");
    let last_token = double
        .log()
        .into_iter()
        .rfind(|l| l.path == "/token")
        .unwrap();
    assert!(
        last_token.query.contains("repository%3Aextra%3Apull"),
        "{}",
        last_token.query
    );
}

#[tokio::test]
async fn a_token_without_push_is_explained_and_the_repository_named_once() {
    let double = Double::start(Faults {
        grant_only_pull: true,
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("app");
    let bytes = blob(1000, 17);
    let digest = Digest::sha256(&bytes);
    let error = app
        .put_blob(&digest, bytes.len() as u64, BlobBody::Bytes(bytes))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "the credentials for {USER} are valid but the token grants no push on app"
        )),
        "{error}"
    );
    assert!(!error.contains("refused the credentials"), "{error}");
    assert_eq!(
        error.matches(&format!("{}/app", double.host())).count(),
        1,
        "{error}"
    );
    assert!(
        error.starts_with(&format!(
            "{}/app: upload blob {digest}: start upload: HTTP 401",
            double.host()
        )),
        "{error}"
    );
}

#[tokio::test]
async fn expired_tokens_are_exchanged_again_even_mid_upload() {
    let double = Double::start(Faults {
        token_uses: 2,
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("app");
    for seed in 0..3 {
        stream_to_app(&double, &app, &blob(300_000, seed), 30_000).await;
    }
    assert!(double.count("GET", "/token") >= 4, "{:#?}", double.log());
}

#[tokio::test]
async fn a_failed_token_exchange_falls_back_to_basic_and_explains_a_wrong_password() {
    let double = Double::start(Faults::bearer()).await;
    let wrong = Credential::Basic {
        username: USER.into(),
        password: "wrong password 123".into(),
    };
    let registry = Registry::new(&double.host(), Some(wrong), &options()).unwrap();
    let error = registry
        .repository("app")
        .get_manifest("latest")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("get manifest latest") && error.contains("401"),
        "{error}"
    );
    assert!(error.contains("/token failed: HTTP 401"), "{error}");
    assert!(error.contains("are the credentials right?"), "{error}");
    assert!(!error.contains("wrong password 123"), "{error}");
    let basic_sent = double.log().iter().any(|l| {
        l.path.contains("/manifests/")
            && l.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
    });
    assert!(
        basic_sent,
        "Basic was tried after the token exchange failed"
    );
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff_and_retry_after() {
    let (_double, registry) = start_anonymous(Faults {
        unavailable: 2,
        throttled: 1,
        ..Faults::default()
    })
    .await;
    let app = registry.repository("app");
    let started = Instant::now();
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    app.put_manifest("v1", manifest, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    let fetched = app.get_manifest("v1").await.unwrap();
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(
        app.stats().requests,
        3 + 1 + 1 + 1,
        "two 503s and a 429 on the ping, then ping, PUT, GET"
    );
}

#[tokio::test]
async fn errors_that_never_stop_fail_with_the_status_after_the_last_attempt() {
    let (double, registry) = start_anonymous(Faults {
        unavailable: usize::MAX,
        ..Faults::default()
    })
    .await;
    let error = registry
        .repository("app")
        .has_blob(&Digest::sha256(b""))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("503"), "{error}");
    assert!(error.contains(&double.host()), "{error}");
    assert_eq!(double.log().len(), 5, "five attempts");
}

#[tokio::test]
async fn connections_reset_every_time_fail_saying_how_often_they_were_tried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(Mutex::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
            drop(stream);
        }
    });
    let error = Registry::new(&host, None, &options())
        .unwrap()
        .repository("app")
        .has_blob(&Digest::sha256(b""))
        .await
        .unwrap_err()
        .to_string();
    let attempts = options().retry.attempts;
    assert!(
        error.contains(&format!("(gave up after {attempts} attempts)")),
        "{error}"
    );
    assert!(error.contains(&host), "{error}");
    assert_eq!(*accepted.lock().unwrap(), attempts as usize);
}

#[tokio::test]
async fn a_capped_patch_falls_back_to_chunks() {
    let cap = 4 * 1024 * 1024;
    let (double, registry) = start_anonymous(Faults {
        patch_cap: Some(cap),
        put_cap: Some(cap),
        ..Faults::default()
    })
    .await;
    let app = registry.repository("app");
    stream_to_app(&double, &app, &blob(10 * 1024 * 1024 + 5, 7), 256 * 1024).await;
    let accepted: Vec<usize> = double
        .log()
        .iter()
        .filter(|l| l.method == "PATCH" && l.body_len > 0)
        .map(|l| l.body_len)
        .collect();
    assert_eq!(accepted, [cap, cap, 2 * 1024 * 1024 + 5]);

    // A file is tried monolithically... once: the registry's cap is known by now.
    put_file_to_app(&double, &app, &blob(5 * 1024 * 1024, 8)).await;
}

#[tokio::test]
async fn a_monolithic_upload_refused_as_too_large_is_sent_in_chunks() {
    let (double, registry) = start_anonymous(Faults {
        put_cap: Some(4 * 1024 * 1024),
        patch_cap: Some(4 * 1024 * 1024),
        ..Faults::default()
    })
    .await;
    let bytes = blob(9 * 1024 * 1024, 9);
    let app = registry.repository("app");
    put_to_app(&double, &app, &bytes, BlobBody::Bytes(bytes.clone())).await;
    assert_eq!(
        double.count("HEAD", "/blobs/"),
        2,
        "restarted from its HEAD"
    );
}

#[tokio::test]
async fn a_connection_reset_mid_patch_resumes_from_the_registry_range() {
    let (double, registry) = start_anonymous(Faults {
        reset_after: Some(1024 * 1024),
        ..Faults::default()
    })
    .await;
    let app = registry.repository("app");
    stream_to_app(&double, &app, &blob(3 * 1024 * 1024, 10), 64 * 1024).await;
    let resumed = double
        .log()
        .iter()
        .any(|l| l.method == "PATCH" && l.content_range.as_deref() == Some("1048576-3145727"));
    assert!(resumed, "{:#?}", double.log());
    assert_eq!(
        double.count("POST", "/blobs/uploads/"),
        1,
        "the same session went on"
    );
}

#[tokio::test]
async fn a_connection_reset_during_a_monolithic_put_restarts_from_head() {
    let (double, registry) = start_anonymous(Faults {
        reset_after: Some(1000),
        ..Faults::default()
    })
    .await;
    put_file_to_app(
        &double,
        &registry.repository("app"),
        &blob(2 * 1024 * 1024, 11),
    )
    .await;
    assert_eq!(double.count("POST", "/blobs/uploads/"), 2);
    assert_eq!(double.count("HEAD", "/blobs/"), 2);
}

#[tokio::test]
async fn a_streamed_copy_cut_forever_spends_one_retry_budget_for_the_blob() {
    let source = Double::start(Faults::default()).await;
    let bytes = blob(3 * 1024 * 1024, 16);
    let digest = source.seed_blob("base", bytes.clone());
    let target = Double::start(Faults {
        reset_always_after: Some(1000),
        ..Faults::default()
    })
    .await;
    let base = Registry::new(&source.host(), None, &options())
        .unwrap()
        .repository("base");
    let app = Registry::new(&target.host(), None, &options())
        .unwrap()
        .repository("app");
    let error = app
        .copy_blob_from(&base, &digest, bytes.len() as u64)
        .await
        .unwrap_err()
        .to_string();
    let attempts = options().retry.attempts as usize;
    assert!(
        error.contains(&format!("(gave up after {attempts} attempts)")),
        "{error}"
    );
    assert!(error.contains(&format!("upload blob {digest}")), "{error}");
    let cut = target
        .log()
        .iter()
        .filter(|l| l.method == "PATCH" && l.body_len > 0)
        .count();
    assert_eq!(
        cut,
        attempts,
        "resumes and restarts share the blob's tries: {:#?}",
        target.log()
    );
    assert_eq!(stored(&target, "app", &digest), None);
}

#[tokio::test]
async fn redirected_blob_reads_do_not_carry_our_authorization_to_another_host() {
    let cdn = Double::start(Faults {
        cdn: true,
        ..Faults::default()
    })
    .await;
    let double = Double::start(Faults {
        redirect_blobs_to: Some(format!("http://{}", cdn.addr)),
        ..Faults::bearer()
    })
    .await;
    let bytes = blob(100_000, 12);
    let digest = double.seed_blob("app", bytes.clone());
    cdn.seed_blob("anything", bytes.clone());
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("app");
    assert_eq!(read_all(&app, &digest).await, bytes);
    assert!(cdn.log().iter().all(|l| l.authorization.is_none()));
    assert_eq!(cdn.count("GET", "/cdn/"), 1);

    // Bytes that do not match the digest are refused, whoever served them.
    let other = double.seed_blob("app", blob(1000, 13));
    cdn.state().blobs.insert(
        ("anything".into(), other.to_string()),
        Bytes::from_static(b"tampered"),
    );
    let mut stream = app.get_blob(&other).await.unwrap();
    let mut outcome = Ok(());
    while let Some(chunk) = stream.next().await {
        if let Err(error) = chunk {
            outcome = Err(error);
        }
    }
    assert!(matches!(
        outcome,
        Err(StoreError::Failed { .. } | StoreError::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn a_mount_answered_with_a_session_continues_that_session() {
    let (double, registry) = start_anonymous(Faults {
        refuse_mounts: true,
        ..Faults::default()
    })
    .await;
    let bytes = blob(200_000, 14);
    let digest = double.seed_blob("base", bytes.clone());
    let app = registry.repository("app");
    let base = registry.repository("base");
    let outcome = app
        .copy_blob_from(&base, &digest, bytes.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: bytes.len() as u64
        }
    );
    assert_eq!(stored(&double, "app", &digest).unwrap(), bytes);
    assert_eq!(
        double.count("POST", "/blobs/uploads/"),
        1,
        "no second session"
    );
    assert_eq!(app.stats().blobs_mounted, 0);
    assert_eq!(app.stats().blobs_uploaded, 1);
}

async fn push_and_pull_with(double: &Double, credential: Credential) {
    let registry = Registry::new(&double.host(), Some(credential), &options()).unwrap();
    let app = registry.repository("app");
    let bytes = blob(10_000, 15);
    let digest = Digest::sha256(&bytes);
    app.put_blob(&digest, bytes.len() as u64, BlobBody::Bytes(bytes.clone()))
        .await
        .unwrap();
    assert_eq!(read_all(&app, &digest).await, bytes);
}

#[tokio::test]
async fn identity_tokens_use_the_refresh_token_grant() {
    let double = Double::start(Faults::bearer()).await;
    push_and_pull_with(&double, identity_token()).await;
    assert_eq!(double.count("POST", "/token"), 1);
    assert_eq!(double.count("GET", "/token"), 0);
}

#[tokio::test]
async fn identity_tokens_fall_back_to_get_when_the_grant_is_not_offered() {
    let double = Double::start(Faults {
        no_oauth_post: true,
        ..Faults::bearer()
    })
    .await;
    push_and_pull_with(&double, identity_token()).await;
    assert_eq!(double.count("POST", "/token"), 1);
    assert_eq!(double.count("GET", "/token"), 1);
}

#[tokio::test]
async fn registry_tokens_are_sent_as_they_are() {
    let double = Double::start(Faults::bearer()).await;
    double.state().tokens.insert(
        "static-token".into(),
        (vec!["repository:app:pull,push".into()], 0),
    );
    push_and_pull_with(&double, Credential::RegistryToken("static-token".into())).await;
    assert_eq!(
        double.count("GET", "/token") + double.count("POST", "/token"),
        0
    );
    assert!(double
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/v2/app/"))
        .all(|l| l.authorization.as_deref() == Some("Bearer static-token")));
}

/// A log sink for one test: everything at TRACE level, from every crate.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_or_errors() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: a scoped subscriber misses events whose callsites other test threads
    // registered first. Logs of the other tests in this binary land here too, and are checked.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let double = Double::start(Faults {
        token_uses: 3,
        unavailable: 1,
        ..Faults::bearer()
    })
    .await;
    push_and_pull_with(&double, login().unwrap()).await;
    push_and_pull_with(&double, identity_token()).await;
    let wrong = Credential::Basic {
        username: USER.into(),
        password: "wrong-pass-771".into(),
    };
    let error = Registry::new(&double.host(), Some(wrong.clone()), &options())
        .unwrap()
        .repository("app")
        .get_manifest("latest")
        .await
        .unwrap_err();

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("registry request"),
        "debug logs were captured"
    );
    let issued: Vec<String> = double.state().tokens.keys().cloned().collect();
    assert!(!issued.is_empty());
    let encoded =
        |secret: &str| base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"));
    let mut secrets = vec![
        PASSWORD.to_owned(),
        REFRESH_TOKEN.to_owned(),
        "wrong-pass-771".to_owned(),
        encoded(PASSWORD),
        encoded(REFRESH_TOKEN),
        encoded("wrong-pass-771"),
    ];
    secrets.extend(issued);
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "{secret} logged");
        assert!(
            !error.to_string().contains(secret.as_str()),
            "{secret} in the error"
        );
        assert!(
            !format!("{error:?}").contains(secret.as_str()),
            "{secret} in the error"
        );
    }
    assert!(!format!("{wrong:?}").contains("wrong-pass-771"));
}

#[tokio::test]
async fn tokens_cut_short_by_the_registry_are_all_replaced() {
    let double = Double::start(Faults {
        throttle_manifest_put: Some(1),
        revoke_tokens_when_throttling: true,
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let app = registry.repository("app");
    let base = registry.repository("base");
    // Tokens for several scope sets, all obtained before the manifest PUT is held back.
    let digest = double.seed_blob("base", blob(1000, 30));
    assert!(base.has_blob(&digest).await.unwrap());
    assert_eq!(
        app.copy_blob_from(&base, &digest, 1000).await.unwrap(),
        PutOutcome::Mounted
    );
    let manifest = br#"{"schemaVersion":2}"#;
    app.put_manifest("v1", manifest, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    let puts: Vec<Option<String>> = double
        .log()
        .iter()
        .filter(|l| l.method == "PUT")
        .map(|l| l.authorization.clone())
        .collect();
    assert_eq!(puts.len(), 3, "429, 401 for the dead token, then accepted");
    assert_ne!(puts[1], puts[2], "the retry carried a new token");
}
