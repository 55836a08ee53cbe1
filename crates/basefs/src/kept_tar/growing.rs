//! Following a kept tar while it is written: a [`GrowingTar`] reads the bytes that have reached
//! the file so far and waits for more, so that a consumer (a step root's layer directory) can
//! start on a layer while the read that indexes it is still going. It ends only once the read
//! verified the layer; a read that failed, or was not verified, ends it with an error instead,
//! so whatever the consumer made from it is dropped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};

/// How far the writer got.
#[derive(Default)]
struct Progress {
    /// Bytes that have reached the file.
    written: u64,
    /// Set when the writer is done: whether the tar was verified and kept.
    verified: Option<bool>,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    grew: Condvar,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap());
        self.grew.notify_all();
    }
}

/// The writing side: counts what reaches the file, and says how the write ended (a drop
/// without [`Follow::verified`] says it failed).
pub(crate) struct Follow(Arc<Shared>);

impl Follow {
    /// A follower of what `file` will be written, with its reader: `reader` is an
    /// independent handle on the same file.
    pub fn new(reader: File) -> (Follow, GrowingTar) {
        let shared = Arc::<Shared>::default();
        let tar = GrowingTar {
            file: reader,
            shared: Arc::clone(&shared),
            read: 0,
        };
        (Follow(shared), tar)
    }

    fn wrote(&self, bytes: usize) {
        self.0.update(|progress| progress.written += bytes as u64);
    }

    /// Every byte is in the file and the read verified them: the reader may end.
    pub fn verified(self) {
        self.0.update(|progress| progress.verified = Some(true));
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.0.update(|progress| {
            progress.verified.get_or_insert(false);
        });
    }
}

/// A writer that tells a [`Follow`] what reached the file.
pub(crate) struct Counted<W> {
    pub inner: W,
    pub follow: Option<Follow>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        if let Some(follow) = &self.follow {
            follow.wrote(written);
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The uncompressed tar of a layer as it is being read and kept: see the module doc.
pub struct GrowingTar {
    file: File,
    shared: Arc<Shared>,
    read: u64,
}

impl Read for GrowingTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut progress = self.shared.progress.lock().unwrap();
            loop {
                if progress.written > self.read {
                    break progress.written - self.read;
                }
                match progress.verified {
                    Some(true) => return Ok(0),
                    Some(false) => {
                        return Err(io::Error::other(
                            "the read of this layer failed or did not verify it",
                        ))
                    }
                    None => progress = self.shared.grew.wait(progress).unwrap(),
                }
            }
        };
        let wanted = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let read = self.file.read(&mut buf[..wanted])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a kept tar being written is shorter than what was written to it",
            ));
        }
        self.read += read as u64;
        Ok(read)
    }
}
