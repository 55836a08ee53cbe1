//! Writing one layer blob in a single pass: the file map's tar stream is hashed (diffID), then
//! compressed (gzip on the workers of a [`CompressionPool`] that concurrent layers share, or zstd
//! with libzstd's own workers), then hashed again (digest) on its way to the output. Memory stays
//! flat whatever the layer's size.

pub mod apt;
pub mod changes;
mod compression_pool;
pub mod filemap;
mod hashing;
pub mod key;
mod parallel_gzip;
mod pax;
pub mod recipe;
pub mod script;
mod tar_import;
pub(crate) mod tar_writer;

use std::io::{self, Write};
use std::path::PathBuf;

use layerize_manifest::Digest;
use libdeflater::CompressionLvl;

pub use compression_pool::CompressionPool;
use filemap::{FileMap, FileMapError};
use hashing::HashingWriter;
use tar_writer::write_tar;

/// How a layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Multi-member gzip made with libdeflate; `level` is libdeflate's, 1 (fastest) to 12
    /// (smallest), 6 being the usual default.
    Gzip { level: u32 },
    /// zstd, `level` 1 to 22 (negative levels are faster still). Needs an OCI manifest.
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The codec alone, which decides the layer's media type.
    pub fn kind(&self) -> layerize_manifest::Compression {
        match self {
            Compression::Gzip { .. } => layerize_manifest::Compression::Gzip,
            Compression::Zstd { .. } => layerize_manifest::Compression::Zstd,
        }
    }
}

/// Everything besides the file map that decides a layer's bytes — except `pool`, which only
/// decides how fast they are made.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    pub compression: Compression,
    /// The gzip workers, shared with every other layer written with a clone of the same pool
    /// (for zstd, how many workers libzstd starts for this layer).
    pub pool: CompressionPool,
    /// The mtime of entries that have none of their own, in seconds since the epoch.
    pub mtime: u64,
}

impl Default for LayerOptions {
    /// gzip level 6 on the process-wide pool (a worker per core), mtime 0.
    fn default() -> Self {
        LayerOptions {
            compression: Compression::default(),
            pool: CompressionPool::shared(),
            mtime: 0,
        }
    }
}

impl LayerOptions {
    /// The defaults with `mtime` from `SOURCE_DATE_EPOCH` when it is set (an unparsable value is
    /// ignored with a warning).
    pub fn from_env() -> Self {
        let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) => value.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(
                    value,
                    "SOURCE_DATE_EPOCH is not a number of seconds; using 0"
                );
                0
            }),
            Err(_) => 0,
        };
        LayerOptions {
            mtime,
            ..LayerOptions::default()
        }
    }
}

/// What [`write_layer`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    pub uncompressed_size: u64,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} became shorter while the layer was being written")]
    SourceChanged { path: PathBuf },
    #[error(
        "hardlink /{path} points at /{target}, which is no longer a regular file in the layer"
    )]
    BrokenHardlink { path: String, target: String },
    #[error("invalid {codec} compression level {level}: expected {expected}")]
    InvalidLevel {
        codec: &'static str,
        level: i64,
        expected: &'static str,
    },
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
    /// A host tree could not be walked.
    #[error(transparent)]
    Files(#[from] FileMapError),
}

impl From<io::Error> for LayerError {
    fn from(err: io::Error) -> Self {
        LayerError::Write(err)
    }
}

