//! The stanza table: scanning (whole and in parts), lookups, and the encoding that the index
//! cache reads back, including the encodings it must refuse.

use super::*;

const TEXT: &str = "\
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

fn stanza_text(table: &StanzaTable, text: &str, number: u32) -> String {
    let range = table.stanza(number);
    text[range.start as usize..range.end as usize].to_owned()
}

#[test]
fn stanzas_are_found_by_name_and_by_what_they_provide() {
    let table = StanzaTable::scan(TEXT);
    assert_eq!(table.len(), 3);
    assert_eq!(table.text_len, TEXT.len() as u64);
    assert_eq!(table.stanzas_of("mawk"), [0, 2]);
    assert_eq!(table.stanzas_of("awk"), [0, 1]);
    assert_eq!(table.stanzas_of("gawk-doc"), [1]);
    assert_eq!(table.stanzas_of("nawk"), [] as [u32; 0]);
    assert_eq!(table.stanzas_of(""), [] as [u32; 0]);
    assert_eq!(
        stanza_text(&table, TEXT, 1).lines().next(),
        Some("Package: gawk")
    );
    assert!(stanza_text(&table, TEXT, 2).ends_with("mawk2.deb\n"));
}

/// 50 stanzas over 7 package names, each providing one of 3 virtual names and `all`.
fn many_stanzas() -> String {
    let stanza = |n: usize| {
        format!(
            "Package: p{}\nVersion: {n}\nProvides: virtual{}, all\nFilename: pool/{n}.deb\n",
            n % 7,
            n % 3
        )
    };
    (0..50).map(|n| stanza(n) + "\n").collect()
}

#[test]
fn a_text_scanned_in_parts_gives_what_one_scan_gives() {
    // Multi-byte characters everywhere, so that the parts' targets fall inside some.
    let text: String = many_stanzas()
        .split_terminator("\n\n")
        .map(|stanza| format!("{stanza}\nX-Note: ééé€€\n\n"))
        .collect();
    let whole = Scanned::of(&text, 0..text.len());
    let one_part = StanzaTable::scan_in(&text, 1);
    assert_eq!(one_part.len(), 50);
    assert_eq!(one_part.stanzas, whole.stanzas);
    for (name, numbers) in &whole.by_name {
        assert_eq!(one_part.stanzas_of(name), numbers, "{name}");
    }
    assert_eq!(one_part.stanzas_of("p3"), [3, 10, 17, 24, 31, 38, 45]);
    assert_eq!(one_part.stanzas_of("all").len(), 50);
    for count in [2, 3, 8, 200] {
        let parts = parallel::paragraph_aligned_parts(&text, count);
        assert!(parts.len() <= count);
        assert!(count < 8 || parts.len() > 2, "{count} parts: {parts:?}");
        assert_eq!(parts.first().unwrap().start, 0);
        assert_eq!(parts.last().unwrap().end, text.len());
        assert!(parts.windows(2).all(|pair| pair[0].end == pair[1].start));
        assert_eq!(
            StanzaTable::scan_in(&text, count),
            one_part,
            "{count} parts"
        );
    }
}

#[test]
fn a_table_reads_back_as_it_was_written() {
    // With a stanza whose `Package:` is empty: it names nothing, so the table still decodes.
    let unnamed = format!("{TEXT}\nPackage:\nVersion: 1\n");
    for text in [
        TEXT.to_owned(),
        many_stanzas(),
        String::new(),
        unnamed.clone(),
    ] {
        let table = StanzaTable::scan(&text);
        let decoded = StanzaTable::decode(&table.encode(), text.len() as u64);
        assert_eq!(decoded.as_ref(), Some(&table));
        let decoded = decoded.unwrap();
        for name in ["p0", "p6", "virtual2", "all", "awk", "gawk-doc", "absent"] {
            assert_eq!(decoded.stanzas_of(name), table.stanzas_of(name), "{name}");
        }
    }
    let table = StanzaTable::scan(&unnamed);
    assert_eq!(table.len(), 4);
    assert_eq!(table.stanzas_of(""), [] as [u32; 0]);
    assert_eq!(table.stanzas_of("mawk"), [0, 2]);
}

#[test]
fn a_table_that_does_not_describe_its_text_is_not_read() {
    let table = StanzaTable::scan(TEXT);
    let bytes = table.encode();
    let len = TEXT.len() as u64;
    // Another text's length, a cut or a longer file, another encoding's magic.
    assert_eq!(StanzaTable::decode(&bytes, len + 1), None);
    assert_eq!(StanzaTable::decode(&bytes[..bytes.len() - 1], len), None);
    assert_eq!(StanzaTable::decode(&[&bytes[..], b"x"].concat(), len), None);
    let mut other_magic = bytes.clone();
    other_magic[MAGIC.len() - 2] = b'2';
    assert_eq!(StanzaTable::decode(&other_magic, len), None);

    let header = MAGIC.len() + 24;
    let stanzas_end = header + 16 * table.len();
    let names_end = stanzas_end + 8 * table.name_ends.len();
    let numbers_end = names_end + 4 * table.numbers.len();
    let with = |at: usize, value: &[u8]| {
        let mut changed = bytes.clone();
        changed[at..at + value.len()].copy_from_slice(value);
        changed
    };
    // A stanza past the text's end, stanzas out of order.
    assert_eq!(
        StanzaTable::decode(&with(header + 8, &(len + 1).to_le_bytes()), len),
        None
    );
    assert_eq!(
        StanzaTable::decode(&with(header + 16, &0u64.to_le_bytes()), len),
        None
    );
    // A number that is no stanza.
    assert_eq!(
        StanzaTable::decode(&with(names_end, &3u32.to_le_bytes()), len),
        None
    );
    // Names out of order: the name bytes start with "awk"; make the first name sort last.
    assert_eq!(&bytes[numbers_end..numbers_end + 3], b"awk");
    assert_eq!(StanzaTable::decode(&with(numbers_end, b"zzz"), len), None);
    // A name's end before the previous one's (an empty or negative name), a name with no
    // stanza, ends that stop short of the counts.
    let refused = |at: usize, value: u32| StanzaTable::decode(&with(at, &value.to_le_bytes()), len);
    assert_eq!(refused(stanzas_end + 8, 0), None);
    assert_eq!(refused(stanzas_end + 12, 0), None);
    let last_name = stanzas_end + 8 * (table.name_ends.len() - 1);
    assert_eq!(refused(last_name, table.name_bytes.len() as u32 - 1), None);
    assert_eq!(refused(last_name + 4, table.numbers.len() as u32 - 1), None);
    // A name's stanzas out of order: "awk" is 0 and 1; make it 1 and 0.
    assert_eq!(table.stanzas_of("awk"), [0, 1]);
    let swapped = [1u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
    assert_eq!(StanzaTable::decode(&with(names_end, &swapped), len), None);
}
