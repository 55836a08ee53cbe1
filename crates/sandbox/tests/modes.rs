//! Running steps in every mode this machine allows: chroot and namespaces as root here, the
//! user namespace by re-running this binary's `userns_*` tests as uid 65534 (setpriv).
//! Each behaviour is one function taking the mode; `mode_tests!` instantiates it per mode.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{busybox_layer, find, portable, rootfs, run_step, script_step, unique, Case};
use layerize_sandbox::{detect, ChangeKind, ChangeStatus, ExitStatus, Mode, ModeChoice, Rootfs};

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The mode for a test, which must be available: a test of a mode is never skipped.
fn available(choice: ModeChoice) -> Mode {
    detect(choice).unwrap_or_else(|e| panic!("{choice:?} must work on this machine: {e}"))
}

fn effects_are_reported_as_layer_entries(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let script = "mkdir -p /opt/a
printf '#!/bin/sh\\necho hi\\n' > /opt/a/hello && chmod 755 /opt/a/hello
sed -i 's/welcome/hello there/' /etc/motd
rm /etc/issue
rm -rf /var/old
mkdir /srv2 && touch /srv2/f && chmod 4755 /srv2/f
ln -s /opt/a/hello /opt/a/link
ln /opt/a/hello /opt/a/hard
rm -rf /srv && mkdir /srv && echo upper > /srv/new
echo dropped > /var/log/build.log
rm -rf /var/log/apt
echo nothing > /dev/null
echo done";
    let (outcome, changes, lines) = run_step(&mut fs, &script_step(script), mode);
    assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
    assert_eq!(outcome.mode, mode);
    assert_eq!(lines, vec!["out: done".to_string()]);
    let paths: Vec<&str> = changes.entries.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/issue",
            "etc/motd",
            "opt",
            "opt/a",
            "opt/a/hard",
            "opt/a/hello",
            "opt/a/link",
            "srv",
            "srv/new",
            "srv2",
            "srv2/f",
            "var/log/apt",
            "var/old"
        ],
        "{changes:#?}"
    );
    let entry = |p| find(&changes, p).unwrap();
    assert_eq!(entry("etc/issue").kind, ChangeKind::Deleted);
    assert_eq!(entry("var/log/apt").kind, ChangeKind::Deleted);
    assert_eq!(entry("var/old").kind, ChangeKind::Deleted);
    assert_eq!(entry("etc/motd").status, ChangeStatus::Changed);
    assert_eq!(entry("opt/a/hello").mode, 0o755);
    assert_eq!((entry("opt/a/hello").uid, entry("opt/a/hello").gid), (0, 0));
    // hello and hard are one inode: the first in path order is the File.
    let ChangeKind::File { host_path, size } = &entry("opt/a/hard").kind else {
        panic!("hard is a file: {:?}", entry("opt/a/hard"));
    };
    assert_eq!(std::fs::read(host_path).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(*size, 18);
    assert!(host_path.starts_with(fs.changed_files_dir()));
    let ChangeKind::File { host_path, .. } = &entry("etc/motd").kind else {
        panic!("motd is a file");
    };
    assert_eq!(std::fs::read(host_path).unwrap(), b"hello there\n");
    assert_eq!(
        entry("opt/a/hard").kind,
        ChangeKind::File {
            host_path: fs.changed_files_dir().join("opt/a/hard"),
            size: 18
        }
    );
    assert_eq!(
        entry("opt/a/hello").kind,
        ChangeKind::Hardlink {
            target: "opt/a/hard".into()
        }
    );
    assert_eq!(
        entry("opt/a/link").kind,
        ChangeKind::Symlink {
            target: "/opt/a/hello".into()
        }
    );
    assert_eq!(entry("srv").kind, ChangeKind::OpaqueDir);
    assert_eq!(entry("srv/new").status, ChangeStatus::Added);
    assert_eq!(entry("srv2/f").mode, 0o4755);
    assert_eq!(
        (changes.added(), changes.changed(), changes.deleted()),
        (8, 2, 3)
    );
}

