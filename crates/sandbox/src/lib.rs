//! The sandbox of layerize's script steps: a root filesystem assembled from uncompressed layers
//! ([`Rootfs::apply_layer`]), one step run in it isolated by whichever [`Mode`] this process may
//! use ([`detect`], [`run`]), and what the step changed as layer entries ([`Changes`]).
//!
//! Synchronous, no daemon: chroot with a reduced capability set as root where namespaces are
//! refused (an unprivileged container), mount/pid/net/ipc/uts namespaces and pivot_root as root
//! on a VM, a user namespace as a normal user. docs/sandbox.md describes the modes for users.

mod changes;
mod diff;
mod error;
mod layer;
mod mode;
mod rootfs;
mod run;
mod scoped;
mod snapshot;
mod sys;

pub use changes::{Change, ChangeKind, ChangeStatus, Changes, DropMatch, DropRule, DROPPED};
pub use error::SandboxError;
pub use mode::{detect, Mode, ModeChoice};
pub use rootfs::{Removal, Rootfs};
pub use run::{run, ExitStatus, Output, RunOutcome, Step, Stream, DEFAULT_PATH};
