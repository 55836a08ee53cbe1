//! Where each stanza of a `Packages` text is, and which stanzas each package name (or name a
//! stanza `Provides`) has: found by scanning the text once, in parts, and kept beside the text
//! in the index cache ([`crate::index_cache`]), so a build with a cached index looks names up
//! without reading, let alone scanning, the tens of megabytes of an archive's index.
//!
//! The names are kept sorted in one table and found by binary search: the same table whether
//! just scanned or read back, and read back with no per-name allocation.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::parallel;
use crate::relation::relation_names;

/// The stanzas of a `Packages` text and the names that reach them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StanzaTable {
    /// The length of the text the table describes.
    text_len: u64,
    /// Each stanza's bytes in the text, in the index's order.
    stanzas: Vec<Range<u64>>,
    /// Name `i` is `name_bytes[name_ends[i - 1]..name_ends[i]]` (from 0 for the first); names
    /// are sorted and each appears once.
    name_ends: Vec<u32>,
    name_bytes: Vec<u8>,
    /// Name `i`'s stanzas are `numbers[number_ends[i - 1]..number_ends[i]]`, in the index's
    /// order.
    number_ends: Vec<u32>,
    numbers: Vec<u32>,
}

/// Identifies the encoding ([`StanzaTable::encode`]) and what names a stanza: bump it when the
/// layout changes or when what [`StanzaScan`] takes as a stanza's names does (`Package:`,
/// `Provides:` through [`relation_names`]), or a cached table would answer by the old rules.
const MAGIC: &[u8] = b"layerize stanza table 1\n";

impl StanzaTable {
    /// Scans `text` (deb822 stanzas separated by blank lines) in parts, one per core.
    pub fn scan(text: &str) -> StanzaTable {
        StanzaTable::scan_in(text, parallel::threads())
    }

    /// Scans `text` in at most `parts` parts, each on a thread of its own.
    fn scan_in(text: &str, parts: usize) -> StanzaTable {
        let parts = parallel::paragraph_aligned_parts(text, parts);
        let scanned = parallel::in_order(parts, |part| Scanned::of(text, part));
        let mut table = StanzaTable {
            text_len: text.len() as u64,
            ..StanzaTable::default()
        };
        // The parts in order, so that each name's stanzas stay in the index's order. Made once
        // per index fetched: the cache keeps the table.
        let mut by_name: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for part in scanned {
            let first_number = table.stanzas.len() as u32;
            table.stanzas.extend(part.stanzas);
            for (name, numbers) in part.by_name {
                by_name
                    .entry(name)
                    .or_default()
                    .extend(numbers.into_iter().map(|number| first_number + number));
            }
        }
        for (name, numbers) in by_name {
            table.name_bytes.extend_from_slice(name.as_bytes());
            table.name_ends.push(table.name_bytes.len() as u32);
            table.numbers.extend(numbers);
            table.number_ends.push(table.numbers.len() as u32);
        }
        table
    }

    /// How many stanzas the text has.
    pub fn len(&self) -> usize {
        self.stanzas.len()
    }

    /// Where stanza `number` is in the text.
    pub fn stanza(&self, number: u32) -> Range<u64> {
        self.stanzas[number as usize].clone()
    }

