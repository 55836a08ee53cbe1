//! A seccomp filter that takes namespaces and mounts away from a child process, as Docker's
//! default profile does for a container without CAP_SYS_ADMIN (a GitLab or Kubernetes runner):
//! the sandbox's mode (a), root with chroot alone, is tested under it.
//!
//! Refused with EPERM: `unshare`, `setns`, `mount`, `umount2`, `pivot_root`, the new mount API
//! (`open_tree`, `move_mount`, `fsopen`, `fsmount`, `fsconfig`, `fspick`) and `clone` with any
//! `CLONE_NEW*` flag. `clone3` fails with ENOSYS, because a filter cannot look into its argument
//! struct: glibc then falls back to `clone`, as it does under Docker. Everything else is allowed.
//! A process of another architecture (or the x32 ABI) than the one the numbers are for is killed,
//! so that no other syscall table slips past the numbers.

use std::os::unix::process::CommandExt;
use std::process::Command;

use libc::sock_filter;

/// Makes the child of `command` run under the filter: `PR_SET_NO_NEW_PRIVS` (which an
/// unprivileged filter needs and Docker sets too), then the filter, both inherited by everything
/// it starts. Panics on architectures other than x86_64 and aarch64.
pub fn deny_namespaces(command: &mut Command) -> &mut Command {
    // Built here, before the fork: the closure below only reads it.
    let program = program();
    // SAFETY: the closure runs between fork and exec and makes two prctl calls, which are
    // async-signal-safe, without allocating: `program` was built before the fork.
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr() as *mut sock_filter,
            };
            // prctl is variadic and the kernel reads whole words: pass unsigned longs.
            let (one, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// `AUDIT_ARCH_*` of the architecture the syscall numbers below are for (linux/audit.h:
/// `EM_*` | 64-bit | little-endian).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// On x86_64, x32 syscalls carry this bit in their number and the same `AUDIT_ARCH`.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET` (CLONE_NEWTIME shares its bit with the exit signal in `clone`'s flags).
const CLONE_NEW_ANY: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// The syscalls refused with EPERM outright.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const REFUSED: [libc::c_long; 11] = [
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
];

/// Offsets into `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of `args[0]`, which hold all of `clone`'s namespace flags.
#[cfg(target_endian = "little")]
const ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const ARG0_LOW: u32 = 20;

/// Where a jump goes: the next instruction, or one of the return instructions at the end.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Eperm,
    Enosys,
    Kill,
}

