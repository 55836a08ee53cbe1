//! Cleaning real directories: which files are entries, age and size rules, dry runs, pruning.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Writes `size` bytes at `dir/path`, last modified `age` before [`now`].
fn write(dir: &Path, path: &str, size: usize, age: Duration) {
    let path = dir.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, vec![b'x'; size]).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(now() - age)
        .unwrap();
}

fn names(dir: &Path, entries: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    let mut names: Vec<String> = entries
        .into_iter()
        .map(|path| path.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

/// A cache with entries of three ages plus everything that is not an entry.
fn populated() -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path();
    write(dir, "basefs/v1/sha256/old", 100, 10 * DAY);
    write(dir, "basefs/v1/sha256/week", 200, 7 * DAY);
    write(dir, "layers/v1/ab/recent", 300, DAY);
    write(dir, "layers/v1/ab/newest", 400, Duration::ZERO);
    // Not entries: a writer's temporary file, files outside versioned subdirs.
    write(dir, "layers/v1/ab/.tmpXYZ", 1000, 30 * DAY);
    write(dir, "layers/README", 10, 30 * DAY);
    write(dir, "layers/vnext/x", 10, 30 * DAY);
    write(dir, "notes.txt", 10, 30 * DAY);
    cache
}

#[test]
fn entries_are_the_files_of_versioned_subdirs_without_temporaries_or_symlinks() {
    let cache = populated();
    let dir = cache.path();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "v1/precious", 5, 30 * DAY);
    std::os::unix::fs::symlink(
        outside.path().join("v1/precious"),
        dir.join("layers/v1/link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("v1"), dir.join("layers/v1/linked-dir"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("linked-component")).unwrap();

    let found = entries::find(dir).unwrap();
    assert_eq!(
        names(dir, found.entries.into_iter().map(|entry| entry.path)),
        [
            "basefs/v1/sha256/old",
            "basefs/v1/sha256/week",
            "layers/v1/ab/newest",
            "layers/v1/ab/recent",
        ]
    );
    assert_eq!(names(dir, found.versioned_dirs), ["basefs/v1", "layers/v1"]);

    let policy = Policy {
        older_than: None,
        max_size: Some(0),
    };
    let outcome = clean(dir, &policy, now(), false).unwrap();
    assert_eq!(outcome.removed.len(), 4);
    assert!(outside.path().join("v1/precious").exists());
    for untouched in [
        "layers/v1/ab/.tmpXYZ",
        "layers/README",
        "layers/vnext/x",
        "notes.txt",
    ] {
        assert!(dir.join(untouched).exists(), "{untouched}");
    }
    // `basefs/v1/sha256` is empty now and pruned; `layers/v1/ab` keeps the temporary file.
    assert!(!dir.join("basefs/v1/sha256").exists());
    assert!(dir.join("basefs/v1").is_dir());
    assert_eq!(outcome.pruned_dirs, 1);
}

#[test]
fn age_goes_first_then_least_recently_used_until_under_the_size() {
    let cache = populated();
    let dir = cache.path();
    let policy = Policy {
        older_than: Some(7 * DAY),
        max_size: Some(450),
    };
    let plan = plan(entries::find(dir).unwrap().entries, &policy, now());
    let removed: Vec<(String, Reason)> = plan
        .remove
        .iter()
        .map(|removal| {
            let name = removal.entry.path.strip_prefix(dir).unwrap();
            (name.display().to_string(), removal.reason)
        })
        .collect();
    assert_eq!(
        removed,
        [
            ("basefs/v1/sha256/old".to_owned(), Reason::Unused),
            ("basefs/v1/sha256/week".to_owned(), Reason::Unused),
            ("layers/v1/ab/recent".to_owned(), Reason::OverSize),
        ]
    );
    assert_eq!(
        names(dir, plan.keep.into_iter().map(|e| e.path)),
        ["layers/v1/ab/newest"]
    );

    let only_size = Policy {
        older_than: None,
        max_size: Some(700),
    };
    let plan = super::plan(entries::find(dir).unwrap().entries, &only_size, now());
    assert_eq!(plan.remove.len(), 2, "100 + 200 go, 300 + 400 fit in 700");
}

#[test]
fn a_dry_run_removes_nothing_and_an_entry_used_since_the_scan_stays() {
    let cache = populated();
    let dir = cache.path();
    let policy = Policy {
        older_than: Some(2 * DAY),
        max_size: None,
    };
    let dry = clean(dir, &policy, now(), true).unwrap();
    assert_eq!(dry.removed.len(), 2);
    assert_eq!(dry.freed_bytes(), 300);
    assert!(dir.join("basefs/v1/sha256/old").exists());
    let text = render::render(dir, &dry);
    assert!(
        text.contains("would remove basefs/v1/sha256/old (100 B, unused for the age given)"),
        "{text}"
    );
    assert!(text.contains("would free 300 B (300 bytes)"), "{text}");

    // Used between the scan and the removal: its mtime moved, so it is spared.
    let found = entries::find(dir).unwrap();
    let plan = plan(found.entries, &policy, now());
    File::options()
        .write(true)
        .open(dir.join("basefs/v1/sha256/old"))
        .unwrap()
        .set_modified(now())
        .unwrap();
    assert!(!remove_unchanged(&plan.remove[0].entry).unwrap());
    assert!(remove_unchanged(&plan.remove[1].entry).unwrap());
    assert!(dir.join("basefs/v1/sha256/old").exists());
    assert!(!dir.join("basefs/v1/sha256/week").exists());
}

#[test]
fn a_missing_cache_directory_is_empty() {
    let cache = tempfile::tempdir().unwrap();
    let outcome = clean(
        &cache.path().join("absent"),
        &Policy::default(),
        now(),
        false,
    )
    .unwrap();
    assert!(outcome.removed.is_empty() && outcome.kept.is_empty());
}

#[test]
fn a_layer_directory_is_one_entry_removed_whole() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path();
    write(dir, "unpacked/v1/old/usr/bin/tool", 100, 10 * DAY);
    write(dir, "unpacked/v1/old/etc/conf", 20, 10 * DAY);
    write(dir, "unpacked/v1/new/etc/conf", 30, 10 * DAY);
    write(dir, "unpacked/v1/held/etc/conf", 40, 10 * DAY);
    write(dir, "unpacked/v1/.tmp-layer-x/etc/conf", 30, 10 * DAY);
    write(dir, "unpacked/v1/.tmp-layer-dead/etc/conf", 30, 10 * DAY);
    write(dir, "unpacked/v1/.tmp-removing-dead/etc/conf", 30, 10 * DAY);
    fs::create_dir_all(dir.join("unpacked/v1/new/tmp")).unwrap();
    let set_dir_mtime = |path: &str, age: Duration| {
        File::open(dir.join(path))
            .unwrap()
            .set_modified(now() - age)
            .unwrap()
    };
    // A directory's own mtime is its last use, whatever its files' mtimes.
    set_dir_mtime("unpacked/v1/old", 10 * DAY);
    set_dir_mtime("unpacked/v1/new", DAY);
    set_dir_mtime("unpacked/v1/held", 10 * DAY);
    // Being made right now, and abandoned two days ago by a build and by a clean that died.
    set_dir_mtime("unpacked/v1/.tmp-layer-x", Duration::ZERO);
    set_dir_mtime("unpacked/v1/.tmp-layer-dead", 2 * DAY);
    set_dir_mtime("unpacked/v1/.tmp-removing-dead", 2 * DAY);
    // A build stacking `held` in a step root holds a shared lock on it.
    let lease = File::open(dir.join("unpacked/v1/held")).unwrap();
    lease.lock_shared().unwrap();

    let found = entries::find(dir).unwrap();
    let mut sizes: Vec<(String, u64)> = found
        .entries
        .iter()
        .map(|e| {
            (
                e.path.strip_prefix(dir).unwrap().display().to_string(),
                e.size,
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("unpacked/v1/held".to_owned(), 40),
            ("unpacked/v1/new".to_owned(), 30),
            ("unpacked/v1/old".to_owned(), 120)
        ]
    );
    let policy = Policy {
        older_than: Some(7 * DAY),
        max_size: None,
    };
    let outcome = clean(dir, &policy, now(), false).unwrap();
    assert_eq!(
        names(dir, outcome.removed.iter().map(|r| r.entry.path.clone())),
        ["unpacked/v1/old"]
    );
    assert!(!dir.join("unpacked/v1/old").exists());
    assert!(!dir.join("unpacked/v1/.tmp-removing-old").exists());
    assert!(dir.join("unpacked/v1/new/etc/conf").is_file());
    assert!(
        dir.join("unpacked/v1/new/tmp").is_dir(),
        "a layer's empty dirs stay"
    );
    assert_eq!(
        names(dir, outcome.spared.iter().map(|entry| entry.path.clone())),
        ["unpacked/v1/held"],
        "a directory in use is kept"
    );
    assert!(dir.join("unpacked/v1/held/etc/conf").is_file());
    assert!(dir.join("unpacked/v1/.tmp-layer-x/etc/conf").is_file());
    assert_eq!(outcome.reaped_temporaries, 2);
    assert!(!dir.join("unpacked/v1/.tmp-layer-dead").exists());
    assert!(!dir.join("unpacked/v1/.tmp-removing-dead").exists());

    drop(lease);
    let outcome = clean(dir, &policy, now(), false).unwrap();
    assert_eq!(
        names(dir, outcome.removed.iter().map(|r| r.entry.path.clone())),
        ["unpacked/v1/held"],
        "once released it goes"
    );
}
