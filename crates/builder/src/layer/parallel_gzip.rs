//! Multi-core gzip: the stream is cut into fixed 1 MiB chunks, each compressed by libdeflate on
//! a worker of a [`CompressionPool`] into its own gzip member, and the members are written in
//! order.
//!
//! Why this shape: chunk boundaries depend only on the input, so the output is byte-identical for
//! any number of threads and whatever else the pool is compressing; libdeflate needs about a
//! third of zlib's CPU at level 6 and compresses a little better, and 1 MiB chunks lose under
//! 0.5% to a single stream (docs/benchmarks.md). A multi-member gzip is standard (RFC 1952 §2.2)
//! and read whole by `gzip -d`, Go's `compress/gzip` (containerd, Docker, podman, skopeo, umoci)
//! and flate2's `MultiGzDecoder`; single-member decoders (flate2's `GzDecoder`) stop after the
//! first MiB.
//!
//! Memory is bounded per stream: at most two chunks per pool worker are in flight, however many
//! streams share the pool.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver};

use libdeflater::CompressionLvl;

use crate::layer::compression_pool::{CompressionPool, Member, Reply, WorkerPanicked};

/// Uncompressed bytes per gzip member.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

/// Runs `produce` with a writer whose bytes are gzip-compressed at `level` on the workers of
/// `pool` and written to `out` in order.
pub(crate) fn compress<W, T, E>(
    pool: &CompressionPool,
    level: CompressionLvl,
    out: &mut W,
    produce: impl FnOnce(&mut ChunkWriter<'_, W>) -> Result<T, E>,
) -> Result<T, E>
where
    W: Write,
    E: From<io::Error>,
{
    let (reply, done) = mpsc::channel();
    let mut writer = ChunkWriter {
        pool,
        level,
        out,
        chunk: Vec::with_capacity(CHUNK_SIZE),
        submitted: 0,
        written: 0,
        max_in_flight: 2 * pool.threads() as u64,
        finished: BTreeMap::new(),
        spare: Vec::new(),
        buffers: 0,
        reply,
        done,
    };
    let value = produce(&mut writer)?;
    writer.finish()?;
    Ok(value)
    // A writer dropped early (the producer failed) leaves its chunks in flight to be compressed
    // and dropped by the workers: its channel is closed.
}

/// The writer handed to the producer; see [`compress`].
pub(crate) struct ChunkWriter<'a, W> {
    pool: &'a CompressionPool,
    level: CompressionLvl,
    out: &'a mut W,
    chunk: Vec<u8>,
    /// Chunks handed to the workers so far; the next chunk's index.
    submitted: u64,
    /// Chunks written to `out` so far; the index of the next one to write.
    written: u64,
    max_in_flight: u64,
    /// Compressed chunks that came back ahead of their turn.
    finished: BTreeMap<u64, Member>,
    /// Buffers of written chunks, reused to keep memory flat.
    spare: Vec<Member>,
    /// Chunk buffers allocated so far (besides `chunk`).
    buffers: usize,
    reply: Reply,
    done: Receiver<Result<Member, WorkerPanicked>>,
}

impl<W: Write> ChunkWriter<'_, W> {
    fn submit(&mut self) -> io::Result<()> {
        let mut member = match self.spare.pop() {
            Some(member) => member,
            None => {
                self.buffers += 1;
                Member {
                    index: 0,
                    input: Vec::with_capacity(CHUNK_SIZE),
                    output: Vec::new(),
                    compressed_len: 0,
                }
            }
        };
        member.index = self.submitted;
        std::mem::swap(&mut member.input, &mut self.chunk);
        self.chunk.clear();
        self.pool.submit(self.level, member, &self.reply)?;
        self.submitted += 1;
        while self.submitted - self.written >= self.max_in_flight {
            self.receive()?;
        }
        Ok(())
    }

    /// Waits for one compressed chunk and writes every chunk that is now due.
    fn receive(&mut self) -> io::Result<()> {
        let member = self
            .done
            .recv()
            .expect("the writer holds a sender of its own channel")
            .map_err(|WorkerPanicked| io::Error::other("a gzip worker thread panicked"))?;
        self.finished.insert(member.index, member);
        while let Some(member) = self.finished.remove(&self.written) {
            self.out.write_all(member.compressed())?;
            self.written += 1;
            self.spare.push(member);
        }
        Ok(())
    }

    /// Compresses the last chunk (an empty stream still becomes one valid member) and writes
    /// everything out.
    fn finish(&mut self) -> io::Result<()> {
        if !self.chunk.is_empty() || self.submitted == 0 {
            self.submit()?;
        }
        while self.written < self.submitted {
            self.receive()?;
        }
        self.out.flush()
    }
}

