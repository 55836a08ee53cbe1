//! `cache clean` on a cache that real builds populated, with entries aged by hand.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::layerize::run_ok;

use super::{layerize_text, Inputs, BUILT};

/// Sets a file's mtime to `age` before now.
fn age(path: &Path, age: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// The cache entries under `dir` (files below `*/v*/`, no `.tmp*`), sorted.
fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), out);
            } else if !entry.file_name().to_string_lossy().starts_with(".tmp") {
                out.push(entry.path());
            }
        }
    }
    let mut entries = Vec::new();
    walk(dir, &mut entries);
    entries.retain(|path| {
        let relative = path.strip_prefix(dir).unwrap();
        let parts: Vec<_> = relative.components().collect();
        parts.len() >= 3 && parts[1].as_os_str().to_string_lossy().starts_with('v')
    });
    entries.sort();
    entries
}

#[test]
fn cache_clean_removes_exactly_the_old_and_least_recently_used_entries() {
    let inputs = Inputs::new();
    let cache = inputs.file("cache");
    let cache_arg = cache.display().to_string();
    let plain = inputs.layout_ref("plain");
    inputs.build(&plain, &inputs.file("r.json"), &["--cache-dir", &cache_arg]);
    // A build on that image indexes its six layers: the cache holds one entry per layer.
    let mut build = support::layerize!();
    build
        .args(["build", "--base", &plain])
        .args(["--target", &inputs.layout_ref("next")])
        .arg("--file")
        .arg(format!("{}:/srv/next", inputs.path("small")))
        .args(["--cache-dir", &cache_arg]);
    run_ok(&mut build);
    let entries = cache_entries(&cache);
    assert!(entries.len() > BUILT, "an index per layer: {entries:?}");

    // Two entries unused for over a week, the others used hours apart within the last week
    // (the first of them longest ago); a writer's temporary file and a file outside the
    // versioned subdirs, both old, are not entries.
    let day = Duration::from_secs(24 * 60 * 60);
    age(&entries[0], day * 10);
    age(&entries[1], day * 8);
    let hour = Duration::from_secs(60 * 60);
    for (count, entry) in entries[2..].iter().rev().enumerate() {
        age(entry, hour * (count as u32 + 1));
    }
    let sizes: Vec<u64> = entries
        .iter()
        .map(|e| std::fs::metadata(e).unwrap().len())
        .collect();
    let temporary = entries[0].with_file_name(".tmpWRITER");
    std::fs::write(&temporary, b"half written").unwrap();
    age(&temporary, day * 30);
    let readme = cache.join("README");
    std::fs::write(&readme, b"not an entry").unwrap();
    age(&readme, day * 30);

    // Over a week old: the first two; then least recently used until the rest fit: the third.
    let recent: u64 = sizes[2..].iter().sum();
    let max_size = (recent - sizes[2]).to_string();
    let clean = |extra: &[&str]| {
        layerize_text(
            &[
                &[
                    "cache",
                    "clean",
                    "--cache-dir",
                    &cache_arg,
                    "--older-than",
                    "7d",
                    "--max-size",
                    &max_size,
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let dry = clean(&["--dry-run"]);
    assert!(dry.contains("would remove 3 entries, would free"), "{dry}");
    assert_eq!(cache_entries(&cache), entries, "a dry run removes nothing");

    let text = clean(&[]);
    let freed: u64 = sizes[..3].iter().sum();
    assert!(text.contains("removed 3 entries, freed "), "{text}");
    assert!(text.contains(&format!("({freed} bytes)")), "{text}");
    assert_eq!(cache_entries(&cache), entries[3..].to_vec());
    assert!(temporary.exists() && readme.exists());
    for entry in &entries[..2] {
        let name = entry.strip_prefix(&cache).unwrap().display().to_string();
        assert!(
            text.contains(&format!("removed {name} ("))
                && text.contains("unused for the age given"),
            "{text}"
        );
    }
    assert!(text.contains("least recently used"), "{text}");

    // Nothing left to do.
    let again = clean(&[]);
    assert!(again.contains("removed 0 entries"), "{again}");
}
