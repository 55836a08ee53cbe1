//! Turning a layer blob into its tar stream: the compression is told by magic bytes (gzip,
//! any number of members; zstd, any number of frames; or a plain tar).

use std::io::{self, Cursor, Read};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// The uncompressed stream of `blob`, whatever its compression.
pub fn decompressed<'a>(mut blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match blob.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let magic = &magic[..filled];
    let whole = Cursor::new(magic.to_vec()).chain(blob);
    Ok(if magic.starts_with(GZIP_MAGIC) {
        // Multi-member: layerize itself writes one gzip member per MiB.
        Box::new(flate2::read::MultiGzDecoder::new(whole))
    } else if magic.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(whole)?)
    } else {
        Box::new(whole)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompressed(blob).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_every_gzip_member_and_zstd_frame() {
        let mut gzip = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(part).unwrap();
            gzip.extend(encoder.finish().unwrap());
        }
        assert_eq!(read_all(&gzip), b"first second");

        let mut zstd = zstd::encode_all(&b"one "[..], 3).unwrap();
        zstd.extend(zstd::encode_all(&b"two"[..], 3).unwrap());
        assert_eq!(read_all(&zstd), b"one two");

        assert_eq!(read_all(b"plain tar bytes"), b"plain tar bytes");
        assert_eq!(read_all(b"ab"), b"ab");
        assert_eq!(read_all(b""), b"");
    }
}
