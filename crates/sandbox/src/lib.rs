//! The sandbox of layerize's script steps: a root filesystem assembled from uncompressed layers
//! ([`Rootfs::apply_layer`]), one step run in it isolated by whichever [`Mode`] this process may
//! use ([`detect`], [`run`]), and what the step changed as layer entries ([`Changes`]).
//!
//! Synchronous, no daemon: chroot with a reduced capability set as root where namespaces are
//! refused (an unprivileged container), mount/pid/net/ipc/uts namespaces and pivot_root as root
//! on a VM, a user namespace as a normal user. docs/sandbox.md describes the modes for users.
//! In the namespaces mode a root may also be an overlay of layer directories made once
//! ([`make_layer_dir`], [`Rootfs::overlay_in`]), so that nothing is extracted per step.

mod changes;
mod diff;
mod error;
mod layer;
mod mode;
mod overlay;
mod overlay_diff;
mod rootfs;
mod run;
mod scoped;
mod snapshot;
mod sys;

pub use changes::{Change, ChangeKind, ChangeStatus, Changes, DropMatch, DropRule, DROPPED};
pub use error::SandboxError;
pub use mode::{detect, Mode, ModeChoice};
pub use overlay::{overlay_available, RootChoice};
pub use rootfs::{make_layer_dir, Removal, Rootfs};
pub use run::{run, ExitStatus, Output, RunOutcome, Step, Stream, DEFAULT_PATH};
