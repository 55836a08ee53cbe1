//! Running layerize as a normal user, as CI machines without root do: uid 65534 (`nobody`)
//! through `setpriv`, in a workspace directory that user owns (the build file, `HOME`,
//! `TMPDIR`, the cache dir and the report), and whether this machine lets that user make user
//! namespaces (the `userns` sandbox).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools;

/// The unprivileged user of the normal-user runs (`nobody`).
pub const NOBODY: u32 = 65534;

/// `command` (program, arguments, environment changes, working directory) run as `uid`:`uid`
/// without supplementary groups, through `setpriv`.
pub fn as_user(command: &Command, uid: u32) -> Command {
    let mut wrapped = tools::command("setpriv");
    wrapped
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// One build's own directory, owned by the user who runs it: the build file, `HOME`, `TMPDIR`,
/// the cache dir and the report all live in it, so a normal user can write what it must and
/// each build starts from an empty cache.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A workspace for `uid` (0 for root).
    pub fn new(uid: u32) -> Workspace {
        let dir = crate::scratch_dir();
        for sub in ["cache", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for path in [
            dir.path(),
            &dir.path().join("cache"),
            &dir.path().join("tmp"),
        ] {
            std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
        }
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn report(&self) -> PathBuf {
        self.path().join("report.json")
    }

    /// `layerize` (from [`crate::layerize!`]) `build -c FILE --cache-dir ... --report ... ARGS`
    /// in this workspace, not run (and not yet as anyone in particular: see [`as_user`]).
    pub fn build_command(&self, mut command: Command, file: &Path, args: &[&str]) -> Command {
        command
            .arg("build")
            .arg("-c")
            .arg(file)
            .arg("--cache-dir")
            .arg(self.path().join("cache"))
            .arg("--report")
            .arg(self.report())
            .args(args)
            .env("HOME", self.path())
            .env("TMPDIR", self.path().join("tmp"))
            .current_dir(self.path());
        command
    }
}

/// Whether [`NOBODY`] may make a user namespace and map itself to root in it.
pub fn user_namespaces_allowed() -> bool {
    let mut unshare = tools::command("unshare");
    unshare.args(["--user", "--map-root-user", "true"]);
    as_user(&unshare, NOBODY)
        .output()
        .expect("start setpriv")
        .status
        .success()
}

/// Whether the normal-user part `what` of a test can run: where user namespaces are allowed.
/// A CI machine must allow them (under `CI=true` their absence fails the test); elsewhere the
/// part is left out, saying so.
pub fn user_namespaces_for(what: &str) -> bool {
    if user_namespaces_allowed() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "unprivileged user namespaces are not allowed on this CI machine (CI=true): {what} needs them"
    );
    eprintln!("unprivileged user namespaces are not allowed here: {what} is left out");
    false
}
