//! End-to-end: `layerize build` against real `docker-registry` servers behind the fault-injecting
//! proxy (support::fault_proxy): 503s, 429 with `Retry-After`, connections reset mid-upload, blob
//! GETs redirected and upload sessions moved to a host that refuses any `Authorization`, a 4 MiB
//! PATCH cap, and expiring tokens. Every build must succeed with the digest a clean run of the
//! same inputs gets; faults that never stop must fail the build within the retry budget (counted
//! in requests, never timed) with one clear error line, leaving the target tag where it was.
//!
//! Each test makes its clean run through the same proxy (the base's name, proxy host included,
//! goes into the manifest's annotations) into another repository of the same registry, so the
//! faulty run has the same blobs to move again: distribution answers a HEAD per repository.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use layerize_registry::remote::RetryPolicy;
use serde_json::Value;
use support::fault_proxy::{Fault, FaultKind, FaultProxy, Listener, LoggedRequest};
use support::images::{self, Format, Image};
use support::layerize::{built_layers, error_line, read_report};
use support::registry::Registry;
use support::scratch_dir;
use support::skopeo;
use support::token_server::{Policy, TokenServer};

const MIB: u64 = 1024 * 1024;
/// The big file's size: its gzip layer is over the 4 MiB PATCH cap, and over the proxy's
/// 64 KiB reset point many times.
const BIG_FILE_BYTES: usize = 6 * MIB as usize;
/// Hang guard: a build still running after this long is killed and fails the test. Far beyond
/// what any build here takes on a slow machine; that retries are bounded is checked by counting
/// them ([`assert_within_retry_budget`]), not by timing.
const DEADLINE: Duration = Duration::from_secs(300);
const BASE: &str = "base/busybox:v1";
const ALICE: (&str, &str) = ("alice", "alice-pw-5be1e7");

/// Host files for a layer: a text file, and optionally a file of incompressible bytes (a seeded
/// xorshift, the same on every run) that makes the layer's blob about [`BIG_FILE_BYTES`].
struct Inputs {
    dir: tempfile::TempDir,
    big: bool,
}

impl Inputs {
    fn new(note: &str, big_seed: Option<u64>) -> Self {
        let dir = scratch_dir();
        std::fs::write(dir.path().join("note.txt"), format!("{note}\n")).unwrap();
        if let Some(seed) = big_seed {
            std::fs::write(dir.path().join("big.bin"), noise(BIG_FILE_BYTES, seed)).unwrap();
        }
        Inputs {
            dir,
            big: big_seed.is_some(),
        }
    }

    fn args(&self) -> Vec<String> {
        let file = |name: &str, dest: &str| {
            vec![
                "--file".to_owned(),
                format!("{}:{dest}:644", self.dir.path().join(name).display()),
            ]
        };
        let mut args = file("note.txt", "/etc/app/note.txt");
        if self.big {
            args.extend(file("big.bin", "/srv/data/big.bin"));
        }
        args.extend(["--env".to_owned(), "APP_MODE=faults".to_owned()]);
        args
    }
}

/// `len` bytes of xorshift64 output from `seed`: gzip cannot shrink them.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Credentials for one side of a build, passed as layerize wants them: through the environment.
#[derive(Clone, Copy, Default)]
struct Creds<'a> {
    base: Option<&'a str>,
    target: Option<&'a str>,
}

/// How a `layerize build` run ended.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    report: Option<Value>,
    elapsed: Duration,
}

impl Run {
    /// The digest of a successful run, checked against the report.
    fn digest(&self) -> String {
        assert!(
            self.success,
            "layerize failed after {:?}:\n{}",
            self.elapsed, self.stderr
        );
        let report = self.report.as_ref().expect("a report");
        assert_eq!(self.stdout.trim(), report["digest"].as_str().unwrap());
        self.stdout.trim().to_owned()
    }

