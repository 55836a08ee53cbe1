//! A package as an archive's `Packages` index offers it: its identity, its stanza (every field,
//! for the resolver and for the dpkg status), where its `.deb` is and what it must hash to.

use crate::control::Paragraph;

/// How a package may be co-installed across architectures (`Multi-Arch:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MultiArch {
    #[default]
    No,
    /// Co-installable with itself for other architectures; its dpkg files are named
    /// `<name>:<arch>.list` and so on.
    Same,
    /// Satisfies dependencies of packages of any architecture.
    Foreign,
    /// Satisfies `name:any` dependencies.
    Allowed,
}

impl MultiArch {
    /// The field's value (`same`, `foreign`, `allowed`, anything else or absent: `no`).
    pub fn of(paragraph: &Paragraph) -> MultiArch {
        match paragraph.get("Multi-Arch").map(str::trim) {
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            _ => MultiArch::No,
        }
    }
}

/// Where a package's `.deb` is and what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebLocation {
    /// The full URL: the source's URI joined with the stanza's `Filename`.
    pub url: String,
    pub size: u64,
    /// Lower-case hex, from the stanza's `SHA256`.
    pub sha256: String,
}

/// Which source, suite and component an index came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The source's base URI, without a trailing slash (`http://deb.debian.org/debian`).
    pub uri: String,
    /// The suite as the source names it (`bookworm`, `bookworm-updates`).
    pub suite: String,
    pub component: String,
}

/// One stanza of a verified `Packages` index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePackage {
    pub name: String,
    pub version: String,
    /// `amd64`, `arm64`, `all`, …
    pub architecture: String,
    pub multi_arch: MultiArch,
    /// The stanza's fields that resolving reads ([`crate::index::INDEX_FIELDS`]), as the index
    /// has them.
    pub paragraph: Paragraph,
    pub deb: DebLocation,
    pub origin: Origin,
}

impl ArchivePackage {
    /// The source package's name (`Source:` without its version, or the package's own name).
    pub fn source_name(&self) -> &str {
        self.paragraph
            .get("Source")
            .and_then(|source| source.split_whitespace().next())
            .unwrap_or(&self.name)
    }

    /// The name dpkg gives its files in `/var/lib/dpkg/info/`: `name:arch` for `Multi-Arch:
    /// same` packages, `name` otherwise.
    pub fn dpkg_name(&self) -> String {
        dpkg_name(&self.name, &self.architecture, self.multi_arch)
    }
}

/// The name dpkg gives a package's files in `/var/lib/dpkg/info/`.
pub fn dpkg_name(name: &str, architecture: &str, multi_arch: MultiArch) -> String {
    if multi_arch == MultiArch::Same {
        format!("{name}:{architecture}")
    } else {
        name.to_owned()
    }
}
