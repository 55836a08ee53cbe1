//! Running one build step in a [`Rootfs`]: preparing the root, snapshotting it, running the
//! command isolated by the chosen [`Mode`] with its output streamed, and diffing the result
//! into [`Changes`].

mod child;
mod execute;
mod prepare;
mod users;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::diff::{diff, OwnerView};
use crate::overlay::Overlay;
use crate::overlay_diff;
use crate::scoped::resolve;
use crate::{snapshot, ChangeStatus, Changes, Mode, Rootfs, SandboxError};
use child::ChildPlan;
use users::Identity;

/// The PATH argv[0] is looked up in when the step's env has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command to run in the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The full argv, e.g. `["/bin/sh", "-e", "-c", "..."]`; argv[0] is resolved inside the
    /// root (through the env's PATH when it has no `/`).
    pub argv: Vec<String>,
    /// The whole environment (the process's own is not passed on).
    pub env: Vec<(String, String)>,
    /// Absolute path inside the root; created (0755, root) if missing, before the snapshot.
    pub workdir: String,
    /// `name`, `uid`, `uid:gid` or `name:group`, from the rootfs's /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// false: a network namespace with only `lo`; true: the host's network, resolv.conf and
    /// hosts.
    pub network: bool,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its newline; lossy UTF-8; a very long line comes in pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output<'a> {
    pub stream: Stream,
    pub line: &'a str,
}

/// How the step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// What running a step gave besides its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub mode: Mode,
    /// Non-zero is the caller's to turn into an error; `run` itself returns Ok.
    pub status: ExitStatus,
    pub duration: Duration,
    /// false in chroot mode (no network namespace) and for a step with network.
    pub network_isolated: bool,
    pub proc_mounted: bool,
}