    /// The one `error:` line of a failed run.
    fn error_line(&self) -> &str {
        assert!(
            !self.success,
            "layerize succeeded but should have failed:\n{}",
            self.stderr
        );
        error_line(&self.stderr)
    }

    /// The digest of the layer this run built.
    fn built_layer(&self) -> String {
        let report = self.report.as_ref().expect("a report");
        let built = built_layers(report);
        assert_eq!(built.len(), 1, "{report}");
        built[0]["digest"].as_str().unwrap().to_owned()
    }
}

/// Runs `layerize build --base BASE --target TARGET` with `inputs`, killing it (and failing the
/// test) if it outlives the [`DEADLINE`] hang guard.
fn build(base: &str, target: &str, inputs: &Inputs, creds: Creds) -> Run {
    let scratch = scratch_dir();
    let (report, out, err) = (
        scratch.path().join("report.json"),
        scratch.path().join("stdout"),
        scratch.path().join("stderr"),
    );
    let mut layerize = support::layerize!();
    layerize
        .args(["build", "--base", base, "--target", target])
        .args(inputs.args())
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (flag, variable, value) in [
        ("--base-creds", "FAULTS_BASE_CREDS", creds.base),
        ("--target-creds", "FAULTS_TARGET_CREDS", creds.target),
    ] {
        if let Some(value) = value {
            layerize
                .arg(flag)
                .arg(format!("env:{variable}"))
                .env(variable, value);
        }
    }
    let started = Instant::now();
    let status = wait_bounded(&mut layerize, &err);
    let elapsed = started.elapsed();
    Run {
        success: status.success(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        report: report.exists().then(|| read_report(&report)),
        elapsed,
    }
}

fn wait_bounded(layerize: &mut Command, stderr: &Path) -> std::process::ExitStatus {
    let mut child = layerize.spawn().expect("start layerize");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for layerize") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hang guard: layerize still ran after {DEADLINE:?}\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the registry itself (not the proxy) serves for `repository:tag`, asked with a plain
/// HEAD: the manifest digest, or `None` when the tag does not exist.
fn tag_digest(registry: &Registry, repository: &str, tag: &str) -> Option<String> {
    let mut stream = TcpStream::connect(registry.host()).expect("connect to the registry");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "HEAD /v2/{repository}/manifests/{tag} HTTP/1.0\r\nHost: {}\r\nAccept: \
         application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.v2+json\r\n\r\n",
        registry.host()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let mut lines = answer.lines();
    let status = lines.next().unwrap_or_default();
    if status.contains(" 404 ") {
        return None;
    }
    assert!(
        status.contains(" 200 "),
        "HEAD {repository}:{tag}: {answer}"
    );
    let digest = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("docker-content-digest"))
        .map(|(_, value)| value.trim().to_owned());
    Some(digest.expect("the registry names the manifest digest"))
}

/// An open registry holding the busybox base (pushed directly), and a proxy in front of it.
fn open_registry_behind_proxy() -> (Registry, FaultProxy) {
    let registry = Registry::open();
    images::push(Image::Busybox, Format::Oci, &registry, BASE);
    let proxy = FaultProxy::start(&registry.url(), vec![]).unwrap();
    (registry, proxy)
}

/// [`open_registry_behind_proxy`] and the inputs of every build made through it: a clean run and
/// a faulty one move the same blobs into two repositories.
struct ProxiedRegistry {
    registry: Registry,
    proxy: FaultProxy,
    inputs: Inputs,
}

impl ProxiedRegistry {
    fn new(note: &str, big_seed: Option<u64>) -> Self {
        let (registry, proxy) = open_registry_behind_proxy();
        ProxiedRegistry {
            registry,
            proxy,
            inputs: Inputs::new(note, big_seed),
        }
    }

    /// Builds through the proxy, on the base, into `repository:v1`.
    fn build(&self, repository: &str) -> Run {
        let host = self.proxy.host();
        let target = format!("{host}/{repository}:v1");
        build(
            &format!("{host}/{BASE}"),
            &target,
            &self.inputs,
            Creds::default(),
        )
    }

    /// Builds into `faulty/app:v1` through the faults already injected (the proxy's log cleared
    /// first) and checks that they changed nothing: the digest is the `clean` run's, and the
    /// registry itself tags it.
    fn build_faulty_like(&self, clean: &Run) -> Run {
        self.proxy.clear_requests();
        let faulty = self.build("faulty/app");
        assert_eq!(faulty.digest(), clean.digest());
        assert_eq!(
            tag_digest(&self.registry, "faulty/app", "v1"),
            Some(clean.digest())
        );
        faulty
    }
}

/// Pushes busybox to `registry` and builds on it, directly, `base/big:v1`: a base with a layer
/// of [`BIG_FILE_BYTES`] for the cross-registry tests, whose base blobs are streamed.
fn big_base(registry: &Registry) -> String {
    images::push(Image::Busybox, Format::Oci, registry, BASE);
    let big = format!("{}/base/big:v1", registry.host());
    let inputs = Inputs::new("big base", Some(7));
    build(
        &format!("{}/{BASE}", registry.host()),
        &big,
        &inputs,
        Creds::default(),
    )
    .digest();
    big
}

/// Requests that a fault answered, as (method, status).
fn fault_answers(log: &[LoggedRequest]) -> Vec<(String, Option<u16>)> {
    log.iter()
        .filter(|r| r.fault.is_some())
        .map(|r| (r.method.clone(), r.status))
        .collect()
}

/// A regex for the request target of the PUT that finishes the upload of blob `digest`.
fn upload_target(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("/blobs/uploads/.*[?&]digest=sha256(%3A|:){hex}")
}

fn is_upload_of(request: &LoggedRequest, digest: &str) -> bool {
    request.is_blob_upload_data() && request.query_param("digest") == Some(digest)
}

#[test]
fn retried_503s_on_every_kind_of_request_leave_the_digest_unchanged() {
    let setup = ProxiedRegistry::new("503s", Some(1));
    let clean = setup.build("clean/app");
    let layer = clean.built_layer();

    // Ping, blob HEADs, upload POSTs (mounts and fresh sessions), the layer's monolithic PUT
    // (not idempotent: the upload starts over) and the manifest PUT.
    let upload = upload_target(&layer);
    for (method, target, times) in [
        ("GET", "^/v2/$", 2),
        ("HEAD", "/blobs/sha256:", 3),
        ("POST", "/blobs/uploads/", 2),
        ("PUT", upload.as_str(), 1),
        ("PUT", "/manifests/", 2),
    ] {
        setup.proxy.inject(
            Fault::service_unavailable()
                .matching(method, target)
                .times(times),
        );
    }
    setup.build_faulty_like(&clean);

    assert_eq!(setup.proxy.pending_firings(), 0, "every 503 was met");
    let log = setup.proxy.requests();
    let mut answered = fault_answers(&log);
    answered.sort();
    let expected: Vec<(String, Option<u16>)> =
        [("GET", 2), ("HEAD", 3), ("POST", 2), ("PUT", 1), ("PUT", 2)]
            .iter()
            .flat_map(|(method, n)| std::iter::repeat_n((method.to_string(), Some(503)), *n))
            .collect();
    assert_eq!(answered, expected);
    let layer_puts: Vec<Option<u16>> = log
        .iter()
        .filter(|r| is_upload_of(r, &layer))
        .map(|r| r.status)
        .collect();
    assert_eq!(layer_puts, [Some(503), Some(201)], "uploaded again");
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let setup = ProxiedRegistry::new("429s", Some(2));
    let clean = setup.build("clean/app");
    let layer = clean.built_layer();

    // Retry-After: 1 on a blob HEAD, on the layer's upload PUT and on the manifest PUT.
    let upload = upload_target(&layer);
    for (method, target) in [
        ("HEAD", "/blobs/sha256:"),
        ("PUT", upload.as_str()),
        ("PUT", "/manifests/"),
    ] {
        setup
            .proxy
            .inject(Fault::too_many_requests().matching(method, target).times(1));
    }
    let faulty = setup.build_faulty_like(&clean);

    assert_eq!(setup.proxy.pending_firings(), 0);
    assert!(
        faulty.elapsed >= Duration::from_secs(1),
        "{:?}",
        faulty.elapsed
    );
    // Each refused request was tried again no sooner than the registry asked.
    let log = setup.proxy.requests();
    let refused: Vec<&LoggedRequest> = log.iter().filter(|r| r.status == Some(429)).collect();
    assert_eq!(refused.len(), 3);
    for first in refused {
        let same = |r: &&LoggedRequest| {
            r.received > first.received
                && r.method == first.method
                && if first.is_blob_upload_data() {
                    is_upload_of(r, &layer)
                } else {
                    r.path == first.path
                }
        };
        let again = log
            .iter()
            .find(same)
            .unwrap_or_else(|| panic!("{} {} never retried", first.method, first.path));
        let waited = again.received - first.received;
        assert!(
            waited >= Duration::from_secs(1),
            "{} {} retried after {waited:?} despite Retry-After: 1",
            first.method,
            first.path
        );
    }
}

#[test]
fn a_connection_reset_mid_upload_restarts_the_upload() {
    let setup = ProxiedRegistry::new("resets", Some(3));
    let clean = setup.build("clean/app");
    let layer = clean.built_layer();

    // The connection drops after 64 KiB of the layer's body, twice.
    setup.proxy.inject(
        Fault::reset_mid_upload()
            .matching("PUT", &upload_target(&layer))
            .times(2),
    );
    let faulty = setup.build_faulty_like(&clean);

    let uploads: Vec<(Option<u16>, u64)> = setup
        .proxy
        .requests()
        .iter()
        .filter(|r| is_upload_of(r, &layer))
        .map(|r| (r.status, r.bytes_in))
        .collect();
    let size = faulty.report.as_ref().unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["digest"] == layer.as_str())
        .unwrap()["size"]
        .as_u64()
        .unwrap();
    assert!(size > 5 * MIB, "the layer is {size} bytes");
    assert_eq!(uploads.len(), 3, "{uploads:?}");
    for (status, bytes) in &uploads[..2] {
        assert_eq!(*status, None, "the connection was dropped");
        assert!((64 * 1024..size).contains(bytes), "{bytes} bytes sent");
    }
    assert_eq!(uploads[2], (Some(201), size));
}

