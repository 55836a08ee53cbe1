//! `layerize cache clean`: removing local cache entries unused for an age, then least recently
//! used ones down to a size.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use layerize_inspect::cache_clean::{self, Policy};
use layerize_inspect::units::{parse_duration, parse_size};

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove cache entries not used for an age (--older-than), then the least recently used
    /// ones until the cache is at most a size (--max-size). Only entry files under the cache's
    /// versioned subdirectories are removed; symlinks are never followed and temporary files of
    /// writers (.tmp*) are left alone.
    Clean(CleanArgs),
}

#[derive(Args)]
struct CleanArgs {
    /// The cache directory. Default: $XDG_CACHE_HOME/layerize, else ~/.cache/layerize.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Remove entries not used for this long: a number and a unit, s m h d w (e.g. 7d).
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Then remove least recently used entries until the rest total at most this: a number and
    /// a binary unit, B K M G T (1K = 1024; KiB, MB etc. are accepted too), e.g. 2GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Print what would be removed, removing nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: CacheArgs) -> anyhow::Result<()> {
    let CacheCommand::Clean(args) = args.command;
    if args.older_than.is_none() && args.max_size.is_none() {
        bail!("cache clean: say what to remove with --older-than AGE and/or --max-size SIZE");
    }
    let dir = match args.cache_dir {
        Some(dir) => dir,
        None => layerize_basefs::default_cache_dir().context(
            "no cache directory: neither XDG_CACHE_HOME nor HOME is set; pass --cache-dir",
        )?,
    };
    let policy = Policy {
        older_than: args.older_than,
        max_size: args.max_size,
    };
    let outcome = cache_clean::clean(&dir, &policy, SystemTime::now(), args.dry_run)?;
    print!("{}", cache_clean::render::render(&dir, &outcome));
    if !outcome.failed.is_empty() {
        bail!(
            "{} cache entries could not be removed",
            outcome.failed.len()
        );
    }
    Ok(())
}
