//! The verified package index of a set of sources: each source's `InRelease` (or `Release` +
//! `Release.gpg`) checked against its keys and its `Valid-Until`, then the `Packages` indexes
//! that Release vouches for, fetched (by hash when the archive offers it), checked against the
//! Release's SHA256 and size, decompressed, and kept as text of which only the part a
//! resolution can reach is parsed into [`ArchivePackage`]s ([`Index::reachable`]).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::control;
use crate::fetch::{FetchError, Fetcher};
use crate::index_cache::CachedIndex;
use crate::keyring::{self, Keyring, KeyringError, SignatureError};
use crate::package::{ArchivePackage, Origin};
use crate::packages_file::{PackagesFile, StanzaText};
use crate::parallel;
use crate::release::{self, Release, ReleaseError};
use crate::sources::{SignedBy, Source};
use crate::stanza_table::StanzaTable;

/// The global keyrings a source without `Signed-By` trusts, as apt has them.
const TRUSTED_FILE: &str = "/etc/apt/trusted.gpg";
const TRUSTED_DIR: &str = "/etc/apt/trusted.gpg.d/";

/// The fields of a `Packages` stanza that resolving and fetching read. The rest (descriptions,
/// maintainers, tags: most of the index) is dropped while parsing.
pub const INDEX_FIELDS: &[&str] = &[
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Source",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Conflicts",
    "Breaks",
    "Filename",
    "Size",
    "SHA256",
];

/// What to read from each source.
#[derive(Clone, Debug)]
pub struct IndexOptions {
    /// The native architecture (`amd64`); `all` packages are in its `Packages`.
    pub architecture: String,
    pub foreign_architectures: Vec<String>,
    /// The time signatures, keys and `Valid-Until` are checked at.
    pub now: SystemTime,
}

/// Every package of every source, verified; parsed when asked for.
#[derive(Default)]
pub struct Index {
    /// In the sources' order, then components, architectures.
    files: Vec<PackagesFile>,
    /// The URLs of the indexes read, for logs.
    pub sources_read: Vec<String>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("packages", &self.package_count())
            .field("sources_read", &self.sources_read)
            .finish()
    }
}

impl Index {
    /// How many packages the indexes list.
    pub fn package_count(&self) -> usize {
        self.files.iter().map(PackagesFile::len).sum()
    }

    /// Every package, parsed and checked, in the indexes' order.
    pub fn all(&self) -> Result<Vec<ArchivePackage>, IndexError> {
        let mut packages = Vec::with_capacity(self.package_count());
        for file in &self.files {
            for stanza in 0..file.len() as u32 {
                packages.push(file.package(stanza)?);
            }
        }
        Ok(packages)
    }

    /// The packages named, or providing a name, that `roots` reach through the names each
    /// package `pulls_in`, parsed and checked, in the indexes' order: everything a resolution
    /// starting from `roots` can choose.
    pub fn reachable(
        &self,
        roots: Vec<String>,
        pulls_in: impl Fn(&ArchivePackage) -> Vec<String>,
    ) -> Result<Vec<ArchivePackage>, IndexError> {
        let mut chosen: BTreeMap<(usize, u32), ArchivePackage> = BTreeMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue = roots;
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            for (file_number, file) in self.files.iter().enumerate() {
                for &stanza in file.stanzas_of(&name) {
                    if chosen.contains_key(&(file_number, stanza)) {
                        continue;
                    }
                    let package = file.package(stanza)?;
                    queue.extend(
                        pulls_in(&package)
                            .into_iter()
                            .filter(|name| !seen.contains(name)),
                    );
                    chosen.insert((file_number, stanza), package);
                }
            }
        }
        Ok(chosen.into_values().collect())
    }
}