/// A base with a big layer on registry A, and an open registry B behind a proxy as the target:
/// base blobs are streamed from A into B, with PATCH.
struct CrossRegistry {
    _source: Registry,
    target: Registry,
    proxy: FaultProxy,
    base: String,
    inputs: Inputs,
}

impl CrossRegistry {
    fn new(note: &str) -> Self {
        let source = Registry::open();
        let base = big_base(&source);
        let target = Registry::open();
        let proxy = FaultProxy::start(&target.url(), vec![]).unwrap();
        CrossRegistry {
            _source: source,
            target,
            proxy,
            base,
            inputs: Inputs::new(note, None),
        }
    }

    fn build(&self, repository: &str) -> Run {
        let target = format!("{}/{repository}:v1", self.proxy.host());
        build(&self.base, &target, &self.inputs, Creds::default())
    }

    /// The base's layer over 4 MiB, from a report.
    fn big_layer(run: &Run) -> (String, u64) {
        let report = run.report.as_ref().expect("a report");
        let big = report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["status"] == "base" && l["size"].as_u64().unwrap() > 4 * MIB)
            .unwrap_or_else(|| panic!("no base layer over 4 MiB: {report}"));
        (
            big["digest"].as_str().unwrap().to_owned(),
            big["size"].as_u64().unwrap(),
        )
    }
}

