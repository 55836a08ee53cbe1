//! What the forked child does before `exec`, per mode, with raw libc calls only (the parent may
//! have threads: no allocation, no locks between fork and exec). Everything it needs — paths,
//! maps, the interface request — is built into a [`ChildPlan`] before spawning.
//!
//! Failures are reported through a status pipe as `[step, errno]` (see [`SetupStep`]), so the
//! parent can name the step; the pipe is close-on-exec, so its EOF means "exec'd or died".

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use super::users::Identity;
use crate::mode::{errno, write_proc_file};
use crate::Mode;

/// The steps a child reports on. `ProcMounted`/`ProcRefused` are information, the rest fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum SetupStep {
    ProcMounted = 0,
    ProcRefused,
    Setsid,
    Chroot,
    Unshare,
    IdMaps,
    MakePrivate,
    Fork,
    DeathSignal,
    BindRoot,
    BindFile,
    Loopback,
    Hostname,
    PivotRoot,
    Workdir,
    DropCapabilities,
    SwitchUser,
    NoNewPrivs,
}

impl SetupStep {
    const ALL: [SetupStep; 18] = [
        SetupStep::ProcMounted,
        SetupStep::ProcRefused,
        SetupStep::Setsid,
        SetupStep::Chroot,
        SetupStep::Unshare,
        SetupStep::IdMaps,
        SetupStep::MakePrivate,
        SetupStep::Fork,
        SetupStep::DeathSignal,
        SetupStep::BindRoot,
        SetupStep::BindFile,
        SetupStep::Loopback,
        SetupStep::Hostname,
        SetupStep::PivotRoot,
        SetupStep::Workdir,
        SetupStep::DropCapabilities,
        SetupStep::SwitchUser,
        SetupStep::NoNewPrivs,
    ];

    pub fn from_code(code: i32) -> Option<SetupStep> {
        SetupStep::ALL.get(usize::try_from(code).ok()?).copied()
    }

    pub fn describe(self) -> &'static str {
        match self {
            SetupStep::ProcMounted => "mounted /proc",
            SetupStep::ProcRefused => "mount(proc) was refused",
            SetupStep::Setsid => "setsid",
            SetupStep::Chroot => "chroot into the rootfs",
            SetupStep::Unshare => "unshare (new namespaces)",
            SetupStep::IdMaps => "writing /proc/self/{setgroups,uid_map,gid_map}",
            SetupStep::MakePrivate => "mount(\"/\", MS_REC|MS_PRIVATE)",
            SetupStep::Fork => "fork into the new pid namespace",
            SetupStep::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            SetupStep::BindRoot => "bind-mounting the rootfs on itself",
            SetupStep::BindFile => "bind-mounting a host file (/dev node, resolv.conf or hosts)",
            SetupStep::Loopback => "bringing up lo (ioctl SIOCSIFFLAGS)",
            SetupStep::Hostname => "sethostname",
            SetupStep::PivotRoot => "pivot_root into the rootfs and detaching the old root",
            SetupStep::Workdir => "chdir to the workdir",
            SetupStep::DropCapabilities => "dropping capabilities (PR_CAPBSET_DROP, capset)",
            SetupStep::SwitchUser => "setgroups/setgid/setuid to the step's user",
            SetupStep::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
        }
    }
}

/// The capabilities a step keeps: enough for package managers (chown, permission overrides,
/// switching to service users, file capabilities), nothing that reaches past the rootfs
/// (CAP_SYS_CHROOT: the double-chroot escape; CAP_DAC_READ_SEARCH: open_by_handle_at;
/// CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_PTRACE, CAP_KILL, CAP_SYS_MODULE, CAP_SYS_RAWIO, ...).
pub(crate) const KEPT_CAPABILITIES: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    10, // CAP_NET_BIND_SERVICE
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// A file bind-mounted from the host in the namespaced modes.
pub(crate) struct Bind {
    pub source: CString,
    pub target: CString,
    pub read_only: bool,
}

/// Everything the child needs, prepared before the fork.
pub(crate) struct ChildPlan {
    pub mode: Mode,
    pub root: CString,
    pub workdir: CString,
    pub identity: Identity,
    pub last_cap: u32,
    pub status_fd: RawFd,
    // Namespaced modes only:
    pub unshare_flags: libc::c_int,
    /// setgroups, uid_map, gid_map contents (user namespace only).
    pub id_maps: Vec<(CString, Vec<u8>)>,
    pub proc_target: CString,
    pub binds: Vec<Bind>,
    pub loopback: Option<InterfaceFlags>,
}