/// Why the index of a source cannot be trusted or read. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(
        "source {source_name}: Signed-By names {path}, which the base image does not have; \
         add the keyring to the image or give the key in the build file's apt sources"
    )]
    MissingKeyring { source_name: String, path: String },
    #[error(
        "source {source_name}: no keyring to verify it with (the base has no {TRUSTED_FILE} and \
         nothing in {TRUSTED_DIR}); give the source a Signed-By keyring"
    )]
    NoKeys { source_name: String },
    #[error("source {source_name}: {source}")]
    Keyring {
        source_name: String,
        #[source]
        source: KeyringError,
    },
    #[error(
        "source {source_name}: the repository is not signed (no InRelease, no Release.gpg at \
         {url}); refusing it. Only if you trust it and the way to it, mark the source \
         `trusted=yes` (`Trusted: yes`) to accept it unsigned"
    )]
    Unsigned { source_name: String, url: String },
    #[error(
        "source {source_name}: the signature of {url} is not valid: {source}. The file was \
         altered, or the source's keys are not the ones that signed it"
    )]
    BadSignature {
        source_name: String,
        url: String,
        #[source]
        source: SignatureError,
    },
    #[error("source {source_name}: {url}: {source}")]
    Release {
        source_name: String,
        url: String,
        #[source]
        source: ReleaseError,
    },
    #[error(
        "source {source_name}: its Release lists no Packages index for {path} (is the \
         component or architecture right?)"
    )]
    NoPackagesIndex { source_name: String, path: String },
    #[error(
        "{url}: {actual} does not match the Release's {expected}; the mirror is inconsistent or \
         the file was altered"
    )]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: cannot decompress: {source}")]
    Decompress {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {problem}")]
    Packages { url: String, problem: String },
}

/// Loads and verifies the indexes of `sources`. `keyrings` are the base's keyring files by
/// absolute path (see [`crate::base::BaseSystem::keyrings`]).
pub async fn load(
    sources: &[Source],
    keyrings: &BTreeMap<String, Vec<u8>>,
    options: &IndexOptions,
    fetcher: &Fetcher,
) -> Result<Index, IndexError> {
    let mut index = Index::default();
    for source in sources {
        let started = std::time::Instant::now();
        let (release, dir) = verified_release(source, keyrings, options, fetcher).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::debug!(source = %source.describe(), seconds, "Verified the Release");
        for (path, url) in packages_indexes(source, &release, &dir, options)? {
            let started = std::time::Instant::now();
            let (text, table) = packages_text(fetcher, &url, &dir, &path, &release).await?;
            let component = path.split('/').next().filter(|_| !source.is_flat());
            let origin = Origin {
                uri: source.uri.clone(),
                suite: source.suite.clone(),
                component: component.unwrap_or_default().to_owned(),
            };
            let file = PackagesFile::new(&url, origin, deb_base(source), text, table);
            let seconds = started.elapsed().as_secs_f64();
            tracing::debug!(%url, seconds, stanzas = file.len(), "Read a Packages index");
            index.files.push(file);
            index.sources_read.push(url);
        }
    }
    Ok(index)
}

/// The source's Release, verified, and the URL of the directory it describes.
async fn verified_release(
    source: &Source,
    keyrings: &BTreeMap<String, Vec<u8>>,
    options: &IndexOptions,
    fetcher: &Fetcher,
) -> Result<(Release, String), IndexError> {
    let source_name = source.describe();
    let dir = if source.is_flat() {
        flat_dir(source)
    } else {
        format!("{}/dists/{}", source.uri, source.suite)
    };
    let keys = || source_keyring(source, keyrings);
    let in_release_url = format!("{dir}/InRelease");
    let (text, url) = if let Some(body) = fetcher.get_optional(&in_release_url).await? {
        let text = String::from_utf8_lossy(&body).into_owned();
        let signed = if source.allow_unsigned {
            keyring::cleartext_body(&text).unwrap_or(text)
        } else {
            keys()?
                .verify_cleartext(&text, options.now)
                .map_err(|source| IndexError::BadSignature {
                    source_name: source_name.clone(),
                    url: in_release_url.clone(),
                    source,
                })?
        };
        (signed, in_release_url)
    } else {
        let release_url = format!("{dir}/Release");
        let body = fetcher.get(&release_url).await?;
        if !source.allow_unsigned {
            let signature_url = format!("{dir}/Release.gpg");
            let Some(signature) = fetcher.get_optional(&signature_url).await? else {
                return Err(IndexError::Unsigned {
                    source_name,
                    url: dir,
                });
            };
            keys()?
                .verify_detached(&body, &signature, options.now)
                .map_err(|source| IndexError::BadSignature {
                    source_name: source_name.clone(),
                    url: signature_url,
                    source,
                })?;
        }
        (String::from_utf8_lossy(&body).into_owned(), release_url)
    };
    let release_error = |source| IndexError::Release {
        source_name: source_name.clone(),
        url: url.clone(),
        source,
    };
    let release = release::parse(&text).map_err(release_error)?;
    release.check_valid_at(options.now).map_err(release_error)?;
    Ok((release, dir))
}

