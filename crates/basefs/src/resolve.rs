//! Path resolution inside an image root through the symlinks of its filesystem, the way a
//! destination of `COPY` is resolved: like `openat2(RESOLVE_IN_ROOT)`, but strict — a link whose
//! target climbs above the root is an error instead of being clamped to it, and so are loops and
//! non-directories used as parents. Absent components resolve lexically (they are what a layer
//! creates).
//!
//! The filesystem is anything that answers "what is at this path": an [`FsIndex`], or a caller's
//! view of one (a layer being built hides what it deletes).

use crate::{Entry, FsIndex, Kind};

/// Symlink expansions allowed in one resolution; one more is a loop, as Linux's `ELOOP` says.
pub const MAX_SYMLINK_EXPANSIONS: usize = 40;

/// Why a path cannot be resolved. Paths are shown absolute, as a user writes them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{path:?} climbs above the image root")]
    EscapesRoot { path: String },
    #[error("resolving /{path}: the symlink /{link} -> {target} points above the image root")]
    LinkEscapesRoot {
        path: String,
        link: String,
        target: String,
    },
    #[error("resolving /{path}: the symlink /{link} has an empty target")]
    EmptyTarget { path: String, link: String },
    #[error(
        "resolving /{path}: more than {MAX_SYMLINK_EXPANSIONS} symlinks followed \
         (a loop?), the last one /{link}"
    )]
    Loop { path: String, link: String },
    #[error("resolving /{path}: /{parent} is not a directory")]
    NotADirectory { path: String, parent: String },
}

/// Where a path leads, and what the filesystem has there and above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// Normalised and relative to the root; no ancestor of it is a symlink.
    pub path: String,
    /// What is at `path` (`None`: absent, or the root). When the last component was kept rather
    /// than followed, this may be a symlink.
    pub entry: Option<Entry<'a>>,
    /// What is at each ancestor of `path`, outermost first: a directory, or `None` for one that
    /// does not exist (and then neither does anything below it).
    pub parents: Vec<Option<Entry<'a>>>,
}

/// Resolves paths through the symlinks of the filesystem `lookup` describes: `lookup(path)` is
/// the entry at the normalised `path`, or `None`.
pub struct Resolver<F> {
    lookup: F,
}

impl<'a, F> Resolver<F>
where
    F: Fn(&str) -> Option<Entry<'a>>,
{
    pub fn new(lookup: F) -> Self {
        Resolver { lookup }
    }

    /// Resolves the ancestors of the normalised `path` and keeps its last component as it is:
    /// where a file, a symlink or a whiteout at `path` goes (a symlink there is replaced, not
    /// followed).
    pub fn resolve_parents(&self, path: &str) -> Result<Resolved<'a>, ResolveError> {
        self.walk(path, false)
    }

    /// Resolves the normalised `path` including its last component: where a directory at `path`
    /// goes (a symlink to a directory there is followed).
    pub fn resolve(&self, path: &str) -> Result<Resolved<'a>, ResolveError> {
        self.walk(path, true)
    }

    fn walk(&self, path: &str, follow_last: bool) -> Result<Resolved<'a>, ResolveError> {
        // The directory resolved so far, normalised; `""` is the root.
        let mut current = String::new();
        // Components still to resolve, the next one last, each with the index in `links` of the
        // symlink whose target it comes from (`None`: from `path` itself).
        let mut pending: Vec<(&str, Option<usize>)> =
            path.rsplit('/').map(|part| (part, None)).collect();
        let mut links: Vec<(String, &str)> = Vec::new();
        while let Some((part, origin)) = pending.pop() {
            match part {
                "" | "." => {}
                ".." => {
                    if current.is_empty() {
                        return Err(match origin {
                            None => ResolveError::EscapesRoot {
                                path: path.to_owned(),
                            },
                            Some(index) => ResolveError::LinkEscapesRoot {
                                path: path.to_owned(),
                                link: links[index].0.clone(),
                                target: links[index].1.to_owned(),
                            },
                        });
                    }
                    // `current` is a resolved directory, so its parent is the lexical one.
                    let parent = current.rfind('/').unwrap_or(0);
                    current.truncate(parent);
                }
                name => {
                    let candidate = join(&current, name);
                    let is_last = pending
                        .iter()
                        .all(|(part, _)| part.is_empty() || *part == ".");
                    if is_last && origin.is_none() && !follow_last {
                        current = candidate;
                        continue;
                    }
                    match (self.lookup)(&candidate) {
                        Some(entry) if entry.kind == Kind::Symlink => {
                            if links.len() == MAX_SYMLINK_EXPANSIONS {
                                return Err(ResolveError::Loop {
                                    path: path.to_owned(),
                                    link: candidate,
                                });
                            }
                            if entry.link.is_empty() {
                                return Err(ResolveError::EmptyTarget {
                                    path: path.to_owned(),
                                    link: candidate,
                                });
                            }
                            if entry.link.starts_with('/') {
                                current.clear();
                            }
                            let index = links.len();
                            links.push((candidate, entry.link));
                            pending.extend(entry.link.rsplit('/').map(|part| (part, Some(index))));
                        }
                        Some(entry) if entry.kind != Kind::Dir && !is_last => {
                            return Err(ResolveError::NotADirectory {
                                path: path.to_owned(),
                                parent: candidate,
                            });
                        }
                        _ => current = candidate,
                    }
                }
            }
        }
        let parents = current
            .match_indices('/')
            .map(|(end, _)| (self.lookup)(&current[..end]))
            .collect();
        let entry = if current.is_empty() {
            None
        } else {
            (self.lookup)(&current)
        };
        Ok(Resolved {
            path: current,
            entry,
            parents,
        })
    }
}

