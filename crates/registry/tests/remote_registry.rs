//! The remote store against a real `docker-registry` (distribution 2.8) on loopback, in open and
//! htpasswd (Basic) modes: uploads, HEAD skips, mounts, streamed copies, manifests, errors.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use layerize_manifest::Digest;
use layerize_registry::credentials::Credential;
use layerize_registry::remote::{Registry, RemoteOptions, RemoteRepository};
use layerize_registry::{BlobBody, PutOutcome, Reference, Store, StoreError};
// Registries die with the test process, however it ends.
use support::registry::{Auth, Listener, Registry as DockerRegistry, Tls};

use common::{blob, read_all, stream_of};

mod common;

/// `REPOSITORY:latest` on `server`.
fn reference(server: &DockerRegistry, repository: &str) -> Reference {
    Reference::parse(&format!("{}/{repository}:latest", server.host())).unwrap()
}

fn options() -> RemoteOptions {
    RemoteOptions::default()
}

/// An open registry and a client of its `repository`.
fn open_repository(repository: &str) -> (DockerRegistry, RemoteRepository) {
    let server = DockerRegistry::open();
    let repo = RemoteRepository::new(&reference(&server, repository), None, &options()).unwrap();
    (server, repo)
}

/// An open registry and one client of it, whose repositories share its connections and tokens.
fn open_registry() -> (DockerRegistry, Registry) {
    let server = DockerRegistry::open();
    let registry = Registry::new(&server.host(), None, &options()).unwrap();
    (server, registry)
}

/// Pushes `bytes` to `repo` in one piece, returning their digest.
async fn put_bytes(repo: &RemoteRepository, bytes: &Bytes) -> Digest {
    let digest = Digest::sha256(bytes);
    repo.put_blob(&digest, bytes.len() as u64, BlobBody::Bytes(bytes.clone()))
        .await
        .unwrap();
    digest
}

/// Pushes `bytes` to `repo` as blob `digest`, streamed in `chunk`-sized pieces.
async fn put_streamed(
    repo: &RemoteRepository,
    digest: &Digest,
    bytes: &Bytes,
    chunk: usize,
) -> Result<PutOutcome, StoreError> {
    let body = BlobBody::Stream(stream_of(bytes.clone(), chunk));
    repo.put_blob(digest, bytes.len() as u64, body).await
}

/// `outcome` says that all of `bytes` went up, and `repo` serves them back as blob `digest`.
async fn assert_uploaded(
    repo: &RemoteRepository,
    outcome: PutOutcome,
    digest: &Digest,
    bytes: &Bytes,
) {
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: bytes.len() as u64
        }
    );
    assert_eq!(read_all(repo, digest).await, *bytes);
}

/// `target` gets blob `digest` of `source` by a cross-repository mount.
async fn assert_mounted(
    target: &RemoteRepository,
    source: &RemoteRepository,
    digest: &Digest,
    size: u64,
) {
    let outcome = target.copy_blob_from(source, digest, size).await.unwrap();
    assert_eq!(outcome, PutOutcome::Mounted);
}

/// A minimal image manifest whose config and layer are the given blobs.
fn manifest(config: &Bytes, layer: &Bytes) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256(config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": Digest::sha256(layer).to_string(),
            "size": layer.len(),
        }],
    }))
    .unwrap()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn push_and_pull_blobs_and_manifests_on_an_open_registry() {
    let (_server, repo) = open_repository("team/app");

    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let config_digest = Digest::sha256(&config);
    assert!(!repo.has_blob(&config_digest).await.unwrap());
    let outcome = repo
        .put_blob(
            &config_digest,
            config.len() as u64,
            BlobBody::Bytes(config.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: config.len() as u64
        }
    );
    assert!(repo.has_blob(&config_digest).await.unwrap());

    // A layer larger than one PATCH chunk, streamed.
    let layer = blob(9 * 1024 * 1024 + 123, 1);
    let layer_digest = Digest::sha256(&layer);
    let outcome = put_streamed(&repo, &layer_digest, &layer, 64 * 1024)
        .await
        .unwrap();
    assert_uploaded(&repo, outcome, &layer_digest, &layer).await;

    // A second push of the same blob is skipped after its HEAD.
    let again = put_streamed(&repo, &layer_digest, &layer, 64 * 1024)
        .await
        .unwrap();
    assert_eq!(again, PutOutcome::Existed);

    let manifest = manifest(&config, &layer);
    let digest = repo
        .put_manifest("v1", &manifest, OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(digest, Digest::sha256(&manifest));
    for reference in ["v1".to_owned(), digest.to_string()] {
        let fetched = repo.get_manifest(&reference).await.unwrap();
        assert_eq!(fetched.bytes, manifest, "{reference}");
        assert_eq!(fetched.media_type, OCI_MANIFEST);
        assert_eq!(fetched.digest, digest);
    }

    let stats = repo.stats();
    assert_eq!(stats.blobs_uploaded, 2);
    assert_eq!(stats.blobs_skipped, 1);
    assert_eq!(stats.blobs_mounted, 0);
    assert_eq!(stats.bytes_uploaded, (config.len() + layer.len()) as u64);
    assert!(stats.requests >= 10, "{stats:?}");
    assert_eq!(repo.requests(), repo.stats().requests);
}

#[tokio::test]
async fn file_bodies_are_uploaded_in_one_put() {
    let (_server, repo) = open_repository("app");
    let layer = blob(3 * 1024 * 1024, 2);
    let digest = Digest::sha256(&layer);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &layer).unwrap();

    let before = repo.stats().requests;
    let outcome = repo
        .put_blob(
            &digest,
            layer.len() as u64,
            BlobBody::File(file.path().to_owned()),
        )
        .await
        .unwrap();
    // ping + HEAD + POST + PUT
    assert_eq!(repo.stats().requests - before, 4);
    assert_uploaded(&repo, outcome, &digest, &layer).await;
}

