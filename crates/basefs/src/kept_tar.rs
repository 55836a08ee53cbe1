//! Keeping the uncompressed tar of each layer read from its blob, as `<dir>/<blob hex>.tar`:
//! a build that runs script steps unpacks the base's layers into every step's root, and taking
//! the tar from the read that indexed the layer saves fetching and decompressing the blob again.
//! A tar is kept only once the read has verified it (blob digest, size and diffID); failing to
//! write one costs only that saving, so it is logged and never fails the read. A follower may
//! read each tar while it is written ([`growing`]).

mod growing;

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerize_manifest::Digest;

pub use growing::GrowingTar;
use growing::{Counted, Follow};

/// Called with the diffID of each layer whose tar starts being kept, and the tar as it grows.
pub type Follower = Arc<dyn Fn(&Digest, GrowingTar) + Send + Sync>;

/// Where the tars are kept.
#[derive(Clone)]
pub struct TarDir {
    dir: PathBuf,
    follower: Option<Follower>,
}

impl std::fmt::Debug for TarDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarDir")
            .field("dir", &self.dir)
            .field("followed", &self.follower.is_some())
            .finish()
    }
}

impl TarDir {
    pub fn new(dir: impl Into<PathBuf>) -> TarDir {
        TarDir {
            dir: dir.into(),
            follower: None,
        }
    }

    /// Hands each tar to `follower` as soon as it starts being written.
    pub fn followed_by(mut self, follower: Follower) -> TarDir {
        self.follower = Some(follower);
        self
    }

    /// Where the uncompressed tar of the layer blob `blob` is kept.
    pub fn path(&self, blob: &Digest) -> PathBuf {
        self.dir.join(format!("{}.tar", blob.hex()))
    }

    /// A file to copy the tar of `blob` (of diffID `diff_id`) into, unless it is kept already
    /// or cannot be made.
    pub(crate) fn start(&self, blob: &Digest, diff_id: &Digest) -> Option<KeptTar> {
        let path = self.path(blob);
        if path.exists() {
            return None;
        }
        let temp = std::fs::create_dir_all(&self.dir)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(".tmp-tar-")
                    .tempfile_in(&self.dir)
            })
            .map_err(|error| warn(&path, &error))
            .ok()?;
        let follow = self.follower.as_ref().and_then(|follower| {
            let reader = temp.reopen().map_err(|error| warn(&path, &error)).ok()?;
            let (follow, tar) = Follow::new(reader);
            follower(diff_id, tar);
            Some(follow)
        });
        Some(KeptTar {
            out: BufWriter::with_capacity(
                1 << 20,
                Counted {
                    inner: temp,
                    follow,
                },
            ),
            failed: false,
            path,
        })
    }
}

fn warn(path: &Path, error: &io::Error) {
    tracing::warn!(path = %path.display(), %error, "cannot keep a layer's tar for script steps");
}

/// A tar being copied out of a read.
pub(crate) struct KeptTar {
    out: BufWriter<Counted<tempfile::NamedTempFile>>,
    /// A write failed: the copy is incomplete and is dropped.
    failed: bool,
    path: PathBuf,
}

impl KeptTar {
    fn write(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(error) = self.out.write_all(bytes) {
            warn(&self.path, &error);
            self.failed = true;
        }
    }

    /// Puts the complete copy in place (the read verified it).
    pub fn keep(self) {
        if self.failed {
            return;
        }
        let path = self.path;
        let kept = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|counted| {
                let Counted { inner, follow } = counted;
                inner.persist(&path).map_err(|error| error.error)?;
                Ok(follow)
            });
        match kept {
            Ok(follow) => follow.into_iter().for_each(Follow::verified),
            Err(error) => warn(&path, &error),
        }
    }
}

/// Passes a tar stream through, copying every byte read into a [`KeptTar`] when there is one.
pub(crate) struct Tee<'a, R> {
    pub inner: R,
    pub copy: Option<&'a mut KeptTar>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if let Some(copy) = self.copy.as_deref_mut() {
            copy.write(&buf[..read]);
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_copy_is_kept_under_the_blob_s_name() {
        let dir = tempfile::tempdir().unwrap();
        let tars = TarDir::new(dir.path().join("blobs"));
        let blob = Digest::sha256(b"blob");
        let mut kept = tars.start(&blob, &blob).unwrap();
        let mut tee = Tee {
            inner: &b"tar bytes"[..],
            copy: Some(&mut kept),
        };
        let mut read = Vec::new();
        tee.read_to_end(&mut read).unwrap();
        assert_eq!(read, b"tar bytes");
        assert!(!tars.path(&blob).exists(), "kept only once verified");
        kept.keep();
        assert_eq!(std::fs::read(tars.path(&blob)).unwrap(), b"tar bytes");
        assert!(tars.start(&blob, &blob).is_none(), "kept already");
    }

    #[test]
    fn a_dropped_copy_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tars = TarDir::new(dir.path());
        let blob = Digest::sha256(b"blob");
        let mut kept = tars.start(&blob, &blob).unwrap();
        kept.write(b"half");
        drop(kept);
        assert!(!tars.path(&blob).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// What a follower read of one tar: its diffID, and its bytes or the error it ended with.
    type Followed = (Digest, io::Result<Vec<u8>>);

    /// A tar directory whose follower reads each tar on a thread of its own, giving what it
    /// read (or the error it ended with) on the channel.
    fn followed(dir: &Path) -> (TarDir, std::sync::mpsc::Receiver<Followed>) {
        let (sender, received) = std::sync::mpsc::channel();
        let sender = std::sync::Mutex::new(sender);
        let follower: Follower = Arc::new(move |diff_id: &Digest, mut tar: GrowingTar| {
            let (sender, diff_id) = (sender.lock().unwrap().clone(), diff_id.clone());
            std::thread::spawn(move || {
                let mut read = Vec::new();
                let result = tar.read_to_end(&mut read).map(|_| read);
                sender.send((diff_id, result)).unwrap();
            });
        });
        (TarDir::new(dir).followed_by(follower), received)
    }

    #[test]
    fn a_follower_reads_the_tar_as_it_is_written_and_ends_once_it_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (tars, followed) = followed(dir.path());
        let (blob, diff_id) = (Digest::sha256(b"blob"), Digest::sha256(b"tar"));
        let mut kept = tars.start(&blob, &diff_id).unwrap();
        // More than the writer's buffer, so the follower sees bytes before the end.
        let content: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        for chunk in content.chunks(100_000) {
            kept.write(chunk);
        }
        assert!(
            followed.try_recv().is_err(),
            "not ended before the read is verified"
        );
        kept.keep();
        let (named, read) = followed.recv().unwrap();
        assert_eq!(named, diff_id);
        assert!(read.unwrap() == content);
    }

    #[test]
    fn a_follower_of_a_read_that_is_not_verified_ends_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tars, followed) = followed(dir.path());
        let blob = Digest::sha256(b"blob");
        let mut kept = tars.start(&blob, &blob).unwrap();
        kept.write(&[7; 2 << 20]);
        drop(kept);
        let (_, read) = followed.recv().unwrap();
        assert!(read.is_err());
        assert!(!tars.path(&blob).exists());
    }
}