#[test]
fn a_4_mib_patch_cap_makes_streamed_copies_fall_back_to_chunks() {
    let setup = CrossRegistry::new("patch cap");
    let clean = setup.build("clean/app");
    let (big, size) = CrossRegistry::big_layer(&clean);
    assert!(
        setup
            .proxy
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.bytes_in == size && r.status == Some(202)),
        "without a cap the big base layer goes in one PATCH"
    );

    setup.proxy.inject(Fault::patch_cap_4mib());
    setup.proxy.clear_requests();
    let capped = setup.build("capped/app");

    assert_eq!(capped.digest(), clean.digest());
    let patches: Vec<LoggedRequest> = setup
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(
        patches.iter().any(|r| r.status == Some(413)),
        "the cap refused a PATCH: {patches:?}"
    );
    for patch in patches.iter().filter(|r| r.status == Some(202)) {
        assert!(
            patch.bytes_in <= 4 * MIB,
            "{} bytes accepted",
            patch.bytes_in
        );
    }
    // The big layer went into its upload session in chunks.
    let log = setup.proxy.requests();
    let finished = log
        .iter()
        .find(|r| r.method == "PUT" && r.query_param("digest") == Some(big.as_str()))
        .unwrap_or_else(|| panic!("{big} was never finished: {log:?}"));
    assert_eq!(finished.status, Some(201));
    let chunks: Vec<u64> = patches
        .iter()
        .filter(|r| r.path == finished.path && r.status == Some(202))
        .map(|r| r.bytes_in)
        .collect();
    assert!(chunks.len() >= 2, "{chunks:?}");
    assert_eq!(chunks.iter().sum::<u64>(), size, "{chunks:?}");
    assert_eq!(
        tag_digest(&setup.target, "capped/app", "v1"),
        Some(clean.digest())
    );
}