fn environment_workdir_and_exit_status(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let mut step = script_step("pwd; echo \"$GREETING\"; echo \"$HOME\"; echo oops >&2; exit 3");
    step.env.push(("GREETING".into(), "hi there".into()));
    step.workdir = "/work/dir".into();
    let (outcome, changes, lines) = run_step(&mut fs, &step, mode);
    assert_eq!(outcome.status, ExitStatus::Code(3));
    assert!(!outcome.status.success());
    let outs: Vec<&String> = lines.iter().filter(|l| l.starts_with("out: ")).collect();
    // HOME comes from the rootfs's passwd (root's default here), as in Docker.
    assert_eq!(outs[..3], ["out: /work/dir", "out: hi there", "out: /root"]);
    assert!(lines.contains(&"err: oops".to_string()), "{lines:?}");
    // The workdir was made before the snapshot: not a change of the step.
    assert!(changes.is_empty(), "{changes:#?}");
    assert!(fs.changed_files_dir().join("work/dir").is_dir());

    if mode == Mode::Chroot {
        let (outcome, _, _) = run_step(&mut fs, &script_step("kill -9 $$"), mode);
        assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGKILL));
    } else {
        // The step is pid 1 of its pid namespace (the kernel ignores its own signals to it,
        // as for `docker run` without --init).
        let (_, _, lines) = run_step(&mut fs, &script_step("echo $$"), mode);
        assert_eq!(lines, ["out: 1"]);
    }
}

fn isolation_as_the_mode_promises(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let script = "hostname; cat /proc/net/dev 2>/dev/null | grep -c ':' || echo no-proc";
    let (outcome, changes, lines) = run_step(&mut fs, &script_step(script), mode);
    assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
    assert!(changes.is_empty(), "{changes:#?}");
    match mode {
        Mode::Chroot => {
            assert!(!outcome.network_isolated && !outcome.proc_mounted);
            assert_eq!(lines.last().unwrap(), "out: no-proc");
        }
        Mode::Namespaces | Mode::UserNamespace => {
            assert!(outcome.network_isolated && outcome.proc_mounted);
            assert_eq!(lines, ["out: layerize", "out: 1"], "only lo");
            let (_, _, lines) = run_step(&mut fs, &script_step("ip link show lo"), mode);
            assert!(lines[0].contains("UP"), "{lines:?}");
            // pid 1 is the step's own shell: no host process is visible.
            let (_, _, lines) = run_step(&mut fs, &script_step("cat /proc/1/cmdline; echo"), mode);
            assert!(lines[0].starts_with("out: /bin/sh"), "{lines:?}");
        }
    }
}

