//! Image references: docker-style registry names (`ubuntu:22.04`, `127.0.0.1:5000/app@sha256:…`)
//! with Docker Hub normalisation, and the CLI's choice between a registry and an OCI layout
//! (`oci:DIR[:TAG]`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use layerize_manifest::Digest;

/// The name Docker Hub goes by in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Other names under which Docker Hub is written; all normalise to [`DOCKER_HUB`].
const DOCKER_HUB_ALIASES: [&str; 3] = [DOCKER_HUB, "index.docker.io", DOCKER_HUB_API_HOST];
/// distribution's limit on `registry/repository`.
const MAX_NAME_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;
/// Transports of skopeo's syntax that layerize does not read or write; named so that
/// `docker-archive:x.tar` is refused instead of being read as the Docker Hub image
/// `docker-archive` with tag `x.tar`.
const UNSUPPORTED_TRANSPORTS: [&str; 6] = [
    "containers-storage",
    "dir",
    "docker-archive",
    "docker-daemon",
    "oci-archive",
    "sif",
];

/// Why a string is not a reference layerize accepts.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ReferenceError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// An image in a registry: `registry/repository[:tag][@digest]`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`; Docker Hub is always `docker.io` (see [`Reference::api_host`]).
    pub registry: String,
    /// `library/ubuntu`, `org/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let error = |reason: &str| ReferenceError::new(input, reason);
        if input.is_empty() {
            return Err(error("the reference is empty"));
        }
        if let Some(hidden) = without_credentials(input) {
            return Err(ReferenceError::new(
                &hidden,
                "credentials (USER:PASSWORD@) do not belong in an image reference, where \
                 process lists and logs show them: pass them with --base-creds/--target-creds \
                 or store them with `layerize login`",
            ));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|e| ReferenceError::new(input, e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| error(&reason))?;
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                check_registry(first).map_err(|reason| error(&reason))?;
                (first, rest)
            }
            _ => (DOCKER_HUB, name),
        };
        let registry = if DOCKER_HUB_ALIASES.contains(&registry) {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        check_repository(&repository).map_err(|reason| error(&reason))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LENGTH {
            return Err(error(&format!(
                "the name is longer than {MAX_NAME_LENGTH} characters"
            )));
        }

        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The host the registry API is reached at (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The registry's host without its port (IPv6 addresses keep their brackets).
    pub fn host(&self) -> &str {
        split_port(&self.registry).0
    }

    /// What goes into `/v2/<repository>/manifests/<reference>`: the digest when there is one
    /// (it pins the content), else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// Whether the registry is on this machine (127.0.0.0/8, `localhost`, `::1`): the only
    /// hosts spoken to over plain HTTP without `--insecure-registry`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
        }
        host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Reference::parse(input)
    }
}

/// Canonical form: always with the registry (`docker.io/library/ubuntu:22.04`); no tag is
/// invented when none was given, so `parse(display)` gives back the same reference.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Where an image is read from or written to, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `[docker://]name[:tag][@digest]`.
    Registry(Reference),
    /// `oci:DIR[:TAG]`, skopeo's syntax for an OCI image layout directory.
    Layout { path: PathBuf, tag: Option<String> },
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if let Some(rest) = input.strip_prefix("oci:") {
            return parse_layout(input, rest);
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return Reference::parse(rest).map(ImageRef::Registry);
        }
        if let Some((transport, _)) = input.split_once(':') {
            if UNSUPPORTED_TRANSPORTS.contains(&transport) {
                return Err(ReferenceError::new(
                    input,
                    format!(
                        "the {transport}: transport is not supported; use oci:DIR[:TAG] \
                         or a registry reference"
                    ),
                ));
            }
        }
        Reference::parse(input).map(ImageRef::Registry)
    }
}

impl ImageRef {
    /// The `reference` argument of [`Store::get_manifest`](crate::Store::get_manifest) and
    /// `put_manifest` for the store this names: the tag or digest (default `latest`) of a
    /// registry image; the tag of a layout, `""` when none was given (the layout's only image).
    pub fn store_reference(&self) -> String {
        match self {
            ImageRef::Registry(reference) => reference.reference(),
            ImageRef::Layout { tag, .. } => tag.clone().unwrap_or_default(),
        }
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(input)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(reference) => reference.fmt(f),
            ImageRef::Layout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                Ok(())
            }
        }
    }
}