#[test]
fn a_connection_reset_mid_patch_resumes_the_streamed_copy() {
    let setup = CrossRegistry::new("patch reset");
    let clean = setup.build("clean/app");
    let (_, size) = CrossRegistry::big_layer(&clean);

    setup
        .proxy
        .inject(Fault::reset_mid_upload().matching("PATCH", "").times(2));
    setup.proxy.clear_requests();
    let faulty = setup.build("faulty/app");

    assert_eq!(faulty.digest(), clean.digest());
    let patches: Vec<(Option<u16>, u64)> = setup
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.status, r.bytes_in))
        .collect();
    let dropped = patches
        .iter()
        .filter(|(status, _)| status.is_none())
        .count();
    assert_eq!(dropped, 2, "{patches:?}");
    assert!(
        patches.contains(&(Some(202), size)),
        "the big layer went in after all: {patches:?}"
    );
    assert_eq!(
        tag_digest(&setup.target, "faulty/app", "v1"),
        Some(clean.digest())
    );
}

#[test]
fn redirected_blob_gets_reach_the_other_host_without_our_authorization() {
    // Registry A (htpasswd) holds the base and redirects blob GETs to a host that, like S3,
    // refuses any Authorization; registry B is the target, so base blobs are read and streamed.
    let source = Registry::htpasswd(ALICE.0, ALICE.1);
    images::push(Image::Busybox, Format::Oci, &source, BASE);
    let proxy = FaultProxy::start(&source.url(), vec![]).unwrap();
    let target = Registry::open();
    let base = format!("{}/{BASE}", proxy.host());
    let inputs = Inputs::new("redirects", None);
    let creds = Creds {
        base: Some(&source.creds().unwrap()),
        target: None,
    };
    let clean = build(
        &base,
        &format!("{}/clean/app:v1", target.host()),
        &inputs,
        creds,
    );

    proxy.inject(Fault::redirect_blob_gets());
    proxy.clear_requests();
    let redirected = build(
        &base,
        &format!("{}/redirected/app:v1", target.host()),
        &inputs,
        creds,
    );

    assert_eq!(redirected.digest(), clean.digest());
    let log = proxy.requests();
    let asked: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.fault == Some(FaultKind::RedirectBlobGet))
        .collect();
    let served: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.listener == Listener::Redirect)
        .collect();
    // The config and the base layer, each asked for with Basic credentials and redirected.
    assert!(asked.len() >= 2, "{log:?}");
    assert!(asked
        .iter()
        .all(|r| r.authorization && r.status == Some(307)));
    assert_eq!(served.len(), asked.len(), "{log:?}");
    for request in served {
        assert!(
            !request.authorization,
            "Authorization sent to the other host"
        );
        assert_eq!(request.status, Some(200));
    }
    assert_eq!(
        tag_digest(&target, "redirected/app", "v1"),
        Some(clean.digest())
    );
}