/// What a source's `Filename:`s are relative to.
fn deb_base(source: &Source) -> String {
    if source.is_flat() {
        flat_dir(source)
    } else {
        source.uri.clone()
    }
}

/// A flat repository's directory (`deb URI ./` -> `URI`, `deb URI sub/` -> `URI/sub`): where its
/// Release and Packages are and what its `Filename:`s are relative to.
fn flat_dir(source: &Source) -> String {
    format!("{}/{}", source.uri, source.suite.trim_end_matches('/'))
        .trim_end_matches("/.")
        .to_owned()
}

/// The keys that may sign `source`'s Release.
fn source_keyring(
    source: &Source,
    keyrings: &BTreeMap<String, Vec<u8>>,
) -> Result<Keyring, IndexError> {
    let source_name = source.describe();
    let read = |name: &str, bytes: &[u8]| {
        Keyring::from_bytes(bytes, name).map_err(|error| IndexError::Keyring {
            source_name: source_name.clone(),
            source: error,
        })
    };
    let mut keyring = Keyring::default();
    match &source.signed_by {
        SignedBy::Inline(armored) => {
            keyring = read("the inline Signed-By key", armored.as_bytes())?
        }
        SignedBy::Files(paths) => {
            for path in paths {
                let bytes = keyrings
                    .get(path)
                    .ok_or_else(|| IndexError::MissingKeyring {
                        source_name: source_name.clone(),
                        path: path.clone(),
                    })?;
                keyring.extend(read(path, bytes)?);
            }
        }
        SignedBy::Default => {
            for (path, bytes) in keyrings {
                let global = path == TRUSTED_FILE
                    || path
                        .strip_prefix(TRUSTED_DIR)
                        .is_some_and(|name| !name.contains('/'));
                if global {
                    keyring.extend(read(path, bytes)?);
                }
            }
        }
    }
    if keyring.is_empty() {
        return Err(IndexError::NoKeys { source_name });
    }
    Ok(keyring)
}

/// The Release paths and URLs of the `Packages` indexes to read: per component, the native
/// architecture and each foreign one the source and the Release offer, the best compression
/// the Release lists.
fn packages_indexes(
    source: &Source,
    release: &Release,
    dir: &str,
    options: &IndexOptions,
) -> Result<Vec<(String, String)>, IndexError> {
    let wanted = |arch: &str| {
        source
            .architectures
            .as_ref()
            .is_none_or(|archs| archs.iter().any(|a| a == arch))
    };
    let offered = |arch: &str| {
        release.architectures.is_empty() || release.architectures.iter().any(|a| a == arch)
    };
    let mut architectures = vec![options.architecture.as_str()];
    architectures.extend(options.foreign_architectures.iter().map(String::as_str));
    let mut indexes = Vec::new();
    let stems: Vec<String> = if source.is_flat() {
        vec!["Packages".to_owned()]
    } else {
        let mut stems = Vec::new();
        for component in &source.components {
            for arch in &architectures {
                let native = *arch == options.architecture;
                if !wanted(arch) || (!native && !offered(arch)) {
                    continue;
                }
                stems.push(format!("{component}/binary-{arch}/Packages"));
            }
        }
        stems
    };
    for stem in stems {
        let path = [".xz", ".gz", ""]
            .iter()
            .map(|suffix| format!("{stem}{suffix}"))
            .find(|path| release.sha256.contains_key(path))
            .ok_or_else(|| IndexError::NoPackagesIndex {
                source_name: source.describe(),
                path: stem.clone(),
            })?;
        let url = format!("{dir}/{path}");
        indexes.push((path, url));
    }
    Ok(indexes)
}

