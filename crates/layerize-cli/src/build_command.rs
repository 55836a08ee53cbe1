//! `layerize build`: build file and flags -> build request -> plan (printed by `--dry-run`) ->
//! run -> digest on stdout, report and digest files.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};
use layerize_builder::layer::{Compression, CompressionPool, LayerOptions};
use layerize_builder::{execute, plan, BuildRequest, CacheImage, LayerSpec};
use layerize_buildfile::{BuildFile, LayerEntry, Located};
use layerize_manifest::{utc_rfc3339, ConfigEdit, Platform};
use layerize_registry::open::{open_base, open_cache_source, open_target, OpenOptions};
use layerize_registry::reference::ImageRef;
use layerize_registry::remote::RemoteOptions;

use crate::apt_args::AptArgs;
use crate::connection_args::ConnectionArgs;
use crate::layer_inputs;

#[derive(Args)]
pub struct BuildArgs {
    /// The build file (layerize.yaml, see docs/buildfile.md): its layers come first, flags add
    /// layers after them and config after its config; --base/--target/--platform override it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    build_file: Option<PathBuf>,
    /// The base image: a registry reference (`ubuntu:22.04`, `host:5000/repo@sha256:…`) or an OCI
    /// layout (`oci:DIR[:TAG]`). Required unless the build file names it.
    #[arg(long)]
    base: Option<String>,
    /// Where to write the result: a registry reference or `oci:DIR[:TAG]`. Required unless the
    /// build file names it.
    #[arg(long)]
    target: Option<String>,

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

    #[command(flatten)]
    apt: AptArgs,

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

    /// Reuse layers recorded in this image as well as in the one at the target tag (repeatable,
    /// first match wins): e.g. the previous commit's or the branch's tag.
    #[arg(long, value_name = "REF")]
    cache_from: Vec<String>,
    /// Print the plan (for each layer: base, reuse and from where, or build; and the layers
    /// dropped since the image at the target tag) and stop before writing anything.
    #[arg(long)]
    dry_run: bool,
    /// The sandbox script steps run in: `chroot` (root without namespaces, e.g. in an
    /// unprivileged container), `namespaces` (root where it may unshare), `userns` (a normal user
    /// with user namespaces), or `auto`: the first of these the process may use.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    sandbox: layerize_sandbox::ModeChoice,
    /// The root a script step runs in: `overlay` (the layers extracted once into directories
    /// kept in the cache directory, and mounted as an overlay: a rebuild writes no root; needs
    /// the namespaces sandbox), `written` (the layers extracted into a fresh directory for
    /// every step), or `auto`: an overlay where it works.
    #[arg(long, value_name = "ROOT", default_value = "auto")]
    step_root: layerize_sandbox::RootChoice,

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
    let build_file = args.build_file.as_ref().map(BuildFile::load).transpose()?;
    let mut layers: Vec<LayerSpec> = build_file
        .iter()
        .flat_map(|file| file.layers().iter().map(LayerEntry::to_spec))
        .collect();
    layers.extend(args.apt.layer()?);
    let apt = args.apt.options(
        build_file
            .as_ref()
            .map(BuildFile::apt_options)
            .unwrap_or_default(),
    )?;
    let inputs = layer_inputs::collect(matches)?;
    layers.extend(layer_inputs::into_layers(inputs, args.layer_per_flag));
    let mut edits = build_file
        .as_ref()
        .map(BuildFile::config_edits)
        .unwrap_or_default();
    edits.extend(config_edits(&args)?);
    let mut annotations = build_file
        .as_ref()
        .map(|file| file.annotations().to_vec())
        .unwrap_or_default();
    for value in &args.annotation {
        annotations.push(key_value("--annotation", value)?);
    }
    let platform: Option<Platform> = match &args.platform {
        Some(value) => Some(
            value
                .parse()
                .with_context(|| format!("--platform {value}"))?,
        ),
        None => build_file
            .as_ref()
            .and_then(|file| file.image().platform.as_ref())
            .map(|platform| platform.value.clone()),
    };
    let max_layers = build_file
        .as_ref()
        .and_then(|file| file.optimization().max_layers.as_ref())
        .map(|max| max.value as usize);
    // --jobs given on the command line wins over the build file's `parallel`.
    let jobs = match (&build_file, matches.value_source("jobs")) {
        (Some(file), Some(ValueSource::DefaultValue) | None) => file
            .optimization()
            .parallel
            .layers_at_once(NonZeroUsize::new(args.jobs).unwrap_or(NonZeroUsize::MIN))
            .get(),
        _ => args.jobs,
    };

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

    let file_image = build_file.as_ref().map(BuildFile::image);
    let base_ref = image_ref(
        "--base",
        args.base.as_deref(),
        file_image.and_then(|image| image.base.as_ref()),
        "image.base",
    )?;
    let target_ref = image_ref(
        "--target",
        args.target.as_deref(),
        file_image.and_then(|image| image.target.as_ref()),
        "image.target",
    )?;
    if let ImageRef::Registry(reference) = &target_ref {
        if reference.digest.is_some() {
            // Refused before any upload: the digest of the result exists only after the build.
            let named_by = if args.target.is_some() {
                "--target"
            } else {
                "image.target"
            };
            bail!(
                "{named_by} {target_ref}: name a tag, not a digest (the image's digest is known only once it is built)"
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // Registry clients are made inside the runtime they will run on.
    let _runtime_guard = runtime.enter();
    let open_options = OpenOptions {
        remote: RemoteOptions {
            jobs,
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
    let cache_from = args
        .cache_from
        .iter()
        .map(|name| {
            let image: ImageRef = name
                .parse()
                .with_context(|| format!("--cache-from {name}"))?;
            let opened = open_cache_source(
                &image,
                args.registry.target_creds.as_deref(),
                &open_options,
                &target,
            )
            .with_context(|| format!("opening the cache image {image}"))?;
            Ok(CacheImage {
                name: name.clone(),
                store: opened.store,
                reference: opened.reference,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let endpoints = layerize_builder::Endpoints {
        base_reference: base.reference,
        base_name: base.public_name,
        base: base.store,
        target_name: target_ref.to_string(),
        target_reference: target.reference,
        target_needs_oci: target.needs_oci,
        target: target.store,
        cache_from,
    };
    let request = BuildRequest {
        platform,
        layers,
        edits,
        annotations,
        layer_options,
        created,
        jobs,
        cache_dir: args
            .cache_dir
            .clone()
            .or_else(layerize_basefs::default_cache_dir),
        max_layers,
        dry_run: args.dry_run,
        sandbox: args.sandbox,
        step_root: args.step_root,
        apt,
    };

    let planned = runtime.block_on(plan(&endpoints, request))?;
    if args.dry_run {
        for line in planned.lines() {
            println!("{line}");
        }
        return Ok(());
    }
    let report = runtime.block_on(execute(&endpoints, planned))?;

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

/// The image reference from its flag, else from the build file, else an error naming both.
fn image_ref(
    flag: &str,
    value: Option<&str>,
    from_file: Option<&Located<ImageRef>>,
    file_key: &str,
) -> anyhow::Result<ImageRef> {
    match (value, from_file) {
        (Some(value), _) => value.parse().with_context(|| format!("{flag} {value}")),
        (None, Some(located)) => Ok(located.value.clone()),
        (None, None) => bail!(
            "no {} image: give {flag}, or {file_key} in the build file",
            &flag[2..]
        ),
    }
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
