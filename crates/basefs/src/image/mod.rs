//! Indexing an image's layers from a [`Store`]: each layer taken from the cache or read once
//! from its blob (a few at a time, on blocking threads), then merged, with the asked-for files
//! taken from the topmost layer that has them.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_manifest::{media_type::is_foreign_layer, Descriptor, Digest};
use layerize_registry::{Store, StoreError};

use crate::blob_reader::BlobReader;
use crate::cache::touch_if_present;
use crate::cache::LayerCache;
use crate::error::{BaseFsError, LayerError};
use crate::hashing::HashingReader;
use crate::layer::{read_layer_measured, Capture, CaptureSet, LayerIndex};
use crate::{merge, FsIndex, Kind};

/// Layers read at once: enough to keep the network busy while two cores decompress.
const CONCURRENT_LAYERS: usize = 3;
/// Chunks of a blob in flight between the download and its reader.
const CHANNEL_CHUNKS: usize = 16;
/// Hard links followed from an asked path to the file that holds its content.
const MAX_HARDLINK_HOPS: usize = 8;

/// The filesystem of an image, the asked-for files and how they were obtained.
#[derive(Clone, Debug)]
pub struct BaseFs {
    pub index: FsIndex,
    /// For each asked path (normalised) that is a regular file of the image, or a hard link
    /// to one: its content in the topmost layer. Symlinks are not followed (resolve them
    /// against the index and ask for the target).
    pub files: BTreeMap<String, Vec<u8>>,
    pub stats: IndexStats,
}

/// Where the layers' indexes came from, for logs and for tests that a warm build reads no
/// base blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub layers_from_cache: usize,
    /// Layer reads (of a blob, or of the tar the cache keeps of it), including a cached layer
    /// read again for a file it had not captured.
    pub layers_read: usize,
    /// Compressed bytes read from the store.
    pub blob_bytes_read: u64,
}

/// The filesystem of the image whose layers (descriptor and diffID, base first) are
/// `layers`, with the content of the `capture` files. Layers are taken from `cache` when it
/// has them and written to it when read.
pub async fn index_image(
    store: &dyn Store,
    layers: &[(Descriptor, Digest)],
    cache: Option<&LayerCache>,
    capture: &[Capture],
) -> Result<BaseFs, BaseFsError> {
    refuse_foreign_layers(layers)?;
    let capture = Arc::new(CaptureSet::new(capture).map_err(BaseFsError::CapturePath)?);
    let mut stats = IndexStats::default();

    // Largest blob first, each layer starting as soon as a slot frees, so that the biggest read
    // never starts last; put back in stack order for the merge.
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by_key(|&number| std::cmp::Reverse(layers[number].0.size));
    let mut obtained: Vec<(usize, Obtained)> = stream::iter(order)
        .map(|number| {
            let (descriptor, diff_id) = &layers[number];
            let obtaining = obtain(store, descriptor, diff_id, cache, &capture);
            async move { Ok::<_, BaseFsError>((number, obtaining.await?)) }
        })
        .buffer_unordered(CONCURRENT_LAYERS)
        .try_collect()
        .await?;
    obtained.sort_by_key(|(number, _)| *number);
    let obtained = obtained.into_iter().map(|(_, layer)| layer);
    let mut captured = Vec::with_capacity(obtained.len());
    let mut own_files = Vec::with_capacity(obtained.len());
    let mut indexes = Vec::with_capacity(obtained.len());
    for Obtained {
        mut layer,
        blob_bytes,
    } in obtained
    {
        stats.count(blob_bytes);
        own_files.push(own_files_of(&layer, &capture));
        captured.push(std::mem::take(&mut layer.captured));
        indexes.push(layer);
    }
    let index = tokio::task::spawn_blocking(move || merge::merge(indexes))
        .await
        .map_err(BaseFsError::Task)?
        .map_err(BaseFsError::Merge)?;

    let wanted = wanted_files(&index, &own_files, &capture)?;
    let rereads: Vec<(usize, LayerIndex, u64)> =
        stream::iter(uncaptured(&wanted, &captured, &capture))
            .map(|(number, set)| {
                let (descriptor, diff_id) = &layers[number];
                let keep = std::mem::take(&mut captured[number]);
                async move {
                    let read =
                        read_from_store(store, descriptor, diff_id, Arc::new(set), keep, cache)
                            .await?;
                    Ok::<_, BaseFsError>((number, read.layer, read.blob_bytes))
                }
            })
            .buffered(CONCURRENT_LAYERS)
            .try_collect()
            .await?;
    for (number, layer, bytes) in rereads {
        stats.count(Some(bytes));
        captured[number] = layer.captured;
    }

    let files = wanted
        .into_iter()
        .filter_map(|(path, found)| {
            let content = captured[found.layer].get(&found.path)?.clone();
            Some((path, content))
        })
        .collect();
    Ok(BaseFs {
        index,
        files,
        stats,
    })
}

