//! Path rules of the index: normalising tar member paths, and the two orders paths are kept in
//! (byte order for lookups, tree order for walking a layer and merging).

use std::cmp::Ordering;

/// Why a member path cannot be an index path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{path:?} leaves the root through \"..\"")]
    EscapesRoot { path: String },
}

/// `path` relative to the root with `.`, empty components and a leading `/` dropped and `..`
/// applied (`./a//b/` -> `a/b`, `a/../b` -> `b`). The root itself is `""`. A `..` that would
/// climb above the root is refused rather than clamped: a tar member that tries it is hostile
/// or broken, and guessing would index a path the layer never meant.
pub fn normalise(path: &str) -> Result<String, PathError> {
    let mut components: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err(PathError::EscapesRoot {
                        path: path.to_owned(),
                    });
                }
            }
            name => components.push(name),
        }
    }
    Ok(components.join("/"))
}

/// Whether `path` lies strictly below the directory `dir` (`""`: the root, above everything).
pub fn is_below(path: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.as_bytes()[dir.len()] == b'/' && path.starts_with(dir)
}

/// The parent directory of a normalised path (`"a/b"` -> `"a"`, `"a"` -> `""`).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

/// Compares paths component by component, as a depth-first walk visits them: like byte order
/// except that `/` sorts before every other byte, so `a/b` comes before `a-b` and every
/// directory is followed directly by its whole subtree. Byte order (what lookups use) puts
/// `a-b` and `a.b` between `a` and `a/b`.
pub fn tree_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = common_prefix_len(a, b);
    match (a.get(common), b.get(common)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(&x), Some(&y)) => tree_byte(x).cmp(&tree_byte(y)),
    }
}

/// `/` becomes the smallest byte; the bytes below it move up one to make room.
fn tree_byte(byte: u8) -> u8 {
    match byte {
        b'/' => 0,
        below if below < b'/' => below + 1,
        other => other,
    }
}

/// The length of the common prefix of two byte strings, eight bytes at a time.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let shortest = a.len().min(b.len());
    let mut index = 0;
    while index + 8 <= shortest && a[index..index + 8] == b[index..index + 8] {
        index += 8;
    }
    while index < shortest && a[index] == b[index] {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_member_paths() {
        for (member, normal) in [
            ("./a/b", "a/b"),
            ("a//b/", "a/b"),
            ("/etc/passwd", "etc/passwd"),
            ("./", ""),
            (".", ""),
            ("a/./b/../c", "a/c"),
            ("usr/lib/..", "usr"),
        ] {
            assert_eq!(normalise(member).unwrap(), normal, "{member}");
        }
    }

    #[test]
    fn refuses_escapes_above_the_root() {
        for member in ["..", "../etc/passwd", "a/../../b", "./.."] {
            let error = normalise(member).unwrap_err();
            assert_eq!(
                error,
                PathError::EscapesRoot {
                    path: member.to_owned()
                }
            );
            assert!(error.to_string().contains("leaves the root"), "{error}");
        }
    }

    #[test]
    fn below_means_strictly_inside_a_directory() {
        assert!(is_below("a/b", "a"));
        assert!(is_below("a/b/c", "a"));
        assert!(is_below("a", ""));
        assert!(!is_below("a", "a"));
        assert!(!is_below("ab", "a"));
        assert!(!is_below("a-b/c", "a"));
        assert!(!is_below("", ""));
    }

    #[test]
    fn tree_order_visits_a_directory_then_its_subtree() {
        let mut paths = vec!["a.b", "a", "a/z", "a-", "a/b/c", "b", "a/b", "a/b.c"];
        paths.sort_by(|a, b| tree_cmp(a, b));
        assert_eq!(
            paths,
            ["a", "a/b", "a/b/c", "a/b.c", "a/z", "a-", "a.b", "b"]
        );
        assert_eq!(tree_cmp("abcdefghij/k", "abcdefghij-k"), Ordering::Less);
        assert_eq!(tree_cmp("abcdefghij", "abcdefghij"), Ordering::Equal);
    }
}
