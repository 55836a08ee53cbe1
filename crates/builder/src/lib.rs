//! How layers are made and a build is run, as two separate parts:
//! - [`layer`]: making one layer blob, synchronously and without a network — file maps, the
//!   deterministic tar stream, compressors with hashing writers (diffID inside, digest outside).
//! - [`build`]: running a build, asynchronously — the base, the plan of [`Layer`] values,
//!   transfers to the target, the report.

pub mod build;
pub mod layer;

pub use build::plan::{Layer, LayerSpec, Origin};
pub use build::previous::CacheImage;
pub use build::report::{LayerReport, Report};
pub use build::{build, execute, plan, BuildRequest, Endpoints, PlannedBuild};

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
    /// A layer's input does not make a file map. The message carries the whole chain, so the
    /// error is not also given as a source (which would print it twice).
    #[error("{layer}: {error}")]
    Input {
        layer: String,
        error: Box<layer::recipe::InputError>,
    },
    /// A layer's file map fails its check against the base (found while walking its trees).
    #[error("{layer}: {error}")]
    Files {
        layer: String,
        error: Box<layer::filemap::FileMapError>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A script step ended with a failure; `tail` is its last lines of output.
    #[error(
        "step {step:?} failed with {status}; its last lines of output:{}",
        indented(tail)
    )]
    StepFailed {
        step: String,
        status: String,
        tail: Vec<String>,
    },
    /// Reading the archive, resolving or converting packages failed; the message says which
    /// source, package or file, and what would fix it.
    #[error("apt: {0}")]
    Apt(String),
    #[error("{0}")]
    Invalid(String),
}

fn indented(lines: &[String]) -> String {
    if lines.is_empty() {
        return " (none)".to_owned();
    }
    lines.iter().map(|line| format!("\n  | {line}")).collect()
}
