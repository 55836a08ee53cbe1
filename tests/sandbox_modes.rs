//! End-to-end (issue 8): the sandbox runs a build's script steps where CI really runs, picks the
//! mode the machine allows and says which it used, and refuses clearly when a mode is missing.
//!
//! - As root under a seccomp filter like Docker's default profile (no namespaces, no mounts:
//!   [`support::seccomp::deny_namespaces`], whose own tests show it does that): mode `chroot`; `--sandbox
//!   namespaces` and `--sandbox userns` are refused naming what is missing, and push nothing.
//! - As root on this VM: mode `namespaces`, the step's root an overlay (elsewhere a written
//!   root, and `--step-root overlay` refused under the filter).
//! - As a normal user (uid 65534) where unprivileged user namespaces are allowed: mode `userns`;
//!   the same user under the filter has no sandbox at all, and is told so.
//!
//! Each build's one step writes a file and records whether it could reach the registry on
//! loopback; podman then sees the file, and the report's `network_isolated` must tell the truth.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::layerize::read_report;
use support::normal_user::{as_user, user_namespaces_for, Workspace, NOBODY};
use support::podman::PulledImage;
use support::script_builds::{self, script_layer, DebianSite};
use support::seccomp::deny_namespaces;
use support::{skopeo, tools};

/// Who runs `layerize build`, and whether under [`deny_namespaces`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runner {
    Root,
    RootWithoutNamespaces,
    Nobody,
    NobodyWithoutNamespaces,
}

impl Runner {
    fn uid(self) -> u32 {
        match self {
            Runner::Root | Runner::RootWithoutNamespaces => 0,
            Runner::Nobody | Runner::NobodyWithoutNamespaces => NOBODY,
        }
    }

    fn filtered(self) -> bool {
        matches!(
            self,
            Runner::RootWithoutNamespaces | Runner::NobodyWithoutNamespaces
        )
    }

    /// `command` as this runner: through `setpriv` for the normal user, under the filter when
    /// namespaces are to be missing.
    fn wrap(self, command: Command) -> Command {
        let mut command = if self.uid() == 0 {
            command
        } else {
            as_user(&command, self.uid())
        };
        if self.filtered() {
            deny_namespaces(&mut command);
        }
        command
    }
}

/// What the step `probe` writes: `/opt/probe/made`, and in `/opt/probe/network` whether it could
/// open a TCP connection to the registry on loopback (`reachable`) or not (`isolated`).
fn probe_build_file(site: &DebianSite, workspace: &Workspace, target: &str) -> PathBuf {
    let reach = format!(
        "if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}' 2>/dev/null; then echo reachable; else echo isolated; fi > /opt/probe/network",
        site.registry.port()
    );
    let probe = script_layer(
        "probe",
        &[
            "mkdir -p /opt/probe",
            "echo made-in-sandbox > /opt/probe/made",
            &reach,
        ],
        &[],
        &[],
    );
    site.write_build_file(workspace.path(), target, &[probe])
}

/// `layerize build -c FILE --cache-dir ... --report ... ARGS` as `runner`, in `workspace`.
fn build(runner: Runner, workspace: &Workspace, file: &Path, args: &[&str]) -> Output {
    let command = workspace.build_command(support::layerize!(), file, args);
    runner.wrap(command).output().expect("start layerize")
}

