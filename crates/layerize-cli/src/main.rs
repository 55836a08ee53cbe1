//! The `layerize` binary: argument parsing, logging set-up and exit codes. The work lives in the
//! library crates.

mod apt_args;
mod build_command;
mod cache_command;
mod connection_args;
mod export_chain_command;
mod image_args;
mod init_command;
mod layer_inputs;
mod layers_command;
mod logging;
mod login_command;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Daemonless OCI image assembly: append layers made from files to a base image and write the
/// result to a registry or an OCI layout.
#[derive(Parser)]
#[command(name = "layerize", version, about)]
struct Cli {
    /// Log format: human-readable text, or JSON events with `phase`, `step` and `message`.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    /// Log level filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, default_value = logging::DEFAULT_LEVEL, env = "LAYERIZE_LOG")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image: base + new layers + config edits -> target.
    Build(Box<build_command::BuildArgs>),
    /// Store registry credentials in the Docker config.json, as `docker login` does.
    Login(login_command::LoginArgs),
    /// Write a commented example build file (layerize.yaml).
    Init(init_command::InitArgs),
    /// Show an image's layers: the chain (--tree) or sizes and wasted bytes (--analyze).
    Layers(Box<layers_command::LayersArgs>),
    /// Write an image's layer chain (keys, digests, parents, sizes, times, status) as JSON.
    ExportChain(Box<export_chain_command::ExportChainArgs>),
    /// Manage the local cache.
    Cache(cache_command::CacheArgs),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Err(err) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Build(args) => {
            let sub_matches = matches
                .subcommand_matches("build")
                .expect("clap parsed the build subcommand");
            build_command::run(*args, sub_matches)
        }
        Command::Login(args) => login_command::run(args),
        Command::Init(args) => init_command::run(args),
        Command::Layers(args) => layers_command::run(*args),
        Command::ExportChain(args) => export_chain_command::run(*args),
        Command::Cache(args) => cache_command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