/// `DIR[:TAG]`: the tag is what follows the last `:` unless that contains a `/` (then the
/// colon belongs to the directory, as in `oci:/mnt/a:b/layout`).
fn parse_layout(input: &str, rest: &str) -> Result<ImageRef, ReferenceError> {
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (rest, None),
    };
    if path.is_empty() {
        return Err(ReferenceError::new(
            input,
            "the OCI layout directory is missing (oci:DIR[:TAG])",
        ));
    }
    if let Some(tag) = tag {
        crate::layout::check_ref_name(tag).map_err(|reason| ReferenceError::new(input, reason))?;
    }
    Ok(ImageRef::Layout {
        path: PathBuf::from(path),
        tag: tag.map(str::to_owned),
    })
}

/// Digest algorithms a reference may name after `@` (`name:tag@sha256:...`).
const DIGEST_ALGORITHMS: [&str; 3] = ["sha256", "sha384", "sha512"];

/// `input` with its user information replaced by `<credentials>`, when it carries any as in a
/// URL: `user:secret@host:5000/app`, `https://user:secret@host/app`, `user@host/app`. `None` for
/// references whose `@` introduces a digest (`host/app@sha256:...`, `app:v1@sha256:...`).
fn without_credentials(input: &str) -> Option<String> {
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, input),
    };
    let (before, after) = rest.split_once('@')?;
    // Repository names hold no `@`, so one after a `/` separates the digest.
    if before.contains('/') {
        return None;
    }
    let digest_like = after
        .split_once(':')
        .is_some_and(|(algorithm, _)| DIGEST_ALGORITHMS.contains(&algorithm));
    let credentials = after.contains('/')
        || scheme.is_some()
        || (before.contains(':') && !digest_like)
        || (!digest_like && after.contains('.'));
    credentials.then(|| match scheme {
        Some(scheme) => format!("{scheme}://<credentials>@{after}"),
        None => format!("<credentials>@{after}"),
    })
}

/// Splits `name[:tag]`: a `:` followed by a `/` separates a registry port, not a tag.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name, None),
    }
}

/// Splits `host[:port]`, leaving IPv6 brackets on the host.
fn split_port(registry: &str) -> (&str, Option<&str>) {
    let host_end = if registry.starts_with('[') {
        registry.find(']').map_or(registry.len(), |i| i + 1)
    } else {
        registry.find(':').unwrap_or(registry.len())
    };
    let (host, rest) = registry.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = split_port(registry);
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok()),
        None => host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }),
    };
    if !host_ok {
        return Err(format!("{registry:?} is not a valid registry host"));
    }
    let port_ok = match port {
        None => host.len() == registry.len(),
        Some(port) => port.parse::<u16>().is_ok_and(|p| p != 0),
    };
    if !port_ok {
        return Err(format!("{registry:?} has an invalid port"));
    }
    Ok(())
}