/// Builds the probe as `runner` with no `--sandbox` flag; it must succeed in `mode`, and podman
/// must see what the step wrote, with the report's `network_isolated` matching what it found.
fn assert_builds_in_mode(site: &DebianSite, runner: Runner, mode: &str, tag: &str) {
    let workspace = Workspace::new(runner.uid());
    let target = site.reference(&format!("probe:{tag}"));
    let file = probe_build_file(site, &workspace, &target);
    let output = build(runner, &workspace, &file, &[]);
    assert!(
        output.status.success(),
        "the build as {runner:?} failed: {}",
        tools::describe_output(&output)
    );
    let report = read_report(&workspace.report());
    let steps = script_builds::steps(&report);
    assert_eq!(steps.len(), 1, "{report}");
    let probe = &steps[0];
    assert_eq!(probe["name"], "probe", "{probe}");
    assert_eq!(probe["status"], "built", "{probe}");
    assert_eq!(probe["mode"], mode, "as {runner:?}: {probe}");
    // Only the namespaces mode may mount: its root is an overlay of layer directories, the
    // others' roots are written.
    let root = if mode == "namespaces" {
        "overlay"
    } else {
        "written"
    };
    assert_eq!(probe["root"], root, "as {runner:?}: {probe}");
    assert_eq!(probe["exit_code"], 0, "{probe}");
    assert_eq!(probe["layer"], true, "{probe}");
    assert!(probe["added"].as_u64().unwrap() >= 2, "{probe}");

    let pulled = PulledImage::pull(&target, None);
    let made = std::fs::read_to_string(pulled.root().join("opt/probe/made")).unwrap();
    assert_eq!(made, "made-in-sandbox\n");
    let network = std::fs::read_to_string(pulled.root().join("opt/probe/network")).unwrap();
    let isolated = probe["network_isolated"]
        .as_bool()
        .unwrap_or_else(|| panic!("network_isolated is not a bool: {probe}"));
    assert_eq!(
        network.trim() == "isolated",
        isolated,
        "the step found the network {network:?} but the report says network_isolated: {isolated}"
    );
    if mode != "chroot" {
        assert!(isolated, "a {mode} step reached the host's loopback");
    }
    // The base is there under the step's layer.
    assert!(pulled.root().join("etc/debian_version").is_file());
}

/// Runs the probe as `runner` with `args`, which must fail before anything is pushed; returns
/// its stderr, lowercased.
fn assert_refused(site: &DebianSite, runner: Runner, args: &[&str], tag: &str) -> String {
    let workspace = Workspace::new(runner.uid());
    let target = site.reference(&format!("refused:{tag}"));
    let file = probe_build_file(site, &workspace, &target);
    let mark = site.log_mark();
    let output = build(runner, &workspace, &file, args);
    assert!(
        !output.status.success(),
        "the build as {runner:?} with {args:?} succeeded: {}",
        tools::describe_output(&output)
    );
    let writes: Vec<_> = site
        .requests_since(mark)
        .into_iter()
        .filter(|request| request.is_write())
        .collect();
    assert!(
        writes.is_empty(),
        "a refused build wrote to the registry: {writes:#?}"
    );
    assert!(skopeo::digest_if_exists(&target, None).is_none());
    String::from_utf8_lossy(&output.stderr).to_lowercase()
}

/// Mode (a): root in an unprivileged container. The build succeeds in chroot mode; asking for
/// namespaces or user namespaces there fails, naming the mode, and pushes nothing.
#[test]
fn as_root_without_namespaces_steps_run_in_chroot_mode() {
    let site = DebianSite::new();
    assert_builds_in_mode(&site, Runner::RootWithoutNamespaces, "chroot", "chroot");

    // Each with what its error must name. Overlay roots need mounts, which are refused here.
    let refused: [(&[&str], &str, &[&str]); 3] = [
        (&["--sandbox", "namespaces"], "namespaces", &["namespaces"]),
        (&["--sandbox", "userns"], "userns", &["user namespaces"]),
        (
            &["--step-root", "overlay"],
            "overlay",
            &["--step-root overlay", "chroot"],
        ),
    ];
    for (args, tag, named) in refused {
        let stderr = assert_refused(&site, Runner::RootWithoutNamespaces, args, tag);
        for text in named {
            assert!(stderr.contains(text), "{args:?}: {stderr}");
        }
    }
}

/// Mode (c): root on a VM, where namespaces are there to take.
#[test]
fn as_root_on_a_vm_steps_run_in_namespaces() {
    let site = DebianSite::new();
    assert_builds_in_mode(&site, Runner::Root, "namespaces", "namespaces");
}

/// Mode (b): a normal user where unprivileged user namespaces are allowed (a CI machine must
/// allow them; elsewhere the check says so and is left out). The same user without namespaces
/// has no sandbox: the build fails saying what is missing, and pushes nothing.
#[test]
fn as_a_normal_user_steps_run_in_user_namespaces() {
    let site = DebianSite::new();
    if user_namespaces_for("the userns build") {
        assert_builds_in_mode(&site, Runner::Nobody, "userns", "userns");
    }

    let stderr = assert_refused(&site, Runner::NobodyWithoutNamespaces, &[], "nothing");
    assert!(stderr.contains("user namespaces"), "{stderr}");
    assert!(stderr.contains("root"), "{stderr}");
    assert!(
        stderr.contains("sandbox"),
        "the error does not say that no sandbox works: {stderr}"
    );
}
