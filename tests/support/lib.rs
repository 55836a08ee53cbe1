//! Test support for the end-to-end suite: required tools, scratch directories, base images made
//! with tools that are not ours, real registries started on loopback, the container runtimes
//! (containerd, Docker) that run what layerize builds, builds with script steps and with apt
//! layers, a seccomp filter that takes namespaces away from a child, as in an unprivileged
//! container, builds run as a normal user, and a signed apt repository served on loopback.
//!
//! The suite's tests belong to the `layerize-cli` package, so cargo builds the binary for them;
//! they run it through [`layerize!`].

pub mod access_log;
pub mod app_image;
pub mod apt_builds;
pub mod apt_repo;
pub mod children;
pub mod containerd;
pub mod daemon;
pub mod docker;
pub mod fault_proxy;
pub mod images;
pub mod layer_records;
pub mod layerize;
pub mod normal_user;
pub mod podman;
pub mod registry;
pub mod script_builds;
pub mod seccomp;
pub mod skopeo;
pub mod token_server;
pub mod tools;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh temporary directory for one test's files, removed on drop.
///
/// Its name is lowercase (`layerize-test-PID-N`) because `podman pull oci:DIR` names the image
/// after DIR and refuses upper-case repository names.
pub fn scratch_dir() -> tempfile::TempDir {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let prefix = format!(
            "layerize-test-{pid}-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(0)
            .tempdir()
        {
            Ok(dir) => return dir,
            // Left behind by an earlier process with the same pid.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => panic!("create a temp dir: {error}"),
        }
    }
}

/// `target/layerize-fixtures`: built fixtures shared by every test process and kept between
/// runs (`cargo clean` drops them). Found from the test executable, `target/PROFILE/deps/NAME`.
pub fn fixture_cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let target = exe
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .unwrap_or_else(|| panic!("{} is not under target/*/deps", exe.display()));
    let dir = target.join("layerize-fixtures");
    std::fs::create_dir_all(&dir).expect("create target/layerize-fixtures");
    dir
}

/// The cached fixture directory `name`, made by `build` into an empty directory the first time.
///
/// A file lock makes concurrent test processes wait for one builder, and the finished directory
/// appears by rename, so a crash mid-build never leaves a half-made fixture behind.
pub fn cached_fixture(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let cache = fixture_cache_dir();
    let done = cache.join(name);
    if done.is_dir() {
        return done;
    }
    let lock = File::create(cache.join(format!("{name}.lock"))).expect("create fixture lock");
    lock.lock().expect("lock fixture");
    if !done.is_dir() {
        let partial = cache.join(format!("{name}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).expect("remove a half-built fixture");
        }
        std::fs::create_dir(&partial).expect("create fixture dir");
        build(&partial);
        std::fs::rename(&partial, &done).expect("publish fixture");
    }
    done
}

/// Copies the directory tree `from` to `to` (files, directories and symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy destination");
    for entry in std::fs::read_dir(from).expect("read dir to copy") {
        let entry = entry.expect("dir entry");
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&source, &target);
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&source).expect("read symlink");
            std::os::unix::fs::symlink(link, &target).expect("copy symlink");
        } else {
            std::fs::copy(&source, &target).expect("copy file");
        }
    }
}
