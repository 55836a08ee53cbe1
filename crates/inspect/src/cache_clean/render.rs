//! `cache clean` for people: one line per removed entry, then what was freed and kept.

use std::fmt::Write;
use std::path::Path;

use crate::cache_clean::{Outcome, Reason};
use crate::text::bytes;

/// The outcome, with entry paths relative to the cache directory `dir`.
pub fn render(dir: &Path, outcome: &Outcome) -> String {
    let relative = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let verb = if outcome.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = String::new();
    for removal in &outcome.removed {
        let why = match removal.reason {
            Reason::Unused => "unused for the age given",
            Reason::OverSize => "least recently used, cache over the size given",
        };
        let _ = writeln!(
            out,
            "{verb} {} ({}, {why})",
            relative(&removal.entry.path),
            bytes(removal.entry.size)
        );
    }
    for entry in &outcome.spared {
        let _ = writeln!(
            out,
            "kept {} (in use, or used since the scan)",
            relative(&entry.path)
        );
    }
    for (entry, error) in &outcome.failed {
        let _ = writeln!(out, "failed to remove {}: {error}", relative(&entry.path));
    }
    let _ = write!(
        out,
        "{verb} {} entries, {} {} ({} bytes); kept {} entries, {}",
        outcome.removed.len(),
        if outcome.dry_run {
            "would free"
        } else {
            "freed"
        },
        bytes(outcome.freed_bytes()),
        outcome.freed_bytes(),
        outcome.kept.len(),
        bytes(outcome.kept_bytes()),
    );
    if outcome.pruned_dirs > 0 {
        let _ = write!(out, "; pruned {} empty directories", outcome.pruned_dirs);
    }
    if outcome.reaped_temporaries > 0 {
        let _ = write!(
            out,
            "; removed {} abandoned temporary layer directories",
            outcome.reaped_temporaries
        );
    }
    out.push('\n');
    out
}