impl IndexStats {
    /// One more layer: read, with its blob's bytes, or from the cache.
    fn count(&mut self, blob_bytes: Option<u64>) {
        match blob_bytes {
            Some(bytes) => {
                self.layers_read += 1;
                self.blob_bytes_read += bytes;
            }
            None => self.layers_from_cache += 1,
        }
    }
}

/// Foreign (non-distributable) layers live at URLs of their own, not in the store.
fn refuse_foreign_layers(layers: &[(Descriptor, Digest)]) -> Result<(), BaseFsError> {
    match layers
        .iter()
        .find(|(descriptor, _)| is_foreign_layer(&descriptor.media_type))
    {
        Some((foreign, _)) => Err(BaseFsError::ForeignLayer {
            layer: foreign.digest.clone(),
            media_type: foreign.media_type.clone(),
        }),
        None => Ok(()),
    }
}

struct Obtained {
    layer: LayerIndex,
    /// `None`: from the cache.
    blob_bytes: Option<u64>,
}

async fn obtain(
    store: &dyn Store,
    descriptor: &Descriptor,
    diff_id: &Digest,
    cache: Option<&LayerCache>,
    capture: &Arc<CaptureSet>,
) -> Result<Obtained, BaseFsError> {
    if let Some(cache) = cache {
        let (cache, key) = (cache.clone(), diff_id.clone());
        let cached = tokio::task::spawn_blocking(move || cache.load(&key))
            .await
            .map_err(BaseFsError::Task)?;
        if let Some(layer) = cached {
            return Ok(Obtained {
                layer,
                blob_bytes: None,
            });
        }
    }
    let read = read_from_store(
        store,
        descriptor,
        diff_id,
        Arc::clone(capture),
        BTreeMap::new(),
        cache,
    )
    .await?;
    Ok(Obtained {
        layer: read.layer,
        blob_bytes: Some(read.blob_bytes),
    })
}

/// One layer read from its blob, with the sizes of the blob and of its tar stream.
#[derive(Clone, Debug)]
pub struct ReadLayer {
    pub layer: LayerIndex,
    /// Compressed bytes read from the store (the descriptor's size; 0 when read from a kept
    /// tar).
    pub blob_bytes: u64,
    /// Bytes of the uncompressed tar stream (what the diffID covers).
    pub tar_bytes: u64,
}

/// Reads one layer of an image from `store`, streaming its blob (checked against the
/// descriptor's size and digest and the diffID) without keeping any file content or caching it.
pub async fn read_image_layer(
    store: &dyn Store,
    descriptor: &Descriptor,
    diff_id: &Digest,
) -> Result<ReadLayer, BaseFsError> {
    refuse_foreign_layers(&[(descriptor.clone(), diff_id.clone())])?;
    let nothing = Arc::new(CaptureSet::default());
    read_from_store(store, descriptor, diff_id, nothing, BTreeMap::new(), None).await
}

