//! The parsed-index cache: each verified `Packages` index kept, under the SHA256 its Release
//! gives the file, as two files: its text with only [`crate::index::INDEX_FIELDS`]
//! (`<sha256>.fields-v1`) and that text's [`StanzaTable`] (`<sha256>.fields-v1.table`). A hit
//! opens the text and reads the table: no request, no decompression, no scan, and no read of
//! the text beyond the stanzas a resolution asks for.
//!
//! A cache that cannot be written costs the next build a download; a table that is missing or
//! does not describe its text is made again from the text. `cache clean` sees the two as
//! separate entries: a table left without its text is never read, and is replaced when the
//! text is fetched again.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::fetch::write_atomically;
use crate::packages_file::StanzaText;
use crate::stanza_table::StanzaTable;

/// The version of the cached text's format: the fields kept, written as deb822. Bump it when
/// [`crate::index::INDEX_FIELDS`] changes.
const TEXT_FORMAT: &str = "fields-v1";

/// One index's place in the cache.
pub(crate) struct CachedIndex {
    text: PathBuf,
    table: PathBuf,
}

impl CachedIndex {
    /// The cache files of the index whose compressed file has `sha256`, under the fetcher's
    /// cache `dir`.
    pub fn new(dir: &Path, sha256: &str) -> CachedIndex {
        let text = dir.join("packages").join(format!("{sha256}.{TEXT_FORMAT}"));
        let table = text.with_extension(format!("{TEXT_FORMAT}.table"));
        CachedIndex { text, table }
    }

    /// The cached text and its table, or `None` when the text is not cached.
    pub fn open(&self) -> Option<(StanzaText, StanzaTable)> {
        let file = File::open(&self.text).ok()?;
        let text_len = file.metadata().ok()?.len();
        // A use, for `layerize cache clean`.
        layerize_basefs::touch_if_present(&self.text);
        let table = std::fs::read(&self.table)
            .ok()
            .and_then(|bytes| StanzaTable::decode(&bytes, text_len));
        if let Some(table) = table {
            layerize_basefs::touch_if_present(&self.table);
            return Some((StanzaText::File(file), table));
        }
        // Through the file opened, so that the table describes the text its stanzas are read
        // from (`read_exact_at` does not move the position).
        let text = std::io::read_to_string(&file).ok()?;
        let table = StanzaTable::scan(&text);
        let _ = write_atomically(&self.table, &table.encode());
        Some((StanzaText::File(file), table))
    }

    /// Keeps `text` and its `table`, then gives the text as the cache file; as `text` itself
    /// when it cannot be kept.
    pub fn store(&self, text: String, table: &StanzaTable) -> StanzaText {
        if let Some(parent) = self.text.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // The table after the text: a table is only ever read beside the text it describes.
        let kept = write_atomically(&self.text, text.as_bytes()).is_ok()
            && write_atomically(&self.table, &table.encode()).is_ok();
        match File::open(&self.text) {
            Ok(file) if kept => StanzaText::File(file),
            _ => StanzaText::Memory(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Origin;
    use crate::packages_file::PackagesFile;

    const TEXT: &str = "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\nSize: 3\n\
                        SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n\n\
                        Package: b\nVersion: 2\nProvides: a\nArchitecture: all\nFilename: pool/b.deb\n\
                        Size: 4\n\
                        SHA256: 1111111111111111111111111111111111111111111111111111111111111111\n";

    fn file(text: StanzaText, table: StanzaTable) -> PackagesFile {
        let origin = Origin {
            uri: "http://127.0.0.1:1/repo".into(),
            suite: "stable".into(),
            component: "main".into(),
        };
        PackagesFile::new("U", origin, "http://127.0.0.1:1/repo".into(), text, table)
    }

    /// Every stanza of `file` by name, as the versions of the packages each name reaches.
    fn versions(file: &PackagesFile, name: &str) -> Vec<String> {
        (file.stanzas_of(name).iter())
            .map(|&number| file.package(number).unwrap().version)
            .collect()
    }

    #[test]
    fn a_stored_index_opens_as_it_was_stored_and_reads_stanzas_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let cached = CachedIndex::new(dir.path(), "abc");
        assert!(cached.open().is_none());
        let table = StanzaTable::scan(TEXT);
        let stored = cached.store(TEXT.to_owned(), &table);
        assert!(matches!(stored, StanzaText::File(_)));
        let memory = file(StanzaText::Memory(TEXT.to_owned()), StanzaTable::scan(TEXT));
        assert_eq!(versions(&memory, "a"), ["1", "2"]);
        assert_eq!(versions(&file(stored, table), "a"), ["1", "2"]);

        let (text, table) = cached.open().unwrap();
        assert!(matches!(text, StanzaText::File(_)));
        assert_eq!(table, StanzaTable::scan(TEXT));
        let opened = file(text, table);
        assert_eq!(versions(&opened, "a"), ["1", "2"]);
        assert_eq!(versions(&opened, "b"), ["2"]);
        assert_eq!(
            opened.package(1).unwrap().deb.url,
            "http://127.0.0.1:1/repo/pool/b.deb"
        );
    }

    #[test]
    fn a_missing_or_stale_table_is_made_again_from_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let cached = CachedIndex::new(dir.path(), "abc");
        cached.store(TEXT.to_owned(), &StanzaTable::scan(TEXT));
        let expected = StanzaTable::scan(TEXT);
        // A table of another text (as after the text was replaced), then none at all.
        let other = "Package: z\n\n";
        std::fs::write(&cached.table, StanzaTable::scan(other).encode()).unwrap();
        assert_eq!(cached.open().unwrap().1, expected);
        assert_eq!(std::fs::read(&cached.table).unwrap(), expected.encode());
        std::fs::remove_file(&cached.table).unwrap();
        assert_eq!(cached.open().unwrap().1, expected);
        assert_eq!(std::fs::read(&cached.table).unwrap(), expected.encode());
    }

    #[test]
    fn an_index_that_cannot_be_kept_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // `packages` is a file, so nothing can be written below it.
        std::fs::write(dir.path().join("packages"), "").unwrap();
        let cached = CachedIndex::new(dir.path(), "abc");
        let text = cached.store(TEXT.to_owned(), &StanzaTable::scan(TEXT));
        assert!(matches!(text, StanzaText::Memory(ref kept) if kept == TEXT));
        assert!(cached.open().is_none());
    }
}
