//! The test harness cleans up after itself, also when a test fails or its process is killed:
//! child processes die with the test process (support::children), and podman mounts are undone
//! when the image goes out of scope, panics included (support::podman).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::images;
use support::podman::{self, PulledImage};
use support::registry::Registry;
use support::{children, scratch_dir, tools};

/// Where [`holds_children_until_killed`] writes the pids of its children; set only in the
/// process that [`children_die_with_a_killed_test_process`] starts.
const HOLDER_PIDS: &str = "LAYERIZE_TEST_HOLDER_PIDS";
/// Hang guard for each wait below: far beyond what starting or reaping a process takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Not a check of its own: the body of the process that
/// [`children_die_with_a_killed_test_process`] starts (this test binary, running only this
/// test) and kills. Returns at once anywhere else.
#[test]
#[ignore = "run by children_die_with_a_killed_test_process, which then SIGKILLs it"]
fn holds_children_until_killed() {
    let Some(pids_file) = std::env::var_os(HOLDER_PIDS).map(PathBuf::from) else {
        return;
    };
    // Started by a thread that ends at once: the registry must outlive it.
    let registry = std::thread::spawn(Registry::open)
        .join()
        .expect("start a registry");
    // Started by this thread, which lives until the process is killed.
    let mut sleeper = tools::command("sleep")
        .arg("1000")
        .spawn()
        .expect("start sleep");
    let partial = pids_file.with_extension("partial");
    std::fs::write(&partial, format!("{} {}", registry.pid(), sleeper.id())).unwrap();
    std::fs::rename(&partial, &pids_file).unwrap();
    // Killed while waiting here.
    sleeper.wait().unwrap();
    drop(registry);
}

/// Whether process `pid` runs: it exists and is not a zombie (a child of a dead process that
/// nobody reaped yet is dead all the same).
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`; COMM may hold spaces and parentheses.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// Waits (within [`HANG_GUARD`]) until `done` holds; panics with `what` otherwise.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < HANG_GUARD, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn children_die_with_a_killed_test_process() {
    let scratch = scratch_dir();
    let pids_file = scratch.path().join("pids");
    let log = scratch.path().join("holder.log");
    let mut holder = Command::new(std::env::current_exe().expect("this test binary"));
    holder
        .args(["--exact", "holds_children_until_killed", "--ignored"])
        .env(HOLDER_PIDS, &pids_file)
        // Killed, the holder removes none of its temp dirs: they go with this test's.
        .env("TMPDIR", scratch.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut holder = children::die_with_test_process(&mut holder)
        .spawn()
        .expect("start the holder");
    wait_until("the holder writes its children's pids", || {
        if let Some(status) = holder.try_wait().unwrap() {
            panic!(
                "the holder exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        pids_file.exists()
    });
    let pids: Vec<u32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for &pid in &pids {
        assert!(is_running(pid), "child {pid} died before its holder");
    }

    // SIGKILL: no destructor, no panic handler runs in the holder.
    holder.kill().unwrap();
    let status = holder.wait().unwrap();
    let sigkill = 9;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(sigkill)
    );
    for pid in pids {
        wait_until(&format!("child {pid} outlived its killed holder"), || {
            !is_running(pid)
        });
    }
}

/// The mount points below `dir`, as the kernel lists them for this process.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    podman::mount_points()
        .into_iter()
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

#[test]
fn podman_mounts_are_undone_on_drop_and_on_panic() {
    let base = images::oci_base_layout();

    let image = PulledImage::pull(&base.reference(), None);
    let store = image.store_dir().to_owned();
    assert!(
        mounts_below(&store).contains(&image.root().to_owned()),
        "the image is mounted: {:?}",
        podman::mount_points()
    );
    drop(image);
    assert_eq!(mounts_below(&store), Vec::<PathBuf>::new());
    assert!(!store.exists(), "the store is removed");

    let mut store = None;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let image = PulledImage::pull(&base.reference(), None);
        store = Some(image.store_dir().to_owned());
        assert!(image.root().join("bin/busybox").is_file());
        panic!("a check fails while the image is mounted");
    }));
    assert!(failed.is_err());
    let store = store.expect("the image was pulled");
    assert_eq!(mounts_below(&store), Vec::<PathBuf>::new());
    assert!(!store.exists(), "the store is removed");
}