/// Writes the layer described by `map` to `out` and returns its digests and sizes. Identical maps
/// and options give identical bytes, whatever the size of `options.pool` and however many layers
/// are written on it at once (from other threads).
pub fn write_layer<W: Write>(
    map: &FileMap,
    options: &LayerOptions,
    out: W,
) -> Result<WrittenLayer, LayerError> {
    let mut blob = HashingWriter::new(out);
    let (diff_id, uncompressed_size) = match options.compression {
        Compression::Gzip { level } => {
            let level = i32::try_from(level)
                .ok()
                .and_then(|level| CompressionLvl::new(level).ok())
                .ok_or(LayerError::InvalidLevel {
                    codec: "gzip",
                    level: level.into(),
                    expected: "0 to 12",
                })?;
            parallel_gzip::compress(&options.pool, level, &mut blob, |compressor| {
                let mut tar = HashingWriter::new(compressor);
                write_tar(map, options.mtime, &mut tar)?;
                Ok::<_, LayerError>(tar.finish())
            })?
        }
        Compression::Zstd { level } => {
            if !zstd::compression_level_range().contains(&level) || level == 0 {
                return Err(LayerError::InvalidLevel {
                    codec: "zstd",
                    level: level.into(),
                    expected: "1 to 22, or negative for faster",
                });
            }
            let mut encoder = zstd::stream::write::Encoder::new(&mut blob, level)?;
            // zstd's output with workers differs from its single-threaded output but not between
            // worker counts, so there is always at least one worker. They are libzstd's own
            // threads, as many as the pool has, not the pool's: libzstd schedules its jobs itself.
            let threads = options.pool.threads();
            encoder.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
            let mut tar = HashingWriter::new(&mut encoder);
            write_tar(map, options.mtime, &mut tar)?;
            let diff = tar.finish();
            encoder.finish()?;
            diff
        }
    };
    blob.flush()?;
    let (digest, size) = blob.finish();
    Ok(WrittenLayer {
        diff_id,
        digest,
        size,
        uncompressed_size,
    })
}

