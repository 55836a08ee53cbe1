//! One layer blob read once into its own index: decompressed, hashed against its diffID, its
//! tar headers turned into settled records (whiteouts kept as such) and a few asked-for files
//! captured.

pub(crate) mod decompress;
mod members;
mod settle;
mod skip;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Read};

use layerize_manifest::Digest;

use crate::error::LayerError;
use crate::hashing::HashingReader;
use crate::kept_tar::{KeptTar, Tee};
use crate::path::{normalise, PathError};
use crate::table::Slot;
use crate::Kind;

pub(crate) use settle::Settled;

/// A file whose content a caller wants from the image, up to `max_bytes`. A path ending in `/`
/// is a directory whose regular files (directly in it, as the layers have them: symlinks are
/// not followed) are kept while reading, those over `max_bytes` left out: a hint for files a
/// caller will likely ask for by name once it has the index, so that they need no second read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// Absolute or relative to the root; normalised before use.
    pub path: String,
    pub max_bytes: u64,
}

/// The files to keep the content of while reading layers, by normalised path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureSet {
    limits: HashMap<String, u64>,
    /// Directories whose files are kept when small enough, by normalised path.
    dirs: HashMap<String, u64>,
}

impl CaptureSet {
    pub fn new(captures: &[Capture]) -> Result<CaptureSet, PathError> {
        let mut set = CaptureSet::default();
        for capture in captures {
            let (paths, path) = match capture.path.strip_suffix('/') {
                Some(dir) => (&mut set.dirs, dir),
                None => (&mut set.limits, capture.path.as_str()),
            };
            let limit = paths.entry(normalise(path)?).or_insert(0);
            *limit = capture.max_bytes.max(*limit);
        }
        Ok(set)
    }

    /// The limit for `path`, if it is asked for by name.
    pub fn limit(&self, path: &str) -> Option<u64> {
        self.limits.get(path).copied()
    }

    /// Whether a regular file of `size` bytes at `path` is to be kept.
    pub(crate) fn wants(&self, path: &str, size: u64) -> bool {
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        self.limit(path)
            .or_else(|| self.dirs.get(dir).copied())
            .is_some_and(|limit| size <= limit)
    }

    /// The paths asked for by name and their limits.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.limits
            .iter()
            .map(|(path, limit)| (path.as_str(), *limit))
    }

    /// This set with `path` asked for too (at least up to `limit`).
    pub(crate) fn with(mut self, path: &str, limit: u64) -> CaptureSet {
        let entry = self.limits.entry(path.to_owned()).or_insert(0);
        *entry = limit.max(*entry);
        self
    }
}

/// What one layer puts in the filesystem, on its own: its settled records in tree order
/// (entries, whiteouts, opaque directories) and the content of the captured files it has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerIndex {
    pub(crate) settled: Settled,
    pub(crate) captured: BTreeMap<String, Vec<u8>>,
}

impl LayerIndex {
    /// Paths the layer describes (entries, whiteouts, opaque directories).
    pub fn len(&self) -> usize {
        self.settled.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.settled.table.records.is_empty() && !self.settled.hides_root
    }

    /// The content the layer has for a captured regular file.
    pub fn captured(&self, path: &str) -> Option<&[u8]> {
        self.captured.get(path).map(Vec::as_slice)
    }

    /// Whether an opaque whiteout at the root hides every path of the layers below.
    pub fn hides_root(&self) -> bool {
        self.settled.hides_root
    }

    /// What the layer does at each path it describes, in tree order: every directory right
    /// before its subtree.
    pub fn changes(&self) -> impl Iterator<Item = PathChange<'_>> {
        let table = &self.settled.table;
        table.records.iter().map(move |record| PathChange {
            path: table.path(record),
            change: match record.slot() {
                Slot::Entry(kind) => Change::Put(kind),
                Slot::Whiteout => Change::Whiteout,
                Slot::Opaque => Change::Opaque,
            },
            size: record.size,
            hides_lower: record.hides_lower(),
        })
    }

    /// The layer's own regular file at `path` (its size), if it has one.
    pub(crate) fn file_size(&self, path: &str) -> Option<u64> {
        let record = self.settled.find(path)?;
        (record.slot() == Slot::Entry(Kind::File)).then_some(record.size)
    }
}

/// What a layer does at one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// An entry of this kind is put there (a file replaces what lower layers have at the path; a
    /// directory merges with a lower one unless [`PathChange::hides_lower`]).
    Put(Kind),
    /// A whiteout: the path and everything below it are removed from the lower layers.
    Whiteout,
    /// An opaque whiteout without an entry for the directory: what the lower layers have below
    /// it is hidden, the directory itself stays.
    Opaque,
}

/// One path of a layer, as [`LayerIndex::changes`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathChange<'a> {
    /// Normalised, relative to the root.
    pub path: &'a str,
    pub change: Change,
    /// Bytes of a regular file's content; 0 for everything else.
    pub size: u64,
    /// The layer removes what lower layers have at and below the path before putting its own
    /// entry there (a whiteout, a non-directory, an opaque directory).
    pub hides_lower: bool,
}

/// Reads the layer blob `blob` (gzip, zstd or plain tar, told by its first bytes) to its end,
/// checks that the uncompressed stream has the diffID `diff_id`, and returns what the layer
/// holds with the content of the `capture` files it has.
pub fn read_layer(
    blob: impl Read,
    diff_id: &Digest,
    capture: &CaptureSet,
) -> Result<LayerIndex, LayerError> {
    read_layer_measured(blob, diff_id, capture, None).map(|(layer, _)| layer)
}

/// [`read_layer`], also returning the length of the uncompressed tar stream, and copying that
/// stream into `copy` when given.
pub(crate) fn read_layer_measured(
    blob: impl Read,
    diff_id: &Digest,
    capture: &CaptureSet,
    copy: Option<&mut KeptTar>,
) -> Result<(LayerIndex, u64), LayerError> {
    let tar = Tee {
        inner: decompress::decompressed(blob).map_err(LayerError::Read)?,
        copy,
    };
    // Tar headers are read 512 bytes at a time; a buffer keeps the decoder's calls large.
    let mut stream = BufReader::with_capacity(64 * 1024, HashingReader::new(tar));
    let raw = members::read(&mut stream, capture)?;
    // The diffID covers everything, including the zero blocks after the end-of-archive mark.
    io::copy(&mut stream, &mut io::sink()).map_err(LayerError::Read)?;
    let (actual, tar_bytes) = stream.into_inner().finish();
    if &actual != diff_id {
        return Err(LayerError::DiffIdMismatch {
            expected: diff_id.clone(),
            actual,
        });
    }
    let settled = settle::settle(raw.table);
    // Keep a capture only if its member is the one the layer ends with at that path.
    let captured = raw
        .captured
        .into_iter()
        .filter(|(path, (number, _))| {
            settled.find(path).is_some_and(|record| {
                record.origin == *number && record.slot() == Slot::Entry(Kind::File)
            })
        })
        .map(|(path, (_, content))| (path, content))
        .collect();
    Ok((LayerIndex { settled, captured }, tar_bytes))
}
