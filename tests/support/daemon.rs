//! Root daemons the tests start for themselves ([`crate::containerd`], [`crate::docker`]), boxed
//! so that nothing of theirs outlives the test, even one that is killed: each runs as the first
//! process of a new PID namespace, so the kernel kills every process it started (detached shims,
//! containers) when it dies, and in a new mount namespace with a private `/run`, so its mounts and
//! the state it keeps in host-wide `/run` paths vanish with it. That first process gets SIGKILL
//! when the test's thread ends (`PR_SET_PDEATHSIG`). Also: a generous hang guard on waiting and
//! on client commands, and the overlayfs probe that picks a snapshotter or storage driver.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools;

/// How long a daemon may take to answer, and a client command to finish. Generous on purpose: a
/// loaded 2-core runner is slow, and this only turns a hang into a failure.
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// Mounts a tmpfs on `/run` (the new mount namespace's own), then execs the daemon: containerd
/// and dockerd keep shim sockets, runc state and plugin sockets under fixed `/run` paths.
const PRIVATE_RUN: &str = r#"mount -t tmpfs -o mode=0755 layerize-run /run && exec "$@""#;

/// A daemon process started by a test, with its private directory.
pub struct Daemon {
    name: &'static str,
    /// `unshare` or `nsenter`, whose one child is the daemon.
    child: Child,
    dir: TempDir,
}

impl Daemon {
    /// Starts `daemon` in new PID and mount namespaces (with their own `/proc` and `/run`), its
    /// output in `NAME.log` in `dir`.
    pub fn start(name: &'static str, daemon: &Command, dir: TempDir) -> Daemon {
        let mut unshare = tools::command("unshare");
        unshare
            .args(["--fork", "--kill-child", "--pid", "--mount-proc"])
            .args(["--propagation", "private", "--"])
            .arg(tools::require("sh"))
            .args(["-c", PRIVATE_RUN, "sh"]);
        Daemon::spawn(name, with_inner(unshare, daemon), dir)
    }

    /// Starts `daemon` inside the namespaces of `host`, so it sees the host daemon's mounts (as
    /// dockerd must see containerd's) and dies with it.
    pub fn start_beside(
        host: &Daemon,
        name: &'static str,
        daemon: &Command,
        dir: TempDir,
    ) -> Daemon {
        let target = host
            .inner_pid()
            .unwrap_or_else(|| panic!("{} is not running", host.name));
        let mut nsenter = tools::command("nsenter");
        nsenter
            .arg("--target")
            .arg(target.to_string())
            .args(["--mount", "--pid", "--"]);
        Daemon::spawn(name, with_inner(nsenter, daemon), dir)
    }

    fn spawn(name: &'static str, mut command: Command, dir: TempDir) -> Daemon {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log")))
            .unwrap_or_else(|err| panic!("create the {name} log: {err}"));
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        let child =
            crate::children::spawn(command).unwrap_or_else(|err| panic!("start {name}: {err}"));
        Daemon { name, child, dir }
    }

    /// The daemon's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the daemon has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir().join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Polls `ready` until it holds; panics with the log when the daemon exits first or
    /// [`HANG_GUARD`] passes.
    pub fn wait_until_ready(&mut self, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the daemon") {
                panic!(
                    "{} exited ({status}) before it was ready; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {HANG_GUARD:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a client `command` of this daemon, which must succeed within [`HANG_GUARD`]; returns
    /// its stdout. A failure shows the client's output and the daemon's log.
    pub fn run_client(&self, command: &mut Command) -> String {
        let output = output_with_hang_guard(command);
        assert!(
            output.status.success(),
            "{command:?} failed ({}):\nstdout: {}\nstderr: {}\n{} log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.name,
            self.log_text()
        );
        String::from_utf8(output.stdout).expect("a client printed non-UTF-8 output")
    }

    /// The daemon itself (host PID): the one child of `unshare` or `nsenter`.
    fn inner_pid(&self) -> Option<libc::pid_t> {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL, not a graceful stop: everything the daemon made is thrown away. When the first
        // process of a PID namespace dies the kernel kills the rest and reaps them before that
        // process is reaped, so once `unshare` (or `nsenter`) has been waited for, no process of
        // the daemon is left and its mount namespace, with every mount in it, is gone.
        match self.inner_pid() {
            // SAFETY: kill(2) of our child's child, which stays a zombie until its parent waits.
            Some(inner) => unsafe {
                libc::kill(inner, libc::SIGKILL);
            },
            None => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// `wrapper` followed by the program and arguments of `inner`.
fn with_inner(mut wrapper: Command, inner: &Command) -> Command {
    wrapper.arg(inner.get_program()).args(inner.get_args());
    wrapper
}

/// Runs a client `command` to completion, killed and reported after [`HANG_GUARD`].
pub fn output_with_hang_guard(command: &mut Command) -> Output {
    crate::children::die_with_test_process(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start {command:?}: {err}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll a client command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {HANG_GUARD:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Whether an overlay filesystem mounts in `dir` (it does not when `dir` is itself on overlayfs,
/// as in a container), which decides between the overlay and the copying snapshotter or driver.
pub fn overlay_mounts_in(dir: &Path) -> bool {
    let probe = dir.join("overlay-probe");
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|name| {
        let path = probe.join(name);
        std::fs::create_dir_all(&path).expect("create the overlay probe dirs");
        c_path(&path)
    });
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.to_str().expect("UTF-8 temp path"),
        upper.to_str().expect("UTF-8 temp path"),
        work.to_str().expect("UTF-8 temp path"),
    );
    let options = std::ffi::CString::new(options).expect("no NUL in mount options");
    // SAFETY: valid NUL-terminated strings that outlive the calls.
    let mounted = unsafe {
        let overlay = c"overlay".as_ptr();
        let mounted = libc::mount(
            overlay,
            merged.as_ptr(),
            overlay,
            0,
            options.as_ptr().cast(),
        ) == 0;
        if mounted {
            libc::umount2(merged.as_ptr(), libc::MNT_DETACH);
        }
        mounted
    };
    std::fs::remove_dir_all(&probe).expect("remove the overlay probe");
    mounted
}

fn c_path(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path")
}