    /// The stanzas named `name` or providing it, in the index's order.
    pub fn stanzas_of(&self, name: &str) -> &[u32] {
        let (mut low, mut high) = (0, self.name_ends.len());
        while low < high {
            let middle = (low + high) / 2;
            match self.name(middle).cmp(name.as_bytes()) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return &self.numbers[span(&self.number_ends, middle)],
            }
        }
        &[]
    }

    fn name(&self, index: usize) -> &[u8] {
        &self.name_bytes[span(&self.name_ends, index)]
    }

    /// The table as bytes: [`MAGIC`], then little-endian the text length (u64), the counts of
    /// stanzas, names, numbers and name bytes (u32 each), each stanza's start and end (u64
    /// each), each name's end in the name bytes and in the numbers (u32 each), the numbers
    /// (u32 each), and the name bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(
            MAGIC.len()
                + 24
                + 16 * self.stanzas.len()
                + 8 * self.name_ends.len()
                + 4 * self.numbers.len()
                + self.name_bytes.len(),
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.text_len.to_le_bytes());
        for count in [
            self.stanzas.len(),
            self.name_ends.len(),
            self.numbers.len(),
            self.name_bytes.len(),
        ] {
            // Beyond u32 no index comes near; a count cut short would only make decode refuse
            // the table, and the text be scanned again.
            bytes.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        }
        for stanza in &self.stanzas {
            bytes.extend_from_slice(&stanza.start.to_le_bytes());
            bytes.extend_from_slice(&stanza.end.to_le_bytes());
        }
        for (name_end, number_end) in self.name_ends.iter().zip(&self.number_ends) {
            bytes.extend_from_slice(&name_end.to_le_bytes());
            bytes.extend_from_slice(&number_end.to_le_bytes());
        }
        for number in &self.numbers {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        bytes.extend_from_slice(&self.name_bytes);
        bytes
    }

    /// The table [`encode`](Self::encode) wrote, or `None` for bytes that are not one that
    /// describes a text of `text_len` bytes: stanzas in order within the text, names sorted,
    /// unique and not empty, each name's stanzas in order and every number a stanza. A cache
    /// file that fails this is scanned again.
    pub fn decode(bytes: &[u8], text_len: u64) -> Option<StanzaTable> {
        let mut reader = Reader(bytes.strip_prefix(MAGIC)?);
        if reader.u64()? != text_len {
            return None;
        }
        let stanza_count = reader.u32()? as usize;
        let name_count = reader.u32()? as usize;
        let number_count = reader.u32()? as usize;
        let name_byte_count = reader.u32()? as usize;
        let expected = 16u64 * stanza_count as u64
            + 8 * name_count as u64
            + 4 * number_count as u64
            + name_byte_count as u64;
        if reader.0.len() as u64 != expected {
            return None;
        }
        let mut table = StanzaTable {
            text_len,
            stanzas: Vec::with_capacity(stanza_count),
            name_ends: Vec::with_capacity(name_count),
            name_bytes: Vec::new(),
            number_ends: Vec::with_capacity(name_count),
            numbers: Vec::with_capacity(number_count),
        };
        let mut previous_end = 0;
        for _ in 0..stanza_count {
            let (start, end) = (reader.u64()?, reader.u64()?);
            if start < previous_end || end < start || end > text_len {
                return None;
            }
            previous_end = end;
            table.stanzas.push(start..end);
        }
        let (mut previous_name, mut previous_number) = (0, 0);
        for _ in 0..name_count {
            let (name_end, number_end) = (reader.u32()?, reader.u32()?);
            // Names are not empty, and every name has a stanza.
            if name_end <= previous_name || number_end <= previous_number {
                return None;
            }
            (previous_name, previous_number) = (name_end, number_end);
            table.name_ends.push(name_end);
            table.number_ends.push(number_end);
        }
        if previous_name as usize != name_byte_count || previous_number as usize != number_count {
            return None;
        }
        for _ in 0..number_count {
            let number = reader.u32()?;
            if number as usize >= stanza_count {
                return None;
            }
            table.numbers.push(number);
        }
        table.name_bytes = reader.0.to_vec();
        let sorted = (1..name_count).all(|index| table.name(index - 1) < table.name(index));
        let in_order = (0..name_count).all(|index| {
            let numbers = &table.numbers[span(&table.number_ends, index)];
            numbers.windows(2).all(|pair| pair[0] < pair[1])
        });
        (sorted && in_order).then_some(table)
    }
}

/// The range of entry `index` of a list of cumulative ends.
fn span(ends: &[u32], index: usize) -> Range<usize> {
    let start = if index == 0 { 0 } else { ends[index - 1] };
    start as usize..ends[index] as usize
}

/// Little-endian numbers off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

/// The stanzas of one part of a `Packages` text, numbered from 0 within the part.
struct Scanned {
    stanzas: Vec<Range<u64>>,
    by_name: HashMap<String, Vec<u32>>,
}

impl Scanned {
    fn of(text: &str, part: Range<usize>) -> Scanned {
        // Archive stanzas, as the index cache keeps them, are about 400 bytes: sized so that
        // neither table grows while the part is scanned.
        let expected = part.len() / 300;
        let mut stanzas = Vec::with_capacity(expected);
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::with_capacity(expected);
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
                    stanza.close(&mut stanzas, &mut by_name);
                }
                continue;
            }
            current
                .get_or_insert_with(|| StanzaScan::starting_at(line_start))
                .line(content, offset);
        }
        Scanned { stanzas, by_name }
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
    fn close(mut self, stanzas: &mut Vec<Range<u64>>, by_name: &mut HashMap<String, Vec<u32>>) {
        self.end_provides();
        let number = stanzas.len() as u32;
        stanzas.push(self.range.start as u64..self.range.end as u64);
        if self.names.len() > 1 {
            self.names.sort();
            self.names.dedup();
        }
        for name in self.names {
            // `Package:` with no value names nothing, and a table with an empty name would not
            // decode: the text would be scanned again in every build.
            if !name.is_empty() {
                by_name.entry(name).or_default().push(number);
            }
        }
    }
}

#[cfg(test)]
mod tests;
