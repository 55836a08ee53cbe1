//! Multi-core gzip: the stream is cut into fixed 1 MiB chunks, each compressed by libdeflate on a
//! worker thread into its own gzip member, and the members are written in order.
//!
//! Why this shape: chunk boundaries depend only on the input, so the output is byte-identical for
//! any number of threads; libdeflate needs about a third of zlib's CPU at level 6 and compresses
//! a little better, and 1 MiB chunks lose under 0.5% to a single stream (docs/benchmarks.md). A
//! multi-member gzip is standard (RFC 1952 §2.2) and read whole by `gzip -d`, Go's
//! `compress/gzip` (containerd, Docker, podman, skopeo, umoci) and flate2's `MultiGzDecoder`;
//! single-member decoders (flate2's `GzDecoder`) stop after the first MiB.
//!
//! Memory is bounded: at most two chunks per worker are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;

use libdeflater::{CompressionLvl, Compressor};

/// Uncompressed bytes per gzip member.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

struct Job {
    index: u64,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Runs `produce` with a writer whose bytes are gzip-compressed on `threads` workers and written
/// to `out` in order. `level` must be a valid libdeflate level (0..=12).
pub(crate) fn compress<W, T, E>(
    level: CompressionLvl,
    threads: usize,
    out: &mut W,
    produce: impl FnOnce(&mut ChunkWriter<'_, W>) -> Result<T, E>,
) -> Result<T, E>
where
    W: Write,
    E: From<io::Error>,
{
    let threads = threads.max(1);
    let (job_sender, job_receiver) = mpsc::sync_channel::<Job>(threads);
    let job_receiver = Mutex::new(job_receiver);
    let (done_sender, done_receiver) = mpsc::channel::<Job>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_sender = done_sender.clone();
            let job_receiver = &job_receiver;
            scope.spawn(move || compress_jobs(level, job_receiver, done_sender));
        }
        drop(done_sender);
        let mut writer = ChunkWriter {
            out,
            chunk: Vec::with_capacity(CHUNK_SIZE),
            submitted: 0,
            written: 0,
            max_in_flight: 2 * threads as u64,
            finished: BTreeMap::new(),
            spare: Vec::new(),
            jobs: job_sender,
            done: done_receiver,
        };
        let value = produce(&mut writer)?;
        writer.finish()?;
        Ok(value)
        // Dropping the writer closes the job channel, so the workers end and the scope joins.
    })
}

fn compress_jobs(level: CompressionLvl, jobs: &Mutex<Receiver<Job>>, done: Sender<Job>) {
    let mut compressor = Compressor::new(level);
    loop {
        let job = jobs.lock().expect("a worker panicked").recv();
        let Ok(mut job) = job else { return };
        job.output
            .resize(compressor.gzip_compress_bound(job.input.len()), 0);
        let len = compressor
            .gzip_compress(&job.input, &mut job.output)
            .expect("the output buffer has the bound's size");
        job.output.truncate(len);
        if done.send(job).is_err() {
            return;
        }
    }
}

/// The writer handed to the producer; see [`compress`].
pub(crate) struct ChunkWriter<'a, W> {
    out: &'a mut W,
    chunk: Vec<u8>,
    /// Chunks handed to the workers so far; the next chunk's index.
    submitted: u64,
    /// Chunks written to `out` so far; the index of the next one to write.
    written: u64,
    max_in_flight: u64,
    /// Compressed chunks that came back ahead of their turn.
    finished: BTreeMap<u64, Job>,
    /// Buffers of written jobs, reused to keep memory flat.
    spare: Vec<Job>,
    jobs: SyncSender<Job>,
    done: Receiver<Job>,
}

impl<W: Write> ChunkWriter<'_, W> {
    fn submit(&mut self) -> io::Result<()> {
        let mut job = self.spare.pop().unwrap_or_else(|| Job {
            index: 0,
            input: Vec::with_capacity(CHUNK_SIZE),
            output: Vec::new(),
        });
        job.index = self.submitted;
        std::mem::swap(&mut job.input, &mut self.chunk);
        self.chunk.clear();
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("gzip worker threads ended early"))?;
        self.submitted += 1;
        while self.submitted - self.written >= self.max_in_flight {
            self.receive()?;
        }
        Ok(())
    }

    /// Waits for one compressed chunk and writes every chunk that is now due.
    fn receive(&mut self) -> io::Result<()> {
        let job = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker threads ended early"))?;
        self.finished.insert(job.index, job);
        while let Some(job) = self.finished.remove(&self.written) {
            self.out.write_all(&job.output)?;
            self.written += 1;
            self.spare.push(job);
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