impl<W: Write> Write for ChunkWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(CHUNK_SIZE - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..take]);
        if self.chunk.len() == CHUNK_SIZE {
            self.submit()?;
        }
        Ok(take)
    }

    /// Does nothing: a flush must not cut a chunk short, or the output would depend on when
    /// callers flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use libdeflater::Compressor;

    use super::*;

    /// `len` bytes of compressible text that differs with `seed`.
    fn text(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
        let mut text = Vec::with_capacity(len + 32);
        while text.len() < len {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.extend_from_slice(format!("word{} ", (state >> 40) % 5_000).as_bytes());
        }
        text.truncate(len);
        text
    }

    fn level(level: i32) -> CompressionLvl {
        CompressionLvl::new(level).unwrap()
    }

    /// Compresses `input` on `pool`, written in pieces of `piece` bytes.
    fn gzip(pool: &CompressionPool, level: CompressionLvl, input: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        compress(pool, level, &mut out, |writer| {
            input
                .chunks(piece)
                .try_for_each(|piece| writer.write_all(piece))
        })
        .unwrap();
        out
    }

    /// What the format says the stream is: each 1 MiB of input compressed alone into one gzip
    /// member by a fresh libdeflate compressor at the level, in order.
    fn members_one_by_one(level: CompressionLvl, input: &[u8]) -> Vec<u8> {
        let mut compressor = Compressor::new(level);
        let mut out = Vec::new();
        for chunk in input.chunks(CHUNK_SIZE) {
            let mut member = vec![0; compressor.gzip_compress_bound(chunk.len())];
            let len = compressor.gzip_compress(chunk, &mut member).unwrap();
            out.extend_from_slice(&member[..len]);
        }
        out
    }

    #[test]
    fn the_stream_is_one_member_per_mib_whatever_the_pool_size_and_the_writes() {
        let input = text(1, 3 * CHUNK_SIZE + 12_345);
        for level_number in [1, 3, 6] {
            let expected = members_one_by_one(level(level_number), &input);
            for (threads, piece) in [(1, 1 << 20), (2, 4096), (3, 777_777), (8, 100_000)] {
                let pool = CompressionPool::new(threads);
                assert!(
                    gzip(&pool, level(level_number), &input, piece) == expected,
                    "level {level_number}, {threads} threads, writes of {piece} bytes"
                );
            }
        }
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&members_one_by_one(level(6), &input)[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == input);
        // An empty stream is one empty member.
        let mut compressor = Compressor::new(level(6));
        let mut empty_member = vec![0; compressor.gzip_compress_bound(0)];
        let len = compressor.gzip_compress(b"", &mut empty_member).unwrap();
        empty_member.truncate(len);
        assert_eq!(
            gzip(&CompressionPool::new(2), level(6), b"", 1),
            empty_member
        );
    }

    #[test]
    fn streams_written_at_once_on_one_pool_are_the_bytes_written_alone() {
        // Different inputs and levels, so that every worker switches compressors between them.
        let streams: Vec<(CompressionLvl, Vec<u8>)> = (0..6u64)
            .map(|n| {
                let len = (n as usize % 3 + 1) * CHUNK_SIZE + 1000 * n as usize;
                (level([1, 3, 6][n as usize % 3]), text(n + 10, len))
            })
            .collect();
        let alone: Vec<Vec<u8>> = streams
            .iter()
            .map(|(level, input)| members_one_by_one(*level, input))
            .collect();
        for threads in [1, 2, 3] {
            let pool = CompressionPool::new(threads);
            let together: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = streams
                    .iter()
                    .map(|(level, input)| scope.spawn(|| gzip(&pool, *level, input, 65_536)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (n, (together, alone)) in together.iter().zip(&alone).enumerate() {
                assert!(together == alone, "stream {n} on a pool of {threads}");
            }
        }
    }

    #[test]
    fn memory_is_bounded_by_the_window_not_by_the_stream() {
        let pool = CompressionPool::new(2);
        let piece = text(3, CHUNK_SIZE);
        let mut out = io::sink();
        let buffers = compress(&pool, level(1), &mut out, |writer| {
            for _ in 0..16 {
                writer.write_all(&piece)?;
            }
            Ok::<_, io::Error>(writer.buffers)
        })
        .unwrap();
        // Two chunks in flight per worker, and the one being filled.
        assert!(buffers <= 2 * pool.threads(), "{buffers} chunk buffers");
    }
}
