//! What a hostile or broken registry, token service or network answers, and what the client
//! must make of it: TLS relaxed for the hosts named insecure and for no other (token realm,
//! redirect target); answers read with a cap, however large they are or say they are; Basic
//! tried after a failed token exchange only when the token service refused; and numbers no
//! registry should send (lifetimes, `Range`, `Content-Length`) ending in a clear error or
//! shrugged off, never in a panic or an upload that goes on forever.

use std::future::Future;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::double::{HugeAnswer, HUGE_BODY};
use super::*;

/// Generous: every test here ends in well under a second when the client is bounded.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// `future`'s output; fails the test if it is still running after [`HANG_GUARD`].
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("still running after {HANG_GUARD:?}: not bounded"))
}

/// A TLS acceptor for a certificate no client trusts, and that certificate as a PEM file.
struct SelfSigned {
    acceptor: TlsAcceptor,
    pem: tempfile::NamedTempFile,
}

fn self_signed() -> SelfSigned {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    let pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem.path(), cert.pem()).unwrap();
    SelfSigned {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        pem,
    }
}

/// [`options`] with `insecure` named with `--insecure-registry`, and `ca` trusted if given.
fn insecure_options(insecure: &str, ca: Option<&SelfSigned>) -> RemoteOptions {
    RemoteOptions {
        insecure_hosts: vec![insecure.to_owned()],
        ca_certs: ca.map(|ca| ca.pem.path().to_owned()).into_iter().collect(),
        ..options()
    }
}

/// Uploads a small blob to `app` on `host` with our login.
async fn put_small_blob(host: &str, options: &RemoteOptions) -> Result<PutOutcome, StoreError> {
    let bytes = blob(1000, 40);
    let digest = Digest::sha256(&bytes);
    Registry::new(host, login(), options)
        .unwrap()
        .repository("app")
        .put_blob(&digest, 1000, BlobBody::Bytes(bytes))
        .await
}

#[tokio::test]
async fn naming_a_registry_insecure_never_relaxes_tls_for_its_token_service() {
    let tls = self_signed();
    let double = Double::start(Faults::bearer()).await;
    let tls_addr = double.listen_tls(tls.acceptor.clone()).await;
    let realm = format!("https://{tls_addr}/token");
    double.state().faults.realm = Some(realm.clone());

    let insecure = insecure_options(&double.host(), None);
    let error = put_small_blob(&double.host(), &insecure)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("token request to {realm} failed")),
        "{error}"
    );
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(double.count("GET", "/token"), 0, "{:#?}", double.log());
    let basic = double.log().into_iter().find(|l| {
        l.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    });
    assert!(basic.is_none(), "Basic sent after a TLS failure: {basic:?}");

    // Plain HTTP to a token service on a host not named is refused before connecting.
    double.state().faults.realm = Some("http://token.invalid/token".into());
    let error = put_small_blob(&double.host(), &insecure)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("refusing to send credentials to a token service over plain HTTP"),
        "{error}"
    );

    // The token service is sound: with its CA trusted, the same upload goes through.
    double.state().faults.realm = Some(realm);
    let trusted = insecure_options(&double.host(), Some(&tls));
    put_small_blob(&double.host(), &trusted).await.unwrap();
    assert_eq!(double.count("GET", "/token"), 1);
}

