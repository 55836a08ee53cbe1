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
    let text = many_stanzas();
    let whole = Scanned::of(&text, 0..text.len());
    let table = StanzaTable::scan(&text);
    assert_eq!(table.len(), 50);
    assert_eq!(table.stanzas, whole.stanzas);
    for (name, numbers) in &whole.by_name {
        assert_eq!(table.stanzas_of(name), numbers, "{name}");
    }
    assert_eq!(table.stanzas_of("p3"), [3, 10, 17, 24, 31, 38, 45]);
    assert_eq!(table.stanzas_of("all").len(), 50);
    for count in [1, 2, 3, 8, 200] {
        let parts = stanza_aligned_parts(&text, count);
        assert!(parts.len() <= count);
        assert_eq!(parts.first().unwrap().start, 0);
        assert_eq!(parts.last().unwrap().end, text.len());
        assert!(parts.windows(2).all(|pair| pair[0].end == pair[1].start));
        let stanzas: Vec<Range<u64>> = parts
            .into_iter()
            .flat_map(|part| Scanned::of(&text, part).stanzas)
            .collect();
        assert_eq!(stanzas, whole.stanzas, "{count} parts");
    }
}

#[test]
fn a_table_reads_back_as_it_was_written() {
    for text in [TEXT.to_owned(), many_stanzas(), String::new()] {
        let table = StanzaTable::scan(&text);
        let decoded = StanzaTable::decode(&table.encode(), text.len() as u64);
        assert_eq!(decoded.as_ref(), Some(&table));
        let decoded = decoded.unwrap();
        for name in ["p0", "p6", "virtual2", "all", "awk", "gawk-doc", "absent"] {
            assert_eq!(decoded.stanzas_of(name), table.stanzas_of(name), "{name}");
        }
    }
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
    // A name's end before the previous one's (an empty or negative name).
    assert_eq!(
        StanzaTable::decode(&with(stanzas_end + 8, &0u32.to_le_bytes()), len),
        None
    );
}
