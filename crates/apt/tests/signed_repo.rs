//! The index and download path against a signed repository the test builds and serves on
//! loopback: what verifies is loaded, and each kind of bad repository is refused with an error
//! that says what is wrong.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use layerize_apt::download::{download, DownloadError};
use layerize_apt::fetch::Fetcher;
use layerize_apt::index::{load, Index, IndexError, IndexOptions};
use layerize_apt::sources::{parse_one_line, SignedBy, Source};
use support::apt_repo::{AptRepo, DebSpec};

const KEYRING: &str = "/etc/apt/keyrings/test.gpg";

fn options() -> IndexOptions {
    IndexOptions {
        architecture: "amd64".into(),
        foreign_architectures: Vec::new(),
        now: SystemTime::now(),
    }
}

fn hello() -> DebSpec {
    DebSpec::new("hello", "1.0-1")
        .arch("amd64")
        .depends("libgreet (>= 2)")
        .file("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
}

fn libgreet() -> DebSpec {
    DebSpec::new("libgreet", "2.1").file("usr/share/greet/words", b"hello\n", 0o644)
}

/// The repository's source as a base image would list it, and the keyring it names.
fn source_and_keys(repo: &AptRepo) -> (Vec<Source>, BTreeMap<String, Vec<u8>>) {
    let sources = parse_one_line(&repo.sources_line(KEYRING), "test.list").unwrap();
    let key = std::fs::read(repo.public_key_path()).unwrap();
    (sources, BTreeMap::from([(KEYRING.to_owned(), key)]))
}

async fn load_repo(repo: &AptRepo, fetcher: &Fetcher) -> Result<Index, IndexError> {
    let (sources, keyrings) = source_and_keys(repo);
    load(&sources, &keyrings, &options(), fetcher).await
}

/// Each package as `name version architecture`.
fn names(index: &Index) -> Vec<String> {
    index
        .all()
        .unwrap()
        .into_iter()
        .map(|p| format!("{} {} {}", p.name, p.version, p.architecture))
        .collect()
}

#[tokio::test]
async fn a_signed_repository_loads_downloads_and_revalidates_its_cache() {
    let repo = AptRepo::builder()
        .package(hello())
        .package(libgreet())
        .build();
    let cache = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(Some(cache.path().join("indexes"))).unwrap();
    let index = load_repo(&repo, &fetcher).await.unwrap();
    let mut found = names(&index);
    found.sort();
    assert_eq!(found, ["hello 1.0-1 amd64", "libgreet 2.1 all"]);
    let packages = index.all().unwrap();
    let hello = packages.iter().find(|p| p.name == "hello").unwrap();
    assert_eq!(hello.paragraph.get("Depends"), Some("libgreet (>= 2)"));
    assert_eq!(hello.origin.component, "main");
    assert_eq!(
        index.sources_read,
        [format!(
            "{}/dists/stable/main/binary-amd64/Packages.xz",
            repo.url()
        )]
    );

    let debs: Vec<_> = packages.iter().map(|p| p.deb.clone()).collect();
    let dir = cache.path().join("debs");
    let paths = download(&debs, &dir, 4, &fetcher).await.unwrap();
    let pool_file = repo.dir().join(
        hello
            .deb
            .url
            .strip_prefix(&format!("{}/", repo.url()))
            .unwrap(),
    );
    let at = packages.iter().position(|p| p.name == "hello").unwrap();
    assert_eq!(
        std::fs::read(&paths[at]).unwrap(),
        std::fs::read(pool_file).unwrap()
    );
    assert_eq!(paths[at], dir.join(format!("{}.deb", hello.deb.sha256)));

    // Warm: InRelease revalidated (304); Packages.xz not asked for at all, since the cache
    // holds the file of the SHA256 the verified Release names; no .deb fetched again.
    let before = repo.requests().len();
    let again = load_repo(&repo, &fetcher).await.unwrap();
    assert_eq!(names(&again), names(&index));
    download(&debs, &dir, 4, &fetcher).await.unwrap();
    let warm: Vec<(String, u16)> = repo.requests()[before..].to_vec();
    assert_eq!(warm, [("/dists/stable/InRelease".to_owned(), 304)]);
}

#[tokio::test]
async fn detached_signatures_by_hash_and_inline_keys_are_accepted() {
    let repo = AptRepo::builder()
        .package(libgreet())
        .detached_only()
        .by_hash()
        .build();
    let fetcher = Fetcher::new(None).unwrap();
    let mut sources = parse_one_line(&repo.sources_line(KEYRING), "test.list").unwrap();
    sources[0].signed_by = SignedBy::Inline(repo.public_key_armored().to_owned());
    let index = load(&sources, &BTreeMap::new(), &options(), &fetcher)
        .await
        .unwrap();
    assert_eq!(names(&index), ["libgreet 2.1 all"]);
    let paths: Vec<String> = repo.requests().into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths[0], "/dists/stable/InRelease");
    assert_eq!(paths[1], "/dists/stable/Release");
    assert_eq!(paths[2], "/dists/stable/Release.gpg");
    assert!(
        paths[3].starts_with("/dists/stable/main/binary-amd64/by-hash/SHA256/"),
        "{paths:?}"
    );
    assert_eq!(paths.len(), 4, "{paths:?}");
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let repo = AptRepo::builder()
        .package(libgreet())
        .corrupt_signature()
        .build();
    let err = load_repo(&repo, &Fetcher::new(None).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::BadSignature { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("/dists/stable/InRelease"), "{message}");
    assert!(message.contains("is not valid"), "{message}");
    assert!(!repo
        .requests()
        .iter()
        .any(|(path, _)| path.contains("Packages")));

    // Detached: Release.gpg does not match the altered Release either.
    let repo = AptRepo::builder()
        .package(libgreet())
        .detached_only()
        .corrupt_signature()
        .build();
    let err = load_repo(&repo, &Fetcher::new(None).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IndexError::BadSignature { url, .. } if url.ends_with("Release.gpg")),
        "{err}"
    );
}