fn background_processes_end_with_the_step(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let marker = unique("late");
    let script = format!("(sleep 2; touch /tmp/{marker}) & sleep 600 & echo started");
    let (outcome, _, lines) = run_step(&mut fs, &script_step(&script), mode);
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert_eq!(lines, ["out: started"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !fs.changed_files_dir().join("tmp").join(&marker).exists(),
        "a background process outlived run()"
    );
}

fn escapes_stay_inside_the_root(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let name = unique("OUTSIDE");
    let host_parent = fs.path().parent().unwrap().to_path_buf();
    let script = format!(
        "cd /; cd ../../..; echo x > {name}-cd
ln -s / /r; echo x > /r/../../tmp/{name}-link
ln -s /../../.. /up; echo x > /up/{name}-up; echo x > /up/tmp/{name}-uptmp
mkdir -p /jail; chroot /jail /bin/true 2>/dev/null && echo CHROOT-WORKED || echo CHROOT-REFUSED
mknod /tmp/disk b 8 0 2>/dev/null && echo MKNOD-WORKED || echo MKNOD-REFUSED
echo done"
    );
    let (outcome, _, lines) = run_step(&mut fs, &script_step(&script), mode);
    assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
    assert!(
        lines.contains(&"out: CHROOT-REFUSED".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"out: MKNOD-REFUSED".to_string()),
        "{lines:?}"
    );
    for escaped in [
        Path::new("/").join(format!("{name}-cd")),
        Path::new("/tmp").join(format!("{name}-link")),
        Path::new("/").join(format!("{name}-up")),
        Path::new("/tmp").join(format!("{name}-uptmp")),
        host_parent.join(format!("{name}-cd")),
        host_parent.join(format!("{name}-up")),
    ] {
        assert!(
            !escaped.exists(),
            "{} was written outside the root",
            escaped.display()
        );
    }
    // They all landed inside.
    for inside in ["{n}-cd", "tmp/{n}-link", "{n}-up", "tmp/{n}-uptmp"] {
        let inside = inside.replace("{n}", &name);
        assert!(
            fs.changed_files_dir().join(&inside).exists(),
            "{inside} missing inside the root"
        );
    }
}

fn same_step_same_changes(case: Case) {
    let mode = case.mode;
    let script = "mkdir -p /opt/x && echo a > /opt/x/a && chmod 600 /opt/x/a && rm /etc/motd";
    let run = || {
        let mut fs = case.rootfs(&[busybox_layer()]);
        let (_, changes, _) = run_step(&mut fs, &script_step(script), mode);
        portable(&changes, fs.changed_files_dir())
    };
    let first = run();
    assert_eq!(first.len(), 4);
    assert_eq!(first, run());
}

fn steps_run_as_the_rootfs_user(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let mut step = script_step("id -u; id -g; id -G; touch /tmp/mine");
    step.user = Some("app".into());
    if mode == Mode::UserNamespace {
        let err = layerize_sandbox::run(&mut fs, &step, mode, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("maps only root"), "{err}");
        return;
    }
    let (outcome, changes, lines) = run_step(&mut fs, &step, mode);
    assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
    assert_eq!(lines, ["out: 1000", "out: 1000", "out: 1000 50"]);
    let mine = find(&changes, "tmp/mine").unwrap();
    assert_eq!((mine.uid, mine.gid), (1000, 1000));
}

/// In a user namespace the image's owners are the layer's, not the caller's.
fn owners_are_the_images(case: Case) {
    let mode = case.mode;
    let owned = common::Layer::new()
        .dir("data", 0o755)
        .file_owned("data/svc", 0o644, 1000, 50, b"v1")
        .finish();
    let mut fs = case.rootfs(&[busybox_layer(), owned]);
    let script = "echo v2 >> /data/svc; touch /data/new";
    let (_, changes, _) = run_step(&mut fs, &script_step(script), mode);
    let svc = find(&changes, "data/svc").unwrap();
    assert_eq!((svc.uid, svc.gid), (1000, 50), "{changes:#?}");
    let new = find(&changes, "data/new").unwrap();
    assert_eq!((new.uid, new.gid), (0, 0));
    if euid() != 0 {
        // The host file belongs to the caller; the image says 1000:50.
        assert_eq!(
            std::fs::metadata(fs.changed_files_dir().join("data/svc"))
                .unwrap()
                .uid(),
            euid()
        );
    }
}

fn network_step_sees_the_hosts_resolver_files(case: Case) {
    let mode = case.mode;
    let mut fs = case.rootfs(&[busybox_layer()]);
    let mut step = script_step("test -f /etc/hosts && echo has-hosts; echo x > /opt-net");
    step.network = true;
    let (outcome, changes, lines) = run_step(&mut fs, &step, mode);
    assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
    assert!(!outcome.network_isolated);
    assert_eq!(lines, ["out: has-hosts"]);
    let paths: Vec<&str> = changes.entries.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["opt-net"], "resolver files are not changes");
    assert!(
        !fs.changed_files_dir().join("etc/hosts").exists(),
        "the copy or bind target is gone again"
    );
}