const HOSTNAME: &[u8] = b"layerize";
/// The grandchild's exit code when its setup failed (the status pipe says why).
pub(crate) const SETUP_FAILED: i32 = 125;

impl ChildPlan {
    fn report(&self, step: SetupStep, errno: i32) {
        let msg = [step as i32, errno];
        // SAFETY: writing a plain array to our pipe end; nothing to do if it fails.
        unsafe {
            libc::write(
                self.status_fd,
                msg.as_ptr().cast(),
                std::mem::size_of_val(&msg),
            )
        };
    }

    /// Checks a raw return code; on failure reports `step` and returns the error for std.
    fn check(&self, step: SetupStep, rc: libc::c_long) -> io::Result<()> {
        if rc < 0 {
            let e = errno();
            self.report(step, e);
            return Err(io::Error::from_raw_os_error(e));
        }
        Ok(())
    }

    /// The `pre_exec` body.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY (whole fn): raw syscalls with pointers into `self`, which outlives them.
        self.check(SetupStep::Setsid, unsafe { libc::setsid() } as libc::c_long)?;
        match self.mode {
            Mode::Chroot => {
                self.check(
                    SetupStep::Chroot,
                    unsafe { libc::chroot(self.root.as_ptr()) }.into(),
                )?;
            }
            Mode::Namespaces | Mode::UserNamespace => self.enter_namespaces()?,
        }
        self.check(
            SetupStep::Workdir,
            unsafe { libc::chdir(self.workdir.as_ptr()) }.into(),
        )?;
        self.restrict()
    }

    fn enter_namespaces(&self) -> io::Result<()> {
        // SAFETY (whole fn): as in `enter`.
        self.check(
            SetupStep::Unshare,
            unsafe { libc::unshare(self.unshare_flags) }.into(),
        )?;
        for (path, content) in &self.id_maps {
            if let Err(e) = write_proc_file(path, content) {
                self.report(SetupStep::IdMaps, e);
                return Err(io::Error::from_raw_os_error(e));
            }
        }
        let rc = unsafe { mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE) };
        self.check(SetupStep::MakePrivate, rc.into())?;
        // The intermediate child dies with the thread that spawned it, and takes the
        // grandchild (pid 1 of the namespace, so every process of the step) with it.
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        self.check(SetupStep::DeathSignal, rc.into())?;
        let pid = unsafe { libc::fork() };
        self.check(SetupStep::Fork, pid.into())?;
        if pid > 0 {
            self.wait_and_exit(pid);
        }
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        self.fatal(SetupStep::DeathSignal, rc.into());
        let bind = libc::MS_BIND | libc::MS_REC;
        let rc = unsafe { mount(Some(&self.root), &self.root, None, bind) };
        self.fatal(SetupStep::BindRoot, rc.into());
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let rc = unsafe { mount(Some(c"proc"), &self.proc_target, Some(c"proc"), flags) };
        if rc < 0 {
            self.report(SetupStep::ProcRefused, errno());
        } else {
            self.report(SetupStep::ProcMounted, 0);
        }
        for b in &self.binds {
            let rc = unsafe { mount(Some(&b.source), &b.target, None, libc::MS_BIND) };
            self.fatal(SetupStep::BindFile, rc.into());
            if b.read_only {
                let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                let rc = unsafe { mount(None, &b.target, None, flags) };
                self.fatal(SetupStep::BindFile, rc.into());
            }
        }
        if let Some(request) = &self.loopback {
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            self.fatal(SetupStep::Loopback, fd.into());
            let rc =
                unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, request as *const InterfaceFlags) };
            self.fatal(SetupStep::Loopback, rc.into());
            unsafe { libc::close(fd) };
        }
        let rc = unsafe { libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) };
        self.fatal(SetupStep::Hostname, rc.into());
        // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the
        // host's filesystem unreachable from inside.
        self.fatal(
            SetupStep::PivotRoot,
            unsafe { libc::chdir(self.root.as_ptr()) }.into(),
        );
        let dot = c".".as_ptr();
        let rc = unsafe { libc::syscall(libc::SYS_pivot_root, dot, dot) };
        self.fatal(SetupStep::PivotRoot, rc);
        self.fatal(
            SetupStep::PivotRoot,
            unsafe { libc::umount2(dot, libc::MNT_DETACH) }.into(),
        );
        self.fatal(
            SetupStep::PivotRoot,
            unsafe { libc::chdir(c"/".as_ptr()) }.into(),
        );
        Ok(())
    }

    /// In the grandchild a failure cannot go back through std (its parent is the intermediate):
    /// report it and exit.
    fn fatal(&self, step: SetupStep, rc: libc::c_long) {
        if rc < 0 {
            self.report(step, errno());
            // SAFETY: leaving the forked child without unwinding.
            unsafe { libc::_exit(SETUP_FAILED) };
        }
    }

    /// The intermediate: passes the grandchild's exit status on as its own.
    fn wait_and_exit(&self, pid: libc::pid_t) -> ! {
        // SAFETY (whole fn): raw calls in the forked child, which never returns from here.
        unsafe {
            // Holding no pipe end: std's exec-error pipe and our status pipe then reach EOF as
            // soon as the grandchild execs.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) < 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
            }
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if errno() != libc::EINTR {
                    libc::_exit(SETUP_FAILED);
                }
            }
            if libc::WIFSIGNALED(status) {
                let signal = libc::WTERMSIG(status);
                libc::prctl(libc::PR_SET_PDEATHSIG, 0);
                libc::signal(signal, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::kill(libc::getpid(), signal);
                libc::_exit(128 + signal);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
    }

    /// Capabilities down to [`KEPT_CAPABILITIES`], the step's user, no new privileges.
    fn restrict(&self) -> io::Result<()> {
        let keep: u64 = KEPT_CAPABILITIES.iter().fold(0, |m, c| m | 1 << c);
        // SAFETY (whole fn): raw syscalls with pointers to locals and `self`.
        for cap in 0..=self.last_cap {
            if keep & (1 << cap) == 0 {
                let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) };
                if rc < 0 && errno() != libc::EINVAL {
                    self.check(SetupStep::DropCapabilities, rc.into())?;
                }
            }
        }
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        self.check(SetupStep::DropCapabilities, rc.into())?;
        let id = &self.identity;
        // A user namespace made without newgidmap has setgroups denied and one group.
        if self.mode != Mode::UserNamespace {
            let rc = unsafe { libc::setgroups(id.groups.len(), id.groups.as_ptr()) };
            self.check(SetupStep::SwitchUser, rc.into())?;
        }
        self.check(
            SetupStep::SwitchUser,
            unsafe { libc::setgid(id.gid) }.into(),
        )?;
        self.check(
            SetupStep::SwitchUser,
            unsafe { libc::setuid(id.uid) }.into(),
        )?;
        if id.uid == 0 {
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let low = keep as u32;
            let high = (keep >> 32) as u32;
            let data = [
                CapData {
                    effective: low,
                    permitted: low,
                    inheritable: 0,
                },
                CapData {
                    effective: high,
                    permitted: high,
                    inheritable: 0,
                },
            ];
            let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
            self.check(SetupStep::DropCapabilities, rc)?;
        }
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        self.check(SetupStep::NoNewPrivs, rc.into())
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `mount(2)` with optional source and fstype and no data.
///
/// # Safety
/// Raw syscall; the strings must be valid for the call.
unsafe fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
) -> libc::c_int {
    libc::mount(
        source.map_or(std::ptr::null(), |s| s.as_ptr()),
        target.as_ptr(),
        fstype.map_or(std::ptr::null(), |s| s.as_ptr()),
        flags,
        std::ptr::null(),
    )
}

/// `struct ifreq` as SIOCSIFFLAGS reads it: the name and the flags of its union (libc's own
/// type holds a pointer in the union, which keeps it from being moved into the child closure).
#[repr(C)]
pub(crate) struct InterfaceFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest_of_union: [u8; 22],
}

const _: () = assert!(std::mem::size_of::<InterfaceFlags>() == std::mem::size_of::<libc::ifreq>());

/// The interface request that sets `lo` up and running.
pub(crate) fn loopback_request() -> InterfaceFlags {
    let mut name = [0; libc::IFNAMSIZ];
    name[0] = b'l' as libc::c_char;
    name[1] = b'o' as libc::c_char;
    InterfaceFlags {
        name,
        flags: (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short,
        _rest_of_union: [0; 22],
    }
}
