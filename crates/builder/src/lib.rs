//! How layers are made and a build is run: file maps, the deterministic tar stream, compressors
//! with hashing writers (diffID inside, digest outside), the [`Layer`] value, and the build
//! orchestration (plan, report).

pub mod build;
pub mod filemap;
mod hashing;
pub mod layer;
mod parallel_gzip;
pub mod plan;
pub mod report;
pub mod resolve;
mod tar_import;
mod tar_writer;

pub use build::{build, BuildRequest, Endpoints};
pub use plan::{Layer, LayerSpec, Origin};
pub use report::{LayerReport, Report};

/// Why a build failed. Every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] layerize_registry::StoreError),
    #[error(transparent)]
    Manifest(#[from] layerize_manifest::ManifestError),
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error(transparent)]
    FileMap(#[from] filemap::FileMapError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
