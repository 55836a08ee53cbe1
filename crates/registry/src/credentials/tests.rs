use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Value};

use super::*;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.into(),
        password: password.into(),
    }
}

fn write_json(path: &Path, value: &Value) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// A home directory with nothing in it, and sources pointing only at it.
fn sandbox() -> (tempfile::TempDir, CredentialSources) {
    let dir = tempfile::tempdir().unwrap();
    let sources = CredentialSources {
        home: Some(dir.path().join("home")),
        helper_path: Some(helpers_dir().as_os_str().to_owned()),
        ..CredentialSources::default()
    };
    (dir, sources)
}

fn home_docker_config(sources: &CredentialSources) -> PathBuf {
    sources.home.as_ref().unwrap().join(".docker/config.json")
}

/// Fake credential helpers, written once for the whole test run: a script being written while
/// another test forks could otherwise make exec fail with "text file busy".
/// `docker-credential-fake` answers by server URL; `docker-credential-store` has one user for
/// every registry but `fallthrough.example`. Both record what `store` is given.
fn helpers_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let fake = r#"#!/bin/sh
read -r server || true
case "$1" in
store) printf '%s' "$server" > "$(dirname "$0")/fake-stored"; exit 0 ;;
get) ;;
*) echo "unknown action $1"; exit 2 ;;
esac
case "$server" in
https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hub-s3cr3t"}' ;;
ok.example) echo '{"ServerURL":"ok.example","Username":"helperuser","Secret":"helper-s3cr3t"}' ;;
token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"refresh-s3cr3t"}' ;;
broken.example) echo 'keychain is locked' >&2; exit 3 ;;
garbage.example) echo 'Username helperuser Secret helper-s3cr3t' ;;
*) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;
        let store = r#"#!/bin/sh
read -r server || true
case "$1" in
store) printf '%s' "$server" > "$(dirname "$0")/store-stored"; exit 0 ;;
esac
case "$server" in
fallthrough.example) echo 'credentials not found' >&2; exit 1 ;;
*) echo '{"ServerURL":"any","Username":"storeuser","Secret":"store-s3cr3t"}' ;;
esac
"#;
        for (name, script) in [("fake", fake), ("store", store)] {
            let path = dir.path().join(format!("docker-credential-{name}"));
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    })
    .path()
}

#[test]
fn credentials_from_docker_config_dir_beat_home() {
    let (dir, mut sources) = sandbox();
    write_json(
        &home_docker_config(&sources),
        &json!({"auths": {"r.example": {"auth": b64("home:pw")}}}),
    );
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("home", "pw"))
    );

    sources.docker_config_dir = Some(dir.path().join("docker-config"));
    write_json(
        &dir.path().join("docker-config/config.json"),
        &json!({"auths": {"r.example": {"auth": b64("dc:pw")}}}),
    );
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("dc", "pw"))
    );
    assert_eq!(sources.lookup("other.example").unwrap(), None);
}

#[test]
fn credentials_auths_keys_match_loosely_but_only_the_same_host_and_port() {
    let (_dir, sources) = sandbox();
    let config = home_docker_config(&sources);
    for key in [
        "r.example:5000",
        "https://r.example:5000",
        "http://r.example:5000/v2/",
        "HTTPS://R.example:5000/v1/",
    ] {
        write_json(&config, &json!({"auths": {key: {"auth": b64("u:p")}}}));
        assert_eq!(
            sources.lookup("r.example:5000").unwrap(),
            Some(basic("u", "p")),
            "key {key}"
        );
    }
    for key in [
        "r.example",
        "r.example:5001",
        "https://r.example:5000/ns",
        "other.example:5000",
    ] {
        write_json(&config, &json!({"auths": {key: {"auth": b64("u:p")}}}));
        assert_eq!(sources.lookup("r.example:5000").unwrap(), None, "key {key}");
    }
}

