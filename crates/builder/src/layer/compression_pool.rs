//! The gzip compression workers that every layer written with them shares: a fixed number of
//! threads taking members to compress from one FIFO queue, each keeping one libdeflate
//! compressor per level it has been asked for (a compressor's tables are sized for its level,
//! and layers of one build may ask for different levels).
//!
//! Why one pool and not threads per layer: a build writes many layers at once, and a pool per
//! layer would start `threads` workers for each of them, oversubscribing the cores with many
//! small layers. With one pool the cores are shared, and a layer's own in-flight window
//! (`parallel_gzip`) bounds its memory. The queue is FIFO, so concurrent layers take turns.
//! zstd layers do not use it: libzstd runs its own workers (`write_layer`).

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor};

/// Compression worker threads, shared by every layer written with a clone of this handle.
/// Cloning is cheap; the threads start when the first member is queued (a pool that is replaced
/// before use costs nothing) and end when the last clone is dropped.
#[derive(Clone)]
pub struct CompressionPool {
    workers: Arc<Workers>,
}

/// One gzip member's buffers, travelling to a worker and back. The buffers are reused from one
/// member to the next, so that memory stays flat.
pub(crate) struct Member {
    /// The member's position in its stream.
    pub index: u64,
    pub input: Vec<u8>,
    /// Sized to the compressor's bound and never shrunk, so that it is zeroed only once.
    pub output: Vec<u8>,
    /// How much of `output` the compressed member fills.
    pub compressed_len: usize,
}

impl Member {
    pub fn compressed(&self) -> &[u8] {
        &self.output[..self.compressed_len]
    }
}

/// Where a worker sends a compressed member back: its writer's own channel. `Err` means the
/// compressor panicked on it.
pub(crate) type Reply = Sender<Result<Member, WorkerPanicked>>;

/// A worker panicked while compressing a member (it goes on with a new compressor).
#[derive(Debug)]
pub(crate) struct WorkerPanicked;

struct Job {
    level: CompressionLvl,
    member: Member,
    reply: Reply,
}

struct Workers {
    size: usize,
    started: OnceLock<Started>,
}

struct Started {
    /// `None` only while dropping, so that the workers see the queue closed before the join.
    queue: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl CompressionPool {
    /// A pool of `threads` workers (at least 1). Queuing the first member panics when the system
    /// cannot start a thread, as `std::thread::spawn` does.
    pub fn new(threads: usize) -> Self {
        CompressionPool {
            workers: Arc::new(Workers {
                size: threads.max(1),
                started: OnceLock::new(),
            }),
        }
    }

    /// The process-wide pool, one worker per core, started on first use.
    pub fn shared() -> Self {
        static SHARED: OnceLock<CompressionPool> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                CompressionPool::new(std::thread::available_parallelism().map_or(1, usize::from))
            })
            .clone()
    }

    /// How many workers the pool has.
    pub fn threads(&self) -> usize {
        self.workers.size
    }

    /// Queues `member` to be compressed at `level`; it comes back through `reply`.
    pub(crate) fn submit(
        &self,
        level: CompressionLvl,
        member: Member,
        reply: &Reply,
    ) -> io::Result<()> {
        let job = Job {
            level,
            member,
            reply: reply.clone(),
        };
        self.workers
            .started
            .get_or_init(|| Started::spawn(self.workers.size))
            .queue
            .as_ref()
            .expect("the queue is open until the pool is dropped")
            .send(job)
            .map_err(|_| io::Error::other("the gzip worker threads ended"))
    }
}

impl fmt::Debug for CompressionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionPool")
            .field("threads", &self.threads())
            .finish()
    }
}

impl Started {
    fn spawn(size: usize) -> Started {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let threads = (0..size)
            .map(|_| {
                let jobs = Arc::clone(&jobs);
                std::thread::Builder::new()
                    .name("layerize-gzip".to_owned())
                    .spawn(move || work(&jobs))
                    .expect("start a gzip worker thread")
            })
            .collect();
        Started {
            queue: Some(queue),
            threads,
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        drop(self.queue.take());
        for thread in self.threads.drain(..) {
            // A worker catches its compressor's panics, so there is nothing to report here.
            let _ = thread.join();
        }
    }
}

/// A worker's loop: takes jobs until the queue closes.
fn work(jobs: &Mutex<Receiver<Job>>) {
    // Indexed by level (libdeflate's 0 to 12).
    let mut compressors: Vec<Option<Compressor>> = Vec::new();
    loop {
        // The lock is held while waiting, so idle workers queue on the mutex instead.
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(Job {
            level,
            mut member,
            reply,
        }) = job
        else {
            return;
        };
        let slot = usize::try_from(i32::from(level)).expect("libdeflate levels are 0 to 12");
        if compressors.len() <= slot {
            compressors.resize_with(slot + 1, || None);
        }
        let compressed = panic::catch_unwind(AssertUnwindSafe(|| {
            let compressor = compressors[slot].get_or_insert_with(|| Compressor::new(level));
            let bound = compressor.gzip_compress_bound(member.input.len());
            if member.output.len() < bound {
                member.output.resize(bound, 0);
            }
            member.compressed_len = compressor
                .gzip_compress(&member.input, &mut member.output)
                .expect("the output buffer has the bound's size");
        }));
        let result = match compressed {
            Ok(()) => Ok(member),
            Err(_) => {
                // Its state is unknown after a panic.
                compressors[slot] = None;
                Err(WorkerPanicked)
            }
        };
        // A writer that gave up (its layer failed) no longer listens; that is fine.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn workers_start_on_first_use_and_are_joined_with_the_last_handle() {
        let pool = CompressionPool::new(3);
        let clone = pool.clone();
        assert!(pool.workers.started.get().is_none());
        assert_eq!(clone.threads(), 3);

        let (reply, done) = mpsc::channel();
        let member = Member {
            index: 7,
            input: b"some bytes to compress".to_vec(),
            output: Vec::new(),
            compressed_len: 0,
        };
        clone
            .submit(CompressionLvl::new(6).unwrap(), member, &reply)
            .unwrap();
        let member = done.recv().unwrap().unwrap();
        assert_eq!(member.index, 7);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(member.compressed())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, b"some bytes to compress");
        assert_eq!(pool.workers.started.get().unwrap().threads.len(), 3);

        // The last drop closes the queue and joins the workers; it returns only once they ended.
        drop(pool);
        drop(clone);
    }
}
