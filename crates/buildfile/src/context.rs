//! The build file's directory as the context of its host sources, the way a Docker build context
//! is: a relative source resolves against it, and no source may lead outside it — lexically
//! (`../x`, an absolute path elsewhere) or through a symlink. Sources are checked when the file
//! is loaded, and what is handed on is each source's canonical path, the one that was checked.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{BuildFileError, Fault, Problem};
use crate::read::string;
use crate::yaml::Node;

/// The directory every source must be inside, canonical.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    dir: PathBuf,
}

/// What a source must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    File,
    Dir,
}

impl Context {
    /// The context of the build file at `path`: its directory.
    pub fn of(path: &Path) -> Result<Context, BuildFileError> {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = std::fs::canonicalize(dir).map_err(|source| BuildFileError::Read {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Context { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The source written at `node` (`what` in messages), which must be a `kind` inside the
    /// context: its canonical path.
    pub fn source(&self, node: &Node, what: &str, kind: SourceKind) -> Result<PathBuf, Fault> {
        let src = string(node, what)?;
        let fault = |problem| Err(Fault::new(node.at, problem));
        if src.is_empty() {
            return fault(Problem::InvalidPath("a source path cannot be empty"));
        }
        if src.contains('\0') {
            return fault(Problem::InvalidPath("a path cannot hold a NUL byte"));
        }
        // `..` is taken lexically, as Docker takes it, before any symlink is followed.
        let lexical = normalize(&self.dir.join(&src));
        if !lexical.starts_with(&self.dir) {
            let dir = self.dir.clone();
            return fault(Problem::SourceEscapes { src, dir });
        }
        let real = match std::fs::canonicalize(&lexical) {
            Ok(real) => real,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let resolved = lexical;
                return fault(Problem::SourceMissing { src, resolved });
            }
            Err(error) => {
                let resolved = lexical;
                return fault(Problem::SourceUnreadable {
                    src,
                    resolved,
                    error,
                });
            }
        };
        if !real.starts_with(&self.dir) {
            let dir = self.dir.clone();
            return fault(Problem::SourceEscapesThroughSymlink {
                src,
                target: real,
                dir,
            });
        }
        let metadata = match std::fs::metadata(&real) {
            Ok(metadata) => metadata,
            Err(error) => {
                let resolved = real;
                return fault(Problem::SourceUnreadable {
                    src,
                    resolved,
                    error,
                });
            }
        };
        let expected = match kind {
            SourceKind::File if !metadata.is_file() => "a regular file",
            SourceKind::Dir if !metadata.is_dir() => "a directory",
            _ => return Ok(real),
        };
        fault(Problem::SourceKind {
            src,
            expected,
            resolved: real,
        })
    }
}

/// `path` with `.` dropped and each `..` taking away the component before it (never the root).
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    fn node(text: &str) -> Node {
        Node::scalar(text, true)
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/a/../../x")), Path::new("/x"));
    }

    #[test]
    fn sources_resolve_inside_the_directory_to_their_canonical_path() {
        let outside = tempfile::tempdir().unwrap();
        let context_dir = outside.path().join("ctx");
        std::fs::create_dir_all(context_dir.join("sub")).unwrap();
        std::fs::write(context_dir.join("sub/file"), "x").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("sub/file", context_dir.join("inside-link")).unwrap();
        std::os::unix::fs::symlink("../secret", context_dir.join("outside-link")).unwrap();
        let context = Context::of(&context_dir.join("layerize.yaml")).unwrap();
        let real = std::fs::canonicalize(context_dir.join("sub/file")).unwrap();

        for src in ["sub/file", "./sub/../sub/file", "inside-link"] {
            let path = context.source(&node(src), "\"src\"", SourceKind::File);
            assert_eq!(path.unwrap(), real, "{src}");
        }
        let absolute = real.to_str().unwrap();
        assert_eq!(
            context
                .source(&node(absolute), "\"src\"", SourceKind::File)
                .unwrap(),
            real
        );
        let error = |src: &str, kind| {
            let fault = context.source(&node(src), "\"src\"", kind).unwrap_err();
            assert_eq!(fault.at, Position { line: 1, column: 1 });
            fault.problem
        };
        assert!(matches!(
            error("../secret", SourceKind::File),
            Problem::SourceEscapes { .. }
        ));
        assert!(matches!(
            error("/etc/passwd", SourceKind::File),
            Problem::SourceEscapes { .. }
        ));
        assert!(matches!(
            error("outside-link", SourceKind::File),
            Problem::SourceEscapesThroughSymlink { .. }
        ));
        assert!(matches!(
            error("missing", SourceKind::File),
            Problem::SourceMissing { .. }
        ));
        assert!(matches!(
            error("sub", SourceKind::File),
            Problem::SourceKind { .. }
        ));
        assert!(matches!(
            error("sub/file", SourceKind::Dir),
            Problem::SourceKind { .. }
        ));
        assert!(matches!(
            error("", SourceKind::Dir),
            Problem::WrongType { .. }
        ));
        assert_eq!(
            context
                .source(&node("."), "\"src\"", SourceKind::Dir)
                .unwrap(),
            context.dir()
        );
    }
}