#[test]
fn credentials_docker_hub_is_found_under_every_alias_and_the_docker_key_wins() {
    let (_dir, sources) = sandbox();
    let config = home_docker_config(&sources);
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io/v2/",
    ] {
        write_json(&config, &json!({"auths": {key: {"auth": b64("hub:pw")}}}));
        for registry in ["docker.io", "registry-1.docker.io", "index.docker.io"] {
            assert_eq!(
                sources.lookup(registry).unwrap(),
                Some(basic("hub", "pw")),
                "key {key}, registry {registry}"
            );
        }
    }
    write_json(
        &config,
        &json!({"auths": {"docker.io": {"auth": b64("alias:pw")}, "https://index.docker.io/v1/": {"auth": b64("docker:pw")}}}),
    );
    assert_eq!(
        sources.lookup("docker.io").unwrap(),
        Some(basic("docker", "pw"))
    );
}

#[test]
fn credentials_entry_kinds() {
    let (_dir, sources) = sandbox();
    write_json(
        &home_docker_config(&sources),
        &json!({"auths": {
            "identity.example": {"auth": b64("me:"), "identitytoken": "refresh-tok"},
            "registry.example": {"registrytoken": "bearer-tok"},
            "fields.example": {"username": "me", "password": "pw"},
            "case.example": {"Auth": b64("me:pw")},
            "marker.example": {},
            "nopassword.example": {"auth": b64("me:")},
        }}),
    );
    let identity = Credential::IdentityToken {
        username: "me".into(),
        token: "refresh-tok".into(),
    };
    assert_eq!(sources.lookup("identity.example").unwrap(), Some(identity));
    assert_eq!(
        sources.lookup("registry.example").unwrap(),
        Some(Credential::RegistryToken("bearer-tok".into()))
    );
    assert_eq!(
        sources.lookup("fields.example").unwrap(),
        Some(basic("me", "pw"))
    );
    assert_eq!(
        sources.lookup("case.example").unwrap(),
        Some(basic("me", "pw"))
    );
    assert_eq!(sources.lookup("marker.example").unwrap(), None);
    assert_eq!(sources.lookup("nopassword.example").unwrap(), None);
}

#[test]
fn credentials_bad_files_are_errors_that_name_the_file_and_key_but_no_value() {
    let (_dir, sources) = sandbox();
    let config = home_docker_config(&sources);
    write_json(
        &config,
        &json!({"auths": {"r.example": {"auth": "bm90LWJhc2U2NC1zM2NyM3Q$$$"}}}),
    );
    let error = sources.lookup("r.example").unwrap_err().to_string();
    assert!(
        error.contains(&config.display().to_string()) && error.contains("auths[\"r.example\"]"),
        "{error}"
    );
    assert!(
        !error.contains("bm90") && !error.contains("s3cr3t"),
        "{error}"
    );

    fs::write(&config, "{\"auths\": {\"r.example\": {\"auth\": \"s3cr3t\"").unwrap();
    let error = sources.lookup("r.example").unwrap_err().to_string();
    assert!(
        error.contains("not valid JSON") && !error.contains("s3cr3t"),
        "{error}"
    );

    // An empty file is what some tools leave behind: no credentials, no error.
    fs::write(&config, "\n").unwrap();
    assert_eq!(sources.lookup("r.example").unwrap(), None);
}

#[test]
fn credentials_podman_files_order() {
    let (dir, mut sources) = sandbox();
    let home = sources.home.clone().unwrap();
    sources.xdg_runtime_dir = Some(dir.path().join("run"));
    let entry = |user: &str| json!({"auths": {"r.example": {"auth": b64(&format!("{user}:pw"))}}});

    write_json(&home.join(".config/containers/auth.json"), &entry("config"));
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("config", "pw"))
    );
    write_json(
        &dir.path().join("run/containers/auth.json"),
        &entry("runtime"),
    );
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("runtime", "pw"))
    );
    write_json(&home.join(".docker/config.json"), &entry("docker"));
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("docker", "pw"))
    );

    // REGISTRY_AUTH_FILE comes first when set, and replaces podman's default files.
    sources.registry_auth_file = Some(dir.path().join("explicit.json"));
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("docker", "pw")),
        "a missing file is skipped"
    );
    write_json(&dir.path().join("explicit.json"), &entry("explicit"));
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("explicit", "pw"))
    );
    fs::remove_file(home.join(".docker/config.json")).unwrap();
    fs::remove_file(dir.path().join("explicit.json")).unwrap();
    assert_eq!(sources.lookup("r.example").unwrap(), None);
}