/// Reads the layer into its index: from the tar a cache keeps of it when there is one (no blob
/// fetched, nothing decompressed), else streaming its blob from `store` into
/// [`crate::read_layer`] on a blocking thread and checking the blob's size and digest. Either
/// way the diffID is checked, and the result is cached with `keep` (captures of an earlier read)
/// added.
async fn read_from_store(
    store: &dyn Store,
    descriptor: &Descriptor,
    diff_id: &Digest,
    capture: Arc<CaptureSet>,
    keep: BTreeMap<String, Vec<u8>>,
    cache: Option<&LayerCache>,
) -> Result<ReadLayer, BaseFsError> {
    let kept = cache
        .and_then(LayerCache::tars)
        .map(|tars| tars.path(&descriptor.digest))
        .filter(|tar| touch_if_present(tar));
    let mut keep = keep;
    if let Some(tar) = kept {
        match read_kept_tar(&tar, diff_id, Arc::clone(&capture), keep, cache).await? {
            Ok(read) => return Ok(read),
            // A kept tar is only a copy: one that is gone or damaged since is dropped, and the
            // blob read (and kept) again.
            Err((error, given_back)) => {
                tracing::warn!(path = %tar.display(), %error, "ignoring a kept layer tar");
                let _ = std::fs::remove_file(&tar);
                keep = given_back;
            }
        }
    }
    let layer_digest = descriptor.digest.clone();
    let store_error = |source| BaseFsError::Store {
        layer: layer_digest.clone(),
        source,
    };
    let mut blob = store
        .get_blob(&descriptor.digest)
        .await
        .map_err(store_error)?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let (descriptor, diff_id, cache) = (descriptor.clone(), diff_id.clone(), cache.cloned());
    let reading = tokio::task::spawn_blocking(move || {
        let mut blob = HashingReader::new(BlobReader::new(receiver, descriptor.size));
        let mut kept_tar = cache
            .as_ref()
            .and_then(LayerCache::tars)
            .and_then(|tars| tars.start(&descriptor.digest, &diff_id));
        let read = read_layer_measured(&mut blob, &diff_id, &capture, kept_tar.as_mut());
        let overlong = blob.get_ref().overlong();
        let (digest, bytes) = blob.finish();
        let layer = descriptor.digest;
        if overlong {
            return Err(BaseFsError::BlobTooLong {
                layer,
                expected: descriptor.size,
            });
        }
        let (index, tar_bytes) = read.map_err(|source| BaseFsError::Layer {
            layer: layer.clone(),
            source,
        })?;
        if bytes != descriptor.size {
            return Err(BaseFsError::BlobSizeMismatch {
                layer,
                expected: descriptor.size,
                actual: bytes,
            });
        }
        if digest != layer {
            return Err(BaseFsError::BlobDigestMismatch {
                layer,
                actual: digest,
            });
        }
        if let Some(kept_tar) = kept_tar {
            kept_tar.keep();
        }
        Ok(finish_read(
            index,
            bytes,
            tar_bytes,
            keep,
            cache.as_ref(),
            &diff_id,
        ))
    });
    let feeding = async move {
        while let Some(chunk) = blob.next().await {
            if sender.send(chunk?).await.is_err() {
                // The reader stopped early; its result says why.
                break;
            }
        }
        Ok::<(), StoreError>(())
    };
    let (fed, read) = tokio::join!(feeding, reading);
    fed.map_err(store_error)?;
    read.map_err(BaseFsError::Task)?
}

/// [`read_from_store`] from the tar the cache keeps of the layer, on a blocking thread; a tar
/// that cannot be read or has another diffID gives its error, and `keep` back.
async fn read_kept_tar(
    tar: &std::path::Path,
    diff_id: &Digest,
    capture: Arc<CaptureSet>,
    keep: BTreeMap<String, Vec<u8>>,
    cache: Option<&LayerCache>,
) -> Result<Result<ReadLayer, (LayerError, BTreeMap<String, Vec<u8>>)>, BaseFsError> {
    let (tar, diff_id, cache) = (tar.to_owned(), diff_id.clone(), cache.cloned());
    tokio::task::spawn_blocking(move || {
        let read = std::fs::File::open(&tar)
            .map_err(LayerError::Read)
            .and_then(|file| read_layer_measured(BufReader::new(file), &diff_id, &capture, None));
        match read {
            Ok((index, tar_bytes)) => Ok(finish_read(
                index,
                0,
                tar_bytes,
                keep,
                cache.as_ref(),
                &diff_id,
            )),
            Err(error) => Err((error, keep)),
        }
    })
    .await
    .map_err(BaseFsError::Task)
}

