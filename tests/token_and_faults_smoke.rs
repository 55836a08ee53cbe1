//! Smoke tests of the test doubles that stand in for real-world registry behaviour: the token
//! server against the real `docker-registry` in token mode (tokens accepted, policies enforced,
//! wrong passwords refused, identity tokens, tokens that die early), and the fault proxy in front
//! of real registries (each fault as a client sees it, and clean forwarding of everything else).

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::fault_proxy::{Fault, FaultKind, FaultProxy, Listener, LoggedRequest};
use support::images::{self, OciLayout};
use support::registry::Registry;
use support::token_server::{GrantKind, Policy, TokenServer};
use support::{scratch_dir, skopeo, tools};

const ALICE: (&str, &str) = ("alice", "alice-pw-3f9c01");
const BOB: (&str, &str) = ("bob", "bob-pw-71ad52");
const BOB_IDENTITY_TOKEN: &str = "bob-identity-9e4d";
const MIB: usize = 1024 * 1024;

fn creds((user, password): (&str, &str)) -> String {
    format!("{user}:{password}")
}

fn policy() -> Policy {
    Policy::new()
        .allow("alice", "*", &["pull", "push"])
        .allow("bob", "org/*", &["pull"])
        .public("public/*")
}

/// An HTTP answer as curl got it.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON answer")
    }
}