#[test]
fn credentials_podman_repository_keys_are_skipped_for_the_host_key() {
    let (_dir, sources) = sandbox();
    write_json(
        &sources
            .home
            .as_ref()
            .unwrap()
            .join(".config/containers/auth.json"),
        &json!({"auths": {"r.example/team/app": {"auth": b64("scoped:pw")}, "r.example": {"auth": b64("host:pw")}}}),
    );
    assert_eq!(
        sources.lookup("r.example").unwrap(),
        Some(basic("host", "pw"))
    );
}

#[test]
fn credentials_helpers_answer_before_auths() {
    let (_dir, sources) = sandbox();
    write_json(
        &home_docker_config(&sources),
        &json!({
            "credHelpers": {"https://ok.example": "fake", "token.example": "fake", "fallthrough.example": "fake", "docker.io": "fake"},
            "credsStore": "store",
            "auths": {"ok.example": {"auth": b64("file:pw")}, "fallthrough.example": {"auth": b64("file:pw")}},
        }),
    );
    assert_eq!(
        sources.lookup("ok.example").unwrap(),
        Some(basic("helperuser", "helper-s3cr3t"))
    );
    let token = Credential::IdentityToken {
        username: String::new(),
        token: "refresh-s3cr3t".into(),
    };
    assert_eq!(sources.lookup("token.example").unwrap(), Some(token));
    // Docker Hub is asked for under docker's key.
    assert_eq!(
        sources.lookup("docker.io").unwrap(),
        Some(basic("hubuser", "hub-s3cr3t"))
    );
    // No credHelpers entry: credsStore.
    assert_eq!(
        sources.lookup("elsewhere.example").unwrap(),
        Some(basic("storeuser", "store-s3cr3t"))
    );
    // Neither helper has it: auths.
    assert_eq!(
        sources.lookup("fallthrough.example").unwrap(),
        Some(basic("file", "pw"))
    );
}

#[test]
fn credentials_helper_not_found_means_anonymous() {
    let (_dir, sources) = sandbox();
    write_json(
        &home_docker_config(&sources),
        &json!({"credHelpers": {"nothing.example": "fake"}}),
    );
    assert_eq!(sources.lookup("nothing.example").unwrap(), None);
}

#[test]
fn credentials_helper_failures_name_the_helper_and_hide_the_secret() {
    let (_dir, sources) = sandbox();
    write_json(
        &home_docker_config(&sources),
        &json!({"credHelpers": {"broken.example": "fake", "garbage.example": "fake", "gone.example": "absent", "evil.example": "../fake"}}),
    );
    let broken = sources.lookup("broken.example").unwrap_err().to_string();
    assert!(
        broken.contains("docker-credential-fake") && broken.contains("keychain is locked"),
        "{broken}"
    );
    assert!(broken.contains("broken.example"), "{broken}");

    let garbage = sources.lookup("garbage.example").unwrap_err().to_string();
    assert!(
        garbage.contains("docker-credential-fake") && !garbage.contains("s3cr3t"),
        "{garbage}"
    );

    let gone = sources.lookup("gone.example").unwrap_err();
    assert!(
        matches!(gone, CredentialsError::HelperMissing { .. }),
        "{gone}"
    );
    assert!(
        gone.to_string().contains("docker-credential-absent"),
        "{gone}"
    );

    let evil = sources.lookup("evil.example").unwrap_err().to_string();
    assert!(evil.contains("not a valid helper name"), "{evil}");
}

#[test]
fn credentials_login_creates_private_file_found_by_lookup() {
    let (_dir, sources) = sandbox();
    let path = sources.login("r.example:5000", "alice", "pa:ss").unwrap();
    assert_eq!(path, home_docker_config(&sources));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let written: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"auths": {"r.example:5000": {"auth": b64("alice:pa:ss")}}})
    );
    assert_eq!(
        sources.lookup("r.example:5000").unwrap(),
        Some(basic("alice", "pa:ss"))
    );
}

