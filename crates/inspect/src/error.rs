//! Why inspecting an image failed; every variant names what it was reading.

use std::path::PathBuf;

use layerize_manifest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The reference, its manifest or its config could not be read.
    #[error("{image}: {source}")]
    Open {
        image: String,
        #[source]
        source: Box<layerize_builder::BuildError>,
    },
    #[error("{image}: layer {index} ({digest}): {source}")]
    Layer {
        image: String,
        index: usize,
        digest: Digest,
        #[source]
        source: Box<layerize_basefs::BaseFsError>,
    },
    #[error("build report {}: {message}", path.display())]
    Report { path: PathBuf, message: String },
}
