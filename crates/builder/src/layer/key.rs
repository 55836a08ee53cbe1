//! A layer's key: what identifies a layer by its own inputs only, never by its position or its
//! neighbours, so that a cache can hand back a layer a rebuild would make byte for byte.
//!
//! Layers are deterministic, so the tar stream's sha256 (the diffID) already covers everything
//! that decides the uncompressed bytes: resolved destinations, modes, owners, times
//! (`SOURCE_DATE_EPOCH` included), contents. What turns those bytes into the blob is the codec,
//! its level and layerize's own way of compressing (gzip members of 1 MiB, libdeflate). The key
//! hashes exactly these, plus [`LAYER_FORMAT`], which must change whenever a layerize release
//! would write different bytes for the same inputs.

use std::io;

use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

use super::filemap::FileMap;
use super::hashing::HashingWriter;
use super::tar_writer::write_tar;
use super::{Compression, LayerError, LayerOptions};

/// The version of layerize's layer bytes: bump it with any change to the tar writer, the
/// compressors, their libraries or the gzip member size (the `layer_format_is_pinned` test
/// fails when the bytes change).
pub const LAYER_FORMAT: u32 = 1;

/// The key of the layer whose tar has `diff_id`, compressed as `options` says.
pub fn layer_key(diff_id: &Digest, options: &LayerOptions) -> String {
    let codec = codec_name(options.compression);
    let text = format!("layerize layer\nformat {LAYER_FORMAT}\ncodec {codec}\ndiff_id {diff_id}\n");
    Digest::from_sha256_raw(Sha256::digest(text.as_bytes()).into()).to_string()
}

/// The codec and level as keys name them (`gzip-6`, `zstd-3`): they decide the blob a tar
/// becomes.
pub(crate) fn codec_name(compression: Compression) -> String {
    match compression {
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
    }
}

/// The diffID and size of the tar `map` makes, without compressing it: what a layer's key needs,
/// at a fraction of the cost of building it.
pub fn diff_id_of(map: &FileMap, options: &LayerOptions) -> Result<(Digest, u64), LayerError> {
    let mut tar = HashingWriter::new(io::sink());
    write_tar(map, options.mtime, &mut tar)?;
    Ok(tar.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::filemap::{EntryMeta, FileSource};
    use crate::layer::{write_layer, CompressionPool};

    fn sample() -> FileMap {
        let mut map = FileMap::new();
        map.add_file(
            "/usr/local/bin/app",
            FileSource::Inline(b"#!/bin/sh\necho hi\n".repeat(100_000)),
            EntryMeta {
                mode: Some(0o755),
                uid: 1000,
                gid: 1000,
                ..EntryMeta::default()
            },
        )
        .unwrap();
        map.add_symlink("/usr/bin/app", "../local/bin/app", EntryMeta::default())
            .unwrap();
        map.delete("/etc/motd").unwrap();
        map
    }

    fn options(compression: Compression) -> LayerOptions {
        LayerOptions {
            compression,
            pool: CompressionPool::new(2),
            mtime: 1_700_000_000,
        }
    }

    #[test]
    fn the_hash_pass_gives_the_built_layers_diff_id() {
        for compression in [
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
        ] {
            let options = options(compression);
            let written = write_layer(&sample(), &options, io::sink()).unwrap();
            assert_eq!(
                diff_id_of(&sample(), &options).unwrap(),
                (written.diff_id, written.uncompressed_size)
            );
        }
    }

    #[test]
    fn the_key_follows_everything_that_reaches_the_blob() {
        let gzip6 = options(Compression::Gzip { level: 6 });
        let (diff_id, _) = diff_id_of(&sample(), &gzip6).unwrap();
        let key = layer_key(&diff_id, &gzip6);
        assert_eq!(
            key,
            layer_key(
                &diff_id,
                &LayerOptions {
                    pool: CompressionPool::new(1),
                    ..gzip6.clone()
                }
            )
        );
        for other in [
            options(Compression::Gzip { level: 9 }),
            options(Compression::Zstd { level: 6 }),
        ] {
            assert_ne!(key, layer_key(&diff_id, &other));
        }
        let later = LayerOptions {
            mtime: 1_700_000_001,
            ..gzip6.clone()
        };
        let (later_diff_id, _) = diff_id_of(&sample(), &later).unwrap();
        assert_ne!(key, layer_key(&later_diff_id, &later));
    }

    /// Fails when layerize's bytes change for the same inputs: then bump [`LAYER_FORMAT`] (keys
    /// made by older releases must not find layers this one would not make) and update the
    /// digests here.
    #[test]
    fn layer_format_is_pinned() {
        let written = write_layer(
            &sample(),
            &options(Compression::Gzip { level: 6 }),
            io::sink(),
        )
        .unwrap();
        assert_eq!(
            (
                LAYER_FORMAT,
                written.diff_id.to_string(),
                written.digest.to_string()
            ),
            (
                1,
                "sha256:a74d5589a6c76604da38c3c3020f32896f10c9b60654450bc290d7e5487bd261".into(),
                "sha256:2702d07634fab66beb556be376abb77c81206d0cdb156a7477dafe9e9681b377".into()
            )
        );
    }
}