/// Builds onto `registry` through a proxy that moves every upload session to its other host, as
/// registries that hand uploads to a storage service do: the build must succeed without sending
/// that host our credentials (which it refuses, as S3 does), and the registry must hold the image.
fn build_with_uploads_moved_elsewhere(registry: &Registry, alice: &str) {
    let proxy = FaultProxy::start(&registry.url(), vec![Fault::upload_elsewhere()]).unwrap();
    let creds = Creds {
        base: Some(alice),
        target: Some(alice),
    };
    let built = build(
        &format!("{}/{BASE}", proxy.host()),
        &format!("{}/moved/app:v1", proxy.host()),
        &Inputs::new("uploads elsewhere", None),
        creds,
    );
    let digest = built.digest();

    let log = proxy.requests();
    let elsewhere: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.listener == Listener::Redirect)
        .collect();
    // The built layer and the config went there; the base layers were mounted.
    let uploaded = elsewhere
        .iter()
        .filter(|r| r.is_blob_upload_data() && r.status == Some(201))
        .count();
    assert!(uploaded >= 2, "{log:#?}");
    for request in &elsewhere {
        assert!(
            !request.authorization,
            "Authorization sent to the other host: {request:?}"
        );
    }
    let sessions_started = log
        .iter()
        .filter(|r| r.fault == Some(FaultKind::UploadElsewhere) && r.status == Some(202));
    assert!(sessions_started.clone().count() >= 2, "{log:#?}");
    assert!(sessions_started.clone().all(|r| r.authorization));
    let pushed = format!("{}/moved/app:v1", registry.host());
    assert_eq!(skopeo::digest_if_exists(&pushed, Some(alice)), Some(digest));
}

#[test]
fn upload_sessions_on_another_host_get_no_basic_authorization() {
    let registry = Registry::htpasswd(ALICE.0, ALICE.1);
    let alice = registry.creds().unwrap();
    images::push_with_creds(Image::Busybox, Format::Oci, &registry, Some(&alice), BASE);
    build_with_uploads_moved_elsewhere(&registry, &alice);
}

#[test]
fn upload_sessions_on_another_host_get_no_bearer_token() {
    let (_tokens, registry, _proxy) = token_registry_behind_proxy();
    build_with_uploads_moved_elsewhere(&registry, &format!("{}:{}", ALICE.0, ALICE.1));
}

/// A token registry behind a proxy, holding the busybox base; alice may do anything.
fn token_registry_behind_proxy() -> (TokenServer, Registry, FaultProxy) {
    let tokens = TokenServer::start(&[ALICE], Policy::new().allow(ALICE.0, "*", &["*"])).unwrap();
    let registry = Registry::start(tokens.registry_auth());
    let alice = format!("{}:{}", ALICE.0, ALICE.1);
    images::push_with_creds(Image::Busybox, Format::Oci, &registry, Some(&alice), BASE);
    let proxy = FaultProxy::start(&registry.url(), vec![]).unwrap();
    (tokens, registry, proxy)
}

/// Tokens the server issued from `since` on for pushing to `repository`.
fn push_tokens(tokens: &TokenServer, since: usize, repository: &str) -> usize {
    let scope = format!("repository:{repository}:pull,push");
    tokens.issued()[since..]
        .iter()
        .filter(|t| t.requested.contains(&scope))
        .count()
}