/// The file at `url` (by hash when the Release says so, the plain name as a fallback), checked
/// against the Release's size and SHA256.
async fn fetch_verified(
    fetcher: &Fetcher,
    url: &str,
    dir: &str,
    path: &str,
    release: &Release,
    size: u64,
    sha256: &str,
) -> Result<bytes::Bytes, IndexError> {
    let mut body = None;
    if release.acquire_by_hash {
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        let by_hash = if parent.is_empty() {
            format!("{dir}/by-hash/SHA256/{sha256}")
        } else {
            format!("{dir}/{parent}/by-hash/SHA256/{sha256}")
        };
        body = fetcher.get_optional(&by_hash).await?;
    }
    let body = match body {
        Some(body) => body,
        None => fetcher.get(url).await?,
    };
    let actual = hex::encode(Sha256::digest(&body));
    if body.len() as u64 != size || actual != sha256 {
        return Err(IndexError::Mismatch {
            url: url.to_owned(),
            expected: format!("size {size}, SHA256 {sha256}"),
            actual: format!("size {}, SHA256 {actual}", body.len()),
        });
    }
    Ok(body)
}

fn decompress(url: &str, path: &str, body: &[u8]) -> Result<String, IndexError> {
    let error = |source| IndexError::Decompress {
        url: url.to_owned(),
        source,
    };
    let mut text = Vec::new();
    if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(body)
            .read_to_end(&mut text)
            .map_err(error)?;
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(body)
            .read_to_end(&mut text)
            .map_err(error)?;
    } else {
        text.extend_from_slice(body);
    }
    String::from_utf8(text).map_err(|e| IndexError::Packages {
        url: url.to_owned(),
        problem: format!("not UTF-8 text: {e}"),
    })
}

