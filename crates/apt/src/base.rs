//! What a base image says about itself, read through its filesystem index and never from the
//! host: `os-release`, the apt sources and the keyrings they use, the dpkg status and foreign
//! architectures, `extended_states`, dpkg's path filters, and which top-level directories merged
//! /usr made symlinks.

use std::collections::BTreeMap;

use layerize_basefs::{FsIndex, Kind};

use crate::path_filter::{self, PathFilters};
use crate::sources::{self, Source, SourcesError};

const OS_RELEASE: &str = "etc/os-release";
/// Where os-release(5) says to look when `/etc/os-release` is missing.
const OS_RELEASE_FALLBACK: &str = "usr/lib/os-release";
const SOURCES_LIST: &str = "etc/apt/sources.list";
const SOURCES_DIR: &str = "etc/apt/sources.list.d";
const TRUSTED_FILE: &str = "etc/apt/trusted.gpg";
const TRUSTED_DIR: &str = "etc/apt/trusted.gpg.d";
/// Keyring directories whose files `Signed-By` may name.
const KEYRING_DIRS: [&str; 2] = ["usr/share/keyrings", "etc/apt/keyrings"];
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_ARCH: &str = "var/lib/dpkg/arch";
const EXTENDED_STATES: &str = "var/lib/apt/extended_states";

/// The base image's apt and dpkg state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseSystem {
    /// `ID`, `VERSION_CODENAME`, … with quotes removed.
    pub os_release: BTreeMap<String, String>,
    /// Enabled `deb` sources, in apt's order (`sources.list`, then `sources.list.d/` by name).
    pub sources: Vec<Source>,
    /// Absolute path in the image (`/usr/share/keyrings/x.gpg`) -> contents.
    pub keyrings: BTreeMap<String, Vec<u8>>,
    /// `/var/lib/dpkg/status`; empty when the base has none.
    pub dpkg_status: String,
    pub extended_states: Option<String>,
    /// `/var/lib/dpkg/arch` without the native architecture.
    pub foreign_architectures: Vec<String>,
    pub usr_merge: UsrMerge,
    /// What dpkg on the base leaves out of packages (`path-exclude`, `path-include`).
    pub path_filters: PathFilters,
}

/// Top-level directories the base has as symlinks into `usr` (`bin` -> `usr/bin`, `sbin`, `lib`,
/// `lib64`, …): name -> target relative to the root. Empty: not merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UsrMerge {
    pub links: BTreeMap<String, String>,
}

/// A base whose apt configuration cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("the base image's {0}")]
    Sources(#[from] SourcesError),
    #[error("the base image's /{path} is not UTF-8 text")]
    NotText { path: String },
}

