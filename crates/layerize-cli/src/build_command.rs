//! `layerize build`: flags -> build request -> run -> digest on stdout, report and digest files.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, ValueEnum};
use layerize_builder::layer::{Compression, CompressionPool, LayerOptions};
use layerize_builder::{build, BuildRequest};
use layerize_manifest::{utc_rfc3339, ConfigEdit, Platform};
use layerize_registry::open::{open_base, open_target, OpenOptions};
use layerize_registry::reference::ImageRef;
use layerize_registry::remote::RemoteOptions;

use crate::connection_args::ConnectionArgs;
use crate::layer_inputs;

#[derive(Args)]
pub struct BuildArgs {
    /// The base image: a registry reference (`ubuntu:22.04`, `host:5000/repo@sha256:…`) or an OCI
    /// layout (`oci:DIR[:TAG]`).
    #[arg(long)]
    base: String,
    /// Where to write the result: a registry reference or `oci:DIR[:TAG]`.
    #[arg(long)]
    target: String,

    /// Add a host file: SRC:DEST[:MODE] (MODE in octal; default: the file's own permission bits).
    #[arg(long, value_name = "SRC:DEST[:MODE]")]
    file: Vec<String>,
    /// Add a host directory tree, walked in sorted order: SRC:DEST. Devices and FIFOs are kept,
    /// sockets skipped, `.wh.*` names refused; host extended attributes are not taken.
    #[arg(long, value_name = "SRC:DEST")]
    dir: Vec<String>,
    /// Add the entries of an existing tar (plain, gzip or zstd), re-streamed deterministically,
    /// extended attributes (PAX `SCHILY.xattr.*`) and whiteouts included.
    #[arg(long, value_name = "FILE")]
    tar: Vec<String>,
    /// Delete a path of the base (written as an OCI whiteout).
    #[arg(long, value_name = "PATH")]
    delete: Vec<String>,
    /// Hide everything the base has below a directory (an opaque whiteout); combine with --dir to
    /// replace a whole directory.
    #[arg(long, value_name = "DIR")]
    opaque: Vec<String>,
    /// Make one layer per --file/--dir/--tar/--delete/--opaque flag instead of one for all.
    #[arg(long)]
    layer_per_flag: bool,

    /// Set an environment variable: K=V (replaces an inherited value in place).
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// Append to a PATH-like variable with ':' (sets it when the base has none): K=V.
    #[arg(long, value_name = "K=V")]
    env_append: Vec<String>,
    /// Entrypoint as a JSON array, e.g. '["/app","--serve"]'.
    #[arg(long, value_name = "JSON")]
    entrypoint: Option<String>,
    /// Command as a JSON array, e.g. '["--port","8080"]'.
    #[arg(long, value_name = "JSON")]
    cmd: Option<String>,
    /// Working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// User (name, uid, or uid:gid).
    #[arg(long)]
    user: Option<String>,
    /// Config label: K=V.
    #[arg(long, value_name = "K=V")]
    label: Vec<String>,
    /// Exposed port: PORT[/PROTO].
    #[arg(long, value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Stop signal, e.g. SIGTERM.
    #[arg(long)]
    stop_signal: Option<String>,
    /// Manifest annotation: K=V (OCI manifests only).
    #[arg(long, value_name = "K=V")]
    annotation: Vec<String>,

    /// Platform to take from a multi-platform base: OS/ARCH[/VARIANT] (default linux/amd64; a
    /// single-platform base must match it when given).
    #[arg(long)]
    platform: Option<String>,
    /// Layer compression (zstd needs an OCI manifest).
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Compression threads, shared by all layers of the build (default: all cores). Output is
    /// identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 6)]
    jobs: usize,
    /// Where layerize caches what it learnt (the base filesystem index, per layer diffID).
    /// Default: $XDG_CACHE_HOME/layerize, else ~/.cache/layerize.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Write a JSON report (target, digest, layers with their status) to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    digest_file: Option<PathBuf>,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// How to reach registries and whom to log in as.
#[derive(Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Credentials for the base registry: env:VAR or file:PATH holding USER:PASS.
    #[arg(long, value_name = "SOURCE")]
    base_creds: Option<String>,
    /// Credentials for the target registry: env:VAR or file:PATH holding USER:PASS.
    #[arg(long, value_name = "SOURCE")]
    target_creds: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
}

