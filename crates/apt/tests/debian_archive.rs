//! The real Debian archive: the current bookworm `InRelease` from deb.debian.org verifies with
//! the Debian archive keyring (and a tampered copy does not), and the bookworm main amd64 index
//! loads end to end (fetch, signature, xz, SHA256) with `curl` in it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use layerize_apt::fetch::Fetcher;
use layerize_apt::index::{load, IndexOptions};
use layerize_apt::keyring::{Keyring, SignatureError};
use layerize_apt::release;
use layerize_apt::sources::parse_one_line;

const ARCHIVE: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn debian_keyring_bytes() -> Vec<u8> {
    std::fs::read(KEYRING).unwrap_or_else(|e| {
        panic!("{KEYRING}: {e}: run scripts/install-deps (debian-archive-keyring)")
    })
}

#[tokio::test]
async fn the_bookworm_in_release_verifies_and_a_tampered_copy_does_not() {
    let keyring = Keyring::from_bytes(&debian_keyring_bytes(), KEYRING).unwrap();
    let fetcher = Fetcher::new(None).unwrap();
    let body = fetcher
        .get(&format!("{ARCHIVE}/dists/bookworm/InRelease"))
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let now = SystemTime::now();
    let signed = keyring.verify_cleartext(&text, now).unwrap();
    let release = release::parse(&signed).unwrap();
    assert_eq!(release.codename.as_deref(), Some("bookworm"));
    assert!(release.acquire_by_hash);
    assert!(release.sha256.contains_key("main/binary-amd64/Packages.xz"));
    assert!(
        !signed.contains("BEGIN PGP"),
        "only the signed text is returned"
    );

    // One hash digit changed in the signed part: no signature holds.
    let (at, _) = text
        .match_indices("main/binary-amd64/Packages.xz")
        .next()
        .unwrap();
    let line_start = text[..at].rfind('\n').unwrap() + 2;
    let mut tampered = text.clone().into_bytes();
    tampered[line_start] = if tampered[line_start] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let tampered = String::from_utf8(tampered).unwrap();
    let err = keyring.verify_cleartext(&tampered, now).unwrap_err();
    assert!(matches!(err, SignatureError::Invalid(_)), "{err}");

    // A keyring without Debian's keys does not vouch for it.
    let other = Keyring::from_bytes(
        &std::fs::read("/usr/share/keyrings/debian-archive-removed-keys.gpg").unwrap(),
        "removed-keys",
    )
    .unwrap();
    let err = other.verify_cleartext(&text, now).unwrap_err();
    assert!(err.to_string().contains("in none of the keyrings"), "{err}");
}

/// bookworm main for amd64, fetched and verified into a throwaway cache.
async fn bookworm_main_index() -> layerize_apt::index::Index {
    let sources = parse_one_line(
        &format!("deb [signed-by={KEYRING}] {ARCHIVE} bookworm main\n"),
        "debian.list",
    )
    .unwrap();
    let keyrings = BTreeMap::from([(KEYRING.to_owned(), debian_keyring_bytes())]);
    let options = IndexOptions {
        architecture: "amd64".into(),
        foreign_architectures: Vec::new(),
        now: SystemTime::now(),
    };
    let cache = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(Some(cache.path().to_owned())).unwrap();
    let index = load(&sources, &keyrings, &options, &fetcher).await.unwrap();
    index
}

#[tokio::test]
async fn the_bookworm_main_index_loads_with_curl_in_it() {
    let index = bookworm_main_index().await;
    let packages = index.all().unwrap();
    assert_eq!(packages.len(), index.package_count());
    assert!(packages.len() > 50_000, "{}", packages.len());
    assert_eq!(
        index.sources_read,
        [format!(
            "{ARCHIVE}/dists/bookworm/main/binary-amd64/Packages.xz"
        )]
    );
    let curl = packages
        .iter()
        .find(|p| p.name == "curl")
        .expect("curl in bookworm main");
    assert_eq!(curl.architecture, "amd64");
    assert!(curl.version.starts_with("7.88.1-10"), "{}", curl.version);
    assert!(curl
        .deb
        .url
        .starts_with(&format!("{ARCHIVE}/pool/main/c/curl/curl_")));
    assert_eq!(curl.deb.sha256.len(), 64);
    assert!(curl.paragraph.get("Depends").unwrap().contains("libcurl4"));
    assert!(packages.iter().any(|p| p.architecture == "all"));
}

/// Resolving over only the part of the index the requests reach (what a build parses) chooses
/// exactly what resolving over every package of bookworm main does, with Recommends off and on.
#[tokio::test]
async fn the_reachable_part_of_the_index_resolves_as_the_whole_does() {
    use layerize_apt::resolve::{pulled_in, reach_roots, resolve, Options, Request};
    let index = bookworm_main_index().await;
    let all = index.all().unwrap();
    let requests: Vec<Request> = ["curl", "git", "vim", "ca-certificates"]
        .iter()
        .map(|name| name.parse().unwrap())
        .collect();
    for recommends in [false, true] {
        let options = Options {
            architecture: "amd64".into(),
            foreign_architectures: Vec::new(),
            recommends,
        };
        let reachable = index
            .reachable(reach_roots(&requests, &[], &options), |package| {
                pulled_in(package, &options)
            })
            .unwrap();
        assert!(reachable.len() < all.len() / 20, "{}", reachable.len());
        let chosen = |available: &[layerize_apt::package::ArchivePackage]| {
            let resolution = resolve(&requests, available, &[], &options).unwrap();
            resolution
                .packages
                .iter()
                .map(|chosen| {
                    let package = &available[chosen.index];
                    let pulled_by = chosen.pulled_by.join(",");
                    format!("{} {} {pulled_by}", package.name, package.version)
                })
                .collect::<Vec<_>>()
        };
        let from_reachable = chosen(&reachable);
        assert!(from_reachable.iter().any(|p| p.starts_with("libcurl4 ")));
        assert_eq!(from_reachable, chosen(&all), "recommends: {recommends}");
    }
}
