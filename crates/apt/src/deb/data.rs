//! `data.tar`'s entries as layer entries: each name checked not to leave the root, moved into
//! `/usr` where the base links a top-level directory there, left out where the base's dpkg
//! path filters say so, and streamed into the layer with its mode, owner, link target and
//! content; the package's paths and file hashes collected on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use md5::{Digest, Md5};
use tar::EntryType;

use super::archive::malformed;
use super::control_tar::ControlMembers;
use super::{DebError, UsrMerge};
use crate::path_filter::PathFilters;

/// What streaming `data.tar` learnt.
#[derive(Debug)]
pub(super) struct DataFacts {
    /// The `.list` lines: package paths (`/.`, `/bin`, `/bin/ls`) in `data.tar` order.
    pub(super) paths: Vec<String>,
    /// Each conffile with the md5 hex of its content, in `conffiles` order.
    pub(super) conffiles: Vec<(String, String)>,
    /// The md5sums dpkg makes for a package that ships none (`HASH  path` lines, conffiles
    /// left out); `None` when the package has its own.
    pub(super) made_md5sums: Option<Vec<u8>>,
}

/// Streams the entries of `data_tar` into `layer`.
pub(super) fn stream<W: Write>(
    deb: &Path,
    data_tar: impl Read,
    usr: &UsrMerge,
    filters: &PathFilters,
    control: &ControlMembers,
    layer: &mut tar::Builder<W>,
) -> Result<DataFacts, DebError> {
    let unreadable = |error: std::io::Error| malformed(deb, format!("data.tar: {error}"));
    let write_error = |source| DebError::Write {
        deb: deb.to_owned(),
        source,
    };
    let conffiles: BTreeSet<&str> = control.conffiles.iter().map(String::as_str).collect();
    let hash_every_file = control.md5sums.is_none();
    let mut paths = Vec::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut made_md5sums = Vec::new();
    let mut regular_files: BTreeSet<String> = BTreeSet::new();
    // Package paths the filters left out.
    let mut filtered: BTreeSet<String> = BTreeSet::new();

    let mut archive = tar::Archive::new(data_tar);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name_bytes = entry.path_bytes().into_owned();
        let name = std::str::from_utf8(&name_bytes).map_err(|_| DebError::UnsafeEntry {
            deb: deb.to_owned(),
            entry: String::from_utf8_lossy(&name_bytes).into_owned(),
            problem: "its name is not UTF-8".into(),
        })?;
        let refuse = |problem: String| DebError::UnsafeEntry {
            deb: deb.to_owned(),
            entry: name.to_owned(),
            problem,
        };
        let components = package_components(name).map_err(|problem| refuse(problem.into()))?;
        let package_path = list_path(&components);
        let kind = entry.header().entry_type();
        let dir_or_symlink = matches!(kind, EntryType::Directory | EntryType::Symlink);
        if filters.skips(&package_path, dir_or_symlink) {
            // dpkg does not unpack it, but lists it; a conffile still has its hash.
            if conffiles.contains(package_path.as_str()) {
                let mut md5 = Md5::new();
                std::io::copy(&mut entry, &mut md5).map_err(unreadable)?;
                hashes.insert(package_path.clone(), hex::encode(md5.finalize()));
            }
            filtered.insert(package_path.clone());
            paths.push(package_path);
            continue;
        }
        let mut header = entry.header().clone();
        let layer_path = layer_path(&components, usr);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let layer_path = layer_path.ok_or_else(|| {
                    refuse("a file where the base has a usr-merge symlink".into())
                })?;
                let wants_hash = hash_every_file || conffiles.contains(package_path.as_str());
                let mut content = HashingReader {
                    inner: &mut entry,
                    md5: wants_hash.then(Md5::new),
                };
                layer
                    .append_data(&mut header, &layer_path, &mut content)
                    .map_err(write_error)?;
                if let Some(md5) = content.md5 {
                    hashes.insert(package_path.clone(), hex::encode(md5.finalize()));
                }
                regular_files.insert(layer_path);
            }
            EntryType::Link => {
                let layer_path = layer_path.ok_or_else(|| {
                    refuse("a hard link where the base has a usr-merge symlink".into())
                })?;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a hard link without a target".into()))?;
                let target = std::str::from_utf8(&target)
                    .map_err(|_| refuse("its hard-link target is not UTF-8".into()))?;
                let target_components = package_components(target).map_err(|problem| {
                    refuse(format!("its hard-link target {target:?} is {problem}"))
                })?;
                if filtered.contains(&list_path(&target_components)) {
                    return Err(refuse(format!(
                        "its hard-link target {target:?} is left out by the base's dpkg path \
                         filters (path-exclude in /etc/dpkg/dpkg.cfg.d), but the link is not, \
                         so dpkg could not make it either"
                    )));
                }
                let target_layer_path = self::layer_path(&target_components, usr)
                    .filter(|path| regular_files.contains(path))
                    .ok_or_else(|| {
                        refuse(format!(
                            "its hard-link target {target:?} is not a file earlier in this package"
                        ))
                    })?;
                layer
                    .append_link(&mut header, &layer_path, &target_layer_path)
                    .map_err(write_error)?;
                if let Some(hash) = hashes.get(&list_path(&target_components)).cloned() {
                    hashes.insert(package_path.clone(), hash);
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a symlink without a target".into()))?;
                match layer_path {
                    Some(layer_path) => layer
                        .append_link(&mut header, &layer_path, OsStr::from_bytes(&target))
                        .map_err(write_error)?,
                    // The base's own link, as a package that ships the usr merge has it.
                    None if is_usr_merge_link(&components, &target, usr) => {}
                    None => {
                        return Err(refuse(
                            "a symlink replacing the base's usr-merge symlink with another".into(),
                        ))
                    }
                }
            }
            EntryType::Directory => {
                // The root and the base's usr-merge links stay the base's.
                if let Some(layer_path) = layer_path.filter(|path| !path.is_empty()) {
                    layer
                        .append_data(&mut header, &layer_path, std::io::empty())
                        .map_err(write_error)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let layer_path = layer_path.ok_or_else(|| {
                    refuse("a device where the base has a usr-merge symlink".into())
                })?;
                layer
                    .append_data(&mut header, &layer_path, std::io::empty())
                    .map_err(write_error)?;
            }
            other => {
                return Err(refuse(format!(
                    "its tar entry type {:?} is not one a .deb may hold",
                    other.as_byte() as char
                )))
            }
        }
        if hash_every_file && !conffiles.contains(package_path.as_str()) {
            if let Some(hash) = hashes.get(&package_path) {
                let relative = package_path.trim_start_matches('/');
                made_md5sums.extend_from_slice(format!("{hash}  {relative}\n").as_bytes());
            }
        }
        paths.push(package_path);
    }

    let conffiles = control
        .conffiles
        .iter()
        .map(|conffile| match hashes.get(conffile) {
            Some(hash) => Ok((conffile.clone(), hash.clone())),
            None => Err(malformed(
                deb,
                format!("its conffile {conffile} is not a file in data.tar"),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(DataFacts {
        paths,
        conffiles,
        made_md5sums: hash_every_file.then_some(made_md5sums),
    })
}

/// The components of a `data.tar` name below the root (`./usr/bin/` -> `["usr", "bin"]`, `./`
/// -> `[]`), with `.` dropped and `..` resolved; a name that is absolute or leads above the root
/// is refused, saying which.
fn package_components(name: &str) -> Result<Vec<&str>, &'static str> {
    if name.starts_with('/') {
        return Err("an absolute path");
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err("a path leading above the root");
                }
            }
            component => components.push(component),
        }
    }
    Ok(components)
}

