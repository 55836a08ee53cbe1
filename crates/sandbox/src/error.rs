//! The one error type of the sandbox: every variant names what it was doing (the path, the tar
//! entry, the syscall) and carries the OS error text.

use std::io;
use std::path::PathBuf;

/// Why assembling a root filesystem, running a step in it or diffing it failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A filesystem operation on the host failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the tar stream of a layer failed (truncated or malformed).
    #[error("reading the layer tar: {0}")]
    Tar(#[source] io::Error),
    /// One tar entry is unacceptable (a `..` component, an escape, a missing hardlink target).
    #[error("layer entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    /// A path inside the root could not be resolved without leaving it, or loops.
    #[error("resolving {path:?} inside the root: {reason}")]
    Resolve { path: String, reason: String },
    /// The requested sandbox mode cannot be used by this process; the message says what was
    /// tried, what failed and what would fix it.
    #[error("{0}")]
    Unavailable(String),
    /// The step's `user:` cannot be used (unknown name, or not root in a user namespace).
    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },
    /// The step itself is malformed (empty argv, relative workdir, a NUL byte).
    #[error("step: {0}")]
    Step(String),
    /// An overlay root could not be mounted for the step (nothing of the step ran): the same
    /// step can still run in a written root.
    #[error("mounting the step's overlay root: {what}: {source}")]
    OverlayMount {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Setting up the sandbox for the step failed before the command ran.
    #[error("sandbox setup ({mode}): {what}: {source}")]
    Setup {
        mode: crate::Mode,
        what: String,
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    /// An `Io` error for `op` on `path` from the current `errno`-carrying `source`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn entry(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        SandboxError::Entry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}
