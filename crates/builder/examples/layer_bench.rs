//! Benchmark driver: writes one layer from a host directory and prints one JSON line with the
//! time taken, the sizes and the digests. Used by `benches/layer.sh`.
//!
//! Usage: `layer_bench DIR OUT [gzip|zstd] [LEVEL] [THREADS]`

use std::time::Instant;

use layerize_builder::filemap::FileMap;
use layerize_builder::layer::{write_layer, Compression, LayerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out, rest @ ..] = args.as_slice() else {
        return Err("usage: layer_bench DIR OUT [gzip|zstd] [LEVEL] [THREADS]".into());
    };
    let mut options = LayerOptions::from_env();
    options.compression = match (rest.first().map(String::as_str), rest.get(1)) {
        (None | Some("gzip"), level) => Compression::Gzip {
            level: level.map_or(Ok(6), |level| level.parse())?,
        },
        (Some("zstd"), level) => Compression::Zstd {
            level: level.map_or(Ok(3), |level| level.parse())?,
        },
        (Some(other), _) => return Err(format!("unknown compression {other}").into()),
    };
    if let Some(threads) = rest.get(2) {
        options.threads = threads.parse()?;
    }

    let start = Instant::now();
    let mut map = FileMap::new();
    map.add_host_dir(dir.as_ref(), "/")?;
    let file = std::fs::File::create(out)?;
    let written = write_layer(
        &map,
        &options,
        std::io::BufWriter::with_capacity(1 << 20, file),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "entries": map.len(),
            "size": written.size,
            "uncompressed_size": written.uncompressed_size,
            "digest": written.digest.to_string(),
            "diff_id": written.diff_id.to_string(),
            "compression": format!("{:?}", options.compression),
            "threads": options.threads,
        })
    );
    Ok(())
}