/// The stanzas of the `Packages` index at `path`, with only [`INDEX_FIELDS`], as deb822 text,
/// and where each is. Both are kept in the fetcher's cache by the SHA256 the verified Release
/// gives the file ([`CachedIndex`]): a hit is the same file, opened with no request, no
/// decompression and no parsing.
async fn packages_text(
    fetcher: &Fetcher,
    url: &str,
    dir: &str,
    path: &str,
    release: &Release,
) -> Result<(StanzaText, StanzaTable), IndexError> {
    let (size, sha256) = &release.sha256[path];
    let cached = fetcher
        .cache_dir()
        .map(|cache| CachedIndex::new(cache, sha256));
    if let Some(hit) = cached.as_ref().and_then(CachedIndex::open) {
        return Ok(hit);
    }
    let body = fetch_verified(fetcher, url, dir, path, release, *size, sha256).await?;
    let full = decompress(url, path, &body)?;
    let paragraphs = control::parse_keeping_in_parts(&full, parallel::threads(), |name| {
        INDEX_FIELDS
            .iter()
            .any(|field| field.eq_ignore_ascii_case(name))
    })
    .map_err(|e| IndexError::Packages {
        url: url.to_owned(),
        problem: e.to_string(),
    })?;
    let text = paragraphs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let table = StanzaTable::scan(&text);
    let text = match cached {
        Some(cached) => cached.store(text, &table),
        None => StanzaText::Memory(text),
    };
    Ok((text, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::DebLocation;
    use crate::packages_file::archive_package;

    fn source(flat: bool) -> Source {
        Source {
            uri: "http://127.0.0.1:1/repo".into(),
            suite: if flat { "./".into() } else { "stable".into() },
            components: if flat { vec![] } else { vec!["main".into()] },
            signed_by: SignedBy::Default,
            architectures: None,
            allow_unsigned: false,
        }
    }

    fn release(paths: &[&str], architectures: &[&str]) -> Release {
        let mut text = format!("Architectures: {}\nSHA256:\n", architectures.join(" "));
        for path in paths {
            text.push_str(&format!(" {} 1 {path}\n", "a".repeat(64)));
        }
        release::parse(&text).unwrap()
    }

    fn options(foreign: &[&str]) -> IndexOptions {
        IndexOptions {
            architecture: "amd64".into(),
            foreign_architectures: foreign.iter().map(|a| a.to_string()).collect(),
            now: SystemTime::now(),
        }
    }

    #[test]
    fn picks_the_best_compression_and_the_offered_foreign_architectures() {
        let offered = release(
            &[
                "main/binary-amd64/Packages",
                "main/binary-amd64/Packages.gz",
                "main/binary-amd64/Packages.xz",
                "main/binary-i386/Packages.gz",
            ],
            &["amd64", "i386"],
        );
        let indexes =
            packages_indexes(&source(false), &offered, "D", &options(&["i386", "arm64"])).unwrap();
        assert_eq!(
            indexes,
            [
                (
                    "main/binary-amd64/Packages.xz".to_owned(),
                    "D/main/binary-amd64/Packages.xz".to_owned()
                ),
                (
                    "main/binary-i386/Packages.gz".to_owned(),
                    "D/main/binary-i386/Packages.gz".to_owned()
                ),
            ]
        );
        let err =
            packages_indexes(&source(false), &release(&[], &[]), "D", &options(&[])).unwrap_err();
        assert!(
            err.to_string()
                .contains("no Packages index for main/binary-amd64/Packages"),
            "{err}"
        );
        let flat = packages_indexes(
            &source(true),
            &release(&["Packages"], &[]),
            "D",
            &options(&[]),
        )
        .unwrap();
        assert_eq!(flat, [("Packages".to_owned(), "D/Packages".to_owned())]);
    }

    #[test]
    fn packages_stanzas_become_archive_packages() {
        let text = "\
Package: hello
Version: 2.10-3
Architecture: amd64
Multi-Arch: same
Filename: pool/main/h/hello/hello_2.10-3_amd64.deb
Size: 53000
SHA256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789

Package: bad
Version: 1
Architecture: all
Filename: pool/main/b/bad.deb
Size: 1
";
        let origin = Origin {
            uri: "http://127.0.0.1:1/repo".into(),
            suite: "stable".into(),
            component: "main".into(),
        };
        let parse = |text: &str, source: &Source| {
            control::parse(text)
                .unwrap()
                .into_iter()
                .map(|paragraph| archive_package("U", paragraph, &deb_base(source), &origin))
                .collect::<Result<Vec<_>, _>>()
        };
        let err = parse(text, &source(false)).unwrap_err();
        assert_eq!(err.to_string(), "U: package bad has no `SHA256:` field");
        let good = text.split("\n\n").next().unwrap();
        let packages = parse(good, &source(false)).unwrap();
        assert_eq!(packages.len(), 1);
        let hello = &packages[0];
        assert_eq!(hello.dpkg_name(), "hello:amd64");
        assert_eq!(
            hello.deb,
            DebLocation {
                url: "http://127.0.0.1:1/repo/pool/main/h/hello/hello_2.10-3_amd64.deb".into(),
                size: 53000,
                sha256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789".into(),
            }
        );
        let escaping = good.replace("pool/main", "../../etc");
        let err = parse(&escaping, &source(false)).unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
        let flat = parse(good, &source(true)).unwrap();
        assert_eq!(
            flat[0].deb.url,
            "http://127.0.0.1:1/repo/pool/main/h/hello/hello_2.10-3_amd64.deb"
        );
    }

    #[test]
    fn default_keys_are_the_global_keyrings_only() {
        let debian = std::fs::read("/usr/share/keyrings/debian-archive-keyring.gpg").unwrap();
        let mut keyrings = BTreeMap::new();
        keyrings.insert(
            "/usr/share/keyrings/debian-archive-keyring.gpg".to_owned(),
            debian.clone(),
        );
        let err = source_keyring(&source(false), &keyrings).unwrap_err();
        assert!(matches!(err, IndexError::NoKeys { .. }), "{err}");
        keyrings.insert("/etc/apt/trusted.gpg.d/debian.gpg".to_owned(), debian);
        assert!(!source_keyring(&source(false), &keyrings)
            .unwrap()
            .is_empty());
        let mut named = source(false);
        named.signed_by = SignedBy::Files(vec!["/etc/apt/keyrings/missing.gpg".into()]);
        let err = source_keyring(&named, &keyrings).unwrap_err();
        assert!(
            err.to_string()
                .contains("Signed-By names /etc/apt/keyrings/missing.gpg"),
            "{err}"
        );
    }
}
