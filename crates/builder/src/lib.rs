//! How layers are made and a build is run, as two separate parts:
//! - [`layer`]: making one layer blob, synchronously and without a network — file maps, the
//!   deterministic tar stream, compressors with hashing writers (diffID inside, digest outside).
//! - [`build`]: running a build, asynchronously — the base, the plan of [`Layer`] values,
//!   transfers to the target, the report.

pub mod build;
pub mod layer;

pub use build::plan::{Layer, LayerSpec, Origin};
pub use build::report::{LayerReport, Report};
pub use build::{build, BuildRequest, Endpoints};

/// Why a build failed. Every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] layerize_registry::StoreError),
    #[error(transparent)]
    Manifest(#[from] layerize_manifest::ManifestError),
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error("indexing the base filesystem: {0}")]
    BaseFs(#[from] layerize_basefs::BaseFsError),
    #[error(transparent)]
    FileMap(#[from] layer::filemap::FileMapError),
    #[error("{layer}: {source}")]
    Input {
        layer: String,
        #[source]
        source: Box<layer::recipe::InputError>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