/// The paths (relative to the root, as [`FsIndex`] has them) of the base's files
/// [`BaseSystem::read`] needs, each resolved through the image's symlinks to a regular file.
pub fn wanted_files(index: &FsIndex) -> Vec<String> {
    let mut wanted: Vec<String> = logical_files(index)
        .into_iter()
        .filter_map(|path| regular_file(index, &path))
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

/// The files [`BaseSystem::read`] looks at whatever the base has, as apt names them.
const FIXED_FILES: [&str; 8] = [
    OS_RELEASE,
    OS_RELEASE_FALLBACK,
    SOURCES_LIST,
    TRUSTED_FILE,
    DPKG_STATUS,
    DPKG_ARCH,
    EXTENDED_STATES,
    path_filter::CONFIG_FILE,
];

/// Where [`wanted_files`] usually finds what it names, known before the base is indexed: the
/// fixed files, and the directories of sources, keyrings and dpkg's configuration (ending in `/`, as
/// [`layerize_basefs::Capture`] takes a directory). Read along with the index, they spare the
/// base's layers a second read; anything else `wanted_files` names is read afterwards.
pub fn expected_files() -> Vec<String> {
    let dirs = [SOURCES_DIR, TRUSTED_DIR, path_filter::CONFIG_DIR]
        .into_iter()
        .chain(KEYRING_DIRS);
    FIXED_FILES
        .map(str::to_owned)
        .into_iter()
        .chain(dirs.map(|dir| format!("{dir}/")))
        .collect()
}

/// Every path [`BaseSystem::read`] looks at, as apt names it (before symlinks).
fn logical_files(index: &FsIndex) -> Vec<String> {
    let mut paths: Vec<String> = FIXED_FILES.map(str::to_owned).to_vec();
    paths.extend(source_files(index));
    paths.extend(keyring_files(index));
    paths.extend(dpkg_config_dir_files(index));
    paths
}

/// `dpkg.cfg.d/*` that dpkg reads, by name (its order, before `dpkg.cfg`).
fn dpkg_config_dir_files(index: &FsIndex) -> Vec<String> {
    directory_files(index, path_filter::CONFIG_DIR, path_filter::is_config_name)
}

/// `sources.list.d/*.list` and `*.sources`, by name (apt's order).
fn source_files(index: &FsIndex) -> Vec<String> {
    directory_files(index, SOURCES_DIR, |name| {
        name.ends_with(".list") || name.ends_with(".sources")
    })
}

/// Keyring files by the path apt knows them as: `trusted.gpg`, `trusted.gpg.d/*.gpg|*.asc` and
/// the files of the `Signed-By` directories.
fn keyring_files(index: &FsIndex) -> Vec<String> {
    let mut files = vec![TRUSTED_FILE.to_owned()];
    files.extend(directory_files(index, TRUSTED_DIR, |name| {
        name.ends_with(".gpg") || name.ends_with(".asc")
    }));
    for dir in KEYRING_DIRS {
        files.extend(directory_files(index, dir, |_| true));
    }
    files
}

/// The names `dir/NAME` of the entries directly in `dir` (followed if it is a symlink) that
/// `keep` accepts, sorted; absent directories have none.
fn directory_files(index: &FsIndex, dir: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(resolved) = index.resolve(dir) else {
        return Vec::new();
    };
    if resolved.entry.is_none_or(|entry| entry.kind != Kind::Dir) {
        return Vec::new();
    }
    let prefix = format!("{}/", resolved.path);
    let mut names: Vec<String> = index
        .under(&resolved.path)
        .filter_map(|entry| entry.path.strip_prefix(prefix.as_str()))
        .filter(|name| !name.contains('/') && keep(name))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    names.sort();
    names
}

/// Where `path` leads through the image's symlinks, when that is a regular file.
fn regular_file(index: &FsIndex, path: &str) -> Option<String> {
    let resolved = index.resolve(path).ok()?;
    match resolved.entry {
        Some(entry) if entry.kind == Kind::File => Some(resolved.path),
        _ => None,
    }
}

impl BaseSystem {
    /// Reads the base's state from `files`, the contents of [`wanted_files`] (path as it gave
    /// it -> bytes). `native_arch` is the platform's (`amd64`).
    pub fn read(
        index: &FsIndex,
        files: &BTreeMap<String, Vec<u8>>,
        native_arch: &str,
    ) -> Result<BaseSystem, BaseError> {
        let bytes = |path: &str| -> Option<&Vec<u8>> { files.get(&regular_file(index, path)?) };
        let text = |path: &str| -> Result<Option<String>, BaseError> {
            match bytes(path) {
                None => Ok(None),
                Some(bytes) => {
                    String::from_utf8(bytes.clone())
                        .map(Some)
                        .map_err(|_| BaseError::NotText {
                            path: path.to_owned(),
                        })
                }
            }
        };
        let os_release = match text(OS_RELEASE)? {
            Some(text) => parse_os_release(&text),
            None => text(OS_RELEASE_FALLBACK)?
                .map(|text| parse_os_release(&text))
                .unwrap_or_default(),
        };
        let mut sources = Vec::new();
        if let Some(list) = text(SOURCES_LIST)? {
            sources.extend(sources::parse_one_line(&list, &format!("/{SOURCES_LIST}"))?);
        }
        for path in source_files(index) {
            let Some(contents) = text(&path)? else {
                continue;
            };
            let name = format!("/{path}");
            if path.ends_with(".sources") {
                sources.extend(sources::parse_deb822(&contents, &name)?);
            } else {
                sources.extend(sources::parse_one_line(&contents, &name)?);
            }
        }
        let keyrings = keyring_files(index)
            .into_iter()
            .filter_map(|path| Some((format!("/{path}"), bytes(&path)?.clone())))
            .collect();
        // dpkg reads its configuration as bytes: a comment in another encoding fails nothing.
        let dpkg_config: Vec<String> = dpkg_config_dir_files(index)
            .iter()
            .map(String::as_str)
            .chain([path_filter::CONFIG_FILE])
            .filter_map(bytes)
            .map(|config| String::from_utf8_lossy(config).into_owned())
            .collect();
        let path_filters = PathFilters::from_config(dpkg_config.iter().map(String::as_str));
        let foreign_architectures = text(DPKG_ARCH)?
            .unwrap_or_default()
            .split_whitespace()
            .filter(|arch| *arch != native_arch)
            .map(str::to_owned)
            .collect();
        Ok(BaseSystem {
            os_release,
            sources,
            keyrings,
            dpkg_status: text(DPKG_STATUS)?.unwrap_or_default(),
            extended_states: text(EXTENDED_STATES)?,
            foreign_architectures,
            usr_merge: usr_merge(index),
            path_filters,
        })
    }
}

/// The top-level symlinks that lead to a directory under `usr/`.
fn usr_merge(index: &FsIndex) -> UsrMerge {
    let links = index
        .iter()
        .filter(|entry| entry.kind == Kind::Symlink && !entry.path.contains('/'))
        .filter_map(|entry| {
            let resolved = index.resolve(entry.path).ok()?;
            let is_dir = resolved
                .entry
                .is_some_and(|target| target.kind == Kind::Dir);
            (is_dir && resolved.path.starts_with("usr/"))
                .then(|| (entry.path.to_owned(), resolved.path))
        })
        .collect();
    UsrMerge { links }
}

/// `KEY=value` lines of os-release(5): quotes removed, backslash escapes in double quotes
/// undone, comments and malformed lines skipped.
fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut unescaped = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => unescaped.extend(chars.next()),
                    c => unescaped.push(c),
                }
            }
            unescaped
        } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            inner.to_owned()
        } else {
            value.to_owned()
        };
        fields.insert(key.to_owned(), value);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SignedBy;
    use layerize_basefs::OwnedEntry;

    fn entry(path: &str, kind: Kind, link: &str) -> OwnedEntry {
        OwnedEntry {
            path: path.to_owned(),
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: link.to_owned(),
        }
    }

    /// A merged-/usr Debian-like base; `files` are its regular files and their contents.
    fn base(
        files: &[(&str, &str)],
        links: &[(&str, &str)],
    ) -> (FsIndex, BTreeMap<String, Vec<u8>>) {
        let mut entries = Vec::new();
        for dir in [
            "etc",
            "etc/apt",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "etc/dpkg",
            "etc/dpkg/dpkg.cfg.d",
            "usr",
            "usr/bin",
            "usr/lib",
            "usr/lib64",
            "usr/sbin",
            "usr/share",
            "usr/share/keyrings",
            "var",
            "var/lib",
            "var/lib/dpkg",
        ] {
            entries.push(entry(dir, Kind::Dir, ""));
        }
        for (path, _) in files {
            entries.push(entry(path, Kind::File, ""));
        }
        for (path, target) in links {
            entries.push(entry(path, Kind::Symlink, target));
        }
        let contents = files
            .iter()
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect();
        (FsIndex::from_entries(entries), contents)
    }

    #[test]
    fn reads_a_debian_base_through_its_symlinks() {
        let (index, files) = base(
            &[
                (
                    "usr/lib/os-release",
                    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n# c\nNAME='Debian'\n",
                ),
                ("etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n"),
                (
                    "etc/apt/sources.list.d/b.sources",
                    "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
                ),
                ("etc/apt/sources.list.d/a.list", "deb http://a.example/debian bookworm main\n"),
                ("etc/apt/sources.list.d/ignored.save", "deb http://x/ bookworm main\n"),
                ("usr/share/keyrings/debian-archive-keyring.gpg", "KEYS"),
                ("etc/apt/trusted.gpg.d/readme.txt", "not a keyring"),
                ("var/lib/dpkg/status", "Package: base-files\nStatus: install ok installed\n"),
                ("var/lib/dpkg/arch", "amd64\ni386\n"),
            ],
            &[
                ("etc/os-release", "../usr/lib/os-release"),
                (
                    "etc/apt/trusted.gpg.d/debian-archive-bookworm-stable.gpg",
                    "/usr/share/keyrings/debian-archive-keyring.gpg",
                ),
                ("bin", "usr/bin"),
                ("sbin", "usr/sbin"),
                ("lib", "usr/lib"),
                ("lib64", "usr/lib64"),
                ("lib32", "usr/lib32"),
                ("etc/apt/trusted.gpg.d/dangling.gpg", "/nonexistent.gpg"),
            ],
        );
        let wanted = wanted_files(&index);
        assert_eq!(
            wanted,
            [
                "etc/apt/sources.list",
                "etc/apt/sources.list.d/a.list",
                "etc/apt/sources.list.d/b.sources",
                "usr/lib/os-release",
                "usr/share/keyrings/debian-archive-keyring.gpg",
                "var/lib/dpkg/arch",
                "var/lib/dpkg/status",
            ]
        );
        let files: BTreeMap<String, Vec<u8>> = files
            .into_iter()
            .filter(|(path, _)| wanted.contains(path))
            .collect();
        let system = BaseSystem::read(&index, &files, "amd64").unwrap();
        assert_eq!(system.os_release["ID"], "debian");
        assert_eq!(system.os_release["VERSION_CODENAME"], "bookworm");
        assert_eq!(
            system.os_release["PRETTY_NAME"],
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(system.os_release["NAME"], "Debian");
        let sources: Vec<String> = system.sources.iter().map(Source::describe).collect();
        assert_eq!(
            sources,
            [
                "http://deb.debian.org/debian bookworm",
                "http://a.example/debian bookworm",
                "http://security.debian.org/debian-security bookworm-security",
            ]
        );
        assert!(matches!(system.sources[2].signed_by, SignedBy::Files(_)));
        let keyrings: Vec<&str> = system.keyrings.keys().map(String::as_str).collect();
        assert_eq!(
            keyrings,
            [
                "/etc/apt/trusted.gpg.d/debian-archive-bookworm-stable.gpg",
                "/usr/share/keyrings/debian-archive-keyring.gpg",
            ]
        );
        assert_eq!(
            system.keyrings["/etc/apt/trusted.gpg.d/debian-archive-bookworm-stable.gpg"],
            b"KEYS"
        );
        assert!(system.dpkg_status.starts_with("Package: base-files"));
        assert_eq!(system.extended_states, None);
        assert_eq!(system.foreign_architectures, ["i386"]);
        // lib32 dangles: not a directory under usr.
        let links: Vec<(&str, &str)> = system
            .usr_merge
            .links
            .iter()
            .map(|(name, target)| (name.as_str(), target.as_str()))
            .collect();
        assert_eq!(
            links,
            [
                ("bin", "usr/bin"),
                ("lib", "usr/lib"),
                ("lib64", "usr/lib64"),
                ("sbin", "usr/sbin"),
            ]
        );
    }

    #[test]
    fn reads_dpkg_s_path_filters_in_dpkg_s_order() {
        let (index, files) = base(
            &[
                (
                    "etc/dpkg/dpkg.cfg.d/zz-last",
                    "path-include /usr/share/doc/*/copyright\n",
                ),
                (
                    "etc/dpkg/dpkg.cfg.d/docker",
                    "path-exclude /usr/share/doc/*\n",
                ),
                (
                    "etc/dpkg/dpkg.cfg.d/old.dpkg-old",
                    "path-exclude /usr/bin/*\n",
                ),
                (
                    "etc/dpkg/dpkg.cfg",
                    "# comment\npath-exclude=/usr/share/man/*\n",
                ),
            ],
            &[],
        );
        let wanted = wanted_files(&index);
        assert!(
            wanted.contains(&"etc/dpkg/dpkg.cfg.d/docker".to_owned()),
            "{wanted:?}"
        );
        assert!(
            !wanted.iter().any(|path| path.ends_with("dpkg-old")),
            "{wanted:?}"
        );
        let system = BaseSystem::read(&index, &files, "amd64").unwrap();
        assert_eq!(
            system.path_filters.key_lines(),
            [
                "exclude /usr/share/doc/*",
                "include /usr/share/doc/*/copyright",
                "exclude /usr/share/man/*"
            ]
        );
        assert!(!system.path_filters.skips("/usr/bin/tool", false));
    }

    #[test]
    fn an_empty_base_has_no_state_and_bad_sources_name_the_file() {
        let (index, files) = base(&[], &[]);
        assert!(wanted_files(&index).is_empty());
        let system = BaseSystem::read(&index, &files, "amd64").unwrap();
        assert!(system.os_release.is_empty() && system.sources.is_empty());
        assert!(system.dpkg_status.is_empty());
        assert_eq!(system.usr_merge, UsrMerge::default());
        assert!(system.path_filters.is_empty());

        let (index, files) = base(&[("etc/apt/sources.list", "deb http://x bookworm\n")], &[]);
        let err = BaseSystem::read(&index, &files, "amd64").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the base image's /etc/apt/sources.list:1: "),
            "{err}"
        );
    }
}