#[tokio::test]
async fn naming_a_registry_insecure_never_relaxes_tls_for_a_redirect_target() {
    let tls = self_signed();
    let double = Double::start(Faults::default()).await;
    let tls_addr = double.listen_tls(tls.acceptor.clone()).await;
    double.state().faults.redirect_blobs_to = Some(format!("https://{tls_addr}"));
    let bytes = blob(1000, 41);
    let digest = double.seed_blob("app", bytes.clone());

    let insecure = insecure_options(&double.host(), None);
    let app = Registry::new(&double.host(), None, &insecure)
        .unwrap()
        .repository("app");
    let error = match app.get_blob(&digest).await {
        Ok(_) => panic!("the redirect target's certificate was not checked"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("redirected to 127.0.0.1"), "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(double.count("GET", "/cdn/"), 0);

    let trusted = insecure_options(&double.host(), Some(&tls));
    let app = Registry::new(&double.host(), None, &trusted)
        .unwrap()
        .repository("app");
    assert_eq!(read_all(&app, &digest).await, bytes);
    assert_eq!(double.count("GET", "/cdn/"), 1);
}

#[tokio::test]
async fn a_registry_named_insecure_is_reached_despite_an_untrusted_certificate() {
    let tls = self_signed();
    let double = Double::start(Faults::default()).await;
    let host = double.listen_tls(tls.acceptor).await.to_string();

    let error = Registry::new(&host, None, &options())
        .unwrap()
        .repository("app")
        .has_blob(&Digest::sha256(b""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("TLS certificate of {host} is not trusted")),
        "{error}"
    );

    let app = Registry::new(&host, None, &insecure_options(&host, None))
        .unwrap()
        .repository("app");
    let bytes = blob(5000, 43);
    put_to_app(&double, &app, &bytes, BlobBody::Bytes(bytes.clone())).await;
    assert_eq!(read_all(&app, &Digest::sha256(&bytes)).await, bytes);
}

/// Runs `operation` against a double answering `huge` and returns its error, once the double
/// saw the client hang up, with how many body bytes the client took.
async fn against_a_huge_answer<F, Fut, T>(
    huge: HugeAnswer,
    faults: Faults,
    operation: F,
) -> (String, u64)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let double = Double::start(Faults {
        huge_answer: Some(huge),
        ..faults
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let error = match bounded(operation(registry)).await {
        Ok(_) => panic!("a {HUGE_BODY}-byte answer to {} was taken", huge.path),
        Err(error) => error.to_string(),
    };
    bounded(async {
        while !double.state().huge_finished {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let written = double.state().huge_written;
    (error, written)
}

#[tokio::test]
async fn answers_of_gigabytes_are_refused_after_a_few_megabytes() {
    let manifest = |status, declared| HugeAnswer {
        method: "GET",
        path: "/manifests/",
        status,
        declared,
    };
    let get_manifest =
        |registry: Registry| async move { registry.repository("app").get_manifest("latest").await };
    let cases = [
        (manifest(200, false), "the manifest is larger than 4 MiB"),
        (manifest(200, true), "the manifest is larger than 4 MiB"),
        (manifest(404, false), "manifest latest not found"),
        (manifest(500, true), "HTTP 500"),
    ];
    for (huge, expected) in cases {
        let (error, written) = against_a_huge_answer(huge, Faults::default(), get_manifest).await;
        assert!(error.contains(expected), "{expected:?}: {error}");
        // The cap, and what socket buffers take in before the client hangs up.
        assert!(written < 32 << 20, "{expected:?}: {written} bytes taken");
    }

    let token = HugeAnswer {
        method: "GET",
        path: "/token",
        status: 200,
        declared: false,
    };
    let (error, written) = against_a_huge_answer(token, Faults::bearer(), get_manifest).await;
    assert!(
        error.contains("the token response is larger than 1 MiB"),
        "{error}"
    );
    assert!(written < 32 << 20, "{written} bytes taken");

    let refused_put = HugeAnswer {
        method: "PUT",
        path: "/manifests/",
        status: 400,
        declared: false,
    };
    let put_manifest = |registry: Registry| async move {
        let manifest = br#"{"schemaVersion":2}"#;
        (registry.repository("app"))
            .put_manifest("v1", manifest, "application/vnd.oci.image.manifest.v1+json")
            .await
    };
    let (error, written) =
        against_a_huge_answer(refused_put, Faults::default(), put_manifest).await;
    assert!(error.contains("put manifest v1: HTTP 400"), "{error}");
    assert!(written < 32 << 20, "{written} bytes taken");
}

/// Whether any request to `repository` carried Basic credentials.
fn basic_sent_to(double: &Double, repository: &str) -> bool {
    double.log().iter().any(|l| {
        l.path.starts_with(&format!("/v2/{repository}/"))
            && l.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
    })
}

#[tokio::test]
async fn a_token_service_that_is_down_is_reported_as_such_and_basic_is_not_tried() {
    let double = Double::start(Faults {
        token_status: Some((503, usize::MAX)),
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let error = bounded(registry.repository("app").get_manifest("latest"))
        .await
        .unwrap_err()
        .to_string();
    let realm = format!("http://{}/token", double.host());
    assert!(
        error.contains(&format!(
            "token request to {realm} failed: HTTP 503 Service Unavailable (gave up after 5 attempts)"
        )),
        "{error}"
    );
    assert_eq!(double.count("GET", "/token"), 5, "retried");
    assert!(!basic_sent_to(&double, "app"), "{:#?}", double.log());

    // A token service back after two 503s hands out a token, and Bearer is used.
    double.state().faults.token_status = Some((503, 2));
    let app = Registry::new(&double.host(), login(), &options())
        .unwrap()
        .repository("app");
    let bytes = blob(1000, 44);
    put_to_app(&double, &app, &bytes, BlobBody::Bytes(bytes.clone())).await;
    assert!(!basic_sent_to(&double, "app"), "{:#?}", double.log());
}

#[tokio::test]
async fn an_unreachable_token_service_is_reported_as_such_and_basic_is_not_tried() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let realm = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let double = Double::start(Faults {
        realm: Some(realm.clone()),
        ..Faults::bearer()
    })
    .await;
    let registry = Registry::new(&double.host(), login(), &options()).unwrap();
    let error = bounded(registry.repository("app").get_manifest("latest"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("token request to {realm} failed")),
        "{error}"
    );
    assert!(error.contains("(gave up after 5 attempts)"), "{error}");
    assert!(!error.contains("refused the credentials"), "{error}");
    assert!(!basic_sent_to(&double, "app"), "{:#?}", double.log());
}

#[tokio::test]
async fn a_token_service_that_refuses_the_scheme_lets_basic_be_tried() {
    for status in [404, 405, 403] {
        let double = Double::start(Faults {
            token_status: Some((status, usize::MAX)),
            ..Faults::bearer()
        })
        .await;
        let registry = Registry::new(&double.host(), login(), &options()).unwrap();
        // The double wants tokens, so Basic is refused in turn; that it was tried is the point.
        let error = registry
            .repository("app")
            .get_manifest("latest")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("HTTP {status}")), "{error}");
        assert_eq!(double.count("GET", "/token"), 1, "{status}: not retried");
        assert!(
            basic_sent_to(&double, "app"),
            "{status}: {:#?}",
            double.log()
        );
    }
}

#[tokio::test]
async fn hostile_token_lifetimes_neither_panic_nor_fail_the_push() {
    for expires_in in [
        "18446744073709551615",
        "1e30",
        "-1",
        "-9223372036854775808",
        "\"300\"",
    ] {
        let double = Double::start(Faults {
            token_expires_in: Some(expires_in),
            ..Faults::bearer()
        })
        .await;
        push_and_pull_with(&double, login().unwrap()).await;
        assert_eq!(double.count("GET", "/token"), 1, "{expires_in}");
    }
}

/// Streams a 100 kB blob to `app` on a double with `faults`; the error it ends with, and the
/// double's log.
async fn stream_against(faults: Faults) -> (String, Vec<Logged>, Double) {
    let (double, registry) = start_anonymous(faults).await;
    let bytes = blob(100_000, 45);
    let digest = Digest::sha256(&bytes);
    let body = BlobBody::Stream(stream_of(bytes, 10_000));
    let error = bounded(registry.repository("app").put_blob(&digest, 100_000, body))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(stored(&double, "app", &digest), None);
    (error, double.log(), double)
}

#[tokio::test]
async fn an_upload_whose_range_never_advances_fails_within_the_retry_budget() {
    let (error, log, _double) = stream_against(Faults {
        discard_patches: true,
        ..Faults::default()
    })
    .await;
    assert!(
        error.contains("the registry kept 0 of the 100000 bytes sent (gave up after 5 attempts)"),
        "{error}"
    );
    let patches = log.iter().filter(|l| l.method == "PATCH").count();
    assert_eq!(patches, options().retry.attempts as usize, "{log:#?}");
    assert!(!log.iter().any(|l| l.method == "PUT"), "nothing finalised");
}

#[tokio::test]
async fn an_upload_range_beyond_what_was_sent_is_an_error() {
    let beyond = "the registry says it holds";
    for range in ["0-18446744073709551615", "0-199999"] {
        let (error, log, _double) = stream_against(Faults {
            patch_range: Some(range),
            ..Faults::default()
        })
        .await;
        assert!(
            error.contains(&format!("{beyond} {} bytes", received(range))),
            "{range}: {error}"
        );
        assert!(error.contains("only 100000 were sent"), "{range}: {error}");
        assert!(!log.iter().any(|l| l.method == "PUT"), "nothing finalised");
    }

    // Asked after a broken PATCH how far it got, the registry claims 2^64 bytes.
    let (error, log, _double) = stream_against(Faults {
        reset_after: Some(50_000),
        status_range: Some("0-18446744073709551615"),
        ..Faults::default()
    })
    .await;
    assert!(
        error.contains(&format!("{beyond} 18446744073709551615 bytes")),
        "{error}"
    );
    assert!(!log.iter().any(|l| l.method == "PUT"), "nothing finalised");
}

/// The byte count a `0-<last>` range stands for.
fn received(range: &str) -> u64 {
    let last: u64 = range.trim_start_matches("0-").parse().unwrap();
    last.saturating_add(1)
}

#[tokio::test]
async fn content_lengths_beyond_reason_are_errors_not_panics() {
    let manifest_error = |length: &'static str| async move {
        let double = Double::start(Faults {
            content_length: Some(("/manifests/", length)),
            ..Faults::default()
        })
        .await;
        let app = Registry::new(&double.host(), None, &options())
            .unwrap()
            .repository("app");
        let manifest = br#"{"schemaVersion":2}"#;
        app.put_manifest("v1", manifest, "application/vnd.oci.image.manifest.v1+json")
            .await
            .unwrap();
        bounded(app.get_manifest("v1"))
            .await
            .unwrap_err()
            .to_string()
    };
    // hyper keeps 2^64-2 and 2^64-1 as markers of its own and refuses them; 2^64 is no u64.
    for (length, expected) in [
        ("18446744073709551613", "the manifest is larger than 4 MiB"),
        (
            "18446744073709551615",
            "get manifest v1: error sending request",
        ),
        (
            "18446744073709551616",
            "get manifest v1: error sending request",
        ),
    ] {
        let error = manifest_error(length).await;
        assert!(error.contains(expected), "{length}: {error}");
    }

    let double = Double::start(Faults {
        content_length: Some(("/blobs/", "18446744073709551613")),
        ..Faults::default()
    })
    .await;
    let digest = double.seed_blob("app", blob(1000, 46));
    let app = Registry::new(&double.host(), None, &options())
        .unwrap()
        .repository("app");
    let mut stream = app.get_blob(&digest).await.unwrap();
    let mut outcome = Ok(());
    while let Some(chunk) = bounded(stream.next()).await {
        if let Err(error) = chunk {
            outcome = Err(error);
        }
    }
    assert!(
        outcome.is_err(),
        "a body short of its Content-Length passed"
    );
}