#[cfg(test)]
mod tree_kind_tests;

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::layer::filemap::{EntryMeta, FileSource};

    pub(super) fn options(compression: Compression, threads: usize) -> LayerOptions {
        LayerOptions {
            compression,
            pool: CompressionPool::new(threads),
            mtime: 1_700_000_000,
        }
    }

    pub(super) fn build(map: &FileMap, options: &LayerOptions) -> (WrittenLayer, Vec<u8>) {
        let mut blob = Vec::new();
        let written = write_layer(map, options, &mut blob).unwrap();
        (written, blob)
    }

    pub(super) fn decompress(blob: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        if blob.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(blob)
                .read_to_end(&mut tar)
                .unwrap();
        } else {
            zstd::stream::read::Decoder::new(blob)
                .unwrap()
                .read_to_end(&mut tar)
                .unwrap();
        }
        tar
    }

    /// `name type mode uid:gid mtime [major:minor] [-> link] [content]` for every member.
    pub(super) fn members(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                assert_eq!(header.username_bytes(), Some(&b""[..]));
                assert_eq!(header.groupname_bytes(), Some(&b""[..]));
                let mut line = format!(
                    "{} {:?} {:o} {}:{} {}",
                    String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                    header.entry_type(),
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap(),
                );
                if matches!(
                    header.entry_type(),
                    tar::EntryType::Char | tar::EntryType::Block
                ) {
                    let major = header.device_major().unwrap().unwrap();
                    let minor = header.device_minor().unwrap().unwrap();
                    line += &format!(" {major}:{minor}");
                }
                if let Some(link) = entry.link_name_bytes() {
                    line += &format!(" -> {}", String::from_utf8_lossy(&link));
                }
                let mut content = String::new();
                entry.read_to_string(&mut content).unwrap();
                if !content.is_empty() {
                    line += &format!(" {content:?}");
                }
                line
            })
            .collect()
    }

    /// Several MiB of compressible, non-repeating text, so the gzip stream has many members.
    fn text(lines: usize) -> Vec<u8> {
        (0..lines)
            .map(|n| format!("line {n}: {}\n", n.wrapping_mul(2_654_435_761) % 1_000_003))
            .collect::<String>()
            .into_bytes()
    }

    fn sample_map() -> FileMap {
        let mut map = FileMap::new();
        map.add_file(
            "/data/big.txt",
            FileSource::Inline(text(300_000)),
            EntryMeta::default(),
        )
        .unwrap();
        map.add_file(
            "/etc/app.conf",
            FileSource::Inline(b"key=value\n".to_vec()),
            EntryMeta {
                mode: Some(0o600),
                uid: 1000,
                gid: 1000,
                mtime: Some(42),
                ..EntryMeta::default()
            },
        )
        .unwrap();
        map.add_symlink("/usr/bin/app", "../lib/app/app", EntryMeta::default())
            .unwrap();
        map.delete("/etc/old.conf").unwrap();
        map.make_opaque("/var/cache").unwrap();
        map
    }

    #[test]
    fn output_is_identical_for_any_thread_count() {
        let map = sample_map();
        for compression in [
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
        ] {
            let (written, blob) = build(&map, &options(compression, 1));
            assert!(written.uncompressed_size > 4 * parallel_gzip::CHUNK_SIZE as u64);
            for threads in [2, 4] {
                let (again, again_blob) = build(&map, &options(compression, threads));
                assert_eq!(again, written, "{compression:?} with {threads} threads");
                assert!(again_blob == blob, "{compression:?} with {threads} threads");
            }
        }
    }

    #[test]
    fn layers_written_at_once_on_one_pool_are_the_layers_written_alone() {
        let maps: Vec<(FileMap, Compression)> = (0..5)
            .map(|n| {
                let mut map = sample_map();
                let content = FileSource::Inline(text(100_000 * (n + 1)));
                map.add_file(&format!("/layer/{n}"), content, EntryMeta::default())
                    .unwrap();
                (
                    map,
                    Compression::Gzip {
                        level: [6, 1, 9][n % 3],
                    },
                )
            })
            .collect();
        let alone: Vec<_> = maps
            .iter()
            .map(|(map, compression)| build(map, &options(*compression, 1)))
            .collect();
        let shared = CompressionPool::new(2);
        let together: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = maps
                .iter()
                .map(|(map, compression)| {
                    let options = LayerOptions {
                        compression: *compression,
                        pool: shared.clone(),
                        mtime: 1_700_000_000,
                    };
                    scope.spawn(move || build(map, &options))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (n, ((written, blob), (alone_written, alone_blob))) in
            together.iter().zip(&alone).enumerate()
        {
            assert_eq!(written, alone_written, "layer {n}");
            assert!(blob == alone_blob, "layer {n}");
        }
    }

    #[test]
    fn digests_and_sizes_describe_the_blob_and_the_tar() {
        let map = sample_map();
        for compression in [
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
        ] {
            let (written, blob) = build(&map, &options(compression, 2));
            let tar = decompress(&blob);
            assert_eq!(written.digest, Digest::sha256(&blob));
            assert_eq!(written.size, blob.len() as u64);
            assert_eq!(written.diff_id, Digest::sha256(&tar));
            assert_eq!(written.uncompressed_size, tar.len() as u64);
            assert!(written.size < written.uncompressed_size / 2);
        }
    }

    #[test]
    fn gzip_blobs_are_read_whole_by_the_gzip_tool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar.gz");
        let (written, blob) = build(&sample_map(), &options(Compression::default(), 2));
        std::fs::write(&path, &blob).unwrap();
        let output = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip is installed");
        assert!(output.status.success());
        assert_eq!(Digest::sha256(&output.stdout), written.diff_id);
        // One member per MiB of tar: a single-member decoder stops after the first.
        let mut first_member = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut first_member)
            .unwrap();
        assert_eq!(first_member.len(), parallel_gzip::CHUNK_SIZE);
    }

    #[test]
    fn tar_members_are_normalised() {
        let (_, blob) = build(&sample_map(), &options(Compression::default(), 2));
        let listed = members(&decompress(&blob));
        let listed: Vec<&str> = listed
            .iter()
            .map(|line| line.split(" \"line 0").next().unwrap())
            .collect();
        assert_eq!(
            listed,
            [
                "data/ Directory 755 0:0 1700000000",
                "data/big.txt Regular 644 0:0 1700000000",
                "etc/ Directory 755 0:0 1700000000",
                "etc/.wh.old.conf Regular 644 0:0 1700000000",
                "etc/app.conf Regular 600 1000:1000 42 \"key=value\\n\"",
                "usr/ Directory 755 0:0 1700000000",
                "usr/bin/ Directory 755 0:0 1700000000",
                "usr/bin/app Symlink 777 0:0 1700000000 -> ../lib/app/app",
                "var/ Directory 755 0:0 1700000000",
                "var/cache/ Directory 755 0:0 1700000000",
                "var/cache/.wh..wh..opq Regular 644 0:0 1700000000",
            ]
        );
    }

    #[test]
    fn long_names_and_link_targets_use_pax_records() {
        let long_dir = "d".repeat(120);
        let long_target = format!("/{}", "t".repeat(150));
        let mut map = FileMap::new();
        map.add_file(
            &format!("/{long_dir}/file"),
            FileSource::Inline(b"x".to_vec()),
            EntryMeta::default(),
        )
        .unwrap();
        map.add_symlink(
            &format!("/{long_dir}/lnk"),
            &long_target,
            EntryMeta::default(),
        )
        .unwrap();
        let (_, blob) = build(&map, &options(Compression::default(), 1));
        let tar = decompress(&blob);
        assert_eq!(
            members(&tar),
            [
                format!("{long_dir}/ Directory 755 0:0 1700000000"),
                format!("{long_dir}/file Regular 644 0:0 1700000000 \"x\""),
                format!("{long_dir}/lnk Symlink 777 0:0 1700000000 -> {long_target}"),
            ]
        );
        let mut archive = tar::Archive::new(&tar[..]);
        let raw_types: Vec<tar::EntryType> = archive
            .entries()
            .unwrap()
            .raw(true)
            .map(|entry| entry.unwrap().header().entry_type())
            .collect();
        assert_eq!(
            format!("{raw_types:?}"),
            "[XHeader, Directory, XHeader, Regular, XHeader, Symlink]"
        );
    }

    #[test]
    fn hardlinked_content_goes_to_the_first_path_in_tar_order() {
        let mut map = FileMap::new();
        map.add_file(
            "/z/file",
            FileSource::Inline(b"shared".to_vec()),
            EntryMeta::default(),
        )
        .unwrap();
        map.add_hardlink("/a/link", "/z/file").unwrap();
        map.add_hardlink("/m/link", "/z/file").unwrap();
        let (_, blob) = build(&map, &options(Compression::default(), 1));
        assert_eq!(
            members(&decompress(&blob)),
            [
                "a/ Directory 755 0:0 1700000000",
                "a/link Regular 644 0:0 1700000000 \"shared\"",
                "m/ Directory 755 0:0 1700000000",
                "m/link Link 644 0:0 1700000000 -> a/link",
                "z/ Directory 755 0:0 1700000000",
                "z/file Link 644 0:0 1700000000 -> a/link",
            ]
        );
        // A target replaced by a directory afterwards is reported when the layer is written.
        map.add_dir("/z/file", EntryMeta::default()).unwrap();
        let err = write_layer(&map, &options(Compression::default(), 1), Vec::new()).unwrap_err();
        assert!(matches!(err, LayerError::BrokenHardlink { .. }), "{err}");
    }

    #[test]
    fn an_empty_map_is_an_empty_tar() {
        let (written, blob) = build(&FileMap::new(), &options(Compression::default(), 2));
        assert_eq!(decompress(&blob), vec![0; 1024]);
        assert_eq!(written.uncompressed_size, 1024);
    }

    #[test]
    fn host_files_are_streamed_at_write_time() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("f");
        std::fs::write(&source, "first").unwrap();
        let mut map = FileMap::new();
        map.add_file("/f", FileSource::Host(source.clone()), EntryMeta::default())
            .unwrap();
        std::fs::write(&source, "second").unwrap();
        let (_, blob) = build(&map, &options(Compression::default(), 1));
        assert_eq!(
            members(&decompress(&blob)),
            ["f Regular 644 0:0 1700000000 \"second\""]
        );
        std::fs::remove_file(&source).unwrap();
        let err = write_layer(&map, &options(Compression::default(), 1), Vec::new()).unwrap_err();
        assert!(matches!(err, LayerError::Read { .. }), "{err}");
    }

    #[test]
    fn invalid_levels_are_refused() {
        for compression in [
            Compression::Gzip { level: 13 },
            Compression::Zstd { level: 23 },
        ] {
            let err =
                write_layer(&FileMap::new(), &options(compression, 1), Vec::new()).unwrap_err();
            assert!(matches!(err, LayerError::InvalidLevel { .. }), "{err}");
        }
    }

    #[test]
    fn source_date_epoch_sets_the_default_mtime() {
        // The only test that touches the variable.
        std::env::set_var("SOURCE_DATE_EPOCH", "1234567890");
        let options = LayerOptions::from_env();
        std::env::remove_var("SOURCE_DATE_EPOCH");
        assert_eq!(options.mtime, 1_234_567_890);
        assert_eq!(LayerOptions::from_env().mtime, 0);
        assert!(options.pool.threads() >= 1);
        assert_eq!(options.compression, Compression::Gzip { level: 6 });

        let mut map = FileMap::new();
        map.add_file("/f", FileSource::Inline(Vec::new()), EntryMeta::default())
            .unwrap();
        let (_, blob) = build(&map, &options);
        assert_eq!(
            members(&decompress(&blob)),
            ["f Regular 644 0:0 1234567890"]
        );
    }

    #[test]
    fn layers_on_a_base_land_where_copy_would_put_them() {
        use crate::layer::filemap::base_tests::debian_base;
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("sbin")).unwrap();
        std::fs::write(rootfs.path().join("sbin/tool"), "tool").unwrap();
        let fill = |map: &mut FileMap| {
            let exec = EntryMeta {
                mode: Some(0o755),
                ..EntryMeta::default()
            };
            let app = FileSource::Inline(b"app".to_vec());
            map.add_file("/bin/app", app, exec).unwrap();
            for dest in ["/tmp/x", "/usr/lib/y", "/usr/local/bin/z"] {
                let content = FileSource::Inline(dest.as_bytes().to_vec());
                map.add_file(dest, content, EntryMeta::default()).unwrap();
            }
            map.delete("/lib/x86_64-linux-gnu/libfoo.so.1").unwrap();
            map.add_host_dir(rootfs.path(), "/").unwrap();
            map.validate().unwrap();
        };
        let base = std::sync::Arc::new(debian_base());
        let mut map = FileMap::on_base(base.clone());
        fill(&mut map);
        let (written, blob) = build(&map, &options(Compression::default(), 2));
        assert_eq!(
            members(&decompress(&blob)),
            [
                "tmp/ Directory 1777 0:0 1690000005",
                "tmp/x Regular 644 0:0 1700000000 \"/tmp/x\"",
                "usr/ Directory 755 0:0 1690000006",
                "usr/bin/ Directory 755 0:0 1690000007",
                "usr/bin/app Regular 755 0:0 1700000000 \"app\"",
                "usr/lib/ Directory 755 0:0 1690000008",
                "usr/lib/x86_64-linux-gnu/ Directory 755 0:0 1690000009",
                "usr/lib/x86_64-linux-gnu/.wh.libfoo.so.1 Regular 644 0:0 1700000000",
                "usr/lib/y Regular 644 0:0 1700000000 \"/usr/lib/y\"",
                "usr/local/ Directory 2775 0:50 1690000011",
                "usr/local/bin/ Directory 755 0:0 1700000000",
                "usr/local/bin/z Regular 644 0:0 1700000000 \"/usr/local/bin/z\"",
                "usr/sbin/ Directory 755 0:0 1690000012",
                "usr/sbin/tool Regular 644 0:0 1700000000 \"tool\"",
            ]
        );
        // What the resolution decided is in the bytes: the same base gives the same layer,
        // none another.
        let mut again = FileMap::on_base(base);
        fill(&mut again);
        assert_eq!(
            build(&again, &options(Compression::default(), 1)).0,
            written
        );
        let mut without = FileMap::new();
        fill(&mut without);
        assert_ne!(
            build(&without, &options(Compression::default(), 1)).0,
            written
        );

        // A host tree over a base directory is refused when written, too.
        std::fs::write(rootfs.path().join("etc"), "not a directory").unwrap();
        let mut bad = FileMap::on_base(std::sync::Arc::new(debian_base()));
        bad.add_host_dir(rootfs.path(), "/").unwrap();
        let err = write_layer(&bad, &options(Compression::default(), 1), Vec::new()).unwrap_err();
        assert!(
            matches!(err, LayerError::Files(FileMapError::BaseConflict { .. })),
            "{err}"
        );
    }

    /// A tar with `owner` and `mtime` on every member, its members reversed or not.
    fn input_tar(owner: u64, mtime: u64, reversed: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut members: Vec<(&str, tar::EntryType, &[u8], u32)> = vec![
            ("./etc/", tar::EntryType::Directory, b"", 0o755),
            (
                "./etc/hosts",
                tar::EntryType::Regular,
                b"127.0.0.1 localhost\n",
                0o644,
            ),
            (
                "./usr/bin/tool",
                tar::EntryType::Regular,
                b"#!/bin/sh\necho hi\n",
                0o755,
            ),
        ];
        if reversed {
            members.reverse();
        }
        for (name, entry_type, content, mode) in members {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(entry_type);
            header.set_mode(mode);
            header.set_uid(owner);
            header.set_gid(owner);
            header.set_username(&format!("user{owner}")).unwrap();
            header.set_mtime(mtime);
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, name, content).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(mtime);
        builder
            .append_link(&mut header, "etc/localhost", "hosts")
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn tars_are_restreamed_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.tar");
        std::fs::write(&plain, input_tar(0, 1, false)).unwrap();
        let gzipped = dir.path().join("b.tar.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&input_tar(1000, 999_999, true)).unwrap();
        std::fs::write(&gzipped, encoder.finish().unwrap()).unwrap();
        let zstded = dir.path().join("c.tar.zst");
        std::fs::write(
            &zstded,
            zstd::encode_all(&input_tar(33, 5, false)[..], 3).unwrap(),
        )
        .unwrap();

        let mut layers = Vec::new();
        for input in [&plain, &gzipped, &zstded] {
            let mut map = FileMap::new();
            map.add_tar(input).unwrap();
            let (written, blob) = build(&map, &options(Compression::default(), 2));
            layers.push(written);
            assert_eq!(
                members(&decompress(&blob)),
                [
                    "etc/ Directory 755 0:0 1700000000",
                    "etc/hosts Regular 644 0:0 1700000000 \"127.0.0.1 localhost\\n\"",
                    "etc/localhost Symlink 777 0:0 1700000000 -> hosts",
                    "usr/ Directory 755 0:0 1700000000",
                    "usr/bin/ Directory 755 0:0 1700000000",
                    "usr/bin/tool Regular 755 0:0 1700000000 \"#!/bin/sh\\necho hi\\n\"",
                ],
                "{}",
                input.display()
            );
        }
        assert_eq!(layers[0], layers[1]);
        assert_eq!(layers[0], layers[2]);
    }

    #[test]
    fn tars_that_escape_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        // `append_data` refuses `..`, so the name goes into the header directly.
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
        let err = FileMap::new().add_tar(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "tar {}: path escapes the image root: ../escape",
                path.display()
            )
        );
    }
}
