//! `layerize login`: store credentials for a registry in the Docker config.json.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args)]
pub struct LoginArgs {
    /// The registry host (e.g. ghcr.io, 127.0.0.1:5000, docker.io).
    registry: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Read the password from standard input (the only way: never from the command line).
    #[arg(long, required = true)]
    password_stdin: bool,
}

pub fn run(args: LoginArgs) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    let path = layerize_registry::credentials::login(&args.registry, &args.username, password)
        .with_context(|| format!("saving credentials for {}", args.registry))?;
    eprintln!(
        "Login credentials for {} saved in {}",
        args.registry,
        path.display()
    );
    Ok(())
}