impl FsIndex {
    /// A resolver through this index's symlinks.
    pub fn resolver<'a>(&'a self) -> Resolver<impl Fn(&str) -> Option<Entry<'a>> + 'a> {
        Resolver::new(move |path: &str| self.get(path))
    }

    /// See [`Resolver::resolve_parents`].
    pub fn resolve_parents(&self, path: &str) -> Result<Resolved<'_>, ResolveError> {
        self.resolver().resolve_parents(path)
    }

    /// See [`Resolver::resolve`].
    pub fn resolve(&self, path: &str) -> Result<Resolved<'_>, ResolveError> {
        self.resolver().resolve(path)
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OwnedEntry;

    fn entry(path: &str, kind: Kind, mode: u32, link: &str) -> OwnedEntry {
        OwnedEntry {
            path: path.to_owned(),
            kind,
            mode,
            uid: 0,
            gid: if path == "var/mail" { 8 } else { 0 },
            mtime: 1_690_000_000,
            size: 0,
            link: link.to_owned(),
        }
    }

    /// A Debian bookworm-like tree: merged /usr, alternatives, library links, and some traps.
    fn debian() -> FsIndex {
        let dirs = [
            "etc",
            "etc/alternatives",
            "opt",
            "usr",
            "usr/bin",
            "usr/lib",
            "usr/lib/x86_64-linux-gnu",
            "usr/lib64",
            "usr/sbin",
            "var",
            "var/mail",
            "traps",
        ];
        let files = [
            "etc/passwd",
            "usr/bin/vim.basic",
            "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        ];
        let links = [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
            ("usr/bin/editor", "/etc/alternatives/editor"),
            ("etc/alternatives/editor", "/usr/bin/vim.basic"),
            ("usr/lib/x86_64-linux-gnu/libfoo.so", "libfoo.so.1"),
            ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2.3"),
            (
                "usr/lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld.so",
            ),
            ("usr/lib/dots", "../bin/.././lib//x86_64-linux-gnu/"),
            ("opt/physical", "/bin/../lib"),
            ("var/spool-mail", "mail"),
            ("traps/a", "b"),
            ("traps/b", "a"),
            ("traps/self", "self"),
            ("traps/up", "../.."),
            ("traps/root-up", "/../etc"),
            ("traps/empty", ""),
            ("traps/dangling", "/nonexistent/dir"),
            ("traps/passwd-dir", "/etc/passwd/x"),
        ];
        let mut entries: Vec<OwnedEntry> = dirs
            .iter()
            .map(|dir| entry(dir, Kind::Dir, 0o755, ""))
            .collect();
        entries.push(entry("tmp", Kind::Dir, 0o1777, ""));
        entries.extend(files.iter().map(|file| entry(file, Kind::File, 0o644, "")));
        entries.extend(
            links
                .iter()
                .map(|(link, target)| entry(link, Kind::Symlink, 0o777, target)),
        );
        FsIndex::from_entries(entries)
    }

    fn parents(resolved: &Resolved<'_>) -> Vec<Option<(String, Kind, u32)>> {
        resolved
            .parents
            .iter()
            .map(|parent| parent.map(|entry| (entry.path.to_owned(), entry.kind, entry.mode)))
            .collect()
    }

    #[test]
    fn merged_usr_links_are_followed_for_parents_only() {
        let index = debian();
        for (input, expected) in [
            ("bin/app", "usr/bin/app"),
            ("sbin/init", "usr/sbin/init"),
            (
                "lib/x86_64-linux-gnu/libbar.so",
                "usr/lib/x86_64-linux-gnu/libbar.so",
            ),
            (
                "lib64/ld-linux-x86-64.so.2",
                "usr/lib64/ld-linux-x86-64.so.2",
            ),
            ("usr/bin/app", "usr/bin/app"),
            ("bin", "bin"),
            ("new/dir/file", "new/dir/file"),
            ("", ""),
        ] {
            assert_eq!(
                index.resolve_parents(input).unwrap().path,
                expected,
                "{input}"
            );
        }
        let resolved = index.resolve_parents("bin/app").unwrap();
        assert_eq!(
            parents(&resolved),
            [
                Some(("usr".to_owned(), Kind::Dir, 0o755)),
                Some(("usr/bin".to_owned(), Kind::Dir, 0o755)),
            ]
        );
        assert_eq!(resolved.entry, None);
        // The last component is kept: the link itself, not what it points at.
        let link = index.resolve_parents("bin").unwrap();
        assert_eq!(link.entry.map(|entry| entry.kind), Some(Kind::Symlink));
        let link = index
            .resolve_parents("lib/x86_64-linux-gnu/libfoo.so.1")
            .unwrap();
        assert_eq!(link.path, "usr/lib/x86_64-linux-gnu/libfoo.so.1");
        assert_eq!(link.entry.unwrap().link, "libfoo.so.1.2.3");
    }

    #[test]
    fn directory_destinations_follow_the_last_component_too() {
        let index = debian();
        for (input, expected) in [
            ("bin", "usr/bin"),
            ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"),
            ("tmp", "tmp"),
            // Absolute targets, chains, relative targets in the link's directory.
            ("bin/editor", "usr/bin/vim.basic"),
            (
                "lib/x86_64-linux-gnu/libfoo.so",
                "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
            ),
            // `..` and `.` inside targets, a link inside a target.
            ("usr/lib/dots", "usr/lib/x86_64-linux-gnu"),
            ("var/spool-mail", "var/mail"),
            // `..` after a link goes above where the link points, not above the link.
            ("opt/physical", "usr/lib"),
            // A dangling link leads where a layer would create its target.
            ("traps/dangling", "nonexistent/dir"),
        ] {
            assert_eq!(index.resolve(input).unwrap().path, expected, "{input}");
        }
        let tmp = index.resolve("tmp").unwrap();
        assert_eq!(tmp.entry.unwrap().mode, 0o1777);
        assert!(tmp.parents.is_empty());
        let mail = index.resolve("var/spool-mail").unwrap();
        assert_eq!(mail.entry.unwrap().gid, 8);
        let dangling = index.resolve("traps/dangling").unwrap();
        assert_eq!(dangling.parents, [None]);
        assert_eq!(dangling.entry, None);
    }

    #[test]
    fn links_through_links_resolve_every_hop() {
        let index = debian();
        // usr/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld.so, through lib -> usr/lib.
        let resolved = index.resolve("lib64/ld-linux-x86-64.so.2").unwrap();
        assert_eq!(resolved.path, "usr/lib/x86_64-linux-gnu/ld.so");
        assert_eq!(resolved.parents.len(), 3);
        assert!(resolved.parents.iter().all(Option::is_some));
    }

    #[test]
    fn loops_are_refused() {
        let index = debian();
        for input in ["traps/a/x", "traps/self/x"] {
            let err = index.resolve_parents(input).unwrap_err();
            assert!(matches!(err, ResolveError::Loop { .. }), "{input}: {err}");
        }
        let err = index.resolve("traps/a").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "resolving /traps/a: more than 40 symlinks followed (a loop?), the last one /traps/"
            ),
            "{err}"
        );
        // Deleting the link first is what makes the same path usable: resolve_parents keeps it.
        assert_eq!(index.resolve_parents("traps/a").unwrap().path, "traps/a");
    }

    #[test]
    fn exactly_forty_links_in_a_chain_are_followed() {
        let chain = |length: usize| {
            let mut entries: Vec<OwnedEntry> = (0..length)
                .map(|n| {
                    entry(
                        &format!("l{n}"),
                        Kind::Symlink,
                        0o777,
                        &format!("l{}", n + 1),
                    )
                })
                .collect();
            entries.push(entry(&format!("l{length}"), Kind::Dir, 0o755, ""));
            FsIndex::from_entries(entries)
        };
        let index = chain(MAX_SYMLINK_EXPANSIONS);
        assert_eq!(index.resolve_parents("l0/x").unwrap().path, "l40/x");
        let index = chain(MAX_SYMLINK_EXPANSIONS + 1);
        let err = index.resolve_parents("l0/x").unwrap_err();
        assert_eq!(
            err,
            ResolveError::Loop {
                path: "l0/x".into(),
                link: "l40".into()
            }
        );
    }

    #[test]
    fn links_above_the_root_are_refused_naming_the_link() {
        let index = debian();
        let err = index.resolve_parents("traps/up/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "resolving /traps/up/x: the symlink /traps/up -> ../.. points above the image root"
        );
        let err = index.resolve("traps/root-up").unwrap_err();
        assert_eq!(
            err,
            ResolveError::LinkEscapesRoot {
                path: "traps/root-up".into(),
                link: "traps/root-up".into(),
                target: "/../etc".into(),
            }
        );
        // Only a link that is followed matters.
        assert_eq!(index.resolve_parents("traps/up").unwrap().path, "traps/up");
        let err = index.resolve("traps/empty").unwrap_err();
        assert!(matches!(err, ResolveError::EmptyTarget { .. }), "{err}");
        let err = index.resolve_parents("../x").unwrap_err();
        assert_eq!(err.to_string(), "\"../x\" climbs above the image root");
    }

    #[test]
    fn non_directories_cannot_be_parents() {
        let index = debian();
        let err = index.resolve_parents("etc/passwd/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "resolving /etc/passwd/x: /etc/passwd is not a directory"
        );
        // Through a chain ending at a file, and inside a link's target.
        let err = index.resolve_parents("bin/editor/x").unwrap_err();
        assert_eq!(
            err,
            ResolveError::NotADirectory {
                path: "bin/editor/x".into(),
                parent: "usr/bin/vim.basic".into(),
            }
        );
        let err = index.resolve("traps/passwd-dir").unwrap_err();
        assert!(matches!(err, ResolveError::NotADirectory { .. }), "{err}");
        // A file as the last component is fine either way.
        assert_eq!(
            index.resolve("bin/editor").unwrap().entry.unwrap().kind,
            Kind::File
        );
    }

    #[test]
    fn a_view_of_the_index_can_hide_paths() {
        let index = debian();
        // As a layer that deleted /bin sees the base: the link is gone.
        let resolver = Resolver::new(|path: &str| index.get(path).filter(|_| path != "bin"));
        assert_eq!(resolver.resolve_parents("bin/app").unwrap().path, "bin/app");
        assert_eq!(resolver.resolve("sbin").unwrap().path, "usr/sbin");
    }
}
