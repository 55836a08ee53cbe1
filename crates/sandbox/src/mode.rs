//! Sandbox modes and choosing one: what this process may do is probed once (in forked
//! children, so the process itself is untouched), and an unusable choice is an error that says
//! what was tried, what failed and what would fix it.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::SandboxError;

/// How a step is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Root without namespaces (a container with Docker's default seccomp): chroot, a reduced
    /// capability set, no network isolation, no /proc.
    Chroot,
    /// Root with mount, pid, network, ipc and uts namespaces and pivot_root.
    Namespaces,
    /// A normal user in a user namespace of its own, as root mapped to itself.
    UserNamespace,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Chroot => "chroot",
            Mode::Namespaces => "namespaces",
            Mode::UserNamespace => "userns",
        })
    }
}

/// What the user asked for: one mode, or whichever works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModeChoice {
    #[default]
    Auto,
    Chroot,
    Namespaces,
    UserNamespace,
}

impl FromStr for ModeChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ModeChoice::Auto),
            "chroot" => Ok(ModeChoice::Chroot),
            "namespaces" => Ok(ModeChoice::Namespaces),
            "userns" => Ok(ModeChoice::UserNamespace),
            other => Err(format!(
                "unknown sandbox mode {other:?}: expected auto, chroot, namespaces or userns"
            )),
        }
    }
}

/// Why one probe failed: the syscall and its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeFailure {
    pub syscall: &'static str,
    pub errno: i32,
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.errno);
        write!(f, "{} failed: {text}", self.syscall)
    }
}

/// What each mode's probe found.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    pub is_root: bool,
    pub namespaces: Result<(), ProbeFailure>,
    pub chroot: Result<(), ProbeFailure>,
    pub user_namespace: Result<(), ProbeFailure>,
    /// `/proc/sys/user/max_user_namespaces`, for the error message.
    pub max_user_namespaces: Option<String>,
}

static PROBES: OnceLock<Probes> = OnceLock::new();

/// Picks the mode for `choice`: root -> Namespaces if the namespaces work, else Chroot if
/// chroot works; not root -> UserNamespace if user namespaces work. An explicit choice is
/// only checked.
pub fn detect(choice: ModeChoice) -> Result<Mode, SandboxError> {
    let probes = PROBES.get_or_init(run_probes);
    let mode = pick(choice, probes).map_err(SandboxError::Unavailable)?;
    tracing::debug!(%mode, ?choice, "sandbox mode");
    Ok(mode)
}

pub(crate) fn pick(choice: ModeChoice, probes: &Probes) -> Result<Mode, String> {
    let namespaces = || {
        if !probes.is_root {
            return Err(
                "the namespaces sandbox needs root (this process is not root): use \
                        userns, or run as root"
                    .to_string(),
            );
        }
        probes
            .namespaces
            .clone()
            .map(|()| Mode::Namespaces)
            .map_err(|f| {
                format!(
                    "the namespaces sandbox is refused ({f}; a container with Docker's default \
                 seccomp profile refuses unshare and mount): use chroot there, or run on a VM \
                 or a privileged container"
                )
            })
    };
    let chroot = || {
        if !probes.is_root {
            return Err(
                "the chroot sandbox needs root (this process is not root): use \
                        userns, or run as root"
                    .to_string(),
            );
        }
        probes.chroot.clone().map(|()| Mode::Chroot).map_err(|f| {
            format!("the chroot sandbox is refused ({f}): it needs root with CAP_SYS_CHROOT")
        })
    };
    let user_namespace = || {
        probes
            .user_namespace
            .clone()
            .map(|()| Mode::UserNamespace)
            .map_err(|f| {
                let max = probes
                    .max_user_namespaces
                    .as_deref()
                    .unwrap_or("unreadable");
                format!(
                    "user namespaces are refused ({f}; /proc/sys/user/max_user_namespaces is \
                     {max}, or a seccomp filter or AppArmor forbids them): run as root for the \
                     chroot sandbox, or allow user namespaces"
                )
            })
    };
    match choice {
        ModeChoice::Chroot => chroot(),
        ModeChoice::Namespaces => namespaces(),
        ModeChoice::UserNamespace => user_namespace(),
        ModeChoice::Auto if probes.is_root => namespaces().or_else(|ns| {
            chroot().map_err(|ch| format!("no sandbox works as root: {ns}; and {ch}"))
        }),
        ModeChoice::Auto => user_namespace().map_err(|u| format!("no sandbox works: {u}")),
    }
}

