//! The merged filesystem of a stack of layers, sorted by path, with lookups by path and by
//! directory.

use crate::entry::{Entry, OwnedEntry};
use crate::table::{Meta, Record, Slot, Table};

/// The filesystem of a stack of layers after whiteouts: one entry per visible path, sorted.
#[derive(Clone, Debug, Default)]
pub struct FsIndex {
    /// Records in byte order of their paths, only [`Slot::Entry`] slots.
    table: Table,
}

impl FsIndex {
    /// An index of exactly these entries (any order; at a repeated path the last one wins).
    /// Parents need not be present: an index of a partial tree is allowed.
    ///
    /// # Panics
    /// When a path or link target is longer than 65535 bytes, which no Linux filesystem
    /// holds.
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
        let arena = deduped.iter().map(|e| e.path.len() + e.link.len()).sum();
        let mut table = Table::with_capacity(deduped.len(), arena);
        for entry in &deduped {
            let meta = Meta {
                slot: Slot::Entry(entry.kind),
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                size: entry.size,
                origin: 0,
                flags: 0,
            };
            if let Err(error) = table.push(&entry.path, &entry.link, meta) {
                panic!("{}: {error}", entry.path);
            }
        }
        FsIndex { table }
    }

    /// The index of a merged table in tree order: re-sorted into byte order, and its arena
    /// compacted when most of it is no longer referenced.
    pub(crate) fn from_merged(mut table: Table) -> Self {
        let Table { arena, records } = &mut table;
        let path = |record: &Record| &arena[record.offset as usize..record.path_end()];
        records.sort_unstable_by(|a, b| path(a).cmp(path(b)));
        if table.unused_arena_bytes() > table.arena.len() / 2 {
            table = table.compacted();
        }
        table.arena.shrink_to_fit();
        table.records.shrink_to_fit();
        FsIndex { table }
    }

    /// The entry at the normalised `path` (`None` for the root and for absent paths).
    pub fn get(&self, path: &str) -> Option<Entry<'_>> {
        self.record(path).map(|record| self.table.entry(record))
    }

    /// The position in the stack of the layer the entry at `path` comes from.
    pub(crate) fn origin(&self, path: &str) -> Option<u32> {
        self.record(path).map(|record| record.origin)
    }

    fn record(&self, path: &str) -> Option<&Record> {
        self.table
            .records
            .binary_search_by(|record| self.table.path(record).cmp(path))
            .ok()
            .map(|index| &self.table.records[index])
    }

    /// Every entry below the directory `dir` (`""`: the whole tree), in path order.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = Entry<'a>> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let table = &self.table;
        let start = table
            .records
            .partition_point(|record| table.path(record) < prefix.as_str());
        table.records[start..]
            .iter()
            .take_while(move |record| table.path(record).starts_with(prefix.as_str()))
            .map(|record| table.entry(record))
    }

    /// Every entry in path order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        self.table
            .records
            .iter()
            .map(|record| self.table.entry(record))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.records.is_empty()
    }
}

/// Indexes are equal when they hold the same entries, whichever layers those came from.
impl PartialEq for FsIndex {
    fn eq(&self, other: &FsIndex) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for FsIndex {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Kind;

    fn owned(path: &str, kind: Kind, link: &str) -> OwnedEntry {
        OwnedEntry {
            path: path.to_owned(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
            size: 0,
            link: link.to_owned(),
        }
    }

    #[test]
    fn looks_up_by_path_and_lists_a_directory_in_byte_order() {
        let index = FsIndex::from_entries([
            owned("usr/bin", Kind::Dir, ""),
            owned("bin", Kind::Symlink, "usr/bin"),
            owned("usr", Kind::Dir, ""),
            owned("usr/bin/sh", Kind::Symlink, "dash"),
            owned("usr/bin.d", Kind::Dir, ""),
            owned("usr/bin/dash", Kind::File, ""),
        ]);
        assert_eq!(index.len(), 6);
        assert_eq!(index.get("bin").unwrap().link, "usr/bin");
        assert_eq!(index.get("usr/bin/sh").unwrap().kind, Kind::Symlink);
        assert!(index.get("usr/bi").is_none());
        assert!(index.get("").is_none());
        let under: Vec<&str> = index.under("usr/bin").map(|e| e.path).collect();
        assert_eq!(under, ["usr/bin/dash", "usr/bin/sh"]);
        let all: Vec<&str> = index.iter().map(|e| e.path).collect();
        assert_eq!(
            all,
            [
                "bin",
                "usr",
                "usr/bin",
                "usr/bin.d",
                "usr/bin/dash",
                "usr/bin/sh"
            ]
        );
        assert_eq!(index.under("").count(), 6);
    }

    #[test]
    fn a_later_entry_at_the_same_path_wins() {
        let index =
            FsIndex::from_entries([owned("a", Kind::Dir, ""), owned("a", Kind::Symlink, "b")]);
        assert_eq!(index.len(), 1);
        let entry = index.get("a").unwrap();
        assert_eq!((entry.kind, entry.link), (Kind::Symlink, "b"));
        assert_eq!(entry.to_owned_entry(), owned("a", Kind::Symlink, "b"));
    }
}
