//! Keeping the uncompressed tar of each layer read from its blob, as `<dir>/<blob hex>.tar`:
//! a build that runs script steps unpacks the base's layers into every step's root, and taking
//! the tar from the read that indexed the layer saves fetching and decompressing the blob again.
//! A tar is kept only once the read has verified it (blob digest, size and diffID); failing to
//! write one costs only that saving, so it is logged and never fails the read.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use layerize_manifest::Digest;

/// Where the tars are kept.
#[derive(Clone, Debug)]
pub struct TarDir {
    dir: PathBuf,
}

impl TarDir {
    pub fn new(dir: impl Into<PathBuf>) -> TarDir {
        TarDir { dir: dir.into() }
    }

    /// Where the uncompressed tar of the layer blob `blob` is kept.
    pub fn path(&self, blob: &Digest) -> PathBuf {
        self.dir.join(format!("{}.tar", blob.hex()))
    }

    /// A file to copy the tar of `blob` into, unless it is kept already or cannot be made.
    pub(crate) fn start(&self, blob: &Digest) -> Option<KeptTar> {
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
        Some(KeptTar {
            out: BufWriter::with_capacity(1 << 20, temp),
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
    out: BufWriter<tempfile::NamedTempFile>,
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
            .and_then(|temp| temp.persist(&path).map_err(|error| error.error));
        if let Err(error) = kept {
            warn(&path, &error);
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
        let mut kept = tars.start(&blob).unwrap();
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
        assert!(tars.start(&blob).is_none(), "kept already");
    }

    #[test]
    fn a_dropped_copy_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tars = TarDir::new(dir.path());
        let blob = Digest::sha256(b"blob");
        let mut kept = tars.start(&blob).unwrap();
        kept.write(b"half");
        drop(kept);
        assert!(!tars.path(&blob).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
