//! One verified `Packages` index, kept as its text (only [`crate::index::INDEX_FIELDS`]) with
//! where each package name's stanzas are, and each name a stanza `Provides`. A build parses
//! only the stanzas its resolution can reach ([`crate::index::Index::reachable`]): a few hundred
//! of an archive's tens of thousands, which parsing all of them cost a fifth of a second for.

use std::collections::HashMap;
use std::ops::Range;

use crate::control::{self, Paragraph};
use crate::index::IndexError;
use crate::package::{ArchivePackage, DebLocation, MultiArch, Origin};
use crate::parallel;
use crate::relation::relation_names;

/// The stanzas of one `Packages` index.
pub(crate) struct PackagesFile {
    url: String,
    origin: Origin,
    /// What the stanzas' `Filename:`s are relative to.
    deb_base: String,
    text: String,
    /// Each stanza's bytes in `text`, in the index's order.
    stanzas: Vec<Range<usize>>,
    /// For each part of the text scanned on its own, in order: the number of its first stanza,
    /// and the stanzas (numbered within the part) named by, or providing, each name. Kept apart
    /// because joining them cost as much as a part's scan, for the few hundred names a build
    /// looks up.
    parts: Vec<(u32, HashMap<String, Vec<u32>>)>,
}

impl PackagesFile {
    /// Finds the stanzas of `text` (deb822, as the index cache writes it) and their names; the
    /// rest of each stanza is read when it is asked for. Every build does this for an archive's
    /// whole index, so the text is scanned in parts, one per core.
    pub fn new(url: &str, origin: Origin, deb_base: String, text: String) -> PackagesFile {
        let parts = stanza_aligned_parts(&text, parallel::threads());
        let scanned = parallel::in_order(parts, |part| Scanned::of(&text, part));
        let mut stanzas = Vec::new();
        let mut parts = Vec::new();
        for part in scanned {
            parts.push((stanzas.len() as u32, part.by_name));
            stanzas.extend(part.stanzas);
        }
        PackagesFile {
            url: url.to_owned(),
            origin,
            deb_base,
            text,
            stanzas,
            parts,
        }
    }

    pub fn len(&self) -> usize {
        self.stanzas.len()
    }

    /// The stanzas named `name` or providing it, in the index's order.
    pub fn stanzas_of(&self, name: &str) -> Vec<u32> {
        self.parts
            .iter()
            .flat_map(|(first, by_name)| {
                let numbers = by_name.get(name).map_or(&[][..], Vec::as_slice);
                numbers.iter().map(move |number| first + number)
            })
            .collect()
    }

    /// Stanza `number`, parsed and checked.
    pub fn package(&self, number: u32) -> Result<ArchivePackage, IndexError> {
        let text = &self.text[self.stanzas[number as usize].clone()];
        let mut paragraphs = control::parse(text).map_err(|e| IndexError::Packages {
            url: self.url.clone(),
            problem: e.to_string(),
        })?;
        let paragraph = paragraphs.pop().unwrap_or_default();
        archive_package(&self.url, paragraph, &self.deb_base, &self.origin)
    }
}

/// `text` cut into at most `count` ranges of about equal length, each cut just after an empty
/// line (where a stanza has ended).
fn stanza_aligned_parts(text: &str, count: usize) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for k in 1..count.max(1) {
        let target = (text.len() * k / count).max(start);
        let Some(blank) = text[target..].find("\n\n") else {
            break;
        };
        let cut = target + blank + 2;
        parts.push(start..cut);
        start = cut;
    }
    parts.push(start..text.len());
    parts
}

/// The stanzas of one part of a `Packages` text, numbered from 0 within the part.
struct Scanned {
    stanzas: Vec<Range<usize>>,
    by_name: HashMap<String, Vec<u32>>,
}

impl Scanned {
    fn of(text: &str, part: Range<usize>) -> Scanned {
        // Archive stanzas, as the index cache keeps them, are about 400 bytes: sized so that
        // neither table grows while the part is scanned.
        let expected = part.len() / 300;
        let mut scanned = Scanned {
            stanzas: Vec::with_capacity(expected),
            by_name: HashMap::with_capacity(expected),
        };
        let mut current: Option<StanzaScan> = None;
        let mut offset = part.start;
        // A blank line after the last one closes the last stanza too.
        for line in text[part]
            .split_inclusive('\n')
            .chain(std::iter::once("\n"))
        {
            let line_start = offset;
            offset += line.len();
            let content = line.trim_end_matches(['\n', '\r']);
            if content.trim().is_empty() {
                if let Some(stanza) = current.take() {
                    stanza.close(&mut scanned.stanzas, &mut scanned.by_name);
                }
                continue;
            }
            current
                .get_or_insert_with(|| StanzaScan::starting_at(line_start))
                .line(content, offset);
        }
        scanned
    }
}