#[tokio::test]
async fn a_signature_by_a_key_the_source_does_not_trust_is_refused() {
    let repo = AptRepo::builder().package(libgreet()).build();
    let (sources, _) = source_and_keys(&repo);
    let debian = std::fs::read("/usr/share/keyrings/debian-archive-keyring.gpg").unwrap();
    let keyrings = BTreeMap::from([(KEYRING.to_owned(), debian)]);
    let err = load(
        &sources,
        &keyrings,
        &options(),
        &Fetcher::new(None).unwrap(),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("in none of the keyrings"), "{message}");
    assert!(message.contains(KEYRING), "{message}");
}

#[tokio::test]
async fn an_expired_valid_until_is_refused() {
    let expired = SystemTime::now() - Duration::from_secs(86_400);
    let repo = AptRepo::builder()
        .package(libgreet())
        .valid_until(expired)
        .build();
    let err = load_repo(&repo, &Fetcher::new(None).unwrap())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("the Release file expired: Valid-Until is"),
        "{message}"
    );
    assert!(message.contains(&repo.url()), "{message}");

    // Still valid: loads.
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let repo = AptRepo::builder()
        .package(libgreet())
        .valid_until(later)
        .build();
    load_repo(&repo, &Fetcher::new(None).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unsigned_repository_is_refused_unless_the_source_opts_out() {
    let repo = AptRepo::builder().package(libgreet()).unsigned().build();
    let fetcher = Fetcher::new(None).unwrap();
    let err = load_repo(&repo, &fetcher).await.unwrap_err();
    assert!(matches!(err, IndexError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains("trusted=yes"), "{err}");

    let line = format!("deb [trusted=yes] {} stable main\n", repo.url());
    let sources = parse_one_line(&line, "trusted.list").unwrap();
    let index = load(&sources, &BTreeMap::new(), &options(), &fetcher)
        .await
        .unwrap();
    assert_eq!(names(&index), ["libgreet 2.1 all"]);
}

#[tokio::test]
async fn a_deb_changed_after_indexing_is_refused_and_not_kept() {
    let repo = AptRepo::builder()
        .package(hello())
        .package(libgreet())
        .tamper_deb("hello")
        .build();
    let fetcher = Fetcher::new(None).unwrap();
    let index = load_repo(&repo, &fetcher).await.unwrap();
    let packages = index.all().unwrap();
    let hello = packages.iter().find(|p| p.name == "hello").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = download(std::slice::from_ref(&hello.deb), dir.path(), 2, &fetcher)
        .await
        .unwrap_err();
    match &err {
        DownloadError::Sha256 {
            url,
            expected,
            actual,
        } => {
            assert_eq!(url, &hello.deb.url);
            assert_eq!(expected, &hello.deb.sha256);
            assert_ne!(actual, expected);
        }
        other => panic!("expected a SHA256 mismatch, got {other}"),
    }
    assert!(err.to_string().contains(&hello.deb.url), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_hand_made_deb_with_escaping_paths_is_served_as_indexed() {
    let repo = AptRepo::builder()
        .raw_deb(
            DebSpec::new("evil", "1"),
            vec![("./../../etc/evil".to_owned(), b"x".to_vec())],
        )
        .build();
    let fetcher = Fetcher::new(None).unwrap();
    let index = load_repo(&repo, &fetcher).await.unwrap();
    assert_eq!(names(&index), ["evil 1 all"]);
    let dir = tempfile::tempdir().unwrap();
    let paths = download(
        &[index.all().unwrap()[0].deb.clone()],
        dir.path(),
        1,
        &fetcher,
    )
    .await
    .unwrap();
    let listing = std::process::Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&paths[0])
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let names: Vec<String> = tar::Archive::new(listing.stdout.as_slice())
        .entries()
        .unwrap()
        .map(|entry| String::from_utf8_lossy(&entry.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(names, ["./../../etc/evil"]);
}