/// Runs `step` in `rootfs` with `mode`, calling `on_output` for each line of stdout and stderr
/// as it arrives (stdin is /dev/null). Returns when the step and every process it started are
/// gone, with what it changed. An overlay root runs on a thread of its own, where it is mounted.
pub fn run(
    rootfs: &mut Rootfs,
    step: &Step,
    mode: Mode,
    on_output: &mut (dyn FnMut(Output<'_>) + Send),
) -> Result<(RunOutcome, Changes), SandboxError> {
    let Some(overlay) = rootfs.overlay.clone() else {
        return run_mounted(rootfs, step, mode, on_output, None);
    };
    if mode != Mode::Namespaces {
        return Err(SandboxError::Unavailable(format!(
            "an overlay root needs the namespaces sandbox, not {mode}"
        )));
    }
    overlay.with_mounted(|| run_mounted(rootfs, step, mode, on_output, Some(&overlay)))
}

/// `run` with the root in place: a written root, or an overlay mounted for this thread.
fn run_mounted(
    rootfs: &mut Rootfs,
    step: &Step,
    mode: Mode,
    on_output: &mut (dyn FnMut(Output<'_>) + Send),
    overlay: Option<&Overlay>,
) -> Result<(RunOutcome, Changes), SandboxError> {
    let root = rootfs.path().to_path_buf();
    let Some(argv0) = step.argv.first() else {
        return Err(SandboxError::Step("argv is empty".into()));
    };
    let identity = match &step.user {
        None => Identity::ROOT,
        Some(spec) => users::lookup(&root, spec)?,
    };
    if mode == Mode::UserNamespace && (identity.uid != 0 || identity.gid != 0) {
        return Err(SandboxError::User {
            user: step.user.clone().unwrap_or_default(),
            reason: format!(
                "is {}:{}, but the userns sandbox maps only root (0:0) without newuidmap: \
                 run as root for the namespaces or chroot sandbox, or drop `user:`",
                identity.uid, identity.gid
            ),
        });
    }
    let mut prepared = prepare::prepare(&root, step, mode)?;
    let program = program_path(&root, argv0, &step.env, &prepared.workdir)?;
    let binds = std::mem::take(&mut prepared.binds);
    let plan = child_plan(
        &root,
        &prepared.workdir,
        binds,
        identity,
        mode,
        step.network,
    )?;

    // An overlay's upper directory holds only what the preparation put there so far.
    let before = snapshot::take(overlay.map_or(&root, |overlay| &overlay.upper))?;
    tracing::info!(%mode, program = %program.display(), network = step.network, "running a step");
    let started = Instant::now();
    let finished = execute::execute(&root, &program, step, plan, on_output)?;
    let duration = started.elapsed();
    let diffing = match overlay {
        Some(overlay) => Diffing::Overlay(overlay),
        None => Diffing::Written(snapshot::take(&root)?),
    };
    for path in &prepared.remove_after {
        crate::rootfs::remove_any(path)?;
    }

    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let owners = match mode {
        Mode::UserNamespace => OwnerView::Mapped {
            uid,
            gid,
            intended: &rootfs.intended_owners,
        },
        Mode::Chroot | Mode::Namespaces => OwnerView::Host,
    };
    let changes = match diffing {
        Diffing::Overlay(overlay) => overlay_diff::diff(overlay, &before, &prepared.excluded)?,
        Diffing::Written(after) => diff(&root, &before, &after, &owners, &prepared.excluded)?,
    };
    forget_reowned(rootfs, &changes);
    let outcome = RunOutcome {
        mode,
        status: finished.status,
        duration,
        network_isolated: mode != Mode::Chroot && !step.network,
        proc_mounted: finished.proc_mounted,
    };
    tracing::info!(
        %mode,
        status = %outcome.status,
        added = changes.added(),
        changed = changes.changed(),
        deleted = changes.deleted(),
        "step finished"
    );
    Ok((outcome, changes))
}

/// What a step's changes are read from once it ran.
enum Diffing<'a> {
    /// The overlay's upper directory.
    Overlay(&'a Overlay),
    /// A written root's snapshot after the step, against the one before.
    Written(snapshot::Snapshot),
}

/// After a step, an intended owner holds only where the change reports it.
fn forget_reowned(rootfs: &mut Rootfs, changes: &Changes) {
    for change in &changes.entries {
        let path = Path::new(&change.path);
        if change.status == ChangeStatus::Deleted {
            rootfs.forget_owners_under(path);
        } else if rootfs
            .intended_owners
            .get(path)
            .is_some_and(|owner| *owner != (change.uid, change.gid))
        {
            rootfs.intended_owners.remove(path);
        }
    }
}

/// argv[0] as an absolute path inside the root: as it is when absolute, against the workdir
/// when relative with a `/`, else the first executable of that name in the env's PATH.
fn program_path(
    root: &Path,
    argv0: &str,
    env: &[(String, String)],
    workdir: &Path,
) -> Result<PathBuf, SandboxError> {
    if argv0.starts_with('/') {
        return Ok(PathBuf::from(argv0));
    }
    if argv0.contains('/') {
        return Ok(workdir.join(argv0));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(argv0);
        let host = root.join(resolve(root, &candidate, true)?);
        let executable = std::fs::metadata(&host).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        });
        if executable {
            return Ok(candidate);
        }
    }
    Err(SandboxError::Step(format!(
        "{argv0:?} is not an executable in the rootfs's PATH ({path})"
    )))
}

fn child_plan(
    root: &Path,
    workdir: &Path,
    binds: Vec<child::Bind>,
    identity: Identity,
    mode: Mode,
    network: bool,
) -> Result<ChildPlan, SandboxError> {
    let cstring =
        |p: &Path| crate::sys::cpath(p).map_err(|e| SandboxError::io("preparing the path", p, e));
    let mut unshare_flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !network {
        unshare_flags |= libc::CLONE_NEWNET;
    }
    let mut id_maps = Vec::new();
    if mode == Mode::UserNamespace {
        unshare_flags |= libc::CLONE_NEWUSER;
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        for (file, content) in [
            ("setgroups", "deny".to_string()),
            ("uid_map", format!("0 {uid} 1")),
            ("gid_map", format!("0 {gid} 1")),
        ] {
            id_maps.push((
                cstring(&Path::new("/proc/self").join(file))?,
                content.into_bytes(),
            ));
        }
    }
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    Ok(ChildPlan {
        mode,
        root: cstring(root)?,
        workdir: cstring(workdir)?,
        identity,
        last_cap,
        status_fd: -1,
        unshare_flags,
        id_maps,
        proc_target: cstring(&root.join("proc"))?,
        binds,
        loopback: (!network).then(child::loopback_request),
    })
}
