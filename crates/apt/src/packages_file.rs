//! One verified `Packages` index: its text (only [`crate::index::INDEX_FIELDS`]) and its
//! [`StanzaTable`]. A build parses only the stanzas its resolution can reach
//! ([`crate::index::Index::reachable`]): a few hundred of an archive's tens of thousands, which
//! parsing all of them cost a fifth of a second for. With a cache the text stays in its cache
//! file and each of those stanzas is read from it when asked for.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::control::{self, Paragraph};
use crate::index::IndexError;
use crate::package::{ArchivePackage, DebLocation, MultiArch, Origin};
use crate::stanza_table::StanzaTable;

/// Where a `Packages` text is.
pub(crate) enum StanzaText {
    /// The index cache's file, of the length its table describes.
    File(File),
    /// The text, when there is no cache to keep it in or it could not be kept.
    Memory(String),
}

/// The stanzas of one `Packages` index.
pub(crate) struct PackagesFile {
    url: String,
    origin: Origin,
    /// What the stanzas' `Filename:`s are relative to.
    deb_base: String,
    text: StanzaText,
    table: StanzaTable,
}

impl PackagesFile {
    /// The index at `url` whose text and stanzas are `text` and `table`.
    pub fn new(
        url: &str,
        origin: Origin,
        deb_base: String,
        text: StanzaText,
        table: StanzaTable,
    ) -> PackagesFile {
        PackagesFile {
            url: url.to_owned(),
            origin,
            deb_base,
            text,
            table,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The stanzas named `name` or providing it, in the index's order.
    pub fn stanzas_of(&self, name: &str) -> &[u32] {
        self.table.stanzas_of(name)
    }

    /// Stanza `number`, parsed and checked.
    pub fn package(&self, number: u32) -> Result<ArchivePackage, IndexError> {
        let problem = |problem: String| IndexError::Packages {
            url: self.url.clone(),
            problem,
        };
        let range = self.table.stanza(number);
        let read;
        let text = match &self.text {
            StanzaText::Memory(text) => &text[range.start as usize..range.end as usize],
            StanzaText::File(file) => {
                let mut bytes = vec![0; (range.end - range.start) as usize];
                file.read_exact_at(&mut bytes, range.start)
                    .map_err(|error| {
                        problem(format!(
                            "reading stanza {number} from the index cache: {error}"
                        ))
                    })?;
                read = String::from_utf8(bytes).map_err(|_| {
                    problem(format!("stanza {number} in the index cache is not UTF-8"))
                })?;
                &read
            }
        };
        let mut paragraphs = control::parse(text).map_err(|e| problem(e.to_string()))?;
        let paragraph = paragraphs.pop().unwrap_or_default();
        archive_package(&self.url, paragraph, &self.deb_base, &self.origin)
    }
}

/// One stanza as an archive package, its `Filename:` checked and made a URL under `deb_base`.
pub(crate) fn archive_package(
    url: &str,
    paragraph: Paragraph,
    deb_base: &str,
    origin: &Origin,
) -> Result<ArchivePackage, IndexError> {
    let problem = |problem: String| IndexError::Packages {
        url: url.to_owned(),
        problem,
    };
    let name = paragraph
        .get("Package")
        .ok_or_else(|| problem("a stanza without `Package:`".into()))?
        .to_owned();
    let field = |field: &str| {
        paragraph
            .get(field)
            .map(str::to_owned)
            .ok_or_else(|| problem(format!("package {name} has no `{field}:` field")))
    };
    let (version, architecture, filename) = (
        field("Version")?,
        field("Architecture")?,
        field("Filename")?,
    );
    let size = field("Size")?
        .parse()
        .map_err(|_| problem(format!("package {name}: `Size:` is not a number")))?;
    let sha256 = field("SHA256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(problem(format!(
            "package {name}: `SHA256:` is not a SHA256"
        )));
    }
    if filename.split('/').any(|part| part == "..") {
        return Err(problem(format!(
            "package {name}: `Filename:` {filename:?} climbs out of the archive"
        )));
    }
    let filename = filename.trim_start_matches("./");
    Ok(ArchivePackage {
        multi_arch: MultiArch::of(&paragraph),
        deb: DebLocation {
            url: format!("{deb_base}/{filename}"),
            size,
            sha256,
        },
        origin: origin.clone(),
        name,
        version,
        architecture,
        paragraph,
    })
}
