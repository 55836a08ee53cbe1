//! A synthetic base layer with many paths, and the base index built from it, for measuring
//! index build time and peak memory against plain decompression of the same blob.
//!
//! ```text
//! synthetic_base generate OUT.tar.gz [PATHS]    # gzip layer, diffID in OUT.tar.gz.diffid
//! synthetic_base index [--cache DIR] BLOB...     # index_image from an OCI layout of them
//! ```
//!
//! The tree looks like a large CUDA or Python base: package directories a few levels deep,
//! files of a few hundred bytes of text, symlinks and hard links, paths of 40 to 100 bytes.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use layerize_basefs::{index_image, LayerCache};
use layerize_manifest::media_type::OCI_LAYER_GZIP;
use layerize_manifest::{Descriptor, Digest};
use layerize_registry::{BlobBody, OciLayout, Store};
use sha2::{Digest as _, Sha256};

const AREAS: [&str; 5] = [
    "usr/local/cuda-12.2/targets/x86_64-linux/include",
    "usr/lib/python3/dist-packages",
    "usr/share/doc",
    "usr/lib/x86_64-linux-gnu",
    "opt/conda/pkgs",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, out, rest @ ..] if command == "generate" => {
            let paths = rest.first().map_or(Ok(200_000), |n| n.parse())?;
            generate(Path::new(out), paths)
        }
        [command, flag, cache, blobs @ ..] if command == "index" && flag == "--cache" => {
            index(blobs, Some(Path::new(cache)))
        }
        [command, blobs @ ..] if command == "index" => index(blobs, None),
        _ => Err("usage: synthetic_base generate OUT [PATHS] | index [--cache DIR] BLOB...".into()),
    }
}

/// A writer that hashes what passes: the diffID of the tar on its way to the compressor.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn generate(out: &Path, paths: usize) -> Result<(), Box<dyn std::error::Error>> {
    let file = BufWriter::new(File::create(out)?);
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
    let mut tar = tar::Builder::new(Hashing {
        inner: gzip,
        hasher: Sha256::new(),
    });
    let mut written = 0;
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_size(size);
        header
    };
    for area in AREAS {
        let mut prefix = String::new();
        for component in area.split('/') {
            prefix = if prefix.is_empty() {
                component.to_owned()
            } else {
                format!("{prefix}/{component}")
            };
            if dirs.insert(prefix.clone()) {
                let mut dir = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut dir, &prefix, &[][..])?;
                written += 1;
            }
        }
    }
    let mut package = 0;
    while written < paths {
        let area = AREAS[package % AREAS.len()];
        let root = format!(
            "{area}/package-{package:05}-{}",
            ["core", "utils", "runtime"][package % 3]
        );
        for dir in [
            root.clone(),
            format!("{root}/src"),
            format!("{root}/src/detail"),
        ] {
            tar.append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                &dir,
                &[][..],
            )?;
            written += 1;
        }
        for file in 0..40 {
            if written >= paths {
                break;
            }
            let dir = if file % 2 == 0 { "src" } else { "src/detail" };
            let path = format!("{root}/{dir}/module_{file:02}_implementation.h");
            let content = format!("// {path}\n").repeat(1 + (package * 7 + file) % 9);
            let mut header = header(tar::EntryType::Regular, 0o644, content.len() as u64);
            tar.append_data(&mut header, &path, content.as_bytes())?;
            written += 1;
        }
        if written + 2 <= paths {
            let mut link = header(tar::EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut link, format!("{root}/current"), "src")?;
            let mut hard = header(tar::EntryType::Link, 0o644, 0);
            let target = format!("{root}/src/module_00_implementation.h");
            tar.append_link(&mut hard, format!("{root}/module.h"), target)?;
            written += 2;
        }
        package += 1;
    }
    let hashing = tar.into_inner()?;
    let diff_id = Digest::from_sha256_raw(hashing.hasher.finalize().into());
    hashing.inner.finish()?.flush()?;
    std::fs::write(out.with_extension("gz.diffid"), diff_id.as_str())?;
    println!("{} paths, diffID {diff_id}", written);
    Ok(())
}

/// Indexes the blobs (base first) the way a build does: from an OCI layout store, through
/// [`index_image`].
fn index(blobs: &[String], cache_dir: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let scratch = tempfile::tempdir()?;
    let layout = OciLayout::create(scratch.path().join("layout"), None)?;
    let mut layers = Vec::new();
    for blob in blobs.iter().map(Path::new) {
        let diff_id: Digest = std::fs::read_to_string(blob.with_extension("gz.diffid"))?
            .trim()
            .parse()?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut File::open(blob)?, &mut hasher)?;
        let digest = Digest::from_sha256_raw(hasher.finalize().into());
        let size = std::fs::metadata(blob)?.len();
        let body = BlobBody::File(blob.to_owned());
        runtime.block_on(layout.put_blob(&digest, size, body))?;
        layers.push((Descriptor::new(OCI_LAYER_GZIP, digest, size), diff_id));
    }
    let cache = cache_dir.map(LayerCache::new);

    let start = Instant::now();
    let base = runtime.block_on(index_image(&layout, &layers, cache.as_ref(), &[]))?;
    println!(
        "{} entries in {:.3} s ({:?})",
        base.index.len(),
        start.elapsed().as_secs_f64(),
        base.stats
    );
    Ok(())
}