/// A verified read: the captures of an earlier read added, and cached.
fn finish_read(
    mut index: LayerIndex,
    blob_bytes: u64,
    tar_bytes: u64,
    keep: BTreeMap<String, Vec<u8>>,
    cache: Option<&LayerCache>,
    diff_id: &Digest,
) -> ReadLayer {
    for (path, content) in keep {
        index.captured.entry(path).or_insert(content);
    }
    if let Some(cache) = cache {
        if let Err(error) = cache.store(diff_id, &index) {
            let path = cache.path(diff_id);
            tracing::warn!(path = %path.display(), %error, "cannot cache a layer index");
        }
    }
    ReadLayer {
        layer: index,
        blob_bytes,
        tar_bytes,
    }
}

/// A regular file holding the content of an asked path: its path, layer, size and the limit
/// it was asked with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    layer: usize,
    path: String,
    size: u64,
    limit: u64,
}

/// For each asked path the image has as a regular file (or a hard link to one): the file
/// holding its content. A file over its limit is an error.
fn wanted_files(
    index: &FsIndex,
    own_files: &[HashMap<String, (String, u64)>],
    capture: &CaptureSet,
) -> Result<BTreeMap<String, Found>, BaseFsError> {
    let mut wanted = BTreeMap::new();
    for (path, limit) in capture.iter() {
        let Some(found) = locate(index, own_files, path, limit) else {
            continue;
        };
        if found.size > limit {
            return Err(BaseFsError::CaptureTooLarge {
                path: path.to_owned(),
                size: found.size,
                limit,
            });
        }
        wanted.insert(path.to_owned(), found);
    }
    Ok(wanted)
}

/// The layers to read again, each with the files to capture this time: those asked before
/// (so that the cache keeps them) and the wanted ones it has not captured.
fn uncaptured(
    wanted: &BTreeMap<String, Found>,
    captured: &[BTreeMap<String, Vec<u8>>],
    capture: &CaptureSet,
) -> BTreeMap<usize, CaptureSet> {
    let mut missing: BTreeMap<usize, CaptureSet> = BTreeMap::new();
    for found in wanted.values() {
        if !captured[found.layer].contains_key(&found.path) {
            let set = missing
                .remove(&found.layer)
                .unwrap_or_else(|| capture.clone());
            missing.insert(found.layer, set.with(&found.path, found.limit));
        }
    }
    missing
}

/// For each asked path that one layer has as a regular file or as a hard link to a regular
/// file of its own: the file holding the content (a hard link's target is an earlier member of
/// the same tar, whose content later layers cannot change).
fn own_files_of(layer: &LayerIndex, capture: &CaptureSet) -> HashMap<String, (String, u64)> {
    let settled = &layer.settled;
    capture
        .iter()
        .filter_map(|(path, _)| {
            let record = settled.find(path)?;
            let entry = settled.table.entry(record);
            let file = match entry.kind {
                Kind::File => (path.to_owned(), entry.size),
                Kind::Hardlink => (entry.link.to_owned(), layer.file_size(entry.link)?),
                _ => return None,
            };
            Some((path.to_owned(), file))
        })
        .collect()
}

/// The file whose content the image shows at `path`, following hard links.
fn locate(
    index: &FsIndex,
    own_files: &[HashMap<String, (String, u64)>],
    path: &str,
    limit: u64,
) -> Option<Found> {
    let mut path = path.to_owned();
    for _ in 0..MAX_HARDLINK_HOPS {
        let entry = index.get(&path)?;
        let layer = index.origin(&path)? as usize;
        if let Some((file, size)) = own_files[layer].get(&path) {
            return Some(Found {
                layer,
                path: file.clone(),
                size: *size,
                limit,
            });
        }
        match entry.kind {
            Kind::File => {
                return Some(Found {
                    layer,
                    path,
                    size: entry.size,
                    limit,
                })
            }
            // A link to a file of a lower layer: follow it in the merged view.
            Kind::Hardlink => path = entry.link.to_owned(),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests;