#[test]
fn a_token_that_expires_mid_build_is_fetched_again() {
    // The base comes from an open registry, so every request to the target needs the same
    // scopes and is sent with the same token (no mounts, which would ask for another).
    let source = Registry::open();
    images::push(Image::Busybox, Format::Oci, &source, BASE);
    let base = format!("{}/{BASE}", source.host());
    let (tokens, _registry, proxy) = token_registry_behind_proxy();
    let alice = format!("{}:{}", ALICE.0, ALICE.1);
    let creds = Creds {
        base: None,
        target: Some(&alice),
    };
    let inputs = Inputs::new("expiry", None);
    let clean = build(
        &base,
        &format!("{}/clean/app:v1", proxy.host()),
        &inputs,
        creds,
    );

    // The first request to the repository, made with a fresh token, is held back by a 429 for
    // 3 s. Tokens issued until then die at the registry within 2 s, although `expires_in`
    // promises 300 s: whichever request first uses one after the wait (the held-back one, or
    // another on a slow run) is refused by the registry itself. Tokens issued after the 429
    // live; none of this depends on how fast the build runs.
    let repository = "^/v2/expired/app/";
    proxy.inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after_secs: 3,
        })
        .matching("*", repository)
        .times(1),
    );
    let held_back = proxy.handle();
    let tokens = tokens.with_early_expiry(Duration::from_secs(2), move || {
        held_back.pending_firings() > 0
    });
    proxy.clear_requests();
    let issued_before = tokens.issued().len();
    let faulty = build(
        &base,
        &format!("{}/expired/app:v1", proxy.host()),
        &inputs,
        creds,
    );

    assert_eq!(faulty.digest(), clean.digest());
    assert_eq!(proxy.pending_firings(), 0);
    let log = proxy.requests();
    let held: Vec<&LoggedRequest> = log.iter().filter(|r| r.fault.is_some()).collect();
    assert_eq!(held.len(), 1, "{log:?}");
    assert!(held[0].authorization, "the held-back request had a token");
    let refused_by_registry = log
        .iter()
        .filter(|r| r.fault.is_none() && r.status == Some(401) && r.authorization)
        .count();
    assert!(
        refused_by_registry >= 1,
        "the registry itself refused the expired token: {log:?}"
    );
    assert!(push_tokens(&tokens, issued_before, "expired/app") >= 2);
}

#[test]
fn a_401_for_an_expired_token_mid_patch_fetches_a_new_one_and_resumes() {
    // The target is a token registry behind the proxy; base blobs are streamed into it from
    // another registry, with PATCH, whose body cannot be sent again.
    let source = Registry::open();
    let base = big_base(&source);
    let (tokens, _registry, proxy) = token_registry_behind_proxy();
    let alice = format!("{}:{}", ALICE.0, ALICE.1);
    let creds = Creds {
        base: None,
        target: Some(&alice),
    };
    let inputs = Inputs::new("expired mid-patch", None);
    let clean = build(
        &base,
        &format!("{}/clean/app:v1", proxy.host()),
        &inputs,
        creds,
    );

    proxy.inject(Fault::expired_token().matching("PATCH", "").times(1));
    proxy.clear_requests();
    let issued_before = tokens.issued().len();
    let faulty = build(
        &base,
        &format!("{}/expired/app:v1", proxy.host()),
        &inputs,
        creds,
    );

    assert_eq!(faulty.digest(), clean.digest());
    assert_eq!(proxy.pending_firings(), 0);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.fault == Some(FaultKind::Unauthorized) && r.status == Some(401)),
        "a PATCH was refused as expired"
    );
    assert!(push_tokens(&tokens, issued_before, "expired/app") >= 2);
}

