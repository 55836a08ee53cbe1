//! The merged filesystem of a stack of layers, sorted by path, with lookups by path and by
//! directory.

use crate::entry::{Entry, OwnedEntry};

/// The filesystem of a stack of layers after whiteouts: one entry per visible path, sorted.
#[derive(Clone, Debug, Default)]
pub struct FsIndex {
    // A first, simple form; the compact form replaces it without changing the methods.
    entries: Vec<OwnedEntry>,
}

impl FsIndex {
    /// An index of exactly these entries (any order; at a repeated path the last one wins).
    /// Parents need not be present: an index of a partial tree is allowed.
    pub fn from_entries(entries: impl IntoIterator<Item = OwnedEntry>) -> Self {
        let mut entries: Vec<OwnedEntry> = entries.into_iter().collect();
        // Stable, so that among equal paths the later entry stays last.
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut deduped: Vec<OwnedEntry> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.path == entry.path => *last = entry,
                _ => deduped.push(entry),
            }
        }
        FsIndex { entries: deduped }
    }

    /// The entry at the normalised `path` (`None` for the root and for absent paths).
    pub fn get(&self, path: &str) -> Option<Entry<'_>> {
        self.entries
            .binary_search_by(|entry| entry.path.as_str().cmp(path))
            .ok()
            .map(|index| self.entries[index].as_entry())
    }

    /// Every entry below the directory `dir` (`""`: the whole tree), in path order.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = Entry<'a>> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let start = self
            .entries
            .partition_point(|entry| entry.path.as_str() < prefix.as_str());
        self.entries[start..]
            .iter()
            .take_while(move |entry| entry.path.starts_with(prefix.as_str()))
            .map(OwnedEntry::as_entry)
    }

    /// Every entry in path order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        self.entries.iter().map(OwnedEntry::as_entry)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
