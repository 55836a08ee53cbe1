//! A blocking `Read` over the chunks of an async blob stream, fed through a bounded channel so
//! that a slow reader holds back the download instead of buffering it, and refusing bytes
//! past the blob's size from the manifest.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc::Receiver;

pub(crate) struct BlobReader {
    chunks: Receiver<Bytes>,
    chunk: Bytes,
    /// Bytes the blob may still have according to its descriptor.
    allowed: u64,
    overlong: bool,
}

impl BlobReader {
    pub fn new(chunks: Receiver<Bytes>, size: u64) -> Self {
        BlobReader {
            chunks,
            chunk: Bytes::new(),
            allowed: size,
            overlong: false,
        }
    }

    /// Whether the stream went on past the descriptor's size.
    pub fn overlong(&self) -> bool {
        self.overlong
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                // The sender is gone: the end of the blob, or a failed download that the
                // sending side reports itself.
                None => return Ok(0),
            }
        }
        if self.chunk.len() as u64 > self.allowed {
            self.overlong = true;
            return Err(io::Error::other(
                "the blob is longer than its descriptor says",
            ));
        }
        let count = buf.len().min(self.chunk.len());
        buf[..count].copy_from_slice(&self.chunk[..count]);
        self.chunk.advance(count);
        self.allowed -= count as u64;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&'static [u8]], size: u64) -> BlobReader {
        let (sender, receiver) = tokio::sync::mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            sender.try_send(Bytes::from_static(chunk)).unwrap();
        }
        BlobReader::new(receiver, size)
    }

    #[test]
    fn reads_the_chunks_in_order() {
        let mut blob = reader(&[b"ab", b"", b"cde"], 5);
        let mut out = Vec::new();
        blob.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcde");
        assert!(!blob.overlong());
    }

    #[test]
    fn refuses_bytes_past_the_descriptor_size() {
        let mut blob = reader(&[b"abc", b"def"], 4);
        let mut out = Vec::new();
        let error = blob.read_to_end(&mut out).unwrap_err();
        assert!(error.to_string().contains("longer than"), "{error}");
        assert!(blob.overlong());
        assert_eq!(out, b"abc");
    }
}