pub fn run(args: BuildArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let inputs = layer_inputs::collect(matches)?;
    let layers = layer_inputs::into_layers(inputs, args.layer_per_flag);
    let edits = config_edits(&args)?;
    let annotations = args
        .annotation
        .iter()
        .map(|value| key_value("--annotation", value))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platform: Option<Platform> = args
        .platform
        .as_deref()
        .map(|value| value.parse().with_context(|| format!("--platform {value}")))
        .transpose()?;

    let mut layer_options = LayerOptions::from_env();
    layer_options.compression = match args.compression {
        CompressionArg::Gzip => Compression::default(),
        CompressionArg::Zstd => Compression::Zstd { level: 3 },
    };
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        layer_options.pool = CompressionPool::new(threads);
    }
    let created = utc_rfc3339(layer_options.mtime);

    let base_ref: ImageRef = args
        .base
        .parse()
        .with_context(|| format!("--base {}", args.base))?;
    let target_ref: ImageRef = args
        .target
        .parse()
        .with_context(|| format!("--target {}", args.target))?;
    if let ImageRef::Registry(reference) = &target_ref {
        if reference.digest.is_some() {
            // Refused before any upload: the digest of the result exists only after the build.
            bail!(
                "--target {}: name a tag, not a digest (the image's digest is known only once it is built)",
                args.target
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // Registry clients are made inside the runtime they will run on.
    let _runtime_guard = runtime.enter();
    let open_options = OpenOptions {
        remote: RemoteOptions {
            jobs: args.jobs,
            ..args.registry.connection.remote_options()
        },
    };
    let base = open_base(
        &base_ref,
        args.registry.base_creds.as_deref(),
        &open_options,
    )
    .with_context(|| format!("opening the base {base_ref}"))?;
    let target = open_target(
        &target_ref,
        args.registry.target_creds.as_deref(),
        &open_options,
        &base,
    )
    .with_context(|| format!("opening the target {target_ref}"))?;
    let endpoints = layerize_builder::Endpoints {
        base_reference: base.reference,
        base_name: base.public_name,
        base: base.store,
        target_name: target_ref.to_string(),
        target_reference: target.reference,
        target_needs_oci: target.needs_oci,
        target: target.store,
    };
    let request = BuildRequest {
        platform,
        layers,
        edits,
        annotations,
        layer_options,
        created,
        jobs: args.jobs,
        cache_dir: args
            .cache_dir
            .clone()
            .or_else(layerize_basefs::default_cache_dir),
    };

    let report = runtime.block_on(build(&endpoints, request))?;

    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    if let Some(path) = &args.digest_file {
        std::fs::write(path, report.digest.as_str())
            .with_context(|| format!("writing the digest file {}", path.display()))?;
    }
    println!("{}", report.digest);
    Ok(())
}

fn config_edits(args: &BuildArgs) -> anyhow::Result<Vec<ConfigEdit>> {
    let mut edits = Vec::new();
    for value in &args.env {
        let (key, value) = key_value("--env", value)?;
        edits.push(ConfigEdit::Env { key, value });
    }
    for value in &args.env_append {
        let (key, value) = key_value("--env-append", value)?;
        edits.push(ConfigEdit::EnvAppend {
            key,
            value,
            separator: ":".to_owned(),
        });
    }
    if let Some(json) = &args.entrypoint {
        edits.push(ConfigEdit::Entrypoint(json_array("--entrypoint", json)?));
    }
    if let Some(json) = &args.cmd {
        edits.push(ConfigEdit::Cmd(json_array("--cmd", json)?));
    }
    if let Some(dir) = &args.workdir {
        edits.push(ConfigEdit::WorkingDir(dir.clone()));
    }
    if let Some(user) = &args.user {
        edits.push(ConfigEdit::User(user.clone()));
    }
    for value in &args.label {
        let (key, value) = key_value("--label", value)?;
        edits.push(ConfigEdit::Label { key, value });
    }
    for port in &args.expose {
        edits.push(ConfigEdit::ExposedPort(port.clone()));
    }
    if let Some(signal) = &args.stop_signal {
        edits.push(ConfigEdit::StopSignal(signal.clone()));
    }
    Ok(edits)
}

fn key_value(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => bail!("{flag} {value}: expected KEY=VALUE"),
    }
}

fn json_array(flag: &str, json: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_str(json).with_context(|| {
        format!("{flag} {json}: expected a JSON array of strings, e.g. '[\"/app\",\"--flag\"]'")
    })
}
