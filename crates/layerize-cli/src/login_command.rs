//! `layerize login`: check credentials against a registry and store them in the Docker
//! config.json, as `docker login` does.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Args;
use layerize_registry::credentials::Credential;
use layerize_registry::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};
use layerize_registry::remote::{LoginCheck, Registry};

use crate::connection_args::ConnectionArgs;

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
    #[command(flatten)]
    connection: ConnectionArgs,
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
    verify(&args, password)?;
    let path = layerize_registry::credentials::login(&args.registry, &args.username, password)
        .with_context(|| format!("saving credentials for {}", args.registry))?;
    eprintln!(
        "Login credentials for {} saved in {}",
        args.registry,
        path.display()
    );
    Ok(())
}

/// Asks the registry whether it takes the credentials, so that wrong ones are never saved.
fn verify(args: &LoginArgs, password: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let _runtime_guard = runtime.enter();
    let credential = Credential::Basic {
        username: args.username.clone(),
        password: password.to_owned(),
    };
    let registry = Registry::new(
        &api_host(&args.registry),
        Some(credential),
        &args.connection.remote_options(),
    )?;
    let checked = runtime
        .block_on(registry.check_login())
        .with_context(|| format!("login to {} failed", args.registry))?;
    match checked {
        LoginCheck::Accepted => Ok(()),
        LoginCheck::Refused => bail!(
            "login to {} failed: wrong username or password",
            args.registry
        ),
    }
}

/// Where the API of a registry named as `docker login` takes it (`ghcr.io`,
/// `https://index.docker.io/v1/`, `docker.io`) is reached.
fn api_host(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        DOCKER_HUB | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_API_HOST.to_owned(),
        host => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_as_docker_login_names_them() {
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(api_host("https://ghcr.io/"), "ghcr.io");
        assert_eq!(api_host("docker.io"), DOCKER_HUB_API_HOST);
        assert_eq!(api_host("https://index.docker.io/v1/"), DOCKER_HUB_API_HOST);
    }
}