/// One HTTP exchange with curl (no redirects followed unless `args` say so); `Err` holds curl's
/// exit code when no answer came. `args` are never printed: they may hold credentials.
fn curl(args: &[&str]) -> Result<Reply, i32> {
    let dir = scratch_dir();
    let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
    let output = tools::command("curl")
        .args(["-sS", "--http1.1", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(args)
        .output()
        .expect("run curl");
    if !output.status.success() {
        return Err(output.status.code().unwrap_or(-1));
    }
    let headers = std::fs::read_to_string(headers).expect("curl header dump");
    // With -L or `100 Continue` there are several header blocks: the last one is the answer.
    let last = headers
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .expect("an HTTP answer");
    let mut lines = last.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: std::fs::read(body).unwrap_or_default(),
    })
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// A token for `scope` from the token server's GET endpoint, with Basic credentials.
fn get_token(tokens: &TokenServer, user: (&str, &str), scope: &str) -> Value {
    let url = format!(
        "{}?service={}&scope={scope}",
        tokens.realm(),
        tokens.service()
    );
    let reply = curl(&["-u", &creds(user), &url]).expect("token server answers");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// `skopeo copy` that may fail, for the refusals.
fn skopeo_copy_output(source: &str, destination: &str, dest_creds: &str) -> Output {
    tools::output(tools::command("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        dest_creds,
        source,
        destination,
    ]))
}

fn skopeo_inspect_output(reference: &str, creds: Option<&str>) -> Output {
    let mut command = tools::command("skopeo");
    command.args(["inspect", "--tls-verify=false"]);
    match creds {
        Some(creds) => command.args(["--creds", creds]),
        None => command.arg("--no-creds"),
    };
    tools::output(command.arg(reference))
}

/// Pushes the busybox base to `reference` and returns the manifest digest skopeo wrote.
fn push(layout: &OciLayout, reference: &str, creds: Option<&str>, extra: &[&str]) -> String {
    let dir = scratch_dir();
    let digest_file = dir.path().join("digest");
    let mut args = vec!["--digestfile", digest_file.to_str().unwrap()];
    args.extend(extra);
    skopeo::copy(&layout.reference(), reference, creds, &args);
    std::fs::read_to_string(digest_file).expect("skopeo wrote the digest")
}

#[test]
fn token_server_tokens_are_accepted_and_enforced_by_the_real_registry() {
    let tokens = TokenServer::start(&[ALICE, BOB], policy())
        .unwrap()
        .with_identity_token("bob", BOB_IDENTITY_TOKEN);
    let registry = Registry::start(tokens.registry_auth());
    let layout = images::oci_base_layout();
    let app = format!("docker://{}/org/app:v1", registry.host());

    // alice may push anywhere: the registry accepts her x5c-signed token.
    let pushed = push(&layout, &app, Some(&creds(ALICE)), &[]);
    assert_eq!(skopeo::inspect(&app, Some(&creds(ALICE)))["Digest"], pushed);
    let alice_push = tokens
        .issued()
        .into_iter()
        .find(|t| {
            t.requested
                .iter()
                .any(|s| s == "repository:org/app:pull,push")
        })
        .expect("skopeo asked for a push token");
    assert_eq!(alice_push.subject.as_deref(), Some("alice"));
    assert_eq!(alice_push.grant, GrantKind::Basic);
    assert_eq!(alice_push.granted[0].name, "org/app");
    assert_eq!(alice_push.granted[0].actions, ["pull", "push"]);

    // bob may pull org/* but not push: his token carries pull only and the registry refuses.
    assert_eq!(skopeo::inspect(&app, Some(&creds(BOB)))["Digest"], pushed);
    let denied = skopeo_copy_output(
        &layout.reference(),
        &format!("docker://{}/org/app:bob", registry.host()),
        &creds(BOB),
    );
    assert!(!denied.status.success(), "bob pushed without push access");
    let bob_push = tokens
        .issued()
        .into_iter()
        .rfind(|t| t.subject.as_deref() == Some("bob"))
        .unwrap();
    assert!(bob_push
        .requested
        .contains(&"repository:org/app:pull,push".to_owned()));
    assert_eq!(bob_push.granted[0].actions, ["pull"]);

    // A wrong password: 401 from the token server, and skopeo fails.
    let url = format!("{}?service={}", tokens.realm(), tokens.service());
    let wrong = curl(&["-u", "alice:not-her-password", &url]).unwrap();
    assert_eq!(wrong.status, 401);
    let refused = skopeo_inspect_output(&app, Some("alice:not-her-password"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("invalid username/password"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Anonymous pulls work on public/* only.
    let public = format!("docker://{}/public/base:v1", registry.host());
    push(&layout, &public, Some(&creds(ALICE)), &[]);
    let anonymous = skopeo_inspect_output(&public, None);
    assert!(anonymous.status.success(), "anonymous pull of public/*");
    assert!(!skopeo_inspect_output(&app, None).status.success());
    assert!(tokens
        .issued()
        .iter()
        .any(|t| t.grant == GrantKind::Anonymous && t.granted.is_empty()));

    // POST with grant_type=password and access_type=offline hands out an identity token, which
    // a refresh_token grant turns into an access token that the registry accepts.
    let tags = format!("{}/v2/org/app/tags/list", registry.url());
    let form = format!(
        "grant_type=password&username=alice&password={}&service={}&client_id=layerize-tests\
         &access_type=offline&scope=repository:org/app:pull",
        ALICE.1,
        tokens.service()
    );
    let login = curl(&["-X", "POST", "--data", &form, tokens.realm()]).unwrap();
    assert_eq!(login.status, 200);
    let identity = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let offline = get_token(
        &tokens,
        BOB,
        "repository:org/app:pull&offline_token=true&client_id=t",
    );
    let bob_identity = offline["refresh_token"].as_str().unwrap().to_owned();
    for (user, identity) in [
        ("alice", identity.as_str()),
        ("bob", bob_identity.as_str()),
        ("bob", BOB_IDENTITY_TOKEN),
    ] {
        let form = format!(
            "grant_type=refresh_token&refresh_token={identity}&service={}&client_id=t\
             &scope=repository:org/app:pull",
            tokens.service()
        );
        let refreshed = curl(&["-X", "POST", "--data", &form, tokens.realm()]).unwrap();
        assert_eq!(refreshed.status, 200, "{user}");
        let access = refreshed.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let listed = curl(&["-H", &bearer(&access), &tags]).unwrap();
        assert_eq!(listed.status, 200, "{user}");
        assert_eq!(listed.json()["tags"], serde_json::json!(["v1"]));
    }
    let bogus = "grant_type=refresh_token&refresh_token=nope&service=layerize-test-registry";
    assert_eq!(
        curl(&["-X", "POST", "--data", bogus, tokens.realm()])
            .unwrap()
            .status,
        401
    );

    // Tokens that die early: the registry refuses one past its lifetime (zero here), despite its
    // 60 s leeway and the 300 s that `expires_in` promises; once tokens no longer die, they work.
    let dying = Arc::new(AtomicBool::new(true));
    let tokens = tokens.with_early_expiry(Duration::ZERO, {
        let dying = dying.clone();
        move || dying.load(Ordering::SeqCst)
    });
    let dead = get_token(&tokens, ALICE, "repository:org/app:pull");
    assert_eq!(dead["expires_in"], 300);
    let dead = bearer(dead["token"].as_str().unwrap());
    assert_eq!(curl(&["-H", &dead, &tags]).unwrap().status, 401);
    dying.store(false, Ordering::SeqCst);
    let live = get_token(&tokens, ALICE, "repository:org/app:pull");
    let live = bearer(live["token"].as_str().unwrap());
    assert_eq!(curl(&["-H", &live, &tags]).unwrap().status, 200);
    assert_eq!(curl(&["-H", &dead, &tags]).unwrap().status, 401);

    let log = format!("{:?}", tokens.issued());
    for secret in [ALICE.1, BOB.1, BOB_IDENTITY_TOKEN, &identity, &bob_identity] {
        assert!(!log.contains(secret), "the issued log holds a secret");
    }
    assert!(tokens.requests() >= tokens.issued().len() as u64 + 2);
}

fn fault_answers(log: &[LoggedRequest]) -> Vec<(u16, FaultKind)> {
    log.iter()
        .filter_map(|r| Some((r.status?, r.fault?)))
        .collect()
}

/// A fresh upload session on `proxy` for `repository`; its Location.
fn start_upload(proxy: &FaultProxy, repository: &str) -> String {
    let url = format!("{}/v2/{repository}/blobs/uploads/", proxy.url());
    let reply = curl(&["-X", "POST", &url]).unwrap();
    assert_eq!(reply.status, 202);
    reply.header("Location").unwrap().to_owned()
}

fn patch(location: &str, file: &std::path::Path, chunked: bool) -> Result<Reply, i32> {
    let data = format!("@{}", file.display());
    let mut args = vec![
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/octet-stream",
    ];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    args.extend(["--data-binary", &data, location]);
    curl(&args)
}

#[test]
fn fault_proxy_injects_each_fault_in_front_of_an_open_registry() {
    let registry = Registry::open();
    let proxy = FaultProxy::start(
        &registry.url(),
        vec![
            Fault::service_unavailable().times(2),
            Fault::too_many_requests().times(1),
        ],
    )
    .unwrap();
    let layout = images::oci_base_layout();

    // 503, 503, 429 (with Retry-After: 1), then the upstream's own answer.
    let ping = format!("{}/v2/", proxy.url());
    let statuses: Vec<u16> = (0..4).map(|_| curl(&[&ping]).unwrap().status).collect();
    assert_eq!(statuses, [503, 503, 429, 200]);
    let log = proxy.requests();
    assert_eq!(
        fault_answers(&log),
        [
            (503, FaultKind::ServiceUnavailable),
            (503, FaultKind::ServiceUnavailable),
            (
                429,
                FaultKind::TooManyRequests {
                    retry_after_secs: 1
                }
            ),
        ]
    );
    proxy.inject(Fault::too_many_requests().times(1));
    assert_eq!(curl(&[&ping]).unwrap().header("Retry-After"), Some("1"));
    assert_eq!(proxy.pending_firings(), 0);
    // A fault without a count never stops, until cleared.
    proxy.inject(Fault::service_unavailable().matching("GET", "^/v2/$"));
    let statuses: Vec<u16> = (0..3).map(|_| curl(&[&ping]).unwrap().status).collect();
    assert_eq!(statuses, [503, 503, 503]);
    proxy.clear_faults();
    assert_eq!(curl(&[&ping]).unwrap().status, 200);

    // Clean forwarding: skopeo pushes through the proxy, and the registry holds that image.
    proxy.clear_requests();
    let through = format!("docker://{}/app:v1", proxy.host());
    let pushed = push(&layout, &through, None, &[]);
    let direct = format!("docker://{}/app:v1", registry.host());
    assert_eq!(skopeo::inspect(&direct, None)["Digest"], pushed);
    let log = proxy.requests();
    assert!(log.iter().any(LoggedRequest::is_blob_upload_data));
    assert!(log.iter().all(|r| r.fault.is_none() && !r.authorization));
    // Upload Locations point at the proxy, not at the registry behind it.
    let location = start_upload(&proxy, "app");
    assert!(location.starts_with(proxy.url()), "{location}");

    // GHCR's PATCH cap: over 4 MiB is refused, sized or chunked; smaller PATCHes pass.
    proxy.inject(Fault::patch_cap_4mib());
    proxy.clear_requests();
    let dir = scratch_dir();
    let (big, small) = (dir.path().join("big"), dir.path().join("small"));
    std::fs::write(&big, vec![7u8; 5 * MIB]).unwrap();
    std::fs::write(&small, vec![7u8; MIB]).unwrap();
    for chunked in [false, true] {
        let refused = patch(&start_upload(&proxy, "app"), &big, chunked).unwrap();
        assert_eq!(refused.status, 413, "chunked: {chunked}");
    }
    let accepted = patch(&start_upload(&proxy, "app"), &small, true).unwrap();
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.header("Range"), Some("0-1048575"));
    let patches: Vec<(u64, Option<FaultKind>)> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.bytes_in, r.fault))
        .collect();
    let cap = Some(FaultKind::PatchCap {
        max_bytes: 4 * MIB as u64,
        status: 413,
    });
    assert_eq!(
        patches,
        [
            (5 * MIB as u64, cap),
            (5 * MIB as u64, cap),
            (MIB as u64, None)
        ]
    );
    proxy.clear_faults();

    // A connection reset mid-upload, once: the retry of the same PATCH goes through.
    proxy.inject(Fault::reset_mid_upload().times(1));
    let location = start_upload(&proxy, "app");
    assert!(
        patch(&location, &small, false).is_err(),
        "the upload was cut"
    );
    let retried = patch(&location, &small, false).unwrap();
    assert_eq!(retried.status, 202);
    let cut = proxy
        .requests()
        .into_iter()
        .find(|r| r.fault == Some(FaultKind::ResetMidUpload { after_bytes: 65536 }))
        .unwrap();
    assert_eq!(cut.status, None);
    assert!(
        cut.bytes_in >= 65536 && cut.bytes_in < MIB as u64,
        "{}",
        cut.bytes_in
    );

    // Blob GETs redirected to another host that, like S3, refuses any Authorization.
    proxy.inject(Fault::redirect_blob_gets());
    let layer = layout.manifest()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = format!("{}/v2/app/blobs/{layer}", proxy.url());
    let auth = bearer("pretend-token");
    let redirect = curl(&["-H", &auth, &blob]).unwrap();
    assert_eq!(redirect.status, 307);
    let elsewhere = redirect.header("Location").unwrap().to_owned();
    assert!(elsewhere.starts_with(proxy.redirect_url()), "{elsewhere}");
    assert_ne!(
        proxy.redirect_url().split(':').nth(1),
        proxy.url().split(':').nth(1),
        "the redirect goes to another host name"
    );
    let with_auth = curl(&["-H", &auth, &elsewhere]).unwrap();
    assert_eq!(with_auth.status, 400);
    assert!(String::from_utf8_lossy(&with_auth.body).contains("InvalidArgument"));
    let without = curl(&[&elsewhere]).unwrap();
    assert_eq!(without.status, 200);
    assert!(without.body == layout.blob(&layer), "the redirected blob");
    // curl drops a custom Authorization on a cross-host redirect unless told to keep it.
    assert_eq!(curl(&["-L", "-H", &auth, &blob]).unwrap().status, 200);
    let trusting = curl(&["-L", "--location-trusted", "-H", &auth, &blob]).unwrap();
    assert_eq!(trusting.status, 400);
    let redirected: Vec<(bool, Option<u16>)> = proxy
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Redirect)
        .map(|r| (r.authorization, r.status))
        .collect();
    assert_eq!(
        redirected,
        [
            (true, Some(400)),
            (false, Some(200)),
            (false, Some(200)),
            (true, Some(400))
        ]
    );
}

#[test]
fn fault_proxy_passes_token_auth_through_and_fakes_an_expired_token() {
    let tokens = TokenServer::start(&[ALICE], policy()).unwrap();
    let registry = Registry::start(tokens.registry_auth());
    let proxy = FaultProxy::start(&registry.url(), vec![]).unwrap();
    let layout = images::oci_base_layout();

    // The challenge passes unchanged, so clients get tokens from the token server directly.
    let direct = curl(&[&format!("{}/v2/", registry.url())]).unwrap();
    let proxied = curl(&[&format!("{}/v2/", proxy.url())]).unwrap();
    assert_eq!(proxied.status, 401);
    assert_eq!(
        proxied.header("WWW-Authenticate"),
        direct.header("WWW-Authenticate")
    );
    let through = format!("docker://{}/org/app:v1", proxy.host());
    let pushed = push(&layout, &through, Some(&creds(ALICE)), &[]);
    let at_registry = format!("docker://{}/org/app:v1", registry.host());
    assert_eq!(
        skopeo::inspect(&at_registry, Some(&creds(ALICE)))["Digest"],
        pushed
    );
    assert!(proxy.requests().iter().any(|r| r.authorization));

    // A token that "expired" mid-build: one 401 with the registry's challenge for this scope.
    proxy.inject(
        Fault::expired_token()
            .times(1)
            .matching("GET", "/tags/list"),
    );
    let token = get_token(&tokens, ALICE, "repository:org/app:pull");
    let token = bearer(token["token"].as_str().unwrap());
    let tags = format!("{}/v2/org/app/tags/list", proxy.url());
    let expired = curl(&["-H", &token, &tags]).unwrap();
    assert_eq!(expired.status, 401);
    let challenge = expired.header("WWW-Authenticate").unwrap();
    for part in [
        format!("realm=\"{}\"", tokens.realm()),
        format!("service=\"{}\"", tokens.service()),
        "scope=\"repository:org/app:pull\"".to_owned(),
        "error=\"invalid_token\"".to_owned(),
    ] {
        assert!(challenge.contains(&part), "{challenge} lacks {part}");
    }
    let again = curl(&["-H", &token, &tags]).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["tags"], serde_json::json!(["v1"]));
}
