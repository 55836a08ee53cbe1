//! `layerize init [PATH]`: writes the commented example build file (every kind and config key,
//! each explained), never over an existing file unless `--force` is given.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use layerize_buildfile::{DEFAULT_FILE_NAME, EXAMPLE};

#[derive(Args)]
pub struct InitArgs {
    /// Where to write the build file.
    #[arg(default_value = DEFAULT_FILE_NAME)]
    path: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // Refused by the filesystem itself when the file exists, even if it appeared just now.
        options.create_new(true);
    }
    let path = args.path.display();
    let mut file = match options.open(&args.path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{path} exists already; pass --force to replace it")
        }
        Err(err) => return Err(err).with_context(|| format!("creating {path}")),
    };
    file.write_all(EXAMPLE.as_bytes())
        .with_context(|| format!("writing {path}"))?;
    eprintln!("wrote the example build file {path}: point its sources at your own files");
    Ok(())
}
