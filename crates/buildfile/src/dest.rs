//! Paths in the image as a build file writes them: absolute, and never climbing above the root
//! (`/../x`). They are handed on as written; the builder normalises them and resolves them
//! against the base.

use crate::error::{Fault, Problem};
use crate::read::string;
use crate::yaml::Node;

/// What a path is used for, which decides whether it may be the root itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// A file or a deletion: never the root.
    NotRoot(&'static str),
    /// A directory (a tree's destination, an opaque directory): the root too.
    RootToo,
}

/// The image path written at `node` (`what` in messages).
pub(crate) fn destination(node: &Node, what: &str, usage: Use) -> Result<String, Fault> {
    let dest = string(node, what)?;
    let fault = |problem| Err(Fault::new(node.at, problem));
    if dest.contains('\0') {
        return fault(Problem::InvalidPath("a path cannot hold a NUL byte"));
    }
    if !dest.starts_with('/') {
        return fault(Problem::RelativeDestination(dest));
    }
    let mut depth = 0usize;
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return fault(Problem::DestinationEscapes(dest)),
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    match usage {
        Use::NotRoot(what_it_cannot_be) if depth == 0 => {
            fault(Problem::RootDestination(dest, what_it_cannot_be))
        }
        _ => Ok(dest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, usage: Use) -> Result<String, String> {
        let node = Node::scalar(text, true);
        destination(&node, "\"dest\"", usage).map_err(|fault| fault.problem.to_string())
    }

    #[test]
    fn destinations_are_absolute_and_stay_below_the_root() {
        let file = Use::NotRoot("cannot be a file");
        for ok in ["/usr/bin/app", "/a/../b", "//x/./y/", "/a/b/../../c"] {
            assert_eq!(check(ok, file).unwrap(), ok);
        }
        assert_eq!(check("/", Use::RootToo).unwrap(), "/");
        assert_eq!(
            check("/../x", file).unwrap_err(),
            "destination \"/../x\" climbs above the image root"
        );
        assert!(check("/a/../../x", file).is_err());
        assert_eq!(
            check("usr/bin/app", file).unwrap_err(),
            "destination \"usr/bin/app\" is relative; paths in the image are absolute (start with /)"
        );
        assert_eq!(
            check("/a/..", file).unwrap_err(),
            "\"/a/..\" is the image root, which cannot be a file"
        );
    }
}
