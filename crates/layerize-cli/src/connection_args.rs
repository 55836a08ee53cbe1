//! The flags that say how to reach registries (plain HTTP, extra CAs), shared by every command
//! that talks to one.

use std::path::PathBuf;

use clap::Args;
use layerize_registry::remote::RemoteOptions;

#[derive(Args)]
pub struct ConnectionArgs {
    /// Allow plain HTTP or unverified TLS to this host (`host` or `host:port`) only, not to
    /// its token service or redirect targets elsewhere; loopback hosts may always use plain HTTP.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// Trust this CA certificate (PEM) for registry TLS.
    #[arg(long, value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
}

impl ConnectionArgs {
    /// Client options with these flags and the defaults for everything else.
    pub fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            insecure_hosts: self.insecure_registry.clone(),
            ca_certs: self.ca_cert.clone(),
            ..RemoteOptions::default()
        }
    }
}
