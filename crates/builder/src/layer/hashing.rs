//! A writer that passes bytes through while computing their sha256 and counting them: the diffID
//! around the tar stream, the digest around the compressed blob.

use std::io::{self, Write};

use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and size of everything written so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest::from_sha256_raw(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