/// A stanza being scanned: where it is, and the names it has so far.
struct StanzaScan {
    range: Range<usize>,
    names: Vec<String>,
    /// The `Provides:` being read, continuation lines included.
    provides: Option<String>,
}

impl StanzaScan {
    fn starting_at(start: usize) -> StanzaScan {
        StanzaScan {
            range: start..start,
            names: Vec::new(),
            provides: None,
        }
    }

    /// Takes in one non-blank line of the stanza, which ends at `end`.
    fn line(&mut self, content: &str, end: usize) {
        self.range.end = end;
        if content.starts_with([' ', '\t']) {
            if let Some(value) = self.provides.as_mut() {
                value.push(' ');
                value.push_str(content.trim());
            }
            return;
        }
        self.end_provides();
        // Only `Package:` and `Provides:` name a stanza: most lines are passed over unsplit.
        if !content.starts_with(['P', 'p']) {
            return;
        }
        let Some((field, value)) = content.split_once(':') else {
            return;
        };
        if field.eq_ignore_ascii_case("Package") {
            self.names.push(value.trim().to_owned());
        } else if field.eq_ignore_ascii_case("Provides") {
            self.provides = Some(value.trim().to_owned());
        }
    }

    fn end_provides(&mut self) {
        if let Some(value) = self.provides.take() {
            self.names.extend(relation_names(&value));
        }
    }

    /// Records the stanza as the next of `stanzas`, under each of its names.
    fn close(mut self, stanzas: &mut Vec<Range<usize>>, by_name: &mut HashMap<String, Vec<u32>>) {
        self.end_provides();
        let number = stanzas.len() as u32;
        stanzas.push(self.range);
        if self.names.len() > 1 {
            self.names.sort();
            self.names.dedup();
        }
        for name in self.names {
            by_name.entry(name).or_default().push(number);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            uri: "http://127.0.0.1:1/repo".into(),
            suite: "stable".into(),
            component: "main".into(),
        }
    }

    #[test]
    fn stanzas_are_found_by_name_and_by_what_they_provide() {
        let text = "\
Package: mawk
Version: 1.3.4
Provides: awk
Filename: pool/m/mawk.deb

Package: gawk
Version: 5.2
Provides: awk,
 gawk-doc (= 5.2)
Filename: pool/g/gawk.deb


Package: mawk
Version: 1.3.5
Filename: pool/m/mawk2.deb
";
        let file = PackagesFile::new("U", origin(), "B".into(), text.to_owned());
        assert_eq!(file.len(), 3);
        assert_eq!(file.stanzas_of("mawk"), [0, 2]);
        assert_eq!(file.stanzas_of("awk"), [0, 1]);
        assert_eq!(file.stanzas_of("gawk-doc"), [1]);
        assert_eq!(file.stanzas_of("nawk"), [] as [u32; 0]);
        assert_eq!(
            file.text[file.stanzas[1].clone()].lines().next(),
            Some("Package: gawk")
        );
        assert!(file.text[file.stanzas[2].clone()].ends_with("mawk2.deb\n"));
    }

    #[test]
    fn a_text_scanned_in_parts_gives_what_one_scan_gives() {
        let stanza = |n: usize| {
            format!(
                "Package: p{}\nVersion: {n}\nProvides: virtual{}, all\nFilename: pool/{n}.deb\n",
                n % 7,
                n % 3
            )
        };
        let text: String = (0..50).map(|n| stanza(n) + "\n").collect();
        let whole = Scanned::of(&text, 0..text.len());
        for count in [1, 2, 3, 8, 200] {
            let parts = stanza_aligned_parts(&text, count);
            assert!(parts.len() <= count);
            assert_eq!(parts.first().unwrap().start, 0);
            assert_eq!(parts.last().unwrap().end, text.len());
            assert!(parts.windows(2).all(|pair| pair[0].end == pair[1].start));
            let scanned: Vec<Scanned> = parts
                .into_iter()
                .map(|part| Scanned::of(&text, part))
                .collect();
            let stanzas: Vec<Range<usize>> = scanned
                .iter()
                .flat_map(|part| part.stanzas.clone())
                .collect();
            assert_eq!(stanzas, whole.stanzas, "{count} parts");
        }
        let file = PackagesFile::new("U", origin(), "B".into(), text.clone());
        assert_eq!(file.len(), 50);
        assert_eq!(file.stanzas, whole.stanzas);
        for (name, numbers) in &whole.by_name {
            assert_eq!(&file.stanzas_of(name), numbers, "{name}");
        }
        assert_eq!(file.stanzas_of("p3"), [3, 10, 17, 24, 31, 38, 45]);
        assert_eq!(file.stanzas_of("all").len(), 50);
    }
}