/// The instructions before the returns: jumps name their targets, resolved by [`program`].
enum Step {
    Load(u32),
    JumpIfEqual(u32, To, To),
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    JumpIfAtLeast(u32, To, To),
    JumpIfAnyBit(u32, To, To),
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn steps() -> Vec<Step> {
    let mut steps = vec![
        Step::Load(ARCH),
        Step::JumpIfEqual(AUDIT_ARCH, To::Next, To::Kill),
        Step::Load(NR),
    ];
    #[cfg(target_arch = "x86_64")]
    steps.push(Step::JumpIfAtLeast(X32_SYSCALL_BIT, To::Kill, To::Next));
    for syscall in REFUSED {
        steps.push(Step::JumpIfEqual(syscall as u32, To::Eperm, To::Next));
    }
    steps.extend([
        Step::JumpIfEqual(libc::SYS_clone3 as u32, To::Enosys, To::Next),
        Step::JumpIfEqual(libc::SYS_clone as u32, To::Next, To::Allow),
        Step::Load(ARG0_LOW),
        Step::JumpIfAnyBit(CLONE_NEW_ANY, To::Eperm, To::Allow),
    ]);
    steps
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn steps() -> Vec<Step> {
    panic!("deny_namespaces knows the syscall numbers of x86_64 and aarch64 only")
}

/// The BPF program: [`steps`], then the four returns (allow, EPERM, ENOSYS, kill).
fn program() -> Vec<sock_filter> {
    let steps = steps();
    let returns = [
        libc::SECCOMP_RET_ALLOW,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        libc::SECCOMP_RET_KILL_PROCESS,
    ];
    let first_return = steps.len();
    let offset = |from: usize, to: To| -> u8 {
        let target = match to {
            To::Next => return 0,
            To::Allow => first_return,
            To::Eperm => first_return + 1,
            To::Enosys => first_return + 2,
            To::Kill => first_return + 3,
        };
        u8::try_from(target - from - 1).expect("a BPF jump reaches at most 255 instructions")
    };
    let instruction = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let jump = |op: u32, index: usize, k: u32, yes: To, no: To| {
        let code = libc::BPF_JMP | op | libc::BPF_K;
        instruction(code, k, offset(index, yes), offset(index, no))
    };
    let mut program: Vec<sock_filter> = steps
        .iter()
        .enumerate()
        .map(|(index, step)| match *step {
            Step::Load(at) => instruction(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, at, 0, 0),
            Step::JumpIfEqual(k, yes, no) => jump(libc::BPF_JEQ, index, k, yes, no),
            Step::JumpIfAtLeast(k, yes, no) => jump(libc::BPF_JGE, index, k, yes, no),
            Step::JumpIfAnyBit(k, yes, no) => jump(libc::BPF_JSET, index, k, yes, no),
        })
        .collect();
    program.extend(
        returns
            .into_iter()
            .map(|action| instruction(libc::BPF_RET | libc::BPF_K, action, 0, 0)),
    );
    program
}

#[cfg(test)]
mod tests {
    use std::process::Output;

    use super::*;
    use crate::{scratch_dir, tools};

    /// The filter itself: as root under it, user and mount namespaces, `clone` with a namespace
    /// flag and mounts are refused with EPERM and `clone3` fails with ENOSYS; `chroot` and plain
    /// forks still work. Without it, the same root makes both namespaces here.
    #[test]
    fn the_filter_refuses_namespaces_and_mounts_but_not_chroot_or_fork() {
        let filtered = |tool: &str, args: &[&str]| -> Output {
            let mut command = tools::command(tool);
            command.args(args);
            tools::output(deny_namespaces(&mut command))
        };
        for args in [["-U", "true"], ["-m", "true"]] {
            let plain = tools::output(tools::command("unshare").args(args));
            assert!(
                plain.status.success(),
                "unshare {args:?} fails without the filter too: {}",
                tools::describe_output(&plain)
            );
            let refused = filtered("unshare", &args);
            assert!(
                !refused.status.success(),
                "unshare {args:?} worked under the filter"
            );
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(
                stderr.contains("Operation not permitted"),
                "unshare {args:?}: {stderr}"
            );
        }

        // Raw syscalls from perl print "RESULT ERRNO": -1 and EPERM / ENOSYS from the filter.
        let syscall = |number: libc::c_long, args: &str| -> String {
            let script = format!("my $r = syscall({number}, {args}); print $r, ' ', $! + 0;");
            let output = filtered("perl", &["-e", &script]);
            assert!(
                output.status.success(),
                "perl: {}",
                tools::describe_output(&output)
            );
            String::from_utf8(output.stdout).unwrap()
        };
        let new_user_and_sigchld = libc::CLONE_NEWUSER | libc::SIGCHLD;
        assert_eq!(
            syscall(
                libc::SYS_clone,
                &format!("{new_user_and_sigchld}, 0, 0, 0, 0")
            ),
            format!("-1 {}", libc::EPERM)
        );
        assert_eq!(
            syscall(libc::SYS_clone3, "0, 0"),
            format!("-1 {}", libc::ENOSYS)
        );

        let mount_point = scratch_dir();
        let mount_arg = mount_point.path().to_str().unwrap();
        let mounted = filtered("mount", &["-t", "tmpfs", "layerize-test", mount_arg]);
        assert!(!mounted.status.success(), "mount worked under the filter");

        let root = scratch_dir();
        std::fs::create_dir(root.path().join("bin")).unwrap();
        std::fs::copy(tools::require("busybox"), root.path().join("bin/busybox")).unwrap();
        let root_arg = root.path().to_str().unwrap();
        let chrooted = filtered("chroot", &[root_arg, "/bin/busybox", "true"]);
        assert!(
            chrooted.status.success(),
            "chroot: {}",
            tools::describe_output(&chrooted)
        );
        let forked = filtered(
            "chroot",
            &[
                root_arg,
                "/bin/busybox",
                "sh",
                "-c",
                "/bin/busybox true | /bin/busybox cat; echo forked",
            ],
        );
        assert!(
            forked.status.success(),
            "fork: {}",
            tools::describe_output(&forked)
        );
        assert_eq!(String::from_utf8_lossy(&forked.stdout), "forked\n");
    }
}
