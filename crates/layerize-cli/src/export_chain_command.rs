//! `layerize export-chain REF --output chain.json`: the layer chain as a JSON document.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use layerize_inspect::{export, layer_chain, BuildReport};

use crate::image_args::{self, ImageArgs};

#[derive(Args)]
pub struct ExportChainArgs {
    #[command(flatten)]
    image: ImageArgs,
    /// Where to write the JSON (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The `--report` of the build that wrote the image, for which layers were reused.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub fn run(args: ExportChainArgs) -> anyhow::Result<()> {
    let report = args.report.as_deref().map(BuildReport::read).transpose()?;
    let runtime = image_args::runtime()?;
    let (_store, image) = args.image.read(&runtime)?;
    let chain = layer_chain(&image, report.as_ref())?;
    let mut json = serde_json::to_vec_pretty(&export::export(&image, chain))?;
    json.push(b'\n');
    match &args.output {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&json)
                .context("writing to standard output")?;
        }
    }
    Ok(())
}