/// A package path as dpkg's `.list` has it: `/.` for the root, else `/` and the components.
fn list_path(components: &[&str]) -> String {
    if components.is_empty() {
        "/.".to_owned()
    } else {
        format!("/{}", components.join("/"))
    }
}

/// Where an entry lands in the layer (relative, no trailing slash; the root is `""`): under a
/// usr-merge link's target when its first component is such a link; `None` for the link itself.
fn layer_path(components: &[&str], usr: &UsrMerge) -> Option<String> {
    let Some((first, rest)) = components.split_first() else {
        return Some(String::new());
    };
    match usr.links.get(*first) {
        None => Some(components.join("/")),
        Some(_) if rest.is_empty() => None,
        Some(target) => {
            let target = target.trim_matches('/');
            Some(
                std::iter::once(target)
                    .chain(rest.iter().copied())
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        }
    }
}

/// Where a package path (`/bin/ls`, as `.list` has it) lands in a layer (`usr/bin/ls`); `None`
/// for a usr-merge link itself and for a path leaving the root.
pub(crate) fn layer_path_of(package_path: &str, usr: &UsrMerge) -> Option<String> {
    let components = package_components(package_path.trim_start_matches('/')).ok()?;
    layer_path(&components, usr)
}

/// Whether a symlink at `components` pointing at `target` is one of the base's usr-merge links.
fn is_usr_merge_link(components: &[&str], target: &[u8], usr: &UsrMerge) -> bool {
    let target = String::from_utf8_lossy(target);
    match components {
        [link] => usr
            .links
            .get(*link)
            .is_some_and(|base| base.trim_matches('/') == target.trim_matches('/')),
        _ => false,
    }
}

/// Hashes what it reads when asked to.
struct HashingReader<R> {
    inner: R,
    md5: Option<Md5>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        if let Some(md5) = &mut self.md5 {
            md5.update(&buf[..read]);
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged() -> UsrMerge {
        UsrMerge {
            links: [
                ("bin", "usr/bin"),
                ("lib", "/usr/lib/"),
                ("lib64", "usr/lib64"),
            ]
            .into_iter()
            .map(|(link, target)| (link.to_owned(), target.to_owned()))
            .collect(),
        }
    }

    #[test]
    fn names_resolve_below_the_root_or_are_refused() {
        assert_eq!(package_components("./usr/bin/"), Ok(vec!["usr", "bin"]));
        assert_eq!(package_components("./"), Ok(vec![]));
        assert_eq!(package_components("./usr/../etc/x"), Ok(vec!["etc", "x"]));
        assert_eq!(
            package_components("../etc/x"),
            Err("a path leading above the root")
        );
        assert_eq!(
            package_components("./usr/../../etc/x"),
            Err("a path leading above the root")
        );
        assert_eq!(package_components("/etc/x"), Err("an absolute path"));
    }

    #[test]
    fn list_paths_keep_the_package_s_own_names() {
        assert_eq!(list_path(&[]), "/.");
        assert_eq!(list_path(&["bin", "dash"]), "/bin/dash");
    }

    #[test]
    fn paths_under_usr_merge_links_move_to_their_targets() {
        let usr = merged();
        assert_eq!(
            layer_path(&["bin", "ls"], &usr).as_deref(),
            Some("usr/bin/ls")
        );
        assert_eq!(
            layer_path(&["lib", "x86_64-linux-gnu", "libc.so.6"], &usr).as_deref(),
            Some("usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(layer_path(&["bin"], &usr), None);
        assert_eq!(
            layer_path(&["binaries", "x"], &usr).as_deref(),
            Some("binaries/x")
        );
        assert_eq!(
            layer_path(&["usr", "bin", "ls"], &usr).as_deref(),
            Some("usr/bin/ls")
        );
        assert_eq!(layer_path(&[], &usr).as_deref(), Some(""));
        assert_eq!(
            layer_path(&["bin", "ls"], &UsrMerge::default()).as_deref(),
            Some("bin/ls")
        );
    }
}
