//! Readers and writers that pass bytes through while computing their sha256 and counting
//! them: the diffID of a tar stream, the digest of a blob, the checksum of a cache file.

use std::io::{self, Read, Write};

use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

/// Passes bytes through, computing their sha256 and counting them.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest::from_sha256_raw(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.count += read as u64;
        Ok(read)
    }
}

/// Passes bytes through to a writer, computing their sha256.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The raw sha256 of everything written, and the writer.
    pub fn finish(self) -> ([u8; 32], W) {
        (self.hasher.finalize().into(), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(reader.finish(), (Digest::sha256(b"abc"), 3));

        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        let (raw, written) = writer.finish();
        assert_eq!(Digest::from_sha256_raw(raw), Digest::sha256(b"abc"));
        assert_eq!(written, b"abc");
    }
}
