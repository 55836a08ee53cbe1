//! `layerize layers --tree|--analyze REF`: the layer chain of an image, or its sizes and wasted
//! bytes, as a table or JSON.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use layerize_inspect::{analyze, layer_chain, tree, BuildReport};
use serde_json::json;

use crate::image_args::{self, ImageArgs};

#[derive(Args)]
#[command(group(ArgGroup::new("view").required(true).args(["tree", "analyze"])))]
pub struct LayersArgs {
    /// The layer chain: per layer its index, name, key, size, digest, origin (base, built,
    /// reused) and the history's created_by.
    #[arg(long)]
    tree: bool,
    /// Sizes per layer (compressed, uncompressed), the files later layers overwrite or delete,
    /// and the wasted bytes; layer blobs are streamed, never stored.
    #[arg(long)]
    analyze: bool,
    #[command(flatten)]
    image: ImageArgs,
    /// The `--report` of the build that wrote the image: which layers it built and which it
    /// reused, and with --analyze that build's cache hit rate.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let report = args.report.as_deref().map(BuildReport::read).transpose()?;
    let runtime = image_args::runtime()?;
    let (store, image) = args.image.read(&runtime)?;
    if args.tree {
        let chain = layer_chain(&image, report.as_ref())?;
        if args.json {
            let document = json!({
                "image": image.name,
                "digest": image.manifest_digest,
                "layers": chain,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        } else {
            let digest = image.manifest_digest.to_string();
            print!("{}", tree::render(&image.name, &digest, &chain));
        }
    } else {
        let analysis = runtime.block_on(analyze::analyze(
            store.store.as_ref(),
            &image,
            report.as_ref(),
        ))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&analysis)?);
        } else {
            print!("{}", analyze::render::render(&analysis));
        }
    }
    Ok(())
}