/// Path components of lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lowercase".to_owned());
    }
    for component in repository.split('/') {
        if !is_repository_component(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn is_repository_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    // Between the runs of alphanumerics, every other run (any other character included) must be
    // one of the separators `.`, `_`, `__` or `-+`.
    let mut separators = component.split(alnum).filter(|run| !run.is_empty());
    component.starts_with(alnum)
        && component.ends_with(alnum)
        && separators.all(|run| matches!(run, "." | "_" | "__") || run.chars().all(|c| c == '-'))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let valid = tag.len() <= MAX_TAG_LENGTH
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LENGTH} letters, digits, '_', '.' or '-', \
             not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reference(input: &str) -> Reference {
        Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn normalises_and_displays_canonically() {
        let table = [
            ("ubuntu", "docker.io/library/ubuntu"),
            ("ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
            ("library/ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
            ("docker.io/ubuntu", "docker.io/library/ubuntu"),
            (
                "index.docker.io/ubuntu:22.04",
                "docker.io/library/ubuntu:22.04",
            ),
            ("registry-1.docker.io/org/app", "docker.io/org/app"),
            ("org/app:v1", "docker.io/org/app:v1"),
            ("ghcr.io/org/team/app:1.2.3", "ghcr.io/org/team/app:1.2.3"),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/app:dev", "localhost:5000/app:dev"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app"),
            ("[::1]:5000/a/b:t", "[::1]:5000/a/b:t"),
            ("myhost:5000/app", "myhost:5000/app"),
            (
                "a.io/b__c/d-e--f/g_h.i:T_a.g-1",
                "a.io/b__c/d-e--f/g_h.i:T_a.g-1",
            ),
            (
                &format!("127.0.0.1:5000/app@{DIGEST}"),
                &format!("127.0.0.1:5000/app@{DIGEST}"),
            ),
            (
                &format!("ubuntu:22.04@{DIGEST}"),
                &format!("docker.io/library/ubuntu:22.04@{DIGEST}"),
            ),
        ];
        for (input, canonical) in table {
            let parsed = reference(input);
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(reference(canonical), parsed, "round trip of {input}");
        }
    }

    #[test]
    fn splits_into_fields() {
        // input, registry, repository, tag, digest
        type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let table: [Row; 5] = [
            ("ubuntu", "docker.io", "library/ubuntu", None, None),
            (
                "localhost:5000/app:dev",
                "localhost:5000",
                "app",
                Some("dev"),
                None,
            ),
            ("[::1]/x", "[::1]", "x", None, None),
            (&format!("r.io/a@{DIGEST}"), "r.io", "a", None, Some(DIGEST)),
            (
                &format!("r.io:443/a:t@{DIGEST}"),
                "r.io:443",
                "a",
                Some("t"),
                Some(DIGEST),
            ),
        ];
        for (input, registry, repository, tag, digest) in table {
            let parsed = reference(input);
            assert_eq!(parsed.registry, registry, "{input}");
            assert_eq!(parsed.repository, repository, "{input}");
            assert_eq!(parsed.tag.as_deref(), tag, "{input}");
            assert_eq!(
                parsed.digest.as_ref().map(Digest::as_str),
                digest,
                "{input}"
            );
        }
    }

    #[test]
    fn api_host_and_url_reference() {
        let table = [
            ("ubuntu", "registry-1.docker.io", "latest"),
            ("ubuntu:22.04", "registry-1.docker.io", "22.04"),
            ("ghcr.io/o/a:v1", "ghcr.io", "v1"),
            ("127.0.0.1:5000/a", "127.0.0.1:5000", "latest"),
            (&format!("r.io/a:t@{DIGEST}"), "r.io", DIGEST),
        ];
        for (input, api_host, url_reference) in table {
            let parsed = reference(input);
            assert_eq!(parsed.api_host(), api_host, "{input}");
            assert_eq!(parsed.reference(), url_reference, "{input}");
        }
    }

    #[test]
    fn loopback_hosts() {
        let table = [
            ("localhost/a", true),
            ("localhost:5000/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.1.2.3/a", true),
            ("[::1]:5000/a", true),
            ("[::1]/a", true),
            ("128.0.0.1:5000/a", false),
            ("[::2]:5000/a", false),
            ("localhost.example.com/a", false),
            ("127.0.0.1.nip.io/a", false),
            ("ubuntu", false),
            ("ghcr.io/o/a", false),
        ];
        for (input, loopback) in table {
            assert_eq!(reference(input).is_loopback(), loopback, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_references_with_a_reason() {
        let table = [
            ("", "the reference is empty"),
            ("Foo:bar", "repository names must be lowercase"),
            ("ghcr.io/Org/app", "repository names must be lowercase"),
            ("ubuntu:", "tag \"\" must be"),
            ("ubuntu:-x", "tag \"-x\" must be"),
            ("ubuntu:a+b", "tag \"a+b\" must be"),
            (&format!("ubuntu:{}", "a".repeat(129)), "must be 1 to 128"),
            ("ubuntu@sha256:abc", "invalid digest \"sha256:abc\""),
            ("ubuntu@", "invalid digest \"\""),
            ("a//b", "repository component \"\""),
            ("a/b/", "repository component \"\""),
            ("-a", "repository component \"-a\""),
            ("a..b", "repository component \"a..b\""),
            ("a___b", "repository component \"a___b\""),
            ("a b", "repository component \"a b\""),
            ("localhost:0/a", "invalid port"),
            ("localhost:99999/a", "invalid port"),
            ("my_host.io/a", "not a valid registry host"),
            ("[::1/a", "not a valid registry host"),
            ("[zz]:5/a", "not a valid registry host"),
            (
                &format!("r.io/{}", "a".repeat(251)),
                "longer than 255 characters",
            ),
        ];
        for (input, reason) in table {
            let message = Reference::parse(input).expect_err(input).to_string();
            assert!(
                message.starts_with(&format!("invalid reference {input:?}: ")),
                "{message}"
            );
            assert!(message.contains(reason), "{input}: {message}");
        }
    }

    #[test]
    fn credentials_in_a_reference_are_refused_without_being_echoed() {
        let table = [
            (
                "user:s3cret-pw@127.0.0.1:5000/app:v1",
                "<credentials>@127.0.0.1:5000/app:v1",
            ),
            (
                "https://user:s3cret-pw@registry.example/app",
                "https://<credentials>@registry.example/app",
            ),
            (
                "docker://user:s3cret-pw@ghcr.io/o/a",
                "<credentials>@ghcr.io/o/a",
            ),
            ("user:s3cret-pw@ghcr.io", "<credentials>@ghcr.io"),
            (
                "user:s3cret-pw@localhost:5000",
                "<credentials>@localhost:5000",
            ),
            ("s3cret-pw@ghcr.io/o/a", "<credentials>@ghcr.io/o/a"),
            (
                &format!("user:s3cret-pw@r.io/a@{DIGEST}"),
                &format!("<credentials>@r.io/a@{DIGEST}"),
            ),
        ];
        for (input, shown) in table {
            let error = ImageRef::parse(input).expect_err(input);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid reference {shown:?}: credentials")),
                "{input}: {message}"
            );
            assert!(message.contains("--base-creds/--target-creds"), "{message}");
            for shown in [message, format!("{error:?}")] {
                assert!(!shown.contains("s3cret-pw"), "{input}: {shown}");
            }
        }
        // An `@` that introduces a digest is no credential, even with a bad digest.
        for input in [
            format!("127.0.0.1:5000/app@{DIGEST}"),
            format!("ubuntu:22.04@{DIGEST}"),
        ] {
            assert!(Reference::parse(&input).is_ok(), "{input}");
        }
        let message = Reference::parse("ubuntu:22.04@sha256:abc")
            .unwrap_err()
            .to_string();
        assert!(message.contains("invalid digest"), "{message}");
    }

    #[test]
    fn error_message_names_input_and_reason() {
        assert_eq!(
            Reference::parse("Foo:bar").unwrap_err().to_string(),
            "invalid reference \"Foo:bar\": repository names must be lowercase"
        );
    }

    #[test]
    fn image_refs_from_the_command_line() {
        let layout = |path: &str, tag: Option<&str>| ImageRef::Layout {
            path: PathBuf::from(path),
            tag: tag.map(str::to_owned),
        };
        let table = [
            ("oci:out", layout("out", None), "oci:out"),
            ("oci:out:v1", layout("out", Some("v1")), "oci:out:v1"),
            (
                "oci:/tmp/x:1.0+b",
                layout("/tmp/x", Some("1.0+b")),
                "oci:/tmp/x:1.0+b",
            ),
            (
                "oci:/mnt/a:b/lay",
                layout("/mnt/a:b/lay", None),
                "oci:/mnt/a:b/lay",
            ),
            (
                "oci:/mnt/a:b/lay:t",
                layout("/mnt/a:b/lay", Some("t")),
                "oci:/mnt/a:b/lay:t",
            ),
            (
                "ubuntu:22.04",
                ImageRef::Registry(reference("ubuntu:22.04")),
                "docker.io/library/ubuntu:22.04",
            ),
            (
                "docker://127.0.0.1:5000/app:t",
                ImageRef::Registry(reference("127.0.0.1:5000/app:t")),
                "127.0.0.1:5000/app:t",
            ),
        ];
        for (input, expected, display) in table {
            let parsed = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            assert_eq!(parsed.to_string(), display, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_image_refs() {
        let table = [
            ("oci:", "directory is missing"),
            ("oci::t", "directory is missing"),
            ("oci:out:", "layout tag \"\""),
            ("oci:out:a b", "layout tag \"a b\""),
            ("oci:out:-a", "layout tag \"-a\""),
            ("docker://Foo", "repository names must be lowercase"),
            (
                "docker-archive:x.tar",
                "the docker-archive: transport is not supported",
            ),
            ("containers-storage:app", "transport is not supported"),
        ];
        for (input, reason) in table {
            let message = ImageRef::parse(input).expect_err(input).to_string();
            assert!(message.contains(reason), "{input}: {message}");
        }
    }
}