#[tokio::test]
async fn blobs_are_mounted_across_repositories_of_one_registry() {
    let (server, registry) = open_registry();
    let base = registry.repository("library/base");
    let app = registry.repository("org/app");
    let layer = blob(1024 * 1024, 3);
    let digest = put_bytes(&base, &layer).await;

    assert_mounted(&app, &base, &digest, layer.len() as u64).await;
    assert_eq!(app.stats().blobs_mounted, 1);
    assert_eq!(app.stats().bytes_uploaded, 0);
    assert_eq!(read_all(&app, &digest).await, layer);

    let again = app
        .copy_blob_from(&base, &digest, layer.len() as u64)
        .await
        .unwrap();
    assert_eq!(again, PutOutcome::Existed);

    // Separate clients of the same host mount too.
    let other = RemoteRepository::new(&reference(&server, "org/other"), None, &options()).unwrap();
    assert_mounted(&other, &base, &digest, layer.len() as u64).await;
}

#[tokio::test]
async fn a_mount_of_a_blob_the_source_lacks_falls_back_to_streaming() {
    let (_server, registry) = open_registry();
    let base = registry.repository("base");
    let app = registry.repository("app");
    let layer = blob(100_000, 4);
    // The blob is in `app2`, not in `base`: distribution answers the mount with 202 and a session.
    let holder = registry.repository("app2");
    let digest = put_bytes(&holder, &layer).await;
    let error = app
        .copy_blob_from(&base, &digest, layer.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    assert_mounted(&app, &holder, &digest, layer.len() as u64).await;
}

#[tokio::test]
async fn blobs_are_streamed_between_registries_with_their_digest_verified() {
    let (_source_server, source) = open_repository("base");
    let (_target_server, target) = open_repository("app");
    let layer = blob(6 * 1024 * 1024 + 7, 5);
    let digest = put_bytes(&source, &layer).await;

    let outcome = target
        .copy_blob_from(&source, &digest, layer.len() as u64)
        .await
        .unwrap();
    assert_uploaded(&target, outcome, &digest, &layer).await;
    assert_eq!(target.stats().bytes_uploaded, layer.len() as u64);

    // A stream whose bytes do not match the digest is refused and nothing is stored.
    let wrong = Digest::sha256(b"something else");
    let error = put_streamed(&target, &wrong, &layer, 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(!target.has_blob(&wrong).await.unwrap());
}

#[tokio::test]
async fn unknown_manifests_and_blobs_are_not_found() {
    let (_server, repo) = open_repository("nothing/here");
    let error = repo.get_manifest("missing").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    assert!(error.to_string().contains("nothing/here"), "{error}");
    // distribution 2.8 says MANIFEST_UNKNOWN for an unknown repository too.
    assert!(error.to_string().contains("MANIFEST_UNKNOWN"), "{error}");

    put_bytes(&repo, &Bytes::from_static(b"{}")).await;
    let manifest = manifest(&Bytes::from_static(b"{}"), &Bytes::from_static(b"{}"));
    repo.put_manifest("v1", &manifest, OCI_MANIFEST)
        .await
        .unwrap();
    let error = repo.get_manifest("v2").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    assert!(
        error.to_string().contains("manifest v2 (MANIFEST_UNKNOWN"),
        "{error}"
    );
    let error = match repo.get_blob(&Digest::sha256(b"x")).await {
        Err(error) => error,
        Ok(_) => panic!("a missing blob was found"),
    };
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn oversized_manifests_are_refused_before_sending() {
    let (_server, repo) = open_repository("app");
    let huge = vec![b' '; 5 * 1024 * 1024 + 100 * 1024];
    let error = repo
        .put_manifest("big", &huge, OCI_MANIFEST)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("manifest is 5.1 MiB; registries accept at most 4 MiB"),
        "{error}"
    );
    assert_eq!(repo.stats().requests, 0);
}

#[tokio::test]
async fn manifests_referencing_missing_blobs_are_rejected_with_the_registry_error() {
    let (_server, repo) = open_repository("app");
    let manifest = manifest(&Bytes::from_static(b"{}"), &Bytes::from_static(b"layer"));
    let error = repo
        .put_manifest("v1", &manifest, OCI_MANIFEST)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("MANIFEST_BLOB_UNKNOWN"), "{message}");
    assert!(
        message.contains("put manifest v1") && message.contains("400"),
        "{message}"
    );
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let server = DockerRegistry::htpasswd("alice", "s3cret-pw");
    let login = Credential::Basic {
        username: "alice".into(),
        password: "s3cret-pw".into(),
    };
    let repo =
        RemoteRepository::new(&reference(&server, "private/app"), Some(login), &options()).unwrap();
    let layer = blob(200_000, 6);
    let digest = Digest::sha256(&layer);
    let outcome = put_streamed(&repo, &digest, &layer, 8192).await.unwrap();
    assert_uploaded(&repo, outcome, &digest, &layer).await;

    let wrong = Credential::Basic {
        username: "alice".into(),
        password: "not-the-password".into(),
    };
    let intruder =
        RemoteRepository::new(&reference(&server, "private/app"), Some(wrong), &options()).unwrap();
    let error = intruder.has_blob(&digest).await.unwrap_err().to_string();
    assert!(
        error.contains("401") && error.contains("refused the credentials"),
        "{error}"
    );
    assert!(
        error.contains("private/app") && error.contains(&server.host()),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");

    let anonymous =
        RemoteRepository::new(&reference(&server, "private/app"), None, &options()).unwrap();
    let error = anonymous
        .get_manifest("latest")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("401") && error.contains("no credentials"),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_uploads_share_one_client() {
    let (_server, registry) = open_registry();
    let repo = registry.repository("app");
    let blobs: Vec<Bytes> = (0..8).map(|i| blob(300_000 + i, 100 + i as u64)).collect();
    let uploads = blobs.iter().map(|bytes| {
        let repo = repo.clone();
        let bytes = bytes.clone();
        tokio::spawn(
            async move { put_streamed(&repo, &Digest::sha256(&bytes), &bytes, 10_000).await },
        )
    });
    for outcome in futures_util::future::join_all(uploads).await {
        assert!(matches!(
            outcome.unwrap().unwrap(),
            PutOutcome::Uploaded { .. }
        ));
    }
    assert_eq!(repo.stats().blobs_uploaded, 8);
    for bytes in &blobs {
        assert_eq!(&read_all(&repo, &Digest::sha256(bytes)).await, bytes);
    }
}

/// This machine's address on its default route, if it has one: a host that is not loopback.
fn outward_ipv4() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn plain_http_only_for_hosts_named_insecure_and_a_clear_error_otherwise() {
    let Some(ip) = outward_ipv4() else {
        eprintln!("skipped: this machine has no address other than loopback");
        return;
    };
    let every_interface = Listener {
        address: Ipv4Addr::UNSPECIFIED.into(),
        tls: None,
    };
    let server = DockerRegistry::start_with(Auth::Open, every_interface);
    let host = format!("{ip}:{}", server.port());
    let reference = Reference::parse(&format!("{host}/app:latest")).unwrap();
    let digest = Digest::sha256(b"");

    let strict = RemoteRepository::new(&reference, None, &options()).unwrap();
    let error = strict.has_blob(&digest).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "TLS handshake with {host} failed: is it a plain-HTTP registry?"
        )),
        "{error}"
    );
    assert!(error.contains("--insecure-registry"), "{error}");
    assert_eq!(strict.stats().requests, 1, "a TLS failure is not retried");

    let mut insecure = options();
    insecure.insecure_hosts = vec![ip.to_string()];
    let allowed = RemoteRepository::new(&reference, None, &insecure).unwrap();
    assert!(!allowed.has_blob(&digest).await.unwrap());
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=layerize test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

#[tokio::test]
async fn tls_registries_are_verified_with_extra_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let tls = Listener {
        tls: Some(Tls {
            certificate: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
        }),
        ..Listener::default()
    };
    let ca = dir.path().join("ca.pem");
    let server = DockerRegistry::start_with(Auth::Open, tls);
    let reference = reference(&server, "secure/app");

    let untrusting = RemoteRepository::new(&reference, None, &options()).unwrap();
    let error = untrusting
        .has_blob(&Digest::sha256(b""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("is not trusted") && error.contains("--ca-cert"),
        "{error}"
    );

    let mut trusting = options();
    trusting.ca_certs = vec![ca];
    let repo = RemoteRepository::new(&reference, None, &trusting).unwrap();
    let bytes = blob(100_000, 20);
    let digest = put_bytes(&repo, &bytes).await;
    assert_eq!(read_all(&repo, &digest).await, bytes);
}