#[test]
fn credentials_login_keeps_every_other_key_and_replaces_the_entry() {
    let (dir, mut sources) = sandbox();
    sources.docker_config_dir = Some(dir.path().join("dc"));
    let path = dir.path().join("dc/config.json");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        &path,
        r#"{
    "psFormat": "table {{.ID}}",
    "auths": {
        "other.example": {"auth": "b3RoZXI6cHc=", "email": "x@example.com"},
        "https://index.docker.io/v1/": {"auth": "b2xkOg==", "identitytoken": "old-token"}
    },
    "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    "plugins": {"x": {"y": [1, 2, {"z": null}]}}
}"#,
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    assert_eq!(sources.login("docker.io", "alice", "new-pw").unwrap(), path);
    let text = fs::read_to_string(&path).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        written,
        json!({
            "psFormat": "table {{.ID}}",
            "auths": {
                "other.example": {"auth": "b3RoZXI6cHc=", "email": "x@example.com"},
                "https://index.docker.io/v1/": {"auth": b64("alice:new-pw")},
            },
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
            "plugins": {"x": {"y": [1, 2, {"z": null}]}},
        })
    );
    let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["psFormat", "auths", "proxies", "plugins"],
        "key order kept"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        sources.lookup("docker.io").unwrap(),
        Some(basic("alice", "new-pw"))
    );
    assert_eq!(
        sources.lookup("other.example").unwrap(),
        Some(basic("other", "pw"))
    );
}

#[test]
fn credentials_login_goes_to_the_configured_helper() {
    let (_dir, sources) = sandbox();
    let config = home_docker_config(&sources);
    let original = json!({"credHelpers": {"helped.example": "fake"}, "auths": {}});
    write_json(&config, &original);
    let before = fs::read(&config).unwrap();
    assert_eq!(
        sources.login("helped.example", "alice", "pw").unwrap(),
        config
    );
    assert_eq!(fs::read(&config).unwrap(), before, "config.json untouched");
    let stored: Value =
        serde_json::from_slice(&fs::read(helpers_dir().join("fake-stored")).unwrap()).unwrap();
    assert_eq!(
        stored,
        json!({"ServerURL": "helped.example", "Username": "alice", "Secret": "pw"})
    );
}

#[test]
fn credentials_login_refuses_bad_input_without_echoing_it() {
    let (_dir, sources) = sandbox();
    for (user, password) in [("", "s3cr3t"), ("a:b", "s3cr3t"), ("alice", "")] {
        let error = sources
            .login("r.example", user, password)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cr3t"), "{error}");
    }
    assert!(!home_docker_config(&sources).exists());

    let config = home_docker_config(&sources);
    write_json(&config, &json!({"auths": ["not", "an", "object"]}));
    let error = sources
        .login("r.example", "alice", "s3cr3t")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("auths") && !error.contains("s3cr3t"),
        "{error}"
    );
}

#[test]
fn credentials_debug_redacts_secrets() {
    let credentials = [
        basic("alice", "s3cr3t"),
        Credential::IdentityToken {
            username: "alice".into(),
            token: "s3cr3t".into(),
        },
        Credential::RegistryToken("s3cr3t".into()),
    ];
    for credential in credentials {
        let debug = format!("{credential:?} {credential:#?}");
        assert!(
            !debug.contains("s3cr3t") && debug.contains("<redacted>"),
            "{debug}"
        );
    }
    assert_eq!(
        format!("{:?}", basic("alice", "x")),
        r#"Basic { username: "alice", password: "<redacted>" }"#
    );
}

#[test]
fn credentials_registry_names_normalise() {
    assert_eq!(
        RegistryHost::new("https://index.docker.io/v1/").server_url(),
        DOCKER_HUB_SERVER_URL
    );
    assert_eq!(
        RegistryHost::new("Registry-1.Docker.io").server_url(),
        DOCKER_HUB_SERVER_URL
    );
    assert_eq!(RegistryHost::new("https://GHCR.io").server_url(), "ghcr.io");
    assert_eq!(
        RegistryHost::new("localhost:5000").server_url(),
        "localhost:5000"
    );
}
