//! Opening the store an image reference names: an OCI layout on disk, or a repository of a remote
//! registry with the credentials that apply to it.

use std::sync::Arc;

use crate::credentials::{credential_from_source, credentials_for, Credential};
use crate::remote::{Registry, RemoteOptions};
use crate::{ImageRef, OciLayout, Store, StoreError};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub remote: RemoteOptions,
}

/// A store opened for one side of a build.
pub struct OpenedStore {
    pub store: Arc<dyn Store>,
    /// The tag or digest to read or write in `store`.
    pub reference: String,
    /// The full name of a registry image (for `org.opencontainers.image.base.name`); `None` for a
    /// layout, whose path means nothing elsewhere.
    pub public_name: Option<String>,
    /// Whether the store only takes OCI media types (layouts, as podman reads them).
    pub needs_oci: bool,
    /// The registry client, kept so the target can share it with the base (mounts, one token).
    registry: Option<(Registry, Option<String>)>,
}

/// Opens the base image's store. `creds` is a `--base-creds` source (`env:VAR`, `file:PATH`);
/// without it the Docker and podman credential files are consulted.
pub fn open_base(
    image: &ImageRef,
    creds: Option<&str>,
    options: &OpenOptions,
) -> Result<OpenedStore, StoreError> {
    match image {
        ImageRef::Layout { path, tag } => {
            Ok(layout_store(OciLayout::open(path, tag.clone())?, image))
        }
        ImageRef::Registry(reference) => {
            let registry = connect(reference.api_host(), &reference.registry, creds, options)?;
            Ok(remote_store(registry, creds, image, false))
        }
    }
}

/// Opens (creating if needed) the target's store. On the base's registry with the same
/// credentials, it shares the base's client so blobs can be mounted with one token.
pub fn open_target(
    image: &ImageRef,
    creds: Option<&str>,
    options: &OpenOptions,
    base: &OpenedStore,
) -> Result<OpenedStore, StoreError> {
    match image {
        ImageRef::Layout { path, tag } => {
            Ok(layout_store(OciLayout::create(path, tag.clone())?, image))
        }
        ImageRef::Registry(_) => remote_sharing(image, creds, options, base, true),
    }
}

/// Opens an image to read layers from besides the base (a `--cache-from` image), sharing the
/// target's registry client when it is on the same registry with the same credentials, so that
/// its blobs can be mounted into the target instead of copied.
pub fn open_cache_source(
    image: &ImageRef,
    creds: Option<&str>,
    options: &OpenOptions,
    target: &OpenedStore,
) -> Result<OpenedStore, StoreError> {
    match image {
        ImageRef::Layout { path, tag } => {
            Ok(layout_store(OciLayout::open(path, tag.clone())?, image))
        }
        ImageRef::Registry(_) => remote_sharing(image, creds, options, target, false),
    }
}

/// A store for the registry image `image`, on `peer`'s client when both are on one registry with
/// the same credentials (mounts, one token cache), else on a client of its own.
fn remote_sharing(
    image: &ImageRef,
    creds: Option<&str>,
    options: &OpenOptions,
    peer: &OpenedStore,
    pushing: bool,
) -> Result<OpenedStore, StoreError> {
    let ImageRef::Registry(reference) = image else {
        unreachable!("remote_sharing is only called for registry references");
    };
    let shared = peer.registry.as_ref().filter(|(registry, peer_creds)| {
        registry.host() == reference.api_host() && peer_creds.as_deref() == creds
    });
    let registry = match shared {
        Some((registry, _)) => registry.clone(),
        None => connect(reference.api_host(), &reference.registry, creds, options)?,
    };
    Ok(remote_store(registry, creds, image, pushing))
}

fn layout_store(layout: OciLayout, image: &ImageRef) -> OpenedStore {
    OpenedStore {
        store: Arc::new(layout),
        reference: image.store_reference(),
        public_name: None,
        needs_oci: true,
        registry: None,
    }
}

/// A store for the registry image `image`; `pushing` for a target (see
/// `RemoteRepository::for_push`).
fn remote_store(
    registry: Registry,
    creds: Option<&str>,
    image: &ImageRef,
    pushing: bool,
) -> OpenedStore {
    let ImageRef::Registry(reference) = image else {
        unreachable!("remote_store is only called for registry references");
    };
    let repository = registry.repository(&reference.repository);
    let repository = if pushing {
        repository.for_push()
    } else {
        repository
    };
    OpenedStore {
        store: Arc::new(repository),
        reference: image.store_reference(),
        public_name: Some(reference.to_string()),
        needs_oci: false,
        registry: Some((registry, creds.map(str::to_owned))),
    }
}

/// A client for `api_host`, with credentials from `creds` or else the credential files.
fn connect(
    api_host: &str,
    registry: &str,
    creds: Option<&str>,
    options: &OpenOptions,
) -> Result<Registry, StoreError> {
    let credential: Option<Credential> = match creds {
        Some(source) => Some(credential_from_source(source)),
        None => credentials_for(registry).transpose(),
    }
    .transpose()
    .map_err(|err| StoreError::Failed {
        store: registry.to_owned(),
        operation: "read credentials".to_owned(),
        message: err.to_string(),
    })?;
    Registry::new(api_host, credential, &options.remote)
}
