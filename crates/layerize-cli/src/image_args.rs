//! The image an inspecting command reads (`layers`, `export-chain`): REF, its platform, the
//! credentials and connection flags for its registry, and opening it as a build opens its base.

use anyhow::Context;
use clap::Args;
use layerize_inspect::InspectedImage;
use layerize_manifest::Platform;
use layerize_registry::open::{open_base, OpenOptions, OpenedStore};
use layerize_registry::reference::ImageRef;
use tokio::runtime::Runtime;

use crate::connection_args::ConnectionArgs;

#[derive(Args)]
pub struct ImageArgs {
    /// The image: a registry reference (`host:5000/repo:tag`, `repo@sha256:…`) or an OCI layout
    /// (`oci:DIR[:TAG]`).
    #[arg(value_name = "REF")]
    image: String,
    /// Platform to take from a multi-platform image: OS/ARCH[/VARIANT] (default linux/amd64).
    #[arg(long)]
    platform: Option<String>,
    /// Credentials for the image's registry: env:VAR or file:PATH holding USER:PASS (default: the
    /// Docker and podman credential files).
    #[arg(long, value_name = "SOURCE")]
    creds: Option<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl ImageArgs {
    /// Opens the image's store on `runtime` and reads its manifest and config.
    pub fn read(&self, runtime: &Runtime) -> anyhow::Result<(OpenedStore, InspectedImage)> {
        let reference: ImageRef = self
            .image
            .parse()
            .with_context(|| format!("image reference {}", self.image))?;
        let platform: Option<Platform> = self
            .platform
            .as_deref()
            .map(|value| value.parse().with_context(|| format!("--platform {value}")))
            .transpose()?;
        // Registry clients are made inside the runtime they will run on.
        let _runtime_guard = runtime.enter();
        let options = OpenOptions {
            remote: self.connection.remote_options(),
        };
        // Store errors name the store (`oci:DIR:TAG`, `host/repo`) themselves.
        let store = open_base(&reference, self.creds.as_deref(), &options)?;
        let image = runtime.block_on(InspectedImage::open(
            store.store.as_ref(),
            &store.reference,
            &self.image,
            platform.as_ref(),
        ))?;
        Ok((store, image))
    }
}

/// A runtime for one inspecting command.
pub fn runtime() -> anyhow::Result<Runtime> {
    Runtime::new().context("starting the async runtime")
}