/// Checks that the requests the faults answered stay within the retry budget: at most
/// [`RetryPolicy::attempts`] tries for each of the `operations` the build could not get through
/// (a request, or a blob's upload however many upload sessions it took).
fn assert_within_retry_budget(log: &[LoggedRequest], operations: usize) {
    let attempts = RetryPolicy::default().attempts as usize;
    let faulted: Vec<String> = log
        .iter()
        .filter(|r| r.fault.is_some())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(!faulted.is_empty(), "no fault fired: {log:?}");
    assert!(
        faulted.len() <= attempts * operations,
        "{} requests answered by faults, more than {attempts} tries for each of {operations} \
         operations: {faulted:#?}",
        faulted.len()
    );
}

/// The parts a failure's error line must name.
fn assert_names(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{line:?} does not name {part:?}");
    }
}

#[test]
fn faults_that_never_stop_fail_the_build_and_leave_the_tag_alone() {
    let (registry, proxy) = open_registry_behind_proxy();
    let base = format!("{}/{BASE}", proxy.host());
    let target = format!("{}/app/main:v1", proxy.host());
    let first = build(
        &base,
        &target,
        &Inputs::new("first", None),
        Creds::default(),
    )
    .digest();

    // A registry that answers nothing but 503.
    proxy.inject(Fault::service_unavailable());
    proxy.clear_requests();
    let down = build(&base, &target, &Inputs::new("down", None), Creds::default());
    let line = down.error_line();
    assert_names(line, &[proxy.host(), "503"]);
    assert!(
        !line.contains("is this an OCI registry"),
        "a 503 does not mean the host is no registry: {line}"
    );
    // Only the ping was made: layerize stops at a registry that never answers it.
    assert_within_retry_budget(&proxy.requests(), 1);
    proxy.clear_faults();
    assert_eq!(tag_digest(&registry, "app/main", "v1"), Some(first.clone()));

    // Everything goes in but the manifest: the tag stays where it was.
    proxy.inject(Fault::service_unavailable().matching("PUT", "/manifests/"));
    proxy.clear_requests();
    let no_manifest = build(
        &base,
        &target,
        &Inputs::new("second", None),
        Creds::default(),
    );
    assert_names(
        no_manifest.error_line(),
        &[
            &format!("{}/app/main", proxy.host()),
            "put manifest v1",
            "503",
        ],
    );
    assert_within_retry_budget(&proxy.requests(), 1);
    proxy.clear_faults();
    assert_eq!(tag_digest(&registry, "app/main", "v1"), Some(first.clone()));

    // Every upload body is cut: the layer never gets in.
    proxy.inject(Fault::reset_mid_upload());
    proxy.clear_requests();
    let cut = build(
        &base,
        &target,
        &Inputs::new("third", Some(5)),
        Creds::default(),
    );
    let line = cut.error_line();
    assert_names(
        line,
        &[&format!("{}/app/main", proxy.host()), "upload blob sha256:"],
    );
    // The new layer and the config.
    assert_within_retry_budget(&proxy.requests(), 2);
    proxy.clear_faults();
    assert_eq!(tag_digest(&registry, "app/main", "v1"), Some(first));
}

#[test]
fn a_streamed_copy_cut_forever_fails_within_the_retry_budget_and_leaves_the_tag_alone() {
    let setup = CrossRegistry::new("cut forever");
    // The tag already names another image, which the failed build must leave in place.
    let previous = images::push(Image::Busybox, Format::Oci, &setup.target, "app/main:v1");
    setup
        .proxy
        .inject(Fault::reset_mid_upload().matching("PATCH", ""));
    let cut = setup.build("app/main");
    let line = cut.error_line();
    assert_names(
        line,
        &[
            &format!("{}/app/main", setup.proxy.host()),
            "upload blob sha256:",
        ],
    );
    // The base's big layer, the only blob the target lacks.
    assert_within_retry_budget(&setup.proxy.requests(), 1);
    assert_eq!(tag_digest(&setup.target, "app/main", "v1"), Some(previous));
}