macro_rules! mode_tests {
    ($module:ident, $choice:expr, $overlay:expr, $($ignore:meta)?) => {
        mod $module {
            use super::*;
            $(#[$ignore])?
            #[test]
            fn effects() { effects_are_reported_as_layer_entries(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn environment() { environment_workdir_and_exit_status(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn isolation() { isolation_as_the_mode_promises(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn background() { background_processes_end_with_the_step(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn escapes() { escapes_stay_inside_the_root(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn deterministic() { same_step_same_changes(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn user() { steps_run_as_the_rootfs_user(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn owners() { owners_are_the_images(Case { mode: available($choice), overlay: $overlay }) }
            $(#[$ignore])?
            #[test]
            fn network() { network_step_sees_the_hosts_resolver_files(Case { mode: available($choice), overlay: $overlay }) }
        }
    };
}

mode_tests!(chroot, ModeChoice::Chroot, false,);
mode_tests!(namespaces, ModeChoice::Namespaces, false,);
// The same behaviours with the root an overlay of layer directories (namespaces mode only).
mode_tests!(overlay, ModeChoice::Namespaces, true,);
// Run by `userns_as_nobody` below as uid 65534; ignored when run directly (as root).
mode_tests!(
    userns,
    ModeChoice::UserNamespace,
    false,
    ignore = "run as a normal user by userns_as_nobody"
);

const USERNS_TESTS: usize = 9;

/// Re-runs the `userns::` tests of this binary as uid 65534, where the only mode is the user
/// namespace, and checks they all ran and passed.
#[test]
fn userns_as_nobody() {
    assert_eq!(euid(), 0, "this test switches to uid 65534 and needs root");
    // A copy anyone can execute: the target dir may not be searchable by uid 65534.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("modes-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--ignored", "--test-threads=2", "userns::"])
        .env("TMPDIR", "/tmp")
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "userns tests failed:\n{stdout}\n{stderr}"
    );
    let summary = format!("test result: ok. {USERNS_TESTS} passed");
    assert!(
        stdout.contains(&summary),
        "expected {summary}:\n{stdout}\n{stderr}"
    );
}

#[test]
fn explicit_modes_are_checked_and_auto_picks_namespaces_as_root() {
    assert_eq!(euid(), 0, "run as root");
    assert_eq!(detect(ModeChoice::Auto).unwrap(), Mode::Namespaces);
    assert_eq!(detect(ModeChoice::Chroot).unwrap(), Mode::Chroot);
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let mut fs: Rootfs = rootfs(&[busybox_layer()]);
    let mut step = script_step("");
    step.argv = vec!["no-such-tool".into()];
    let err = layerize_sandbox::run(&mut fs, &step, Mode::Chroot, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"no-such-tool\" is not an executable in the rootfs's PATH (/bin)"),
        "{err}"
    );
}

/// An overlay root and a written one give the same changes for the same step on the same
/// layers, whiteouts and opaque directories of a lower layer included, and a file a step only
/// opens for writing is no change in either.
#[test]
fn overlay_and_written_roots_give_the_same_changes() {
    let mode = available(ModeChoice::Namespaces);
    let second = common::Layer::new()
        .raw_file(b"etc/.wh.issue", b"")
        .dir("var/old", 0o755)
        .raw_file(b"var/old/.wh..wh..opq", b"")
        .file("var/old/only", 0o644, b"only")
        .dir("var/layer2", 0o750)
        .file("var/layer2/file", 0o600, b"two")
        .finish();
    let script = ": >> /etc/motd
echo more >> /srv/lower
test ! -e /etc/issue && echo back > /etc/issue
test ! -e /var/old/a && test -f /var/old/only
mv /var/old /var/moved
rm /var/layer2/file
mkdir -p /opt/new && ln -s ../etc /opt/new/etc
chmod 700 /srv
echo x > /root/.profile";
    let run = |overlay: bool| {
        let mut fs = Case { mode, overlay }.rootfs(&[busybox_layer(), second.clone()]);
        let (outcome, changes, lines) = run_step(&mut fs, &script_step(script), mode);
        assert_eq!(outcome.status, ExitStatus::Code(0), "{lines:?}");
        portable(&changes, fs.changed_files_dir())
    };
    let written = run(false);
    let paths: Vec<&str> = written.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/issue",
            "opt",
            "opt/new",
            "opt/new/etc",
            "root/.profile",
            "srv",
            "srv/lower",
            "var/layer2/file",
            "var/moved",
            "var/moved/only",
            "var/old"
        ],
        "{written:#?}"
    );
    assert_eq!(run(true), written);
}
