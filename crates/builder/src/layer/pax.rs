//! PAX extended header records (`"<len> <key>=<value>\n"`, POSIX.1-2001): writing one, and
//! reading the records of an extended header by their length prefixes. Values are bytes and may
//! hold newlines — a file capability with `cap_dac_override` and `cap_fowner` does — so records
//! cannot be split at newlines (the `tar` crate does, and fails on such values:
//! composefs/tar-rs#428).

/// The record key prefix of an extended attribute, as GNU tar (`--xattrs`) and Go's archive/tar
/// write it: `SCHILY.xattr.<name>=<raw value>`.
pub(crate) const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Appends one record, where `len` counts the whole record, itself included.
pub(crate) fn write_record(pax: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() > rest.to_string().len() {
        len += 1;
    }
    pax.extend_from_slice(format!("{len} {key}=").as_bytes());
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

/// One record of an extended header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
#[error("malformed PAX record at byte {offset} of its extended header: {reason}")]
pub(crate) struct MalformedRecord {
    offset: usize,
    reason: &'static str,
}

/// The records of the extended header `data`, in order. Trailing NUL padding is ignored.
pub(crate) fn read_records(data: &[u8]) -> Result<Vec<Record<'_>>, MalformedRecord> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < data.len() && data[offset] != 0 {
        let malformed = |reason| MalformedRecord { offset, reason };
        let rest = &data[offset..];
        let space = rest
            .iter()
            .position(|&byte| byte == b' ')
            .ok_or(malformed("no length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok())
            .ok_or(malformed("the length is not a decimal number"))?;
        if len <= space + 1 || len > rest.len() {
            return Err(malformed("the length does not fit the header"));
        }
        let Some((b'\n', key_value)) = rest[space + 1..len].split_last() else {
            return Err(malformed("the record does not end with a newline"));
        };
        let equals = key_value
            .iter()
            .position(|&byte| byte == b'=')
            .ok_or(malformed("no `=`"))?;
        let key = std::str::from_utf8(&key_value[..equals])
            .map_err(|_| malformed("the key is not UTF-8"))?;
        records.push(Record {
            key,
            value: &key_value[equals + 1..],
        });
        offset += len;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        for value_len in [1, 90, 95, 96, 97, 200, 990, 995, 996] {
            let mut pax = Vec::new();
            let value = "x".repeat(value_len);
            write_record(&mut pax, "path", value.as_bytes());
            let text = String::from_utf8(pax).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), text.len(), "{value_len}");
        }
    }

    #[test]
    fn records_are_read_by_length_whatever_their_values_hold() {
        let mut pax = Vec::new();
        write_record(&mut pax, "path", b"a/b");
        // A capability with cap_dac_override and cap_fowner: byte 0x0a, a newline.
        let capability =
            b"\x01\x00\x00\x02\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        write_record(&mut pax, "SCHILY.xattr.security.capability", capability);
        write_record(&mut pax, "SCHILY.xattr.user.x", b"1 path=evil\n=");
        write_record(&mut pax, "empty", b"");
        pax.extend_from_slice(&[0; 7]);
        assert_eq!(
            read_records(&pax).unwrap(),
            [
                Record {
                    key: "path",
                    value: b"a/b"
                },
                Record {
                    key: "SCHILY.xattr.security.capability",
                    value: capability
                },
                Record {
                    key: "SCHILY.xattr.user.x",
                    value: b"1 path=evil\n="
                },
                Record {
                    key: "empty",
                    value: b""
                },
            ]
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for (data, reason) in [
            (&b"13 path=a/b\n"[..], "the length does not fit the header"),
            (b"11 path=a/b\n", "the record does not end with a newline"),
            (b"x1 path=a\n", "the length is not a decimal number"),
            (b"+9 path=\n", "the length is not a decimal number"),
            (b"9 pathab\n", "no `=`"),
            (b"3 ", "the length does not fit the header"),
            (b"path=a\n", "no length"),
        ] {
            let err = read_records(data).unwrap_err();
            assert_eq!(err.reason, reason, "{}", data.escape_ascii());
        }
        let mut two = Vec::new();
        write_record(&mut two, "path", b"a");
        two.extend_from_slice(b"7 k=v\nX");
        assert_eq!(
            read_records(&two).unwrap_err().to_string(),
            "malformed PAX record at byte 9 of its extended header: the record does not end with a newline"
        );
    }
}