fn run_probes() -> Probes {
    const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let slash = CString::new("/").expect("no NUL");
    let maps = [
        (
            CString::new("/proc/self/setgroups").expect("no NUL"),
            b"deny".to_vec(),
        ),
        (
            CString::new("/proc/self/uid_map").expect("no NUL"),
            format!("0 {uid} 1").into_bytes(),
        ),
        (
            CString::new("/proc/self/gid_map").expect("no NUL"),
            format!("0 {gid} 1").into_bytes(),
        ),
    ];
    let private_root = || -> Result<(), ProbeFailure> {
        // SAFETY: raw syscalls with valid pointers, in the forked probe child.
        raw("mount(\"/\", MS_REC|MS_PRIVATE)", unsafe {
            libc::mount(
                std::ptr::null(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })
    };
    let namespaces = in_child(|| {
        // SAFETY: unshare only affects the probe child.
        raw(
            "unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS)",
            unsafe { libc::unshare(NAMESPACES) },
        )?;
        private_root()
    });
    let chroot = in_child(|| {
        // SAFETY: chroot("/") changes nothing and only in the probe child.
        raw("chroot(\"/\")", unsafe { libc::chroot(slash.as_ptr()) })
    });
    let user_namespace = in_child(|| {
        // SAFETY: as above; the map files are written with pre-built buffers.
        raw(
            "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS)",
            unsafe { libc::unshare(libc::CLONE_NEWUSER | NAMESPACES) },
        )?;
        for (path, content) in &maps {
            write_proc_file(path, content).map_err(|errno| ProbeFailure {
                syscall: "writing /proc/self/{setgroups,uid_map,gid_map}",
                errno,
            })?;
        }
        private_root()
    });
    let probes = Probes {
        is_root: uid == 0,
        namespaces,
        chroot,
        user_namespace,
        max_user_namespaces: std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .map(|s| s.trim().to_string()),
    };
    tracing::debug!(?probes, "sandbox probes");
    probes
}

fn raw(syscall: &'static str, rc: libc::c_int) -> Result<(), ProbeFailure> {
    if rc < 0 {
        Err(ProbeFailure {
            syscall,
            errno: errno(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes `content` to a /proc file with raw calls (usable after fork). Returns the errno.
pub(crate) fn write_proc_file(path: &CString, content: &[u8]) -> Result<(), i32> {
    // SAFETY: valid NUL-terminated path and a buffer of `content.len()` bytes.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let n = libc::write(fd, content.as_ptr().cast(), content.len());
        let err = errno();
        libc::close(fd);
        if n != content.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// Runs `attempt` in a forked child and reports its failure through a pipe. The child only
/// makes raw syscalls (the process may have threads), so `attempt` must too.
fn in_child(attempt: impl Fn() -> Result<(), ProbeFailure>) -> Result<(), ProbeFailure> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(ProbeFailure {
            syscall: "pipe2",
            errno: errno(),
        });
    }
    // The syscall names are &'static str: the child sends the pointer and length, which are
    // valid in the parent's identical address space.
    // SAFETY: fork; the child only makes async-signal-safe calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match attempt() {
            Ok(()) => 0,
            Err(failure) => {
                let msg: [usize; 3] = [
                    failure.syscall.as_ptr() as usize,
                    failure.syscall.len(),
                    failure.errno as usize,
                ];
                // SAFETY: writing a plain array to our pipe end.
                unsafe { libc::write(fds[1], msg.as_ptr().cast(), std::mem::size_of_val(&msg)) };
                1
            }
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut msg = [0usize; 3];
    // SAFETY: reading at most the array's size into it.
    let n = unsafe { libc::read(fds[0], msg.as_mut_ptr().cast(), std::mem::size_of_val(&msg)) };
    // SAFETY: closing the read end; reaping the child we forked.
    unsafe {
        libc::close(fds[0]);
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    if pid < 0 {
        return Err(ProbeFailure {
            syscall: "fork",
            errno: errno(),
        });
    }
    if n == std::mem::size_of_val(&msg) as isize {
        // SAFETY: the child sent the pointer and length of a &'static str of this binary.
        let syscall = unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(msg[0] as *const u8, msg[1]))
        };
        return Err(ProbeFailure {
            syscall,
            errno: msg[2] as i32,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(is_root: bool, ok: bool) -> Probes {
        let fail = |syscall| ProbeFailure {
            syscall,
            errno: libc::EPERM,
        };
        let result = |syscall| if ok { Ok(()) } else { Err(fail(syscall)) };
        Probes {
            is_root,
            namespaces: result("unshare(CLONE_NEWNS|...)"),
            chroot: result("chroot(\"/\")"),
            user_namespace: result("unshare(CLONE_NEWUSER|...)"),
            max_user_namespaces: Some("0".into()),
        }
    }

    #[test]
    fn choice_parses_and_mode_prints() {
        assert_eq!(
            "userns".parse::<ModeChoice>(),
            Ok(ModeChoice::UserNamespace)
        );
        assert_eq!("auto".parse::<ModeChoice>(), Ok(ModeChoice::Auto));
        assert!("docker"
            .parse::<ModeChoice>()
            .unwrap_err()
            .contains("expected auto"));
        assert_eq!(Mode::UserNamespace.to_string(), "userns");
        assert_eq!(Mode::Namespaces.to_string(), "namespaces");
    }

    #[test]
    fn auto_prefers_namespaces_as_root_then_chroot() {
        assert_eq!(
            pick(ModeChoice::Auto, &probes(true, true)),
            Ok(Mode::Namespaces)
        );
        let mut p = probes(true, true);
        p.namespaces = Err(ProbeFailure {
            syscall: "unshare",
            errno: libc::EPERM,
        });
        assert_eq!(pick(ModeChoice::Auto, &p), Ok(Mode::Chroot));
        assert_eq!(
            pick(ModeChoice::Auto, &probes(false, true)),
            Ok(Mode::UserNamespace)
        );
    }

    #[test]
    fn unavailable_messages_say_what_failed_and_what_fixes_it() {
        let err = pick(ModeChoice::UserNamespace, &probes(false, false)).unwrap_err();
        assert!(err.contains("user namespaces are refused"), "{err}");
        assert!(
            err.contains("unshare(CLONE_NEWUSER|...) failed: Operation not permitted"),
            "{err}"
        );
        assert!(err.contains("max_user_namespaces is 0"), "{err}");
        assert!(err.contains("run as root for the chroot sandbox"), "{err}");

        let err = pick(ModeChoice::Auto, &probes(true, false)).unwrap_err();
        assert!(err.contains("no sandbox works as root"), "{err}");
        assert!(err.contains("Docker's default seccomp"), "{err}");
        assert!(err.contains("CAP_SYS_CHROOT"), "{err}");

        let err = pick(ModeChoice::Chroot, &probes(false, true)).unwrap_err();
        assert!(err.contains("needs root"), "{err}");
    }

    #[test]
    fn real_probes_match_what_this_process_is() {
        let probes = run_probes();
        // SAFETY: geteuid cannot fail.
        assert_eq!(probes.is_root, unsafe { libc::geteuid() } == 0);
        if probes.is_root {
            // Root may always chroot unless a seccomp filter stops it; this machine allows it.
            assert_eq!(probes.chroot, Ok(()));
        }
    }
}
