//! Writes the gzip layer of a host directory at a given libdeflate level, the way a build writes
//! a `--dir TREE:/` layer (checked first, then written), and prints its digest, diffID and size.
//! For `benches/layer.sh`, which times it at several levels against pigz, because the CLI always
//! uses the default level.
//!
//! Usage: cargo run --release -p layerize-builder --example layer_of_dir -- DIR LEVEL THREADS OUT

use std::io::BufWriter;
use std::path::Path;

use layerize_builder::layer::filemap::FileMap;
use layerize_builder::layer::{write_layer, Compression, CompressionPool, LayerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, level, threads, out] = args.as_slice() else {
        return Err("usage: layer_of_dir DIR LEVEL THREADS OUT".into());
    };
    let mut map = FileMap::new();
    map.add_host_dir(Path::new(dir), "/")?;
    map.validate()?;
    let options = LayerOptions {
        compression: Compression::Gzip {
            level: level.parse()?,
        },
        pool: CompressionPool::new(threads.parse()?),
        mtime: 0,
    };
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let written = write_layer(&map, &options, out)?;
    println!(
        "{} {} {} {}",
        written.digest, written.diff_id, written.size, written.uncompressed_size
    );
    Ok(())
}
